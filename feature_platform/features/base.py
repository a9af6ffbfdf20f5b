"""What every feature family shares: the snapshot window, the inputs as DuckDB tables, the run loop.

A family module exposes ``compute(ctx: SnapshotContext) -> pyarrow.Table`` for ONE snapshot date D:
one row per user in the ``users`` table (the users known at D), a ``user_id`` column and one column
per registry feature of the family. Inside ``ctx.con`` these tables exist for that date:

    events    raw events with D-89 00:00 <= timestamp < D+1 00:00 (the 90-day lookback)
    users     customers known at D (signup_date null or <= D), all profile columns
    reviews   raw reviews with timestamp < D+1 00:00
    listings  raw listings

Time bounds are passed as query parameters from ``ctx.window.params()``; nothing after D+1 00:00
is ever loaded for D, so a snapshot cannot see the future.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry.registry import Family, Registry
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS

LOOKBACK_DAYS = 90
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotWindow:
    """The snapshot date D and the bounds its windows use (naive UTC)."""

    day: dt.date

    @property
    def end(self) -> dt.datetime:
        """D+1 00:00: the first instant a snapshot of D must not see."""
        return dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time())

    def start(self, days: int) -> dt.datetime:
        """Start of the ``days``-day window ending at D (D-days+1 00:00)."""
        return self.end - dt.timedelta(days=days)

    def params(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "day_end": self.end,
            "start_7d": self.start(7),
            "start_30d": self.start(30),
            "start_90d": self.start(LOOKBACK_DAYS),
        }


@dataclass
class SnapshotContext:
    con: duckdb.DuckDBPyConnection
    window: SnapshotWindow
    config: Mapping[str, Any]
    artifacts: Mapping[str, Any] = field(default_factory=dict)  # e.g. the fitted review topic model

    def sql(self, query: str, **extra: Any) -> duckdb.DuckDBPyRelation:
        """Run ``query`` with the window parameters it mentions ($day, $day_end, $start_30d, ...)."""
        params = {**self.window.params(), **extra}
        return self.con.sql(query, params={k: v for k, v in params.items() if f"${k}" in query})


class FamilyModule(Protocol):
    def compute(self, ctx: SnapshotContext) -> pa.Table: ...


class SnapshotInputs:
    """Raw inputs for a range of snapshot dates, loaded once into DuckDB (one pass per backfill)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        """``con`` holds all_events, customers, all_reviews and listings (see the constructors).

        Feature SQL then runs on one thread: DuckDB merges parallel partial aggregates in whatever
        order threads finish, so float sums and averages can differ in the last bit between runs,
        and a re-run must write identical bytes.
        """
        self.con = con
        self.con.execute("SET threads = 1")
        self._threads = os.cpu_count() or 1

    @classmethod
    def from_store(cls, store: OfflineStore, first_day: dt.date, last_day: dt.date) -> SnapshotInputs:
        """Load the raw partitions a run over [first_day, last_day] needs, once."""
        con = connect()
        lookback_start = (first_day - dt.timedelta(days=LOOKBACK_DAYS - 1)).isoformat()
        store.scan(con, "raw/events", lookback_start, last_day.isoformat(), EVENTS.arrow_schema).create("all_events")
        for table, schema, name in (
            ("raw/customers", CUSTOMERS.arrow_schema, "customers"),
            ("raw/reviews", REVIEWS.arrow_schema, "all_reviews"),
            ("raw/listings", LISTINGS.arrow_schema, "listings"),
        ):
            path = store.table_path(table)
            if path.exists():
                con.sql("SELECT * FROM read_parquet($p)", params={"p": str(path)}).create(name)
            else:
                con.from_arrow(schema.empty_table()).create(name)
        return cls(con)

    @classmethod
    def from_tables(
        cls,
        events: pa.Table,
        customers: pa.Table,
        reviews: pa.Table | None = None,
        listings: pa.Table | None = None,
    ) -> SnapshotInputs:
        """In-memory inputs (tests, notebooks): tables in the raw contract's schemas."""
        con = connect()
        con.from_arrow(events.cast(EVENTS.arrow_schema)).create("all_events")
        con.from_arrow(customers.cast(CUSTOMERS.arrow_schema)).create("customers")
        con.from_arrow((reviews or REVIEWS.arrow_schema.empty_table()).cast(REVIEWS.arrow_schema)).create("all_reviews")
        con.from_arrow((listings or LISTINGS.arrow_schema.empty_table()).cast(LISTINGS.arrow_schema)).create("listings")
        return cls(con)

    def close(self) -> None:
        self.con.close()

    def context(self, day: dt.date, config: Mapping[str, Any], artifacts: Mapping[str, Any]) -> SnapshotContext:
        """(Re)build the per-date tables for D and return the context a family computes in."""
        window = SnapshotWindow(day)
        params = window.params()
        con = self.con
        with self._all_cores():
            self._copy_day_tables(day, params)
        return SnapshotContext(con=con, window=window, config=config, artifacts=artifacts)

    @contextmanager
    def _all_cores(self) -> Iterator[None]:
        """Copying the day's tables is order-preserving and value-neutral: let it use every core."""
        self.con.execute("SET threads = ?", [self._threads])
        try:
            yield
        finally:
            self.con.execute("SET threads = 1")

    def _copy_day_tables(self, day: dt.date, params: dict[str, Any]) -> None:
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE events AS SELECT * FROM all_events "
            "WHERE timestamp >= $start_90d AND timestamp < $day_end",
            {"start_90d": params["start_90d"], "day_end": params["day_end"]},
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE users AS SELECT * FROM customers "
            "WHERE signup_date IS NULL OR signup_date <= $day ORDER BY user_id",
            {"day": day},
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE reviews AS SELECT * FROM all_reviews WHERE timestamp < $day_end",
            {"day_end": params["day_end"]},
        )

    def known_users(self) -> int:
        """Users in the current ``users`` table (the row count every snapshot of D must have)."""
        return self.con.sql("SELECT count(*) FROM users").fetchall()[0][0]


def known_user_count(store: OfflineStore, day: dt.date) -> int:
    """Customers known at D (signup_date null or <= D), counted as the ``users`` table does: the rows
    every snapshot of D must have, including a derived family's, which is not computed from raw tables."""
    path = store.table_path("raw/customers")
    if not path.exists():
        raise FileNotFoundError(f"raw/customers has not been written yet (expected {path}); ingest first")
    with connect() as con:
        return con.execute("SELECT count(*) FROM read_parquet($p) WHERE signup_date IS NULL OR signup_date <= $day",
                           {"p": str(path), "day": day}).fetchall()[0][0]


def family_module(family: Family) -> FamilyModule:
    return importlib.import_module(family.module)


def conform(table: pa.Table, registry: Registry, family: Family, day: dt.date) -> pa.Table:
    """Order, type and sort a family's output exactly as the registry's snapshot schema says.

    A missing or unexpected column is a bug in the family, so it raises instead of padding.
    """
    schema = registry.snapshot_schema(family.name)
    expected = set(schema.names) - {"snapshot_date"}
    produced = set(table.column_names)
    if produced != expected:
        raise ValueError(
            f"family {family.name} produced columns that differ from the registry: "
            f"missing {sorted(expected - produced)}, unexpected {sorted(produced - expected)}"
        )
    table = table.append_column("snapshot_date", pa.array([day] * table.num_rows, pa.date32()))
    table = table.take(pc.sort_indices(table, sort_keys=[("user_id", "ascending")]))
    return table.select(schema.names).cast(schema)


def compute_snapshots(
    registry: Registry,
    family: Family,
    inputs: SnapshotInputs,
    days: list[dt.date],
    artifacts: Mapping[str, Any] | None = None,
) -> Iterator[tuple[dt.date, pa.Table, int]]:
    """Yield (day, snapshot, known users) for each day, computing all of them in one process."""
    module = family_module(family)
    every = max(1, len(days) // 4)  # progress a person can follow, not a line per day
    for index, day in enumerate(days, start=1):
        ctx = inputs.context(day, family.config, artifacts or {})
        snapshot = conform(module.compute(ctx), registry, family, day)
        if index % every == 0 or index == len(days):
            log.info("%s: %s/%s snapshots (%s, %s users)", family.name, index, len(days), day, snapshot.num_rows)
        yield day, snapshot, inputs.known_users()
