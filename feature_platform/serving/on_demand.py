"""Compute on demand: the third step of the retrieval flow (Redis -> offline snapshot -> computed -> default).

A user whom neither Redis nor the served snapshot knows (one who signed up since the snapshot, say) but who
has a customer row is computed from their raw and landed events with the batch engine's own code
(:func:`feature_platform.features.recompute.recompute`: the same tiles, windows and as-of rule) as the snapshot
of today (UTC): the values tonight's daily snapshot will hold if nothing else lands. Features computed this
way say so (status ``computed``, or ``missing`` when the value is null); a model output (a derived family)
cannot be computed from events and is the registry default (status ``default``).

The work is bounded, so unknown ids cannot take the server down:

- an id with no customer row is not computed at all (a set lookup);
- one computation runs at a time, on a thread of its own, never on the event loop; the users of one request
  are computed together, and a user already being computed is waited for, not computed twice; with
  MAX_QUEUED computations waiting, a request for new users is answered at once as ``timeout``;
- a request waits at most FP_ON_DEMAND_BUDGET_MS (0 turns computing off); past it the user is answered as
  unknown, marked ``timeout``, and the computation finishes in the background into the cache;
- at most FP_ON_DEMAND_MAX_USERS users of one request are computed; the others are marked ``limit``;
- a computation that fails is logged and its users marked ``error`` (defaults, or a 404), never a 500.

A result (also "no row at that day") is cached in Redis for FP_ON_DEMAND_TTL_SECONDS under
``<prefix>:od:<families' versions hash>:<day>:<user_id>``, shared by every server process: a repeated read
costs one round trip, and events the user sends meanwhile show after the TTL. The cache follows the read
breaker: while reads skip Redis it is neither read nor written, and a failed cache call opens the breaker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from feature_platform.config import Settings
from feature_platform.features import topics
from feature_platform.features.recompute import recompute
from feature_platform.features.review import TOPIC_MODEL_ARTIFACT
from feature_platform.offline.location import store_path
from feature_platform.offline.store import OfflineStore
from feature_platform.online.store import MISSING
from feature_platform.registry.registry import Registry
from feature_platform.serving.retrieval import DEFAULT, REDIS_ERRORS, Retriever, ServedVector
from feature_platform.serving.state import ServingState
from feature_platform.sources.landing import LandingLog

log = logging.getLogger(__name__)
COMPUTED = "computed"  # a feature's status, and a vector's source
TIMEOUT, LIMIT, ERROR = "timeout", "limit", "error"  # why a user was not computed (ServedVector.on_demand)
CACHE_KEY = "od"
MAX_QUEUED = 4  # computations waiting for the thread: past it new users are not queued (a flood stays bounded)


@dataclass(frozen=True)
class Computed:
    """One user's computed values (None: the user has no row at ``day``, e.g. signed up later)."""

    day: dt.date
    computed_at: dt.datetime
    values: dict[str, Any] | None


class OnDemand:
    def __init__(self, settings: Settings, offline: OfflineStore, retriever: Retriever) -> None:
        self.budget = settings.on_demand_budget_ms / 1000
        self.max_users = settings.on_demand_max_users
        self.ttl = settings.on_demand_ttl_seconds
        self.offline, self.retriever = offline, retriever
        self.metrics, self.clock = retriever.metrics, retriever.clock
        self.landing = LandingLog(settings.landing_dir)
        self.topic_models = store_path(settings.models_dir) / topics.MODELS_FOLDER
        self._prefix = settings.redis_prefix
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fp-on-demand")
        self._running: dict[tuple[str, dt.date, str], Future[dict[str, Computed]]] = {}
        self._lock = threading.Lock()
        self._keys: tuple[Any, str] = (None, "")  # (registry, its cache key part)

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def vectors(self, state: ServingState, users: Sequence[str], names: Sequence[str]
                      ) -> dict[str, ServedVector | str]:
        """Per user of ``users`` (unknown to Redis and the snapshot, with a customer row): the computed vector
        of ``names``, or why there is none (``timeout``, ``limit``, ``error``); users with no row at the day are
        left out."""
        registry, day = state.registry, self.clock().date()
        version = self._version(registry)
        out: dict[str, ServedVector | str] = {}
        wanted = list(dict.fromkeys(users))
        for user in wanted[self.max_users:]:
            out[user] = LIMIT
        self.metrics.on_demand[LIMIT].inc(len(wanted[self.max_users:]))
        found = self._cached(version, day, wanted[:self.max_users])
        self.metrics.on_demand["cached"].inc(len(found))
        missing = [u for u in wanted[:self.max_users] if u not in found]
        future = self._submit(registry, version, day, missing) if missing else None
        if future is None and missing:  # the queue is full
            self.metrics.on_demand[TIMEOUT].inc(len(missing))
            out.update(dict.fromkeys(missing, TIMEOUT))
        elif future is not None:
            started = time.perf_counter()
            try:
                done: dict[str, Computed] = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                                                   self.budget)
                found.update(done)
                self.metrics.on_demand[COMPUTED].inc(len(missing))
            except TimeoutError:
                log.warning("computing %d unknown user(s) took over %.0f ms; answered without them",
                            len(missing), self.budget * 1000)
                self.metrics.on_demand[TIMEOUT].inc(len(missing))
                out.update(dict.fromkeys(missing, TIMEOUT))
            except Exception:  # a damaged tile, a topic model that does not fit: the request still gets an answer
                log.exception("computing %d unknown user(s) on demand failed; answered without them", len(missing))
                self.metrics.on_demand[ERROR].inc(len(missing))
                out.update(dict.fromkeys(missing, ERROR))
            self.metrics.on_demand_seconds.observe(time.perf_counter() - started)
        for user, computed in found.items():
            if computed.values is not None:
                out[user] = _served(registry, user, computed, names)
        return out

    # -- the work, on the computing thread ------------------------------------------------------------
    def _submit(self, registry: Registry, version: str, day: dt.date, users: list[str]
                ) -> Future[dict[str, Computed]] | None:
        """One future for ``users``: those being computed already are waited for, the rest computed together;
        None when new users would have to queue behind MAX_QUEUED computations."""
        future = None
        with self._lock:
            waiting = {u: self._running[(version, day, u)] for u in users if (version, day, u) in self._running}
            new = [u for u in users if u not in waiting]
            if new and len({id(f) for f in self._running.values() if not f.running()}) >= MAX_QUEUED:
                return None
            if new:
                future = self._pool.submit(self._compute, registry, version, day, new)
                for user in new:
                    self._running[(version, day, user)] = future
                waiting.update(dict.fromkeys(new, future))
        if future is not None:  # outside the lock: a future already done runs the callback here and now
            future.add_done_callback(partial(self._forget, version, day, new))
        if len(set(map(id, waiting.values()))) == 1:
            return next(iter(waiting.values()))
        combined: Future[dict[str, Computed]] = Future()
        pending = set(waiting.values())

        def done(_: Future[dict[str, Computed]]) -> None:
            if all(f.done() for f in pending) and not combined.done():
                try:
                    merged = {u: c for f in pending for u, c in f.result().items() if u in waiting}
                except Exception as exc:  # noqa: BLE001 - the waiting request gets the failure
                    combined.set_exception(exc)
                    return
                combined.set_result(merged)
        for f in pending:
            f.add_done_callback(done)
        return combined

    def _forget(self, version: str, day: dt.date, users: list[str], _: object = None) -> None:
        with self._lock:
            for user in users:
                self._running.pop((version, day, user), None)

    def _compute(self, registry: Registry, version: str, day: dt.date, users: list[str]) -> dict[str, Computed]:
        computable = computable_features(registry)
        families = {registry.get_feature(n).family for n in computable}
        artifacts: dict[str, Any] = {}
        if any("features/review_topic_model" in registry.family(f).sources for f in families):
            artifacts[TOPIC_MODEL_ARTIFACT] = topics.load_current_or_none(self.topic_models)
        values = recompute(self.offline, registry, self.landing, dict.fromkeys(users, set(computable)), day,
                           artifacts)
        at = self.clock()
        result = {user: Computed(day, at, values.get(user)) for user in users}
        self._store(version, result)
        return result

    # -- the cache ----------------------------------------------------------------------------------
    def _version(self, registry: Registry) -> str:
        """What the cached values depend on: every family's version (a registry's own version is not bumped
        when a family changes), hashed short."""
        cached, key = self._keys
        if cached is not registry:
            versions = json.dumps(sorted((f.name, f.version) for f in registry.families.values()))
            key = hashlib.sha256(versions.encode()).hexdigest()[:12]
            self._keys = (registry, key)
        return key

    def _key(self, version: str, day: dt.date, user: str) -> str:
        return f"{self._prefix}:{CACHE_KEY}:{version}:{day.isoformat()}:{user}"

    def _cache(self) -> Any:
        """The Redis client, or None while reads skip Redis (the breaker is open)."""
        online = self.retriever.online
        return online.client if online is not None and self.retriever.online_available else None

    def _cached(self, version: str, day: dt.date, users: list[str]) -> dict[str, Computed]:
        client = self._cache()
        if client is None or not users:
            return {}
        try:  # GETs in one pipeline, not MGET: in a Redis Cluster the keys live on different slots
            pipe = client.pipeline(transaction=False)
            for user in users:
                pipe.get(self._key(version, day, user))
            raw = pipe.execute()
        except REDIS_ERRORS as exc:
            self.retriever.trip(exc)
            return {}
        found = {}
        for user, blob in zip(users, raw, strict=True):
            if blob is not None:
                item = orjson.loads(blob)
                found[user] = Computed(day, dt.datetime.fromisoformat(item["at"]), item["values"])
        return found

    def _store(self, version: str, result: dict[str, Computed]) -> None:
        client = self._cache()
        if client is None:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for user, computed in result.items():
                blob = orjson.dumps({"at": computed.computed_at.isoformat(), "values": computed.values})
                pipe.set(self._key(version, computed.day, user), blob, ex=self.ttl)
            pipe.execute()
        except REDIS_ERRORS as exc:
            self.retriever.trip(exc)


def computable_features(registry: Registry) -> list[str]:
    """The online features computable from events and profiles: all but model outputs (derived families)."""
    return [f.name for f in registry.features.values()
            if "online" in f.serving_location and not registry.family(f.family).derived]


def _served(registry: Registry, user: str, computed: Computed, names: Sequence[str]) -> ServedVector:
    values: dict[str, Any] = {}
    statuses: dict[str, str] = {}
    known = computed.values or {}
    for name in names:
        if name in known:
            values[name] = known[name]
            statuses[name] = MISSING if known[name] is None else COMPUTED
        else:  # a model output: not computable from events
            values[name], statuses[name] = registry.get_feature(name).default, DEFAULT
    return ServedVector(user, COMPUTED, f"{COMPUTED}:{computed.day.isoformat()}", computed.day, computed.computed_at,
                        values, statuses)
