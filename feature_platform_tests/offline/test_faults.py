"""Offline store faults an operator meets: truncated partitions, temp files of killed writes."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import pyarrow as pa
import pytest

from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore, UnreadablePartitionError, parquet_problem
from feature_platform.registry import load_registry
from feature_platform_tests import fault_tally

pytestmark = pytest.mark.faults

TABLE = pa.table({"user_id": ["u1", "u2"], "x": [1, 2]})


@pytest.fixture(autouse=True)
def _tally():
    """One fault-tally line per test: the fault it replays is its one input (no server answers here)."""
    yield
    fault_tally.record("offline: truncated partitions, temp files of killed writes", inputs=1)


def _temp_file(folder, name: str, age_seconds: float):
    path = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    path.write_bytes(b"half a parquet file")
    old = time.time() - age_seconds
    os.utime(path, (old, old))
    return path


def test_the_next_write_deletes_stale_temp_files_of_killed_writes_and_keeps_fresh_ones(tmp_path):
    store = OfflineStore(tmp_path)
    store.write("t", TABLE, partition="2025-01-01")
    folder = store.table_dir("t")
    stale = _temp_file(folder, "2025-01-02.parquet", age_seconds=2 * 3600)
    fresh = _temp_file(folder, "2025-01-03.parquet", age_seconds=60)  # a writer may still be at it
    other = folder / ".notes.tmp"  # not a name the atomic writes make
    other.write_text("keep")
    os.utime(other, (0, 0))
    store.write("t", TABLE, partition="2025-01-04")
    assert not stale.exists() and fresh.exists() and other.exists()
    assert store.partitions("t") == ["2025-01-01", "2025-01-04"]


def test_retention_deletes_stale_temp_files_and_reports_them(tmp_path):
    store = OfflineStore(tmp_path)
    store.write("raw/events", TABLE, partition="2025-01-01")
    stale = _temp_file(store.table_dir("raw/events"), "2025-01-02.parquet", age_seconds=2 * 3600)
    removed = store.prune_all(keep_days=365, today=dt.date(2025, 1, 2))
    assert removed == {"raw/events": [stale]} and not stale.exists()


@pytest.mark.parametrize("cut", [lambda n: 0, lambda n: 11, lambda n: n // 2, lambda n: n - 4],
                         ids=["empty", "11-bytes", "half", "no-end-magic"])
def test_a_truncated_partition_is_named_and_left_out_by_a_store_that_skips_unreadable_files(tmp_path, cut):
    store = OfflineStore(tmp_path)
    for day in ("2025-01-01", "2025-01-02"):
        store.write("features/t", pa.table({"user_id": [f"u{i}" for i in range(200)], "x": list(range(200))}),
                    partition=day)
    broken = store.partition_path("features/t", "2025-01-02")
    os.truncate(broken, cut(broken.stat().st_size))
    assert parquet_problem(broken) is not None and parquet_problem(store.partition_path("features/t", "2025-01-01")) is None
    assert len(store.partition_files("features/t")) == 2  # the pipeline's reads still see (and fail on) it
    serving = OfflineStore(tmp_path, skip_unreadable=True)
    assert serving.partition_files("features/t") == [store.partition_path("features/t", "2025-01-01")]
    [found] = serving.unreadable.values()
    assert found.path == broken and "feature-platform backfill --start 2025-01-02 --end 2025-01-02 --assets features" \
        in found.message
    store.write("features/t", TABLE, partition="2025-01-02")  # re-materialized: readable again
    assert len(serving.partition_files("features/t")) == 2 and serving.unreadable == {}


def test_a_snapshot_read_over_a_truncated_partition_names_the_file(tmp_path, sample_world):
    registry = load_registry()
    store = OfflineStore(sample_world.data)
    day = dt.date.fromisoformat(store.partitions("features/lead_features")[-1])
    copy = OfflineStore(tmp_path)
    for family in registry.families.values():
        table = "/".join(family.asset_path)
        source = store.partition_path(table, day.isoformat())
        if source.exists():
            target = copy.partition_path(table, day.isoformat())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    broken = copy.partition_path("features/lead_features", day.isoformat())
    os.truncate(broken, broken.stat().st_size // 2)
    with pytest.raises(UnreadablePartitionError, match=str(broken)):
        user_vectors(copy, registry, day)
