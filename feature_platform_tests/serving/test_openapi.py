"""Schemathesis runs the real server's own OpenAPI spec: generated requests, valid and not, never get a 500.

The schemathesis CLI against `feature-platform serve` in a subprocess (its pytest plugin does not work
with this pytest), with an API key so every route is reached past the auth check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feature_platform_tests.serving.test_server import running_server

KEY = "schemathesis-key"


@pytest.mark.e2e
def test_no_request_the_spec_allows_gets_a_server_error(served_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(served_data, data, ignore=shutil.ignore_patterns("*.sock", "*.settings"))
    with running_server(data, {"FP_API_KEYS": KEY, "FP_MAX_BATCH": "20"}) as base:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json",
             "--header", f"X-API-Key: {KEY}", "--checks", "not_a_server_error", "--max-examples", "25",
             "--seed", "7", "--request-timeout", "30"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout[result.stdout.rfind("SUMMARY"):]
    cases = summary[summary.rfind("generated"):]
    assert " passed" in cases and "failed" not in cases, result.stdout[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    assert selected and tested and selected[1] == selected[2] == tested[1], summary  # every operation ran
