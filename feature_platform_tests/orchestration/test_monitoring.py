"""Monitoring in the Dagster layer: registry-derived freshness on every asset, drift checks, online staleness."""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.config import ConfigError, Settings
from feature_platform.definitions import build_defs
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.monitoring import freshness
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import copy_tree

defs = build_defs()

REGISTRY = load_registry()
END = dt.date(2025, 3, 12)
EVERY = [*defs.assets, *defs.asset_checks]
DAY = dt.timedelta(days=1)


# -- freshness ----------------------------------------------------------------------------------------
def test_every_asset_carries_the_freshness_policy_its_registry_features_give():
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    families = {dg.AssetKey(list(f.asset_path)): f for f in REGISTRY.families.values()}
    online = [f for f in REGISTRY.features.values() if "online" in f.serving_location]
    inputs = [REGISTRY.get_feature(n) for n in REGISTRY.snapshot_features()]
    for key in keys:
        node = graph.get(key)
        if key in freshness.UNSCHEDULED:
            assert node.freshness_policy is None, key
            continue
        # the rule, restated from the registry: (features that decide, period, tolerance)
        if key in families:
            features = REGISTRY.list_features(families[key].name)
        elif key == C.ONLINE_PUSH:
            features = online
        elif node.group_name in (C.GROUP_TRAINING, C.GROUP_MODELS):
            features = inputs
        else:
            assert node.group_name in (C.GROUP_RAW, C.GROUP_TILES), key
            below = {k for k in keys if key in graph.get_ancestor_asset_keys(k)} & set(families)
            assert below, key
            features = [f for k in below for f in REGISTRY.list_features(families[k].name)]
        tolerance = min(f.staleness_tolerance for f in features)
        period = min(freshness.PERIODS[f.computation_frequency] for f in features)
        if node.group_name in (C.GROUP_TRAINING, C.GROUP_MODELS):
            tolerance, period = freshness.RETRAIN_PERIOD + tolerance, freshness.RETRAIN_PERIOD
        warn = period * 1.25 if period * 1.25 < tolerance else None
        assert node.freshness_policy == dg.FreshnessPolicy.time_window(fail_window=tolerance, warn_window=warn), key
    # today's registry: daily features with a 2-day tolerance
    assert graph.get(C.LEAD_FEATURES).freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=2 * DAY, warn_window=dt.timedelta(hours=30))
    assert graph.get(C.CHURN_MODEL).freshness_policy.fail_window.to_timedelta() == 9 * DAY
    covered = {k for k in keys if graph.get(k).freshness_policy is not None}
    assert covered == set(keys) - set(freshness.UNSCHEDULED)


def test_a_tighter_tolerance_in_the_registry_tightens_the_policy_of_its_asset_and_of_the_raw_inputs():
    lead = REGISTRY.list_features("lead")[0]
    changed = {**REGISTRY.features, lead.name: dataclasses.replace(lead, staleness_tolerance=dt.timedelta(hours=20))}
    registry = type(REGISTRY)(REGISTRY.version, changed, REGISTRY.families, REGISTRY.vocabularies)
    policies = {a.key: a.specs_by_key[a.key].freshness_policy
                for a in freshness.with_freshness_policies(list(defs.assets), registry)}
    # 20 h tolerance: the 30 h warn window would not be shorter, so there is none
    assert policies[C.LEAD_FEATURES] == dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=20))
    assert policies[C.RAW_EVENTS] == policies[C.LEAD_FEATURES]  # events feed lead
    assert policies[C.PROFILE_FEATURES].fail_window.to_timedelta() == 2 * DAY
    assert policies[C.ONLINE_PUSH].fail_window.to_timedelta() == dt.timedelta(hours=20)


def test_an_asset_without_a_rule_is_refused():
    with pytest.raises(ValueError, match="no freshness rule for asset elsewhere/thing"):
        freshness.expectation_for(dg.AssetKey(["elsewhere", "thing"]), "other", {}, REGISTRY)




# -- drift ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def snapshots(sample_world, tmp_path_factory):
    """The sample world (150 users x 12 days) with feature snapshots up to D, in a copy: the tests write to it."""
    data = copy_tree(sample_world.data, tmp_path_factory.mktemp("monitoring") / "data")
    return data, local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)


def _check(resources: dict, key: dg.AssetKey, name: str, partition: str | None = None):
    """Run one check alone, as from the UI; ``partition``: the run's partition (as a daily run tags it)."""
    tags = {RANGE_START_TAG: partition, RANGE_END_TAG: partition} if partition else {}
    result = dg.materialize(EVERY, selection=dg.AssetSelection.checks(dg.AssetCheckKey(key, name)),
                            resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            tags=tags, raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_drift_checks_pass_on_unchanged_data_and_name_the_comparison(snapshots):
    _, platform = snapshots
    evaluation = _check(platform, C.PROFILE_FEATURES, C.CHECK_FEATURE_DRIFT, END.isoformat())
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed, evaluation.description
    assert meta["snapshot_date"] == END.isoformat() and meta["drift_level"] == "ok"
    # the sample world has no snapshot of 2025-03-05 (D-7): D-1, and the note says why
    assert set(meta["psi_per_feature"]) == {"D-1 (2025-03-11)"}
    assert "no features/profile_features partition 2025-03-05" in meta["reference_notes"]["D-1 (2025-03-11)"]
    assert "no churn champion yet" in meta["references_skipped"]["champion training set"]
    assert meta["plot_worst_feature"].startswith("![") and "data:image/png;base64," in meta["plot_worst_feature"]


@pytest.fixture
def shifted(snapshots):
    """Snapshot D of lead_features with monetary_total x 20 (every other column untouched); restored after."""
    data, platform = snapshots
    path = data / "features" / "lead_features" / f"{END}.parquet"
    original = pq.read_table(path)
    index = original.column_names.index("monetary_total")
    column = pc.multiply(pc.add(pc.fill_null(original.column(index), 0.0), 1.0), 20.0)
    pq.write_table(original.set_column(index, "monetary_total", column), path)
    yield platform
    pq.write_table(original, path)


def test_an_injected_shift_fails_the_drift_check_with_the_shifted_feature_first_without_blocking(shifted):
    evaluation = _check(shifted, C.LEAD_FEATURES, C.CHECK_FEATURE_DRIFT, END.isoformat())
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert meta["drift_level"] == "fail" and meta["worst_column"] == "monetary_total" and meta["max_psi"] >= 0.25
    psi = meta["psi_per_feature"]["D-1 (2025-03-11)"]
    assert max(psi, key=psi.get) == "monetary_total"
    assert meta["worst_features"].splitlines()[2].startswith("| D-1 (2025-03-11) | monetary_total |")
    assert "WARN: the online push goes ahead" in evaluation.description


def test_with_fp_drift_blocks_push_a_failing_drift_check_is_an_error(shifted, monkeypatch):
    monkeypatch.setenv("FP_DRIFT_BLOCKS_PUSH", "1")
    evaluation = _check(shifted, C.LEAD_FEATURES, C.CHECK_FEATURE_DRIFT, END.isoformat())
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "blocks the online push" in evaluation.description


def test_below_the_configured_fail_threshold_the_shift_only_warns(shifted, monkeypatch):
    monkeypatch.setenv("FP_DRIFT_PSI_FAIL", "1000")
    monkeypatch.setenv("FP_DRIFT_BLOCKS_PUSH", "1")
    evaluation = _check(shifted, C.LEAD_FEATURES, C.CHECK_FEATURE_DRIFT, END.isoformat())
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["drift_level"].value == "warn"


@pytest.mark.parametrize("blocks", ["0", "1"])
def test_in_a_daily_run_drift_warns_and_the_push_goes_ahead_unless_fp_drift_blocks_push(snapshots, monkeypatch,
                                                                                      blocks):
    _, platform = snapshots
    # thresholds so low that the ordinary day-to-day change of lead features fails the check
    monkeypatch.setenv("FP_DRIFT_PSI_WARN", "1e-9")
    monkeypatch.setenv("FP_DRIFT_PSI_FAIL", "2e-9")
    monkeypatch.setenv("FP_DRIFT_BLOCKS_PUSH", blocks)
    result = dg.materialize(EVERY, selection=dg.AssetSelection.assets(C.LEAD_FEATURES, C.ONLINE_PUSH),
                            resources=platform, instance=dg.DagsterInstance.ephemeral(),
                            partition_key=END.isoformat(), raise_on_error=False)
    drift_eval = next(e for e in result.get_asset_check_evaluations() if e.check_name == C.CHECK_FEATURE_DRIFT)
    assert not drift_eval.passed and drift_eval.metadata["snapshot_date"].value == END.isoformat()
    pushed = [m.asset_key for m in result.get_asset_materialization_events()]
    if blocks == "1":
        assert drift_eval.severity == dg.AssetCheckSeverity.ERROR and C.ONLINE_PUSH not in pushed
    else:
        assert drift_eval.severity == dg.AssetCheckSeverity.WARN and C.ONLINE_PUSH in pushed and result.success


def test_every_snapshot_family_has_a_blocking_drift_check():
    specs = {(s.asset_key, s.name): s for c in defs.asset_checks for s in c.check_specs}
    for key in C.FEATURE_SNAPSHOTS:
        assert specs[(key, C.CHECK_FEATURE_DRIFT)].blocking, key
    assert (C.CHURN_RISK_SCORES, C.CHECK_FEATURE_DRIFT) not in specs


# -- online staleness -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("now", "passed", "severity"), [
    ("2025-03-13T03:00:00", True, None),  # 3 h after the cut-off of 03-12
    ("2025-03-14T08:00:00", False, dg.AssetCheckSeverity.WARN),  # 32 h: the push of 03-13 is overdue
    ("2025-03-15T01:00:00", False, dg.AssetCheckSeverity.ERROR),  # 49 h: past the 48 h tolerance
])
def test_online_staleness_compares_the_served_snapshot_age_with_the_tolerance(tmp_path, now, passed, severity):
    resources = local_resources(tmp_path, now_utc=now)
    with resources["online"].connected() as client:
        store = OnlineStore(client, REGISTRY)
        store.push(pa.table({"user_id": ["u1", "u2"], "total_events": pa.array([3, 4], pa.int64())}), END)
        evaluation = _check(resources, C.ONLINE_PUSH, C.CHECK_ONLINE_STALENESS)
        served = store.current().version
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed is passed
    if severity is not None:
        assert evaluation.severity == severity
    age = (dt.datetime.fromisoformat(now) - dt.datetime(2025, 3, 13)).total_seconds() / 3600
    assert meta["age_hours"] == pytest.approx(age) and meta["tolerance_hours"] == 48
    assert meta["served_version"] == served


def test_online_staleness_fails_when_nothing_is_served(tmp_path):
    evaluation = _check(local_resources(tmp_path), C.ONLINE_PUSH, C.CHECK_ONLINE_STALENESS)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "nothing is served" in evaluation.description


# -- settings -------------------------------------------------------------------------------------------
def test_drift_settings_parse_from_the_environment_and_are_validated():
    default = Settings.from_env({})
    assert (default.drift_psi_warn, default.drift_psi_fail, default.drift_blocks_push) == (0.1, 0.25, False)
    custom = Settings.from_env({"FP_DRIFT_PSI_WARN": "0.2", "FP_DRIFT_PSI_FAIL": "0.5", "FP_DRIFT_BLOCKS_PUSH": "yes"})
    assert (custom.drift_psi_warn, custom.drift_psi_fail, custom.drift_blocks_push) == (0.2, 0.5, True)
    for env, message in (({"FP_DRIFT_PSI_WARN": "0.3"}, "0 < warn <= fail"), ({"FP_DRIFT_PSI_WARN": "0"}, "0 < warn"),
                         ({"FP_DRIFT_PSI_FAIL": "x"}, "FP_DRIFT_PSI_FAIL must be a number"),
                         ({"FP_DRIFT_BLOCKS_PUSH": "maybe"}, "FP_DRIFT_BLOCKS_PUSH must be")):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)
