"""Derived feature assets: model outputs materialized as a feature family and served with the rest.

``features/churn_risk_scores`` is the snapshot of the registry's ``derived`` family: for each day D it
scores every user of the six family snapshots of D with the current churn champion (through the
champion's stored expansion) and writes ``features/churn_risk_scores/<D>.parquet`` exactly like a
family snapshot, behind the same blocking schema/values/rows checks. So one lineage runs raw events ->
feature snapshots -> training set -> churn model -> churn_risk_score -> online push.
"""

import datetime as dt

import dagster as dg

from feature_platform.features.base import conform, known_user_count
from feature_platform.features.quality import value_violations
from feature_platform.ml.scoring import score_summary, score_users
from feature_platform.offline.snapshots import SNAPSHOT_ROW_GROUP, user_vectors
from feature_platform.offline.versions import snapshot_metadata
from feature_platform.orchestration.constants import (
    CHURN_MODEL,
    CHURN_RISK_SCORES,
    DAILY_PARTITIONS,
    FEATURE_SNAPSHOTS,
    GROUP_DERIVED,
    OWNER_ML,
    RAW_CUSTOMERS,
)
from feature_platform.orchestration.features.checks import (
    rows_result,
    schema_result,
    snapshot_check_specs,
    values_result,
)
from feature_platform.orchestration.metadata import summary, write_metadata
from feature_platform.orchestration.resources import ModelStoreResource, OfflineStoreResource
from feature_platform.registry.fingerprint import family_fingerprint
from feature_platform.registry.registry import load_registry

DERIVED_FAMILY = "derived"
CHURN_SCORE = "churn_risk_score"


@dg.asset(
    key=CHURN_RISK_SCORES,
    group_name=GROUP_DERIVED,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[CHURN_MODEL, RAW_CUSTOMERS, *FEATURE_SNAPSHOTS],
    kinds={"scikitlearn", "parquet"},
    owners=[OWNER_ML],
    check_specs=snapshot_check_specs(CHURN_RISK_SCORES),
    metadata={"family": DERIVED_FAMILY, "family_version": load_registry().family(DERIVED_FAMILY).version,
              "registry_version": load_registry().version, "model": "/".join(CHURN_MODEL.path)},
)
def churn_risk_scores(context: dg.AssetExecutionContext, offline: OfflineStoreResource,
                      models: ModelStoreResource) -> dg.MaterializeResult:
    """churn_risk_score: the champion churn model's probability per user of snapshot D, a feature like
    any other (registry family `derived`), pushed online with the rest.

    Each day's user vectors (every snapshot family joined per user) go through the champion's own
    stored expansion, as in training. Without a champion every score is null, and the metadata says so;
    that is not a failure. A backfill scores older days with the current champion (see champion_version).
    """
    registry, store, model_store = load_registry(), offline.store(), models.store()
    family = registry.family(DERIVED_FAMILY)
    model_name = family.config["models"][CHURN_SCORE]
    champion = model_store.champion(model_name)
    model, spec = model_store.load(model_name, champion.version)[:2] if champion else (None, None)
    inputs = [f.name for f in registry.families.values() if not f.derived]
    days = [dt.date.fromisoformat(k) for k in sorted(context.partition_keys)]
    writes, problems, rows, nulls, last = [], {}, {}, 0, None
    for day in days:
        vectors = user_vectors(store, registry, day, inputs)
        snapshot = conform(score_users(vectors, CHURN_SCORE, model, spec), registry, family, day)
        writes.append(store.write("/".join(family.asset_path), snapshot, partition=day.isoformat(),
                                  metadata=snapshot_metadata(family), row_group_size=SNAPSHOT_ROW_GROUP))
        problems[day.isoformat()] = [str(v) for v in value_violations(snapshot, registry.list_features(family.name))]
        rows[day.isoformat()] = (snapshot.num_rows, known_user_count(store, day))
        nulls += snapshot.column(CHURN_SCORE).null_count
        last = snapshot
    if champion is None:
        status = f"no {model_name} champion yet: every {CHURN_SCORE} is null (not a failure)"
        context.log.warning("%s; promote a %s model and re-materialize to score", status, model_name)
    else:
        status = f"scored with the {model_name} champion {champion.version}"
        context.log.info("%s: %s partitions %s .. %s", status, len(writes), days[0], days[-1])
    scores = score_summary(last, CHURN_SCORE)
    spread = (f"; {days[-1]}: mean {scores['mean']:.3f}, p50 {scores['p50']:.3f}, p99 {scores['p99']:.3f}"
              if scores.get("mean") is not None else "")
    return dg.MaterializeResult(
        metadata={
            **write_metadata(writes, {f.name: f.description for f in registry.list_features(family.name)}),
            **summary(status + spread),
            "status": status,
            "model": "/".join(CHURN_MODEL.path),
            "champion_version": champion.version if champion else "none",
            "null_scores": nulls,
            "score_summary": dg.MetadataValue.json({"snapshot": days[-1].isoformat(), **scores}),
            "family_version": family.version,
            "computation_fingerprint": family_fingerprint(family),
        },
        check_results=[
            schema_result(CHURN_RISK_SCORES, registry.snapshot_schema(family.name), writes),
            values_result(CHURN_RISK_SCORES, problems, len(writes)),
            rows_result(CHURN_RISK_SCORES, rows),
        ],
    )


DERIVED_ASSETS = [churn_risk_scores]
