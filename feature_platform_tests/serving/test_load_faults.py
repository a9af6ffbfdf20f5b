"""Faults under load against real processes: `feature-platform serve` SIGKILLed right after acknowledging events,
its Redis SIGKILLed or hung (SIGSTOP) while readers hammer it, and a pusher SIGKILLed mid-push.

One served stack per module (``live``): a copy of the session's served data, a redis-server of the test's own on
a free port holding snapshot END under a prefix of its own, and `feature-platform serve` on them (FP_REDIS_URL,
FP_REDIS_PREFIX). A server takes seconds to start, so the tests share it: each starts by serving END again and
leaves the stack up (the SIGKILL test restarts the server on the same data directory). Each test loads the server
from a few client threads (httpx), records what the clients saw in the fault tally before it asserts (so the
summary shows a failing case's figures too), then asserts the counts that must stay zero.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feature_platform.config import Settings
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.store import OnlineStore
from feature_platform.sources.landing import LandingLog
from feature_platform_tests import fault_tally
from feature_platform_tests.helpers import copy_tree, free_port, wait_until
from feature_platform_tests.serving.conftest import END, REGISTRY

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.redis]  # redis: a redis-server of its own

CLI = str(Path(sys.executable).with_name("feature-platform"))
PREFIX = "fpload"  # the server's FP_REDIS_PREFIX: not the default, so every writer must use the server's
ONLINE = tuple(f.name for f in REGISTRY.features.values() if "online" in f.serving_location)
CLIENTS = 3  # client threads per test
BATCH = 8  # users per POST /features/batch
END_LABEL = "END"
MIXED = "mixed"
Counts = collections.Counter[str]


# -- the processes ------------------------------------------------------------------------------------------
class RedisServer:
    """A redis-server of the test's own on a free loopback port, without persistence (a restart starts empty)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; CI provides it")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        try:
            wait_until(probe.ping, 10, f"redis-server on port {self.port}", interval=0.05, ignore=(redis.RedisError,))
        finally:
            probe.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
            self.process.wait()
            self.process = None


class Server:
    """`feature-platform serve` on ``data`` as a subprocess on a free port, its output appended to ``log``."""

    def __init__(self, data: Path, env: dict[str, str], log: Path) -> None:
        self.data, self.env, self.log = data, env, log
        self.process: subprocess.Popen | None = None
        self.base = ""

    def start(self) -> None:
        self.launch()
        self.wait_healthy()

    def launch(self) -> None:
        port = free_port()
        with open(self.log, "a") as out:
            self.process = subprocess.Popen([CLI, "serve", "--data-dir", str(self.data), "--port", str(port)],
                                            env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}): {self.output()}")
            return httpx.get(f"{self.base}/health", timeout=2).status_code == 200

        wait_until(healthy, 60, "the server's /health", ignore=(httpx.HTTPError,))

    def kill(self) -> None:
        """SIGKILL: no shutdown, no exit handler, nothing flushed that was not already."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def output(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


# -- the stack the tests share ------------------------------------------------------------------------------
def _as_served(value: Any) -> Any:
    """A snapshot value as the server's JSON gives it back: non-finite floats as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_as_served(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_served(v) for k, v in value.items()}
    return value


class Live:
    """The served data copy, the test's redis-server and the server, and END as the server must serve it."""

    def __init__(self, root: Path, data: Path) -> None:
        self.data = data
        self.end = user_vectors(OfflineStore(data), REGISTRY, END)
        maps = {f.name for f in REGISTRY.features.values() if f.type == "map"}
        self.expected: dict[str, dict[str, Any]] = {
            row["user_id"]: {name: _as_served(dict(row[name]) if name in maps and row[name] is not None
                                              else row[name]) for name in ONLINE}
            for row in self.end.to_pylist()}
        self.users = sorted(self.expected)
        self.redis = RedisServer(root)
        self.server = Server(data, {"FP_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
                                    "FP_REDIS_PREFIX": PREFIX}, root / "serve.log")

    @contextlib.contextmanager
    def online(self) -> Iterator[OnlineStore]:
        """The online store as the server sees it (its Redis, its prefix)."""
        client = self.redis.client()
        try:
            yield OnlineStore(client, REGISTRY, PREFIX)
        finally:
            client.close()

    def push_end(self) -> None:
        with self.online() as store:
            assert store.push(self.end, END).served

    def serve_end(self) -> None:
        """Redis up with END served, and the server reading it online (a breaker an earlier fault opened closed)."""
        if not self.redis.running:
            self.redis.start()
        self.push_end()
        wait_until(lambda: httpx.get(f"{self.server.base}/features/{self.users[0]}", timeout=10).json()["source"]
                   == "online", 20, "the server to read END online", ignore=(httpx.HTTPError,))

    def label_end(self, user: str, values: dict[str, Any]) -> str:
        """END when the answer is END's vector of ``user`` (online and offline answers alike), else mixed."""
        return END_LABEL if values == self.expected[user] else MIXED

    def label_marked(self, user: str, values: dict[str, Any]) -> str:
        """END, ``marker <n>`` when every value carries the one marker n (pusher snapshots), else mixed."""
        if values == self.expected[user]:
            return END_LABEL
        markers: set[float] = set()
        flags: set[bool] = set()
        for value in values.values():
            if isinstance(value, bool):
                flags.add(value)
            elif isinstance(value, int | float):
                markers.add(float(value))
            elif isinstance(value, list):
                markers.update(float(v) for v in value)
            elif isinstance(value, dict):
                markers.update(float(v) for v in value.values())
            else:
                return MIXED  # null: no snapshot of the pusher has one
        if len(markers) != 1:
            return MIXED
        marker = markers.pop()
        if not marker.is_integer() or flags != {int(marker) % 2 == 0}:
            return MIXED
        return f"marker {int(marker)}"


@pytest.fixture(scope="module")
def live(served_data, tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("load_faults")
    stack = Live(root, copy_tree(served_data, root / "data"))
    try:
        stack.server.launch()  # seconds of imports: Redis starts and END is pushed meanwhile
        stack.redis.start()
        stack.push_end()
        stack.server.wait_healthy()
        yield stack
    finally:
        stack.server.stop()
        stack.redis.kill()


# -- the load ---------------------------------------------------------------------------------------------------
class Clients:
    """Client threads (httpx) that run ``_work(worker)`` until stopped, counting what they see in ``counts``
    under ``lock`` and keeping the first few problems in ``examples`` for the assertion messages."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.counts: Counts = collections.Counter()
        self.examples: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _work(self, worker: int) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(60)

    def wait(self, condition: Callable[[Counts], bool], what: str, seconds: float = 30) -> None:
        def check() -> bool:
            with self.lock:
                counts = collections.Counter(self.counts)
            return condition(counts)

        try:
            wait_until(check, seconds, what, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; counts {dict(self.counts)}; problems {self.examples}; server log: "
                                 f"{self.live.server.output()}") from None

    def problem(self, text: str) -> None:
        """Keep ``text`` as an example (call with ``lock`` held)."""
        if len(self.examples) < 5:
            self.examples.append(text)


class Readers(Clients):
    """Reading real users until stopped, half GET /features/{user}, half POST /features/batch. Counts requests,
    status classes, requests without an answer, answers by source and by label (the snapshot the values come
    from, or mixed), in total and per ``phase`` (``<phase>:<what>``)."""

    def __init__(self, live: Live, label: Callable[[str, dict[str, Any]], str]) -> None:
        super().__init__(live)
        self.label, self.phase, self.slowest = label, "before", 0.0

    def _add(self, phase: str, seen: list[str], problem: str | None = None, seconds: float = 0.0) -> None:
        with self.lock:
            for what in seen:
                self.counts[what] += 1
                self.counts[f"{phase}:{what}"] += 1
            self.slowest = max(self.slowest, seconds)
            if problem:
                self.problem(problem)

    def _work(self, worker: int) -> None:
        rng = random.Random(worker)
        users = self.live.users
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                time.sleep(0.003)  # some hundreds of requests a second in all: load, without starving the server
                phase, base = self.phase, self.live.server.base
                started = time.perf_counter()
                try:
                    if rng.random() < 0.5:
                        response = client.get(f"{base}/features/{rng.choice(users)}")
                        answers = [response.json()] if response.status_code == 200 else []
                    else:
                        response = client.post(f"{base}/features/batch", json={"user_ids": rng.sample(users, BATCH)})
                        answers = response.json()["results"] if response.status_code == 200 else []
                except httpx.HTTPError as exc:
                    self._add(phase, ["unanswered"], f"{phase}: no answer: {exc!r}")
                    continue
                except Exception as exc:  # a thread that died silently would only show as a timeout
                    self._add(phase, ["client_failures"], f"{phase}: {exc!r}")
                    continue
                status = response.status_code
                seen = ["requests", "5xx" if status >= 500 else "ok" if status == 200 else "unexpected_status"]
                problem = None if status == 200 else f"{phase}: {status} {response.text[:300]}"
                for answer in answers:
                    values = {name: feature["value"] for name, feature in answer["features"].items()}
                    label = self.label(answer["user_id"], values)
                    seen += ["vectors", answer["source"], label]
                    if label == MIXED:
                        problem = f"{phase}: mixed {answer['source']} vector of {answer['user_id']}: {values}"
                self._add(phase, seen, problem, time.perf_counter() - started)

    def tally(self) -> dict[str, int]:
        """The tally's counts of a reading test."""
        c = self.counts
        return {"inputs": c["requests"] + c["unanswered"], "server_errors": c["5xx"], "mixed_vectors": c[MIXED],
                "vectors": c["vectors"], "online": c["online"], "offline": c["offline"], "default": c["default"],
                "unanswered": c["unanswered"], "unexpected_status": c["unexpected_status"] + c["client_failures"],
                "slowest_ms": round(self.slowest * 1000)}

    def assert_clean(self) -> None:
        c = self.counts
        assert c["5xx"] == 0, self.examples
        assert c[MIXED] == 0, self.examples
        assert c["unanswered"] == c["unexpected_status"] == c["client_failures"] == 0, self.examples
        assert c["default"] == 0, "every user read is in the offline snapshot: never the registry defaults"


# -- a. the server SIGKILLed right after acknowledging events ----------------------------------------------------
class Senders(Clients):
    """POSTing batches of valid events with unique ids until stopped, keeping the ids of every event acknowledged
    (a 202, and not among its ``rejected``). A batch without an answer is sent again (as a client retries) once
    the server is ``up``; ``answered`` is set at each 202."""

    SIZE = 50  # events per request (each request costs the server a DuckDB validation and an fsync)

    def __init__(self, live: Live) -> None:
        super().__init__(live)
        self.acknowledged: set[str] = set()
        self.up, self.answered = threading.Event(), threading.Event()
        self.up.set()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        try:
            with super().running():
                yield
        finally:
            self.up.set()

    def _batch(self, worker: int, n: int) -> list[dict[str, Any]]:
        # Not in the future for the server's clock (the real one): a minute ago.
        stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        users = self.live.users
        return [{"event_id": f"load-{worker}-{n}-{i}", "user_id": users[(n + i) % len(users)],
                 "event_type": "message_in", "timestamp": stamp, "conversation_id": f"c-{worker}-{n}",
                 "message_text": "hello"} for i in range(self.SIZE)]

    def _work(self, worker: int) -> None:
        n, batch = 0, None
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                if batch is None:
                    n += 1
                    batch = self._batch(worker, n)
                    with self.lock:
                        self.counts["events_sent"] += len(batch)
                if not self.up.wait(0.1):
                    continue
                try:
                    response = client.post(f"{self.live.server.base}/events", json={"events": batch})
                    body = response.json()
                    refused = {r["event_id"]: r["reasons"] for r in body.get("rejected", [])}
                except httpx.HTTPError as exc:  # no answer (the server died with the request in flight): resend
                    with self.lock:
                        self.counts["unanswered"] += 1
                        if self.up.is_set():  # not the kill's doing
                            self.counts["unanswered_while_up"] += 1
                            self.problem(f"no answer while the server was up: {exc!r}")
                    continue
                except Exception as exc:  # an answer that is not the route's JSON
                    body, refused = {}, {"?": [repr(exc)]}
                status = response.status_code
                acknowledged = [e["event_id"] for e in batch if e["event_id"] not in refused] if status == 202 else []
                duplicates = sum(1 for reasons in refused.values() if reasons == ["duplicate_event_id"])
                with self.lock:
                    self.counts["requests"] += 1
                    self.counts["5xx"] += status >= 500
                    self.acknowledged.update(acknowledged)
                    self.counts["acknowledged"] += len(acknowledged)
                    self.counts["duplicates_refused"] += duplicates  # a resent batch that had landed
                    if status not in (202, 422) or len(refused) != duplicates or body.get("accepted") != len(acknowledged):
                        self.counts["unexpected_answers"] += 1
                        self.problem(f"{status}: {response.text[:300]}")
                if status == 202:
                    self.answered.set()
                batch = None


def test_events_acknowledged_right_before_a_sigkill_of_the_server_are_all_in_the_landing_log(live):
    senders = Senders(live)
    with senders.running():
        senders.wait(lambda c: c["acknowledged"] >= 400, "400 events acknowledged")
        senders.answered.clear()
        senders.answered.wait(10)  # the very next 202 ...
        senders.up.clear()
        live.server.kill()  # ... and SIGKILL, the other clients' requests in flight
        with senders.lock:
            before_kill = senders.counts["acknowledged"]
        live.server.start()  # on the same data directory
        senders.up.set()
        senders.wait(lambda c: c["acknowledged"] >= before_kill + 200, "200 events acknowledged after the restart")
    log, _ = LandingLog(Settings(data_dir=live.data).landing_dir).read()
    landed = log.column("event_id").to_pylist()
    lost = senders.acknowledged - set(landed)
    c = senders.counts
    fault_tally.record("serving: server SIGKILLed right after 202s", inputs=c["events_sent"], server_errors=c["5xx"],
                       events_lost=len(lost), requests=c["requests"] + c["unanswered"],
                       events_acknowledged=len(senders.acknowledged), acknowledged_before_kill=before_kill,
                       unanswered=c["unanswered"], duplicates_refused=c["duplicates_refused"],
                       landed_twice=len(landed) - len(set(landed)))
    assert c["5xx"] == 0, senders.examples
    assert not lost, f"{len(lost)} acknowledged events are not in the landing log, e.g. {sorted(lost)[:5]}"
    assert len(landed) == len(set(landed)), "an event resent after the restart landed twice"
    assert c["unexpected_answers"] == c["unanswered_while_up"] == 0, senders.examples


# -- b, c. Redis SIGKILLed, Redis hung ------------------------------------------------------------------------
def test_redis_sigkilled_under_load_no_5xx_and_every_vector_is_the_snapshot(live):
    live.serve_end()
    readers = Readers(live, live.label_end)
    try:
        with readers.running():
            readers.wait(lambda c: c["requests"] >= 100, "100 reads before the kill")
            readers.phase = "down"
            live.redis.kill()
            readers.wait(lambda c: c["down:offline"] >= 50, "50 offline answers while Redis is down")
            readers.phase = "back"
            live.redis.start()  # the same port, empty: the push runs again
            live.push_end()
            readers.wait(lambda c: c["back:online"] >= 50, "50 online answers once Redis is back")
    finally:
        if not live.redis.running:
            live.redis.start()
    fault_tally.record("serving: Redis SIGKILLed under load", **readers.tally())
    readers.assert_clean()


HANG_SECONDS = 2.0


def test_redis_hung_under_load_no_5xx_and_every_vector_is_the_snapshot(live):
    live.serve_end()
    readers = Readers(live, live.label_end)
    with readers.running():
        readers.wait(lambda c: c["requests"] >= 100, "100 reads before the hang")
        readers.phase = "hung"
        live.redis.send(signal.SIGSTOP)
        try:
            hung_at = time.monotonic()
            wait_until(lambda: time.monotonic() - hung_at >= HANG_SECONDS, HANG_SECONDS + 5, "the hang", interval=0.05)
        finally:
            live.redis.send(signal.SIGCONT)
        readers.phase = "resumed"
        readers.wait(lambda c: c["resumed:online"] >= 50, "50 online answers once Redis resumed")
    fault_tally.record(f"serving: Redis hung (SIGSTOP {HANG_SECONDS:g} s) under load", **readers.tally())
    readers.assert_clean()


# -- d. a pusher SIGKILLed mid-push -------------------------------------------------------------------------
PUSHES = 12  # complete pushes before the one killed midway
# argv: port, prefix, snapshot date, pushes, users. Pushes snapshots 1 .. pushes whose every value is the
# snapshot's marker (ints and floats the marker, bools its parity, vectors and maps of it), printing each
# version once served; then snapshot pushes + 1 stops after 4 of its batches, says so, and waits to be SIGKILLed.
PUSHER = r"""
import datetime as dt, sys, time
import pyarrow as pa, redis
from feature_platform.online.store import OnlineStore
from feature_platform.registry import load_registry

port, prefix, day, pushes, users = int(sys.argv[1]), sys.argv[2], dt.date.fromisoformat(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
registry = load_registry()
fields = [registry.snapshot_schema(f.family).field(f.name) for f in registry.features.values()
          if "online" in f.serving_location]
schema = pa.schema([pa.field("user_id", pa.string()), *fields])

def marked(m):
    value = {"int": m, "float": float(m), "bool": m % 2 == 0, "vector": [float(m)] * 3, "map": [("marker", float(m))]}
    return pa.table([pa.array(users, pa.string())] + [pa.array([value[registry.get_feature(f.name).type]] * len(users),
                                                             f.type) for f in fields], schema=schema)

class StopAfter:
    def __init__(self, client, batches):
        self.client, self.batches, self.executed = client, batches, 0
    def __getattr__(self, name):
        return getattr(self.client, name)
    def pipeline(self, *args, **kwargs):
        pipe = self.client.pipeline(*args, **kwargs)
        execute = pipe.execute
        def execute_then_maybe_stop():
            result = execute()
            self.executed += 1
            if self.executed == self.batches:
                print("mid-push", flush=True)
                time.sleep(600)
            return result
        pipe.execute = execute_then_maybe_stop
        return pipe

client = redis.Redis(host="127.0.0.1", port=port)
store = OnlineStore(client, registry, prefix)
for m in range(1, pushes + 1):
    result = store.push(marked(m), day, batch=10)
    print("pushed", m, result.version, result.served, flush=True)
OnlineStore(StopAfter(client, 4), registry, prefix).push(marked(pushes + 1), day, batch=10)
print("finished", flush=True)
"""


def test_a_pusher_sigkilled_mid_push_leaves_a_complete_version_served_and_no_vector_mixed(live, tmp_path):
    live.serve_end()
    readers = Readers(live, live.label_marked)
    progress = tmp_path / "pusher.out"
    pusher: subprocess.Popen | None = None
    try:
        with readers.running():
            readers.phase = "pushing"  # the pusher's first second is imports: reads of END meanwhile
            with open(progress, "w") as out:
                pusher = subprocess.Popen([sys.executable, "-c", PUSHER, str(live.redis.port), PREFIX, END.isoformat(),
                                           str(PUSHES), *live.users], stdout=out, stderr=subprocess.STDOUT)
            wait_until(lambda: "mid-push" in progress.read_text() or pusher.poll() is not None, 60,
                       "the pusher to reach the middle of its last push")
            assert pusher.poll() is None, f"the pusher exited: {progress.read_text()[-3000:]}"
            pusher.kill()
            pusher.wait()
            readers.phase = "killed"
            readers.wait(lambda c: c["killed:requests"] >= 100, "100 reads after the kill")
    finally:
        if pusher is not None and pusher.poll() is None:
            pusher.kill()
            pusher.wait()
    pushed = [line.split() for line in progress.read_text().splitlines() if line.startswith("pushed ")]
    with live.online() as store:
        served, problem = store.served()
        unfinished = [v for v in store.versions() if v.status != "complete"]
    c = readers.counts
    fault_tally.record("serving: pusher SIGKILLed mid-push", **readers.tally(), pushes=len(pushed),
                       snapshots_seen=sum(1 for k in c if k.startswith("marker ")) + (END_LABEL in c))
    readers.assert_clean()
    assert c["offline"] == 0, "a complete version is served all along: every answer is online"
    assert [p[1] for p in pushed] == [str(m) for m in range(1, PUSHES + 1)] and {p[3] for p in pushed} == {"True"}
    assert served is not None and problem is None, problem
    assert served.version == pushed[-1][2], "the last complete push stays served"
    assert served.status == "complete" and served.keys == len(live.users)
    assert [v.status for v in unfinished] == ["writing"], "the killed push left its version unfinished, unserved"
    assert c[f"killed:marker {PUSHES}"] == c["killed:vectors"] > 0, "after the kill every answer is the last push's"
