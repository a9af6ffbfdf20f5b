"""Benchmark: the Redis online store against raw redis-py on the same server, in one run.

    python bench/bench_online.py [--users 100000] [--redis-url redis://127.0.0.1:6379/14] [--repeat 3]

Synthesises one snapshot table with exactly the registry's feature columns and types (every family;
realistic ranges, maps over the generator's categories/cities, 10-topic vectors, ~10% nulls in the
nullable features), then measures, each beside the raw redis-py figure:

1. push rows/s: ``OnlineStore.push`` (whole call: Arrow -> msgpack, SET EX pipelined, swap, cleanup)
   vs pipelined HSET of the same vectors (one hash per user, a field per non-null feature, scalars as
   strings, maps/vectors as msgpack; batches of 1,000, transaction=False). The raw floor writes
   pre-built mappings; building them from the table is timed apart. Goal >= 0.9x the floor.
2. single-vector read p50/p99: ``OnlineStore.read(user)`` (decoded) vs ``HGETALL`` (raw bytes), the
   two interleaved per user. Goal p99 <= 1.5x raw.
3. 100-vector batch p50/p99: ``read_many(100 users)`` vs 100 pipelined HGETALL. Goal <= 1.3x raw.
4. Redis bytes per feature value: ``MEMORY USAGE key SAMPLES 0`` summed over sampled keys /
   (keys x features), both layouts; used_memory deltas of the pushes as a cross-check. Goal <= 12.

Also counts round trips (client socket sends) and the server commands on our keys (MONITOR) per read.
Keys live under ``fpbench:<hex>:`` and only those are deleted at the end. GC is disabled inside the
timing loops. Prints a table, MISSED for any goal missed, and one JSON line; exits 0 either way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import os
import random
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa
import redis

from feature_platform.online import codec
from feature_platform.online.store import OnlineStore
from feature_platform.registry.registry import Registry, load_registry
from feature_platform.sources.generator_population import CATEGORIES, CITIES

SNAPSHOT_DATE = dt.date(2026, 11, 21)
BATCH = 1_000
NULL_SHARE = 0.10  # of all feature values; only nullable features get nulls
MAP_KEYS = {"category_affinity": CATEGORIES, "city_affinity": CITIES}


# -- data ------------------------------------------------------------------------------------
def synthesise(registry: Registry, users: int, seed: int, null_share: float = NULL_SHARE) -> pa.Table:
    """``user_id`` + every registry feature, typed as ``registry.snapshot_schema`` says.

    Nulls only where the registry allows them, at the rate that makes ``null_share`` of all values null
    (as in real snapshots, where e.g. review features are null for every user without a review).
    """
    rng = np.random.default_rng(seed)
    features = registry.list_features()
    per_nullable = min(1.0, null_share * len(features) / max(1, sum(f.nullable for f in features)))
    columns: dict[str, pa.Array] = {"user_id": pa.array([f"u{i:06d}" for i in range(1, users + 1)])}
    for family in registry.families:
        for field in registry.snapshot_schema(family):
            if field.name in ("snapshot_date", "user_id"):
                continue
            feature = registry.get_feature(field.name)
            nulls = rng.random(users) < per_nullable if feature.nullable else np.zeros(users, bool)
            columns[field.name] = _column(feature.name, feature.type, feature.value_range, feature.length,
                                          field.type, nulls, rng, users)
    return pa.table(columns)


def _column(name: str, kind: str, bounds, length: int | None, arrow_type: pa.DataType, nulls: np.ndarray,
            rng: np.random.Generator, n: int) -> pa.Array:
    low, high = bounds or (None, None)
    if kind == "bool":
        return pa.array(rng.random(n) < 0.3, arrow_type, mask=nulls)
    if kind == "int":
        if high is not None:  # bounded: one-hot flags, hours, days, ages
            values = rng.integers(int(low or 0), int(high) + 1, n) if high > 1 else (rng.random(n) < 0.2)
        else:  # counts: heavy-tailed
            values = np.floor(rng.lognormal(2.5, 1.2, n))
        return pa.array(np.asarray(values, np.int64), arrow_type, mask=nulls)
    if kind == "float":
        bounded = high is not None  # else money, seconds, rates without an upper bound: heavy-tailed
        values = low + (high - low) * rng.random(n) if bounded else (low or 0) + rng.lognormal(3.0, 1.5, n)
        return pa.array(values, arrow_type, mask=nulls)
    if kind == "vector":
        topics = rng.dirichlet(np.full(length or 10, 0.3), n)
        return pa.array([None if nulls[i] else topics[i].tolist() for i in range(n)], arrow_type)
    if kind == "map":
        keys = MAP_KEYS.get(name, CATEGORIES)
        out = []
        for i in range(n):
            if nulls[i]:
                out.append(None)
                continue
            chosen = sorted(rng.choice(keys, int(rng.integers(1, len(keys) + 1)), replace=False))
            weights = rng.random(len(chosen))
            out.append(list(zip(chosen, (weights / weights.sum()).tolist(), strict=True)))
        return pa.array(out, arrow_type)
    raise ValueError(f"no synthesiser for feature type {kind!r}")


def raw_mappings(table: pa.Table, layout: Sequence[str], types: dict[str, str]) -> list[dict[str, bytes | str]]:
    """The raw layout: per user a hash of its non-null features; scalars as text, maps/vectors msgpack."""
    columns = []
    for name in layout:
        values = table.column(name).to_pylist()
        if types[name] == "map":
            columns.append([None if v is None else msgpack.packb(dict(v)) for v in values])
        elif types[name] == "vector":
            columns.append([None if v is None else msgpack.packb(v) for v in values])
        elif types[name] == "bool":
            columns.append([None if v is None else ("1" if v else "0") for v in values])
        else:  # str() of a float round-trips exactly (shortest repr)
            columns.append([None if v is None else str(v) for v in values])
    return [{n: v for n, v in zip(layout, row, strict=True) if v is not None} for row in zip(*columns, strict=True)]


# -- helpers ---------------------------------------------------------------------------------
@contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def raw_push(client: redis.Redis, keys: Sequence[str], mappings: Sequence[dict]) -> None:
    for start in range(0, len(keys), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, mapping in zip(keys[start:start + BATCH], mappings[start:start + BATCH], strict=True):
            pipe.hset(key, mapping=mapping)
        pipe.execute()


def blob_push(client: redis.Redis, keys: Sequence[str], blobs: Sequence[bytes], ttl: int) -> None:
    for start in range(0, len(keys), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, blob in zip(keys[start:start + BATCH], blobs[start:start + BATCH], strict=True):
            pipe.set(key, blob, ex=ttl)
        pipe.execute()


def delete(client: redis.Redis, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), BATCH):
        client.delete(*keys[start:start + BATCH])


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def pct(samples_ns: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(samples_ns), q)) / 1000.0  # microseconds


def round_trips(client: redis.Redis, prefix: str, fn: Callable[[], Any], n: int) -> tuple[float, dict[str, float]]:
    """Client sends, and server commands on keys under ``prefix`` (seen by MONITOR), per call of ``fn``.

    MONITOR rather than INFO commandstats, whose counters are server-wide and so count other clients.
    """
    sentinel = f"{prefix}:sentinel"
    seen: Counter[str] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command
    sends = 0

    def counting(conn: Any, command: Any, check_health: bool = True) -> Any:
        nonlocal sends
        sends += 1
        return original(conn, command, check_health)

    with client.monitor() as monitor:  # takes the pool's idle connection: open a new one before counting
        fn()
        redis.connection.AbstractConnection.send_packed_command = counting
        try:
            for _ in range(n):
                fn()
        finally:
            redis.connection.AbstractConnection.send_packed_command = original
        client.echo(sentinel)
        for event in monitor.listen():
            command = event["command"]
            if sentinel in command:
                break
            if prefix in command:
                seen[command.split(" ", 1)[0].lower()] += 1
    return sends / n, {name: count / (n + 1) for name, count in sorted(seen.items())}  # MONITOR saw n + 1 calls


def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    lscpu = dict(line.split(":", 1) for line in sh("lscpu").splitlines() if ":" in line)
    others = [line for line in sh("pgrep", "-af", "/tmp/ci_clone").splitlines() if line]
    package = Path(codec.__file__).resolve().parent  # the code measured: a worktree's when PYTHONPATH names one
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(package.glob("*.py")))).hexdigest()[:12]
    return {"git_head": sh("git", "-C", str(package), "rev-parse", "--short", "HEAD"), "online_code_sha256": code,
            "online_code_dirty": bool(sh("git", "-C", str(package), "status", "--porcelain", ".")),
            "cpu": lscpu.get("Model name", "?").strip(), "cpus": os.cpu_count(), "date_utc": sh("date", "-u"),
            "loadavg": os.getloadavg(), "ci_clone_processes": len(others)}


# -- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--repeat", type=int, default=3, help="pushes of each kind; the median is reported")
    parser.add_argument("--reads", type=int, default=5_000, help="single-vector reads of each kind")
    parser.add_argument("--batches", type=int, default=1_000, help="100-vector batch reads of each kind")
    parser.add_argument("--memory-sample", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    env = machine()
    client = redis.Redis.from_url(args.redis_url)
    server = client.info("server")
    print(f"{env['cpu']}, {env['cpus']} CPUs, {env['date_utc']}; load {env['loadavg']}; "
          f"/tmp/ci_clone processes: {env['ci_clone_processes']}")
    print(f"code: HEAD {env['git_head']}, feature_platform/online sha256 {env['online_code_sha256']}"
          f"{' (uncommitted changes)' if env['online_code_dirty'] else ''}")
    print(f"Redis {server['redis_version']} at {args.redis_url}; redis-py {redis.__version__} "
          f"(hiredis: {redis.utils.HIREDIS_AVAILABLE}), msgpack {'.'.join(map(str, msgpack.version))}")

    registry = load_registry()
    started = time.perf_counter()
    table = synthesise(registry, args.users, args.seed)
    layout = [c for c in table.column_names if c != "user_id"]
    types = {n: registry.get_feature(n).type for n in layout}
    users = table.column("user_id").to_pylist()
    print(f"synthesised {table.num_rows:,} users x {len(layout)} features in {time.perf_counter() - started:.1f} s; "
          f"nulls {sum(table.column(n).null_count for n in layout) / (table.num_rows * len(layout)):.1%}")

    base = f"fpbench:{uuid.uuid4().hex[:8]}"
    raw_keys = [f"{base}:raw:u:{u}" for u in users]
    prep_started = time.perf_counter_ns()
    mappings = raw_mappings(table, layout, types)
    raw_prep_s = (time.perf_counter_ns() - prep_started) / 1e9
    # the floor of the library's own layout: its msgpack blobs, pre-encoded, SET EX / GET by key
    blob_keys = [f"{base}:blob:u:{u}" for u in users]
    blobs = [codec.encode(row) for row in codec.rows_to_values(table, layout, types)]
    ttl = OnlineStore(client, registry).ttl_seconds(layout)

    lib_s: list[float] = []
    raw_s: list[float] = []
    blob_s: list[float] = []
    lib_written: list[float] = []
    mem: dict[str, int] = {}
    store: OnlineStore | None = None
    version = ""
    try:
        for i in range(args.repeat):
            last = i == args.repeat - 1
            store = OnlineStore(client, registry, prefix=f"{base}:lib")
            before = used_memory(client)
            with no_gc():
                t0 = time.perf_counter_ns()
                result = store.push(table, SNAPSHOT_DATE)
                lib_s.append((time.perf_counter_ns() - t0) / 1e9)
            mem["lib_used_memory_delta"] = used_memory(client) - before
            assert result.served and result.keys == len(users), result
            version = result.version
            lib_written.append(result.seconds)
            lib_keys = [store.entity_key(version, u) for u in users]
            if not last:
                delete(client, [*lib_keys, store.pointer_key, store.version_key(version)])
            before = used_memory(client)
            with no_gc():
                t0 = time.perf_counter_ns()
                raw_push(client, raw_keys, mappings)
                raw_s.append((time.perf_counter_ns() - t0) / 1e9)
            mem["raw_used_memory_delta"] = used_memory(client) - before
            if not last:
                delete(client, raw_keys)
            with no_gc():
                t0 = time.perf_counter_ns()
                blob_push(client, blob_keys, blobs, ttl)
                blob_s.append((time.perf_counter_ns() - t0) / 1e9)
            delete(client, blob_keys)
            print(f"push {i + 1}/{args.repeat}: library {lib_s[-1]:.2f} s (write phase {result.seconds:.2f} s), "
                  f"raw HSET {raw_s[-1]:.2f} s, SET of pre-encoded blobs {blob_s[-1]:.2f} s")
        assert store is not None

        # correctness spot check, outside timing: both layouts hold the same vectors
        rng = random.Random(args.seed)
        rows = table.slice(0, 200).to_pylist()
        for row in rows:
            got = store.read(row["user_id"])
            want = {k: (dict(v) if types[k] == "map" and v is not None else v) for k, v in row.items() if k != "user_id"}
            assert got is not None and got.values == want, row["user_id"]
            assert len(client.hgetall(f"{base}:raw:u:{row['user_id']}")) == sum(v is not None for v in want.values())

        # 2. single-vector reads, interleaved per user; GET of the library's key is its floor
        sample = [rng.randrange(len(users)) for _ in range(args.reads)]
        for j in sample[:500]:  # warm-up
            store.read(users[j])
            client.hgetall(raw_keys[j])
            client.get(store.entity_key(version, users[j]))
        lib_one: list[int] = []
        raw_one: list[int] = []
        get_one: list[int] = []
        with no_gc():
            for j in sample:
                key = store.entity_key(version, users[j])
                t0 = time.perf_counter_ns()
                store.read(users[j])
                t1 = time.perf_counter_ns()
                client.hgetall(raw_keys[j])
                t2 = time.perf_counter_ns()
                client.get(key)
                t3 = time.perf_counter_ns()
                lib_one.append(t1 - t0)
                raw_one.append(t2 - t1)
                get_one.append(t3 - t2)

        # 3. 100-vector batches, interleaved per batch
        def raw_batch(ix: Sequence[int]) -> list:
            pipe = client.pipeline(transaction=False)
            for j in ix:
                pipe.hgetall(raw_keys[j])
            return pipe.execute()

        def get_batch(ix: Sequence[int]) -> list:
            pipe = client.pipeline(transaction=False)
            for j in ix:
                pipe.get(store.entity_key(version, users[j]))
            return pipe.execute()

        batches = [rng.sample(range(len(users)), 100) for _ in range(args.batches)]
        for ix in batches[:50]:
            store.read_many([users[j] for j in ix])
            raw_batch(ix)
            get_batch(ix)
        lib_many: list[int] = []
        raw_many: list[int] = []
        get_many: list[int] = []
        with no_gc():
            for ix in batches:
                ids = [users[j] for j in ix]
                t0 = time.perf_counter_ns()
                store.read_many(ids)
                t1 = time.perf_counter_ns()
                raw_batch(ix)
                t2 = time.perf_counter_ns()
                get_batch(ix)
                t3 = time.perf_counter_ns()
                lib_many.append(t1 - t0)
                raw_many.append(t2 - t1)
                get_many.append(t3 - t2)

        # round trips per read: warm store, and a fresh store (first read after start or after a swap)
        lib = f"{base}:lib"
        trips_one = round_trips(client, lib, lambda: store.read(users[rng.randrange(len(users))]), 200)
        trips_many = round_trips(client, lib, lambda: store.read_many(rng.sample(users, 100)), 50)
        trips_cold = round_trips(client, lib, lambda: OnlineStore(client, registry, prefix=lib).read(users[0]), 20)

        # 4. memory per feature value
        picked = rng.sample(range(len(users)), min(args.memory_sample, len(users)))
        pipe = client.pipeline(transaction=False)
        for j in picked:
            pipe.memory_usage(store.entity_key(version, users[j]), samples=0)
            pipe.memory_usage(raw_keys[j], samples=0)
        usage = pipe.execute()
        values = len(picked) * len(layout)
        lib_bpv, raw_bpv = sum(usage[0::2]) / values, sum(usage[1::2]) / values
        encodings = {client.object("encoding", store.entity_key(version, users[0])).decode(),
                     *(client.object("encoding", raw_keys[j]).decode() for j in picked[:50])}
    finally:
        prefix_keys = list(client.scan_iter(match=f"{base}:*", count=10_000))
        delete(client, prefix_keys)

    n_values = len(users) * len(layout)
    push_lib = len(users) / statistics.median(lib_s)
    push_raw = len(users) / statistics.median(raw_s)
    push_raw_e2e = len(users) / (statistics.median(raw_s) + raw_prep_s)
    res = {
        "users": len(users), "features": len(layout), "repeat": args.repeat, **env,
        "push_rows_per_s": {"library": round(push_lib), "raw_hset": round(push_raw),
                            "raw_hset_incl_prep": round(push_raw_e2e),
                            "set_preencoded_blobs": round(len(users) / statistics.median(blob_s)),
                            "library_write_phase": round(len(users) / statistics.median(lib_written))},
        "push_seconds": {"library": lib_s, "raw_hset": raw_s, "raw_prep": raw_prep_s, "set_blobs": blob_s},
        "read_one_us": {"library_p50": pct(lib_one, 50), "library_p99": pct(lib_one, 99),
                        "raw_p50": pct(raw_one, 50), "raw_p99": pct(raw_one, 99),
                        "get_p50": pct(get_one, 50), "get_p99": pct(get_one, 99), "n": len(lib_one)},
        "read_100_us": {"library_p50": pct(lib_many, 50), "library_p99": pct(lib_many, 99),
                        "raw_p50": pct(raw_many, 50), "raw_p99": pct(raw_many, 99),
                        "get_p50": pct(get_many, 50), "get_p99": pct(get_many, 99), "n": len(lib_many)},
        "bytes_per_value": {"library": lib_bpv, "raw_hash": raw_bpv, "sampled_keys": len(picked),
                            "library_used_memory": mem["lib_used_memory_delta"] / n_values,
                            "raw_used_memory": mem["raw_used_memory_delta"] / n_values,
                            "encodings": sorted(encodings)},
        "round_trips": {"read_warm": trips_one, "read_many_100_warm": trips_many, "read_cold_store": trips_cold},
    }
    r1, rm = res["read_one_us"], res["read_100_us"]
    goals = [
        ("push rows/s >= 0.9x raw HSET", push_lib / push_raw, push_lib >= 0.9 * push_raw),
        ("single read p99 <= 1.5x raw HGETALL", r1["library_p99"] / r1["raw_p99"], r1["library_p99"] <= 1.5 * r1["raw_p99"]),
        ("100-batch p50 <= 1.3x raw", rm["library_p50"] / rm["raw_p50"], rm["library_p50"] <= 1.3 * rm["raw_p50"]),
        ("100-batch p99 <= 1.3x raw", rm["library_p99"] / rm["raw_p99"], rm["library_p99"] <= 1.3 * rm["raw_p99"]),
        ("bytes per feature value <= 12", lib_bpv, lib_bpv <= 12),
    ]
    res["goals"] = {name: {"value": round(v, 3), "met": ok} for name, v, ok in goals}

    print()
    print(f"{'figure':<44} {'library':>12} {'raw redis-py':>14} {'ratio':>7}")
    lines = [
        ("push rows/s (median of repeats)", push_lib, push_raw),
        ("  raw incl. building mappings from Arrow", push_lib, push_raw_e2e),
        ("single read p50 µs", r1["library_p50"], r1["raw_p50"]),
        ("single read p99 µs", r1["library_p99"], r1["raw_p99"]),
        ("100-vector batch p50 µs", rm["library_p50"], rm["raw_p50"]),
        ("100-vector batch p99 µs", rm["library_p99"], rm["raw_p99"]),
        ("bytes/value, MEMORY USAGE", lib_bpv, raw_bpv),
        ("bytes/value, used_memory delta of push", res["bytes_per_value"]["library_used_memory"],
         res["bytes_per_value"]["raw_used_memory"]),
    ]
    for label, ours, raw in lines:
        print(f"{label:<44} {ours:>12,.1f} {raw:>14,.1f} {ours / raw:>7.2f}")
    print()
    print(f"{'library over its own floor (same blobs, bare SET EX / GET)':<60} {'library':>9} {'floor':>9} {'ratio':>7}")
    for label, ours, floor in [
        ("push rows/s vs pipelined SET EX of pre-encoded blobs", push_lib, res["push_rows_per_s"]["set_preencoded_blobs"]),
        ("single read p50 µs vs GET of the key", r1["library_p50"], r1["get_p50"]),
        ("single read p99 µs vs GET of the key", r1["library_p99"], r1["get_p99"]),
        ("100-vector batch p50 µs vs 100 pipelined GET", rm["library_p50"], rm["get_p50"]),
        ("100-vector batch p99 µs vs 100 pipelined GET", rm["library_p99"], rm["get_p99"]),
    ]:
        print(f"{label:<60} {ours:>9,.1f} {floor:>9,.1f} {ours / floor:>7.2f}")
    print(f"round trips (client sends), server commands on our keys, per call: read {trips_one}; "
          f"read_many(100) {trips_many}; first read of a fresh store {trips_cold}")
    print()
    for name, value, ok in goals:
        print(f"{'met   ' if ok else 'MISSED'} {name}: {value:.2f}")
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
