"""Review family: ratings, VADER sentiment and the topic mix of every review the user wrote before D+1.

``avg_rating`` and ``total_reviews`` count every review, blank text or not. ``avg_sentiment_score``
and ``topic_vector`` average over the user's non-blank texts only (null and whitespace-only texts
carry no opinion or topic) and are null without such texts. Topic mixes come from the versioned
model in ``ctx.artifacts["review_topic_model"]`` so they mean the same thing in every partition.
Each distinct text is scored once per snapshot, not once per review row (and the model caches its
mixes by text across snapshots).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from feature_platform.features.sentiment import compound
from feature_platform.features.topics import MATERIALIZE_HINT, TopicModel
from feature_platform_tests.features.reference.base import SnapshotContext

TOPIC_MODEL_ARTIFACT = "review_topic_model"
_SCORES_VIEW = "review_text_scores"


def _topic_model(ctx: SnapshotContext, topics: int) -> TopicModel | None:
    model: Any = ctx.artifacts.get(TOPIC_MODEL_ARTIFACT)
    if model is not None and model.topics != topics:
        raise ValueError(
            f"review topic model {model.version} has {model.topics} topics but the review family's config.topics "
            f"is {topics}; refit it ({MATERIALIZE_HINT}) or fix the registry"
        )
    return model


def _text_scores(ctx: SnapshotContext, model: TopicModel | None, topics: int) -> pa.Table:
    """One row per distinct non-blank text of a known user: text, sentiment, topic_0 .. topic_{k-1}."""
    candidates = ctx.sql(
        "SELECT DISTINCT text FROM reviews WHERE text IS NOT NULL AND user_id IN (SELECT user_id FROM users)"
    ).fetchall()
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


def compute(ctx: SnapshotContext) -> pa.Table:
    topics = int(ctx.config["topics"])
    if topics < 1:
        raise ValueError(f"review config topics must be >= 1, got {ctx.config['topics']!r}")
    model = _topic_model(ctx, topics)  # a mismatched model fails even on a day without texts
    topic_means = ", ".join(f"avg(s.topic_{k})" for k in range(topics))
    ctx.con.register(_SCORES_VIEW, _text_scores(ctx, model, topics))
    try:
        return ctx.sql(
            f"""
            WITH per_user AS (
                SELECT r.user_id,
                       avg(r.rating) AS avg_rating,
                       count(*) AS total_reviews,
                       avg(s.sentiment) AS avg_sentiment_score,
                       CASE WHEN count(s.topic_0) > 0 THEN [{topic_means}] END AS topic_vector
                FROM reviews r
                LEFT JOIN {_SCORES_VIEW} s ON s.text = r.text
                GROUP BY r.user_id
            )
            SELECT u.user_id,
                   p.avg_rating,
                   coalesce(p.total_reviews, 0) AS total_reviews,
                   p.avg_sentiment_score,
                   p.topic_vector
            FROM users u
            LEFT JOIN per_user p USING (user_id)
            """
        ).to_arrow_table()
    finally:
        ctx.con.unregister(_SCORES_VIEW)
