"""Server faults an operator meets: damaged partitions, a pointer past its version, and what /health says."""

from __future__ import annotations

import argparse
import datetime as dt
import os

import httpx
import pytest
from fastapi.testclient import TestClient

from feature_platform import cli_serving
from feature_platform.config import Settings
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connect
from feature_platform.online.store import OnlineStore
from feature_platform.serving.api import create_app
from feature_platform.serving.state import StateHolder
from feature_platform_tests import fault_tally
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.serving.conftest import END, REGISTRY, START

pytestmark = pytest.mark.faults

NOW = dt.datetime(2025, 3, 13, 9, 0)
LEAD = "features/lead_features"
LEAD_FEATURE = REGISTRY.family("lead").features[0]


@pytest.fixture(autouse=True)
def _tally(monkeypatch):
    """One fault-tally line per test: the requests it sent and the 5xx among the answers (but /health's 503, its
    designed answer "down" for load balancers, counted apart)."""
    statuses: list[int] = []
    send = httpx.Client.send

    def counted_send(self, request, *args, **kwargs):
        try:
            response = send(self, request, *args, **kwargs)
        except Exception:
            statuses.append(500)  # the TestClient raises what the app did not handle: a 500 on a real server
            raise
        down = request.url.path == "/health" and response.status_code == 503
        statuses.append(0 if down else response.status_code)
        return response

    monkeypatch.setattr(httpx.Client, "send", counted_send)
    yield
    fault_tally.record("serving: damaged partitions, dangling pointer, /health", inputs=len(statuses),
                       server_errors=sum(1 for s in statuses if s >= 500), health_down=statuses.count(0))


@pytest.fixture
def data(served_data, tmp_path):
    return copy_tree(served_data, tmp_path / "data")


def _client(data, **changes) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: NOW))


def _user(data) -> str:
    return sorted(OfflineStore(data).read(LEAD, END.isoformat(), END.isoformat()).column("user_id").to_pylist())[0]


def _truncate(data, day: dt.date) -> str:
    path = OfflineStore(data).partition_path(LEAD, day.isoformat())
    os.truncate(path, path.stat().st_size // 2)
    return str(path)


def test_a_truncated_latest_partition_starts_degraded_on_the_day_before(data):
    user = _user(data)
    broken = _truncate(data, END)
    with _client(data) as c:
        health = c.get("/health")
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded"
        assert body["offline_snapshot"] == (END - dt.timedelta(days=1)).isoformat()
        [offline] = [d for d in body["degraded"] if d["dependency"] == "offline_snapshot"]
        assert broken in offline["problem"] and "backfill" in offline["problem"] and offline["since"]
        assert broken in body["offline_unreadable"]
        assert c.get(f"/features/{user}").json()["source"] == "online"
    with _client(data, redis_url="redis://127.0.0.1:1/0") as down:  # and without Redis: yesterday's snapshot
        body = down.get(f"/features/{user}").json()
        assert body["source"] == "offline" and body["snapshot"]["snapshot_date"] == "2025-03-11"


def test_a_corrupt_older_partition_is_left_out_of_the_history_not_a_500(data):
    user = _user(data)
    broken = _truncate(data, START)
    with _client(data) as c:
        response = c.get(f"/features/{user}/history", params={"feature": LEAD_FEATURE})
        assert response.status_code == 200
        days = [v["snapshot_date"] for v in response.json()["values"]]
        assert START.isoformat() not in days and END.isoformat() in days
        [skipped] = response.json()["skipped"]
        assert skipped["path"] == broken and skipped["snapshot_date"] == START.isoformat()
        assert "re-materialize it: feature-platform backfill" in skipped["problem"]
        assert broken in c.get("/health").json()["offline_unreadable"]


def test_a_pointer_past_its_version_falls_back_offline_and_health_and_status_say_why(data, capsys):
    user = _user(data)
    online = OnlineStore(connect(Settings(data_dir=data)), REGISTRY)
    version = online.current().version
    online.client.persist(online.pointer_key)  # as a pointer written before pointers expired
    online.client.delete(online.version_key(version), *online.client.scan_iter(match=f"fp:{version}:*"))
    with _client(data) as c:
        body = c.get(f"/features/{user}").json()
        assert body["source"] == "offline" and {f["source"] for f in body["features"].values()} == {"offline"}
        batch = c.post("/features/batch", json={"user_ids": [user]}).json()
        assert batch["results"][0]["source"] == "offline"
        assert c.get(f"/context/{user}").json()["source"] == "offline"
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["online"]["served"] is None
        [pointer] = [d for d in health["degraded"] if d["dependency"] == "online_version"]
        assert version in pointer["problem"] and "no longer in Redis" in pointer["problem"]
    assert cli_serving.cmd_online_status(argparse.Namespace(data_dir=data)) == 1
    assert f"names version {version}" in capsys.readouterr().out


def test_health_is_ok_degraded_with_since_or_down_503(data, tmp_path):
    with _client(data) as c:
        body = c.get("/health").json()
        assert body["online"]["reachable"] and body["online"]["served"]["snapshot_date"] == END.isoformat()
        assert body["status"] in ("ok", "degraded")
        assert body["status"] == "ok" or {d["dependency"] for d in body["degraded"]} <= {"models"}
    with _client(data, redis_url="redis://127.0.0.1:1/0") as c:
        c.get(f"/features/{_user(data)}")  # a failed read opens the breaker
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        [redis] = [d for d in health.json()["degraded"] if d["dependency"] == "redis"]
        assert redis["since"] == NOW.isoformat()
    empty = tmp_path / "empty"
    empty.mkdir()
    with _client(empty, redis_url="redis://127.0.0.1:1/0") as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "down"


def test_a_store_with_some_families_only_names_the_missing_ones_once_instead_of_trying_every_day(data, tmp_path,
                                                                                                  caplog):
    partial = copy_tree(data, tmp_path / "partial")
    for family in ("lead", "review"):
        for path in OfflineStore(partial).partition_files("/".join(REGISTRY.family(family).asset_path)):
            path.unlink()
    holder = StateHolder(Settings(data_dir=partial))
    with caplog.at_level("WARNING"):
        state = holder.load()
    assert state.offline is None
    offline = [p for p in state.problems if "snapshot" in p]
    assert offline == ["no offline snapshot with every family: lead, review have none yet; materialize the "
                       "features group (`feature-platform run`)"]
    assert not [r for r in caplog.records if "offline snapshot 20" in r.getMessage()]  # no line per day tried
    with TestClient(create_app(Settings(data_dir=partial), reload_seconds=0)) as client:
        degraded = {d["dependency"]: d["problem"] for d in client.get("/health").json()["degraded"]}
    assert degraded["offline_snapshot"] == offline[0]  # filed under the offline snapshot, not the models
    assert offline[0] not in degraded.get("models", "")
