"""`feature-platform serve` as a real process on a loopback port: startup messages, routes, auth binding."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from feature_platform_tests.helpers import free_port

CLI = str(Path(sys.executable).with_name("feature-platform"))


@contextlib.contextmanager
def running_server(data: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1",
                   log: list[str] | None = None, args: tuple[str, ...] = (),
                   processes: list[subprocess.Popen] | None = None) -> Iterator[str]:
    """Start the server on a free port, wait for /health, yield its base URL, stop it."""
    port = free_port()
    process = subprocess.Popen([CLI, "serve", "--data-dir", str(data), "--host", host, "--port", str(port), *args],
                               env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    if processes is not None:
        processes.append(process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited: {process.stdout.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("server did not answer /health within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if log is not None:
            log.append(output)


def embedded_redis_servers(data: Path) -> list[psutil.Process]:
    """The redis-server processes serving ``data``'s embedded online store (their working dir is its folder)."""
    found = []
    for process in psutil.process_iter(["name", "cwd"]):
        if process.info["name"] == "redis-server" and process.info["cwd"] == str(data / "online"):
            found.append(process)
    return found


@pytest.fixture
def data_copy(served_data, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(served_data, data, ignore=shutil.ignore_patterns("*.sock", "*.settings"))
    return data


@pytest.mark.e2e
def test_serve_after_a_run_answers_every_route_from_the_embedded_store(data_copy):
    log: list[str] = []
    with running_server(data_copy, log=log) as base, httpx.Client(base_url=base, timeout=30) as c:
        health = c.get("/health").json()
        assert health["online"]["reachable"] and health["online"]["served"]["snapshot_date"] == "2025-03-12"
        assert set(health["models"]) == {"churn", "contact"}
        vector = c.get("/features/u000001").json()
        assert vector["source"] == "online"
        assert vector["features"]["total_events"]["status"] == "stale"  # a 2025 snapshot, served and flagged
        assert c.post("/features/batch", json={"user_ids": ["u000001", "u000002"]}).status_code == 200
        assert c.get("/features/u000001/history", params={"feature": "total_events"}).status_code == 200
        assert c.get("/context/u000001").status_code == 200
        assert c.get("/registry/features/monetary_total").status_code == 200
        assert 0 <= c.post("/predict/churn", json={"user_id": "u000001"}).json()["probability"] <= 1
        ranked = c.post("/predict/contact", json={"user_id": "u000001", "listing_ids": ["l000001", "l000002"]}).json()
        assert len(ranked["listings"]) == 2
        assert "fp_request_latency_seconds_bucket" in c.get("/metrics").text
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").json()["paths"]
        assert len(embedded_redis_servers(data_copy)) == 1  # the server's own embedded redis-server
    assert "no FP_API_KEYS or FP_JWT_* set: open, loopback only" in log[0]
    # Stopped with SIGTERM (uvicorn then re-raises it, skipping exit handlers): the embedded redis-server
    # it started is stopped too, not left behind.
    deadline = time.monotonic() + 15
    while embedded_redis_servers(data_copy):
        assert time.monotonic() < deadline, "the embedded redis-server outlived `feature-platform serve`"
        time.sleep(0.2)


def _workers(process: subprocess.Popen) -> list[psutil.Process]:
    """The live worker processes of `serve --workers` (a dead one is a zombie until the supervisor reaps it)."""
    found = []
    for child in psutil.Process(process.pid).children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
    return found


@pytest.mark.e2e
def test_serve_with_two_workers_answers_from_both_restarts_a_dead_one_and_stops_cleanly(data_copy):
    log: list[str] = []
    started: list[subprocess.Popen] = []
    with running_server(data_copy, log=log, args=("--workers", "2"), processes=started) as base:
        deadline = time.monotonic() + 60
        while len(_workers(started[0])) < 2:  # /health answered from the first to start
            assert time.monotonic() < deadline, "two workers did not start within 60 s"
            time.sleep(0.2)
        first = _workers(started[0])
        answers = set()
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(3):
                answers.add(c.get("/features/u000001").content)
        # Sixteen connections: the kernel spreads them over the workers' sockets (SO_REUSEPORT) by a hash of
        # the client port; all sixteen on one of two workers has a chance of 2 ** -15.
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(16)]
        try:
            for client in clients:
                answers.add(client.get("/features/u000001").content)
            serving = {p.pid for p in first if any(conn.status == psutil.CONN_ESTABLISHED
                                                   for conn in p.net_connections("tcp"))}
        finally:
            for client in clients:
                client.close()
        assert len(answers) == 1 and len(embedded_redis_servers(data_copy)) == 1  # one shared embedded Redis
        assert serving == {p.pid for p in first}, "the connections did not reach both workers"
        first[0].kill()  # a worker dies: the other answers, and a new one takes its place
        assert httpx.get(f"{base}/features/u000001", timeout=30).content in answers
        deadline = time.monotonic() + 60
        while len([p for p in _workers(started[0]) if p.pid != first[0].pid]) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced within 60 s"
            time.sleep(0.2)
    assert "listening on" in log[0] and "with 2 worker processes" in log[0]
    deadline = time.monotonic() + 15  # SIGTERM: workers, supervisor and embedded redis-server all gone
    while embedded_redis_servers(data_copy) or any(p.is_running() for p in first[1:]):
        assert time.monotonic() < deadline, "a worker or the embedded redis-server outlived `serve --workers 2`"
        time.sleep(0.2)
    assert (data_copy / "online" / "redis.db").stat().st_size > 0


@pytest.mark.e2e
def test_without_api_keys_the_server_refuses_a_public_address(data_copy):
    log: list[str] = []
    with running_server(data_copy, host="0.0.0.0", log=log) as base:
        assert httpx.get(f"{base}/health").status_code == 200
    assert "binding to 127.0.0.1 instead of 0.0.0.0" in log[0]


@pytest.mark.e2e
def test_with_api_keys_every_route_but_health_needs_one(data_copy):
    with running_server(data_copy, {"FP_API_KEYS": "alpha,beta"}) as base:
        assert httpx.get(f"{base}/features/u000001").status_code == 401
        assert httpx.get(f"{base}/features/u000001", headers={"X-API-Key": "gamma"}).status_code == 403
        assert httpx.get(f"{base}/features/u000001", headers={"X-API-Key": "beta"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200
