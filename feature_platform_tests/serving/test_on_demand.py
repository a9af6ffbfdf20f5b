"""Computing on demand: a user who signed up after the served snapshot, with events, is answered from those
events with the values the next daily snapshot then holds; the work is cached, bounded and marked.

The world is the sample world (150 users x 12 days up to END, snapshots served from the embedded Redis)
plus new customers who sign up on the next day: their profile and a review arrive in the raw files,
their events through the landing log (as POST /events lands them).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient

from feature_platform.config import ConfigError, Settings
from feature_platform.definitions import build_defs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.serving.api import create_app
from feature_platform.serving.on_demand import computable_features
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.landing import LandingLog
from feature_platform_tests.helpers import copy_tree

defs = build_defs()
REGISTRY = load_registry()
END, NEXT = dt.date(2025, 3, 12), dt.date(2025, 3, 13)
NOW = dt.datetime(2025, 3, 13, 15, 0)  # during the day after the served snapshot
NEW = ("n000001", "n000002", "n000003")  # sign up on NEXT; n000003 has no events at all


def _materialize(data: Path, src: Path, selection: dg.AssetSelection, day: dt.date, now: str) -> None:
    resources = local_resources(data_dir=str(data), raw_dir=str(src), now_utc=now)
    result = dg.materialize([*defs.assets], selection=selection, resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                            tags={RANGE_START_TAG: day.isoformat(), RANGE_END_TAG: day.isoformat()})
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def _append(path: Path, rows: list[dict]) -> None:
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)]), path)


@pytest.fixture(scope="module")
def world(sample_world, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("on_demand")
    data, src = copy_tree(sample_world.data, root / "data"), copy_tree(sample_world.src, root / "src")
    profile = pq.read_table(src / "customers.parquet").slice(0, 1).to_pylist()[0]
    _append(src / "customers.parquet", [{**profile, "user_id": user, "signup_date": NEXT} for user in NEW])
    _append(src / "reviews.parquet", [{"review_id": "rn-1", "user_id": NEW[0], "rating": 2, "timestamp": dt.datetime(2025, 3, 13, 10, 0),
                                      "text": "Too small and the colour faded after one wash. Disappointed."}])
    # the profiles and reviews are ingested (as any run ingests them); the snapshots stay at END
    _materialize(data, src, dg.AssetSelection.assets(*C.RAW_UNPARTITIONED), NEXT, "2025-03-13T12:00:00")
    log = LandingLog(Settings(data_dir=data).landing_dir)
    records = [
        {"event_id": "nd-1", "user_id": NEW[0], "event_type": "page_view", "timestamp": "2025-03-13T08:00:00",
         "session_id": "nd-s1", "channel": "web"},
        {"event_id": "nd-2", "user_id": NEW[0], "event_type": "listing_viewed", "timestamp": "2025-03-13T08:05:00",
         "session_id": "nd-s1", "channel": "web", "listing_id": _listing(data)},
        {"event_id": "nd-3", "user_id": NEW[0], "event_type": "purchase", "timestamp": "2025-03-13T08:20:00",
         "session_id": "nd-s1", "channel": "web", "amount": 80.0},
        {"event_id": "nd-4", "user_id": NEW[0], "event_type": "message_in", "timestamp": "2025-03-13T09:00:00",
         "conversation_id": "nd-c1", "message_text": "Thanks, great service!", "channel": "chat"},
        {"event_id": "nd-5", "user_id": NEW[1], "event_type": "login", "timestamp": "2025-03-13T07:00:00",
         "session_id": "nd-s2", "channel": "app"},
        {"event_id": "nd-6", "user_id": NEW[1], "event_type": "email_open", "timestamp": "2025-03-13T07:30:00",
         "channel": "email", "campaign_id": "c-1"},
    ]
    accepted, rejected = validate_event_records(records, NOW, landing=log)
    assert rejected == []
    assert log.append(accepted, NOW).accepted == len(records)
    return data, src


def _listing(data: Path) -> str:
    return pq.read_table(data / "raw" / "listings.parquet", columns=["listing_id"]).column(0)[0].as_py()


def _client(data: Path, **changes) -> TestClient:
    """The server during NEXT; the budget is generous (a loaded test machine), but for the test of the budget."""
    changes.setdefault("on_demand_budget_ms", 60_000)
    return TestClient(create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: NOW))


def _metric(client: TestClient, line: str) -> float:
    for row in client.get("/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    raise AssertionError(f"{line} not in /metrics")


@pytest.fixture(scope="module")
def computed(world) -> dict[str, dict]:
    """What the server answers for the new users during NEXT, before any snapshot of NEXT exists."""
    data, _ = world
    with _client(data) as client:
        answers = {user: client.get(f"/features/{user}").json() for user in NEW[:2]}
        assert _metric(client, 'fp_on_demand_total{result="computed"}') == 2
        again = client.get(f"/features/{NEW[0]}").json()  # read back from the Redis cache
        assert _metric(client, 'fp_on_demand_total{result="cached"}') == 1
        assert again["features"] == answers[NEW[0]]["features"]
    return answers


def test_a_user_unknown_to_the_snapshot_is_computed_with_the_values_the_next_snapshot_holds(world, computed,
                                                                                             tmp_path):
    data, src = copy_tree(world[0], tmp_path / "data"), world[1]  # the other tests need NEXT unmaterialized
    for body in computed.values():
        assert body["found"] and body["source"] == "computed" and "on_demand" not in body
        assert body["snapshot"]["snapshot_date"] == NEXT.isoformat()
    # the daily run of NEXT: ingest the landed events, tiles (the topic model is refitted on purpose only),
    # snapshots
    _materialize(data, src, dg.AssetSelection.groups(C.GROUP_RAW, C.GROUP_TILES)
                 - dg.AssetSelection.assets(C.REVIEW_TOPIC_MODEL), NEXT, "2025-03-14T03:00:00")
    _materialize(data, src, dg.AssetSelection.groups(C.GROUP_FEATURES), NEXT, "2025-03-14T03:00:00")
    snapshot = {row["user_id"]: row for row in user_vectors(OfflineStore(data), REGISTRY, NEXT).to_pylist()}
    maps = {f.name for f in REGISTRY.features.values() if f.type == "map"}
    computable = set(computable_features(REGISTRY))
    for user, body in computed.items():
        row = {k: (dict(v) if k in maps and v is not None else v) for k, v in snapshot[user].items()}
        for name, feature in body["features"].items():
            if name in computable:
                expected = row[name] if row[name] is None or isinstance(row[name], bool) else \
                    pytest.approx(row[name], rel=1e-12, abs=1e-12)
                assert feature["value"] == expected, (user, name)
                assert feature["status"] == ("missing" if row[name] is None else "computed"), (user, name)
            else:  # a model output: no model has scored this user yet
                assert feature["status"] == "default" and feature["value"] == REGISTRY.get_feature(name).default
    # the events reached several families: the values are not just defaults
    first = computed[NEW[0]]["features"]
    assert first["monetary_total"]["value"] == 80.0 and first["lifetime_purchases"]["value"] == 1
    assert first["avg_rating"]["value"] == 2.0 and first["topic_vector"]["value"] is not None
    assert computed[NEW[1]]["features"]["total_reviews"]["value"] == 0


def test_an_id_without_a_customer_row_is_not_computed(world):
    data, _ = world
    with _client(data) as client:
        response = client.get("/features/nobody42")
        assert response.status_code == 404 and "not computable" in response.json()["detail"]
        assert client.get("/features/nobody42", params={"defaults": "true"}).json()["source"] == "default"
        assert _metric(client, 'fp_on_demand_total{result="computed"}') == 0


def test_a_customer_with_no_row_at_the_day_is_not_found(world):
    data, _ = world
    later = {"clock": lambda: dt.datetime(2025, 3, 12, 15, 0)}  # before n000003 signed up
    with TestClient(create_app(Settings(data_dir=data, on_demand_budget_ms=60_000), reload_seconds=0, **later)) as client:
        assert client.get(f"/features/{NEW[2]}").status_code == 404


def test_past_the_budget_the_answer_is_the_defaults_marked_and_the_result_lands_in_the_cache(world):
    data, _ = world
    with _client(data, on_demand_budget_ms=1, redis_prefix="fp-od-budget") as client:
        body = client.get(f"/features/{NEW[1]}", params={"defaults": "true"}).json()
        assert body["source"] == "default" and body["on_demand"] == "timeout" and not body["found"]
        missing = client.get(f"/features/{NEW[1]}")
        assert missing.status_code == 404 and "FP_ON_DEMAND_BUDGET_MS" in missing.json()["detail"]
        deadline = time.monotonic() + 60
        while (body := client.get(f"/features/{NEW[1]}", params={"defaults": "true"}).json())["source"] != "computed":
            assert time.monotonic() < deadline, "the computation never reached the cache"
            time.sleep(0.2)
        assert _metric(client, 'fp_on_demand_total{result="timeout"}') >= 1


def test_a_batch_computes_at_most_the_per_request_limit(world):
    data, _ = world
    with _client(data, on_demand_max_users=1, redis_prefix="fp-od-limit") as client:
        results = client.post("/features/batch", json={"user_ids": list(NEW[:2]), "defaults": True}).json()["results"]
    assert [r["source"] for r in results] == ["computed", "default"]
    assert "on_demand" not in results[0] and results[1]["on_demand"] == "limit"


def test_a_zero_budget_turns_computing_off(world):
    data, _ = world
    with _client(data, on_demand_budget_ms=0) as client:
        assert client.get(f"/features/{NEW[0]}").status_code == 404


def test_the_settings_come_from_the_environment_and_bad_values_name_their_variable():
    settings = Settings.from_env({"FP_ON_DEMAND_BUDGET_MS": "250", "FP_ON_DEMAND_MAX_USERS": "3",
                                  "FP_ON_DEMAND_TTL_SECONDS": "60"})
    assert (settings.on_demand_budget_ms, settings.on_demand_max_users, settings.on_demand_ttl_seconds) == (250, 3, 60)
    defaults = Settings.from_env({})
    assert (defaults.on_demand_budget_ms, defaults.on_demand_max_users, defaults.on_demand_ttl_seconds) == \
        (1_000, 10, 300)
    for variable, value in (("FP_ON_DEMAND_BUDGET_MS", "-1"), ("FP_ON_DEMAND_MAX_USERS", "0"),
                            ("FP_ON_DEMAND_TTL_SECONDS", "0")):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: value})


def test_a_failed_computation_is_answered_without_the_user_not_with_a_500(world, monkeypatch):
    data, _ = world

    def broken(*_args, **_kwargs):
        raise ValueError("a damaged tile")
    monkeypatch.setattr("feature_platform.serving.on_demand.recompute", broken)
    with _client(data, redis_prefix="fp-od-error") as client:
        body = client.get(f"/features/{NEW[0]}", params={"defaults": "true"}).json()
        assert body["source"] == "default" and body["on_demand"] == "error"
        response = client.get(f"/features/{NEW[0]}")
        assert response.status_code == 404 and "failed" in response.json()["detail"]
        assert _metric(client, 'fp_on_demand_total{result="error"}') == 2


def test_a_computation_done_before_it_is_registered_does_not_hang_the_caller(world):
    """A future that is already done runs its callbacks at once, in the caller's thread."""
    data, _ = world
    app = create_app(Settings(data_dir=data, on_demand_budget_ms=60_000), reload_seconds=0, clock=lambda: NOW)
    with TestClient(app):
        on_demand = app.state.on_demand
        on_demand._compute = lambda *_args: {}  # finishes before _submit returns
        for i in range(20):
            caller = threading.Thread(target=on_demand._submit, args=(REGISTRY, "v", NEXT, [f"x{i}"]), daemon=True)
            caller.start()
            caller.join(10)
            assert not caller.is_alive(), "_submit deadlocked"


def test_with_redis_down_users_are_still_computed_and_the_cache_is_skipped_while_the_breaker_is_open(world):
    data, _ = world
    dead = OnlineStore(redis.Redis(port=_free_port(), socket_connect_timeout=0.2, socket_timeout=0.2), REGISTRY)
    app = create_app(Settings(data_dir=data, on_demand_budget_ms=60_000), online=dead, reload_seconds=0,
                     clock=lambda: NOW)
    with TestClient(app) as client:
        first = client.get(f"/features/{NEW[0]}", params={"defaults": "true"}).json()
        assert first["source"] == "computed"
        assert not app.state.retriever.online_available  # the failed read opened the breaker: no cache call waits
        started = time.monotonic()
        for _ in range(5):
            assert client.get(f"/features/{NEW[1]}", params={"defaults": "true"}).json()["source"] == "computed"
        assert time.monotonic() - started < 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
