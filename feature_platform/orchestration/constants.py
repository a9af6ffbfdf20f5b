"""Shared Dagster constants: the one daily partitions definition, asset keys, groups, owners.

Import these; never re-spell a key or a group name as a string elsewhere.
"""

from __future__ import annotations

import dagster as dg

from feature_platform.offline.calendar import DEFAULT_PARTITIONS_START


def daily_partitions(start: str) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start`` (the data's first day, offline/calendar.py) to yesterday: a day is
    materialized once it is over. Events before ``start`` are quarantined with the reason
    timestamp_before_partitions_start (nothing is dropped)."""
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=0)


# The partitions the assets are declared with; `build_defs` (definitions.py) gives every partitioned asset
# the data directory's own start instead. Read a running asset's partitions from its context, not from here.
DAILY_PARTITIONS = daily_partitions(DEFAULT_PARTITIONS_START)

GROUP_RAW = "raw"
GROUP_TILES = "tiles"  # per-user, per-day partial aggregates: between raw inputs and feature snapshots
GROUP_FEATURES = "features"
GROUP_TRAINING = "training"
GROUP_MODELS = "models"
GROUP_DERIVED = "derived"  # model outputs as features, after the models and before the online push
GROUP_ONLINE = "online"

OWNER_DATA = "team:data-platform"
OWNER_ML = "team:ml"

RAW_CUSTOMERS = dg.AssetKey(["raw", "customers"])
RAW_EVENTS = dg.AssetKey(["raw", "events"])
RAW_REVIEWS = dg.AssetKey(["raw", "reviews"])
RAW_LISTINGS = dg.AssetKey(["raw", "listings"])
RAW_UNPARTITIONED = (RAW_CUSTOMERS, RAW_REVIEWS, RAW_LISTINGS)

# Daily tiles (one daily-partitioned asset per family with a time window; the key is tiles/<family>).
TILES_ACTIVITY = dg.AssetKey(["tiles", "activity"])
TILES_LEAD = dg.AssetKey(["tiles", "lead"])
TILES_ENGAGEMENT = dg.AssetKey(["tiles", "engagement"])
TILES_REVIEW = dg.AssetKey(["tiles", "review"])
TILES_AFFINITY = dg.AssetKey(["tiles", "affinity"])
TILES_LIFETIME = dg.AssetKey(["tiles", "lifetime"])
TILE_KEYS = (TILES_ACTIVITY, TILES_LEAD, TILES_ENGAGEMENT, TILES_REVIEW, TILES_AFFINITY, TILES_LIFETIME)

# Feature snapshots (one daily-partitioned asset per registry family; the key is features/<asset>).
USER_ACTIVITY_FEATURES = dg.AssetKey(["features", "user_activity_features"])
LEAD_FEATURES = dg.AssetKey(["features", "lead_features"])
ENGAGEMENT_FEATURES = dg.AssetKey(["features", "engagement_features"])
PROFILE_FEATURES = dg.AssetKey(["features", "profile_features"])
REVIEW_FEATURES = dg.AssetKey(["features", "review_features"])
AFFINITY_FEATURES = dg.AssetKey(["features", "affinity_features"])
LIFETIME_FEATURES = dg.AssetKey(["features", "lifetime_features"])
REVIEW_TOPIC_MODEL = dg.AssetKey(["features", "review_topic_model"])
FEATURE_SNAPSHOTS = (USER_ACTIVITY_FEATURES, LEAD_FEATURES, ENGAGEMENT_FEATURES, PROFILE_FEATURES, REVIEW_FEATURES,
                     AFFINITY_FEATURES, LIFETIME_FEATURES)

# Training sets (unpartitioned Parquet files training/<name>.parquet in the offline store) and models.
TRAINING_DATASET = dg.AssetKey(["training", "training_dataset"])  # churn; the brief's name
CONTACT_TRAINING_SET = dg.AssetKey(["training", "contact_training_set"])
CHURN_MODEL = dg.AssetKey(["models", "churn_model"])
CONTACT_MODEL = dg.AssetKey(["models", "contact_model"])
# Derived features (registry family `derived`): a model's output per user, a snapshot like the others.
CHURN_RISK_SCORES = dg.AssetKey(["features", "churn_risk_scores"])
DERIVED_SNAPSHOTS = (CHURN_RISK_SCORES,)
ONLINE_PUSH = dg.AssetKey(["online", "user_features_push"])

CHECK_SCHEMA = "schema_matches_contract"
CHECK_QUARANTINE_RATE = "quarantine_rate_below_threshold"
CHECK_ROWS_BALANCE = "accepted_plus_quarantined_equals_input"
CHECK_SNAPSHOT_SCHEMA = "schema_matches_registry"
CHECK_SNAPSHOT_VALUES = "values_within_registry_rules"
CHECK_SNAPSHOT_ROWS = "one_row_per_known_user"
CHECK_PROMOTION_GATE = "promotion_gate"
CHECK_FEATURE_DRIFT = "feature_drift_psi"
CHECK_ONLINE_STALENESS = "served_snapshot_within_staleness_tolerance"
