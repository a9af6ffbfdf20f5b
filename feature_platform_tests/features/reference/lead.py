"""Lead family: lead-scoring inputs - RFM, conversations, sentiment, behaviour, timing, campaigns.

Every feature is computed in one DuckDB query over the ``events`` table (the 90 days ending at D);
30-day features filter on ``$start_30d``. Only the sentiment of message texts is scored in Python,
once per distinct text (``sentiment.compound``, cached by text), and joined back as a small table.
A user without events gets 0 counts, false booleans and null recency, averages and rates.

Readings of the registry where its words leave room:
- a reply (``avg_response_time_seconds``) is the first message_out of the same user and conversation
  strictly later than the message_in; each replied message_in is one sample;
- conversations are the non-null ``conversation_id`` of message events; messages without one count
  in no conversation feature; campaigns likewise need a non-null ``campaign_id``;
- an open or click counts for a campaign whenever it happened before D+1 (order is not checked);
- ``campaign_ignored`` follows the registry's computation: sent strictly before D+1 minus
  ``campaign_ignored_after_days`` (a campaign sent exactly 7 days before D+1 is not yet ignored).
"""

from __future__ import annotations

import pyarrow as pa

from feature_platform.features.lead import config_values
from feature_platform.features.sentiment import compound
from feature_platform_tests.features.reference.base import SnapshotContext

SENTIMENT_TABLE = "lead_message_sentiment"  # registered on the connection only while compute() runs


def message_sentiment(ctx: SnapshotContext) -> pa.Table:
    """(text, score) for the distinct message_in texts of the 30-day window; score = (compound + 1) / 2."""
    texts = ctx.sql(
        "SELECT DISTINCT message_text FROM events "
        "WHERE event_type = 'message_in' AND timestamp >= $start_30d AND message_text IS NOT NULL"
    ).fetchall()
    compounds = {text: compound(text) for (text,) in texts}
    scored = {text: (c + 1.0) / 2.0 for text, c in compounds.items() if c is not None}  # blank: no opinion
    return pa.table({"text": pa.array(list(scored), pa.string()), "score": pa.array(list(scored.values()), pa.float64())})


QUERY = f"""
WITH days AS (
    -- bit i of day_bit marks day start_90d + i; events only hold the 90 days, so i is in 0 .. 89
    SELECT *, CAST(1 AS HUGEINT) << date_diff('day', CAST($start_90d AS DATE), CAST(timestamp AS DATE)) AS day_bit
    FROM events
), per_user AS (
    -- active days as 90-bit masks: one pass per user instead of a (user, day) table; the 30-day
    -- window is the masks' top bits, so shifting out the days before $start_30d leaves it
    SELECT user_id,
           max(timestamp) FILTER (WHERE list_contains($inbound_types, event_type)) AS last_inbound_ts,
           bit_or(day_bit) AS active_days,
           coalesce(bit_or(day_bit) FILTER (WHERE event_type = 'discount_request'), 0) AS discount_days,
           coalesce(bit_or(day_bit) FILTER (WHERE event_type = 'support_ticket'), 0) AS ticket_days,
           CAST(bit_count(discount_days) AS DOUBLE) / bit_count(active_days) AS discount_rate,
           CAST(bit_count(ticket_days >> date_diff('day', $start_90d, $start_30d)) AS DOUBLE)
               / nullif(bit_count(active_days >> date_diff('day', $start_90d, $start_30d)), 0) AS ticket_rate_30d
    FROM days GROUP BY user_id
), channels AS (
    SELECT user_id, count(*) AS channels FROM (SELECT DISTINCT user_id, channel FROM events WHERE channel IS NOT NULL)
    GROUP BY user_id
), purchase_stats AS (
    SELECT user_id, count(*) AS purchases, sum(amount) AS amount_total, avg(amount) AS amount_avg,
           max(timestamp) AS last_purchase_ts
    FROM events WHERE event_type = 'purchase' GROUP BY user_id
), hours AS (
    SELECT user_id, hour(timestamp) AS hour, count(*) AS n FROM events GROUP BY ALL
), preferred_hour AS (
    SELECT user_id, hour FROM hours QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY n DESC, hour) = 1
), weekdays AS (
    SELECT user_id, isodow(timestamp) - 1 AS weekday, count(*) AS n FROM events GROUP BY ALL
), preferred_weekday AS (
    SELECT user_id, weekday FROM weekdays
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY n DESC, weekday) = 1
), messages AS (
    SELECT user_id, conversation_id, event_type, timestamp FROM events
    WHERE event_type IN ('message_in', 'message_out') AND conversation_id IS NOT NULL
), conversations AS (
    SELECT user_id, conversation_id, count(*) AS messages, min(timestamp) AS first_ts, max(timestamp) AS last_ts
    FROM messages GROUP BY ALL
), purchases AS (
    SELECT user_id, timestamp FROM events WHERE event_type = 'purchase'
), conversions AS (
    -- the first purchase at or after the conversation's first message
    SELECT c.*, p.timestamp AS purchase_ts
    FROM conversations c ASOF LEFT JOIN purchases p ON c.user_id = p.user_id AND c.first_ts <= p.timestamp
), conversation_stats AS (
    SELECT user_id,
           count(*) FILTER (WHERE last_ts >= $start_30d) AS conversations_30d,
           avg(messages) AS messages_per_conversation,
           avg(CAST(coalesce(purchase_ts < first_ts + $purchase_window, false) AS DOUBLE)) AS conversion_rate
    FROM conversions GROUP BY user_id
), replies AS (
    -- each message_in with the first strictly later message_out of the same conversation
    SELECT i.user_id, (epoch_us(o.timestamp) - epoch_us(i.timestamp)) / 1e6 AS seconds
    FROM (SELECT * FROM messages WHERE event_type = 'message_in') i
    ASOF JOIN (SELECT * FROM messages WHERE event_type = 'message_out') o
      ON i.user_id = o.user_id AND i.conversation_id = o.conversation_id AND i.timestamp < o.timestamp
), response_times AS (
    SELECT user_id, avg(seconds) AS seconds FROM replies GROUP BY user_id
), sentiments AS (
    SELECT e.user_id, avg(s.score) AS score
    FROM events e JOIN {SENTIMENT_TABLE} s ON e.message_text = s.text
    WHERE e.event_type = 'message_in' AND e.timestamp >= $start_30d
    GROUP BY e.user_id
), campaigns AS (
    SELECT user_id, campaign_id,
           bool_or(event_type = 'campaign_sent') AS sent,
           bool_or(event_type = 'campaign_sent' AND timestamp >= $start_30d) AS sent_30d,
           bool_or(event_type = 'campaign_sent' AND timestamp < $ignored_before) AS sent_before_cutoff,
           bool_or(event_type IN ('campaign_opened', 'campaign_clicked')) AS opened,
           bool_or(event_type = 'campaign_clicked') AS clicked
    FROM events
    WHERE event_type IN ('campaign_sent', 'campaign_opened', 'campaign_clicked') AND campaign_id IS NOT NULL
    GROUP BY ALL
), campaign_stats AS (
    SELECT user_id,
           avg(CAST(opened AS DOUBLE)) FILTER (WHERE sent) AS open_rate,
           avg(CAST(clicked AS DOUBLE)) FILTER (WHERE sent) AS click_rate,
           count(*) FILTER (WHERE sent_30d) AS received_30d,
           bool_or(sent_before_cutoff AND NOT opened) AS ignored
    FROM campaigns GROUP BY user_id
)
SELECT u.user_id,
       date_diff('day', CAST(p.last_inbound_ts AS DATE), $day) AS recency_days,
       coalesce(c.conversations_30d, 0) AS frequency_conversations_30d,
       coalesce(b.purchases, 0) AS frequency_purchases_90d,
       coalesce(b.amount_total, 0.0) AS monetary_total,
       b.amount_avg AS monetary_avg_ticket,
       r.seconds AS avg_response_time_seconds,
       c.messages_per_conversation AS avg_messages_per_conversation,
       s.score AS sentiment_avg_30d,
       p.discount_rate AS discount_request_rate,
       c.conversion_rate AS conversation_to_purchase_rate,
       p.ticket_rate_30d AS support_ticket_rate_30d,
       date_diff('day', CAST(b.last_purchase_ts AS DATE), $day) AS days_since_last_purchase,
       coalesce(b.purchases, 0) > 0 AS has_purchased,
       h.hour AS preferred_hour_of_day,
       w.weekday AS preferred_day_of_week,
       coalesce(ch.channels, 0) AS channel_diversity,
       k.open_rate AS campaign_open_rate,
       k.click_rate AS campaign_click_rate,
       coalesce(k.received_30d, 0) AS campaigns_received_30d,
       coalesce(k.ignored, false) AS campaign_ignored
FROM users u
LEFT JOIN per_user p USING (user_id)
LEFT JOIN purchase_stats b USING (user_id)
LEFT JOIN channels ch USING (user_id)
LEFT JOIN preferred_hour h USING (user_id)
LEFT JOIN preferred_weekday w USING (user_id)
LEFT JOIN conversation_stats c USING (user_id)
LEFT JOIN response_times r USING (user_id)
LEFT JOIN sentiments s USING (user_id)
LEFT JOIN campaign_stats k USING (user_id)
"""


def compute(ctx: SnapshotContext) -> pa.Table:
    inbound, purchase_window, ignored_after = config_values(ctx.config)
    ctx.con.register(SENTIMENT_TABLE, message_sentiment(ctx))
    try:
        return ctx.sql(
            QUERY,
            inbound_types=inbound,
            purchase_window=purchase_window,
            ignored_before=ctx.window.end - ignored_after,
        ).to_arrow_table()
    finally:
        ctx.con.unregister(SENTIMENT_TABLE)
