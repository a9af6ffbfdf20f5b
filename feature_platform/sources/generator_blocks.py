"""Columnar building blocks of the event simulation: event codes, the EventBlock container, time helpers.

Events are simulated as parallel numpy arrays of small integer codes (user index, event-type code,
listing index, ...) and only turned into Arrow strings when a chunk is written, which keeps the
simulation vectorised and cheap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np

from feature_platform.sources.schema import EVENT_TYPES

CODE = {name: np.int8(i) for i, name in enumerate(EVENT_TYPES)}
CHANNELS: tuple[str, ...] = ("web", "app", "email", "sms", "chat")
WEB, APP, EMAIL, SMS, CHAT = (np.int8(i) for i in range(len(CHANNELS)))

SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US
DAY_US = 24 * HOUR_US
EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Calendar:
    """The data window: day starts in epoch microseconds, weekends, and the weekly campaign days."""

    start_date: dt.date
    days: int
    day_start_us: np.ndarray
    is_weekend: np.ndarray
    campaign_days: np.ndarray
    campaign_ids: tuple[str, ...]

    @property
    def start_us(self) -> int:
        return int(self.day_start_us[0])

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * DAY_US

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        """Window day index of timestamps, clipped into the window (used to look up latent state)."""
        return np.clip((ts - self.start_us) // DAY_US, 0, self.days - 1)


CAMPAIGN_WEEKDAY = 1  # Tuesday


def make_calendar(start_date: dt.date, days: int) -> Calendar:
    dates = [start_date + dt.timedelta(days=d) for d in range(days)]
    campaign_days = np.array([d for d, day in enumerate(dates) if day.weekday() == CAMPAIGN_WEEKDAY], dtype=np.int64)
    campaign_ids = tuple(f"cmp_{dates[d].isocalendar()[0]}_{dates[d].isocalendar()[1]:02d}" for d in campaign_days)
    first_us = (start_date - EPOCH).days * DAY_US
    return Calendar(
        start_date=start_date,
        days=days,
        day_start_us=first_us + np.arange(days, dtype=np.int64) * DAY_US,
        is_weekend=np.array([day.weekday() >= 5 for day in dates], dtype=bool),
        campaign_days=campaign_days,
        campaign_ids=campaign_ids,
    )


@dataclass(frozen=True)
class EventBlock:
    """Events as parallel arrays; -1 (or NaN for amount) marks an absent optional value."""

    user: np.ndarray  # index of the user within the chunk
    etype: np.ndarray  # code into EVENT_TYPES
    ts: np.ndarray  # epoch microseconds, int64
    channel: np.ndarray  # code into CHANNELS
    session: np.ndarray  # chunk-local session number
    amount: np.ndarray
    listing: np.ndarray  # index into the catalog
    conversation: np.ndarray  # chunk-local conversation number
    campaign: np.ndarray  # index into Calendar.campaign_ids
    text: np.ndarray  # index into the message phrase pool

    def __len__(self) -> int:
        return len(self.user)

    def select(self, index: np.ndarray) -> EventBlock:
        return EventBlock(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def make_block(
    etype: np.int8,
    user: np.ndarray,
    ts: np.ndarray,
    channel: np.ndarray | np.int8,
    *,
    session: np.ndarray | None = None,
    amount: np.ndarray | None = None,
    listing: np.ndarray | None = None,
    conversation: np.ndarray | None = None,
    campaign: np.ndarray | int | None = None,
    text: np.ndarray | None = None,
    etypes: np.ndarray | None = None,
) -> EventBlock:
    """One kind of event for many users; optional columns default to absent."""
    n = len(user)

    def column(values: np.ndarray | np.int8 | int | None, dtype: type, fill: float) -> np.ndarray:
        if values is None:
            return np.full(n, fill, dtype=dtype)
        return np.broadcast_to(np.asarray(values, dtype=dtype), (n,)).copy()

    return EventBlock(
        user=np.asarray(user, dtype=np.int32),
        etype=column(etypes if etypes is not None else etype, np.int8, 0),
        ts=np.asarray(ts, dtype=np.int64),
        channel=column(channel, np.int8, 0),
        session=column(session, np.int64, -1),
        amount=column(amount, np.float64, np.nan),
        listing=column(listing, np.int32, -1),
        conversation=column(conversation, np.int64, -1),
        campaign=column(campaign, np.int16, -1),
        text=column(text, np.int32, -1),
    )


def concat_blocks(blocks: list[EventBlock]) -> EventBlock:
    return EventBlock(**{f.name: np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(EventBlock)})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def seconds_us(seconds: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(seconds) * SECOND_US).astype(np.int64)


def group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at every group (groups laid out contiguously, sizes `counts`)."""
    if len(values) == 0:
        return values.astype(np.float64)
    total = np.cumsum(values, dtype=np.float64)
    ends = np.cumsum(counts)
    before = np.concatenate([[0.0], total])[ends - counts]  # running total before each group
    return total - np.repeat(before, counts)


def expand_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user, day) index of every unit in a (users, days) count matrix, in row-major order."""
    users, days = np.nonzero(counts)
    repeats = counts[users, days]
    return np.repeat(users, repeats), np.repeat(days, repeats)


def times_near_preferred_hour(hour: np.ndarray, spread: np.ndarray, day_start_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Timestamps within the given days, around each user's preferred hour (wrapping at midnight)."""
    h = np.mod(rng.normal(hour, spread), 24.0)
    return day_start_us + seconds_us(h * 3600.0)
