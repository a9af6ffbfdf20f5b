"""Hyper-parameter search shared by the churn and contact models, and how their fits share the cores.

The search runs once per training, not once per split. Its rows are the labelled rows in neither
test set (so no test row of either split ever influences a choice); the caller splits them in time,
every candidate is fitted on the earlier part and scored by ROC-AUC on the latest part, the way the
out-of-time split (the one the champion is chosen on) tests. The chosen parameters are then fitted
on each split's training rows and, for the champion, on every labelled row.

Why not a 3-fold cross-validated grid per split, as before: on the default data (2,000 users x 90
days) those searches were 36 of churn's 43 fits and 12 of contact's 15 in a ~65 s models step; and
random folds reward memorising a user's repeated rows, so they picked deeper contact trees that
scored worse out of time (ROC-AUC 0.731 vs 0.744 with this search).
An XGBoost candidate also learns its number of rounds: it trains with early stopping on the
validation rows (at most :data:`MAX_ROUNDS`, stopping after :data:`PATIENCE` rounds without a
better AUC) and comes back with the rounds it kept as ``n_estimators``.

Threads: every fit is single-threaded and independent fits run :data:`PARALLEL_FITS` at a time
(:func:`run_all`). A fit's result never depends on the number of threads or the order they finish,
so a seed gives the same bytes whatever the number of cores. Two threads inside each model instead
was no faster (both trainings: median 13.5 s vs 12.3 s over 6 interleaved runs, 17.1 s with one
thread) and fragile on a busy machine: XGBoost's OpenMP threads spin at every barrier while their
partner is descheduled (one run in four took 2.5x the time and twice the CPU), and a forest's
parallel ``predict_proba`` adds the trees' votes in whichever order its threads finish, which
changes the last bits of a score from run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import roc_auc_score
from xgboost import XGBClassifier

MAX_ROUNDS = 500
PATIENCE = 25
PARALLEL_FITS = 2  # the cores of the machine the default run is sized for

T = TypeVar("T")


def run_all(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Call every job, :data:`PARALLEL_FITS` at a time on threads (fitting releases the GIL); results in
    job order."""
    with ThreadPoolExecutor(PARALLEL_FITS) as pool:
        return list(pool.map(lambda job: job(), jobs))


def fit_rows(model: Any, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> Any:
    """``model`` fitted on ``rows`` of ``x`` and ``y``, taken inside the job so only running fits hold a copy."""
    return model.fit(x[rows], y[rows])


def best_params(
    searches: Mapping[str, tuple[Callable[[dict[str, Any]], Any], Sequence[dict[str, Any]]]],
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per model name, the candidate with the best validation ROC-AUC (the earlier one on a tie).

    ``searches[name] = (make, candidates)``: ``make(params)`` builds an unfitted model. An XGBoost
    candidate comes back with ``n_estimators`` set by early stopping.
    """
    jobs = [(name, params) for name, (_, candidates) in searches.items() for params in candidates]
    missing = [name for name, (_, candidates) in searches.items() if not candidates]
    if missing:
        raise ValueError(f"no candidates to search for {missing}; give each model at least one parameter set")
    scored = run_all([partial(_score, searches[name][0](params), params, x_fit, y_fit, x_val, y_val)
                      for name, params in jobs])
    best: dict[str, tuple[dict[str, Any], float]] = {}
    for (name, _), (params, auc) in zip(jobs, scored, strict=True):
        if name not in best or auc > best[name][1]:
            best[name] = (params, auc)
    return {name: params for name, (params, _) in best.items()}


def _score(model: Any, params: dict[str, Any], x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray,
           y_val: np.ndarray) -> tuple[dict[str, Any], float]:
    if isinstance(model, XGBClassifier):
        model.set_params(n_estimators=MAX_ROUNDS, early_stopping_rounds=PATIENCE, eval_metric="auc")
        model.fit(x_fit, y_fit, eval_set=[(x_val, y_val)], verbose=False)
        params = {**params, "n_estimators": int(model.best_iteration) + 1}
    else:
        model.fit(x_fit, y_fit)
    return dict(params), float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))  # XGBoost: its best round
