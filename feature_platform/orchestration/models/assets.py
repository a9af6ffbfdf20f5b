"""Model assets: train the churn and contact models, store every version, promote behind a gate.

Each materialization trains candidates on the current training set, writes a new version under
``<data>/models/<name>/<version>/`` (model, expansion, feature list, registry and family versions, training-data
fingerprint, metrics, plots, model card) and evaluates the blocking ``promotion_gate`` check: the
champion must beat its baseline on the out-of-time split and reach the AUC floor (FP_MODEL_AUC_FLOOR).
Only then does ``champion.json`` point at the new version; otherwise the previous champion stays, the
rejection is logged next to it and the check says why.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from feature_platform.ml import churn, contact
from feature_platform.ml.evaluation import TooLittleDataError
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
from feature_platform.orchestration.metadata import summary
from feature_platform.orchestration.resources import ModelStoreResource, OfflineStoreResource
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


@dataclass(frozen=True)
class Trained:
    """One model family's training outcome: what is stored, gated and reported."""

    name: str
    key: dg.AssetKey
    description: str
    table: pa.Table
    label: str
    feature_names: list[str]
    result: Any  # churn.ChurnTrainingResult or contact.ContactTrainingResult


@dataclass(frozen=True)
class Gate:
    """The promotion gate's verdict on a trained model."""

    promoted: bool
    decision: str
    auc_floor: float


@dataclass(frozen=True)
class StoredVersion:
    version: Any  # model_store.ModelVersion
    plots: dict[str, bytes]
    training: dict[str, Any]
    fingerprint: str


def judge(trained: Trained, decide: Callable[[Any, float], tuple[bool, str]], auc_floor: float) -> Gate:
    promoted, decision = decide(trained.result, auc_floor)
    return Gate(promoted, decision, auc_floor)


def store_version(models: ModelStore, trained: Trained, gate: Gate, registry: Registry) -> StoredVersion:
    """Write the trained version (model, expansion, metrics, plots, model card), promoted or not."""
    result = trained.result
    summary = training_metadata(trained.table, trained.label, registry)
    fingerprint = training_fingerprint(trained.table)
    png = model_plots(trained.name, result.evaluations, result.champion)
    versions = registry_versions(registry)
    card_args = dict(
        name=trained.name, description=trained.description, evaluations=result.evaluations, champion=result.champion,
        decision=gate.decision, training=summary, feature_names=trained.feature_names,
        expanded_columns=result.final_spec.columns, registry_versions=versions, training_fingerprint=fingerprint,
    )
    version = models.save_version(
        trained.name,
        model=result.final_model,
        spec=result.final_spec,
        feature_names=trained.feature_names,
        registry_versions=versions,
        family_versions=summary["family_versions"],  # recorded in the training set's file
        training_fingerprint=fingerprint,
        metrics={"champion": result.champion, "seed": result.seed, "auc_floor": gate.auc_floor,
                 "promoted": gate.promoted, "decision": gate.decision, "splits": result.metrics()},
        plots=png,
        card=lambda v: model_card(version=v, plot_links={k: f"{k}.png" for k in png}, **card_args),
        info={"estimator": result.champion, "label": trained.label, "training": summary, "seed": result.seed},
    )
    return StoredVersion(version, png, summary, fingerprint)


def apply_gate(context: dg.AssetExecutionContext, models: ModelStore, name: str, version: str, gate: Gate,
               previous: Any) -> None:
    """Promote the version, or record why not (the previous champion, if any, stays)."""
    if gate.promoted:
        models.promote(name, version, gate.decision)
        context.log.info("%s: %s", name, gate.decision)
    else:
        models.record_rejection(name, version, gate.decision)
        context.log.warning("%s: %s; champion stays %s", name, gate.decision, previous.version if previous else "(none)")


def report(trained: Trained, stored: StoredVersion, gate: Gate, champion: Any, previous: Any) -> dg.MaterializeResult:
    """The materialization's metadata and the promotion gate's check result."""
    result, version = trained.result, stored.version
    stays = "" if gate.promoted else (f"; the previous champion {previous.version} stays" if previous
                                      else "; there is no champion yet")
    serving = champion.version if champion else "none"
    oot = result.evaluations[churn.OOT]
    verdict = "promoted" if gate.promoted else "NOT promoted"
    return dg.MaterializeResult(
        metadata={
            **summary(f"{result.champion}: out-of-time ROC-AUC {result.champion_oot_auc:.3f} (baseline "
                      f"{result.baseline_oot_auc:.3f}, floor {gate.auc_floor:.2f}), "
                      f"{stored.training['labelled_rows']:,} labelled rows; {verdict}; serving {serving}",
                      f"model card: {version.path / 'model_card.md'}"),
            "version": version.version,
            "path": dg.MetadataValue.path(str(version.path)),
            "champion_estimator": result.champion,
            "promoted": gate.promoted,
            "serving_version": serving,
            "oot_roc_auc": result.champion_oot_auc,
            "baseline_oot_roc_auc": result.baseline_oot_auc,
            "auc_floor": gate.auc_floor,
            "training_rows": stored.training["labelled_rows"],
            "training_fingerprint": stored.fingerprint,
            "metrics": dg.MetadataValue.md(metrics_markdown(result.evaluations, result.champion)),
            **{f"plot_{k}": dg.MetadataValue.md(f"**{PLOT_TITLES[k]}**\n\n{markdown_image(v, k)}")
               for k, v in stored.plots.items()},
            "model_card": dg.MetadataValue.path(str(version.path / "model_card.md")),
            "top_features": dg.MetadataValue.json(dict(oot[result.champion].importance[:10])),
        },
        check_results=[dg.AssetCheckResult(
            asset_key=trained.key, check_name=CHECK_PROMOTION_GATE, passed=gate.promoted,
            severity=dg.AssetCheckSeverity.ERROR,
            description=gate.decision + stays,
            metadata={"candidate_version": version.version, "serving_version": serving,
                      "oot_roc_auc": result.champion_oot_auc, "baseline_oot_roc_auc": result.baseline_oot_auc,
                      "auc_floor": gate.auc_floor},
        )],
    )


def publish(context: dg.AssetExecutionContext, models: ModelStore, trained: Trained, gate: Gate) -> dg.MaterializeResult:
    """Store the trained version, apply the gate, and report it all to Dagster."""
    previous = models.champion(trained.name)
    stored = store_version(models, trained, gate, load_registry())
    apply_gate(context, models, trained.name, stored.version.version, gate, previous)
    return report(trained, stored, gate, models.champion(trained.name), previous)


def _skipped(context: dg.AssetExecutionContext, models: ModelStore, name: str, key: dg.AssetKey,
             why: str) -> dg.MaterializeResult:
    """Nothing to learn from: no version is written, the champion (if any) stays, the gate warns."""
    champion = models.champion(name)
    stays = f"the champion {champion.version} stays" if champion else "there is no champion"
    context.log.warning("%s: no model trained: %s; %s", name, why, stays)
    return dg.MaterializeResult(
        metadata={"status": f"skipped: {why}", "serving_version": champion.version if champion else "none",
                  **summary(f"skipped: {why}")},
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
def churn_model(context: dg.AssetExecutionContext, config: ModelConfig, offline: OfflineStoreResource,
                models: ModelStoreResource) -> dg.MaterializeResult:
    registry, settings = load_registry(), offline.settings()
    table = offline.store().read_table(table_name(TRAINING_DATASET))
    features = model_inputs(table, registry)
    try:
        result = churn.train_churn_models(table, features, registry, seed=config.seed, progress=log.info,
                                          horizon_days=settings.churn_horizon_days)
    except TooLittleDataError as exc:
        return _skipped(context, models.store(), CHURN, CHURN_MODEL,
                        f"{exc}; a snapshot date is labelled once its label horizon of events follows it, "
                        "so a longer history gives more labelled dates")
    trained = Trained(CHURN, CHURN_MODEL, CHURN_DESCRIPTION, table, churn.LABEL, features, result)
    floor = settings.model_auc_floor if config.auc_floor is None else config.auc_floor
    return publish(context, models.store(), trained, judge(trained, churn.promotion_decision, floor))


@dg.asset(
    key=CONTACT_MODEL,
    group_name=GROUP_MODELS,
    deps=[CONTACT_TRAINING_SET],
    kinds={"xgboost"},
    owners=[OWNER_ML],
    check_specs=[_gate_spec(CONTACT_MODEL, contact.BASELINE)],
    description=CONTACT_DESCRIPTION,
)
def contact_model(context: dg.AssetExecutionContext, config: ModelConfig, offline: OfflineStoreResource,
                  models: ModelStoreResource) -> dg.MaterializeResult:
    registry, settings = load_registry(), offline.settings()
    table = offline.store().read_table(table_name(CONTACT_TRAINING_SET))
    if not contact.has_labelled_rows(table):
        return _skipped(context, models.store(), CONTACT, CONTACT_MODEL,
                        "the data has no listing views or impressions (e.g. a transactions-only source)")
    features = model_inputs(table, registry)
    try:
        result = contact.train_contact_model(table, features, registry, seed=config.seed, progress=log.info)
    except TooLittleDataError as exc:
        return _skipped(context, models.store(), CONTACT, CONTACT_MODEL, f"{exc}; a longer history gives more")
    trained = Trained(CONTACT, CONTACT_MODEL, CONTACT_DESCRIPTION, table, contact.LABEL, features, result)
    floor = settings.model_auc_floor if config.auc_floor is None else config.auc_floor
    return publish(context, models.store(), trained, judge(trained, contact.promotion_decision, floor))


MODEL_ASSETS = [churn_model, contact_model]
