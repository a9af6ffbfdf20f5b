"""Feature snapshot assets: one daily-partitioned asset per registry family, plus the topic model.

Each family asset computes its snapshots with the family's pure module (features/), writes one
Parquet partition per day, and reports schema, row counts, a per-feature summary and the blocking
registry checks. A backfill over many days is a single run: raw inputs are loaded once.
"""

import datetime as dt

import dagster as dg

from feature_platform.features import topics
from feature_platform.features.base import LOOKBACK_DAYS, SnapshotInputs, compute_snapshots
from feature_platform.features.quality import summarize, summary_markdown, value_violations
from feature_platform.orchestration.constants import (
    DAILY_PARTITIONS,
    GROUP_FEATURES,
    OWNER_DATA,
    RAW_CUSTOMERS,
    RAW_EVENTS,
    RAW_LISTINGS,
    RAW_REVIEWS,
    REVIEW_TOPIC_MODEL,
)
from feature_platform.orchestration.features.checks import (
    rows_result,
    schema_result,
    snapshot_check_specs,
    values_result,
)
from feature_platform.orchestration.metadata import write_metadata
from feature_platform.orchestration.resources import PlatformResource
from feature_platform.registry.fingerprint import family_fingerprint
from feature_platform.registry.registry import Family, load_registry

TOPIC_MODEL_DIR = "review_topic_model"

# How each raw source a family reads maps to an upstream asset. Events are read over the 90-day
# lookback, so Dagster knows that a late event for day X makes snapshots X .. X+89 stale.
_SOURCE_DEPS = {
    "raw/events": dg.AssetDep(
        RAW_EVENTS,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-(LOOKBACK_DAYS - 1), allow_nonexistent_upstream_partitions=True
        ),
    ),
    "raw/customers": dg.AssetDep(RAW_CUSTOMERS),
    "raw/reviews": dg.AssetDep(RAW_REVIEWS),
    "raw/listings": dg.AssetDep(RAW_LISTINGS),
    "features/review_topic_model": dg.AssetDep(REVIEW_TOPIC_MODEL),
}


def _family_asset(family: Family) -> dg.AssetsDefinition:
    registry = load_registry()
    key = dg.AssetKey(list(family.asset_path))
    features = registry.list_features(family.name)
    # Every snapshot has one row per known user, so every family depends on the customer list.
    deps = [_SOURCE_DEPS[s] for s in dict.fromkeys(("raw/customers", *family.sources))]
    description = (
        f"{family.description}\n\nOne row per user known at D, one Parquet file per day "
        f"(features/{family.asset}/<YYYY-MM-DD>.parquet). Features: {', '.join(f.name for f in features)}."
    )

    @dg.asset(
        key=key,
        group_name=GROUP_FEATURES,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        kinds={"duckdb", "parquet"},
        owners=[OWNER_DATA],
        check_specs=snapshot_check_specs(key),
        description=description,
        metadata={"family": family.name, "family_version": family.version, "registry_version": registry.version},
    )
    def _asset(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        store = platform.store()
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        artifacts = {}
        if "features/review_topic_model" in family.sources:
            model = topics.load_current_or_none(platform.settings().models_dir / TOPIC_MODEL_DIR)
            # No model because the reviews cannot give one: topics are null. No model although they could:
            # leave the artifact out, so the family asks for features/review_topic_model to be materialized.
            if model is not None or not topics.has_usable_text(store.read_table("raw/reviews"), _topic_config(platform)):
                artifacts["review_topic_model"] = model
        inputs = SnapshotInputs.from_store(store, days[0], days[-1])
        writes, problems, rows, last = [], {}, {}, None
        try:
            for day, snapshot, known_users in compute_snapshots(registry, family, inputs, days, artifacts):
                writes.append(store.write("/".join(family.asset_path), snapshot, partition=day.isoformat()))
                problems[day.isoformat()] = [str(v) for v in value_violations(snapshot, features)]
                rows[day.isoformat()] = (snapshot.num_rows, known_users)
                last = snapshot
        finally:
            inputs.close()
        context.log.info("%s: wrote %s partitions %s .. %s", family.name, len(writes), days[0], days[-1])
        summary = summarize(last, features)
        return dg.MaterializeResult(
            metadata={
                **write_metadata(writes),
                "family_version": family.version,
                "computation_fingerprint": family_fingerprint(family),
                "feature_summary": dg.MetadataValue.md(f"Snapshot {days[-1]}:\n\n{summary_markdown(summary)}"),
                **({"topic_model_version": artifacts["review_topic_model"].version}
                   if artifacts.get("review_topic_model") is not None else {}),
            },
            check_results=[
                schema_result(key, registry.snapshot_schema(family.name), writes),
                values_result(key, problems, len(writes)),
                rows_result(key, rows),
            ],
        )

    return _asset


@dg.asset(
    key=REVIEW_TOPIC_MODEL,
    group_name=GROUP_FEATURES,
    deps=[RAW_REVIEWS],
    kinds={"scikitlearn"},
    owners=[OWNER_DATA],
)
def review_topic_model(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
    """The LDA topic model behind topic_vector, fitted on review texts before a cut-off and versioned.

    Topic vectors of every snapshot come from the model version current when they were computed, so
    they mean the same thing across partitions; refit deliberately (materialize this asset), not daily.
    Cut-off: FP_TOPIC_MODEL_CUTOFF (ISO date, UTC) or, unset, every review present at fit time.
    """
    settings = platform.settings()
    reviews = platform.store().read_table("raw/reviews")
    config = _topic_config(platform)
    if not topics.has_usable_text(reviews, config):
        context.log.warning("no review text to fit a topic model on; review topic features will be null")
        return dg.MaterializeResult(metadata={"status": "skipped: no usable review text", "reviews": reviews.num_rows})
    model = topics.fit_topic_model(reviews, config)
    path = topics.save(model, settings.models_dir / TOPIC_MODEL_DIR)
    words = "\n".join(f"| topic_{i} | {', '.join(w)} |" for i, w in enumerate(model.top_words(8)))
    return dg.MaterializeResult(
        metadata={
            "status": "fitted",
            "version": model.version,
            "path": dg.MetadataValue.path(str(path)),
            "fitted_on": dg.MetadataValue.json(model.fitted_on),
            "top_words": dg.MetadataValue.md(f"| topic | top words |\n| --- | --- |\n{words}"),
        }
    )


def _topic_config(platform: PlatformResource) -> topics.TopicModelConfig:
    family = load_registry().family("review")
    return topics.TopicModelConfig(topics=int(family.config["topics"]), cutoff=platform.settings().topic_model_cutoff)


# Derived families (model outputs) are computed downstream of their models: orchestration/derived/.
FEATURE_ASSETS = [review_topic_model, *(_family_asset(f) for f in load_registry().families.values() if not f.derived)]
