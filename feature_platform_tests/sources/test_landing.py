"""The landing log: per-row rejection reasons, durability before the answer, torn lines, concurrent
appenders, cursors, and the daily ingest taking the landed events (counted once)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_platform.offline.store import OfflineStore
from feature_platform.sources import ingest
from feature_platform.sources.event_records import read_event_file, validate_event_records
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.loaders import SourceError
from feature_platform.sources.schema import EVENTS
from feature_platform_tests.conftest import NOW, write_csv

OK = {"event_id": "e1", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-03-01T09:00:00Z", "amount": 12.5}
LANDED_AT = dt.datetime(2025, 3, 1, 12, 0, 5)


def event(**changes) -> dict:
    record = {**OK, **changes}
    return {k: v for k, v in record.items() if v is not ...}  # `...` removes the field


@pytest.mark.parametrize(("record", "reason", "detail"), [
    (event(event_type="teleport"), "unknown_event_type", "event_type=teleport"),
    (event(user_id=...), "missing_user_id", "user_id is required"),
    (event(event_id=None), "missing_event_id", "event_id is required"),
    (event(event_type=...), "missing_event_type", "event_type is required"),  # no default type for JSON
    (event(timestamp="2025-03-01T12:00:01"), "timestamp_in_future", "timestamp=2025-03-01T12:00:01"),
    (event(timestamp="yesterday"), "invalid_timestamp", "timestamp=yesterday"),
    (event(timestamp=1740819600), "invalid_timestamp", "timestamp: expected an ISO 8601 timestamp string"),
    (event(amount="12,5"), "invalid_amount", "amount=12,5"),
    (event(amount=-1), "negative_amount", "amount=-1"),
    (event(amount=True), "invalid_amount", "amount: expected a number, got boolean"),
    (event(user_id={"id": 1}), "invalid_user_id", "user_id: expected text, got object"),
    (event(customer_id="u1"), "unknown_field", "unknown field(s) customer_id"),
    # `events push` and the daily ingest refuse the ids and texts the server refuses to read back
    (event(user_id="../../etc/passwd"), "invalid_user_id", "user_id=../../etc/passwd"),
    (event(user_id="u1\nu2"), "invalid_user_id", "user_id=u1\nu2"),
    (event(event_id="e" * 129), "invalid_event_id", "event_id=eee"),
    (event(event_type="message_in", message_text="m" * 4_097), "invalid_message_text", "message_text=mmm"),
    ("not an event", "not_an_object", "expected a JSON object"),
])
def test_each_bad_record_is_rejected_with_its_reason_naming_the_field(record, reason, detail):
    accepted, rejected = validate_event_records([OK | {"event_id": "good"}, record], NOW)
    assert accepted.column("event_id").to_pylist() == ["good"]
    assert len(rejected) == 1 and rejected[0]["index"] == 1 and rejected[0]["reasons"] == [reason]
    assert rejected[0]["detail"].startswith(detail), rejected[0]["detail"]


def test_json_problems_are_all_reported_and_the_event_id_is_echoed():
    _, [entry] = validate_event_records([event(extra=1, amount=[1], event_id=7)], NOW)
    assert entry["event_id"] == "7" and entry["reasons"] == ["unknown_field", "invalid_amount"]


def test_accepted_rows_are_typed_like_the_contract_with_offsets_converted_to_utc():
    records = [event(event_id=17, timestamp="2025-03-01T11:00:00+02:00", amount="3", message_text="a\nb")]
    accepted, rejected = validate_event_records(records, dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC))
    assert rejected == [] and accepted.schema.equals(EVENTS.arrow_schema)
    row = accepted.to_pylist()[0]
    assert (row["event_id"], row["timestamp"], row["amount"], row["message_text"]) == (
        "17", dt.datetime(2025, 3, 1, 9), 3.0, "a\nb")


def test_a_duplicate_in_the_batch_or_in_the_log_is_rejected_and_never_landed_twice(tmp_path):
    log = LandingLog(tmp_path)
    accepted, rejected = validate_event_records([OK, event(amount=99.0)], NOW, landing=log)
    assert accepted.num_rows == 1 and rejected[0]["reasons"] == ["duplicate_event_id"]
    assert "earlier in this batch" in rejected[0]["detail"]
    assert log.append(accepted, LANDED_AT).accepted == 1
    again, rejected = validate_event_records([OK, event(event_id="e2")], NOW, landing=log)
    assert again.column("event_id").to_pylist() == ["e2"]
    assert rejected == [{"index": 0, "event_id": "e1", "reasons": ["duplicate_event_id"],
                         "detail": "event_id=e1 was already landed (sent before?)"}]
    # a racing sender validated without the log: the append itself refuses the landed id
    racing, _ = validate_event_records([OK, event(event_id="e3")], NOW)
    result = log.append(racing, LANDED_AT)
    assert (result.accepted, result.duplicates) == (1, ("e1",))
    assert sorted(log.read()[0].column("event_id").to_pylist()) == ["e1", "e3"]


def test_append_writes_json_lines_in_the_arrival_day_file_and_read_follows_a_cursor(tmp_path):
    log = LandingLog(tmp_path)
    first, _ = validate_event_records([OK, event(event_id="e2", user_id="u2")], NOW)
    result = log.append(first, LANDED_AT)
    assert result.path == tmp_path / "events" / "2025-03-01.jsonl" and result.start_offset == 0
    assert result.end_offset == result.path.stat().st_size
    line = json.loads(result.path.read_text().splitlines()[0])
    assert line["timestamp"] == "2025-03-01T09:00:00.000000" and line["landed_at"] == "2025-03-01T12:00:05.000000"
    table, cursor = log.read()
    assert table.schema.equals(EVENTS.arrow_schema) and table.num_rows == 2
    assert cursor == {"2025-03-01.jsonl": result.end_offset}
    second, _ = validate_event_records([event(event_id="e3")], dt.datetime(2025, 3, 2))
    log.append(second, LANDED_AT + dt.timedelta(days=1))
    newer, cursor = log.read(cursor)
    assert newer.column("event_id").to_pylist() == ["e3"] and set(cursor) == {"2025-03-01.jsonl", "2025-03-02.jsonl"}
    assert log.read(cursor)[0].num_rows == 0
    assert log.events(landed_since=LANDED_AT + dt.timedelta(hours=1)).column("event_id").to_pylist() == ["e3"]
    assert log.events(user_ids={"u2"}).column("event_id").to_pylist() == ["e2"]


def test_a_torn_last_line_is_ignored_by_readers_and_cut_by_the_next_append(tmp_path):
    log = LandingLog(tmp_path)
    log.append(validate_event_records([OK], NOW)[0], LANDED_AT)
    path = log.path_for(LANDED_AT.date())
    with open(path, "ab") as fh:
        fh.write(b'{"event_id":"torn","user_id":"u1","event_ty')  # a writer died mid-line
    table, cursor = log.read()
    assert table.column("event_id").to_pylist() == ["e1"] and cursor[path.name] < path.stat().st_size
    log.append(validate_event_records([event(event_id="e2")], NOW)[0], LANDED_AT)
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["e1", "e2"]
    assert log.read(cursor)[0].column("event_id").to_pylist() == ["e2"]


APPEND_THEN_DIE = textwrap.dedent("""
    import datetime as dt, os, sys, time
    from feature_platform.sources.event_records import validate_event_records
    from feature_platform.sources.landing import LandingLog
    now = dt.datetime(2025, 3, 1, 12)
    records = [{"event_id": f"d{i}", "user_id": "u1", "event_type": "login", "timestamp": "2025-03-01T10:00:00"}
               for i in range(50)]
    accepted, _ = validate_event_records(records, now)
    result = LandingLog(sys.argv[1]).append(accepted, now)
    print(result.accepted, flush=True)
    if sys.argv[2] == "exit":
        os._exit(0)   # no interpreter shutdown, no buffers flushed by anybody else
    time.sleep(60)    # the test SIGKILLs us here
""")


@pytest.mark.parametrize("death", ["exit", "sigkill"])
def test_events_are_in_the_log_once_append_returned_even_if_the_process_dies_right_after(tmp_path, death):
    process = subprocess.Popen([sys.executable, "-c", APPEND_THEN_DIE, str(tmp_path), death],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "50"  # the answer a server would send (202)
    if death == "sigkill":
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert LandingLog(tmp_path).read()[0].num_rows == 50


def _append_batches(root: str, writer: int, batches: int) -> None:
    log = LandingLog(Path(root))
    for b in range(batches):
        records = [{"event_id": f"w{writer}-b{b}-{i}", "user_id": f"u{writer}", "event_type": "message_in",
                    "timestamp": "2025-03-01T10:00:00", "message_text": f"{writer}" * 4_000} for i in range(5)]
        log.append(validate_event_records(records, NOW)[0], LANDED_AT)


def test_concurrent_appenders_never_interleave_lines(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_batches, args=(str(tmp_path), w, 8)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = LandingLog(tmp_path).path_for(LANDED_AT.date()).read_text().splitlines()
    ids = [json.loads(line)["event_id"] for line in lines]  # every line is whole JSON
    assert len(ids) == len(set(ids)) == 4 * 8 * 5
    batches = [i.rsplit("-", 1)[0] for i in ids]
    # each append's lines are contiguous: a batch never restarts after another one began
    assert len([b for k, b in enumerate(batches) if k == 0 or b != batches[k - 1]]) == 4 * 8


@pytest.mark.parametrize(("name", "content"), [
    ("events.json", json.dumps([OK, event(event_id="e2")])),
    ("events.jsonl", json.dumps(OK) + "\n\n" + json.dumps(event(event_id="e2")) + "\n"),
    ("events.csv", "event_id,user_id,event_type,timestamp,amount\ne1,u1,purchase,2025-03-01T09:00:00Z,12.5\n"
                   "e2,u1,purchase,2025-03-01T09:00:00Z,\n"),
])
def test_an_event_file_is_read_as_json_array_json_lines_or_csv(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    accepted, rejected = validate_event_records(read_event_file(path), NOW)
    assert rejected == [] and accepted.column("event_id").to_pylist() == ["e1", "e2"]


def test_an_unreadable_event_file_names_the_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(OK) + "\n{oops\n")
    with pytest.raises(SourceError, match="line 2 is not JSON"):
        read_event_file(path)


# -- the daily ingest takes the landed events ------------------------------------------------------
DAYS = ["2025-02-01", "2025-02-02", "2025-02-03"]


def test_the_ingest_lands_landed_events_in_their_day_and_counts_a_duplicate_once(tmp_path, tiny_source):
    store = OfflineStore(tmp_path / "data")
    log = ingest.default_landing(store)
    assert log.root == tmp_path / "data" / "landing"
    records = [
        {"event_id": "e9", "user_id": "u2", "event_type": "purchase", "timestamp": "2025-02-03T10:00:00", "amount": 5},
        # e2 is in the source file too (another amount): the file's row wins, the landed copy is a duplicate
        {"event_id": "e2", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-02-01T08:05:00", "amount": 99},
    ]
    log.append(validate_event_records(records, NOW)[0], dt.datetime(2025, 2, 3, 11))
    report = ingest.ingest_events(store, tiny_source, NOW, DAYS, dt.datetime(2020, 1, 1), "2025-02-28")
    assert report.balanced() and report.landed_rows == 2 and report.late_landed == {}
    assert (report.accepted_rows, report.quarantined_rows, report.reasons) == (5, 1, {"duplicate_event_id": 1})
    day3 = pq.read_table(store.partition_path("raw/events", "2025-02-03")).to_pylist()
    assert [(r["event_id"], r["amount"]) for r in day3] == [("e4", None), ("e9", 5.0)]
    day1 = pq.read_table(store.partition_path("raw/events", "2025-02-01")).to_pylist()
    assert [(r["event_id"], r["amount"]) for r in day1] == [("e1", None), ("e2", 12.5)]
    refused = pq.read_table(store.partition_path("quarantine/events", "2025-02-01")).to_pylist()
    assert [(r["event_id"], r["source_file"], r["source_row"]) for r in refused] == [
        ("e2", "landing/events/2025-02-03.jsonl", 1)]


def test_a_landed_event_of_an_already_ingested_day_is_reported_until_that_day_is_ingested_again(tmp_path,
                                                                                                tiny_source):
    store = OfflineStore(tmp_path / "data")
    ingest.ingest_events(store, tiny_source, NOW, DAYS, dt.datetime(2020, 1, 1), "2025-02-28")
    late = {"event_id": "late", "user_id": "u1", "event_type": "login", "timestamp": "2025-02-01T20:00:00"}
    ingest.default_landing(store).append(validate_event_records([late], NOW)[0], dt.datetime(2025, 2, 4, 9))
    report = ingest.ingest_events(store, tiny_source, NOW, ["2025-02-04"], dt.datetime(2020, 1, 1), "2025-02-28")
    assert report.late_landed == {"2025-02-01": 1}
    ingest.ingest_events(store, tiny_source, NOW, ["2025-02-01"], dt.datetime(2020, 1, 1), "2025-02-28")
    assert "late" in pq.read_table(store.partition_path("raw/events", "2025-02-01")).column("event_id").to_pylist()
    report = ingest.ingest_events(store, tiny_source, NOW, ["2025-02-04"], dt.datetime(2020, 1, 1), "2025-02-28")
    assert report.late_landed == {}


def test_customers_derived_from_events_include_users_known_only_from_landed_events(tmp_path):
    src = tmp_path / "src"
    write_csv(src, "events", [{"event_id": "1", "user_id": "u1", "event_type": "login",
                               "timestamp": "2025-02-01T00:00:00"}])
    store = OfflineStore(tmp_path / "data")
    newcomer = {"event_id": "n1", "user_id": "new", "event_type": "login", "timestamp": "2025-02-02T10:00:00"}
    ingest.default_landing(store).append(validate_event_records([newcomer], NOW)[0], dt.datetime(2025, 2, 2, 11))
    report = ingest.ingest_table(store, src, ingest.CUSTOMERS, NOW)
    customers = pq.read_table(store.table_path("raw/customers")).to_pylist()
    assert report.status == "derived" and [(c["user_id"], str(c["signup_date"])) for c in customers] == [
        ("new", "2025-02-02"), ("u1", "2025-02-01")]


def test_batches_validated_at_once_from_many_threads_each_get_their_own_answer():
    """Every batch runs on its own cursor of one process-wide database: no batch sees another's rows."""
    now = dt.datetime(2025, 3, 13, 12, 0)

    def batch(n: int) -> tuple[int, list[str], list[str]]:
        records = [{"event_id": f"t{n}-{i}", "user_id": f"u{n}", "event_type": "page_view",
                    "timestamp": "2025-03-13T09:00:00"} for i in range(n % 5 + 1)]
        records.append({"event_id": f"t{n}-bad", "user_id": f"u{n}", "event_type": "page_view",
                        "timestamp": "2099-01-01T00:00:00"})  # in the future: refused
        accepted, rejected = validate_event_records(records, now)
        return n, sorted(accepted.column("event_id").to_pylist()), [r["event_id"] for r in rejected]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(batch, range(64)))
    for n, accepted, rejected in results:
        assert accepted == sorted(f"t{n}-{i}" for i in range(n % 5 + 1)) and rejected == [f"t{n}-bad"], n
