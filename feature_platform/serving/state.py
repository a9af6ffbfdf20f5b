"""What the server holds in memory: the registry, the latest offline snapshot, the champion models.

Loaded once at start and swapped whole when something it was built from changes (the registry file,
the latest complete offline snapshot, a champion, the listings). A reload builds the new state on a
background thread and then replaces one reference, so a request reads either the old state or the
new one, never half of each, and never waits for a reload.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from feature_platform.config import Settings
from feature_platform.ml.expand import ExpansionSpec, fit_expansion
from feature_platform.ml.model_store import ModelStore
from feature_platform.ml.training_sets import listing_inputs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore, read_parquet
from feature_platform.offline.versions import day_family_versions
from feature_platform.registry.registry import REGISTRY_PATH, Registry, parse_registry

log = logging.getLogger(__name__)
CHURN, CONTACT = "churn", "contact"


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    model: Any
    spec: ExpansionSpec
    feature_names: tuple[str, ...]  # the registry features the model reads (the rest of the spec is extra inputs)
    family_versions: dict[str, str] | None = None  # of its training set (None: not recorded, serving/versions.py)


@dataclass(frozen=True)
class OfflineSnapshot:
    """The latest complete offline snapshot, one row per user: the fallback when Redis has no vector."""

    day: dt.date
    table: pa.Table
    index: dict[str, int]
    maps: frozenset[str] = frozenset()  # map features: Parquet gives (key, value) pairs, serving gives dicts
    family_versions: dict[str, str | None] = field(default_factory=dict)  # recorded in its files (None: not)

    @property
    def computed_at(self) -> dt.datetime:
        return dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time())

    def row(self, user_id: str) -> dict[str, Any] | None:
        i = self.index.get(user_id)
        if i is None:
            return None
        row = self.table.slice(i, 1).to_pylist()[0]
        return {k: dict(v) if k in self.maps and v is not None else v for k, v in row.items()}


@dataclass(frozen=True)
class ServingState:
    registry: Registry
    signature: tuple
    loaded_at: dt.datetime
    offline: OfflineSnapshot | None = None
    champions: dict[str, Champion] = field(default_factory=dict)
    listings: dict[str, dict[str, Any]] = field(default_factory=dict)  # listing_id -> listing inputs
    devices: dict[str, str] = field(default_factory=dict)  # user_id -> profile device (contact context)
    context_spec: ExpansionSpec | None = None  # the dense context vector's columns
    problems: tuple[str, ...] = ()  # what could not be loaded, shown by /health

    def is_customer(self, user_id: str) -> bool:
        """The user has a row in raw/customers (every customer has a device entry, null or not)."""
        return user_id in self.devices


def read_registry(path: Path = REGISTRY_PATH) -> Registry:
    """The registry as the file says now (not the process-wide cached copy), for reloads."""
    return parse_registry(yaml.safe_load(Path(path).read_text()), str(path))


def complete_days(store: OfflineStore, registry: Registry) -> list[dt.date]:
    """Dates every snapshot family has a snapshot for, newest first (a derived family's missing day reads as
    null). With a store that skips unreadable partitions, a day with a damaged snapshot is not complete."""
    days = [{p.stem for p in store.partition_files("/".join(f.asset_path))}
            for f in registry.families.values() if not f.derived]
    common = set.intersection(*days) if days else set()  # a family with no snapshot at all: no day is complete
    return [dt.date.fromisoformat(d) for d in sorted(common, reverse=True)]


def latest_complete_day(store: OfflineStore, registry: Registry) -> dt.date | None:
    """The newest of :func:`complete_days`, or None."""
    days = complete_days(store, registry)
    return days[0] if days else None


def _no_complete_day(store: OfflineStore, registry: Registry) -> str:
    """Why no offline snapshot can be served: nothing materialized yet, or which families have no snapshot (each
    starts "no offline snapshot", which /health files under offline_snapshot)."""
    families = [f for f in registry.families.values() if not f.derived]
    absent = [f.name for f in families if not store.partition_files("/".join(f.asset_path))]
    if len(absent) == len(families):
        return "no offline snapshot yet: run `feature-platform run`"
    if absent:
        return (f"no offline snapshot with every family: {', '.join(absent)} {'has' if len(absent) == 1 else 'have'} "
                "none yet; materialize the features group (`feature-platform run`)")
    return "no offline snapshot with every family on one day yet; materialize the features group for a common day"


def context_features(registry: Registry) -> list[str]:
    """The features of the dense context vector: every online feature, in registry order."""
    return [f.name for f in registry.features.values() if "online" in f.serving_location]


class StateHolder:
    """Holds the current :class:`ServingState` and refreshes it in the background."""

    def __init__(self, settings: Settings, registry_path: Path = REGISTRY_PATH,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self.registry_path = registry_path
        # a damaged partition is left out (and reported by /health), never a failed start or a 500
        self.offline_store = OfflineStore(settings.data_root, skip_unreadable=True)
        self.models = ModelStore(settings.models_dir)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
        self._state: ServingState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    @property
    def state(self) -> ServingState:
        if self._state is None:
            self._state = self.load()
        return self._state

    def signature(self, registry: Registry | None = None) -> tuple:
        """What the state is built from: registry mtime, latest snapshot day, champions, listings and customers
        mtimes.

        Cheap when nothing changed (directory listings, two small JSON files): the YAML registry is parsed
        again only when its file changed, as parsing it holds the GIL for tens of milliseconds.
        """
        mtime = self.registry_path.stat().st_mtime_ns
        if registry is None:
            current = self._state
            registry = current.registry if current is not None and current.signature[0] == mtime else (
                read_registry(self.registry_path))
        day = latest_complete_day(self.offline_store, registry)
        champions = []
        for name in (CHURN, CONTACT):
            try:
                champion = self.models.champion(name)
            except FileNotFoundError:
                champion = None
            champions.append(champion.version if champion else None)
        stamps = []
        for table in ("raw/listings", "raw/customers"):
            path = self.offline_store.table_path(table)
            stamps.append(path.stat().st_mtime_ns if path.exists() else None)
        return (mtime, day, *champions, *stamps)

    def load(self) -> ServingState:
        registry = read_registry(self.registry_path)
        signature = self.signature(registry)
        problems: list[str] = []
        offline = None
        days = complete_days(self.offline_store, registry) if signature[1] is not None else []
        for day in days:  # the newest readable snapshot; a damaged one is reported and an older one served
            try:
                table = user_vectors(self.offline_store, registry, day)
            except (OSError, duckdb.Error) as exc:
                problems.append(f"offline snapshot {day}: {exc}")
                continue
            users = table.column("user_id").to_pylist()
            maps = frozenset(f.name for f in registry.features.values() if f.type == "map")
            offline = OfflineSnapshot(day, table, {u: i for i, u in enumerate(users)}, maps,
                                      day_family_versions(self.offline_store, registry, day))
            break
        if not days:
            problems.append(_no_complete_day(self.offline_store, registry))
        for unreadable in list(self.offline_store.unreadable.values()):
            problem = f"offline partition skipped: {unreadable.message}"
            if problem not in problems and str(unreadable.path) not in " ".join(problems):
                problems.append(problem)
        champions = {}
        for name in (CHURN, CONTACT):
            try:
                meta = self.models.champion(name)
                if meta is None:
                    problems.append(f"no {name} champion model yet")
                    continue
                model, spec, meta = self.models.load(name, meta.version)
                trained = meta.manifest.get("family_versions")
                if trained is None:
                    problems.append(f"{name} model {meta.version} records no feature family versions (trained before "
                                    "they were recorded): served without checking them; retrain it to have them checked")
                champions[name] = Champion(name, meta.version, model, spec, tuple(meta.manifest["feature_names"]),
                                           trained)
            except Exception as exc:  # a damaged model must not stop the server from serving features
                problems.append(f"{name} model: {exc}")
        listings, devices = {}, {}
        try:
            table = listing_inputs(self.offline_store)
            listings = {row["listing_id"]: row for row in table.to_pylist()}
        except FileNotFoundError as exc:
            problems.append(f"listings: {exc}")
        customers = self.offline_store.table_path("raw/customers")
        if customers.exists():
            profile = read_parquet(customers, columns=["user_id", "device"])
            devices = dict(zip(profile.column("user_id").to_pylist(), profile.column("device").to_pylist(),
                               strict=True))
        context_spec = None
        if offline is not None:
            context_spec = fit_expansion(offline.table, context_features(registry), registry)
        state = ServingState(registry=registry, signature=signature, loaded_at=self._clock(), offline=offline,
                             champions=champions, listings=listings, devices=devices, context_spec=context_spec,
                             problems=tuple(problems))
        for problem in problems:
            log.warning("serving: %s", problem)
        return state

    def refresh(self) -> bool:
        """Reload when what the state was built from changed; True when it did. Never raises."""
        try:
            if self._state is not None and self.signature() == self._state.signature:
                return False
            self._state = self.load()
            self.reloads += 1
            return True
        except Exception:  # keep serving the old state; the next tick tries again
            log.exception("serving: reload failed, still serving the state loaded at %s",
                          self._state.loaded_at if self._state else None)
            return False

    def start(self, interval: float) -> None:
        """Refresh every ``interval`` seconds on a daemon thread."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="fp-serving-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

