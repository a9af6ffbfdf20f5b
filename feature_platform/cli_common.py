"""What every `feature-platform` command shares: its output line and its settings."""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from feature_platform.config import Settings


class ProgressFormatter(logging.Formatter):
    """A run's progress lines as the step wrote them, indented under the step's heading: Dagster's
    ``job - run id - step -`` prefix belongs in the run's event log (the UI), not in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None)  # dagster._core.log_manager.LOG_RECORD_METADATA_ATTR
        if isinstance(meta, dict) and meta.get("dagster_event") is None and meta.get("orig_message") is not None:
            return f"    {meta['orig_message']}"
        return super().format(record)


def echo(message: str) -> None:
    print(message, flush=True)


def settings_for(args: argparse.Namespace) -> Settings:
    """FP_* settings, with --data-dir when the command has one."""
    settings = Settings.from_env()
    if getattr(args, "data_dir", None):
        settings = settings.with_overrides(data_dir=args.data_dir.resolve())
    return settings


def positive(value: str) -> int:
    """An argparse type: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def iso_date(value: str) -> dt.date:
    """An argparse type: a YYYY-MM-DD date."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None
