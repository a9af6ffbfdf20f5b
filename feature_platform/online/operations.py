"""Operating an online store's versions: list them, serve the previous one again, delete the old ones, report."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from feature_platform.online.vectors import OnlineStoreError, VersionInfo, reply_text

UNLINK_BATCH = 1_000


class _Store(Protocol):
    """What the operations use of the store they are mixed into."""

    client: Any
    prefix: str
    _versions: dict[str, VersionInfo]
    _seen: str | None

    @property
    def pointer_key(self) -> str: ...
    def version_key(self, version: str) -> str: ...
    def version_info(self, version: str) -> VersionInfo | None: ...
    def served(self) -> tuple[VersionInfo | None, str | None]: ...
    def versions(self) -> list[VersionInfo]: ...
    def _hash(self, key: str) -> dict[str, str]: ...
    def _pointer_ttl_ms(self, version: str, ttl: int) -> int: ...


class VersionOperations:
    """The version operations of :class:`~feature_platform.online.store.OnlineStore` (its keys, metadata reads and
    pointer TTL), kept apart from pushing and reading."""

    _versions: dict[str, VersionInfo]  # complete versions' metadata, cached by the store
    _seen: str | None  # the version the store's last read found served

    def versions(self: _Store) -> list[VersionInfo]:
        """Every version Redis holds, oldest snapshot first."""
        found = []
        for key in self.client.scan_iter(match=f"{self.prefix}:version:*", count=1000):
            info = self.version_info(reply_text(key).rsplit(":version:", 1)[1])
            if info is not None:
                found.append(info)
        return sorted(found, key=lambda v: (v.snapshot_date, v.pushed_at))

    def rollback(self: _Store) -> tuple[str, str]:
        """Serve the previous version again; returns (from, to). The rolled-back one becomes 'previous'."""
        pointer = self._hash(self.pointer_key)
        previous = pointer.get("previous")
        if not pointer.get("version"):
            raise OnlineStoreError("nothing is served online; run `feature-platform run` first")
        info = self.version_info(previous) if previous else None
        if info is None or info.status != "complete":
            raise OnlineStoreError(f"no previous version to roll back to (served: {pointer['version']})")
        pointer_ms = self._pointer_ttl_ms(info.version, info.ttl)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.pointer_key, mapping={
            "version": info.version, "snapshot_date": info.snapshot_date.isoformat(),
            "computed_at": info.computed_at.isoformat(), "previous": pointer["version"]})
        pipe.pexpire(self.pointer_key, pointer_ms)
        pipe.execute()
        self._seen = None
        return pointer["version"], info.version

    def cleanup(self: _Store) -> list[str]:
        """Delete every version but the served one and the previous one; returns the versions deleted."""
        pointer = self._hash(self.pointer_key)
        keep = {pointer.get("version"), pointer.get("previous")}
        deleted = []
        for info in self.versions():
            if info.version in keep:
                continue
            keys = list(self.client.scan_iter(match=f"{self.prefix}:{info.version}:[ue]:*", count=1000))
            for start in range(0, len(keys), UNLINK_BATCH):
                pipe = self.client.pipeline(transaction=False)
                for key in keys[start:start + UNLINK_BATCH]:
                    pipe.unlink(key)
                pipe.execute()
            self.client.unlink(self.version_key(info.version))
            self._versions.pop(info.version, None)
            deleted.append(info.version)
        return deleted

    def status(self: _Store, now: dt.datetime | None = None) -> dict[str, Any]:
        """What `feature-platform online status` prints: the served version, its age and size, the kept ones."""
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        pointer = self._hash(self.pointer_key)
        served, problem = self.served()
        memory = self.client.info("memory")
        used = memory.get("used_memory") if "used_memory" in memory else sum(
            node.get("used_memory", 0) for node in memory.values() if isinstance(node, Mapping))
        return {
            "served_version": served.version if served else None,
            "problem": problem,  # why nothing is served although the pointer names a version
            "snapshot_date": served.snapshot_date.isoformat() if served else None,
            "computed_at": served.computed_at.isoformat() if served else None,
            "age_hours": round((now - served.computed_at).total_seconds() / 3600, 1) if served else None,
            "keys": served.keys if served else 0,
            "bytes": served.bytes if served else 0,
            "features": len(served.layout) if served else 0,
            "family_versions": served.family_versions if served else None,
            "previous_version": pointer.get("previous") or None,
            "versions": [v.version for v in self.versions()],
            "redis_used_memory_bytes": used,
        }
