"""BG/NBD against customers simulated from the process it describes."""

from __future__ import annotations

import numpy as np
import pytest

from feature_platform.ml.btyd import BgNbd

TRUE = {"r": 0.25, "alpha": 30.0, "a": 0.8, "b": 2.5}


def simulate(n: int, horizon: float, seed: int, r: float, alpha: float, a: float, b: float):
    """(x, t_x, T) of each customer over [0, T], and the purchases in (T, T + horizon]: the story itself,
    purchase by purchase (Poisson while alive, a coin of probability p after each repeat purchase)."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    big_t = rng.uniform(100, 400, n)
    x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > big_t[i] + horizon:
                break
            if t <= big_t[i]:
                x[i], t_x[i] = x[i] + 1, t
            else:
                later[i] += 1
            if rng.random() < p[i]:
                break
    return x, t_x, big_t, later


@pytest.fixture(scope="module")
def customers():
    return simulate(20_000, 30.0, seed=3, **TRUE)


def test_the_fit_recovers_the_parameters_that_made_the_data(customers):
    x, t_x, big_t, _ = customers
    model = BgNbd.fit(x, t_x, big_t)
    for name, value in TRUE.items():
        assert getattr(model, name) == pytest.approx(value, rel=0.15), name


def test_expected_purchases_match_what_the_customers_then_did(customers):
    x, t_x, big_t, later = customers
    expected = BgNbd.fit(x, t_x, big_t).expected_purchases(30.0, x, t_x, big_t)
    assert expected.sum() == pytest.approx(later.sum(), rel=0.05)
    # and per group: the customers the model expects most from buy the most
    top = expected >= np.quantile(expected, 0.8)
    assert later[top].mean() > 3 * later[~top].mean()
    assert expected[top].sum() == pytest.approx(later[top].sum(), rel=0.08)


def test_a_customer_who_stopped_long_ago_is_expected_to_buy_less_than_a_recent_one():
    model = BgNbd(**TRUE)
    recent, gone = model.expected_purchases(30.0, np.array([5, 5]), np.array([195.0, 20.0]), np.array([200.0, 200.0]))
    assert recent > 5 * gone


@pytest.mark.parametrize(("x", "t_x", "big_t", "message"), [
    ([], [], [], "non-zero length"),
    ([1, 2], [1], [3, 4], "same, non-zero length"),
    ([1], [np.nan], [3], "finite"),
    ([1], [5], [3], "t_x <= T"),
    ([-1], [0], [3], "x >= 0"),
])
def test_unusable_input_is_refused(x, t_x, big_t, message):
    with pytest.raises(ValueError, match=message):
        BgNbd.fit(np.array(x, float), np.array(t_x, float), np.array(big_t, float))


def test_the_chance_of_no_purchase_matches_how_many_customers_then_bought_nothing(customers):
    x, t_x, big_t, later = customers
    quiet = BgNbd(**TRUE).probability_no_purchase(30.0, x, t_x, big_t)
    assert quiet.mean() == pytest.approx((later == 0).mean(), abs=0.01)
    # calibrated within bands, not just on average; each tolerance about three standard errors of its band
    for low, high, tolerance in ((0.0, 0.7, 0.05), (0.7, 0.9, 0.025), (0.9, 1.0, 0.01)):
        band = (quiet >= low) & (quiet < high)
        assert quiet[band].mean() == pytest.approx((later[band] == 0).mean(), abs=tolerance), (low, high)
