"""Ingest: events land by UTC day, refused rows are quarantined, nothing is lost, re-runs are identical."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq

from feature_platform.offline.store import OfflineStore
from feature_platform.sources import ingest
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS
from feature_platform_tests.conftest import NOW, write_csv

MIN_TS = dt.datetime(2020, 1, 1)
DAYS = ["2025-02-01", "2025-02-02", "2025-02-03"]


def _events(store, src, days=DAYS, last="2025-02-28"):
    return ingest.ingest_events(store, src, NOW, days, MIN_TS, last)


def test_events_land_one_file_per_utc_day(tmp_path, tiny_source):
    store = OfflineStore(tmp_path / "data")
    report = _events(store, tiny_source)
    assert store.partitions("raw/events") == DAYS
    assert [pq.read_table(store.partition_path("raw/events", d)).num_rows for d in DAYS] == [2, 1, 1]
    assert report.accepted_rows == 4 and report.quarantined_rows == 0 and report.balanced()
    # 23:59:59 stays on its day, 00:00:00 starts the next one
    day2 = pq.read_table(store.partition_path("raw/events", "2025-02-02")).column("event_id").to_pylist()
    assert day2 == ["e3"]


def test_a_day_without_events_gets_an_empty_partition_with_the_schema(tmp_path, tiny_source):
    store = OfflineStore(tmp_path / "data")
    _events(store, tiny_source, days=["2025-02-10"])
    table = pq.read_table(store.partition_path("raw/events", "2025-02-10"))
    assert table.num_rows == 0 and table.schema.remove_metadata().equals(EVENTS.arrow_schema)


def test_rows_balance_over_all_days_including_unassigned_and_deferred(tmp_path):
    src = tmp_path / "src"
    write_csv(src, "events", [
        {"event_id": "1", "user_id": "u", "event_type": "login", "timestamp": "2025-02-01T00:00:00"},
        {"event_id": "2", "user_id": "u", "event_type": "teleport", "timestamp": "2025-02-01T01:00:00"},
        {"event_id": "3", "user_id": "u", "event_type": "login", "timestamp": "garbage"},
        {"event_id": "4", "user_id": "u", "event_type": "login", "timestamp": "2026-01-01T00:00:00"},
        {"event_id": "5", "user_id": "u", "event_type": "login", "timestamp": "2025-03-01T09:00:00"},  # today
        {"event_id": "1", "user_id": "u", "event_type": "login", "timestamp": "2025-02-02T00:00:00"},
    ])
    store = OfflineStore(tmp_path / "data")
    report = _events(store, src, days=["2025-02-01", "2025-02-02"], last="2025-02-28")
    assert report.input_rows == 6
    assert (report.accepted_rows, report.quarantined_rows, report.deferred_rows) == (1, 4, 1)
    assert report.reasons == {
        "duplicate_event_id": 1, "invalid_timestamp": 1, "timestamp_in_future": 1, "unknown_event_type": 1,
    }
    unassigned = pq.read_table(store.table_dir("quarantine/events") / "unassigned.parquet")
    assert sorted(unassigned.column("reason").to_pylist()) == ["invalid_timestamp", "timestamp_in_future"]
    assert pq.read_table(store.partition_path("quarantine/events", "2025-02-02")).column("reason").to_pylist() == [
        "duplicate_event_id"
    ]


def test_reingest_writes_identical_bytes(tmp_path, tiny_source):
    store = OfflineStore(tmp_path / "data")
    _events(store, tiny_source)
    first = {d: store.partition_path("raw/events", d).read_bytes() for d in DAYS}
    _events(store, tiny_source)
    assert {d: store.partition_path("raw/events", d).read_bytes() for d in DAYS} == first


def test_optional_tables_absent_are_written_empty(tmp_path, tiny_source):
    store = OfflineStore(tmp_path / "data")
    for table in (REVIEWS, LISTINGS):
        report = ingest.ingest_table(store, tiny_source, table, NOW)
        assert report.status == "absent"
        assert pq.read_table(store.table_path(f"raw/{table.name}")).schema.remove_metadata().equals(table.arrow_schema)


def test_transactions_only_dataset_goes_through(tmp_path):
    """customer id, date, amount: customers are derived, every row is a purchase, ids from file+row."""
    src = tmp_path / "src"
    write_csv(src, "transactions_ignored", [{"x": 1}])
    (src / "events.csv").write_text(
        "Customer ID,Date,Amount\nc1,2025-02-02,10.0\nc2,2025-02-01,5\nc1,2025-02-01,7.25\nc3,2025-02-02,-4\n"
        "c4,not a date,1\n"
    )
    store = OfflineStore(tmp_path / "data")
    customers = ingest.ingest_table(store, src, CUSTOMERS, NOW)
    assert customers.status == "derived" and customers.balanced()
    derived = pq.read_table(store.table_path("raw/customers"))
    assert derived.column("user_id").to_pylist() == ["c1", "c2", "c3", "c4"]
    # Known from the day of their first event (c1's rows are out of order); no parseable event -> unknown date.
    assert derived.column("signup_date").to_pylist() == [
        dt.date(2025, 2, 1), dt.date(2025, 2, 1), dt.date(2025, 2, 2), None]
    events = _events(store, src, days=["2025-02-01", "2025-02-02"])
    landed = store.read("raw/events")
    assert set(landed.column("event_type").to_pylist()) == {"purchase"}
    assert sorted(landed.column("event_id").to_pylist()) == ["events.csv:1", "events.csv:2", "events.csv:3"]
    assert events.reasons == {"negative_amount": 1, "invalid_timestamp": 1} and events.balanced()
