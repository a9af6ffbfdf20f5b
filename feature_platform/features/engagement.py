"""Engagement family: the engagement score and its 30-day inputs (D-29 .. D).

engagement_score = clip(sum(weight * min(count_30d / normalizer, 1)), 0, 1) over the event types in
the family config's ``score_inputs``; the weights, normalizers and even the event types come from the
config, so retuning the score is a registry change (and a family version bump), not a code change.
A user without events gets 0 counts, a 0 score and a null conversion rate (no page views).

Tile (one row per user and day): the day's event count per event type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.engine import MergeContext, TileContext
from feature_platform.features.tile_sql import EVENT_COUNT_COLUMNS, event_counts
from feature_platform.features.windows import column, ratio
from feature_platform.sources.schema import EVENT_TYPES

LOOKBACK = 30
WINDOW_DAYS = 30  # login_frequency is logins per day over the window


def score_inputs(config: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """{event type: (weight, normalizer)} from the family config, validated so a typo cannot score 0."""
    raw = config.get("score_inputs")
    if not isinstance(raw, Mapping):
        raise ValueError("engagement config needs score_inputs: {event_type: {weight: w, normalizer: n}, ...}")
    inputs = {}
    for event_type, spec in raw.items():
        if event_type not in EVENT_TYPES:
            raise ValueError(f"engagement score_inputs: unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
        if not isinstance(spec, Mapping) or set(spec) != {"weight", "normalizer"}:
            raise ValueError(f"engagement score_inputs.{event_type}: expected exactly {{weight, normalizer}}, got {spec!r}")
        weight, normalizer = float(spec["weight"]), float(spec["normalizer"])
        if not normalizer > 0:
            raise ValueError(f"engagement score_inputs.{event_type}: normalizer must be > 0, got {normalizer}")
        inputs[str(event_type)] = (weight, normalizer)
    return inputs


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([("user_id", pa.string()), ("day", pa.date32()), *((n, pa.int64()) for n in EVENT_COUNT_COLUMNS)])


def tile(ctx: TileContext) -> pa.Table:
    counts, params = event_counts()
    return ctx.sql(f"SELECT user_id, day, {counts} FROM events GROUP BY ALL",
                   **params).to_arrow_table().cast(tile_schema(ctx.config))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    inputs = score_inputs(ctx.config)
    count_of = dict(zip(EVENT_TYPES, EVENT_COUNT_COLUMNS, strict=True))
    rows = ctx.user_rows(dict.fromkeys(EVENT_COUNT_COLUMNS))
    for day in ctx.days:
        recent = rows.runs(day, WINDOW_DAYS)

        def count(event_type: str, recent=recent) -> np.ndarray:
            return rows.scatter(recent, rows.total(recent, count_of[event_type]), ctx.n)

        page_views, form_submits = count("page_view"), count("form_submit")
        # The same float operations, in the same order, as the score's definition.
        score = None
        for event_type, (weight, normalizer) in inputs.items():
            term = weight * np.minimum(count(event_type) / normalizer, 1.0)
            score = term if score is None else score + term
        score = np.zeros(ctx.n) if score is None else score
        yield {
            "page_views_30d": column(page_views),
            "email_opens_30d": column(count("email_open")),
            "form_submits_30d": column(form_submits),
            "login_frequency": column(count("login") / float(WINDOW_DAYS)),
            "form_submit_conversion_rate": ratio(form_submits, page_views),
            "engagement_score": column(np.maximum(np.minimum(score, 1.0), 0.0)),
        }
