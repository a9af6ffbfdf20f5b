"""Raw assets: the user's inputs (or the sample data), validated, landed and quarantined.

(No ``from __future__ import annotations`` in Dagster files: Dagster inspects the real annotations.)
"""

import datetime as dt

import dagster as dg

from feature_platform.orchestration.constants import (
    DAILY_PARTITIONS,
    GROUP_RAW,
    OWNER_DATA,
    RAW_CUSTOMERS,
    RAW_EVENTS,
    RAW_LISTINGS,
    RAW_REVIEWS,
)
from feature_platform.orchestration.metadata import summary, write_metadata
from feature_platform.orchestration.raw.checks import (
    quarantine_rate_check,
    raw_check_specs,
    rows_balance_check,
    schema_check,
)
from feature_platform.orchestration.resources import ClockResource, OfflineStoreResource, RawSourceResource
from feature_platform.sources import ingest
from feature_platform.sources.ingest import IngestReport
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS, RawTable


def _result(asset_key: dg.AssetKey, table: RawTable, report: IngestReport, max_rate: float) -> dg.MaterializeResult:
    metadata = {
        **write_metadata(report.writes),
        "status": report.status,
        "input_rows": report.input_rows,
        "accepted_rows": report.accepted_rows,
        "quarantined_rows": report.quarantined_rows,
        "quarantine_reasons": dg.MetadataValue.json(report.reasons),
        "source_files": dg.MetadataValue.json(list(report.source_files)),
    }
    if table is EVENTS:
        metadata["deferred_rows"] = report.deferred_rows
    if report.unmapped_columns:  # read by nothing: said once, so a misnamed column is not lost silently
        metadata["unmapped_columns"] = dg.MetadataValue.json(report.unmapped_columns)
    if report.time_formats:
        metadata["time_formats"] = dg.MetadataValue.json(report.time_formats)
    metadata.update(summary(
        *(f"{file}: column(s) {', '.join(columns)} map to nothing and are not read (rename one to an accepted "
          "name to use it; see README, Bring your own data)" for file, columns in report.unmapped_columns.items()),
        *(f"{file}: " + ", ".join(f"{c} read as {f}" for c, f in formats.items())
          for file, formats in report.time_formats.items()),
    ))
    if report.quarantine_writes:
        metadata["quarantine_path"] = dg.MetadataValue.path(str(report.quarantine_writes[0].path.parent))
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata=metadata,
        check_results=[
            schema_check(asset_key, table, report),
            quarantine_rate_check(asset_key, report, max_rate),
            rows_balance_check(asset_key, report),
        ],
    )


def _unpartitioned_raw_asset(asset_key: dg.AssetKey, table: RawTable) -> dg.AssetsDefinition:
    optional = "Optional: when the file is absent an empty table is written and features that need it are null." if table.optional else ""
    derived = " When absent, the user ids of the events input become the customer list (profile columns null)." if table is CUSTOMERS else ""

    @dg.asset(
        key=asset_key,
        group_name=GROUP_RAW,
        kinds={"parquet", "duckdb"},
        owners=[OWNER_DATA],
        check_specs=raw_check_specs(asset_key),
        description=f"{table.description} Validated against the raw contract; bad rows go to "
        f"quarantine/{table.name}.parquet with a reason. {optional}{derived}",
    )
    def _asset(context: dg.AssetExecutionContext, offline: OfflineStoreResource, raw: RawSourceResource,
               clock: ClockResource) -> dg.MaterializeResult:
        settings = offline.settings()
        report = ingest.ingest_table(offline.store(), raw.source_dir(offline), table, clock.now(),
                                     memory_limit_mb=settings.ingest_memory_mb,
                                     landing=LandingLog(settings.landing_dir))
        context.log.info(
            "%s: %s accepted, %s quarantined (%s)", table.name, report.accepted_rows, report.quarantined_rows, report.status
        )
        return _result(asset_key, table, report, raw.max_quarantine_rate)

    return _asset


raw_customers = _unpartitioned_raw_asset(RAW_CUSTOMERS, CUSTOMERS)
raw_reviews = _unpartitioned_raw_asset(RAW_REVIEWS, REVIEWS)
raw_listings = _unpartitioned_raw_asset(RAW_LISTINGS, LISTINGS)


@dg.asset(
    key=RAW_EVENTS,
    group_name=GROUP_RAW,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"parquet", "duckdb"},
    owners=[OWNER_DATA],
    check_specs=raw_check_specs(RAW_EVENTS),
)
def raw_events(context: dg.AssetExecutionContext, offline: OfflineStoreResource, raw: RawSourceResource,
               clock: ClockResource) -> dg.MaterializeResult:
    """User events landed as one Parquet file per UTC day (`raw/events/<YYYY-MM-DD>.parquet`).

    Every row of the input is validated (types, required columns, known event types, timestamps not
    in the future, amounts >= 0, duplicate event ids); refused rows go to quarantine/events/ with a
    reason. A backfill over many days is one run: the input is read and validated once.
    """
    settings = offline.settings()
    days = context.partition_keys
    partitions = context.assets_def.partitions_def
    report = ingest.ingest_events(
        offline.store(),
        raw.source_dir(offline),
        now=clock.now(),
        days=days,
        min_timestamp=dt.datetime.fromisoformat(partitions.get_first_partition_key()),
        last_partition=partitions.get_last_partition_key() or days[-1],
        memory_limit_mb=settings.ingest_memory_mb,
        landing=LandingLog(settings.landing_dir),
    )
    context.log.info(
        "events %s..%s: %s accepted, %s quarantined, %s deferred",
        days[0], days[-1], report.accepted_rows, report.quarantined_rows, report.deferred_rows,
    )
    return _result(RAW_EVENTS, EVENTS, report, raw.max_quarantine_rate)


RAW_ASSETS = [raw_customers, raw_events, raw_reviews, raw_listings]
