"""VADER sentiment (compound score, -1 .. 1) for short texts, cached by text.

VADER is a lexicon and rule model: no download, deterministic, fast enough for messages and reviews,
and good at the informal wording of chats. Generated and real message logs repeat many texts, so a
cache by text makes re-scoring the same 30-day window every day cheap.
"""

from __future__ import annotations

from functools import cache, lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=500_000)
def compound(text: str | None) -> float | None:
    """VADER compound score of ``text``; None for a null or blank text (no opinion to score)."""
    if text is None or not text.strip():
        return None
    return float(_analyzer().polarity_scores(text)["compound"])
