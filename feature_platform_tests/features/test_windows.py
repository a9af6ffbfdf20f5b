"""Window merges over (group, day) rows: hand-computed runs, exact totals, float sums in day order."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.features.windows import RowSet, Runs, days_since, ratio
from feature_platform_tests.helpers import examples


def rows(groups: list[int], days: list[int], owners: list[int], **columns: list) -> RowSet:
    return RowSet.build(np.array(groups), np.array(days), np.array(owners),
                        {name: np.array(values) for name, values in columns.items()})


def test_runs_are_the_rows_each_group_sees_in_the_window():
    #            group 0 on days 1, 5, 9; group 1 on day 8; group 2 on days 2, 3
    r = rows([0, 0, 0, 1, 2, 2], [1, 5, 9, 8, 2, 3], [0, 0, 1], n=[1, 2, 4, 8, 16, 32])
    runs = r.runs(day=9, window=5)  # days 5 .. 9
    assert runs.group.tolist() == [0, 1]
    assert r.total(runs, "n").tolist() == [2 + 4, 8]
    assert r.day[runs.lo].tolist() == [5, 8] and r.day[runs.hi].tolist() == [9, 8]
    assert r.total(r.runs(day=3, window=3), "n").tolist() == [1, 16 + 32]  # days 1 .. 3
    assert len(r.runs(day=0, window=90)) == 0  # before any row
    assert r.per_owner(r.runs(day=9, window=9), None, 2).tolist() == [2, 1]  # groups seen per owner


def test_a_row_exactly_window_days_old_has_left():
    r = rows([0, 0], [10, 40], [0], n=[1, 1])
    assert r.total(r.runs(day=39, window=30), "n").tolist() == [1]  # day 10 is the window's first day
    assert r.total(r.runs(day=40, window=30), "n").tolist() == [1]  # day 10 left, day 40 came


@settings(max_examples=examples(60))
@given(data=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40),
                               st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)), max_size=60),
       day=st.integers(0, 45), window=st.integers(1, 50))
def test_ordered_sum_is_the_sequential_day_order_sum_bit_for_bit(data, day, window):
    unique = {(g, d): v for g, d, v in data}  # one row per (group, day)
    if not unique:
        return
    groups, days, values = zip(*((g, d, v) for (g, d), v in unique.items()), strict=True)
    r = rows(list(groups), list(days), list(range(6)), v=list(values))
    runs = r.runs(day, window)
    got = r.ordered_sum(runs, "v")
    for group, value in zip(runs.group.tolist(), got.tolist(), strict=True):
        seen = [unique[(group, d)] for d in sorted(d for g, d in unique if g == group and day - window < d <= day)]
        assert value == functools.reduce(operator.add, seen, 0.0)  # exactly, not approximately


def test_ordered_sum_with_a_term_of_the_row_and_the_day():
    r = rows([0, 0, 0], [1, 2, 3], [0], w=[1.0, 2.0, 4.0])
    runs = r.runs(day=3, window=3)
    halved = r.ordered_sum(runs, lambda at: r.columns["w"][at] * 0.5 ** (3 - r.day[at]))
    assert halved.tolist() == [1.0 * 0.25 + 2.0 * 0.5 + 4.0]


def test_empty_runs_sum_to_nothing():
    r = rows([], [], [], v=[])
    assert r.ordered_sum(Runs(*(np.zeros(0, np.int64),) * 3), "v").tolist() == []


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    ([1, 3], [2, 0], [0.5, None]),
    ([0], [5], [0.0]),
])
def test_ratio_is_null_where_there_is_nothing_to_divide_by(numerator, denominator, expected):
    assert ratio(np.array(numerator), np.array(denominator)).to_pylist() == expected


def test_days_since_is_null_without_a_last_day():
    assert days_since(np.array([7, -1]), 10, np.array([True, False])).to_pylist() == [3, None]


@settings(max_examples=examples(60))
@given(data=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30), st.integers(0, 9)), max_size=50),
       day=st.integers(0, 32), window=st.integers(1, 35))
def test_totals_are_exact_whether_summed_directly_or_from_prefix_sums(data, day, window):
    unique = {(g, d): v for g, d, v in data}
    if not unique:
        return
    groups, days, values = zip(*((g, d, v) for (g, d), v in unique.items()), strict=True)
    r = rows(list(groups), list(days), list(range(5)), v=list(values))
    r.columns["m"] = np.stack([r.columns["v"], 2 * r.columns["v"]], axis=1).astype(np.int32)
    runs = r.runs(day, window)
    expected = [sum(unique[(g, d)] for (g2, d) in unique if g2 == g and day - window < d <= day)
                for g in runs.group.tolist()]
    direct, from_prefix = r.total(runs, "v"), r.total(runs, "v")  # the first adds rows, the second uses prefixes
    assert direct.tolist() == from_prefix.tolist() == expected
    assert r.total(runs, "m").tolist() == r.total(runs, "m").tolist() == [[e, 2 * e] for e in expected]
