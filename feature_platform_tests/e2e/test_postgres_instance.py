"""The production dagster.yaml, for real: a raw partition materialized by the Dagster CLI with
DAGSTER_HOME on a copy of it is recorded in PostgreSQL run and event storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from feature_platform_tests.e2e import dagster_server

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture
def scratch_database(postgres_url):
    """A database of our own on the real server, dropped afterwards (nothing else is touched)."""
    with dagster_server.scratch_database(postgres_url) as url:
        yield url


def test_cli_materialization_is_recorded_in_postgres(tmp_path, tiny_source, scratch_database):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        **dagster_server.pg_env(scratch_database),
        "FP_DATA_DIR": str(tmp_path / "data"),
        "FP_RAW_DIR": str(tiny_source),
    }
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "feature_platform.definitions",
               "--select", "raw/events", "--partition", "2025-02-01"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "data" / "raw" / "events" / "2025-02-01.parquet").exists()

    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs")
        assert [row[0] for row in cur.fetchall()] == ["SUCCESS"]
        cur.execute(
            "SELECT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            ['["raw", "events"]'],
        )
        assert [row[0] for row in cur.fetchall()] == ["2025-02-01"]
    assert not list(home.glob("history/*.db")), "nothing may fall back to SQLite"
