"""Hostile request bodies: NaN/Infinity literals, oversized bodies, ids reads refuse, numbers out of bounds.

In process (TestClient) except where the socket is the point: keep-alive after a 422, and a 413 sent on
the headers alone, before the body arrives (uvicorn in a thread, raw HTTP).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from feature_platform.config import ConfigError, Settings
from feature_platform.online.store import OnlineStore
from feature_platform.serving.api import create_app
from feature_platform.serving.schemas import MAX_AMOUNT, MAX_FEATURE_VALUE, MAX_TEXT
from feature_platform.sources.landing import LandingLog
from feature_platform_tests import fault_tally
from feature_platform_tests.helpers import free_port, wait_until
from feature_platform_tests.serving.conftest import REGISTRY

pytestmark = pytest.mark.faults

NOW = dt.datetime(2025, 3, 13, 9, 0)
LIMIT = 16_384  # FP_MAX_BODY_BYTES of these tests' servers


@pytest.fixture(autouse=True)
def _tally(monkeypatch):
    """One fault-tally line per test: every request it sent (TestClient, http.client, raw socket) and the 5xx
    among the answers."""
    statuses: list[int] = []
    send, getresponse, raw_exchange = httpx.Client.send, http.client.HTTPConnection.getresponse, _raw_exchange

    def counted_send(self, *args, **kwargs):
        try:
            response = send(self, *args, **kwargs)
        except Exception:
            statuses.append(500)  # the TestClient raises what the app did not handle: a 500 on a real server
            raise
        statuses.append(response.status_code)
        return response

    def counted_getresponse(self):
        response = getresponse(self)
        statuses.append(response.status)
        return response

    def counted_raw_exchange(*args, **kwargs):
        answer = raw_exchange(*args, **kwargs)
        statuses.append(int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0)
        return answer

    monkeypatch.setattr(httpx.Client, "send", counted_send)
    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", counted_getresponse)
    monkeypatch.setattr(sys.modules[__name__], "_raw_exchange", counted_raw_exchange)
    yield
    fault_tally.record("serving: hostile request bodies", inputs=len(statuses),
                       server_errors=sum(1 for s in statuses if s >= 500))


def _strict_json(text: str) -> object:
    """JSON as a strict client reads it: NaN/Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"the server sent the non-JSON literal {constant}")
    return json.loads(text, parse_constant=refuse)


def _post(client: TestClient, path: str, raw: str):
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def _app(data: Path, **changes):
    return create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: NOW)


@pytest.fixture(scope="module")
def client(served_data):
    with TestClient(_app(served_data, max_body_bytes=LIMIT)) as c:
        yield c


@pytest.fixture(scope="module")
def events_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("hardening") / "data"
    data.mkdir()
    return data


@pytest.fixture(scope="module")
def events_client(events_data):
    # /events never reads Redis: a client that never connects spares starting (and stopping) an embedded one
    online = OnlineStore(redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), REGISTRY, "fp")
    app = create_app(Settings(data_dir=events_data, max_body_bytes=64 * 1024), online=online, reload_seconds=0,
                     clock=lambda: NOW)
    with TestClient(app) as c:
        yield c


def _landed(data: Path) -> list[str]:
    landed, _ = LandingLog(Settings(data_dir=data).landing_dir).read()
    return sorted(landed.column("event_id").to_pylist()) if landed is not None else []


def _event(key: str, **fields) -> dict:
    return {"event_id": key, "user_id": "u000001", "event_type": "message_in",
            "timestamp": "2025-03-13T08:00:00Z", "conversation_id": "c-1", "message_text": "hello", **fields}


# -- 1. NaN / Infinity ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "raw", "loc"), [
    ("/features/batch", '{"user_ids": [NaN]}', ["body", "user_ids", 0]),
    ("/features/batch", '{"user_ids": ["u000001"], "version": Infinity}', ["body", "version"]),
    ("/features/batch", '{"user_ids": ["u000001"], "defaults": -Infinity}', ["body", "defaults"]),
    ("/predict/churn", '{"features": {"total_events": NaN}}', ["body", "features", "total_events"]),
    ("/predict/churn", '{"user_id": Infinity}', ["body", "user_id"]),
    ("/predict/contact", '{"user_id": "u000001", "listing_ids": ["l1"], "context": {"hour": NaN}}',
     ["body", "context", "hour"]),
    ("/events", '{"events": [NaN]}', ["body", "events", 0]),
])
def test_nan_or_infinity_is_a_422_naming_the_field_in_valid_json(client, path, raw, loc):
    response = _post(client, path, raw)
    assert response.status_code == 422, response.text
    body = _strict_json(response.text)
    assert loc in [error["loc"] for error in body["detail"]], body


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", '"nan"', '"inf"'])
def test_a_non_finite_event_amount_is_refused_naming_the_field(events_client, events_data, amount):
    raw = json.dumps({"events": [_event("nan-1", event_type="purchase", amount=0)]}).replace('"amount": 0',
                                                                                            f'"amount": {amount}')
    response = _post(events_client, "/events", raw)
    assert response.status_code == 422, response.text
    rejected = _strict_json(response.text)["rejected"]
    assert rejected[0]["reasons"] == ["invalid_amount"] and rejected[0]["detail"].startswith("amount: ")
    assert "nan-1" not in _landed(events_data)


@contextlib.contextmanager
def _uvicorn(app) -> Iterator[int]:
    """The app on a real uvicorn server (in a thread, on a free loopback port)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "uvicorn to start", interval=0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture(scope="module")
def server_port(served_data) -> Iterator[int]:
    with _uvicorn(_app(served_data, max_body_bytes=LIMIT)) as port:
        yield port


def test_after_a_nan_422_the_keep_alive_connection_serves_the_next_request(server_port):
    connection = http.client.HTTPConnection("127.0.0.1", server_port, timeout=10)
    try:
        connection.request("POST", "/features/batch", body='{"user_ids": [NaN]}',
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        assert response.status == 422 and not response.will_close
        _strict_json(response.read().decode())
        sock = connection.sock
        connection.request("GET", "/features/u000001?features=total_events")
        again = connection.getresponse()
        assert again.status == 200 and connection.sock is sock  # the same connection, not a reconnect
        again.read()
    finally:
        connection.close()


# -- 2. Body size ---------------------------------------------------------------------------------------
def _batch_of(size: int) -> bytes:
    ids = [f"u{i:07d}" for i in range(size // 11 + 1)]
    return json.dumps({"user_ids": ids}).encode()


def test_a_body_over_the_limit_is_a_413_and_one_under_it_is_served(client):
    body = _batch_of(LIMIT + 1)
    response = client.post("/features/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "FP_MAX_BODY_BYTES" in response.json()["detail"]
    ok = client.post("/features/batch", json={"user_ids": ["u000001"], "features": ["total_events"]})
    assert ok.status_code == 200


def test_a_chunked_body_is_counted_as_it_streams(client):
    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        yield b'{"user_ids": ['
        for _ in range(LIMIT // 16):
            yield b'"u000001", "u0", '
        yield b'"u000001"]}'

    response = client.post("/features/batch", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "FP_MAX_BODY_BYTES" in response.json()["detail"]


def _raw_exchange(port: int, request: bytes, then: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if then:
            with contextlib.suppress(OSError):  # the server may close on its 413 while we still send
                sock.sendall(then)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_a_large_content_length_is_refused_on_the_headers_before_any_body_is_sent(server_port):
    started = time.perf_counter()
    answer = _raw_exchange(server_port, b"POST /features/batch HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Type: application/json\r\nContent-Length: 48000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"FP_MAX_BODY_BYTES" in answer
    assert b"connection: close" in answer.lower()  # the server does not wait for (or read) the 48 MB
    assert time.perf_counter() - started < 5


def test_a_chunked_body_over_the_limit_is_a_413_on_a_real_server(server_port):
    chunk = b"x" * 1000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // 1000 + 2))
    answer = _raw_exchange(server_port, b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n", body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_the_body_limit_is_a_setting_with_a_floor():
    assert Settings().max_body_bytes == 1_048_576
    assert Settings.from_env({"FP_MAX_BODY_BYTES": "5000"}).max_body_bytes == 5000
    with pytest.raises(ConfigError, match="FP_MAX_BODY_BYTES"):
        Settings(max_body_bytes=10)


# -- 3. Events follow the read side's rules -------------------------------------------------------------
BAD_USER_IDS = ["../../etc/passwd", "u\x00", "u000001\n", "u" * 10_000, 1.5, -3, True, ""]


@pytest.mark.parametrize(("user_id", "text"), [(123, "123"), (456.0, "456")])
def test_a_whole_number_user_id_lands_as_its_text_as_a_raw_files_does(events_client, events_data, user_id, text):
    response = events_client.post("/events", json={"events": [_event(f"int-user-{text}", user_id=user_id)]})
    assert response.status_code == 202, response.text
    landed, _ = LandingLog(Settings(data_dir=events_data).landing_dir).read()
    assert landed is not None
    rows = landed.filter(pc.equal(landed.column("event_id"), f"int-user-{text}")).column("user_id").to_pylist()
    assert rows == [text]


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
def test_a_user_id_reads_refuse_is_refused_by_events_and_nothing_lands(events_client, events_data, client, user_id):
    assert client.post("/features/batch", json={"user_ids": [user_id]}).status_code == 422  # the read side
    response = events_client.post("/events", json={"events": [_event("bad-user", user_id=user_id)]})
    assert response.status_code == 422, response.text
    rejected = response.json()["rejected"]
    assert rejected[0]["reasons"] == ["invalid_user_id"] and rejected[0]["detail"].startswith("user_id: ")
    assert "bad-user" not in _landed(events_data)


@pytest.mark.parametrize(("field", "value"), [
    ("event_id", "e" * 10_000),
    ("event_id", "e\x7f1"),
    ("message_text", "x" * (MAX_TEXT + 1)),
    ("message_text", "nul\x00byte"),
    ("conversation_id", "c" * 129),
    ("conversation_id", "c\n1"),
    ("amount", MAX_AMOUNT * 10),
    ("amount", 10**400),
    ("amount", "1e400"),
])
def test_event_ids_texts_and_amounts_have_limits_naming_the_field(events_client, events_data, field, value):
    event = _event("limit-1", **{field: value})  # an invalid event_id replaces "limit-1"
    if field == "amount":
        event["event_type"] = "purchase"
    response = events_client.post("/events", json={"events": [event]})
    assert response.status_code == 422, response.text
    rejected = response.json()["rejected"]
    assert rejected[0]["reasons"] == [f"invalid_{field}"] and rejected[0]["detail"].startswith(f"{field}: ")
    assert "limit-1" not in _landed(events_data)


def test_a_mixed_batch_lands_the_good_events_and_reports_the_bad_by_their_index(events_client, events_data):
    events = [_event("mix-0", user_id="../../etc/passwd"), _event("mix-1", message_text="line one\nline two"),
              _event("mix-2", event_type="teleport"), _event("mix-3", message_text="m" * MAX_TEXT)]
    response = events_client.post("/events", json={"events": events})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["event_id"]) for r in body["rejected"]] == [(0, "mix-0"), (2, "mix-2")]
    assert {"mix-1", "mix-3"} <= set(_landed(events_data))


# -- 4. Numbers in predictions ---------------------------------------------------------------------------
@pytest.mark.parametrize("features", [
    {"total_events": MAX_FEATURE_VALUE * 10},
    {"total_events": -(10**400)},
    {"topic_vector": [0.1, 1e300]},
    {"category_affinity": {"books": float("inf")}},
])
def test_churn_feature_values_out_of_bounds_are_a_422_naming_the_feature(client, features):
    raw = json.dumps({"features": features})  # allow_nan: Infinity goes out as the literal
    response = _post(client, "/predict/churn", raw)
    assert response.status_code == 422, response.text
    assert ["body", "features", next(iter(features))] in [e["loc"] for e in _strict_json(response.text)["detail"]]
