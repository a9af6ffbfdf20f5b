"""The recorded first day of the partitions: where the data starts, only ever earlier."""

from __future__ import annotations

import datetime as dt

import pytest

from feature_platform.offline.calendar import (
    DEFAULT_PARTITIONS_START,
    PARTITIONS_RECORD,
    CalendarError,
    partitions_start,
    record_partitions_start,
    recorded_partitions_start,
)


def test_nothing_ingested_yet_means_the_default_start(tmp_path):
    assert recorded_partitions_start(tmp_path) is None
    assert partitions_start(tmp_path) == DEFAULT_PARTITIONS_START


def test_the_start_only_moves_earlier(tmp_path):
    assert record_partitions_start(tmp_path / "data", "1997-01-01") == "1997-01-01"  # creates the folder
    assert record_partitions_start(tmp_path / "data", dt.date(1998, 6, 30)) == "1997-01-01"
    assert record_partitions_start(tmp_path / "data", "1996-12-31") == "1996-12-31"
    assert partitions_start(tmp_path / "data") == "1996-12-31"


@pytest.mark.parametrize("content", ["", "{}", '{"start": "yesterday"}', "[1]"])
def test_a_damaged_record_names_the_file(tmp_path, content):
    (tmp_path / PARTITIONS_RECORD).write_text(content)
    with pytest.raises(CalendarError, match=PARTITIONS_RECORD):
        recorded_partitions_start(tmp_path)


def test_a_bad_day_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        record_partitions_start(tmp_path, "1997-13-01")
    assert not (tmp_path / PARTITIONS_RECORD).exists()
