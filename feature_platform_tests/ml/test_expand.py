"""expand: hand-computed columns for every registry type, and a spec that behaves the same on new tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.registry import load_registry

REGISTRY = load_registry()
NAN = np.nan
MAP = pa.map_(pa.string(), pa.float64())
TOPICS = [f"topic_{i}" for i in range(10)]


def table(**columns: pa.Array) -> pa.Table:
    return pa.table(columns)


def test_scalars_and_bools_with_nulls() -> None:
    t = table(total_events=pa.array([3, None, 0], pa.int64()),
              engagement_score=pa.array([0.5, 0.25, None], pa.float64()),
              premium=pa.array([True, False, None], pa.bool_()))
    spec = fit_expansion(t, ["total_events", "engagement_score", "premium"], REGISTRY)
    x, columns = expand(t, spec)
    assert columns == ["total_events", "engagement_score", "premium"]
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, [[3.0, 0.5, 1.0], [NAN, 0.25, 0.0], [0.0, NAN, NAN]])


def test_topic_vector_becomes_topic_columns_and_null_vector_is_nan() -> None:
    t = table(topic_vector=pa.array([[float(i) / 10 for i in range(10)], None], pa.list_(pa.float64())))
    x, columns = expand(t, fit_expansion(t, ["topic_vector"], REGISTRY))
    assert columns == TOPICS
    np.testing.assert_array_equal(x[0], [i / 10 for i in range(10)])
    assert np.isnan(x[1]).all()


def test_vector_of_the_wrong_length_raises() -> None:
    t = table(topic_vector=pa.array([[0.5, 0.5]], pa.list_(pa.float64())))
    with pytest.raises(ValueError, match="expects 10"):
        expand(t, fit_expansion(t, ["topic_vector"], REGISTRY))


def test_map_keys_sorted_missing_is_zero_null_is_nan() -> None:
    t = table(category_affinity=pa.array([[("cars", 0.75), ("art", 0.25)], [("boats", 1.0)], None], MAP))
    spec = fit_expansion(t, ["category_affinity"], REGISTRY)
    x, columns = expand(t, spec)
    assert columns == ["category_affinity__art", "category_affinity__boats", "category_affinity__cars"]
    np.testing.assert_array_equal(x, [[0.25, 0.0, 0.75], [0.0, 1.0, 0.0], [NAN, NAN, NAN]])


def test_same_spec_on_a_new_table_gives_the_same_columns_and_ignores_unseen_keys() -> None:
    fit = table(category_affinity=pa.array([[("art", 1.0)], [("cars", 1.0)]], MAP),
                topic_vector=pa.array([[0.1] * 10, None], pa.list_(pa.float64())),
                last_active_days=pa.array([1, 2], pa.int64()))
    names = ["last_active_days", "category_affinity", "topic_vector"]
    spec = fit_expansion(fit, names, REGISTRY)
    new = table(category_affinity=pa.array([[("toys", 0.5), ("cars", 0.5)], []], MAP),
                topic_vector=pa.array([None, [0.2] * 10], pa.list_(pa.float64())),
                last_active_days=pa.array([None, 7], pa.int64()))
    _, fit_columns = expand(fit, spec)
    x, columns = expand(new, spec)
    assert columns == fit_columns == ["last_active_days", "category_affinity__art", "category_affinity__cars", *TOPICS]
    np.testing.assert_array_equal(x, [[NAN, 0.0, 0.5, *[NAN] * 10], [7.0, 0.0, 0.0, *[0.2] * 10]])


def test_spec_round_trips_through_json() -> None:
    t = table(city_affinity=pa.array([[("oslo", 1.0)]], MAP), premium=pa.array([True]))
    spec = fit_expansion(t, ["city_affinity", "premium"], REGISTRY)
    again = ExpansionSpec.from_json(spec.to_json())
    assert again == spec
    np.testing.assert_array_equal(expand(t, again)[0], expand(t, spec)[0])


@pytest.mark.parametrize("name", ["activity_snapshot_missing", "churned", "user_id"])
def test_non_features_are_refused(name: str) -> None:
    t = table(**{name: pa.array([1])})
    with pytest.raises(KeyError, match="not a registry feature"):
        fit_expansion(t, [name], REGISTRY)


def test_missing_column_is_named() -> None:
    spec = fit_expansion(table(premium=pa.array([True])), ["premium"], REGISTRY)
    with pytest.raises(KeyError, match="premium"):
        expand(table(total_events=pa.array([1])), spec)
