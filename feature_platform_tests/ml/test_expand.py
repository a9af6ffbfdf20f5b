"""expand: hand-computed columns for every registry type, and a spec that behaves the same on new tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.ml.expand import ExpandedFeature, ExpansionSpec, expand, fit_expansion
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import examples

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


# ------------------------------------------------------------------ the vectorised expansion against a row loop

KEYS = ("art", "boats", "cars")


def reference_map_keys(column: pa.ChunkedArray) -> tuple[str, ...]:
    return tuple(sorted({k for row in column.to_pylist() if row for k, _ in row}))


def reference_expand(t: pa.Table, spec: ExpansionSpec) -> np.ndarray:
    """Row by row from Python values: a map row starts at 0.0 and applies its pairs in order."""
    out = np.full((t.num_rows, len(spec.columns)), np.nan)
    start = 0
    for feature in spec.features:
        width = len(feature.columns)
        for row, value in enumerate(t.column(feature.name).to_pylist()):
            if value is None:
                continue
            if feature.type == "vector":
                out[row, start:start + width] = [np.nan if v is None else v for v in value]
            elif feature.type == "map":
                out[row, start:start + width] = 0.0
                for key, v in value:
                    if key in feature.keys:
                        out[row, start + feature.keys.index(key)] = np.nan if v is None else v
            else:
                out[row, start] = float(value)
        start += width
    return out


maybe_float = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False))
pairs = st.lists(st.tuples(st.sampled_from(KEYS), maybe_float), max_size=5)  # repeated keys too


@st.composite
def affinity_tables(draw: st.DrawFn) -> pa.Table:
    """Maps (null, empty, repeated keys, null values) and topic vectors (null, null elements), in one or two
    chunks and maybe sliced, as Arrow hands them over after a filter or a concatenation."""
    n = draw(st.integers(1, 12))
    maps = draw(st.lists(st.one_of(st.none(), pairs), min_size=n, max_size=n))
    vectors = draw(st.lists(st.one_of(st.none(), st.lists(maybe_float, min_size=10, max_size=10)),
                            min_size=n, max_size=n))
    t = table(category_affinity=pa.array(maps, MAP), topic_vector=pa.array(vectors, pa.list_(pa.float64())),
              total_events=pa.array(draw(st.lists(st.one_of(st.none(), st.integers(0, 99)), min_size=n, max_size=n)),
                                    pa.int64()))
    cut = draw(st.integers(0, n))
    t = pa.concat_tables([t.slice(0, cut), t.slice(cut)])
    return t.slice(draw(st.integers(0, n - 1)))


@settings(max_examples=examples(200))
@given(affinity_tables(), st.lists(st.sampled_from(KEYS), unique=True))
def test_expand_equals_the_row_loop(t: pa.Table, fitted_keys: list[str]) -> None:
    names = ["total_events", "category_affinity", "topic_vector"]
    spec = fit_expansion(t, names, REGISTRY)
    assert spec.features[1].keys == reference_map_keys(t.column("category_affinity"))
    # a spec fitted elsewhere: keys the rows lack, rows with keys it lacks
    other = ExpansionSpec(tuple(f if f.type != "map" else ExpandedFeature(
        f.name, "map", tuple(f"category_affinity__{k}" for k in sorted(fitted_keys)), keys=tuple(sorted(fitted_keys)))
        for f in spec.features))
    for s in (spec, other):
        x, _ = expand(t, s)
        np.testing.assert_array_equal(x, reference_expand(t, s))


def test_a_vector_of_the_wrong_length_names_its_row() -> None:
    t = table(topic_vector=pa.array([[0.1] * 10, None, [0.1] * 10, [], [0.5] * 3], pa.list_(pa.float64())))
    spec = fit_expansion(t, ["topic_vector"], REGISTRY)
    with pytest.raises(ValueError, match="row 3: topic_vector has 0 values, the spec expects 10"):
        expand(t, spec)
    with pytest.raises(ValueError, match="row 0: topic_vector has 3 values"):
        expand(t.slice(4), spec)  # rows count from the table's start


def test_a_null_list_backed_by_values_has_none() -> None:
    # Arrow lets a null list own a non-empty segment of the values; those values belong to no row.
    vectors = pa.ListArray.from_arrays(pa.array([0, 10, 20, 30], pa.int32()), pa.array(np.arange(30.0)),
                                       mask=pa.array([False, True, False]))
    x, _ = expand(table(topic_vector=vectors), fit_expansion(table(topic_vector=vectors), ["topic_vector"], REGISTRY))
    np.testing.assert_array_equal(x, [np.arange(10.0), [NAN] * 10, np.arange(20.0, 30.0)])


@settings(max_examples=examples(100))
@given(affinity_tables(), st.data())
def test_float32_is_the_float64_matrix_cast_and_a_spec_on_rows_is_the_spec_on_their_table(
        t: pa.Table, data: st.DataObject) -> None:
    names = ["total_events", "category_affinity", "topic_vector"]
    rows = np.array(sorted(data.draw(st.sets(st.integers(0, t.num_rows - 1), min_size=1))))
    spec = fit_expansion(t, names, REGISTRY, rows=rows)
    assert spec == fit_expansion(t.take(rows), names, REGISTRY)
    x32, columns = expand(t, spec, np.float32)
    assert x32.dtype == np.float32 and columns == spec.columns
    np.testing.assert_array_equal(x32, expand(t, spec)[0].astype(np.float32))
