"""A Dagster instance with a real, small history for the metrics exporter: the CLI's SQLite instance
(`feature-platform`'s dagster.yaml) holding an ingest that passed, one that failed its quarantine check, and a
feature snapshot whose drift check failed. Also the served data directory of the server tests."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import dagster as dg
import pytest

from feature_platform.cli import INSTANCE_YAML
from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import FEATURES_STEP, RANGE_END_TAG, RANGE_START_TAG, RAW_STEP, run_steps
from feature_platform.orchestration.resources import local_resources
from feature_platform_tests.conftest import write_csv
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.serving.conftest import served_data  # noqa: F401  (the server tests' data directory)

DAYS = ("2025-02-01", "2025-02-03")
GOOD_EVENTS = [
    {"event_id": "e1", "user_id": "u1", "event_type": "login", "timestamp": "2025-02-01T08:00:00Z"},
    {"event_id": "e2", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-02-01T08:05:00Z"},
    {"event_id": "e3", "user_id": "u2", "event_type": "page_view", "timestamp": "2025-02-02T23:59:59Z"},
    {"event_id": "e4", "user_id": "u2", "event_type": "page_view", "timestamp": "2025-02-03T00:00:00Z"},
]
BAD_EVENTS = [  # refused: an unknown event type, a missing user
    {"event_id": "e5", "user_id": "u1", "event_type": "teleport", "timestamp": "2025-02-02T10:00:00Z"},
    {"event_id": "e6", "user_id": "", "event_type": "login", "timestamp": "2025-02-03T10:00:00Z"},
]
PASSING_RATE, FAILING_RATE = 0.5, 0.1  # FP_MAX_QUARANTINE_RATE of the two ingests: 2 of 6 rows is 0.33


@dataclasses.dataclass(frozen=True)
class DagsterHistory:
    instance: dg.DagsterInstance
    defs: dg.Definitions
    started: float  # Unix times around the runs
    ended: float
    ingest_success_ended: float  # between the two ingests
    raw_data: Path


@pytest.fixture(scope="session")
def dagster_history(sample_world, tmp_path_factory) -> DagsterHistory:
    root = tmp_path_factory.mktemp("dagster_history")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    with pytest.MonkeyPatch.context() as env:  # the CLI's instance: its storage lives in DAGSTER_HOME
        env.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
    defs = build_defs()
    started = time.time()

    # ingest_raw_inputs, as `feature-platform ingest` runs it: passes at 0.5, fails its blocking check at 0.1
    src = root / "src"
    write_csv(src, "customers", [{"user_id": "u1"}, {"user_id": "u2"}])
    write_csv(src, "events", GOOD_EVENTS + BAD_EVENTS)
    raw_data = root / "raw_data"
    between = 0.0
    for rate in (PASSING_RATE, FAILING_RATE):
        resources = local_resources(raw_data, raw_dir=src, now_utc="2025-02-04T03:00:00", max_quarantine_rate=rate)
        [outcome] = run_steps(defs, [RAW_STEP], instance, resources, *DAYS, echo=lambda _: None)
        assert outcome.success is (rate == PASSING_RATE), outcome
        if rate == PASSING_RATE:
            between = time.time()

    # build_feature_snapshots for the lead family on a copy of the sample world, with drift thresholds so low
    # that the day-to-day change fails the drift check (WARN: the run succeeds)
    data = copy_tree(sample_world.data, root / "features_data")
    job = dg.define_asset_job(FEATURES_STEP.job, selection=dg.AssetSelection.assets(C.LEAD_FEATURES))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FP_DRIFT_PSI_WARN", "1e-9")
        env.setenv("FP_DRIFT_PSI_FAIL", "2e-9")
        resources = local_resources(data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)
        runner = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=resources)
        day = sample_world.end.isoformat()
        result = runner.resolve_job_def(job.name).execute_in_process(
            instance=instance, tags={RANGE_START_TAG: day, RANGE_END_TAG: day}, raise_on_error=False)
    assert result.success
    drift = {e.check_name: e for e in result.get_asset_check_evaluations()}[C.CHECK_FEATURE_DRIFT]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN, drift.description
    return DagsterHistory(instance, defs, started, time.time(), between, raw_data)


def sample_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """An exposition's samples: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]

