"""Point-in-time joins: hand-computed cases, presence flags, id types, a leakage property against a slow
reference, row keeping."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.offline import pit as pit_module
from feature_platform.offline.pit import get_historical_features
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
from feature_platform.sources.entity_ids import EntityIdError
from feature_platform_tests.helpers import examples

REGISTRY = load_registry()
ENGAGEMENT = "/".join(REGISTRY.family("engagement").asset_path)
AFFINITY = "/".join(REGISTRY.family("affinity").asset_path)
MIDNIGHT = dt.time(0)
US = dt.timedelta(microseconds=1)
SENTINEL = -999_999


def write_snapshot(offline_store: OfflineStore, family: str, day: dt.date, rows: dict[str, dict]) -> None:
    """One snapshot partition in the registry schema: the given users and values, nulls elsewhere."""
    schema = REGISTRY.snapshot_schema(family)
    users = sorted(rows)
    given = {"snapshot_date": [day] * len(users), "user_id": users}
    table = pa.table({
        field.name: pa.array(given[field.name] if field.name in given else [rows[u].get(field.name) for u in users], field.type)
        for field in schema
    }, schema=schema)
    offline_store.write("/".join(REGISTRY.family(family).asset_path), table, partition=day.isoformat())


def at(day: dt.date, hours: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, MIDNIGHT) + dt.timedelta(hours=hours)


def entities(rows: list[tuple[str, dt.datetime]], **extra: list) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series([u for u, _ in rows], dtype=str),
        "timestamp": pd.Series([t for _, t in rows], dtype="datetime64[us]"),
        **extra,
    })


D1, D2, D3, D5, D6 = (dt.date(2025, 3, d) for d in (1, 2, 3, 5, 6))


@pytest.fixture
def offline_store(tmp_path: Path) -> OfflineStore:
    """Engagement snapshots on D1, D2 and D5 (gap on D3, D4); page_views_30d = day-of-month * 10 + user."""
    offline_store = OfflineStore(tmp_path)
    write_snapshot(offline_store, "engagement", D1, {"u1": {"page_views_30d": 11}, "u2": {"page_views_30d": 12}})
    write_snapshot(offline_store, "engagement", D2, {"u1": {"page_views_30d": 21, "engagement_score": 0.5},
                                             "u2": {"page_views_30d": 22}})
    write_snapshot(offline_store, "engagement", D5, {"u1": {"page_views_30d": 51}})  # u2 not in D5
    return offline_store


def pit(offline_store: OfflineStore, rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return get_historical_features(rows, features, offline_store, REGISTRY).to_pandas()


@pytest.mark.parametrize(("ts", "expected_date", "expected_value"), [
    pytest.param(at(D2), D1, 11, id="exactly-D+1-midnight-gets-D"),
    pytest.param(at(D3) - US, D1, 11, id="1us-before-D+1-midnight-gets-D-1"),
    pytest.param(at(D3), D2, 21, id="D2-available-at-D3-midnight"),
    pytest.param(at(D3, 12), D2, 21, id="gap-D3-uses-D2"),
    pytest.param(at(D5, 23), D2, 21, id="gap-D5-still-uses-D2"),
    pytest.param(at(D5 + dt.timedelta(days=1)), D5, 51, id="D5-available-next-midnight"),
    pytest.param(at(dt.date(2026, 1, 1)), D5, 51, id="long-after-uses-latest"),
])
def test_row_gets_the_latest_snapshot_available_at_its_time(offline_store, ts, expected_date, expected_value):
    out = pit(offline_store, entities([("u1", ts)]), ["page_views_30d"])
    assert out["engagement_snapshot_date"].tolist() == [expected_date]
    assert out["page_views_30d"].tolist() == [expected_value]
    assert out["engagement_snapshot_missing"].tolist() == [False]
    assert out["engagement_user_present"].tolist() == [True]


@pytest.mark.parametrize("ts", [at(D2) - US, at(D1, 12), at(dt.date(2020, 1, 1))])
def test_row_before_any_snapshot_gets_nulls_and_the_flag(offline_store, ts):
    out = get_historical_features(entities([("u1", ts)]), ["page_views_30d", "engagement_score"], offline_store, REGISTRY)
    assert out.column("page_views_30d").to_pylist() == [None]
    assert out.column("engagement_score").to_pylist() == [None]
    assert out.column("engagement_snapshot_date").to_pylist() == [None]
    assert out.column("engagement_snapshot_missing").to_pylist() == [True]
    assert out.column("engagement_user_present").to_pylist() == [None]


def test_user_missing_from_the_chosen_snapshot_gets_nulls_and_is_not_present(offline_store):
    # u2 is in D2 but not in D5: after D5 is available u2 gets nulls, not D2's value (no fallback to
    # an older snapshot); snapshot_missing stays false because the snapshot exists, user_present is false.
    out = pit(offline_store, entities([("u2", at(D3)), ("u2", at(D6)), ("u9", at(D3))]), ["page_views_30d"])
    assert out["page_views_30d"].tolist()[0] == 22
    assert pd.isna(out["page_views_30d"].iloc[1]) and pd.isna(out["page_views_30d"].iloc[2])
    assert out["engagement_snapshot_date"].tolist() == [D2, D5, D2]
    assert out["engagement_snapshot_missing"].tolist() == [False, False, False]
    assert out["engagement_user_present"].tolist() == [True, False, False]


def test_a_null_feature_has_three_causes_told_apart_by_the_flags(offline_store):
    # engagement_score is null for u2 in every snapshot that holds u2 (D1, D2); u1 has 0.5 in D2.
    rows = entities([
        ("u2", at(D3)),      # D2 holds u2, whose score is null: a null value
        ("u2", at(D6)),      # D5 is chosen and lacks u2: absent, no fallback to D2
        ("u2", at(D1, 12)),  # before D1's data is available: no snapshot at all
        ("u1", at(D3)),      # D2 holds u1 with a score
    ])
    out = get_historical_features(rows, ["engagement_score"], offline_store, REGISTRY)
    assert out.column("engagement_score").to_pylist() == [None, None, None, 0.5]
    assert out.column("engagement_snapshot_date").to_pylist() == [D2, D5, None, D2]
    assert out.column("engagement_user_present").to_pylist() == [True, False, None, True]
    assert out.column("engagement_snapshot_missing").to_pylist() == [False, False, True, False]
    assert out.schema.field("engagement_user_present").type == pa.bool_()
    assert out.select(["user_id", "timestamp"]).equals(pa.Table.from_pandas(rows, preserve_index=False))


def test_model_scores_join_point_in_time_where_only_some_days_were_scored(offline_store):
    # Derived partitions exist only for days that were scored (here D2): the join still works, a later row
    # sees the last scored day, an earlier one gets null with the flag, and the other families are unaffected.
    write_snapshot(offline_store, "derived", D2, {"u1": {"churn_risk_score": 0.25}})
    rows = entities([("u1", at(D2)), ("u1", at(D5, 12)), ("u2", at(D5, 12))])
    out = pit(offline_store, rows, ["churn_risk_score", "page_views_30d"])
    assert pd.isna(out["churn_risk_score"].iloc[0]) and out["churn_risk_score"].iloc[1] == 0.25
    assert pd.isna(out["churn_risk_score"].iloc[2])  # u2 not scored on D2
    assert out["derived_snapshot_missing"].tolist() == [True, False, False]
    assert out["derived_user_present"].tolist() == [None, True, False]
    assert out["page_views_30d"].tolist() == [11, 21, 22]


def test_input_order_extra_columns_and_duplicates_are_kept(offline_store):
    rows = entities(
        [("u2", at(D3)), ("u1", at(D2)), ("u1", at(D2)), ("u2", at(D1)), ("u1", at(D3))],
        label=[1, 0, 0, 1, 0], note=["a", "b", "c", "d", "e"],
    )
    out = pit(offline_store, rows, ["engagement_score", "page_views_30d"])
    assert out.columns.tolist() == [
        "user_id", "timestamp", "label", "note", "engagement_score", "page_views_30d",
        "engagement_snapshot_date", "engagement_snapshot_missing", "engagement_user_present",
    ]
    pd.testing.assert_frame_equal(out[rows.columns], rows)
    assert out["page_views_30d"].tolist()[:3] == [22, 11, 11] and pd.isna(out["page_views_30d"].iloc[3])
    assert out["engagement_score"].iloc[4] == 0.5


def test_two_families_map_types_and_a_family_without_files(offline_store):
    write_snapshot(offline_store, "affinity", D1, {"u1": {"category_affinity": [("books", 0.75), ("games", 0.25)]}})
    rows = entities([("u1", at(D2)), ("u1", at(D1))])
    out = get_historical_features(
        rows, ["category_affinity", "page_views_30d", "avg_rating", "topic_vector"], offline_store, REGISTRY)
    assert out.schema.field("category_affinity").type == pa.map_(pa.string(), pa.float64())
    assert out.schema.field("topic_vector").type == pa.list_(pa.float64())
    assert out.schema.field("engagement_snapshot_date").type == pa.date32()
    assert out.column("category_affinity").to_pylist() == [[("books", 0.75), ("games", 0.25)], None]
    assert out.column("affinity_snapshot_missing").to_pylist() == [False, True]
    assert out.column("affinity_user_present").to_pylist() == [True, None]
    # review has no snapshot files at all: nulls and the flag, not an error
    assert out.column("avg_rating").to_pylist() == [None, None]
    assert out.column("topic_vector").to_pylist() == [None, None]
    assert out.column("review_snapshot_missing").to_pylist() == [True, True]
    assert out.column("review_user_present").to_pylist() == [None, None]
    assert out.column_names[-3:] == ["review_snapshot_date", "review_snapshot_missing", "review_user_present"]


def test_unknown_features_raise_a_key_error_naming_them(offline_store):
    with pytest.raises(KeyError, match="no_such_feature.*nor_this"):
        get_historical_features(entities([("u1", at(D2))]), ["page_views_30d", "no_such_feature", "nor_this"],
                                offline_store, REGISTRY)


def test_arrow_input_with_nanosecond_and_tz_aware_timestamps(offline_store):
    ts = pa.array([at(D2), at(D3)], pa.timestamp("ns", tz="UTC"))
    rows = pa.table({"user_id": ["u1", "u1"], "timestamp": pc_subtract_1ns(ts)})
    out = get_historical_features(rows, ["page_views_30d"], offline_store, REGISTRY)
    assert out.column("engagement_snapshot_date").to_pylist() == [None, D1]  # 1 ns before midnight is before it
    assert out.column("timestamp").equals(rows.column("timestamp"))


def pc_subtract_1ns(ts: pa.Array) -> pa.Array:
    return pa.array([v - 1 for v in ts.cast(pa.int64()).to_pylist()], pa.int64()).cast(ts.type)


def test_empty_input_gives_an_empty_typed_output(offline_store):
    rows = pd.DataFrame({"user_id": pd.Series([], dtype=str), "timestamp": pd.Series([], dtype="datetime64[us]")})
    out = get_historical_features(rows, ["page_views_30d"], offline_store, REGISTRY)
    assert out.num_rows == 0 and out.schema.field("page_views_30d").type == pa.int64()


# -- entity ids: any type a raw file carries joins the snapshots' text ids ---------------------------

@pytest.fixture
def numeric_id_store(tmp_path: Path) -> OfflineStore:
    """Engagement snapshots of users "7" and "42" (ids as the ingest stores them: text): D1 both, D2 only 42."""
    offline_store = OfflineStore(tmp_path)
    write_snapshot(offline_store, "engagement", D1, {"7": {"page_views_30d": 107}, "42": {"page_views_30d": 142}})
    write_snapshot(offline_store, "engagement", D2, {"42": {"page_views_30d": 242}})
    return offline_store


ID_TIMES = [at(D2), at(D3), at(D3), at(D1)]  # D1, D2, D2, before any snapshot


def id_rows(ids: pa.Array | pd.Series) -> pa.Table | pd.DataFrame:
    if isinstance(ids, pd.Series):
        return pd.DataFrame({"user_id": ids, "timestamp": pd.Series(ID_TIMES, dtype="datetime64[us]")})
    return pa.table({"user_id": ids, "timestamp": pa.array(ID_TIMES, pa.timestamp("us"))})


@pytest.mark.parametrize("ids", [
    pytest.param(pa.array(["42", "7", "42", "7"]), id="text"),
    pytest.param(pa.array([" 42", "7\t", "42 ", "7"]), id="text-with-whitespace"),
    pytest.param(pa.array(["42", "7", "42", "7"]).dictionary_encode(), id="dictionary-text"),
    pytest.param(pa.array([42, 7, 42, 7], pa.int64()), id="int64"),
    pytest.param(pa.array([42, 7, 42, 7], pa.uint16()), id="uint16"),
    pytest.param(pa.array([42.0, 7.0, 42.0, 7.0], pa.float64()), id="whole-float64"),
    pytest.param(pd.Series([42, 7, 42, 7]), id="pandas-int"),
    pytest.param(pd.Series([42.0, 7.0, 42.0, 7.0]), id="pandas-whole-float"),
    pytest.param(pd.Series([42, 7, 42, 7], dtype="Int64"), id="pandas-nullable-int"),
    pytest.param(pd.Series(["42", "7", "42", "7"], dtype="category"), id="pandas-category"),
])
def test_ids_of_any_raw_type_join_the_text_ids_and_come_back_as_given(numeric_id_store, ids):
    rows = id_rows(ids)
    out = get_historical_features(rows, ["page_views_30d"], numeric_id_store, REGISTRY)
    assert out.column("page_views_30d").to_pylist() == [142, None, 242, None]  # 7 is not in D2
    assert out.column("engagement_snapshot_date").to_pylist() == [D1, D2, D2, None]
    assert out.column("engagement_user_present").to_pylist() == [True, False, True, None]
    if isinstance(rows, pd.DataFrame):
        pd.testing.assert_series_equal(out.to_pandas()["user_id"], rows["user_id"])
    else:
        assert out.column("user_id").equals(rows.column("user_id"))


@pytest.mark.parametrize(("ids", "message"), [
    pytest.param(pa.array([True, False, True, False]), "a column of bool cannot hold ids", id="bool"),
    pytest.param(pa.array([D1, D1, D1, D1], pa.date32()), "cannot hold ids", id="date"),
    pytest.param(pa.array([42.0, 7.5, 42.0, 7.0]), "7.5 at row 1 is not an id .*whole number", id="fractional-float"),
    pytest.param(pa.array([42.0, 7.0, float("inf"), 7.0]), "inf at row 2 is not an id", id="infinite-float"),
    pytest.param(pa.array(["42", "7", None, "7"]), "null at row 2", id="null-text"),
    pytest.param(pa.array([None, 7, 42, 7], pa.int64()), "null at row 0", id="null-int"),
    pytest.param(pd.Series([42.0, 7.0, 42.0, float("nan")]), "null at row 3", id="pandas-float-with-a-missing-id"),
    pytest.param(pa.array(["42", " ", "42", "7"]), "empty id at row 1", id="blank-text"),
])
def test_a_bad_id_raises_before_any_duckdb_work(numeric_id_store, monkeypatch, ids, message):
    def no_duckdb():
        raise AssertionError("DuckDB was opened before the ids were checked")

    monkeypatch.setattr(pit_module, "connect", no_duckdb)
    with pytest.raises(EntityIdError, match=f"entity_rows.user_id: .*{message}"):
        get_historical_features(id_rows(ids), ["page_views_30d"], numeric_id_store, REGISTRY)
    assert issubclass(EntityIdError, ValueError)


# -- leakage property: compare with a slow reference ------------------------------------------------

BASE = dt.date(2025, 1, 1)
USERS = ["u0", "u1", "u2"]
days = st.integers(0, 9).map(lambda i: BASE + dt.timedelta(days=i))
instants = st.one_of(
    days.map(lambda d: at(d)),  # exact midnights
    days.map(lambda d: at(d) - US),
    st.datetimes(min_value=at(BASE) - dt.timedelta(days=1), max_value=at(BASE + dt.timedelta(days=11))),
)
snapshot_values = st.dictionaries(  # a user held with a null value is present; one not held is absent
    days, st.dictionaries(st.sampled_from(USERS), st.none() | st.integers(0, 1000), max_size=len(USERS)), max_size=6)
entity_lists = st.lists(st.tuples(st.sampled_from([*USERS, "u_unknown"]), instants), max_size=30)


def reference(snapshots: dict[dt.date, dict[str, int | None]], rows: list[tuple[str, dt.datetime]]):
    """For each row: the max snapshot date with date + 1 day <= ts, that snapshot's value for the user, and
    whether that snapshot holds the user (None when there is no such snapshot)."""
    out = []
    for user, ts in rows:
        chosen = None
        for day in snapshots:
            if at(day + dt.timedelta(days=1)) <= ts and (chosen is None or day > chosen):
                chosen = day
        if chosen is None:
            out.append((None, None, None))
        else:
            out.append((chosen, snapshots[chosen].get(user), user in snapshots[chosen]))
    return out


@settings(max_examples=examples(60))
@given(snapshots=snapshot_values, rows=entity_lists)
def test_no_leakage_against_a_slow_reference(snapshots, rows):
    with tempfile.TemporaryDirectory() as folder:
        offline_store = OfflineStore(Path(folder))
        for day, values in snapshots.items():
            write_snapshot(offline_store, "engagement", day, {u: {"page_views_30d": v} for u, v in values.items()})
        # a planted future snapshot, dated after every row's time, carrying a sentinel everywhere
        future = BASE + dt.timedelta(days=12)
        write_snapshot(offline_store, "engagement", future, {u: {"page_views_30d": SENTINEL} for u in USERS})
        out = get_historical_features(entities(rows), ["page_views_30d"], offline_store, REGISTRY)

    got = list(zip(out.column("engagement_snapshot_date").to_pylist(), out.column("page_views_30d").to_pylist(),
                   out.column("engagement_user_present").to_pylist(), strict=True))
    assert got == reference(snapshots, rows)
    assert SENTINEL not in out.column("page_views_30d").to_pylist()
    assert out.column("engagement_snapshot_missing").to_pylist() == [d is None for d, _, _ in got]


padded_ids = st.text(st.sampled_from("u0 é\t"), min_size=1, max_size=4).filter(lambda text: text.strip(" \t"))


@settings(max_examples=examples(40))
@given(rows=st.lists(st.tuples(padded_ids, st.one_of(st.none(), instants)), max_size=40))
def test_every_input_row_is_kept_once_in_order(rows):
    with tempfile.TemporaryDirectory() as folder:
        offline_store = OfflineStore(Path(folder))
        write_snapshot(offline_store, "engagement", BASE, {"u0": {"page_views_30d": 1}, "é": {"page_views_30d": 2}})
        frame = pd.DataFrame({"user_id": [u for u, _ in rows], "timestamp": pd.to_datetime([t for _, t in rows]),
                              "position": range(len(rows))})
        out = get_historical_features(frame, ["page_views_30d", "category_affinity"], offline_store, REGISTRY)
    assert out.num_rows == len(rows)
    assert out.column("position").to_pylist() == list(range(len(rows)))
    assert out.column("user_id").to_pylist() == [u for u, _ in rows]  # as given, whitespace and all
