"""The churn score asset in-process: the champion's probability per user, nulls without a champion."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from feature_platform.definitions import build_defs
from feature_platform.features.base import known_user_count
from feature_platform.ml import scoring
from feature_platform.ml.expand import expand
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.orchestration.champions import promote_tiny_churn_champion

defs = build_defs()

END = dt.date(2025, 3, 12)
DAYS = ["2025-03-11", "2025-03-12"]
EVERY = [*defs.assets]
REGISTRY = load_registry()
INPUTS = [f.name for f in REGISTRY.families.values() if not f.derived]


def _run(resources, selection, start: str, end: str):
    return dg.materialize(EVERY, selection=selection, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                          tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, raise_on_error=False)


def _metadata(result) -> dict:
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key == C.CHURN_RISK_SCORES)
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def _scores(data, day: str):
    return pq.read_table(data / "features" / "churn_risk_scores" / f"{day}.parquet")


@pytest.fixture(scope="module")
def snapshots_without_model(sample_world, tmp_path_factory):
    """A copy of the sample world (150 users; raw partitions, tiles and every snapshot family up to END), no model."""
    data = copy_tree(sample_world.data, tmp_path_factory.mktemp("derived") / "data")
    return data, local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)


def test_without_a_champion_every_score_is_null_and_the_metadata_says_so(snapshots_without_model):
    data, resources = snapshots_without_model
    result = _run(resources, dg.AssetSelection.assets(C.CHURN_RISK_SCORES), END.isoformat(), END.isoformat())
    assert result.success  # no model yet is not a failure
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {C.CHECK_SNAPSHOT_SCHEMA: True, C.CHECK_SNAPSHOT_VALUES: True, C.CHECK_SNAPSHOT_ROWS: True}
    scores = _scores(data, END.isoformat())
    assert scores.num_rows == known_user_count(OfflineStore(data), END) > 50
    assert scores.column("churn_risk_score").null_count == scores.num_rows
    meta = _metadata(result)
    assert meta["champion_version"] == "none" and meta["status"].startswith("no churn champion yet")
    assert meta["null_scores"] == scores.num_rows and meta["score_summary"]["mean"] is None


def test_every_user_gets_the_champions_probability_of_their_expanded_vector(snapshots_without_model):
    data, resources = snapshots_without_model
    model, spec, version = promote_tiny_churn_champion(data, END)
    result = _run(resources, dg.AssetSelection.assets(C.CHURN_RISK_SCORES), DAYS[0], DAYS[-1])
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 3
    store = OfflineStore(data)
    for day in DAYS:
        scores = _scores(data, day)
        assert scores.schema.remove_metadata().equals(REGISTRY.snapshot_schema("derived"))
        vectors = user_vectors(store, REGISTRY, dt.date.fromisoformat(day), INPUTS)
        assert scores.column("user_id").equals(vectors.column("user_id"))
        expected = model.predict_proba(expand(vectors, spec)[0])[:, 1]
        np.testing.assert_allclose(scores.column("churn_risk_score").to_numpy(), expected, rtol=0, atol=1e-12)
        assert scores.column("churn_risk_score").null_count == 0
    meta = _metadata(result)
    assert meta["champion_version"] == version.version and meta["null_scores"] == 0
    assert meta["status"] == f"scored with the churn champion {version.version}"
    assert meta["files_written"] == 2 and 0 < meta["score_summary"]["mean"] < 1
    assert meta["model"] == "models/churn_model"


def test_a_score_outside_0_1_is_blocked_by_the_values_check(snapshots_without_model, monkeypatch):
    _, resources = snapshots_without_model
    promote_tiny_churn_champion(snapshots_without_model[0], END)
    monkeypatch.setattr(scoring, "positive_probability", lambda model, spec, vectors: np.full(vectors.num_rows, 1.5))
    result = _run(resources, dg.AssetSelection.assets(C.CHURN_RISK_SCORES, C.ONLINE_PUSH), END.isoformat(),
                  END.isoformat())
    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed.check_name == C.CHECK_SNAPSHOT_VALUES and "churn_risk_score: above_range" in failed.description
    assert not [m for m in result.get_asset_materialization_events() if m.asset_key == C.ONLINE_PUSH]  # never pushed
