"""Benchmark: the tile engine at scale - a 90-day backfill from raw, and one new day given yesterday's tiles.

    python bench/bench_features.py [--users 100000] [--days 90] [--work /tmp/fp-bench] [--only STEP]

STEP is one of prepare, backfill, daily (default: all three in order). ``prepare`` generates the sample
data and lands it as raw partitions once (kept in --work, reused), and fits the review topic model.
``backfill`` computes and writes the tiles of every day and every family, then the snapshots of every
day, as the assets do. ``daily`` recomputes the last day only: its tiles (every family) and its six
snapshots, reading the other days' tiles. Each timed step prints seconds, rows and the raw floor measured
in the same run: one DuckDB grouped scan of the raw events the step reads (count by user). Peak RSS is
this process's; run each step in its own process (``--only``) to see a step's own peak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from feature_platform.features import topics
from feature_platform.features.engine import StoreTiles, compute_snapshots, has_tiles, tile_table, write_tiles
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry import load_registry
from feature_platform.registry.registry import Family
from feature_platform.sources import ingest
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform.sources.schema import CUSTOMERS, LISTINGS, REVIEWS

END = dt.date(2026, 11, 21)
MODEL_DIR = "review_topic_model"


def prepare(work: Path, users: int, days: int) -> OfflineStore:
    sample, store = work / "sample", OfflineStore(work / "data")
    marker = work / f"ready-{users}-{days}"
    if marker.exists():
        return store
    generate(GeneratorConfig(users=users, days=days, end_date=END, seed=7), sample, progress=print)
    now = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(3))
    for table in (CUSTOMERS, REVIEWS, LISTINGS):
        ingest.ingest_table(store, sample, table, now)
    all_days = [(END - dt.timedelta(days=i)).isoformat() for i in range(days)][::-1]
    ingest.ingest_events(store, sample, now, all_days, dt.datetime(2020, 1, 1), END.isoformat())
    model = topics.fit_topic_model(store.read_table("raw/reviews"), topics.TopicModelConfig(topics=10))
    topics.save(model, store.root / "models" / MODEL_DIR)
    marker.touch()
    return store


def timed(label: str, fn: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<52} {seconds:8.2f} s", flush=True)
    return result, seconds


def raw_floor(store: OfflineStore, first: dt.date, last: dt.date) -> tuple[int, float]:
    """One DuckDB grouped scan (count by user) of the raw events of [first, last]: what reading them costs."""
    files = [str(p) for p in store.partition_files("raw/events", first.isoformat(), last.isoformat())]
    with connect() as con:
        (events,), seconds = timed(f"raw floor: scan {first} .. {last}, count by user", lambda: con.sql(
            "SELECT sum(n) FROM (SELECT user_id, count(*) AS n FROM read_parquet($f) GROUP BY user_id)",
            params={"f": files}).fetchall()[0])
    return events, seconds


def families() -> list[Family]:
    return [f for f in load_registry().families.values() if not f.derived]  # derived: model scores


def artifacts_for(store: OfflineStore, family: Family) -> dict:
    if "features/review_topic_model" not in family.sources:
        return {}
    return {"review_topic_model": topics.load_current(store.root / "models" / MODEL_DIR)}


def write_snapshots(store: OfflineStore, family: Family, days: list[dt.date]) -> int:
    registry, rows = load_registry(), 0
    customers = store.read_table("raw/customers")
    for day, snapshot, _ in compute_snapshots(registry, family, customers, StoreTiles(store), days):
        store.write("/".join(family.asset_path), snapshot, partition=day.isoformat())
        rows += snapshot.num_rows
    return rows


def tiles_and_snapshots(store: OfflineStore, days: list[dt.date], history_start: dt.date,
                        workers: int = 1) -> dict[str, tuple[float, float]]:
    """Per family: (seconds for the tiles of ``days``, seconds for their snapshots), families run
    ``workers`` at a time."""
    def one(family: Family) -> tuple[str, tuple[float, float]]:
        started = time.perf_counter()
        if has_tiles(family):
            for _ in write_tiles(store, family, days, artifacts_for(store, family), history_start):
                pass
        tiled = time.perf_counter()
        write_snapshots(store, family, days)
        return family.name, (tiled - started, time.perf_counter() - tiled)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(one, families()))


def report(per_family: dict[str, tuple[float, float]]) -> None:
    for name, (tiles, snapshots) in per_family.items():
        print(f"    {name:<12} tiles {tiles:7.2f} s   snapshots {snapshots:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fp-bench"))
    parser.add_argument("--only", choices=["prepare", "backfill", "daily"])
    parser.add_argument("--workers", type=int, default=1, help="families computed at a time in the daily step")
    args = parser.parse_args()
    steps = [args.only] if args.only else ["prepare", "backfill", "daily"]
    store, _ = timed("prepare (generate + land raw + topic model, cached)",
                     lambda: prepare(args.work, args.users, args.days))
    days = [dt.date.fromisoformat(d) for d in store.partitions("raw/events")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; load {os.getloadavg()[0]:.2f}; {len(days)} days {days[0]} .. {days[-1]}")

    if "backfill" in steps:
        events, floor = raw_floor(store, days[0], days[-1])
        per_family, seconds = timed(f"backfill of {len(days)} days from raw, all families",
                                    lambda: tiles_and_snapshots(store, days, days[0]))
        report(per_family)
        print(f"  {events:,} events; {seconds:.1f} s = {seconds / floor:.0f}x the raw floor ({floor:.2f} s); "
              f"{seconds / len(days):.2f} s per day")

    if "daily" in steps:
        last = days[-1]
        for family in families():  # yesterday's tiles stay; today's tiles and snapshots are recomputed
            for table in ([tile_table(family)] if has_tiles(family) else []) + ["/".join(family.asset_path)]:
                store.partition_path(table, last.isoformat()).unlink(missing_ok=True)
        _, day_floor = raw_floor(store, last, last)
        window_events, window_floor = raw_floor(store, last - dt.timedelta(days=89), last)
        per_family, seconds = timed(f"one new day ({last}): its tiles + six snapshots, {args.workers} at a time",
                                    lambda: tiles_and_snapshots(store, [last], days[0], args.workers))
        report(per_family)
        print(f"  {seconds:.2f} s = {seconds / day_floor:.0f}x a scan of the day's events ({day_floor:.2f} s), "
              f"{seconds / window_floor:.1f}x a scan of the 90-day window ({window_events:,} events, "
              f"{window_floor:.2f} s)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
