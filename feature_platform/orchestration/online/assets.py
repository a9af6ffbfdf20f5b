"""The online push: the latest feature snapshot, every family joined per user, served from Redis.

Daily-partitioned like the snapshots and downstream of them, so their blocking checks gate it: a
snapshot that fails its schema, value or row checks is never pushed. A run over many days (a
backfill) pushes only its latest day — the store refuses to replace a newer served snapshot with an
older one anyway — and says so in the metadata. Derived features (model scores such as
churn_risk_score) are part of the vector; a day that was never scored serves them as null, and the
metadata names the missing derived families. The version records which family version each pushed snapshot
file was computed at (offline/versions.py), for serving's check against a model's (serving/versions.py).
"""

import datetime as dt

import dagster as dg

from feature_platform.offline.snapshots import missing_derived, user_vectors
from feature_platform.offline.versions import day_family_versions
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration.constants import (
    DAILY_PARTITIONS,
    DERIVED_SNAPSHOTS,
    FEATURE_SNAPSHOTS,
    GROUP_ONLINE,
    ONLINE_PUSH,
    OWNER_DATA,
)
from feature_platform.orchestration.metadata import summary
from feature_platform.orchestration.resources import OfflineStoreResource, OnlineStoreResource
from feature_platform.registry.registry import load_registry


@dg.asset(
    key=ONLINE_PUSH,
    group_name=GROUP_ONLINE,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[*FEATURE_SNAPSHOTS, *DERIVED_SNAPSHOTS],
    kinds={"redis"},
    owners=[OWNER_DATA],
)
def user_features_push(context: dg.AssetExecutionContext, offline: OfflineStoreResource,
                       online: OnlineStoreResource) -> dg.MaterializeResult:
    """Every user's whole feature vector of snapshot D as one Redis value under a new version; the
    served-version pointer moves only once every key is written, and never back to an older date.
    Keys expire after twice the features' staleness tolerance. Layout: README, 'Online store'."""
    registry = load_registry()
    day = dt.date.fromisoformat(max(context.partition_keys))
    store = offline.store()
    table = user_vectors(store, registry, day)
    versions = day_family_versions(store, registry, day)
    unscored = missing_derived(store, registry, day)
    if unscored:
        context.log.warning("no %s partition for %s: its features are served as null", ", ".join(unscored), day)
    with online.connected() as client:
        result = OnlineStore(client, registry, online.prefix).push(table, day, family_versions=versions)
    superseded = sorted(k for k in context.partition_keys if k != day.isoformat())
    context.log.info("online push %s: %s (%s keys, %.1f s)", day, result.reason, result.keys, result.seconds)
    return dg.MaterializeResult(metadata={
        **summary(f"{result.reason}: version {result.version or 'none'}, {result.keys:,} keys, "
                  f"{result.keys_per_second:,.0f} keys/s ({online.describe()})"),
        "served": result.served,
        "status": result.reason,
        "version": result.version or "none",
        "family_versions": dg.MetadataValue.json(versions),
        "previous_version": result.previous or "none",
        "keys_written": result.keys,
        "bytes_written": result.bytes,
        "seconds": round(result.seconds, 3),
        "keys_per_second": round(result.keys_per_second, 1),
        "bytes_per_feature_value": round(result.bytes / max(1, result.keys * (table.num_columns - 1)), 2),
        "deleted_versions": dg.MetadataValue.json(result.deleted_versions),
        "online_store": online.describe(),
        "derived_families_missing": dg.MetadataValue.json(unscored),
        # A range, not a list: the same metadata lands on every partition of a backfill's run.
        **({"partitions_not_pushed": f"{superseded[0]} .. {superseded[-1]} ({len(superseded)} days): "
                                     f"a run over many days pushes only its latest, {day}"}
           if superseded else {}),
    })


ONLINE_ASSETS = [user_features_push]
