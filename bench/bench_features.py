"""Benchmark: one daily snapshot of every feature family, and a 30-partition backfill, at scale.

    python bench/bench_features.py [--users 100000] [--days 90] [--work /tmp/fp-bench]

Generates the sample data once (kept in --work), lands it as raw partitions, then measures in the
same run: (1) a plain DuckDB full scan of the 90-day event window (group by user: the raw floor),
(2) one snapshot of all families for the last day, (3) a 30-day backfill of all families. Prints
seconds, events/s and the ratio to the raw scan. Results go in BENCHMARKS.md by hand, with the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time
from pathlib import Path

from feature_platform.features import topics
from feature_platform.features.base import LOOKBACK_DAYS, SnapshotInputs, compute_snapshots
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry import load_registry
from feature_platform.sources import ingest
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform.sources.schema import CUSTOMERS, LISTINGS, REVIEWS

END = dt.date(2026, 11, 21)


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
    marker.touch()
    return store


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<44} {seconds:8.2f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fp-bench"))
    args = parser.parse_args()
    registry = load_registry()
    store, _ = timed("prepare (generate + land raw, cached)", lambda: prepare(args.work, args.users, args.days))

    start = (END - dt.timedelta(days=LOOKBACK_DAYS - 1)).isoformat()
    with connect() as con:
        (events,), raw_seconds = timed(
            "raw floor: DuckDB scan 90d, count by user",
            lambda: con.sql(
                "SELECT sum(n) FROM (SELECT user_id, count(*) AS n FROM read_parquet($f) GROUP BY user_id)",
                params={"f": [str(p) for p in store.partition_files("raw/events", start, END.isoformat())]},
            ).fetchall()[0],
        )
    model, _ = timed("fit review topic model", lambda: topics.fit_topic_model(
        store.read_table("raw/reviews"), topics.TopicModelConfig(topics=10)))
    artifacts = {"review_topic_model": model}

    def snapshot_all(days: list[dt.date]) -> dict[str, float]:
        inputs = SnapshotInputs.from_store(store, days[0], days[-1])
        per_family = {}
        try:
            for family in (f for f in registry.families.values() if not f.derived):  # derived: model scores
                began = time.perf_counter()
                for _ in compute_snapshots(registry, family, inputs, days, artifacts):
                    pass
                per_family[family.name] = time.perf_counter() - began
        finally:
            inputs.close()
        return per_family

    per_family, one_seconds = timed("one snapshot, all families (incl. load)", lambda: snapshot_all([END]))
    for name, seconds in per_family.items():
        print(f"    {name:<40} {seconds:8.2f} s")
    backfill_days = [END - dt.timedelta(days=i) for i in range(30)][::-1]
    _, backfill_seconds = timed("30-partition backfill, all families", lambda: snapshot_all(backfill_days))

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"events in the 90-day window: {events:,}")
    print(f"raw DuckDB scan:     {raw_seconds:6.2f} s  ({events / raw_seconds:,.0f} events/s)")
    print(f"one snapshot:        {one_seconds:6.2f} s  ({events / one_seconds:,.0f} events/s, {one_seconds / raw_seconds:.1f}x raw)")
    print(f"30-day backfill:     {backfill_seconds:6.2f} s  ({backfill_seconds / 30:.2f} s per partition, "
          f"{backfill_seconds / raw_seconds:.1f}x raw)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")


if __name__ == "__main__":
    main()
