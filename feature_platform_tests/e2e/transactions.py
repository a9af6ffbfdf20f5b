"""A retail transactions export (CustomerID, InvoiceDate, Revenue) as a shop's system would give it.

Not the platform's generator: a separate, deliberately plain simulation so the tests show that the
platform learns from data it did not make. Each customer buys as a Poisson process with their own
rate from their first day until they silently stop (a per-customer daily hazard), which is the
classic buy-till-you-die story: whether a customer is still alive depends on recency *and* on how
often they used to buy, so a model with frequency beats recency alone.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np


def write_transactions(path: Path, customers: int, days: int, end: dt.date, seed: int = 11,
                       shape: str = "retail") -> int:
    """Write ``path`` and return the number of rows.

    ``shape``: "retail" is a CSV of CustomerID, InvoiceDate (date and time), Revenue; "cdnow" is the shape of
    the classic 1990s CD-store history: space-aligned columns customer_id, date (YYYYMMDD, no time),
    n_items, dollar_value, zero-padded customer ids."""
    rng = np.random.default_rng(seed)
    start = dt.datetime.combine(end - dt.timedelta(days=days - 1), dt.time(0))
    first = rng.uniform(0, days * 0.4, customers)
    rate = np.exp(rng.normal(np.log(0.12), 0.7, customers))  # purchases per day while alive
    hazard = rng.uniform(0.002, 0.03, customers)  # daily probability of stopping for good
    stop = first + rng.exponential(1.0 / hazard)
    rows = []
    for c in range(customers):
        t = first[c]
        while True:
            t += rng.exponential(1.0 / rate[c])
            if t >= min(stop[c], days):
                break
            when = start + dt.timedelta(seconds=int(t * 86400))
            rows.append((when, 17000 + c, round(float(rng.lognormal(3.0, 0.6)), 2)))
    rows.sort()
    if shape == "cdnow":
        lines = [f"{customer:05d} {when:%Y%m%d} {1 + int(revenue // 15):>3} {revenue:>8.2f}" for when, customer, revenue in rows]
        path.write_text("customer_id    date  n_items dollar_value\n" + "\n".join(lines) + "\n")
        return len(rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["CustomerID", "InvoiceDate", "Revenue"])
        writer.writerows((customer, when.strftime("%Y-%m-%d %H:%M:%S"), revenue) for when, customer, revenue in rows)
    return len(rows)
