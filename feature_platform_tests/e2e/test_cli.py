"""The real `feature-platform` command, as a user runs it."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_platform.cli import historical_as_of
from feature_platform_tests.e2e.sample_run import END, SHORT_HORIZON, cli
from feature_platform_tests.e2e.transactions import write_transactions

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


def test_run_without_enough_history_for_the_label_horizon_says_so(tmp_path):
    result = cli("run", "--users", "50", "--days", "10", "--end-date", END, cwd=tmp_path)
    assert result.returncode == 1
    assert "[4/7] training sets" in result.stdout and "FAILED" in result.stdout
    assert "has a full 30-day label horizon" in result.stdout  # the reason, not a stack trace
    assert "[5/7]" not in result.stdout
    # data that ended long ago is judged as of its own cut-off, not by the wall clock
    assert "historical data (it ends 2025-03-10): staleness and ingestion are judged as of 2025-03-11T00:00:00 UTC" \
        in result.stdout


def test_only_data_that_ends_before_yesterday_is_historical():
    assert historical_as_of("2026-06-30", "2026-12-01") == "2026-07-01T00:00:00"
    assert historical_as_of("2026-12-01", "2026-12-01") is None  # current data: the wall clock


def test_a_run_can_be_limited_to_days_of_the_data(tmp_path):
    result = cli("run", "--users", "30", "--days", "10", "--end-date", END, "--first-day", "2025-03-05",
                 "--last-day", "2025-03-07", "--data-dir", "d", cwd=tmp_path)
    assert "raw data" in result.stdout and "(2025-03-01 .. 2025-03-10); partitions from 2025-03-01; " \
        "this run 2025-03-05 .. 2025-03-07" in result.stdout, result.stdout
    assert re.search(r"raw/events +[0-9,]+ rows, 3 partitions", result.stdout)
    assert sorted(p.name for p in (tmp_path / "d" / "raw" / "events").glob("*.parquet")) == [
        "2025-03-05.parquet", "2025-03-06.parquet", "2025-03-07.parquet"]
    outside = cli("run", "--first-day", "2025-04-01", "--data-dir", "d", cwd=tmp_path)
    assert outside.returncode == 2
    assert "error: the events of" in outside.stdout and "nothing in 2025-04-01 .. 2025-03-10" in outside.stdout


def test_a_transactions_only_export_gives_a_churn_champion_without_code_changes(tmp_path):
    """A late-1990s purchase history in the shape of the classic CD-store data set (a simulation the platform
    did not make: space-aligned customer_id, YYYYMMDD date, n_items, dollar_value), ingested as is: the
    partitions start where the data does, the money is the amount, the unused column is named."""
    src = tmp_path / "shop"
    src.mkdir()
    rows = write_transactions(src / "events.csv", customers=500, days=120, end=dt.date(1998, 6, 30), shape="cdnow")
    assert rows > 3000
    ingest = cli("ingest", "--source", str(src), "--data-dir", "d", cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "raw/customers" in ingest.stdout
    assert "partitions from 1998-03-04; this run 1998-03-04 .. 1998-06-30" in ingest.stdout
    assert "events.csv: column(s) n_items map to nothing and are not read" in ingest.stdout
    assert "events.csv: timestamp read as YYYYMMDD" in ingest.stdout
    assert pq.read_table(tmp_path / "d" / "raw" / "events" / "1998-06-30.parquet").column("amount").null_count == 0
    assert json.loads((tmp_path / "d" / "partitions.json").read_text()) == {"start": "1998-03-04"}
    run = cli("run", "--data-dir", "d", cwd=tmp_path, env_extra={"FP_CHURN_HORIZON_DAYS": "30"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"raw data: {src}" in run.stdout and "generating" not in run.stdout
    churn = next(line for line in run.stdout.splitlines() if line.strip().startswith("models/churn_model"))
    assert "; promoted;" in churn, run.stdout
    auc, baseline = (float(x) for x in re.search(r"ROC-AUC ([0-9.]+) \(baseline ([0-9.]+)", churn).groups())
    assert auc >= 0.75 and auc > baseline
    # No listing views in a shop's transactions: the contact model is skipped with a warning, not an error.
    assert "models/contact_model" in run.stdout and "skipped: the data has no listing views" in run.stdout
    assert "1 warned" in run.stdout
    training = pq.read_table(tmp_path / "d" / "training" / "training_dataset.parquet")
    assert training.column("labelled").to_pylist() == [True] * training.num_rows


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
