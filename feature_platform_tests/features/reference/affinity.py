"""Affinity family: what kind of listings the user looks at, at what price, and how active they are.

Listing interactions (the event types of ``interaction_weights``) in the 90-day lookback are joined
to ``listings``; each weighs ``interaction_weights[type] * decay(age_days)`` with ``age_days`` the
fractional days from the event to D+1 00:00. An interaction whose listing is unknown, or lacks the
attribute a feature needs (category, city, price), is skipped for that feature only. Interactions of
weight 0 (linear decay at exactly 90 days, a zero type weight) carry no preference and are skipped
too, so a user whose interactions all weigh 0 gets null maps like a user without interactions.

``activity_score`` uses every event type: frequency (active days in 30) and recency in one number.
"""

from __future__ import annotations

import pyarrow as pa

from feature_platform.features.affinity import interaction_weights, positive
from feature_platform.features.base import LOOKBACK_DAYS
from feature_platform_tests.features.reference.base import SnapshotContext

AFFINITY_MAP = pa.map_(pa.string(), pa.float64())
OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("category_affinity", AFFINITY_MAP),
        pa.field("city_affinity", AFFINITY_MAP),
        pa.field("price_sensitivity", pa.float64()),
        pa.field("activity_score", pa.float64()),
    ]
)

# SQL for decay(age_days) by config name; the parameters ($half_life, $lookback) are bound, not pasted.
DECAY_SQL: dict[str, str] = {
    "exponential": "pow(0.5, age_days / $half_life)",
    "linear": "greatest(0.0, 1.0 - age_days / $lookback)",
}


def compute(ctx: SnapshotContext) -> pa.Table:
    config = ctx.config
    decay_kind = config["decay"]
    if decay_kind not in DECAY_SQL:
        raise ValueError(f"affinity config decay {decay_kind!r} is unknown; use one of {sorted(DECAY_SQL)}")
    types, weights = interaction_weights(config)
    if decay_kind == "exponential":
        decay_params = {"half_life": positive(config, "half_life_days")}
    else:
        decay_params = {"lookback": float(LOOKBACK_DAYS)}
    table = ctx.sql(
        f"""
        WITH type_weights AS (
            SELECT unnest($types) AS event_type, unnest($weights) AS type_weight
        ), price_ranks AS (
            -- percent_rank among the category's priced listings; a lone listing sits in the middle
            SELECT listing_id,
                   CASE WHEN count(*) OVER (PARTITION BY category_id) = 1 THEN 0.5
                        ELSE percent_rank() OVER (PARTITION BY category_id ORDER BY price) END AS price_rank
            FROM listings WHERE category_id IS NOT NULL AND price IS NOT NULL
        ), aged AS (
            SELECT e.user_id, l.category_id, l.city, p.price_rank, w.type_weight,
                   (epoch_us($day_end) - epoch_us(e.timestamp)) / 86400e6 AS age_days
            FROM events e
            JOIN type_weights w USING (event_type)
            JOIN listings l USING (listing_id)
            LEFT JOIN price_ranks p USING (listing_id)
        ), interactions AS (
            SELECT * FROM (
                SELECT user_id, category_id, city, price_rank, type_weight * {DECAY_SQL[decay_kind]} AS weight
                FROM aged
            ) WHERE weight > 0
        ), by_category AS (
            SELECT user_id, category_id AS key, sum(weight) AS weight
            FROM interactions WHERE category_id IS NOT NULL GROUP BY ALL
        ), by_city AS (
            SELECT user_id, city AS key, sum(weight) AS weight
            FROM interactions WHERE city IS NOT NULL GROUP BY ALL
        ), category_maps AS (
            SELECT user_id,
                   map_from_entries(list(struct_pack(key := key, value := weight / total) ORDER BY key)) AS m
            FROM (SELECT *, sum(weight) OVER (PARTITION BY user_id) AS total FROM by_category) GROUP BY user_id
        ), city_maps AS (
            SELECT user_id,
                   map_from_entries(list(struct_pack(key := key, value := weight / total) ORDER BY key)) AS m
            FROM (SELECT *, sum(weight) OVER (PARTITION BY user_id) AS total FROM by_city) GROUP BY user_id
        ), prices AS (
            SELECT user_id, sum(weight * price_rank) / sum(weight) AS price_sensitivity
            FROM interactions WHERE price_rank IS NOT NULL GROUP BY user_id
        ), activity AS (
            SELECT user_id,
                   count(DISTINCT CAST(timestamp AS DATE)) FILTER (WHERE timestamp >= $start_30d) AS active_days,
                   date_diff('day', CAST(max(timestamp) AS DATE), CAST($day AS DATE)) AS last_active_days
            FROM events GROUP BY user_id
        )
        SELECT u.user_id,
               cm.m AS category_affinity,
               ci.m AS city_affinity,
               p.price_sensitivity,
               coalesce(0.5 * least(a.active_days / $active_days_normalizer, 1.0)
                        + 0.5 * pow(0.5, a.last_active_days / $recency_half_life), 0.0) AS activity_score
        FROM users u
        LEFT JOIN category_maps cm USING (user_id)
        LEFT JOIN city_maps ci USING (user_id)
        LEFT JOIN prices p USING (user_id)
        LEFT JOIN activity a USING (user_id)
        ORDER BY u.user_id
        """,
        types=types,
        weights=weights,
        active_days_normalizer=positive(config, "activity_active_days_normalizer"),
        recency_half_life=positive(config, "activity_recency_half_life_days"),
        **decay_params,
    ).to_arrow_table()
    return table.cast(OUTPUT_SCHEMA)  # DuckDB MAP(VARCHAR, DOUBLE) is already map<string, double>; this pins it
