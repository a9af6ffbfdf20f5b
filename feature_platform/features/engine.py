"""The tile engine: per-day partial aggregates (tiles) per family, merged into snapshots over a range.

Two steps per family (a module with ``tile`` and ``snapshots``, see :class:`FamilyModule`):

1. ``tile(ctx)``: ONE day's raw events (plus the unpartitioned listings and reviews) become one row
   per user with partial aggregates - counts, sums, first/last timestamps, per-hour histograms,
   decayed weights, and lists of per-entity partials (sessions, conversations, campaigns, ...). A
   tile sees nothing outside its day, so a late event for day X changes tile X only.
2. ``snapshots(ctx)``: the snapshots of a range of days, merged from the tiles of their windows
   (:mod:`feature_platform.features.windows`): the tiles of D-89 .. D for a 90-day family, every
   tile up to D for an all-history one. The whole range is computed in one pass over the tiles.

Users are processed in blocks of at most ``block_users`` (sorted by user_id), so memory follows the
block size and the window, not the number of users. A snapshot holds one row per user known at D
(signup_date null or <= D), sorted by user_id, exactly the registry's columns (:func:`conform`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.features.base import conform, family_module
from feature_platform.features.windows import RowSet, micros
from feature_platform.offline.store import OfflineStore, WriteResult, connect, parquet_rows
from feature_platform.registry.registry import Family, Registry
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS

log = logging.getLogger(__name__)

ALL_HISTORY = None  # a family's LOOKBACK for features over everything before D+1
DEFAULT_BLOCK_USERS = 100_000  # users merged at a time: memory follows the block, not the user count
MERGE_WORKERS = 2  # blocks merged at a time (the numpy and DuckDB work releases the GIL)
MIN_SHARED_BLOCK = 20_000  # fewer users than this are not worth splitting across workers
DAY_ROWS_IN_FLIGHT = 4_000_000  # snapshot rows (users x days) a run holds before writing them
TILE_PREFIX = "tiles"
TILE_ROW_GROUP = 16_384  # rows per Parquet row group: a block of users reads only its row groups
TILE_BATCH_EVENTS = 2_000_000  # raw events per tile query: bounds a backfill's memory
TILE_WORKERS = 2  # tile queries in flight (each single-threaded)


def tile_table(family: Family) -> str:
    """Offline-store table of a family's tiles: ``tiles/<family>``."""
    return f"{TILE_PREFIX}/{family.name}"


# --------------------------------------------------------------------------------------- tiles
@dataclass
class TileContext:
    """What a batch of tiles sees: ``events`` and ``reviews`` of its days, every row with its ``day``
    (UTC date), and all ``listings``. A family's ``tile`` groups by (user_id, day), and a row of day X
    must depend on rows of day X only: computing X alone or in any batch gives the same tile."""

    con: duckdb.DuckDBPyConnection
    days: list[dt.date]
    config: Mapping[str, Any]
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def sql(self, query: str, **params: Any) -> duckdb.DuckDBPyRelation:
        """Run ``query`` with the parameters it mentions."""
        return self.con.sql(query, params={k: v for k, v in params.items() if f"${k}" in query})


class FamilyModule(Protocol):
    """What a family module provides; a family without a time window (profile) has no tile functions."""

    LOOKBACK: int | None  # days a snapshot merges (90), or ALL_HISTORY

    def tile_schema(self, config: Mapping[str, Any]) -> pa.Schema: ...

    def tile(self, ctx: TileContext) -> pa.Table: ...

    def snapshots(self, ctx: MergeContext) -> Iterator[dict[str, pa.Array]]: ...


def has_tiles(family: Family) -> bool:
    """Families with no time dimension (profile) are computed from the customers table alone."""
    return hasattr(family_module(family), "tile")


class TileBuilder:
    """Computes the tiles of a batch of days on one single-threaded DuckDB connection.

    One thread keeps float sums in a fixed order (each day's events sorted by timestamp, event_id),
    so a tile's bytes depend only on its day's data, never on the batch it was computed in.
    """

    def __init__(self, listings: pa.Table | None = None, reviews: pa.Table | None = None) -> None:
        self.con = connect(threads=1)
        self.con.from_arrow(_as(listings, LISTINGS.arrow_schema)).create("listings")
        self.con.from_arrow(_as(reviews, REVIEWS.arrow_schema)).create("all_reviews")
        self.days: list[dt.date] = []

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> TileBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, days: Sequence[dt.date], events: pa.Table | Sequence[str] | None,
             history_start: dt.date | None = None) -> None:
        """Make ``events`` and ``reviews`` the rows of ``days``; ``events`` is a table or Parquet files.

        The reviews dated before ``history_start`` count as that day's (the first tile of a history)."""
        self.days = sorted(days)
        params: dict[str, Any] = {"days": self.days}
        if events is None or isinstance(events, pa.Table):
            self.con.register("batch_events", _as(events, EVENTS.arrow_schema))
            source = "batch_events"
        else:
            source, params["files"] = "read_parquet($files)", list(events)
        # Loading and sorting is value-neutral (event ids are unique): every core may help.
        self.con.execute("SET threads = ?", [os.cpu_count() or 1])
        try:
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE events AS SELECT {', '.join(EVENTS.column_names)}, "
                f"CAST(timestamp AS DATE) AS day FROM {source} "
                "WHERE list_contains($days, CAST(timestamp AS DATE)) ORDER BY timestamp, event_id", params)
        finally:
            self.con.execute("SET threads = 1")
            if source == "batch_events":
                self.con.unregister("batch_events")
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE reviews AS SELECT * FROM ("
            "  SELECT *, CASE WHEN CAST(timestamp AS DATE) < $start THEN $start ELSE CAST(timestamp AS DATE) END AS day"
            "  FROM all_reviews) WHERE list_contains($days, day) ORDER BY timestamp, review_id",
            {"days": self.days, "start": history_start or dt.date.min},
        )

    def tiles(self, family: Family, artifacts: Mapping[str, Any] | None = None) -> dict[dt.date, pa.Table]:
        """The family's tile of each loaded day (every day, empty when it has no data), sorted by user_id."""
        ctx = TileContext(con=self.con, days=self.days, config=family.config, artifacts=artifacts or {})
        table = family_module(family).tile(ctx)
        table = table.sort_by([("day", "ascending"), ("user_id", "ascending")])
        days = table.column("day").to_numpy(zero_copy_only=False)
        out = {}
        for day in self.days:
            lo = int(np.searchsorted(days, np.datetime64(day, "D"), "left"))
            hi = int(np.searchsorted(days, np.datetime64(day, "D"), "right"))
            out[day] = table.slice(lo, hi - lo).combine_chunks()
        return out


def _as(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    return schema.empty_table() if table is None else table.select(schema.names).cast(schema)


# --------------------------------------------------------------------------------------- merge
class TileSource(Protocol):
    def register(self, con: duckdb.DuckDBPyConnection, family: Family, first: dt.date | None, last: dt.date,
                 name: str) -> bool:
        """Create view ``name`` over the tiles of ``family`` with first <= day <= last (first None: from
        the start); False when there is no tile in the range."""
        ...


class MissingTilesError(RuntimeError):
    """Snapshots asked for days whose raw events exist but whose tiles were never computed."""


@dataclass
class StoreTiles:
    """Tiles from the offline store: ``tiles/<family>/<YYYY-MM-DD>.parquet``.

    A day with a raw/events partition but no tile would silently count as a day without events, so
    reading it is an error that names the days to materialize.
    """

    store: OfflineStore

    def register(self, con: duckdb.DuckDBPyConnection, family: Family, first: dt.date | None, last: dt.date,
                 name: str) -> bool:
        start, end = first.isoformat() if first else None, last.isoformat()
        table = tile_table(family)
        files = self.store.partition_files(table, start, end)
        have = {f.stem for f in files}
        missing = [p.stem for p in self.store.partition_files("raw/events", start, end) if p.stem not in have]
        if missing:
            span = missing[0] if len(missing) == 1 else f"{missing[0]} .. {missing[-1]} ({len(missing)} days)"
            raise MissingTilesError(
                f"{table} has no tiles for {span}, which raw/events has: materialize {table} for those days "
                f"first (e.g. `feature-platform backfill --start {missing[0]} --end {missing[-1]} --assets tiles`)")
        if not files:
            return False
        con.sql("SELECT * FROM read_parquet($files)", params={"files": [str(f) for f in files]}).create_view(name)
        return True


@dataclass
class MemoryTiles:
    """Tiles held in memory, by day (tests, single-user recomputation)."""

    tiles: Mapping[dt.date, pa.Table]

    def register(self, con: duckdb.DuckDBPyConnection, family: Family, first: dt.date | None, last: dt.date,
                 name: str) -> bool:
        parts = [t for d, t in sorted(self.tiles.items()) if (first is None or d >= first) and d <= last]
        if not parts:
            return False
        con.register(name, pa.concat_tables(parts))
        return True


@dataclass
class MergeContext:
    """One block of users and the output days, with the tile rows their windows need.

    ``con`` holds table ``tiles``: the tile rows of the block's users, with ``user_index`` (index into
    ``users``) and ``day`` (days since the epoch) instead of user_id and the date. ``days`` are the
    output days, as days since the epoch, ascending.
    """

    users: pa.Array
    customers: pa.Table  # the block's customer rows, in ``users`` order
    days: list[int]
    config: Mapping[str, Any]
    con: duckdb.DuckDBPyConnection | None = None  # None: no tile rows at all
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.users)

    def user_rows(self, columns: Mapping[str, Callable[[pa.ChunkedArray], np.ndarray] | None]) -> RowSet:
        """A RowSet with one group per user (group = user index) and the given tile columns.

        ``columns`` maps a tile column to a converter (None: plain numpy; timestamps: microseconds)."""
        owners = np.arange(self.n, dtype=np.int64)
        if self.con is None:
            empty = np.zeros(0, np.int64)
            return RowSet(empty, empty, owners, {name: np.zeros(0) for name in columns})
        names = ", ".join(f'"{name}"' for name in columns)
        table = self.con.sql(f"SELECT user_index, day, {names} FROM tiles ORDER BY user_index, day").to_arrow_table()
        data = {name: _convert(table.column(name), convert) for name, convert in columns.items()}
        return RowSet(_ints(table.column("user_index")), _ints(table.column("day")), owners, data)

    def entity_rows(
        self, list_column: str, key: str | None, fields: Mapping[str, Callable[[pa.Array], np.ndarray] | None]
    ) -> tuple[RowSet, np.ndarray]:
        """A RowSet with one group per (user, ``key``) of the list<struct> tile column ``list_column``
        (``key`` None: a list of plain values, each value its own group). Groups are ordered by user,
        then key (byte order). Returns the RowSet and each group's key."""
        if self.con is None:
            empty = np.zeros(0, np.int64)
            return RowSet(empty, empty, empty, {f: np.zeros(0) for f in fields}), np.zeros(0, object)
        key_sql = "e" if key is None else f'e."{key}"'
        values = "".join(f', e."{f}" AS "{f}"' for f in fields)
        table = self.con.sql(
            f"""
            SELECT user_index, day, {key_sql} AS key {values}
            FROM (SELECT user_index, day, unnest("{list_column}") AS e FROM tiles)
            ORDER BY user_index, key, day
            """
        ).to_arrow_table()
        user_index, keys = _ints(table.column("user_index")), table.column("key").combine_chunks()
        if len(user_index) == 0:
            empty = np.zeros(0, np.int64)
            return RowSet(empty, empty, empty, {f: np.zeros(0) for f in fields}), np.zeros(0, object)
        same_key = pc.equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
        starts = np.r_[True, (user_index[1:] != user_index[:-1]) | ~same_key]
        group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        data = {name: _convert(table.column(name), convert) for name, convert in fields.items()}
        return RowSet(group, _ints(table.column("day")), user_index[first], data), \
            keys.take(pa.array(first)).to_numpy(zero_copy_only=False)


def _ints(values: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def _convert(values: pa.Array | pa.ChunkedArray, convert: Callable[[Any], np.ndarray] | None) -> np.ndarray:
    if convert is not None:
        return convert(values)
    if pa.types.is_timestamp(values.type):
        return micros(values)
    return values.to_numpy(zero_copy_only=False)


def compute_snapshots(
    registry: Registry,
    family: Family,
    customers: pa.Table,
    tiles: TileSource | None,
    days: Sequence[dt.date],
    artifacts: Mapping[str, Any] | None = None,
    block_users: int = DEFAULT_BLOCK_USERS,
    workers: int = MERGE_WORKERS,
) -> Iterator[tuple[dt.date, pa.Table, int]]:
    """Yield (day, snapshot, users known at day) for each of ``days`` (ascending, consecutive or not).

    Users are split into blocks of at most ``block_users`` (and into at least ``workers`` blocks when
    there are enough users to share), merged ``workers`` at a time: blocks are independent, so how
    users are split never changes a value. Days are merged a bounded number at a time, so memory
    follows the block and that number, not the user count or the range.
    """
    module = family_module(family)
    days = sorted(days)
    customers = _sorted_customers(customers)
    signup = pc.fill_null(pc.cast(customers.column("signup_date"), pa.int32()), np.iinfo(np.int32).min)
    signup_days = signup.to_numpy(zero_copy_only=False).astype(np.int64)
    known_counts = {d: int(np.count_nonzero(signup_days <= _epoch_day(d))) for d in days}
    users = customers.num_rows
    size = min(block_users, max(MIN_SHARED_BLOCK, -(-users // max(workers, 1))))
    blocks = [(lo, min(lo + size, users)) for lo in range(0, max(users, 1), size)]
    every = max(1, len(days) // 4)  # progress a person can follow, not a line per day

    def merge(block: tuple[int, int], chunk_days: list[dt.date]) -> Iterator[pa.Table]:
        lo, hi = block
        ctx = _merge_context(family, module, customers.slice(lo, hi - lo), tiles, chunk_days, artifacts)
        try:
            for day, features in zip(chunk_days, module.snapshots(ctx), strict=True):
                yield _assemble(ctx, features, signup_days[lo:hi] <= _epoch_day(day))
        finally:
            if ctx.con is not None:
                ctx.con.close()

    def emit(day: dt.date, parts: list[pa.Table]) -> tuple[dt.date, pa.Table, int]:
        _progress(family, days, day, every, known_counts[day])
        return day, conform(pa.concat_tables(parts), registry, family, day), known_counts[day]

    if len(blocks) <= workers:
        # Every block has its own thread and they advance together: each day is yielded once every
        # block has merged it, so nothing but the days in flight is held.
        with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
            streams = [_Prefetch(pool, merge(block, days)) for block in blocks]
            for day in days:
                yield emit(day, [stream.next() for stream in streams])
        return
    chunk = max(1, DAY_ROWS_IN_FLIGHT // max(users, 1))  # days whose every block is held at once
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for first in range(0, len(days), chunk):
            chunk_days = days[first:first + chunk]
            parts = list(pool.map(lambda block, d=chunk_days: list(merge(block, d)), blocks))  # noqa: B023
            for index, day in enumerate(chunk_days):
                yield emit(day, [part[index] for part in parts])


class _Prefetch:
    """Runs a generator in a worker thread, one item ahead: the next item is computed while the caller
    uses the current one."""

    def __init__(self, pool: ThreadPoolExecutor, items: Iterator[pa.Table]) -> None:
        self._items = items
        self._pending = pool.submit(next, items, None)
        self._pool = pool

    def next(self) -> pa.Table:
        item = self._pending.result()
        self._pending = self._pool.submit(next, self._items, None)
        return item


def _progress(family: Family, days: list[dt.date], day: dt.date, every: int, users: int) -> None:
    index = days.index(day) + 1
    if index % every == 0 or index == len(days):
        log.info("%s: %s/%s snapshots (%s, %s users)", family.name, index, len(days), day, users)


def _merge_context(
    family: Family,
    module: Any,
    customers: pa.Table,
    tiles: TileSource | None,
    days: list[dt.date],
    artifacts: Mapping[str, Any] | None,
) -> MergeContext:
    users = customers.column("user_id").combine_chunks()
    ctx = MergeContext(users=users, customers=customers, days=[_epoch_day(d) for d in days], config=family.config,
                       artifacts=artifacts or {})
    if not hasattr(module, "tile"):
        return ctx
    lookback = module.LOOKBACK
    first = None if lookback is ALL_HISTORY else days[0] - dt.timedelta(days=lookback - 1)
    con = connect()
    if tiles is None or not tiles.register(con, family, first, days[-1], "tile_source"):
        con.register("tile_source", module.tile_schema(family.config).empty_table())
    con.register("block_users", pa.table({"user_id": users, "user_index": pa.array(np.arange(len(users)))}))
    # Tiles are sorted by user_id, so a block's range skips the row groups of other blocks.
    con.execute(
        "CREATE TEMP TABLE tiles AS SELECT u.user_index, CAST(t.day - DATE '1970-01-01' AS BIGINT) AS day, "
        "t.* EXCLUDE (user_id, day) FROM tile_source t JOIN block_users u USING (user_id) "
        "WHERE t.user_id BETWEEN $lo AND $hi",
        {"lo": users[0].as_py() if len(users) else "", "hi": users[-1].as_py() if len(users) else ""},
    )
    ctx.con = con
    return ctx


def _assemble(ctx: MergeContext, features: dict[str, pa.Array], known: np.ndarray) -> pa.Table:
    table = pa.table({"user_id": ctx.users, **features})
    return table.filter(pa.array(known)) if not known.all() else table


def _sorted_customers(customers: pa.Table) -> pa.Table:
    customers = customers.select(CUSTOMERS.arrow_schema.names).cast(CUSTOMERS.arrow_schema)
    return customers.take(pc.sort_indices(customers, sort_keys=[("user_id", "ascending")])).combine_chunks()


def _epoch_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def epoch_to_date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(day))


def write_tiles(
    store: OfflineStore,
    family: Family,
    days: Sequence[dt.date],
    artifacts: Mapping[str, Any] | None = None,
    history_start: dt.date | None = None,
    batch_events: int = TILE_BATCH_EVENTS,
) -> Iterator[tuple[dt.date, WriteResult]]:
    """Compute and write ``tiles/<family>/<day>.parquet`` for each day from the raw partitions.

    Days are computed in batches of about ``batch_events`` raw events (one query per batch), so memory
    follows the batch, not the range. The tile of ``history_start`` also holds the reviews before it."""
    listings = store.read_table("raw/listings") if store.table_path("raw/listings").exists() else None
    reviews = store.read_table("raw/reviews") if store.table_path("raw/reviews").exists() else None

    landed = set(store.partitions("raw/events"))  # one listing, not a request per day (an object store's cost)

    def compute(batch: list[dt.date]) -> dict[dt.date, pa.Table]:
        files = [str(store.partition_path("raw/events", d.isoformat())) for d in batch if d.isoformat() in landed]
        with TileBuilder(listings, reviews) as builder:
            builder.load(batch, files or None, history_start)
            return builder.tiles(family, artifacts)

    # Batches are independent (each tile sees only its day), so two run at a time; results keep day order.
    with ThreadPoolExecutor(max_workers=TILE_WORKERS) as pool:
        for tiles in pool.map(compute, _batches(store, sorted(days), batch_events, landed)):
            for day, table in tiles.items():
                yield day, store.write(tile_table(family), table, partition=day.isoformat(),
                                       row_group_size=TILE_ROW_GROUP)


def _batches(store: OfflineStore, days: list[dt.date], batch_events: int, landed: set[str]
             ) -> Iterator[list[dt.date]]:
    """Consecutive runs of days holding about ``batch_events`` raw events each (row counts from the
    Parquet footers of the ``landed`` partitions)."""
    batch: list[dt.date] = []
    size = 0
    for day in days:
        key = day.isoformat()
        rows = parquet_rows(store.partition_path("raw/events", key)) if key in landed else 0
        if batch and size + rows > batch_events:
            yield batch
            batch, size = [], 0
        batch.append(day)
        size += rows
    if batch:
        yield batch


# ------------------------------------------------------------------------------ in-memory path
def tiles_from_tables(
    family: Family,
    days: Sequence[dt.date],
    events: pa.Table,
    reviews: pa.Table | None = None,
    listings: pa.Table | None = None,
    artifacts: Mapping[str, Any] | None = None,
    history_start: dt.date | None = None,
) -> dict[dt.date, pa.Table]:
    """The family's tiles of ``days`` from in-memory raw tables; the tile of ``history_start`` also holds
    the reviews before it (so nothing before the first tile of a history is lost)."""
    with TileBuilder(listings, reviews) as builder:
        builder.load(sorted(days), events, history_start)
        return builder.tiles(family, artifacts)


def snapshots_from_tables(
    registry: Registry,
    family: Family,
    days: Sequence[dt.date],
    events: pa.Table,
    customers: pa.Table,
    reviews: pa.Table | None = None,
    listings: pa.Table | None = None,
    artifacts: Mapping[str, Any] | None = None,
) -> Iterator[tuple[dt.date, pa.Table, int]]:
    """Snapshots of ``days`` straight from raw tables: tiles of every day the windows need, then the
    merge - the same code path as the daily assets, without the offline store."""
    days = sorted(days)
    tiles = None
    module = family_module(family)
    if hasattr(module, "tile"):
        needed = _tile_days(module.LOOKBACK, days, events, reviews)
        tiles = MemoryTiles(tiles_from_tables(family, needed, events, reviews, listings, artifacts, needed[0]))
    yield from compute_snapshots(registry, family, customers, tiles, days, artifacts)


def _tile_days(lookback: int | None, days: list[dt.date], events: pa.Table, reviews: pa.Table | None) -> list[dt.date]:
    """Days whose tiles the snapshots of ``days`` merge: the window's days that have any data."""
    stamps = [events.column("timestamp")]
    if reviews is not None and reviews.num_rows:
        stamps.append(reviews.column("timestamp"))
    present: set[dt.date] = set()
    for column in stamps:
        dates = pc.unique(pc.cast(pc.drop_null(column.cast(pa.timestamp("us"))), pa.date32())).to_pylist()
        present.update(dates)
    first = dt.date.min if lookback is ALL_HISTORY else days[0] - dt.timedelta(days=lookback - 1)
    needed = sorted(d for d in present if first <= d <= days[-1])
    return needed or [days[-1]]
