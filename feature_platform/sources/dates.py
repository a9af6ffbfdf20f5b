"""Which days a raw input covers, so a run materializes exactly those partitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.sources import loaders
from feature_platform.sources.schema import EVENTS
from feature_platform.sources.validation import parse_column

# Events before this day are taken for broken timestamps (a 0 epoch, a 0001-01-01 placeholder), not data.
EARLIEST_DAY = "1970-01-02"


def source_event_days(
    source_dir: Path, first_partition: str, last_partition: str, now: dt.datetime | None = None
) -> tuple[str, str]:
    """First and last UTC day with a valid event, clipped to [first_partition, last_partition].

    Reads the timestamps only, a chunk at a time."""
    source = loaders.open_source(source_dir, EVENTS, columns={"timestamp"})
    if source is None:
        raise loaders.SourceError(f"{source_dir}: no events input (events.parquet, events.csv or events/)")
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    low, high = dt.datetime.fromisoformat(first_partition), now
    bounds: list[dt.datetime] = []
    for chunk in source.chunks():
        part = loaders.LoadedSource(table=EVENTS, files=source.files, data=chunk, absent_columns=source.absent_columns)
        stamps = parse_column(part, "timestamp")
        in_range = pc.and_(pc.greater_equal(stamps, pa.scalar(low, stamps.type)),
                           pc.less_equal(stamps, pa.scalar(high, stamps.type)))
        stamps = stamps.filter(pc.fill_null(in_range, False))
        if len(stamps):
            extremes = pc.min_max(stamps)
            bounds += [extremes["min"].as_py(), extremes["max"].as_py()]
    if not bounds:
        raise loaders.SourceError(f"{source_dir}: no event has a valid timestamp; nothing to materialize")
    first = min(bounds).date().isoformat()
    last = min(max(bounds).date().isoformat(), last_partition)
    if first > last:
        raise loaders.SourceError(f"{source_dir}: every event is after the last closed day {last_partition}")
    return first, last
