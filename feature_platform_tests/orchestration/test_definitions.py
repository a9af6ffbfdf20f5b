"""The Dagster definitions load, and the asset graph has the keys, partitions and checks we promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from feature_platform.definitions import defs
from feature_platform.orchestration import constants as C

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_workspace_validates_with_the_dagster_cli(tmp_path):
    # DAGSTER_HOME set: without it dagster would pick up the repository's PostgreSQL dagster.yaml.
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
