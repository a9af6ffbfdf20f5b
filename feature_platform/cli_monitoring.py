"""`feature-platform metrics-exporter`: the Dagster instance's runs, checks and quarantine counts for Prometheus."""

from __future__ import annotations

import argparse
import errno
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feature_platform.cli_common import echo
from feature_platform.cli_common import settings_for as _settings
from feature_platform.config import Settings

DEFAULT_PORT = 9109  # the port the rules' example scrape config (deploy/prometheus/prometheus.yml) names

EXPORTER_HELP = """\
Serve, at http://HOST:PORT/metrics, what the Dagster instance records: failed and successful runs per job,
the newest successful run's time, the latest result of every asset check (drift among them) and the
quarantined rows of the latest ingests, read at each scrape. The instance is DAGSTER_HOME's, by default the
SQLite one under the data directory. Load deploy/prometheus/rules.yml into Prometheus to alert on them.
"""


def add_monitoring_command(sub: argparse._SubParsersAction, instance: Callable[[Settings], Any]) -> None:
    """``instance``: the CLI's own way to open the Dagster instance of some settings (cli.py)."""
    exporter = sub.add_parser("metrics-exporter", help="Prometheus metrics of the Dagster instance (runs, checks, "
                                                       "quarantine)", description=EXPORTER_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    exporter.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    exporter.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    exporter.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    exporter.set_defaults(handler=lambda args: cmd_metrics_exporter(args, instance))


def cmd_metrics_exporter(args: argparse.Namespace, open_instance: Callable[[Settings], Any]) -> int:
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):  # notices about APIs chosen deliberately, as `run` does
        warnings.filterwarnings("ignore", category=category)
    from feature_platform.definitions import build_defs  # after the filter: the assets are declared on import
    from feature_platform.orchestration.monitoring.exporter import serve

    settings = _settings(args)
    instance = open_instance(settings)
    defs = build_defs()
    home = os.environ.get("DAGSTER_HOME", settings.dagster_home)
    try:
        serve(instance, defs, args.host, args.port, ready=lambda: echo(
            f"Dagster metrics of {home} on http://{args.host}:{args.port}/metrics (Ctrl-C stops)"))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        echo(f"error: {args.host}:{args.port} is already in use; pick another with --port")
        return 2
    except KeyboardInterrupt:
        pass
    return 0
