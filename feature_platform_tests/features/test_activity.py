"""Activity family: hand-computed cases, time semantics, and equality with a slow reference."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.sources.schema import EVENT_TYPES
from feature_platform_tests.features.helpers import snapshot
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)
MIDNIGHT_D = dt.datetime(2025, 3, 31)
NEXT_MIDNIGHT = dt.datetime(2025, 4, 1)


def ev(ts: dt.datetime, event_type: str = "page_view", user: str = "u1", session: str | None = None) -> dict:
    return {"user_id": user, "event_type": event_type, "timestamp": ts, "session_id": session}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # nothing: zero counts, null averages and recency
        ([], {"total_events": 0, "purchase_count": 0, "session_count": 0, "avg_session_length": None,
              "last_active_days": None}),
        # midnight of D is in; midnight of D+1 is out
        ([ev(MIDNIGHT_D), ev(NEXT_MIDNIGHT)], {"total_events": 1, "last_active_days": 0}),
        # D-29 00:00 is the first instant of the 30-day window; D-30 23:59:59 is outside it but in 90d
        ([ev(dt.datetime(2025, 3, 2)), ev(dt.datetime(2025, 3, 1, 23, 59, 59), "purchase")],
         {"total_events": 1, "purchase_count": 0, "last_active_days": 29}),
        # only old activity: counts 0, last seen 40 days ago
        ([ev(dt.datetime(2025, 2, 19, 12))], {"total_events": 0, "last_active_days": 40}),
        # beyond 90 days: invisible
        ([ev(dt.datetime(2024, 12, 31, 23, 59))], {"total_events": 0, "last_active_days": None}),
        # two sessions of 10 and 20 minutes -> 15; events without a session count but have no length
        ([ev(dt.datetime(2025, 3, 30, 10), session="a"), ev(dt.datetime(2025, 3, 30, 10, 10), "add_to_cart", session="a"),
          ev(dt.datetime(2025, 3, 30, 12), session="b"), ev(dt.datetime(2025, 3, 30, 12, 20), "purchase", session="b"),
          ev(dt.datetime(2025, 3, 30, 13))],
         {"total_events": 5, "session_count": 2, "avg_session_length": 15.0, "purchase_count": 1,
          "add_to_cart_count": 1, "event_vector_page_view": 3, "last_active_days": 1}),
    ],
)
def test_hand_computed_cases(events, expected):
    row = snapshot("activity", D, events)["u1"]
    for name, value in expected.items():
        assert row[name] == value, name


def test_features_advance_with_no_new_events():
    events = [ev(dt.datetime(2025, 3, 20, 9), "purchase")]
    at_d = snapshot("activity", D, events)["u1"]
    later = snapshot("activity", D + dt.timedelta(days=25), events)["u1"]
    assert (at_d["last_active_days"], at_d["purchase_count"]) == (11, 1)
    assert (later["last_active_days"], later["purchase_count"]) == (36, 0)  # left the 30-day window


def test_every_known_user_gets_a_row_and_unknown_users_are_ignored():
    rows = snapshot("activity", D, [ev(MIDNIGHT_D, user="ghost")], users=["u1", "u2"])
    assert sorted(rows) == ["u1", "u2"]
    assert rows["u1"]["total_events"] == 0


def test_users_who_sign_up_after_d_are_not_known_yet():
    users = [{"user_id": "early", "signup_date": dt.date(2025, 1, 1)}, {"user_id": "late", "signup_date": dt.date(2025, 4, 1)}]
    assert sorted(snapshot("activity", D, [], users=users)) == ["early"]


# --- reference ------------------------------------------------------------------------------

def reference(events: list[dict], users: list[str], day: dt.date) -> dict[str, dict]:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    start30, start90 = end - dt.timedelta(days=30), end - dt.timedelta(days=90)
    out = {}
    for user in users:
        mine = [e for e in events if e["user_id"] == user and start90 <= e["timestamp"] < end]
        recent = [e for e in mine if e["timestamp"] >= start30]
        sessions: dict[str, list[dt.datetime]] = {}
        for e in recent:
            if e["session_id"] is not None:
                sessions.setdefault(e["session_id"], []).append(e["timestamp"])
        lengths = [(max(ts) - min(ts)).total_seconds() / 60 for ts in sessions.values()]
        row = {
            "total_events": len(recent),
            "purchase_count": sum(e["event_type"] == "purchase" for e in recent),
            "add_to_cart_count": sum(e["event_type"] == "add_to_cart" for e in recent),
            "session_count": len(sessions),
            "avg_session_length": sum(lengths) / len(lengths) if lengths else None,
            "last_active_days": (day - max(e["timestamp"] for e in mine).date()).days if mine else None,
        }
        for t in EVENT_TYPES:
            row[f"event_vector_{t}"] = sum(e["event_type"] == t for e in recent)
        out[user] = row
    return out


moments = st.one_of(
    st.datetimes(min_value=dt.datetime(2024, 12, 20), max_value=dt.datetime(2025, 4, 3)),
    st.integers(min_value=-95, max_value=2).map(lambda k: MIDNIGHT_D + dt.timedelta(days=k)),  # exact midnights
)
event_logs = st.lists(
    st.fixed_dictionaries({
        "user_id": st.sampled_from(["u1", "u2", "u3"]),
        "event_type": st.sampled_from(EVENT_TYPES),
        "timestamp": moments.map(lambda t: t.replace(microsecond=0)),
        "session_id": st.sampled_from([None, "s1", "s2", "s3"]),
    }),
    max_size=40,
)


@settings(max_examples=examples(60))
@given(events=event_logs)
def test_matches_reference(events):
    users = ["u1", "u2", "u3", "u4"]
    fast = snapshot("activity", D, events, users=users)
    slow = reference(events, users, D)
    for user in users:
        for name, expected in slow[user].items():
            got = fast[user][name]
            if isinstance(expected, float):
                assert got == pytest.approx(expected, rel=1e-9), (user, name)
            else:
                assert got == expected, (user, name)
