"""Benchmark: the feature server over HTTP on loopback, beside a raw-limit server on the same Redis.

    python bench/bench_http.py [--data-dir /tmp/fp-bench-http] [--rate 1000] [--duration 20] [--repeat 3]

1. Data: ``--data-dir`` of an earlier `feature-platform run` is used as it is. When it has no feature
   snapshots, ``feature-platform run --users --days --data-dir`` makes them (its exit code is ignored:
   a small run's contact model may miss its promotion gate; the snapshots are what counts). When the
   online store serves nothing yet, the latest complete snapshot is pushed as the pipeline does.
2. Servers, each its own process on a free loopback port, both on the same Redis (the embedded
   redis-server under ``<data>/online/``, started here and shared, or FP_REDIS_URL):
   - ``feature-platform serve`` exactly as shipped (one uvicorn worker, uvloop + httptools when installed);
   - the raw limit: a bare ASGI app on the same uvicorn settings and the same redis-py client options that
     sends the round trip the online store sends for one vector (pipelined HGET of the pointer, GET of the
     vector, HGETALL of its event overlay) and answers the vector's bytes. The gap is the price of
     FastAPI, validation, decoding, per-feature status and JSON.
3. Load, from a separate process (asyncio on uvloop, raw keep-alive HTTP/1.1 sockets):
   - open loop, ``--repeat`` rounds per server, alternating between the servers (so a burst of other work on
     a shared machine spoils a round, not a server): request i is due at start + i/rate over
     ``--connections`` connections, warm-up first;
     latency runs from the due time (from the hand-over, when the timer fired early) to the answer's
     last byte, so a slow answer that delays the next sends is counted against the server (no
     coordinated omission). Also reported: the
     generator's own lateness (when the request left the dispatcher vs when it was due: its timer has
     ~1 ms resolution, and that slack is inside the latency figure) and the service time (send to answer);
   - closed loop: ``--closed-connections`` connections, each sending its next request when the previous
     answer arrives, for the maximum requests/s.
   GET /features/{user} for users drawn at random (seeded) from the served version's keys. Every
   answer's status is checked. Per run: server and redis-server CPU ms per request (psutil), the
   generator's CPU share, and the machine's other work in cores (all busy CPU minus these processes):
   a figure taken while other work ran says so.
Prints one line per run, the goal line (MET / MISSED: the feature server's median-round p99 < 5 ms at
1,000 req/s, every round at >= 99% of the rate with no non-200 answer), and one JSON line.
``--reload-seconds 0`` runs the server without its 30-s reload thread, to tell its pauses apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import psutil

GOAL_P99_MS = 5.0
GOAL_RATE = 1_000.0
REDIS_TIMEOUT_SECONDS = 0.5  # as the server's client (serving/api.py)
FP = Path(sys.executable).with_name("feature-platform")


# -- the raw-limit server (run in its own process: bench_http.py --serve-raw PORT) ----------------
def raw_app(data_dir: Path) -> Any:
    """A bare ASGI app: one pipelined round trip per request, the vector's bytes as the answer."""
    from feature_platform.config import Settings
    from feature_platform.online.connection import connect

    settings = Settings.from_env().with_overrides(data_dir=data_dir)
    client = connect(settings, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    prefix = settings.redis_prefix
    pointer = f"{prefix}:current"
    seen = [(client.hget(pointer, "version") or b"").decode()]
    not_found = b'{"detail":"unknown user"}'

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        user = scope["path"].rsplit("/", 1)[-1]
        pipe = client.pipeline(transaction=False)
        pipe.hget(pointer, "version")
        pipe.get(f"{prefix}:{seen[0]}:u:{user}")
        pipe.hgetall(f"{prefix}:{seen[0]}:e:{user}")
        served, blob, _overlay = pipe.execute()
        if served is not None and served.decode() != seen[0]:  # the pointer moved: a second trip, as the store
            seen[0] = served.decode()
            blob = client.get(f"{prefix}:{seen[0]}:u:{user}")
        status, body = (200, blob) if blob is not None else (404, not_found)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_raw(data_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(raw_app(data_dir), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the load generator (runs in a separate process) ------------------------------------------------
async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise RuntimeError(f"answer without content-length: {head[:200]!r}")
    length = int(lower[at + 15:lower.index(b"\r\n", at)])
    await reader.readexactly(length)
    return status


async def _open_loop(port: int, requests: list[bytes], rate: float, warmup: float, duration: float,
                     connections: int) -> dict[str, Any]:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    total, skip = int(rate * (warmup + duration)), int(rate * warmup)
    due = np.empty(total)
    left = np.full(total, np.nan)  # when the dispatcher handed it over
    sent = np.full(total, np.nan)
    done = np.full(total, np.nan)
    status = np.zeros(total, dtype=np.int32)
    queue: asyncio.Queue[int] = asyncio.Queue()
    clock = time.perf_counter
    start = clock() + 0.05
    due[:] = start + np.arange(total) / rate

    async def dispatcher() -> None:
        for i in range(total):
            wait = due[i] - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            left[i] = clock()
            queue.put_nowait(i)
        for _ in streams:
            queue.put_nowait(-1)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (i := await queue.get()) >= 0:
            sent[i] = clock()
            writer.write(requests[i % len(requests)])
            status[i] = await _read_answer(reader)
            done[i] = clock()

    cpu0 = time.process_time()
    await asyncio.gather(dispatcher(), *(worker(r, w) for r, w in streams))
    cpu = time.process_time() - cpu0
    for _, writer in streams:
        writer.close()
    window = slice(skip, total)
    # from the due time; from the hand-over when the timer fired early (it rounds to 1 ms), never less
    latency = done[window] - np.minimum(due[window], left[window])
    return {
        "requests": total - skip,
        "all_requests": total,
        "target_rate": rate,
        "achieved_rate": (total - skip) / (np.nanmax(done[window]) - due[skip]),
        "latency_ms": _percentiles(latency),
        "service_ms": _percentiles(done[window] - sent[window]),
        "generator_lateness_ms": _percentiles(left[window] - due[window]),
        "non_200": int(np.count_nonzero(status[window] != 200)),
        "generator_cpu_share": cpu / (np.nanmax(done) - start),
    }


async def _closed_loop(port: int, requests: list[bytes], warmup: float, duration: float,
                       connections: int) -> dict[str, Any]:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    clock = time.perf_counter
    begin = clock()
    measure_from, stop = begin + warmup, begin + warmup + duration
    samples: list[list[float]] = [[] for _ in streams]
    bad = [0] * len(streams)
    count = [0]

    async def worker(k: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(k)
        mine, n = samples[k], len(requests)
        while (t0 := clock()) < stop:
            writer.write(requests[rng.randrange(n)])
            code = await _read_answer(reader)
            t1 = clock()
            count[0] += 1
            if t0 >= measure_from:
                mine.append(t1 - t0)
                bad[k] += code != 200

    cpu0 = time.process_time()
    await asyncio.gather(*(worker(k, r, w) for k, (r, w) in enumerate(streams)))
    ended = clock()
    cpu = time.process_time() - cpu0
    for _, writer in streams:
        writer.close()
    latency = np.array([s for mine in samples for s in mine])
    return {
        "connections": connections,
        "requests": len(latency),
        "all_requests": count[0],
        "requests_per_s": len(latency) / (ended - measure_from),
        "latency_ms": _percentiles(latency),
        "non_200": sum(bad),
        "generator_cpu_share": cpu / (ended - begin),
    }


def _percentiles(seconds: np.ndarray) -> dict[str, float]:
    ms = seconds[~np.isnan(seconds)] * 1e3
    quantiles = np.percentile(ms, [50, 90, 99, 99.9])
    return {"p50": round(float(quantiles[0]), 3), "p90": round(float(quantiles[1]), 3),
            "p99": round(float(quantiles[2]), 3), "p99.9": round(float(quantiles[3]), 3),
            "max": round(float(ms.max()), 3)}


def run_load(kind: str, port: int, paths: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """One load run in this (child) process; uvloop when installed, as the servers use."""
    import gc

    try:
        import uvloop
        loop_name, new_loop = "uvloop", uvloop.new_event_loop
    except ImportError:
        loop_name, new_loop = "asyncio", asyncio.new_event_loop
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() for p in paths]
    gc.disable()  # the generator allocates little; no collector pauses inside the measurement
    loop = new_loop()
    try:
        if kind == "open":
            coro = _open_loop(port, requests, options["rate"], options["warmup"], options["duration"],
                              options["connections"])
        else:
            coro = _closed_loop(port, requests, options["warmup"], options["closed_duration"],
                                options["closed_connections"])
        result = loop.run_until_complete(coro)
    finally:
        loop.close()
    return {**result, "generator_loop": loop_name}


# -- orchestration ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(data_dir: Path, users: int, days: int) -> tuple[Any, list[str], str]:
    """The online store client (keeps the embedded redis-server up), the served users, the served version."""
    from feature_platform.config import Settings
    from feature_platform.offline.snapshots import user_vectors
    from feature_platform.offline.store import OfflineStore
    from feature_platform.online.connection import connect
    from feature_platform.online.store import OnlineStore
    from feature_platform.registry.registry import load_registry
    from feature_platform.serving.state import latest_complete_day

    settings = Settings.from_env().with_overrides(data_dir=data_dir)
    registry, offline = load_registry(), OfflineStore(data_dir)
    if latest_complete_day(offline, registry) is None:
        command = [str(FP), "run", "--users", str(users), "--days", str(days), "--data-dir", str(data_dir)]
        print(f"making the data: {' '.join(command)}", flush=True)
        with open(data_dir.parent / f"{data_dir.name}.run.log", "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        print(f"  exit code {code} (log {log.name})", flush=True)
    day = latest_complete_day(offline, registry)
    if day is None:
        raise SystemExit(f"no complete feature snapshot under {data_dir}; see the run log")
    store = OnlineStore(connect(settings), registry, settings.redis_prefix)
    served = store.current()
    if served is None:
        result = store.push(user_vectors(offline, registry, day), day)
        print(f"pushed snapshot {day}: {result.keys} keys in {result.seconds:.2f} s", flush=True)
        served = store.current()
    pattern = f"{settings.redis_prefix}:{served.version}:u:*"
    keys = [k.decode() for k in store.client.scan_iter(match=pattern, count=1_000)]
    ids = sorted(k.rsplit(":u:", 1)[1] for k in keys)
    return store.client, ids, served.version


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server not ready after {timeout:.0f} s: {url}")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read()


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores) since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def machine() -> dict[str, Any]:
    lscpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout
                 .splitlines() if ":" in line)
    others = subprocess.run(["pgrep", "-af", "pytest|ci_clone/.venv/bin/python"], capture_output=True, text=True).stdout
    return {"cpu": lscpu.get("Model name", "?").strip(), "cpus": os.cpu_count(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "other_processes": [line for line in others.splitlines() if line and str(os.getpid()) not in line]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fp-bench-http"),
                        help="a `feature-platform run` data directory; made when it has no snapshots")
    parser.add_argument("--users", type=int, default=400, help="users of a new data directory")
    parser.add_argument("--days", type=int, default=60, help="days of a new data directory")
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="open-loop requests/s")
    parser.add_argument("--duration", type=float, default=20.0, help="measured open-loop seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds at the same rate before measuring")
    parser.add_argument("--connections", type=int, default=8, help="open-loop keep-alive connections")
    parser.add_argument("--closed-connections", type=int, default=16)
    parser.add_argument("--closed-duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="open-loop rounds per server; the median p99 is judged")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reload-seconds", type=float,
                        help="passed to `serve` (default: not passed, the shipped 30 s); 0 isolates reload pauses")
    parser.add_argument("--serve-raw", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    if args.serve_raw:
        serve_raw(data_dir, args.serve_raw)
        return

    env = machine()
    print(f"{env['cpu']}, {env['cpus']} CPUs, {env['date_utc']}; load {env['loadavg']}; "
          f"other pytest / CI processes: {len(env['other_processes'])}", flush=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    client, ids, version = prepare(data_dir, args.users, args.days)
    rng = random.Random(args.seed)
    paths = [f"/features/{rng.choice(ids)}" for _ in range(10_000)]
    print(f"served version {version}: {len(ids)} users; Python {sys.version.split()[0]}", flush=True)

    servers: dict[str, dict[str, Any]] = {}
    processes: list[subprocess.Popen] = []
    env_vars = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reload = [] if args.reload_seconds is None else ["--reload-seconds", str(args.reload_seconds)]
    env_vars.pop("FP_API_KEYS", None)  # no keys: open on loopback, as `serve` is run locally
    try:
        for name, command in (
            ("feature_server", [str(FP), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", *reload,
                                "--port"]),
            ("raw_limit", [sys.executable, __file__, "--data-dir", str(data_dir), "--serve-raw"]),
        ):
            port = free_port()
            log = data_dir.parent / f"{data_dir.name}.{name}.log"
            with open(log, "w") as out:
                process = subprocess.Popen([*command, str(port)], stdout=out, stderr=subprocess.STDOUT, env=env_vars)
            processes.append(process)
            servers[name] = {"port": port, "pid": process.pid, "log": log}
            wait_ready(f"http://127.0.0.1:{port}{'/health' if name == 'feature_server' else paths[0]}", process, log)

        # the feature server must answer from Redis (not its offline fallback), or this measures the wrong path
        status, body = get(f"http://127.0.0.1:{servers['feature_server']['port']}{paths[0]}")
        vector = json.loads(body)
        assert status == 200 and vector["found"] and vector["source"] == "online", vector
        raw_status, raw_body = get(f"http://127.0.0.1:{servers['raw_limit']['port']}{paths[0]}")
        assert raw_status == 200 and raw_body, raw_status
        print(f"one answer: feature server {len(body):,} bytes JSON ({len(vector['features'])} features, "
              f"snapshot {vector['snapshot']['snapshot_date']}); raw limit {len(raw_body):,} bytes", flush=True)
        redis_pid = getattr(client, "pid", None)
        print(f"load: open loop {args.rate:,.0f} req/s x {args.duration:.0f} s after {args.warmup:.0f} s warm-up over "
              f"{args.connections} connections; closed loop {args.closed_connections} connections x "
              f"{args.closed_duration:.0f} s", flush=True)

        options = vars(args)
        results: dict[str, dict[str, Any]] = {name: {"open": []} for name in servers}
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            generator_pid = pool.submit(os.getpid).result()
            ours = [p.pid for p in processes] + [generator_pid, os.getpid()] + ([redis_pid] if redis_pid else [])
            # open-loop rounds alternate between the servers, so a burst of other work spoils one round, not a server
            for kind in ["open"] * args.repeat + ["closed"]:
                for name, server in servers.items():
                    cpu0, redis0 = cpu_seconds([server["pid"]]), cpu_seconds([redis_pid]) if redis_pid else 0.0
                    ours0, busy0, wall0 = cpu_seconds(ours), busy_seconds(), time.monotonic()
                    result = pool.submit(run_load, kind, server["port"], paths, options).result()
                    served = result["all_requests"]  # warm-up included: the CPU counters cover it too
                    result["server_cpu_ms_per_request"] = round(
                        (cpu_seconds([server["pid"]]) - cpu0) * 1e3 / served, 3)
                    if redis_pid:
                        result["redis_cpu_ms_per_request"] = round(
                            (cpu_seconds([redis_pid]) - redis0) * 1e3 / served, 3)
                    # the machine's other work meanwhile, in cores (of os.cpu_count()): is this figure clean?
                    others = (busy_seconds() - busy0) - (cpu_seconds(ours) - ours0)
                    result["other_processes_cores"] = round(max(0.0, others) / (time.monotonic() - wall0), 2)
                    if kind == "open":
                        results[name]["open"].append(result)
                    else:
                        results[name]["closed"] = result
                    show(name, kind, result)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        client.close()

    for name in servers:  # the round with the median p99 stands for the server
        rounds = sorted(results[name]["open"], key=lambda r: r["latency_ms"]["p99"])
        results[name]["open_median"] = rounds[(len(rounds) - 1) // 2]
    feature_open, raw_open = results["feature_server"]["open_median"], results["raw_limit"]["open_median"]
    rounds = results["feature_server"]["open"]
    met = (feature_open["latency_ms"]["p99"] < GOAL_P99_MS and args.rate >= GOAL_RATE
           and all(r["non_200"] == 0 and r["achieved_rate"] >= 0.99 * args.rate for r in rounds))
    print(f"goal: feature server p99 < {GOAL_P99_MS:.0f} ms at {GOAL_RATE:,.0f} req/s, one worker: "
          f"{'MET' if met else 'MISSED'} (median of {len(rounds)} rounds: p99 {feature_open['latency_ms']['p99']} ms "
          f"at {feature_open['achieved_rate']:,.0f} req/s; rounds {[r['latency_ms']['p99'] for r in rounds]} ms; "
          f"raw limit p99 {raw_open['latency_ms']['p99']} ms)")
    print(json.dumps({"bench": "http", "machine": env, "data_dir": str(data_dir), "users": len(ids),
                      "version": version, "options": {k: v for k, v in options.items() if k != "serve_raw"},
                      "results": results, "goal_met": met}, default=str))


def show(name: str, kind: str, result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    line = (f"{name:>15} {kind:>6}: p50 {lat['p50']:6.2f}  p90 {lat['p90']:6.2f}  p99 {lat['p99']:6.2f}  "
            f"p99.9 {lat['p99.9']:6.2f}  max {lat['max']:7.2f} ms; ")
    if kind == "open":
        late = result["generator_lateness_ms"]
        line += (f"{result['achieved_rate']:,.0f} req/s achieved of {result['target_rate']:,.0f}; service p99 "
                 f"{result['service_ms']['p99']:.2f} ms; generator lateness p50/p99 "
                 f"{late['p50']:.2f}/{late['p99']:.2f} ms")
    else:
        line += f"{result['requests_per_s']:,.0f} req/s over {result['connections']} connections"
    line += (f"; server CPU {result['server_cpu_ms_per_request']:.3f} ms/req, redis "
             f"{result.get('redis_cpu_ms_per_request', float('nan')):.3f}; generator CPU "
             f"{result['generator_cpu_share']:.0%}; other processes {result['other_processes_cores']:.2f} cores; "
             f"non-200: {result['non_200']}")
    print(line, flush=True)


if __name__ == "__main__":
    main()
