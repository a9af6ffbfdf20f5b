"""Sample data with a known answer: customers drawn from the BG/NBD buy-till-you-die process, with spend.

Each customer makes a first purchase on a day of the first third of the window (cohorts, as a shop
acquires them), then buys as a Poisson process with their own rate lambda ~ Gamma(r, alpha) per day,
and after every repeat purchase leaves for good with their own probability p ~ Beta(a, b). Amounts
follow the gamma-gamma spend model: a customer's typical amount nu ~ Gamma(q, gamma), each purchase
~ Gamma(shape, nu). Only purchases are written (``events``: user, time, amount) and the customers with
their first purchase day as signup.

Because the process is known, so is the best any model can do on it: BG/NBD with the true parameters
(``_truth/btyd.json``) gives every customer's exact chance of no purchase in a horizon, the ceiling a
churn champion is measured against.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.sources.generator import TRUTH_DIR

TRUTH_FILE = "btyd.json"


@dataclass(frozen=True)
class BtydConfig:
    users: int = 3000
    days: int = 240
    end_date: dt.date = dt.date(1998, 6, 30)
    seed: int = 7
    r: float = 0.25  # lambda ~ Gamma(r, rate alpha), purchases per day
    alpha: float = 12.0
    a: float = 0.8  # p ~ Beta(a, b), the chance of leaving after a repeat purchase
    b: float = 4.0
    spend_q: float = 6.0  # nu ~ Gamma(spend_q, rate spend_gamma); an amount ~ Gamma(spend_shape, rate nu)
    spend_gamma: float = 15.0
    spend_shape: float = 4.0

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 3:
            raise ValueError(f"users must be >= 1 and days >= 3, got users={self.users}, days={self.days}")
        if min(self.r, self.alpha, self.a, self.b, self.spend_q, self.spend_gamma, self.spend_shape) <= 0:
            raise ValueError("every BG/NBD and spend parameter must be > 0")

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.end_date - dt.timedelta(days=self.days - 1), dt.time())


def generate_btyd(config: BtydConfig, out_dir: Path) -> dict[str, int]:
    """Write ``events.parquet``, ``customers.parquet`` and ``_truth/btyd.json`` into ``out_dir``; rows per table."""
    rng = np.random.default_rng(config.seed)
    n, horizon = config.users, float(config.days)
    birth = rng.uniform(0.0, horizon / 3, n)  # days after the window's start
    rate = rng.gamma(config.r, 1 / config.alpha, n)
    leave = rng.beta(config.a, config.b, n)
    typical = rng.gamma(config.spend_q, 1 / config.spend_gamma, n)
    users, times = [], []
    for i in range(n):
        t = birth[i]
        users.append(i)
        times.append(t)
        while True:
            t += rng.exponential(1 / rate[i])
            if t >= horizon:
                break
            users.append(i)
            times.append(t)
            if rng.random() < leave[i]:
                break
    user = np.asarray(users)
    order = np.lexsort((user, np.asarray(times)))
    user, at = user[order], np.asarray(times)[order]
    amount = np.round(rng.gamma(config.spend_shape, 1 / typical[user]), 2)
    ids = np.array([f"c{i:06d}" for i in range(n)])
    stamps = np.datetime64(config.start, "us") + (at * 86_400e6).astype("timedelta64[us]")
    out_dir = Path(out_dir)
    (out_dir / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    events = pa.table({
        "event_id": pa.array([f"p{k:08d}" for k in range(len(user))]),
        "user_id": pa.array(ids[user]),
        "event_type": pa.array(["purchase"] * len(user)),
        "timestamp": pa.array(stamps, pa.timestamp("us")),
        "amount": pa.array(amount),
    })
    first_day = (np.datetime64(config.start.date(), "D") + np.floor(birth).astype("timedelta64[D]"))
    customers = pa.table({"user_id": pa.array(ids), "signup_date": pa.array(first_day, pa.date32())})
    pq.write_table(events, out_dir / "events.parquet")
    pq.write_table(customers, out_dir / "customers.parquet")
    truth = {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in asdict(config).items()}
    (out_dir / TRUTH_DIR / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
    return {"customers": n, "events": len(user)}
