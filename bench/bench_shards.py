"""Benchmark: one day of every family's snapshots, unsharded in one process against FP_SHARDS=8 on Dagster's
multiprocess executor: wall time, CPU, each process's peak RSS; the two runs' files compared byte for byte.

    python bench/bench_shards.py [--users 1000000] [--days 90] [--data-dir /tmp/fp-bench-shards] [--shards 8]
                                 [--repeat 1] [--redis-users 100000] [--redis-url redis://127.0.0.1:6379/12]

``prepare`` (once; kept in --data-dir and reused while --users and --days stay the same): ``feature-platform
generate``, ``feature-platform ingest``, then the tiles of every day as one Dagster run (the ``build_daily_tiles``
step of ``feature-platform run``). Each measured run is a fresh Python process (``--run-only unsharded|sharded``)
that loads the definitions with FP_SHARDS as every process of a deployment does, and runs the seven snapshot
assets of the data's last day with their blocking checks (not the drift checks) on a fresh SQLite instance: in
process for one shard, the multiprocess executor with max_concurrent = CPU count for more. This process polls the
run's process tree every 0.1 s (psutil) for each process's RSS; CPU is the run's children's rusage. ``--run-only``
alone is one measured run, printed as JSON: the form to time from outside. ``--redis-users`` users' vectors of
the day are pushed into ``--redis-url`` under a key prefix of this run's own (deleted afterwards): Redis bytes per
feature value from INFO used_memory and from MEMORY USAGE.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pyarrow.parquet as pq

from feature_platform.config import Settings
from feature_platform.offline.calendar import partitions_range
from feature_platform.orchestration import constants as C

END = dt.date(2026, 11, 21)
JOB = "bench_snapshots"
CONFIGS = ("unsharded", "sharded")


def snapshot_job() -> dg.JobDefinition:
    """The seven snapshot assets and their blocking checks as one job, from the definitions FP_DATA_DIR and
    FP_SHARDS give (every step process rebuilds it from the same variables)."""
    from feature_platform.definitions import build_defs

    start, end = partitions_range(Settings.from_env().data_dir)
    drift = [dg.AssetCheckKey(key, C.CHECK_FEATURE_DRIFT) for key in C.FEATURE_SNAPSHOTS]
    selection = dg.AssetSelection.assets(*C.FEATURE_SNAPSHOTS) - dg.AssetSelection.checks(*drift)
    job = dg.define_asset_job(JOB, selection=selection, executor_def=dg.multi_or_in_process_executor)
    return dg.Definitions.merge(build_defs(start, end=end), dg.Definitions(jobs=[job])).resolve_job_def(JOB)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "feature_platform.cli", *args]


def prepare(work: Path, users: int, days: int) -> Path:
    """Sample data of ``users`` x ``days`` ingested and tiled under ``work`` (reused when already there)."""
    sample, data = work / "sample", work / "data"
    size = f"{users}-{days}"
    steps = [
        ("generate", sample / f".done-{size}", cli("generate", "--users", str(users), "--days", str(days),
                                                   "--end-date", END.isoformat(), "--seed", "7", "--out", str(sample))),
        ("ingest", data / f".ingested-{size}", cli("ingest", "--source", str(sample), "--data-dir", str(data))),
        ("tiles", data / f".tiled-{size}", [sys.executable, __file__, "--data-dir", str(work), "--tiles-only"]),
    ]
    for label, marker, command in steps:
        if marker.exists():
            print(f"[prepare] {label}: done before ({marker})", flush=True)
            continue
        print(f"[prepare] {label}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        env = {**os.environ, "FP_SHARDS": "1", "FP_DATA_DIR": str(data)}
        env.pop("FP_EXECUTOR", None)  # preparing runs in process, whatever the measured runs use
        subprocess.run(command, check=True, env=env)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        print(f"[prepare] {label}: {time.monotonic() - started:.0f} s", flush=True)
    return data


def tiles_only(data: Path) -> None:
    """The tiles of every day with raw events, one in-process Dagster run (as ``feature-platform run`` does)."""
    from feature_platform.cli import INSTANCE_YAML
    from feature_platform.definitions import build_defs
    from feature_platform.offline.store import OfflineStore
    from feature_platform.orchestration.pipeline import TILES_STEP, run_steps
    from feature_platform.orchestration.resources import platform_resources

    settings = Settings.from_env().with_overrides(data_dir=data.resolve())
    instance = _instance(settings.dagster_home, INSTANCE_YAML)
    days = OfflineStore(settings.data_dir).partitions("raw/events")
    start, end = partitions_range(settings.data_dir)
    outcomes = run_steps(build_defs(start, end=end), [TILES_STEP], instance,
                         platform_resources(settings, raw_dir=data.parent / "sample"), days[0], days[-1], print)
    if not all(o.success for o in outcomes):
        sys.exit(f"tiles failed: {outcomes}")


def _instance(home: Path, yaml: str) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")  # as the CLI sets it
    return dg.DagsterInstance.get()


def run_only(work: Path, config: str, shards: int) -> dict[str, Any]:
    """One measured run of the last day's snapshots (this process is the run's process); what it did, as JSON."""
    from feature_platform.cli import INSTANCE_YAML
    from feature_platform.offline.store import OfflineStore
    from feature_platform.orchestration.pipeline import QUIET_CONSOLE, RANGE_END_TAG, RANGE_START_TAG

    started = time.monotonic()
    data = work / "data"
    count = 1 if config == "unsharded" else shards
    os.environ.update(FP_DATA_DIR=str(data), FP_SHARDS=str(count))
    day = OfflineStore(data).partitions("raw/events")[-1]
    home = work / "homes" / f"{config}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.getpid()}"
    executor = {"in_process": {}} if count == 1 else {"multiprocess": {"max_concurrent": os.cpu_count() or 1}}
    with _instance(home, INSTANCE_YAML) as instance:
        result = dg.execute_job(dg.reconstructable(snapshot_job), instance=instance,
                                run_config={**QUIET_CONSOLE, "execution": {"config": executor}},
                                tags={RANGE_START_TAG: day, RANGE_END_TAG: day})
        events = instance.all_logs(result.run_id)
    steps: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.dagster_event is None or event.step_key is None:
            continue
        step = steps.setdefault(event.step_key, {})
        kind = event.dagster_event.event_type_value
        if kind == "STEP_START":
            step.update(start=event.timestamp, pid=event.dagster_event.pid)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            step.update(end=event.timestamp, ok=kind == "STEP_SUCCESS")
    files = {}
    for path in sorted((data / "features").glob(f"*/{day}.parquet")):
        files[path.parent.name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                   "bytes": path.stat().st_size, "rows": pq.read_metadata(path).num_rows}
    return {"config": config, "shards": count, "day": day, "success": result.success, "pid": os.getpid(),
            "seconds_in_process": time.monotonic() - started, "files": files,
            "steps": {k: {"seconds": v["end"] - v["start"], "pid": v.get("pid"), "ok": v.get("ok")}
                      for k, v in steps.items() if "start" in v and "end" in v}}


def machine_state() -> dict[str, float]:
    """1-minute load average, and the CPU ticks stolen by the host and in all so far (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    return {"load1": os.getloadavg()[0], "steal": ticks[7], "total": sum(ticks[:8]), "time": time.time()}


def measure(work: Path, config: str, shards: int) -> dict[str, Any]:
    """Run ``--run-only config`` as a child; poll its process tree's RSS; its wall, CPU and report."""
    before, usage = machine_state(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    child = psutil.Popen([sys.executable, __file__, "--data-dir", str(work), "--shards", str(shards),
                          "--run-only", config], stdout=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    tree_peak, alive_peak = 0, 0
    while child.poll() is None:
        try:
            processes = [child, *child.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = 0
        for proc in processes:
            try:
                rss = proc.memory_info().rss
                if proc.pid not in names:
                    names[proc.pid] = " ".join(Path(part).name for part in proc.cmdline()[:3])[:60]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peaks[proc.pid] = max(peaks.get(proc.pid, 0), rss)
            total += rss
        tree_peak, alive_peak = max(tree_peak, total), max(alive_peak, len(processes))
        time.sleep(0.1)
    out, _ = child.communicate()
    wall = time.monotonic() - started
    after, done = machine_state(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode != 0:
        sys.exit(f"{config} run failed ({child.returncode})")
    report = json.loads(out.strip().splitlines()[-1])
    step_pids = {s["pid"]: key for key, s in report["steps"].items()}
    report.update(
        wall=wall, cpu=(done.ru_utime - usage.ru_utime) + (done.ru_stime - usage.ru_stime),
        maxrss_children=done.ru_maxrss * 1024, tree_peak=tree_peak, processes_at_once=alive_peak,
        processes=len(peaks), load_before=before["load1"], load_after=after["load1"],
        steal_share=(after["steal"] - before["steal"]) / max(1, after["total"] - before["total"]),
        rss={pid: {"peak": peak, "role": "run process" if pid == child.pid else step_pids.get(pid, names.get(pid, "?"))}
             for pid, peak in peaks.items()},
    )
    return report


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def summarise(runs: list[dict[str, Any]]) -> None:
    print("\n| run | wall | CPU (all processes) | processes (at once) | peak RSS: run process | largest other process "
          "| sum at once | load 1-min before/after | stolen |\n|" + " --- |" * 9)
    for r in runs:
        steps = [v["peak"] for pid, v in r["rss"].items() if v["role"] != "run process"]
        run_peak = next(v["peak"] for v in r["rss"].values() if v["role"] == "run process")
        print(f"| {r['config']} ({r['shards']} shard{'s' if r['shards'] > 1 else ''}) | {r['wall']:.1f} s "
              f"| {r['cpu']:.1f} s | {r['processes']} ({r['processes_at_once']}) | {gib(run_peak)} "
              f"| {gib(max(steps)) if steps else '-'} | {gib(r['tree_peak'])} "
              f"| {r['load_before']:.2f} / {r['load_after']:.2f} | {r['steal_share']:.1%} |")
    for r in runs:
        families: dict[str, dict[str, list[float]]] = {}
        for key, step in r["steps"].items():
            family, _, op = key.rpartition(".")
            kind = "step" if not family else op.split("[")[0].rpartition("_")[2]
            families.setdefault((family or key).split("__")[-1], {}).setdefault(kind, []).append(step["seconds"])
        parts = []
        for family, kinds in sorted(families.items()):
            text = ", ".join(f"{kind} {statistics.median(s):.1f} s" + (f" (x{len(s)}, max {max(s):.1f})" if len(s) > 1
                                                                         else "") for kind, s in sorted(kinds.items()))
            parts.append(f"{family}: {text}")
        print(f"\n{r['config']} steps (in-step seconds): " + "; ".join(parts))
        peaks = sorted(((v["peak"], v["role"]) for v in r["rss"].values()), reverse=True)[:4]
        print(f"{r['config']} largest processes: " + ", ".join(f"{role.split('.')[-1]} {gib(p)}" for p, role in peaks)
              + f"; {sum(v['role'] in r['steps'] for v in r['rss'].values())} step processes")


def snapshot_sizes(report: dict[str, Any]) -> None:
    print("\n| family | rows | Parquet bytes | bytes per user-day |\n| --- | --- | --- | --- |")
    for name, f in report["files"].items():
        print(f"| {name} | {f['rows']:,} | {f['bytes']:,} | {f['bytes'] / max(1, f['rows']):.1f} |")
    rows = max(f["rows"] for f in report["files"].values())
    total = sum(f["bytes"] for f in report["files"].values())
    print(f"| all seven | {rows:,} users | {total:,} | {total / rows:.1f} |")


def redis_memory(work: Path, url: str, users: int) -> None:
    """Push the day's vectors of the first ``users`` users under a prefix of this run, used_memory before and
    after (and MEMORY USAGE of 2,000 keys), per feature value; then delete what this run wrote."""
    import redis

    from feature_platform.offline.snapshots import user_vectors
    from feature_platform.offline.store import OfflineStore
    from feature_platform.online.store import OnlineStore
    from feature_platform.registry import load_registry

    store, registry = OfflineStore(work / "data"), load_registry()
    day = dt.date.fromisoformat(store.partitions("raw/events")[-1])
    table = user_vectors(store, registry, day).slice(0, users)
    features = table.num_columns - 1
    client = redis.Redis.from_url(url)
    prefix = f"fpbench-shards:{uuid.uuid4().hex[:8]}"
    online = OnlineStore(client, registry, prefix=prefix)
    try:
        before = int(client.info("memory")["used_memory"])
        result = online.push(table, day)
        used = int(client.info("memory")["used_memory"]) - before
        keys = [online.entity_key(result.version, u) for u in table.column("user_id").to_pylist()[:2_000]]
        sampled = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
        print(f"\nRedis {client.info('server')['redis_version']} at {url}: {table.num_rows:,} users x {features} "
              f"features of {day}, {result.keys:,} keys, {result.bytes:,} value bytes")
        print(f"| bytes per feature value | used_memory delta | MEMORY USAGE ({len(keys):,} keys) | value bytes only |\n"
              f"| --- | --- | --- | --- |\n| | {used / (table.num_rows * features):.2f} "
              f"| {sampled / (len(keys) * features):.2f} | {result.bytes / (result.keys * features):.2f} |")
    finally:
        written = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for i in range(0, len(written), 10_000):
            client.delete(*written[i:i + 10_000])
        print(f"deleted the {len(written):,} keys under {prefix}:")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="days of history (the families' longest window is 90)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fp-bench-shards"))
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="unsharded/sharded pairs, run in turn")
    parser.add_argument("--redis-users", type=int, default=100_000, help="0: skip the Redis measurement")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--run-only", choices=CONFIGS, help="one measured run in this process, printed as JSON")
    parser.add_argument("--tiles-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.data_dir.resolve()
    if args.tiles_only:
        tiles_only(work / "data")
        return
    if args.run_only:
        print(json.dumps(run_only(work, args.run_only, args.shards)))
        return
    print(f"{args.users:,} users x {args.days} days in {work}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"load {os.getloadavg()[0]:.2f}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    prepare(work, args.users, args.days)
    runs = []
    for i in range(args.repeat):
        for config in CONFIGS:
            print(f"[measure {i + 1}/{args.repeat}] {config} ...", flush=True)
            runs.append(measure(work, config, args.shards))
            print(f"    {runs[-1]['wall']:.1f} s, success {runs[-1]['success']}", flush=True)
    reference = runs[0]["files"]
    for run in runs[1:]:
        differ = [name for name, f in reference.items() if run["files"].get(name, {}).get("sha256") != f["sha256"]]
        print(f"{run['config']} files against the first unsharded run's: "
              f"{'identical' if not differ and len(run['files']) == len(reference) else f'DIFFER: {differ}'}")
    summarise(runs)
    snapshot_sizes(runs[0])
    (work / "results.json").write_text(json.dumps(runs, indent=1))
    if args.redis_users:
        redis_memory(work, args.redis_url, args.redis_users)


if __name__ == "__main__":
    main()
