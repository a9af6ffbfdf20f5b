"""`feature-platform ingest` and `run` on a purchase history shaped like a classic public data set."""

from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow.parquet as pq
import pytest

from feature_platform_tests.e2e.sample_run import cli
from feature_platform_tests.e2e.transactions import write_transactions

pytestmark = pytest.mark.e2e


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
    assert "partitions from 1998-03-04 to 1998-06-30; this run 1998-03-04 .. 1998-06-30" in ingest.stdout
    assert "events.csv: column(s) n_items map to nothing and are not read" in ingest.stdout
    assert "events.csv: timestamp read as YYYYMMDD" in ingest.stdout
    assert pq.read_table(tmp_path / "d" / "raw" / "events" / "1998-06-30.parquet").column("amount").null_count == 0
    assert json.loads((tmp_path / "d" / "partitions.json").read_text()) == {"start": "1998-03-04", "end": "1998-06-30"}
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
