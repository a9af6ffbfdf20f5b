"""Lead family: lead-scoring inputs - RFM, conversations, sentiment, behaviour, timing, campaigns.

Windows end at D: 90 days (D-89 .. D) unless a feature says 30d. Only the sentiment of message texts
is scored in Python, once per distinct text (``sentiment.compound``, cached by text). A user without
events gets 0 counts, false booleans and null recency, averages and rates.

Readings of the registry where its words leave room:
- a reply (``avg_response_time_seconds``) is the first message_out of the same user and conversation
  strictly later than the message_in, both in the window; each replied message_in is one sample;
- conversations are the non-null ``conversation_id`` of message events; messages without one count
  in no conversation feature; campaigns likewise need a non-null ``campaign_id``;
- a conversation converts when the user's first purchase at or after its first message in the
  window comes less than ``conversation_purchase_days`` after that message (and before D+1);
- an open or click counts for a campaign whenever it happened in the window (order is not checked);
- ``campaign_ignored`` follows the registry's computation: sent strictly before D+1 minus
  ``campaign_ignored_after_days`` (a campaign sent exactly 7 days before D+1 is not yet ignored).

Tile (one row per user and day): counts, per-hour and per-weekday histograms, the purchases' amount
sum and first timestamp, replies answered the same day, message sentiment sums, the day's channels,
and per conversation and per campaign what the day added (see :func:`tile_schema`). Replies that
cross midnight are joined in the merge: a message_in with no later reply on its day is answered by
the first message_out on the conversation's next day that has one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.features.engine import MergeContext, TileContext
from feature_platform.features.sentiment import compound
from feature_platform.features.windows import US_PER_DAY, RowSet, column, days_since, ratio
from feature_platform.sources.schema import EVENT_TYPES

LOOKBACK = 90
RECENT = 30
SENTIMENT_TABLE = "lead_message_sentiment"  # registered on the connection only while tile() runs
TS = pa.timestamp("us")
CONVERSATION = pa.struct([
    ("conversation_id", pa.string()),
    ("first_ts", TS),  # the day's first message
    ("purchase_ts", TS),  # the day's first purchase at or after first_ts
    ("first_out_ts", TS),  # the day's first message_out: the reply to earlier days' open message_ins
    ("open_ins", pa.int64()),  # message_ins with no later message_out on their day
    ("open_in_us", pa.int64()),  # their sum of microseconds since the day's midnight
])
CAMPAIGN = pa.struct([("campaign_id", pa.string()), ("sent", pa.int64()), ("opened", pa.int64()),
                      ("clicked", pa.int64())])
COUNTS = ("events", "inbound", "discount_requests", "support_tickets", "purchases", "amounts", "conversation_messages",
          "replies", "reply_us", "sentiments")
HOURS = tuple(f"hour_{h:02d}" for h in range(24))  # events per hour of the day
WEEKDAYS = tuple(f"weekday_{d}" for d in range(7))  # events per weekday, Monday = 0


def config_values(config: Mapping[str, Any]) -> tuple[list[str], dt.timedelta, dt.timedelta]:
    """(inbound event types, conversation->purchase window, campaign-ignored delay) from the config."""
    inbound = config.get("inbound_event_types")
    if not isinstance(inbound, list | tuple) or not inbound:
        raise ValueError("lead config needs inbound_event_types: a non-empty list of event types")
    unknown = [t for t in inbound if t not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"lead inbound_event_types: unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    days = {}
    for key in ("conversation_purchase_days", "campaign_ignored_after_days"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"lead config {key} must be a positive whole number of days, got {value!r}")
        days[key] = dt.timedelta(days=value)
    return [str(t) for t in inbound], days["conversation_purchase_days"], days["campaign_ignored_after_days"]


def sentiment_score(text: str | None) -> float | None:
    """A message's sentiment on 0 .. 1: (VADER compound + 1) / 2; None for a blank text (no opinion)."""
    value = compound(text)
    return None if value is None else (value + 1.0) / 2.0


def tile_schema(config: Mapping[str, Any]) -> pa.Schema:
    return pa.schema([
        ("user_id", pa.string()), ("day", pa.date32()), *((name, pa.int64()) for name in COUNTS),
        *((name, pa.int32()) for name in HOURS + WEEKDAYS),
        ("amount_sum", pa.float64()), ("sentiment_sum", pa.float64()), ("first_purchase_ts", TS),
        ("channels", pa.list_(pa.string())), ("conversations", pa.list_(CONVERSATION)),
        ("campaigns", pa.list_(CAMPAIGN)),
    ])


def _message_sentiment(ctx: TileContext) -> pa.Table:
    texts = ctx.sql("SELECT DISTINCT message_text FROM events "
                    "WHERE event_type = 'message_in' AND message_text IS NOT NULL").fetchall()
    scored = {text: score for (text,) in texts if (score := sentiment_score(text)) is not None}
    return pa.table({"text": pa.array(list(scored), pa.string()), "score": pa.array(list(scored.values()), pa.float64())})


# Float sums add in a fixed order (timestamp, event_id), whatever order a join hands rows over in.
TILE_QUERY = f"""
WITH messages AS (
    SELECT user_id, day, conversation_id, event_type, timestamp FROM events
    WHERE event_type IN ('message_in', 'message_out') AND conversation_id IS NOT NULL
), replies AS (
    -- each message_in with the first strictly later message_out of its conversation on its day
    SELECT i.user_id, i.day, i.conversation_id, i.timestamp AS in_ts, o.timestamp AS out_ts
    FROM (SELECT * FROM messages WHERE event_type = 'message_in') i
    ASOF LEFT JOIN (SELECT * FROM messages WHERE event_type = 'message_out') o
      ON i.user_id = o.user_id AND i.day = o.day AND i.conversation_id = o.conversation_id
         AND i.timestamp < o.timestamp
), purchases AS (
    SELECT user_id, day, timestamp FROM events WHERE event_type = 'purchase'
), conversations AS (
    SELECT user_id, day, conversation_id, min(timestamp) AS first_ts,
           min(timestamp) FILTER (WHERE event_type = 'message_out') AS first_out_ts
    FROM messages GROUP BY ALL
), open_ins AS (
    SELECT user_id, day, conversation_id, count(*) AS open_ins,
           sum(epoch_us(in_ts) - epoch_us(CAST(day AS TIMESTAMP))) AS open_in_us
    FROM replies WHERE out_ts IS NULL GROUP BY ALL
), conversation_lists AS (
    SELECT c.user_id, c.day,
           list(struct_pack(conversation_id := c.conversation_id, first_ts := c.first_ts, purchase_ts := p.timestamp,
                            first_out_ts := c.first_out_ts, open_ins := coalesce(o.open_ins, 0),
                            open_in_us := coalesce(o.open_in_us, 0))
                ORDER BY c.conversation_id) AS conversations
    FROM conversations c
    ASOF LEFT JOIN purchases p ON c.user_id = p.user_id AND c.day = p.day AND c.first_ts <= p.timestamp
    LEFT JOIN open_ins o ON o.user_id = c.user_id AND o.day = c.day AND o.conversation_id = c.conversation_id
    GROUP BY c.user_id, c.day
), campaign_lists AS (
    SELECT user_id, day, list(struct_pack(campaign_id, sent, opened, clicked) ORDER BY campaign_id) AS campaigns
    FROM (
        SELECT user_id, day, campaign_id,
               count(*) FILTER (WHERE event_type = 'campaign_sent') AS sent,
               count(*) FILTER (WHERE event_type IN ('campaign_opened', 'campaign_clicked')) AS opened,
               count(*) FILTER (WHERE event_type = 'campaign_clicked') AS clicked
        FROM events
        WHERE event_type IN ('campaign_sent', 'campaign_opened', 'campaign_clicked') AND campaign_id IS NOT NULL
        GROUP BY ALL
    ) GROUP BY user_id, day
), reply_stats AS (
    SELECT user_id, day, count(out_ts) AS replies,
           coalesce(sum(epoch_us(out_ts) - epoch_us(in_ts)), 0) AS reply_us
    FROM replies GROUP BY user_id, day
), sentiments AS (
    SELECT e.user_id, e.day, count(*) AS sentiments, sum(s.score ORDER BY e.timestamp, e.event_id) AS sentiment_sum
    FROM events e JOIN {SENTIMENT_TABLE} s ON e.message_text = s.text
    WHERE e.event_type = 'message_in'
    GROUP BY e.user_id, e.day
), per_user AS (
    SELECT user_id, day,
           count(*) AS events,
           count(*) FILTER (WHERE list_contains($inbound_types, event_type)) AS inbound,
           count(*) FILTER (WHERE event_type = 'discount_request') AS discount_requests,
           count(*) FILTER (WHERE event_type = 'support_ticket') AS support_tickets,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           count(amount) FILTER (WHERE event_type = 'purchase') AS amounts,
           coalesce(sum(amount ORDER BY timestamp, event_id) FILTER (WHERE event_type = 'purchase'), 0.0) AS amount_sum,
           min(timestamp) FILTER (WHERE event_type = 'purchase') AS first_purchase_ts,
           count(*) FILTER (WHERE event_type IN ('message_in', 'message_out') AND conversation_id IS NOT NULL)
               AS conversation_messages,
           coalesce(list(DISTINCT channel ORDER BY channel) FILTER (WHERE channel IS NOT NULL), []) AS channels,
           {", ".join(f"CAST(count(*) FILTER (WHERE hour(timestamp) = {h}) AS INTEGER) AS {name}"
                      for h, name in enumerate(HOURS))},
           {", ".join(f"CAST(count(*) FILTER (WHERE isodow(timestamp) = {d + 1}) AS INTEGER) AS {name}"
                      for d, name in enumerate(WEEKDAYS))}
    FROM events GROUP BY user_id, day
)
SELECT u.*,
       coalesce(r.replies, 0) AS replies, coalesce(r.reply_us, 0) AS reply_us,
       coalesce(s.sentiments, 0) AS sentiments, coalesce(s.sentiment_sum, 0.0) AS sentiment_sum,
       coalesce(c.conversations, []) AS conversations, coalesce(k.campaigns, []) AS campaigns
FROM per_user u
LEFT JOIN reply_stats r USING (user_id, day)
LEFT JOIN sentiments s USING (user_id, day)
LEFT JOIN conversation_lists c USING (user_id, day)
LEFT JOIN campaign_lists k USING (user_id, day)
"""


def tile(ctx: TileContext) -> pa.Table:
    inbound, _, _ = config_values(ctx.config)
    ctx.con.register(SENTIMENT_TABLE, _message_sentiment(ctx))
    try:
        table = ctx.sql(TILE_QUERY, inbound_types=inbound).to_arrow_table()
    finally:
        ctx.con.unregister(SENTIMENT_TABLE)
    return table.select(tile_schema(ctx.config).names).cast(tile_schema(ctx.config))


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    _, purchase_window, ignored_after = config_values(ctx.config)
    rows = ctx.user_rows({**dict.fromkeys(COUNTS), "amount_sum": None, "sentiment_sum": None,
                          "first_purchase_ts": None, **dict.fromkeys(HOURS + WEEKDAYS)})
    rows.columns["active"] = np.ones(len(rows), np.int64)
    for name in ("discount_requests", "support_tickets"):
        rows.columns[f"{name}_days"] = (rows.columns[name] > 0).astype(np.int64)
    last_inbound = _last_row_with(rows.columns["inbound"] > 0)
    last_purchase = _last_row_with(rows.columns["purchases"] > 0)
    conversations = _Conversations(ctx, rows, purchase_window)
    channels, _ = ctx.entity_rows("channels", None, {})
    campaigns = _Campaigns(ctx, ignored_after.days)
    n = ctx.n
    for day in ctx.days:
        window, recent = rows.runs(day, LOOKBACK), rows.runs(day, RECENT)

        def total(name: str, runs=window) -> np.ndarray:
            return rows.scatter(runs, rows.total(runs, name), n)

        out: dict[str, pa.Array] = {}
        inbound_row = last_inbound[window.hi]
        has_inbound = rows.scatter(window, inbound_row >= window.lo, n, fill=False)
        out["recency_days"] = days_since(rows.scatter(window, rows.day[inbound_row], n), day, has_inbound)
        counts = conversations.counts(day, n)
        out["frequency_conversations_30d"] = column(counts.recent)
        purchases = total("purchases")
        out["frequency_purchases_90d"] = column(purchases)
        monetary = rows.scatter(window, rows.ordered_sum(window, "amount_sum"), n, fill=0.0)
        out["monetary_total"] = column(monetary)
        out["monetary_avg_ticket"] = ratio(monetary, total("amounts"))
        replies = total("replies") + counts.late_replies
        reply_us = total("reply_us") + counts.late_reply_us
        out["avg_response_time_seconds"] = ratio(reply_us / 1e6, replies)
        out["avg_messages_per_conversation"] = ratio(total("conversation_messages"), counts.conversations)
        sentiment = rows.scatter(recent, rows.ordered_sum(recent, "sentiment_sum"), n, fill=0.0)
        out["sentiment_avg_30d"] = ratio(sentiment, total("sentiments", recent))
        out["discount_request_rate"] = ratio(total("discount_requests_days"), total("active"))
        out["conversation_to_purchase_rate"] = ratio(counts.converted, counts.conversations)
        out["support_ticket_rate_30d"] = ratio(total("support_tickets_days", recent), total("active", recent))
        purchase_row = last_purchase[window.hi]
        has_purchase = rows.scatter(window, purchase_row >= window.lo, n, fill=False)
        out["days_since_last_purchase"] = days_since(rows.scatter(window, rows.day[purchase_row], n), day, has_purchase)
        out["has_purchased"] = column(purchases > 0)
        out["preferred_hour_of_day"] = _mode(rows, window, HOURS, n)
        out["preferred_day_of_week"] = _mode(rows, window, WEEKDAYS, n)
        out["channel_diversity"] = column(channels.per_owner(channels.runs(day, LOOKBACK), None, n))
        out.update(campaigns.features(day, n))
        yield out


def _last_row_with(flag: np.ndarray) -> np.ndarray:
    """Per row, the last row at or before it (any group) where ``flag`` holds; -1 if none."""
    return np.maximum.accumulate(np.where(flag, np.arange(len(flag)), -1)) if len(flag) else np.zeros(0, np.int64)


def _mode(rows: RowSet, runs: Any, buckets: tuple[str, ...], users: int) -> pa.Array:
    """The most frequent bucket (hour, weekday) per run, ties to the smallest; null without events."""
    counts = np.stack([rows.total(runs, name) for name in buckets], axis=1)
    best = np.zeros(users, np.int64)
    best[runs.group] = np.argmax(counts, axis=1)
    valid = np.zeros(users, bool)
    valid[runs.group] = True
    return column(best, valid)


class _ConversationCounts:
    def __init__(self, users: int) -> None:
        self.conversations = np.zeros(users, np.int64)
        self.recent = np.zeros(users, np.int64)
        self.converted = np.zeros(users, np.int64)
        self.late_replies = np.zeros(users, np.int64)
        self.late_reply_us = np.zeros(users, np.int64)


class _Conversations:
    """Conversation runs: distinct counts, conversions, and replies that cross midnight."""

    def __init__(self, ctx: MergeContext, users: RowSet, purchase_window: dt.timedelta) -> None:
        rows, _ = ctx.entity_rows("conversations", "conversation_id", dict.fromkeys(
            ("first_ts", "purchase_ts", "first_out_ts", "open_ins", "open_in_us")))
        self.rows = rows
        first_ts, first_out = rows.columns["first_ts"], rows.columns["first_out_ts"]
        has_out = first_out != np.iinfo(np.int64).min
        # The purchase a conversation's first visible day leads to: that day's first purchase after its
        # first message, else the first purchase on a later day.
        purchase_ts = rows.columns["purchase_ts"].copy()
        later = purchase_ts == np.iinfo(np.int64).min
        purchase_ts[later], purchase_day = _next_purchase(users, rows.owner[rows.group[later]], rows.day[later])
        self.purchase_day = rows.day.copy()
        self.purchase_day[later] = purchase_day
        window_us = purchase_window // dt.timedelta(microseconds=1)
        self.converts = (purchase_ts != np.iinfo(np.int64).min) & (purchase_ts < first_ts + window_us)
        # A day's open message_ins are answered by the first message_out of the group's next day with one.
        index = np.arange(len(rows))
        following = np.minimum.accumulate(np.where(has_out, index, len(rows))[::-1])[::-1]
        nxt = np.r_[following[1:], len(rows)] if len(rows) else following
        answered = (nxt < len(rows))
        answered[answered] &= rows.group[nxt[answered]] == rows.group[answered]
        open_ins = np.where(answered, rows.columns["open_ins"], 0)
        reply_at = np.where(answered, first_out[np.minimum(nxt, max(len(rows) - 1, 0))], 0)
        day_start = rows.day * US_PER_DAY
        late_us = np.where(answered, open_ins * (reply_at - day_start) - rows.columns["open_in_us"], 0)
        self.late_count = np.concatenate(([0], np.cumsum(open_ins)))
        self.late_us = np.concatenate(([0], np.cumsum(late_us)))
        self.last_out = _last_row_with(has_out)

    def counts(self, day: int, users: int) -> _ConversationCounts:
        rows, out = self.rows, _ConversationCounts(users)
        window = rows.runs(day, LOOKBACK)
        out.conversations = rows.per_owner(window, None, users)
        out.recent = rows.per_owner(rows.runs(day, RECENT), None, users)
        converted = self.converts[window.lo] & (self.purchase_day[window.lo] <= day)
        out.converted = rows.per_owner(window, converted.astype(np.int64), users)
        # message_ins of rows lo .. h-1 are answered within the run, h = the run's last row with a reply
        answered_until = np.maximum(self.last_out[window.hi], window.lo)
        out.late_replies = rows.per_owner(window, self.late_count[answered_until] - self.late_count[window.lo], users)
        out.late_reply_us = rows.per_owner(window, self.late_us[answered_until] - self.late_us[window.lo], users)
        return out


def _next_purchase(users: RowSet, owners: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (user, day): the first purchase timestamp on the user's next day with purchases, and
    that day (timestamp = min int64 when there is none)."""
    buying = np.flatnonzero(users.columns["purchases"] > 0)
    span = np.int64(1) << 32
    keys = users.group[buying] * span + users.day[buying]
    at = np.searchsorted(keys, owners * span + days, side="right")
    found = at < len(keys)
    found[found] &= users.group[buying[at[found]]] == owners[found]
    ts = np.full(len(owners), np.iinfo(np.int64).min)
    day = np.zeros(len(owners), np.int64)
    rows = buying[at[found]]
    ts[found], day[found] = users.columns["first_purchase_ts"][rows], users.day[rows]
    return ts, day


class _Campaigns:
    """Per (user, campaign) runs: sent/opened/clicked in the window, sent in 30 days, sent before the cut-off."""

    def __init__(self, ctx: MergeContext, ignored_after_days: int) -> None:
        self.rows, _ = ctx.entity_rows("campaigns", "campaign_id", dict.fromkeys(("sent", "opened", "clicked")))
        self.ignored_after = ignored_after_days

    def _flag(self, day: int, window: int, name: str) -> np.ndarray:
        rows = self.rows
        out = np.zeros(rows.groups, bool)
        if window > 0:
            runs = rows.runs(day, window)
            out[runs.group] = rows.total(runs, name) > 0
        return out

    def features(self, day: int, users: int) -> dict[str, pa.Array]:
        rows = self.rows
        sent, opened, clicked = (self._flag(day, LOOKBACK, c) for c in ("sent", "opened", "clicked"))
        sent_recent = self._flag(day, RECENT, "sent")
        sent_before = self._flag(day - self.ignored_after, LOOKBACK - self.ignored_after, "sent")
        owner = rows.owner

        def per_user(flags: np.ndarray) -> np.ndarray:
            return np.bincount(owner[flags], minlength=users).astype(np.int64)

        sent_count = per_user(sent)
        return {
            "campaign_open_rate": ratio(per_user(sent & opened), sent_count),
            "campaign_click_rate": ratio(per_user(sent & clicked), sent_count),
            "campaigns_received_30d": column(per_user(sent_recent)),
            "campaign_ignored": column(per_user(sent_before & ~opened) > 0),
        }
