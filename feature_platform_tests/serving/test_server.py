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
                   log: list[str] | None = None) -> Iterator[str]:
    """Start the server on a free port, wait for /health, yield its base URL, stop it."""
    port = free_port()
    process = subprocess.Popen([CLI, "serve", "--data-dir", str(data), "--host", host, "--port", str(port)],
                               env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base = f"http://127.0.0.1:{port}"
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
