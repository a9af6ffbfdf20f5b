"""Where a served vector comes from: Redis, else the latest offline snapshot, else computed on demand from the
user's events (serving/on_demand.py), else the registry defaults.

Per feature the answer carries its value, a status and a source:

    present   a value from a snapshot within the feature's staleness tolerance
    stale     a value from a snapshot older than the tolerance (served, flagged)
    missing   the snapshot (or the computation) holds null for the feature (null is not zero)
    computed  computed on demand for a user no snapshot has yet
    default   no source had the user (or Redis and the offline store both failed): the registry default

Redis being down is not an error: the first failure opens a breaker for a few seconds, during which
reads go straight to the offline snapshot instead of waiting for a connection timeout per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from feature_platform.online.store import MISSING, PRESENT, STALE, OnlineStore, OnlineStoreError
from feature_platform.registry.registry import Registry
from feature_platform.serving.metrics import ServingMetrics
from feature_platform.serving.state import ServingState

log = logging.getLogger(__name__)
DEFAULT = "default"
ONLINE, OFFLINE = "online", "offline"
BREAKER_SECONDS = 5.0
REDIS = "redis"  # the dependency name /health reports a Redis outage under
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)


@dataclass
class ServedVector:
    user_id: str
    source: str  # online | offline | default
    version: str | None
    snapshot_date: dt.date | None
    computed_at: dt.datetime | None
    values: dict[str, Any]
    statuses: dict[str, str] | None  # None: each value within its tolerance, so present, or missing when null
    updated_at: dt.datetime | None = None  # event-driven update time, when events changed some fields
    updated_fields: tuple[str, ...] = ()
    found: bool = True
    on_demand: str | None = None  # why computing on demand did not answer: timeout | limit (serving/on_demand.py)

    def as_json(self) -> dict[str, Any]:
        source, statuses = self.source, self.statuses
        if statuses is None:  # the common case, without a statuses dict to zip
            features = {name: {"value": value, "status": PRESENT if value is not None else MISSING, "source": source}
                        for name, value in self.values.items()}
        else:
            features = {name: {"value": value, "status": status, "source": source}
                        for (name, value), status in zip(self.values.items(), statuses.values(), strict=True)}
        answer = {
            "user_id": self.user_id,
            "found": self.found,
            "source": self.source,
            "snapshot": {
                "version": self.version,
                "snapshot_date": self.snapshot_date.isoformat() if self.snapshot_date else None,
                "computed_at": self.computed_at.isoformat() if self.computed_at else None,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None,
                "updated_fields": list(self.updated_fields),
            },
            "features": features,
        }
        if self.on_demand is not None:
            answer["on_demand"] = self.on_demand
        return answer


@dataclass
class Retriever:
    online: OnlineStore | None
    metrics: ServingMetrics
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    breaker_seconds: float = BREAKER_SECONDS
    _open_until: float = 0.0
    _served: tuple[Any, tuple[str, ...]] = (None, ())  # (registry, its online features): computed once per registry
    _shortest: tuple[Any, dt.timedelta] = (None, dt.timedelta(0))  # (registry, its shortest staleness tolerance)
    _since: dict[str, dt.datetime] = field(default_factory=dict)  # degraded dependency -> since when

    @property
    def online_available(self) -> bool:
        return self.online is not None and time.monotonic() >= self._open_until

    def trip(self, exc: BaseException) -> None:
        """A Redis call failed: skip Redis for ``breaker_seconds`` (reads, the on-demand cache, scrapes)."""
        self._open_until = time.monotonic() + self.breaker_seconds
        self.degraded_since(REDIS, True)
        log.warning("online store unavailable (%s); serving from the offline snapshot for %.0f s",
                    exc, self.breaker_seconds)

    def degraded_since(self, dependency: str, degraded: bool, first_seen: dt.datetime | None = None) -> dt.datetime | None:
        """Since when ``dependency`` is degraded (``first_seen``, else now, when this is news); None, and
        forgotten, when it is not. Reads record Redis failures here; /health asks about the rest."""
        if not degraded:
            self._since.pop(dependency, None)
            return None
        return self._since.setdefault(dependency, first_seen or self.clock())

    async def vectors(self, state: ServingState, user_ids: Sequence[str], features: Sequence[str] | None,
                      version: str | None = None, defaults: bool = False) -> dict[str, ServedVector | None]:
        """Each user's vector by the retrieval flow; None for a user no source knows (unless ``defaults``).

        ``version`` pins an online version (raises :class:`OnlineStoreError` when Redis does not hold it). A read of
        the served version awaits its Redis round trip on the running loop instead of blocking it
        (``OnlineStore.read_many_async``).
        """
        names = self.served_features(state.registry, features)
        online = await self._read_online(user_ids, names, version)
        registry = state.registry
        shortest = self._shortest_tolerance(registry)
        now = self.clock()
        out: dict[str, ServedVector | None] = {}
        for user in user_ids:
            vector = online.get(user)
            if vector is not None:
                if now - vector.computed_at <= shortest:  # every feature within its tolerance (events only add)
                    statuses = None  # present, or missing when null
                else:
                    statuses = _mark_missing(vector.values, vector.statuses(registry, now))
                served = ServedVector(user, ONLINE, vector.version, vector.snapshot_date, vector.computed_at,
                                      vector.values, statuses, vector.updated_at, tuple(vector.updated_fields))
                self.metrics.lookups[STALE if statuses is not None and STALE in statuses.values() else "hit"].inc()
                out[user] = served
                continue
            offline = state.offline if version is None else None  # a pinned version is online only
            row = offline.row(user) if offline is not None else None
            if offline is not None and row is not None:
                values = {name: row.get(name) for name in names}
                age = now - offline.computed_at
                statuses = None if age <= shortest else _mark_missing(values, {
                    name: STALE if age > registry.get_feature(name).staleness_tolerance else PRESENT
                    for name in names})
                self.metrics.fallbacks_to[OFFLINE].inc()
                out[user] = ServedVector(user, OFFLINE, f"offline:{offline.day.isoformat()}",
                                         offline.day, offline.computed_at, values, statuses)
                continue
            out[user] = self.default_vector(registry, user, names) if defaults else None
        return out

    def default_vector(self, registry: Registry, user: str, names: Sequence[str] | None,
                       on_demand: str | None = None) -> ServedVector:
        """The registry defaults of ``names`` (None: every online feature), for a user no source had."""
        names = tuple(names) if names is not None else self._served_features(registry)
        self.metrics.fallbacks_to[DEFAULT].inc()
        return ServedVector(user, DEFAULT, None, None, None, {name: registry.get_feature(name).default for name in names},
                            {name: DEFAULT for name in names}, found=False, on_demand=on_demand)

    def served_features(self, registry: Registry, features: Sequence[str] | None) -> tuple[str, ...]:
        """``features``, or every online feature when None."""
        return tuple(features) if features is not None else self._served_features(registry)

    def _served_features(self, registry: Registry) -> tuple[str, ...]:
        """The registry's online features; a reload brings a new registry object, so identity is the cache key.
        The same tuple each time, so the online store checks the names once per registry."""
        cached, names = self._served
        if cached is not registry:
            names = tuple(f.name for f in registry.features.values() if "online" in f.serving_location)
            self._served = (registry, names)
        return names

    def _shortest_tolerance(self, registry: Registry) -> dt.timedelta:
        """The registry's shortest staleness tolerance: a vector younger than it is within every feature's."""
        cached, shortest = self._shortest
        if cached is not registry:
            shortest = min((f.staleness_tolerance for f in registry.features.values()), default=dt.timedelta(0))
            self._shortest = (registry, shortest)
        return shortest

    async def _read_online(self, user_ids: Sequence[str], names: Sequence[str], version: str | None
                           ) -> dict[str, Any]:
        online = self.online
        if online is None or not self.online_available:
            if version is not None:
                raise OnlineStoreError(f"version {version!r} cannot be read: the online store is unavailable")
            return {}
        try:  # a pinned version is read as redis-py does (it needs the version's metadata first)
            found = (online.read_many(user_ids, names, version) if version is not None
                     else await online.read_many_async(user_ids, names))
        except REDIS_ERRORS as exc:  # an OnlineStoreError (unknown version) is not one: it reaches the caller
            self.trip(exc)
            self.metrics.lookups["error"].inc(len(user_ids))
            if version is not None:
                raise OnlineStoreError(f"version {version!r} cannot be read: the online store is unavailable") from exc
            return {}
        self.degraded_since(REDIS, False)
        misses = sum(1 for v in found.values() if v is None)
        if misses:
            self.metrics.lookups["miss"].inc(misses)
        return {user: vector for user, vector in found.items() if vector is not None}


def _mark_missing(values: dict[str, Any], statuses: dict[str, str]) -> dict[str, str]:
    return {name: MISSING if values.get(name) is None else statuses.get(name, PRESENT) for name in values}
