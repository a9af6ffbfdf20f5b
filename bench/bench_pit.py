"""Benchmark: point-in-time join of 1M training rows against 90 daily snapshots of 100k users.

    python bench/bench_pit.py [--users 100000] [--days 90] [--rows 1000000] [--work /tmp/fp-bench-pit]

Writes the engagement family's snapshots once with OfflineStore (kept in --work), draws random
entity rows over the period (some before the first snapshot is available), then measures in the
same run: the raw floor, a plain DuckDB scan of the same snapshot files (count(*), and a read of
the requested columns), and ``get_historical_features``. Prints seconds, rows/s and the ratio, and
asserts every row is kept once, in order. Goal: under 10 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from feature_platform.offline.pit import get_historical_features
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry import load_registry

FAMILY = "engagement"
FEATURES = ["page_views_30d", "email_opens_30d", "engagement_score"]
FIRST = dt.date(2026, 1, 1)


def prepare(work: Path, users: int, days: int, row_group_size: int | None = None) -> OfflineStore:
    """Write ``days`` snapshots of ``users`` users (random values, registry schema), once per size, in row groups
    of ``row_group_size`` rows (None: pyarrow's default)."""
    registry, store = load_registry(), OfflineStore(work / "data")
    marker = work / f"ready-{users}-{days}" if row_group_size is None else work / f"ready-{users}-{days}-{row_group_size}"
    if marker.exists():
        return store
    schema = registry.snapshot_schema(FAMILY)
    table = "/".join(registry.family(FAMILY).asset_path)
    rng = np.random.default_rng(7)
    user_ids = pa.array([f"u{i:07d}" for i in range(users)])
    for i in range(days):
        day = FIRST + dt.timedelta(days=i)
        columns = {"snapshot_date": pa.array([day] * users, pa.date32()), "user_id": user_ids}
        for field in schema:
            if field.name in columns:
                continue
            if pa.types.is_integer(field.type):
                columns[field.name] = pa.array(rng.integers(0, 200, users), field.type)
            else:
                columns[field.name] = pa.array(rng.random(users), field.type)
        store.write(table, pa.table(columns, schema=schema), partition=day.isoformat(), row_group_size=row_group_size)
    marker.touch()
    return store


def entity_rows(users: int, days: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(11)
    start = np.datetime64(FIRST.isoformat(), "us")
    offsets = rng.integers(0, (days + 1) * 86_400_000_000, rows)  # through the day after the last snapshot
    return pa.table({
        "user_id": pa.array([f"u{i:07d}" for i in rng.integers(0, int(users * 1.01), rows)]),  # ~1% unknown
        "timestamp": pa.array(start + offsets.astype("timedelta64[us]")),
        "label": pa.array(rng.integers(0, 2, rows)),
    })


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<52} {seconds:8.2f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fp-bench-pit"))
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; shared machine, timings are indicative")
    registry = load_registry()
    store, _ = timed("prepare (write snapshots, cached)", lambda: prepare(args.work, args.users, args.days))
    entities, _ = timed("draw entity rows", lambda: entity_rows(args.users, args.days, args.rows))

    files = [str(p) for p in store.partition_files("/".join(registry.family(FAMILY).asset_path))]
    cols = ", ".join(FEATURES)
    with connect() as con:
        (snapshot_rows,), count_seconds = timed(
            f"raw floor: DuckDB count(*) over {len(files)} files",
            lambda: con.sql("SELECT count(*) FROM read_parquet($f)", params={"f": files}).fetchall()[0],
        )
        _, read_seconds = timed(
            "raw floor: DuckDB read of the requested columns",
            lambda: con.sql(f"SELECT user_id, snapshot_date, {cols} FROM read_parquet($f)",
                            params={"f": files}).to_arrow_table(),
        )
    out, pit_seconds = timed(
        f"get_historical_features ({args.rows:,} rows, {len(FEATURES)} features)",
        lambda: get_historical_features(entities, FEATURES, store, registry),
    )

    assert out.num_rows == entities.num_rows, (out.num_rows, entities.num_rows)
    assert out.select(entities.column_names).equals(entities), "input rows changed or reordered"
    missing = out.column(f"{FAMILY}_snapshot_missing").to_numpy(zero_copy_only=False).sum()
    print(f"snapshot rows {snapshot_rows:,}; entity rows {out.num_rows:,} kept; {missing:,} before any snapshot")
    print(f"get_historical_features: {out.num_rows / pit_seconds:,.0f} entity rows/s; "
          f"ratio to count(*) {pit_seconds / count_seconds:,.1f}x, to column read {pit_seconds / read_seconds:,.1f}x")
    print("goal < 10 s:", "met" if pit_seconds < 10 else "NOT met")


if __name__ == "__main__":
    main()
