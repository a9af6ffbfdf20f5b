"""user_vectors: every family joined per user; a day without model scores serves them as null."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.offline.snapshots import SNAPSHOT_ROW_GROUP, feature_history, missing_derived, user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry

REGISTRY = load_registry()
SCORED, UNSCORED = dt.date(2025, 3, 2), dt.date(2025, 3, 1)


def write_snapshot(offline_store: OfflineStore, family: str, day: dt.date, values: dict[str, dict]) -> None:
    """One partition in the registry schema: the given users and values, nulls elsewhere."""
    schema = REGISTRY.snapshot_schema(family)
    users = sorted(values)
    given = {"snapshot_date": [day] * len(users), "user_id": users}
    table = pa.table({f.name: pa.array(given[f.name] if f.name in given else [values[u].get(f.name) for u in users],
                                       f.type) for f in schema}, schema=schema)
    offline_store.write("/".join(REGISTRY.family(family).asset_path), table, partition=day.isoformat())


@pytest.fixture
def offline_store(tmp_path: Path) -> OfflineStore:
    """Every snapshot family on both days for u1, u2; churn scores only on SCORED."""
    offline_store = OfflineStore(tmp_path)
    for day in (UNSCORED, SCORED):
        for family in (f.name for f in REGISTRY.families.values() if not f.derived):
            write_snapshot(offline_store, family, day, {"u1": {"total_events": 3}, "u2": {"total_events": 4}})
    write_snapshot(offline_store, "derived", SCORED, {"u1": {"churn_risk_score": 0.25}, "u2": {"churn_risk_score": 0.75}})
    return offline_store


def test_a_scored_day_carries_the_score_in_registry_order(offline_store):
    table = user_vectors(offline_store, REGISTRY, SCORED)
    assert table.column_names == ["user_id", *REGISTRY.features]
    assert table.column("churn_risk_score").to_pylist() == [0.25, 0.75]
    assert table.column("total_events").to_pylist() == [3, 4]
    assert missing_derived(offline_store, REGISTRY, SCORED) == []


def test_a_day_never_scored_serves_null_scores_with_the_same_columns_and_types(offline_store):
    scored, unscored = user_vectors(offline_store, REGISTRY, SCORED), user_vectors(offline_store, REGISTRY, UNSCORED)
    assert unscored.schema.equals(scored.schema)
    assert unscored.column("churn_risk_score").to_pylist() == [None, None]
    assert unscored.column("total_events").to_pylist() == [3, 4]
    assert missing_derived(offline_store, REGISTRY, UNSCORED) == ["derived"]


def test_a_missing_snapshot_family_still_refuses_half_a_vector(offline_store):
    path = offline_store.partition_path("features/lead_features", SCORED.isoformat())
    path.unlink()
    with pytest.raises(FileNotFoundError, match="no lead snapshot for 2025-03-02"):
        user_vectors(offline_store, REGISTRY, SCORED)


def test_the_scoring_input_is_the_snapshot_families_only(offline_store):
    inputs = [f.name for f in REGISTRY.families.values() if not f.derived]
    table = user_vectors(offline_store, REGISTRY, SCORED, inputs)
    assert table.column_names == ["user_id", *REGISTRY.snapshot_features()]


def _daily(store: OfflineStore, days: int, users: list[str], skip: dict[str, int]) -> list[dt.date]:
    """``days`` daily snapshots of a two-column table; user ``u`` is left out of day index ``skip[u]``."""
    first = dt.date(2025, 1, 1)
    written = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        present = [u for u in users if skip.get(u) != i]
        store.write("features/history_probe", pa.table({
            "snapshot_date": pa.array([day] * len(present), pa.date32()), "user_id": present,
            "score": pa.array([float(i * 10 + users.index(u)) for u in present])}),
            partition=day.isoformat(), row_group_size=SNAPSHOT_ROW_GROUP)
        written.append(day)
    return written


def test_feature_history_reads_the_newest_snapshots_newest_first(tmp_path):
    store = OfflineStore(tmp_path / "data")
    days = _daily(store, 400, ["a", "b", "c"], skip={"b": 398})  # b is missing from the day before the last

    year = feature_history(store, "features/history_probe", "score", "c", 365)
    assert [d for d, _ in year] == days[-365:][::-1]
    assert year[0][1] == 399 * 10 + 2 and year[-1][1] == 35 * 10 + 2
    gap = feature_history(store, "features/history_probe", "score", "b", 3)  # the newest 3 snapshots hold 2 rows
    assert gap == [(days[399], 3991.0), (days[397], 3971.0)]
    assert feature_history(store, "features/history_probe", "score", "nobody", 365) == []
    assert feature_history(store, "features/no_such_table", "score", "c", 30) == []


def test_snapshot_row_groups_keep_one_user_reads_small(tmp_path):
    store = OfflineStore(tmp_path / "data")
    users = [f"u{i:06d}" for i in range(3 * SNAPSHOT_ROW_GROUP + 5)]
    store.write("features/history_probe", pa.table({"user_id": users, "score": [1.0] * len(users)}),
                partition="2025-01-01", row_group_size=SNAPSHOT_ROW_GROUP)
    meta = pq.read_metadata(store.partition_path("features/history_probe", "2025-01-01"))
    assert meta.num_row_groups == 4
    stats = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    assert all(a.max < b.min for a, b in zip(stats, stats[1:], strict=False))  # sorted ids: disjoint ranges
