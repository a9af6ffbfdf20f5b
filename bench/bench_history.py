"""Benchmark: one feature of one user over a year of daily snapshots (GET /features/{user_id}/history, limit 365).

    python bench/bench_history.py [--users 200000] [--days 400] [--repeat 20] [--work /tmp/fp-bench-history]

Writes the engagement family's snapshots of ``--users`` users (random values, the registry's schema) for
``--days`` days, twice: in the row groups the snapshot assets write (SNAPSHOT_ROW_GROUP rows) and in pyarrow's
default ones (the writer before); kept in --work. Then, in the same run, per user of ``--repeat`` users drawn
over the id range (median and max of the repeats):

- raw limit: DuckDB reading the footers of the newest 365 files and nothing else (``parquet_metadata``): a
  reader must at least do that to find the user's row group in each file;
- pyarrow reading exactly the row group holding the user in each of those files (found from the footers'
  user_id statistics): the least data a reader can read, by hand;
- ``feature_history`` on those files: what the route runs;
- the route through the app (FastAPI's TestClient, in process);
- the query before: every file of the table, pyarrow's default row groups, LIMIT after the scan.

Every way must return the same 365 values.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from bench_pit import FAMILY, prepare  # noqa: E402
from bench_report import print_ratios, timed  # noqa: E402

from feature_platform.config import Settings  # noqa: E402
from feature_platform.offline.snapshots import SNAPSHOT_ROW_GROUP, feature_history  # noqa: E402
from feature_platform.offline.store import OfflineStore, connect  # noqa: E402
from feature_platform.registry import load_registry  # noqa: E402
from feature_platform.serving.api import create_app  # noqa: E402

FEATURE = "engagement_score"
YEAR = 365


def footers(files: list[str]) -> int:
    with connect(threads=1) as con:
        return con.execute("SELECT count(*) FROM parquet_metadata($files)", {"files": files}).fetchone()[0]


def one_row_group(files: list[str], user: str) -> list[tuple[dt.date, float]]:
    """The user's row group of each file, found by binary search over the footers' min/max statistics."""
    out = []
    for path in files:
        meta = pq.ParquetFile(path)
        column = meta.schema_arrow.get_field_index("user_id")
        groups = [meta.metadata.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
        index = bisect.bisect_left([g.max for g in groups], user)
        if index == len(groups) or groups[index].min > user:
            continue
        table = meta.read_row_group(index, columns=["snapshot_date", "user_id", FEATURE])
        row = table.filter(pc.equal(table.column("user_id"), user))
        out.extend(zip(row.column("snapshot_date").to_pylist(), row.column(FEATURE).to_pylist(), strict=True))
    return sorted(out, reverse=True)


def before(store: OfflineStore, table: str, user: str) -> list[tuple[dt.date, float]]:
    files = [str(p) for p in store.partition_files(table)]
    with connect(threads=1) as con:
        return con.execute(f'SELECT snapshot_date, "{FEATURE}" FROM read_parquet($files, union_by_name = true) '
                           "WHERE user_id = $user ORDER BY snapshot_date DESC LIMIT $limit",
                           {"files": files, "user": user, "limit": YEAR}).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=400, help="more than a year: the route reads the newest 365")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fp-bench-history"))
    args = parser.parse_args()
    print(f"{args.users:,} users x {args.days} daily snapshots of {FAMILY}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}); load {os.getloadavg()[0]:.2f}; "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    registry = load_registry()
    table = "/".join(registry.family(FAMILY).asset_path)
    (store, old), seconds = timed(lambda: (prepare(args.work / "grouped", args.users, args.days, SNAPSHOT_ROW_GROUP),
                                           prepare(args.work / "default", args.users, args.days)))
    print(f"prepare (cached after the first run): {seconds:.1f} s", flush=True)
    files = [str(p) for p in store.partition_files(table)][-YEAR:]
    sizes = [statistics.mean(os.path.getsize(p) for p in s.partition_files(table)) / 2**20 for s in (store, old)]
    print(f"mean file: {sizes[0]:.2f} MiB in row groups of {SNAPSHOT_ROW_GROUP:,}, {sizes[1]:.2f} MiB in the default ones")
    rng = np.random.default_rng(3)
    users = [f"u{i:07d}" for i in rng.integers(0, args.users, args.repeat)]
    timings: dict[str, list[float]] = {"raw limit: DuckDB reads the 365 footers only": [],
                                       "pyarrow: one row group per file, by hand": [],
                                       "feature_history (what the route runs)": [],
                                       "GET /features/{id}/history?limit=365 (in process)": [],
                                       "before: every file, default row groups": []}
    settings = Settings(data_dir=args.work / "grouped" / "data", on_demand_budget_ms=0)
    with TestClient(create_app(settings, reload_seconds=0)) as client:
        for user in users:
            _, footer_seconds = timed(lambda: footers(files))
            expected, t0 = timed(lambda u=user: one_row_group(files, u))
            got, t1 = timed(lambda u=user: feature_history(store, table, FEATURE, u, YEAR))
            answer, t2 = timed(lambda u=user: client.get(f"/features/{u}/history",
                                                          params={"feature": FEATURE, "limit": YEAR}))
            previous, t3 = timed(lambda u=user: before(old, table, u))
            assert len(expected) == YEAR and got == expected, user
            assert [v["value"] for v in answer.json()["values"]] == [v for _, v in expected], user
            assert [v for _, v in previous] == [v for _, v in expected], user
            for key, t in zip(timings, (footer_seconds, t0, t1, t2, t3), strict=True):
                timings[key].append(t)
    print_ratios("one user, one feature, 365 snapshots", timings, "ms")

if __name__ == "__main__":
    main()
