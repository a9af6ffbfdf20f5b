"""Shared Dagster constants: the one daily partitions definition, asset keys, groups, owners.

Import these; never re-spell a key or a group name as a string elsewhere.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from feature_platform.features.engine import tile_table
from feature_platform.offline.calendar import DEFAULT_PARTITIONS_START
from feature_platform.registry.registry import load_registry

_REGISTRY = load_registry()  # families name their snapshot assets; keys follow from it


def daily_partitions(start: str, end: str | None = None) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start`` (the data's first day, offline/calendar.py) to ``end`` (historical data's
    last day), else to yesterday: a day is materialized once it is over. Events before ``start`` are
    quarantined with the reason timestamp_before_partitions_start (nothing is dropped)."""
    end_date = (dt.date.fromisoformat(end) + dt.timedelta(days=1)).isoformat() if end else None  # exclusive
    return dg.DailyPartitionsDefinition(start_date=start, end_date=end_date, timezone="UTC", end_offset=0)


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


def source_key(source: str) -> dg.AssetKey:
    """The asset a registry source names (``raw/events``, ``features/review_topic_model``, ``models/...``)."""
    return dg.AssetKey(source.split("/"))


def feature_key(family: str) -> dg.AssetKey:
    """A registry family's snapshot asset: ``features/<asset>``, as the registry names it."""
    return dg.AssetKey(list(_REGISTRY.family(family).asset_path))


def tile_key(family: str) -> dg.AssetKey:
    """A family's daily tiles: ``tiles/<family>``, the offline-store table the engine writes."""
    return dg.AssetKey(tile_table(_REGISTRY.family(family)).split("/"))


RAW_CUSTOMERS = source_key("raw/customers")
RAW_EVENTS = source_key("raw/events")
RAW_REVIEWS = source_key("raw/reviews")
RAW_LISTINGS = source_key("raw/listings")
RAW_UNPARTITIONED = (RAW_CUSTOMERS, RAW_REVIEWS, RAW_LISTINGS)


# Daily tiles (one daily-partitioned asset per family with a time window).
TILES_ACTIVITY = tile_key("activity")
TILES_LEAD = tile_key("lead")
TILES_ENGAGEMENT = tile_key("engagement")
TILES_REVIEW = tile_key("review")
TILES_AFFINITY = tile_key("affinity")
TILES_LIFETIME = tile_key("lifetime")
TILE_KEYS = (TILES_ACTIVITY, TILES_LEAD, TILES_ENGAGEMENT, TILES_REVIEW, TILES_AFFINITY, TILES_LIFETIME)

# Feature snapshots (one daily-partitioned asset per registry family).
USER_ACTIVITY_FEATURES = feature_key("activity")
LEAD_FEATURES = feature_key("lead")
ENGAGEMENT_FEATURES = feature_key("engagement")
PROFILE_FEATURES = feature_key("profile")
REVIEW_FEATURES = feature_key("review")
AFFINITY_FEATURES = feature_key("affinity")
LIFETIME_FEATURES = feature_key("lifetime")
REVIEW_TOPIC_MODEL = source_key("features/review_topic_model")
FEATURE_SNAPSHOTS = tuple(feature_key(f.name) for f in _REGISTRY.families.values() if not f.derived)

# Training sets (unpartitioned Parquet files training/<name>.parquet in the offline store) and models.
TRAINING_DATASET = dg.AssetKey(["training", "training_dataset"])  # the churn training set
CONTACT_TRAINING_SET = dg.AssetKey(["training", "contact_training_set"])
CHURN_MODEL = dg.AssetKey(["models", "churn_model"])
CONTACT_MODEL = dg.AssetKey(["models", "contact_model"])
# Derived features (registry family `derived`): a model's output per user, a snapshot like the others.
CHURN_RISK_SCORES = feature_key("derived")
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
