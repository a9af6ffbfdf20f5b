"""Point-in-time joins: hand-computed cases, a leakage property against a slow reference, row keeping."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.offline.pit import get_historical_features
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
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


D1, D2, D3, D5 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3), dt.date(2025, 3, 5)


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


@pytest.mark.parametrize("ts", [at(D2) - US, at(D1, 12), at(dt.date(2020, 1, 1))])
def test_row_before_any_snapshot_gets_nulls_and_the_flag(offline_store, ts):
    out = get_historical_features(entities([("u1", ts)]), ["page_views_30d", "engagement_score"], offline_store, REGISTRY)
    assert out.column("page_views_30d").to_pylist() == [None]
    assert out.column("engagement_score").to_pylist() == [None]
    assert out.column("engagement_snapshot_date").to_pylist() == [None]
    assert out.column("engagement_snapshot_missing").to_pylist() == [True]


def test_user_missing_from_the_chosen_snapshot_gets_nulls_without_the_flag(offline_store):
    # u2 is in D2 but not in D5: after D5 is available u2 gets nulls, not D2's value (no fallback to
    # an older snapshot), and the flag stays false because the snapshot itself exists.
    out = pit(offline_store, entities([("u2", at(D3)), ("u2", at(dt.date(2025, 3, 6))), ("u9", at(D3))]), ["page_views_30d"])
    assert out["page_views_30d"].tolist()[0] == 22
    assert pd.isna(out["page_views_30d"].iloc[1]) and pd.isna(out["page_views_30d"].iloc[2])
    assert out["engagement_snapshot_date"].tolist() == [D2, D5, D2]
    assert out["engagement_snapshot_missing"].tolist() == [False, False, False]


def test_model_scores_join_point_in_time_where_only_some_days_were_scored(offline_store):
    # Derived partitions exist only for days that were scored (here D2): the join still works, a later row
    # sees the last scored day, an earlier one gets null with the flag, and the other families are unaffected.
    write_snapshot(offline_store, "derived", D2, {"u1": {"churn_risk_score": 0.25}})
    rows = entities([("u1", at(D2)), ("u1", at(D5, 12)), ("u2", at(D5, 12))])
    out = pit(offline_store, rows, ["churn_risk_score", "page_views_30d"])
    assert pd.isna(out["churn_risk_score"].iloc[0]) and out["churn_risk_score"].iloc[1] == 0.25
    assert pd.isna(out["churn_risk_score"].iloc[2])  # u2 not scored on D2
    assert out["derived_snapshot_missing"].tolist() == [True, False, False]
    assert out["page_views_30d"].tolist() == [11, 21, 22]


def test_input_order_extra_columns_and_duplicates_are_kept(offline_store):
    rows = entities(
        [("u2", at(D3)), ("u1", at(D2)), ("u1", at(D2)), ("u2", at(D1)), ("u1", at(D3))],
        label=[1, 0, 0, 1, 0], note=["a", "b", "c", "d", "e"],
    )
    out = pit(offline_store, rows, ["engagement_score", "page_views_30d"])
    assert out.columns.tolist() == [
        "user_id", "timestamp", "label", "note", "engagement_score", "page_views_30d",
        "engagement_snapshot_date", "engagement_snapshot_missing",
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
    # review has no snapshot files at all: nulls and the flag, not an error
    assert out.column("avg_rating").to_pylist() == [None, None]
    assert out.column("topic_vector").to_pylist() == [None, None]
    assert out.column("review_snapshot_missing").to_pylist() == [True, True]


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


# -- leakage property: compare with a slow reference ------------------------------------------------

BASE = dt.date(2025, 1, 1)
USERS = ["u0", "u1", "u2"]
days = st.integers(0, 9).map(lambda i: BASE + dt.timedelta(days=i))
instants = st.one_of(
    days.map(lambda d: at(d)),  # exact midnights
    days.map(lambda d: at(d) - US),
    st.datetimes(min_value=at(BASE) - dt.timedelta(days=1), max_value=at(BASE + dt.timedelta(days=11))),
)
snapshot_values = st.dictionaries(
    days, st.dictionaries(st.sampled_from(USERS), st.integers(0, 1000), max_size=len(USERS)), max_size=6)
entity_lists = st.lists(st.tuples(st.sampled_from([*USERS, "u_unknown"]), instants), max_size=30)


def reference(snapshots: dict[dt.date, dict[str, int]], rows: list[tuple[str, dt.datetime]]):
    """For each row: the max snapshot date with date + 1 day <= ts, and that snapshot's value for the user."""
    out = []
    for user, ts in rows:
        chosen = None
        for day in snapshots:
            if at(day + dt.timedelta(days=1)) <= ts and (chosen is None or day > chosen):
                chosen = day
        out.append((chosen, None if chosen is None else snapshots[chosen].get(user)))
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
                   strict=True))
    assert got == reference(snapshots, rows)
    assert SENTINEL not in out.column("page_views_30d").to_pylist()
    assert out.column("engagement_snapshot_missing").to_pylist() == [d is None for d, _ in got]


@settings(max_examples=examples(40))
@given(rows=st.lists(st.tuples(st.text(max_size=3), st.one_of(st.none(), instants)), max_size=40))
def test_every_input_row_is_kept_once_in_order(rows):
    with tempfile.TemporaryDirectory() as folder:
        offline_store = OfflineStore(Path(folder))
        write_snapshot(offline_store, "engagement", BASE, {"u0": {"page_views_30d": 1}, "": {"page_views_30d": 2}})
        frame = pd.DataFrame({"user_id": [u for u, _ in rows], "timestamp": pd.to_datetime([t for _, t in rows]),
                              "position": range(len(rows))})
        out = get_historical_features(frame, ["page_views_30d", "category_affinity"], offline_store, REGISTRY)
    assert out.num_rows == len(rows)
    assert out.column("position").to_pylist() == list(range(len(rows)))
