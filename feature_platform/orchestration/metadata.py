"""Metadata every write reports in Dagster: path, row count, column schema, size.

A single-run backfill over many days records one materialization per partition, each carrying the
same metadata; so a range write reports small range-level facts (rows, files and bytes of the whole
range) and no column schema: repeated in every partition's event, the schema alone made Dagster's
bookkeeping of a 500-day run grow with the square of its days. Feature snapshots declare their
column schema, with the registry's descriptions, on the asset definition instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from feature_platform.offline.store import WriteResult


def table_schema(schema: pa.Schema, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    described = descriptions or {}
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type), description=described.get(f.name))
                                   for f in schema])


def write_metadata(writes: Sequence[WriteResult], descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Row count, schema (columns described by ``descriptions``: the UI shows the latest materialization's
    schema, so it must carry them) and location of one partition file, or range-level facts of many."""
    if not writes:
        return {"dagster/row_count": 0}
    if len(writes) == 1:
        (write,) = writes
        return {
            "dagster/row_count": write.rows,
            "dagster/column_schema": table_schema(write.schema, descriptions),
            "path": dg.MetadataValue.path(str(write.path)),
            "files_written": 1,
            "bytes_written": write.bytes,
        }
    stems = sorted(w.path.stem for w in writes)
    return {
        "range_written": f"{stems[0]} .. {stems[-1]}",
        "range_rows": sum(w.rows for w in writes),
        "path": dg.MetadataValue.path(str(writes[0].path.parent)),
        "files_written": len(writes),
        "bytes_written": sum(w.bytes for w in writes),
    }


SUMMARY = "summary"  # what a person wants to know of a materialization, one line per fact


def summary(*lines: str) -> dict[str, Any]:
    """The ``summary`` metadata entry: lines the asset itself writes about its outcome, which `feature-platform
    run` prints under the asset's name (and the UI shows) without knowing what kind of asset it is."""
    kept = [line for line in lines if line]
    return {SUMMARY: dg.MetadataValue.text("\n".join(kept))} if kept else {}
