"""The recorded first day of the partitions: where the data starts, only ever earlier."""

from __future__ import annotations

import datetime as dt

import pytest

from feature_platform.offline.calendar import (
    DEFAULT_PARTITIONS_START,
    PARTITIONS_RECORD,
    CalendarError,
    partitions_range,
    record_partitions,
    recorded_partitions,
)


def test_nothing_ingested_yet_means_the_default_start(tmp_path):
    assert recorded_partitions(tmp_path) is None
    assert partitions_range(tmp_path) == (DEFAULT_PARTITIONS_START, None)


def test_the_start_only_moves_earlier(tmp_path):
    assert record_partitions(tmp_path / "data", "1997-01-01")[0] == "1997-01-01"  # creates the folder
    assert record_partitions(tmp_path / "data", dt.date(1998, 6, 30))[0] == "1997-01-01"
    assert record_partitions(tmp_path / "data", "1996-12-31")[0] == "1996-12-31"
    assert partitions_range(tmp_path / "data")[0] == "1996-12-31"


@pytest.mark.parametrize("content", ["", "{}", '{"start": "yesterday"}', "[1]"])
def test_a_damaged_record_names_the_file(tmp_path, content):
    (tmp_path / PARTITIONS_RECORD).write_text(content)
    with pytest.raises(CalendarError, match=PARTITIONS_RECORD):
        recorded_partitions(tmp_path)


def test_a_bad_day_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        record_partitions(tmp_path, "1997-13-01")
    assert not (tmp_path / PARTITIONS_RECORD).exists()


def test_historical_data_records_its_last_day_which_only_moves_later_and_current_data_leaves_it_open(tmp_path):
    assert partitions_range(tmp_path) == (DEFAULT_PARTITIONS_START, None)
    assert record_partitions(tmp_path, "1997-01-01", "1998-06-30") == ("1997-01-01", "1998-06-30")
    assert record_partitions(tmp_path, "1997-03-01", "1998-01-31") == ("1997-01-01", "1998-06-30")  # never shrinks
    assert record_partitions(tmp_path, "1997-01-01", "1998-07-31") == ("1997-01-01", "1998-07-31")
    assert record_partitions(tmp_path, "1996-12-31", "1998-07-31") == ("1996-12-31", "1998-07-31")
    assert partitions_range(tmp_path) == ("1996-12-31", "1998-07-31")
    assert record_partitions(tmp_path, "1997-01-01", None) == ("1996-12-31", None)  # data up to yesterday: open
    assert record_partitions(tmp_path, "1997-01-01", "1998-06-30") == ("1996-12-31", None)  # and open it stays


def test_historical_partitions_end_on_the_data_s_last_day():
    from feature_platform.orchestration.constants import daily_partitions

    keys = daily_partitions("1998-06-28", "1998-06-30").get_partition_keys()
    assert keys == ["1998-06-28", "1998-06-29", "1998-06-30"]
