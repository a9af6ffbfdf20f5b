"""Integer user ids through the user-facing reads: `POST /features/batch` and `FeatureStore.get_online_features`.

A snapshot whose user_id column is int64 (customers 7 and 42, with 3 and 5 events) is pushed to the real Redis
server under a prefix of this test's own; the server and the Python API read it given integer or text ids.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from feature_platform import FeatureStore
from feature_platform.config import Settings
from feature_platform.serving.api import create_app
from feature_platform.sources.entity_ids import EntityIdError
from feature_platform_tests.online.conftest import standalone_store

pytestmark = pytest.mark.redis

SNAPSHOT_DATE = dt.date(2025, 3, 12)
NOW = dt.datetime(2025, 3, 13, 9, 0)  # 9 h after the snapshot's cut-off: total_events (2 days) is present


@pytest.fixture
def online_store(request, tmp_path):
    """A store under a fresh prefix of its own on the real Redis server; afterwards only its keys are deleted."""
    yield from standalone_store("server", request, tmp_path)


@pytest.fixture
def online(online_store):
    """Customers 7 (3 events) and 42 (5 events), pushed with integer ids."""
    table = pa.table({"user_id": pa.array([7, 42], pa.int64()), "total_events": pa.array([3, 5], pa.int64())})
    assert online_store.push(table, SNAPSHOT_DATE).served
    return online_store


@pytest.fixture
def client(online, tmp_path):
    """The server on an empty data directory (no offline snapshot, no model): what it serves is Redis's."""
    data = tmp_path / "data"
    data.mkdir()
    app = create_app(Settings(data_dir=data), online=online, reload_seconds=0, clock=lambda: NOW)
    with TestClient(app) as c:
        yield c


def test_a_batch_of_integer_ids_reads_their_text_ids(client):
    response = client.post("/features/batch", json={"user_ids": [42, "7", 99, 42.0], "features": ["total_events"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    # 42 and 42.0 are user "42" twice: one result; 99 is in no snapshot
    assert [(r["user_id"], r["found"], r["source"]) for r in results] == [
        ("42", True, "online"), ("7", True, "online"), ("99", False, "default")]
    assert results[0]["features"] == {"total_events": {"value": 5, "status": "present", "source": "online"}}
    assert results[1]["features"]["total_events"]["value"] == 3
    assert results[2]["features"] == {}
    text = client.post("/features/batch", json={"user_ids": ["42", "7", "99"], "features": ["total_events"]})
    assert text.json()["results"] == results  # the text ids of the same users: the same answer


@pytest.mark.parametrize(("raw", "index", "says"), [
    ('{"user_ids": ["7", 1.5]}', 1, "1.5 is not an id"),
    ('{"user_ids": [true]}', 0, "True is not an id"),
    ('{"user_ids": ["7", "42", null]}', 2, "None is not an id"),
    ('{"user_ids": [-3]}', 0, "should match pattern"),  # "-3" breaks the id rule: ids start with a letter or digit
    ('{"user_ids": [1e300]}', 0, "within +-2**53"),  # whole, but beyond what a float holds exactly
])
def test_a_bad_batch_id_is_a_422_naming_the_item(client, raw, index, says):
    response = client.post("/features/batch", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "user_ids", index] and says in error["msg"], error


def test_the_openapi_schema_shows_a_batch_id_as_text_or_a_whole_number(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    request = next(s for name, s in schemas.items() if name.startswith("BatchRequest"))
    item = request["properties"]["user_ids"]["items"]
    assert [form["type"] for form in item["anyOf"]] == ["string", "integer"]
    assert item["anyOf"][0]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$" and item["anyOf"][1]["minimum"] == 0


def test_the_python_api_reads_integer_ids_and_keeps_them_as_given(online, redis_url, tmp_path):
    with FeatureStore(tmp_path / "data", redis_url=redis_url, redis_prefix=online.prefix) as store:
        frame = store.get_online_features([42, "7", 99, 7.0], ["total_events"])
        assert frame["user_id"].tolist() == [42, "7", 99, 7.0]
        assert frame["found"].tolist() == [True, True, False, True]
        assert frame["total_events"].tolist()[:2] == [5, 3] and frame["total_events"].tolist()[3] == 3
        assert frame["snapshot_date"].tolist()[:2] == [SNAPSHOT_DATE, SNAPSHOT_DATE]
        with pytest.raises(EntityIdError, match=r"True is not an id .*\(item 1\)"):
            store.get_online_features(["7", True], ["total_events"])
