"""What every `feature-platform` command shares: its output line and its settings."""

from __future__ import annotations

import argparse
import datetime as dt

from feature_platform.config import Settings


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
