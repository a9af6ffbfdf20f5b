"""Benchmark: one user's features computed on demand (what the server does for a user in no snapshot yet).

    python bench/bench_on_demand.py [--data-dir /tmp/fp-bench-shards] [--users 5]

Runs on the data bench_shards.py prepares (``--data-dir``/data: raw partitions and the tiles of every day;
``python bench/bench_shards.py --users 1000000`` makes the 1M-user one). The day computed is the one after the
data, as for a user who signed up today: every day of the windows is tiled, today is not. Per user (drawn over
the id range), in the same run:

- raw limit: DuckDB reading the user's rows of every stored tile file the windows cover (the reads the
  computation cannot avoid);
- ``recompute``, what the server and the stream updater run: the user's rows of the stored tiles, today's tile
  from raw and landed events, the batch merge, every family but model outputs;
- before stored tiles were used: the user's raw events of every day scanned from the raw partitions, then
  tiles and merge from them.

Both ways must give the same values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from bench_report import print_ratios, timed

from feature_platform.features import topics
from feature_platform.features.recompute import recompute
from feature_platform.features.review import TOPIC_MODEL_ARTIFACT
from feature_platform.offline.calendar import partitions_range
from feature_platform.offline.location import StorePath
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry import load_registry
from feature_platform.serving.on_demand import computable_features
from feature_platform.sources.landing import LandingLog


class WithoutTiles(OfflineStore):
    """The store as if no tile were stored: every day's tile is computed from the raw partitions."""

    def partition_files(self, table: str, start: str | None = None, end: str | None = None) -> list[StorePath]:
        return [] if table.startswith("tiles/") else super().partition_files(table, start, end)


def tile_rows(store: OfflineStore, user: str) -> int:
    rows = 0
    with connect(threads=1) as con:
        for family in sorted(p.name for p in (store.root / "tiles").iterdir()):
            files = [str(p) for p in store.partition_files(f"tiles/{family}")]
            rows += con.execute("SELECT count(*) FROM read_parquet($files) WHERE user_id = $user",
                                {"files": files, "user": user}).fetchone()[0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fp-bench-shards"))
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args()
    data = args.data_dir.resolve() / "data"
    store, registry = OfflineStore(data), load_registry()
    first, last = partitions_range(data)
    day = dt.date.fromisoformat(last or first) + dt.timedelta(days=1)
    customers = connect().execute("SELECT count(*) FROM read_parquet($f)",
                                  {"f": str(data / "raw" / "customers.parquet")}).fetchone()[0]
    print(f"{customers:,} users, raw partitions {first} .. {last}, computing {day}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}); load {os.getloadavg()[0]:.2f}; "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    names = set(computable_features(registry))
    artifacts = {TOPIC_MODEL_ARTIFACT: topics.load_current_or_none(data / "models" / topics.MODELS_FOLDER)}
    log = LandingLog(Path(tempfile.mkdtemp()) / "landing")  # nothing landed: the stored data only
    rng = np.random.default_rng(5)
    users = [f"u{i:07d}" for i in rng.integers(1, customers, args.users)]
    timings: dict[str, list[float]] = {"raw limit: the user's rows of every stored tile": [],
                                       "recompute (stored tiles + today's)": [],
                                       "before: every raw partition scanned": []}
    for user in users:
        _, t0 = timed(lambda u=user: tile_rows(store, u))
        now, t1 = timed(lambda u=user: recompute(store, registry, log, {u: names}, day, artifacts))
        old, t2 = timed(lambda u=user: recompute(WithoutTiles(data), registry, log, {u: names}, day, artifacts))
        assert now == old, user
        for key, t in zip(timings, (t0, t1, t2), strict=True):
            timings[key].append(t)
        print(f"  {user}: {t0:.2f} s / {t1:.2f} s / {t2:.2f} s", flush=True)
    print_ratios(f"one user, {len(names)} features", timings)

if __name__ == "__main__":
    main()
