"""Review topic model: deterministic versioned fits, the cut-off, storage, clear errors, real structure."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from feature_platform.features import topics
from feature_platform.features.topics import TopicModelConfig, fit_topic_model
from feature_platform.sources.schema import REVIEWS
from feature_platform_tests.features.helpers import table

T0 = dt.datetime(2025, 1, 1)
CUTOFF = dt.datetime(2025, 2, 1)

DELIVERY = ["delivery", "courier", "parcel", "shipping", "arrived", "package", "tracking", "late"]
PRICE = ["price", "expensive", "cheap", "value", "cost", "money", "discount", "bargain"]


def pool_doc(pool: list[str], i: int) -> str:
    """Six words of one pool (a sliding window), so each document sits clearly in its vocabulary."""
    return " ".join(pool[(3 * i + k) % len(pool)] for k in range(6))


DELIVERY_DOCS = [pool_doc(DELIVERY, i) for i in range(12)]
PRICE_DOCS = [pool_doc(PRICE, i) for i in range(12)]


def reviews(texts, timestamps=None):
    stamps = timestamps or [T0 + dt.timedelta(hours=i) for i in range(len(texts))]
    rows = [{"review_id": f"r{i}", "user_id": "u1", "rating": 3, "text": t, "timestamp": ts}
            for i, (t, ts) in enumerate(zip(texts, stamps, strict=True))]
    return table(REVIEWS.arrow_schema, rows)


CORPUS = reviews(DELIVERY_DOCS + PRICE_DOCS + [None, "", "   "])


@pytest.fixture(scope="module")
def model() -> topics.TopicModel:
    return fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1))


def test_same_data_and_config_give_the_same_version_and_mixes(model):
    again = fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1))
    assert again.version == model.version
    assert len(model.version) == 12
    texts = ["late parcel", "cheap price", "price delivery"]
    np.testing.assert_array_equal(again.transform(texts), model.transform(texts))


def test_row_order_does_not_change_the_fit(model):
    rows = CORPUS.to_pylist()
    random.Random(3).shuffle(rows)
    assert fit_topic_model(table(REVIEWS.arrow_schema, rows), TopicModelConfig(topics=10, min_df=1)).version == model.version


def test_other_config_gives_another_version(model):
    assert fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1, seed=8)).version != model.version
    assert fit_topic_model(CORPUS, TopicModelConfig(topics=3, min_df=1)).version != model.version


def test_mixes_sum_to_one_and_blank_texts_are_nan_rows(model):
    mixes = model.transform(["late parcel courier", None, "", "  \n", "cheap", "the and of", "zebra"])
    assert mixes.shape == (7, 10)
    assert np.isnan(mixes[1:4]).all()
    kept = mixes[[0, 4, 5, 6]]
    np.testing.assert_allclose(kept.sum(axis=1), 1.0)
    assert (kept >= 0).all()
    # only stop words / unknown words: no evidence, LDA's uniform prior
    np.testing.assert_allclose(mixes[5], 0.1)
    np.testing.assert_allclose(mixes[6], 0.1)


def test_a_batch_gives_the_same_mix_as_one_text_at_a_time(model):
    texts = ["late parcel courier", "cheap price", "value delivery", "late parcel courier"]
    fresh = fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1))  # empty cache
    single = np.vstack([fresh.transform([t]) for t in texts])
    np.testing.assert_allclose(model.transform(texts), single, rtol=0, atol=1e-12)


def test_two_separate_vocabularies_load_on_different_topics():
    two = fit_topic_model(CORPUS, TopicModelConfig(topics=2, min_df=2))
    delivery, price = two.transform(DELIVERY_DOCS).argmax(axis=1), two.transform(PRICE_DOCS).argmax(axis=1)
    d_topic, p_topic = np.bincount(delivery).argmax(), np.bincount(price).argmax()
    assert d_topic != p_topic
    assert (delivery == d_topic).mean() >= 0.8 and (price == p_topic).mean() >= 0.8
    assert two.transform(DELIVERY_DOCS)[:, d_topic].mean() > 0.7
    words = two.top_words(4)
    assert set(words[d_topic]) <= set(DELIVERY) and set(words[p_topic]) <= set(PRICE)


def test_tokens_are_lowercase_letters_without_stop_words(model):
    fitted = fit_topic_model(reviews(["The DELIVERY was late-ish, 42 parcels!! x", "delivery 2day"]),
                             TopicModelConfig(topics=2, min_df=1))
    assert sorted(fitted.vectorizer.get_feature_names_out()) == ["day", "delivery", "ish", "late", "parcels"]  # no "the", "was", "x", digits


def test_top_words_lists_n_words_per_topic(model):
    words = model.top_words(3)
    assert len(words) == 10 and all(len(w) == 3 for w in words)
    assert set().union(*words) <= set(DELIVERY) | set(PRICE)


def test_reviews_at_or_after_the_cutoff_do_not_change_the_fit():
    before = [T0 + dt.timedelta(days=i % 20) for i in range(24)]
    base = reviews(DELIVERY_DOCS + PRICE_DOCS, before)
    config = TopicModelConfig(topics=4, min_df=1, cutoff=CUTOFF)
    later = reviews(DELIVERY_DOCS + PRICE_DOCS + ["brand new words", "entirely unseen vocabulary", "more words"],
                    before + [CUTOFF, CUTOFF + dt.timedelta(seconds=1), dt.datetime(2025, 6, 1)])
    first, second = fit_topic_model(base, config), fit_topic_model(later, config)
    assert first.version == second.version
    assert "brand" not in second.vectorizer.vocabulary_
    assert second.fitted_on == {"rows": 24, "cutoff": "2025-02-01T00:00:00", "max_timestamp": "2025-01-20T00:00:00"}
    # without a cut-off every given review is fitted on
    assert fit_topic_model(later, TopicModelConfig(topics=4, min_df=1)).fitted_on["rows"] == 27


def test_fewer_documents_than_topics():
    few = fit_topic_model(reviews(["late parcel", "cheap price", "late price"]), TopicModelConfig(topics=10, min_df=1))
    assert few.fitted_on["rows"] == 3
    np.testing.assert_allclose(few.transform(["late parcel"]).sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("texts", "config", "message"),
    [
        ([], TopicModelConfig(), "no usable review text"),
        ([None, "", "  "], TopicModelConfig(), "no usable review text"),
        (["late parcel"], TopicModelConfig(cutoff=T0), "no usable review text.*before the cut-off"),
        (["the and of", "it is the"], TopicModelConfig(min_df=1), "no vocabulary"),
        (["late parcel", "cheap price"], TopicModelConfig(min_df=2), "min_df=2"),
    ],
)
def test_fitting_without_usable_text_fails_clearly(texts, config, message):
    with pytest.raises(ValueError, match=message):
        fit_topic_model(reviews(texts), config)


@pytest.mark.parametrize(
    ("texts", "config", "usable"),
    [([], TopicModelConfig(), False), ([None, " "], TopicModelConfig(), False),
     (["late parcel", "late box"], TopicModelConfig(cutoff=T0), False),
     (["late parcel", "late box"], TopicModelConfig(cutoff=CUTOFF), True),
     # Texts, but no vocabulary: one review cannot reach min_df=2; only stop words.
     (["late parcel"], TopicModelConfig(cutoff=CUTOFF), False),
     (["the and of", "it is the"], TopicModelConfig(min_df=1), False)],
)
def test_has_usable_text(texts, config, usable):
    assert topics.has_usable_text(reviews(texts), config) is usable


def test_config_is_validated():
    with pytest.raises(ValueError, match="topics must be an integer >= 1"):
        TopicModelConfig(topics=0)
    aware = TopicModelConfig(cutoff=dt.datetime(2025, 2, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    assert aware.cutoff == CUTOFF


# --- storage ---------------------------------------------------------------------------------

def test_save_and_load_round_trip(model, tmp_path):
    root = tmp_path / "review_topic_model"
    path = topics.save(model, root)
    assert path == root / model.version
    assert sorted(p.name for p in path.iterdir()) == ["model.joblib", "model_card.json"]
    assert (root / "CURRENT").read_text().strip() == model.version
    assert sorted(p.name for p in root.iterdir()) == sorted(["CURRENT", model.version])  # no temp leftovers
    card = json.loads((path / "model_card.json").read_text())
    assert card["version"] == model.version
    assert card["config"] == {"topics": 10, "max_features": 2000, "min_df": 1, "seed": 7, "cutoff": None}
    assert card["fitted_on"] == model.fitted_on == {"rows": 24, "cutoff": None, "max_timestamp": "2025-01-01T23:00:00"}
    assert card["top_words"] == model.top_words(8)

    loaded = topics.load_current(root)
    assert loaded.version == model.version and loaded.fitted_on == model.fitted_on
    texts = ["late parcel", "cheap", None]
    np.testing.assert_array_equal(loaded.transform(texts), model.transform(texts))
    assert topics.load(root, model.version).version == model.version


def test_saving_a_new_version_moves_current_and_keeps_the_old_one(model, tmp_path):
    other = fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1, seed=1))
    topics.save(model, tmp_path)
    topics.save(other, tmp_path)
    assert topics.load_current(tmp_path).version == other.version
    assert topics.versions(tmp_path) == sorted([model.version, other.version])
    assert topics.load(tmp_path, model.version).version == model.version
    topics.save(model, tmp_path)  # same version again: idempotent, CURRENT back to it
    assert topics.current_version(tmp_path) == model.version


def test_a_crash_while_moving_current_keeps_the_old_current_and_no_temp_file(model, tmp_path, monkeypatch):
    other = fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1, seed=1))
    topics.save(model, tmp_path)
    replace = os.replace

    def crash_on_current(src, dst):
        if Path(dst).name == "CURRENT":
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_current)
    with pytest.raises(OSError, match="disk full"):
        topics.save(other, tmp_path)
    assert topics.current_version(tmp_path) == model.version
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["CURRENT", model.version, other.version])


def test_missing_current_says_what_to_materialize(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize features/review_topic_model first"):
        topics.load_current(tmp_path / "nothing_here")
    assert topics.load_current_or_none(tmp_path) is None


def test_unknown_or_tampered_versions_fail(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no review topic model version 0123456789ab"):
        topics.load(tmp_path, "0123456789ab")
    with pytest.raises(ValueError, match="not a topic model version"):
        topics.load(tmp_path, "../elsewhere")
    other = fit_topic_model(CORPUS, TopicModelConfig(topics=10, min_df=1, seed=1))
    topics.save(model, tmp_path)
    topics.save(other, tmp_path)
    (tmp_path / model.version / "model.joblib").replace(tmp_path / other.version / "model.joblib")
    with pytest.raises(ValueError, match="corrupt or was edited"):
        topics.load(tmp_path, other.version)
