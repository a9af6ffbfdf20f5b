"""The feature server's scrape-time gauges: Redis reachable, a complete version served, the served snapshot's age
and the tolerance it is judged by, on the served data directory of the server tests."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.online.connection import connect
from feature_platform.online.store import OnlineStore
from feature_platform.serving.api import create_app
from feature_platform_tests.monitoring.conftest import sample_values, value
from feature_platform_tests.serving.conftest import END, REGISTRY

NOW = dt.datetime(2025, 3, 13, 9, 0)
OFFLINE_AGE = (NOW - dt.datetime.combine(END + dt.timedelta(days=1), dt.time())).total_seconds()  # END's cut-off


def _scrape(settings: Settings, before=None) -> dict:
    app = create_app(settings, reload_seconds=0, clock=lambda: NOW)
    with TestClient(app) as client:
        if before is not None:
            before(app, client)
        return sample_values(client.get("/metrics").text)


def _shortest_online_tolerance() -> float:
    return min(f.staleness_tolerance for f in REGISTRY.features.values()
               if "online" in f.serving_location).total_seconds()


def test_with_redis_serving_an_older_version_the_age_is_the_online_versions(served_data):
    prefix = f"fp-gauges-{uuid.uuid4().hex[:8]}"  # a version of its own, beside the one the other tests read
    settings = Settings(data_dir=served_data, redis_prefix=prefix)
    older = END - dt.timedelta(days=2)
    client = connect(settings)
    OnlineStore(client, REGISTRY, prefix).push(pa.table({"user_id": ["u1"], "total_events": pa.array([3], pa.int64())}),
                                               older)
    try:
        samples = _scrape(settings)
    finally:
        client.delete(*client.keys(f"{prefix}:*"))
    assert value(samples, "fp_redis_up") == 1 and value(samples, "fp_online_version_served") == 1
    online_age = (NOW - dt.datetime.combine(older + dt.timedelta(days=1), dt.time())).total_seconds()
    assert value(samples, "fp_served_snapshot_age_seconds") == online_age != OFFLINE_AGE
    assert value(samples, "fp_staleness_tolerance_seconds") == _shortest_online_tolerance()


def test_with_nothing_pushed_under_the_prefix_reads_and_the_age_are_the_offline_snapshots(served_data):
    samples = _scrape(Settings(data_dir=served_data, redis_prefix=f"fp-empty-{uuid.uuid4().hex[:8]}"))
    assert value(samples, "fp_redis_up") == 1 and value(samples, "fp_online_version_served") == 0
    assert value(samples, "fp_served_snapshot_age_seconds") == OFFLINE_AGE


def test_with_redis_down_the_gauges_say_so_and_the_age_is_the_offline_snapshots(served_data):
    samples = _scrape(Settings(data_dir=served_data, redis_url="redis://127.0.0.1:1/0"))  # nothing listens on 1
    assert value(samples, "fp_redis_up") == 0 and value(samples, "fp_online_version_served") == 0
    assert value(samples, "fp_served_snapshot_age_seconds") == OFFLINE_AGE


def test_while_reads_skip_redis_a_scrape_does_not_ask_it(served_data):
    asked: list[str] = []

    def read_then_watch(app, client) -> None:
        client.get("/features/nobody", params={"defaults": "true"})  # the read fails and opens the breaker
        retriever = app.state.retriever
        retriever.online.served = lambda: asked.append("served")  # would be called by a scrape that asks Redis

    samples = _scrape(Settings(data_dir=served_data, redis_url="redis://127.0.0.1:1/0"), read_then_watch)
    assert asked == [] and value(samples, "fp_redis_up") == 0
