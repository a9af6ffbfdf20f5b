"""Hyper-parameter search shared by the churn and contact models, and how their fits share the cores.

One search per training, not one per split. Its rows are the labelled rows in neither test set, so no
test row influences a choice; the caller splits them in time, each candidate is fitted on the earlier
part and scored by ROC-AUC on the latest, as the out-of-time split (the one the champion is chosen on)
tests. The choice is then fitted on each split's training rows and, for the champion, on every
labelled row. It replaced a 3-fold grid on each split: 48 of the models step's 58 fits, and random
folds, which reward memorising a user's repeated rows, picked deeper contact trees that scored worse
out of time (figures in docs/models.md).

XGBoost learns its number of rounds here: early stopping on the validation rows (at most
:data:`MAX_ROUNDS`, stopping after :data:`PATIENCE` rounds without a lower log loss), kept as
``n_estimators``. Log loss, the objective being fitted, rather than AUC, which plateaus early and
noisily on one churn snapshot date: stopping on AUC cost the churn model of another sample seed its
calibration (out-of-time log loss 0.167 against 0.146).

Threads: every fit is single-threaded and independent fits run :data:`PARALLEL_FITS` at a time on
threads (:func:`run_all`), so a result never depends on the number of cores or which fit finishes
first. Two threads inside each model instead was no faster and fragile on a busy machine: XGBoost's
OpenMP threads spin at every barrier while their partner is descheduled, and a forest's parallel
``predict_proba`` adds its trees' votes in whichever order its threads finish, which changes the last
bits of a score from run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import roc_auc_score
from xgboost import XGBClassifier

from feature_platform.ml.evaluation import require_both_classes

MAX_ROUNDS = 500
PATIENCE = 25
PARALLEL_FITS = 2  # the cores of the machine the default run is sized for
# Rows a candidate is fitted and validated on at most: past these a search ranks candidates as well on a
# random sample (a candidate's rank is what matters, not its fit on every row); the chosen parameters are
# then fitted on every row of each split and, for the champion, on every labelled row.
SEARCH_FIT_ROWS = 200_000
SEARCH_VALIDATION_ROWS = 100_000

T = TypeVar("T")


def run_all(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Call every job, :data:`PARALLEL_FITS` at a time on threads (fitting releases the GIL); results in
    job order."""
    with ThreadPoolExecutor(PARALLEL_FITS) as pool:
        return list(pool.map(lambda job: job(), jobs))


def sample(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """``rows`` when there are at most ``limit``, else a random ``limit`` of them (same seed, same rows), in order."""
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def checked_rows(y: np.ndarray, search_fit: np.ndarray, search_val: np.ndarray,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The search's fitting and validation rows sampled to :data:`SEARCH_FIT_ROWS` and
    :data:`SEARCH_VALIDATION_ROWS`, each checked to hold both classes (ROC-AUC is undefined otherwise)."""
    search_fit = sample(search_fit, SEARCH_FIT_ROWS, seed)
    search_val = sample(search_val, SEARCH_VALIDATION_ROWS, seed)
    require_both_classes(y[search_fit], "search", "fitting")
    require_both_classes(y[search_val], "search", "validation")
    return search_fit, search_val


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
        model.set_params(n_estimators=MAX_ROUNDS, early_stopping_rounds=PATIENCE, eval_metric="logloss")
        model.fit(x_fit, y_fit, eval_set=[(x_val, y_val)], verbose=False)
        params = {**params, "n_estimators": int(model.best_iteration) + 1}
    else:
        model.fit(x_fit, y_fit)
    return dict(params), float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))  # XGBoost: its best round
