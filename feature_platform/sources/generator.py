"""Synthetic raw data in the platform's raw-input contract (customers, events, reviews, listings).

Why synthetic: the platform must be demonstrable and testable end to end without anyone's private
data, and the data must carry real signal (churn that follows declining engagement, contacts that
follow category/city/price affinity, review text that follows the rating) so that the features and
models built on it can be checked. The generative story is documented in docs/sample-data.md.

Guarantees: output files have exactly the Arrow schema of their `RawTable`; the same config gives
byte-identical files (fixed chunk size, one seeded RNG stream per chunk, no wall clock); memory stays
bounded because events are simulated and streamed to disk one chunk of users at a time; every file
appears atomically (temp file in the same folder, then `os.replace`).

`_truth/users.parquet` holds the latent story per user (segment, churn, preferences). It is for
evaluating features and models only; the platform never reads it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feature_platform.sources.generator_activity import ChunkResult, simulate_chunk
from feature_platform.sources.generator_blocks import CHANNELS, EPOCH, make_calendar
from feature_platform.sources.generator_population import (
    CATEGORIES,
    CITIES,
    SEGMENTS,
    Population,
    customers_table,
    id_strings,
    listings_table,
    make_catalog,
    make_population,
)
from feature_platform.sources.generator_text import message_pool, review_pools
from feature_platform.sources.schema import CUSTOMERS, EVENT_TYPES, EVENTS, LISTINGS, REVIEWS

FILE_FORMATS: tuple[str, ...] = ("parquet", "csv")
CHUNK_USERS = 10_000  # fixed: part of what makes output identical for identical configs
TRUTH_DIR = "_truth"
_STREAM_USERS, _STREAM_LISTINGS, _STREAM_CHUNKS = 0, 1, 2
_EVENT_ID_WIDTH, _SESSION_ID_WIDTH, _CONVERSATION_ID_WIDTH, _REVIEW_ID_WIDTH = 10, 9, 8, 8


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """What to generate; identical configs give byte-identical files."""

    users: int = field(default=2000, metadata={"description": "Number of users (customers/leads)."})
    days: int = field(default=90, metadata={"description": "Length of the data window in days."})
    end_date: dt.date = field(metadata={"description": "Last day with data (inclusive), UTC."})
    seed: int = field(default=7, metadata={"description": "Seed of every random draw."})
    file_format: str = field(default="parquet", metadata={"description": "parquet or csv."})

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ValueError(f"users and days must be >= 1, got users={self.users}, days={self.days}")
        if self.file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {self.file_format!r}")

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    rows: dict[str, int]
    seconds: float
    start_date: dt.date
    end_date: dt.date


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


class _TableWriter:
    """Appends Arrow tables to one Parquet or CSV file."""

    def __init__(self, path: Path, schema: pa.Schema, file_format: str) -> None:
        self._schema = schema
        if file_format == "parquet":
            self._writer: pq.ParquetWriter | pacsv.CSVWriter = pq.ParquetWriter(path, schema, compression="snappy")
        else:
            self._writer = pacsv.CSVWriter(path, schema)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table.cast(self._schema))

    def close(self) -> None:
        self._writer.close()


@contextmanager
def _atomic_writer(path: Path, schema: pa.Schema, file_format: str) -> Iterator[_TableWriter]:
    """Readers see either the previous file or the complete new one, never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    writer = _TableWriter(tmp, schema, file_format)
    try:
        yield writer
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def _write_table(path: Path, table: pa.Table, file_format: str) -> None:
    with _atomic_writer(path, table.schema, file_format) as writer:
        writer.write(table)


def generate(config: GeneratorConfig, out_dir: Path, progress: Callable[[str], None] | None = None) -> GenerationSummary:
    """Write customers, listings, events and reviews (plus the truth file) for `config` into `out_dir`."""
    started = time.perf_counter()
    report = progress or (lambda _line: None)
    out_dir = Path(out_dir)
    (out_dir / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    ext = config.file_format
    calendar = make_calendar(config.start_date, config.days)
    window_start_epoch_day = (config.start_date - EPOCH).days

    pop = make_population(config.users, config.days, _rng(config.seed, _STREAM_USERS))
    catalog = make_catalog(max(50, config.users // 10), _rng(config.seed, _STREAM_LISTINGS))
    rows: dict[str, int] = {}
    _write_table(out_dir / f"customers.{ext}", customers_table(pop, window_start_epoch_day, CUSTOMERS.arrow_schema), ext)
    rows["customers"] = len(pop)
    _write_table(out_dir / f"listings.{ext}", listings_table(catalog, LISTINGS.arrow_schema), ext)
    rows["listings"] = len(catalog)
    report(f"customers: {len(pop)} rows, listings: {len(catalog)} rows")

    messages, pools = message_pool(), review_pools()
    counters = {"events": 0, "sessions": 0, "conversations": 0}
    review_parts: list[pa.Table] = []
    churn_days: list[np.ndarray] = []
    last_engagement: list[np.ndarray] = []
    with _atomic_writer(out_dir / f"events.{ext}", EVENTS.arrow_schema, ext) as writer:
        for chunk_index, lo in enumerate(range(0, config.users, CHUNK_USERS)):
            hi = min(lo + CHUNK_USERS, config.users)
            chunk = pop.chunk(lo, hi)
            result = simulate_chunk(chunk, catalog, calendar, messages, pools, _rng(config.seed, _STREAM_CHUNKS, chunk_index))
            writer.write(_events_table(result, chunk, catalog.listing_ids, calendar.campaign_ids, messages.texts, counters))
            review_parts.append(_review_part(result, chunk))
            churn_days.append(result.churn_day)
            last_engagement.append(result.last_engagement)
            report(f"events: users {hi}/{config.users} ({counters['events'] / 1e6:.2f}M events)")
    rows["events"] = counters["events"]

    reviews = _reviews_table(pa.concat_tables(review_parts))
    _write_table(out_dir / f"reviews.{ext}", reviews, ext)
    rows["reviews"] = reviews.num_rows
    truth = _truth_table(pop, calendar.days, window_start_epoch_day, np.concatenate(churn_days), np.concatenate(last_engagement))
    _write_table(out_dir / TRUTH_DIR / "users.parquet", truth, "parquet")
    seconds = time.perf_counter() - started
    report(f"reviews: {rows['reviews']} rows; done in {seconds:.1f} s")
    return GenerationSummary(out_dir=out_dir, rows=rows, seconds=seconds, start_date=config.start_date, end_date=config.end_date)


def _events_table(
    result: ChunkResult, chunk: Population, listing_ids: pa.Array, campaign_ids: tuple[str, ...], texts: pa.Array, counters: dict[str, int]
) -> pa.Table:
    """Codes → strings, chunk-local numbers → global ids (counters carry across chunks)."""
    ev = result.events
    n = len(ev)

    def lookup(values: pa.Array, index: np.ndarray) -> pa.Array:
        return values.take(pa.array(index, type=pa.int64(), mask=index < 0))

    columns = [
        id_strings("e", counters["events"] + 1 + np.arange(n), _EVENT_ID_WIDTH),
        lookup(chunk.user_ids, ev.user.astype(np.int64)),
        lookup(pa.array(EVENT_TYPES), ev.etype.astype(np.int64)),
        pa.array(ev.ts, type=pa.timestamp("us")),
        id_strings("s", counters["sessions"] + 1 + ev.session, _SESSION_ID_WIDTH, missing=ev.session < 0),
        lookup(pa.array(CHANNELS), ev.channel.astype(np.int64)),
        pa.array(ev.amount, type=pa.float64(), from_pandas=True),
        lookup(listing_ids, ev.listing.astype(np.int64)),
        id_strings("c", counters["conversations"] + 1 + ev.conversation, _CONVERSATION_ID_WIDTH, missing=ev.conversation < 0),
        lookup(pa.array(campaign_ids, type=pa.string()), ev.campaign.astype(np.int64)),
        lookup(texts, ev.text.astype(np.int64)),
    ]
    counters["events"] += n
    counters["sessions"] += result.n_sessions
    counters["conversations"] += result.n_conversations
    return pa.Table.from_arrays(columns, schema=EVENTS.arrow_schema)


def _review_part(result: ChunkResult, chunk: Population) -> pa.Table:
    r = result.reviews
    return pa.table(
        {
            "user_id": chunk.user_ids.take(pa.array(r.user, type=pa.int64())),
            "rating": pa.array(r.rating, type=pa.int32()),
            "text": r.text,
            "timestamp": pa.array(r.ts, type=pa.timestamp("us")),
        }
    )


def _reviews_table(parts: pa.Table) -> pa.Table:
    """Reviews of all chunks in time order, numbered after sorting."""
    parts = parts.sort_by([("timestamp", "ascending"), ("user_id", "ascending")])
    review_id = id_strings("r", np.arange(1, parts.num_rows + 1), _REVIEW_ID_WIDTH)
    return pa.Table.from_arrays(
        [review_id, parts["user_id"], parts["rating"], parts["text"], parts["timestamp"]], schema=REVIEWS.arrow_schema
    )


def _truth_table(pop: Population, days: int, window_start_epoch_day: int, churn_day: np.ndarray, last_engagement: np.ndarray) -> pa.Table:
    """Latent story per user, for evaluation only (never read by the platform)."""
    churned = churn_day < days
    top = np.argsort(-pop.category_pref, axis=1, kind="stable")
    return pa.table(
        {
            "user_id": pop.user_ids,
            "segment": pa.array(SEGMENTS).take(pa.array(pop.segment.astype(np.int64))),
            "churned": pa.array(churned),
            "churn_date": pa.array((window_start_epoch_day + churn_day).astype(np.int32), type=pa.date32(), mask=~churned),
            "signup_date": pa.array((window_start_epoch_day + pop.signup_day).astype(np.int32), type=pa.date32()),
            "base_engagement": np.exp(pop.log_engagement_base),
            "engagement_decay_per_day": pop.engagement_decay,
            "lapse_onset_day": pop.lapse_onset_day,
            "last_engagement": last_engagement,
            "base_satisfaction": 1.0 / (1.0 + np.exp(-pop.satisfaction_bias)),
            "preferred_hour": pop.preferred_hour,
            "hour_spread": pop.hour_spread,
            "weekend_factor": pop.weekend_factor,
            "app_share": pop.app_share,
            "top_category": pa.array(CATEGORIES).take(pa.array(top[:, 0])),
            "top_category_weight": pop.category_pref[np.arange(len(pop)), top[:, 0]],
            "second_category": pa.array(CATEGORIES).take(pa.array(top[:, 1])),
            "home_city": pa.array(CITIES).take(pa.array(pop.home_city)),
            "price_preference": pop.price_preference,
            "ticket_size": pop.ticket_size,
            "cart_probability": pop.cart_prob,
            "buy_probability": pop.buy_prob,
            "browse_probability": pop.browse_prob,
            "campaign_channel": pa.array(np.where(pop.campaign_sms, "sms", "email")),
        }
    )
