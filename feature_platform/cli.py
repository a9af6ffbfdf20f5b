"""`feature-platform`: generate sample data, ingest your own, run the whole asset graph, open the UI."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from feature_platform.cli_common import ProgressFormatter, echo, iso_date, positive
from feature_platform.cli_common import settings_for as _settings
from feature_platform.cli_generate import add_generate_command, generate_sample, generation_flags, generation_params
from feature_platform.cli_monitoring import add_monitoring_command
from feature_platform.cli_registry import add_registry_command
from feature_platform.cli_serving import add_serving_commands
from feature_platform.config import ConfigError, Settings
from feature_platform.registry.registry import UnknownNameError
from feature_platform.sources.loaders import SourceError

EVENT_BATCH_SIZE = "1000"
INSTANCE_YAML = """\
# Local Dagster instance written by feature-platform: SQLite storage in this folder, no service needed.
# For PostgreSQL see dagster.yaml at the repository root.
storage:
  custom:  # Dagster's SQLite storage, its event log keeping connections open (see the module)
    module: feature_platform.orchestration.event_log
    class: LocalStorage
run_monitoring:  # the daemon (feature-platform ui) marks runs whose process died failed
  enabled: true
  poll_interval_seconds: 60
telemetry:
  enabled: false
nux:
  enabled: false  # no "join the community" pop-up in the UI
python_logs:
  managed_python_loggers: [feature_platform]
"""


# Files this process writes (raw partitions, landed events, models, the Dagster instance) are readable by
# the owner and group only: customer data is not for every account on the machine.
PRIVATE_UMASK = 0o027


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ProgressFormatter("%(message)s"))
    progress = logging.getLogger("feature_platform")
    progress.setLevel(logging.INFO)
    try:
        return args.handler(args)
    except (SourceError, ConfigError, UnknownNameError) as exc:  # what a user can fix; anything else is a bug
        echo(f"error: {exc}")
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feature-platform", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    add_generate_command(sub)

    ing = sub.add_parser("ingest", help="validate and land your own raw files (CSV or Parquet)")
    ing.add_argument("--source", type=Path, required=True, help="folder with customers.*, events.* (or events/), ...")
    ing.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    ing.set_defaults(handler=cmd_ingest)

    run = sub.add_parser("run", help="materialize the whole asset graph (generates sample data if none is set)")
    generation_flags(run)
    run.add_argument("--source", type=Path, help="use your own raw files instead of sample data")
    run.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    run.add_argument("--first-day", type=iso_date, metavar="YYYY-MM-DD",
                     help="materialize from this day on (default: the events' first day)")
    run.add_argument("--last-day", type=iso_date, metavar="YYYY-MM-DD",
                     help="materialize up to this day (default: the events' last closed day)")
    run.set_defaults(handler=cmd_run)

    add_registry_command(sub)

    prune = sub.add_parser("prune", help="delete offline partitions older than the retention setting")
    prune.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    prune.add_argument("--keep-days", type=positive, help="default FP_RETENTION_DAYS or 365")
    prune.set_defaults(handler=cmd_prune)

    backfill = sub.add_parser(
        "backfill", help="launch one Dagster backfill over a date range and follow it (as from the UI)",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=BACKFILL_HELP)
    backfill.add_argument("--start", type=iso_date, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", type=iso_date, required=True, help="last day, YYYY-MM-DD (at most yesterday, UTC)")
    backfill.add_argument("--assets", nargs="+", metavar="GROUP|KEY",
                          help="groups (raw, tiles, features, derived, online) or keys (raw/events); default: raw/events, "
                               "every family's tiles and snapshot, and the online push")
    backfill.add_argument("--url", help="a running Dagster webserver with its daemon (e.g. http://127.0.0.1:3000); "
                                        "default: a temporary dagster dev on this data directory")
    backfill.add_argument("--wait", action="store_true",
                          help="with --url: follow the backfill until it is done (without --url it always waits)")
    backfill.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                          help="give up waiting after this many seconds (default %(default)g)")
    backfill.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    backfill.set_defaults(handler=cmd_backfill)

    add_serving_commands(sub)
    add_monitoring_command(sub, _instance)

    ui = sub.add_parser("ui", help="open the Dagster UI on this data directory (dagster dev)")
    ui.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    ui.add_argument("--host", default="127.0.0.1", help="address the UI listens on (default %(default)s)")
    ui.add_argument("--port", type=int, default=3000, help="port the UI listens on (default %(default)s)")
    ui.set_defaults(handler=cmd_ui)

    return parser


def _version() -> str:
    """The installed distribution's version (setup.py's name), or a note when running from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("feature_platform")
    except PackageNotFoundError:
        return "(not installed: pip install -e .)"


def _instance(settings: Settings):
    """The Dagster instance in DAGSTER_HOME, defaulting to a SQLite one under the data directory."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = settings.dagster_home
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists() or _written_by_us(config.read_text()):
            config.write_text(INSTANCE_YAML)  # an older template of ours is brought up to date
        os.environ["DAGSTER_HOME"] = str(home)
    # A backfill's per-partition events are stored a batch per transaction (see orchestration/event_log.py).
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
    return dg.DagsterInstance.get()


def _written_by_us(text: str) -> bool:
    return text.splitlines()[:1] == INSTANCE_YAML.splitlines()[:1]


def _sample_source(settings: Settings, args: argparse.Namespace) -> Path:
    """Reuse the sample data when it matches the flags (or no flag was given), else (re)generate it."""
    from feature_platform.sources.locate import SAMPLE_RECORD, recorded_source, remember_source

    meta_path = settings.sample_dir / SAMPLE_RECORD
    asked = any(getattr(args, name) is not None for name in ("users", "days", "end_date", "seed"))
    wanted = generation_params(args)
    existing = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if existing is not None and (not asked or existing == wanted) and recorded_source(settings) == settings.sample_dir:
        echo(f"sample data: reusing {settings.sample_dir} ({existing['users']:,} users x {existing['days']} days ending {existing['end_date']})")
        return settings.sample_dir
    generate_sample(wanted, settings.sample_dir)
    meta_path.write_text(json.dumps(wanted, indent=2) + "\n")
    remember_source(settings, settings.sample_dir, kind="sample")
    return settings.sample_dir


def _resolve_source(settings: Settings, args: argparse.Namespace) -> Path:
    from feature_platform.sources.locate import recorded_source, remember_source

    if args.source is not None:
        if not args.source.is_dir():
            raise SourceError(f"--source {args.source}: not a folder")
        remember_source(settings, args.source, kind="external")
        return args.source.resolve()
    if settings.raw_dir is not None:
        return settings.raw_dir
    recorded = recorded_source(settings)
    if recorded is not None and recorded != settings.sample_dir:
        echo(f"raw data: {recorded} (recorded by an earlier ingest; pass --source to change it)")
        return recorded
    return _sample_source(settings, args)


def _materialize(settings: Settings, source: Path, steps, first: dt.date | None = None,
                 last: dt.date | None = None) -> int:
    """Run ``steps`` over the days of ``source``'s events (narrowed to [first, last] when given); the
    partitions start on the data's first day (recorded in the data directory for every Dagster process)."""
    from feature_platform.definitions import build_defs
    from feature_platform.offline.calendar import record_partitions
    from feature_platform.orchestration.constants import daily_partitions
    from feature_platform.orchestration.pipeline import ONLINE_STEP, run_steps
    from feature_platform.orchestration.resources import platform_resources
    from feature_platform.sources.dates import EARLIEST_DAY, source_event_days

    started = time.monotonic()
    instance = _instance(settings)
    yesterday = daily_partitions(EARLIEST_DAY).get_last_partition_key()
    assert yesterday is not None  # a daily calendar from 1970 has a last closed day
    data_first, data_last = source_event_days(source, EARLIEST_DAY, yesterday)
    as_of = historical_as_of(data_last, yesterday)
    start, end = record_partitions(settings.data_root, data_first, data_last if as_of else None)
    defs = build_defs(start, end=end)
    first_day = max(data_first, first.isoformat()) if first else data_first
    last_day = min(data_last, last.isoformat()) if last else data_last
    if first_day > last_day:
        raise SourceError(f"the events of {source} cover {data_first} .. {data_last}; "
                          f"nothing in {first or data_first} .. {last or data_last}")
    echo(f"data directory {settings.data_dir}; raw data {source} ({data_first} .. {data_last}); "
         f"partitions from {start}{f' to {end}' if end else ''}; this run {first_day} .. {last_day}")
    if as_of is not None:
        echo(f"historical data (it ends {data_last}): staleness and ingestion are judged as of {as_of} UTC, "
             "the data's cut-off, not the wall clock")
    resources = platform_resources(settings, raw_dir=source, now_utc=as_of)
    outcomes = run_steps(defs, steps, instance, resources, first_day, last_day, echo)
    ok = all(o.success for o in outcomes) and len(outcomes) == len(steps)
    passed = sum(o.checks_passed for o in outcomes)
    failed = sum(len(o.checks_failed) for o in outcomes)
    warned = sum(len(o.checks_warned) for o in outcomes)
    days = (dt.date.fromisoformat(last_day) - dt.date.fromisoformat(first_day)).days + 1
    echo(
        f"{'done' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s: {days} daily partitions "
        f"({first_day} .. {last_day}), {passed} checks passed, {failed} failed"
        f"{f', {warned} warned' if warned else ''}; "
        f"runs recorded in {os.environ['DAGSTER_HOME']}"
    )
    if ok and steps[-1] == ONLINE_STEP:
        _next_steps(settings, last_day)
    return 0 if ok else 1


def _next_steps(settings: Settings, day: str) -> None:
    """What to try after a complete run, with a user id of the served snapshot."""
    import pyarrow.compute as pc

    from feature_platform.offline.store import OfflineStore
    from feature_platform.orchestration import constants as C

    table = "/".join(C.USER_ACTIVITY_FEATURES.path)
    users = OfflineStore(settings.data_root).read(table, day, day).column("user_id")
    user = pc.min(users).as_py() if len(users) else "<user_id>"
    data = f" --data-dir {settings.data_dir}"
    echo("next:")
    echo(f"    feature-platform serve{data}   # the feature server, http://127.0.0.1:8000/docs")
    echo(f"    curl http://127.0.0.1:8000/features/{user}   # a user of snapshot {day}")
    echo(f"    feature-platform ui{data}   # the asset graph, partitions, runs and checks in Dagster's UI")


def historical_as_of(data_last: str, yesterday: str) -> str | None:
    """'Now' for a run over data that ends before yesterday: the end of its last day (ISO, UTC). Judged by
    the wall clock such data would be stale by design; None for current data (production's case)."""
    if data_last >= yesterday:
        return None
    return (dt.date.fromisoformat(data_last) + dt.timedelta(days=1)).isoformat() + "T00:00:00"


def _quiet_dagster_warnings() -> None:
    """Beta/preview notices about Dagster APIs we chose deliberately are for developers, not CLI users."""
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)


def cmd_run(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.pipeline import ALL_STEPS

    _quiet_dagster_warnings()
    settings = _settings(args)
    return _materialize(settings, _resolve_source(settings, args), ALL_STEPS, args.first_day, args.last_day)


def cmd_ingest(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.pipeline import RAW_STEP
    from feature_platform.sources.locate import remember_source

    _quiet_dagster_warnings()
    settings = _settings(args)
    if not args.source.is_dir():
        raise SourceError(f"--source {args.source}: not a folder")
    remember_source(settings, args.source, kind="external")
    code = _materialize(settings, args.source.resolve(), (RAW_STEP,))
    echo(f"quarantined rows (with reasons) are under {settings.data_root / 'quarantine'}")
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    from feature_platform.offline.store import OfflineStore

    settings = _settings(args)
    keep = args.keep_days or settings.retention_days
    today = dt.datetime.now(dt.UTC).date()
    removed = OfflineStore(settings.data_root).prune_all(keep, today)
    for table, paths in removed.items():
        echo(f"{table}: deleted {len(paths)} partitions ({paths[0].stem} .. {paths[-1].stem})")
    echo(f"retention {keep} days: {sum(len(p) for p in removed.values())} partitions deleted under {settings.data_root}")
    return 0


BACKFILL_HELP = """\
Launch one Dagster asset backfill over [--start, --end], recorded in the instance and shown in the UI
(Overview > Backfills), not a loop of processes. Every partitioned asset gets exactly that range; with
their single-run backfill policies raw/events, the tiles, the snapshots and the push of the whole range
run in as few runs as the graph allows. The backfill daemon executes it: with --url the one of that deployment;
without, a temporary `dagster dev` (webserver + daemon) on this data directory's instance, stopped when
the backfill is done. Pushing an older day than the one served online changes nothing online.
"""


def cmd_backfill(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.automation.backfill import BackfillError, run_backfill

    _quiet_dagster_warnings()
    settings = _settings(args)
    if args.url is None:
        _instance(settings)  # sets DAGSTER_HOME (default: the SQLite instance under the data directory)
    try:
        status = run_backfill(args.start, args.end, args.assets, url=args.url,
                              dagster_home=Path(os.environ["DAGSTER_HOME"]) if args.url is None else None,
                              data_dir=settings.data_dir, wait=args.wait or args.url is None, echo=echo,
                              timeout=args.timeout)
    except BackfillError as exc:
        echo(f"error: {exc}")
        return 1
    if not status.done:
        echo(f"backfill {status.backfill_id} is {status.status}; follow it in the UI (Overview > Backfills)")
        return 0
    for key, failed in sorted(status.failed.items()):
        echo(f"  {key}: {failed} partitions failed")
    if status.error:
        echo(f"  error: {status.error}")
    echo(f"{'done' if status.succeeded else 'FAILED'}: backfill {status.backfill_id}, {len(status.runs)} runs")
    return 0 if status.succeeded else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from feature_platform.cli_ui import run_ui

    settings = _settings(args)
    _instance(settings)
    return run_ui(settings.data_dir, os.environ["DAGSTER_HOME"], args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
