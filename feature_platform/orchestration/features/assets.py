"""Feature snapshot assets: one daily-partitioned asset per registry family, plus the topic model.

Each family asset merges its daily tiles (orchestration/tiles/) over its windows with the family's
pure module (features/), writes one Parquet partition per day, and reports schema, row counts, a
per-feature summary and the blocking registry checks. A backfill over many days is a single run that
reads each tile once. With one user shard (FP_SHARDS=1, the default) a family is one step; with more it is
a step per shard (features/shards.py) and a step that combines the shards' days. The shard count is read
when the definitions load (``feature_assets``), so every process of a deployment builds the same steps.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from feature_platform.features.base import family_module
from feature_platform.features.engine import ALL_HISTORY, StoreTiles, compute_snapshots, has_tiles
from feature_platform.features.quality import summarize, summary_markdown, value_violations
from feature_platform.features.shards import Shard, combine
from feature_platform.offline.location import remove_tree
from feature_platform.offline.snapshots import SNAPSHOT_ROW_GROUP
from feature_platform.offline.store import OfflineStore, WriteResult, read_parquet
from feature_platform.offline.versions import snapshot_metadata
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
from feature_platform.registry.registry import Family, Registry, load_registry

# How many days of tiles before D a family's snapshot of D merges: a late tile of day X makes the
# snapshots X .. X+lookback-1 stale. An all-history family (reviews) reads every tile up to D; for
# Dagster's lineage its window is ten years (a date range Dagster can represent).
_ALL_DAYS = 3_650
STAGING = "staging"  # <data>/staging/<family>/<run id>/<shard>/: a sharded run's shard snapshots, until combined


def feature_assets(shards: int) -> list[dg.AssetsDefinition]:
    """Every (non-derived) family's snapshot asset: one step each for one shard, the shard graph for more. The
    job's steps must be the same in every process of a run: they all resolve ``shards`` from FP_SHARDS."""
    build = _family_asset if shards == 1 else _sharded_family_asset
    # Derived families (model outputs) are computed downstream of their models: orchestration/derived/.
    return [build(f) for f in load_registry().families.values() if not f.derived]


def _tile_mapping(family: Family) -> dg.TimeWindowPartitionMapping:
    lookback = family_module(family).LOOKBACK
    return dg.TimeWindowPartitionMapping(start_offset=-((_ALL_DAYS if lookback is ALL_HISTORY else lookback) - 1),
                                         allow_nonexistent_upstream_partitions=True)


def _upstream(family: Family) -> dict[str, dg.AssetIn]:
    # Every snapshot has one row per known user, so every family depends on the customer list.
    upstream = {"customers": dg.AssetIn(key=RAW_CUSTOMERS, dagster_type=dg.Nothing)}
    if has_tiles(family):
        upstream["tiles"] = dg.AssetIn(key=tile_key(family), dagster_type=dg.Nothing,
                                       partition_mapping=_tile_mapping(family))
    return upstream


def _declaration(family: Family, registry: Registry) -> dict[str, Any]:
    """What both shapes of a family's asset declare: key, group, partitions, checks, description, metadata."""
    key = dg.AssetKey(list(family.asset_path))
    features = registry.list_features(family.name)
    merged = f"merged from tiles/{family.name}" if has_tiles(family) else "from the customers table"
    return {
        "key": key,
        "group_name": GROUP_FEATURES,
        "partitions_def": DAILY_PARTITIONS,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "kinds": {"duckdb", "parquet"},
        "owners": [OWNER_DATA],
        "check_specs": snapshot_check_specs(key),
        "description": (
            f"{family.description}\n\nOne row per user known at D, {merged}, one Parquet file per day "
            f"(`features/{family.asset}/<YYYY-MM-DD>.parquet`). Features: {', '.join(f.name for f in features)}."),
        "metadata": {
            "family": family.name,
            "family_version": family.version,
            "registry_version": registry.version,
            "dagster/column_schema": table_schema(registry.snapshot_schema(family.name),
                                                  {f.name: f.description for f in features}),
        },
    }


def _family_asset(family: Family) -> dg.AssetsDefinition:
    """A family's daily snapshots as one step: every user's snapshots of every day of the run, written and
    checked (FP_SHARDS=1: a shard graph's three steps would cost Dagster more than they parallelise)."""
    registry = load_registry()
    declared = _declaration(family, registry)
    deps = [dg.AssetDep(i.key, partition_mapping=i.partition_mapping) for i in _upstream(family).values()
            if i.key is not None]

    @dg.asset(deps=deps, **declared)
    def _asset(context: dg.AssetExecutionContext, offline: OfflineStoreResource) -> dg.MaterializeResult:
        if offline.settings().shards > 1:
            context.log.warning("%s: FP_SHARDS is %s in this run but the definitions were loaded with one shard: "
                                "every user is computed in this one step", family.name, offline.settings().shards)
        store = offline.store()
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        done, last = _compute(registry, family, store, store.read_table("raw/customers"),
                              "/".join(family.asset_path), days)
        context.log.info("%s: wrote %s partitions %s .. %s", family.name, len(done.writes), days[0], days[-1])
        output, checks = _report(registry, family, [done], done.writes, last, days)
        return dg.MaterializeResult(metadata=output, check_results=checks)

    return _asset


def _sharded_family_asset(family: Family) -> dg.AssetsDefinition:
    """A family's daily snapshots as three steps: ``<family>_shards`` names the user shards of the run
    (FP_SHARDS), ``<family>_shard`` computes one shard's snapshots of every day of the run (one step per
    shard: the multiprocess executor runs them side by side, a distributed one on other machines), and
    ``<family>_combine`` writes each day's snapshot, the shards combined, and checks it."""
    registry = load_registry()
    declared = _declaration(family, registry)
    upstream = _upstream(family)
    table = "/".join(family.asset_path)
    schema = registry.snapshot_schema(family.name)

    @dg.op(name=f"{family.name}_shards", ins={name: dg.In(dg.Nothing) for name in upstream},
           out=dg.DynamicOut(int), description="The user shards of this run (FP_SHARDS).")
    def plan(context: dg.OpExecutionContext, offline: OfflineStoreResource) -> Iterator[dg.DynamicOutput[int]]:
        count = offline.settings().shards
        if count > 1:
            context.log.info("%s: %s user shards", family.name, count)
        for index in range(count):
            yield dg.DynamicOutput(index, mapping_key=f"shard_{index}")

    @dg.op(name=f"{family.name}_shard", description="One user shard's snapshots of every day of the run.")
    def compute(context: dg.OpExecutionContext, offline: OfflineStoreResource, index: int) -> ShardResult:
        store, count = offline.store(), offline.settings().shards
        shard = Shard(index, count)
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        customers = shard.select(store.read_table("raw/customers"))
        # One shard writes the snapshots where they belong; several write theirs aside for the combine step.
        target = table if count == 1 else _staging(family, context.run_id, shard)
        result, _ = _compute(registry, family, store, customers, target, days)
        if count > 1:
            context.log.info("%s %s: %s users, %s days", family.name, shard, customers.num_rows, len(days))
        return result

    @dg.op(name=f"{family.name}_combine",
           out={"result": dg.Out(dg.Nothing),
                **{spec.name: dg.Out(dg.Nothing, is_required=False) for spec in declared["check_specs"]}},
           description="Each day's snapshot from its shards, written and checked.")
    def combine_shards(context: dg.OpExecutionContext, offline: OfflineStoreResource,
                       shards: list[ShardResult]) -> Iterator[dg.Output | dg.AssetCheckResult]:
        store = offline.store()
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        if len(shards) == 1:
            (done,) = shards
            writes, last = done.writes, read_parquet(done.writes[-1].path)
        else:
            writes, last = [], None
            for day in days:
                parts = [read_parquet(part.write_for(day).path) for part in shards]
                # Parquet names a map's entries after its column when read back: the registry's types again
                last = combine(parts).cast(schema)
                writes.append(store.write(table, last, partition=day.isoformat(), metadata=snapshot_metadata(family),
                                          row_group_size=SNAPSHOT_ROW_GROUP))
            staged = store.root / STAGING / family.name / context.run_id
            remove_tree(staged)
            for folder in (staged.parent, staged.parent.parent):  # gone too once no other run stages there
                with contextlib.suppress(OSError):
                    if isinstance(folder, Path):  # an object store has no empty folders
                        folder.rmdir()
        context.log.info("%s: wrote %s partitions %s .. %s", family.name, len(writes), days[0], days[-1])
        output, checks = _report(registry, family, shards, writes, last, days)
        yield dg.Output(None, "result", metadata=output)
        yield from checks

    @dg.graph_asset(ins=upstream, **declared)
    def _asset(**inputs: Any) -> Any:
        return combine_shards(plan(**inputs).map(compute).collect())

    return _asset


@dataclass
class ShardResult:
    """What one shard step wrote (a partition per day), the registry-rule violations it found per day, and per
    day its (rows written, users known)."""

    writes: list[WriteResult] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)

    def write_for(self, day: dt.date) -> WriteResult:
        return next(w for w in self.writes if w.path.stem == day.isoformat())


def _compute(registry: Registry, family: Family, store: OfflineStore, customers: pa.Table, target: str,
             days: list[dt.date]) -> tuple[ShardResult, pa.Table]:
    """The snapshots of ``customers`` (all users, or one shard's) for ``days``, written under ``target``; and
    the last day's snapshot."""
    features = registry.list_features(family.name)
    result, last = ShardResult(), None
    for day, snapshot, known_users in compute_snapshots(registry, family, customers, StoreTiles(store), days):
        result.writes.append(store.write(target, snapshot, partition=day.isoformat(), row_group_size=SNAPSHOT_ROW_GROUP,
                                         metadata=snapshot_metadata(family)))  # its family version
        result.problems[day.isoformat()] = [str(v) for v in value_violations(snapshot, features)]
        result.rows[day.isoformat()] = (snapshot.num_rows, known_users)
        last = snapshot
    if last is None:
        raise ValueError(f"{family.name}: a run without days to compute")
    return result, last


def _report(registry: Registry, family: Family, shards: list[ShardResult], writes: list[WriteResult],
            last: pa.Table, days: list[dt.date]) -> tuple[dict[str, Any], list[dg.AssetCheckResult]]:
    """The materialization's metadata and the blocking checks of the days written (``last``: the last day's
    snapshot, summarised), however many shards computed them."""
    key = dg.AssetKey(list(family.asset_path))
    features = registry.list_features(family.name)
    problems, rows = merge_shard_results(shards, [day.isoformat() for day in days])
    metadata = {
        **write_metadata(writes, {f.name: f.description for f in features}),
        "family_version": family.version,
        "computation_fingerprint": family_fingerprint(family),
        "shards": len(shards),
        "feature_summary": dg.MetadataValue.md(
            f"Snapshot {days[-1]}:\n\n{summary_markdown(summarize(last, features))}"),
    }
    checks = [schema_result(key, registry.snapshot_schema(family.name), writes),
              values_result(key, problems, len(writes)),
              rows_result(key, rows)]
    return metadata, checks


def merge_shard_results(shards: list[ShardResult], days: list[str]) -> tuple[dict[str, list[str]],
                                                                            dict[str, tuple[int, int]]]:
    """Per day, every shard's registry-rule violations, and the rows written and users known summed over the
    shards: what the checks judge of the combined snapshot."""
    problems = {day: [found for part in shards for found in part.problems.get(day, [])] for day in days}
    rows = {day: (sum(part.rows[day][0] for part in shards), sum(part.rows[day][1] for part in shards))
            for day in days}
    return problems, rows


def _staging(family: Family, run_id: str, shard: Shard) -> str:
    """Where a shard step of a sharded run writes its snapshots until the combine step has read them."""
    return f"{STAGING}/{family.name}/{run_id}/shard-{shard.index:04d}-of-{shard.count:04d}"
