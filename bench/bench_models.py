"""Benchmark: build both training sets and train both models on an existing data directory.

    python bench/bench_models.py --data-dir /tmp/fp_run     # after `feature-platform run --data-dir ...`

Prints seconds per stage beside a raw floor measured in the same run: reading the training set and
one single XGBoost fit (default hyper-parameters) on its expanded matrix — what one model costs
without the search, the two splits and the final refit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from xgboost import XGBClassifier

from feature_platform.ml import churn, contact
from feature_platform.ml.expand import expand, fit_expansion
from feature_platform.ml.training_sets import churn_training_set, contact_training_set
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry


def timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    print(f"{label:<48} {time.perf_counter() - started:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--horizon-days", type=int, default=30)
    args = parser.parse_args()
    store, registry = OfflineStore(args.data_dir), load_registry()
    churn_set = timed("churn training set (PIT join + labels)", lambda: churn_training_set(
        store, registry, horizon_days=args.horizon_days))
    contact_set = timed("contact training set (PIT join + labels)", lambda: contact_training_set(store, registry))
    print(f"  churn rows {churn_set.num_rows:,}, contact rows {contact_set.num_rows:,}")
    bench_model("churn", churn_set, args.data_dir, registry)
    bench_model("contact", contact_set, args.data_dir, registry)


def bench_model(name: str, table, data_dir: Path, registry) -> None:
    label = churn.LABEL if name == "churn" else contact.LABEL
    path = data_dir / f"bench_{name}.parquet"
    pq.write_table(table, path)
    features = [f for f in registry.features if f in table.column_names]
    floor_table = timed(f"raw floor: read the {name} training set", lambda: pq.read_table(path))
    path.unlink()
    data = contact.add_match_inputs(floor_table) if name == "contact" else floor_table
    spec = fit_expansion(data, features, registry, extra=contact.EXTRA_INPUTS if name == "contact" else None)
    x, _ = expand(data, spec)
    y = np.nan_to_num(data.column(label).to_numpy(zero_copy_only=False).astype(float)).astype(int)
    timed(f"raw floor: one XGBoost fit ({x.shape[0]:,} x {x.shape[1]})",
          lambda: XGBClassifier(tree_method="hist", n_jobs=1).fit(x, y))
    if name == "churn":
        result = timed("churn: 3 models x 2 splits, CV search, refit",
                       lambda: churn.train_churn_models(table, features, registry))
    else:
        result = timed("contact: XGBoost x 2 splits, CV search, refit",
                       lambda: contact.train_contact_model(table, features, registry))
    print(f"  {name}: champion {result.champion}, OOT ROC-AUC {result.champion_oot_auc:.4f} "
          f"vs baseline {result.baseline_oot_auc:.4f}")

if __name__ == "__main__":
    main()
