"""A CLI run killed with its process (kill -9) would stay STARTED forever: the next CLI run marks it failed.
Files the CLI writes are not world-readable."""

import socket
import stat
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from feature_platform.cli import main
from feature_platform.orchestration.pipeline import HOST_TAG, PID_TAG, fail_abandoned_runs

pytestmark = pytest.mark.faults


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> DagsterRun:
    run = DagsterRun(job_name="__ephemeral_asset_job__", status=dg.DagsterRunStatus.STARTED, tags=tags)
    return instance.add_run(run)


def test_a_run_whose_process_is_gone_is_marked_failed_and_a_live_or_foreign_one_is_not():
    instance = dg.DagsterInstance.ephemeral()
    host = socket.gethostname()
    dead = _started_run(instance, {PID_TAG: str(_dead_pid()), HOST_TAG: host})
    alive = _started_run(instance, {PID_TAG: str(__import__("os").getpid()), HOST_TAG: host})
    elsewhere = _started_run(instance, {PID_TAG: str(_dead_pid()), HOST_TAG: host + "-other"})
    untagged = _started_run(instance, {})
    failed = fail_abandoned_runs(instance)
    assert [run_id for run_id, _ in failed] == [dead.run_id]
    status = {run.run_id: run.status for run in instance.get_runs()}
    assert status[dead.run_id] == dg.DagsterRunStatus.FAILURE
    assert {status[r.run_id] for r in (alive, elsewhere, untagged)} == {dg.DagsterRunStatus.STARTED}
    assert fail_abandoned_runs(instance) == []  # once


def test_files_the_cli_writes_are_not_world_readable(tmp_path):
    import os

    before = os.umask(0o022)
    try:
        assert main(["generate", "--users", "5", "--days", "2", "--end-date", "2025-03-01", "--out",
                     str(tmp_path / "raw")]) == 0
    finally:
        os.umask(before)
    written = [p for p in (tmp_path / "raw").rglob("*")]
    assert written
    assert all(not p.stat().st_mode & stat.S_IRWXO for p in written), [oct(p.stat().st_mode) for p in written]
