"""Redis Sentinel: a real master, replica and sentinel on loopback; the master is killed mid-load.

The feature server and a pusher reach Redis only through the sentinel (FP_REDIS_SENTINELS). While the
sentinel fails over, reads answer from the offline snapshot (marked ``offline``), never an error; after
it, reads are online again from the promoted replica and pushes resume there. Two snapshots alternate
in the pushes (day END-1's values and day END's, both as END), so a vector mixing two pushes would match
neither.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from feature_platform.config import Settings
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connect, describe
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration.resources import RedisSentinelResource, local_resources
from feature_platform_tests import fault_tally
from feature_platform_tests.helpers import free_port, wait_until
from feature_platform_tests.serving.conftest import END, REGISTRY
from feature_platform_tests.serving.test_server import running_server

pytestmark = pytest.mark.faults

MASTER = "fpmaster"


def _redis(port: int, folder: Path, *extra: str) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def sentinel_group(root: Path) -> Iterator[dict]:
    """A master, its replica and one sentinel (quorum 1, master down after 400 ms), all started here."""
    master, replica, sentinel = free_port(), free_port(), free_port()
    config = root / "sentinel" / "sentinel.conf"
    config.parent.mkdir(parents=True)
    config.write_text(f"port {sentinel}\nbind 127.0.0.1\ndir {config.parent}\n"
                      f"sentinel monitor {MASTER} 127.0.0.1 {master} 1\n"
                      f"sentinel down-after-milliseconds {MASTER} 400\n"
                      f"sentinel failover-timeout {MASTER} 3000\n")
    processes = {"master": _redis(master, root / "master"),
                 "replica": _redis(replica, root / "replica", "--replicaof", "127.0.0.1", str(master))}
    try:
        wait_until(lambda: redis.Redis(port=master).ping(), 20, "the master")
        wait_until(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up", 20,
                   "the replica's link to the master")
        processes["sentinel"] = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(config),
                                                  "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ask = redis.Redis(port=sentinel)
        wait_until(lambda: ask.sentinel_slaves(MASTER), 30, "the sentinel to find the replica",
                   ignore=(OSError, redis.RedisError))
        yield {"ports": {"master": master, "replica": replica, "sentinel": sentinel}, "processes": processes,
               "sentinel": ask}
    finally:
        for process in processes.values():
            process.kill()
            process.wait(timeout=10)


def test_settings_and_resource_reach_the_master_through_the_sentinels(tmp_path):
    settings = Settings.from_env({"FP_REDIS_SENTINELS": "127.0.0.1:1,[::1]:26379", "FP_REDIS_SENTINEL_MASTER": "m1",
                                  "FP_REDIS_PASSWORD": "s3cret"})
    assert settings.redis_sentinels == (("127.0.0.1", 1), ("::1", 26379)) and not settings.embedded_redis
    assert "s3cret" not in repr(settings)
    assert describe(settings) == "Redis Sentinel master 'm1' (sentinels 127.0.0.1:1,::1:26379)"
    resource = local_resources(tmp_path, redis_sentinels=settings.redis_sentinels, redis_sentinel_master="m1")["online"]
    assert isinstance(resource, RedisSentinelResource) and resource.master == "m1"
    for bad in ("localhost", "h:0", "h:x", ":26379"):
        with pytest.raises(ValueError, match="FP_REDIS_SENTINELS must be comma-separated host:port"):
            Settings.from_env({"FP_REDIS_SENTINELS": bad})
    with pytest.raises(ValueError, match="one of FP_REDIS_URL and FP_REDIS_SENTINELS"):
        Settings.from_env({"FP_REDIS_SENTINELS": "h:1", "FP_REDIS_URL": "redis://h"})


def test_killing_the_master_mid_load_fails_over_with_reads_answering_and_pushes_resuming(served_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(served_data, data, ignore=shutil.ignore_patterns("*.sock", "*.settings", "online"))
    offline = OfflineStore(data)
    snapshots = [user_vectors(offline, REGISTRY, END - dt.timedelta(days=1)), user_vectors(offline, REGISTRY, END)]
    users = snapshots[1].column("user_id").to_pylist()[:40]
    with sentinel_group(tmp_path / "redis") as group:
        sentinels = f"127.0.0.1:{group['ports']['sentinel']}"
        settings = Settings(data_dir=data, redis_sentinels=((("127.0.0.1", group["ports"]["sentinel"])),),
                            redis_sentinel_master=MASTER)
        pusher = OnlineStore(connect(settings, socket_timeout=1, socket_connect_timeout=1), REGISTRY, "fp")
        env = {"FP_REDIS_SENTINELS": sentinels, "FP_REDIS_SENTINEL_MASTER": MASTER, "FP_REDIS_URL": ""}
        with running_server(data, env=env) as base:
            # what each snapshot reads as through the server: the vectors a push may serve
            expected = []
            for table in snapshots:
                pusher.push(table, END)
                wait_until(lambda: _get(base, users[0])["source"] == "online", 15, "an online answer")
                expected.append({u: _values(_get(base, u)) for u in users})
            assert expected[0] != expected[1], "the two snapshots must differ for a mixed vector to show"

            answers, statuses, stop = [], [], threading.Event()

            def reader() -> None:
                with httpx.Client(base_url=base, timeout=10) as client:
                    while not stop.is_set():
                        for user in users:
                            time.sleep(0.002)  # a few hundred reads a second per reader: load, not a CPU test
                            response = client.get(f"/features/{user}")
                            statuses.append(response.status_code)
                            if response.status_code == 200:
                                body = response.json()
                                answers.append((time.monotonic(), user, body["source"], _values(body)))

            pushes: list[tuple[float, bool, str]] = []

            def push_loop() -> None:
                k = 0
                while not stop.is_set():
                    try:
                        result = pusher.push(snapshots[k % 2], END, batch=10)
                        pushes.append((time.monotonic(), result.served, result.version))
                        k += 1
                        time.sleep(0.05)  # a push every ~0.1 s: steady writes without taking both cores
                    except (redis.RedisError, OSError) as exc:
                        pushes.append((time.monotonic(), False, type(exc).__name__))
                        time.sleep(0.1)

            threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=push_loop)]
            for thread in threads:
                thread.start()
            try:
                time.sleep(1.0)
                killed_at = time.monotonic()
                group["processes"]["master"].send_signal(signal.SIGKILL)
                promoted = group["ports"]["replica"]
                wait_until(lambda: int(group["sentinel"].sentinel_get_master_addr_by_name(MASTER)[1]) == promoted, 30,
                           "the sentinel to promote the replica", ignore=(OSError, redis.RedisError))
                wait_until(lambda: any(t > killed_at and ok for t, ok, _ in pushes), 30, "a push on the new master")
                resumed = time.monotonic()
                wait_until(lambda: any(t > resumed and source == "online" for t, _, source, _ in answers), 30,
                           "online answers from the new master")
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
        served_now = OnlineStore(redis.Redis(port=promoted), REGISTRY, "fp").current()

    during = [a for a in answers if a[0] > killed_at]
    offline_during = sum(1 for a in during if a[2] == "offline")
    mixed = sum(1 for _, user, source, values in answers
                if source == "online" and values not in (expected[0][user], expected[1][user]))
    mixed += sum(1 for _, user, source, values in answers if source == "offline" and values != expected[1][user])
    failed_pushes = sum(1 for t, ok, _ in pushes if t > killed_at and not ok)
    fault_tally.record("sentinel failover under load", inputs=len(statuses),
                       server_errors=sum(1 for s in statuses if s >= 500), mixed_vectors=mixed,
                       offline_answers=offline_during, pushes=len(pushes), failed_pushes=failed_pushes)
    assert set(statuses) == {200}
    assert mixed == 0
    assert offline_during > 0, "reads while the sentinel failed over should have fallen back offline"
    last_ok = [version for _, ok, version in pushes if ok][-1]
    assert served_now is not None and served_now.version == last_ok  # the last push served is on the new master


def _get(base: str, user: str) -> dict:
    return httpx.get(f"{base}/features/{user}", timeout=10).json()


def _values(body: dict) -> dict:
    return {name: feature["value"] for name, feature in body["features"].items()}
