"""The real CLI with its data root in an object store (FP_DATA_URL=s3://...) on a real S3-compatible server on
loopback (moto's server mode): `feature-platform run`, then `feature-platform backfill` (a Dagster daemon's runs),
then the feature server answering from the object store's snapshots when Redis is down."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from fastapi.testclient import TestClient
from upath import UPath

from feature_platform.config import Settings
from feature_platform.ml.model_store import ModelStore
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
from feature_platform.serving.api import create_app
from feature_platform_tests.e2e.sample_run import SHORT_HORIZON, cli

pytestmark = pytest.mark.e2e

END = "2025-03-10"
BACKFILLED = ("2025-03-08", "2025-03-09")


def _hashes(root: UPath, day: str) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob(f"features/*/{day}.parquet")}


def test_a_run_a_backfill_and_the_offline_fallback_with_the_data_root_in_an_object_store(s3_server, s3_root,
                                                                                            tmp_path):
    env = {**s3_server.env, **SHORT_HORIZON, "FP_DATA_URL": s3_root}
    run = cli("run", "--users", "120", "--days", "40", "--end-date", END, cwd=tmp_path, env_extra=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    root = UPath(s3_root)
    families = sorted(p.name for p in (root / "features").iterdir())
    assert len(families) == 8 and all((root / "features" / f / f"{END}.parquet").exists() for f in families)
    assert (root / "partitions.json").exists() and list((root / "raw" / "events").glob("*.parquet"))
    assert ModelStore(f"{s3_root}/models").champion("churn") is not None
    local = tmp_path / "data"  # the local folder keeps the instance, the embedded Redis, the sample: no table
    assert (local / "dagster_home").is_dir() and not [p for p in local.rglob("*.parquet") if "sample" not in p.parts]

    before = {day: _hashes(root, day) for day in BACKFILLED}
    for day in BACKFILLED:
        for path in root.glob(f"features/*/{day}.parquet"):
            path.unlink()
    backfill = cli("backfill", "--start", BACKFILLED[0], "--end", BACKFILLED[1], "--assets", "features",
                   cwd=tmp_path, env_extra=env)
    assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]
    assert "COMPLETED_SUCCESS" in backfill.stdout, backfill.stdout
    assert {day: _hashes(root, day) for day in BACKFILLED} == before  # recomputed byte for byte, in the bucket

    registry = load_registry()
    expected = {row["user_id"]: row for row in user_vectors(OfflineStore(s3_root), registry,
                                                              dt.date.fromisoformat(END)).to_pylist()}
    down = Settings(data_dir=local, data_url=s3_root, redis_url="redis://127.0.0.1:1/0")  # nothing listens on 1
    clock = dt.datetime.fromisoformat(END) + dt.timedelta(hours=30)
    with TestClient(create_app(down, reload_seconds=0, clock=lambda: clock)) as client:
        user = sorted(expected)[3]
        body = client.get(f"/features/{user}", params={"features": "total_events,engagement_score"}).json()
        assert body["source"] == "offline" and body["snapshot"]["version"] == f"offline:{END}", body
        assert {n: f["value"] for n, f in body["features"].items()} == {
            n: expected[user][n] for n in ("total_events", "engagement_score")}
        churn = client.post("/predict/churn", json={"user_id": user})
        assert churn.status_code == 200, churn.text  # the champion loaded from the bucket
