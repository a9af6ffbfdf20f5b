"""Feature snapshot assets: one daily-partitioned asset per registry family, plus the topic model.

Each family asset merges its daily tiles (orchestration/tiles/) over its windows with the family's
pure module (features/), writes one Parquet partition per day, and reports schema, row counts, a
per-feature summary and the blocking registry checks. A backfill over many days is a single run that
reads each tile once.
"""

import datetime as dt

import dagster as dg

from feature_platform.features.base import family_module
from feature_platform.features.engine import ALL_HISTORY, StoreTiles, compute_snapshots, has_tiles
from feature_platform.features.quality import summarize, summary_markdown, value_violations
from feature_platform.orchestration.constants import (
    DAILY_PARTITIONS,
    GROUP_FEATURES,
    OWNER_DATA,
    RAW_CUSTOMERS,
)
from feature_platform.orchestration.features.checks import (
    rows_result,
    schema_result,
    snapshot_check_specs,
    values_result,
)
from feature_platform.orchestration.metadata import table_schema, write_metadata
from feature_platform.orchestration.resources import OfflineStoreResource
from feature_platform.orchestration.tiles.assets import tile_key
from feature_platform.registry.fingerprint import family_fingerprint
from feature_platform.registry.registry import Family, load_registry

# How many days of tiles before D a family's snapshot of D merges: a late tile of day X makes the
# snapshots X .. X+lookback-1 stale. An all-history family (reviews) reads every tile up to D; for
# Dagster's lineage its window is ten years (a date range Dagster can represent).
_ALL_DAYS = 3_650


def _tile_dep(family: Family) -> dg.AssetDep:
    lookback = family_module(family).LOOKBACK
    return dg.AssetDep(tile_key(family), partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-((_ALL_DAYS if lookback is ALL_HISTORY else lookback) - 1),
        allow_nonexistent_upstream_partitions=True))


def _family_asset(family: Family) -> dg.AssetsDefinition:
    registry = load_registry()
    key = dg.AssetKey(list(family.asset_path))
    features = registry.list_features(family.name)
    # Every snapshot has one row per known user, so every family depends on the customer list.
    deps = [dg.AssetDep(RAW_CUSTOMERS), *([_tile_dep(family)] if has_tiles(family) else [])]
    merged = f"merged from tiles/{family.name}" if has_tiles(family) else "from the customers table"
    description = (
        f"{family.description}\n\nOne row per user known at D, {merged}, one Parquet file per day "
        f"(`features/{family.asset}/<YYYY-MM-DD>.parquet`). Features: {', '.join(f.name for f in features)}."
    )

    @dg.asset(
        key=key,
        group_name=GROUP_FEATURES,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        kinds={"duckdb", "parquet"},
        owners=[OWNER_DATA],
        check_specs=snapshot_check_specs(key),
        description=description,
        metadata={
            "family": family.name,
            "family_version": family.version,
            "registry_version": registry.version,
            "dagster/column_schema": table_schema(registry.snapshot_schema(family.name),
                                                  {f.name: f.description for f in features}),
        },
    )
    def _asset(context: dg.AssetExecutionContext, offline: OfflineStoreResource) -> dg.MaterializeResult:
        store = offline.store()
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        customers = store.read_table("raw/customers")
        writes, problems, rows, last = [], {}, {}, None
        for day, snapshot, known_users in compute_snapshots(registry, family, customers, StoreTiles(store), days):
            writes.append(store.write("/".join(family.asset_path), snapshot, partition=day.isoformat()))
            problems[day.isoformat()] = [str(v) for v in value_violations(snapshot, features)]
            rows[day.isoformat()] = (snapshot.num_rows, known_users)
            last = snapshot
        context.log.info("%s: wrote %s partitions %s .. %s", family.name, len(writes), days[0], days[-1])
        summary = summarize(last, features)
        return dg.MaterializeResult(
            metadata={
                **write_metadata(writes, {f.name: f.description for f in features}),
                "family_version": family.version,
                "computation_fingerprint": family_fingerprint(family),
                "feature_summary": dg.MetadataValue.md(f"Snapshot {days[-1]}:\n\n{summary_markdown(summary)}"),
            },
            check_results=[
                schema_result(key, registry.snapshot_schema(family.name), writes),
                values_result(key, problems, len(writes)),
                rows_result(key, rows),
            ],
        )

    return _asset


# Derived families (model outputs) are computed downstream of their models: orchestration/derived/.
FEATURE_ASSETS = [*(_family_asset(f) for f in load_registry().families.values() if not f.derived)]
