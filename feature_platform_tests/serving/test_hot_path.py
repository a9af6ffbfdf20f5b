"""The hot path answers exactly as the routes do: every request below is sent with it on and with it off
(the app's FastAPI routes alone), and the two answers must be the same status, headers that matter and JSON.

Also: what it hands to FastAPI (inputs it does not read itself), the labels the latency histogram and the
audit log give its requests, and the JSON encoder against the standard library's.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from feature_platform.config import Settings
from feature_platform.serving import hot_path
from feature_platform.serving.api import create_app
from feature_platform_tests.serving.conftest import REGISTRY

NOW = dt.datetime(2025, 3, 13, 9, 0)
LATER = dt.datetime(2025, 3, 20, 9, 0)  # a week on: every feature stale
KEY = "k-" + "a" * 30
SECRET = "s" * 40


def _app(data, clock=NOW, **changes):
    return create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: clock)


@pytest.fixture(scope="module")
def clients(served_data):
    """Two servers on the same data: the hot path on, and off (its handlers unset: every request to FastAPI)."""
    on, off = _app(served_data, max_batch=5), _app(served_data, max_batch=5)
    with TestClient(on) as fast, TestClient(off) as slow:
        off.state.hot_handlers = None
        yield fast, slow


def _users(data) -> list[str]:
    from feature_platform.offline.store import OfflineStore

    table = OfflineStore(data).read("features/user_activity_features", "2025-03-12", "2025-03-12")
    return sorted(table.column("user_id").to_pylist())


def _same(fast: TestClient, slow: TestClient, method: str, url: str, **kwargs) -> dict:
    a, b = fast.request(method, url, **kwargs), slow.request(method, url, **kwargs)
    assert a.status_code == b.status_code, (url, a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]
    assert a.json() == b.json(), url
    return {"status": a.status_code, "body": a.json()}


def test_single_vectors_subsets_and_their_errors_are_answered_alike(clients, served_data):
    fast, slow = clients
    user = _users(served_data)[2]
    for url in (f"/features/{user}", f"/features/{user}?features=total_events,category_affinity,topic_vector",
                f"/features/{user}?features=total_events,total_events", f"/features/{user}?defaults=true",
                "/features/nobody", "/features/nobody?defaults=true", "/features/nobody?defaults=false",
                f"/features/{user}?features=", f"/features/{user}?features=nope",
                f"/features/{user}?defaults=maybe", f"/features/{user}?defaults=1", f"/features/{user}?version=v0",
                f"/features/{user}?features=a&features=b", f"/features/{user}?colour=blue", "/features/bad%20id",
                "/features/" + "u" * 200, f"/features/{user}/history?feature=total_events&limit=2"):
        _same(fast, slow, "GET", url)
    assert _same(fast, slow, "GET", f"/features/{user}")["body"]["source"] == "online"


def test_batches_and_their_errors_are_answered_alike(clients, served_data):
    fast, slow = clients
    users = _users(served_data)[:3]
    for body in ({"user_ids": users}, {"user_ids": [*users, "nobody"]}, {"user_ids": ["nobody"], "defaults": True},
                 {"user_ids": users, "features": ["engagement_score", "age"]}, {"user_ids": users * 2},
                 {"user_ids": ["a", "b", "c", "d", "e", "f"]}, {"user_ids": []}, {"user_ids": ["bad id"]},
                 {"user_ids": users, "features": ["nope"]}, {"user_ids": users, "colour": 1},
                 {"user_ids": users, "version": "v0"}, {"features": ["age"]}):
        _same(fast, slow, "POST", "/features/batch", json=body)
    for raw in (b"{not json", b"[]", b'{"user_ids": [NaN]}'):
        _same(fast, slow, "POST", "/features/batch", content=raw, headers={"content-type": "application/json"})
    _same(fast, slow, "POST", "/features/batch", content=json.dumps({"user_ids": users}).encode())  # no content type


def test_stale_vectors_and_the_offline_fallback_are_answered_alike(served_data):
    user = _users(served_data)[4]
    later_on, later_off = _app(served_data, clock=LATER), _app(served_data, clock=LATER)
    with TestClient(later_on) as fast, TestClient(later_off) as slow:
        later_off.state.hot_handlers = None
        body = _same(fast, slow, "GET", f"/features/{user}")["body"]
        assert {f["status"] for f in body["features"].values()} <= {"stale", "missing"}
        for app in (later_on, later_off):  # Redis refused: the breaker sends reads to the offline snapshot
            app.state.retriever._open_until = math.inf
        body = _same(fast, slow, "GET", f"/features/{user}")["body"]
        assert body["source"] == "offline" and "stale" in {f["status"] for f in body["features"].values()}


def test_keys_are_checked_alike_and_the_audit_log_and_latency_histogram_name_the_route(served_data, tmp_path):
    user = _users(served_data)[1]
    audit_on, audit_off = tmp_path / "on.log", tmp_path / "off.log"
    keys = (f"{KEY}:features:read+admin", "other-key-12345:predict")
    on = _app(served_data, api_keys=keys, jwt_secret=SECRET, audit_log=str(audit_on))
    off = _app(served_data, api_keys=keys, jwt_secret=SECRET, audit_log=str(audit_off))
    token = jwt.encode({"sub": "alice", "scope": "features:read", "exp": dt.datetime.now(dt.UTC)
                        + dt.timedelta(hours=1)}, SECRET, algorithm="HS256")
    with TestClient(on) as fast, TestClient(off) as slow:
        off.state.hot_handlers = None
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": KEY},
                        {"X-API-Key": "other-key-12345"}, {"Authorization": f"Bearer {token}"},
                        {"Authorization": "Bearer not-a-token"}, {"Authorization": f"bearer {token}"},
                        {"Authorization": "Basic x", "X-API-Key": KEY}, {"Authorization": "Bearer"}):
            _same(fast, slow, "GET", f"/features/{user}", headers=headers)
            _same(fast, slow, "POST", "/features/batch", json={"user_ids": [user]}, headers=headers)
        metrics = fast.get("/metrics", headers={"X-API-Key": KEY}).text
        slow.get("/metrics", headers={"X-API-Key": KEY})
    assert 'fp_request_latency_seconds_count{method="GET",route="/features/{user_id}",status="200"} 4.0' in metrics
    assert 'fp_request_latency_seconds_count{method="POST",route="/features/batch",status="200"} 4.0' in metrics

    def lines(path):  # the audit lines without their timestamps
        return [{k: v for k, v in json.loads(line).items() if k != "time"}
                for line in path.read_text().splitlines()]

    assert lines(audit_on) == lines(audit_off) and {line["route"] for line in lines(audit_on)} >= {
        "/features/{user_id}", "/features/batch"}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


def _reference(value):
    """What the server sent before: the standard library's JSON, NaN and infinities as null."""
    return json.loads(json.dumps(hot_path.finite(value), default=str))


@given(JSON_VALUES)
def test_the_encoder_gives_the_standard_librarys_json(value):
    assert json.loads(hot_path.encode(value)) == _reference(value)


def test_the_encoder_writes_datetimes_and_dates_as_str_does():
    moment = {"at": dt.datetime(2025, 3, 13, 9, 0), "day": dt.date(2025, 3, 13), "n": REGISTRY.version}
    assert json.loads(hot_path.encode(moment)) == {"at": "2025-03-13 09:00:00", "day": "2025-03-13",
                                                   "n": REGISTRY.version}
