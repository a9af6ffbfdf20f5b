"""Review family: hand-computed cases, time semantics, the topic model artifact, and a slow reference."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.features.sentiment import compound
from feature_platform.features.topics import TopicModel, TopicModelConfig, fit_topic_model
from feature_platform.sources.schema import REVIEWS
from feature_platform_tests.features.helpers import snapshot, table
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)
MIDNIGHT_D = dt.datetime(2025, 3, 31)
NEXT_MIDNIGHT = dt.datetime(2025, 4, 1)

GOOD = "great fast delivery, the courier was lovely"
LATE = "late parcel and a terrible courier"
PRICEY = "price too high, poor value for money"
CHEAP = "cheap price and good value"
POOL = [None, "", "   ", GOOD, LATE, PRICEY, CHEAP, "love it", "zzz qqq"]  # "zzz qqq": no known word


@pytest.fixture(scope="module")
def model() -> TopicModel:
    texts = [GOOD, LATE, PRICEY, CHEAP, "love it", "courier delivery late", "price value money"] * 2
    rows = [{"review_id": f"f{i}", "user_id": "x", "rating": 3, "text": t, "timestamp": dt.datetime(2025, 1, 1)}
            for i, t in enumerate(texts)]
    return fit_topic_model(table(REVIEWS.arrow_schema, rows), TopicModelConfig(topics=10, min_df=1))


def rv(ts: dt.datetime, rating: int = 3, text: str | None = GOOD, user: str = "u1") -> dict:
    return {"user_id": user, "rating": rating, "text": text, "timestamp": ts}


def review_snapshot(model, rows, day=D, users=("u1",)):
    return snapshot("review", day, users=list(users), review_rows=rows, artifacts={"review_topic_model": model})


def mean(values):
    return sum(values) / len(values) if values else None


def mean_mix(model, texts):
    """Mean topic mix of ``texts``, transforming one text at a time; None without texts."""
    if not texts:
        return None
    mixes = [model.transform([t])[0] for t in texts]
    return [sum(m[k] for m in mixes) / len(mixes) for k in range(model.topics)]


def assert_row(row, model, avg_rating, total_reviews, scored_texts):
    """``scored_texts``: the non-blank texts sentiment and topics must average over."""
    assert row["avg_rating"] == (pytest.approx(avg_rating) if avg_rating is not None else None)
    assert row["total_reviews"] == total_reviews
    sentiment = mean([compound(t) for t in scored_texts])
    assert row["avg_sentiment_score"] == (pytest.approx(sentiment, abs=1e-12) if sentiment is not None else None)
    topics = mean_mix(model, scored_texts)
    if topics is None:
        assert row["topic_vector"] is None
    else:
        assert len(row["topic_vector"]) == 10
        assert row["topic_vector"] == pytest.approx(topics, abs=1e-12)
        assert sum(row["topic_vector"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("rows", "avg_rating", "total_reviews", "scored_texts"),
    [
        # no reviews: 0 and nulls
        ([], None, 0, []),
        # plain average of 5, 3, 4
        ([rv(dt.datetime(2025, 3, 1), 5, GOOD), rv(dt.datetime(2025, 3, 2), 3, LATE), rv(dt.datetime(2025, 3, 3), 4, CHEAP)],
         4.0, 3, [GOOD, LATE, CHEAP]),
        # D 00:00 is in; D+1 00:00 is out (base.py drops it before the family sees it)
        ([rv(MIDNIGHT_D, 2, LATE), rv(NEXT_MIDNIGHT, 5, GOOD)], 2.0, 1, [LATE]),
        # no lookback limit: a review from years ago still counts
        ([rv(dt.datetime(2020, 1, 1), 1, PRICEY), rv(dt.datetime(2025, 3, 31, 23, 59, 59), 2, None)], 1.5, 2, [PRICEY]),
        # null, empty and blank texts count in total_reviews and avg_rating, not in sentiment/topics
        ([rv(MIDNIGHT_D, 1, None), rv(MIDNIGHT_D, 2, ""), rv(MIDNIGHT_D, 3, " \n"), rv(MIDNIGHT_D, 5, CHEAP)],
         2.75, 4, [CHEAP]),
        # only blank texts: ratings yes, sentiment and topics null
        ([rv(MIDNIGHT_D, 4, None), rv(MIDNIGHT_D, 5, "")], 4.5, 2, []),
        # the same text twice weighs twice (the mean is over reviews)
        ([rv(MIDNIGHT_D, 5, GOOD), rv(MIDNIGHT_D, 5, GOOD), rv(MIDNIGHT_D, 1, LATE)], 11 / 3, 3, [GOOD, GOOD, LATE]),
        # a text without any vocabulary word is scored, with the uniform topic mix
        ([rv(MIDNIGHT_D, 3, "zzz qqq")], 3.0, 1, ["zzz qqq"]),
    ],
)
def test_hand_computed_cases(model, rows, avg_rating, total_reviews, scored_texts):
    assert_row(review_snapshot(model, rows)["u1"], model, avg_rating, total_reviews, scored_texts)


def test_the_next_midnight_review_is_really_dropped(model):
    row = review_snapshot(model, [rv(NEXT_MIDNIGHT, 5, GOOD)])["u1"]
    assert (row["avg_rating"], row["total_reviews"], row["avg_sentiment_score"], row["topic_vector"]) == (None, 0, None, None)


def test_a_review_after_d_appears_the_next_day(model):
    rows = [rv(dt.datetime(2025, 3, 30, 9), 2, LATE), rv(dt.datetime(2025, 4, 1, 10, 30), 4, GOOD)]
    assert_row(review_snapshot(model, rows, D)["u1"], model, 2.0, 1, [LATE])
    assert_row(review_snapshot(model, rows, D + dt.timedelta(days=1))["u1"], model, 3.0, 2, [LATE, GOOD])


def test_users_without_reviews_and_unknown_authors(model):
    rows = [rv(MIDNIGHT_D, 4, GOOD), rv(MIDNIGHT_D, 1, LATE, user="ghost")]
    result = review_snapshot(model, rows, users=("u1", "u2"))
    assert sorted(result) == ["u1", "u2"]
    assert_row(result["u1"], model, 4.0, 1, [GOOD])
    assert_row(result["u2"], model, None, 0, [])


@pytest.mark.parametrize("rows", [None, [], [rv(MIDNIGHT_D, 4, None), rv(MIDNIGHT_D, 2, "  ")]])
def test_no_model_is_fine_without_texts(rows):
    row = snapshot("review", D, review_rows=rows)["u1"]
    assert row["topic_vector"] is None and row["avg_sentiment_score"] is None
    assert row["total_reviews"] == len(rows or [])


def test_no_model_with_texts_says_what_to_materialize():
    with pytest.raises(ValueError, match="materialize features/review_topic_model first"):
        snapshot("review", D, review_rows=[rv(MIDNIGHT_D)])


def test_a_model_known_to_be_unavailable_gives_null_topics_and_still_sentiment():
    """The topic model asset skipped (the reviews give no vocabulary) and says so with an explicit None."""
    rows = [rv(MIDNIGHT_D, 4, GOOD), rv(MIDNIGHT_D, 2, LATE)]
    row = snapshot("review", D, review_rows=rows, artifacts={"review_topic_model": None})["u1"]
    assert row["topic_vector"] is None
    assert row["total_reviews"] == 2 and row["avg_rating"] == 3.0
    assert row["avg_sentiment_score"] == pytest.approx((compound(GOOD) + compound(LATE)) / 2)


def test_a_model_with_another_topic_count_is_refused():
    rows = [{"user_id": "x", "rating": 3, "text": t, "timestamp": MIDNIGHT_D} for t in (GOOD, LATE, PRICEY)]
    three = fit_topic_model(table(REVIEWS.arrow_schema, rows), TopicModelConfig(topics=3, min_df=1))
    with pytest.raises(ValueError, match="has 3 topics but the review family's config.topics is 10"):
        review_snapshot(three, [])


class CountingModel:
    """Delegates to a real model and records every batch of texts it is asked to transform."""

    def __init__(self, model: TopicModel) -> None:
        self.model, self.calls = model, []
        self.topics, self.version = model.topics, model.version

    def transform(self, texts):
        self.calls.append(list(texts))
        return self.model.transform(texts)


def test_each_distinct_text_is_transformed_once(model):
    spy = CountingModel(model)
    rows = [rv(MIDNIGHT_D, 5, GOOD), rv(MIDNIGHT_D, 4, GOOD, user="u2"), rv(MIDNIGHT_D, 1, LATE, user="u2"),
            rv(MIDNIGHT_D, 2, GOOD), rv(MIDNIGHT_D, 3, None), rv(MIDNIGHT_D, 3, "")]
    result = snapshot("review", D, users=["u1", "u2"], review_rows=rows, artifacts={"review_topic_model": spy})
    assert spy.calls == [sorted([GOOD, LATE])]
    assert_row(result["u2"], model, 2.5, 2, [GOOD, LATE])


# --- reference ------------------------------------------------------------------------------

def reference(model, reviews: list[dict], users: list[str], day: dt.date) -> dict[str, dict]:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    out = {}
    for user in users:
        mine = [r for r in reviews if r["user_id"] == user and r["timestamp"] < end]
        ratings = [r["rating"] for r in mine if r["rating"] is not None]
        scores, mixes = [], []
        for r in mine:
            score = compound(r["text"])
            if score is not None:
                scores.append(score)
                mixes.append(list(model.transform([r["text"]])[0]))
        out[user] = {
            "avg_rating": sum(ratings) / len(ratings) if ratings else None,
            "total_reviews": len(mine),
            "avg_sentiment_score": sum(scores) / len(scores) if scores else None,
            "topic_vector": [sum(m[k] for m in mixes) / len(mixes) for k in range(10)] if mixes else None,
        }
    return out


USERS = ["u1", "u2", "u3", "u4"]
moments = st.one_of(
    st.datetimes(min_value=dt.datetime(2025, 3, 28), max_value=dt.datetime(2025, 4, 3)),
    st.integers(min_value=-3, max_value=2).map(lambda k: MIDNIGHT_D + dt.timedelta(days=k)),  # exact midnights
).map(lambda t: t.replace(microsecond=0))
review = st.fixed_dictionaries({
    "rating": st.integers(min_value=1, max_value=5),
    "text": st.sampled_from(POOL),
    "timestamp": moments,
})
review_logs = st.fixed_dictionaries({u: st.lists(review, max_size=6) for u in USERS}).map(
    lambda by_user: [{"user_id": u, **r} for u, rs in by_user.items() for r in rs]
)


@settings(max_examples=examples(60))
@given(reviews=review_logs)
def test_matches_reference(model, reviews):
    fast = review_snapshot(model, reviews, users=USERS)
    slow = reference(model, reviews, USERS, D)
    for user in USERS:
        want, got = slow[user], fast[user]
        assert got["total_reviews"] == want["total_reviews"], user
        for name in ("avg_rating", "avg_sentiment_score"):
            assert got[name] == (pytest.approx(want[name], abs=1e-12) if want[name] is not None else None), (user, name)
        if want["topic_vector"] is None:
            assert got["topic_vector"] is None, user
        else:
            assert got["topic_vector"] == pytest.approx(want["topic_vector"], abs=1e-12), user
