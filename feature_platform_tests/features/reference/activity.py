"""Activity family: what the user did in the 30 days ending at D, and when they were last seen.

Counts are over the 30-day window (D-29 .. D); ``last_active_days`` looks back the full 90 days.
A user without events gets 0 counts, a null session length and a null ``last_active_days``.
"""

from __future__ import annotations

import pyarrow as pa

from feature_platform.sources.schema import EVENT_TYPES
from feature_platform_tests.features.reference.base import SnapshotContext


def compute(ctx: SnapshotContext) -> pa.Table:
    # Column names are identifiers from the raw contract; the event-type values are parameters.
    type_params = {f"type_{i}": event_type for i, event_type in enumerate(EVENT_TYPES)}
    vector_counts = ",\n".join(
        f'count(*) FILTER (WHERE event_type = $type_{i}) AS "event_vector_{event_type}"'
        for i, event_type in enumerate(EVENT_TYPES)
    )
    vector_columns = ",\n".join(f'coalesce(c."event_vector_{t}", 0) AS "event_vector_{t}"' for t in EVENT_TYPES)
    return ctx.sql(
        f"""
        WITH window_30d AS (
            SELECT * FROM events WHERE timestamp >= $start_30d
        ), counts AS (
            SELECT user_id,
                   count(*) AS total_events,
                   count(DISTINCT session_id) AS session_count,
                   {vector_counts}
            FROM window_30d GROUP BY user_id
        ), sessions AS (
            SELECT user_id, (epoch_us(max(timestamp)) - epoch_us(min(timestamp))) / 60e6 AS minutes
            FROM window_30d WHERE session_id IS NOT NULL GROUP BY user_id, session_id
        ), session_lengths AS (
            SELECT user_id, avg(minutes) AS avg_session_length FROM sessions GROUP BY user_id
        ), last_seen AS (
            SELECT user_id, max(timestamp) AS last_ts FROM events GROUP BY user_id
        )
        SELECT u.user_id,
               coalesce(c.total_events, 0) AS total_events,
               coalesce(c."event_vector_purchase", 0) AS purchase_count,
               coalesce(c."event_vector_add_to_cart", 0) AS add_to_cart_count,
               coalesce(c.session_count, 0) AS session_count,
               s.avg_session_length,
               date_diff('day', CAST(l.last_ts AS DATE), CAST($day AS DATE)) AS last_active_days,
               {vector_columns}
        FROM users u
        LEFT JOIN counts c USING (user_id)
        LEFT JOIN session_lengths s USING (user_id)
        LEFT JOIN last_seen l USING (user_id)
        """,
        **type_params,
    ).to_arrow_table()
