"""Metadata every write reports in Dagster: path, row count, column schema, size."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pyarrow as pa

from feature_platform.offline.store import WriteResult


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def write_metadata(writes: Sequence[WriteResult]) -> dict[str, object]:
    """Row count, schema and location of one or many partition files of one table."""
    if not writes:
        return {"dagster/row_count": 0}
    paths = sorted(str(w.path) for w in writes)
    meta: dict[str, object] = {
        "dagster/row_count": sum(w.rows for w in writes),
        "dagster/column_schema": table_schema(writes[0].schema),
        "path": dg.MetadataValue.path(paths[0] if len(paths) == 1 else str(writes[0].path.parent)),
        "files_written": len(writes),
        "bytes_written": sum(w.bytes for w in writes),
    }
    if len(writes) > 1:
        meta["rows_per_partition"] = dg.MetadataValue.json({w.path.stem: w.rows for w in sorted(writes, key=lambda w: w.path)})
    return meta
