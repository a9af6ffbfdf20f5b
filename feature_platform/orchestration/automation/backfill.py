"""Backfills over a date range: one real Dagster asset backfill, recorded in the instance like one from the UI.

How it is executed. Dagster's public way to create an asset backfill is the webserver's GraphQL
mutation ``launchPartitionBackfill``; the backfill daemon then requests its runs and the run queue
launches them. Building a ``PartitionBackfill`` or ticking the daemon in-process would need
``dagster._core`` private modules, which we do not import. So:

- given the URL of a webserver (production: webserver + ``dagster-daemon`` running), launch there;
- without one (the default SQLite instance has no service), start a temporary ``dagster dev``
  (webserver + daemon) on a free loopback port against this data directory's instance, launch,
  wait until the backfill is done, and stop it. The runs are the daemon's, recorded in the instance.

Targets are exact partition ranges per asset (``partitionsByAssets``), not partition names: by names
Dagster grows the backfill downstream through the snapshots' 90-day lookback mapping (3 days of events
would recompute 92 days of snapshots). With one range for every partitioned asset and their single-run
backfill policies, the daemon puts raw/events, the snapshots and the push of the whole range in as few
runs as the graph allows (one per group of assets that can run together; unpartitioned targets such as
raw/customers add a run and a daemon tick before their dependents).
"""

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import requests

from feature_platform.config import Settings
from feature_platform.features.base import family_module
from feature_platform.features.engine import ALL_HISTORY, has_tiles, tile_table
from feature_platform.offline.calendar import partitions_range
from feature_platform.offline.location import StorePath
from feature_platform.offline.store import OfflineStore
from feature_platform.orchestration.constants import FEATURE_SNAPSHOTS, ONLINE_PUSH, RAW_EVENTS, TILE_KEYS
from feature_platform.orchestration.execution import run_config
from feature_platform.registry.registry import load_registry

# The snapshot path without the model scores: re-scoring history with today's champion would rewrite what
# was scored at the time (pass the `derived` group to do it anyway). The push refuses an older date than served.
DEFAULT_BACKFILL_ASSETS = (RAW_EVENTS, *TILE_KEYS, *FEATURE_SNAPSHOTS, ONLINE_PUSH)
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCESS = {"COMPLETED", "COMPLETED_SUCCESS"}
DEFINITIONS_MODULE = "feature_platform.definitions"

_LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status
      runs { runId status }
      error { message }
      assetBackfillData { assetBackfillStatuses {
        ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted numPartitionsMaterialized
                                             numPartitionsFailed }
        ... on UnpartitionedAssetStatus { assetKey { path } materialized failed }
      } }
    }
    ... on Error { message }
  }
}"""


class BackfillError(RuntimeError):
    """The backfill could not be launched or followed; the message says what to do."""


@dataclass
class BackfillStatus:
    backfill_id: str
    status: str
    runs: dict[str, str] = field(default_factory=dict)  # run id -> run status
    materialized: dict[str, tuple[int, int]] = field(default_factory=dict)  # asset -> (materialized, targeted)
    failed: dict[str, int] = field(default_factory=dict)  # asset -> failed partitions
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS and not self.failed and all(s == "SUCCESS" for s in self.runs.values())

    def describe(self) -> str:
        finished = sum(s in ("SUCCESS", "FAILURE", "CANCELED") for s in self.runs.values())
        done = sum(m for m, _ in self.materialized.values())
        total = sum(t for _, t in self.materialized.values())
        failed = f", {sum(self.failed.values())} failed" if self.failed else ""
        return (f"backfill {self.backfill_id}: {self.status}; runs launched {len(self.runs)}, completed {finished}; "
                f"asset partitions materialized {done}/{total}{failed}")


def backfill_targets(tokens: Sequence[str] | None, defs: dg.Definitions) -> list[dg.AssetKey]:
    """Asset keys for ``--assets``: each token a group name (``features``) or an asset key (``raw/events``)."""
    if not tokens:
        return list(DEFAULT_BACKFILL_ASSETS)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    groups = {graph.get(k).group_name for k in keys}
    found: list[dg.AssetKey] = []
    for token in tokens:
        if token in groups:
            found.extend(sorted((k for k in keys if graph.get(k).group_name == token), key=lambda k: k.to_user_string()))
        elif dg.AssetKey.from_user_string(token) in keys:
            found.append(dg.AssetKey.from_user_string(token))
        else:
            raise BackfillError(f"--assets {token!r} is neither a group ({', '.join(sorted(groups))}) nor an asset key "
                                "(e.g. raw/events, features/lead_features)")
    return list(dict.fromkeys(found))


def check_range(start: dt.date, end: dt.date, defs: dg.Definitions) -> None:
    """Refuse a range the daily partitions do not have, before anything is launched."""
    partitions = defs.resolve_asset_graph().get(RAW_EVENTS).partitions_def
    if partitions is None:
        raise BackfillError(f"{RAW_EVENTS.to_user_string()} has no partitions in these definitions")
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    if start > end:
        raise BackfillError(f"--start {start} is after --end {end}")
    if first is None or start.isoformat() < first or (last is not None and end.isoformat() > last):
        raise BackfillError(f"partitions run from {first} (the data's first day) to {last} (yesterday, UTC); "
                            f"got {start} .. {end}")


def missing_tile_windows(data_dir: StorePath, targets: Sequence[dg.AssetKey], start: dt.date,
                         defs: dg.Definitions) -> dict[dg.AssetKey, dt.date]:
    """Tile assets whose snapshots in the backfill would merge days without tiles: tile key -> first such day.

    A snapshot of ``start`` merges the tiles of its lookback before ``start``; days there that have raw
    events but were never tiled (data only ingested, say) must be tiled in the same backfill.
    """
    store = OfflineStore(data_dir)
    graph = defs.resolve_asset_graph()
    registry = load_registry()
    first_days: dict[dg.AssetKey, dt.date] = {}
    for family in registry.families.values():
        if family.derived or not has_tiles(family) or dg.AssetKey(list(family.asset_path)) not in targets:
            continue
        key = dg.AssetKey(tile_table(family).split("/"))
        lookback = family_module(family).LOOKBACK
        first = None if lookback is ALL_HISTORY else (start - dt.timedelta(days=lookback - 1)).isoformat()
        tiled = set(store.partitions(tile_table(family)))
        missing = [d for d in store.partitions("raw/events") if (first is None or d >= first)
                   and d < start.isoformat() and d not in tiled]
        if missing and graph.has(key):
            first_days[key] = dt.date.fromisoformat(missing[0])
    return first_days


def launch_backfill(url: str, start: dt.date, end: dt.date, assets: Sequence[dg.AssetKey],
                    defs: dg.Definitions, title: str | None = None,
                    earlier: Mapping[dg.AssetKey, dt.date] | None = None) -> str:
    """Create the asset backfill through the webserver at ``url``; returns its id. The daemon executes it.

    ``earlier``: assets whose range starts before ``start`` (tiles the snapshots' windows lack)."""
    check_range(start, end, defs)
    graph = defs.resolve_asset_graph()
    earlier = earlier or {}

    def window(key: dg.AssetKey) -> dict | None:
        if not graph.get(key).is_partitioned:
            return None
        return {"range": {"start": earlier.get(key, start).isoformat(), "end": end.isoformat()}}

    params = {
        "partitionsByAssets": [{"assetKey": {"path": list(k.path)}, "partitions": window(k)}
                               for k in dict.fromkeys([*assets, *earlier])],
        "title": title or f"feature-platform backfill {start} .. {end}",
        "tags": [{"key": "feature_platform/backfill_range", "value": f"{start}...{end}"}],
        "runConfigData": run_config(Settings.from_env()),  # steps in one process, unless FP_SHARDS > 1
    }
    reply = _graphql(url, _LAUNCH, {"params": params})["launchPartitionBackfill"]
    if reply["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"the webserver refused the backfill ({reply['__typename']}): {reply.get('message')}")
    return reply["backfillId"]


def backfill_status(url: str, backfill_id: str) -> BackfillStatus:
    reply = _graphql(url, _STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if reply["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {reply.get('message', reply['__typename'])}")
    status = BackfillStatus(backfill_id=backfill_id, status=reply["status"],
                            runs={r["runId"]: r["status"] for r in reply["runs"]},
                            error=(reply.get("error") or {}).get("message"))
    for entry in (reply.get("assetBackfillData") or {}).get("assetBackfillStatuses", []):
        key = "/".join(entry["assetKey"]["path"])
        if "numPartitionsTargeted" in entry:
            status.materialized[key] = (entry["numPartitionsMaterialized"], entry["numPartitionsTargeted"])
            if entry["numPartitionsFailed"]:
                status.failed[key] = entry["numPartitionsFailed"]
        else:
            status.materialized[key] = (int(entry["materialized"]), 1)
            if entry["failed"]:
                status.failed[key] = 1
    return status


def wait_for_backfill(url: str, backfill_id: str, echo: Callable[[str], None], timeout: float = 3600,
                      poll_seconds: float = 2.0) -> BackfillStatus:
    """Poll until the backfill is done, printing a line whenever its progress changes."""
    started = time.monotonic()
    deadline, last = started + timeout, ""
    while True:
        status = backfill_status(url, backfill_id)
        line = status.describe()
        if line != last:
            echo(f"[{time.monotonic() - started:5.0f} s] {line}")
            last = line
        if status.done:
            return status
        if time.monotonic() > deadline:
            raise BackfillError(f"backfill {backfill_id} not done after {timeout:.0f} s ({status.status}); it goes on "
                                "in the instance: follow it in the UI (Overview > Backfills)")
        time.sleep(poll_seconds)


@contextlib.contextmanager
def temporary_dagster(env: Mapping[str, str], log_path: Path, start_timeout: float = 300) -> Iterator[str]:
    """A ``dagster dev`` (webserver + daemon) on a free loopback port for the duration; yields its URL.

    ``env`` must carry DAGSTER_HOME (the instance) and FP_DATA_DIR (what the runs read and write).
    Its output goes to ``log_path``. The whole process group is stopped on exit.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "dagster", "dev", "-m", DEFINITIONS_MODULE, "-h", "127.0.0.1", "-p", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not _answers(url):
            if process.poll() is not None:
                raise BackfillError(f"dagster dev exited with code {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise BackfillError(f"dagster dev did not answer within {start_timeout:.0f} s; see {log_path}")
            time.sleep(1)
        yield url
    finally:
        _stop(process)


def run_backfill(start: dt.date, end: dt.date, assets: Sequence[str] | None = None, *, url: str | None = None,
                 dagster_home: Path | None = None, data_dir: Path | None = None, wait: bool = True,
                 echo: Callable[[str], None] = print, timeout: float = 3600) -> BackfillStatus:
    """Launch one asset backfill over [start, end] and (with ``wait``) follow it to the end.

    With ``url`` the webserver there launches it and its daemon runs it. Without, a temporary
    ``dagster dev`` on ``dagster_home`` runs it, writing under ``data_dir``; that always waits, since
    the daemon has to run until the backfill is done.
    """
    from feature_platform.definitions import build_defs

    root = Settings.from_env().with_overrides(data_dir=data_dir).data_root  # FP_DATA_URL's object store, or data_dir
    partitions = partitions_range(root)
    defs = build_defs(partitions[0], end=partitions[1])
    targets = backfill_targets(assets, defs)
    check_range(start, end, defs)
    echo(f"backfill {start} .. {end} of {len(targets)} assets: {', '.join(k.to_user_string() for k in targets)}")
    earlier = missing_tile_windows(root, targets, start, defs) if data_dir is not None else {}
    for key, first in earlier.items():
        echo(f"  also {key.to_user_string()} from {first}: the snapshots' windows reach days with raw events "
             "but no tiles")
    if url is not None:
        backfill_id = launch_backfill(url.rstrip("/"), start, end, targets, defs, earlier=earlier)
        echo(f"launched backfill {backfill_id} on {url}")
        if not wait:
            return backfill_status(url.rstrip("/"), backfill_id)
        return wait_for_backfill(url.rstrip("/"), backfill_id, echo, timeout)
    if dagster_home is None or data_dir is None:
        raise BackfillError("without a webserver URL, give dagster_home and data_dir for the temporary dagster dev")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FP_DATA_DIR": str(data_dir)}
    log_path = data_dir / "logs" / f"backfill-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    echo(f"no --url: starting a temporary dagster dev (webserver + daemon) on {dagster_home}; log {log_path}")
    started = time.monotonic()
    with temporary_dagster(env, log_path) as local:
        echo(f"dagster dev answered on {local} after {time.monotonic() - started:.0f} s")
        backfill_id = launch_backfill(local, start, end, targets, defs, earlier=earlier)
        echo(f"launched backfill {backfill_id}; the daemon runs it (also visible in the UI: Overview > Backfills)")
        return wait_for_backfill(local, backfill_id, echo, timeout)


def _graphql(url: str, query: str, variables: Mapping[str, Any]) -> dict:
    try:
        response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    except requests.RequestException as exc:
        raise BackfillError(f"cannot reach the Dagster webserver at {url}: {exc}") from None
    if response.status_code != 200:
        raise BackfillError(f"{url}/graphql answered {response.status_code}: {response.text[:500]}")
    body = response.json()
    if body.get("errors"):
        raise BackfillError(f"{url}/graphql: {'; '.join(e.get('message', str(e)) for e in body['errors'])}")
    return body["data"]


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group (webserver, daemon, code server), then SIGKILL what is left after ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # children (code server, run workers) may outlive the leader briefly
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
