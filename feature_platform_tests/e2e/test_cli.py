"""The real `feature-platform` command, as a user runs it: the default run, input errors, the registry.

Runs over parts of the data are in test_cli_history.py, a real-shaped purchase history in
test_cli_transactions.py: separate files, so the test workers run them side by side."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from feature_platform_tests.e2e.sample_run import END, SHORT_HORIZON, cli

pytestmark = pytest.mark.e2e

def _runs(home: Path) -> list[str]:
    with sqlite3.connect(home / "history" / "runs.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM runs")]


def test_run_on_a_fresh_directory_generates_materializes_trains_and_is_idempotent(sample_cli_run):
    # `feature-platform run --users 150 --days 40 --end-date END` on a fresh directory, once per session
    # (test_ui_models.py opens its result): this test checks its output, then runs again in that directory.
    first, workdir = sample_cli_run.result, sample_cli_run.workdir
    assert first.returncode == 0, first.stdout + first.stderr
    assert "generating sample data: 150 users x 40 days" in first.stdout
    for step in ("[1/7] raw inputs", "[2/7] daily tiles", "[3/7] feature snapshots", "[4/7] training sets",
                 "[5/7] models", "[6/7] model scores", "[7/7] online store"):
        assert step in first.stdout
    assert "done in" in first.stdout
    data = workdir / "data"
    partitions = sorted(p.name for p in (data / "raw" / "events").glob("*.parquet"))
    assert len(partitions) == 40 and partitions[-1] == f"{END}.parquet"
    assert _runs(data / "dagster_home") == ["SUCCESS"] * 7  # one run per step, named by it (the UI's Runs page)
    with sqlite3.connect(data / "dagster_home" / "history" / "runs.db") as db:
        jobs = [row[0] for row in db.execute("SELECT pipeline_name FROM runs ORDER BY id")]
    assert jobs == ["ingest_raw_inputs", "build_daily_tiles", "build_feature_snapshots", "build_training_sets",
                    "train_models", "score_users", "push_online_store"]
    assert "__ephemeral" not in first.stdout and " - RUN_" not in first.stdout  # progress lines, not Dagster's log
    assert "next:" in first.stdout and "curl http://127.0.0.1:8000/features/u" in first.stdout
    assert "feature-platform serve --data-dir" in first.stdout and "feature-platform ui --data-dir" in first.stdout
    assert "Welcome to Dagster" not in first.stdout + first.stderr  # no banner
    # Each step ends saying how its checks went, in words that cannot read as a failure when none ran.
    assert re.search(r"ok in [0-9.]+ s; (\d+) of \1 checks passed", first.stdout), first.stdout
    assert "ok in" in first.stdout and "; no checks on these assets" in first.stdout and "0 checks" not in first.stdout
    snapshots = sorted(p.name for p in (data / "features" / "lead_features").glob("*.parquet"))
    assert snapshots == partitions
    # Each model prints its out-of-time metrics and the gate's decision, and is stored as its champion.
    for name in ("churn", "contact"):
        line = next(line for line in first.stdout.splitlines() if line.strip().startswith(f"models/{name}_model"))
        assert "out-of-time ROC-AUC" in line and "baseline" in line and "; promoted;" in line, line
        champion = json.loads((data / "models" / name / "champion.json").read_text())["version"]
        assert f"serving {champion}" in line
        assert (data / "models" / name / champion / "model_card.md").exists()
    # The long model step says what it does as it goes: a line per model and split.
    output = first.stdout + first.stderr
    assert re.search(r"churn: xgboost on out_of_time: ROC-AUC 0\.\d{3}", output), output[-3000:]
    assert re.search(r"contact: xgboost on out_of_time: ROC-AUC 0\.\d{3}", output), output[-3000:]
    # The champion churn model scores the last snapshot (only: older days are served unscored) ...
    churn = json.loads((data / "models" / "churn" / "champion.json").read_text())["version"]
    line = next(line for line in first.stdout.splitlines() if line.strip().startswith("features/churn_risk_scores"))
    assert f"scored with the churn champion {churn}; {END}: mean " in line, line
    assert sorted(p.name for p in (data / "features" / "churn_risk_scores").glob("*.parquet")) == [f"{END}.parquet"]
    # ... and the last snapshot, scores included, is served online from the embedded Redis, whose data file
    # outlives the run.
    assert f"online/user_features_push          served: version {END}." in first.stdout
    status = cli("online", "status", cwd=workdir)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"served version: {END}." in status.stdout and "150 users x 103 features" in status.stdout
    rollback = cli("online", "rollback", cwd=workdir)
    assert rollback.returncode == 1 and "no previous version to roll back to" in rollback.stdout
    before = {p.name: p.read_bytes() for p in (data / "raw" / "events").glob("*.parquet")}

    second = cli("run", cwd=workdir, env_extra=SHORT_HORIZON)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sample data: reusing" in second.stdout
    assert {p.name: p.read_bytes() for p in (data / "raw" / "events").glob("*.parquet")} == before
    assert _runs(data / "dagster_home") == ["SUCCESS"] * 14


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
    assert "merged from tiles: tiles/engagement" in shown.stdout
    assert "upstream features: page_views_30d, email_opens_30d" in shown.stdout
    assert "staleness_tolerance: 2 days\n" in shown.stdout and "serving_location: offline, online\n" in shown.stdout
    # no model trained in tmp_path/data: the models whose code reads the feature
    assert f"used by models: churn, contact (no trained champion in {tmp_path / 'data' / 'models'}" in shown.stdout
    listed = cli("registry", "list", "--family", "profile", cwd=tmp_path)
    assert "gender__missing" in listed.stdout
    checked = cli("registry", "check", cwd=tmp_path)
    assert checked.returncode == 0 and "matches its recorded fingerprint" in checked.stdout
    unknown = cli("registry", "show", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown feature" in unknown.stdout
    typo = cli("registry", "show", "engagment_score", cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'engagement_score'" in typo.stdout
