"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest

from feature_platform_tests.e2e.sample_run import SampleRun, run_sample
from feature_platform_tests.helpers import build_once


@pytest.fixture(scope="session")
def sample_cli_run(tmp_path_factory: pytest.TempPathFactory) -> SampleRun:
    """The one `feature-platform run` on 150 users x 40 days of the session (shared by the xdist workers)."""
    return SampleRun(build_once(tmp_path_factory, "sample_cli_run", run_sample))
