"""`feature-platform run` over part of the data, and over data that ended long ago."""

from __future__ import annotations

import re

import pytest

from feature_platform.cli import historical_as_of
from feature_platform_tests.e2e.sample_run import END, cli

pytestmark = pytest.mark.e2e


def test_run_without_enough_history_for_the_label_horizon_says_so(tmp_path):
    result = cli("run", "--users", "50", "--days", "10", "--end-date", END, cwd=tmp_path)
    assert result.returncode == 1
    assert "[4/7] training sets" in result.stdout and "FAILED" in result.stdout
    assert "has a full 30-day label horizon" in result.stdout  # the reason, not a stack trace
    assert "[5/7]" not in result.stdout
    # data that ended long ago is judged as of its own cut-off, not by the wall clock
    assert "historical data (it ends 2025-03-10): staleness and ingestion are judged as of 2025-03-11T00:00:00 UTC" \
        in result.stdout


def test_only_data_that_ends_before_yesterday_is_historical():
    assert historical_as_of("2026-06-30", "2026-12-01") == "2026-07-01T00:00:00"
    assert historical_as_of("2026-12-01", "2026-12-01") is None  # current data: the wall clock


def test_a_run_can_be_limited_to_days_of_the_data(tmp_path):
    result = cli("run", "--users", "30", "--days", "10", "--end-date", END, "--first-day", "2025-03-05",
                 "--last-day", "2025-03-07", "--data-dir", "d", cwd=tmp_path)
    assert "raw data" in result.stdout and "(2025-03-01 .. 2025-03-10); partitions from 2025-03-01 to 2025-03-10; " \
        "this run 2025-03-05 .. 2025-03-07" in result.stdout, result.stdout
    assert re.search(r"raw/events +[0-9,]+ rows, 3 partitions", result.stdout)
    assert sorted(p.name for p in (tmp_path / "d" / "raw" / "events").glob("*.parquet")) == [
        "2025-03-05.parquet", "2025-03-06.parquet", "2025-03-07.parquet"]
    outside = cli("run", "--first-day", "2025-04-01", "--data-dir", "d", cwd=tmp_path)
    assert outside.returncode == 2
    assert "error: the events of" in outside.stdout and "nothing in 2025-04-01 .. 2025-03-10" in outside.stdout
