"""Affinity family: hand-computed cases, time semantics, and equality with a slow reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.registry import load_registry
from feature_platform_tests.features.helpers import snapshot_table
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)
END = dt.datetime(2025, 4, 1)  # D+1 00:00, where ages are measured from
DAY = dt.timedelta(days=1)
MAPS = ("category_affinity", "city_affinity")

CATALOG = [
    {"listing_id": "car10", "category_id": "cars", "city": "porto", "price": 10.0},
    {"listing_id": "car20", "category_id": "cars", "city": "porto", "price": 20.0},
    {"listing_id": "car30", "category_id": "cars", "city": "lisbon", "price": 30.0},
    {"listing_id": "car_unpriced", "category_id": "cars", "city": "lisbon", "price": None},
    {"listing_id": "flat", "category_id": "flats", "city": "lisbon", "price": 99.0},
    {"listing_id": "nowhere", "category_id": None, "city": "madrid", "price": 50.0},
    {"listing_id": "homeless", "category_id": "flats", "city": None, "price": None},
]


def ev(age: dt.timedelta, listing: str | None = "car10", event_type: str = "listing_viewed", user: str = "u1") -> dict:
    """An event ``age`` before D+1 00:00."""
    return {"user_id": user, "event_type": event_type, "timestamp": END - age, "listing_id": listing}


def run(
    day: dt.date,
    event_rows: Sequence[Mapping[str, Any]],
    listing_rows: Sequence[Mapping[str, Any]] = CATALOG,
    users: Sequence[str] = ("u1",),
    **config: Any,
) -> dict[str, dict[str, Any]]:
    """{user_id: row} through the tile engine, with the registry config overridden by ``config``."""
    registry = load_registry()
    family = registry.family("affinity")
    family = dataclasses.replace(family, config={**family.config, **config})
    result = snapshot_table(family, day, event_rows, users, listing_rows=listing_rows)
    assert result.schema.field("category_affinity").type == pa.map_(pa.string(), pa.float64())
    rows = {}
    for row in result.to_pylist():
        for name in MAPS:  # Arrow maps come back as [(key, value), ...]; keys must be sorted
            if row[name] is not None:
                keys = [k for k, _ in row[name]]
                assert keys == sorted(keys), (name, keys)
                assert sum(v for _, v in row[name]) == pytest.approx(1.0, rel=1e-12)
                row[name] = dict(row[name])
        rows[row["user_id"]] = row
    return rows


def approx(expected: Any) -> Any:
    return expected if expected is None else pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("config", "event_rows", "expected"),
    [
        # exponential: one half-life (14 d) old weighs 1/2, two half-lives 1/4 -> shares 2/3, 1/3
        ({}, [ev(14 * DAY, "car10"), ev(28 * DAY, "flat")], {"category_affinity": {"cars": 2 / 3, "flats": 1 / 3}}),
        ({"half_life_days": 7}, [ev(7 * DAY, "car10"), ev(21 * DAY, "flat")],
         {"category_affinity": {"cars": 0.8, "flats": 0.2}}),
        # linear: 45 days old weighs 0.5, 81 days 0.1 -> 5/6, 1/6
        ({"decay": "linear"}, [ev(45 * DAY, "car10"), ev(81 * DAY, "flat")],
         {"category_affinity": {"cars": 5 / 6, "flats": 1 / 6}}),
        # linear: exactly 90 days old (D-89 00:00) weighs 0 -> no usable interaction
        ({"decay": "linear"}, [ev(90 * DAY, "car10")], {"category_affinity": None, "price_sensitivity": None}),
        # normalisation: cars 3 views = 3, flats 1 favourite + 1 view = 4, all the same age -> 3/7, 4/7
        ({}, [ev(DAY, "car10"), ev(DAY, "car20"), ev(DAY, "car30"),
              ev(DAY, "flat", "listing_favorited"), ev(DAY, "flat")],
         {"category_affinity": {"cars": 3 / 7, "flats": 4 / 7}}),
        # interaction weights: one contact vs one view = 5:1; cities follow the same weights
        ({}, [ev(DAY, "car10", "listing_contact_clicked"), ev(DAY, "flat")],
         {"category_affinity": {"cars": 5 / 6, "flats": 1 / 6}, "city_affinity": {"porto": 5 / 6, "lisbon": 1 / 6}}),
        # a configured weight changes the ratio
        ({"interaction_weights": {"listing_viewed": 1.0, "listing_contact_clicked": 2.0}},
         [ev(DAY, "car10", "listing_contact_clicked"), ev(DAY, "flat"), ev(DAY, "flat", "listing_favorited")],
         {"category_affinity": {"cars": 2 / 3, "flats": 1 / 3}}),
        # weighted mean of price ranks: view of the cheapest (0, weight 1) + contact of the dearest (1, weight 5)
        ({}, [ev(DAY, "car10"), ev(DAY, "car30", "listing_contact_clicked")], {"price_sensitivity": 5 / 6}),
        # unknown and missing listings, and non-interaction event types, are ignored
        ({}, [ev(DAY, "ghost"), ev(DAY, None), ev(DAY, "flat", "impression"), ev(DAY, "flat", "page_view"),
              ev(2 * DAY, "car20")],
         {"category_affinity": {"cars": 1.0}, "city_affinity": {"porto": 1.0}, "price_sensitivity": 0.5}),
        # only unusable interactions: null maps and price, but the user was active
        ({}, [ev(DAY, "ghost")], {"category_affinity": None, "city_affinity": None, "price_sensitivity": None,
                                  "activity_score": 1 / 30 + 0.5}),
        # null category: skipped for categories and prices, counted for cities
        ({}, [ev(DAY, "nowhere")], {"category_affinity": None, "city_affinity": {"madrid": 1.0},
                                    "price_sensitivity": None}),
        # null city and null price: counted for categories only
        ({}, [ev(DAY, "homeless"), ev(DAY, "flat")],
         {"category_affinity": {"flats": 1.0}, "city_affinity": {"lisbon": 1.0}, "price_sensitivity": 0.5}),
        # D+1 00:00 is not seen (base.py filters it)
        ({}, [ev(dt.timedelta(0), "flat"), ev(14 * DAY, "car10")],
         {"category_affinity": {"cars": 1.0}, "activity_score": 0.5 / 15 + 0.5 * 0.5 ** (13 / 7)}),
        # D-89 00:00 is the first instant of the lookback: seen; D-90 23:59 is not
        ({}, [ev(90 * DAY, "flat"), ev(90 * DAY + dt.timedelta(minutes=1), "car10")],
         {"category_affinity": {"flats": 1.0}, "activity_score": 0.5 * 0.5 ** (89 / 7)}),
        ({}, [ev(90 * DAY + dt.timedelta(minutes=1), "car10")],
         {"category_affinity": None, "city_affinity": None, "price_sensitivity": None, "activity_score": 0.0}),
    ],
)
def test_hand_computed_affinity(config, event_rows, expected):
    row = run(D, event_rows, **config)["u1"]
    for name, value in expected.items():
        got = row[name]
        if isinstance(value, dict):
            assert got is not None and list(got) == sorted(value), name
            assert got == {k: approx(v) for k, v in value.items()}, name
        else:
            assert got == approx(value), name


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        ("car10", 0.0),  # cars priced 10/20/30 -> 0, 0.5, 1 (the unpriced car does not count)
        ("car20", 0.5),
        ("car30", 1.0),
        ("flat", 0.5),  # the only priced flat: 0.5 by definition
        ("car_unpriced", None),
    ],
)
def test_price_percent_rank_within_category(listing, expected):
    assert run(D, [ev(DAY, listing)])["u1"]["price_sensitivity"] == expected


def test_price_ties_share_the_lowest_rank():
    catalog = [{"listing_id": f"l{i}", "category_id": "c", "price": p} for i, p in enumerate([5.0, 5.0, 7.0])]
    assert [run(D, [ev(DAY, f"l{i}")], catalog)["u1"]["price_sensitivity"] for i in range(3)] == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("event_rows", "expected"),
    [
        ([], 0.0),
        # 15 active days, one of them D: both halves full
        ([ev(k * DAY + dt.timedelta(hours=12), "flat", "page_view") for k in range(15)], 1.0),
        # several events on one day are one active day; last seen 7 days ago -> half the recency
        ([ev(7 * DAY + dt.timedelta(hours=h), None, "login") for h in (1, 5, 9)], 0.5 / 15 + 0.25),
        # 30 days ending at D count; a day before them only counts for recency
        ([ev(30 * DAY, None, "login"), ev(31 * DAY, None, "login")], 0.5 / 15 + 0.5 * 0.5 ** (29 / 7)),
        ([ev(40 * DAY, None, "login")], 0.5 * 0.5 ** (39 / 7)),
        # more active days than the normaliser saturate at 1
        ([ev(k * DAY, None, "login") for k in range(1, 31)], 1.0),
    ],
)
def test_activity_score(event_rows, expected):
    assert run(D, event_rows)["u1"]["activity_score"] == approx(expected)


def test_activity_score_parameters_come_from_config():
    row = run(D, [ev(3 * DAY, None, "login")], activity_active_days_normalizer=2, activity_recency_half_life_days=2)
    assert row["u1"]["activity_score"] == approx(0.5 * 0.5 + 0.5 * 0.5)


def test_time_advancing_keeps_exponential_shares_but_lowers_activity():
    event_rows = [ev(3 * DAY, "car10"), ev(10 * DAY, "flat", "listing_favorited"), ev(20 * DAY, "car30")]
    now = run(D, event_rows)["u1"]
    later = run(D + 7 * DAY, event_rows)["u1"]
    for name in MAPS:
        assert later[name] == {k: approx(v) for k, v in now[name].items()}
    assert later["price_sensitivity"] == approx(now["price_sensitivity"])
    assert later["activity_score"] < now["activity_score"]
    # linear decay does not preserve ratios: older interactions lose relatively more
    linear_now, linear_later = run(D, event_rows, decay="linear")["u1"], run(D + 7 * DAY, event_rows, decay="linear")["u1"]
    assert linear_later["category_affinity"]["flats"] > linear_now["category_affinity"]["flats"]


def test_every_known_user_gets_a_row():
    rows = run(D, [ev(DAY, "flat", user="ghost_user")], users=["u1", "u2"])
    assert sorted(rows) == ["u1", "u2"]
    assert (rows["u1"]["category_affinity"], rows["u1"]["activity_score"]) == (None, 0.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"decay": "sigmoid"}, "sigmoid"),
        ({"half_life_days": 0}, "half_life_days"),
        ({"interaction_weights": {}}, "interaction_weights"),
        ({"interaction_weights": {"listing_view": 1.0}}, "listing_view"),
        ({"interaction_weights": {"listing_viewed": -1.0}}, "listing_viewed"),
        ({"activity_active_days_normalizer": 0}, "activity_active_days_normalizer"),
    ],
)
def test_bad_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        run(D, [ev(DAY, "flat")], **config)


# --- reference ------------------------------------------------------------------------------

def reference(
    event_rows: list[dict], listing_rows: list[dict], users: list[str], day: dt.date, config: Mapping[str, Any]
) -> dict[str, dict]:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    start30, start90 = end - dt.timedelta(days=30), end - dt.timedelta(days=90)
    weights = config["interaction_weights"]
    catalog = {listing["listing_id"]: listing for listing in listing_rows}
    ranks = {}
    for listing in listing_rows:
        if listing["category_id"] is None or listing["price"] is None:
            continue
        peers = [p["price"] for p in listing_rows if p["category_id"] == listing["category_id"] and p["price"] is not None]
        below = sum(1 for price in peers if price < listing["price"])
        ranks[listing["listing_id"]] = 0.5 if len(peers) == 1 else below / (len(peers) - 1)
    out = {}
    for user in users:
        mine = [e for e in event_rows if e["user_id"] == user and start90 <= e["timestamp"] < end]
        by_category: dict[str, float] = {}
        by_city: dict[str, float] = {}
        price_sum = price_weight = 0.0
        for e in mine:
            listing = catalog.get(e["listing_id"])
            if e["event_type"] not in weights or listing is None:
                continue
            age = (end - e["timestamp"]).total_seconds() / 86400
            if config["decay"] == "exponential":
                decay = 0.5 ** (age / config["half_life_days"])
            else:
                decay = max(0.0, 1 - age / 90)
            weight = weights[e["event_type"]] * decay
            if weight <= 0:
                continue
            if listing["category_id"] is not None:
                by_category[listing["category_id"]] = by_category.get(listing["category_id"], 0.0) + weight
            if listing["city"] is not None:
                by_city[listing["city"]] = by_city.get(listing["city"], 0.0) + weight
            if listing["listing_id"] in ranks:
                price_sum += weight * ranks[listing["listing_id"]]
                price_weight += weight
        row: dict[str, Any] = {}
        for name, scores in (("category_affinity", by_category), ("city_affinity", by_city)):
            total = sum(scores.values())
            row[name] = [(key, scores[key] / total) for key in sorted(scores)] if scores else None
        row["price_sensitivity"] = price_sum / price_weight if price_weight else None
        if mine:
            active_days = len({e["timestamp"].date() for e in mine if e["timestamp"] >= start30})
            last_active_days = (day - max(e["timestamp"] for e in mine).date()).days
            row["activity_score"] = (
                0.5 * min(active_days / config["activity_active_days_normalizer"], 1)
                + 0.5 * 0.5 ** (last_active_days / config["activity_recency_half_life_days"])
            )
        else:
            row["activity_score"] = 0.0
        out[user] = row
    return out


USERS = ["u1", "u2", "u3", "u4"]
LISTING_IDS = ["a", "b", "c", "d", "e", "f"]
INTERACTION_TYPES = ["listing_viewed", "listing_favorited", "listing_contact_clicked", "impression"]

moments = st.one_of(
    st.datetimes(min_value=dt.datetime(2024, 12, 20), max_value=dt.datetime(2025, 4, 3)),
    st.integers(min_value=-95, max_value=2).map(lambda k: END - DAY + k * DAY),  # exact midnights
)
event_logs = st.lists(
    st.fixed_dictionaries({
        "user_id": st.sampled_from(USERS[:3]),
        "event_type": st.sampled_from([*INTERACTION_TYPES, "page_view"]),
        "timestamp": moments,
        "listing_id": st.sampled_from([*LISTING_IDS, "unknown", None]),
    }),
    max_size=40,
)
catalogs = st.lists(
    st.fixed_dictionaries({
        "category_id": st.sampled_from([None, "cars", "flats", "jobs", "ação"]),
        "city": st.sampled_from([None, "porto", "lisbon", "Berlin"]),
        "price": st.one_of(st.none(), st.integers(0, 4).map(float), st.floats(0, 1e6, allow_nan=False)),
    }),
    max_size=len(LISTING_IDS),
).map(lambda rows: [{"listing_id": listing_id, **row} for listing_id, row in zip(LISTING_IDS, rows, strict=False)])
configs = st.fixed_dictionaries({
    "half_life_days": st.sampled_from([0.5, 1, 7, 14, 45]),
    "interaction_weights": st.dictionaries(st.sampled_from(INTERACTION_TYPES), st.sampled_from([0.0, 1.0, 2.5, 5.0]),
                                           min_size=1),
    "activity_active_days_normalizer": st.sampled_from([1, 10, 15]),
    "activity_recency_half_life_days": st.sampled_from([1, 7, 30]),
})


@pytest.mark.parametrize("decay", ["exponential", "linear"])
@settings(max_examples=examples(50))
@given(event_rows=event_logs, listing_rows=catalogs, config=configs)
def test_matches_reference(decay, event_rows, listing_rows, config):
    config = {**config, "decay": decay}
    fast = run(D, event_rows, listing_rows, USERS, **config)
    slow = reference(event_rows, listing_rows, USERS, D, config)
    for user in USERS:
        for name, expected in slow[user].items():
            got = fast[user][name]
            if name in MAPS and expected is not None:
                assert got is not None, (user, name)
                assert list(got) == [k for k, _ in expected], (user, name)
                assert got == {k: pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in expected}, (user, name)
            elif expected is None:
                assert got is None, (user, name)
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), (user, name)


def test_compute_returns_the_registry_arrow_types():
    result = snapshot_table(load_registry().family("affinity"), D, [ev(DAY, "flat")], listing_rows=CATALOG)
    schema = load_registry().snapshot_schema("affinity")
    for name in result.column_names:
        assert result.schema.field(name).type == schema.field(name).type, name
