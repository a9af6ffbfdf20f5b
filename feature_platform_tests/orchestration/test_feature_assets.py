"""Feature snapshot assets materialized in-process on small generated data into tmp_path."""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.definitions import build_defs
from feature_platform.features import activity
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.features.assets import ShardResult, merge_shard_results
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform_tests.helpers import copy_tree

defs = build_defs()

END = dt.date(2025, 3, 20)
EVERY = [*defs.assets]
FAMILY_KEYS = [C.USER_ACTIVITY_FEATURES, C.LEAD_FEATURES, C.ENGAGEMENT_FEATURES, C.PROFILE_FEATURES,
               C.REVIEW_FEATURES, C.AFFINITY_FEATURES, C.LIFETIME_FEATURES]


FIRST = END - dt.timedelta(days=44)


@pytest.fixture(scope="module")
def landed_tiles(tmp_path_factory):
    """150 users x 45 days of sample data, landed as raw partitions and tiles (one in-process run)."""
    root = tmp_path_factory.mktemp("features")
    generate(GeneratorConfig(users=150, days=45, end_date=END, seed=3), root / "src")
    resources = local_resources(data_dir=str(root / "data"), raw_dir=str(root / "src"),
                                              now_utc="2025-03-21T03:00:00")
    result = dg.materialize(EVERY, selection=dg.AssetSelection.groups(C.GROUP_RAW, C.GROUP_TILES),
                            resources=resources,
                            instance=dg.DagsterInstance.ephemeral(),
                            tags={RANGE_START_TAG: FIRST.isoformat(), RANGE_END_TAG: END.isoformat()})
    assert result.success
    return root, resources


def _features_run(resources, start: str, end: str, groups=(C.GROUP_FEATURES,), **kwargs):
    return dg.materialize(EVERY, selection=dg.AssetSelection.groups(*groups), resources=resources,
                          instance=dg.DagsterInstance.ephemeral(),
                          tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, **kwargs)


def _bytes_of(data, day: str) -> dict[str, bytes]:
    """Every tile and snapshot partition of ``day``, by path."""
    files = [*(data / "tiles").glob(f"*/{day}.parquet"), *(data / "features").glob(f"*/{day}.parquet")]
    return {str(p.relative_to(data)): p.read_bytes() for p in files}


def test_a_days_files_do_not_depend_on_how_it_was_computed(landed_tiles):
    """Backfills of [D-10, D] and [D-40, D] and a daily run of D write identical tile and snapshot files."""
    root, resources = landed_tiles
    data, tiled = root / "data", (C.GROUP_TILES, C.GROUP_FEATURES)
    day, middle = END.isoformat(), (END - dt.timedelta(days=5)).isoformat()
    assert _features_run(resources, (END - dt.timedelta(days=10)).isoformat(), day, tiled).success
    short = {d: _bytes_of(data, d) for d in (day, middle)}
    assert len(short[day]) == 6 + 7  # six families' tiles and seven families' snapshots
    assert _features_run(resources, (END - dt.timedelta(days=40)).isoformat(), day, tiled).success
    assert {d: _bytes_of(data, d) for d in (day, middle)} == short
    assert _features_run(resources, day, day, tiled).success
    assert _bytes_of(data, day) == short[day]


def test_a_three_day_backfill_of_every_family_is_one_run_with_passing_checks(landed_tiles):
    root, resources = landed_tiles
    result = _features_run(resources, "2025-03-18", "2025-03-20")
    assert result.success
    registry = load_registry()
    customers = pq.read_table(root / "data" / "raw" / "customers.parquet").num_rows
    for key in FAMILY_KEYS:
        family = next(f for f in registry.families.values() if list(f.asset_path) == key.path)
        mats = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
        assert sorted(m.materialization.partition for m in mats) == ["2025-03-18", "2025-03-19", "2025-03-20"]
        snapshot = pq.read_table(root / "data" / "features" / key.path[1] / "2025-03-20.parquet")
        assert snapshot.schema.remove_metadata().equals(registry.snapshot_schema(family.name))
        assert snapshot.num_rows <= customers
        assert "feature_summary" in mats[0].materialization.metadata
    failed = [(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    assert len(result.get_asset_check_evaluations()) == 3 * len(FAMILY_KEYS)


def test_rerunning_a_partition_writes_identical_bytes(landed_tiles):
    root, resources = landed_tiles
    path = root / "data" / "features" / "lead_features" / "2025-03-19.parquet"
    assert _features_run(resources, "2025-03-19", "2025-03-19").success
    first = path.read_bytes()
    assert _features_run(resources, "2025-03-19", "2025-03-19").success
    assert path.read_bytes() == first


def test_a_family_breaking_a_registry_rule_is_blocked(landed_tiles, monkeypatch):
    _, resources = landed_tiles
    real = activity.snapshots

    def broken(ctx):
        for features in real(ctx):
            yield {**features, "total_events": pa.array([-1] * ctx.n, pa.int64())}

    monkeypatch.setattr(activity, "snapshots", broken)
    result = dg.materialize(EVERY, selection=[C.USER_ACTIVITY_FEATURES], resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), partition_key="2025-03-20", raise_on_error=False)
    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed.check_name == C.CHECK_SNAPSHOT_VALUES
    assert "total_events: below_range" in failed.description


def test_feature_assets_read_tiles_over_their_lookback_and_tiles_read_one_raw_day():
    graph = defs.resolve_asset_graph()
    for key in FAMILY_KEYS:
        node = graph.get(key)
        assert node.partitions_def == C.DAILY_PARTITIONS
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert C.RAW_CUSTOMERS in node.parent_keys
        assert C.RAW_EVENTS not in node.parent_keys  # events reach snapshots only through tiles
    for key in C.TILE_KEYS:
        tiles = defs.get_assets_def(key)
        assert graph.get(key).group_name == C.GROUP_TILES
        assert isinstance(tiles.get_partition_mapping(C.RAW_EVENTS), dg.IdentityPartitionMapping | type(None))
    assert graph.get(C.PROFILE_FEATURES).parent_keys == {C.RAW_CUSTOMERS}  # no time window, no tiles
    engagement = defs.get_assets_def(C.ENGAGEMENT_FEATURES).get_partition_mapping(C.TILES_ENGAGEMENT)
    assert engagement.start_offset == -29  # a 30-day family reads 30 days of tiles
    lead = defs.get_assets_def(C.LEAD_FEATURES)
    mapping = lead.get_partition_mapping(C.TILES_LEAD)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset == -89
    # a late event on day X makes snapshots X .. X+89 stale
    downstream = mapping.get_downstream_partitions_for_partitions(
        C.DAILY_PARTITIONS.empty_subset().with_partition_keys(["2025-01-01"]), C.DAILY_PARTITIONS, C.DAILY_PARTITIONS,
    )
    keys = sorted(downstream.get_partition_keys())
    assert (keys[0], keys[-1], len(keys)) == ("2025-01-01", "2025-03-31", 90)
    assert C.REVIEW_TOPIC_MODEL in graph.get(C.TILES_REVIEW).parent_keys
    # reviews count over all history: a late review tile of day X makes every later snapshot stale
    review = defs.get_assets_def(C.REVIEW_FEATURES).get_partition_mapping(C.TILES_REVIEW)
    later = review.get_downstream_partitions_for_partitions(
        C.DAILY_PARTITIONS.empty_subset().with_partition_keys(["2025-01-01"]), C.DAILY_PARTITIONS, C.DAILY_PARTITIONS,
    ).get_partition_keys()
    assert min(later) == "2025-01-01" and "2026-06-30" in later and "2024-12-31" not in later


def test_every_feature_column_is_described_and_paths_render_as_code(landed_tiles):
    """The UI shows the latest materialization's column schema: it carries the registry's descriptions; a
    file pattern in a description is code (markdown would take ``<YYYY-MM-DD>`` for an HTML tag)."""
    _, resources = landed_tiles
    result = _features_run(resources, "2025-03-20", "2025-03-20")
    registry = load_registry()
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key in FAMILY_KEYS:
        (mat,) = [m.materialization for m in result.get_asset_materialization_events() if m.asset_key == key]
        described = {c.name: c.description for c in mat.metadata["dagster/column_schema"].schema.columns}
        features = {n: registry.get_feature(n).description for n in described if n in registry.features}
        assert features and all(features.values()) and all(described[n] == d for n, d in features.items())
        prose = re.sub(r"`[^`]*`", "", specs[key].description)  # outside code spans, no tag-like text
        assert "`features/" in specs[key].description and "<" not in prose


def _family_nodes(shards: int, monkeypatch) -> tuple[list[dg.AssetsDefinition], dict[dg.AssetKey, list[str]]]:
    """The assets of the definitions loaded with FP_SHARDS=``shards`` (as every process of a deployment loads
    them), and each family's ops."""
    monkeypatch.setenv("FP_SHARDS", str(shards))
    loaded = build_defs()
    monkeypatch.delenv("FP_SHARDS")
    ops = {key: [op.name for op in loaded.get_assets_def(key).node_def.iterate_op_defs()] for key in FAMILY_KEYS}
    return [*loaded.assets], ops


def test_one_shard_is_one_step_per_family_and_more_are_a_step_per_shard(monkeypatch):
    """The default (FP_SHARDS=1) pays for no shard steps: each family is the one op of its asset; with 3 shards
    it is the graph of the shards, shard and combine ops. Keys and check names are the same either way."""
    single, single_ops = _family_nodes(1, monkeypatch)
    sharded, sharded_ops = _family_nodes(3, monkeypatch)
    names = {f.asset_path: f.name for f in load_registry().families.values()}
    for key in FAMILY_KEYS:
        family = names[tuple(key.path)]
        assert len(single_ops[key]) == 1 and "_shard" not in single_ops[key][0], single_ops[key]
        assert sorted(sharded_ops[key]) == sorted(f"{family}_{step}" for step in ("combine", "shard", "shards"))
    checks = {a.key: sorted(c.name for c in a.check_specs) for a in single if a.key in FAMILY_KEYS}
    assert checks == {a.key: sorted(c.name for c in a.check_specs) for a in sharded if a.key in FAMILY_KEYS}
    assert {a.key for a in single} == {a.key for a in sharded}


def test_a_run_in_user_shards_writes_the_same_snapshot_files_and_checks_them(landed_tiles, tmp_path, monkeypatch):
    """FP_SHARDS=1: one step per family; FP_SHARDS=3: each family computes three shard steps, combined per day
    into files byte-identical to the unsharded run's; the staged shard files are gone afterwards and the checks
    judged the combined days. Both report the same metadata."""
    root, _ = landed_tiles
    days = (END - dt.timedelta(days=1)).isoformat(), END.isoformat()
    results = {}
    for shards in (1, 3):
        assets, _ = _family_nodes(shards, monkeypatch)
        data = copy_tree(root / "data", tmp_path / f"shards-{shards}")
        resources = local_resources(data_dir=str(data), raw_dir=str(root / "src"), now_utc="2025-03-21T03:00:00",
                                    shards=shards)
        results[shards] = (data, dg.materialize(assets, selection=dg.AssetSelection.groups(C.GROUP_FEATURES),
                                                resources=resources, instance=dg.DagsterInstance.ephemeral(),
                                                tags={RANGE_START_TAG: days[0], RANGE_END_TAG: days[1]}))
        assert results[shards][1].success
    (whole, single), (sharded, run) = results[1], results[3]
    for day in days:
        files = sorted((whole / "features").glob(f"*/{day}.parquet"))
        assert len(files) == len(FAMILY_KEYS)
        for path in files:
            assert (sharded / path.relative_to(whole)).read_bytes() == path.read_bytes(), path
    assert not (sharded / "staging").exists() and not (whole / "staging").exists()
    steps = {shards: {e.step_key for e in result.all_events if e.is_step_success}
             for shards, (_, result) in results.items()}
    assert not [step for step in steps[1] if "_shard" in step or "_combine" in step], sorted(steps[1])
    assert len(steps[3]) - len(steps[1]) == (3 + 2 - 1) * len(FAMILY_KEYS)  # 3 shards, plan and combine for 1 op
    shard_steps = {step for step in steps[3] if "_shard[" in step}
    assert len(shard_steps) == 3 * len(FAMILY_KEYS), sorted(shard_steps)
    for key in FAMILY_KEYS:
        metadata = {shards: next(m for m in result.get_asset_materialization_events() if m.asset_key == key)
                    .materialization.metadata for shards, (_, result) in results.items()}
        assert metadata[1]["shards"].value == 1 and metadata[3]["shards"].value == 3
        assert metadata[1].keys() == metadata[3].keys()
        assert metadata[1]["feature_summary"] == metadata[3]["feature_summary"]
    for result in (single, run):
        evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key in FAMILY_KEYS]
        assert len(evaluations) == 3 * len(FAMILY_KEYS) and all(e.passed for e in evaluations)


def test_the_checks_of_a_sharded_day_see_every_shards_violations_and_rows():
    first = ShardResult(problems={"2025-03-19": ["a: null"], "2025-03-20": []}, rows={"2025-03-19": (2, 2),
                                                                                       "2025-03-20": (3, 3)})
    second = ShardResult(problems={"2025-03-19": ["b: above 1"], "2025-03-20": []}, rows={"2025-03-19": (4, 5),
                                                                                           "2025-03-20": (1, 1)})
    problems, rows = merge_shard_results([first, second], ["2025-03-19", "2025-03-20"])
    assert problems == {"2025-03-19": ["a: null", "b: above 1"], "2025-03-20": []}
    assert rows == {"2025-03-19": (6, 7), "2025-03-20": (4, 4)}
