"""Family versions recorded in snapshot files, and point-in-time joins pinned to them: hand-made snapshot files
with and without a record, the refusal when a row would join another (or an unrecorded) version, and every form
a pin may take."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from feature_platform import FeatureStore
from feature_platform.offline.pit import PinnedVersionError, get_historical_features
from feature_platform.offline.store import OfflineStore
from feature_platform.offline.versions import (
    FAMILY_VERSION_KEY,
    check_pinned,
    day_family_versions,
    file_family_version,
    recorded_family_versions,
    snapshot_metadata,
    training_set_metadata,
)
from feature_platform.registry import load_registry
from feature_platform.registry.pinning import PinError, family_versions
from feature_platform.registry.registry import REGISTRY_PATH, UnknownNameError

REGISTRY = load_registry()
ACTIVITY = REGISTRY.family("activity")
ENGAGEMENT = REGISTRY.family("engagement")
D1, D2, D3, D4 = (dt.date(2025, 3, d) for d in (1, 2, 3, 4))


def write_snapshot(store: OfflineStore, family: str, day: dt.date, values: dict[str, int | None],
                   version: str | None) -> Path:
    """A snapshot partition of ``family`` (first int feature = the given value per user), recording ``version``
    (None: written as before versions were recorded)."""
    schema = REGISTRY.snapshot_schema(family)
    feature = next(f.name for f in schema if f.type == pa.int64())
    users = sorted(values)
    table = pa.table({f.name: pa.array([day] * len(users) if f.name == "snapshot_date" else users if f.name == "user_id"
                                       else [values[u] for u in users] if f.name == feature else [None] * len(users),
                                       f.type) for f in schema}, schema=schema)
    metadata = {FAMILY_VERSION_KEY: version} if version is not None else None
    return store.write("/".join(REGISTRY.family(family).asset_path), table, partition=day.isoformat(),
                       metadata=metadata).path


def first_int(family: str) -> str:
    return next(f.name for f in REGISTRY.snapshot_schema(family) if f.type == pa.int64())


def rows(*pairs: tuple[str, dt.date]) -> pd.DataFrame:
    """Rows at D+1 00:00 of each day: they join snapshot D."""
    return pd.DataFrame({"user_id": [u for u, _ in pairs],
                         "timestamp": pd.Series([dt.datetime.combine(d + dt.timedelta(days=1), dt.time()) for _, d in pairs],
                                                dtype="datetime64[us]")})


@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    """activity: D1 at 1.0.0 (an older computation), D2 and D3 at the registry's version, D4 unrecorded."""
    store = OfflineStore(tmp_path)
    write_snapshot(store, "activity", D1, {"u1": 1, "u2": 2}, "1.0.0")
    write_snapshot(store, "activity", D2, {"u1": 21, "u2": 22}, ACTIVITY.version)
    write_snapshot(store, "activity", D3, {"u1": 31}, ACTIVITY.version)
    write_snapshot(store, "activity", D4, {"u1": 41}, None)
    return store


# -- the record in the file ---------------------------------------------------------------------------------
def test_a_snapshot_file_carries_its_family_version_in_the_footer(store):
    path = store.partition_path("/".join(ACTIVITY.asset_path), D2.isoformat())
    assert pq.read_metadata(path).metadata[FAMILY_VERSION_KEY.encode()] == ACTIVITY.version.encode()
    assert file_family_version(path) == ACTIVITY.version
    assert pq.read_schema(path).remove_metadata().equals(REGISTRY.snapshot_schema("activity"))  # data unchanged


def test_a_file_written_before_versions_were_recorded_reads_as_unknown(store):
    assert file_family_version(store.partition_path("/".join(ACTIVITY.asset_path), D4.isoformat())) is None


def test_a_rewritten_file_is_read_again_not_served_from_the_cache(store):
    path = store.partition_path("/".join(ACTIVITY.asset_path), D3.isoformat())
    assert file_family_version(path) == ACTIVITY.version
    write_snapshot(store, "activity", D3, {"u1": 31, "u9": 9}, "9.9.9")  # other bytes, so another size
    assert file_family_version(path) == "9.9.9"


def test_day_versions_name_each_family_with_a_partition_that_day(store):
    write_snapshot(store, "engagement", D2, {"u1": 1}, None)
    assert day_family_versions(store, REGISTRY, D2) == {"activity": ACTIVITY.version, "engagement": None}
    assert day_family_versions(store, REGISTRY, D1, ["activity"]) == {"activity": "1.0.0"}


def test_snapshot_and_training_set_metadata_round_trip(tmp_path):
    assert snapshot_metadata(ACTIVITY) == {FAMILY_VERSION_KEY: ACTIVITY.version}
    written = OfflineStore(tmp_path).write("training/x", pa.table({"a": [1]}),
                                           metadata=training_set_metadata({"lead": "1.1.0", "activity": "1.1.0"}))
    assert recorded_family_versions(pq.read_schema(written.path)) == {"activity": "1.1.0", "lead": "1.1.0"}
    assert recorded_family_versions(pa.schema([("a", pa.int64())])) is None


def test_a_plain_write_still_drops_the_frames_own_metadata(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})  # pandas adds its index notes to the Arrow schema
    written = OfflineStore(tmp_path).write("plain", frame)
    assert pq.read_metadata(written.path).metadata.keys() == {b"ARROW:schema"}


# -- pinned point-in-time joins -----------------------------------------------------------------------------
def test_pinned_rows_that_join_snapshots_of_that_version_get_the_same_answer_as_unpinned(store):
    entity = rows(("u1", D2), ("u2", D2), ("u1", D3))
    feature = first_int("activity")
    pinned = get_historical_features(entity, [feature], store, REGISTRY, {"activity": ACTIVITY.version})
    assert pinned.column(feature).to_pylist() == [21, 22, 31]
    assert pinned.equals(get_historical_features(entity, [feature], store, REGISTRY))


@pytest.mark.parametrize(("day", "found"), [
    pytest.param(D1, "1.0.0", id="another-version"),
    pytest.param(D4, "unknown", id="written-before-versions-were-recorded"),
])
def test_a_row_that_would_join_a_snapshot_of_another_version_is_refused(store, day, found):
    entity = rows(("u1", D2), ("u1", day))
    with pytest.raises(PinnedVersionError) as refused:
        get_historical_features(entity, [first_int("activity")], store, REGISTRY, {"activity": ACTIVITY.version})
    message = str(refused.value)
    assert f"activity is pinned to version {ACTIVITY.version}" in message
    assert f"{day.isoformat()} ({found})" in message and "is gone" in message
    assert D2.isoformat() not in message  # the snapshot of the pinned version is not named
    cause = "written before family versions were recorded" if found == "unknown" else "recomputed at 1.0.0"
    assert cause in message
    assert isinstance(refused.value, ValueError) and refused.value.found == {day: None if found == "unknown" else found}


def test_pinning_the_older_version_refuses_the_newer_snapshots_and_accepts_its_own(store):
    feature = first_int("activity")
    assert get_historical_features(rows(("u2", D1)), [feature], store, REGISTRY,
                                   {"activity": "1.0.0"}).column(feature).to_pylist() == [2]
    with pytest.raises(PinnedVersionError, match=f"{D2.isoformat()} \\({ACTIVITY.version}\\), "
                                                 f"{D3.isoformat()} \\({ACTIVITY.version}\\)"):
        get_historical_features(rows(("u1", D2), ("u1", D3)), [feature], store, REGISTRY, {"activity": "1.0.0"})


def test_only_the_snapshots_rows_would_use_are_checked_and_unpinned_families_join_as_before(store):
    write_snapshot(store, "engagement", D1, {"u1": 5}, None)  # unrecorded, but engagement is not pinned
    early = rows(("u1", D1 - dt.timedelta(days=1)))  # before every snapshot: joins none, so nothing to refuse
    out = get_historical_features(early, [first_int("activity")], store, REGISTRY, {"activity": "2.0.0"})
    assert out.column("activity_snapshot_missing").to_pylist() == [True]
    out = get_historical_features(rows(("u1", D2)), [first_int("engagement"), first_int("activity")], store, REGISTRY,
                                  {"activity": ACTIVITY.version})
    assert out.column(first_int("engagement")).to_pylist() == [5] and out.column(first_int("activity")).to_pylist() == [21]
    with pytest.raises(PinnedVersionError, match="engagement is pinned to version 1.1.0"):
        get_historical_features(rows(("u1", D2)), [first_int("engagement")], store, REGISTRY, {"engagement": "1.1.0"})


def test_check_pinned_reads_footers_only(store, monkeypatch):
    def no_data_reads(*args, **kwargs):
        raise AssertionError("a version check must not read a snapshot's data")

    monkeypatch.setattr(pq, "read_table", no_data_reads)
    check_pinned(store, ACTIVITY, ACTIVITY.version, [D2, D3])
    with pytest.raises(PinnedVersionError):
        check_pinned(store, ACTIVITY, ACTIVITY.version, [D3, D4])


def test_the_feature_store_pins_from_a_model_manifest(store):
    manifest = {"name": "churn", "version": "v1", "family_versions": {"activity": "1.0.0"}}
    with FeatureStore(store.root) as feature_store:
        out = feature_store.get_historical_features(rows(("u1", D1)), [first_int("activity")], versions=manifest)
        assert out[first_int("activity")].tolist() == [1]
        with pytest.raises(PinnedVersionError, match="activity is pinned to version 1.0.0"):
            feature_store.get_historical_features(rows(("u1", D3)), [first_int("activity")], versions=manifest)


# -- what a pin may be --------------------------------------------------------------------------------------
REGISTRY_VERSIONS = {name: family.version for name, family in REGISTRY.families.items()}


@pytest.mark.parametrize(("pin", "expected"), [
    pytest.param(None, {}, id="none"),
    pytest.param({"activity": "1.0.0"}, {"activity": "1.0.0"}, id="mapping"),
    pytest.param({"name": "churn", "family_versions": {"lead": "1.1.0"}, "registry_versions": {"family:lead": "9.0.0"}},
                 {"lead": "1.1.0"}, id="manifest"),
    pytest.param({"name": "churn", "registry_versions": {"registry": "1.0.0", "family:lead": "1.0.0"}},
                 {"lead": "1.0.0"}, id="older-manifest"),
    pytest.param({"registry": "1.0.0", "family:activity": "1.1.0"}, {"activity": "1.1.0"}, id="registry-versions"),
    pytest.param(SimpleNamespace(manifest={"family_versions": {"activity": "2.0.0"}}), {"activity": "2.0.0"},
                 id="stored-model-version"),
    pytest.param(REGISTRY, REGISTRY_VERSIONS, id="registry"),
    pytest.param({"families": {"activity": {"version": "1.1.0", "asset": "x"}}}, {"activity": "1.1.0"},
                 id="registry-snapshot"),
])
def test_every_form_of_a_pin_becomes_family_to_version(pin, expected):
    assert family_versions(pin) == expected


def test_the_registry_file_as_a_mapping_is_its_current_versions():
    assert family_versions(yaml.safe_load(REGISTRY_PATH.read_text())) == REGISTRY_VERSIONS


@pytest.mark.parametrize("pin", [
    pytest.param(["activity", "1.0.0"], id="not-a-mapping"),
    pytest.param({"activity": "latest"}, id="not-semver"),
    pytest.param({"activity": 1}, id="not-text"),
    pytest.param({"name": "churn", "version": "v", "registry_versions": {"total_events": "1.0.0"}},
                 id="manifest-without-family-versions"),
    pytest.param({"name": "churn", "version": "v", "family_versions": None,
                  "registry_versions": {"family:activity": "1.1.0"}}, id="manifest-with-null-family-versions"),
])
def test_a_pin_that_says_no_version_is_refused(pin):
    with pytest.raises(PinError):
        family_versions(pin)


def test_a_pinned_family_the_registry_does_not_know_is_refused_not_ignored(store):
    with pytest.raises(UnknownNameError, match="activty.*did you mean 'activity'"):
        get_historical_features(rows(("u1", D2)), [first_int("activity")], store, REGISTRY, {"activty": "1.1.0"})
