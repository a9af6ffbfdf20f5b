"""The BG/NBD buy-till-you-die model: the textbook baseline a churn model has to beat.

Fader, Hardie and Lee (2005), "Counting Your Customers the Easy Way". While alive a customer buys as
a Poisson process with rate lambda ~ Gamma(r, alpha); after each purchase they drop out for good with
probability p ~ Beta(a, b). A customer is summarised by x (repeat purchases), t_x (time of the last
purchase after the first) and T (time since the first purchase); here in days, from the lifetime
family's ``btyd_frequency``, ``btyd_recency_days`` and ``btyd_age_days``.

The four parameters are fitted by maximum likelihood (scipy's L-BFGS-B on their logarithms, the
likelihood summed over distinct (x, t_x, T) with their counts, so a million rows cost what their
distinct summaries cost). :meth:`BgNbd.expected_purchases` is the conditional expectation of purchases
in the next ``t`` days and :meth:`BgNbd.probability_no_purchase` the chance of none, which is what the
churn label asks: the churn baseline's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

# Where the search starts (the published CDNOW fit, in days rather than weeks) and how far it may go.
_START = np.log([0.25, 30.0, 0.8, 2.5])
_BOUNDS = [(-12.0, 12.0)] * 4


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    @classmethod
    def fit(cls, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> BgNbd:
        """Maximum-likelihood parameters for customers (x, t_x, T); raises ValueError on unusable input."""
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        _validate(x, t_x, big_t)
        summary, counts = np.unique(np.column_stack([x, t_x, big_t]), axis=0, return_counts=True)
        xs, txs, ts = summary.T

        def loss(log_params: np.ndarray) -> float:
            return -float(np.dot(counts, log_likelihood(np.exp(log_params), xs, txs, ts))) / counts.sum()

        result = minimize(loss, _START, method="L-BFGS-B", bounds=_BOUNDS)
        if not np.isfinite(result.fun):
            raise ValueError(f"BG/NBD fit did not converge: {result.message}")
        return cls(*(float(v) for v in np.exp(result.x)))

    def probability_alive(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """P(still a customer at T | x, t_x, T)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + big_t) / (alpha + t_x)) ** (r + x), 0.0)
        return 1 / (1 + odds)

    def probability_no_purchase(self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T): gone already, or alive and the Poisson gives none (the
        rate's posterior is Gamma(r + x, alpha + T)). The churn label's probability under the model."""
        x, big_t = np.asarray(x, dtype=np.float64), np.asarray(big_t, dtype=np.float64)
        quiet = ((self.alpha + big_t) / (self.alpha + big_t + t)) ** (self.r + x)
        return 1 - self.probability_alive(x, t_x, big_t) * (1 - quiet)

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] per customer."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
        first = (a + b + x - 1) / (a - 1) * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
        return first * self.probability_alive(x, t_x, big_t)


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Each customer's log-likelihood under BG/NBD(r, alpha, a, b)."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    still = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, betaln(a + 1, b + x - 1) - betaln(a, b) - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(still, dropped)


def _validate(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> None:
    if not (len(x) == len(t_x) == len(big_t)) or len(x) == 0:
        raise ValueError("BG/NBD needs x, t_x and T of the same, non-zero length")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(big_t).all()):
        raise ValueError("BG/NBD inputs must be finite (fill customers without purchases first)")
    if (x < 0).any() or (t_x < 0).any() or (t_x > big_t).any():
        raise ValueError("BG/NBD inputs need x >= 0 and 0 <= t_x <= T")
