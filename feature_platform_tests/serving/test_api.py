"""The feature and prediction server in-process (FastAPI TestClient) on a small served data directory."""

from __future__ import annotations

import datetime as dt
import threading

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.ml.contact import add_match_inputs
from feature_platform.ml.expand import expand
from feature_platform.ml.model_store import ModelStore
from feature_platform.ml.training_sets import listing_inputs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connect
from feature_platform.online.store import OnlineStore
from feature_platform.serving.api import create_app
from feature_platform.serving.state import StateHolder
from feature_platform.sources.landing import LandingLog
from feature_platform_tests.serving.conftest import END, REGISTRY, save_churn_model

NOW = dt.datetime(2025, 3, 13, 9, 0)  # 33 h after END's data cut-off: within the 2-day tolerance


def _client(data, clock=NOW, **changes) -> TestClient:
    settings = Settings(data_dir=data, **changes)
    return TestClient(create_app(settings, reload_seconds=0, clock=lambda: clock))


@pytest.fixture(scope="module")
def client(served_data):
    with _client(served_data, max_batch=5) as c:
        yield c


@pytest.fixture(scope="module")
def offline(served_data):
    table = user_vectors(OfflineStore(served_data), REGISTRY, END)
    maps = {f.name for f in REGISTRY.features.values() if f.type == "map"}
    return {row["user_id"]: {k: dict(v) if k in maps and v is not None else v for k, v in row.items()}
            for row in table.to_pylist()}


def test_a_vector_is_the_served_snapshot_row_with_status_and_source(client, offline):
    user = sorted(offline)[3]
    body = client.get(f"/features/{user}").json()
    assert body["found"] and body["source"] == "online"
    assert body["snapshot"]["snapshot_date"] == END.isoformat() and body["snapshot"]["computed_at"] == "2025-03-13T00:00:00"
    assert {name: f["value"] for name, f in body["features"].items()} == {
        k: v for k, v in offline[user].items() if k != "user_id"}
    for name, feature in body["features"].items():
        assert feature["source"] == "online"
        assert feature["status"] == ("missing" if offline[user][name] is None else "present")


def test_a_subset_keeps_the_asked_order_and_nothing_else(client, offline):
    user = sorted(offline)[0]
    body = client.get(f"/features/{user}", params={"features": "premium,monetary_total,category_affinity"}).json()
    assert list(body["features"]) == ["premium", "monetary_total", "category_affinity"]
    assert body["features"]["monetary_total"]["value"] == offline[user]["monetary_total"]


def test_past_the_staleness_tolerance_values_are_stale_not_present(served_data, offline):
    with _client(served_data, clock=NOW + dt.timedelta(days=3)) as late:
        body = late.get(f"/features/{sorted(offline)[0]}", params={"features": "total_events"}).json()
    assert body["features"]["total_events"]["status"] == "stale"


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/features/bad%20id", {}, ["path", "user_id"]),
    ("/features/u000001", {"features": "total_events,no_such_feature"}, ["query", "features"]),
    ("/features/u000001", {"features": ","}, ["query", "features"]),
    ("/features/u000001/history", {"feature": "no_such_feature"}, ["query", "feature"]),
    ("/features/u000001/history", {"feature": "total_events", "limit": 0}, ["query", "limit"]),
])
def test_bad_input_is_422_naming_the_field(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == field


def test_an_unknown_user_is_404_or_the_registry_defaults_when_asked(client):
    assert client.get("/features/nobody").status_code == 404
    body = client.get("/features/nobody", params={"features": "total_events,topic_vector", "defaults": "true"}).json()
    assert body["found"] is False and body["source"] == "default"
    assert body["features"]["total_events"] == {"value": REGISTRY.get_feature("total_events").default,
                                                "status": "default", "source": "default"}


def test_batch_returns_each_user_in_order_and_refuses_an_oversized_batch(client, offline):
    users = sorted(offline)[:3]
    body = client.post("/features/batch", json={"user_ids": [*users, "nobody"], "features": ["total_events"]}).json()
    assert [r["user_id"] for r in body["results"]] == [*users, "nobody"]
    assert [r["features"]["total_events"]["value"] for r in body["results"][:3]] == [
        offline[u]["total_events"] for u in users]
    assert body["results"][3]["found"] is False and body["results"][3]["features"] == {}
    too_many = client.post("/features/batch", json={"user_ids": [f"u{i}" for i in range(6)]})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "user_ids"]
    wrong_type = client.post("/features/batch", json={"user_ids": "u000001"})
    assert wrong_type.status_code == 422 and wrong_type.json()["detail"][0]["loc"] == ["body", "user_ids"]


def test_redis_down_falls_back_to_the_offline_snapshot_not_a_500(served_data, offline):
    down = Settings(data_dir=served_data, redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    app = create_app(down, reload_seconds=0, clock=lambda: NOW)
    with TestClient(app) as c:
        user = sorted(offline)[1]
        body = c.get(f"/features/{user}").json()
        assert body["source"] == "offline" and body["snapshot"]["version"] == f"offline:{END.isoformat()}"
        assert {n: f["value"] for n, f in body["features"].items()} == {
            k: v for k, v in offline[user].items() if k != "user_id"}
        assert c.get("/health").json()["online"]["reachable"] is False
        metrics = c.get("/metrics").text
    assert 'fp_fallbacks_total{to="offline"} 1.0' in metrics
    assert 'fp_online_lookups_total{result="error"} 1.0' in metrics


def test_a_user_missing_online_comes_from_the_offline_snapshot(served_data, offline, client):
    user = sorted(offline)[-1]
    online = OnlineStore(connect(Settings(data_dir=served_data)), REGISTRY)
    key = online.entity_key(online.current().version, user)
    blob = online.client.get(key)
    online.client.delete(key)
    try:
        body = client.get(f"/features/{user}", params={"features": "total_events"}).json()
        assert body["source"] == "offline" and body["features"]["total_events"]["value"] == offline[user]["total_events"]
    finally:
        online.client.set(key, blob, ex=online.current().ttl)


def test_history_lists_the_users_snapshots_newest_first(client, served_data):
    user = "u000002"
    body = client.get(f"/features/{user}/history", params={"feature": "total_events", "limit": 2}).json()
    store = OfflineStore(served_data)
    expected = []
    for day in ("2025-03-12", "2025-03-11"):
        table = store.read("features/user_activity_features", day, day)
        row = table.filter(pa.compute.equal(table.column("user_id"), user)).to_pylist()[0]
        expected.append({"snapshot_date": day, "value": row["total_events"]})
    assert body["values"] == expected
    assert client.get("/features/nobody/history", params={"feature": "total_events"}).status_code == 404


def test_context_is_the_expanded_vector_in_a_fixed_order(client, offline):
    first = client.get("/context/u000003").json()
    second = client.get("/context/u000004").json()
    assert first["names"] == second["names"] and len(first["names"]) == len(first["values"])
    assert all(v is None or isinstance(v, float) for v in first["values"])
    values = dict(zip(first["names"], first["values"], strict=True))
    assert values["total_events"] == float(offline["u000003"]["total_events"])
    for key, value in (offline["u000003"]["category_affinity"] or {}).items():
        assert values[f"category_affinity__{key}"] == pytest.approx(value)


def test_registry_routes_give_metadata_version_and_lineage(client):
    listed = client.get("/registry/features").json()
    assert {f["name"] for f in listed["features"]} == set(REGISTRY.features)
    one = client.get("/registry/features/monetary_total").json()
    assert one["version"] == REGISTRY.get_feature_version("monetary_total")
    assert one["lineage"]["raw_sources"] == ["raw/events"] and one["lineage"]["asset"] == "features/lead_features"
    assert client.get("/registry/features/nope").status_code == 404


def test_churn_prediction_is_the_champions_output_on_the_served_vector(client, served_data, offline):
    models = ModelStore(Settings(data_dir=served_data).models_dir)
    model, spec, meta = models.load("churn", models.champion("churn").version)
    user = sorted(offline)[5]
    body = client.post("/predict/churn", json={"user_id": user}).json()
    table = user_vectors(OfflineStore(served_data), REGISTRY, END)
    row = table.filter(pa.compute.equal(table.column("user_id"), user))
    assert body["probability"] == pytest.approx(model.predict_proba(expand(row, spec)[0])[0, 1], abs=1e-12)
    assert body["model"] == "churn" and body["model_version"] == meta.version and body["feature_source"] == "online"
    by_values = client.post("/predict/churn", json={"features": {"total_events": 3, "premium": True}}).json()
    assert 0.0 <= by_values["probability"] <= 1.0 and by_values["feature_source"] == "request"
    assert client.post("/predict/churn", json={}).status_code == 422
    assert client.post("/predict/churn", json={"user_id": "u000001", "features": {}}).status_code == 422
    bad = client.post("/predict/churn", json={"features": {"total_events": "many"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "features"]


def test_contact_ranks_listings_by_the_champions_probability(client, served_data, offline):
    store = OfflineStore(served_data)
    listings = listing_inputs(store)
    ids = listings.column("listing_id").to_pylist()[:4]
    user = sorted(offline)[2]
    body = client.post("/predict/contact", json={
        "user_id": user, "listing_ids": [*ids, "L-unknown"], "context": {"device": "desktop", "hour": 20,
                                                                         "day_of_week": 4}}).json()
    ranked = body["listings"]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5]
    assert [r["probability"] for r in ranked] == sorted((r["probability"] for r in ranked), reverse=True)
    assert {r["listing_id"]: r["known"] for r in ranked}["L-unknown"] is False
    # The same probability from the training path: one view row, listing + context, match inputs, expand.
    models = ModelStore(Settings(data_dir=served_data).models_dir)
    model, spec, _ = models.load("contact", models.champion("contact").version)
    table = user_vectors(store, REGISTRY, END)
    user_row = table.filter(pa.compute.equal(table.column("user_id"), user))
    listing = listings.filter(pa.compute.equal(listings.column("listing_id"), ids[0]))
    view = user_row.drop(["user_id"])
    for column in listing.column_names:
        view = view.append_column(column, listing.column(column))
    for column, value, kind in (("device", "desktop", pa.string()), ("hour", 20, pa.int64()),
                                ("day_of_week", 4, pa.int64())):
        view = view.append_column(column, pa.array([value], kind))
    expected = model.predict_proba(expand(add_match_inputs(view), spec)[0])[0, 1]
    assert {r["listing_id"]: r["probability"] for r in ranked}[ids[0]] == pytest.approx(expected, abs=1e-12)
    assert client.post("/predict/contact", json={"user_id": user, "listing_ids": []}).status_code == 422
    assert client.post("/predict/contact", json={"user_id": user, "listing_ids": ids,
                                                 "context": {"hour": 25}}).status_code == 422


def test_api_keys_401_without_403_wrong_and_health_stays_open(served_data):
    with _client(served_data, api_keys=("k1", "k2")) as c:
        assert c.get("/features/u000001").status_code == 401
        assert c.get("/features/u000001", headers={"X-API-Key": "nope"}).status_code == 403
        assert c.get("/features/u000001", headers={"X-API-Key": "k2"}).status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.post("/predict/churn", json={"user_id": "u000001"}).status_code == 401
        assert c.get("/health").status_code == 200


def test_metrics_count_requests_by_route_and_online_hits(client):
    before = client.get("/metrics").text
    assert _sample(before, 'fp_online_lookups_total{result="stale"}') >= 0  # each lookup series exists (0 or more)
    hits = _sample(before, 'fp_online_lookups_total{result="hit"}')
    batch = 'fp_request_latency_seconds_count{method="POST",route="/features/batch",status="200"}'
    batches = _sample(before, batch) if batch + " " in before else 0.0
    client.get("/features/u000001")
    client.post("/features/batch", json={"user_ids": ["u000001", "u000002"]})
    text = client.get("/metrics").text
    assert 'fp_request_latency_seconds_bucket{le="0.005",method="GET",route="/features/{user_id}",status="200"}' in text
    assert _sample(text, batch) == batches + 1
    assert _sample(text, 'fp_online_lookups_total{result="hit"}') == hits + 3


def _sample(exposition: str, series: str) -> float:
    line = next(line for line in exposition.splitlines() if line.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])


def test_a_new_champion_is_picked_up_by_a_reload_while_requests_keep_being_served(served_data):
    holder = StateHolder(Settings(data_dir=served_data))
    app = create_app(Settings(data_dir=served_data), holder=holder, reload_seconds=0, clock=lambda: NOW)
    with TestClient(app) as c:
        before = c.get("/health").json()["models"]["churn"]
        failures: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                status = c.post("/predict/churn", json={"user_id": "u000001"}).status_code
                if status != 200:
                    failures.append(status)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            new = save_churn_model(served_data, label_shift=1.0)
            assert holder.refresh() is True
            assert holder.refresh() is False  # nothing changed since
        finally:
            stop.set()
            thread.join()
        assert failures == []
        assert before != new and c.get("/health").json()["models"]["churn"] == new
        assert c.post("/predict/churn", json={"user_id": "u000001"}).json()["model_version"] == new


def test_no_champion_is_a_503_that_says_so(tmp_path, served_data):
    data = tmp_path / "data"
    data.mkdir()
    with _client(data) as c:
        response = c.post("/predict/churn", json={"user_id": "u000001"})
        assert response.status_code == 503 and "no churn champion" in response.json()["detail"]
        assert c.get("/health").json()["problems"]
        assert c.get("/features/u000001", params={"defaults": "true"}).json()["source"] == "default"


def test_events_are_validated_per_row_landed_before_the_202_and_a_resend_is_refused(tmp_path, served_data):
    data = tmp_path / "data"
    data.mkdir()
    events = [
        {"event_id": "api-1", "user_id": "u000001", "event_type": "purchase", "timestamp": "2025-03-13T08:00:00Z",
         "session_id": "s-api", "channel": "web", "amount": 12.5},
        {"event_id": "api-2", "user_id": "u000002", "event_type": "page_view", "timestamp": "2025-03-13T08:01:00Z",
         "session_id": "s-api", "channel": "web"},
        {"event_id": "api-3", "user_id": "u000003", "event_type": "teleport", "timestamp": "2025-03-13T08:02:00Z"},
        {"event_id": "api-4", "user_id": "u000003", "event_type": "purchase", "timestamp": "2099-01-01T00:00:00Z",
         "amount": -3},
    ]
    with _client(data) as c:
        response = c.post("/events", json={"events": events})
        assert response.status_code == 202
        body = response.json()
        assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [2, 3]
        assert all(r["reasons"] for r in body["rejected"])
        landed, _ = LandingLog(Settings(data_dir=data).landing_dir).read()
        assert sorted(landed.column("event_id").to_pylist()) == ["api-1", "api-2"]  # on disk before the answer
        again = c.post("/events", json={"events": events[:1]})
        assert again.status_code == 422 and again.json()["accepted"] == 0
        assert "duplicate" in " ".join(again.json()["rejected"][0]["reasons"])
        assert c.post("/events", json={"events": []}).status_code == 422
        metrics = c.get("/metrics").text
    assert 'fp_events_total{result="accepted"} 2.0' in metrics
