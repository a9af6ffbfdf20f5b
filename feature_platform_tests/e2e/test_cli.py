"""The real `feature-platform` command, as a user runs it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

END = "2025-03-10"


def cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "feature_platform.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _runs(home: Path) -> list[str]:
    with sqlite3.connect(home / "history" / "runs.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM runs")]


def test_run_on_a_fresh_directory_generates_materializes_and_is_idempotent(tmp_path):
    first = cli("run", "--users", "120", "--days", "10", "--end-date", END, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "generating sample data: 120 users x 10 days" in first.stdout
    assert "[1/2] raw inputs" in first.stdout and "[2/2] feature snapshots" in first.stdout
    assert "done in" in first.stdout
    data = tmp_path / "data"
    partitions = sorted(p.name for p in (data / "raw" / "events").glob("*.parquet"))
    assert partitions == [f"2025-03-{d:02d}.parquet" for d in range(1, 11)]
    assert _runs(data / "dagster_home") == ["SUCCESS", "SUCCESS"]  # one run per step
    snapshots = sorted(p.name for p in (data / "features" / "lead_features").glob("*.parquet"))
    assert snapshots == partitions
    before = {p.name: p.read_bytes() for p in (data / "raw" / "events").glob("*.parquet")}

    second = cli("run", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sample data: reusing" in second.stdout
    assert {p.name: p.read_bytes() for p in (data / "raw" / "events").glob("*.parquet")} == before
    assert _runs(data / "dagster_home") == ["SUCCESS"] * 4


def test_ingest_of_a_transactions_export_then_run_keeps_using_it(tmp_path):
    src = tmp_path / "shop"
    src.mkdir()
    (src / "events.csv").write_text(
        "CustomerID,InvoiceDate,Revenue\n17850,2025-01-05 08:26:00,15.3\n13047,2025-01-05 09:00:00,22\n"
        "17850,2025-01-07 10:00:00,4.5\n"
    )
    ingest = cli("ingest", "--source", str(src), "--data-dir", "d", cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "raw/customers" in ingest.stdout and "partitions 2025-01-05 .. 2025-01-07" in ingest.stdout
    run = cli("run", "--data-dir", "d", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"raw data: {src}" in run.stdout and "generating" not in run.stdout


def test_unreadable_input_fails_with_the_file_named(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "events.parquet").write_bytes(b"not parquet at all")
    result = cli("ingest", "--source", str(src), "--data-dir", "d", cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {src / 'events.parquet'}: cannot be read as Parquet" in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_flags_are_refused_by_name(tmp_path):
    result = cli("run", "--users", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--users: must be >= 1" in result.stderr


def test_registry_commands_show_features_lineage_and_the_fingerprint_guard(tmp_path):
    shown = cli("registry", "show", "engagement_score", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "computed by asset: features/engagement_features" in shown.stdout
    assert "upstream features: page_views_30d" in shown.stdout
    listed = cli("registry", "list", "--family", "profile", cwd=tmp_path)
    assert "gender__missing" in listed.stdout
    checked = cli("registry", "check", cwd=tmp_path)
    assert checked.returncode == 0 and "matches its recorded fingerprint" in checked.stdout
    unknown = cli("registry", "show", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown feature" in unknown.stdout
