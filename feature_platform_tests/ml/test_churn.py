"""Churn training on a synthetic churn training set where churn depends on a few features plus noise."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feature_platform.ml import search
from feature_platform.ml.churn import (
    BASELINE,
    MODELS,
    OOT,
    SPLITS,
    ChurnTrainingResult,
    Evaluation,
    promotion_decision,
    train_churn_models,
)
from feature_platform.ml.evaluation import TooLittleDataError
from feature_platform.ml.expand import expand
from feature_platform.registry import load_registry

REGISTRY = load_registry()
FEATURES = ["last_active_days", "total_events", "engagement_score", "premium", "topic_vector", "category_affinity"]
USERS = 300
DATES = [dt.date(2025, 1, 6) + dt.timedelta(weeks=k) for k in range(7)]  # the last one is unlabelled
CATEGORIES = ("cars", "art", "toys")


def synthetic_table(seed: int = 0, shuffle_labels: bool = False) -> pa.Table:
    """Churn rises with low engagement, non-premium, a cars-heavy affinity and topic 3; recency is weak."""
    rng = np.random.default_rng(seed)
    n = USERS * len(DATES)
    engagement = rng.uniform(0, 1, n)
    last_active = rng.integers(0, 90, n).astype(float)
    last_active[rng.uniform(size=n) < 0.15] = np.nan
    premium = rng.uniform(size=n) < 0.3
    topics = rng.dirichlet(np.ones(10), n)
    shares = rng.dirichlet(np.ones(3), n)
    no_affinity = rng.uniform(size=n) < 0.1
    logit = (-4.0 * (engagement - 0.5) - 1.5 * premium + 4.0 * (shares[:, 0] - 1 / 3) + 8.0 * (topics[:, 3] - 0.1)
             + 0.01 * (np.nan_to_num(last_active, nan=90.0) - 45) + rng.normal(0, 0.5, n))
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    if shuffle_labels:
        churned = rng.permutation(churned)
    dates = np.repeat(DATES, USERS)
    labelled = dates != DATES[-1]
    affinity = [None if no_affinity[i] else list(zip(CATEGORIES, shares[i].tolist(), strict=True)) for i in range(n)]
    return pa.table({
        "user_id": [f"u{i % USERS}" for i in range(n)],
        "snapshot_date": pa.array(dates, pa.date32()),
        "last_active_days": pa.array(last_active, pa.int64(), from_pandas=True),
        "total_events": pa.array(rng.poisson(20, n), pa.int64()),
        "engagement_score": pa.array(engagement, pa.float64()),
        "premium": pa.array(premium, pa.bool_()),
        "topic_vector": pa.array(topics.tolist(), pa.list_(pa.float64())),
        "category_affinity": pa.array(affinity, pa.map_(pa.string(), pa.float64())),
        "activity_snapshot_missing": pa.array(np.zeros(n, bool)),
        "churned": pa.array(np.where(labelled, churned, 0), pa.int64(), mask=~labelled),
        "labelled": pa.array(labelled),
    })


@pytest.fixture(scope="module")
def result() -> ChurnTrainingResult:
    return train_churn_models(synthetic_table(), FEATURES, REGISTRY, seed=7, oot_dates=2)


def test_champion_beats_baseline_and_floor_out_of_time(result: ChurnTrainingResult) -> None:
    assert result.champion in MODELS
    assert result.champion_oot_auc >= 0.75
    assert result.champion_oot_auc > result.baseline_oot_auc
    promote, reason = promotion_decision(result)
    assert promote, reason
    assert reason.startswith("promoted")


def test_every_model_and_split_has_its_metrics(result: ChurnTrainingResult) -> None:
    labelled_rows = USERS * (len(DATES) - 1)
    assert set(result.evaluations) == set(SPLITS)
    for split, models in result.evaluations.items():
        assert set(models) == {*MODELS, BASELINE}
        for name, ev in models.items():
            assert ev.n_train + ev.n_test == labelled_rows, (split, name)  # unlabelled rows dropped
            assert 0.0 <= ev.brier <= 1.0 and ev.log_loss > 0 and 0.0 < ev.pr_auc <= 1.0
            assert {"0", "1", "accuracy"} <= set(ev.classification_report)
            assert 1 <= len(ev.importance) <= 20
            values = [v for _, v in ev.importance]
            assert values == sorted(values, reverse=True)
            assert len(ev.calibration["prob_true"]) == len(ev.calibration["prob_pred"]) <= 10
    assert result.evaluations[OOT][BASELINE].n_test == 2 * USERS  # the last two labelled dates
    assert result.evaluations["by_user"][BASELINE].n_test == round(0.2 * USERS) * (len(DATES) - 1)  # whole users
    columns = result.specs[OOT].columns
    assert "topic_3" in columns and "category_affinity__cars" in columns
    assert not any(c.startswith("activity_snapshot") for c in columns)


@pytest.mark.parametrize("parallel_fits", [search.PARALLEL_FITS, 1])
def test_same_seed_gives_identical_metrics_and_model_however_many_fits_run_at_once(
        result: ChurnTrainingResult, parallel_fits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "PARALLEL_FITS", parallel_fits)
    again = train_churn_models(synthetic_table(), FEATURES, REGISTRY, seed=7, oot_dates=2)
    assert again.metrics() == result.metrics()
    assert again.champion == result.champion
    x = expand(synthetic_table(), result.final_spec)[0]
    np.testing.assert_array_equal(again.final_model.predict_proba(x), result.final_model.predict_proba(x))


def test_one_search_serves_both_splits_and_the_final_model(result: ChurnTrainingResult) -> None:
    for name in MODELS:
        params = result.evaluations[OOT][name].best_params
        assert result.evaluations["by_user"][name].best_params == params, name
    assert result.evaluations[OOT]["random_forest"].best_params["model__max_depth"] in (4, 8)
    xgb = result.evaluations[OOT]["xgboost"].best_params
    assert xgb["max_depth"] in (2, 4) and 1 <= xgb["n_estimators"] <= search.MAX_ROUNDS
    final = result.final_model.get_params()
    assert all(final[k] == v for k, v in result.evaluations[OOT][result.champion].best_params.items())


def test_the_search_never_sees_the_out_of_time_test_rows(result: ChurnTrainingResult) -> None:
    table = synthetic_table()
    test_dates = pa.array(np.isin(table.column("snapshot_date").to_numpy(), DATES[-3:-1]))  # the last two labelled
    noise = pa.array(np.random.default_rng(1).uniform(0, 1, table.num_rows))
    changed = table.set_column(table.schema.get_field_index("engagement_score"), "engagement_score",
                               pc.if_else(test_dates, noise, table.column("engagement_score")))
    again = train_churn_models(changed, FEATURES, REGISTRY, seed=7, oot_dates=2)
    for name in MODELS:  # XGBoost's early-stopped rounds would move with any change to the search rows
        assert again.evaluations[OOT][name].best_params == result.evaluations[OOT][name].best_params, name
    assert again.evaluations[OOT]["xgboost"].roc_auc != result.evaluations[OOT]["xgboost"].roc_auc


def test_shuffled_labels_are_not_promoted() -> None:
    shuffled = train_churn_models(synthetic_table(shuffle_labels=True), FEATURES, REGISTRY, seed=7)
    promote, reason = promotion_decision(shuffled)
    assert not promote
    assert "floor" in reason or "baseline" in reason


def fake_result(champion_auc: float, baseline_auc: float) -> ChurnTrainingResult:
    def ev(auc: float) -> Evaluation:
        return Evaluation(auc, 0.5, 0.7, 0.25, {}, [], {"prob_true": [], "prob_pred": []}, {}, 10, 10)

    return ChurnTrainingResult({OOT: {"xgboost": ev(champion_auc), BASELINE: ev(baseline_auc)}}, {}, {},
                               "xgboost", 7)


@pytest.mark.parametrize(("champion", "baseline", "promote", "words"), [
    (0.80, 0.60, True, ["promoted"]),
    (0.70, 0.60, True, ["promoted"]),  # the floor is inclusive
    (0.65, 0.60, False, ["floor 0.7000"]),
    (0.80, 0.80, False, ["baseline", "0.8000"]),
    (0.55, 0.60, False, ["baseline", "floor"]),
])
def test_promotion_decision(champion: float, baseline: float, promote: bool, words: list[str]) -> None:
    decision, reason = promotion_decision(fake_result(champion, baseline), auc_floor=0.7)
    assert decision is promote
    assert all(w in reason for w in words), reason


def test_too_few_dates_for_the_out_of_time_split() -> None:
    with pytest.raises(TooLittleDataError, match="oot_dates=6"):
        train_churn_models(synthetic_table(), FEATURES, REGISTRY, oot_dates=6)


def test_too_few_dates_for_the_search() -> None:
    # 6 labelled dates, 5 of them tested out of time: the search would have one date to fit and validate on
    with pytest.raises(TooLittleDataError, match="the hyper-parameter search needs two labelled snapshot dates"):
        train_churn_models(synthetic_table(), FEATURES, REGISTRY, oot_dates=5)


def test_training_order_puts_each_split_s_training_rows_in_one_block() -> None:
    from feature_platform.ml.churn import _training_order

    first, second = np.array([0, 2, 3, 6]), np.array([1, 2, 3, 5, 7])  # rows 4, 8 train neither
    order, blocks = _training_order(9, {"a": first, "b": second})
    assert order.tolist() == [0, 6, 2, 3, 1, 5, 7, 4, 8]
    assert sorted(order[blocks["a"]]) == first.tolist() and sorted(order[blocks["b"]]) == second.tolist()
