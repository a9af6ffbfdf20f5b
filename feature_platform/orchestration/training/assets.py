"""Training-set assets: point-in-time correct, labelled tables built from the feature snapshots.

Both are unpartitioned Parquet files in the offline store (``training/<name>.parquet``), rebuilt
from every snapshot partition they need; see :mod:`feature_platform.ml.training_sets` for the
labels and the point-in-time rule.

Both are built at pinned feature-family versions: ``feature_versions`` in the run config (family -> semver),
every other family at the registry's current version. Every snapshot a row joins must be of its family's
version, else the materialization fails naming the family, the dates and the versions found
(offline/versions.py); the versions used are recorded in the file and in the materialization's metadata.
"""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from feature_platform.ml.training_sets import (
    churn_training_set,
    contact_training_set,
    default_churn_dates,
    last_event_day,
    training_features,
    training_metadata,
    training_versions,
)
from feature_platform.offline.store import OfflineStore, WriteResult
from feature_platform.offline.versions import recorded_family_versions, training_set_metadata
from feature_platform.orchestration.constants import (
    CONTACT_TRAINING_SET,
    FEATURE_SNAPSHOTS,
    GROUP_TRAINING,
    OWNER_ML,
    RAW_CUSTOMERS,
    RAW_EVENTS,
    RAW_LISTINGS,
    TRAINING_DATASET,
)
from feature_platform.orchestration.metadata import write_metadata
from feature_platform.orchestration.resources import OfflineStoreResource
from feature_platform.registry.registry import Registry, load_registry


def table_name(key: dg.AssetKey) -> str:
    """Where an asset's table lives in the offline store: its key path (training/<name>)."""
    return "/".join(key.path)


FEATURE_VERSIONS_DESCRIPTION = ("Pinned feature-family versions, family -> semver (e.g. {\"activity\": \"1.1.0\"}); "
                                "other families: the registry's current version. A snapshot of another version fails "
                                "the run.")


class ContactTrainingSetConfig(dg.Config):
    feature_versions: dict[str, str] | None = Field(default=None, description=FEATURE_VERSIONS_DESCRIPTION)


class ChurnTrainingSetConfig(dg.Config):
    start_date: str | None = Field(default=None, description="First snapshot date (YYYY-MM-DD); default: the first.")
    end_date: str | None = Field(default=None, description="Last snapshot date (YYYY-MM-DD); default: the last one "
                                                           "with a full label horizon.")
    every_days: int = Field(default=7, description="Days between snapshot dates, counted back from the last one.")
    horizon_days: int | None = Field(default=None, description="Label horizon in days; default FP_CHURN_HORIZON_DAYS "
                                                               "or 30.")
    feature_versions: dict[str, str] | None = Field(default=None, description=FEATURE_VERSIONS_DESCRIPTION)


def _write(store: OfflineStore, key: dg.AssetKey, table: pa.Table, versions: dict[str, str]) -> WriteResult:
    """The training set's file, recording the family versions it was built at (what model manifests copy)."""
    return store.write(table_name(key), table, metadata=training_set_metadata(versions))


def _versions(registry: Registry, pin: dict[str, str] | None) -> dict[str, str]:
    return training_versions(registry, training_features(registry), pin)


def _metadata(table: pa.Table, label: str, write, extra: dict) -> dict:
    registry = load_registry()
    summary = training_metadata(table, label, registry)
    return {
        **write_metadata([write]),
        "labelled_rows": summary["labelled_rows"],
        "label_rate": summary["label_rate"] if summary["label_rate"] is not None else float("nan"),
        "snapshot_date_min": summary["snapshot_date_min"],
        "snapshot_date_max": summary["snapshot_date_max"],
        "registry_version": summary["registry_version"],
        "feature_versions": dg.MetadataValue.json(summary["feature_versions"]),
        "family_versions": dg.MetadataValue.json(recorded_family_versions(write.schema) or {}),
        **extra,
    }


@dg.asset(
    key=TRAINING_DATASET,
    group_name=GROUP_TRAINING,
    deps=[*FEATURE_SNAPSHOTS, RAW_EVENTS, RAW_CUSTOMERS],
    kinds={"duckdb", "parquet"},
    owners=[OWNER_ML],
)
def training_dataset(
    context: dg.AssetExecutionContext, config: ChurnTrainingSetConfig, offline: OfflineStoreResource
) -> dg.MaterializeResult:
    """Churn training set: one row per (user, snapshot date D) with every user feature as of snapshot D.

    Label ``churned`` = 1 when the user has no event at all (no purchase, no activity) in the
    FP_CHURN_HORIZON_DAYS days after D; rows whose horizon runs past the last raw/events day are
    kept unlabelled (``labelled`` false, ``churned`` null), never labelled 0. Default snapshot
    dates: weekly, counting back from the last date with a full label horizon.
    """
    store, registry = offline.store(), load_registry()
    horizon = config.horizon_days or offline.settings().churn_horizon_days
    dates = default_churn_dates(store, registry, horizon, every_days=config.every_days)
    first = dt.date.fromisoformat(config.start_date) if config.start_date else dates[0]
    last = dt.date.fromisoformat(config.end_date) if config.end_date else dates[-1]
    dates = [d for d in dates if first <= d <= last]
    if not dates:
        raise ValueError(f"no snapshot date with a full {horizon}-day label horizon in {first} .. {last}")
    context.log.info("churn training set: %s snapshot dates %s .. %s, horizon %s days", len(dates), dates[0],
                     dates[-1], horizon)
    versions = _versions(registry, config.feature_versions)
    table = churn_training_set(store, registry, dates, horizon_days=horizon, versions=versions)
    write = _write(store, TRAINING_DATASET, table, versions)
    rates = _label_rate_by_date(table)
    return dg.MaterializeResult(metadata=_metadata(table, "churned", write, {
        "horizon_days": horizon,
        "snapshot_dates": len(dates),
        "last_event_day": last_event_day(store).isoformat(),
        "label_rate_by_snapshot_date": dg.MetadataValue.md(rates),
    }))


@dg.asset(
    key=CONTACT_TRAINING_SET,
    group_name=GROUP_TRAINING,
    deps=[*FEATURE_SNAPSHOTS, RAW_EVENTS, RAW_CUSTOMERS, RAW_LISTINGS],
    kinds={"duckdb", "parquet"},
    owners=[OWNER_ML],
)
def contact_training_set_asset(context: dg.AssetExecutionContext, config: ContactTrainingSetConfig,
                               offline: OfflineStoreResource) -> dg.MaterializeResult:
    """Contact training set: one row per listing view or impression, labelled 1 when the same user
    contacted or favourited that listing in the same session or within 24 h.

    User features come from the latest snapshot strictly before the view (an ASOF join; a view with no
    earlier snapshot keeps null features and ``<family>_snapshot_missing``), with the listing's category,
    city, price, premium flag and image count, and the view's day of week, hour and device.
    """
    store, registry = offline.store(), load_registry()
    versions = _versions(registry, config.feature_versions)
    table = contact_training_set(store, registry, versions=versions)
    write = _write(store, CONTACT_TRAINING_SET, table, versions)
    context.log.info("contact training set: %s views", table.num_rows)
    missing = int(pc.sum(table.column("activity_snapshot_missing")).as_py() or 0) if table.num_rows else 0
    return dg.MaterializeResult(metadata=_metadata(table, "contacted", write, {"rows_without_snapshot": missing}))


def _label_rate_by_date(table: pa.Table) -> str:
    grouped = table.filter(pc.fill_null(table.column("labelled"), False)).group_by("snapshot_date").aggregate(
        [("churned", "mean"), ("churned", "count")]).sort_by("snapshot_date")
    lines = ["| snapshot date | labelled rows | churn rate |", "| --- | --- | --- |"]
    for day, rate, count in zip(grouped.column("snapshot_date").to_pylist(), grouped.column("churned_mean").to_pylist(),
                                grouped.column("churned_count").to_pylist(), strict=True):
        lines.append(f"| {day} | {count:,} | {rate:.3f} |")
    return "\n".join(lines)


TRAINING_ASSETS = [training_dataset, contact_training_set_asset]
