"""The feature registry: loads and validates feature_registry.yaml, answers questions about features.

Validation is strict because everything downstream trusts the registry (snapshot schemas, checks,
serving defaults, online TTLs): unknown keys, bad semver, duplicate names, unknown families or
dependencies, dependency cycles and malformed durations are errors that name the feature.

Two kinds of family: ``snapshot`` families (the default) compute features from raw data; ``derived``
families hold model outputs (a model's probability per user), computed from the snapshot families
through a model. Models train on snapshot features only, so a snapshot feature may never depend on a
derived one: the lineage stays a one-way chain raw -> snapshot features -> model -> derived feature.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

REGISTRY_PATH = Path(__file__).with_name("feature_registry.yaml")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
DURATION = re.compile(r"^(\d+)([smhd])$")
FEATURE_TYPES = ("int", "float", "bool", "map", "vector")
REQUIRED_FEATURE_KEYS = (
    "name", "family", "type", "description", "owner", "version", "source", "computation", "dependencies",
    "staleness_tolerance", "computation_frequency", "serving_location", "default", "created_at", "updated_at",
)
OPTIONAL_FEATURE_KEYS = ("range", "nullable", "event_types", "length", "for_each", "window")
WINDOW = re.compile(r"^([1-9]\d*)d$|^all$")  # `30d`: the 30 days D-29 .. D; `all`: the whole history up to D
FAMILY_KEYS = ("version", "asset", "module", "sources", "description", "config")
OPTIONAL_FAMILY_KEYS = ("kind",)
FAMILY_KINDS = ("snapshot", "derived")
MODEL_SOURCE_PREFIX = "models/"
# `dependencies: model_inputs` on a derived feature: every feature of every snapshot family, i.e. the
# features the training sets give the models (ml/training_sets.training_features).
MODEL_INPUTS = "model_inputs"
TOP_KEYS = ("registry_version", "defaults", "vocabularies", "families", "features")
FREQUENCIES = ("daily", "hourly", "weekly", "on_event")
SERVING_LOCATIONS = ("offline", "online")
ONE_HOT_EXTRA = ("_other", "_missing")
FEATURE_ASSET_PREFIX = "features"


class RegistryError(ValueError):
    """The registry file is invalid; the message names the entry and the problem."""


class UnknownNameError(KeyError):
    """A feature or family name the registry does not know: a user's mistake, said as a plain sentence."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` with the known names closest to ``name``, or "" when none is close."""
    by_lower = {k.lower(): k for k in known}  # TOTAL_EVENTS is total_events
    quoted = [repr(by_lower[c]) for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3)]
    if not quoted:
        return ""
    return f" (did you mean {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?)"


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    type: str
    description: str
    owner: str
    version: str
    source: str
    computation: str
    dependencies: tuple[str, ...]
    staleness_tolerance: dt.timedelta
    computation_frequency: str
    serving_location: tuple[str, ...]
    default: Any
    created_at: dt.date
    updated_at: dt.date
    value_range: tuple[float | None, float | None] | None = None
    nullable: bool = True
    event_types: tuple[str, ...] = ()  # raw event types whose arrival changes the value
    length: int | None = None  # vectors
    window: str | None = None  # `30d`, `90d`, `all`; None: not an aggregate over time (attributes, model outputs)

    def days_covered(self, history_days: int) -> int | None:
        """Days of data the value of a day covers when ``history_days`` of data end on it (None: no window)."""
        if self.window is None:
            return None
        return history_days if self.window == "all" else min(int(self.window[:-1]), history_days)

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "map": pa.map_(pa.string(), pa.float64()),
    "vector": pa.list_(pa.float64()),
}


@dataclass(frozen=True)
class Family:
    name: str
    version: str
    asset: str
    module: str
    sources: tuple[str, ...]
    description: str
    config: Mapping[str, Any]
    features: tuple[str, ...] = ()
    kind: str = "snapshot"

    @property
    def asset_path(self) -> tuple[str, str]:
        return (FEATURE_ASSET_PREFIX, self.asset)

    @property
    def derived(self) -> bool:
        """Model outputs, not raw-data features: never a model input, possibly absent for a day."""
        return self.kind == "derived"


@dataclass(frozen=True)
class Lineage:
    feature: str
    upstream_features: tuple[str, ...]
    raw_sources: tuple[str, ...]
    asset: str  # the Dagster asset key that computes it, e.g. features/lead_features
    models: tuple[str, ...] = ()  # model assets on the way, e.g. models/churn_model for churn_risk_score


@dataclass
class Registry:
    version: str
    features: dict[str, Feature]
    families: dict[str, Family]
    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def list_features(self, family: str | None = None) -> list[Feature]:
        if family is not None and family not in self.families:
            raise UnknownNameError(self._unknown_family(family))
        return [f for f in self.features.values() if family is None or f.family == family]

    def snapshot_features(self) -> list[str]:
        """Features of the snapshot (non-derived) families, in registry order: what models may train on."""
        return [f.name for f in self.features.values() if not self.families[f.family].derived]

    def get_feature(self, name: str) -> Feature:
        try:
            return self.features[name]
        except KeyError:
            raise UnknownNameError(f"unknown feature {name!r}{did_you_mean(name, self.features)}; "
                                   "see `feature-platform registry list`") from None

    def get_feature_version(self, name: str) -> str:
        return self.get_feature(name).version

    def family(self, name: str) -> Family:
        try:
            return self.families[name]
        except KeyError:
            raise UnknownNameError(self._unknown_family(name)) from None

    def _unknown_family(self, name: str) -> str:
        return f"unknown family {name!r}{did_you_mean(name, self.families)}; families: {', '.join(sorted(self.families))}"

    def snapshot_schema(self, family: str) -> pa.Schema:
        """The exact columns of a family's snapshot partition: snapshot_date, user_id, then features."""
        fields = [pa.field("snapshot_date", pa.date32(), nullable=False), pa.field("user_id", pa.string(), nullable=False)]
        fields += [pa.field(f.name, f.arrow_type) for f in self.list_features(family)]
        return pa.schema(fields)

    def lineage(self, name: str) -> Lineage:
        feature = self.get_feature(name)
        upstream: list[str] = []
        stack = list(feature.dependencies)
        while stack:
            dep = stack.pop(0)
            if dep not in upstream:
                upstream.append(dep)
                stack.extend(self.features[dep].dependencies)
        sources = {feature.source, *self.family(feature.family).sources}
        for dep in upstream:
            sources.add(self.features[dep].source)
            sources.update(self.family(self.features[dep].family).sources)
        return Lineage(
            feature=name,
            upstream_features=tuple(upstream),
            raw_sources=tuple(sorted(s for s in sources if s.startswith("raw/"))),
            asset="/".join(self.family(feature.family).asset_path),
            models=tuple(sorted(s for s in sources if s.startswith(MODEL_SOURCE_PREFIX))),
        )

    def features_affected_by(self, event_type: str) -> list[str]:
        """Features whose value can change when an event of this type arrives."""
        return [f.name for f in self.features.values() if event_type in f.event_types]


@cache
def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    """Load and validate the registry (cached: the file ships inside the package)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    return parse_registry(raw, str(path))


def parse_registry(raw: Mapping[str, Any], origin: str = "registry") -> Registry:
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{origin}: expected a mapping at the top level")
    _no_unknown_keys(raw, TOP_KEYS, origin)
    vocabularies = {k: tuple(str(v) for v in values) for k, values in (raw.get("vocabularies") or {}).items()}
    families = {name: _family(name, spec, origin) for name, spec in (raw.get("families") or {}).items()}
    features: dict[str, Feature] = {}
    model_input_users = []  # derived features declared with `dependencies: model_inputs`
    for entry in raw.get("features") or []:
        for expanded in _expand(entry, vocabularies, origin):
            uses_model_inputs = expanded.get("dependencies") == MODEL_INPUTS
            if uses_model_inputs:
                expanded["dependencies"] = []
            feature = _feature(expanded, families, vocabularies, origin)
            if uses_model_inputs:
                model_input_users.append(feature.name)
            if feature.name in features:
                raise RegistryError(f"{origin}: feature {feature.name!r} is listed twice")
            features[feature.name] = feature
    inputs = tuple(f.name for f in features.values() if not families[f.family].derived)
    for name in model_input_users:
        if not families[features[name].family].derived:
            raise RegistryError(f"{origin}: feature {name!r}: `dependencies: {MODEL_INPUTS}` is for features of "
                                "derived families (model outputs); list the dependencies by name")
        features[name] = replace(features[name], dependencies=inputs)
    for feature in features.values():
        for dep in feature.dependencies:
            if dep not in features:
                raise RegistryError(f"{origin}: feature {feature.name!r} depends on unknown feature {dep!r}")
            if families[features[dep].family].derived and not families[feature.family].derived:
                raise RegistryError(
                    f"{origin}: feature {feature.name!r} depends on {dep!r}, a model output (derived family "
                    f"{features[dep].family!r}); snapshot features are model inputs, so a model would learn from "
                    "its own output")
    _no_cycles(features, origin)
    families = {
        name: Family(**{**fam.__dict__, "features": tuple(f.name for f in features.values() if f.family == name)})
        for name, fam in families.items()
    }
    version = str(raw.get("registry_version", ""))
    _semver(version, f"{origin}: registry_version")
    return Registry(version=version, features=features, families=families, vocabularies=vocabularies)


def parse_duration(text: str) -> dt.timedelta:
    match = DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"durations look like 30s, 15m, 36h or 2d; got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


def _expand(entry: Mapping[str, Any], vocabularies: Mapping[str, tuple[str, ...]], origin: str) -> list[dict]:
    if "for_each" not in entry:
        return [dict(entry)]
    vocab_name = entry["for_each"]
    if vocab_name not in vocabularies:
        raise RegistryError(f"{origin}: {entry.get('name')!r} expands over unknown vocabulary {vocab_name!r}")
    values = list(vocabularies[vocab_name])
    if entry.get("family") == "profile":
        values += [f"{extra}" for extra in ONE_HOT_EXTRA]  # gender__other, gender__missing
    expanded = []
    for value in values:
        item = {k: v for k, v in entry.items() if k != "for_each"}
        for key in ("name", "description", "computation"):
            item[key] = str(item[key]).replace("{value}", value)
        if isinstance(item.get("event_types"), list):
            item["event_types"] = [str(t).replace("{value}", value) for t in item["event_types"]]
        expanded.append(item)
    return expanded


def _feature(spec: Mapping[str, Any], families: Mapping[str, Family], vocabularies, origin: str) -> Feature:
    name = spec.get("name", "<unnamed>")
    where = f"{origin}: feature {name!r}"
    _no_unknown_keys(spec, REQUIRED_FEATURE_KEYS + OPTIONAL_FEATURE_KEYS, where)
    missing = [k for k in REQUIRED_FEATURE_KEYS if k not in spec]
    if missing:
        raise RegistryError(f"{where}: missing {', '.join(missing)}")
    if spec["family"] not in families:
        raise RegistryError(f"{where}: unknown family {spec['family']!r}")
    if not isinstance(spec["dependencies"] or [], list):
        raise RegistryError(f"{where}: dependencies is a list of feature names (or `{MODEL_INPUTS}` on a derived "
                            f"feature), got {spec['dependencies']!r}")
    family = families[spec["family"]]
    if family.derived and spec["source"] not in family.sources:
        raise RegistryError(f"{where}: a derived feature's source is one of its family's models {list(family.sources)}, "
                            f"got {spec['source']!r}")
    if spec["type"] not in FEATURE_TYPES:
        raise RegistryError(f"{where}: type must be one of {FEATURE_TYPES}, got {spec['type']!r}")
    _semver(str(spec["version"]), f"{where}: version")
    if spec["computation_frequency"] not in FREQUENCIES:
        raise RegistryError(f"{where}: computation_frequency must be one of {FREQUENCIES}")
    if not set(spec["serving_location"]) <= set(SERVING_LOCATIONS):
        raise RegistryError(f"{where}: serving_location must be within {SERVING_LOCATIONS}")
    try:
        staleness = parse_duration(spec["staleness_tolerance"])
    except ValueError as exc:
        raise RegistryError(f"{where}: staleness_tolerance: {exc}") from None
    value_range = spec.get("range")
    if value_range is not None and (len(value_range) != 2 or spec["type"] in ("map", "vector")):
        raise RegistryError(f"{where}: range is [low, high] (null for open) on int/float features")
    if spec["type"] == "vector" and not isinstance(spec.get("length"), int):
        raise RegistryError(f"{where}: vectors need an integer length")
    event_types = spec.get("event_types", [])
    if event_types == "all":
        event_types = list(vocabularies.get("event_type", ()))
    unknown = set(event_types) - set(vocabularies.get("event_type", ()))
    if unknown:
        raise RegistryError(f"{where}: unknown event types {sorted(unknown)}")
    window = spec.get("window")
    if window is not None and not WINDOW.match(str(window)):
        raise RegistryError(f"{where}: window is a number of days (`30d`) or `all`, got {window!r}")
    _check_default(spec, where)
    return Feature(
        name=str(spec["name"]), family=str(spec["family"]), type=str(spec["type"]),
        description=str(spec["description"]), owner=str(spec["owner"]), version=str(spec["version"]),
        source=str(spec["source"]), computation=str(spec["computation"]),
        dependencies=tuple(spec["dependencies"] or ()), staleness_tolerance=staleness,
        computation_frequency=str(spec["computation_frequency"]), serving_location=tuple(spec["serving_location"]),
        default=spec["default"], created_at=spec["created_at"], updated_at=spec["updated_at"],
        value_range=tuple(value_range) if value_range is not None else None,
        nullable=bool(spec.get("nullable", True)), event_types=tuple(event_types), length=spec.get("length"),
        window=None if window is None else str(window),
    )


def _check_default(spec: Mapping[str, Any], where: str) -> None:
    default, kind = spec["default"], spec["type"]
    ok = default is None or {
        "int": isinstance(default, int) and not isinstance(default, bool),
        "float": isinstance(default, int | float) and not isinstance(default, bool),
        "bool": isinstance(default, bool),
        "map": isinstance(default, dict),
        "vector": isinstance(default, list),
    }[kind]
    if not ok:
        raise RegistryError(f"{where}: default {default!r} is not a {kind}")


def _family(name: str, spec: Mapping[str, Any], origin: str) -> Family:
    where = f"{origin}: family {name!r}"
    _no_unknown_keys(spec, FAMILY_KEYS + OPTIONAL_FAMILY_KEYS, where)
    missing = [k for k in FAMILY_KEYS if k not in spec]
    if missing:
        raise RegistryError(f"{where}: missing {', '.join(missing)}")
    _semver(str(spec["version"]), f"{where}: version")
    kind = str(spec.get("kind", "snapshot"))
    if kind not in FAMILY_KINDS:
        raise RegistryError(f"{where}: kind must be one of {FAMILY_KINDS}, got {kind!r}")
    sources = tuple(str(s) for s in spec["sources"])
    from_models = [s.startswith(MODEL_SOURCE_PREFIX) for s in sources]
    if kind == "derived" and not (sources and all(from_models)):
        raise RegistryError(f"{where}: a derived family's sources are the model assets it scores with "
                            f"({MODEL_SOURCE_PREFIX}<name>), got {list(sources)}")
    if kind == "snapshot" and any(from_models):
        raise RegistryError(f"{where}: a snapshot family cannot read a model ({list(sources)}); "
                            "model outputs belong to a family with `kind: derived`")
    return Family(
        name=name, version=str(spec["version"]), asset=str(spec["asset"]), module=str(spec["module"]),
        sources=sources, description=str(spec["description"]), config=spec["config"] or {}, kind=kind,
    )


def _no_unknown_keys(spec: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _semver(value: str, where: str) -> None:
    if not SEMVER.match(value):
        raise RegistryError(f"{where}: {value!r} is not a semantic version (MAJOR.MINOR.PATCH)")


def _no_cycles(features: Mapping[str, Feature], origin: str) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise RegistryError(f"{origin}: dependency cycle {' -> '.join(cycle)}")
        state[name] = 1
        for dep in features[name].dependencies:
            visit(dep, [*path, name])
        state[name] = 2

    for name in features:
        visit(name, [])
