"""The real `feature-platform` command in a subprocess, and the one sample run that test_cli.py and
test_ui_models.py share: `feature-platform run` on 150 users x 40 days, done once per test session."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from feature_platform_tests.helpers import copy_tree

END = "2025-03-10"
# 150 users give about 280 out-of-time churn rows and 30 churners among them: the ROC-AUC's standard error
# there (~0.03) is wider than any margin around the default 0.70 floor, so runs on such a sample set the floor
# to what it can show. These tests are about the command; model quality is tested on data with a known
# answer (test_known_answer.py) and on the shop export in test_cli.py.
SMALL_SAMPLE_FLOOR = "0.6"
SHORT_HORIZON = {"FP_CHURN_HORIZON_DAYS": "7",  # 40 days of data: weekly snapshot dates with a 7-day label
                 "FP_MODEL_AUC_FLOOR": SMALL_SAMPLE_FLOOR}


def cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m feature_platform.cli ARGS` in ``cwd``, without this shell's FP_* / DAGSTER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "feature_platform.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@dataclasses.dataclass(frozen=True)
class SampleRun:
    """`feature-platform run --users 150 --days 40 --end-date END` on a fresh directory (``SHORT_HORIZON``).

    ``workdir``: where it ran (``data/`` below it); test_cli.py's idempotence test goes on to run again there,
    and is its only user. ``snapshot``: a copy taken right after the run, for readers (the UI test copies it
    again: `dagster dev` writes to its instance)."""

    root: Path

    @property
    def workdir(self) -> Path:
        return self.root / "workdir"

    @property
    def snapshot(self) -> Path:
        return self.root / "after_first_run"

    @property
    def result(self) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(
            args=["run"], returncode=int((self.root / "returncode").read_text()),
            stdout=(self.root / "stdout").read_text(), stderr=(self.root / "stderr").read_text())


def run_sample(root: Path) -> None:
    """Fill ``root`` for ``SampleRun``; a failed run is recorded too, for the tests to report."""
    workdir = root / "workdir"
    workdir.mkdir()
    result = cli("run", "--users", "150", "--days", "40", "--end-date", END, cwd=workdir, env_extra=SHORT_HORIZON)
    (root / "stdout").write_text(result.stdout)
    (root / "stderr").write_text(result.stderr)
    (root / "returncode").write_text(str(result.returncode))
    copy_tree(workdir, root / "after_first_run")
