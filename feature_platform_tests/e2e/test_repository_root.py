"""The repository root as a Dagster user meets it: `dagster definitions validate` with no variables set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
