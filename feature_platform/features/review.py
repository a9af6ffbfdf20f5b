"""Review family: ratings, VADER sentiment and the topic mix of every review the user wrote before D+1.

``avg_rating`` and ``total_reviews`` count every review, blank text or not. ``avg_sentiment_score``
and ``topic_vector`` average over the user's non-blank texts only (null and whitespace-only texts
carry no opinion or topic) and are null without such texts. Topic mixes come from the versioned
model in ``ctx.artifacts["review_topic_model"]`` so they mean the same thing in every partition.

Tile (one row per user and day): the day's review count, rating sum, sentiment sum and count over
non-blank texts, and the sum of their topic mixes. Each text is scored once, in its day's tile; a
snapshot sums every tile up to D (all history). The first tile of a history also holds the reviews
dated before it, so nothing earlier is lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.engine import ALL_HISTORY, MergeContext, TileContext
from feature_platform.features.sentiment import compound
from feature_platform.features.topics import MATERIALIZE_HINT, TopicModel
from feature_platform.features.windows import column, ratio

LOOKBACK = ALL_HISTORY
TOPIC_MODEL_ARTIFACT = "review_topic_model"
_SCORES_VIEW = "review_text_scores"
_FOREVER = 10**7  # a window longer than any history, in days
# Float sums add in a fixed order, whatever order a join hands rows over in: a tile's bits are its data's.
ORDER = "ORDER BY r.timestamp, r.review_id"


def topic_count(config: Mapping[str, Any]) -> int:
    topics = int(config["topics"])
    if topics < 1:
        raise ValueError(f"review config topics must be >= 1, got {config['topics']!r}")
    return topics


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([
        ("user_id", pa.string()), ("day", pa.date32()), ("reviews", pa.int64()), ("rating_sum", pa.int64()),
        ("texts", pa.int64()), ("sentiment_sum", pa.float64()), ("topic_texts", pa.int64()),
        ("topic_sum", pa.list_(pa.float64(), topic_count(config))),
    ])


def _topic_model(ctx: TileContext, topics: int) -> TopicModel | None:
    model: Any = ctx.artifacts.get(TOPIC_MODEL_ARTIFACT)
    if model is not None and model.topics != topics:
        raise ValueError(
            f"review topic model {model.version} has {model.topics} topics but the review family's config.topics "
            f"is {topics}; refit it ({MATERIALIZE_HINT}) or fix the registry"
        )
    return model


def _text_scores(ctx: TileContext, model: TopicModel | None, topics: int) -> pa.Table:
    """One row per distinct non-blank text of the batch: text, sentiment, topic_0 .. topic_{k-1}."""
    candidates = ctx.sql("SELECT DISTINCT text FROM reviews WHERE text IS NOT NULL").fetchall()
    scored = [(text, score) for (text,) in candidates if (score := compound(text)) is not None]  # None: blank
    texts = sorted(text for text, _ in scored)
    sentiment = dict(scored)
    if texts and model is None and TOPIC_MODEL_ARTIFACT not in ctx.artifacts:
        raise ValueError(
            f"{len(texts)} review texts need topic mixes but ctx.artifacts has no {TOPIC_MODEL_ARTIFACT!r}; "
            f"{MATERIALIZE_HINT}"
        )
    columns: dict[str, pa.Array] = {
        "text": pa.array(texts, pa.string()),
        "sentiment": pa.array([sentiment[t] for t in texts], pa.float64()),
    }
    mixes = model.transform(texts) if model is not None and texts else None
    for k in range(topics):
        # No model (artifact given as None: the texts cannot give a vocabulary): topic mixes are null.
        columns[f"topic_{k}"] = pa.array(mixes[:, k]) if mixes is not None else pa.nulls(len(texts), pa.float64())
    return pa.table(columns)


def tile(ctx: TileContext) -> pa.Table:
    topics = topic_count(ctx.config)
    model = _topic_model(ctx, topics)  # a mismatched model fails even on a day without texts
    topic_sums = ", ".join(f"coalesce(sum(s.topic_{k} {ORDER}), 0.0)" for k in range(topics))
    ctx.con.register(_SCORES_VIEW, _text_scores(ctx, model, topics))
    try:
        table = ctx.sql(
            f"""
            SELECT r.user_id, r.day,
                   count(*) AS reviews,
                   sum(r.rating) AS rating_sum,
                   count(s.sentiment) AS texts,
                   coalesce(sum(s.sentiment {ORDER}), 0.0) AS sentiment_sum,
                   count(s.topic_0) AS topic_texts,
                   [{topic_sums}] AS topic_sum
            FROM reviews r
            LEFT JOIN {_SCORES_VIEW} s ON s.text = r.text
            GROUP BY r.user_id, r.day
            """
        ).to_arrow_table()
    finally:
        ctx.con.unregister(_SCORES_VIEW)
    return table.cast(tile_schema(ctx.config))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    topics = topic_count(ctx.config)
    rows = ctx.user_rows({"reviews": None, "rating_sum": None, "texts": None, "sentiment_sum": None,
                          "topic_texts": None, "topic_sum": _topic_matrix(topics)})
    topic_sum = rows.columns["topic_sum"]
    for day in ctx.days:
        seen = rows.runs(day, _FOREVER)
        reviews = rows.scatter(seen, rows.total(seen, "reviews"), ctx.n)
        texts = rows.scatter(seen, rows.total(seen, "texts"), ctx.n)
        topic_texts = rows.scatter(seen, rows.total(seen, "topic_texts"), ctx.n)
        sentiment = rows.scatter(seen, rows.ordered_sum(seen, "sentiment_sum"), ctx.n, fill=0.0)
        sums = np.zeros((ctx.n, topics))
        for k in range(topics):
            # mypy cannot type a lambda with a default; a typed rewrite would change the review family's
            # fingerprint (registry/fingerprint.py) for no value change
            sums[seen.group, k] = rows.ordered_sum(seen, lambda at, k=k: topic_sum[at, k])  # type: ignore[misc]
        yield {
            "avg_rating": ratio(rows.scatter(seen, rows.total(seen, "rating_sum"), ctx.n), reviews),
            "total_reviews": column(reviews),
            "avg_sentiment_score": ratio(sentiment, texts),
            "topic_vector": _vectors(sums, topic_texts),
        }


def _topic_matrix(topics: int):
    def convert(values: pa.ChunkedArray) -> np.ndarray:
        flat = pa.chunked_array([c.flatten() for c in values.chunks], pa.float64()) if values.num_chunks else None
        if flat is None:
            return np.zeros((0, topics))
        return flat.to_numpy().reshape(-1, topics)
    return convert


def _vectors(sums: np.ndarray, texts: np.ndarray) -> pa.Array:
    """[sum_k / texts] per user, null without a text that has a topic mix."""
    valid = texts > 0
    means = np.zeros_like(sums)
    np.divide(sums, texts[:, None], out=means, where=valid[:, None])
    topics = sums.shape[1]
    offsets = pa.array(np.arange(len(texts) + 1, dtype=np.int32) * topics)
    vectors = pa.ListArray.from_arrays(offsets, pa.array(means.reshape(-1)))
    return pa.ListArray.from_arrays(offsets, vectors.values, mask=pa.array(~valid))
