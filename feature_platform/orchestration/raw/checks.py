"""Blocking checks on the raw assets: contract schema, quarantine rate, row balance.

The raw assets evaluate these while writing (they hold the ingest report), so the specs are declared
on the asset and the functions here turn a report into check results.
"""

from __future__ import annotations

import dagster as dg

from feature_platform.offline.store import read_parquet_schema
from feature_platform.orchestration.constants import CHECK_QUARANTINE_RATE, CHECK_ROWS_BALANCE, CHECK_SCHEMA
from feature_platform.sources.ingest import IngestReport
from feature_platform.sources.schema import RawTable


def raw_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(CHECK_SCHEMA, asset=asset_key, blocking=True,
                          description="Every written file has exactly the raw contract's columns and types."),
        dg.AssetCheckSpec(CHECK_QUARANTINE_RATE, asset=asset_key, blocking=True,
                          description="Quarantined / input rows stays under FP_MAX_QUARANTINE_RATE."),
        dg.AssetCheckSpec(CHECK_ROWS_BALANCE, asset=asset_key, blocking=True,
                          description="accepted + quarantined + deferred == input: no row is lost."),
    ]


def schema_check(asset_key: dg.AssetKey, table: RawTable, report: IngestReport) -> dg.AssetCheckResult:
    expected = table.arrow_schema
    wrong = {}
    for write in report.writes:
        actual = read_parquet_schema(write.path).remove_metadata()
        if not actual.equals(expected):
            wrong[str(write.path)] = str(actual)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_SCHEMA,
        passed=not wrong,
        metadata={"files_checked": len(report.writes), "mismatches": dg.MetadataValue.json(wrong)},
        description=None if not wrong else f"{len(wrong)} file(s) differ from the {table.name} contract",
    )


def quarantine_rate_check(asset_key: dg.AssetKey, report: IngestReport, max_rate: float) -> dg.AssetCheckResult:
    rate = report.quarantine_rate
    passed = rate <= max_rate
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_QUARANTINE_RATE,
        passed=passed,
        metadata={
            "quarantine_rate": round(rate, 6),
            "threshold": max_rate,
            "quarantined_rows": report.quarantined_rows,
            "input_rows": report.input_rows,
            "reasons": dg.MetadataValue.json(report.reasons),
        },
        description=None if passed else (
            f"{report.quarantined_rows} of {report.input_rows} rows quarantined ({rate:.1%} > {max_rate:.1%}); "
            f"reasons {report.reasons}; see the quarantine files, fix the input or raise FP_MAX_QUARANTINE_RATE"
        ),
    )


def rows_balance_check(asset_key: dg.AssetKey, report: IngestReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=CHECK_ROWS_BALANCE,
        passed=report.balanced(),
        metadata={
            "input_rows": report.input_rows,
            "accepted_rows": report.accepted_rows,
            "quarantined_rows": report.quarantined_rows,
            "deferred_rows": report.deferred_rows,
        },
    )
