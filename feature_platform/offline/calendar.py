"""The first day of the daily partitions, recorded in the data directory where the data starts.

Daily partitions begin on the first UTC day of the ingested events, so a 1997 export and a 2026 one
both land in partitions, and a catalog shows no years of "missing" days before the data. Ingest (the
CLI's ``ingest`` and ``run``) records that day in ``<data>/partitions.json`` before any Dagster run; every
process that builds the definitions for the data directory (the CLI, ``dagster dev``, the daemon, a
run worker) reads the same file, so they agree on the partitions. The start only ever moves earlier:
landing older data extends the partitions, newer data never shrinks them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from feature_platform.config import ConfigError
from feature_platform.offline.store import atomic_write_bytes

PARTITIONS_RECORD = "partitions.json"
# Before anything was ingested into a data directory: the definitions still load (for `dagster dev` on a
# fresh clone), with partitions from this day.
DEFAULT_PARTITIONS_START = "2020-01-01"


class CalendarError(ConfigError):
    """The recorded partitions start is unreadable; the message names the file."""


def recorded_partitions_start(data_dir: Path) -> str | None:
    """The recorded first partition (ISO date), or None when nothing was ingested yet."""
    record = Path(data_dir) / PARTITIONS_RECORD
    try:
        start = json.loads(record.read_text())["start"]
        return dt.date.fromisoformat(start).isoformat()
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise CalendarError(f"{record}: not a partitions record ({error}); delete it and ingest again") from error


def partitions_start(data_dir: Path) -> str:
    """The first partition the definitions of this data directory use."""
    return recorded_partitions_start(data_dir) or DEFAULT_PARTITIONS_START


def record_partitions_start(data_dir: Path, first_day: str | dt.date) -> str:
    """Record that data starts on ``first_day``; returns the start in force (the earlier of it and the
    recorded one)."""
    day = first_day if isinstance(first_day, str) else first_day.isoformat()
    day = dt.date.fromisoformat(day).isoformat()
    recorded = recorded_partitions_start(data_dir)
    if recorded is not None and recorded <= day:
        return recorded
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(data_dir) / PARTITIONS_RECORD, (json.dumps({"start": day}, indent=2) + "\n").encode())
    return day
