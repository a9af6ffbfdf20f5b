"""Where raw inputs come from: FP_RAW_DIR, else the source recorded in the data directory.

`feature-platform ingest --source DIR` (and `run --source`) records DIR in ``<data>/source.json``
so that later runs, the daily schedule and `dagster dev` keep reading the user's own data instead of
falling back to generated sample data.
"""

from __future__ import annotations

import json
from pathlib import Path

from feature_platform.config import Settings
from feature_platform.sources.loaders import SourceError

SOURCE_RECORD = "source.json"


def recorded_source(settings: Settings) -> Path | None:
    record = settings.data_dir / SOURCE_RECORD
    if not record.exists():
        return None
    return Path(json.loads(record.read_text())["raw_dir"])


SAMPLE_RECORD = "_generation.json"  # in the sample folder: the parameters it was generated with


def sample_last_day(settings: Settings) -> str | None:
    """The last day of the generated sample data when that is the raw source (a try-out), else None: sample
    data does not grow by itself, so days after it have no raw data (real sources are not judged here)."""
    source = settings.raw_dir or recorded_source(settings)
    meta = settings.sample_dir / SAMPLE_RECORD
    if source is None or source.resolve() != settings.sample_dir.resolve() or not meta.exists():
        return None
    return str(json.loads(meta.read_text())["end_date"])


def remember_source(settings: Settings, source_dir: Path, kind: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    record = settings.data_dir / SOURCE_RECORD
    record.write_text(json.dumps({"raw_dir": str(source_dir.resolve()), "kind": kind}, indent=2) + "\n")


def resolve_source_dir(settings: Settings) -> Path:
    """The folder raw assets read, or a SourceError that says how to provide one."""
    source = settings.raw_dir or recorded_source(settings)
    if source is None:
        raise SourceError(
            f"no raw data configured for {settings.data_dir}: set FP_RAW_DIR to a folder with customers/events "
            "files, run `feature-platform ingest --source DIR`, or `feature-platform run` to generate sample data"
        )
    if not source.is_dir():
        origin = "FP_RAW_DIR" if settings.raw_dir else str(settings.data_dir / SOURCE_RECORD)
        raise SourceError(f"raw data folder {source} (from {origin}) does not exist")
    return source
