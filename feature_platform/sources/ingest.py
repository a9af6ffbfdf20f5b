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
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_platform.config import Settings
from feature_platform.offline.store import OfflineStore, WriteResult
from feature_platform.sources import loaders
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.schema import CUSTOMERS, EVENTS, RAW_TABLES, RawTable
from feature_platform.sources.validation import (
    ValidationResult,
    parse_column,
    quarantine_schema,
    reason_counts,
    validate,
)

UNASSIGNED = "unassigned"
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


def ingest_table(store: OfflineStore, source_dir: Path, table: RawTable, now: dt.datetime) -> IngestReport:
    """Ingest an unpartitioned table (customers, reviews, listings) into ``raw/<name>.parquet``.

    An absent optional table is written empty (so downstream reads a known schema) and reported
    as ``absent``; absent customers are derived from the user ids in the events input.
    """
    if table.name not in RAW_TABLES or table is EVENTS:
        raise ValueError(f"ingest_table handles customers, reviews and listings, not {table.name}")
    source = loaders.load(source_dir, table)
    if source is None:
        if table is CUSTOMERS:
            return _derive_customers(store, source_dir, now)
        report = IngestReport(table=table.name, status="absent")
        report.writes.append(store.write(raw_table(table.name), table.arrow_schema.empty_table()))
        return report
    result = validate(source, now)
    report = _report(result, source.files)
    report.writes.append(store.write(raw_table(table.name), result.accepted))
    report.quarantine_writes.append(store.write(quarantine_table(table.name), result.quarantined))
    return report


def _derive_customers(store: OfflineStore, source_dir: Path, now: dt.datetime) -> IngestReport:
    """One customer per distinct user id of the events, known (signup_date) from the day of their
    first parseable event, so nobody appears in a snapshot or a training set before their data does."""
    events = events_input(source_dir, default_landing(store))
    if events is None:
        raise loaders.SourceError(f"{source_dir}: neither customers nor events found; nothing to ingest")
    ids = pc.utf8_trim_whitespace(pc.cast(events.data.column("user_id"), pa.string()))
    first = pa.table({"user_id": ids, "timestamp": parse_column(events, "timestamp")}).filter(
        pc.and_(pc.is_valid(ids), pc.not_equal(ids, ""))
    ).group_by("user_id").aggregate([("timestamp", "min")]).sort_by("user_id")
    users = first.column("user_id")
    columns = {c.name: pa.nulls(len(users), c.type) for c in CUSTOMERS.columns}
    columns["user_id"] = users
    columns["signup_date"] = pc.cast(first.column("timestamp_min"), CUSTOMERS.arrow_schema.field("signup_date").type)
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
) -> IngestReport:
    """Land the events of each UTC day in ``days`` (ISO dates) as one partition each.

    The whole input (the files and the landing log, default ``<data>/landing``) is validated each time
    (duplicates are global), but only the given days are written, so re-running a day is idempotent.
    The report counts the rows of those days, plus the refused rows with no usable day (the unassigned
    quarantine) and the valid rows after ``last_partition`` (today's, deferred to a later run). Over
    all days, these add up to the input.
    """
    landing = landing if landing is not None else default_landing(store)
    landed = landing.loaded_source()
    source = combine_events(loaders.load(source_dir, EVENTS), landed)
    if source is None:
        raise loaders.SourceError(f"{source_dir}: no events input (events.parquet, events.csv or events/)")
    result = validate(source, now, min_timestamp)
    report = land_events(store, result, source.files, days, last_partition)
    if landed is not None:
        report.landed_rows = landed.data.num_rows
        report.late_landed = _late_landed(store, landed, result.accepted, days, last_partition)
        if report.late_landed:
            log.warning("landed events of days ingested before they arrived: %s; materialize raw/events for those "
                        "days again (a backfill) to include them", report.late_landed)
    return report


def default_landing(store: OfflineStore) -> LandingLog:
    """The landing log of the data directory the store lives in (``Settings.landing_dir``)."""
    return LandingLog(Settings(data_dir=store.root).landing_dir)


def events_input(source_dir: Path, landing: LandingLog | None) -> loaders.LoadedSource | None:
    """The user's events files and the landed events as one input (None when there is neither)."""
    return combine_events(loaders.load(source_dir, EVENTS), landing.loaded_source() if landing else None)


def combine_events(
    source: loaders.LoadedSource | None, landed: loaders.LoadedSource | None
) -> loaders.LoadedSource | None:
    """Files first, then landed rows, as one input for validation.

    Columns the files lack are filled the way validation would read them (a derived event id, the
    default event type), so adding landed rows changes nothing for the file's rows.
    """
    if landed is None or source is None:
        return source if landed is None else landed
    columns: dict[str, pa.ChunkedArray] = {}
    for name in EVENTS.column_names:
        mine = source.data.column(name) if name in source.data.column_names else parse_column(source, name)
        theirs = landed.data.column(name)
        if not mine.type.equals(theirs.type):  # e.g. CSV text next to typed landed values: validation parses text
            mine, theirs = pc.cast(mine, pa.string()), pc.cast(theirs, pa.string())
        columns[name] = pa.chunked_array(mine.chunks + theirs.chunks, mine.type)
    for name in (loaders.SOURCE_FILE, loaders.SOURCE_ROW):
        mine, theirs = source.data.column(name), landed.data.column(name)
        columns[name] = pa.chunked_array(mine.chunks + theirs.chunks, mine.type)
    return loaders.LoadedSource(table=EVENTS, files=source.files + landed.files, data=pa.table(columns),
                                absent_columns=())


def _late_landed(
    store: OfflineStore, landed: loaders.LoadedSource, accepted: pa.Table, days: list[str], last_partition: str
) -> dict[str, int]:
    """Per day outside this run, accepted landed events its existing partition lacks (they arrived after
    that day was ingested). Only those days' event ids are read."""
    ids = landed.data.column("event_id")
    kept = landed.data.filter(pc.is_in(ids, value_set=accepted.column("event_id")))
    day_of = pc.strftime(kept.column("timestamp"), format="%Y-%m-%d")
    late = {}
    for day in sorted(set(day_of.to_pylist()) - set(days)):
        path = store.partition_path(raw_table("events"), day)
        if day > last_partition or not path.exists():
            continue  # not ingested yet: the day's first ingest includes them
        present = pq.read_table(path, columns=["event_id"]).column("event_id")
        day_ids = kept.filter(pc.equal(day_of, day)).column("event_id")
        missing = int(pc.sum(pc.invert(pc.is_in(day_ids, value_set=present))).as_py() or 0)
        if missing:
            late[day] = missing
    return late


def land_events(
    store: OfflineStore, result: ValidationResult, files: tuple[Path, ...], days: list[str], last_partition: str
) -> IngestReport:
    wanted = sorted(days)
    # Accepted rows are sorted by timestamp (validation's SORT_KEYS), so each day is one contiguous
    # slice: find the boundaries once instead of scanning every row once per day.
    stamps = result.accepted.column("timestamp").to_numpy()
    accepted_by_day = {day: _day_slice(result.accepted, stamps, day) for day in wanted}
    after_last = np.datetime64(dt.date.fromisoformat(last_partition) + dt.timedelta(days=1), "us")
    deferred = len(stamps) - int(np.searchsorted(stamps, after_last, side="left"))

    quarantined_day = result.quarantined.column("partition")
    unassigned = pc.or_(
        pc.is_null(quarantined_day),
        pc.is_in(result.quarantined.column("reason"), value_set=pa.array(
            ["timestamp_in_future", "timestamp_before_partitions_start"])),
    )
    in_window = pc.fill_null(pc.is_in(quarantined_day, value_set=pa.array(wanted, pa.string())), False)
    quarantined = result.quarantined.filter(pc.and_(in_window, pc.invert(unassigned)))
    stray = result.quarantined.filter(unassigned)

    accepted_rows = sum(t.num_rows for t in accepted_by_day.values())
    report = IngestReport(
        table="events",
        input_rows=accepted_rows + quarantined.num_rows + stray.num_rows + deferred,
        accepted_rows=accepted_rows,
        quarantined_rows=quarantined.num_rows + stray.num_rows,
        deferred_rows=deferred,
        source_files=tuple(str(f) for f in files),
        reasons=reason_counts(pa.concat_tables([quarantined, stray])),
    )

    q_days = quarantined.column("partition")
    qschema = quarantine_schema(EVENTS)
    for day in wanted:
        report.writes.append(store.write(raw_table("events"), accepted_by_day[day], partition=day))
        day_q = quarantined.filter(pc.equal(q_days, day))
        if day_q.num_rows or store.partition_path(quarantine_table("events"), day).exists():
            report.quarantine_writes.append(store.write(quarantine_table("events"), day_q, partition=day, schema=qschema))
    unassigned_path = store.table_dir(quarantine_table("events")) / f"{UNASSIGNED}.parquet"
    if stray.num_rows or unassigned_path.exists():
        report.quarantine_writes.append(store.write(f"{quarantine_table('events')}/{UNASSIGNED}", stray, schema=qschema))
    return report


def _day_slice(table: pa.Table, stamps: np.ndarray, day: str) -> pa.Table:
    start = np.datetime64(dt.date.fromisoformat(day), "us")
    first = int(np.searchsorted(stamps, start, side="left"))
    last = int(np.searchsorted(stamps, start + np.timedelta64(1, "D"), side="left"))
    return table.slice(first, last - first)
