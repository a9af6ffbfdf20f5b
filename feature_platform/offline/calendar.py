"""The first day of the daily partitions, recorded in the data directory where the data starts.

Daily partitions begin on the first UTC day of the ingested events, so a 1997 export and a 2026 one
both land in partitions, and a catalog shows no years of "missing" days before the data. Ingest (the
CLI's ``ingest`` and ``run``) records that day in ``<data>/partitions.json`` before any Dagster run; every
process that builds the definitions for the data directory (the CLI, ``dagster dev``, the daemon, a
run worker) reads the same file, so they agree on the partitions. The start only ever moves earlier:
landing older data extends the partitions, newer data never shrinks them.

Data that ended before yesterday (a historical export) also records its last day as the partitions'
``end``, so the days between it and today do not show as years of "missing" partitions either; data
that reaches yesterday leaves the end open (the partitions grow a day a day). An end only moves later,
and once open stays open.
"""

from __future__ import annotations

import datetime as dt
import json

from feature_platform.config import ConfigError
from feature_platform.offline.location import StorePath, store_path
from feature_platform.offline.store import atomic_write_bytes

PARTITIONS_RECORD = "partitions.json"
# Before anything was ingested into a data directory: the definitions still load (for `dagster dev` on a
# fresh clone), with partitions from this day.
DEFAULT_PARTITIONS_START = "2020-01-01"


class CalendarError(ConfigError):
    """The recorded partitions start is unreadable; the message names the file."""


def recorded_partitions(data_dir: StorePath) -> tuple[str, str | None] | None:
    """The recorded (first partition, last partition or None: open), or None when nothing was ingested yet."""
    record = store_path(data_dir) / PARTITIONS_RECORD
    try:
        recorded = json.loads(record.read_text())
        start = dt.date.fromisoformat(recorded["start"]).isoformat()
        end = recorded.get("end")
        return start, dt.date.fromisoformat(end).isoformat() if end is not None else None
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CalendarError(f"{record}: not a partitions record ({error}); delete it and ingest again") from error


def partitions_range(data_dir: StorePath) -> tuple[str, str | None]:
    """The first and last partition (None: up to yesterday) the definitions of this data directory use."""
    return recorded_partitions(data_dir) or (DEFAULT_PARTITIONS_START, None)


def record_partitions(data_dir: StorePath, first_day: str | dt.date, last_day: str | dt.date | None = None
                      ) -> tuple[str, str | None]:
    """Record that data covers ``first_day`` .. ``last_day`` (None: it reaches yesterday, open-ended);
    returns the range in force: the start never moves later, the end never earlier, an open end stays open."""
    first = _iso(first_day)
    last = _iso(last_day) if last_day is not None else None
    recorded = recorded_partitions(data_dir)
    if recorded is None:
        start, end = first, last
    else:
        start = min(recorded[0], first)
        end = None if recorded[1] is None or last is None else max(recorded[1], last)
        if (start, end) == recorded:
            return recorded
    record = {"start": start, **({"end": end} if end is not None else {})}
    atomic_write_bytes(store_path(data_dir) / PARTITIONS_RECORD, (json.dumps(record, indent=2) + "\n").encode())
    return start, end


def _iso(day: str | dt.date) -> str:
    return dt.date.fromisoformat(day if isinstance(day, str) else day.isoformat()).isoformat()
