"""Helpers for end-to-end tests that drive real Dagster servers: start and stop the processes, a scratch
PostgreSQL database, and the GraphQL calls a person's clicks in the UI make (launch a run, launch a backfill,
poll them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import requests

REPOSITORY = "__repository__"  # the name Dagster gives the repository of a `Definitions` object
ASSET_JOB = "__ASSET_JOB"  # the implicit job behind "Materialize" in the UI
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}  # one process per run instead of one per step

_RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
_BACKFILL_RUNNING = {"REQUESTED", "CANCELING", "FAILING"}


@contextlib.contextmanager
def scratch_database(postgres_url: str) -> Iterator[str]:
    """A database of our own on the real server (its URL), dropped afterwards even with open connections."""
    name = f"fp_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlparse(postgres_url)._replace(path=f"/{name}").geturl()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_env(database_url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/postgres/dagster.yaml reads, for one database URL."""
    url = urlparse(database_url)
    return {
        "DAGSTER_PG_HOST": url.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
    }


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this shell's FP_* / DAGSTER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
    env.update(extra)
    return env


def _default_signals() -> None:
    """A shell's background job inherits SIGINT ignored, and a `dagster dev` started like that did not stop on
    SIGTERM either (seen on this machine): restore the default handler before the server starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Servers:
    """Server processes started in their own process groups, each logging to a file, stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: Sequence[str], *, cwd: Path, env: dict[str, str]) -> None:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            # A new session: the server, its code servers and run workers get one group we can signal.
            self.processes[name] = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True,
                                                    preexec_fn=_default_signals)

    def logs(self, chars: int = 3000) -> str:
        """The end of every server's log, for assertion messages."""
        return "\n".join(f"--- {name}.log ---\n{(self.log_dir / f'{name}.log').read_text(errors='replace')[-chars:]}"
                         for name in self.processes)

    def wait_until_serving(self, url: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    return
            except OSError:
                exited = [name for name, p in self.processes.items() if p.poll() is not None]
                assert not exited, f"{exited} exited before {url} answered\n{self.logs()}"
                assert time.monotonic() < deadline, f"{url} did not answer within {timeout} s\n{self.logs()}"
                time.sleep(1)

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL to what is still there after 30 s."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)  # then kill what is left of the group: code servers, run workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class DagsterGraphQL:
    """The webserver's GraphQL API: the mutations the UI's Materialize and Launch backfill buttons send."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._location: str | None = None

    @property
    def location(self) -> str:
        """The one code location: `feature_platform` from workspace.yaml, `feature_platform.definitions` with -m."""
        if self._location is None:
            nodes = self.query("{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
                               )["repositoriesOrError"]["nodes"]
            assert [n["name"] for n in nodes] == [REPOSITORY], nodes
            self._location = nodes[0]["location"]["name"]
        return self._location

    def query(self, query: str, **variables: object) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def launch_assets(self, asset_paths: Sequence[Sequence[str]], partition: str,
                      run_config: dict | None = None) -> str:
        """Materialize assets for one partition (the asset job with a partition tag); returns the run id."""
        data = self.query(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            params={
                "selector": {"repositoryLocationName": self.location, "repositoryName": REPOSITORY, "jobName": ASSET_JOB,
                             "assetSelection": [{"path": list(p)} for p in asset_paths]},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
                "runConfigData": run_config or {},
            },
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def launch_backfill(self, asset_paths: Sequence[Sequence[str]], partitions: Sequence[str], title: str) -> str:
        """An asset backfill over the given partitions (what the daemon runs); returns the backfill id."""
        data = self.query(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }""",
            params={"assetSelection": [{"path": list(p)} for p in asset_paths], "partitionNames": list(partitions),
                    "title": title},
        )["launchPartitionBackfill"]
        assert data["__typename"] == "LaunchBackfillSuccess", data
        return data["backfillId"]

    def wait_for_run(self, run_id: str, timeout: float = 240) -> str:
        """Poll until the run is done; returns its final status."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.query("query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
                             id=run_id)["runOrError"]
            assert run["__typename"] == "Run", run
            if run["status"] in _RUN_DONE:
                return run["status"]
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout} s"
            time.sleep(1)

    def wait_for_backfill(self, backfill_id: str, timeout: float = 240) -> dict:
        """Poll until the backfill is done; returns its status and its runs' ids and statuses."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.query(
                """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                     __typename ... on PartitionBackfill { status runs(limit: 50) { runId status } } } }""",
                id=backfill_id,
            )["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] not in _BACKFILL_RUNNING:
                return backfill
            assert time.monotonic() < deadline, f"backfill {backfill_id} still {backfill['status']} after {timeout} s"
            time.sleep(2)

    def run_queue_config(self) -> dict:
        """The run coordinator's limits as the running instance read them from dagster.yaml."""
        return self.query("""{ instance { runQueuingSupported
                                runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml } } }""")["instance"]
