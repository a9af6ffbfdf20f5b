"""The canonical id text: hand-computed cases, and the Arrow column form against the one-value form."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.sources.entity_ids import EntityIdError, canonical_id, canonical_ids, canonical_ids_list


@pytest.mark.parametrize(("value", "expected"), [
    ("u000001", "u000001"), ("  u1\t", "u1"), (42, "42"), (-7, "-7"), (np.int64(42), "42"), (np.uint8(3), "3"),
    (42.0, "42"), (np.float32(5.0), "5"), (1e15, "1000000000000000"), (0, "0"),
])
def test_one_value_becomes_its_canonical_text(value, expected):
    assert canonical_id(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    (True, "not an id"), (None, "not an id"), (1.5, "whole number"), (math.nan, "whole number"),
    (math.inf, "whole number"), (1e19, "within"), ("", "an empty id"), ("   ", "an empty id"), (b"u1", "bytes"),
    (dt.date(2025, 1, 1), "date"), (["u1"], "list"),
])
def test_a_value_that_is_no_id_is_refused_by_name(value, message):
    with pytest.raises(EntityIdError, match=message):
        canonical_id(value, "user_id")


def test_a_list_names_the_item_that_is_no_id():
    assert canonical_ids_list([7, " a ", 8.0]) == ["7", "a", "8"]
    with pytest.raises(EntityIdError, match=r"1\.5 is not an id .*\(item 2\)"):
        canonical_ids_list(["a", 1, 1.5])


@pytest.mark.parametrize(("column", "expected"), [
    (pa.array(["u1", " u2 "]), ["u1", "u2"]),
    (pa.array(["u1", "u2"], pa.large_string()), ["u1", "u2"]),
    (pa.array(["b", "a", "b"]).dictionary_encode(), ["b", "a", "b"]),
    (pa.array([1, 20], pa.int64()), ["1", "20"]),
    (pa.array([255], pa.uint8()), ["255"]),
    (pa.array([3.0, -4.0], pa.float64()), ["3", "-4"]),
    (pa.chunked_array([[1], [2, 3]], pa.int32()), ["1", "2", "3"]),
])
def test_a_column_becomes_canonical_text(column, expected):
    out = canonical_ids(column)
    assert out.type == pa.string() and out.to_pylist() == expected


@pytest.mark.parametrize(("column", "message"), [
    (pa.array([True, False]), "a column of bool cannot hold ids"),
    (pa.array([dt.date(2025, 1, 1)]), "a column of date32"),
    (pa.array([1.0, 2.5]), r"2\.5 at row 1 is not an id"),
    (pa.array([1.0, math.inf]), "inf at row 1"),
    (pa.array([1.0, 1e19]), r"1e\+19 at row 1 is not an id .*2\*\*53"),
    (pa.array([1, None], pa.int64()), "null at row 1"),
    (pa.array([1.0, None]), "null at row 1"),
    (pa.array(["a", " "]), "an empty id at row 1"),
])
def test_a_column_that_holds_no_ids_is_refused_with_its_row(column, message):
    with pytest.raises(EntityIdError, match=message):
        canonical_ids(column, "user_id")


@given(st.lists(st.integers(-(2**53), 2**53), max_size=20))
def test_integer_and_whole_float_columns_agree_with_the_one_value_form(numbers):
    as_ints = canonical_ids(pa.array(numbers, pa.int64())).to_pylist()
    as_floats = canonical_ids(pa.array([float(n) for n in numbers], pa.float64())).to_pylist()
    assert as_ints == as_floats == [canonical_id(n) for n in numbers] == [str(n) for n in numbers]


@given(st.lists(st.text(alphabet="ab1 _\t", min_size=1, max_size=6).filter(str.strip), max_size=20))
def test_text_columns_agree_with_the_one_value_form(texts):
    assert canonical_ids(pa.array(texts)).to_pylist() == [canonical_id(t) for t in texts]
