"""PSI on hand-computed distributions, its properties against a slow obvious reference, and the binning rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.ml import drift
from feature_platform.ml.model_store import training_fingerprint
from feature_platform.offline.store import OfflineStore
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


# -- what a snapshot is compared with: the same weekday, and the ageing features aged ------------------------
WED = dt.date(2025, 3, 12)  # a Wednesday


@pytest.mark.parametrize(("stored", "expected"), [
    # D-7 (the Wednesday before) wins over D-1 (a Tuesday)
    (["2025-03-05", "2025-03-11"], dt.date(2025, 3, 5)),
    (["2025-03-05"], dt.date(2025, 3, 5)),
    # no D-7: D-1, another weekday
    (["2025-03-10", "2025-03-11"], dt.date(2025, 3, 11)),
    # D-2, D-6, D-8, D-14 and D itself are never taken
    (["2025-02-26", "2025-03-04", "2025-03-06", "2025-03-10", "2025-03-12"], None),
    ([], None),
])
def test_the_reference_day_is_d_minus_7_else_d_minus_1(stored, expected):
    assert drift.reference_day(WED, stored) == expected


@pytest.mark.parametrize(("day", "dates", "expected"), [
    # training dates are weekly (Sundays here): on a Sunday the newest one on or before D
    (dt.date(2026, 11, 29), [dt.date(2026, 10, 25), dt.date(2026, 11, 1), dt.date(2026, 11, 8)], dt.date(2026, 11, 8)),
    # on a Tuesday none matches
    (dt.date(2026, 12, 1), [dt.date(2026, 10, 25), dt.date(2026, 11, 1), dt.date(2026, 11, 8)], None),
    # a date after D is not a reference for D
    (dt.date(2026, 11, 1), [dt.date(2026, 11, 1), dt.date(2026, 11, 8)], dt.date(2026, 11, 1)),
    (dt.date(2026, 10, 31), [dt.date(2026, 11, 7)], None),
    (dt.date(2026, 11, 1), [], None),
])
def test_training_rows_are_taken_on_ds_weekday_only(day, dates, expected):
    assert drift.same_weekday(day, dates) == expected


@pytest.mark.parametrize(("values", "days", "cap", "expected"), [
    # 7 days later every anchored count is 7 more; null stays null
    ([0, 5, np.nan, 86], 7, None, [7, 12, np.nan, 93]),
    # with a range of [0, 89]: 86 + 7 = 93 is past the window, so null (as the later snapshot has it); 82 + 7 = 89 stays
    ([0, 82, np.nan, 86], 7, 89, [7, 89, np.nan, np.nan]),
    # a D-1 reference ages by one
    ([3, 10], 1, None, [4, 11]),
    ([3, 10], 0, 89, [3, 10]),
])
def test_age_values_adds_the_days_between_the_snapshots_and_nulls_what_ages_past_the_cap(values, days, cap, expected):
    np.testing.assert_array_equal(drift.age_values(np.array(values, dtype=float), days, cap), np.array(expected))


def test_a_reference_after_the_snapshot_cannot_be_aged():
    with pytest.raises(ValueError, match="later than the snapshot"):
        drift.age_values(np.array([1.0]), -1)


def test_the_ageing_features_are_the_registry_features_counted_from_a_first_day():
    """The list in drift.py is the registry's ``D - min(..)`` features: ints >= 0 that no event resets. The
    ``D - max(..)`` recency features reset on an event and are compared unaged."""
    anchored = {f.name for f in REGISTRY.features.values() if f.computation.startswith("D - min(")}
    recency = {f.name for f in REGISTRY.features.values() if f.computation.startswith(("D - max(", "D - date(max("))}
    assert drift.AGEING_FEATURES == anchored == {"tenure_days", "first_purchase_days", "btyd_age_days"}
    assert recency == {"last_active_days", "recency_days", "days_since_last_purchase", "last_purchase_days"}
    assert all(REGISTRY.get_feature(name).type == "int" for name in anchored)


def test_drift_report_ages_the_anchored_features_of_the_reference_only():
    # tenure_days {10, 20} a week later is {17, 27}: aged, the same distribution (PSI 0).
    # last_active_days is a recency (reset by any event): {0, 3} -> {0, 3} is compared as it is (PSI 0), not aged.
    reference = pa.table({"tenure_days": pa.array([10, 20], pa.int64()), "last_active_days": pa.array([0, 3], pa.int64())})
    current = pa.table({"tenure_days": pa.array([17, 27], pa.int64()), "last_active_days": pa.array([0, 3], pa.int64())})
    aged = drift.drift_report(reference, current, ["tenure_days", "last_active_days"], REGISTRY, "D-7", "D", age_days=7)
    assert aged.psi_by_column() == {"tenure_days": 0.0, "last_active_days": 0.0}
    assert (aged.age_days, aged.aged) == (7, ("tenure_days",))
    # unaged, the four values are four categories, each empty (eps) on one side:
    # 4 * (0.5 - eps) * ln(0.5 / eps) = 4 * 0.4999 * 8.517193 = 17.030975
    plain = drift.drift_report(reference, current, ["tenure_days", "last_active_days"], REGISTRY, "D-7", "D")
    assert plain.psi_by_column()["tenure_days"] == pytest.approx(4 * (0.5 - EPS) * math.log(0.5 / EPS), abs=1e-6)
    assert plain.aged == ()
    # a real shift on top of the ageing is still seen: {17, 27} + 7 days more is {24, 34}
    late = current.set_column(0, "tenure_days", pa.array([24, 34], pa.int64()))
    assert drift.drift_report(reference, late, ["tenure_days"], REGISTRY, "D-7", "D", 7).max_psi == pytest.approx(
        4 * (0.5 - EPS) * math.log(0.5 / EPS), abs=1e-6)
    bins = drift.column_bins(reference, current, "tenure_days", "tenure_days", REGISTRY, age_days=7)
    assert bins.labels == ("17", "27", drift.MISSING) and list(bins.reference) == list(bins.current) == [0.5, 0.5, 0.0]


def slow_age(values: list[float], days: int, cap: float | None) -> list[float]:
    return [math.nan if math.isnan(v) or (cap is not None and v + days > cap) else v + days for v in values]


ages = st.lists(st.one_of(st.integers(0, 120).map(float), st.just(math.nan)), min_size=1, max_size=60)


@settings(max_examples=examples(100))
@given(ages, ages, st.integers(0, 40), st.one_of(st.none(), st.integers(0, 130).map(float)))
def test_aged_psi_equals_the_slow_reference_and_ageing_a_sample_by_its_own_shift_gives_zero(reference, current, days,
                                                                                            cap):
    aged = drift.age_values(np.array(reference), days, cap)
    assert drift.column_psi(aged, np.array(current)) == pytest.approx(
        slow_psi(slow_age(reference, days, cap), current), rel=1e-9, abs=1e-12)
    assert drift.column_psi(aged, np.array(slow_age(reference, days, cap))) == 0.0


class _Champion:
    """A model store stub whose churn champion was trained on ``table`` (only what the reference reads)."""

    def __init__(self, table: pa.Table) -> None:
        self.version = "v1"
        self.manifest = {"training_fingerprint": training_fingerprint(table)}

    def champion(self, name: str) -> _Champion:
        return self


def test_the_champions_training_rows_are_the_newest_labelled_ones_on_ds_weekday_aged_to_d(tmp_path):
    sundays = [dt.date(2026, 11, 1), dt.date(2026, 11, 8), dt.date(2026, 11, 15)]
    table = pa.table({
        "snapshot_date": pa.array([d for d in sundays for _ in range(2)], pa.date32()),
        "tenure_days": pa.array([10, 20, 17, 27, 24, 34], pa.int64()),
        "labelled": pa.array([True, True, True, True, False, False]),  # 11-15 is not labelled yet
    })
    store = OfflineStore(tmp_path)
    store.write(drift.TRAINING_TABLE, table)
    sunday = drift.champion_training_rows(store, _Champion(table), dt.date(2026, 11, 29))
    assert sunday.label == "champion training set (churn v1), rows of 2026-11-08" and sunday.age_days == 21
    assert sunday.table.column("tenure_days").to_pylist() == [17, 27]
    tuesday = drift.champion_training_rows(store, _Champion(table), dt.date(2026, 12, 1))
    assert tuesday.table is None and "(2026-11-08) are a Sunday and D a Tuesday" in tuesday.note


def test_the_noise_floor_is_what_two_samples_of_one_distribution_stay_under_49_times_in_50():
    # (dof + 2 sqrt(2 dof)) (1/n_ref + 1/n_cur), dof = bins - 1 = 9: (9 + 2 * sqrt(18)) * 2/2000 = 0.017485
    assert drift.noise_floor(10, 2_000, 2_000) == pytest.approx((9 + 2 * math.sqrt(18)) * (2 / 2_000))
    assert drift.noise_floor(10, 150, 150) == pytest.approx(0.233137, abs=1e-6)  # 17.4853 * 2/150
    assert drift.noise_floor(5, 0, 10) == 0.0 and drift.noise_floor(1, 10, 10) == 0.0
    rng = np.random.default_rng(7)  # many same-distribution pairs: PSI's mean is dof * (..), its tail the floor
    psis = []
    for _ in range(1_000):
        a, b = rng.integers(0, 10, 150).astype(float), rng.integers(0, 10, 150).astype(float)
        binned = drift.bin_column(a, b)
        psis.append(drift.psi_from_shares(binned.reference, binned.current))
    floor = drift.noise_floor(11, 150, 150)  # ten values and the (empty) missing bin
    assert np.mean(psis) == pytest.approx(9 * (2 / 150), rel=0.15)
    assert 0.005 <= np.mean(np.array(psis) > floor) <= 0.05


def test_a_small_population_is_judged_above_its_noise_floor():
    column = drift.ColumnDrift("x", "x", psi=0.30, method="quantiles", bins=10, noise=0.12)
    report = drift.DriftReport("D-7", "D", columns=[column], reference_rows=150, current_rows=150)
    assert column.excess == pytest.approx(0.18) and report.level(0.1, 0.25) == "warn"
    big = drift.ColumnDrift("y", "y", psi=0.30, method="quantiles", bins=10, noise=0.009)
    assert drift.DriftReport("D-7", "D", columns=[column, big]).worst_judged is big


def _feature(window: str | None):
    return dataclasses.replace(REGISTRY.get_feature("total_events"), name="x", window=window)


@pytest.mark.parametrize(("window", "history", "age", "filling"), [
    ("30d", 40, 7, False),   # 30 days covered on both
    ("30d", 33, 7, True),    # 30 days on D, 26 on D-7: 30 > 26 * 1.1
    ("30d", 35, 7, False),   # 30 vs 28: 30 <= 30.8
    ("90d", 40, 7, True),    # 40 vs 33
    ("90d", 77, 7, False),   # 77 vs 70: 77 <= 77
    ("90d", 76, 7, True),    # 76 vs 69: 76 > 75.9
    ("all", 40, 7, True),
    ("all", 540, 7, False),  # 18 months: a week adds 1.3%
    ("all", 40, 1, False),   # D-1: 40 vs 39
    (None, 3, 7, False),     # an attribute has no window
    ("90d", None, 7, False),  # an unknown history judges everything
])
def test_a_window_is_filling_while_d_covers_over_a_tenth_more_days_than_the_reference(window, history, age, filling):
    assert bool(drift.filling_reason(_feature(window), history, age)) is filling


def test_a_filling_window_is_reported_but_not_judged_and_the_aged_features_are_never_filling():
    # lifetime_purchases on 40 days of data doubles from D-7 to D: a large PSI, reported, not judged;
    # tenure_days (aged to D) is judged on any history.
    reference = pa.table({"lifetime_purchases": pa.array([1, 2, 3, 4] * 10, pa.int64()),
                          "tenure_days": pa.array([10, 20] * 20, pa.int64())})
    current = pa.table({"lifetime_purchases": pa.array([2, 4, 6, 8] * 10, pa.int64()),
                        "tenure_days": pa.array([17, 27] * 20, pa.int64())})
    features = ["lifetime_purchases", "tenure_days"]
    report = drift.drift_report(reference, current, features, REGISTRY, "D-7", "D", age_days=7, history_days=40)
    growing = next(c for c in report.columns if c.feature == "lifetime_purchases")
    assert growing.psi > 1 and growing.excess == 0.0 and "window all still filling" in growing.filling
    assert list(report.filling) == ["lifetime_purchases"] and report.level(0.1, 0.25) == "ok"
    assert report.worst_judged is not None and report.worst_judged.feature == "tenure_days"
    assert "not judged (window filling)" in drift.worst_markdown([report], 0.1, 0.25)
    mature = drift.drift_report(reference, current, features, REGISTRY, "D-7", "D", age_days=7, history_days=400)
    assert mature.filling == {} and mature.level(0.1, 0.25) == "fail"  # on a long history the doubling is drift
