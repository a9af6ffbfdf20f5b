"""The drift check on generated data with a history long enough for a D-7 reference: untouched data passes,
a real shift fails, and the weekday and ageing rules are what make the difference.

The shared ``sample_world`` has 12 days of events: its D-7 snapshot saw 5 days of them and D 12, so every
windowed count grows by construction between the two. This module's world has 84 days (D-7 saw 77: every
window covers within 10% of D's days, so none is still filling) and is computed through the tile engine's
in-memory path (the daily assets' code) straight into an offline store, which takes seconds instead of a
Dagster backfill. Its raw/events partition of the first day tells the check where the history starts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.definitions import build_defs
from feature_platform.features.engine import snapshots_from_tables
from feature_platform.ml import drift
from feature_platform.offline.store import OfflineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform_tests.helpers import copy_tree

defs = build_defs()
EVERY = [*defs.assets, *defs.asset_checks]
REGISTRY = load_registry()
END = dt.date(2025, 3, 12)  # a Wednesday
WEEK_AGO, DAY_BEFORE = END - dt.timedelta(days=7), END - dt.timedelta(days=1)
DAYS = 84
FIRST_DAY = END - dt.timedelta(days=DAYS - 1)
FAMILIES = ("activity", "lead", "affinity", "lifetime")  # the four whose checks failed on untouched data


def _build(root: Path) -> None:
    generate(GeneratorConfig(users=600, days=DAYS, end_date=END, seed=5), root / "src")
    raw = {name: pq.read_table(root / "src" / f"{name}.parquet") for name in ("customers", "events", "listings",
                                                                               "reviews")}
    store = OfflineStore(root / "data")
    first = raw["events"].filter(pc.less(raw["events"].column("timestamp"), pa.scalar(dt.datetime.combine(
        FIRST_DAY + dt.timedelta(days=1), dt.time()), raw["events"].schema.field("timestamp").type)))
    store.write("raw/events", first, FIRST_DAY.isoformat())
    for name in FAMILIES:
        family = REGISTRY.family(name)
        for day, snapshot, _ in snapshots_from_tables(REGISTRY, family, [WEEK_AGO, DAY_BEFORE, END], raw["events"],
                                                      raw["customers"], raw["reviews"], raw["listings"]):
            store.write("/".join(family.asset_path), snapshot, day.isoformat())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """600 users x 84 days of generated events; snapshots D-7, D-1 and D of the four families. Read-only."""
    root = tmp_path_factory.mktemp("drift_world")
    _build(root)
    return root


@pytest.fixture
def copy(world, tmp_path) -> Path:
    return copy_tree(world, tmp_path / "world")


def _check(root: Path, family: str) -> dg.AssetCheckEvaluation:
    resources = local_resources(data_dir=root / "data", raw_dir=root / "src")
    key = dg.AssetKey(list(REGISTRY.family(family).asset_path))
    result = dg.materialize(EVERY, selection=dg.AssetSelection.checks(dg.AssetCheckKey(key, C.CHECK_FEATURE_DRIFT)),
                            resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                            tags={RANGE_START_TAG: END.isoformat(), RANGE_END_TAG: END.isoformat()})
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def _meta(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def _snapshot(root: Path, family: str, day: dt.date) -> pa.Table:
    return OfflineStore(root / "data").read("/".join(REGISTRY.family(family).asset_path), day.isoformat(),
                                            day.isoformat())


@pytest.mark.parametrize("family", FAMILIES)
def test_untouched_generated_data_passes_against_the_same_weekday_a_week_before(world, family):
    evaluation = _check(world, family)
    meta = _meta(evaluation)
    assert evaluation.passed, evaluation.description
    assert meta["drift_level"] == "ok" and meta["max_psi"] < 0.1
    assert set(meta["psi_per_feature"]) == {f"D-7 ({WEEK_AGO})"} and meta["reference_notes"] == {}
    aged = {"first_purchase_days", "tenure_days", "btyd_age_days"} if family == "lifetime" else set()
    assert {f for r in meta["aged_features"].values() for f in r["features"]} == aged
    if aged:
        assert meta["aged_features"][f"D-7 ({WEEK_AGO})"]["days"] == 7


def test_without_ageing_and_the_weekday_rule_the_same_data_reads_as_drift(world):
    """What the rules remove: D-1 (a Tuesday, the campaign day, against a Wednesday) and unaged tenure."""
    lifetime = [_snapshot(world, "lifetime", day) for day in (WEEK_AGO, END)]
    features = list(REGISTRY.family("lifetime").features)
    unaged = drift.drift_report(*lifetime, features, REGISTRY, "D-7", "D")
    aged = drift.drift_report(*lifetime, features, REGISTRY, "D-7", "D", age_days=7)
    assert unaged.worst.feature in drift.AGEING_FEATURES and unaged.max_psi >= 0.25
    assert aged.max_psi < 0.1 and aged.psi_by_column()["tenure_days"] < 0.05
    activity = list(REGISTRY.family("activity").features)
    day_before = drift.drift_report(_snapshot(world, "activity", DAY_BEFORE), _snapshot(world, "activity", END),
                                    activity, REGISTRY, "D-1", "D", age_days=1)
    assert day_before.worst.column == "last_active_days" and day_before.max_psi >= 0.25


def _rewrite(root: Path, family: str, column: str, values: pa.Array) -> None:
    path = root / "data" / Path(*REGISTRY.family(family).asset_path) / f"{END}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index(column), column, values), path)


def _some_users(table: pa.Table, share: float) -> np.ndarray:
    return np.random.default_rng(0).random(table.num_rows) < share


def _prices_tripled(table: pa.Table) -> pa.Array:
    """Every purchase amount x3 (a currency mix-up, say); users without purchases stay at 0. (x2 gives a PSI
    of 0.28 only: half the users have no purchase in 90 days, and their bin does not move.)"""
    return pc.multiply(table.column("monetary_total"), 3.0)


def _a_third_goes_quiet(table: pa.Table) -> pa.Array:
    """A third of the users stop for ten days more than they would have (past the 90-day window: null)."""
    days = np.array(table.column("last_active_days").to_pylist(), dtype=float)
    days = np.where(_some_users(table, 1 / 3), days + 10, days)
    return pa.array(np.where(days > 89, np.nan, days), pa.int64(), from_pandas=True)


def _tenure_a_week_too_old(table: pa.Table) -> pa.Array:
    """A bug that counts tenure from a week earlier: the ageing rule must not hide it."""
    return pc.add(table.column("tenure_days"), 7)


@pytest.mark.parametrize(("family", "column", "shift"), [
    ("lead", "monetary_total", _prices_tripled),
    ("activity", "last_active_days", _a_third_goes_quiet),
    ("lifetime", "tenure_days", _tenure_a_week_too_old),
])
def test_a_real_shift_in_generated_data_fails_the_check_with_the_shifted_feature_worst(copy, family, column, shift):
    _rewrite(copy, family, column, shift(_snapshot(copy, family, END)))
    evaluation = _check(copy, family)
    meta = _meta(evaluation)
    assert not evaluation.passed and meta["drift_level"] == "fail", evaluation.description
    assert meta["worst_column"] == column and meta["worst_compared_with"] == f"D-7 ({WEEK_AGO})"
    assert f"{column} vs D-7 ({WEEK_AGO})" in evaluation.description


def test_without_a_d_minus_7_partition_the_check_compares_with_d_minus_1_and_says_so(copy):
    (copy / "data" / Path(*REGISTRY.family("lead").asset_path) / f"{WEEK_AGO}.parquet").unlink()
    meta = _meta(_check(copy, "lead"))
    assert set(meta["psi_per_feature"]) == {f"D-1 ({DAY_BEFORE})"}
    assert f"no features/lead_features partition {WEEK_AGO}" in meta["reference_notes"][f"D-1 ({DAY_BEFORE})"]


def test_on_a_young_history_the_filling_windows_are_reported_not_judged(copy):
    """Had the data begun 40 days before D, a 90-day total covers 33 days on D-7 and 40 on D: it grows with the
    window. The check reads the history from the raw partitions; the 90-day features are reported, not
    judged, so even the tripled prices pass; the 30-day ones are judged as before."""
    store = OfflineStore(copy / "data")
    store.partition_path("raw/events", FIRST_DAY.isoformat()).unlink()
    young = END - dt.timedelta(days=39)
    store.write("raw/events", _snapshot(copy, "lead", END).slice(0, 0), young.isoformat())
    _rewrite(copy, "lead", "monetary_total", _prices_tripled(_snapshot(copy, "lead", END)))
    evaluation = _check(copy, "lead")
    filling = _meta(evaluation)["not_judged_window_filling"][f"D-7 ({WEEK_AGO})"]
    assert evaluation.passed, evaluation.description
    assert "monetary_total" in filling and "covers 33 days of data on the reference and 40 on D" in \
        filling["monetary_total"]
    assert {f for f in filling if REGISTRY.get_feature(f).window == "30d"} == set()
    assert "not judged, their window still filling" in evaluation.description
