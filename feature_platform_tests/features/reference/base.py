"""The per-day SQL computation of every feature family: the slow, obviously-correct oracle.

This is how snapshots were computed before the tile engine: for ONE snapshot date D, each family
runs one DuckDB query over the raw events of its 90-day lookback (D-89 00:00 <= timestamp < D+1
00:00), the users known at D, the reviews before D+1 and the listings. It recomputes everything
from raw events for every day, which is why it is slow and why it is easy to trust: the tile
engine (feature_platform.features) must give the same values for every feature of every day.

Inside ``ctx.con`` these tables exist for the date:

    events    raw events with D-89 00:00 <= timestamp < D+1 00:00
    all_events every raw event (the lifetime family filters timestamp < D+1 00:00 itself)
    users     customers known at D (signup_date null or <= D), all profile columns
    reviews   raw reviews with timestamp < D+1 00:00
    listings  raw listings
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from feature_platform.features.base import LOOKBACK_DAYS, conform
from feature_platform.offline.store import connect
from feature_platform.registry.registry import Family, Registry
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS

MODULES = {name: f"feature_platform_tests.features.reference.{name}"
           for name in ("activity", "lead", "engagement", "profile", "review", "affinity", "lifetime")}


@dataclass(frozen=True)
class SnapshotWindow:
    """The snapshot date D and the bounds its windows use (naive UTC)."""

    day: dt.date

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time())

    def start(self, days: int) -> dt.datetime:
        return self.end - dt.timedelta(days=days)

    def params(self) -> dict[str, Any]:
        return {"day": self.day, "day_end": self.end, "start_7d": self.start(7), "start_30d": self.start(30),
                "start_90d": self.start(LOOKBACK_DAYS)}


@dataclass
class SnapshotContext:
    con: duckdb.DuckDBPyConnection
    window: SnapshotWindow
    config: Mapping[str, Any]
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def sql(self, query: str, **extra: Any) -> duckdb.DuckDBPyRelation:
        params = {**self.window.params(), **extra}
        return self.con.sql(query, params={k: v for k, v in params.items() if f"${k}" in query})


def reference_snapshot(
    registry: Registry,
    family: Family,
    events: pa.Table,
    customers: pa.Table,
    day: dt.date,
    reviews: pa.Table | None = None,
    listings: pa.Table | None = None,
    artifacts: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The snapshot of ``family`` at ``day`` by the per-day SQL, conformed to the registry schema."""
    con = connect(threads=1)
    try:
        con.from_arrow(events.cast(EVENTS.arrow_schema)).create("all_events")
        con.from_arrow(customers.cast(CUSTOMERS.arrow_schema)).create("customers")
        con.from_arrow((reviews or REVIEWS.arrow_schema.empty_table()).cast(REVIEWS.arrow_schema)).create("all_reviews")
        con.from_arrow((listings or LISTINGS.arrow_schema.empty_table()).cast(LISTINGS.arrow_schema)).create("listings")
        window = SnapshotWindow(day)
        params = window.params()
        con.execute("CREATE TEMP TABLE events AS SELECT * FROM all_events "
                    "WHERE timestamp >= $start_90d AND timestamp < $day_end",
                    {"start_90d": params["start_90d"], "day_end": params["day_end"]})
        con.execute("CREATE TEMP TABLE users AS SELECT * FROM customers "
                    "WHERE signup_date IS NULL OR signup_date <= $day ORDER BY user_id", {"day": day})
        con.execute("CREATE TEMP TABLE reviews AS SELECT * FROM all_reviews WHERE timestamp < $day_end",
                    {"day_end": params["day_end"]})
        ctx = SnapshotContext(con=con, window=window, config=family.config, artifacts=artifacts or {})
        module = importlib.import_module(MODULES[family.name])
        return conform(module.compute(ctx), registry, family, day)
    finally:
        con.close()
