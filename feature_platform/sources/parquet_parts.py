"""Write a Parquet file whose rows arrive in parts, holding one row group at a time.

The bytes are those :meth:`OfflineStore.write` gives the parts concatenated (same writer, same
settings, the same row groups), so a day landed in parts is identical to a day landed at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.offline.location import StorePath, committed
from feature_platform.offline.store import OfflineStore, WriteResult, to_arrow

ROW_GROUP_ROWS = 1024 * 1024  # pyarrow's default row group length, which pq.write_table cuts at


def write_parts(
    store: OfflineStore, table: str, parts: Iterable[pa.Table], schema: pa.Schema, partition: str | None = None
) -> WriteResult:
    """Write ``parts`` (in order, each conformed to ``schema``) to ``table`` (and ``partition``), atomically."""
    path = store.partition_path(table, partition) if partition else store.table_path(table)
    rows = 0

    def conformed() -> Iterable[pa.Table]:
        nonlocal rows
        for part in parts:
            rows += part.num_rows
            yield to_arrow(part, schema)

    size = _atomic_write(conformed(), schema, path)
    return WriteResult(path=path, rows=rows, schema=schema, bytes=size)


def _atomic_write(parts: Iterable[pa.Table], schema: pa.Schema, path: StorePath) -> int:
    """Written whole or not at all (offline/location.py ``committed``): readers see the old file or the new one."""
    with committed(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            pending: list[pa.Table] = []
            size = groups = 0
            for part in parts:
                pending.append(part)
                size += part.num_rows
                while size >= ROW_GROUP_ROWS:  # the row groups write_table would cut
                    rows = pa.concat_tables(pending)
                    writer.write_table(rows.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                    pending, size, groups = [rows.slice(ROW_GROUP_ROWS)], size - ROW_GROUP_ROWS, groups + 1
            if size or not groups:  # an empty table is one empty row group
                rest = pa.concat_tables(pending) if pending else schema.empty_table()
                writer.write_table(rest, row_group_size=ROW_GROUP_ROWS)
        return tmp.stat().st_size
