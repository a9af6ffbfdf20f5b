"""Benchmark: the whole batch path at a large scale, each step its own process with its time and peak memory.

    python bench/bench_scale.py [--users 1000000] [--days 90] [--work /tmp/fp-scale] [--from-step STEP]

Steps, in order: ``generate`` the sample data (feature-platform generate), ``ingest`` it (feature-platform
ingest), ``tiles`` of every day and family, ``snapshot`` of the last day for every family (the other days'
tiles are read, nothing else is recomputed). Each runs in a fresh Python process under ``/usr/bin/time -v``,
so its wall time and peak RSS are its own. A step's output stays in --work, so ``--from-step`` resumes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

END = dt.date(2026, 11, 21)
STEPS = ("generate", "ingest", "tiles", "snapshot")

TILES = """
import datetime as dt, sys
from pathlib import Path
from feature_platform.features import topics
from feature_platform.features.engine import has_tiles, write_tiles
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
store = OfflineStore(Path(sys.argv[1]))
days = [dt.date.fromisoformat(d) for d in store.partitions("raw/events")]
model_dir = store.root / "models" / "review_topic_model"
if topics.current_version(model_dir) is None:
    topics.save(topics.fit_topic_model(store.read_table("raw/reviews"), topics.TopicModelConfig(topics=10)), model_dir)
for family in load_registry().families.values():
    if family.derived or not has_tiles(family):
        continue
    artifacts = {"review_topic_model": topics.load_current(model_dir)} if family.name == "review" else {}
    rows = sum(w.rows for _, w in write_tiles(store, family, days, artifacts, days[0]))
    print(f"tiles/{family.name}: {len(days)} days, {rows:,} rows", flush=True)
"""

SNAPSHOT = """
import datetime as dt, sys, time
from pathlib import Path
from feature_platform.features.engine import StoreTiles, compute_snapshots
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
store = OfflineStore(Path(sys.argv[1]))
day = dt.date.fromisoformat(store.partitions("raw/events")[-1])
customers = store.read_table("raw/customers")
registry = load_registry()
for family in registry.families.values():
    if family.derived:
        continue
    started = time.perf_counter()
    for _, snapshot, _ in compute_snapshots(registry, family, customers, StoreTiles(store), [day]):
        store.write("/".join(family.asset_path), snapshot, partition=day.isoformat())
    print(f"{family.asset}: {snapshot.num_rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
"""


def command(step: str, work: Path, users: int, days: int) -> list[str]:
    cli = [sys.executable, "-m", "feature_platform.cli"]
    if step == "generate":
        return [*cli, "generate", "--users", str(users), "--days", str(days), "--end-date", END.isoformat(),
                "--seed", "7", "--out", str(work / "sample")]
    if step == "ingest":
        return [*cli, "ingest", "--source", str(work / "sample"), "--data-dir", str(work / "data")]
    return [sys.executable, "-c", TILES if step == "tiles" else SNAPSHOT, str(work / "data")]


def run(step: str, work: Path, users: int, days: int) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) of one step, from /usr/bin/time -v; the step's own output is echoed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(["/usr/bin/time", "-v", *command(step, work, users, days)], env=env, cwd=work,
                          capture_output=True, text=True)
    for line in done.stdout.splitlines()[-12:]:
        print(f"    {line}")
    if done.returncode != 0:
        sys.exit(f"{step} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr).group(1)
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, peak_kb / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fp-scale"))
    parser.add_argument("--from-step", choices=STEPS, default="generate")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{args.users:,} users x {args.days} days in {args.work}; {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.2f}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    results = {}
    for step in STEPS[STEPS.index(args.from_step):]:
        print(f"[{step}]", flush=True)
        results[step] = run(step, args.work, args.users, args.days)
        print(f"  {step}: {results[step][0]:.0f} s, peak RSS {results[step][1]:.2f} GB", flush=True)
    print("\n| step | wall | peak RSS |\n| --- | --- | --- |")
    for step, (seconds, peak) in results.items():
        print(f"| {step} | {seconds:,.0f} s | {peak:.2f} GB |")


if __name__ == "__main__":
    main()
