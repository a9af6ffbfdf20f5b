"""Model assets: train the churn and contact models, store every version, promote behind a gate.

Each materialization trains candidates on the current training set, writes a new version under
``<data>/models/<name>/<version>/`` (model, expansion, feature list, registry versions, training-data
fingerprint, metrics, plots, model card) and evaluates the blocking ``promotion_gate`` check: the
champion must beat its baseline on the out-of-time split and reach the AUC floor (FP_MODEL_AUC_FLOOR).
Only then does ``champion.json`` point at the new version; otherwise the previous champion stays, the
rejection is logged next to it and the check says why.
"""

import logging
from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from feature_platform.ml import churn, contact
from feature_platform.ml.model_store import ModelStore, training_fingerprint
from feature_platform.ml.plots import markdown_image
from feature_platform.ml.report import PLOT_TITLES, metrics_markdown, model_card, model_plots
from feature_platform.ml.training_sets import training_metadata
from feature_platform.orchestration.constants import (
    CHECK_PROMOTION_GATE,
    CHURN_MODEL,
    CONTACT_MODEL,
    CONTACT_TRAINING_SET,
    GROUP_MODELS,
    OWNER_ML,
    TRAINING_DATASET,
)
from feature_platform.orchestration.resources import PlatformResource
from feature_platform.orchestration.training.assets import table_name
from feature_platform.registry.registry import Registry, load_registry

# Progress of the long training steps: a Python logger under `feature_platform`, so the CLI prints it as it
# comes (Dagster's console logger is quiet during CLI runs) and Dagster records it in the run's logs.
log = logging.getLogger(__name__)

CHURN = "churn"
CONTACT = "contact"
CHURN_DESCRIPTION = """Churn model: logistic regression (L2, scaled), random forest and XGBoost, each tuned by one
search validated out of time and evaluated on a split by user (a fifth of the users held out with all
their rows) and an out-of-time split (the latest snapshot dates). The champion has the best out-of-time ROC-AUC; it is refitted on every labelled row
and stored as a new version. Baseline: logistic regression on recency (last_active_days) alone."""
CONTACT_DESCRIPTION = """Contact model (CTR/CVR): XGBoost on the user's point-in-time features, the listing, the
user-listing match and the view's context, evaluated like churn plus per-user ranking quality (NDCG@5,
precision@5 over the listings a user viewed). Baseline: each listing's historical contact rate on the
training rows."""


class ModelConfig(dg.Config):
    seed: int = Field(default=7, description="Seed of every split, search and model.")
    auc_floor: float | None = Field(default=None, description="Promotion floor on out-of-time ROC-AUC; default "
                                                              "FP_MODEL_AUC_FLOOR or 0.7.")


def _gate_spec(key: dg.AssetKey, baseline: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHECK_PROMOTION_GATE, asset=key, blocking=True,
        description=f"The champion's out-of-time ROC-AUC beats the {baseline} baseline on the same split and reaches "
                    "the AUC floor; otherwise the previous champion stays.",
    )


def registry_versions(registry: Registry) -> dict[str, str]:
    """The registry and input-family versions a model was trained on (derived families are never inputs)."""
    return {"registry": registry.version,
            **{f"family:{f.name}": f.version for f in registry.families.values() if not f.derived}}


def publish(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    *,
    name: str,
    key: dg.AssetKey,
    description: str,
    table: pa.Table,
    label: str,
    feature_names: list[str],
    result: Any,
    decide: Callable[[Any, float], tuple[bool, str]],
    auc_floor: float | None,
) -> dg.MaterializeResult:
    """Store the trained version, apply the gate, and report it all to Dagster."""
    settings = platform.settings()
    floor = settings.model_auc_floor if auc_floor is None else auc_floor
    registry = load_registry()
    promoted, decision = decide(result, floor)
    models = ModelStore(settings.models_dir)
    previous = models.champion(name)
    summary = training_metadata(table, label, registry)
    fingerprint = training_fingerprint(table)
    png = model_plots(name, result.evaluations, result.champion)
    card_args = dict(
        name=name, description=description, evaluations=result.evaluations, champion=result.champion,
        decision=decision, training=summary, feature_names=feature_names,
        expanded_columns=result.final_spec.columns, registry_versions=registry_versions(registry),
        training_fingerprint=fingerprint,
    )
    version = models.save_version(
        name,
        model=result.final_model,
        spec=result.final_spec,
        feature_names=feature_names,
        registry_versions=registry_versions(registry),
        training_fingerprint=fingerprint,
        metrics={"champion": result.champion, "seed": result.seed, "auc_floor": floor, "promoted": promoted,
                 "decision": decision, "splits": result.metrics()},
        plots=png,
        card=lambda v: model_card(version=v, plot_links={k: f"{k}.png" for k in png}, **card_args),
        info={"estimator": result.champion, "label": label, "training": summary, "seed": result.seed},
    )
    if promoted:
        models.promote(name, version.version, decision)
        context.log.info("%s: %s", name, decision)
    else:
        models.record_rejection(name, version.version, decision)
        context.log.warning("%s: %s; champion stays %s", name, decision, previous.version if previous else "(none)")
    champion = models.champion(name)
    stays = "" if promoted else (f"; the previous champion {previous.version} stays" if previous
                                 else "; there is no champion yet")
    oot = result.evaluations[churn.OOT]
    return dg.MaterializeResult(
        metadata={
            "version": version.version,
            "path": dg.MetadataValue.path(str(version.path)),
            "champion_estimator": result.champion,
            "promoted": promoted,
            "serving_version": champion.version if champion else "none",
            "oot_roc_auc": result.champion_oot_auc,
            "baseline_oot_roc_auc": result.baseline_oot_auc,
            "auc_floor": floor,
            "training_rows": summary["labelled_rows"],
            "training_fingerprint": fingerprint,
            "metrics": dg.MetadataValue.md(metrics_markdown(result.evaluations, result.champion)),
            **{f"plot_{k}": dg.MetadataValue.md(f"**{PLOT_TITLES[k]}**\n\n{markdown_image(v, k)}")
               for k, v in png.items()},
            "model_card": dg.MetadataValue.path(str(version.path / "model_card.md")),
            "top_features": dg.MetadataValue.json(dict(oot[result.champion].importance[:10])),
        },
        check_results=[dg.AssetCheckResult(
            asset_key=key, check_name=CHECK_PROMOTION_GATE, passed=promoted,
            severity=dg.AssetCheckSeverity.ERROR,
            description=decision + stays,
            metadata={"candidate_version": version.version, "serving_version": champion.version if champion else "none",
                      "oot_roc_auc": result.champion_oot_auc, "baseline_oot_roc_auc": result.baseline_oot_auc,
                      "auc_floor": floor},
        )],
    )


def _skipped(context: dg.AssetExecutionContext, platform: PlatformResource, name: str, key: dg.AssetKey,
             why: str) -> dg.MaterializeResult:
    """Nothing to learn from: no version is written, the champion (if any) stays, the gate warns."""
    champion = ModelStore(platform.settings().models_dir).champion(name)
    stays = f"the champion {champion.version} stays" if champion else "there is no champion"
    context.log.warning("%s: no model trained: %s; %s", name, why, stays)
    return dg.MaterializeResult(
        metadata={"status": f"skipped: {why}", "serving_version": champion.version if champion else "none"},
        check_results=[dg.AssetCheckResult(
            asset_key=key, check_name=CHECK_PROMOTION_GATE, passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"no model trained: {why}; {stays}",
        )],
    )


def model_inputs(table: pa.Table, registry: Registry) -> list[str]:
    """The registry features present in a training set, in registry order."""
    return [name for name in registry.features if name in table.column_names]


@dg.asset(
    key=CHURN_MODEL,
    group_name=GROUP_MODELS,
    deps=[TRAINING_DATASET],
    kinds={"scikitlearn", "xgboost"},
    owners=[OWNER_ML],
    check_specs=[_gate_spec(CHURN_MODEL, churn.BASELINE)],
    description=CHURN_DESCRIPTION,
)
def churn_model(context: dg.AssetExecutionContext, config: ModelConfig, platform: PlatformResource) -> dg.MaterializeResult:
    registry = load_registry()
    table = platform.store().read_table(table_name(TRAINING_DATASET))
    features = model_inputs(table, registry)
    result = churn.train_churn_models(table, features, registry, seed=config.seed, progress=log.info,
                                      horizon_days=platform.settings().churn_horizon_days)
    return publish(context, platform, name=CHURN, key=CHURN_MODEL, description=CHURN_DESCRIPTION,
                   table=table, label=churn.LABEL, feature_names=features, result=result,
                   decide=churn.promotion_decision, auc_floor=config.auc_floor)


@dg.asset(
    key=CONTACT_MODEL,
    group_name=GROUP_MODELS,
    deps=[CONTACT_TRAINING_SET],
    kinds={"xgboost"},
    owners=[OWNER_ML],
    check_specs=[_gate_spec(CONTACT_MODEL, contact.BASELINE)],
    description=CONTACT_DESCRIPTION,
)
def contact_model(context: dg.AssetExecutionContext, config: ModelConfig, platform: PlatformResource) -> dg.MaterializeResult:
    registry = load_registry()
    table = platform.store().read_table(table_name(CONTACT_TRAINING_SET))
    if not contact.has_labelled_rows(table):
        return _skipped(context, platform, CONTACT, CONTACT_MODEL,
                        "the data has no listing views or impressions (e.g. a transactions-only source)")
    features = model_inputs(table, registry)
    result = contact.train_contact_model(table, features, registry, seed=config.seed, progress=log.info)
    return publish(context, platform, name=CONTACT, key=CONTACT_MODEL, description=CONTACT_DESCRIPTION,
                   table=table, label=contact.LABEL, feature_names=features, result=result,
                   decide=contact.promotion_decision, auc_floor=config.auc_floor)


MODEL_ASSETS = [churn_model, contact_model]
