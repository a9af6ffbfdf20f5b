"""Sessions turned into events: login, page views, listing browsing (impression → view → contact /
favourite) and the shopping funnel (add_to_cart → purchase).

Probabilities depend on the user's latent traits and on their satisfaction that day, so behaviour
inside sessions (not only how many sessions there are) shifts as a user drifts towards churn.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from feature_platform.sources.generator_blocks import (
    APP,
    CODE,
    EMAIL,
    WEB,
    Calendar,
    EventBlock,
    group_cumsum,
    make_block,
    seconds_us,
    sigmoid,
)
from feature_platform.sources.generator_population import (
    CATEGORY_WEIGHTS,
    CITIES,
    CITY_WEIGHTS,
    Catalog,
    Population,
    pick_categorical,
    pick_listings,
)

MAX_PAGE_VIEWS = 15
MAX_SESSION_SECONDS = 35 * 60
LOGIN_PROBABILITY_BY_CHANNEL = np.array([0.45, 0.25, 0.15, 0.15, 0.10])  # web, app, email, sms, chat
IMPRESSIONS_MEAN = 2.5
MAX_IMPRESSIONS = 12
HOME_CITY_BROWSING = 0.75
FORM_SUBMIT_PROBABILITY = 0.03
ORDER_EMAIL_OPEN_PROBABILITY = 0.5


@dataclass(frozen=True)
class ChunkState:
    """Everything the per-event draws of one chunk of users condition on."""

    pop: Population
    catalog: Catalog
    calendar: Calendar
    log_engagement: np.ndarray  # (users, days)
    satisfaction: np.ndarray  # (users, days), in (0, 1)
    alive: np.ndarray  # (users, days): signed up and not yet churned
    churn_day: np.ndarray  # (users,), == days when the user did not churn in the window
    category_mix: np.ndarray  # (users, categories): browsing distribution


@dataclass(frozen=True)
class Sessions:
    user: np.ndarray
    day: np.ndarray
    start: np.ndarray  # epoch microseconds
    channel: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def concat_sessions(parts: list[Sessions]) -> Sessions:
    return Sessions(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Sessions)})


def organic_sessions(state: ChunkState, rng: np.random.Generator, rate: float) -> Sessions:
    """Poisson sessions per user-day, rate ∝ engagement × the user's weekend factor, near their hour."""
    pop, cal = state.pop, state.calendar
    weekday_factor = np.where(cal.is_weekend[None, :], pop.weekend_factor[:, None], 1.0)
    lam = rate * np.exp(state.log_engagement) * weekday_factor * state.alive
    counts = rng.poisson(lam)
    user, day = np.nonzero(counts)
    repeats = counts[user, day]
    user, day = np.repeat(user, repeats), np.repeat(day, repeats)
    hour = np.mod(rng.normal(pop.preferred_hour[user], pop.hour_spread[user]), 24.0)
    start = cal.day_start_us[day] + seconds_us(hour * 3600.0)
    channel = np.where(rng.random(len(user)) < pop.app_share[user], APP, WEB).astype(np.int8)
    return Sessions(user=user, day=day, start=start, channel=channel)


def session_events(sessions: Sessions, state: ChunkState, rng: np.random.Generator) -> list[EventBlock]:
    """All in-session events; the session number of a session is its position in `sessions`."""
    pop = state.pop
    u = sessions.user
    number = np.arange(len(sessions), dtype=np.int64)
    sat = state.satisfaction[u, sessions.day]
    blocks: list[EventBlock] = []

    login = rng.random(len(u)) < LOGIN_PROBABILITY_BY_CHANNEL[sessions.channel]
    blocks.append(make_block(CODE["login"], u[login], sessions.start[login], sessions.channel[login], session=number[login]))

    # Page views spaced by exponential gaps (seconds to minutes); long sessions are compressed.
    n_views = np.minimum(1 + rng.poisson(pop.pageview_mean[u]), MAX_PAGE_VIEWS)
    view_session = np.repeat(number, n_views)
    gaps = np.clip(rng.exponential(1.0, len(view_session)) * pop.pageview_gap_s[u[view_session]], 2.0, 900.0)
    offsets = group_cumsum(gaps, n_views)
    duration = offsets[np.cumsum(n_views) - 1] + 20.0
    scale = np.minimum(1.0, MAX_SESSION_SECONDS / duration)
    duration = duration * scale
    offsets = offsets * scale[view_session]
    blocks.append(_in_session(CODE["page_view"], sessions, view_session, offsets))

    blocks.extend(_listing_events(sessions, state, duration, sat, rng))
    blocks.extend(_funnel_events(sessions, state, duration, sat, rng))

    form = np.nonzero(rng.random(len(u)) < FORM_SUBMIT_PROBABILITY)[0]
    blocks.append(_in_session(CODE["form_submit"], sessions, form, rng.uniform(0.1, 1.0, len(form)) * duration[form]))
    return blocks


def _in_session(etype: np.int8, sessions: Sessions, index: np.ndarray, offset_s: np.ndarray, **optional: np.ndarray) -> EventBlock:
    return make_block(
        etype,
        sessions.user[index],
        sessions.start[index] + seconds_us(offset_s),
        sessions.channel[index],
        session=index.astype(np.int64),
        **optional,
    )


def _listing_events(sessions: Sessions, state: ChunkState, duration: np.ndarray, sat: np.ndarray, rng: np.random.Generator) -> list[EventBlock]:
    """Impressions biased to the user's categories, home city and price level; views, contacts and
    favourites follow a logistic of how well the listing matches the user."""
    pop, catalog = state.pop, state.catalog
    browsing = rng.random(len(sessions)) < pop.browse_prob[sessions.user]
    n_imp = np.where(browsing, np.minimum(1 + rng.poisson(IMPRESSIONS_MEAN, len(sessions)), MAX_IMPRESSIONS), 0)
    imp_session = np.repeat(np.arange(len(sessions)), n_imp)
    iu = sessions.user[imp_session]
    category = pick_categorical(rng, state.category_mix[iu])
    other_city = rng.choice(len(CITIES), size=len(iu), p=CITY_WEIGHTS)
    city = np.where(rng.random(len(iu)) < HOME_CITY_BROWSING, pop.home_city[iu], other_city)
    listing = pick_listings(catalog, category, city, pop.price_preference[iu], rng)
    imp_offset = rng.random(len(iu)) * 0.9 * duration[imp_session]

    category_weight = pop.category_pref[iu, catalog.category[listing]]
    city_match = catalog.city[listing] == pop.home_city[iu]
    price_fit = -np.minimum(np.abs(catalog.price_z[listing] - pop.price_preference[iu]), 3.0)
    images = np.minimum(catalog.image_count[listing], 15)
    premium = catalog.is_premium[listing]
    imp_sat = sat[imp_session]

    viewed = rng.random(len(iu)) < 0.22 + 0.35 * category_weight + 0.05 * premium
    view_offset = imp_offset + rng.uniform(2.0, 25.0, len(iu))
    contact_logit = -4.4 + 2.6 * category_weight + 0.9 * city_match + 0.8 * price_fit + 0.5 * premium + 0.06 * images + 1.0 * (imp_sat - 0.5)
    favourite_logit = -3.3 + 1.8 * category_weight + 0.3 * city_match + 0.4 * price_fit + 0.3 * premium + 0.05 * images
    contacted = viewed & (rng.random(len(iu)) < sigmoid(contact_logit))
    favourited = viewed & (rng.random(len(iu)) < sigmoid(favourite_logit))

    def listing_block(etype: np.int8, mask: np.ndarray, offset: np.ndarray) -> EventBlock:
        return _in_session(etype, sessions, imp_session[mask], offset[mask], listing=listing[mask])

    return [
        listing_block(CODE["impression"], np.ones(len(iu), dtype=bool), imp_offset),
        listing_block(CODE["listing_viewed"], viewed, view_offset),
        listing_block(CODE["listing_contact_clicked"], contacted, view_offset + rng.uniform(10.0, 120.0, len(iu))),
        listing_block(CODE["listing_favorited"], favourited, view_offset + rng.uniform(5.0, 60.0, len(iu))),
    ]


def _funnel_events(sessions: Sessions, state: ChunkState, duration: np.ndarray, sat: np.ndarray, rng: np.random.Generator) -> list[EventBlock]:
    """add_to_cart → purchase with per-user probabilities damped by low satisfaction; lognormal
    amounts around the user's ticket size; an order e-mail that is often opened."""
    pop = state.pop
    u = sessions.user
    cart = rng.random(len(u)) < pop.cart_prob[u] * (0.6 + 0.8 * sat)
    buy = cart & (rng.random(len(u)) < np.minimum(pop.buy_prob[u] * (0.5 + sat), 0.95))
    cart_offset = rng.uniform(0.3, 0.9, len(u)) * duration
    buy_offset = cart_offset + rng.uniform(15.0, 240.0, len(u))
    amount = np.round(rng.lognormal(np.log(pop.ticket_size[u]), 0.45), 2)
    carts, buys = np.nonzero(cart)[0], np.nonzero(buy)[0]

    mail = buys[rng.random(len(buys)) < ORDER_EMAIL_OPEN_PROBABILITY]
    mail_ts = sessions.start[mail] + seconds_us(buy_offset[mail] + rng.lognormal(np.log(900.0), 1.0, len(mail)))
    return [
        _in_session(CODE["add_to_cart"], sessions, carts, cart_offset[carts]),
        _in_session(CODE["purchase"], sessions, buys, buy_offset[buys], amount=amount[buys]),
        make_block(CODE["email_open"], u[mail], mail_ts, EMAIL),
    ]


def category_mix(pop: Population) -> np.ndarray:
    """Browsing mixes the user's taste with overall category popularity."""
    return 0.85 * pop.category_pref + 0.15 * CATEGORY_WEIGHTS[None, :]
