"""Which days a raw input covers, so a run materializes exactly those partitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.sources import loaders
from feature_platform.sources.schema import EVENTS
from feature_platform.sources.validation import parse_column


def source_event_days(
    source_dir: Path, first_partition: str, last_partition: str, now: dt.datetime | None = None
) -> tuple[str, str]:
    """First and last UTC day with a valid event, clipped to [first_partition, last_partition]."""
    source = loaders.load(source_dir, EVENTS, columns={"timestamp"})
    if source is None:
        raise loaders.SourceError(f"{source_dir}: no events input (events.parquet, events.csv or events/)")
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    stamps = parse_column(source, "timestamp")
    in_range = pc.and_(
        pc.greater_equal(stamps, pa.scalar(dt.datetime.fromisoformat(first_partition), stamps.type)),
        pc.less_equal(stamps, pa.scalar(now, stamps.type)),
    )
    stamps = stamps.filter(pc.fill_null(in_range, False))
    if len(stamps) == 0:
        raise loaders.SourceError(f"{source_dir}: no event has a valid timestamp; nothing to materialize")
    bounds = pc.min_max(stamps)
    first = bounds["min"].as_py().date().isoformat()
    last = min(bounds["max"].as_py().date().isoformat(), last_partition)
    if first > last:
        raise loaders.SourceError(f"{source_dir}: every event is after the last closed day {last_partition}")
    return first, last

