"""`feature-platform registry`: list the features, show one (definition, lineage, the models that read it),
check and lock the fingerprints of the families' computations."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from feature_platform.cli_common import echo
from feature_platform.cli_common import settings_for as _settings
from feature_platform.offline.location import StorePath
from feature_platform.registry.registry import Feature, Registry

# The models the pipeline trains, by their model-store name (orchestration/models/assets.py CHURN and
# CONTACT; the server loads the same champions, serving/state.py). Both train on the training sets'
# default inputs, ml/training_sets.training_features: every snapshot-family feature.
MODELS = ("churn", "contact")
LABEL_WIDTH = 22
# Feature fields shown under another label (the registry file's key) or not at all.
LABELS = {"value_range": "range"}


def add_registry_command(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("registry", help="list features, show one with its lineage, record fingerprints")
    reg_sub = reg.add_subparsers(required=True, metavar="ACTION")
    listing = reg_sub.add_parser("list", help="every feature: family, type, version")
    listing.add_argument("--family", metavar="FAMILY", help="only this family's features (e.g. activity, profile)")
    listing.set_defaults(handler=cmd_registry_list)
    show = reg_sub.add_parser("show", help="one feature: definition, version, lineage, the models that read it")
    show.add_argument("name", metavar="NAME", help="the feature's name, as `registry list` prints it")
    show.add_argument("--data-dir", type=Path,
                      help="data directory whose trained champions are looked at (default FP_DATA_DIR or ./data)")
    show.set_defaults(handler=cmd_registry_show)
    reg_sub.add_parser("check", help="fail when a family's computation changed without a version bump").set_defaults(
        handler=cmd_registry_check)
    reg_sub.add_parser("lock", help="record the fingerprint of new family versions").set_defaults(handler=cmd_registry_lock)


def cmd_registry_list(args: argparse.Namespace) -> int:
    from feature_platform.registry import load_registry

    features = load_registry().list_features(args.family)
    family_width = max((len(f.family) for f in features), default=0)
    name_width = max((len(f.name) for f in features), default=0)
    type_width = max((len(f.type) for f in features), default=0)
    echo("\n".join(f"{f.family:<{family_width}}  {f.name:<{name_width}}  {f.type:<{type_width}}  {f.version}"
                   for f in features))
    return 0


def cmd_registry_show(args: argparse.Namespace) -> int:
    from feature_platform.features.engine import has_tiles, tile_table
    from feature_platform.registry import load_registry

    registry = load_registry()
    feature = registry.get_feature(args.name)
    lineage = registry.lineage(args.name)
    family = registry.family(feature.family)
    rows = {LABELS.get(key, key): _field(registry, key, value) for key, value in feature.__dict__.items()}
    if feature.length is None:
        del rows["length"]  # vectors only
    rows["upstream features"] = _names(registry, lineage.upstream_features)
    rows["raw sources"] = _listed(lineage.raw_sources)
    rows["computed by asset"] = lineage.asset
    rows["merged from tiles"] = tile_table(family) if has_tiles(family) else "- (no daily tiles)"
    if lineage.models:
        rows["scored by model"] = _listed(lineage.models)
    rows["used by models"] = model_uses(registry, feature, _settings(args).models_dir)
    for key, value in rows.items():
        echo(f"{key:>{LABEL_WIDTH}}: {value}")
    return 0


def model_uses(registry: Registry, feature: Feature, models_dir: StorePath) -> str:
    """The models that read ``feature``: each trained champion under ``models_dir`` whose manifest lists it,
    and, for a model with no champion yet, what the model code declares (the training sets' inputs)."""
    from feature_platform.ml.model_store import CHAMPION_FILE, ModelStore
    from feature_platform.ml.training_sets import training_features

    store = ModelStore(models_dir)
    declared_inputs = set(training_features(registry))
    trained = []
    if models_dir.is_dir():  # any model with a champion, not only ours (dot folders are the store's temp folders)
        trained = sorted(p.name for p in models_dir.iterdir() if not p.name.startswith(".")
                         and (p / CHAMPION_FILE).is_file())
    used: list[str] = []
    declared: list[str] = []
    for name in dict.fromkeys([*MODELS, *trained]):
        try:
            champion = store.champion(name)
        except (OSError, ValueError, KeyError) as exc:  # a damaged champion.json or manifest: say so, go on
            used.append(f"{name} (champion unreadable: {exc})")
            continue
        if champion is None:
            if name in MODELS and feature.name in declared_inputs:
                declared.append(name)
        elif feature.name in champion.manifest.get("feature_names", ()):
            used.append(f"{name} (champion {champion.version})")
    if declared:
        whose = "their" if len(declared) > 1 else "its"
        used.append(f"{', '.join(declared)} (no trained champion in {models_dir}; {whose} code trains on every "
                    "snapshot-family feature)")
    return ", ".join(used) or "-"


def cmd_registry_check(args: argparse.Namespace) -> int:
    from feature_platform.registry.fingerprint import unlocked_changes

    problems = unlocked_changes()
    for problem in problems:
        echo(f"error: {problem}")
    if not problems:
        echo("every family version matches its recorded fingerprint")
    return 1 if problems else 0


def cmd_registry_lock(args: argparse.Namespace) -> int:
    from feature_platform.registry.fingerprint import LOCK_PATH, lock

    added = lock()
    for family, version in added.items():
        echo(f"recorded {family} {version}")
    echo(f"{LOCK_PATH}: {len(added)} new version(s) recorded")
    return 0


# -- how a value reads ------------------------------------------------------------------------------
def _field(registry: Registry, key: str, value: Any) -> str:
    if key == "dependencies":
        return _names(registry, value, "model_inputs: ")
    if key == "event_types" and value and set(value) == set(registry.vocabularies.get("event_type", ())):
        return f"every event type ({len(value)})"
    if key == "value_range":
        return _range(value)
    return readable(value)


def _names(registry: Registry, names: Sequence[str], prefix: str = "") -> str:
    """Feature names, comma-separated; the whole model-input set (a model output's inputs) said in words."""
    inputs = registry.snapshot_features()
    if names and set(names) == set(inputs):
        return f"{prefix}every snapshot-family feature ({len(inputs)})"
    return _listed(names)


def _range(value: tuple[float | None, float | None] | None) -> str:
    if value is None:
        return "-"
    low, high = value
    if low is None and high is None:
        return "-"
    if high is None:
        return f">= {readable(low)}"
    if low is None:
        return f"<= {readable(high)}"
    return f"{readable(low)} .. {readable(high)}"


def _listed(values: Iterable[Any]) -> str:
    return ", ".join(readable(v) for v in values) or "-"


def readable(value: Any) -> str:
    """A registry value as a person reads it: lists comma-separated, durations in days or hours, none as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.timedelta):
        return duration(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return _listed(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {readable(v)}" for k, v in value.items()) or "-"
    return str(value)


def duration(value: dt.timedelta) -> str:
    """``2 days``, ``36 hours``, ``15 minutes``, ``30 seconds``: the largest unit that divides it."""
    seconds = value.total_seconds()
    unit, size = next((u, s) for u, s in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
                      if seconds % s == 0 or s == 1)
    amount = seconds / size
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"
