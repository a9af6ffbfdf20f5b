"""Near-real-time updates: newly landed events recompute only the features they affect, for only the
users they concern, and land in the served version's event overlay (see store.py, Layout).

One call is one tick of `feature-platform stream`:

1. read the events landed since the cursor (``LandingLog.read``);
2. if the served version changed since the last tick (a daily push, a rollback), add every event that
   landed at or after its cut-off: the version starts with no overlay and its snapshot lacks them;
3. per user, the features to write are those the registry maps the user's new event types to
   (``Registry.features_affected_by``) that the served version has;
4. the families owning them recompute for those users only (features/recompute.py: their stored tiles,
   tiles computed from raw and landed events for the days those do not cover, the batch engine's
   merge). The snapshot date is today: the window ends tonight and holds everything up to now (no
   accepted event is in the future), which is exactly what tomorrow's daily snapshot of today computes
   if nothing else lands - so online and offline converge;
5. write those fields to the overlay, then save the cursor (temp file + rename). A crash in between
   re-applies the same events next tick and writes the same values: at least once, idempotent.

Derived families (model outputs) are not recomputed on events.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from feature_platform.features.recompute import recompute
from feature_platform.offline.store import OfflineStore, atomic_write_bytes
from feature_platform.online.store import OnlineStore
from feature_platform.registry.registry import Registry
from feature_platform.sources.event_records import naive_utc
from feature_platform.sources.landing import LandingLog

CURSOR_FORMAT = 1


@dataclass
class UpdateResult:
    """What one tick did."""

    events_read: int  # newly landed events read since the cursor
    events_applied: int = 0  # events whose users were recomputed (incl. re-applied after a new version)
    users_updated: int = 0  # users whose overlay was written
    features_written: int = 0  # feature values written, over all users
    features: tuple[str, ...] = ()  # the distinct features written
    users_without_vector: int = 0  # users concerned with no vector in the served version (new since the push)
    version: str | None = None  # the served version written to
    reapplied: bool = False  # the served version changed: events after its cut-off were applied again
    seconds: float = 0.0
    note: str = ""


@dataclass
class Cursor:
    """Where the updater is: bytes read per landing file, and the version its overlay was written to."""

    offsets: dict[str, int] = field(default_factory=dict)
    version: str | None = None

    @classmethod
    def load(cls, path: Path) -> Cursor:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        if raw.get("format") != CURSOR_FORMAT:
            raise ValueError(f"{path}: unknown cursor format {raw.get('format')!r}; delete it to re-apply the log")
        return cls(offsets={str(k): int(v) for k, v in raw["offsets"].items()}, version=raw.get("version"))

    def save(self, path: Path) -> None:
        """Atomically: a reader (or a crash) sees the old cursor or the new one."""
        atomic_write_bytes(path, json.dumps(
            {"format": CURSOR_FORMAT, "offsets": self.offsets, "version": self.version}).encode())


def apply_landed_events(
    online: OnlineStore,
    offline: OfflineStore,
    registry: Registry,
    log: LandingLog,
    cursor_path: Path,
    now: dt.datetime,
) -> UpdateResult:
    """Apply the events landed since the cursor to the served version's overlay (see the module doc)."""
    started = time.perf_counter()
    now = naive_utc(now)
    cursor = Cursor.load(cursor_path)
    new, offsets = log.read(cursor.offsets)
    result = UpdateResult(events_read=new.num_rows)
    served, problem = online.served()
    if served is None:
        result.note = (f"nothing applied: {problem}" if problem else
                       "nothing is served online yet; the first push's cut-off decides what is applied")
        Cursor(offsets, None).save(cursor_path)
        result.seconds = time.perf_counter() - started
        return result
    pending = new
    if served.version != cursor.version:
        result.reapplied = True
        pending = _unique_events(pa.concat_tables([log.events(landed_since=served.computed_at), new]))
    result.version, result.events_applied = served.version, pending.num_rows
    wanted = _features_per_user(pending, registry, set(served.layout))
    if wanted:
        values = recompute(offline, registry, log, wanted, now.date())
        written = online.write_overlay(served.version, values, as_of=now)
        result.users_updated = len(written)
        result.users_without_vector = len(wanted) - len(written)
        result.features_written = sum(len(values[u]) for u in written)
        result.features = tuple(sorted({name for u in written for name in values[u]}))
    Cursor(offsets, served.version).save(cursor_path)
    result.seconds = time.perf_counter() - started
    return result


def _features_per_user(events: pa.Table, registry: Registry, layout: set[str]) -> dict[str, set[str]]:
    by_type: dict[str, set[str]] = {}
    wanted: dict[str, set[str]] = {}
    pairs = events.select(["user_id", "event_type"]).group_by(["user_id", "event_type"]).aggregate([])
    for user, event_type in zip(pairs.column("user_id").to_pylist(), pairs.column("event_type").to_pylist(),
                                strict=True):
        if event_type not in by_type:
            by_type[event_type] = {
                f for f in registry.features_affected_by(event_type)
                if f in layout and not registry.family(registry.get_feature(f).family).derived
            }
        if by_type[event_type]:
            wanted.setdefault(user, set()).update(by_type[event_type])
    return wanted


def _unique_events(events: pa.Table) -> pa.Table:
    """First row per event id (the landing log holds each id once; a re-read may repeat one)."""
    ids = events.column("event_id").to_pylist()
    seen: set[str] = set()
    keep = []
    for i in ids:
        keep.append(i not in seen)
        seen.add(i)
    return events.filter(pa.array(keep, pa.bool_()))
