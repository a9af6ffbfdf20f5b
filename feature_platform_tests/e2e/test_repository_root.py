"""The repository root as a Dagster user meets it: `dagster definitions validate` and `dagster dev` with no
variables set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from feature_platform_tests.helpers import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_dagster_in_the_repository_root_needs_no_variables(tmp_path):
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FP_"))}
    result = subprocess.run([DAGSTER, "definitions", "validate"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
    assert (tmp_path / "data" / "dagster_home").is_dir()  # the try-out instance: where `feature-platform run` records


def test_dagster_dev_in_the_repository_root_serves_the_ui_with_no_variables(tmp_path):
    """`dagster dev`, the first thing a Dagster user types, on a copy of the root's files and no variables:
    the UI answers and lists the code location's jobs; stopped with SIGINT (Ctrl-C), nothing is left."""
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FP_"))}
    port = free_port()
    server = subprocess.Popen([DAGSTER, "dev", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, "dagster dev exited"
            try:
                query = json.dumps({"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes "
                                            "{ jobs { name } } } } }"}).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
                jobs = {job["name"] for node in answer["data"]["repositoriesOrError"]["nodes"] for job in node["jobs"]}
                if jobs:
                    break
            except (OSError, KeyError, TypeError, ValueError):
                pass
            assert time.monotonic() < deadline, "the UI did not list the jobs within 180 s"
            time.sleep(1)
        assert {"ingest_raw_inputs", "build_feature_snapshots", "push_online_store"} <= jobs
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
    # `dagster dev` returns once it has told its webserver, daemon and code server to stop; they finish on
    # their own a moment later, and none may outlive that
    deadline = time.monotonic() + 30
    while (left := _processes_in(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], left


def _processes_in(directory: Path) -> list[str]:
    left = []
    for process in psutil.process_iter(["pid"]):
        try:
            if _cwd(process) == str(directory):
                left.append(" ".join(process.cmdline()))
        except psutil.Error:
            pass
    return left


def _cwd(process: psutil.Process) -> str | None:
    try:
        return process.cwd()
    except (psutil.Error, OSError):
        return None
