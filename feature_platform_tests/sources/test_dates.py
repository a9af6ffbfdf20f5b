"""Which days an events input covers, and why none when none: each cause its own message."""

from __future__ import annotations

import pytest

from feature_platform.sources.dates import source_event_days
from feature_platform.sources.loaders import SourceError

LAST = "2026-11-30"


def days(tmp_path, text: str) -> tuple[str, str]:
    (tmp_path / "events.csv").write_text(text)
    return source_event_days(tmp_path, "1970-01-02", LAST)


def test_the_first_and_last_day_of_any_era(tmp_path):
    assert days(tmp_path, "customer_id,date\n1,19970101\n2,19980630\n3,\n") == ("1997-01-01", "1998-06-30")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("customer_id,amount\n1,3\n", r"required column\(s\) timestamp not found; the columns are "
                 r"\['customer_id', 'amount'\] \(accepted names: timestamp: timestamp, ts,", id="no-timestamp-column"),
    pytest.param("date,amount\n1997-01-01,3\n", r"required column\(s\) user_id not found", id="no-user-column"),
    pytest.param("customer_id,date\n1,soon\n2,1997-13-45\n1,soon\n",
                 r"no event timestamp parses; examples: \['soon', '1997-13-45'\]; formats tried: ISO 8601.*YYYYMMDD",
                 id="unparseable-dates-with-examples"),
    pytest.param("customer_id,date\n1,1969-07-20\n2,2999-01-01\n",
                 r"no event has a timestamp in 1970-01-02 .. .* \(1 before 1970-01-02, 1 after the moment of the run\)",
                 id="out-of-range"),
    pytest.param("customer_id,date\n1,\n", "every event's timestamp is empty", id="empty-dates"),
])
def test_no_usable_day_says_why(tmp_path, text, message):
    with pytest.raises(SourceError, match=message):
        days(tmp_path, text)
