"""`feature-platform backfill`: one real Dagster backfill, run by a daemon, on a small generated data set."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg
import pytest

from feature_platform_tests.e2e.test_cli import cli

pytestmark = pytest.mark.e2e

END = "2025-03-10"


def _hashes(data: Path, day: str) -> dict[str, str]:
    files = [data / "raw" / "events" / f"{day}.parquet", *(data / "features").glob(f"*/{day}.parquet")]
    return {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _backfills(home: Path) -> list:
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            return [(b, instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": b.backfill_id})))
                    for b in instance.get_backfills()]
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = old


def test_backfill_launches_one_dagster_backfill_in_few_runs_never_regresses_online_and_is_byte_identical(tmp_path):
    generated = cli("generate", "--users", "60", "--days", "12", "--end-date", END, "--seed", "3", "--out", "src",
                    cwd=tmp_path)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    ingested = cli("ingest", "--source", "src", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    data = tmp_path / "data"

    recent = cli("backfill", "--start", "2025-03-08", "--end", END, cwd=tmp_path)
    assert recent.returncode == 0, recent.stdout + recent.stderr
    # Only ingested so far: the snapshots' windows reach back to the first ingested day, which has no tiles
    # yet, so the tiles start there (12 days x 6 families); raw/events, 7 snapshots and the push get 3 days.
    assert "also tiles/lead from 2025-02-27" in recent.stdout, recent.stdout
    assert "asset partitions materialized 99/99" in recent.stdout and "COMPLETED_SUCCESS" in recent.stdout
    for family in ("lead", "affinity", "activity"):
        assert len(list((data / "tiles" / family).glob("*.parquet"))) == 12
    for family in ("lead_features", "affinity_features", "user_activity_features"):
        assert sorted(p.stem for p in (data / "features" / family).glob("*.parquet")) == [
            "2025-03-08", "2025-03-09", END]
    status = cli("online", "status", cwd=tmp_path)
    assert f"served version: {END}." in status.stdout, status.stdout
    before = _hashes(data, "2025-03-08")

    # An older range that overlaps: 2025-03-08 is recomputed byte for byte, and the push of 2025-03-08 leaves
    # the newer 2025-03-10 served.
    older = cli("backfill", "--start", "2025-03-03", "--end", "2025-03-08", cwd=tmp_path)
    assert older.returncode == 0, older.stdout + older.stderr
    assert _hashes(data, "2025-03-08") == before and len(before) == 8  # raw/events + seven families
    assert sorted(p.stem for p in (data / "features" / "lead_features").glob("*.parquet"))[0] == "2025-03-03"
    status = cli("online", "status", cwd=tmp_path)
    assert f"served version: {END}." in status.stdout, status.stdout

    backfills = _backfills(data / "dagster_home")
    assert len(backfills) == 2
    for backfill, runs in backfills:
        assert backfill.status.value == "COMPLETED_SUCCESS"
        # Single-run policies: each range in one run (tiles that start earlier than the rest take their own).
        assert 1 <= len(runs) <= 3 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert backfill.backfill_id in recent.stdout + older.stdout
    pushes = [line for line in older.stdout.splitlines() if "runs launched" in line]
    assert pushes, older.stdout
