"""Ingest raw inputs into the offline store: load, validate, land accepted rows, quarantine the rest.

Layout under the data directory:
    raw/customers.parquet, raw/reviews.parquet, raw/listings.parquet
    raw/events/<YYYY-MM-DD>.parquet              accepted events of that UTC day (empty file: no events)
    quarantine/<table>.parquet                   refused rows with reason, detail, source file and row
    quarantine/events/<YYYY-MM-DD>.parquet       refused events whose timestamp falls on that day
    quarantine/events/unassigned.parquet         refused events with no usable day (unparseable,
                                                 in the future, before the first partition)
The same functions serve `feature-platform ingest` and the Dagster raw assets, so both land
identical files. Re-running writes identical bytes (rows are sorted before writing).

The events input is the user's files plus the landing log (events accepted by ``POST /events`` or
`feature-platform events push`, ``<data>/landing/``), validated together: an event that arrived both
ways counts once (the file's row wins; the landed copy is quarantined as a duplicate), and the next
daily snapshot includes what landed. A landed event of a day whose partition was already ingested
reaches the offline store when that day is ingested again (a backfill); ``late_landed`` says which.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.config import DEFAULT_INGEST_MEMORY_MB, Settings
from feature_platform.offline.store import OfflineStore, WriteResult, connect
from feature_platform.sources import loaders
from feature_platform.sources.chunked_validation import EXPORT_ROWS, ChunkedValidation, read_ahead
from feature_platform.sources.events_input import EventsInput, landed_label, open_events
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.parquet_parts import write_parts
from feature_platform.sources.schema import CUSTOMERS, EVENTS, RAW_TABLES, RawTable
from feature_platform.sources.validation import ValidationResult, parse_column, quarantine_schema, validate

UNASSIGNED = "unassigned"
# Refused events whose day is no partition's: the unassigned quarantine, whatever their timestamp.
UNASSIGNED_REASONS = ["timestamp_in_future", "timestamp_before_partitions_start"]
PROGRESS_ROWS = 2_000_000  # a progress line every this many rows validated
log = logging.getLogger(__name__)


def raw_table(name: str) -> str:
    return f"raw/{name}"


def quarantine_table(name: str) -> str:
    return f"quarantine/{name}"


@dataclass
class IngestReport:
    """What one ingest of one table did. ``accepted + quarantined + deferred == input``."""

    table: str
    input_rows: int = 0
    accepted_rows: int = 0
    quarantined_rows: int = 0
    deferred_rows: int = 0  # valid events of a day that has no partition yet (today): land later
    reasons: dict[str, int] = field(default_factory=dict)
    writes: list[WriteResult] = field(default_factory=list)
    quarantine_writes: list[WriteResult] = field(default_factory=list)
    source_files: tuple[str, ...] = ()
    status: str = "ingested"  # or "absent" (optional file missing) / "derived" (customers from events)
    landed_rows: int = 0  # rows of the input that came from the landing log (all days)
    late_landed: dict[str, int] = field(default_factory=dict)  # day -> landed events its partition lacks
    unmapped_columns: dict[str, list[str]] = field(default_factory=dict)  # file -> columns nothing reads
    time_formats: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> {column: non-ISO format}

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined_rows / self.input_rows if self.input_rows else 0.0

    def balanced(self) -> bool:
        return self.accepted_rows + self.quarantined_rows + self.deferred_rows == self.input_rows


def _report(result: ValidationResult, files: tuple[Path, ...]) -> IngestReport:
    return IngestReport(
        table=result.table.name,
        input_rows=result.input_rows,
        accepted_rows=result.accepted.num_rows,
        quarantined_rows=result.quarantined.num_rows,
        reasons=result.reasons,
        source_files=tuple(str(f) for f in files),
    )


def ingest_table(
    store: OfflineStore, source_dir: Path, table: RawTable, now: dt.datetime,
    memory_limit_mb: int = DEFAULT_INGEST_MEMORY_MB, chunk_rows: int = loaders.CHUNK_ROWS,
    landing: LandingLog | None = None,
) -> IngestReport:
    """Ingest an unpartitioned table (customers, reviews, listings) into ``raw/<name>.parquet``.

    An absent optional table is written empty (so downstream reads a known schema) and reported
    as ``absent``; absent customers are derived from the user ids in the events input.
    """
    if table.name not in RAW_TABLES or table is EVENTS:
        raise ValueError(f"ingest_table handles customers, reviews and listings, not {table.name}")
    source = loaders.load(source_dir, table)
    if source is None:
        if table is CUSTOMERS:
            return _derive_customers(store, source_dir, landing or default_landing(store), memory_limit_mb,
                                     chunk_rows)
        report = IngestReport(table=table.name, status="absent")
        report.writes.append(store.write(raw_table(table.name), table.arrow_schema.empty_table()))
        return report
    result = validate(source, now)
    report = _report(result, source.files)
    report.unmapped_columns, report.time_formats = source.unmapped, source.time_formats
    report.writes.append(store.write(raw_table(table.name), result.accepted))
    report.quarantine_writes.append(store.write(quarantine_table(table.name), result.quarantined))
    return report


def _derive_customers(store: OfflineStore, source_dir: Path, landing: LandingLog, memory_limit_mb: int,
                      chunk_rows: int) -> IngestReport:
    """One customer per distinct user id of the events, known (signup_date) from the day of their
    first parseable event, so nobody appears in a snapshot or a training set before their data does.

    Read chunk by chunk: only each chunk's first event per user is kept (in DuckDB, which spills)."""
    events = open_events(source_dir, landing)
    if events is None:
        raise loaders.SourceError(f"{source_dir}: neither customers nor events found; nothing to ingest")
    with connect(memory_limit=f"{memory_limit_mb}MB") as con:
        con.execute("CREATE TABLE firsts (user_id VARCHAR, first TIMESTAMP)")
        for chunk in _with_progress(events.chunks(chunk_rows), "read for the customer list"):
            chunk = loaders.without_faults(chunk)  # an unreadable row is quarantined: it makes no customer
            source = loaders.LoadedSource(table=EVENTS, files=events.source_files, data=chunk, absent_columns=())
            ids = pc.utf8_trim_whitespace(pc.cast(chunk.column("user_id"), pa.string()))
            firsts = pa.table({"user_id": ids, "first": parse_column(source, "timestamp")}).filter(
                pc.and_(pc.is_valid(ids), pc.not_equal(ids, ""))
            ).group_by("user_id").aggregate([("first", "min")])
            con.register("chunk_firsts", firsts)
            con.execute("INSERT INTO firsts SELECT user_id, first_min FROM chunk_firsts").fetchall()
            con.unregister("chunk_firsts")
        first = con.sql("SELECT user_id, min(first) AS first FROM firsts GROUP BY user_id").to_arrow_table()
    first = first.sort_by("user_id")
    users = first.column("user_id")
    columns = {c.name: pa.nulls(len(users), c.type) for c in CUSTOMERS.columns}
    columns["user_id"] = users
    columns["signup_date"] = pc.cast(first.column("first"), CUSTOMERS.arrow_schema.field("signup_date").type)
    derived = pa.table(columns, schema=CUSTOMERS.arrow_schema)
    # The input of a derived table is the list of distinct ids it was derived from.
    report = IngestReport(table="customers", input_rows=derived.num_rows, accepted_rows=derived.num_rows, status="derived")
    report.writes.append(store.write(raw_table("customers"), derived))
    return report


def ingest_events(
    store: OfflineStore,
    source_dir: Path,
    now: dt.datetime,
    days: list[str],
    min_timestamp: dt.datetime,
    last_partition: str,
    landing: LandingLog | None = None,
    memory_limit_mb: int = DEFAULT_INGEST_MEMORY_MB,
    chunk_rows: int = loaders.CHUNK_ROWS,
) -> IngestReport:
    """Land the events of each UTC day in ``days`` (ISO dates) as one partition each.

    The whole input (the files and the landing log, default ``<data>/landing``) is validated each time
    (duplicates are global), but only the given days are written, so re-running a day is idempotent.
    The report counts the rows of those days, plus the refused rows with no usable day (the unassigned
    quarantine) and the valid rows after ``last_partition`` (today's, deferred to a later run). Over
    all days, these add up to the input.

    The input is read ``chunk_rows`` rows at a time and validated in DuckDB within ``memory_limit_mb``
    (past it DuckDB spills to disk), and each day is written as it is read back, so memory does not grow
    with the input.
    """
    landing = landing if landing is not None else default_landing(store)
    events = open_events(source_dir, landing)
    if events is None:
        raise loaders.SourceError(f"{source_dir}: no events input (events.parquet, events.csv or events/)")
    with ChunkedValidation(EVENTS, events.schema, events.labels, now, min_timestamp, memory_limit_mb) as checked:
        _validate_in_chunks(checked, events, chunk_rows)
        report = land_events(store, checked, events.source_files, days, last_partition)
        if events.files is not None:
            report.unmapped_columns, report.time_formats = events.files.unmapped, events.files.time_formats
        if events.landed:
            labels = [landed_label(path) for path in events.landed]
            report.landed_rows = sum(checked.rows_by_label.get(label, 0) for label in labels)
            report.late_landed = _late_landed(store, checked, labels, days, last_partition)
    if report.late_landed:
        log.warning("landed events of days ingested before they arrived: %s; materialize raw/events for those "
                    "days again (a backfill) to include them", report.late_landed)
    return report


def default_landing(store: OfflineStore) -> LandingLog:
    """The landing log of the data directory the store lives in (``Settings.landing_dir``). A store in an
    object store has none: the landing log is local (appended to and fsynced), give it explicitly."""
    if not isinstance(store.root, Path):
        raise ValueError(f"the offline store {store.root} is in an object store; pass the landing log of the "
                         "local data directory (Settings.landing_dir)")
    return LandingLog(Settings(data_dir=store.root).landing_dir)


def _validate_in_chunks(checked: ChunkedValidation, events: EventsInput, rows: int) -> None:
    for chunk in _with_progress(events.chunks(rows), "validated"):
        checked.add(chunk)
    duplicates = checked.finish(lambda labels: events.chunks(rows, only=labels))
    log.info("events: %s rows validated, %s duplicate event ids", f"{checked.input_rows:,}", f"{duplicates:,}")


def _with_progress(chunks: Iterator[pa.Table], done: str) -> Iterator[pa.Table]:
    """The chunks, with a log line every ``PROGRESS_ROWS`` rows: long reads say how far they are."""
    rows = reported = 0
    for chunk in chunks:
        yield chunk
        rows += chunk.num_rows
        if rows - reported >= PROGRESS_ROWS:
            reported = rows
            log.info("events: %s rows %s (%s)", f"{rows:,}", done, chunk.column(loaders.SOURCE_FILE)[0])


def _late_landed(
    store: OfflineStore, checked: ChunkedValidation, labels: list[str], days: list[str], last_partition: str
) -> dict[str, int]:
    """Per day outside this run, landed events whose id was accepted and that its existing partition lacks
    (they arrived after that day was ingested). Only those days' event ids are read."""
    checked.query("""
        CREATE TEMP TABLE landed_kept AS
        SELECT strftime(l."timestamp", '%Y-%m-%d') AS day, l.event_id
        FROM checked l JOIN (SELECT event_id FROM checked WHERE _reason IS NULL) a ON a.event_id = l.event_id
        WHERE list_contains($landed, l._file)""", landed=checked.numbers(labels))
    late = {}
    for (day,) in checked.query("SELECT DISTINCT day FROM landed_kept WHERE day IS NOT NULL ORDER BY day"):
        path = store.partition_path(raw_table("events"), day)
        if day in days or day > last_partition or not path.exists():
            continue  # written now, or not ingested yet: the day's first ingest includes them
        [(missing,)] = checked.query("""
            SELECT count(*) FROM landed_kept
            WHERE day = $day AND event_id NOT IN (SELECT event_id FROM read_parquet($path))""",
                                     day=day, path=str(path))
        if missing:
            late[day] = int(missing)
    return late


def land_events(
    store: OfflineStore, checked: ChunkedValidation, files: tuple[Path, ...], days: list[str], last_partition: str
) -> IngestReport:
    """Write each day of ``days``: its accepted events (sorted by timestamp and event id) and, when it has
    any (or had), its quarantined ones; then the unassigned quarantine. Rows stream from DuckDB day by day."""
    wanted = sorted(days)
    after_last = dt.datetime.combine(dt.date.fromisoformat(last_partition) + dt.timedelta(days=1), dt.time())
    deferred = checked.accepted_count(since=after_last)
    in_window = "list_contains($days, partition) AND NOT list_contains($stray, reason)"
    unassigned = "(partition IS NULL OR list_contains($stray, reason))"
    reasons = checked.reason_counts(f"({in_window}) OR {unassigned}", days=wanted, stray=UNASSIGNED_REASONS)
    report = IngestReport(table="events", deferred_rows=deferred, source_files=tuple(str(f) for f in files),
                          reasons=reasons, quarantined_rows=sum(reasons.values()))

    log.info("events: writing %s day(s) %s .. %s", len(wanted), wanted[0], wanted[-1])
    start = dt.datetime.combine(dt.date.fromisoformat(wanted[0]), dt.time())
    end = dt.datetime.combine(dt.date.fromisoformat(wanted[-1]) + dt.timedelta(days=1), dt.time())
    blocks = _blocks_from(checked.accepted_count(before=start))  # before the reader holds the connection
    batches = read_ahead(checked.accepted(start, end))
    accepted = _by_day(batches, lambda b: b.column("timestamp").to_numpy().astype("datetime64[D]"), blocks)
    for day, parts in _each_day(accepted, wanted):
        report.writes.append(write_parts(store, raw_table("events"), parts, EVENTS.arrow_schema, partition=day))
    batches.close()  # the reading thread is done before the connection is used again
    report.accepted_rows = sum(w.rows for w in report.writes)

    qschema = quarantine_schema(EVENTS)
    stray = sum(checked.reason_counts(unassigned, stray=UNASSIGNED_REASONS).values())
    refused = _by_day(checked.quarantined(in_window, "partition, source_file, source_row", days=wanted,
                                          stray=UNASSIGNED_REASONS),
                      lambda b: b.column("partition").to_numpy(zero_copy_only=False),
                      lambda b: b.column("_block").to_numpy())
    for day, parts in _each_day(refused, wanted):
        peeked = _peek(parts)
        if peeked is not None or store.partition_path(quarantine_table("events"), day).exists():
            report.quarantine_writes.append(write_parts(store, quarantine_table("events"), peeked or iter(()),
                                                        qschema, partition=day))
    unassigned_path = store.table_dir(quarantine_table("events")) / f"{UNASSIGNED}.parquet"
    if stray or unassigned_path.exists():
        rows = _by_day(checked.quarantined(unassigned, "source_file, source_row", stray=UNASSIGNED_REASONS),
                       lambda b: np.zeros(b.num_rows, dtype=np.int8), lambda b: b.column("_block").to_numpy())
        report.quarantine_writes.append(write_parts(store, f"{quarantine_table('events')}/{UNASSIGNED}",
                                                    (part for _, part in rows), qschema))
    report.input_rows = report.accepted_rows + report.quarantined_rows + deferred
    log.info("events: %s day(s) written, %s rows accepted, %s quarantined, %s deferred", len(wanted),
             f"{report.accepted_rows:,}", f"{report.quarantined_rows:,}", f"{deferred:,}")
    return report


def _by_day(batches: Iterable[pa.RecordBatch], day_of: Callable[[pa.RecordBatch], np.ndarray],
            block_of: Callable[[pa.RecordBatch], np.ndarray]) -> Iterator[tuple[str, pa.Table]]:
    """(day, rows) of a stream sorted by day: one Arrow chunk per day and block of ``EXPORT_ROWS`` rows."""
    def pieces() -> Iterator[tuple[tuple[str, int], pa.RecordBatch]]:
        for batch in batches:
            days, blocks = day_of(batch), block_of(batch)
            change = (days[1:] != days[:-1]) | (blocks[1:] != blocks[:-1])
            bounds = [0, *(np.flatnonzero(change) + 1), len(days)]
            for first, last in itertools.pairwise(bounds):
                yield (str(days[first]), int(blocks[first])), batch.slice(first, last - first)

    for (day, _), group in itertools.groupby(pieces(), key=lambda piece: piece[0]):
        yield day, pa.Table.from_batches([rows for _, rows in group]).combine_chunks()


def _blocks_from(position: int) -> Callable[[pa.RecordBatch], np.ndarray]:
    """Block (position // ``EXPORT_ROWS``) of each row of consecutive batches, the first at ``position``."""
    def blocks(batch: pa.RecordBatch) -> np.ndarray:
        nonlocal position
        numbers = (position + np.arange(batch.num_rows)) // EXPORT_ROWS
        position += batch.num_rows
        return numbers
    return blocks


def _each_day(pieces: Iterator[tuple[str, pa.Table]], days: list[str]) -> Iterator[tuple[str, Iterator[pa.Table]]]:
    """Every day of ``days`` (sorted) with its pieces, none for a day without rows; other days' pieces
    are skipped. A day's pieces are read before the next day is asked for."""
    groups = itertools.groupby(pieces, key=lambda piece: piece[0])
    current, group = next(groups, (None, iter(())))
    for day in days:
        while current is not None and current < day:  # a day between the wanted ones
            current, group = next(groups, (None, iter(())))
        if current == day:
            yield day, (rows for _, rows in group)
            current, group = next(groups, (None, iter(())))
        else:
            yield day, iter(())


def _peek(parts: Iterator[pa.Table]) -> Iterator[pa.Table] | None:
    """``parts`` unchanged, or None when it has none."""
    first = next(parts, None)
    return None if first is None else itertools.chain([first], parts)
