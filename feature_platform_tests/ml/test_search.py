"""The shared hyper-parameter search: the best validation ROC-AUC wins (the earlier candidate on a tie), XGBoost
learns its rounds by early stopping, and parallel jobs come back in job order."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from feature_platform.ml import search


def xor_data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The label is the XOR of two signs: a one-split tree ranks no better than chance, a deeper one almost perfectly."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)


def noisy_data(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """One weak signal plus noise columns: boosting overfits after a few rounds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (rng.uniform(size=n) < 1 / (1 + np.exp(-0.8 * x[:, 0]))).astype(np.int64)


def tree(params: dict[str, Any]) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0, **params)


def test_the_candidate_with_the_best_validation_auc_wins() -> None:
    (x_fit, y_fit), (x_val, y_val) = xor_data(1), xor_data(2)
    chosen = search.best_params({"tree": (tree, [{"max_depth": 1}, {"max_depth": 4}])}, x_fit, y_fit, x_val, y_val)
    assert chosen == {"tree": {"max_depth": 4}}


def test_a_tie_keeps_the_earlier_candidate() -> None:
    (x_fit, y_fit), (x_val, y_val) = xor_data(1), xor_data(2)
    same = [{"max_depth": 4, "min_samples_split": 2}, {"max_depth": 4, "min_samples_leaf": 1}]  # both the defaults
    assert search.best_params({"tree": (tree, same)}, x_fit, y_fit, x_val, y_val) == {"tree": same[0]}
    assert search.best_params({"tree": (tree, same[::-1])}, x_fit, y_fit, x_val, y_val) == {"tree": same[1]}


def test_several_models_are_searched_at_once_each_on_its_own_candidates() -> None:
    (x_fit, y_fit), (x_val, y_val) = xor_data(1), xor_data(2)
    chosen = search.best_params({"shallow": (tree, [{"max_depth": 1}]),
                                 "deep": (tree, [{"max_depth": 1}, {"max_depth": 5}])}, x_fit, y_fit, x_val, y_val)
    assert chosen == {"shallow": {"max_depth": 1}, "deep": {"max_depth": 5}}


def test_xgboost_learns_its_rounds_by_early_stopping() -> None:
    (x_fit, y_fit), (x_val, y_val) = noisy_data(1), noisy_data(2)

    def make(params: dict[str, Any]) -> XGBClassifier:
        return XGBClassifier(learning_rate=0.3, tree_method="hist", random_state=0, n_jobs=1, **params)

    chosen = search.best_params({"xgb": (make, [{"max_depth": 4}])}, x_fit, y_fit, x_val, y_val)["xgb"]
    assert set(chosen) == {"max_depth", "n_estimators"} and chosen["max_depth"] == 4
    assert 1 <= chosen["n_estimators"] < search.MAX_ROUNDS - search.PATIENCE  # stopped early on noise
    # The kept rounds are those of the lowest validation log loss, and predict as the early-stopped model did.
    early = make({"max_depth": 4, "n_estimators": search.MAX_ROUNDS, "early_stopping_rounds": search.PATIENCE,
                  "eval_metric": "logloss"}).fit(x_fit, y_fit, eval_set=[(x_val, y_val)], verbose=False)
    losses = early.evals_result()["validation_0"]["logloss"]
    assert chosen["n_estimators"] == int(np.argmin(losses)) + 1
    assert len(losses) == chosen["n_estimators"] + search.PATIENCE
    refit = make(chosen).fit(x_fit, y_fit)
    np.testing.assert_array_equal(refit.predict_proba(x_val), early.predict_proba(x_val))
    assert log_loss(y_val, refit.predict_proba(x_val)[:, 1]) == pytest.approx(min(losses), rel=1e-5)


def test_a_model_without_candidates_is_refused() -> None:
    x, y = xor_data(1)
    with pytest.raises(ValueError, match=r"no candidates to search for \['tree'\]"):
        search.best_params({"tree": (tree, [])}, x, y, x, y)


def test_run_all_returns_results_in_job_order_whatever_finishes_first() -> None:
    second_done = threading.Event()

    def first() -> str:
        assert second_done.wait(timeout=10)  # runs beside the second job and finishes after it
        return "first"

    def second() -> str:
        second_done.set()
        return "second"

    assert search.PARALLEL_FITS >= 2
    assert search.run_all([first, second, partial(str, 3)]) == ["first", "second", "3"]


def test_run_all_raises_a_job_error() -> None:
    def broken() -> None:
        raise RuntimeError("fit failed")

    with pytest.raises(RuntimeError, match="fit failed"):
        search.run_all([partial(str, 1), broken])


def test_fit_rows_fits_on_the_given_rows_only() -> None:
    x, y = xor_data(1)
    rows = np.arange(0, len(y), 2)
    model = search.fit_rows(tree({"max_depth": 3}), x, y, rows)
    expected = tree({"max_depth": 3}).fit(x[rows], y[rows])
    np.testing.assert_array_equal(model.predict_proba(x), expected.predict_proba(x))


def test_sample_keeps_small_row_sets_and_draws_a_fixed_ordered_subset_of_large_ones() -> None:
    rows = np.arange(10, 1010, 2)
    assert search.sample(rows, 500, seed=3) is rows
    picked = search.sample(rows, 100, seed=3)
    assert len(picked) == 100 and len(set(picked)) == 100 and set(picked) <= set(rows)
    assert np.all(np.diff(picked) > 0)
    assert np.array_equal(picked, search.sample(rows, 100, seed=3))
    assert not np.array_equal(picked, search.sample(rows, 100, seed=4))


def test_a_search_past_its_row_limit_ranks_candidates_on_the_sample(monkeypatch) -> None:
    """With the limits below the data, training still runs and reports each stage; the sample is drawn
    from the search rows only, so no test row enters it (the churn tests check the rest)."""
    from feature_platform.ml.churn import train_churn_models
    from feature_platform_tests.ml.test_churn import FEATURES, REGISTRY, synthetic_table

    monkeypatch.setattr(search, "SEARCH_FIT_ROWS", 50)
    monkeypatch.setattr(search, "SEARCH_VALIDATION_ROWS", 40)
    lines: list[str] = []
    result = train_churn_models(synthetic_table(), FEATURES, REGISTRY, seed=7, progress=lines.append)
    assert result.champion in ("logistic_regression", "random_forest", "xgboost")
    assert lines[0].startswith("churn: searching") and "on 50 rows, validated on 40" in lines[0]
    assert lines[1] == f"churn: fitting 3 models on out_of_time's {lines[1].split()[-2]} rows"
    assert sum(": ROC-AUC " in line for line in lines) == 6
    # the out-of-time scores name the champion, refitted beside the by-user fits, whose scores come last
    refit = next(i for i, line in enumerate(lines) if line.startswith("churn: refitting the champion"))
    assert all("on out_of_time" in line for line in lines[2:refit]) and len(lines[2:refit]) == 4
    assert all("on by_user" in line for line in lines[refit + 1:]) and len(lines[refit + 1:]) == 4
