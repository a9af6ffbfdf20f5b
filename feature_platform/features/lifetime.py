"""Lifetime family: a customer's whole purchase history up to D, and its buy-till-you-die summary.

Every other family looks back 90 days at most, so a customer who bought steadily for a year and then
paused for three months looks like one who never bought. These features see all history before
D+1 00:00 UTC: first and last purchase, tenure, counts, spend, and the BTYD summary (x, t_x, T) that
BG/NBD and Pareto/NBD models take, in days, counting purchase days (several purchases on one day are
one transaction, as the BTYD literature does with daily data):

- ``btyd_frequency`` x = purchase days - 1 (repeat purchase days);
- ``btyd_recency_days`` t_x = last purchase day - first purchase day;
- ``btyd_age_days`` T = D - first purchase day (so t_x <= T).

All are null (counts 0, spend 0.0) for a customer without a purchase; ``tenure_days`` is null without
any event. ``mean_ticket`` averages the purchases that carry an amount.

Tile (one row per user and day with an event): the day's events, purchases, purchases with an amount
and their amount sum (added in timestamp order). A snapshot merges every tile up to D.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.engine import ALL_HISTORY, MergeContext, TileContext
from feature_platform.features.windows import RowSet, column, days_since, ratio

LOOKBACK = ALL_HISTORY
_FOREVER = 10**7  # a window longer than any history, in days


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([("user_id", pa.string()), ("day", pa.date32()), ("events", pa.int64()),
                      ("purchases", pa.int64()), ("priced", pa.int64()), ("spend", pa.float64())])


def tile(ctx: TileContext) -> pa.Table:
    return ctx.sql(
        """
        SELECT user_id, day, count(*) AS events,
               count(*) FILTER (WHERE event_type = $purchase) AS purchases,
               count(amount) FILTER (WHERE event_type = $purchase) AS priced,
               coalesce(sum(amount ORDER BY timestamp, event_id) FILTER (WHERE event_type = $purchase), 0.0) AS spend
        FROM events GROUP BY user_id, day
        """,
        purchase="purchase",
    ).to_arrow_table().select(tile_schema(ctx.config).names).cast(tile_schema(ctx.config))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    rows = ctx.user_rows({"events": None, "purchases": None, "priced": None, "spend": None})
    bought = _only(rows, rows.columns["purchases"] > 0)
    for day in ctx.days:
        seen, paid = rows.runs(day, _FOREVER), bought.runs(day, _FOREVER)
        first_event = rows.scatter(seen, rows.day[seen.lo], ctx.n, fill=-1)
        first = bought.scatter(paid, bought.day[paid.lo], ctx.n, fill=-1)
        last = bought.scatter(paid, bought.day[paid.hi], ctx.n, fill=-1)
        buyer = first >= 0
        purchases = bought.scatter(paid, bought.total(paid, "purchases"), ctx.n)
        priced = bought.scatter(paid, bought.total(paid, "priced"), ctx.n)
        spend = bought.scatter(paid, bought.ordered_sum(paid, "spend"), ctx.n, fill=0.0)
        purchase_days = bought.scatter(paid, paid.hi - paid.lo + 1, ctx.n)
        yield {
            "first_purchase_days": days_since(first, day, buyer),
            "last_purchase_days": days_since(last, day, buyer),
            "tenure_days": days_since(first_event, day, first_event >= 0),
            "lifetime_purchases": column(purchases),
            "purchase_days": column(purchase_days),
            "lifetime_spend": column(spend),
            "mean_ticket": ratio(spend, priced),
            "btyd_frequency": column(purchase_days - 1, buyer),
            "btyd_recency_days": column(last - first, buyer),
            "btyd_age_days": days_since(first, day, buyer),
        }


def _only(rows: RowSet, keep: np.ndarray) -> RowSet:
    """The rows where ``keep`` holds, still sorted by (group, day)."""
    return RowSet(rows.group[keep], rows.day[keep], rows.owner, {k: v[keep] for k, v in rows.columns.items()})
