"""The online store: versioned snapshots in Redis behind one pointer, read in one round trip.

Layout (``<p>`` is the key prefix, FP_REDIS_PREFIX, default ``fp``)::

    <p>:current                      hash  version, snapshot_date, computed_at, previous; expires with
                                           the version it names (each push and rollback sets its TTL)
    <p>:version:<version>            hash  snapshot_date, computed_at, layout (JSON feature names),
                                           status (writing|complete), keys, bytes, ttl, pushed_at,
                                           family_versions (JSON: family -> its snapshot file's version)
    <p>:<version>:u:<user_id>        string, the user's whole vector (see codec.py), with a TTL; ``<user_id>``
                                     is the id's canonical text (sources/entity_ids.py: 42, 42.0, "42" -> 42)
    <p>:<version>:e:<user_id>        hash, the event overlay: fields recomputed from events that arrived
                                     after the version's cut-off (online/updates.py); ``@as_of`` plus
                                     one field per feature (a one-value codec array); expires with the
                                     version; absent for most users

A push writes every user's vector under a new version (pipelined, in batches), marks the version
complete, and only then moves ``<p>:current`` to it with a compare-and-set script that refuses to
go back in time. So:

- a reader never sees a vector that mixes two snapshots (one key holds one snapshot's vector);
- an interrupted push leaves the previous version served, untouched; running it again rewrites the
  same version (its id is the snapshot date and a hash of its content) and completes it;
- a push never writes to the served or the previous version: pushing their content again writes a new
  version (``<id>.r2``, ``.r3``, ...) with fresh TTLs, so a re-push killed midway changes nothing served;
- the pointer cannot outlive its version: it gets the version's TTL. Should it still name a version that
  is gone or not complete, reads miss (the server falls back to the offline snapshot) and
  :meth:`OnlineStore.served` says why;
- pushing an older snapshot date than the served one (a backfill) writes nothing and says so;
- every entity key expires after twice the largest staleness tolerance of its features, and each
  push writes fresh keys (so fresh TTLs); a value older than its own tolerance reads as ``stale``;
- the previous version stays for `feature-platform online rollback`; older ones are deleted.

A read is one command: a script that follows the pointer and returns, per user, the vector and the overlay of that
version (online/scripted_read.py), read at one instant. On a Redis Cluster, where a script cannot span hash slots,
it is a pipeline of ``HGET <p>:current version`` and the ``GET`` and ``HGETALL`` under the version it last saw: one
round trip, a second only right after a swap. A server awaits it on its event loop (``read_many_async``). Overlay
fields replace the vector's; the vector says which (``updated_fields``) and when (``updated_at``). The overlay keeps
the no-mixed-snapshot rule: it belongs to one version (a new push starts with none), and one ``HSET`` writes a
user's update, so a reader sees the overlay before or after it, never half of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import pyarrow as pa

from feature_platform.online import codec, loop_connection, scripted_read
from feature_platform.online.operations import VersionOperations
from feature_platform.online.vectors import (
    MISSING,
    OVERLAY_AS_OF,
    PRESENT,
    STALE,
    OnlineStoreError,
    OnlineVector,
    PushResult,
    VersionInfo,
    decode_replies,
    reply_text,
)
from feature_platform.registry.registry import Registry, UnknownNameError
from feature_platform.sources.entity_ids import EntityIdError, canonical_ids, canonical_ids_list

__all__ = ["MISSING", "PRESENT", "STALE", "OnlineStore", "OnlineStoreError", "OnlineVector", "PushResult",
           "VersionInfo"]

# An entity id as a caller may give it: text, or a whole number (canonical text: sources/entity_ids.py).
EntityId = TypeVar("EntityId", bound=str | int | float)

DEFAULT_BATCH = 1_000

# KEYS[1] = pointer; ARGV = version, snapshot_date, computed_at, ttl ms. Moves the pointer unless a newer
# snapshot date is served, and gives it a TTL a second shorter than its version's (never outliving it).
# Returns {1, previous} when moved, {0, served_date} when refused.
_SWAP = """
local served = redis.call('HGET', KEYS[1], 'snapshot_date')
if served and served > ARGV[2] then return {0, served} end
local previous = redis.call('HGET', KEYS[1], 'version') or ''
if previous == ARGV[1] then previous = redis.call('HGET', KEYS[1], 'previous') or '' end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'snapshot_date', ARGV[2], 'computed_at', ARGV[3],
           'previous', previous)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, previous}
"""


class OnlineStore(VersionOperations):
    def __init__(self, client: Any, registry: Registry, prefix: str = "fp") -> None:
        self.client = client
        self.registry = registry
        self.prefix = prefix
        self._swap = client.register_script(_SWAP)
        self._versions: dict[str, VersionInfo] = {}
        self._seen: str | None = None  # the version the last read found current
        self._checked: tuple[Registry | None, tuple[str, ...]] = (None, ())  # the last feature tuple found known
        self._scripted = scripted_read.supports(client)  # reads as one script call (not on a Redis Cluster)
        self._on_loop = self._scripted and loop_connection.supported(client)  # read_many_async awaits the reply

    # -- keys --------------------------------------------------------------------------------
    @property
    def pointer_key(self) -> str:
        return f"{self.prefix}:current"

    def version_key(self, version: str) -> str:
        return f"{self.prefix}:version:{version}"

    def entity_key(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:{version}:u:{user_id}"

    def overlay_key(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:{version}:e:{user_id}"

    # -- push --------------------------------------------------------------------------------
    def ttl_seconds(self, names: Iterable[str]) -> int:
        """Twice the largest staleness tolerance of ``names``: a stale value can still be served, flagged."""
        tolerance = max(self.registry.get_feature(n).staleness_tolerance for n in names)
        return int(2 * tolerance.total_seconds())

    def push(self, snapshot: pa.Table, snapshot_date: dt.date, batch: int = DEFAULT_BATCH,
             fail_after_batches: int | None = None, family_versions: Mapping[str, str | None] | None = None
             ) -> PushResult:
        """Write one snapshot (one row per user, ``user_id`` + registry features) and serve it.

        Each user is keyed by its canonical id text, so a ``user_id`` column of integers, whole floats or
        text pushes the same keys for the same customers; a column that holds a bad id (a bool, a fraction,
        a null) is an :class:`EntityIdError` naming the row, before anything is written.
        ``fail_after_batches`` is for tests: raise after that many batches, as a dying process would.
        ``family_versions`` (family -> its snapshot file's version) is kept for serving's check (serving/versions.py).
        """
        layout = tuple(c for c in snapshot.column_names if c in self.registry.features)
        if "user_id" not in snapshot.column_names or not layout:
            raise ValueError("a snapshot to push needs a user_id column and registry feature columns")
        users = canonical_ids(snapshot.column("user_id")).to_pylist()
        if len(set(users)) != len(users):
            raise ValueError("the snapshot has more than one row for a user; push one row per user")
        computed_at = dt.datetime.combine(snapshot_date + dt.timedelta(days=1), dt.time(0))
        pointer = self._hash(self.pointer_key)
        served = self.current()
        if served is not None and served.snapshot_date > snapshot_date:
            return PushResult("", snapshot_date, served=False, reason=(
                f"skipped: {served.snapshot_date} is served online and {snapshot_date} is older; a backfill never "
                "replaces newer online values"))

        types = {name: self.registry.get_feature(name).type for name in layout}
        rows = codec.rows_to_values(snapshot, layout, types)
        blobs = [codec.encode(row) for row in rows]
        digest = hashlib.sha256(json.dumps(layout).encode())
        for user, blob in zip(users, blobs, strict=True):
            digest.update(user.encode() + b"\0" + blob)
        version = self._new_version(f"{snapshot_date.isoformat()}.{digest.hexdigest()[:10]}", pointer)
        ttl = self.ttl_seconds(layout)

        started = time.perf_counter()
        self.client.hset(self.version_key(version), mapping={
            "snapshot_date": snapshot_date.isoformat(), "computed_at": computed_at.isoformat(),
            "layout": json.dumps(layout), "status": "writing", "ttl": ttl,
            **({"family_versions": json.dumps(dict(family_versions))} if family_versions is not None else {}),
        })
        written = 0
        for done, start in enumerate(range(0, len(users), batch)):
            if fail_after_batches is not None and done == fail_after_batches:
                raise ConnectionError(f"push interrupted after {done} batches (test)")
            pipe = self.client.pipeline(transaction=False)
            for user, blob in zip(users[start:start + batch], blobs[start:start + batch], strict=True):
                pipe.set(self.entity_key(version, user), blob, ex=ttl)
                written += len(blob)
            pipe.execute()
        self.client.hset(self.version_key(version), mapping={
            "status": "complete", "keys": len(users), "bytes": written,
            "pushed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        })
        self.client.expire(self.version_key(version), ttl)
        pointer_ms = self._pointer_ttl_ms(version, ttl)
        moved, other = self._swap(keys=[self.pointer_key],
                                  args=[version, snapshot_date.isoformat(), computed_at.isoformat(), pointer_ms])
        seconds = time.perf_counter() - started
        other = other.decode() if isinstance(other, bytes) else other
        if not moved:
            return PushResult(version, snapshot_date, served=False, keys=len(users), bytes=written, seconds=seconds,
                              reason=f"written but not served: {other} became the served snapshot meanwhile")
        deleted = self.cleanup()
        return PushResult(version, snapshot_date, served=True, keys=len(users), bytes=written, seconds=seconds,
                          previous=other or None, reason="served", deleted_versions=deleted)

    def _pointer_ttl_ms(self, version: str, ttl: int) -> int:
        """A pointer TTL that ends a second before ``version``'s metadata expires (``ttl`` seconds if it has no TTL)."""
        remaining = self.client.pttl(self.version_key(version))
        remaining = remaining if remaining and remaining > 0 else max(ttl, 1) * 1000
        return max(remaining - 1000, 1)

    @staticmethod
    def _new_version(base: str, pointer: Mapping[str, str]) -> str:
        """``base``, unless the served or the previous version has that id (the same content pushed again):
        then the first free ``base.rN``. A push never rewrites what readers or a rollback may use."""
        taken = {pointer.get("version"), pointer.get("previous")}
        version, n = base, 1
        while version in taken:
            n += 1
            version = f"{base}.r{n}"
        return version

    # -- read --------------------------------------------------------------------------------
    def current(self) -> VersionInfo | None:
        """The served version, complete and present; None when nothing is (:meth:`served` says why)."""
        return self.served()[0]

    def served(self) -> tuple[VersionInfo | None, str | None]:
        """The served version, or None and why not: nothing pushed yet (reason None), or a pointer naming
        a version that expired or is not complete. Reads the version's metadata uncached."""
        pointer = self._hash(self.pointer_key)
        version = pointer.get("version")
        if not version:
            return None, None
        raw = self._hash(self.version_key(version))
        if not raw:
            self._versions.pop(version, None)
            return None, (
                f"the pointer {self.pointer_key} names version {version} (snapshot {pointer.get('snapshot_date')}), "
                "which is no longer in Redis (expired: no successful push within its TTL, or deleted); reads fall "
                "back to the offline snapshot until the online push (`feature-platform run`) succeeds")
        info = self._info(version, raw)
        if info.status != "complete":
            return None, (
                f"the served version {version} is {info.status!r}, not complete (a push rewrote it and did not "
                "finish); reads fall back to the offline snapshot until the online push succeeds")
        return info, None

    def version_info(self, version: str) -> VersionInfo | None:
        cached = self._versions.get(version)
        if cached is not None:
            return cached
        raw = self._hash(self.version_key(version))
        if not raw:
            return None
        return self._info(version, raw)

    def _info(self, version: str, raw: Mapping[str, str]) -> VersionInfo:
        info = VersionInfo.from_hash(version, raw)
        if info.status == "complete":
            self._versions[version] = info  # a complete version never changes
        return info

    def read(self, user_id: str | int | float, features: Sequence[str] | None = None,
             version: str | None = None) -> OnlineVector | None:
        """The user's vector (or the named subset) from the served version, or ``version``; None on a miss."""
        return self.read_many([user_id], features, version)[user_id]

    def read_many(self, user_ids: Sequence[EntityId], features: Sequence[str] | None = None,
                  version: str | None = None) -> dict[EntityId, OnlineVector | None]:
        """Many users in one round trip (one pipeline); None for a user without a key.

        Ids are text or whole numbers, looked up by their canonical text (``42``, ``42.0`` and ``"42"`` are
        one user); the result is keyed by the ids as given, so ``read_many([42])[42]`` finds the vector, whose
        ``user_id`` is ``"42"``. A bad id is an :class:`EntityIdError` before Redis is asked.
        """
        keys, distinct = self._asked(user_ids, features)
        return _keyed(user_ids, keys, self._read_keys(distinct, features, version))

    async def read_many_async(self, user_ids: Sequence[EntityId], features: Sequence[str] | None = None
                              ) -> dict[EntityId, OnlineVector | None]:
        """:meth:`read_many` of the served version, for a server's event loop: the Redis round trip is awaited
        instead of blocking the loop (online/loop_connection.py), where the client allows it. Same answers."""
        if not self._on_loop:
            return self.read_many(user_ids, features)
        keys, distinct = self._asked(user_ids, features)
        served, replies = await scripted_read.read_async(self.client, self.pointer_key, self.prefix, None, distinct)
        return _keyed(user_ids, keys, self._decode_served(self._maybe_text(served), distinct, replies, features))

    def _asked(self, user_ids: Sequence[EntityId], features: Sequence[str] | None) -> tuple[list[str], list[str]]:
        """The ids' canonical texts, and those once each; the features checked (EntityIdError, UnknownNameError)."""
        keys = canonical_ids_list(user_ids)
        self._check_features(features)
        return keys, list(dict.fromkeys(keys))

    def _read_keys(self, user_ids: list[str], features: Sequence[str] | None,
                   version: str | None) -> dict[str, OnlineVector | None]:
        """:meth:`read_many` of distinct canonical ids."""
        if version is not None:
            info = self.version_info(version)
            if info is None or info.status != "complete":
                raise OnlineStoreError(f"version {version!r} is not in the online store; see `online status`")
            return decode_replies(info, user_ids, self._get(info.version, user_ids), features)
        if self._scripted:
            served, replies = scripted_read.read(self.client, self.pointer_key, self.prefix, None, user_ids)
            return self._decode_served(self._maybe_text(served), user_ids, replies, features)
        guess = self._seen
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.pointer_key, "version")
        self._queue(pipe, guess or "-", user_ids)
        served, *replies = pipe.execute()
        served = self._maybe_text(served)
        if not served:
            return dict.fromkeys(user_ids)
        info = self.version_info(served)
        if info is None or info.status != "complete":  # a pointer past its version: a miss, not an error
            self._seen = None  # (served() says why; the server falls back to the offline snapshot)
            return dict.fromkeys(user_ids)
        if served != guess:  # first read, or the pointer moved since: read the served version
            self._seen = served
            replies = self._get(served, user_ids)
        return decode_replies(info, user_ids, replies, features)

    def _queue(self, pipe: Any, version: str, user_ids: Sequence[str]) -> None:
        """Per user, the vector and its overlay of one version: both always come from the same version."""
        for user in user_ids:
            pipe.get(self.entity_key(version, user))
            pipe.hgetall(self.overlay_key(version, user))

    def _decode_served(self, served: str | None, user_ids: list[str], replies: list[Any],
                       features: Sequence[str] | None) -> dict[str, OnlineVector | None]:
        """The replies of the version the pointer named; all misses when it named none or one not complete."""
        info = self.version_info(served) if served else None
        if info is None or info.status != "complete":  # a pointer past its version: a miss, not an error
            return dict.fromkeys(user_ids)  # (served() says why; the server falls back to the offline snapshot)
        return decode_replies(info, user_ids, replies, features)

    def _get(self, version: str, user_ids: Sequence[str]) -> list[Any]:
        if self._scripted:
            return scripted_read.read(self.client, self.pointer_key, self.prefix, version, user_ids)[1]
        pipe = self.client.pipeline(transaction=False)
        self._queue(pipe, version, user_ids)
        return pipe.execute()

    # -- event overlay -----------------------------------------------------------------------
    def write_overlay(self, version: str, updates: Mapping[EntityId, Mapping[str, Any]], as_of: dt.datetime,
                      batch: int = DEFAULT_BATCH) -> list[EntityId]:
        """Write event-recomputed values (user -> {feature: value}) over ``version``'s vectors.

        Each user's fields and ``@as_of`` go in one HSET (a reader sees all of them or none); fields
        not named keep their earlier overlay value. Keys expire when the version's metadata does.
        Users are keyed by their canonical id text, as :meth:`push` keys them; a bad id, or two that are
        one user (``42`` and ``"42"``), is an :class:`EntityIdError` before anything is written.
        Only users that have a vector in ``version`` are written; returns them, as given.
        """
        keys = dict(zip(updates, canonical_ids_list(updates), strict=True))
        if len(set(keys.values())) < len(keys):  # e.g. 42 and "42"
            same = [user for user, key in keys.items() if list(keys.values()).count(key) > 1]
            raise EntityIdError(f"user_id: {same!r} name one user more than once; give each user once")
        info = self.version_info(version)
        if info is None or info.status != "complete":
            raise OnlineStoreError(f"version {version!r} is not in the online store; see `online status`")
        layout = set(info.layout)
        unknown = sorted({name for fields in updates.values() for name in fields} - layout)
        if unknown:
            raise KeyError(f"features {unknown} are not in version {version}; push a snapshot that has them")
        remaining = self.client.pttl(self.version_key(version))
        expire_ms = remaining if remaining and remaining > 0 else info.ttl * 1000
        users = [u for u, fields in updates.items() if fields]
        written: list[EntityId] = []
        stamp = as_of.isoformat(timespec="microseconds")
        for start in range(0, len(users), batch):
            chunk = users[start:start + batch]
            pipe = self.client.pipeline(transaction=False)
            for user in chunk:
                pipe.exists(self.entity_key(version, keys[user]))
            present = [u for u, found in zip(chunk, pipe.execute(), strict=True) if found]
            pipe = self.client.pipeline(transaction=False)
            for user in present:
                mapping: dict[str, bytes | str] = {
                    name: codec.encode([value]) for name, value in updates[user].items()}
                mapping[OVERLAY_AS_OF] = stamp
                pipe.hset(self.overlay_key(version, keys[user]), mapping=mapping)
                pipe.pexpire(self.overlay_key(version, keys[user]), expire_ms)
            pipe.execute()
            written.extend(present)
        return written

    def _check_features(self, features: Sequence[str] | None) -> None:
        checked_registry, checked = self._checked
        if features is None or (features is checked and checked_registry is self.registry):  # a server's tuple
            return
        unknown = [f for f in features if f not in self.registry.features]
        if unknown:
            raise UnknownNameError(f"unknown features {unknown}; see `feature-platform registry list`")
        if isinstance(features, tuple):  # immutable: checked once per registry
            self._checked = (self.registry, features)

    def _hash(self, key: str) -> dict[str, str]:
        """A Redis hash as text: a hash holds no null field or value (an absent key reads as {})."""
        return {reply_text(k): reply_text(v) for k, v in self.client.hgetall(key).items()}

    @staticmethod
    def _maybe_text(value: bytes | str | None) -> str | None:
        """A reply that is null when the key or field is absent (HGET, GET)."""
        return None if value is None else reply_text(value)


def _keyed(user_ids: Sequence[EntityId], keys: list[str], found: dict[str, OnlineVector | None]
           ) -> dict[EntityId, OnlineVector | None]:
    """``found`` (by canonical id) keyed by the ids as given."""
    if keys == list(user_ids):  # every id given as its canonical text (the server's reads): keyed as given
        return cast(dict[EntityId, OnlineVector | None], found)
    return {user: found[key] for user, key in zip(user_ids, keys, strict=True)}
