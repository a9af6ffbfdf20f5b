"""The online push asset in-process: gated by the snapshot checks, parity with the offline rows."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import dagster as dg
import psutil
import pytest
import redis

from feature_platform.definitions import build_defs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.orchestration.champions import promote_tiny_churn_champion

defs = build_defs()

END = dt.date(2025, 3, 12)
EVERY = [*defs.assets]
REGISTRY = load_registry()


def _run(resources, selection, start: str, end: str):
    return dg.materialize(EVERY, selection=selection, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                          tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, raise_on_error=False)


@pytest.fixture(scope="module")
def scored_snapshots(sample_world, tmp_path_factory):
    """A copy of the sample world (snapshots 2025-03-10 .. END) with a tiny churn champion's scores for END."""
    data = copy_tree(sample_world.data, tmp_path_factory.mktemp("online") / "data")
    resources = local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)
    # Model scores for the last day only (as `feature-platform run` does): older days are served unscored.
    promote_tiny_churn_champion(data, END)
    assert _run(resources, dg.AssetSelection.assets(C.CHURN_RISK_SCORES), END.isoformat(), END.isoformat()).success
    return data, resources


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.redis)])
def online(request, scored_snapshots):
    """Resources pointing the push at the embedded store of the data directory, or at the CI server."""
    data, resources = scored_snapshots
    if request.param == "embedded":
        with resources["online"].connected() as client:
            yield resources, OnlineStore(client, REGISTRY)
        return
    url, prefix = request.getfixturevalue("redis_url"), f"fptest:{uuid.uuid4().hex[:8]}"
    yield local_resources(data, redis_url=url, redis_prefix=prefix), OnlineStore(redis.Redis.from_url(url), REGISTRY, prefix)
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_a_run_over_days_pushes_the_latest_and_every_user_reads_back_equal_to_the_snapshot(online, scored_snapshots):
    resources, store = online
    result = _run(resources, dg.AssetSelection.assets(C.ONLINE_PUSH), "2025-03-10", END.isoformat())
    assert result.success
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[-1].materialization.metadata.items()}
    assert meta["served"] is True and meta["partitions_not_pushed"].startswith("2025-03-10 .. 2025-03-11 (2 days)")
    assert meta["keys_written"] > 100 and meta["keys_per_second"] > 0 and meta["bytes_per_feature_value"] < 12
    offline = user_vectors(OfflineStore(scored_snapshots[0]), REGISTRY, END)
    served = store.read_many(offline.column("user_id").to_pylist())
    maps = [n for n in offline.column_names if n != "user_id" and REGISTRY.get_feature(n).type == "map"]
    for row in offline.to_pylist():
        expected = {k: (dict(v) if k in maps and v is not None else v) for k, v in row.items() if k != "user_id"}
        assert served[row["user_id"]].values == expected, row["user_id"]
    assert {v.snapshot_date for v in served.values()} == {END}
    # the model's output is served with the rest: every user has a score, equal to the offline one
    assert meta["derived_families_missing"] == []
    assert all(0.0 <= v.values["churn_risk_score"] <= 1.0 for v in served.values())


def test_pushing_an_older_day_alone_keeps_the_newer_snapshot_served(online):
    resources, store = online
    assert _run(resources, dg.AssetSelection.assets(C.ONLINE_PUSH), END.isoformat(), END.isoformat()).success
    older = _run(resources, dg.AssetSelection.assets(C.ONLINE_PUSH), "2025-03-10", "2025-03-10")
    assert older.success
    meta = older.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["served"].value is False and meta["status"].value.startswith("skipped: 2025-03-12 is served")
    assert meta["derived_families_missing"].value == ["derived"]  # 03-10 was never scored: not an error
    assert store.current().snapshot_date == END


def test_the_push_and_its_check_leave_no_embedded_redis_server_running(scored_snapshots, sample_world, tmp_path):
    """A Dagster process runs many steps: each step's client is let go when the step ends, so the embedded
    redis-server stops (its data saved) instead of living on with the process; the next step starts it again."""
    data = copy_tree(scored_snapshots[0], tmp_path / "data")
    resources = local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)
    result = dg.materialize([*EVERY, *defs.asset_checks], selection=dg.AssetSelection.assets(C.ONLINE_PUSH),
                            resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            tags={RANGE_START_TAG: END.isoformat(), RANGE_END_TAG: END.isoformat()})
    assert [c.check_name for c in result.get_asset_check_evaluations()] == [C.CHECK_ONLINE_STALENESS]
    online_dir = str(data / "online")
    deadline = time.monotonic() + 10
    while (left := [p.pid for p in psutil.process_iter(["name"]) if _cwd(p) == online_dir]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    with resources["online"].connected() as client:  # started again on demand, with what was pushed
        assert OnlineStore(client, REGISTRY).current().snapshot_date == END


def _cwd(process: psutil.Process) -> str | None:
    try:
        return process.cwd()
    except psutil.Error:
        return None
