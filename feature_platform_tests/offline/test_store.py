"""The offline store: atomic partition writes, DuckDB reads over partitions, retention."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.offline import store as store_module
from feature_platform.offline.store import OfflineStore, connect

SCHEMA = pa.schema([("user_id", pa.string()), ("x", pa.int64())])


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table({"user_id": [f"u{i}" for i in range(n)], "x": list(range(offset, offset + n))}, schema=SCHEMA)


def test_write_reports_path_rows_schema(tmp_path):
    result = OfflineStore(tmp_path).write("features/a", _table(3), partition="2025-01-02")
    assert result.path == tmp_path / "features" / "a" / "2025-01-02.parquet"
    assert result.rows == 3 and result.schema.equals(SCHEMA) and result.bytes > 0


def test_a_crash_mid_write_leaves_the_old_partition(tmp_path, monkeypatch):
    store = OfflineStore(tmp_path)
    store.write("t", _table(2), partition="2025-01-01")
    before = store.partition_path("t", "2025-01-01").read_bytes()

    def crash(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store_module.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write("t", _table(50), partition="2025-01-01")
    assert store.partition_path("t", "2025-01-01").read_bytes() == before
    assert [p.name for p in store.table_dir("t").iterdir()] == ["2025-01-01.parquet"]  # no temp left behind


def test_temp_files_of_a_killed_writer_are_invisible_to_reads(tmp_path):
    store = OfflineStore(tmp_path)
    store.write("t", _table(2), partition="2025-01-01")
    (store.table_dir("t") / ".2025-01-02.parquet.deadbeef.tmp").write_bytes(b"garbage")
    assert store.partitions("t") == ["2025-01-01"]
    assert store.read("t").num_rows == 2


def test_duckdb_reads_a_range_of_partitions(tmp_path):
    store = OfflineStore(tmp_path)
    for i, day in enumerate(["2025-01-01", "2025-01-02", "2025-01-03"]):
        store.write("t", _table(2, offset=10 * i), partition=day)
    assert store.read("t").num_rows == 6
    assert sorted(store.read("t", "2025-01-02", "2025-01-03").column("x").to_pylist()) == [10, 11, 20, 21]
    with connect() as con:
        total = store.scan(con, "t", end="2025-01-01").aggregate("sum(x) AS s").fetchall()
    assert total == [(1,)]


def test_reading_no_partitions_needs_a_schema(tmp_path):
    store = OfflineStore(tmp_path)
    assert store.read("t", "2025-01-01", "2025-01-31", schema=SCHEMA).num_rows == 0
    with pytest.raises(FileNotFoundError, match="no partitions of t"):
        store.read("t", "2025-01-01", "2025-01-31")


def test_partition_keys_must_be_dates(tmp_path):
    with pytest.raises(ValueError, match="ISO dates"):
        OfflineStore(tmp_path).write("t", _table(1), partition="../../etc")


def test_prune_deletes_only_partitions_older_than_retention(tmp_path):
    store = OfflineStore(tmp_path)
    for day in ["2024-12-30", "2024-12-31", "2025-01-01", "2025-01-31"]:
        store.write("t", _table(1), partition=day)
    removed = store.prune("t", keep_days=31, today=dt.date(2025, 1, 31))
    assert [p.stem for p in removed] == ["2024-12-30"]
    assert store.partitions("t") == ["2024-12-31", "2025-01-01", "2025-01-31"]
    assert pq.read_table(store.partition_path("t", "2025-01-31")).num_rows == 1


def test_prune_all_applies_retention_to_every_partitioned_table(tmp_path):
    store = OfflineStore(tmp_path)
    store.write("raw/events", _table(1), partition="2024-01-01")
    store.write("raw/events", _table(1), partition="2025-01-01")
    store.write("quarantine/events", _table(1), partition="2024-01-01")
    store.write("raw/customers", _table(1))  # unpartitioned: never pruned
    removed = store.prune_all(keep_days=365, today=dt.date(2025, 6, 1))
    assert {t: [p.stem for p in ps] for t, ps in removed.items()} == {
        "quarantine/events": ["2024-01-01"], "raw/events": ["2024-01-01"]
    }
    assert store.table_path("raw/customers").exists()
