"""Predictions only from the feature-family versions the champion was trained on: 200 on a match, 409 naming the
family and both versions (and counted) on a skew, for the online vector and the offline fallback; older models
without a record are served as before and /health says so."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from feature_platform import cli_serving
from feature_platform.config import Settings
from feature_platform.ml.model_store import ModelStore
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore, read_parquet
from feature_platform.offline.versions import day_family_versions
from feature_platform.online.connection import connect
from feature_platform.online.store import OnlineStore
from feature_platform.serving.api import create_app
from feature_platform.serving.retrieval import DEFAULT, OFFLINE, ONLINE, ServedVector
from feature_platform.serving.versions import Mismatch, mismatches, served_versions
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.serving.conftest import END, REGISTRY

NOW = dt.datetime(2025, 3, 13, 9, 0)
TRAINED = {f.name: f.version for f in REGISTRY.families.values() if not f.derived}  # what the snapshots hold
SKEWED = {**TRAINED, "activity": "1.0.0"}
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: reads fall back to the offline snapshot
assert TRAINED["activity"] != "1.0.0"


@pytest.fixture
def data(served_data, tmp_path) -> Path:
    return copy_tree(served_data, tmp_path / "data")


def _client(data: Path, **changes) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: NOW))


def _promote(data: Path, name: str, versions: dict[str, str] | None) -> str:
    """The fixture's champion saved again as a new version recording ``versions`` (None: none, as older models)."""
    models = ModelStore(Settings(data_dir=data).models_dir)
    model, spec, meta = models.load(name, models.champion(name).version)
    saved = models.save_version(
        name, model=model, spec=spec, feature_names=meta.manifest["feature_names"], registry_versions={},
        training_fingerprint=f"versions {json.dumps(versions, sort_keys=True)}", metrics={}, plots={}, card="c",
        family_versions=versions)
    models.promote(name, saved.version, "test")
    return saved.version


def _user(data: Path) -> str:
    return user_vectors(OfflineStore(data), REGISTRY, END).column("user_id")[0].as_py()


def _mismatch_counts(client: TestClient) -> dict[tuple[str, str], float]:
    text = client.app.state.metrics.exposition().decode()
    return {(s.labels["model"], s.labels["family"]): s.value for family in text_string_to_metric_families(text)
            if family.name == "fp_version_mismatch" for s in family.samples if s.name.endswith("_total")}


def _predict(client: TestClient, name: str, user: str):
    body = {"user_id": user} if name == "churn" else {"user_id": user, "listing_ids": ["l1", "l2"]}
    return client.post(f"/predict/{name}", json=body)


# -- pure ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("served", "expected"), [
    pytest.param({"activity": "1.1.0", "lead": "1.1.0", "derived": "1.0.0"}, [], id="same-versions-extra-family"),
    pytest.param({"activity": "1.0.0", "lead": "1.1.0"}, [Mismatch("activity", "1.1.0", "1.0.0")], id="older-served"),
    pytest.param({"activity": None, "lead": "1.1.0"}, [Mismatch("activity", "1.1.0", None)], id="unrecorded-served"),
    pytest.param({}, [Mismatch("activity", "1.1.0", None), Mismatch("lead", "1.1.0", None)], id="nothing-recorded"),
])
def test_mismatches_are_the_trained_families_served_at_another_or_no_version(served, expected):
    assert mismatches({"lead": "1.1.0", "activity": "1.1.0"}, served) == expected


def test_served_versions_follow_the_vectors_source(data):
    class State:
        registry = REGISTRY
        offline = type("Offline", (), {"family_versions": {"activity": "0.1.0"}})()

    def vector(source: str, version: str | None = None) -> ServedVector:
        return ServedVector("u", source, version, None, None, {}, None)

    assert served_versions(vector(DEFAULT), State(), None) is None  # registry defaults: nothing computed them
    assert served_versions(vector(OFFLINE, "offline:x"), State(), None) == {"activity": "0.1.0"}
    assert served_versions(vector("computed"), State(), None) == {n: f.version for n, f in REGISTRY.families.items()}
    online = OnlineStore(connect(Settings(data_dir=data)), REGISTRY)
    served = online.current()
    assert served_versions(vector(ONLINE, served.version), State(), online) == served.family_versions
    assert served_versions(vector(ONLINE, "gone"), State(), online) == {}  # a version Redis no longer holds


# -- the server ---------------------------------------------------------------------------------------------
def test_the_push_recorded_the_snapshot_files_versions(data, capsys):
    served = OnlineStore(connect(Settings(data_dir=data)), REGISTRY).current()
    assert served is not None and served.family_versions == day_family_versions(OfflineStore(data), REGISTRY, END)
    assert {k: v for k, v in served.family_versions.items() if k in TRAINED} == TRAINED
    assert cli_serving.cmd_online_status(argparse.Namespace(data_dir=data)) == 0
    shown = ", ".join(f"{family} {version}" for family, version in sorted(served.family_versions.items()))
    assert f"family versions: {shown}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["churn", "contact"])
def test_a_champion_trained_on_the_served_versions_predicts(data, name):
    version = _promote(data, name, TRAINED)
    with _client(data) as c:
        response = _predict(c, name, _user(data))
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == version and response.json()["feature_source"] == "online"
        assert _mismatch_counts(c) == {}
        assert not [p for p in c.get("/health").json()["problems"] if p.startswith(f"{name} model")]


@pytest.mark.parametrize("name", ["churn", "contact"])
def test_a_skewed_online_vector_is_refused_with_409_naming_both_versions_and_counted(data, name):
    version = _promote(data, name, SKEWED)
    with _client(data) as c:
        for _ in range(2):
            response = _predict(c, name, _user(data))
            assert response.status_code == 409
        detail = response.json()["detail"]
        assert f"{name} model {version}" in detail
        assert "activity: the model has 1.0.0, the online vector (version " in detail
        assert f"has {TRAINED['activity']}" in detail and "lead" not in detail  # only the family that differs
        assert _mismatch_counts(c) == {(name, "activity"): 2.0}
        assert "409" in c.app.openapi()["paths"][f"/predict/{name}"]["post"]["responses"]  # documented


def test_the_offline_fallback_is_checked_against_its_files_versions(data):
    _promote(data, "churn", SKEWED)
    with _client(data, redis_url=DOWN) as c:
        response = _predict(c, "churn", _user(data))
        assert response.status_code == 409 and f"the offline snapshot {END}" in response.json()["detail"]
        assert _mismatch_counts(c) == {("churn", "activity"): 1.0}
    _promote(data, "churn", TRAINED)
    with _client(data, redis_url=DOWN) as c:
        response = _predict(c, "churn", _user(data))
        assert response.status_code == 200 and response.json()["feature_source"] == "offline"


def test_an_offline_snapshot_written_before_versions_were_recorded_is_refused(data):
    store = OfflineStore(data)
    path = store.partition_path("/".join(REGISTRY.family("lead").asset_path), END.isoformat())
    store.write("/".join(REGISTRY.family("lead").asset_path), read_parquet(path), partition=END.isoformat())  # no record
    _promote(data, "churn", TRAINED)
    with _client(data, redis_url=DOWN) as c:
        response = _predict(c, "churn", _user(data))
        assert response.status_code == 409
        assert f"lead: the model has {TRAINED['lead']}" in response.json()["detail"] and "unrecorded" in response.json()["detail"]


def test_an_online_version_pushed_without_versions_is_refused(data):
    online = OnlineStore(connect(Settings(data_dir=data)), REGISTRY)
    result = online.push(user_vectors(OfflineStore(data), REGISTRY, END), END)  # as an older release pushed it
    assert result.served and online.current().family_versions is None
    _promote(data, "churn", TRAINED)
    with _client(data) as c:
        response = _predict(c, "churn", _user(data))
        assert response.status_code == 409 and result.version in response.json()["detail"]
        assert _mismatch_counts(c) == {("churn", family): 1.0 for family in TRAINED}


def test_registry_defaults_and_request_values_are_not_checked(data):
    _promote(data, "churn", SKEWED)
    with _client(data) as c:
        unknown = c.post("/predict/churn", json={"user_id": "nobody-at-all", "defaults": True})
        assert unknown.status_code == 200 and unknown.json()["feature_source"] == "default"
        given = c.post("/predict/churn", json={"features": {"total_events": 3}})
        assert given.status_code == 200 and given.json()["feature_source"] == "request"
        assert _mismatch_counts(c) == {}


def test_a_model_without_recorded_versions_is_served_as_before_with_a_note_in_health(data):
    version = _promote(data, "churn", None)
    with _client(data) as c:
        assert _predict(c, "churn", _user(data)).status_code == 200
        problems = c.get("/health").json()["problems"]
        assert [p for p in problems if p.startswith(f"churn model {version} records no feature family versions")]
