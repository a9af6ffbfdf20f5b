"""The Dagster-side exporter read from a real instance after real runs (monitoring/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_platform.orchestration import constants as C
from feature_platform.orchestration.monitoring.exporter import ASSET_JOB, exposition, serve
from feature_platform.orchestration.pipeline import FEATURES_STEP, RAW_STEP, STEP_JOBS
from feature_platform_tests.helpers import free_port, wait_until
from feature_platform_tests.monitoring.conftest import (
    BAD_EVENTS,
    FAILING_RATE,
    GOOD_EVENTS,
    sample_values,
    value,
)


def test_runs_per_job_and_status_the_newest_success_and_whether_the_newest_run_failed(dagster_history):
    samples = sample_values(exposition(dagster_history.instance, dagster_history.defs).decode())
    runs = "fp_dagster_runs_total"
    assert value(samples, runs, job=RAW_STEP.job, status="success") == 1
    assert value(samples, runs, job=RAW_STEP.job, status="failure") == 1
    assert value(samples, runs, job=FEATURES_STEP.job, status="success") == 1
    assert value(samples, runs, job=FEATURES_STEP.job, status="failure") == 0
    # every platform job is reported, run or not, and the UI's asset job too
    for job in [*(j.name for j in STEP_JOBS), ASSET_JOB]:
        assert value(samples, runs, job=job, status="canceled") == 0
    assert value(samples, "fp_dagster_last_run_failed", job=RAW_STEP.job) == 1  # the second ingest failed
    assert value(samples, "fp_dagster_last_run_failed", job=FEATURES_STEP.job) == 0
    ingest_success = value(samples, "fp_dagster_last_success_timestamp_seconds", job=RAW_STEP.job)
    assert dagster_history.started <= ingest_success <= dagster_history.ingest_success_ended
    features_success = value(samples, "fp_dagster_last_success_timestamp_seconds", job=FEATURES_STEP.job)
    assert dagster_history.ingest_success_ended <= features_success <= dagster_history.ended
    never = [name for name, labels in samples if dict(labels).get("job") == ASSET_JOB
             and name != runs]
    assert never == []  # no run of it: no last-run series


def test_the_latest_evaluation_of_each_check_with_its_severity(dagster_history):
    samples = sample_values(exposition(dagster_history.instance, dagster_history.defs).decode())
    passed = {dict(labels)["asset"] + ":" + dict(labels)["check"]: (v, dict(labels)["check_severity"])
              for (name, labels), v in samples.items() if name == "fp_asset_check_passed"}
    lead = "/".join(C.LEAD_FEATURES.path)
    assert passed[f"{lead}:{C.CHECK_FEATURE_DRIFT}"] == (0, "warn")
    assert passed[f"{lead}:{C.CHECK_SNAPSHOT_SCHEMA}"] == (1, "error")
    assert passed[f"raw/events:{C.CHECK_QUARANTINE_RATE}"] == (0, "error")  # the second ingest's
    assert passed[f"raw/events:{C.CHECK_ROWS_BALANCE}"] == (1, "error")
    # checks never evaluated (other families, the models, the online push) are absent, not "passed"
    assert f"features/profile_features:{C.CHECK_FEATURE_DRIFT}" not in passed
    assert not any(key.startswith(("models/", "online/")) for key in passed)


def test_quarantine_counts_are_the_latest_ingests_rows_and_threshold(dagster_history):
    samples = sample_values(exposition(dagster_history.instance, dagster_history.defs).decode())
    quarantined = sum(pq.read_table(path).num_rows
                      for path in (dagster_history.raw_data / "quarantine" / "events").glob("*.parquet"))
    assert quarantined == len(BAD_EVENTS)  # what the files hold, the metric must say
    assert value(samples, "fp_ingest_input_rows", asset="raw/events") == len(GOOD_EVENTS) + len(BAD_EVENTS)
    assert value(samples, "fp_ingest_quarantined_rows", asset="raw/events") == quarantined
    assert value(samples, "fp_ingest_quarantine_rate_threshold", asset="raw/events") == FAILING_RATE
    assert value(samples, "fp_ingest_quarantined_rows", asset="raw/customers") == 0
    assert value(samples, "fp_ingest_input_rows", asset="raw/customers") == 2


def test_the_exporter_serves_the_exposition_over_http_and_stops(dagster_history):
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(target=serve, args=(dagster_history.instance, dagster_history.defs, "127.0.0.1", port),
                              kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        body: list[str] = []
        wait_until(lambda: body.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                                       .read().decode()) or True, 30, "the exporter's /metrics")
        samples = sample_values(body[-1])
        assert value(samples, "fp_dagster_runs_total", job=RAW_STEP.job, status="failure") == 1
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


CLI = str(Path(sys.executable).with_name("feature-platform"))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FP_") and k != "DAGSTER_HOME"}


@pytest.mark.e2e
def test_the_cli_command_serves_the_data_directorys_instance_until_interrupted(tmp_path):
    data, port = tmp_path / "data", free_port()
    process = subprocess.Popen([CLI, "metrics-exporter", "--data-dir", str(data), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        body: list[str] = []
        wait_until(lambda: process.poll() is None and body.append(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()) is None,
            120, "feature-platform metrics-exporter's /metrics")
        samples = sample_values(body[-1])
        assert value(samples, "fp_dagster_runs_total", job="daily_snapshots_job", status="failure") == 0
        assert (data / "dagster_home" / "dagster.yaml").is_file()  # the default SQLite instance, as `run` makes it
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, out + err
    assert f"on http://127.0.0.1:{port}/metrics" in out


@pytest.mark.e2e
def test_a_busy_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([CLI, "metrics-exporter", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
                              capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == f"error: 127.0.0.1:{port} is already in use; pick another with --port\n"
    assert done.stderr == ""  # no traceback, no warnings
