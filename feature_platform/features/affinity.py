"""Affinity family: what kind of listings the user looks at, at what price, and how active they are.

Listing interactions (the event types of ``interaction_weights``) in the 90-day lookback are joined
to ``listings``; each weighs ``interaction_weights[type] * decay(age_days)`` with ``age_days`` the
fractional days from the event to D+1 00:00. An interaction whose listing is unknown, or lacks the
attribute a feature needs (category, city, price), is skipped for that feature only. Interactions of
weight 0 (linear decay at exactly 90 days, a zero type weight) carry no preference and are skipped
too, so a user whose interactions all weigh 0 gets null maps like a user without interactions.

``activity_score`` uses every event type: frequency (active days in 30) and recency in one number.

Tile (one row per user and day): the day's event count and, per category, per city and for the
priced listings, the interactions' weights with their age measured from the end of their own day,
so a snapshot only rescales them: an event k whole days before D weighs
``w * 0.5 ** ((k + f) / half_life) = [w * 0.5 ** (f / half_life)] * 0.5 ** (k / half_life)`` (exponential)
or ``w * (90 - k - f) / 90 = (w * (90 - k) - w * f) / 90`` (linear), f = the age at the end of its day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.base import LOOKBACK_DAYS
from feature_platform.features.engine import MergeContext, TileContext
from feature_platform.features.windows import RowSet, Runs, column
from feature_platform.sources.schema import EVENT_TYPES

LOOKBACK = LOOKBACK_DAYS
ACTIVE_WINDOW = 30
AFFINITY_MAP = pa.map_(pa.string(), pa.float64())
DECAYS = ("exponential", "linear")
# One partial weight per (user, day, key): `weight` and `weight_age` as the docstring's bracketed terms
# (exponential: w * 0.5 ** (f / half_life) and 0; linear: w and w * f); `after_midnight` counts the
# interactions later than their day's first instant: at the window's edge (90 days) only those still
# weigh something under linear decay.
KEY_WEIGHTS = pa.struct([("key", pa.string()), ("weight", pa.float64()), ("weight_age", pa.float64()),
                         ("interactions", pa.int64()), ("after_midnight", pa.int64())])
PRICE_COLUMNS = ("price_weight", "price_weight_age", "rank_weight", "rank_weight_age")


def positive(config: Mapping[str, Any], key: str) -> float:
    value = float(config[key])
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"affinity config {key} must be a positive number, got {config[key]!r}")
    return value


def interaction_weights(config: Mapping[str, Any]) -> tuple[list[str], list[float]]:
    weights = dict(config["interaction_weights"])
    if not weights:
        raise ValueError("affinity config interaction_weights is empty; name at least one listing event type")
    unknown = sorted(set(weights) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"affinity config interaction_weights has unknown event types {unknown}; known: {EVENT_TYPES}")
    bad = {t: w for t, w in weights.items() if not (math.isfinite(float(w)) and float(w) >= 0)}
    if bad:
        raise ValueError(f"affinity config interaction_weights must be finite and >= 0, got {bad}")
    return list(weights), [float(w) for w in weights.values()]


def decay_kind(config: Mapping[str, Any]) -> str:
    kind = config["decay"]
    if kind not in DECAYS:
        raise ValueError(f"affinity config decay {kind!r} is unknown; use one of {sorted(DECAYS)}")
    return str(kind)


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([
        ("user_id", pa.string()), ("day", pa.date32()), ("events", pa.int64()),
        ("categories", pa.list_(KEY_WEIGHTS)), ("cities", pa.list_(KEY_WEIGHTS)),
        *((name, pa.float64()) for name in PRICE_COLUMNS),
        ("price_interactions", pa.int64()), ("price_after_midnight", pa.int64()),
    ])


def tile(ctx: TileContext) -> pa.Table:
    config = ctx.config
    types, weights = interaction_weights(config)
    if decay_kind(config) == "exponential":
        partial = "type_weight * pow(0.5, age_days / $half_life) AS weight, 0.0 AS weight_age"
        params: dict[str, Any] = {"half_life": positive(config, "half_life_days")}
    else:
        partial, params = "type_weight AS weight, type_weight * age_days AS weight_age", {}
    key_lists = {
        name: f"""(
            SELECT user_id, day,
                   list(struct_pack(key, weight, weight_age, interactions, after_midnight) ORDER BY key) AS keys
            FROM (SELECT user_id, day, {attr} AS key, sum(weight ORDER BY timestamp, event_id) AS weight,
                         sum(weight_age ORDER BY timestamp, event_id) AS weight_age,
                         count(*) AS interactions, count(*) FILTER (WHERE after_midnight) AS after_midnight
                  FROM weighted WHERE {attr} IS NOT NULL GROUP BY ALL)
            GROUP BY user_id, day
        )"""
        for name, attr in (("categories", "category_id"), ("cities", "city"))
    }
    # Float sums add in a fixed order, whatever order the joins hand rows over in: a tile's bits are its data's.
    return ctx.sql(
        f"""
        WITH type_weights AS (
            SELECT unnest($types) AS event_type, unnest($weights) AS type_weight
        ), price_ranks AS (
            -- percent_rank among the category's priced listings; a lone listing sits in the middle
            SELECT listing_id,
                   CASE WHEN count(*) OVER (PARTITION BY category_id) = 1 THEN 0.5
                        ELSE percent_rank() OVER (PARTITION BY category_id ORDER BY price) END AS price_rank
            FROM listings WHERE category_id IS NOT NULL AND price IS NOT NULL
        ), weighted AS (
            SELECT user_id, day, timestamp, event_id, category_id, city, price_rank, after_midnight, {partial}
            FROM (
                SELECT e.user_id, e.day, e.timestamp, e.event_id, l.category_id, l.city, p.price_rank, w.type_weight,
                       e.timestamp > CAST(e.day AS TIMESTAMP) AS after_midnight,
                       (epoch_us(CAST(e.day AS TIMESTAMP) + INTERVAL 1 DAY) - epoch_us(e.timestamp)) / 86400e6 AS age_days
                FROM events e
                JOIN type_weights w USING (event_type)
                JOIN listings l USING (listing_id)
                LEFT JOIN price_ranks p USING (listing_id)
                WHERE w.type_weight > 0
            )
        ), prices AS (
            SELECT user_id, day, sum(weight ORDER BY timestamp, event_id) AS price_weight, sum(weight_age ORDER BY timestamp, event_id) AS price_weight_age,
                   sum(weight * price_rank ORDER BY timestamp, event_id) AS rank_weight,
                   sum(weight_age * price_rank ORDER BY timestamp, event_id) AS rank_weight_age,
                   count(*) AS price_interactions, count(*) FILTER (WHERE after_midnight) AS price_after_midnight
            FROM weighted WHERE price_rank IS NOT NULL GROUP BY user_id, day
        ), users AS (
            SELECT user_id, day, count(*) AS events FROM events GROUP BY user_id, day
        )
        SELECT u.user_id, u.day, u.events,
               coalesce(c.keys, []) AS categories, coalesce(t.keys, []) AS cities,
               coalesce(p.price_weight, 0.0) AS price_weight, coalesce(p.price_weight_age, 0.0) AS price_weight_age,
               coalesce(p.rank_weight, 0.0) AS rank_weight, coalesce(p.rank_weight_age, 0.0) AS rank_weight_age,
               coalesce(p.price_interactions, 0) AS price_interactions,
               coalesce(p.price_after_midnight, 0) AS price_after_midnight
        FROM users u
        LEFT JOIN {key_lists['categories']} c USING (user_id, day)
        LEFT JOIN {key_lists['cities']} t USING (user_id, day)
        LEFT JOIN prices p USING (user_id, day)
        """,
        types=types,
        weights=weights,
        **params,
    ).to_arrow_table().select(tile_schema(ctx.config).names).cast(tile_schema(ctx.config))


class _Decay:
    """A snapshot's weight of a tile row k whole days old, from the row's two partial weights."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.linear = decay_kind(config) == "linear"
        ages = np.arange(LOOKBACK, dtype=np.float64)
        self.factor = None if self.linear else np.power(0.5, ages / positive(config, "half_life_days"))

    def term(self, rows: RowSet, weight: str, weight_age: str, day: int) -> Callable[[np.ndarray], np.ndarray]:
        w, wa = rows.columns[weight], rows.columns[weight_age]
        if self.linear:
            return lambda at: np.maximum((w[at] * (LOOKBACK - (day - rows.day[at])) - wa[at]) / float(LOOKBACK), 0.0)
        # not linear: factor is an array (the ignore stands in for a typed rewrite, which would change the
        # affinity family's fingerprint, see registry/fingerprint.py, for no value change)
        return lambda at: w[at] * self.factor[day - rows.day[at]]  # type: ignore[index]

    def present(self, rows: RowSet, runs: Runs, day: int, interactions: str, after_midnight: str) -> np.ndarray:
        """Runs with an interaction of positive weight: any not on the window's first day, or (linear
        decay) one after that day's midnight, which alone is exactly 90 days old at D+1 00:00."""
        on_edge = rows.day[runs.lo] == day - (LOOKBACK - 1)
        inside = rows.total(runs, interactions) - np.where(on_edge, rows.columns[interactions][runs.lo], 0) > 0
        edge_counts = rows.columns[after_midnight if self.linear else interactions][runs.lo]
        return inside | (on_edge & (edge_counts > 0))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    config = ctx.config
    decay = _Decay(config)
    normalizer = positive(config, "activity_active_days_normalizer")
    half_life = positive(config, "activity_recency_half_life_days")
    rows = ctx.user_rows({"events": None, **dict.fromkeys(PRICE_COLUMNS),
                          "price_interactions": None, "price_after_midnight": None})
    rows.columns["active"] = np.ones(len(rows), np.int64)
    fields = dict.fromkeys(("weight", "weight_age", "interactions", "after_midnight"))
    categories = ctx.entity_rows("categories", "key", fields)
    cities = ctx.entity_rows("cities", "key", fields)
    for day in ctx.days:
        lookback, recent = rows.runs(day, LOOKBACK), rows.runs(day, ACTIVE_WINDOW)
        priced = decay.present(rows, lookback, day, "price_interactions", "price_after_midnight")
        weight = rows.ordered_sum(lookback, decay.term(rows, "price_weight", "price_weight_age", day))
        rank = rows.ordered_sum(lookback, decay.term(rows, "rank_weight", "rank_weight_age", day))
        valid = np.zeros(ctx.n, bool)
        valid[lookback.group] = priced
        sensitivity = np.zeros(ctx.n)
        sensitivity[lookback.group[priced]] = rank[priced] / weight[priced]
        active = rows.scatter(recent, rows.total(recent, "active"), ctx.n)
        last = rows.scatter(lookback, rows.day[lookback.hi], ctx.n, fill=-1)
        seen = last >= 0
        score = 0.5 * np.minimum(active / normalizer, 1.0) + 0.5 * np.power(0.5, (day - last) / half_life)
        yield {
            "category_affinity": _shares(*categories, decay, day, ctx.n),
            "city_affinity": _shares(*cities, decay, day, ctx.n),
            "price_sensitivity": column(sensitivity, valid),
            "activity_score": column(np.where(seen, score, 0.0)),
        }


def _shares(rows: RowSet, keys: np.ndarray, decay: _Decay, day: int, users: int) -> pa.Array:
    """Per user, {key: weight / total weight} over the keys with a positive weight; null without any."""
    runs = rows.runs(day, LOOKBACK)
    present = decay.present(rows, runs, day, "interactions", "after_midnight")
    runs = Runs(runs.group[present], runs.lo[present], runs.hi[present])
    weights = rows.ordered_sum(runs, decay.term(rows, "weight", "weight_age", day))
    owners = rows.owner[runs.group]
    totals = rows.per_owner(runs, weights, users)
    counts = np.bincount(owners, minlength=users)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    shares = weights / totals[owners] if len(runs) else weights
    return pa.MapArray.from_arrays(pa.array(offsets), pa.array(keys[runs.group], pa.string()), pa.array(shares),
                                   type=AFFINITY_MAP, mask=pa.array(counts == 0))
