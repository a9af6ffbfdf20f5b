"""Which family version computed a snapshot file, recorded in the file itself.

Every snapshot partition carries its family's registry version as Parquet key-value metadata
(``feature_platform.family_version``) in its footer; a training set carries the versions of every family it
joined (``feature_platform.family_versions``, JSON). A file written before versions were recorded has no
record: its version is unknown (None). Reading a version costs the file's footer, never its data, and is
cached per file while its size and modification time stay the same.

A version pinned for a point-in-time join (offline/pit.py) is checked here: a row may only join a snapshot of
the pinned version, and when the snapshot it would use is of another version, or unknown, the join is refused
(:class:`PinnedVersionError`): the data of the pinned version for those dates is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.offline.location import StorePath, arrow_file
from feature_platform.offline.store import OfflineStore
from feature_platform.registry.registry import Family, Registry

FAMILY_VERSION_KEY = "feature_platform.family_version"
FAMILY_VERSIONS_KEY = "feature_platform.family_versions"
UNKNOWN = "unknown"  # how a file without a record is named in messages
CACHE_SIZE = 50_000  # files whose version is remembered (a year of every family is ~3,000)

_cache: dict[str, tuple[int, int, str | None]] = {}  # path -> (size, mtime_ns, version)
_lock = threading.Lock()


class PinnedVersionError(ValueError):
    """A point-in-time join pinned to a family version would use snapshots of another (or unknown) version."""

    def __init__(self, family: str, pinned: str, found: Mapping[dt.date, str | None]) -> None:
        self.family, self.pinned = family, pinned
        self.found = dict(found)
        listed = ", ".join(f"{day.isoformat()} ({version or UNKNOWN})" for day, version in sorted(found.items()))
        versions = sorted({version or UNKNOWN for version in found.values()})
        causes = []
        if any(v is not None for v in found.values()):
            causes.append(f"recomputed at {', '.join(v for v in versions if v != UNKNOWN)}")
        if any(v is None for v in found.values()):
            causes.append("written before family versions were recorded")
        days = sorted(found)
        super().__init__(
            f"{family} is pinned to version {pinned}, but the snapshots these rows would join are not: {listed}. "
            f"The {family} {pinned} data of {'that date' if len(days) == 1 else 'those dates'} is gone "
            f"({' or '.join(causes)}); pin the version found instead, or recompute those snapshots with a release "
            f"whose registry has {family} {pinned} (feature-platform backfill --start {days[0].isoformat()} "
            f"--end {days[-1].isoformat()} --assets features)")


def snapshot_metadata(family: Family) -> dict[str, str]:
    """The key-value metadata a snapshot partition of ``family`` is written with."""
    return {FAMILY_VERSION_KEY: family.version}


def training_set_metadata(versions: Mapping[str, str]) -> dict[str, str]:
    """The key-value metadata a training set is written with: the family versions of its features."""
    return {FAMILY_VERSIONS_KEY: json.dumps(dict(sorted(versions.items())))}


def recorded_family_versions(schema: pa.Schema) -> dict[str, str] | None:
    """A training set's recorded family versions (its schema's metadata, as read back); None when unrecorded."""
    raw = (schema.metadata or {}).get(FAMILY_VERSIONS_KEY.encode())
    return None if raw is None else dict(json.loads(raw))


def file_family_version(path: StorePath) -> str | None:
    """The family version recorded in a snapshot file's footer; None when it has none (written before versions
    were recorded). Cached per file while its size and mtime stay the same."""
    stat = path.stat()
    key = str(path)
    with _lock:
        seen = _cache.get(key)
    if seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns):
        return seen[2]
    file, filesystem = arrow_file(path)
    recorded = (pq.read_metadata(file, filesystem=filesystem).metadata or {}).get(FAMILY_VERSION_KEY.encode())
    version = None if recorded is None else recorded.decode()
    with _lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[key] = (stat.st_size, stat.st_mtime_ns, version)
    return version


def partition_versions(store: OfflineStore, family: Family, days: Iterable[dt.date]) -> dict[dt.date, str | None]:
    """Per day, the version of ``family``'s snapshot partition of that day (which must exist)."""
    table = "/".join(family.asset_path)
    return {day: file_family_version(store.partition_path(table, day.isoformat())) for day in days}


def day_family_versions(store: OfflineStore, registry: Registry, day: dt.date,
                        families: Sequence[str] | None = None) -> dict[str, str | None]:
    """Per family (default: all) with a snapshot partition of ``day``, the version recorded in it."""
    out = {}
    for name in registry.families if families is None else families:
        family = registry.family(name)
        path = store.partition_path("/".join(family.asset_path), day.isoformat())
        if path.exists():
            out[name] = file_family_version(path)
    return out


def check_pinned(store: OfflineStore, family: Family, pinned: str, days: Iterable[dt.date]) -> None:
    """Refuse (:class:`PinnedVersionError`) when a snapshot of ``days`` is not at version ``pinned``."""
    wrong = {day: version for day, version in partition_versions(store, family, days).items() if version != pinned}
    if wrong:
        raise PinnedVersionError(family.name, pinned, wrong)
