"""FP_SHARDS on Dagster's multiprocess executor: a family's shard steps run in processes of their own, side by
side, and the combined snapshots are the files the unsharded run wrote."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from feature_platform.config import Settings
from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.execution import IN_PROCESS, run_config
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform_tests.helpers import copy_tree

pytestmark = pytest.mark.e2e  # a process per step: each imports the definitions (about 10 s here)

JOB = "activity_snapshots"
DAYS = ("2025-03-11", "2025-03-12")


def activity_job() -> dg.JobDefinition:
    """The activity family's snapshots as a job of their own, rebuilt in every step process from FP_DATA_DIR and
    FP_SHARDS (as a deployment's processes share them)."""
    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.assets(C.USER_ACTIVITY_FEATURES),
                              executor_def=dg.multi_or_in_process_executor)
    return dg.Definitions.merge(build_defs(), dg.Definitions(jobs=[job])).resolve_job_def(JOB)


def test_shard_steps_run_in_processes_of_their_own_and_write_the_unsharded_files(sample_world, tmp_path, monkeypatch):
    data = copy_tree(sample_world.data, tmp_path / "data")
    table = data / "features" / "user_activity_features"
    for day in DAYS:
        (table / f"{day}.parquet").unlink()  # the sample world's unsharded files stay the reference
    monkeypatch.setenv("FP_DATA_DIR", str(data))
    monkeypatch.setenv("FP_SHARDS", "2")
    config = run_config(Settings.from_env())
    assert config != IN_PROCESS and "multiprocess" in config["execution"]["config"]
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(activity_job), instance=instance, run_config=config,
                                tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[1]})
        assert result.success
        starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
    pids = {event.step_key: event.dagster_event.pid for event in starts}
    shard_pids = {pid for step, pid in pids.items() if "_shard[" in step}
    assert len(shard_pids) == 2 and os.getpid() not in shard_pids, pids  # each shard in a process of its own
    for day in DAYS:
        expected = (sample_world.data / "features" / "user_activity_features" / f"{day}.parquet").read_bytes()
        assert (table / f"{day}.parquet").read_bytes() == expected
    assert not (data / "staging").exists()
