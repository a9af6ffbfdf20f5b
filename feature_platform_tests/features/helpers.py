"""Build raw inputs from plain rows and compute one family's snapshot through the real code path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from feature_platform.features.engine import snapshots_from_tables
from feature_platform.registry import load_registry
from feature_platform.registry.registry import Family
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS


def table(schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts with any subset of the columns) -> a table of exactly ``schema``."""
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema}, schema=schema)


def events(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    filled = [{"event_id": f"e{i}", **r} for i, r in enumerate(rows)]
    return table(EVENTS.arrow_schema, filled)


def customers(user_ids: Sequence[str] | Sequence[Mapping[str, Any]]) -> pa.Table:
    rows = [{"user_id": u} if isinstance(u, str) else u for u in user_ids]
    return table(CUSTOMERS.arrow_schema, rows)


def snapshot(
    family: str,
    day: dt.date,
    event_rows: Sequence[Mapping[str, Any]] = (),
    users: Sequence[str] | Sequence[Mapping[str, Any]] = ("u1",),
    review_rows: Sequence[Mapping[str, Any]] | None = None,
    listing_rows: Sequence[Mapping[str, Any]] | None = None,
    artifacts: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """{user_id: {feature: value}} for ``family`` at ``day``: the day's tiles, merged, conformed."""
    registry = load_registry()
    return by_user(snapshot_table(registry.family(family), day, event_rows, users, review_rows, listing_rows,
                                  artifacts))


def snapshot_table(
    family: Family,
    day: dt.date,
    event_rows: Sequence[Mapping[str, Any]] = (),
    users: Sequence[str] | Sequence[Mapping[str, Any]] = ("u1",),
    review_rows: Sequence[Mapping[str, Any]] | None = None,
    listing_rows: Sequence[Mapping[str, Any]] | None = None,
    artifacts: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The snapshot of ``family`` (any config) at ``day`` through the tile engine's in-memory path."""
    [(_, result, _)] = list(snapshots_from_tables(
        load_registry(), family, [day], events(event_rows), customers(users),
        table(REVIEWS.arrow_schema, review_rows) if review_rows is not None else None,
        table(LISTINGS.arrow_schema, listing_rows) if listing_rows is not None else None,
        artifacts,
    ))
    return result


def by_user(result: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["user_id"]: row for row in result.to_pylist()}
