"""The split by user shared by both models."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from feature_platform.ml.evaluation import split_by_user


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 1)), min_size=10, max_size=300), st.integers(0, 3))
def test_split_by_user_keeps_every_user_on_one_side(rows, seed):
    """Against the obvious reading: each user's rows all train or all test, a fifth of the users (rounded up)
    test, every row once, the same split for the same seed."""
    assume(len({u for u, _ in rows}) >= 2)
    users = pa.array([f"u{u}" for u, _ in rows])
    y = np.array([label for _, label in rows])
    train, test = split_by_user(users, y, seed)
    assert sorted([*train, *test]) == list(range(len(rows)))
    train_users, test_users = {rows[i][0] for i in train}, {rows[i][0] for i in test}
    assert not train_users & test_users
    assert len(test_users) == math.ceil(0.2 * len(train_users | test_users))
    again = split_by_user(users, y, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_split_by_user_is_stratified_by_users_with_a_positive_row():
    users = pa.array([f"u{i}" for i in range(100) for _ in range(3)])
    y = np.array([1 if i < 20 and k == 0 else 0 for i in range(100) for k in range(3)])
    _, test = split_by_user(users, y, seed=1)
    assert y[test].sum() == 4 and len(test) == 60  # 20 of 100 users, 4 of them with a positive row


def test_one_user_cannot_be_split():
    with pytest.raises(ValueError, match="by_user split: the rows belong to 1 user"):
        split_by_user(pa.array(["u1", "u1"]), np.array([0, 1]), seed=0)
