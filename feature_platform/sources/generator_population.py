"""Who the synthetic users are and what they browse: profiles, latent traits and the listing catalog.

The latent traits (segment, engagement level, preferences) drive the event simulation and are also
written to the evaluation-only truth file, so tests can prove the signal in the raw data is real.
Everything here is drawn per user in one vectorised pass; nothing depends on chunking.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEGMENTS: tuple[str, ...] = ("loyal", "casual", "lapsing")
SEGMENT_SHARES = (0.30, 0.50, 0.20)
LOYAL, CASUAL, LAPSING = 0, 1, 2

CITIES: tuple[str, ...] = ("Lisbon", "Porto", "Madrid", "Barcelona", "Berlin", "Paris", "Milan", "Warsaw")
CITY_WEIGHTS = np.array([0.18, 0.10, 0.16, 0.14, 0.14, 0.12, 0.09, 0.07])

CATEGORIES: tuple[str, ...] = ("apartments", "cars", "electronics", "furniture", "jobs", "services", "fashion", "pets")
CATEGORY_WEIGHTS = np.array([0.12, 0.10, 0.18, 0.13, 0.08, 0.09, 0.20, 0.10])
# Price levels differ by orders of magnitude between categories (rent vs. a T-shirt).
CATEGORY_PRICE_MEDIAN = np.array([950.0, 9500.0, 280.0, 180.0, 2400.0, 60.0, 35.0, 150.0])
CATEGORY_PRICE_SIGMA = np.array([0.45, 0.70, 0.90, 0.70, 0.35, 0.60, 0.60, 0.80])

GENDERS: tuple[str, ...] = ("female", "male", "non_binary")
LOYALTY_LEVELS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
LOYALTY_BY_SEGMENT = np.array([[0.15, 0.30, 0.35, 0.20], [0.45, 0.35, 0.15, 0.05], [0.60, 0.30, 0.08, 0.02]])
DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
EDUCATION_LEVELS: tuple[str, ...] = ("high_school", "bachelor", "master", "phd")
REVIEW_TOPIC_COUNT = 6

PROFILE_NULL_SHARE = 0.01
PROFILE_FIELDS: tuple[str, ...] = ("age", "gender", "premium", "loyalty_status", "device", "location", "education", "signup_date")
HOME_CITY_IS_LOCATION = 0.85
SIGNUP_IN_WINDOW_SHARE = 0.08


@dataclass(frozen=True)
class Population:
    """All users of a run as parallel arrays (one row per user); `chunk` slices every array at once."""

    user_ids: pa.Array
    segment: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    premium: np.ndarray
    loyalty: np.ndarray
    device: np.ndarray
    location: np.ndarray
    education: np.ndarray
    signup_day: np.ndarray  # relative to the first window day; negative = before the window
    profile_null: np.ndarray  # (users, len(PROFILE_FIELDS)) bool: which profile cells are missing
    log_engagement_base: np.ndarray
    engagement_decay: np.ndarray  # per day, in log-engagement, after lapse_onset_day
    lapse_onset_day: np.ndarray
    engagement_noise: np.ndarray
    satisfaction_bias: np.ndarray
    preferred_hour: np.ndarray
    hour_spread: np.ndarray
    weekend_factor: np.ndarray
    app_share: np.ndarray
    category_pref: np.ndarray  # (users, len(CATEGORIES)), rows sum to 1
    home_city: np.ndarray
    price_preference: np.ndarray  # in per-category price z-scores: <0 budget, >0 premium
    ticket_size: np.ndarray
    cart_prob: np.ndarray
    buy_prob: np.ndarray
    browse_prob: np.ndarray
    pageview_mean: np.ndarray
    pageview_gap_s: np.ndarray
    campaign_sms: np.ndarray
    topic_pref: np.ndarray  # (users, REVIEW_TOPIC_COUNT)

    def __len__(self) -> int:
        return len(self.segment)

    def chunk(self, lo: int, hi: int) -> Population:
        return replace(self, **{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})


def id_strings(prefix: str, numbers: np.ndarray, width: int, missing: np.ndarray | None = None) -> pa.Array:
    """Zero-padded ids ("u000042") built in Arrow, so millions of ids cost no Python loop."""
    digits = pc.cast(pa.array(numbers.astype(np.int64), mask=missing), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width=width, padding="0"), "")


def pick_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) probability matrix (inverse CDF, vectorised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def make_population(users: int, days: int, rng: np.random.Generator) -> Population:
    """Draw every user's profile and latent traits; segment shifts most of them."""
    seg = rng.choice(3, size=users, p=SEGMENT_SHARES).astype(np.int8)

    def by_segment(values: tuple[float, float, float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[seg]

    lapsing = seg == LAPSING
    casual_decays = (seg == CASUAL) & (rng.random(users) < 0.15)
    tenure = np.ceil(rng.lognormal(np.log(by_segment((520.0, 260.0, 200.0))), 0.8))
    new_in_window = rng.random(users) < SIGNUP_IN_WINDOW_SHARE
    signup_day = np.where(new_in_window, rng.integers(0, max(days, 1), users), -tenure).astype(np.int32)

    # Preferred hour: morning, lunch or evening people.
    kind = rng.choice(3, size=users, p=(0.2, 0.25, 0.55))
    hour_center = np.array([8.0, 12.5, 20.0])[kind]
    hour_sd = np.array([1.0, 0.8, 1.5])[kind]
    preferred_hour = np.mod(rng.normal(hour_center, hour_sd), 24.0)

    # Category taste: a Dirichlet concentrated on 1-3 favourite categories.
    n_favourite = rng.integers(1, 4, users)
    rank = np.argsort(rng.random((users, len(CATEGORIES))), axis=1).argsort(axis=1)
    alpha = np.where(rank < n_favourite[:, None], 3.0, 0.15)
    gamma = rng.gamma(alpha)
    category_pref = gamma / gamma.sum(axis=1, keepdims=True)

    location = rng.choice(len(CITIES), size=users, p=CITY_WEIGHTS)
    device = rng.choice(len(DEVICES), size=users, p=(0.6, 0.3, 0.1))
    premium = rng.random(users) < by_segment((0.45, 0.15, 0.08))
    topic_gamma = rng.gamma(np.full((users, REVIEW_TOPIC_COUNT), 0.6))

    return Population(
        user_ids=id_strings("u", np.arange(1, users + 1), max(6, len(str(users)))),
        segment=seg,
        age=np.clip(np.round(rng.normal(by_segment((42.0, 35.0, 31.0)), by_segment((12.0, 12.0, 10.0)))), 18, 85).astype(np.int32),
        gender=rng.choice(len(GENDERS), size=users, p=(0.49, 0.48, 0.03)),
        premium=premium,
        loyalty=pick_categorical(rng, LOYALTY_BY_SEGMENT[seg]),
        device=device,
        location=location,
        education=rng.choice(len(EDUCATION_LEVELS), size=users, p=(0.35, 0.40, 0.20, 0.05)),
        signup_day=signup_day,
        profile_null=rng.random((users, len(PROFILE_FIELDS))) < PROFILE_NULL_SHARE,
        log_engagement_base=rng.normal(np.log(by_segment((1.15, 0.75, 0.9))), by_segment((0.25, 0.30, 0.25))),
        engagement_decay=np.where(lapsing, rng.uniform(0.02, 0.07, users), np.where(casual_decays, rng.uniform(0.01, 0.03, users), 0.0)),
        lapse_onset_day=np.where(lapsing, rng.uniform(-0.25, 0.55, users), rng.uniform(0.0, 0.5, users)) * days,
        engagement_noise=by_segment((0.08, 0.15, 0.12)),
        satisfaction_bias=rng.normal(by_segment((1.8, 1.1, 0.7)), 0.5),
        preferred_hour=preferred_hour,
        hour_spread=rng.uniform(0.8, 2.2, users),
        weekend_factor=rng.lognormal(0.0, 0.45, users),
        app_share=np.clip(np.array([0.75, 0.10, 0.50])[device] + rng.normal(0.0, 0.1, users), 0.0, 1.0),
        category_pref=category_pref,
        home_city=np.where(rng.random(users) < HOME_CITY_IS_LOCATION, location, rng.choice(len(CITIES), size=users, p=CITY_WEIGHTS)),
        price_preference=rng.normal(0.0, 0.8, users) + 0.5 * premium,
        ticket_size=rng.lognormal(np.log(by_segment((55.0, 35.0, 30.0))), 0.5),
        cart_prob=np.clip(by_segment((0.24, 0.13, 0.10)) * rng.lognormal(0.0, 0.3, users), 0.01, 0.6),
        buy_prob=np.clip(by_segment((0.55, 0.40, 0.30)) * rng.lognormal(0.0, 0.2, users), 0.05, 0.9),
        browse_prob=rng.beta(2.0, 2.5, users),
        pageview_mean=rng.uniform(2.0, 4.5, users),
        pageview_gap_s=rng.lognormal(np.log(100.0), 0.5, users),
        campaign_sms=rng.random(users) < 0.2,
        topic_pref=topic_gamma / topic_gamma.sum(axis=1, keepdims=True),
    )


@dataclass(frozen=True)
class Catalog:
    """Listings plus a (category, city) bucket index so biased sampling is a few array lookups."""

    listing_ids: pa.Array
    category: np.ndarray
    city: np.ndarray
    price: np.ndarray
    price_z: np.ndarray  # log-price z-score within the category
    is_premium: np.ndarray
    image_count: np.ndarray
    sorted_idx: np.ndarray  # listings ordered by (category, city)
    bucket_start: np.ndarray  # per category*len(CITIES)+city, into sorted_idx
    bucket_count: np.ndarray
    category_start: np.ndarray
    category_count: np.ndarray

    def __len__(self) -> int:
        return len(self.category)


def make_catalog(n_listings: int, rng: np.random.Generator) -> Catalog:
    """Listings with category-specific price levels; every category gets at least one listing."""
    category = rng.choice(len(CATEGORIES), size=n_listings, p=CATEGORY_WEIGHTS)
    category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))
    city = rng.choice(len(CITIES), size=n_listings, p=CITY_WEIGHTS)
    z = rng.normal(0.0, 1.0, n_listings)
    price = np.round(CATEGORY_PRICE_MEDIAN[category] * np.exp(CATEGORY_PRICE_SIGMA[category] * z), 2)
    is_premium = rng.random(n_listings) < 0.15
    image_count = np.clip(rng.poisson(np.where(is_premium, 10.0, 5.0)), 0, 20).astype(np.int32)

    n_buckets = len(CATEGORIES) * len(CITIES)
    bucket = category * len(CITIES) + city
    sorted_idx = np.argsort(bucket, kind="stable")
    bucket_count = np.bincount(bucket, minlength=n_buckets)
    category_count = np.bincount(category, minlength=len(CATEGORIES))
    return Catalog(
        listing_ids=id_strings("l", np.arange(1, n_listings + 1), max(6, len(str(n_listings)))),
        category=category,
        city=city,
        price=price,
        price_z=z,
        is_premium=is_premium,
        image_count=image_count,
        sorted_idx=sorted_idx,
        bucket_start=np.concatenate([[0], np.cumsum(bucket_count)[:-1]]),
        bucket_count=bucket_count,
        category_start=np.concatenate([[0], np.cumsum(category_count)[:-1]]),
        category_count=category_count,
    )


def pick_listings(catalog: Catalog, category: np.ndarray, city: np.ndarray, price_preference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A listing per request in the wanted (category, city), falling back to the category alone;
    of two candidates the one nearer the user's price preference wins most of the time."""
    bucket = category * len(CITIES) + city
    has_bucket = catalog.bucket_count[bucket] > 0
    start = np.where(has_bucket, catalog.bucket_start[bucket], catalog.category_start[category])
    count = np.where(has_bucket, catalog.bucket_count[bucket], catalog.category_count[category])
    first = catalog.sorted_idx[start + (rng.random(len(start)) * count).astype(np.int64)]
    second = catalog.sorted_idx[start + (rng.random(len(start)) * count).astype(np.int64)]
    second_fits_better = np.abs(catalog.price_z[second] - price_preference) < np.abs(catalog.price_z[first] - price_preference)
    return np.where(second_fits_better & (rng.random(len(start)) < 0.75), second, first)


def _with_nulls(values: pa.Array, missing: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)


def customers_table(pop: Population, window_start_epoch_day: int, schema: pa.Schema) -> pa.Table:
    """The public profile: latent traits stay out, ~1% of each optional field is missing."""
    null = pop.profile_null
    signup = pa.array((window_start_epoch_day + pop.signup_day).astype(np.int32), type=pa.date32())
    columns = [
        pop.user_ids,
        pa.array(pop.age, type=pa.int32()),
        pa.array(GENDERS).take(pa.array(pop.gender)),
        pa.array(pop.premium),
        pa.array(LOYALTY_LEVELS).take(pa.array(pop.loyalty)),
        pa.array(DEVICES).take(pa.array(pop.device)),
        pa.array(CITIES).take(pa.array(pop.location)),
        pa.array(EDUCATION_LEVELS).take(pa.array(pop.education)),
        signup,
    ]
    columns = [columns[0]] + [_with_nulls(col, null[:, i]) for i, col in enumerate(columns[1:])]
    return pa.Table.from_arrays(columns, schema=schema)


def listings_table(catalog: Catalog, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays(
        [
            catalog.listing_ids,
            pa.array(CATEGORIES).take(pa.array(catalog.category)),
            pa.array(CITIES).take(pa.array(catalog.city)),
            pa.array(catalog.price, type=pa.float64()),
            pa.array(catalog.is_premium),
            pa.array(catalog.image_count, type=pa.int32()),
        ],
        schema=schema,
    )
