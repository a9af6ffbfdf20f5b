"""Every asset's Dagster freshness policy, derived from the registry in one place.

A feature's registry entry says how often it is computed (``computation_frequency``) and how old it may
be when used (``staleness_tolerance``). An asset's expectation follows from the features it produces:

    features/<family>          that family's features (snapshot and derived families alike)
    online/user_features_push  every feature served online (``serving_location`` holds ``online``)
    raw/*                      the strictest expectation of the feature assets downstream of it: a
                               stale input makes every snapshot that reads it stale
    training/*, models/*       retrained every :data:`RETRAIN_PERIOD`; stale once the period and the
                               tightest tolerance of the model inputs (snapshot features) have passed
    review_topic_model         none: refitted on purpose, never on a clock (topic vectors must mean
                               the same across partitions), see :data:`UNSCHEDULED`

From an expectation (period, tolerance): ``fail_window`` = the tolerance; ``warn_window`` = one period
plus :data:`WARN_SLACK` of it (one refresh missed, with room for the run's own duration), left out when
that is not shorter than the tolerance or the features have no period (``on_event``). When several
features meet, the tightest wins: the shortest tolerance and the shortest period.
An asset no rule covers raises: a new asset must be given a rule here, not a hand-written policy.
"""

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from feature_platform.orchestration.constants import (
    GROUP_MODELS,
    GROUP_RAW,
    GROUP_TILES,
    GROUP_TRAINING,
    ONLINE_PUSH,
    REVIEW_TOPIC_MODEL,
)
from feature_platform.registry.registry import Feature, Registry, load_registry

PERIODS = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
RETRAIN_PERIOD = dt.timedelta(days=7)  # the weekly retraining cadence of training sets and models
WARN_SLACK = 0.25
UNSCHEDULED = {REVIEW_TOPIC_MODEL: "refitted on purpose, not on a clock: topic vectors must mean the same "
                                   "across partitions (FP_TOPIC_MODEL_CUTOFF)"}


@dataclass(frozen=True)
class Expectation:
    """How often an asset is refreshed (None: no clock) and how old it may be; ``basis`` says why."""

    period: dt.timedelta | None
    tolerance: dt.timedelta
    basis: str

    @property
    def warn_window(self) -> dt.timedelta | None:
        warn = self.period * (1 + WARN_SLACK) if self.period is not None else None
        return warn if warn is not None and warn < self.tolerance else None

    def policy(self) -> dg.FreshnessPolicy:
        return dg.FreshnessPolicy.time_window(fail_window=self.tolerance, warn_window=self.warn_window)


def tightest(features: Iterable[Feature], basis: str) -> Expectation:
    features = list(features)
    if not features:
        raise ValueError(f"no features for {basis}: a freshness expectation needs at least one")
    periods = [PERIODS[f.computation_frequency] for f in features if f.computation_frequency in PERIODS]
    return Expectation(min(periods, default=None), min(f.staleness_tolerance for f in features), basis)


def expectation_for(
    key: dg.AssetKey, group: str | None, children: Mapping[dg.AssetKey, set[dg.AssetKey]], registry: Registry
) -> Expectation | None:
    """The freshness expectation of one asset by the module's rules (None for :data:`UNSCHEDULED`)."""
    families = {dg.AssetKey(list(f.asset_path)): f for f in registry.families.values()}
    if key in UNSCHEDULED:
        return None
    if key in families:
        family = families[key]
        return tightest(registry.list_features(family.name), f"features of family {family.name}")
    if key == ONLINE_PUSH:
        return tightest((f for f in registry.features.values() if "online" in f.serving_location),
                        "features served online")
    if group in (GROUP_TRAINING, GROUP_MODELS):
        inputs = tightest((registry.get_feature(n) for n in registry.snapshot_features()), "model inputs")
        return Expectation(RETRAIN_PERIOD, RETRAIN_PERIOD + inputs.tolerance,
                           f"retrained every {RETRAIN_PERIOD.days} days on {inputs.basis}")
    if group in (GROUP_RAW, GROUP_TILES):
        below = [families[child] for child in _descendants(key, children) if child in families]
        if below:
            features = [f for family in below for f in registry.list_features(family.name)]
            return tightest(features, "read by " + ", ".join(sorted(f"features/{f.asset}" for f in below)))
    raise ValueError(f"no freshness rule for asset {key.to_user_string()} (group {group}); add one to "
                     f"{__name__}")


def with_freshness_policies(
    assets: Sequence[dg.AssetsDefinition], registry: Registry | None = None
) -> list[dg.AssetsDefinition]:
    """``assets`` with each spec's freshness policy set by :func:`expectation_for` (replacing any other)."""
    registry = registry or load_registry()
    children: dict[dg.AssetKey, set[dg.AssetKey]] = {}
    for asset in assets:
        for spec in asset.specs:
            for dep in spec.deps:
                children.setdefault(dep.asset_key, set()).add(spec.key)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        expectation = expectation_for(spec.key, spec.group_name, children, registry)
        return dg.apply_freshness_policy(spec, expectation.policy()) if expectation else spec

    return [asset.map_asset_specs(apply) for asset in assets]


def _descendants(key: dg.AssetKey, children: Mapping[dg.AssetKey, set[dg.AssetKey]]) -> set[dg.AssetKey]:
    found: set[dg.AssetKey] = set()
    todo = [key]
    while todo:
        for child in children.get(todo.pop(), set()) - found:
            found.add(child)
            todo.append(child)
    return found
