"""PSI on hand-computed distributions, its properties against a slow obvious reference, and the binning rules."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.ml import drift
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import examples

EPS = drift.EPSILON
REGISTRY = load_registry()


@pytest.mark.parametrize(("reference", "current", "expected"), [
    # identical shares: every term is 0
    ([0.5, 0.5], [0.5, 0.5], 0.0),
    # (0.25-0.5)*ln(0.25/0.5) + (0.75-0.5)*ln(0.75/0.5) = 0.25*0.693147 + 0.25*0.405465 = 0.274653
    ([0.5, 0.5], [0.25, 0.75], 0.25 * math.log(2) + 0.25 * math.log(1.5)),
    # an empty reference bin counts as eps = 1e-4:
    # (0.5-1)*ln(0.5/1) + (0.5-1e-4)*ln(0.5/1e-4) = 0.346574 + 0.4999*8.517193 = 4.604319
    ([1.0, 0.0], [0.5, 0.5], 0.5 * math.log(2) + (0.5 - EPS) * math.log(0.5 / EPS)),
    # (0.2-0.1)*ln(2) + (0.3-0.3)*ln(1) + (0.5-0.6)*ln(5/6) = 0.069315 + 0 + 0.018232 = 0.087547
    ([0.1, 0.3, 0.6], [0.2, 0.3, 0.5], 0.1 * math.log(2) + 0.1 * math.log(6 / 5)),
])
def test_psi_from_shares_matches_the_hand_computed_value(reference, current, expected):
    assert drift.psi_from_shares(reference, current) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("reference", "current", "expected", "method"), [
    # booleans / one-hot flags are categories: shares 0:1/2, 1:1/2 -> 0:1/4, 1:3/4 (missing empty in both: 0)
    ([0, 0, 1, 1], [0, 1, 1, 1], 0.25 * math.log(2) + 0.25 * math.log(1.5), "categories"),
    # nulls are a bin: {1: 1/2, missing: 1/2} -> {1: 1, missing: 0 -> eps}
    ([1, 1, np.nan, np.nan], [1, 1, 1, 1], 0.5 * math.log(2) + (0.5 - EPS) * math.log(0.5 / EPS), "categories"),
    # 0..99 has deciles 9.9, 19.8, .., 89.1 (linear), 10 rows per bin; 50..149 leaves the first five bins empty
    # (eps), keeps 10 rows in each of the next four and puts 60 in the last:
    # 5*(1e-4-0.1)*ln(1e-4/0.1) + (0.6-0.1)*ln(6) = 5*0.690085 + 0.895880 = 4.346304
    (np.arange(100.0), np.arange(50.0, 150.0), 5 * (0.1 - EPS) * math.log(0.1 / EPS) + 0.5 * math.log(6),
     "quantiles"),
    # the same sample: 0
    (np.arange(100.0), np.arange(100.0), 0.0, "quantiles"),
])
def test_column_psi_bins_by_the_documented_rules(reference, current, expected, method):
    binned = drift.bin_column(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))
    assert binned.method == method
    assert binned.reference.sum() == pytest.approx(1) and binned.current.sum() == pytest.approx(1)
    assert drift.column_psi(np.asarray(reference, dtype=float), np.asarray(current, dtype=float)) == pytest.approx(
        expected, abs=1e-9)


def test_quantile_bins_are_right_closed_and_label_their_edges():
    binned = drift.bin_column(np.arange(100.0), np.array([9.9, 9.91, np.nan]))
    assert binned.labels[:2] == ("(-inf, 9.9]", "(9.9, 19.8]") and binned.labels[-1] == drift.MISSING
    assert list(binned.current[:2]) == pytest.approx([1 / 3, 1 / 3]) and binned.current[-1] == pytest.approx(1 / 3)


def test_an_empty_sample_has_no_distribution():
    with pytest.raises(ValueError, match="empty sample"):
        drift.bin_column(np.array([]), np.array([1.0]))


def test_levels_use_inclusive_thresholds():
    assert [drift.drift_level(p, 0.1, 0.25) for p in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok", "ok", "warn", "warn", "fail", "fail"]


def slow_psi(reference: list[float], current: list[float]) -> float:
    """The rules written out with loops: categories up to 10 values, else decile bins; nulls a bin; eps floor."""
    def share(sample, inside):
        return max(sum(1 for v in sample if inside(v)) / len(sample), EPS)

    present = sorted({v for v in reference + current if not math.isnan(v)})
    if len(present) <= drift.MAX_CATEGORIES:
        bins = [lambda v, c=c: v == c for c in present]
    else:
        ref_values = [v for v in reference if not math.isnan(v)]
        # the edges are numpy's linear quantiles by definition; the counting below is what is under test
        edges = sorted(set(np.quantile(ref_values, drift.QUANTILES).tolist())) if ref_values else []
        bounds = [-math.inf, *edges, math.inf]
        bins = [lambda v, lo=lo, hi=hi: lo < v <= hi for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    bins.append(math.isnan)
    total = 0.0
    for inside in bins:
        e, a = share(reference, inside), share(current, inside)
        total += (a - e) * math.log(a / e)
    return total


values = st.one_of(st.integers(-5, 5).map(float), st.floats(-1e6, 1e6, allow_nan=False), st.just(math.nan))
samples = st.lists(values, min_size=1, max_size=60)


@settings(max_examples=examples(150))
@given(samples, samples)
def test_column_psi_equals_the_slow_reference_and_is_never_negative(reference, current):
    fast = drift.column_psi(np.array(reference), np.array(current))
    assert fast == pytest.approx(slow_psi(reference, current), rel=1e-9, abs=1e-12)
    assert fast >= 0.0


@settings(max_examples=examples(100))
@given(samples)
def test_identical_samples_have_zero_psi(sample):
    assert drift.column_psi(np.array(sample), np.array(sample)) == 0.0


shares = st.lists(st.floats(0, 1), min_size=1, max_size=12).filter(lambda s: sum(s) > 0).map(
    lambda s: [v / sum(s) for v in s])


@settings(max_examples=examples(100))
@given(st.data())
def test_psi_of_shares_is_symmetric_and_non_negative(data):
    e = data.draw(shares)
    a = data.draw(st.lists(st.floats(0, 1), min_size=len(e), max_size=len(e)).filter(lambda s: sum(s) > 0).map(
        lambda s: [v / sum(s) for v in s]))
    assert drift.psi_from_shares(e, a) == pytest.approx(drift.psi_from_shares(a, e), rel=1e-12, abs=1e-15)
    assert drift.psi_from_shares(e, a) >= 0.0


def test_drift_report_expands_maps_and_vectors_and_ranks_the_shifted_column_first():
    n = 200
    rng = np.random.default_rng(0)
    reference = pa.table({
        "total_events": pa.array(rng.integers(0, 100, n), pa.int64()),
        "category_affinity": pa.array([[("c1", 0.5), ("c2", 0.5)]] * n, pa.map_(pa.string(), pa.float64())),
        "topic_vector": pa.array([[0.1] * 10] * n, pa.list_(pa.float64())),
    })
    current = reference.set_column(0, "total_events", pa.array(rng.integers(50, 150, n), pa.int64()))
    report = drift.drift_report(reference, current, ["total_events", "category_affinity", "topic_vector", "nope"],
                                REGISTRY, "D-1", "D")
    assert report.worst.column == "total_events" and report.level(0.1, 0.25) == "fail"
    columns = set(report.psi_by_column())
    assert {"category_affinity__c1", "category_affinity__c2", "topic_0", "topic_9"} <= columns
    assert all(c.psi == 0.0 for c in report.columns[1:])
    assert "nope" in report.skipped
    table = drift.worst_markdown([report], 0.1, 0.25)
    assert table.splitlines()[2].startswith("| D-1 | total_events | total_events |") and "| fail |" in table


def test_an_empty_snapshot_is_skipped_with_a_reason_not_reported_as_stable():
    table = pa.table({"total_events": pa.array([1, 2], pa.int64())})
    report = drift.drift_report(table, table.slice(0, 0), ["total_events"], REGISTRY, "D-1", "D")
    assert report.columns == [] and report.skipped == {"total_events": "D has no rows"}
