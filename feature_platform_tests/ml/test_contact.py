"""Contact model: ranking metrics and the listing-rate baseline by hand, and training on a synthetic contact
table where a contact follows mostly from the user's affinity for the listing's category."""

from __future__ import annotations

import datetime as dt
import json
import math
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from feature_platform.ml import search
from feature_platform.ml.contact import (
    BASELINE,
    EXTRA_INPUTS,
    LABEL,
    MODEL,
    OOT,
    PRIOR_VIEWS,
    ContactTrainingResult,
    add_match_inputs,
    baseline_scores,
    has_labelled_rows,
    listing_contact_rates,
    promotion_decision,
    ranking_metrics,
    train_contact_model,
)
from feature_platform.ml.expand import expand
from feature_platform.registry import load_registry

REGISTRY = load_registry()
FEATURES = ["category_affinity", "city_affinity", "price_sensitivity", "days_since_last_purchase"]
MATCH_INPUTS = ("listing_category_affinity", "listing_city_affinity", "listing_price_gap")
USERS, LISTINGS, VIEWS, DAYS = 150, 120, 3000, 6
CATEGORIES = ("art", "cars", "home", "toys")
CITIES = ("bergen", "oslo", "tromso")
DEVICES = ("android", "ios", "web")
START = dt.datetime(2025, 3, 3)
FLOOR = 0.7
AFFINITY = pa.map_(pa.string(), pa.float64())


# ---------------------------------------------------------------------------------------------- ranking_metrics


@pytest.mark.parametrize(("users", "y", "scores", "k", "ndcg", "precision", "ranked"), [
    # ranked rows 0, 1, 2 -> labels [0, 1, 0]: DCG = 1/log2(3), ideal DCG = 1/log2(2) = 1; precision 1 of min(5, 3)
    (["a"] * 3, [0, 1, 0], [0.9, 0.8, 0.1], 5, 1 / math.log2(3), 1 / 3, 1),
    # the positive on top: DCG = ideal DCG = 1
    (["a"] * 3, [0, 1, 0], [0.2, 0.8, 0.1], 5, 1.0, 1 / 3, 1),
    # user b has no positive and is skipped; a ranks row 1 (label 0) then row 0 (label 1): 1/log2(3), 1 of 2
    (["a", "a", "b", "b"], [1, 0, 0, 0], [0.2, 0.9, 0.5, 0.6], 5, 1 / math.log2(3), 1 / 2, 1),
    # a tie keeps row order: row 0 (label 0) before row 1 (label 1)
    (["a", "a"], [0, 1], [0.5, 0.5], 5, 1 / math.log2(3), 1 / 2, 1),
    (["a", "a"], [1, 0], [0.5, 0.5], 5, 1.0, 1 / 2, 1),
    # k = 2 < 4 rows: top labels [1, 0] -> DCG = 1; ideal = 1 + 1/log2(3) (min(k, 3 positives) = 2); precision 1/2
    (["a"] * 4, [1, 0, 1, 1], [0.9, 0.8, 0.7, 0.6], 2, 1 / (1 + 1 / math.log2(3)), 1 / 2, 1),
    # two users averaged: a = (1, 1/1); b = (1/log2(3), 1/3) as in the first case
    (["a", "b", "b", "b"], [1, 0, 1, 0], [0.3, 0.9, 0.8, 0.1], 5, (1 + 1 / math.log2(3)) / 2, (1 + 1 / 3) / 2, 2),
    # 2 positives in the top 3: DCG = 1 + 1/log2(4) = 1.5, ideal = 1 + 1/log2(3); precision 2/3
    (["a"] * 3, [1, 0, 1], [3.0, 2.0, 1.0], 5, 1.5 / (1 + 1 / math.log2(3)), 2 / 3, 1),
])
def test_ranking_metrics_by_hand(users: list[str], y: list[int], scores: list[float], k: int, ndcg: float,
                                 precision: float, ranked: int) -> None:
    out = ranking_metrics(users, np.array(y), np.array(scores), k)
    assert out == {f"ndcg@{k}": pytest.approx(ndcg), f"precision@{k}": pytest.approx(precision),
                   "users_ranked": ranked}


def test_ranking_metrics_without_any_positive_is_nan() -> None:
    out = ranking_metrics(["a", "b"], np.array([0, 0]), np.array([0.1, 0.2]), 5)
    assert math.isnan(out["ndcg@5"]) and math.isnan(out["precision@5"])
    assert out["users_ranked"] == 0


def reference_ranking(users: list[str], y: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """sklearn's NDCG (binary relevance) and brute-force precision per user with a positive; scores are distinct."""
    ndcgs, precisions = [], []
    for user in sorted(set(users)):
        rows = [i for i, u in enumerate(users) if u == user]
        labels, s = y[rows], scores[rows]
        if labels.sum() == 0:
            continue
        # sklearn refuses a single document; one positive row is a perfect ranking
        ndcgs.append(1.0 if len(rows) == 1 else float(ndcg_score([labels], [s], k=k)))
        m = min(k, len(rows))
        threshold = sorted(s, reverse=True)[m - 1]
        precisions.append(sum(int(label) for label, v in zip(labels, s, strict=True) if v >= threshold) / m)
    nan = float("nan")
    return {f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else nan,
            f"precision@{k}": float(np.mean(precisions)) if precisions else nan, "users_ranked": len(ndcgs)}


@st.composite
def ranked_views(draw: st.DrawFn, tied: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 30))
    users = draw(st.lists(st.sampled_from("abcd"), min_size=n, max_size=n))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if tied:
        scores = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n)))
    else:
        scores = np.array(draw(st.permutations(range(n))), dtype=np.float64) / n  # distinct: sklearn averages ties
    return users, y, scores


def assert_same(out: dict[str, float], expected: dict[str, float]) -> None:
    assert out["users_ranked"] == expected["users_ranked"]
    for key in out.keys() - {"users_ranked"}:
        if math.isnan(expected[key]):
            assert math.isnan(out[key]), key
        else:
            assert out[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


@given(ranked_views(tied=False), st.integers(1, 8))
def test_ranking_metrics_match_sklearn_and_brute_force(views: tuple, k: int) -> None:
    users, y, scores = views
    assert_same(ranking_metrics(users, y, scores, k), reference_ranking(users, y, scores, k))


@given(ranked_views(tied=True), st.integers(1, 8))
def test_tied_scores_rank_in_row_order(views: tuple, k: int) -> None:
    users, y, scores = views
    # break every tie in favour of the earlier row, then the scores are distinct and the reference applies
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    distinct = np.empty(len(scores))
    distinct[order] = np.arange(len(scores), 0, -1, dtype=np.float64)
    assert_same(ranking_metrics(users, y, scores, k), reference_ranking(users, y, distinct, k))


# ------------------------------------------------------------------------------------- baseline and match inputs


def test_listing_contact_rates_smooth_towards_the_overall_rate() -> None:
    table = pa.table({"listing_id": ["a", "a", "a", "b"], LABEL: pa.array([1, 0, 1, 0], pa.int64())})
    rates = listing_contact_rates(table)
    # prior = 2 contacts / 4 views = 0.5; a: (2 + 20 * 0.5) / (3 + 20) = 12/23; b: (0 + 10) / (1 + 20) = 10/21
    assert PRIOR_VIEWS == 20.0
    assert rates["prior"] == 0.5
    assert rates["rates"] == {"a": pytest.approx(12 / 23), "b": pytest.approx(10 / 21)}
    scores = baseline_scores(pa.table({"listing_id": ["b", "unseen", "a"]}), rates)
    np.testing.assert_allclose(scores, [10 / 21, 0.5, 12 / 23])  # an unseen listing gets the prior
    assert scores.dtype == np.float64


def test_listing_contact_rates_of_no_rows() -> None:
    rates = listing_contact_rates(pa.table({"listing_id": pa.array([], pa.string()), LABEL: pa.array([], pa.int64())}))
    assert rates == {"prior": 0.0, "rates": {}}
    np.testing.assert_array_equal(baseline_scores(pa.table({"listing_id": ["x"]}), rates), [0.0])


def test_add_match_inputs_looks_up_the_listing_in_the_user_maps() -> None:
    table = pa.table({
        "category_affinity": pa.array([[("cars", 0.75), ("art", 0.25)], [("art", 1.0)], None, [("cars", 0.5)]],
                                      AFFINITY),
        "category_id": ["cars", "cars", "cars", "cars"],
        "city_affinity": pa.array([[("oslo", 1.0)], [("oslo", 1.0)], None, [("bergen", 0.25)]], AFFINITY),
        "city": ["oslo", "bergen", "oslo", "bergen"],
        "price_rank": pa.array([0.75, 0.25, 0.5, None]),
        "price_sensitivity": pa.array([0.5, 0.75, None, 0.5]),
    })
    out = add_match_inputs(table)
    assert out.column_names == [*table.column_names, *MATCH_INPUTS]
    assert set(MATCH_INPUTS) <= set(EXTRA_INPUTS)
    assert out.select(list(table.column_names)).equals(table)  # the inputs are untouched
    assert out.column("listing_category_affinity").to_pylist() == [0.75, 0.0, None, 0.5]  # missing key -> 0.0
    assert out.column("listing_city_affinity").to_pylist() == [1.0, 0.0, None, 0.25]  # null map -> null
    # |0.75 - 0.5| = 0.25, |0.25 - 0.75| = 0.5, null sensitivity -> null, null price rank -> null
    assert out.column("listing_price_gap").to_pylist() == [0.25, 0.5, None, None]
    assert all(out.schema.field(name).type == pa.float64() for name in MATCH_INPUTS)


@st.composite
def maps_and_keys(draw: st.DrawFn) -> pa.Table:
    """Affinity maps (null, empty, a key twice, null or NaN values) and listing keys (null, absent, present), in
    one or two chunks."""
    value = st.one_of(st.none(), st.floats(0, 1), st.just(float("nan")))
    n = draw(st.integers(1, 12))
    maps = draw(st.lists(st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(CATEGORIES), value), max_size=4)),
                         min_size=n, max_size=n))
    keys = draw(st.lists(st.one_of(st.none(), st.sampled_from(CATEGORIES)), min_size=n, max_size=n))
    cities = draw(st.lists(st.one_of(st.none(), st.sampled_from(CITIES)), min_size=n, max_size=n))
    t = pa.table({"category_affinity": pa.array(maps, AFFINITY), "category_id": pa.array(keys, pa.string()),
                  "city_affinity": pa.array([None if m is None else [(CITIES[i % 3], v) for i, (_, v) in enumerate(m)]
                                             for m in maps], AFFINITY),
                  "city": pa.array(cities, pa.string()),
                  "price_rank": pa.array([0.5] * n), "price_sensitivity": pa.array([0.25] * n)})
    cut = draw(st.integers(0, n))
    return pa.concat_tables([t.slice(0, cut), t.slice(cut)])


@given(maps_and_keys())
def test_add_match_inputs_equals_a_dict_lookup_per_row(table: pa.Table) -> None:
    out = add_match_inputs(table)
    for name, map_column, key_column in (("listing_category_affinity", "category_affinity", "category_id"),
                                         ("listing_city_affinity", "city_affinity", "city")):
        maps, keys = table.column(map_column).to_pylist(), table.column(key_column).to_pylist()
        expected = [None if m is None or k is None else dict(m).get(k, 0.0) for m, k in zip(maps, keys, strict=True)]
        got = out.column(name).to_pylist()
        assert [v is None for v in got] == [v is None for v in expected], name
        np.testing.assert_array_equal([np.nan if v is None else v for v in got],
                                      [np.nan if v is None else v for v in expected])


@pytest.mark.parametrize(("labelled", "expected"), [
    ([], False),
    ([False, False], False),
    ([None, False], False),
    ([None, True, False], True),
])
def test_has_labelled_rows(labelled: list[bool | None], expected: bool) -> None:
    assert has_labelled_rows(pa.table({"labelled": pa.array(labelled, pa.bool_())})) is expected


# ------------------------------------------------------------------------------------------------------ training


@cache
def synthetic_contact_table(seed: int = 0, shuffle_labels: bool = False) -> pa.Table:
    """Views of random listings by random users over DAYS days; a contact follows mostly the user's share of
    the listing's category (premium listings a little), so a listing's own contact rate says little."""
    rng = np.random.default_rng(seed)
    category_share = rng.dirichlet(np.full(len(CATEGORIES), 0.5), USERS)
    city_share = rng.dirichlet(np.ones(len(CITIES)), USERS)
    no_history = rng.uniform(size=USERS) < 0.1
    sensitivity = rng.uniform(0, 1, USERS)
    purchase_days = rng.integers(0, 90, USERS).astype(float)
    purchase_days[rng.uniform(size=USERS) < 0.3] = np.nan
    device = rng.choice(DEVICES, USERS)
    listing_category = rng.integers(0, len(CATEGORIES), LISTINGS)
    listing_city = rng.integers(0, len(CITIES), LISTINGS)
    price = rng.lognormal(5, 1, LISTINGS)
    price_rank = rng.uniform(0, 1, LISTINGS)
    premium = rng.uniform(size=LISTINGS) < 0.15
    images = rng.integers(0, 15, LISTINGS)

    user = rng.integers(0, USERS, VIEWS)
    listing = rng.integers(0, LISTINGS, VIEWS)
    seconds = np.sort(rng.choice(DAYS * 86400, VIEWS, replace=False))  # distinct timestamps
    ts = [START + dt.timedelta(seconds=int(s)) for s in seconds]
    affinity = np.where(no_history[user], 0.0, category_share[user, listing_category[listing]])
    logit = -2.5 + 6.0 * (affinity - 0.25) + 0.5 * premium[listing] + rng.normal(0, 0.3, VIEWS)
    contacted = (rng.uniform(size=VIEWS) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    if shuffle_labels:
        contacted = rng.permutation(contacted)
    labelled = seconds < (DAYS - 0.25) * 86400  # the last 6 hours are still inside the label window

    def maps(shares: np.ndarray, keys: tuple[str, ...]) -> pa.Array:
        return pa.array([None if no_history[u] else list(zip(keys, shares[u].tolist(), strict=True)) for u in user],
                        AFFINITY)

    return pa.table({
        "user_id": [f"u{u}" for u in user],
        "listing_id": [f"l{k}" for k in listing],
        "timestamp": pa.array(ts, pa.timestamp("us")),
        "category_id": [CATEGORIES[c] for c in listing_category[listing]],
        "city": [CITIES[c] for c in listing_city[listing]],
        "price": pa.array(price[listing]),
        "price_rank": pa.array(price_rank[listing]),
        "is_premium": pa.array(premium[listing]),
        "image_count": pa.array(images[listing], pa.int32()),
        "day_of_week": pa.array([t.weekday() for t in ts], pa.int64()),
        "hour": pa.array([t.hour for t in ts], pa.int64()),
        "device": device[user].tolist(),
        "category_affinity": maps(category_share, CATEGORIES),
        "city_affinity": maps(city_share, CITIES),
        "price_sensitivity": pa.array(np.where(no_history[user], np.nan, sensitivity[user]), from_pandas=True),
        "days_since_last_purchase": pa.array(purchase_days[user], pa.int64(), from_pandas=True),
        LABEL: pa.array(np.where(labelled, contacted, 0), pa.int64(), mask=~labelled),
        "labelled": pa.array(labelled),
    })


def labelled_rows(table: pa.Table) -> int:
    return int(pc.sum(table.column("labelled")).as_py())


def replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def final_predictions(result: ContactTrainingResult, table: pa.Table) -> np.ndarray:
    assert result.final_spec is not None
    return result.final_model.predict_proba(expand(add_match_inputs(table), result.final_spec)[0])[:, 1]


@pytest.fixture(scope="module")
def result() -> ContactTrainingResult:
    return train_contact_model(synthetic_contact_table(), FEATURES, REGISTRY, seed=7)


def test_the_synthetic_table_has_every_model_input() -> None:
    table = synthetic_contact_table()
    inputs = set(EXTRA_INPUTS) - set(MATCH_INPUTS)
    assert inputs | set(FEATURES) <= set(table.column_names)
    assert all(REGISTRY.get_feature(name) for name in FEATURES)
    assert 0.05 < pc.mean(table.column(LABEL)).as_py() < 0.3
    assert 0 < labelled_rows(table) < VIEWS


def test_model_beats_the_listing_rate_baseline_out_of_time(result: ContactTrainingResult) -> None:
    assert result.champion == MODEL
    assert result.champion_oot_auc >= 0.75
    assert result.champion_oot_auc > result.baseline_oot_auc + 0.1
    oot = result.evaluations[OOT]
    assert oot[MODEL].ranking["ndcg@5"] > oot[BASELINE].ranking["ndcg@5"]
    promote, reason = promotion_decision(result, auc_floor=FLOOR)
    assert promote, reason
    assert reason.startswith("promoted") and BASELINE in reason and f"{FLOOR:.4f}" in reason


def test_every_split_has_model_and_baseline_metrics(result: ContactTrainingResult) -> None:
    n = labelled_rows(synthetic_contact_table())  # unlabelled views are dropped
    assert set(result.evaluations) == {"by_user", OOT}
    for split, models in result.evaluations.items():
        assert set(models) == {MODEL, BASELINE}
        for name, ev in models.items():
            assert ev.n_train + ev.n_test == n, (split, name)
            assert set(ev.ranking) == {"ndcg@5", "precision@5", "users_ranked"}, (split, name)
            assert 0.0 < ev.ranking["ndcg@5"] <= 1.0 and 0.0 < ev.ranking["precision@5"] <= 1.0
            assert isinstance(ev.ranking["users_ranked"], int) and ev.ranking["users_ranked"] > 0
        assert models[MODEL].ranking["users_ranked"] == models[BASELINE].ranking["users_ranked"]
        assert models[BASELINE].importance == [("listing_contact_rate", 1.0)]
        assert models[BASELINE].best_params == {"prior_views": PRIOR_VIEWS}
        assert models[MODEL].best_params["max_depth"] in (3, 5)
    assert 0.1 * n < result.evaluations["by_user"][MODEL].n_test < 0.3 * n  # a fifth of the users, all their rows
    # distinct timestamps: the test rows are those from the sorted position int(0.8 n) on
    assert result.evaluations[OOT][MODEL].n_test == n - int(0.8 * n)


def test_expanded_columns_include_categories_and_match_inputs(result: ContactTrainingResult) -> None:
    assert result.final_spec is not None
    columns = result.final_spec.columns
    assert {f"category_id={c}" for c in CATEGORIES} <= set(columns)
    assert {f"city={c}" for c in CITIES} | {f"device={d}" for d in DEVICES} <= set(columns)
    assert set(MATCH_INPUTS) <= set(columns)
    assert {f"category_affinity__{c}" for c in CATEGORIES} <= set(columns)
    assert {"price_sensitivity", "days_since_last_purchase", "price", "is_premium"} <= set(columns)
    top = [name for name, _ in result.evaluations[OOT][MODEL].importance[:3]]
    assert "listing_category_affinity" in top, top
    p = final_predictions(result, synthetic_contact_table())
    assert p.shape == (VIEWS,) and ((p >= 0) & (p <= 1)).all()


def test_metrics_are_json_ready(result: ContactTrainingResult) -> None:
    metrics = result.metrics()
    assert set(metrics) == {"by_user", OOT}
    assert all("y_true" not in m and "y_score" not in m for models in metrics.values() for m in models.values())
    assert json.loads(json.dumps(metrics))[OOT][MODEL]["roc_auc"] == result.champion_oot_auc


@pytest.mark.parametrize("parallel_fits", [search.PARALLEL_FITS, 1])
def test_same_seed_gives_identical_metrics_and_model_however_many_fits_run_at_once(
        result: ContactTrainingResult, parallel_fits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "PARALLEL_FITS", parallel_fits)
    again = train_contact_model(synthetic_contact_table(), FEATURES, REGISTRY, seed=7)
    assert again.metrics() == result.metrics()
    assert again.final_spec == result.final_spec
    table = synthetic_contact_table()
    np.testing.assert_array_equal(final_predictions(again, table), final_predictions(result, table))


def test_one_search_serves_both_splits_and_the_final_model(result: ContactTrainingResult) -> None:
    params = result.evaluations[OOT][MODEL].best_params
    assert result.evaluations["by_user"][MODEL].best_params == params
    assert set(params) == {"max_depth", "n_estimators"} and 1 <= params["n_estimators"] <= search.MAX_ROUNDS
    assert {k: result.final_model.get_params()[k] for k in params} == params


def test_the_search_never_sees_the_out_of_time_test_views(result: ContactTrainingResult) -> None:
    table = synthetic_contact_table()
    late = np.zeros(table.num_rows, bool)
    labelled = np.flatnonzero(table.column("labelled").to_numpy(zero_copy_only=False))
    late[labelled[int(0.8 * len(labelled)):]] = True  # rows are in time order: the out-of-time test views
    # another category for those views: their strongest input, listing_category_affinity, changes
    other = pa.array(np.random.default_rng(1).choice(CATEGORIES, table.num_rows))
    changed = replace(table, "category_id", pc.if_else(pa.array(late), other, table.column("category_id")))
    again = train_contact_model(changed, FEATURES, REGISTRY, seed=7)
    # the early-stopped rounds would move with any change to the search rows
    assert again.evaluations[OOT][MODEL].best_params == result.evaluations[OOT][MODEL].best_params
    assert again.evaluations[OOT][MODEL].roc_auc != result.evaluations[OOT][MODEL].roc_auc


def test_shuffled_labels_are_not_promoted() -> None:
    shuffled = train_contact_model(synthetic_contact_table(shuffle_labels=True), FEATURES, REGISTRY, seed=7)
    promote, reason = promotion_decision(shuffled, auc_floor=FLOOR)
    assert not promote, reason
    assert reason.startswith("not promoted")
    assert "baseline" in reason or "floor" in reason


# ------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("column", [
    LABEL, "labelled", "timestamp", "listing_id", "user_id",  # checked up front
    "category_affinity", "city", "price_rank", "price_sensitivity",  # needed by add_match_inputs
    "device", "days_since_last_purchase",  # needed by the expansion
])
def test_missing_column_is_named(column: str) -> None:
    table = synthetic_contact_table()
    with pytest.raises(KeyError, match=column):
        train_contact_model(table.drop_columns([column]), FEATURES, REGISTRY)


@pytest.mark.parametrize(("labelled", "contacted"), [(False, 0), (True, None)])
def test_no_labelled_rows(labelled: bool, contacted: int | None) -> None:
    table = synthetic_contact_table()
    table = replace(table, "labelled", pa.array([labelled] * table.num_rows))
    table = replace(table, LABEL, pa.array([contacted] * table.num_rows, pa.int64()))
    with pytest.raises(ValueError, match="no labelled listing views"):
        train_contact_model(table, FEATURES, REGISTRY)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_oot_fraction_out_of_range(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"oot_fraction must be in \(0, 1\)"):
        train_contact_model(synthetic_contact_table(), FEATURES, REGISTRY, oot_fraction=fraction)


def test_single_class_random_split() -> None:
    table = synthetic_contact_table()
    table = replace(table, LABEL, pc.fill_null(pc.multiply(table.column(LABEL), 0), 0))
    with pytest.raises(ValueError, match="by_user split: the training rows hold one class only"):
        train_contact_model(table, FEATURES, REGISTRY)


def test_single_class_out_of_time_test_rows() -> None:
    table = synthetic_contact_table()
    late = np.arange(table.num_rows) >= int(0.7 * table.num_rows)  # rows are in time order
    table = replace(table, LABEL, pc.if_else(pa.array(late), pa.scalar(0, pa.int64()), table.column(LABEL)))
    with pytest.raises(ValueError, match="out_of_time split: the test rows hold one class only"):
        train_contact_model(table, FEATURES, REGISTRY)


def test_one_timestamp_has_no_earlier_part() -> None:
    table = synthetic_contact_table()
    table = replace(table, "timestamp", pa.array([START] * table.num_rows, pa.timestamp("us")))
    with pytest.raises(ValueError, match="every view has the same timestamp"):
        train_contact_model(table, FEATURES, REGISTRY)
