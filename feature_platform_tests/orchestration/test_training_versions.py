"""Training-set assets at pinned feature-family versions, materialized in-process on a copy of the sample world:
the registry's versions by default, a pin in the run config, the refusal when a snapshot is of another (or an
unrecorded) version, and the versions recorded in the file and the metadata."""

from __future__ import annotations

import dagster as dg
import pytest

from feature_platform.definitions import build_defs
from feature_platform.offline.store import OfflineStore, read_parquet
from feature_platform.offline.versions import FAMILY_VERSION_KEY, file_family_version, recorded_family_versions
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import copy_tree

defs = build_defs()
REGISTRY = load_registry()
ACTIVITY = REGISTRY.family("activity")
ACTIVITY_TABLE = "/".join(ACTIVITY.asset_path)
CURRENT = {f.name: f.version for f in REGISTRY.families.values() if not f.derived}
OLDER = "1.0.0"  # an activity version before the registry's
assert ACTIVITY.version != OLDER


def _config(versions: dict[str, str] | None = None) -> dict:
    pinned = {"feature_versions": versions} if versions is not None else {}
    return {"ops": {"training__training_dataset": {"config": {"horizon_days": 1, "every_days": 1, **pinned}},
                    "training__contact_training_set": {"config": pinned}}}


def _run(resources: dict, versions: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([*defs.assets], selection=dg.AssetSelection.groups(C.GROUP_TRAINING), resources=resources,
                          instance=dg.DagsterInstance.ephemeral(), run_config=_config(versions), raise_on_error=False)


def _errors(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    mat = next(m for m in result.get_asset_materialization_events() if m.asset_key == key).materialization
    return {k: v.value for k, v in mat.metadata.items()}


def _recompute_activity_at(store: OfflineStore, version: str | None) -> list[str]:
    """Rewrite every activity snapshot as if computed at ``version`` (None: before versions were recorded)."""
    days = store.partitions(ACTIVITY_TABLE)
    for day in days:
        table = read_parquet(store.partition_path(ACTIVITY_TABLE, day))
        store.write(ACTIVITY_TABLE, table, partition=day,
                    metadata={FAMILY_VERSION_KEY: version} if version is not None else None)
    return days


@pytest.fixture
def world(sample_world, tmp_path):
    data = copy_tree(sample_world.data, tmp_path / "data")
    resources = local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)
    return OfflineStore(data), resources


def test_snapshots_record_their_family_version_and_training_sets_default_to_the_registrys(world):
    store, resources = world
    for family in REGISTRY.families.values():
        for path in store.partition_files("/".join(family.asset_path)):
            assert file_family_version(path) == family.version, path
    result = _run(resources)
    assert result.success, _errors(result)
    for key in (C.TRAINING_DATASET, C.CONTACT_TRAINING_SET):
        recorded = recorded_family_versions(read_parquet(store.table_path("/".join(key.path))).schema)
        assert recorded == CURRENT
        assert _metadata(result, key)["family_versions"] == CURRENT


def test_a_pinned_version_builds_from_snapshots_of_that_version(world):
    store, resources = world
    _recompute_activity_at(store, OLDER)
    result = _run(resources, {"activity": OLDER})
    assert result.success, _errors(result)
    pinned = {**CURRENT, "activity": OLDER}
    for key in (C.TRAINING_DATASET, C.CONTACT_TRAINING_SET):
        assert recorded_family_versions(read_parquet(store.table_path("/".join(key.path))).schema) == pinned
        assert _metadata(result, key)["family_versions"] == pinned


@pytest.mark.parametrize(("written_at", "pin", "found"), [
    pytest.param(OLDER, None, OLDER, id="default-registry-version-but-older-snapshots"),
    pytest.param(None, {"activity": ACTIVITY.version}, "unknown", id="pinned-but-unrecorded-snapshots"),
    pytest.param(None, {"activity": OLDER}, "unknown", id="pinned-older-but-unrecorded-snapshots"),
])
def test_a_snapshot_of_another_version_fails_the_training_set_naming_it(world, written_at, pin, found):
    store, resources = world
    days = _recompute_activity_at(store, written_at)
    result = _run(resources, pin)
    assert not result.success
    expected = (pin or {}).get("activity", ACTIVITY.version)
    errors = _errors(result)
    assert "PinnedVersionError" in errors and f"activity is pinned to version {expected}" in errors
    assert f"{days[0]} ({found})" in errors and "is gone" in errors
    assert not store.table_path("/".join(C.TRAINING_DATASET.path)).exists()  # nothing half-pinned is written


def test_a_pin_of_an_unknown_family_fails_the_run(world):
    _, resources = world
    result = _run(resources, {"activty": "1.1.0"})
    assert not result.success and "unknown family" in _errors(result)
