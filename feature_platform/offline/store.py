"""The offline store: one Parquet file per asset and partition under the data directory.

Layout: ``<root>/<table>/<YYYY-MM-DD>.parquet`` for daily-partitioned tables and
``<root>/<table>.parquet`` for unpartitioned ones, where ``<table>`` is the asset key path
(``raw/events``). Writes are atomic (temp file in the same folder, fsync, rename), so a reader or a
crash never sees half a file. Reads go through DuckDB over the partition files, with the file list
passed as a query parameter.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PARTITION_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


@dataclass(frozen=True)
class WriteResult:
    path: Path
    rows: int
    schema: pa.Schema
    bytes: int


def connect(threads: int | None = None, memory_limit: str = "4GB") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set to UTC, the platform's only time zone.

    The memory limit makes big sorts and windows spill to a temp folder instead of taking most of
    the machine (DuckDB's default is 80% of RAM).
    """
    spill = Path(tempfile.gettempdir()) / "feature_platform-duckdb"  # never the working directory
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill)})
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute("SET threads = ?", [threads])
    return con


def to_arrow(frame: pa.Table | pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Convert (and, given a schema, conform) a frame to an Arrow table with that exact schema."""
    if isinstance(frame, pd.DataFrame):
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    else:
        table = frame
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    return table.replace_schema_metadata(None)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a dot-prefixed temp file, fsync and rename: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_parquet(table: pa.Table, path: Path, row_group_size: int | None = None) -> int:
    """Write ``table`` to ``path`` so that readers see the old file or the new one, never a mix.

    The temp file starts with a dot and does not end in ``.parquet``, so globs never pick it up even
    if the process dies before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path.stat().st_size


class OfflineStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.root / table

    def table_path(self, table: str) -> Path:
        return self.root / f"{table}.parquet"

    def partition_path(self, table: str, partition: str) -> Path:
        _parse_partition(partition)
        return self.table_dir(table) / f"{partition}.parquet"

    # -- writes ------------------------------------------------------------------------------
    def write(
        self,
        table: str,
        frame: pa.Table | pd.DataFrame,
        partition: str | None = None,
        schema: pa.Schema | None = None,
        row_group_size: int | None = None,
    ) -> WriteResult:
        data = to_arrow(frame, schema)
        path = self.partition_path(table, partition) if partition else self.table_path(table)
        size = atomic_write_parquet(data, path, row_group_size)
        return WriteResult(path=path, rows=data.num_rows, schema=data.schema, bytes=size)

    # -- discovery ---------------------------------------------------------------------------
    def partitions(self, table: str) -> list[str]:
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(m.group(1) for p in folder.iterdir() if (m := PARTITION_FILE.match(p.name)))

    def partition_files(self, table: str, start: str | None = None, end: str | None = None) -> list[Path]:
        """Existing partition files of ``table`` with ``start <= key <= end`` (inclusive, ISO dates)."""
        return [
            self.partition_path(table, key)
            for key in self.partitions(table)
            if (start is None or key >= start) and (end is None or key <= end)
        ]

    # -- reads -------------------------------------------------------------------------------
    def scan(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        start: str | None = None,
        end: str | None = None,
        schema: pa.Schema | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the partitions of ``table`` in [start, end].

        With no range the partition glob is read; with a range, the list of files in it. Both are
        passed as parameters. With no file at all, an empty relation of ``schema`` (required then).
        """
        if start is None and end is None and self.partitions(table):
            glob = str(self.table_dir(table) / "*.parquet")
            return con.sql("SELECT * FROM read_parquet($files, union_by_name = true)", params={"files": glob})
        files = [str(p) for p in self.partition_files(table, start, end)]
        if files:
            return con.sql("SELECT * FROM read_parquet($files, union_by_name = true)", params={"files": files})
        if schema is None:
            raise FileNotFoundError(f"no partitions of {table} in [{start}, {end}] under {self.root}")
        return con.from_arrow(schema.empty_table())

    def read(
        self,
        table: str,
        start: str | None = None,
        end: str | None = None,
        schema: pa.Schema | None = None,
    ) -> pa.Table:
        with connect() as con:
            return self.scan(con, table, start, end, schema).to_arrow_table()

    def read_table(self, table: str) -> pa.Table:
        path = self.table_path(table)
        if not path.exists():
            raise FileNotFoundError(f"{table} has not been written yet (expected {path})")
        return pq.read_table(path)

    # -- retention ---------------------------------------------------------------------------
    def prune(self, table: str, keep_days: int, today: dt.date) -> list[Path]:
        """Delete partitions of ``table`` older than ``keep_days`` before ``today``; return them."""
        cutoff = (today - dt.timedelta(days=keep_days)).isoformat()
        removed = [p for p in self.partition_files(table) if p.stem < cutoff]
        for path in removed:
            path.unlink()
        return removed

    def prune_all(self, keep_days: int, today: dt.date) -> dict[str, list[Path]]:
        """Apply the retention setting to every partitioned table; return what was deleted per table."""
        removed = {table: self.prune(table, keep_days, today) for table in list(self.tables())}
        return {table: paths for table, paths in removed.items() if paths}

    def tables(self) -> Iterable[str]:
        """Every partitioned table (a folder holding partition files) under the root."""
        for folder in sorted({p.parent for p in self.root.rglob("*.parquet") if PARTITION_FILE.match(p.name)}):
            yield folder.relative_to(self.root).as_posix()


def _parse_partition(partition: str) -> dt.date:
    try:
        return dt.date.fromisoformat(partition)
    except (TypeError, ValueError):
        raise ValueError(f"partition keys are ISO dates (YYYY-MM-DD), got {partition!r}") from None
