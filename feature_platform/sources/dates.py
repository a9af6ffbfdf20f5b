"""Which days a raw input covers, so a run materializes exactly those partitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.sources import loaders
from feature_platform.sources.schema import EVENTS
from feature_platform.sources.time_formats import FORMATS_TRIED
from feature_platform.sources.validation import parse_column

# Events before this day are taken for broken timestamps (a 0 epoch, a 0001-01-01 placeholder), not data.
EARLIEST_DAY = "1970-01-02"
EXAMPLES = 5  # unparseable values quoted in an error


def source_event_days(
    source_dir: Path, first_partition: str, last_partition: str, now: dt.datetime | None = None
) -> tuple[str, str]:
    """First and last UTC day with a valid event, clipped to [first_partition, last_partition].

    Checks the whole input's columns first (a missing user id or timestamp column is named as such),
    then reads the timestamps only, a chunk at a time. When no event has a usable timestamp the error
    says why: examples of values that do not parse and the formats tried, or the range they fall in."""
    whole = loaders.open_source(source_dir, EVENTS)  # raises on a missing required column
    source = loaders.open_source(source_dir, EVENTS, columns={"timestamp"}) if whole is not None else None
    if source is None:
        raise loaders.SourceError(f"{source_dir}: no events input (events.parquet, events.csv or events/)")
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    low, high = dt.datetime.fromisoformat(first_partition), now
    bounds: list[dt.datetime] = []
    unparsed: list[str] = []
    early = late = 0
    for chunk in source.chunks():
        chunk = loaders.without_faults(chunk)  # an unreadable row is quarantined: it covers no day
        part = loaders.LoadedSource(table=EVENTS, files=source.files, data=chunk, absent_columns=source.absent_columns)
        stamps = parse_column(part, "timestamp")
        if len(unparsed) < EXAMPLES and "timestamp" in chunk.column_names:
            given = pc.utf8_trim_whitespace(pc.cast(chunk.column("timestamp"), pa.string()))
            failed = pc.and_(pc.is_null(stamps), pc.invert(pc.fill_null(pc.equal(given, ""), True)))
            for value in pc.unique(given.filter(pc.fill_null(failed, False))).to_pylist()[:EXAMPLES]:
                if value not in unparsed:
                    unparsed.append(value)
        early += pc.sum(pc.less(stamps, pa.scalar(low, stamps.type))).as_py() or 0
        late += pc.sum(pc.greater(stamps, pa.scalar(high, stamps.type))).as_py() or 0
        in_range = pc.and_(pc.greater_equal(stamps, pa.scalar(low, stamps.type)),
                           pc.less_equal(stamps, pa.scalar(high, stamps.type)))
        stamps = stamps.filter(pc.fill_null(in_range, False))
        if len(stamps):
            extremes = pc.min_max(stamps)
            bounds += [extremes["min"].as_py(), extremes["max"].as_py()]
    if not bounds:
        raise loaders.SourceError(_why_no_day(source_dir, source, unparsed[:EXAMPLES], early, late, first_partition, now))
    first = min(bounds).date().isoformat()
    last = min(max(bounds).date().isoformat(), last_partition)
    if first > last:
        raise loaders.SourceError(f"{source_dir}: every event is after the last closed day {last_partition}")
    return first, last


def _why_no_day(source_dir: Path, source: loaders.SourceFiles, unparsed: list[str], early: int, late: int,
                first_partition: str, now: dt.datetime) -> str:
    formats = {f"{file}: {fmt['timestamp']}" for file, fmt in source.time_formats.items() if "timestamp" in fmt}
    if early or late:
        return (f"{source_dir}: no event has a timestamp in {first_partition} .. {now:%Y-%m-%d %H:%M} UTC "
                f"({early:,} before {first_partition}, {late:,} after the moment of the run)")
    if unparsed:
        read_as = f"; read as {', '.join(sorted(formats))}" if formats else ""
        return (f"{source_dir}: no event timestamp parses{read_as}; examples: {unparsed}; formats tried: "
                f"{'; '.join(FORMATS_TRIED)}")
    return f"{source_dir}: every event's timestamp is empty; nothing to materialize"
