"""Rows a reader cannot read, and numbers outside their bounds, are quarantined one by one: the rest of the
file lands, the quarantine names file and row, and a file that is mostly unreadable is refused whole."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.offline.store import OfflineStore
from feature_platform.sources import ingest, loaders
from feature_platform.sources.csv_dialect import sniff
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS
from feature_platform_tests import fault_tally
from feature_platform_tests.conftest import NOW

pytestmark = pytest.mark.faults

MIN_TS = dt.datetime(2020, 1, 1)
DAY = "2025-02-01"
HEADER = b"event_id,user_id,event_type,timestamp,amount\n"


@pytest.fixture(autouse=True)
def _tally():
    """One fault-tally line per test: the fault it replays is its one input (no server answers here)."""
    yield
    fault_tally.record("sources: unreadable rows, numbers out of bounds", inputs=1)


def _row(i: int, amount: str = "1.5") -> bytes:
    return f"e{i},u1,purchase,{DAY}T10:{i % 60:02d}:00,{amount}\n".encode()


def _ingest(src: Path, tmp_path: Path, chunk_rows: int = loaders.CHUNK_ROWS) -> tuple[ingest.IngestReport, OfflineStore]:
    store = OfflineStore(tmp_path / "data")
    report = ingest.ingest_events(store, src, NOW, [DAY], MIN_TS, "2025-02-28", chunk_rows=chunk_rows)
    return report, store


def _quarantined(store: OfflineStore) -> list[dict]:
    folder = store.table_dir("quarantine/events")
    parts = [pq.read_table(p) for p in sorted(folder.glob("*.parquet"))]
    return sorted(pa.concat_tables(parts).to_pylist(), key=lambda r: r["source_row"])


@pytest.mark.parametrize("chunk_rows", [loaders.CHUNK_ROWS, 2])
def test_ragged_and_non_utf8_rows_are_quarantined_with_file_and_row_and_the_rest_lands(tmp_path, chunk_rows):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(HEADER + _row(1) + b"e2,u1,purchase,2025-02-01T10:02:00,1,EXTRA\n" + _row(3)
                                     + b"e4,u\xff,purchase,2025-02-01T10:04:00,1\n" + b"e5,u1\n" + _row(6) + _row(7))
    report, store = _ingest(src, tmp_path, chunk_rows)
    assert (report.input_rows, report.accepted_rows, report.quarantined_rows) == (7, 4, 3) and report.balanced()
    assert report.reasons == {"invalid_encoding": 1, "malformed_row": 2}
    assert sorted(store.read("raw/events").column("event_id").to_pylist()) == ["e1", "e3", "e6", "e7"]
    refused = _quarantined(store)
    assert [(r["source_file"], r["source_row"], r["reason"]) for r in refused] == [
        ("events.csv", 2, "malformed_row"), ("events.csv", 4, "invalid_encoding"), ("events.csv", 5, "malformed_row")]
    assert refused[0]["detail"].startswith("events.csv row 2: 6 fields, expected 5")
    assert refused[1]["detail"].startswith("events.csv row 4: user_id is not UTF-8")
    assert refused[1]["user_id"] == "u\\xff"  # the text that arrived, its bad byte escaped
    assert refused[2]["detail"] == "events.csv row 5: 2 fields, expected 5: 'e5,u1'"


def test_a_refused_row_keeps_its_number_so_derived_ids_of_the_others_do_not_move(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(b"customer,date,amount\nc1,2025-02-01,1\nc2,2025-02-01\nc3,2025-02-01,2\n"
                                     b"c4,2025-02-01,3\n")
    report, store = _ingest(src, tmp_path)
    assert report.reasons == {"malformed_row": 1}
    assert sorted(store.read("raw/events").column("event_id").to_pylist()) == [
        "events.csv:1", "events.csv:3", "events.csv:4"]


def test_a_file_mostly_unreadable_is_refused_whole_naming_it_and_the_first_bad_row(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(HEADER + _row(1) + b"x,y\n" * 3)
    with pytest.raises(loaders.SourceError, match=r"events.csv: cannot be read as CSV: 3 of its 4 rows .*"
                                                  r"events.csv row 2: 2 fields, expected 5"):
        _ingest(src, tmp_path)


TEXT_HEADER = b"event_id,user_id,event_type,timestamp,message_text\n"


def _message(i: int, text: str) -> bytes:
    return f"e{i},u1,message_in,{DAY}T10:{i:02d}:00,{text}\n".encode()


@pytest.mark.parametrize("chunk_rows", [loaders.CHUNK_ROWS, 2])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_an_unclosed_quote_is_quarantined_and_does_not_swallow_the_rows_after_it(tmp_path, chunk_rows, where):
    src = tmp_path / "src"
    src.mkdir()
    rows = [_message(1, "hi"), _message(2, '"hello, no closing quote'), _message(3, "fine"), _message(4, '"quoted, ok"')]
    if where == "last":
        rows = [rows[0], rows[2], rows[3], rows[1]]  # still open at the end of the file
    (src / "events.csv").write_bytes(TEXT_HEADER + b"".join(rows))
    report, store = _ingest(src, tmp_path, chunk_rows)
    assert (report.input_rows, report.accepted_rows, report.reasons) == (4, 3, {"unclosed_quote": 1})
    landed = store.read("raw/events").to_pylist()
    assert {r["event_id"]: r["message_text"] for r in landed} == {"e1": "hi", "e3": "fine", "e4": "quoted, ok"}
    refused = _quarantined(store)
    row = 2 if where == "middle" else 4
    assert refused[0]["source_row"] == row and refused[0]["detail"].startswith(
        f"events.csv row {row}: a quoted value is not closed on its line")


def test_quoted_values_over_several_lines_and_stray_quotes_in_a_value_still_read(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(TEXT_HEADER + _message(1, '"line one\nline two, and ""quoted"""')
                                     + _message(2, "a 12\" screen") + _message(3, "ok"))
    report, store = _ingest(src, tmp_path)  # the stray quote makes the count odd: read line by line
    # the value over two lines is then refused (its two lines, each as what it is), not lost
    assert report.reasons == {"unclosed_quote": 1, "malformed_row": 1}
    assert {r["event_id"]: r["message_text"] for r in store.read("raw/events").to_pylist()} == {
        "e2": 'a 12" screen', "e3": "ok"}
    src2 = tmp_path / "src2"
    src2.mkdir()
    (src2 / "events.csv").write_bytes(TEXT_HEADER + _message(1, '"line one\nline two, and ""quoted"""')
                                      + _message(3, "ok"))
    report, store = _ingest(src2, tmp_path / "second")  # quotes that pair: a value may span lines
    assert report.reasons == {}
    assert {r["event_id"]: r["message_text"] for r in store.read("raw/events").to_pylist()} == {
        "e1": 'line one\nline two, and "quoted"', "e3": "ok"}


def test_a_header_with_bytes_that_are_not_utf8_reads_with_them_escaped(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(b"event_id,user_id,event_type,timestamp,amount,caf\xe9\n" + _row(1)[:-1]
                                     + b",x\n" + _row(2)[:-1] + b",y\n")
    report, store = _ingest(src, tmp_path)
    assert (report.accepted_rows, report.reasons) == (2, {})
    assert loaders.load(src, EVENTS).unmapped == {"events.csv": ["caf\\xe9"]}


def test_a_ragged_row_among_the_first_lines_does_not_hide_the_separator(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id\tdate\tamount\nu1\t2025-02-01\t1\nu2\t2025-02-01\nu3\t2025-02-01\t2\n")
    assert sniff(path) == "\t"


def test_an_unreadable_customer_row_is_quarantined_in_the_customers_quarantine(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "customers.csv").write_bytes(b"user_id,age\nu1,30\nu2,40,extra\nu3,50\n")
    report = ingest.ingest_table(OfflineStore(tmp_path / "data"), src, CUSTOMERS, NOW)
    assert (report.accepted_rows, report.reasons) == (2, {"malformed_row": 1}) and report.balanced()
    refused = pq.read_table(tmp_path / "data" / "quarantine" / "customers.parquet").to_pylist()
    assert [(r["source_row"], r["detail"]) for r in refused] == [(2, "customers.csv row 2: 3 fields, expected 2: "
                                                                     "'u2,40,extra'")]


@pytest.mark.parametrize(("amount", "reason"), [
    ("1e12", None),
    ("1000000000000.01", "amount_out_of_range"),
    ("1e308", "amount_out_of_range"),
    ("inf", "invalid_amount"),
    ("-Infinity", "invalid_amount"),
    ("NaN", "invalid_amount"),
])
def test_amounts_in_text_have_finite_bounds(tmp_path, amount, reason):
    src = tmp_path / "src"
    src.mkdir()
    (src / "events.csv").write_bytes(HEADER + _row(1) + _row(2, amount) + _row(3, amount))
    report, store = _ingest(src, tmp_path)
    assert report.reasons == ({} if reason is None else {reason: 2})
    assert math.isfinite(sum(store.read("raw/events").column("amount").to_pylist()))


@pytest.mark.parametrize("amount", [1e308, math.inf, -math.inf, math.nan])
def test_typed_amounts_have_the_same_bounds(tmp_path, amount):
    """A Parquet file's doubles are not parsed from text: NaN and ±inf must still be refused."""
    src = tmp_path / "src"
    src.mkdir()
    stamps = [dt.datetime(2025, 2, 1, 10, i) for i in range(3)]
    pq.write_table(pa.table({"event_id": ["a", "b", "c"], "user_id": ["u"] * 3, "event_type": ["purchase"] * 3,
                             "timestamp": pa.array(stamps, pa.timestamp("us")), "amount": [1.0, amount, amount]}),
                   src / "events.parquet")
    report, store = _ingest(src, tmp_path)
    assert report.accepted_rows == 1 and report.quarantined_rows == 2 and report.balanced()
    assert store.read("raw/events").column("amount").to_pylist() == [1.0]


def test_listing_prices_and_image_counts_have_bounds(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "listings.csv").write_text("listing_id,price,image_count\nl1,1e12,3\nl2,2e12,3\nl3,5,20000\n"
                                      "l4,inf,1\n")
    report = ingest.ingest_table(OfflineStore(tmp_path / "data"), src, LISTINGS, NOW)
    assert report.accepted_rows == 1
    assert report.reasons == {"image_count_out_of_range": 1, "invalid_price": 1, "price_out_of_range": 1}


def test_json_events_have_the_same_bounds():
    records = [{"event_id": f"e{i}", "user_id": "u", "event_type": "purchase", "timestamp": f"{DAY}T10:00:00",
                "amount": amount} for i, amount in enumerate([1.0, 1e308, float("inf")])]
    accepted, rejected = validate_event_records(records, NOW)
    assert accepted.column("event_id").to_pylist() == ["e0"]
    assert [r["reasons"] for r in rejected] == [["amount_out_of_range"], ["invalid_amount"]]
    assert EVENTS.column("amount").type == pa.float64()
