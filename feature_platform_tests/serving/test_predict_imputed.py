"""`imputed` in prediction answers: the model features that reached the model as null, which its imputer filled.

The conftest champions are scikit-learn pipelines whose imputer fills a NaN with 0.0: a feature is imputed
exactly when the served value is null (a null map or vector is NaN in all its columns, ml/expand.py), and
scoring the same values with the imputed ones set to what the imputer puts in gives the same probability.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.ml.model_store import ModelStore
from feature_platform.ml.training_sets import listing_inputs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.serving.api import create_app
from feature_platform.serving.predict import MATCH_FEATURES
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.serving.conftest import END, REGISTRY
from feature_platform_tests.serving.test_api import NOW


@pytest.fixture(scope="module")
def data(served_data, tmp_path_factory):
    # A private copy: test_api.py promotes a new churn champion in served_data while other files run.
    return copy_tree(served_data, tmp_path_factory.mktemp("imputed") / "data")


@pytest.fixture(scope="module")
def client(data):
    with TestClient(create_app(Settings(data_dir=data), reload_seconds=0, clock=lambda: NOW)) as c:
        yield c


@pytest.fixture(scope="module")
def model_features(data) -> dict[str, list[str]]:
    models = ModelStore(Settings(data_dir=data).models_dir)
    return {name: list(models.load(name, models.champion(name).version)[2].manifest["feature_names"])
            for name in ("churn", "contact")}


@pytest.fixture(scope="module")
def rows(data) -> dict[str, dict]:
    table = user_vectors(OfflineStore(data), REGISTRY, END)
    maps = {f.name for f in REGISTRY.features.values() if f.type == "map"}
    return {row["user_id"]: {k: dict(v) if k in maps and v is not None else v for k, v in row.items()}
            for row in table.to_pylist()}


def _user_with_nulls(rows: dict[str, dict], names: list[str]) -> tuple[str, list[str]]:
    """The first user with some, not all, of ``names`` null (and no null inside a vector or map, which would
    be imputed too)."""
    for user in sorted(rows):
        row = rows[user]
        if any(None in (row[n].values() if isinstance(row[n], dict) else row[n])
               for n in names if isinstance(row[n], list | dict)):
            continue
        nulls = [n for n in names if row[n] is None]
        if 0 < len(nulls) < len(names):
            return user, nulls
    raise AssertionError(f"no user in the served snapshot has some of {names} null")


def _filled(name: str, value: object) -> object:
    """What the conftest pipelines' imputer (constant 0.0) puts in a null feature's columns."""
    feature = REGISTRY.get_feature(name)
    if feature.type == "vector":
        return [0.0] * (feature.length or 0)
    if feature.type == "map":
        return {}  # every fitted key 0.0 (expand's rule for a key a map lacks)
    return False if feature.type == "bool" else 0


def test_churn_lists_the_features_the_served_vector_had_null(client, rows, model_features):
    names = model_features["churn"]
    user, nulls = _user_with_nulls(rows, names)
    body = client.post("/predict/churn", json={"user_id": user}).json()
    assert body["feature_source"] == "online"
    assert body["imputed"] == nulls  # in the model's order, nothing else
    served = client.get(f"/features/{user}", params={"features": ",".join(names)}).json()["features"]
    assert [n for n in names if served[n]["status"] == "missing"] == nulls
    # Scored again on the same values with what the imputer put in: the same probability, nothing imputed.
    given = {n: _filled(n, rows[user][n]) if n in nulls else rows[user][n] for n in names}
    again = client.post("/predict/churn", json={"features": given}).json()
    assert again["imputed"] == [] and again["probability"] == pytest.approx(body["probability"], abs=1e-12)


def test_churn_on_given_features_lists_the_ones_left_out(client, model_features):
    body = client.post("/predict/churn", json={"features": {"total_events": 3, "premium": True}}).json()
    assert body["feature_source"] == "request"
    assert body["imputed"] == [n for n in model_features["churn"] if n not in ("total_events", "premium")]


def test_an_unknown_user_is_scored_on_the_defaults_only_when_asked(client, model_features):
    assert client.post("/predict/churn", json={"user_id": "nobody"}).status_code == 404
    body = client.post("/predict/churn", json={"user_id": "nobody", "defaults": True}).json()
    assert body["user_id"] == "nobody" and body["feature_source"] == "default" and body["snapshot_version"] is None
    # Null defaults reach the model as null and are imputed; a default that is a value (0) is not.
    names = model_features["churn"]
    assert body["imputed"] == [n for n in names if REGISTRY.get_feature(n).default is None]
    assert {"total_events", "monetary_total"} <= set(names) - set(body["imputed"])
    assert 0.0 <= body["probability"] <= 1.0
    refused = client.post("/predict/churn", json={"features": {"total_events": 1}, "defaults": True})
    assert refused.status_code == 422


def test_contact_lists_the_users_imputed_features_once_for_all_listings(client, data, rows, model_features):
    names = model_features["contact"]
    assert set(MATCH_FEATURES) <= set(names)
    user, nulls = _user_with_nulls(rows, names)
    ids = listing_inputs(OfflineStore(data)).column("listing_id").to_pylist()[:3]
    body = client.post("/predict/contact", json={"user_id": user, "listing_ids": [*ids, "L-unknown"]}).json()
    assert body["feature_source"] == "online" and body["imputed"] == nulls
    assert len(body["listings"]) == 4  # an unknown listing's null inputs are `known: false`, not `imputed`
    assert client.post("/predict/contact", json={"user_id": "nobody", "listing_ids": ids}).status_code == 404
    unknown = client.post("/predict/contact", json={"user_id": "nobody", "listing_ids": ids, "defaults": True}).json()
    assert unknown["feature_source"] == "default"
    assert unknown["imputed"] == [n for n in names if REGISTRY.get_feature(n).default is None]
    assert "total_events" in names and "total_events" not in unknown["imputed"]  # default 0: given as 0


def test_the_response_schemas_document_imputed(client):
    spec = client.get("/openapi.json").json()
    for path, schema in (("/predict/churn", "ChurnPrediction"), ("/predict/contact", "ContactPrediction")):
        ok = spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{schema}"}
        imputed = spec["components"]["schemas"][schema]["properties"]["imputed"]
        assert imputed["type"] == "array" and imputed["items"] == {"type": "string"}
        assert "imputer" in imputed["description"] and "imputed" in spec["components"]["schemas"][schema]["required"]
