"""Non-ISO dates and times recognised per file and rewritten to ISO."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.sources.time_formats import detect, to_iso


def read(values: list[str | None]) -> tuple[str | None, list[str | None] | None]:
    column = pa.array(values, pa.string())
    fmt = detect(column)
    return (fmt.describe(), to_iso(column, fmt).to_pylist()) if fmt else (None, None)


@pytest.mark.parametrize(("values", "label", "first"), [
    (["19970101", "19971231"], "YYYYMMDD", "1997-01-01T00:00:00"),
    (["19970101103000"], "YYYYMMDDHHMMSS", "1997-01-01T10:30:00"),
    (["1997/1/5", "1997/01/05 07:03"], "YYYY/MM/DD", "1997-01-05T00:00:00"),
    (["31/01/1997", "01/02/1997"], "DD/MM/YYYY", "1997-01-31T00:00:00"),
    (["01/31/1997", "02/01/1997"], "MM/DD/YYYY", "1997-01-31T00:00:00"),
    (["13.01.1997 08:15"], "DD.MM.YYYY", "1997-01-13T08:15:00"),
    (["03-04-1997", "13-04-1997"], "DD-MM-YYYY", "1997-04-03T00:00:00"),
    (["852076800"], "Unix epoch seconds", "1997-01-01T00:00:00"),
    (["852076800123"], "Unix epoch milliseconds", "1997-01-01T00:00:00.123"),
])
def test_a_format_is_recognised_and_rewritten(values, label, first):
    described, iso = read(values)
    assert described == label
    assert iso[0].startswith(first)


@pytest.mark.parametrize(("values", "label"), [
    (["01/02/1997", "03/04/1997"], "MM/DD/YYYY (day/month order assumed: no value tells)"),
    (["01.02.1997"], "DD.MM.YYYY (day/month order assumed: no value tells)"),
])
def test_without_evidence_the_day_month_order_is_reported_as_assumed(values, label):
    assert read(values)[0] == label


def test_one_format_for_the_whole_file_and_other_values_left_for_validation():
    # 03/04 follows the file's day-first order (proven by 31/01), never re-guessed per row
    described, iso = read(["31/01/1997", "03/04/1997", "05/06/1997", "tomorrow", None, "1997-02-30"])
    assert described == "DD/MM/YYYY"
    assert iso[1].startswith("1997-04-03") and iso[3:] == ["tomorrow", None, "1997-02-30"]


@pytest.mark.parametrize("values", [["1997-01-01", "1997-01-02T10:00:00+02:00"], ["soon", "later"], [None, ""], []])
def test_iso_or_unrecognisable_columns_are_left_alone(values):
    assert read(values) == (None, None)


FORMS = {"%Y%m%d": False, "%d/%m/%Y": True, "%m/%d/%Y": True, "%d.%m.%Y": True, "%Y/%m/%d": False}


@given(st.lists(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2099, 12, 31)),
                min_size=1, max_size=50),
       st.sampled_from(sorted(FORMS)))
def test_rewritten_dates_are_the_dates_written(stamps, form):
    """Against Python's own strftime: a column written in one form reads back as the same days, whenever the
    values prove the day/month order (the ambiguous case is the test above)."""
    days = [s.date() for s in stamps]
    if FORMS[form] and all(d.day <= 12 for d in days):
        days.append(dt.date(1999, 12, 31))  # the evidence a real column of many days has
    described, iso = read([d.strftime(form) for d in days])
    assert described is not None and "assumed" not in described
    assert [dt.date.fromisoformat(v[:10]) for v in iso] == days
