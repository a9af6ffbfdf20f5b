"""Entity ids in the online store: whatever type a snapshot's user_id column or a reader gives them, the same
customer is the same key (its canonical text, sources/entity_ids.py), and a bad id fails before any write."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from feature_platform.online.store import OnlineStore
from feature_platform.sources.entity_ids import EntityIdError
from feature_platform_tests.online.conftest import standalone_store

D1 = dt.date(2025, 3, 18)
AS_OF = dt.datetime(2025, 3, 19, 9, 30)


pytestmark = pytest.mark.redis


@pytest.fixture
def online_store(request, tmp_path):
    """A store under a fresh prefix of its own on the real Redis server; afterwards only its keys are deleted."""
    yield from standalone_store("server", request, tmp_path)


def snapshot(user_ids: pa.Array, total_events: list[int | None]) -> pa.Table:
    return pa.table({"user_id": user_ids, "total_events": pa.array(total_events, pa.int64())})


def keys(store: OnlineStore, pattern: str = "*") -> set[str]:
    return {k.decode() for k in store.client.scan_iter(match=f"{store.prefix}:{pattern}", count=1000)}


def test_int_float_and_text_id_columns_push_one_users_keys_and_content(online_store):
    # The same two customers, 7 with 3 events and 42 with 5, as three exports type them.
    versions = []
    for column in (pa.array([7, 42], pa.int64()), pa.array([7.0, 42.0], pa.float64()), pa.array(["7", " 42 "])):
        result = online_store.push(snapshot(column, [3, 5]), D1)
        assert result.served and result.keys == 2
        assert keys(online_store, f"{result.version}:u:*") == {
            f"{online_store.prefix}:{result.version}:u:7", f"{online_store.prefix}:{result.version}:u:42"}
        for given in (42, 42.0, "42", " 42"):
            vector = online_store.read(given)
            assert vector is not None and vector.version == result.version
            assert vector.user_id == "42" and vector.values == {"total_events": 5}
        versions.append(result.version)
    # One content: the version id hashes the canonical ids, so each re-push is the same content again
    # (<id>.r2, then <id>.r3: a push never rewrites the served or the previous version).
    assert versions[1:] == [f"{versions[0]}.r2", f"{versions[0]}.r3"]


@pytest.mark.parametrize(("column", "message"), [
    (pa.array([True, False]), "a column of bool cannot hold ids"),
    (pa.array([7.0, 42.5]), "42.5 at row 1 is not an id"),
    (pa.array([7.0, float("nan")]), "nan at row 1 is not an id"),
    (pa.array([7, None], pa.int64()), "null at row 1"),
    (pa.array(["7", None], pa.string()), "null at row 1"),
    (pa.array(["7", "  "], pa.string()), "an empty id at row 1"),
    (pa.array([dt.date(2025, 1, 1), dt.date(2025, 1, 2)]), "a column of date32"),
])
def test_a_bad_id_column_is_refused_naming_it_before_anything_is_written(online_store, column, message):
    with pytest.raises(EntityIdError, match=message):
        online_store.push(snapshot(column, [3, 5]), D1)
    assert keys(online_store) == set()  # no version, no vector, no pointer


def test_ids_that_are_one_user_once_canonical_are_a_duplicate_row(online_store):
    with pytest.raises(ValueError, match="more than one row for a user"):
        online_store.push(snapshot(pa.array(["42", " 42"]), [3, 5]), D1)
    assert keys(online_store) == set()


def test_read_many_takes_int_ids_and_answers_under_the_ids_given(online_store):
    online_store.push(snapshot(pa.array(["7", "42"]), [3, 5]), D1)
    found = online_store.read_many([42, "7", 99, 7.0], ["total_events"])
    assert list(found) == [42, "7", 99, 7.0]
    assert {given: v.values["total_events"] if v else None for given, v in found.items()} == {
        42: 5, "7": 3, 99: None, 7.0: 3}
    assert found[42].user_id == "42" and found[7.0].user_id == "7"
    assert online_store.read_many(["42", "u1"]) == {"42": found[42], "u1": None}  # text ids as before


@pytest.mark.parametrize(("ids", "message"), [
    (["7", True], r"True is not an id .*\(item 1\)"),
    ([7, 7.5], r"7.5 is not an id .*\(item 1\)"),
    ([None], r"None is not an id .*\(item 0\)"),
])
def test_a_bad_id_to_read_is_refused_naming_the_item(online_store, ids, message):
    online_store.push(snapshot(pa.array(["7", "42"]), [3, 5]), D1)
    with pytest.raises(EntityIdError, match=message):
        online_store.read_many(ids)


def test_an_overlay_keyed_by_int_ids_lands_on_the_users_text_keys(online_store):
    version = online_store.push(snapshot(pa.array([7, 42], pa.int64()), [3, 5]), D1).version
    written = online_store.write_overlay(version, {42: {"total_events": 9}, 99: {"total_events": 1}}, as_of=AS_OF)
    assert written == [42]  # 99 has no vector in the version: not written
    assert keys(online_store, f"{version}:e:*") == {f"{online_store.prefix}:{version}:e:42"}
    vector = online_store.read("42")
    assert vector.values == {"total_events": 9} and vector.updated_fields == ("total_events",)
    assert vector.updated_at == AS_OF


@pytest.mark.parametrize(("updates", "message"), [
    ({42: {"total_events": 9}, "42": {"total_events": 8}}, r"\[42, '42'\] name one user more than once"),
    ({"7": {"total_events": 9}, True: {"total_events": 8}}, r"True is not an id .*\(item 1\)"),
])
def test_a_bad_overlay_id_is_refused_before_any_overlay_is_written(online_store, updates, message):
    version = online_store.push(snapshot(pa.array([7, 42], pa.int64()), [3, 5]), D1).version
    with pytest.raises(EntityIdError, match=message):
        online_store.write_overlay(version, updates, as_of=AS_OF)
    assert keys(online_store, f"{version}:e:*") == set()
    assert online_store.read(42).values == {"total_events": 5}
