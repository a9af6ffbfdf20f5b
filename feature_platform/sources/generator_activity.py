"""One chunk of users simulated day by day: latent engagement and churn, then every kind of event.

The story: log-engagement follows a mean-reverting walk around a target that is flat for loyal and
most casual users and declines after an onset day for lapsing ones; satisfaction follows engagement;
a daily churn hazard sigmoid(a - b·log_engagement) fires once and silences the user for good.
Sessions, campaign responses, support tickets, discount requests and conversation sentiment all read
that state, so falling activity, unanswered campaigns and angry messages precede churn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from feature_platform.sources.generator_blocks import (
    APP,
    CHAT,
    CODE,
    DAY_US,
    EMAIL,
    SECOND_US,
    SMS,
    WEB,
    Calendar,
    EventBlock,
    concat_blocks,
    expand_counts,
    group_cumsum,
    make_block,
    seconds_us,
    sigmoid,
    times_near_preferred_hour,
)
from feature_platform.sources.generator_population import REVIEW_TOPIC_COUNT, Catalog, Population, pick_categorical
from feature_platform.sources.generator_sessions import (
    ChunkState,
    Sessions,
    category_mix,
    concat_sessions,
    organic_sessions,
    session_events,
)
from feature_platform.sources.generator_text import AGENT, NEUTRAL, PhrasePool, ReviewPools, review_texts

ENGAGEMENT_PERSISTENCE = 0.85  # AR(1) coefficient of the daily deviation from the target
SATISFACTION_SLOPE = 2.0
CHURN_HAZARD_A = -9.0
CHURN_HAZARD_B = 3.5
SESSION_RATE = 0.26  # sessions per user-day at engagement 1
CAMPAIGN_REACH = 0.6
NOTIFICATION_EMAIL_RATE = 0.04
SUPPORT_TICKET_RATE = (0.003, 0.05)  # base, extra at satisfaction 0 (scaled by (1 - sat)^2)
DISCOUNT_REQUEST_RATE = (0.002, 0.03)
CONVERSATION_RATE = (0.006, 0.06)
REVIEW_PER_PURCHASE = 0.12
ORGANIC_REVIEWS_PER_90_DAYS = 0.2


@dataclass(frozen=True)
class ReviewRows:
    user: np.ndarray  # chunk-local user index
    rating: np.ndarray
    ts: np.ndarray
    text: pa.Array


@dataclass(frozen=True)
class ChunkResult:
    events: EventBlock  # sorted by (timestamp, user)
    reviews: ReviewRows
    n_sessions: int
    n_conversations: int
    churn_day: np.ndarray
    last_engagement: np.ndarray  # engagement on the user's last active day (or last window day)


def simulate_trajectories(pop: Population, days: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Daily log-engagement, satisfaction, alive mask and churn day for every user of the chunk."""
    n = len(pop)
    t = np.arange(days, dtype=np.float64)
    target = pop.log_engagement_base[:, None] - pop.engagement_decay[:, None] * np.maximum(0.0, t[None, :] - pop.lapse_onset_day[:, None])
    shocks = rng.normal(0.0, 1.0, (n, days)) * pop.engagement_noise[:, None]
    deviation = np.empty((n, days))
    deviation[:, 0] = shocks[:, 0] / np.sqrt(1.0 - ENGAGEMENT_PERSISTENCE**2)
    for d in range(1, days):
        deviation[:, d] = ENGAGEMENT_PERSISTENCE * deviation[:, d - 1] + shocks[:, d]
    log_engagement = target + deviation
    satisfaction = sigmoid(pop.satisfaction_bias[:, None] + SATISFACTION_SLOPE * (log_engagement - pop.log_engagement_base[:, None]))

    signed_up = t[None, :] >= pop.signup_day[:, None]
    hazard = sigmoid(CHURN_HAZARD_A - CHURN_HAZARD_B * log_engagement)
    fired = signed_up & (rng.random((n, days)) < hazard)
    churn_day = np.where(fired.any(axis=1), fired.argmax(axis=1), days)
    alive = signed_up & (t[None, :] < churn_day[:, None])
    return log_engagement, satisfaction, alive, churn_day


def simulate_chunk(
    pop: Population, catalog: Catalog, calendar: Calendar, messages: PhrasePool, review_pools: ReviewPools, rng: np.random.Generator
) -> ChunkResult:
    """Events and reviews of one chunk of users, sorted; numbering of sessions/conversations is local."""
    log_engagement, satisfaction, alive, churn_day = simulate_trajectories(pop, calendar.days, rng)
    state = ChunkState(pop, catalog, calendar, log_engagement, satisfaction, alive, churn_day, category_mix(pop))

    sessions = organic_sessions(state, rng, SESSION_RATE)
    campaign_blocks, campaign_sessions = _campaign_events(state, len(sessions), rng)
    sessions = concat_sessions([sessions, campaign_sessions])
    email_blocks, email_sessions = _notification_emails(state, len(sessions), rng)
    sessions = concat_sessions([sessions, email_sessions])

    blocks = campaign_blocks + email_blocks + session_events(sessions, state, rng)
    blocks.append(_daily_events(state, CODE["support_ticket"], SUPPORT_TICKET_RATE, rng))
    blocks.append(_daily_events(state, CODE["discount_request"], DISCOUNT_REQUEST_RATE, rng))
    conversation_block, n_conversations = _conversations(state, messages, rng)
    blocks.append(conversation_block)

    events = concat_blocks(blocks)
    user_end_us = calendar.start_us + np.minimum(churn_day, calendar.days) * DAY_US
    events = events.select(np.nonzero(events.ts < user_end_us[events.user])[0])
    events = events.select(np.lexsort((events.user, events.ts)))

    last_day = np.clip(np.minimum(churn_day, calendar.days) - 1, 0, calendar.days - 1)
    return ChunkResult(
        events=events,
        reviews=_reviews(state, events, user_end_us, review_pools, rng),
        n_sessions=len(sessions),
        n_conversations=n_conversations,
        churn_day=churn_day,
        last_engagement=np.exp(log_engagement[np.arange(len(pop)), last_day]),
    )


def _campaign_events(state: ChunkState, first_session: int, rng: np.random.Generator) -> tuple[list[EventBlock], Sessions]:
    """Weekly campaigns to part of the active base; opening needs engagement, clicking satisfaction.
    A click opens a session on the campaign's channel."""
    pop, cal = state.pop, state.calendar
    blocks: list[EventBlock] = []
    click_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k, day in enumerate(cal.campaign_days):
        users = np.nonzero(state.alive[:, day] & (rng.random(len(pop)) < CAMPAIGN_REACH))[0]
        x, sat = state.log_engagement[users, day], state.satisfaction[users, day]
        channel = np.where(pop.campaign_sms[users], SMS, EMAIL).astype(np.int8)
        sent = cal.day_start_us[day] + seconds_us(9 * 3600 + rng.uniform(0.0, 7200.0, len(users)))
        opened = rng.random(len(users)) < sigmoid(-0.6 + 1.8 * x)
        open_ts = sent + seconds_us(np.clip(rng.lognormal(np.log(5400.0), 1.0, len(users)), 30.0, 3 * 86400.0))
        clicked = opened & (rng.random(len(users)) < sigmoid(-1.0 + 0.8 * x + 2.0 * (sat - 0.5)))
        click_ts = open_ts + seconds_us(rng.uniform(3.0, 240.0, len(users)))
        blocks.append(make_block(CODE["campaign_sent"], users, sent, channel, campaign=k))
        blocks.append(make_block(CODE["campaign_opened"], users[opened], open_ts[opened], channel[opened], campaign=k))
        click_parts.append((users[clicked], click_ts[clicked], channel[clicked]))
        n_before = first_session + sum(len(p[0]) for p in click_parts[:-1])
        numbers = n_before + np.arange(clicked.sum(), dtype=np.int64)
        blocks.append(make_block(CODE["campaign_clicked"], users[clicked], click_ts[clicked], channel[clicked], session=numbers, campaign=k))
    users = np.concatenate([p[0] for p in click_parts]) if click_parts else np.zeros(0, dtype=np.int64)
    ts = np.concatenate([p[1] for p in click_parts]) if click_parts else np.zeros(0, dtype=np.int64)
    channel = np.concatenate([p[2] for p in click_parts]) if click_parts else np.zeros(0, dtype=np.int8)
    return blocks, Sessions(user=users, day=cal.day_of(ts), start=ts + 2 * SECOND_US, channel=channel)


def _notification_emails(state: ChunkState, first_session: int, rng: np.random.Generator) -> tuple[list[EventBlock], Sessions]:
    """Transactional/notification e-mails opened at a rate ∝ engagement; some clicks start an email session."""
    pop, cal = state.pop, state.calendar
    counts = rng.poisson(NOTIFICATION_EMAIL_RATE * np.exp(state.log_engagement) * state.alive)
    users, days = expand_counts(counts)
    open_ts = times_near_preferred_hour(pop.preferred_hour[users], pop.hour_spread[users], cal.day_start_us[days], rng)
    clicked = np.nonzero(rng.random(len(users)) < 0.25 + 0.2 * state.satisfaction[users, days])[0]
    click_ts = open_ts[clicked] + seconds_us(rng.uniform(3.0, 120.0, len(clicked)))
    numbers = first_session + np.arange(len(clicked), dtype=np.int64)
    blocks = [
        make_block(CODE["email_open"], users, open_ts, EMAIL),
        make_block(CODE["email_click"], users[clicked], click_ts, EMAIL, session=numbers),
    ]
    channel = np.full(len(clicked), EMAIL, dtype=np.int8)
    return blocks, Sessions(user=users[clicked], day=days[clicked], start=click_ts + 2 * SECOND_US, channel=channel)


def _daily_events(state: ChunkState, etype: np.int8, rate: tuple[float, float], rng: np.random.Generator) -> EventBlock:
    """Support tickets / discount requests: a base rate plus a part that grows as satisfaction falls."""
    pop, cal = state.pop, state.calendar
    lam = (rate[0] + rate[1] * (1.0 - state.satisfaction) ** 2) * state.alive
    users, days = expand_counts(rng.poisson(lam))
    ts = times_near_preferred_hour(pop.preferred_hour[users], pop.hour_spread[users], cal.day_start_us[days], rng)
    channel = np.where(rng.random(len(users)) < pop.app_share[users], APP, WEB).astype(np.int8)
    return make_block(etype, users, ts, channel)


def _conversations(state: ChunkState, messages: PhrasePool, rng: np.random.Generator) -> tuple[EventBlock, int]:
    """Chat threads: the user writes (sentiment from satisfaction), an agent answers after seconds to hours."""
    pop, cal = state.pop, state.calendar
    lam = (CONVERSATION_RATE[0] + CONVERSATION_RATE[1] * (1.0 - state.satisfaction) ** 2) * state.alive
    users, days = expand_counts(rng.poisson(lam))
    n_conv = len(users)
    start = times_near_preferred_hour(pop.preferred_hour[users], pop.hour_spread[users], cal.day_start_us[days], rng)
    sat = state.satisfaction[users, days]
    mood_probs = np.stack([0.75 * (1.0 - sat) ** 2, np.zeros(n_conv), 0.65 * sat**2], axis=1)
    mood_probs[:, 1] = 1.0 - mood_probs[:, 0] - mood_probs[:, 2]
    mood = pick_categorical(rng, mood_probs)
    agent_median_s = rng.uniform(60.0, 2400.0, n_conv)

    n_messages = 2 * np.minimum(1 + rng.poisson(0.8, n_conv), 5)
    conv = np.repeat(np.arange(n_conv, dtype=np.int64), n_messages)
    position = np.arange(len(conv)) - np.repeat(np.cumsum(n_messages) - n_messages, n_messages)
    from_agent = position % 2 == 1
    response = np.clip(rng.lognormal(np.log(agent_median_s[conv]), 1.3), 5.0, 12 * 3600.0)
    follow_up = np.clip(rng.lognormal(np.log(180.0), 1.0, len(conv)), 10.0, 4 * 3600.0)
    delay = np.where(from_agent, response, np.where(position == 0, 0.0, follow_up))
    ts = start[conv] + seconds_us(group_cumsum(delay, n_messages))

    sentiment = np.where(rng.random(len(conv)) < 0.8, mood[conv], NEUTRAL)
    group = np.where(from_agent, AGENT, sentiment)
    etypes = np.where(from_agent, CODE["message_out"], CODE["message_in"]).astype(np.int8)
    block = make_block(CODE["message_in"], users[conv], ts, CHAT, conversation=conv, text=messages.pick(rng, group), etypes=etypes)
    return block, n_conv


def _reviews(state: ChunkState, events: EventBlock, user_end_us: np.ndarray, pools: ReviewPools, rng: np.random.Generator) -> ReviewRows:
    """Reviews after some purchases plus a few unprompted ones; the rating follows satisfaction."""
    pop, cal = state.pop, state.calendar
    purchases = np.nonzero((events.etype == CODE["purchase"]) & (rng.random(len(events)) < REVIEW_PER_PURCHASE))[0]
    after_purchase = events.ts[purchases] + seconds_us(np.clip(rng.exponential(2 * 86400.0, len(purchases)), 3600.0, None))

    first_day = np.maximum(pop.signup_day, 0)
    active_days = np.minimum(state.churn_day, cal.days) - first_day
    n_organic = rng.poisson(ORGANIC_REVIEWS_PER_90_DAYS * cal.days / 90.0, len(pop)) * (active_days > 0)
    organic_users = np.repeat(np.arange(len(pop)), n_organic)
    organic_days = first_day[organic_users] + (rng.random(len(organic_users)) * active_days[organic_users]).astype(np.int64)
    organic_ts = times_near_preferred_hour(
        pop.preferred_hour[organic_users], pop.hour_spread[organic_users], cal.day_start_us[organic_days], rng
    )

    users = np.concatenate([events.user[purchases].astype(np.int64), organic_users])
    ts = np.concatenate([after_purchase, organic_ts])
    keep = ts < user_end_us[users]
    users, ts = users[keep], ts[keep]
    sat = state.satisfaction[users, cal.day_of(ts)]
    rating = np.clip(np.round(1.0 + 4.0 * sat + rng.normal(0.0, 0.6, len(users))), 1, 5).astype(np.int64)
    topic = pick_categorical(rng, pop.topic_pref[users])
    second = np.where(rng.random(len(users)) < 0.45, rng.integers(0, REVIEW_TOPIC_COUNT, len(users)), -1)
    return ReviewRows(user=users, rating=rating, ts=ts, text=review_texts(pools, rating, topic, second, rng))

