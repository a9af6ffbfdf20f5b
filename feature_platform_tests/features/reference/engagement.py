"""Engagement family: the brief's engagement score and its 30-day inputs (D-29 .. D).

engagement_score = clip(sum(weight * min(count_30d / normalizer, 1)), 0, 1) over the event types in
the family config's ``score_inputs``; the weights, normalizers and even the event types come from the
config, so retuning the score is a registry change (and a family version bump), not a code change.
A user without events gets 0 counts, a 0 score and a null conversion rate (no page views).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from feature_platform.features.engagement import score_inputs
from feature_platform_tests.features.reference.base import SnapshotContext

WINDOW_DAYS = 30  # the window $start_30d .. $day_end; login_frequency is logins per day over it


def compute(ctx: SnapshotContext) -> pa.Table:
    inputs = score_inputs(ctx.config)
    # Event types are values, so they are parameters; the count columns are named by position.
    counted = sorted({"page_view", "email_open", "form_submit", "login", *inputs})
    params: dict[str, Any] = {f"type_{i}": t for i, t in enumerate(counted)}
    column = {t: f"n_{i}" for i, t in enumerate(counted)}
    counts = ",\n".join(f"count(*) FILTER (WHERE event_type = $type_{i}) AS n_{i}" for i in range(len(counted)))
    terms = []
    for j, (event_type, (weight, normalizer)) in enumerate(inputs.items()):
        params[f"weight_{j}"], params[f"normalizer_{j}"] = weight, normalizer
        terms.append(f"CAST($weight_{j} AS DOUBLE) * least(coalesce(c.{column[event_type]}, 0) / CAST($normalizer_{j} AS DOUBLE), 1.0)")
    unclipped = " + ".join(terms) or "0.0"
    page_views, form_submits = f"coalesce(c.{column['page_view']}, 0)", f"coalesce(c.{column['form_submit']}, 0)"
    return ctx.sql(
        f"""
        WITH counts AS (
            SELECT user_id, {counts}
            FROM events WHERE timestamp >= $start_30d GROUP BY user_id
        )
        SELECT u.user_id,
               {page_views} AS page_views_30d,
               coalesce(c.{column['email_open']}, 0) AS email_opens_30d,
               {form_submits} AS form_submits_30d,
               coalesce(c.{column['login']}, 0) / CAST($window_days AS DOUBLE) AS login_frequency,
               CAST({form_submits} AS DOUBLE) / nullif({page_views}, 0) AS form_submit_conversion_rate,
               greatest(least({unclipped}, 1.0), 0.0) AS engagement_score
        FROM users u
        LEFT JOIN counts c USING (user_id)
        """,
        window_days=WINDOW_DAYS,
        **params,
    ).to_arrow_table()
