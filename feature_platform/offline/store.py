"""The offline store: one Parquet file per asset and partition under the data directory.

Layout: ``<root>/<table>/<YYYY-MM-DD>.parquet`` for daily-partitioned tables and
``<root>/<table>.parquet`` for unpartitioned ones, where ``<table>`` is the asset key path
(``raw/events``). The root is a local folder or an object-store prefix (offline/location.py). Writes are
atomic (locally: temp file in the same folder, fsync, rename; object store: one upload), so a reader or a
crash never sees half a file; the temp file of a killed local write is deleted by the next write to its
folder or by retention once it is an hour old. Reads go through DuckDB over the partition files, with the
file list passed as a query parameter.

A partition damaged outside the store (a truncated copy, a full disk) is found by a cheap framing check
(:func:`parquet_problem`). The pipeline's reads fail on it as DuckDB does, naming the file; a reader that
must keep answering (the feature server) opens the store with ``skip_unreadable=True``: such files are
left out of the partition list and kept in ``unreadable``, each saying what to re-materialize.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.offline.location import (
    StorePath,
    arrow_file,
    committed,
    is_remote,
    register_filesystems,
    relative_key,
    store_path,
)

log = logging.getLogger(__name__)
PARTITION_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")
TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")  # what atomic writes leave when killed before the rename
STALE_TEMP_SECONDS = 3600.0  # no write takes an hour: an older temp file belongs to a dead writer
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class WriteResult:
    path: StorePath
    rows: int
    schema: pa.Schema
    bytes: int


@dataclass(frozen=True)
class UnreadablePartition:
    """A partition file that is not readable Parquet, and what to do about it."""

    table: str
    partition: str
    path: StorePath
    reason: str

    @property
    def message(self) -> str:
        group = self.table.split("/", 1)[0]
        return (f"{self.path} ({self.table}, partition {self.partition}) is not readable Parquet: {self.reason}; "
                f"re-materialize it: feature-platform backfill --start {self.partition} --end {self.partition} "
                f"--assets {group}")


class UnreadablePartitionError(OSError):
    """A partition a read needs is not readable Parquet; the message says which and what to re-materialize."""

    def __init__(self, found: UnreadablePartition) -> None:
        super().__init__(found.message)
        self.found = found


def parquet_problem(path: StorePath) -> str | None:
    """Why ``path`` is not a readable Parquet file, or None: magic bytes at both ends, a footer that fits
    in the file and parses. Catches truncation and overwritten ends; not a damaged page inside."""
    try:
        size = path.stat().st_size
        if size < 12:
            return f"{size} bytes, too short for a Parquet file (truncated)"
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(size - 8)
            tail = fh.read(8)
        if head != PARQUET_MAGIC or tail[4:] != PARQUET_MAGIC:
            return f"no Parquet magic bytes at {'its start' if head != PARQUET_MAGIC else 'its end'} " \
                   f"({size} bytes; truncated or overwritten)"
        footer = int.from_bytes(tail[:4], "little")
        if footer + 12 > size:
            return f"its footer claims {footer} bytes of a {size}-byte file (truncated)"
        file, filesystem = arrow_file(path)
        pq.read_metadata(file, filesystem=filesystem)
    except (OSError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def clean_stale_temp_files(folder: StorePath, older_than: float = STALE_TEMP_SECONDS,
                           now: float | None = None) -> list[Path]:
    """Delete the temp files of killed atomic writes in ``folder`` older than ``older_than`` seconds.

    Only names the atomic writes make (``.<name>.<32 hex>.tmp``) are touched, and only old ones: a live
    writer's temp file is seconds old. An object store has none (its writes are uploads).
    """
    if not isinstance(folder, Path) or not folder.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - older_than
    removed = []
    for path in folder.iterdir():
        if not TEMP_FILE.match(path.name):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another cleaner or its writer got there first
            continue
    if removed:
        log.warning("deleted %d temp file(s) of killed writes in %s: %s", len(removed), folder,
                    ", ".join(p.name for p in removed))
    return removed


def connect(threads: int | None = None, memory_limit: str = "4GB") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set to UTC, the platform's only time zone.

    The memory limit makes big sorts and windows spill to a temp folder instead of taking most of
    the machine (DuckDB's default is 80% of RAM).
    """
    spill = Path(tempfile.gettempdir()) / "feature_platform-duckdb"  # never the working directory
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill)})
    con.execute("SET TimeZone = 'UTC'")
    register_filesystems(con)
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


def atomic_write_bytes(path: StorePath, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part."""
    clean_stale_temp_files(path.parent)
    with committed(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_parquet(table: pa.Table, path: StorePath, row_group_size: int | None = None) -> int:
    """Write ``table`` to ``path`` so that readers see the old file or the new one, never a mix.

    The local temp file starts with a dot and does not end in ``.parquet``, so globs never pick it up
    even if the process dies before the rename; the next write to the folder deletes it once it is stale.
    """
    clean_stale_temp_files(path.parent)
    with committed(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        size = tmp.stat().st_size
    return size


class OfflineStore:
    def __init__(self, root: StorePath | str, skip_unreadable: bool = False) -> None:
        """``root``: a local folder or an object-store URL (offline/location.py). ``skip_unreadable``: leave
        partitions that are not readable Parquet out of every partition list (and record them in
        ``unreadable``), for readers that must keep answering; see the module doc."""
        self.root = store_path(root)
        self.skip_unreadable = skip_unreadable
        self.unreadable: dict[StorePath, UnreadablePartition] = {}
        self._checked: dict[StorePath, tuple[int, int, str | None]] = {}  # path -> (size, mtime_ns, problem)

    # -- paths -------------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        """Whether the root is in an object store."""
        return is_remote(self.root)

    def table_dir(self, table: str) -> StorePath:
        return self.root / table

    def table_path(self, table: str) -> StorePath:
        return self.root / f"{table}.parquet"

    def partition_path(self, table: str, partition: str) -> StorePath:
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
        metadata: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Write ``frame`` as the table's file (or ``partition``'s). Only ``metadata`` becomes the file's key-value
        metadata (the frame's own, such as pandas' notes, is dropped): offline/versions.py records versions so."""
        data = to_arrow(frame, schema)
        if metadata:
            data = data.replace_schema_metadata(dict(metadata))
        path = self.partition_path(table, partition) if partition else self.table_path(table)
        size = atomic_write_parquet(data, path, row_group_size)
        return WriteResult(path=path, rows=data.num_rows, schema=data.schema, bytes=size)

    # -- discovery ---------------------------------------------------------------------------
    def partitions(self, table: str) -> list[str]:
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(m.group(1) for p in folder.iterdir() if (m := PARTITION_FILE.match(p.name)))

    def partition_files(self, table: str, start: str | None = None, end: str | None = None) -> list[StorePath]:
        """Existing partition files of ``table`` with ``start <= key <= end`` (inclusive, ISO dates);
        with ``skip_unreadable``, only the readable ones."""
        files = [
            self.partition_path(table, key)
            for key in self.partitions(table)
            if (start is None or key >= start) and (end is None or key <= end)
        ]
        if not self.skip_unreadable:
            return files
        return [path for path in files if self.check_partition(table, path.stem) is None]

    def check_partition(self, table: str, partition: str) -> UnreadablePartition | None:
        """None when the partition file is readable Parquet (or absent); else what is wrong and what to do.

        Checked again only when the file's size or mtime changes, so it costs a stat per file per call.
        """
        path = self.partition_path(table, partition)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.unreadable.pop(path, None)
            return None
        seen = self._checked.get(path)
        if seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns):
            problem = seen[2]
        else:
            problem = parquet_problem(path)
            self._checked[path] = (stat.st_size, stat.st_mtime_ns, problem)
            if problem is not None:
                log.warning("offline store: %s", UnreadablePartition(table, partition, path, problem).message)
        if problem is None:
            self.unreadable.pop(path, None)
            return None
        found = UnreadablePartition(table, partition, path, problem)
        self.unreadable[path] = found
        return found

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

        With no range the partition glob is read (with ``skip_unreadable``, the list of readable files); with a
        range, the list of files in it. Both are passed as parameters. With no file at all, an empty relation of ``schema`` (required then).
        """
        if start is None and end is None and not self.skip_unreadable and self.partitions(table):
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
        return read_parquet(path)

    # -- retention ---------------------------------------------------------------------------
    def prune(self, table: str, keep_days: int, today: dt.date) -> list[StorePath]:
        """Delete partitions of ``table`` older than ``keep_days`` before ``today``; return them."""
        cutoff = (today - dt.timedelta(days=keep_days)).isoformat()
        removed = [p for p in self.partition_files(table) if p.stem < cutoff]
        for path in removed:
            path.unlink()
        return removed

    def prune_all(self, keep_days: int, today: dt.date) -> dict[str, list[StorePath]]:
        """Apply the retention setting to every partitioned table, and delete the stale temp files of killed
        writes in every table folder; return what was deleted per table."""
        removed = {table: self.prune(table, keep_days, today) for table in list(self.tables())}
        local = self.root if isinstance(self.root, Path) and self.root.is_dir() else None  # object stores have none
        folders = {p.parent for p in local.rglob(".*.tmp") if TEMP_FILE.match(p.name)} if local else set()
        for folder in sorted(folders):
            table = relative_key(folder, self.root)
            removed[table] = [*removed.get(table, []), *clean_stale_temp_files(folder)]
        return {table: paths for table, paths in removed.items() if paths}

    def tables(self) -> Iterable[str]:
        """Every partitioned table (a folder holding partition files) under the root."""
        for folder in sorted({p.parent for p in self.root.rglob("*.parquet") if PARTITION_FILE.match(p.name)}):
            yield relative_key(folder, self.root)


def read_parquet(path: StorePath, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file of the store (``columns`` of it, or all), local or in the object store."""
    file, filesystem = arrow_file(path)
    return pq.read_table(file, columns=columns, filesystem=filesystem)


def parquet_rows(path: StorePath) -> int:
    """The row count in a Parquet file's footer."""
    file, filesystem = arrow_file(path)
    return int(pq.read_metadata(file, filesystem=filesystem).num_rows)


def read_parquet_schema(path: StorePath) -> pa.Schema:
    """The Arrow schema of a Parquet file of the store."""
    file, filesystem = arrow_file(path)
    return pq.read_schema(file, filesystem=filesystem)


def _parse_partition(partition: str) -> dt.date:
    try:
        return dt.date.fromisoformat(partition)
    except (TypeError, ValueError):
        raise ValueError(f"partition keys are ISO dates (YYYY-MM-DD), got {partition!r}") from None
