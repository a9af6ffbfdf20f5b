"""Ingesting in chunks changes nothing: the same files, byte for byte, whatever the chunk size, and the
same rows as validating the whole input at once."""

from __future__ import annotations

import datetime as dt
import gzip
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from feature_platform.config import ConfigError, Settings
from feature_platform.offline.store import OfflineStore
from feature_platform.sources import ingest, loaders
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.parquet_parts import ROW_GROUP_ROWS, write_parts
from feature_platform.sources.schema import CUSTOMERS, EVENTS
from feature_platform.sources.validation import validate
from feature_platform_tests.conftest import NOW

MIN_TS = dt.datetime(2020, 1, 1)
LAST = "2025-02-28"
DAYS = [(dt.date(2025, 1, 30) + dt.timedelta(days=d)).isoformat() for d in range(30)]  # Jan 30 .. Feb 28
TYPES = ["login", "purchase", "page_view", "teleport"]


def _text_row(rng: random.Random, i: int) -> dict[str, str]:
    stamp = dt.datetime(2025, 2, 1) + dt.timedelta(minutes=rng.randrange(0, 28 * 24 * 60))
    return {
        # ids repeat within and across files, so duplicates fall in other chunks and other files
        "event_id": rng.choice([f"e{i}", f"e{i}", f"e{rng.randrange(0, 60)}", ""]),
        "user_id": rng.choice(["u1", " u2 ", "u3", ""]),
        "event_type": rng.choice(TYPES),
        "timestamp": rng.choice([stamp.isoformat(), stamp.isoformat() + "Z", stamp.isoformat() + "+02:00", "garbage",
                                 "2030-01-01T00:00:00", "2019-01-01T00:00:00", "2025-03-01T09:00:00", ""]),
        "amount": rng.choice(["", "2.5", "-1", "ten", " 4 "]),
        "message_text": rng.choice(["", "hi, there", "ünïcode", "  "]),
    }


@pytest.fixture
def messy_source(tmp_path: Path) -> Path:
    """A folder of events files (CSV, gzipped CSV without event ids, Parquet with other types and names)
    with bad values and duplicate ids everywhere."""
    rng = random.Random(11)
    folder = tmp_path / "src" / "events"
    (folder / "old").mkdir(parents=True)
    pacsv.write_csv(pa.Table.from_pylist([_text_row(rng, i) for i in range(150)]), folder / "2025-02-a.csv")
    with gzip.open(folder / "old" / "2025-01.csv.gz", "wb") as fh:
        rows = [{k: v for k, v in _text_row(rng, i).items() if k != "event_id"} for i in range(40)]
        pacsv.write_csv(pa.Table.from_pylist(rows), fh)
    stamps = [dt.datetime(2025, 1, 31) + dt.timedelta(hours=rng.randrange(0, 30 * 24)) for _ in range(120)]
    pq.write_table(pa.table({
        "id": [f"e{rng.randrange(0, 200)}" for _ in stamps],
        "customer_id": [float(rng.randrange(1, 5)) for _ in stamps],  # whole floats: ids become integers
        "type": [rng.choice(TYPES) for _ in stamps],
        "event_time": pa.array(stamps, pa.timestamp("us")),
        "amount": [rng.choice([None, 1.0, -3.0]) for _ in stamps],
    }), folder / "2025-02-b.parquet", row_group_size=25)
    return tmp_path / "src"


def _land(store: OfflineStore) -> None:
    """Landed events: new ones and copies of the files' ids (the files' rows win)."""
    records = [{"event_id": f"e{i}" if i % 3 else f"L{i}", "user_id": "u9", "event_type": "purchase",
                "timestamp": f"2025-02-{1 + i % 27:02d}T10:00:00", "amount": 1} for i in range(30)]
    ingest.default_landing(store).append(validate_event_records(records, NOW)[0], dt.datetime(2025, 2, 20, 9))


def _ingest(source: Path, data: Path, chunk_rows: int, landed: bool) -> tuple[dict[str, bytes], list[dict]]:
    store = OfflineStore(data)
    if landed:
        _land(store)
    customers = ingest.ingest_table(store, source, CUSTOMERS, NOW, chunk_rows=chunk_rows)
    reports = [ingest.ingest_events(store, source, NOW, days, MIN_TS, LAST, chunk_rows=chunk_rows)
               for days in (DAYS, ["2025-02-03", "2025-02-20"])]
    files = {p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("*.parquet"))}
    summary = [{k: v for k, v in r.__dict__.items() if k not in ("writes", "quarantine_writes", "source_files")}
               | {"source_files": [Path(f).name for f in r.source_files]} for r in (customers, *reports)]
    return files, summary


@pytest.mark.parametrize("landed", [False, True], ids=["files", "files+landed"])
@pytest.mark.parametrize("chunk_rows", [8, 64])
def test_chunks_smaller_than_the_input_land_the_same_bytes_as_one_chunk_per_file(tmp_path, messy_source,
                                                                                 chunk_rows, landed):
    whole_files, whole = _ingest(messy_source, tmp_path / "whole", 1_000_000, landed)
    files, chunked = _ingest(messy_source, tmp_path / "chunked", chunk_rows, landed)
    assert chunked == whole
    assert files.keys() == whole_files.keys() and len(files) > 2 * len(DAYS)
    assert [name for name in files if files[name] != whole_files[name]] == []
    report = whole[1]
    assert report["accepted_rows"] + report["quarantined_rows"] + report["deferred_rows"] == report["input_rows"]
    assert report["landed_rows"] == (30 if landed else 0)
    assert report["deferred_rows"] > 0 and report["reasons"]["duplicate_event_id"] > 10
    assert {"invalid_timestamp", "timestamp_in_future", "missing_event_id", "negative_amount"} <= set(report["reasons"])


def test_files_with_every_column_next_to_landed_events(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    rows = [{"event_id": f"e{i}", "user_id": "u1", "event_type": "login", "timestamp": dt.datetime(2025, 2, 1 + i % 3, 8),
             "session_id": "s", "channel": "web", "amount": None, "listing_id": None, "conversation_id": None,
             "campaign_id": None, "message_text": None} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows, schema=EVENTS.arrow_schema), source / "events.parquet")
    files = [_ingest(source, tmp_path / name, chunk_rows, landed=True)[0] for name, chunk_rows in (("a", 3), ("b", 100))]
    assert files[0] == files[1] and len(files[0]) > len(DAYS)


def test_chunked_ingest_lands_exactly_what_validating_the_whole_input_at_once_accepts_and_refuses(tmp_path,
                                                                                                   messy_source):
    store = OfflineStore(tmp_path / "data")
    report = ingest.ingest_events(store, messy_source, NOW, DAYS, MIN_TS, LAST, chunk_rows=5)
    reference = validate(loaders.load(messy_source, EVENTS), NOW, MIN_TS)

    landed = store.read("raw/events")
    stamps = reference.accepted.column("timestamp")
    within = pc.less(stamps, pa.scalar(dt.datetime(2025, 3, 1), stamps.type))
    assert landed.equals(reference.accepted.filter(within))
    assert report.deferred_rows == reference.accepted.num_rows - landed.num_rows > 0

    quarantine = store.table_dir("quarantine/events")
    refused = pa.concat_tables([pq.read_table(p) for p in sorted(quarantine.glob("*.parquet"))])
    refused = refused.sort_by([("source_file", "ascending"), ("source_row", "ascending")])
    # Refused rows of a day outside DAYS (a 2030 timestamp refused first for another reason) are that day's.
    unassigned = pc.or_(pc.is_null(reference.quarantined.column("partition")),
                        pc.is_in(reference.quarantined.column("reason"), pa.array(ingest.UNASSIGNED_REASONS)))
    in_days = pc.is_in(reference.quarantined.column("partition"), pa.array(DAYS))
    expected = reference.quarantined.filter(pc.or_(unassigned, pc.fill_null(in_days, False)))
    assert refused.equals(expected) and refused.num_rows > 50
    assert report.quarantined_rows == expected.num_rows and report.balanced()


def test_chunks_never_span_files_and_together_are_the_loaded_table(messy_source):
    source = loaders.open_source(messy_source, EVENTS)
    chunks = list(source.chunks(rows=16))
    assert max(c.num_rows for c in chunks) <= 16
    assert all(len(pc.unique(c.column(loaders.SOURCE_FILE))) == 1 for c in chunks)
    assert pa.concat_tables(chunks).equals(loaders.load(messy_source, EVENTS).data)
    assert source.schema.field("user_id").type == pa.string()  # text in the CSVs, integers in the Parquet


@pytest.mark.parametrize("rows", [0, 5, ROW_GROUP_ROWS + 3])
def test_a_file_written_in_parts_is_the_file_written_at_once(tmp_path, rows):
    store = OfflineStore(tmp_path)
    table = pa.table({"n": pa.array(range(rows), pa.int64()), "s": pa.array(["x"] * rows)})
    at_once = store.write("at_once", table)
    cuts = [0, rows // 3, rows // 3 + 1, rows]
    parts = (table.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False))
    in_parts = write_parts(store, "in_parts", parts, table.schema)
    assert in_parts.rows == rows and in_parts.path.read_bytes() == at_once.path.read_bytes()


def test_the_ingest_memory_setting_is_read_and_checked():
    assert Settings.from_env({}).ingest_memory_mb == 512
    assert Settings.from_env({"FP_INGEST_MEMORY_MB": "2048"}).ingest_memory_mb == 2048
    with pytest.raises(ConfigError, match="FP_INGEST_MEMORY_MB"):
        Settings.from_env({"FP_INGEST_MEMORY_MB": "10"})


def test_days_are_byte_identical_to_landing_the_whole_inputs_validated_table(tmp_path):
    """Where Parquet falls back from dictionary encoding depends on where Arrow chunks end: the days
    must reach the writer cut as the whole sorted table read from DuckDB at once cuts them."""
    rng = random.Random(5)
    rows = 260_000  # ~87k a day: the second day straddles a chunk end; 16-byte ids overflow the dictionary
    source = tmp_path / "src"
    source.mkdir()
    stamps = sorted(dt.datetime(2025, 2, 1) + dt.timedelta(seconds=rng.randrange(0, 3 * 86400)) for _ in range(rows))
    pq.write_table(pa.table({
        "event_id": ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=16)) for _ in range(rows)],
        "user_id": [f"u{rng.randrange(0, 5000)}" for _ in range(rows)],
        "event_type": ["login"] * rows,
        "timestamp": pa.array(stamps, pa.timestamp("us")),
    }), source / "events.parquet")
    days = ["2025-02-01", "2025-02-02", "2025-02-03"]
    store = OfflineStore(tmp_path / "data")
    ingest.ingest_events(store, source, NOW, days, MIN_TS, LAST, chunk_rows=50_000)

    accepted = validate(loaders.load(source, EVENTS), NOW, MIN_TS).accepted  # one DuckDB read, its own chunks
    reference = OfflineStore(tmp_path / "reference")
    day_of = pc.strftime(accepted.column("timestamp"), format="%Y-%m-%d")
    offset = 0
    for day in days:
        count = pc.sum(pc.equal(day_of, day)).as_py()
        expected = reference.write("raw/events", accepted.slice(offset, count), partition=day)
        offset += count
        assert store.partition_path("raw/events", day).read_bytes() == expected.path.read_bytes(), day
