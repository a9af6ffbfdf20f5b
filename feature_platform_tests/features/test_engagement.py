"""Engagement family: the score table of the brief, config-driven weights, window edges, a slow reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.features import engagement
from feature_platform.registry import load_registry
from feature_platform.sources.schema import EVENT_TYPES
from feature_platform_tests.features.helpers import by_user, snapshot, snapshot_table
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)
MIDNIGHT_D = dt.datetime(2025, 3, 31)
NEXT_MIDNIGHT = dt.datetime(2025, 4, 1)
NOON_D = dt.datetime(2025, 3, 31, 12)


def ev(ts: dt.datetime, event_type: str = "page_view", user: str = "u1") -> dict:
    return {"user_id": user, "event_type": event_type, "timestamp": ts}


def counted(counts: Mapping[str, int], ts: dt.datetime = NOON_D, user: str = "u1") -> list[dict]:
    """``counts[event_type]`` events of each type for ``user`` at ``ts``."""
    return [ev(ts, event_type, user) for event_type, n in counts.items() for _ in range(n)]


# Config of the brief: page_view 0.3/100, email_open 0.2/50, form_submit 0.2/20, purchase 0.3/10, login 0.1/30.
@pytest.mark.parametrize(
    ("counts", "score"),
    [
        # every input at half its normalizer: 0.3*.5 + 0.2*.5 + 0.2*.5 + 0.3*.5 + 0.1*.5
        ({"page_view": 50, "email_open": 25, "form_submit": 10, "purchase": 5, "login": 15}, 0.55),
        # every input at its normalizer: unclipped 1.1 -> 1.0
        ({"page_view": 100, "email_open": 50, "form_submit": 20, "purchase": 10, "login": 30}, 1.0),
        # far above the normalizers: each term saturates at its weight, the sum is still clipped to 1
        ({"page_view": 400, "email_open": 90, "form_submit": 21, "purchase": 11, "login": 31}, 1.0),
        # saturated purchases and page views alone: 0.3 + 0.3
        ({"page_view": 150, "purchase": 12}, 0.6),
        # one login: 0.1 * 1/30
        ({"login": 1}, 0.1 / 30),
        # events outside score_inputs do not count
        ({"impression": 80, "add_to_cart": 7, "message_in": 3}, 0.0),
        # zero activity
        ({}, 0.0),
    ],
)
def test_score_table_of_the_brief(counts, score):
    row = snapshot("engagement", D, counted(counts))["u1"]
    assert row["engagement_score"] == pytest.approx(score, abs=1e-12)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, {"page_views_30d": 0, "email_opens_30d": 0, "form_submits_30d": 0, "login_frequency": 0.0,
              "form_submit_conversion_rate": None}),
        ({"page_view": 8, "form_submit": 2, "email_open": 3, "login": 6},
         {"page_views_30d": 8, "email_opens_30d": 3, "form_submits_30d": 2, "login_frequency": 0.2,
          "form_submit_conversion_rate": 0.25}),
        # form submits without page views: no rate (not infinity); more submits than views: above 1
        ({"form_submit": 4}, {"form_submits_30d": 4, "form_submit_conversion_rate": None}),
        ({"form_submit": 3, "page_view": 2}, {"form_submit_conversion_rate": 1.5}),
        ({"login": 45}, {"login_frequency": 1.5}),
    ],
)
def test_inputs_rate_and_frequency(counts, expected):
    row = snapshot("engagement", D, counted(counts))["u1"]
    for name, value in expected.items():
        if value is None:
            assert row[name] is None, name
        else:
            assert row[name] == pytest.approx(value), name


def custom(score_inputs: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {**load_registry().family("engagement").config, "score_inputs": score_inputs}


@pytest.mark.parametrize(
    ("config", "counts", "score"),
    [
        # the brief's counts under other weights: only page views, weight 1, normalizer 100 -> 0.5
        (custom({"page_view": {"weight": 1.0, "normalizer": 100}}),
         {"page_view": 50, "email_open": 25, "form_submit": 10, "purchase": 5, "login": 15}, 0.5),
        # doubled purchase weight: 0.6 * 0.5 + 0.2 * 0.5
        (custom({"purchase": {"weight": 0.6, "normalizer": 10}, "login": {"weight": 0.2, "normalizer": 30}}),
         {"purchase": 5, "login": 15}, 0.4),
        # event types the default config does not score at all
        (custom({"impression": {"weight": 0.5, "normalizer": 4}, "listing_favorited": {"weight": 0.5, "normalizer": 1}}),
         {"impression": 2, "listing_favorited": 3, "page_view": 100}, 0.75),
        # no inputs: nothing scores
        (custom({}), {"page_view": 100, "purchase": 10}, 0.0),
    ],
)
def test_custom_config_changes_the_score(config, counts, score):
    registry = load_registry()
    family = dataclasses.replace(registry.family("engagement"), config=config)
    result = snapshot_table(family, D, counted(counts))
    assert result.column("engagement_score").to_pylist() == [pytest.approx(score, abs=1e-12)]


@pytest.mark.parametrize(
    ("score_inputs", "message"),
    [
        ({"page_veiw": {"weight": 0.3, "normalizer": 100}}, "unknown event type 'page_veiw'"),
        ({"page_view": {"weight": 0.3}}, "expected exactly"),
        ({"page_view": {"weight": 0.3, "normalizer": 0}}, "normalizer must be > 0"),
    ],
)
def test_a_broken_config_raises_instead_of_scoring_zero(score_inputs, message):
    with pytest.raises(ValueError, match=message):
        engagement.score_inputs({"score_inputs": score_inputs})


def test_window_edges():
    rows = [
        ev(MIDNIGHT_D),                                   # D 00:00: in
        ev(dt.datetime(2025, 3, 2)),                      # D-29 00:00: first instant of the window, in
        ev(dt.datetime(2025, 3, 1, 23, 59, 59)),          # D-30 23:59:59: out
        ev(NEXT_MIDNIGHT),                                # D+1 00:00: the future, out
        ev(dt.datetime(2025, 3, 2), "login"),
        ev(dt.datetime(2025, 3, 1, 23, 59, 59), "login"),
    ]
    row = snapshot("engagement", D, rows)["u1"]
    assert row["page_views_30d"] == 2
    assert row["login_frequency"] == pytest.approx(1 / 30)


def test_time_advancing_without_events_drops_counts():
    rows = counted({"page_view": 50, "login": 15}, ts=dt.datetime(2025, 3, 20, 9))
    at_d = snapshot("engagement", D, rows)["u1"]
    # D+18 = 2025-04-18 still sees 2025-03-20 (its window starts D+18-29 = 2025-03-20); D+19 does not
    still = snapshot("engagement", D + dt.timedelta(days=18), rows)["u1"]
    gone = snapshot("engagement", D + dt.timedelta(days=19), rows)["u1"]
    assert at_d["page_views_30d"] == still["page_views_30d"] == 50
    assert at_d["engagement_score"] == pytest.approx(0.3 * 0.5 + 0.1 * 0.5)
    assert (gone["page_views_30d"], gone["login_frequency"], gone["engagement_score"]) == (0, 0.0, 0.0)
    assert gone["form_submit_conversion_rate"] is None


def test_every_known_user_gets_a_row_and_unknown_users_are_ignored():
    rows = snapshot("engagement", D, counted({"page_view": 3}, user="ghost"), users=["u1", "u2"])
    assert sorted(rows) == ["u1", "u2"]
    assert rows["u1"]["page_views_30d"] == 0


# --- reference ------------------------------------------------------------------------------

def reference(rows: list[dict], users: list[str], day: dt.date, config: Mapping[str, Any]) -> dict[str, dict]:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    start = end - dt.timedelta(days=30)
    out = {}
    for user in users:
        counts: dict[str, int] = {}
        for row in rows:
            if row["user_id"] == user and start <= row["timestamp"] < end:
                counts[row["event_type"]] = counts.get(row["event_type"], 0) + 1
        score = 0.0
        for event_type, spec in config["score_inputs"].items():
            score += spec["weight"] * min(counts.get(event_type, 0) / spec["normalizer"], 1.0)
        page_views, form_submits = counts.get("page_view", 0), counts.get("form_submit", 0)
        out[user] = {
            "page_views_30d": page_views,
            "email_opens_30d": counts.get("email_open", 0),
            "form_submits_30d": form_submits,
            "login_frequency": counts.get("login", 0) / 30,
            "form_submit_conversion_rate": form_submits / page_views if page_views else None,
            "engagement_score": min(max(score, 0.0), 1.0),
        }
    return out


moments = st.one_of(
    st.datetimes(min_value=dt.datetime(2025, 2, 20), max_value=dt.datetime(2025, 4, 2)),
    st.integers(min_value=-40, max_value=1).map(lambda k: MIDNIGHT_D + dt.timedelta(days=k)),  # exact midnights
)
event_logs = st.lists(
    st.fixed_dictionaries({
        "user_id": st.sampled_from(["u1", "u2", "u3"]),
        # the scored types often, so counts reach and pass small normalizers
        "event_type": st.one_of(st.sampled_from(["page_view", "form_submit", "login", "purchase", "email_open"]),
                                st.sampled_from(EVENT_TYPES)),
        "timestamp": moments.map(lambda t: t.replace(microsecond=0)),
    }),
    max_size=40,
)
configs = st.one_of(
    st.just(load_registry().family("engagement").config),
    st.dictionaries(
        st.sampled_from(EVENT_TYPES),
        st.fixed_dictionaries({"weight": st.floats(0, 1), "normalizer": st.integers(1, 12)}),
        max_size=6,
    ).map(lambda inputs: {"score_inputs": inputs}),
)


@settings(max_examples=examples(150))
@given(rows=event_logs, config=configs)
def test_matches_reference(rows, config):
    users = ["u1", "u2", "u3", "u4"]
    family = dataclasses.replace(load_registry().family("engagement"), config=config)
    fast = by_user(snapshot_table(family, D, rows, users))
    slow = reference(rows, users, D, config)
    assert sorted(fast) == users
    for user in users:
        for name, expected in slow[user].items():
            got = fast[user][name]
            if isinstance(expected, float):
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (user, name)
            else:
                assert got == expected, (user, name)
        assert 0.0 <= fast[user]["engagement_score"] <= 1.0
