"""Benchmark: the same backfill of the feature families on dagster-celery workers, 1 worker against 2: wall time,
where the time goes, each worker's peak RSS; every run's snapshots compared byte for byte.

    python bench/bench_celery.py [--users 100000] [--days 90] [--backfill-days 7] [--shards 4] [--pairs 3]
                                 [--data-dir /tmp/fp-bench-celery] [--broker redis://127.0.0.1:6379/11]
                                 [--wait-minutes 25] [--max-load 1.5] [--settle-minutes 3]
    python bench/bench_celery.py --prepare-only        # the data set alone
    python bench/bench_celery.py --report DIR/results.json   # the tables of saved runs again

``prepare`` (once; kept in --data-dir and reused while --users and --days stay the same): ``feature-platform
generate``, ``feature-platform ingest``, then the tiles of every day as one in-process Dagster run (the
``build_daily_tiles`` step of ``feature-platform run``). The backfill measured is what ``feature-platform backfill
--assets features`` runs for the last --backfill-days days: one run of the features group (every family's
snapshots and checks) over the range, with FP_SHARDS=--shards, so each family is ``<family>_shards``, a
``<family>_shard`` step per shard, ``<family>_combine`` and its drift check: many independent steps.

Each measured run gets a fresh copy of the landed data (raw partitions, tiles, topic model; no snapshots) and a
fresh SQLite instance (the CLI's), starts its workers with the documented command (``dagster-celery worker start
-A dagster_celery.app -y <worker.yaml> -n NAME -i MODULE -- --concurrency=1``, each in its own process group),
waits until every worker answers a ping, then runs the backfill in a fresh Python process (``--run-only``) with
FP_EXECUTOR=celery, and stops the workers afterwards (SIGTERM to the group). The timed part is the run alone
(``execute_job``), not the workers' start. The setups alternate (1, 2, 1, 2, ...) to spread the machine's noise
over both. This process polls every worker's and the run's processes every 0.25 s (psutil) for RSS and reads
their CPU time before and after; /proc/loadavg and /proc/stat's steal column before and after each run.

The broker is a database of the local Redis (--broker, DB 11 by default); every key this script writes there
goes under a prefix of its own (Celery's global_keyprefix), and those keys are deleted at the end. Before the
first run it waits (up to --wait-minutes) until no other ``bench_`` process runs and the 1-minute load is below
--max-load, before each later run up to --settle-minutes; each run's line states the load either way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import yaml
from bench_shards import prepare  # the same data, prepared (and reused) the same way

from feature_platform.config import Settings
from feature_platform.offline.calendar import partitions_range
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.execution import platform_executor

REPO = Path(__file__).resolve().parents[1]
WORKER_YAML = REPO / "deploy" / "celery" / "worker.yaml"
JOB = "bench_celery_backfill"
SETUPS = (1, 2)  # workers per run, in the order each pair runs them
POLL = 0.25
# Definitions.map_asset_specs (definitions.py) warns in every process that builds the definitions
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def backfill_job() -> dg.JobDefinition:
    """The features group (every family's snapshots and their checks) as one job on the platform executor, from
    the definitions FP_DATA_DIR and FP_SHARDS give: every worker rebuilds it from the same variables."""
    from feature_platform.definitions import build_defs

    start, end = partitions_range(Settings.from_env().data_dir)
    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.groups(C.GROUP_FEATURES),
                              executor_def=platform_executor)
    return dg.Definitions.merge(build_defs(start, end=end), dg.Definitions(jobs=[job])).resolve_job_def(JOB)


def _instance(home: Path) -> dg.DagsterInstance:
    """The CLI's local instance (SQLite, its event log keeping connections open) in ``home``."""
    from feature_platform.cli import EVENT_BATCH_SIZE, INSTANCE_YAML

    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)  # as the CLI sets it
    return dg.DagsterInstance.get()


# -- one measured run (its own process) ----------------------------------------------------------------------
def celery_conf(prefix: str) -> dict[str, Any]:
    """Celery settings of the run and of every worker: keys under ``prefix``; late acks, so a worker busy with
    a step holds no second step's message and a free worker takes it instead (the test does the same)."""
    return {"broker_transport_options": {"global_keyprefix": prefix},
            "result_backend_transport_options": {"global_keyprefix": prefix},
            "task_acks_late": True}


def run_only(run_dir: Path, prefix: str, first: str, last: str) -> dict[str, Any]:
    """The backfill on the Celery executor, this process being the run's process; what happened, as JSON."""
    import resource

    from feature_platform.orchestration.execution import run_config
    from feature_platform.orchestration.pipeline import QUIET_CONSOLE, RANGE_END_TAG, RANGE_START_TAG

    # dagster-celery registers its task on the run's Celery app once per step submitted; Celery warns each time
    warnings.filterwarnings("ignore", message=".*already registered.*")
    config = run_config(Settings.from_env())
    config["execution"]["config"]["celery"]["config_source"] = celery_conf(prefix)
    with _instance(run_dir / "home") as instance:
        cpu_before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        result = dg.execute_job(dg.reconstructable(backfill_job), instance=instance,
                                run_config={**QUIET_CONSOLE, **config},
                                tags={RANGE_START_TAG: first, RANGE_END_TAG: last})
        wall, cpu_after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF)
        stats = instance.get_run_stats(result.run_id)
        events = instance.all_logs(result.run_id)
    steps: dict[str, dict[str, Any]] = {}
    for record in events:
        event = record.dagster_event
        if event is None or record.step_key is None:
            continue
        step = steps.setdefault(record.step_key, {})
        kind = event.event_type_value
        if kind == "ENGINE_EVENT":
            metadata = event.engine_event_data.metadata
            if "Celery worker" in metadata:  # the worker's task has rebuilt the job and the step's plan
                step.update(worker=str(metadata["Celery worker"].value).split("@")[0], task=record.timestamp)
            elif record.user_message.startswith("Submitting celery task"):
                step["submitted"] = record.timestamp
        elif kind == "STEP_START":
            step.update(start=record.timestamp, pid=event.pid)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            step.update(end=record.timestamp, ok=kind == "STEP_SUCCESS")
    data = Path(os.environ["FP_DATA_DIR"])
    files = {str(path.relative_to(data)): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted((data / "features").rglob("*.parquet"))}
    return {"success": result.success, "run_id": result.run_id, "wall": wall,
            "run_start": stats.start_time, "run_end": stats.end_time,
            "cpu_run_process": (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
            "staging_left": (data / "staging").exists(), "files": files, "steps": steps}


# -- workers -------------------------------------------------------------------------------------------------
class Worker:
    """One ``dagster-celery worker start`` process group (the CLI, the celery worker it runs, its pool child)."""

    def __init__(self, name: str, config: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        command = [str(Path(sys.executable).with_name("dagster-celery")), "worker", "start", "-A",
                   "dagster_celery.app", "-y", str(config), "-n", name,
                   # this module (which imports the definitions) once, before the pool forks
                   "-i", Path(__file__).stem, "-i", "feature_platform.definitions",
                   "--", "--concurrency=1", "--without-mingle", "--without-gossip"]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM to the group (Celery's warm shutdown), SIGKILL what is left after 20 s; wait for every one."""
        members = self.processes()
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            _, members = psutil.wait_procs(members, timeout=grace)
            if not members:
                break
        self.process.wait(timeout=10)
        if members:
            print(f"WARNING: worker {self.name} left processes behind: {members}", flush=True)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def wait_until_ready(workers: list[Worker], conf: dict[str, Any], broker: str, timeout: float = 120.0) -> None:
    """Until every worker answers a ping through the broker."""
    from celery import Celery

    app = Celery("fp-bench-ping", broker=broker, backend=broker)
    app.conf.update(conf)
    deadline, expected, answered = time.monotonic() + timeout, {w.name for w in workers}, set()
    try:
        while time.monotonic() < deadline:
            for worker in workers:
                if worker.process.poll() is not None:
                    sys.exit(f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.tail()}")
            answered = {name.split("@")[0] for reply in app.control.ping(timeout=1.0) or [] for name in reply}
            if expected <= answered:
                return
        sys.exit(f"workers {expected - answered} did not answer within {timeout} s:\n"
                 + "\n".join(w.tail() for w in workers))
    finally:
        app.close()


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
    return seconds


# -- the machine ---------------------------------------------------------------------------------------------
def machine_state() -> dict[str, Any]:
    """/proc/loadavg, and the CPU ticks stolen by the host and in all so far (/proc/stat's first line)."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return {"loadavg": Path("/proc/loadavg").read_text().strip(), "load1": os.getloadavg()[0],
            "steal": ticks[7], "total": sum(ticks[:8]), "time": time.time()}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def other_benchmarks() -> list[str]:
    """``pgrep -af bench_`` less this process, its ancestors and its descendants."""
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents()), *(p.pid for p in me.children(recursive=True))}
    found = subprocess.run(["pgrep", "-af", "bench_"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if int(line.split()[0]) not in ours]


def wait_for_quiet(minutes: float, max_load: float) -> None:
    deadline = time.monotonic() + minutes * 60
    while True:
        others, load = other_benchmarks(), os.getloadavg()[0]
        if not others and load < max_load:
            print(f"[quiet] no other benchmark, 1-minute load {load:.2f}", flush=True)
            return
        if time.monotonic() > deadline:
            print(f"[quiet] waited {minutes:.0f} min; measuring anyway: load {load:.2f}, others {others}", flush=True)
            return
        print(f"[quiet] waiting: load {load:.2f}, {len(others)} other bench process(es): "
              + "; ".join(o[:100] for o in others), flush=True)
        time.sleep(15)


# -- one measured run, seen from outside -----------------------------------------------------------------------
def measure(work: Path, index: int, count: int, shards: int, broker: str, prefix: str, days: list[str]) -> dict:
    run_dir = work / "runs" / f"run-{index:02d}-{count}w"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data = run_dir / "data"
    shutil.copytree(work / "data", data, ignore=shutil.ignore_patterns(
        "*.sock", "*.settings", "dagster_home", ".ingested-*", ".tiled-*"))
    if (data / "features").exists():
        sys.exit(f"{data / 'features'} exists: the landed data must hold no snapshots")
    home = run_dir / "home"
    _instance(home).dispose()  # the instance's storage exists before the workers open the same DAGSTER_HOME
    conf = celery_conf(prefix)
    worker_config = yaml.safe_load(WORKER_YAML.read_text())
    worker_config["execution"]["config"]["config_source"] = conf
    (run_dir / "worker.yaml").write_text(yaml.safe_dump(worker_config))
    env = {**os.environ, "FP_DATA_DIR": str(data), "FP_SHARDS": str(shards), "FP_EXECUTOR": "celery",
           "FP_CELERY_BROKER": broker, "FP_CELERY_BACKEND": broker, "DAGSTER_HOME": str(home),
           "DAGSTER_EVENT_BATCH_SIZE": os.environ.get("DAGSTER_EVENT_BATCH_SIZE", "1000"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO),
                                          *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("FP_DATA_URL", None)
    workers = [Worker(f"fp-bench-w{i + 1}-{os.getpid()}", run_dir / "worker.yaml", env, run_dir / f"w{i + 1}.log")
               for i in range(count)]
    try:
        wait_until_ready(workers, conf, broker)
        trees = {w.name: w.processes() for w in workers}
        cpu_start = {name: cpu_seconds(procs) for name, procs in trees.items()}
        before = machine_state()
        started = time.monotonic()
        child = psutil.Popen([sys.executable, __file__, "--run-only", str(run_dir), "--prefix", prefix,
                              "--start", days[0], "--end", days[-1]], env=env, stdout=subprocess.PIPE, text=True)
        peaks: dict[str, dict[int, int]] = {name: {} for name in [*trees, "run"]}
        while child.poll() is None:
            for name, procs in [*trees.items(), ("run", [child])]:
                for proc in procs:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        peaks[name][proc.pid] = max(peaks[name].get(proc.pid, 0), proc.memory_info().rss)
            time.sleep(POLL)
        out, _ = child.communicate()
        outer = time.monotonic() - started
        after = machine_state()
        cpu_end = {name: cpu_seconds(procs) for name, procs in trees.items()}
    finally:
        for worker in workers:
            worker.stop()
    if child.returncode != 0:
        sys.exit(f"run {index} ({count} workers) failed ({child.returncode}):\n"
                 + "\n".join(w.tail() for w in workers))
    report = json.loads(out.strip().splitlines()[-1])
    if not report["success"]:
        sys.exit(f"run {index} ({count} workers) did not succeed:\n" + "\n".join(w.tail() for w in workers))
    report.update(
        index=index, workers=count, outer_wall=outer, before=before, after=after,
        steal_share=(after["steal"] - before["steal"]) / max(1, after["total"] - before["total"]),
        worker_cpu={name: sum(cpu_end[name].get(pid, 0.0) - cpu_start[name].get(pid, 0.0) for pid in cpu_end[name])
                    for name in trees},
        worker_peak_rss={name: max(peaks[name].values(), default=0) for name in trees},
        worker_tree_rss={name: sum(peaks[name].values()) for name in trees},
        run_peak_rss=max(peaks["run"].values(), default=0),
    )
    shutil.rmtree(data)  # the snapshots are hashed in the report; the next run copies the landed data again
    return report


# -- reading the runs ----------------------------------------------------------------------------------------
def family_of(step_key: str) -> str:
    """The family a step belongs to: ``features__x.activity_shard[shard_0]`` -> activity's asset."""
    return step_key.split(".")[0].removeprefix("features__").split("_feature_drift")[0]


def timeline(report: dict[str, Any]) -> dict[str, float]:
    """Where one run's wall time went: the steps' own seconds, the gaps between a worker's steps, and the
    longest family (its shards step, its slowest shard, its combine and drift steps, in series)."""
    steps = {k: s for k, s in report["steps"].items() if "start" in s and "end" in s}
    in_step = {k: s["end"] - s["start"] for k, s in steps.items()}
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for step in steps.values():
        by_worker.setdefault(step.get("worker", "?"), []).append(step)
    gaps = []
    for runs in by_worker.values():
        runs.sort(key=lambda s: s["start"])
        gaps += [b["start"] - a["end"] for a, b in zip(runs, runs[1:], strict=False)]
    setup = [s["start"] - s["task"] for s in steps.values() if "task" in s]  # job rebuilt in the worker -> STEP_START
    families: dict[str, float] = {}
    slowest_shard: dict[str, float] = {}
    for key, seconds in in_step.items():
        family = family_of(key)
        if "_shard[" in key:
            slowest_shard[family] = max(slowest_shard.get(family, 0.0), seconds)
        else:
            families[family] = families.get(family, 0.0) + seconds
    chains = {f: families.get(f, 0.0) + slowest_shard.get(f, 0.0) for f in {*families, *slowest_shard}}
    first = min(s["start"] for s in steps.values())
    last = max(s["end"] for s in steps.values())
    at_once: dict[int, float] = {}  # seconds of the run with 0, 1, 2, ... steps in progress
    running, since = 0, report["run_start"]
    for moment, change in sorted([(s["start"], 1) for s in steps.values()] + [(s["end"], -1) for s in steps.values()]):
        at_once[running] = at_once.get(running, 0.0) + moment - since
        running, since = running + change, moment
    at_once[0] = at_once.get(0, 0.0) + report["run_end"] - since
    return {"at_once": at_once, "steps": len(steps), "in_step_total": sum(in_step.values()),
            "in_step_by_worker": {w: sum(s["end"] - s["start"] for s in r) for w, r in by_worker.items()},
            "steps_by_worker": {w: len(r) for w, r in by_worker.items()},
            "gap_median": statistics.median(gaps) if gaps else 0.0, "gap_total": sum(gaps),
            "gaps_over_2s": sum(1 for g in gaps if g > 2.0),
            "task_to_step_start_median": statistics.median(setup) if setup else 0.0,
            "before_first_step": first - report["run_start"], "after_last_step": report["run_end"] - last,
            "longest_family_chain": max(chains.values()), "longest_family": max(chains, key=chains.__getitem__)}


def busy(ts: list[dict[str, Any]], running: int) -> float:
    """Median over runs of the seconds with ``running`` steps in progress (2: two or more)."""
    return statistics.median(sum(v for k, v in t["at_once"].items() if min(k, 2) == running) for t in ts)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def summarise(runs: list[dict[str, Any]]) -> None:
    print("\n| run | workers | wall (run) | steps per worker | in-step s per worker | CPU s: workers + run process "
          "| CPU use of 2 cores | peak RSS per worker (pool process) | run process RSS | loadavg before -> after "
          "| stolen |\n|" + " --- |" * 11)
    for r in runs:
        t = timeline(r)
        names = sorted(r["worker_cpu"])
        cpu = sum(r["worker_cpu"].values()) + r["cpu_run_process"]
        per_worker = " / ".join(str(t["steps_by_worker"].get(n, 0)) for n in names)
        in_step = " / ".join(f"{t['in_step_by_worker'].get(n, 0.0):.1f}" for n in names)
        rss = " / ".join(mib(r["worker_peak_rss"][n]) for n in names)
        load = f"{' '.join(r['before']['loadavg'].split()[:3])} -> {' '.join(r['after']['loadavg'].split()[:3])}"
        print(f"| {r['index']} | {r['workers']} | {r['wall']:.1f} s | {per_worker} | {in_step} "
              f"| {sum(r['worker_cpu'].values()):.0f} + {r['cpu_run_process']:.0f} | {cpu / (2 * r['wall']):.0%} "
              f"| {rss} | {mib(r['run_peak_rss'])} | {load} | {r['steal_share']:.1%} |")
    print("\n| setup | runs | wall median (min-max) | in-step s, all steps | gap between a worker's steps, median "
          "(total over workers) | rebuild job -> step start, median | longest family in series (in-step s) "
          "| run start -> first step | last step -> run end | s with 0 / 1 / 2+ steps running |\n|" + " --- |" * 10)
    for count in SETUPS:
        mine = [r for r in runs if r["workers"] == count]
        if not mine:
            continue
        walls = [r["wall"] for r in mine]
        ts = [timeline(r) for r in mine]

        def med(key: str, ts: list[dict[str, Any]] = ts) -> float:
            return statistics.median(t[key] for t in ts)

        print(f"| {count} worker{'s' if count > 1 else ''} | {len(mine)} | **{statistics.median(walls):.1f} s** "
              f"({min(walls):.1f}-{max(walls):.1f}) | {med('in_step_total'):.1f} "
              f"| {med('gap_median'):.2f} s ({med('gap_total'):.1f} s) | {med('task_to_step_start_median'):.2f} s "
              f"| {med('longest_family_chain'):.1f} ({ts[0]['longest_family']}) | {med('before_first_step'):.1f} s "
              f"| {med('after_last_step'):.1f} s | {' / '.join(f'{busy(ts, n):.1f}' for n in (0, 1, 2))} |")
    pairs = [(a, b) for a, b in zip(runs[::2], runs[1::2], strict=False) if (a["workers"], b["workers"]) == SETUPS]
    if pairs:
        ratios = [a["wall"] / b["wall"] for a, b in pairs]
        print(f"\nwall 1 worker / 2 workers, pair by pair: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}; ratio of the medians "
              f"{statistics.median(a['wall'] for a, _ in pairs) / statistics.median(b['wall'] for _, b in pairs):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90, help="days of history (the families' longest window is 90)")
    parser.add_argument("--backfill-days", type=int, default=7, help="the backfill's range: the data's last N days")
    parser.add_argument("--shards", type=int, default=4, help="FP_SHARDS of the backfill")
    parser.add_argument("--pairs", type=int, default=3, help="1-worker / 2-worker pairs, run in turn")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fp-bench-celery"))
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/11", help="the Celery broker and result backend")
    parser.add_argument("--wait-minutes", type=float, default=25.0, help="wait this long at most for a quiet machine")
    parser.add_argument("--max-load", type=float, default=1.5, help="quiet: 1-minute load below this")
    parser.add_argument("--settle-minutes", type=float, default=3.0,
                        help="between runs, wait this long at most for a quiet machine")
    parser.add_argument("--prepare-only", action="store_true", help="make the data set, measure nothing")
    parser.add_argument("--report", type=Path, help="print the tables of a saved results.json, measure nothing")
    parser.add_argument("--run-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.data_dir.resolve()
    if args.run_only:
        print(json.dumps(run_only(args.run_only, args.prefix, args.start, args.end)))
        return
    if args.report:
        runs = json.loads(args.report.read_text())
        compare_files(runs)
        summarise(runs)
        return

    import redis

    from feature_platform.offline.store import OfflineStore

    print(f"{args.users:,} users x {args.days} days in {work}; {os.cpu_count()} cores ({cpu_model()}), "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"load {Path('/proc/loadavg').read_text().strip()}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
          flush=True)
    prepare(work, args.users, args.days)
    if args.prepare_only:
        return
    days = OfflineStore(work / "data").partitions("raw/events")[-args.backfill_days:]
    prefix = f"fp-bench-celery-{uuid.uuid4().hex[:12]}:"
    print(f"backfill: the features group, {days[0]} .. {days[-1]} ({len(days)} days), FP_SHARDS={args.shards}; "
          f"broker {args.broker}, keys under {prefix}", flush=True)
    wait_for_quiet(args.wait_minutes, args.max_load)
    runs: list[dict[str, Any]] = []
    try:
        for pair in range(args.pairs):
            for count in SETUPS:
                index = len(runs) + 1
                if runs:  # let the last run's load settle (and another benchmark end) before the next one
                    wait_for_quiet(args.settle_minutes, args.max_load)
                others = other_benchmarks()
                print(f"[run {index}] pair {pair + 1}/{args.pairs}, {count} worker(s); load "
                      f"{Path('/proc/loadavg').read_text().strip()}"
                      + (f"; OTHER BENCHMARKS: {others}" if others else ""), flush=True)
                runs.append(measure(work, index, count, args.shards, args.broker, prefix, days))
                runs[-1]["others"] = others
                t = timeline(runs[-1])
                print(f"    {runs[-1]['wall']:.1f} s ({runs[-1]['outer_wall']:.1f} s with the run process' start), "
                      f"{t['steps']} steps, per worker {t['steps_by_worker']}", flush=True)
    finally:
        client = redis.Redis.from_url(args.broker)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i:i + 1000])
            print(f"deleted the {len(keys)} broker keys under {prefix}", flush=True)
        finally:
            client.close()
        (work / "results.json").write_text(json.dumps(runs, indent=1))
    compare_files(runs)
    summarise(runs)


def compare_files(runs: list[dict[str, Any]]) -> None:
    reference = runs[0]["files"]
    print(f"\nsnapshot files per run: {len(reference)}")
    for run in runs[1:]:
        differ = sorted(set(reference.items()) ^ set(run["files"].items()))
        print(f"run {run['index']} ({run['workers']} workers) against run 1: "
              f"{'identical' if not differ else f'DIFFER: {differ[:4]}'}; staging left: {run['staging_left']}")


if __name__ == "__main__":
    main()
