"""Model scores as features: a tiny hand-made logistic model scored through its expansion spec."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from feature_platform.ml.expand import fit_expansion
from feature_platform.ml.scoring import positive_probability, score_summary, score_users
from feature_platform.registry import load_registry

REGISTRY = load_registry()
MAP = pa.map_(pa.string(), pa.float64())
SCORE = "churn_risk_score"


class HandLogistic:
    """p = sigmoid(w . x + b), NaN read as 0: weights chosen so the answers are exact fractions."""

    def __init__(self, weights: list[float], bias: float = 0.0) -> None:
        self.weights, self.bias = np.asarray(weights), bias
        self.seen: np.ndarray | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen = x
        p = 1.0 / (1.0 + np.exp(-(np.nan_to_num(x) @ self.weights + self.bias)))
        return np.column_stack([1.0 - p, p])


@pytest.fixture
def fitted():
    """Spec columns: total_events, category_affinity__cars, category_affinity__homes."""
    train = pa.table({
        "total_events": pa.array([1, 2], pa.int64()),
        "category_affinity": pa.array([[("cars", 1.0)], [("homes", 1.0)]], MAP),
    })
    spec = fit_expansion(train, ["total_events", "category_affinity"], REGISTRY)
    assert spec.columns == ["total_events", "category_affinity__cars", "category_affinity__homes"]
    return HandLogistic([math.log(3), math.log(2), 0.0]), spec


def vectors() -> pa.Table:
    """Columns in another order than the spec's, plus one the model does not use."""
    return pa.table({
        "user_id": ["u2", "u1", "u3"],
        "category_affinity": pa.array([[("homes", 1.0)], [("cars", 1.0)], None], MAP),
        "session_count": pa.array([5, 6, 7], pa.int64()),
        "total_events": pa.array([0, 1, None], pa.int64()),
    })


def test_a_score_is_the_models_probability_of_the_users_expanded_vector(fitted):
    model, spec = fitted
    scores = score_users(vectors(), SCORE, model, spec)
    assert scores.column_names == ["user_id", SCORE]
    assert scores.schema.field(SCORE).type == pa.float64()
    assert scores.column("user_id").to_pylist() == ["u2", "u1", "u3"]  # the input's order
    # u2: 0*ln3 + 0*ln2 = 0 -> 1/2; u1: ln3 + ln2 = ln6 -> 6/7; u3: null total and map read as 0 -> 1/2
    np.testing.assert_allclose(scores.column(SCORE).to_pylist(), [0.5, 6 / 7, 0.5])
    np.testing.assert_array_equal(model.seen[1], [1.0, 1.0, 0.0])  # the spec's column order, extra column ignored
    assert np.isnan(model.seen[2]).all()  # nulls reach the model as NaN, as in training


def test_without_a_champion_every_user_gets_a_null_score_not_zero():
    scores = score_users(vectors(), SCORE)
    assert scores.column("user_id").to_pylist() == ["u2", "u1", "u3"]
    assert scores.column(SCORE).null_count == 3 and scores.schema.field(SCORE).type == pa.float64()


def test_a_model_needing_a_feature_the_snapshot_lacks_says_which_and_what_to_do(fitted):
    model, spec = fitted
    with pytest.raises(KeyError, match=r"\['category_affinity'\].*retrain"):
        positive_probability(model, spec, vectors().drop_columns(["category_affinity"]))
    with pytest.raises(ValueError, match="expansion spec"):
        score_users(vectors(), SCORE, model)


def test_score_summary_counts_nulls_and_describes_the_spread():
    scores = pa.table({"user_id": ["a", "b", "c"], SCORE: pa.array([0.2, None, 0.6], pa.float64())})
    summary = score_summary(scores, SCORE)
    assert summary == {"rows": 3, "nulls": 1, "min": 0.2, "mean": 0.4, "p50": 0.4, "max": 0.6, "p99": 0.596}
    empty = score_summary(score_users(vectors(), SCORE), SCORE)
    assert empty["nulls"] == 3 and empty["mean"] is None
