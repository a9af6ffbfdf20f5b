"""Sensors: retrain early when the features the training data was built from changed version.

A feature's version changes when its computation does (the registry's fingerprint guard enforces the
bump), so a training set or a champion recorded under an older version was trained on features that
no longer exist as served. The weekly schedule would catch up eventually; this sensor does it at once.
"""

import hashlib
import json
from collections.abc import Mapping
from typing import cast

import dagster as dg

from feature_platform.ml.model_store import ModelStore
from feature_platform.orchestration.automation.jobs import retraining_job
from feature_platform.orchestration.constants import CONTACT_TRAINING_SET, TRAINING_DATASET
from feature_platform.orchestration.models.assets import CHURN, CONTACT, registry_versions
from feature_platform.orchestration.resources import ModelStoreResource
from feature_platform.registry.registry import Registry, load_registry

RETRAIN_SENSOR = "retrain_on_feature_version_change"
TRAINING_SETS = (TRAINING_DATASET, CONTACT_TRAINING_SET)
MODELS = (CHURN, CONTACT)


def version_changes(registry: Registry, trained: Mapping[str, Mapping[str, str]],
                    champions: Mapping[str, Mapping[str, str]]) -> list[str]:
    """What changed since training, one line each; empty when everything was trained on current versions.

    ``trained``: training set -> {feature: version} from its last materialization's metadata.
    ``champions``: model -> the ``registry_versions`` of its champion's manifest; only the ``family:*``
    entries count (the registry's own version also moves on edits that change no feature).
    """
    changes = []
    for source, versions in trained.items():
        for name, old in sorted(versions.items()):
            new = registry.features[name].version if name in registry.features else "removed"
            if new != old:
                changes.append(f"{source}: feature {name} {old} -> {new}")
    current = registry_versions(registry)
    for model, versions in champions.items():
        for key, old in sorted(versions.items()):
            if key.startswith("family:") and current.get(key, "removed") != old:
                changes.append(f"{model} champion: {key} {old} -> {current.get(key, 'removed')}")
    return changes


def versions_fingerprint(registry: Registry) -> str:
    """A short hash of every model-input feature's and family's current version: the sensor's cursor."""
    state = {"features": {n: registry.features[n].version for n in registry.snapshot_features()},
             "families": registry_versions(registry)}
    state["families"].pop("registry", None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _trained_versions(instance: dg.DagsterInstance) -> dict[str, dict[str, str]]:
    found = {}
    for key in TRAINING_SETS:
        event = instance.get_latest_materialization_event(key)
        entry = event.asset_materialization.metadata.get("feature_versions") if event and event.asset_materialization \
            else None
        if entry is not None:
            found[key.to_user_string()] = {str(k): str(v) for k, v in dict(cast(Mapping, entry.value)).items()}
    return found


def _champion_versions(models: ModelStore) -> dict[str, dict[str, str]]:
    return {name: dict(champion.manifest.get("registry_versions", {}))
            for name in MODELS if (champion := models.champion(name)) is not None}


@dg.sensor(
    name=RETRAIN_SENSOR, job=retraining_job, minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the retraining job when the registry's feature versions differ from those the last "
                "training sets or the champions were built with. Requests once per set of versions (cursor); "
                "a failed retraining is retried by the weekly schedule, not by this sensor.",
)
def retrain_on_feature_version_change(context: dg.SensorEvaluationContext,
                                      models: ModelStoreResource) -> dg.SensorResult | dg.SkipReason:
    registry = load_registry()
    trained, champions = _trained_versions(context.instance), _champion_versions(models.store())
    if not trained and not champions:
        return dg.SkipReason("nothing trained yet: the first run or the weekly schedule trains")
    changes = version_changes(registry, trained, champions)
    if not changes:
        return dg.SkipReason("training sets and champions use the current feature versions")
    fingerprint = versions_fingerprint(registry)
    if context.cursor == fingerprint:
        return dg.SkipReason(f"retraining already requested for these versions ({len(changes)} changes)")
    context.log.info("feature versions changed since training:\n%s", "\n".join(changes))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"feature-versions-{fingerprint}",
                                    tags={"feature_platform/reason": f"{len(changes)} feature version changes"})],
        cursor=fingerprint,
    )


SENSORS = [retrain_on_feature_version_change]
