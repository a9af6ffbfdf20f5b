"""Daily tiles: per family with a time window, one partition per day of per-user partial aggregates,
and the review topic model the review tiles use.

A tile of day X is computed from the raw events of X only (plus the unpartitioned listings, reviews
and the review topic model), so a late event re-materializes one tile partition, and the snapshots'
partition mappings tell Dagster which snapshot days that makes stale (X .. X+89 for a 90-day family).

(No ``from __future__ import annotations`` in Dagster files: Dagster inspects the real annotations.)
"""

import datetime as dt

import dagster as dg

from feature_platform.features import topics
from feature_platform.features.engine import has_tiles, write_tiles
from feature_platform.orchestration.constants import (
    DAILY_PARTITIONS,
    GROUP_TILES,
    OWNER_DATA,
    RAW_EVENTS,
    RAW_LISTINGS,
    RAW_REVIEWS,
    REVIEW_TOPIC_MODEL,
    source_key,
)
from feature_platform.orchestration.constants import tile_key as constants_tile_key
from feature_platform.orchestration.metadata import summary, write_metadata
from feature_platform.orchestration.resources import ModelStoreResource, OfflineStoreResource
from feature_platform.registry.fingerprint import family_fingerprint
from feature_platform.registry.registry import Family, load_registry

TOPIC_MODEL_DIR = topics.MODELS_FOLDER
# Unpartitioned inputs a tile may read (registry sources); raw/events maps partition to partition.
_UNPARTITIONED_INPUTS = (RAW_LISTINGS, RAW_REVIEWS, REVIEW_TOPIC_MODEL)


def tile_key(family: Family) -> dg.AssetKey:
    return constants_tile_key(family.name)


def topic_config(offline: OfflineStoreResource) -> topics.TopicModelConfig:
    family = load_registry().family("review")
    return topics.TopicModelConfig(topics=int(family.config["topics"]), cutoff=offline.settings().topic_model_cutoff)


def tile_artifacts(family: Family, offline: OfflineStoreResource, models: ModelStoreResource) -> dict[str, object]:
    """The fitted objects a family's tiles use: the current review topic model for the review family."""
    if "features/review_topic_model" not in family.sources:
        return {}
    model = topics.load_current_or_none(models.path() / TOPIC_MODEL_DIR)
    # No model because the reviews cannot give one: topics are null. No model although they could: leave
    # the artifact out, so the family asks for features/review_topic_model to be materialized.
    if model is not None or not topics.has_usable_text(offline.store().read_table("raw/reviews"), topic_config(offline)):
        return {"review_topic_model": model}
    return {}


def _tile_asset(family: Family) -> dg.AssetsDefinition:
    key = tile_key(family)
    deps: list[dg.AssetDep | dg.AssetKey] = [dg.AssetDep(RAW_EVENTS), *(k for k in map(source_key, family.sources) if k in _UNPARTITIONED_INPUTS)]
    description = (
        f"Daily partial aggregates of the {family.name} family: one row per user with data that day, "
        f"computed from that day's raw data only (`tiles/{family.name}/<YYYY-MM-DD>.parquet`). The "
        f"features/{family.asset} snapshots merge them over their windows."
    )

    @dg.asset(
        key=key,
        group_name=GROUP_TILES,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        kinds={"duckdb", "parquet"},
        owners=[OWNER_DATA],
        description=description,
        metadata={"family": family.name, "family_version": family.version},
    )
    def _asset(context: dg.AssetExecutionContext, offline: OfflineStoreResource,
               models: ModelStoreResource) -> dg.MaterializeResult:
        store = offline.store()
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        history_start = dt.date.fromisoformat(context.assets_def.partitions_def.get_first_partition_key())
        writes = []
        every = max(1, len(days) // 4)
        for index, (day, write) in enumerate(
                write_tiles(store, family, days, tile_artifacts(family, offline, models), history_start), start=1):
            writes.append(write)
            if index % every == 0 or index == len(days):
                context.log.info("%s tiles: %s/%s days (%s, %s users)", family.name, index, len(days), day, write.rows)
        return dg.MaterializeResult(metadata={
            **write_metadata(writes),
            "family_version": family.version,
            "computation_fingerprint": family_fingerprint(family),
        })

    return _asset


@dg.asset(
    key=REVIEW_TOPIC_MODEL,
    group_name=GROUP_TILES,
    deps=[RAW_REVIEWS],
    kinds={"scikitlearn"},
    owners=[OWNER_DATA],
)
def review_topic_model(context: dg.AssetExecutionContext, offline: OfflineStoreResource,
                       models: ModelStoreResource) -> dg.MaterializeResult:
    """The LDA topic model behind topic_vector, fitted on review texts before a cut-off and versioned.

    Topic vectors of every snapshot come from the model version current when they were computed, so
    they mean the same thing across partitions; refit deliberately (materialize this asset), not daily.
    Cut-off: FP_TOPIC_MODEL_CUTOFF (ISO date, UTC) or, unset, every review present at fit time.
    """
    reviews = offline.store().read_table("raw/reviews")
    config = topic_config(offline)
    if not topics.has_usable_text(reviews, config):
        context.log.warning("no review text to fit a topic model on; review topic features will be null")
        return dg.MaterializeResult(metadata={"status": "skipped: no usable review text", "reviews": reviews.num_rows,
                                              **summary("skipped: no usable review text")})
    model = topics.fit_topic_model(reviews, config)
    path = topics.save(model, models.path() / TOPIC_MODEL_DIR)
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


TILE_ASSETS = [review_topic_model,
               *(_tile_asset(f) for f in load_registry().families.values() if not f.derived and has_tiles(f))]
