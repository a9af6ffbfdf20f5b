"""Activity family: what the user did in the 30 days ending at D, and when they were last seen.

Counts are over the 30-day window (D-29 .. D); ``last_active_days`` looks back the full 90 days.
A user without events gets 0 counts, a null session length and a null ``last_active_days``.
A session is a non-null session_id of the user; its length in a snapshot is the time from its first
to its last event inside the 30-day window (a session crossing midnight or the window start is
measured over the part the window sees).

Tile (one row per user and day): the day's event count per event type, and per session its first
and last timestamp of the day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.engine import MergeContext, TileContext
from feature_platform.features.tile_sql import EVENT_COUNT_COLUMNS, event_counts
from feature_platform.features.windows import column, days_since
from feature_platform.sources.schema import EVENT_TYPES

LOOKBACK = 90
WINDOW = 30
SESSION = pa.struct([("session_id", pa.string()), ("first_ts", pa.timestamp("us")), ("last_ts", pa.timestamp("us"))])


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([("user_id", pa.string()), ("day", pa.date32()), ("events", pa.int64()),
                      *((name, pa.int64()) for name in EVENT_COUNT_COLUMNS), ("sessions", pa.list_(SESSION))])


def tile(ctx: TileContext) -> pa.Table:
    counts, params = event_counts()
    return ctx.sql(
        f"""
        WITH sessions AS (
            SELECT user_id, day, session_id, min(timestamp) AS first_ts, max(timestamp) AS last_ts
            FROM events WHERE session_id IS NOT NULL GROUP BY ALL
        ), session_lists AS (
            SELECT user_id, day, list(struct_pack(session_id, first_ts, last_ts) ORDER BY session_id) AS sessions
            FROM sessions GROUP BY ALL
        ), counts AS (
            SELECT user_id, day, count(*) AS events, {counts} FROM events GROUP BY ALL
        )
        SELECT c.*, coalesce(s.sessions, []) AS sessions
        FROM counts c LEFT JOIN session_lists s USING (user_id, day)
        """,
        **params,
    ).to_arrow_table().select(tile_schema(ctx.config).names).cast(tile_schema(ctx.config))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    rows = ctx.user_rows({"events": None, **dict.fromkeys(EVENT_COUNT_COLUMNS)})
    sessions, _ = ctx.entity_rows("sessions", "session_id", {"first_ts": None, "last_ts": None})
    first_ts, last_ts = sessions.columns["first_ts"], sessions.columns["last_ts"]
    for day in ctx.days:
        recent, lookback = rows.runs(day, WINDOW), rows.runs(day, LOOKBACK)
        out: dict[str, pa.Array] = {}
        out["total_events"] = column(rows.scatter(recent, rows.total(recent, "events"), ctx.n))
        counts = {t: rows.scatter(recent, rows.total(recent, c), ctx.n) for t, c in zip(EVENT_TYPES, EVENT_COUNT_COLUMNS,
                                                                                         strict=True)}
        out["purchase_count"] = column(counts["purchase"])
        out["add_to_cart_count"] = column(counts["add_to_cart"])
        seen = sessions.runs(day, WINDOW)
        session_count = sessions.per_owner(seen, None, ctx.n)
        span_us = sessions.per_owner(seen, last_ts[seen.hi] - first_ts[seen.lo], ctx.n)
        out["session_count"] = column(session_count)
        out["avg_session_length"] = _minutes(span_us, session_count)
        last = rows.scatter(lookback, rows.day[lookback.hi], ctx.n, fill=-1)
        out["last_active_days"] = days_since(last, day, last >= 0)
        for event_type in EVENT_TYPES:
            out[f"event_vector_{event_type}"] = column(counts[event_type])
        yield out


def _minutes(span_us: np.ndarray, sessions: np.ndarray) -> pa.Array:
    """Mean session length in minutes from the exact sum of spans in microseconds."""
    valid = sessions > 0
    out = np.zeros(len(span_us), np.float64)
    np.divide(span_us / 60e6, sessions, out=out, where=valid)
    return column(out, valid)

