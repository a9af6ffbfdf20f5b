"""Lead family: hand-computed cases, window edges, time passing, config, and equality with a slow reference."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.features import lead
from feature_platform.features.sentiment import compound
from feature_platform.registry import load_registry
from feature_platform.sources.schema import EVENT_TYPES
from feature_platform_tests.features.helpers import snapshot, snapshot_table
from feature_platform_tests.helpers import examples

D = dt.date(2025, 3, 31)  # a Monday; the 30-day window starts 2025-03-02, the 90-day one 2025-01-01
MIDNIGHT_D = dt.datetime(2025, 3, 31)
NEXT_MIDNIGHT = dt.datetime(2025, 4, 1)
INBOUND = {"purchase", "add_to_cart", "message_in", "form_submit", "support_ticket", "discount_request",
           "listing_contact_clicked"}  # the registry's inbound_event_types


def t(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, minute, second)


def ev(ts: dt.datetime, event_type: str = "page_view", user: str = "u1", **columns: Any) -> dict:
    return {"user_id": user, "event_type": event_type, "timestamp": ts, **columns}


def msg(ts: dt.datetime, event_type: str, conversation: str | None, text: str | None = None, user: str = "u1") -> dict:
    return ev(ts, event_type, user, conversation_id=conversation, message_text=text)


def campaign(ts: dt.datetime, event_type: str, campaign_id: str | None) -> dict:
    return ev(ts, event_type, campaign_id=campaign_id)


# What a user without history gets: the registry's defaults (0, false, null).
NO_HISTORY = {
    "recency_days": None, "frequency_conversations_30d": 0, "frequency_purchases_90d": 0, "monetary_total": 0.0,
    "monetary_avg_ticket": None, "avg_response_time_seconds": None, "avg_messages_per_conversation": None,
    "sentiment_avg_30d": None, "discount_request_rate": None, "conversation_to_purchase_rate": None,
    "support_ticket_rate_30d": None, "days_since_last_purchase": None, "has_purchased": False,
    "preferred_hour_of_day": None, "preferred_day_of_week": None, "channel_diversity": 0,
    "campaign_open_rate": None, "campaign_click_rate": None, "campaigns_received_30d": 0, "campaign_ignored": False,
}
FEATURES = sorted(NO_HISTORY)


def assert_features(row: Mapping[str, Any], expected: Mapping[str, Any], where: Any = "") -> None:
    for name, value in expected.items():
        got = row[name]
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-9), (where, name, got, value)
        else:
            assert got == value and type(got) is type(value), (where, name, got, value)


def test_the_registry_lists_exactly_these_features():
    assert sorted(f.name for f in load_registry().list_features("lead")) == FEATURES


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([], NO_HISTORY, id="no events"),
        # a page view is activity (hour 14, Sunday = 6, one channel, no discount/ticket days) but not inbound
        pytest.param(
            [ev(t(3, 30, 14, 5), channel="web")],
            {**NO_HISTORY, "preferred_hour_of_day": 14, "preferred_day_of_week": 6, "channel_diversity": 1,
             "discount_request_rate": 0.0, "support_ticket_rate_30d": 0.0},
            id="one passive event",
        ),
        # D 00:00 is in (0 days ago, hour 0, Monday = 0); the D+1 00:00 purchase (99, channel app) is not loaded
        pytest.param(
            [ev(MIDNIGHT_D, "purchase", amount=10.0), ev(NEXT_MIDNIGHT, "purchase", amount=99.0, channel="app")],
            {**NO_HISTORY, "recency_days": 0, "frequency_purchases_90d": 1, "monetary_total": 10.0,
             "monetary_avg_ticket": 10.0, "days_since_last_purchase": 0, "has_purchased": True,
             "preferred_hour_of_day": 0, "preferred_day_of_week": 0, "channel_diversity": 0,
             "discount_request_rate": 0.0, "support_ticket_rate_30d": 0.0},
            id="midnight of D in, midnight of D+1 out",
        ),
        # D-29 00:00 is the first instant of the 30-day window, D-30 23:59 is outside it but in 90d:
        # 30d active days {03-02}, all with a ticket -> 1.0; 90d active days {03-01, 03-02}, one with a
        # discount request -> 0.5; last inbound 03-02 -> 29 days; hours 0 and 23 tie -> 0;
        # Saturday (5) and Sunday (6) tie -> 5
        pytest.param(
            [ev(t(3, 2), "support_ticket"), ev(t(3, 1, 23, 59), "discount_request")],
            {"support_ticket_rate_30d": 1.0, "discount_request_rate": 0.5, "recency_days": 29,
             "preferred_hour_of_day": 0, "preferred_day_of_week": 5},
            id="30-day window edges",
        ),
        # D-89 00:00 (a Wednesday) is the first instant of the 90 days; one second earlier is invisible
        pytest.param(
            [ev(t(1, 1), "purchase", amount=5.0), ev(dt.datetime(2024, 12, 31, 23, 59, 59), "purchase", amount=7.0)],
            {"frequency_purchases_90d": 1, "monetary_total": 5.0, "monetary_avg_ticket": 5.0,
             "days_since_last_purchase": 89, "recency_days": 89, "has_purchased": True, "preferred_day_of_week": 2,
             "discount_request_rate": 0.0, "support_ticket_rate_30d": None},
            id="90-day window edge",
        ),
        # 3 purchases, 20 + 40 + (no amount) = 60, mean over the 2 with an amount = 30; the later page view
        # is passive, so recency is the 03-25 purchase: 6 days
        pytest.param(
            [ev(t(3, 10, 12), "purchase", amount=20.0), ev(t(3, 20, 8), "purchase", amount=40.0),
             ev(t(3, 25), "purchase"), ev(t(3, 30))],
            {"frequency_purchases_90d": 3, "monetary_total": 60.0, "monetary_avg_ticket": 30.0,
             "days_since_last_purchase": 6, "recency_days": 6, "has_purchased": True},
            id="RFM",
        ),
        pytest.param(
            [ev(t(3, 10), "purchase")],
            {"frequency_purchases_90d": 1, "monetary_total": 0.0, "monetary_avg_ticket": None,
             "days_since_last_purchase": 21, "has_purchased": True},
            id="purchase without an amount",
        ),
        # c1: in 10:00, in 10:01, out 10:05, out 10:06, in 11:00 -> replies after 300 s and 240 s, 11:00 unanswered
        # c2: out 09:00, in 09:00 (same instant: not a reply), out 09:30 -> 1800 s
        # mean (300 + 240 + 1800) / 3 = 780; messages (5 + 3) / 2 = 4; the in without a conversation and
        # u2's out in c1 count nowhere; no purchase -> 0 of 2 conversations converted.
        # hours: 9h x4 (c2 + 03-29 09:15), 10h x4 -> tie -> 9; Sunday 03-30 x5 -> 6; last inbound 03-30 11:00
        pytest.param(
            [msg(t(3, 30, 10), "message_in", "c1"), msg(t(3, 30, 10, 1), "message_in", "c1"),
             msg(t(3, 30, 10, 5), "message_out", "c1"), msg(t(3, 30, 10, 6), "message_out", "c1"),
             msg(t(3, 30, 11), "message_in", "c1"),
             msg(t(3, 20, 9), "message_out", "c2"), msg(t(3, 20, 9), "message_in", "c2"),
             msg(t(3, 20, 9, 30), "message_out", "c2"),
             msg(t(3, 29, 9, 15), "message_in", None),
             msg(t(3, 30, 10, 0, 30), "message_out", "c1", user="u2")],
            {"avg_response_time_seconds": 780.0, "frequency_conversations_30d": 2,
             "avg_messages_per_conversation": 4.0, "conversation_to_purchase_rate": 0.0, "recency_days": 1,
             "preferred_hour_of_day": 9, "preferred_day_of_week": 6, "sentiment_avg_30d": None},
            id="conversations and replies",
        ),
        # c1 first message 03-01 10:00 (before the 30 days), purchase 03-08 09:59:59 -> converted
        # c2 03-10 12:00, next purchase 03-17 12:00 is exactly 7 days later -> not converted (half-open)
        # c3 03-29 10:00, purchase at D+1 00:00 is not visible -> not converted
        # c4 03-25 18:00 with a purchase at the same instant -> converted
        # 2 / 4 = 0.5; conversations in 30d: c2, c3, c4; one message each
        pytest.param(
            [msg(t(3, 1, 10), "message_out", "c1"), ev(t(3, 8, 9, 59, 59), "purchase"),
             msg(t(3, 10, 12), "message_in", "c2"), ev(t(3, 17, 12), "purchase"),
             msg(t(3, 29, 10), "message_in", "c3"), ev(NEXT_MIDNIGHT, "purchase"),
             msg(t(3, 25, 18), "message_in", "c4"), ev(t(3, 25, 18), "purchase")],
            {"conversation_to_purchase_rate": 0.5, "frequency_conversations_30d": 3,
             "avg_messages_per_conversation": 1.0, "frequency_purchases_90d": 3, "days_since_last_purchase": 6,
             "recency_days": 2, "avg_response_time_seconds": None},
            id="conversation to purchase within 7 days",
        ),
        # own messages in 30d: "I love it" x2 (compound 0.6369 -> 0.81845), "I hate it" (-0.5719 -> 0.21405),
        # "see you tomorrow" (0.0 -> 0.5); blank and null texts have no score; the reply and the
        # message of 03-01 23:59 (before the 30 days) do not count: (2 * 0.81845 + 0.21405 + 0.5) / 4
        pytest.param(
            [msg(t(3, 30), "message_in", "c1", "I love it"), msg(t(3, 20), "message_in", "c1", "I love it"),
             msg(t(3, 10), "message_in", "c2", "I hate it"), msg(t(3, 11), "message_in", "c2", "  "),
             msg(t(3, 12), "message_in", "c2", None), msg(t(3, 13), "message_in", None, "see you tomorrow"),
             msg(t(3, 30, 1), "message_out", "c1", "great, thanks!"), msg(t(3, 1, 23, 59), "message_in", "c3", "awful")],
            {"sentiment_avg_30d": 2.35095 / 4},
            id="sentiment",
        ),
        # active days in 90d: 02-15, 03-10, 03-11, 03-20; discount requests on 02-15 and 03-10 -> 2 / 4;
        # in 30d: 03-10, 03-11, 03-20, tickets on 03-20 -> 1 / 3
        pytest.param(
            [ev(t(3, 10, 8)), ev(t(3, 10, 8, 30), "discount_request"), ev(t(3, 10, 8, 45), "discount_request"),
             ev(t(3, 11, 12), "login"), ev(t(3, 20, 13), "support_ticket"), ev(t(3, 20, 13, 5), "support_ticket"),
             ev(t(2, 15, 8), "discount_request")],
            {"discount_request_rate": 0.5, "support_ticket_rate_30d": 1 / 3, "preferred_hour_of_day": 8},
            id="discount and ticket days",
        ),
        # 2 at 9h and 2 at 21h -> 9; 2 on Sunday (6) and 2 on Wednesday (2) -> 2
        pytest.param(
            [ev(t(3, 30, 9)), ev(t(3, 30, 21)), ev(t(3, 26, 21, 30)), ev(t(3, 26, 9, 15))],
            {"preferred_hour_of_day": 9, "preferred_day_of_week": 2},
            id="ties take the smallest hour and day",
        ),
        # 3 at 23h beat 2 at 0h; Saturday (5) x2 and Sunday (6) x2 beat Friday x1 -> 5
        pytest.param(
            [ev(t(3, 29, 23)), ev(t(3, 30, 23, 10)), ev(t(3, 28, 23, 59, 59)), ev(t(3, 29)), ev(t(3, 30))],
            {"preferred_hour_of_day": 23, "preferred_day_of_week": 5},
            id="the most frequent hour wins",
        ),
        pytest.param(
            [ev(t(3, 1), channel="web"), ev(t(3, 2), channel="web"), ev(t(2, 2), channel="app"), ev(t(3, 3)),
             ev(t(3, 4), channel="email"), ev(NEXT_MIDNIGHT, channel="chat")],
            {"channel_diversity": 3},
            id="distinct non-null channels",
        ),
        # sent in 90d: k1 (twice), k2, k3, k4; opened or clicked: k1, k2 -> 2 / 4; clicked: k2 -> 1 / 4;
        # k5 was opened but never sent; a send without a campaign id is no campaign;
        # sent in 30d: k1, k2, k4 (k3 on 03-01 23:59 is before the window);
        # ignored: k3 (sent before 03-25 00:00 and never opened); k4, sent exactly at 03-25 00:00, not yet
        pytest.param(
            [campaign(t(3, 10, 9), "campaign_sent", "k1"), campaign(t(3, 12), "campaign_opened", "k1"),
             campaign(t(3, 20), "campaign_sent", "k1"),
             campaign(t(3, 15), "campaign_sent", "k2"), campaign(t(3, 16), "campaign_clicked", "k2"),
             campaign(t(3, 1, 23, 59), "campaign_sent", "k3"),
             campaign(t(3, 25), "campaign_sent", "k4"),
             campaign(t(3, 20), "campaign_opened", "k5"),
             campaign(t(3, 5), "campaign_sent", None)],
            {"campaign_open_rate": 0.5, "campaign_click_rate": 0.25, "campaigns_received_30d": 3,
             "campaign_ignored": True, "recency_days": None},
            id="campaigns",
        ),
        pytest.param(
            [campaign(t(3, 25), "campaign_sent", "k4")],
            {"campaign_ignored": False, "campaign_open_rate": 0.0, "campaign_click_rate": 0.0,
             "campaigns_received_30d": 1},
            id="sent exactly 7 days before D+1: not ignored yet",
        ),
        pytest.param(
            [campaign(dt.datetime(2025, 3, 24, 23, 59, 59), "campaign_sent", "k4")],
            {"campaign_ignored": True},
            id="sent one second earlier: ignored",
        ),
        pytest.param(
            [campaign(t(3, 10), "campaign_sent", "k1"), campaign(NEXT_MIDNIGHT, "campaign_opened", "k1")],
            {"campaign_ignored": True, "campaign_open_rate": 0.0},
            id="opened after D: still ignored at D",
        ),
        pytest.param(
            [campaign(t(3, 10), "campaign_sent", "k1"), campaign(t(3, 11), "campaign_clicked", "k1")],
            {"campaign_ignored": False, "campaign_open_rate": 1.0, "campaign_click_rate": 1.0},
            id="a click counts as opened",
        ),
    ],
)
def test_hand_computed_cases(rows, expected):
    assert_features(snapshot("lead", D, rows)["u1"], expected)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_recency_counts_only_inbound_events(event_type):
    row = snapshot("lead", D, [ev(t(3, 21, 15), event_type), ev(t(1, 5), "page_view")])["u1"]
    assert row["recency_days"] == (10 if event_type in INBOUND else None)


def test_events_after_d_are_never_seen():
    before = [msg(t(3, 30, 10), "message_in", "c1"), campaign(t(3, 10), "campaign_sent", "k1"),
              ev(t(3, 30, 12), "purchase", amount=5.0)]
    after = [msg(NEXT_MIDNIGHT, "message_out", "c1"), campaign(NEXT_MIDNIGHT, "campaign_opened", "k1"),
             ev(NEXT_MIDNIGHT, "purchase", amount=50.0), ev(dt.datetime(2025, 4, 2, 9), "support_ticket")]
    at_d = snapshot("lead", D, before)["u1"]
    assert snapshot("lead", D, before + after)["u1"] == at_d
    assert_features(at_d, {"avg_response_time_seconds": None, "campaign_ignored": True, "monetary_total": 5.0,
                           "conversation_to_purchase_rate": 1.0, "support_ticket_rate_30d": 0.0})


def test_time_passing_without_new_events():
    rows = [
        ev(t(3, 28, 10), "purchase", amount=10.0),
        campaign(t(3, 27, 12), "campaign_sent", "k1"),                      # ignorable once D+1-7d > 03-27 12:00
        campaign(t(3, 5), "campaign_sent", "k0"), campaign(t(3, 6), "campaign_opened", "k0"),
        msg(t(3, 4), "message_in", "c1"),
        ev(t(3, 3, 9)),
    ]
    at_d = snapshot("lead", D, rows)["u1"]
    later = snapshot("lead", D + dt.timedelta(days=5), rows)["u1"]  # 30 days now start 03-07, cutoff 03-30
    assert_features(at_d, {"recency_days": 3, "days_since_last_purchase": 3, "campaign_ignored": False,
                           "campaigns_received_30d": 2, "frequency_conversations_30d": 1,
                           "support_ticket_rate_30d": 0.0})
    assert_features(later, {"recency_days": 8, "days_since_last_purchase": 8, "campaign_ignored": True,
                            "campaigns_received_30d": 1, "frequency_conversations_30d": 0,
                            "support_ticket_rate_30d": 0.0})
    # the 90-day features keep every event
    for name in ("frequency_purchases_90d", "monetary_total", "campaign_open_rate", "avg_messages_per_conversation"):
        assert later[name] == at_d[name], name


def test_every_known_user_gets_a_row_and_unknown_users_are_ignored():
    rows = [ev(t(3, 30), "purchase", amount=3.0), ev(t(3, 30), "purchase", user="ghost", amount=4.0)]
    result = snapshot("lead", D, rows, users=["u1", "u2"])
    assert sorted(result) == ["u1", "u2"]
    assert_features(result["u1"], {"frequency_purchases_90d": 1, "monetary_total": 3.0})
    assert_features(result["u2"], NO_HISTORY)


def snapshot_with_config(config: Mapping[str, Any], rows: list[dict]) -> dict[str, Any]:
    registry = load_registry()
    family = dataclasses.replace(registry.family("lead"), config=config)
    return snapshot_table(family, D, rows).to_pylist()[0]


def test_the_config_drives_inbound_types_and_both_delays():
    config = {"inbound_event_types": ["page_view"], "conversation_purchase_days": 1, "campaign_ignored_after_days": 2}
    rows = [
        ev(t(3, 30, 8)), ev(t(3, 31, 8), "purchase"),  # only page views are inbound now: 1 day
        msg(t(3, 29, 9), "message_in", "c1"),             # purchase 47 h later: outside 1 day
        msg(t(3, 30, 9), "message_in", "c2"),             # 23 h later: inside
        campaign(t(3, 29, 23, 59), "campaign_sent", "k1"),  # before D+1 - 2 days = 03-30 00:00: ignored
    ]
    assert_features(snapshot_with_config(config, rows),
                    {"recency_days": 1, "conversation_to_purchase_rate": 0.5, "campaign_ignored": True})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inbound_event_types": []}, "non-empty list"),
        ({"inbound_event_types": ["purchse"]}, "unknown event types"),
        ({"conversation_purchase_days": 0}, "positive whole number"),
        ({"campaign_ignored_after_days": "7"}, "positive whole number"),
        ({"campaign_ignored_after_days": None}, "positive whole number"),
    ],
)
def test_a_broken_config_raises(change, message):
    config = {**load_registry().family("lead").config, **change}
    with pytest.raises(ValueError, match=message):
        lead.config_values(config)


# --- reference ------------------------------------------------------------------------------

def reference(rows: list[dict], users: list[str], day: dt.date, config: Mapping[str, Any]) -> dict[str, dict]:
    """The registry's definitions, one loop at a time."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    start30, start90 = end - dt.timedelta(days=30), end - dt.timedelta(days=90)
    purchase_window = dt.timedelta(days=config["conversation_purchase_days"])
    ignore_cutoff = end - dt.timedelta(days=config["campaign_ignored_after_days"])

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    out = {}
    for user in users:
        mine = [e for e in rows if e["user_id"] == user and start90 <= e["timestamp"] < end]
        recent = [e for e in mine if e["timestamp"] >= start30]
        inbound = [e["timestamp"] for e in mine if e["event_type"] in config["inbound_event_types"]]
        purchases = [e for e in mine if e["event_type"] == "purchase"]
        amounts = [e["amount"] for e in purchases if e["amount"] is not None]

        messages = [e for e in mine if e["event_type"] in ("message_in", "message_out") and e["conversation_id"] is not None]
        conversations: dict[str, list[dt.datetime]] = {}
        for m in messages:
            conversations.setdefault(m["conversation_id"], []).append(m["timestamp"])
        recent_conversations = {m["conversation_id"] for m in messages if m["timestamp"] >= start30}
        waits = []
        for m in messages:
            if m["event_type"] == "message_in":
                replies = [o["timestamp"] for o in messages if o["event_type"] == "message_out"
                           and o["conversation_id"] == m["conversation_id"] and o["timestamp"] > m["timestamp"]]
                if replies:
                    waits.append((min(replies) - m["timestamp"]).total_seconds())
        converted = []
        for times in conversations.values():
            first = min(times)
            converted.append(float(any(first <= p["timestamp"] < first + purchase_window for p in purchases)))

        scores = []
        for e in recent:
            if e["event_type"] == "message_in":
                c = compound(e["message_text"])
                if c is not None:
                    scores.append((c + 1) / 2)

        active = {e["timestamp"].date() for e in mine}
        discount = {e["timestamp"].date() for e in mine if e["event_type"] == "discount_request"}
        active30 = {e["timestamp"].date() for e in recent}
        tickets30 = {e["timestamp"].date() for e in recent if e["event_type"] == "support_ticket"}

        hours = Counter(e["timestamp"].hour for e in mine)
        weekdays = Counter(e["timestamp"].weekday() for e in mine)

        sent, opened, clicked, sent30, ignorable = set(), set(), set(), set(), set()
        for e in mine:
            k = e["campaign_id"]
            if k is None:
                continue
            if e["event_type"] == "campaign_sent":
                sent.add(k)
                if e["timestamp"] >= start30:
                    sent30.add(k)
                if e["timestamp"] < ignore_cutoff:
                    ignorable.add(k)
            if e["event_type"] in ("campaign_opened", "campaign_clicked"):
                opened.add(k)
            if e["event_type"] == "campaign_clicked":
                clicked.add(k)

        out[user] = {
            "recency_days": (day - max(inbound).date()).days if inbound else None,
            "frequency_conversations_30d": len(recent_conversations),
            "frequency_purchases_90d": len(purchases),
            "monetary_total": float(sum(amounts)),
            "monetary_avg_ticket": mean(amounts),
            "avg_response_time_seconds": mean(waits),
            "avg_messages_per_conversation": len(messages) / len(conversations) if conversations else None,
            "sentiment_avg_30d": mean(scores),
            "discount_request_rate": len(discount) / len(active) if active else None,
            "conversation_to_purchase_rate": mean(converted),
            "support_ticket_rate_30d": len(tickets30) / len(active30) if active30 else None,
            "days_since_last_purchase": (day - max(p["timestamp"] for p in purchases).date()).days if purchases else None,
            "has_purchased": bool(purchases),
            "preferred_hour_of_day": min(h for h, n in hours.items() if n == max(hours.values())) if hours else None,
            "preferred_day_of_week": min(w for w, n in weekdays.items() if n == max(weekdays.values())) if weekdays else None,
            "channel_diversity": len({e["channel"] for e in mine if e["channel"] is not None}),
            "campaign_open_rate": len(sent & opened) / len(sent) if sent else None,
            "campaign_click_rate": len(sent & clicked) / len(sent) if sent else None,
            "campaigns_received_30d": len(sent30),
            "campaign_ignored": bool(ignorable - opened),
        }
    return out


moments = st.one_of(
    st.datetimes(min_value=dt.datetime(2024, 12, 25), max_value=dt.datetime(2025, 4, 8)).map(
        lambda m: m.replace(microsecond=0)),
    st.integers(min_value=-95, max_value=8).map(lambda k: MIDNIGHT_D + dt.timedelta(days=k)),  # exact midnights
)
USERS = ["u1", "u2", "u3", "u4", "u5", "u6"]  # many users keep each one's log short, so edge cases show
LEAD_TYPES = ["purchase", "add_to_cart", "message_in", "message_out", "form_submit", "support_ticket",
              "discount_request", "listing_contact_clicked", "campaign_sent", "campaign_opened", "campaign_clicked"]
random_events = st.fixed_dictionaries({
    "user_id": st.sampled_from(USERS[:-1]),  # the last user never has events
    "event_type": st.one_of(st.sampled_from(LEAD_TYPES), st.sampled_from(EVENT_TYPES)),
    "timestamp": moments,
    "session_id": st.sampled_from([None, "s1", "s2"]),
    "channel": st.sampled_from([None, "web", "app", "email", "chat"]),
    "amount": st.sampled_from([None, 0.0, 9.99, 25.5, 100.0]),
    "conversation_id": st.sampled_from([None, "c1", "c2", "c3"]),
    "campaign_id": st.sampled_from([None, "k1", "k2", "k3"]),
    "message_text": st.sampled_from([None, "", "  ", "I love it", "I hate it", "see you tomorrow",
                                     "great, thanks!", "this is terrible"]),
})
# A thread is one user, conversation and campaign: events of one kind at an anchor and at offsets that matter
# (the same instant - a reply is strictly later -, a second, minutes, and the 7-day purchase window's end).
THREAD_TYPES = [("message_in", "message_out", "purchase"), ("campaign_sent", "campaign_opened", "campaign_clicked"),
                ("support_ticket", "discount_request", "page_view")]
OFFSETS = [dt.timedelta(0), dt.timedelta(seconds=1), dt.timedelta(minutes=5), dt.timedelta(days=2),
           dt.timedelta(days=7) - dt.timedelta(seconds=1), dt.timedelta(days=7), dt.timedelta(days=7, seconds=1)]


def edges(day: dt.date) -> list[dt.datetime]:
    """Instants on the rules' edges for ``day``: D+1, D, the 30- and 90-day starts, the campaign cutoff,
    each also one second earlier."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return [end - dt.timedelta(days=days, seconds=second) for days in (0, 1, 30, 90, 7) for second in (0, 1)]


@st.composite
def event_logs(draw: st.DrawFn) -> tuple[dt.date, list[dict]]:
    """A snapshot day near D and a log of random events plus threads anchored on that day's edges or anywhere."""
    day = D + dt.timedelta(days=draw(st.integers(min_value=0, max_value=5)))
    rows = [draw(random_events) for _ in range(draw(st.integers(min_value=0, max_value=50)))]
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        thread, kind = draw(random_events), draw(st.sampled_from(THREAD_TYPES))
        anchor = draw(st.one_of(st.sampled_from(edges(day)), moments))
        for offset in [dt.timedelta(0), *draw(st.lists(st.sampled_from(OFFSETS), max_size=4))]:
            rows.append({**thread, "event_type": draw(st.sampled_from(kind)), "timestamp": anchor + offset})
    return day, rows


@settings(max_examples=examples(150))
@given(log=event_logs())
def test_matches_reference(log):
    day, rows = log
    fast = snapshot("lead", day, rows, users=USERS)
    slow = reference(rows, USERS, day, load_registry().family("lead").config)
    for user in USERS:
        assert sorted(k for k in fast[user] if k not in ("user_id", "snapshot_date")) == FEATURES
        assert_features(fast[user], slow[user], user)
