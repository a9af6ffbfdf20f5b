"""Blocking checks on feature snapshots: schema, values and row count, all as the registry says.

The family asset evaluates them over every partition it wrote in the run (a backfill writes many),
so the specs are declared on the asset and these functions turn snapshots into check results.
"""

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.offline.store import WriteResult
from feature_platform.orchestration.constants import (
    CHECK_SNAPSHOT_ROWS,
    CHECK_SNAPSHOT_SCHEMA,
    CHECK_SNAPSHOT_VALUES,
)


def snapshot_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(CHECK_SNAPSHOT_SCHEMA, asset=asset_key, blocking=True,
                          description="Columns and types of every written partition equal the registry's."),
        dg.AssetCheckSpec(CHECK_SNAPSHOT_VALUES, asset=asset_key, blocking=True,
                          description="No nulls where the registry forbids them; values inside registry ranges "
                                      "(rates and scores in [0, 1], counts >= 0, hour 0-23, day 0-6); maps sum to 1."),
        dg.AssetCheckSpec(CHECK_SNAPSHOT_ROWS, asset=asset_key, blocking=True,
                          description="One row per user known at the snapshot date."),
    ]


def schema_result(asset_key: dg.AssetKey, expected: pa.Schema, writes: list[WriteResult]) -> dg.AssetCheckResult:
    wrong = {}
    for write in writes:
        actual = pq.read_schema(write.path).remove_metadata()
        if not actual.equals(expected):
            wrong[write.path.stem] = sorted(set(map(str, actual)) ^ set(map(str, expected)))
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_SCHEMA, passed=not wrong,
        metadata={"partitions_checked": len(writes), "mismatches": dg.MetadataValue.json(wrong)},
        description=f"{len(wrong)} partition(s) differ from the registry schema" if wrong else None,
    )


def values_result(asset_key: dg.AssetKey, problems: dict[str, list[str]], checked: int) -> dg.AssetCheckResult:
    """``problems``: partition -> registry-rule violations found in it (see features.quality)."""
    problems = {day: found for day, found in problems.items() if found}
    first = next(iter(problems.items()), None)
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_VALUES, passed=not problems,
        metadata={"partitions_checked": checked, "violations": dg.MetadataValue.json(problems)},
        description=f"{len(problems)} partition(s) break registry rules, e.g. {first[0]}: {first[1][:3]}" if first else None,
    )


def rows_result(asset_key: dg.AssetKey, rows: dict[str, tuple[int, int]]) -> dg.AssetCheckResult:
    """``rows``: partition -> (rows written, users known at that date)."""
    wrong = {day: {"rows": got, "known_users": want} for day, (got, want) in rows.items() if got != want}
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=CHECK_SNAPSHOT_ROWS, passed=not wrong,
        metadata={"partitions_checked": len(rows), "mismatches": dg.MetadataValue.json(wrong)},
        description=f"{len(wrong)} partition(s) do not have one row per known user" if wrong else None,
    )
