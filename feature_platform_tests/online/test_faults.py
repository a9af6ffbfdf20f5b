"""Online store faults: a pointer past its version, a re-push of the served snapshot killed midway."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from feature_platform import cli_serving
from feature_platform.offline.store import OfflineStore
from feature_platform.online.store import OnlineStore, OnlineStoreError
from feature_platform.online.updates import apply_landed_events
from feature_platform.sources.landing import LandingLog
from feature_platform_tests import fault_tally
from feature_platform_tests.online.conftest import standalone_store
from feature_platform_tests.online.test_store import D1, D2, REGISTRY, marked

pytestmark = pytest.mark.faults

USERS = ["u1", "u2", "u3", "u4", "u5"]


@pytest.fixture(autouse=True)
def _tally(request):
    """One fault-tally line per test that ran: the fault it replays is its one input (no server answers here)."""
    yield
    if all(name in request.node.funcargs for name in request.node.fixturenames):  # not skipped while setting up
        fault_tally.record("online: dangling pointer, killed re-push", inputs=1)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.redis)])
def online(request, tmp_path):
    yield from standalone_store(request.param, request, tmp_path)


def _expire(store: OnlineStore, version: str) -> None:
    """What days without a push do: the version's metadata and vectors expire."""
    keys = [*store.client.scan_iter(match=f"{store.prefix}:{version}:*"), store.version_key(version)]
    store.client.delete(*keys)


def test_the_pointer_expires_with_its_version(online):
    result = online.push(marked(1), D1)
    pointer, version = online.client.pttl(online.pointer_key), online.client.pttl(online.version_key(result.version))
    assert 0 < pointer <= version
    online.push(marked(2), D2)
    online.client.expire(online.version_key(result.version), 1000)
    online.rollback()  # back to the first version: the pointer takes its remaining TTL
    assert 0 < online.client.ttl(online.pointer_key) <= 1000


def test_a_pointer_naming_a_gone_version_reads_as_a_miss_and_says_why(online):
    result = online.push(marked(1), D1)
    online.client.persist(online.pointer_key)  # as a pointer written before pointers expired
    _expire(online, result.version)
    restarted = OnlineStore(online.client, REGISTRY, prefix=online.prefix)
    assert restarted.read_many(USERS) == dict.fromkeys(USERS)  # a miss (offline fallback), not an error
    assert restarted.current() is None
    info, problem = restarted.served()
    assert info is None and result.version in problem and "no longer in Redis" in problem
    assert restarted.status()["problem"] == problem and restarted.status()["served_version"] is None


def test_a_repush_of_the_served_snapshot_killed_midway_leaves_it_served(online):
    first = online.push(marked(1), D1)
    with pytest.raises(ConnectionError):
        online.push(marked(1), D1, batch=2, fail_after_batches=1)  # the same content again, killed after 2 users
    served = online.current()
    assert served is not None and served.version == first.version and served.status == "complete"
    assert {v.values["total_events"] for v in online.read_many(USERS).values()} == {1}
    again = online.push(marked(1), D1, batch=2)  # the re-run completes its own new version
    assert again.served and again.version != first.version and again.previous == first.version
    assert online.current().version == again.version
    assert online.rollback() == (again.version, first.version)  # both whole


def test_the_updater_says_why_when_the_served_version_is_not_complete(online, tmp_path):
    result = online.push(marked(1), D1)
    online.client.hset(online.version_key(result.version), "status", "writing")  # as an older release left it
    update = apply_landed_events(online, OfflineStore(tmp_path), REGISTRY, LandingLog(tmp_path / "landing"),
                                 tmp_path / "cursor.json", dt.datetime(2025, 3, 20, 12))
    assert update.version is None and "not complete" in update.note


def test_stream_once_reports_an_online_store_error_instead_of_dying(monkeypatch, capsys, tmp_path):
    def refuse(*_args, **_kwargs):
        raise OnlineStoreError("version '2025-03-18.abc' is not in the online store; see `online status`")

    monkeypatch.setattr("feature_platform.online.updates.apply_landed_events", refuse)
    monkeypatch.setattr(cli_serving, "_online", lambda settings: None)
    monkeypatch.setattr("signal.signal", lambda *args: None)
    args = argparse.Namespace(interval=2.0, once=True, data_dir=tmp_path)
    assert cli_serving.cmd_stream(args) == 1
    assert "error: version '2025-03-18.abc' is not in the online store" in capsys.readouterr().out
