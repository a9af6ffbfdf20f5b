"""Benchmark: churn training at a million rows and more, beside one plain XGBoost fit on the same rows.

    python bench/bench_training.py --training-set DIR/training/training_dataset.parquet [--rows 1000000]

Builds a large churn training table from an existing one (after `feature-platform run`): its labelled rows
repeated with fresh user ids (copy k of user u is ``u~k``) until ``--rows``, so the feature distributions and
the label rate are the real ones and every copy is a separate customer to the by-user split. Then times,
in this process: the raw floor (expand the features once, one XGBoost fit with the platform's defaults on
every row) and ``train_churn_models`` (search on a sample, six split fits and baselines, the champion's refit
on every row), with progress lines. Run it under ``/usr/bin/time -v`` for the peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from xgboost import XGBClassifier

from feature_platform.ml import churn
from feature_platform.ml.expand import expand, fit_expansion
from feature_platform.registry import load_registry


def enlarge(table: pa.Table, rows: int) -> pa.Table:
    labelled = table.filter(pc.fill_null(table.column("labelled"), False))
    copies = -(-rows // labelled.num_rows)
    parts = []
    for k in range(copies):
        users = pc.binary_join_element_wise(labelled.column("user_id"), pa.scalar(f"{k}"), "~")
        parts.append(labelled.set_column(labelled.schema.get_field_index("user_id"), "user_id", users))
    return pa.concat_tables(parts).slice(0, rows).combine_chunks()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--training-set", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    registry = load_registry()
    table = enlarge(pq.read_table(args.training_set), args.rows)
    features = [name for name in registry.snapshot_features() if name in table.column_names]  # as the asset does
    print(f"{table.num_rows:,} rows x {len(features)} features, churn rate "
          f"{pc.mean(table.column('churned')).as_py():.3f}", flush=True)

    started = time.perf_counter()
    spec = fit_expansion(table, features, registry)
    x = expand(table, spec)[0]
    y = np.asarray(table.column("churned").to_numpy(zero_copy_only=False), dtype=np.int64)
    XGBClassifier(n_estimators=150, learning_rate=0.1, tree_method="hist", n_jobs=1, random_state=7).fit(x, y)
    floor = time.perf_counter() - started
    print(f"raw floor: expand {x.shape[0]:,} x {x.shape[1]} and one XGBoost fit (150 rounds): {floor:.1f} s", flush=True)
    del x

    started = time.perf_counter()
    result = churn.train_churn_models(table, features, registry, progress=lambda line: print(
        f"  [{time.perf_counter() - started:6.1f} s] {line}", flush=True))
    seconds = time.perf_counter() - started
    print(f"train_churn_models: {seconds:.1f} s = {seconds / floor:.1f}x the raw floor; champion {result.champion}, "
          f"out-of-time ROC-AUC {result.champion_oot_auc:.3f} (best baseline {result.best_baseline} "
          f"{result.baseline_oot_auc:.3f})")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
