"""The production instance as it is deployed: `dagster-webserver` and `dagster-daemon run` on the repository's
dagster.yaml against the real PostgreSQL. A partition run and a backfill launched over GraphQL complete, are
stored in PostgreSQL, and the run queue keeps slots free of backfills for the daily run."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import psycopg2
import pytest
import yaml

from feature_platform.orchestration import constants as C
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform_tests.e2e.dagster_server import (
    IN_PROCESS,
    DagsterGraphQL,
    Servers,
    clean_env,
    pg_env,
    scratch_database,
)
from feature_platform_tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # dagster-webserver and dagster-daemon of this interpreter's environment
END = dt.date(2025, 3, 12)
DAY = END.isoformat()
BACKFILL_DAYS = [(END - dt.timedelta(days=n)).isoformat() for n in (2, 1, 0)]

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture(scope="module")
def production(postgres_url, tmp_path_factory):
    """Webserver + daemon on a copy of dagster.yaml, a scratch database, 60 users x 5 days of sample data."""
    root = tmp_path_factory.mktemp("production")
    generate(GeneratorConfig(users=60, days=5, end_date=END, seed=11), root / "src")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    with scratch_database(postgres_url) as database:
        env = clean_env(DAGSTER_HOME=str(home), FP_DATA_DIR=str(root / "data"), FP_RAW_DIR=str(root / "src"),
                        **pg_env(database))
        port = free_port()
        servers = Servers(root)
        try:
            servers.start("webserver", [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                                        "-p", str(port)], cwd=REPO, env=env)
            servers.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO, env=env)
            url = f"http://127.0.0.1:{port}"
            servers.wait_until_serving(url)
            yield DagsterGraphQL(url), database, root, servers
        finally:
            servers.stop()


def _path(key) -> list[str]:
    return list(key.path)


def test_a_partition_run_and_a_backfill_launched_over_graphql_complete_and_are_stored_in_postgres(production):
    graphql, database, root, servers = production
    # The daily run for one day: raw inputs, the day's tiles and one feature family, as the UI's Materialize
    # button launches it.
    run_id = graphql.launch_assets([_path(C.RAW_CUSTOMERS), _path(C.RAW_EVENTS), _path(C.TILES_LEAD),
                                    _path(C.TILES_ENGAGEMENT), _path(C.LEAD_FEATURES)], DAY, run_config=IN_PROCESS)
    assert graphql.wait_for_run(run_id) == "SUCCESS", servers.logs()
    # A backfill of three days of engagement snapshots, run by the daemon; their windows' only raw day was
    # tiled by the run above. (Selecting raw/events or tiles too would grow it downstream through the
    # lookback mappings: every tile and snapshot that reads those days.)
    backfill_id = graphql.launch_backfill([_path(C.ENGAGEMENT_FEATURES)], BACKFILL_DAYS, title="e2e backfill")
    backfill = graphql.wait_for_backfill(backfill_id)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, servers.logs())
    backfill_runs = {run["runId"] for run in backfill["runs"]}
    assert len(backfill_runs) == 1 and backfill["runs"][0]["status"] == "SUCCESS", backfill  # single-run policy

    # Read back from PostgreSQL directly. (Only these runs: sensors and schedules that start RUNNING may add others.)
    ours = [run_id, *backfill_runs]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status, backfill_id FROM runs WHERE run_id = ANY(%s)", [ours])
        runs = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        assert runs == {run_id: ("SUCCESS", None), **{r: ("SUCCESS", backfill_id) for r in backfill_runs}}
        cur.execute("SELECT status, action_type FROM bulk_actions WHERE key = %s", [backfill_id])
        assert cur.fetchall() == [("COMPLETED_SUCCESS", "MULTI_RUN_ASSET_ACTION")]
        # Backfill runs carry the tag the run queue limits; the daily run does not.
        cur.execute("SELECT run_id, key, value FROM run_tags WHERE run_id = ANY(%s) AND key IN "
                    "('dagster/backfill', 'dagster/partition')", [ours])
        tags = {(row[0], row[1]): row[2] for row in cur.fetchall()}
        assert tags[(run_id, "dagster/partition")] == DAY and (run_id, "dagster/backfill") not in tags
        assert all(tags[(r, "dagster/backfill")] == backfill_id for r in backfill_runs)
        cur.execute("SELECT run_id = %s, asset_key, partition FROM event_logs WHERE run_id = ANY(%s) "
                    "AND dagster_event_type = 'ASSET_MATERIALIZATION'", [run_id, ours])
        materialized: dict[tuple[bool, str], set[str | None]] = {}
        for daily, key, partition in cur.fetchall():
            materialized.setdefault((daily, key), set()).add(partition)
    assert materialized == {
        (True, '["raw", "customers"]'): {None},
        (True, '["raw", "events"]'): {DAY},
        (True, '["tiles", "lead"]'): {DAY},
        (True, '["tiles", "engagement"]'): {DAY},
        (True, '["features", "lead_features"]'): {DAY},
        (False, '["features", "engagement_features"]'): set(BACKFILL_DAYS),
    }
    assert sorted(p.name for p in (root / "data" / "features" / "engagement_features").glob("*.parquet")) == [
        f"{day}.parquet" for day in BACKFILL_DAYS]
    assert not list((root / "dagster_home").glob("history/*.db")), "nothing may fall back to SQLite"


def test_the_run_queue_keeps_slots_that_backfills_cannot_take(production):
    graphql, _, _, _ = production
    instance = graphql.run_queue_config()
    assert instance["runQueuingSupported"], "the QueuedRunCoordinator of dagster.yaml is not in use"
    queue = instance["runQueueConfig"]
    limits = {limit["key"]: limit["limit"] for limit in yaml.safe_load(queue["tagConcurrencyLimitsYaml"])}
    # Every run of every backfill carries dagster/backfill (asserted above): all backfills together get at
    # most `limit` of the run slots, so at least two stay free for the daily run and manual runs.
    assert queue["maxConcurrentRuns"] == 4 and limits == {"dagster/backfill": 2}
    assert queue["maxConcurrentRuns"] - limits["dagster/backfill"] >= 2
    daemons = graphql.query("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
    healthy = {d["daemonType"]: d["healthy"] for d in daemons["instance"]["daemonHealth"]["allDaemonStatuses"]}
    assert healthy["QUEUED_RUN_COORDINATOR"] and healthy["BACKFILL"], healthy  # the daemon heartbeats into PG
