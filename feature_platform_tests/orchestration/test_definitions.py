"""The Dagster definitions load, and the asset graph has the keys, partitions and checks we promise."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
import yaml

from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.registry import load_registry

defs = build_defs()

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_the_workspace_names_one_code_location_whose_definitions_load(tmp_path, monkeypatch):
    """What `dagster definitions validate -w workspace.yaml` checks, in-process: workspace.yaml names this
    module, run from the repository root, and the definitions Dagster finds there load. The real processes
    load it too: `dagster-webserver -w workspace.yaml` and the daemon in e2e/test_production_instance.py."""
    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path))  # not the repository's data/
    [entry] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    location = entry["python_module"]
    assert (REPO / location["working_directory"]).resolve() == REPO
    module = importlib.import_module(location["module_name"])
    loaded = module.defs()
    assert isinstance(loaded, dg.Definitions)
    dg.Definitions.validate_loadable(loaded)
    assert loaded.resolve_asset_graph().get_all_asset_keys() == defs.resolve_asset_graph().get_all_asset_keys()


def test_raw_asset_keys_and_groups():
    graph = defs.resolve_asset_graph()
    raw = {k for k in graph.get_all_asset_keys() if k.path[0] == "raw"}
    assert raw == {C.RAW_CUSTOMERS, C.RAW_EVENTS, C.RAW_REVIEWS, C.RAW_LISTINGS}
    for key in raw:
        node = graph.get(key)
        assert node.group_name == C.GROUP_RAW
        assert C.OWNER_DATA in node.owners


def test_raw_events_uses_the_shared_daily_partitions_and_a_single_run_backfill():
    node = defs.resolve_asset_graph().get(C.RAW_EVENTS)
    assert node.partitions_def == C.DAILY_PARTITIONS
    assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_every_raw_asset_has_blocking_schema_and_quarantine_checks():
    specs = {(s.asset_key, s.name): s for a in defs.assets for s in a.check_specs}
    for key in (C.RAW_CUSTOMERS, C.RAW_EVENTS, C.RAW_REVIEWS, C.RAW_LISTINGS):
        for name in (C.CHECK_SCHEMA, C.CHECK_QUARANTINE_RATE, C.CHECK_ROWS_BALANCE):
            assert specs[(key, name)].blocking, (key, name)


def test_every_registry_family_has_exactly_one_snapshot_asset_at_its_key():
    keys = [key for asset in defs.assets for key in asset.keys]
    for family in load_registry().families.values():
        assert keys.count(dg.AssetKey(list(family.asset_path))) == 1, family.name
    assert list(load_registry().family("derived").asset_path) == C.CHURN_RISK_SCORES.path


def test_the_churn_score_sits_between_the_model_and_the_online_push_with_blocking_checks():
    graph = defs.resolve_asset_graph()
    node = graph.get(C.CHURN_RISK_SCORES)
    assert node.group_name == C.GROUP_DERIVED and node.partitions_def == C.DAILY_PARTITIONS
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.parent_keys == {C.CHURN_MODEL, C.RAW_CUSTOMERS, *C.FEATURE_SNAPSHOTS}
    assert graph.get(C.ONLINE_PUSH).parent_keys == {*C.FEATURE_SNAPSHOTS, C.CHURN_RISK_SCORES}
    specs = {(s.asset_key, s.name): s for a in defs.assets for s in a.check_specs}
    for name in (C.CHECK_SNAPSHOT_SCHEMA, C.CHECK_SNAPSHOT_VALUES, C.CHECK_SNAPSHOT_ROWS):
        assert specs[(C.CHURN_RISK_SCORES, name)].blocking, name


def test_one_lineage_runs_from_raw_events_through_the_model_to_the_online_key_and_never_back():
    graph = defs.resolve_asset_graph()

    ancestors = graph.get_ancestor_asset_keys

    # raw event -> daily tile -> feature snapshots -> training set -> model -> churn_risk_score -> online push
    chain = [C.RAW_EVENTS, C.TILES_LEAD, C.LEAD_FEATURES, C.TRAINING_DATASET, C.CHURN_MODEL, C.CHURN_RISK_SCORES, C.ONLINE_PUSH]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert upstream in graph.get(downstream).parent_keys, (upstream, downstream)
    # the registry tells the same story, down to the raw source
    lineage = load_registry().lineage("churn_risk_score")
    assert lineage.asset == "/".join(C.CHURN_RISK_SCORES.path) and lineage.models == ("/".join(C.CHURN_MODEL.path),)
    assert "/".join(C.RAW_EVENTS.path) in lineage.raw_sources
    # no model input and no training set is downstream of a score: a model never learns from its own output
    for key in (C.TRAINING_DATASET, C.CONTACT_TRAINING_SET, C.CHURN_MODEL, *C.FEATURE_SNAPSHOTS):
        assert C.CHURN_RISK_SCORES not in ancestors(key), key


def test_the_daily_job_covers_the_snapshot_path_and_the_automation_starts_running():
    from feature_platform.orchestration.automation.jobs import DAILY_JOB, DAILY_SELECTION, RETENTION_JOB, RETRAINING_JOB
    from feature_platform.orchestration.automation.sensors import RETRAIN_SENSOR

    daily = defs.resolve_job_def(DAILY_JOB)
    assert daily.partitions_def == C.DAILY_PARTITIONS
    assert DAILY_SELECTION.resolve(defs.resolve_asset_graph()) == {
        C.RAW_EVENTS, *C.RAW_UNPARTITIONED, *C.TILE_KEYS, *C.FEATURE_SNAPSHOTS, *C.DERIVED_SNAPSHOTS, C.ONLINE_PUSH}
    assert defs.resolve_job_def(RETRAINING_JOB) and defs.resolve_job_def(RETENTION_JOB)
    repo = defs.get_repository_def()
    schedules = {s.name: s for s in repo.schedule_defs}
    assert {s.job_name for s in schedules.values()} == {DAILY_JOB, RETRAINING_JOB, RETENTION_JOB}
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules.values())
    assert repo.get_sensor_def(RETRAIN_SENSOR).default_status == dg.DefaultSensorStatus.RUNNING


def test_what_dagster_loads_takes_its_partitions_from_the_data_directorys_record(tmp_path, monkeypatch):
    """Every process that loads the code location (webserver, daemon, run worker) builds the same partitions:
    the first day recorded in FP_DATA_DIR, or the default before anything was ingested."""
    from feature_platform import definitions
    from feature_platform.offline.calendar import DEFAULT_PARTITIONS_START, record_partitions

    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path))
    first = definitions.defs().resolve_asset_graph().get(C.RAW_EVENTS).partitions_def.get_first_partition_key()
    assert first == DEFAULT_PARTITIONS_START
    record_partitions(tmp_path, "1997-01-01")
    for key in (C.RAW_EVENTS, C.TILES_LIFETIME, C.LIFETIME_FEATURES, C.ONLINE_PUSH):
        assert definitions.defs().resolve_asset_graph().get(key).partitions_def.get_first_partition_key() == "1997-01-01"
