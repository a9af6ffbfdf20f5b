"""Validation: every bad-input kind gets its reason; accepted + quarantined == input, always."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.sources import loaders
from feature_platform.sources.schema import CUSTOMERS, EVENT_TYPES, EVENTS, LISTINGS, REVIEWS
from feature_platform.sources.validation import quarantine_schema, validate
from feature_platform_tests.conftest import NOW, write_csv

GOOD_EVENT = {"event_id": "e1", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-02-01T10:00:00Z", "amount": "5"}
GOOD = {
    "customers": {"user_id": "u1", "age": "30", "premium": "yes", "signup_date": "2024-01-01"},
    "events": GOOD_EVENT,
    "reviews": {"review_id": "r1", "user_id": "u1", "rating": "4", "text": "fine", "timestamp": "2025-02-01"},
    "listings": {"listing_id": "l1", "category_id": "cars", "price": "100", "is_premium": "0", "image_count": "3"},
}
TABLES = {"customers": CUSTOMERS, "events": EVENTS, "reviews": REVIEWS, "listings": LISTINGS}


def _validate(tmp_path: Path, table: str, rows: list[dict], now: dt.datetime = NOW):
    write_csv(tmp_path, table, rows)
    return validate(loaders.load(tmp_path, TABLES[table]), now, min_timestamp=dt.datetime(2020, 1, 1))


@pytest.mark.parametrize(
    ("table", "change", "reason"),
    [
        ("events", {"user_id": ""}, "missing_user_id"),
        ("events", {"user_id": "   "}, "missing_user_id"),
        ("events", {"event_id": ""}, "missing_event_id"),
        ("events", {"timestamp": ""}, "missing_timestamp"),
        ("events", {"timestamp": "yesterday-ish"}, "invalid_timestamp"),
        ("events", {"timestamp": "2025-02-30T10:00:00"}, "invalid_timestamp"),
        ("events", {"timestamp": "2030-01-01T00:00:00"}, "timestamp_in_future"),
        ("events", {"timestamp": "2019-12-31T23:59:59"}, "timestamp_before_partitions_start"),
        ("events", {"event_type": "teleport"}, "unknown_event_type"),
        ("events", {"amount": "-0.01"}, "negative_amount"),
        ("events", {"amount": "ten"}, "invalid_amount"),
        ("events", {"amount": "inf"}, "invalid_amount"),
        ("events", {"user_id": "../../etc/passwd"}, "invalid_user_id"),  # ids reads refuse never land
        ("events", {"user_id": "u 1"}, "invalid_user_id"),
        ("events", {"user_id": "u" * 129}, "invalid_user_id"),
        ("events", {"event_id": "e" * 129}, "invalid_event_id"),
        ("events", {"session_id": "s\x1b[31m"}, "invalid_session_id"),
        ("events", {"message_text": "m" * 4_097}, "invalid_message_text"),
        ("customers", {"user_id": "-leading-dash"}, "invalid_user_id"),
        ("reviews", {"user_id": "u/1"}, "invalid_user_id"),
        ("listings", {"listing_id": "l" * 129}, "invalid_listing_id"),
        ("customers", {"age": "130"}, "age_out_of_range"),
        ("customers", {"age": "30.5"}, "invalid_age"),
        ("customers", {"premium": "maybe"}, "invalid_premium"),
        ("customers", {"signup_date": "2031-01-01"}, "signup_date_in_future"),
        ("customers", {"user_id": ""}, "missing_user_id"),
        ("reviews", {"rating": "6"}, "rating_out_of_range"),
        ("reviews", {"rating": "0"}, "rating_out_of_range"),
        ("reviews", {"rating": "4.5"}, "invalid_rating"),
        ("reviews", {"timestamp": "2030-01-01"}, "timestamp_in_future"),
        ("listings", {"price": "-3"}, "negative_price"),
        ("listings", {"image_count": "-1"}, "negative_image_count"),
        ("listings", {"is_premium": "perhaps"}, "invalid_is_premium"),
    ],
)
def test_each_bad_input_kind_is_quarantined_with_its_reason(tmp_path, table, change, reason):
    good = GOOD[table]
    bad = {**good, **change, TABLES[table].key: "bad-1"} if TABLES[table].key not in change else {**good, **change}
    result = _validate(tmp_path, table, [good, bad])
    assert result.input_rows == 2
    assert result.accepted.num_rows == 1
    assert result.quarantined.column("reason").to_pylist() == [reason]
    assert result.quarantined.column("source_row").to_pylist() == [2]
    assert result.accepted.schema.equals(TABLES[table].arrow_schema)
    assert result.quarantined.schema.equals(quarantine_schema(TABLES[table]))


def test_duplicate_event_ids_keep_the_first_valid_row(tmp_path):
    rows = [
        {**GOOD_EVENT, "amount": "-1"},  # invalid: does not claim the id
        {**GOOD_EVENT, "amount": "7"},  # first valid one: kept
        {**GOOD_EVENT, "amount": "8"},  # duplicate
    ]
    result = _validate(tmp_path, "events", rows)
    assert result.accepted.column("amount").to_pylist() == [7.0]
    assert sorted(result.quarantined.column("reason").to_pylist()) == ["duplicate_event_id", "negative_amount"]


def test_timestamps_with_offsets_are_converted_to_utc(tmp_path):
    rows = [
        {**GOOD_EVENT, "event_id": "a", "timestamp": "2025-02-01T01:30:00+02:00"},
        {**GOOD_EVENT, "event_id": "b", "timestamp": "2025-02-01"},
        {**GOOD_EVENT, "event_id": "c", "timestamp": "2025-02-01 10:00:00Z"},
    ]
    result = _validate(tmp_path, "events", rows)
    assert result.accepted.column("timestamp").to_pylist() == [
        dt.datetime(2025, 1, 31, 23, 30), dt.datetime(2025, 2, 1), dt.datetime(2025, 2, 1, 10)
    ]


def test_quarantine_keeps_the_original_text_and_a_detail(tmp_path):
    result = _validate(tmp_path, "events", [{**GOOD_EVENT, "amount": "12,5"}])
    row = result.quarantined.to_pylist()[0]
    assert row["amount"] == "12,5"
    assert row["reason"] == "invalid_amount"
    assert row["detail"] == "amount=12,5"
    assert row["source_file"] == "events.csv"


# --- property: the fast SQL validation equals a slow, obviously-correct reference --------------

def _blank(value: str | None) -> bool:
    return value is None or value.strip() == ""


def _parse_ts(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _parse_amount(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def reference_event_reasons(rows: list[dict], now: dt.datetime, min_ts: dt.datetime) -> list[str | None]:
    """Row-by-row rules in the documented order: missing, unparseable, value rules, duplicates."""
    reasons: list[str | None] = []
    for row in rows:
        reason = None
        for col in ("event_id", "user_id", "event_type", "timestamp"):
            if reason is None and _blank(row[col]):
                reason = f"missing_{col}"
        if reason is None and _parse_ts(row["timestamp"]) is None:
            reason = "invalid_timestamp"
        if reason is None and not _blank(row["amount"]) and _parse_amount(row["amount"]) is None:
            reason = "invalid_amount"
        if reason is None:
            ts = _parse_ts(row["timestamp"])
            amount = None if _blank(row["amount"]) else _parse_amount(row["amount"])
            if len(row["event_id"]) > 128 or re.search(r"[\x00-\x1f\x7f]", row["event_id"]):
                reason = "invalid_event_id"
            elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}", row["user_id"]):
                reason = "invalid_user_id"
            elif row["event_type"] not in EVENT_TYPES:
                reason = "unknown_event_type"
            elif ts > now:
                reason = "timestamp_in_future"
            elif ts < min_ts:
                reason = "timestamp_before_partitions_start"
            elif amount is not None and amount < 0:
                reason = "negative_amount"
        reasons.append(reason)
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if reasons[i] is None:
            if row["event_id"] in seen:
                reasons[i] = "duplicate_event_id"
            seen.add(row["event_id"])
    return reasons


timestamps = st.one_of(
    st.datetimes(min_value=dt.datetime(2019, 12, 30), max_value=dt.datetime(2025, 3, 3)).map(
        lambda d: d.replace(microsecond=0).isoformat()
    ),
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2025, 3, 3)).map(
        lambda d: d.replace(microsecond=0).isoformat() + "+05:30"
    ),
    st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2025, 3, 3)).map(str),
    st.sampled_from(["", "not a time", "2025-13-01T00:00:00"]),
)
event_rows = st.lists(
    st.fixed_dictionaries({
        "event_id": st.sampled_from(["e1", "e2", "e3", "e4", "", " "]),
        "user_id": st.one_of(st.sampled_from(["u1", "u2", "", "  ", "../x", "u 1", "u1@x.io", "u" * 129]),
                             st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00\"", exclude_categories=("Cs",)),
                                     max_size=8).map(lambda t: "u" + t).filter(lambda t: t.strip() == t)),
        "event_type": st.sampled_from(["purchase", "page_view", "login", "teleport", ""]),
        "timestamp": timestamps,
        "amount": st.sampled_from(["", "0", "3.5", "-2", "abc", "1e3", "nan"]),
    }),
    min_size=1,
    max_size=25,
)


@given(rows=event_rows)
def test_validation_matches_reference_and_loses_no_row(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("prop")
    result = _validate(folder, "events", rows)
    assert result.accepted.num_rows + result.quarantined.num_rows == result.input_rows == len(rows)

    expected = reference_event_reasons(rows, NOW, dt.datetime(2020, 1, 1))
    got: list[str | None] = [None] * len(rows)
    for source_row, reason in zip(
        result.quarantined.column("source_row").to_pylist(), result.quarantined.column("reason").to_pylist(), strict=True
    ):
        got[source_row - 1] = reason
    assert got == expected
    ids = result.accepted.column("event_id").to_pylist()
    assert len(ids) == len(set(ids))
