"""Lifetime family: the whole purchase history before D+1 and its BTYD summary (x, t_x, T in days).

Reads ``all_events`` (every event, not the 90-day window) up to D+1 00:00. The spend adds each day's
purchase amounts in timestamp order, then the days in order: the float sum the engine must reproduce.
"""

from __future__ import annotations

import pyarrow as pa

from feature_platform_tests.features.reference.base import SnapshotContext


def compute(ctx: SnapshotContext) -> pa.Table:
    return ctx.sql(
        """
        WITH history AS (
            SELECT *, CAST(timestamp AS DATE) AS day FROM all_events WHERE timestamp < $day_end
        ), purchases AS (
            SELECT user_id, day, count(*) AS n, count(amount) AS priced,
                   coalesce(sum(amount ORDER BY timestamp, event_id), 0.0) AS spend
            FROM history WHERE event_type = 'purchase' GROUP BY user_id, day
        ), per_user AS (
            SELECT user_id, min(day) AS first_day, max(day) AS last_day, sum(n) AS purchases,
                   count(*) AS purchase_days, sum(priced) AS priced, sum(spend ORDER BY day) AS spend
            FROM purchases GROUP BY user_id
        ), seen AS (
            SELECT user_id, min(day) AS first_event FROM history GROUP BY user_id
        )
        SELECT u.user_id,
               date_diff('day', p.first_day, CAST($day AS DATE)) AS first_purchase_days,
               date_diff('day', p.last_day, CAST($day AS DATE)) AS last_purchase_days,
               date_diff('day', s.first_event, CAST($day AS DATE)) AS tenure_days,
               coalesce(p.purchases, 0) AS lifetime_purchases,
               coalesce(p.purchase_days, 0) AS purchase_days,
               coalesce(p.spend, 0.0) AS lifetime_spend,
               CASE WHEN p.priced > 0 THEN p.spend / p.priced END AS mean_ticket,
               p.purchase_days - 1 AS btyd_frequency,
               date_diff('day', p.first_day, p.last_day) AS btyd_recency_days,
               date_diff('day', p.first_day, CAST($day AS DATE)) AS btyd_age_days
        FROM users u
        LEFT JOIN per_user p USING (user_id)
        LEFT JOIN seen s USING (user_id)
        """
    ).to_arrow_table()
