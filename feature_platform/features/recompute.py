"""A few users' features as the snapshot of one day computes them, without computing anyone else's.

Used where waiting for the next daily run is not an option: the stream updater (events that just landed)
and serving's compute-on-demand (a user no snapshot has yet). It is the batch engine's own code on those
users' rows only - the same tiles, windows and as-of rule - so the values are the ones the snapshot of
that day holds when it is computed with the same data:

- for every day of a family's window whose tile is stored, their rows of the stored tile (tiles are sorted
  by user_id, so a read touches one row group per file);
- for the other days (not tiled yet, such as today), tiles computed from those days' raw events of the users
  plus their landed events of days not ingested yet (an event in both counts once);
- then the merge of those tiles into the snapshot of the day, with the users' customer rows.

As in the batch, an event that lands for a day already ingested counts only once that day is ingested again
(ingest logs it as late), and a window over the whole history starts at the first stored raw partition (what
retention left), with the reviews dated before the data's first day in that day's tile.

Every family computes each user from that user's rows alone (no normalisation over all users), which is
what makes a few users' rows enough; listings are read whole (price ranks are per category).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.features.base import family_module
from feature_platform.features.engine import ALL_HISTORY, MemoryTiles, compute_snapshots, tile_table, tiles_from_tables
from feature_platform.offline.calendar import partitions_range
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry.registry import Family, Registry
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS, REVIEWS

RAW_EVENTS = "raw/events"


def recompute(
    offline: OfflineStore,
    registry: Registry,
    log: LandingLog,
    wanted: Mapping[str, set[str]],
    day: dt.date,
    artifacts: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """user -> {feature: value} for the ``wanted`` features of each user, as the snapshot of ``day`` computes
    them (``artifacts``: the fitted objects a family's tiles use, as the batch passes them). A user with no
    row at ``day`` (no customer row, or signed up later) is left out."""
    users = sorted(wanted)
    names = set().union(*wanted.values())
    families = sorted({registry.get_feature(n).family for n in names})
    sources = {s for f in families for s in registry.family(f).sources}
    raw_days = [dt.date.fromisoformat(d) for d in offline.partitions(RAW_EVENTS)]
    history_start = dt.date.fromisoformat(partitions_range(offline.root)[0])
    start = raw_days[0] if raw_days else history_start
    landed = _pending_events(log, users, raw_days)
    tiles: dict[str, MemoryTiles | None] = {}
    with connect(threads=1) as con:  # one connection for every read (opening one costs about 10 ms)
        customers = _rows_of(con, offline, "raw/customers", CUSTOMERS.arrow_schema, users)
        reviews = _rows_of(con, offline, "raw/reviews", REVIEWS.arrow_schema, users) if "raw/reviews" in sources \
            else None
        listings = _table(offline, "raw/listings", LISTINGS.arrow_schema) if "raw/listings" in sources else None
        for name in families:
            family = registry.family(name)
            module = family_module(family)
            tiles[name] = None
            if hasattr(module, "tile"):
                first = start if module.LOOKBACK is ALL_HISTORY else day - dt.timedelta(days=module.LOOKBACK - 1)
                tiles[name] = MemoryTiles(_user_tiles(con, offline, family, users, landed, reviews, listings,
                                                      artifacts, max(first, start), day, history_start))
    out: dict[str, dict[str, Any]] = {}
    for name in families:
        family = registry.family(name)
        [(_, table, _)] = compute_snapshots(registry, family, customers, tiles[name], [day], artifacts)
        layout = [f for f in family.features if f in names]
        columns = {f: table.column(f).to_pylist() for f in layout}
        maps = {f for f in layout if registry.get_feature(f).type == "map"}  # Arrow gives (key, value) pairs
        for i, user in enumerate(table.column("user_id").to_pylist()):
            fields = {f: dict(columns[f][i]) if f in maps and columns[f][i] is not None else columns[f][i]
                      for f in layout if f in wanted[user]}
            if fields:
                out.setdefault(user, {}).update(fields)
    return out


def _user_tiles(con: duckdb.DuckDBPyConnection, offline: OfflineStore, family: Family, users: list[str], landed: pa.Table, reviews: pa.Table | None,
                listings: pa.Table | None, artifacts: Mapping[str, Any] | None, first: dt.date, day: dt.date,
                history_start: dt.date) -> dict[dt.date, pa.Table]:
    """The users' tiles of ``first`` .. ``day``: stored rows where they hold everything, computed elsewhere."""
    schema = family_module(family).tile_schema(family.config)
    stored = {dt.date.fromisoformat(p.stem): p for p in offline.partition_files(tile_table(family), first.isoformat(),
                                                                                day.isoformat())}
    landed_days = set(pc.unique(pc.cast(landed.column("timestamp"), pa.date32())).to_pylist())
    window = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]
    fresh = [d for d in window if d not in stored or d in landed_days]
    out: dict[dt.date, pa.Table] = {}
    kept = [str(stored[d]) for d in sorted(stored) if d not in fresh]
    if kept:
        rows = con.sql("SELECT * FROM read_parquet($files) WHERE list_contains($users, user_id)",
                       params={"files": kept, "users": users}).to_arrow_table().select(schema.names).cast(schema)
        for key in pc.unique(rows.column("day")).to_pylist():
            out[key] = rows.filter(pc.equal(rows.column("day"), pa.scalar(key, rows.schema.field("day").type)))
    if fresh:
        events = _events(con, offline, landed, users, fresh)
        computed = tiles_from_tables(family, fresh, events, reviews, listings, artifacts, history_start)
        out.update({d: t.select(schema.names).cast(schema) for d, t in computed.items() if t.num_rows})
    return out


def _pending_events(log: LandingLog, users: list[str], raw_days: list[dt.date]) -> pa.Table:
    """The users' landed events of days with no raw partition yet: what the next daily run ingests. Such an event
    landed after the last ingested day (events are never in the future), so older landing files are not read."""
    since = dt.datetime.combine(raw_days[-1] + dt.timedelta(days=1), dt.time()) if raw_days else None
    landed = log.events(landed_since=since, user_ids=users)
    event_days = pc.cast(landed.column("timestamp"), pa.date32())
    return landed.filter(pc.invert(pc.is_in(event_days, value_set=pa.array(raw_days, pa.date32()))))


def _events(con: duckdb.DuckDBPyConnection, offline: OfflineStore, landed: pa.Table, users: list[str], days: list[dt.date]) -> pa.Table:
    """The users' events of ``days``: the stored raw partitions', then the landed ones not in them."""
    wanted = {d.isoformat() for d in days}
    files = [str(p) for p in offline.partition_files(RAW_EVENTS, days[0].isoformat(), days[-1].isoformat())
             if p.stem in wanted]
    stored = EVENTS.arrow_schema.empty_table()
    if files:
        stored = con.sql(
            "SELECT * FROM read_parquet($files, union_by_name = true) WHERE list_contains($users, user_id)",
            params={"files": files, "users": users},
        ).to_arrow_table().select(EVENTS.column_names).cast(EVENTS.arrow_schema)
    on_days = pc.is_in(pc.cast(landed.column("timestamp"), pa.date32()), value_set=pa.array(days, pa.date32()))
    extra = landed.filter(pc.and_(on_days, pc.invert(pc.is_in(landed.column("event_id"),
                                                             value_set=stored.column("event_id")))))
    return pa.concat_tables([stored, extra.select(EVENTS.column_names).cast(EVENTS.arrow_schema)])


def _table(offline: OfflineStore, table: str, schema: pa.Schema) -> pa.Table:
    path = offline.table_path(table)
    if not path.exists():
        if table == "raw/customers":
            raise FileNotFoundError(f"{path}: raw/customers is missing; ingest (feature-platform run) first")
        return schema.empty_table()
    return offline.read_table(table).select(schema.names).cast(schema)


def _rows_of(con: duckdb.DuckDBPyConnection, offline: OfflineStore, table: str, schema: pa.Schema, users: list[str]
             ) -> pa.Table:
    """The users' rows of an unpartitioned raw table, filtered while it is read."""
    path = offline.table_path(table)
    if not path.exists():
        return _table(offline, table, schema)  # the missing-table rule
    return con.sql("SELECT * FROM read_parquet($file) WHERE list_contains($users, user_id)",
                   params={"file": str(path), "users": users}).to_arrow_table().select(schema.names).cast(schema)
