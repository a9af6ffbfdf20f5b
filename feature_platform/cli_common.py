"""What every `feature-platform` command shares: its output line and its settings."""

from __future__ import annotations

import argparse

from feature_platform.config import Settings


def echo(message: str) -> None:
    print(message, flush=True)


def settings_for(args: argparse.Namespace) -> Settings:
    """FP_* settings, with --data-dir when the command has one."""
    settings = Settings.from_env()
    if getattr(args, "data_dir", None):
        settings = settings.with_overrides(data_dir=args.data_dir.resolve())
    return settings
