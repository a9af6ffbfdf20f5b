"""Training-set and model assets materialized in-process on generated data into a temp directory."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.definitions import build_defs
from feature_platform.ml.expand import expand
from feature_platform.ml.model_store import ModelStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.generator import GeneratorConfig, generate

defs = build_defs()

END = dt.date(2025, 3, 20)
DAYS = 60
HORIZON = 14
EVERY = [*defs.assets]
TRAINING_CONFIG = {"ops": {"training__training_dataset": {"config": {"horizon_days": HORIZON}}}}


def _run(resources, selection, run_config=None, **tags):
    return dg.materialize(EVERY, selection=selection, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                          run_config=run_config or {}, raise_on_error=False, tags=tags)


def _gate(result, key):
    return next(e for e in result.get_asset_check_evaluations()
                if e.asset_key == key and e.check_name == C.CHECK_PROMOTION_GATE)


def _metadata(result, key):
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key == key).materialization
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory):
    """400 users x 60 days: raw, every feature snapshot, both training sets and both models."""
    root = tmp_path_factory.mktemp("models")
    generate(GeneratorConfig(users=400, days=DAYS, end_date=END, seed=5), root / "src")
    resources = local_resources(data_dir=str(root / "data"), raw_dir=str(root / "src"),
                                              now_utc="2025-03-21T03:00:00")
    first = (END - dt.timedelta(days=DAYS - 1)).isoformat()
    upstream = dg.AssetSelection.groups(C.GROUP_RAW, C.GROUP_TILES, C.GROUP_FEATURES)
    assert _run(resources, upstream, **{RANGE_START_TAG: first, RANGE_END_TAG: END.isoformat()}).success
    result = _run(resources, dg.AssetSelection.groups(C.GROUP_TRAINING, C.GROUP_MODELS), TRAINING_CONFIG)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return root / "data", resources, result


def test_training_sets_report_their_rows_label_rate_and_feature_versions(trained_models):
    data, _, result = trained_models
    meta = _metadata(result, C.TRAINING_DATASET)
    table = pq.read_table(data / "training" / "training_dataset.parquet")
    assert meta["dagster/row_count"] == table.num_rows and meta["horizon_days"] == HORIZON
    assert 0.0 < meta["label_rate"] < 1.0
    assert meta["feature_versions"]["days_since_last_purchase"] == "1.0.0"
    assert meta["feature_versions"]["topic_vector"] == "1.0.1"
    # Weekly dates back from the last one with a full horizon (END - HORIZON).
    dates = sorted(set(table.column("snapshot_date").to_pylist()))
    assert dates[-1] == END - dt.timedelta(days=HORIZON) and {(b - a).days for a, b in zip(dates, dates[1:], strict=False)} == {7}
    contact = _metadata(result, C.CONTACT_TRAINING_SET)
    assert contact["dagster/row_count"] > 1000 and 0.0 < contact["label_rate"] < 0.5


@pytest.mark.parametrize(("key", "name"), [(C.CHURN_MODEL, "churn"), (C.CONTACT_MODEL, "contact")])
def test_each_model_is_stored_gated_promoted_and_shown_with_plots(trained_models, key, name):
    data, _, result = trained_models
    meta = _metadata(result, key)
    gate = _gate(result, key)
    assert gate.passed and gate.description.startswith("promoted:")
    assert meta["oot_roc_auc"] > meta["baseline_oot_roc_auc"]
    if name == "churn":
        assert meta["oot_roc_auc"] >= 0.75
    store = ModelStore(data / "models")
    champion = store.champion(name)
    assert champion is not None and champion.version == meta["version"] == meta["serving_version"]
    files = {p.name for p in champion.path.iterdir()}
    assert {"model.joblib", "expansion.json", "features.json", "manifest.json", "metrics.json", "model_card.md",
            "roc_pr.png", "importance.png", "calibration.png"} <= files
    manifest = json.loads((champion.path / "manifest.json").read_text())
    assert manifest["registry_versions"]["family:review"] == "1.1.0"
    # the versions recorded in the training set's file: what its snapshots were computed at
    training = C.TRAINING_DATASET if name == "churn" else C.CONTACT_TRAINING_SET
    recorded = json.loads(pq.read_schema(data / f"{'/'.join(training.path)}.parquet").metadata[
        b"feature_platform.family_versions"])
    assert manifest["family_versions"] == recorded == {
        f.name: f.version for f in load_registry().families.values() if not f.derived}
    assert manifest["training_fingerprint"] == meta["training_fingerprint"]
    card = (champion.path / "model_card.md").read_text()
    assert champion.version in card and "![roc_pr](roc_pr.png)" in card and "out_of_time" in card
    for plot in ("plot_roc_pr", "plot_importance", "plot_calibration"):
        assert "](data:image/png;base64," in meta[plot]  # the UI renders these inline
    metrics = json.loads((champion.path / "metrics.json").read_text())
    assert metrics["promoted"] is True and set(metrics["splits"]) == {"by_user", "out_of_time"}


def test_the_stored_churn_champion_scores_a_snapshot_through_its_own_expansion(trained_models):
    data, _, _ = trained_models
    model, spec, version = ModelStore(data / "models").load("churn", ModelStore(data / "models").champion("churn").version)
    rows = None
    for family in ("user_activity_features", "lead_features", "engagement_features", "profile_features",
                   "review_features", "affinity_features", "lifetime_features"):
        part = pq.read_table(data / "features" / family / f"{END.isoformat()}.parquet")
        part = part.sort_by("user_id")  # every family has one row per known user: the same rows
        if rows is None:
            rows = part.select(["user_id"])
        assert part.column("user_id").equals(rows.column("user_id"))
        for name in part.column_names:
            if name in version.manifest["feature_names"]:
                rows = rows.append_column(name, part.column(name))
    x, columns = expand(rows, spec)
    assert columns == version.manifest["columns"]
    p = model.predict_proba(x)[:, 1]
    assert len(p) == rows.num_rows and np.all((p >= 0) & (p <= 1)) and p.std() > 0


def test_the_churn_score_is_the_trained_champion_on_its_own_inputs_which_the_registry_lineage_names(trained_models):
    data, resources, _ = trained_models
    models = ModelStore(data / "models")
    model, spec, version = models.load("churn", models.champion("churn").version)
    lineage = load_registry().lineage("churn_risk_score")
    assert list(lineage.upstream_features) == version.manifest["feature_names"]  # the model's inputs, exactly
    assert lineage.models == ("/".join(C.CHURN_MODEL.path),) and "churn_risk_score" not in version.manifest["columns"]
    result = _run(resources, dg.AssetSelection.assets(C.CHURN_RISK_SCORES),
                  **{RANGE_START_TAG: END.isoformat(), RANGE_END_TAG: END.isoformat()})
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert _metadata(result, C.CHURN_RISK_SCORES)["champion_version"] == version.version
    scores = pq.read_table(data / "features" / "churn_risk_scores" / f"{END.isoformat()}.parquet")
    rows = pq.read_table(data / "features" / "user_activity_features" / f"{END.isoformat()}.parquet")
    for family in ("lead_features", "engagement_features", "profile_features", "review_features", "affinity_features",
                   "lifetime_features"):
        part = pq.read_table(data / "features" / family / f"{END.isoformat()}.parquet")
        assert part.column("user_id").equals(rows.column("user_id"))  # sorted, one row per known user
        for name in part.column_names[2:]:
            rows = rows.append_column(name, part.column(name))
    assert scores.column("user_id").equals(rows.column("user_id"))
    expected = model.predict_proba(expand(rows, spec)[0])[:, 1]
    np.testing.assert_allclose(scores.column("churn_risk_score").to_numpy(), expected, rtol=0, atol=1e-12)
    assert 0.0 < expected.mean() < 1.0 and expected.std() > 0


def test_a_model_trained_on_shuffled_labels_is_not_promoted_and_the_champion_stays(trained_models):
    data, resources, _ = trained_models
    path = data / "training" / "training_dataset.parquet"
    original = pq.read_table(path)
    store = ModelStore(data / "models")
    before = store.champion("churn").version
    labels = original.column("churned").to_numpy(zero_copy_only=False)
    shuffled = np.random.default_rng(0).permutation(labels)
    column = original.column_names.index("churned")
    pq.write_table(original.set_column(column, "churned", pa.array(shuffled, pa.int64())), path)
    try:
        result = _run(resources, dg.AssetSelection.assets(C.CHURN_MODEL))
    finally:
        pq.write_table(original, path)
    gate = _gate(result, C.CHURN_MODEL)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert gate.description.startswith("not promoted:") and f"the previous champion {before} stays" in gate.description
    assert not result.success  # a blocking check failed: nothing downstream of the model may run
    assert store.champion("churn").version == before
    rejected = json.loads((data / "models" / "churn" / "rejections.json").read_text())
    assert rejected[-1]["version"] == _metadata(result, C.CHURN_MODEL)["version"] != before


def test_too_few_labelled_dates_skip_the_churn_model_with_the_reason_and_the_champion_stays(trained_models):
    """A short history (e.g. 40 days with a 30-day label horizon) leaves too few labelled dates for the
    out-of-time test: the model is skipped with a warning that says why, the run does not fail."""
    data, resources, _ = trained_models
    path = data / "training" / "training_dataset.parquet"
    original = pq.read_table(path)
    before = ModelStore(data / "models").champion("churn").version
    dates = sorted(set(original.column("snapshot_date").to_pylist()))[-2:]
    pq.write_table(original.filter(pc.is_in(original.column("snapshot_date"), pa.array(dates))), path)
    try:
        result = _run(resources, dg.AssetSelection.assets(C.CHURN_MODEL))
    finally:
        pq.write_table(original, path)
    assert result.success
    gate = _gate(result, C.CHURN_MODEL)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("no model trained: the out-of-time split needs more than oot_dates=2 "
                                       "labelled snapshot dates, found 2")
    assert "; a snapshot date is labelled once its label horizon of events follows it, so a longer history " \
           "gives more labelled dates" in gate.description
    assert f"the champion {before} stays" in gate.description
    assert ModelStore(data / "models").champion("churn").version == before


def test_an_auc_floor_above_the_champion_blocks_promotion_and_says_so(trained_models):
    data, resources, _ = trained_models
    before = ModelStore(data / "models").champion("contact").version
    result = _run(resources, dg.AssetSelection.assets(C.CONTACT_MODEL),
                  {"ops": {"models__contact_model": {"config": {"auc_floor": 0.999}}}})
    gate = _gate(result, C.CONTACT_MODEL)
    assert not gate.passed and "is below the AUC floor 0.9990" in gate.description
    assert ModelStore(data / "models").champion("contact").version == before


def test_a_narrower_date_range_and_step_change_the_churn_training_set(trained_models):
    data, resources, _ = trained_models
    last = END - dt.timedelta(days=HORIZON)
    config = {"horizon_days": HORIZON, "every_days": 14, "start_date": (last - dt.timedelta(days=28)).isoformat()}
    result = _run(resources, dg.AssetSelection.assets(C.TRAINING_DATASET),
                  {"ops": {"training__training_dataset": {"config": config}}})
    assert result.success
    table = pq.read_table(data / "training" / "training_dataset.parquet")
    assert sorted(set(table.column("snapshot_date").to_pylist())) == [
        last - dt.timedelta(days=28), last - dt.timedelta(days=14), last]
    bad = _run(resources, dg.AssetSelection.assets(C.TRAINING_DATASET),
               {"ops": {"training__training_dataset": {"config": {"start_date": "2030-01-01"}}}})
    assert not bad.success
