"""What the online store hands back: a version's metadata, users' vectors read from their keys, a push's outcome,
its errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import ItemsView, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from feature_platform.online import codec
from feature_platform.registry.registry import Registry

STALE, PRESENT, MISSING = "stale", "present", "missing"
OVERLAY_AS_OF = "@as_of"  # the overlay hash's time field; feature names never start with @


class OnlineStoreError(RuntimeError):
    """The online store cannot do what was asked (nothing served, unknown version, ...)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    snapshot_date: dt.date
    computed_at: dt.datetime  # the data cut-off of the snapshot: D+1 00:00 UTC
    layout: tuple[str, ...]
    status: str = "complete"
    keys: int = 0
    bytes: int = 0
    ttl: int = 0
    pushed_at: str = ""
    # family -> the version of the snapshot file pushed (None: the file recorded none); None: the push recorded
    # no versions (an older release pushed it)
    family_versions: dict[str, str | None] | None = None

    @classmethod
    def from_hash(cls, version: str, raw: Mapping[str, str]) -> VersionInfo:
        """The version's metadata as its ``<p>:version:<version>`` hash holds it (text fields and values)."""
        return cls(
            version=version,
            snapshot_date=dt.date.fromisoformat(raw["snapshot_date"]),
            computed_at=dt.datetime.fromisoformat(raw["computed_at"]),
            layout=tuple(json.loads(raw["layout"])),
            status=raw.get("status", ""),
            keys=int(raw.get("keys", 0)),
            bytes=int(raw.get("bytes", 0)),
            ttl=int(raw.get("ttl", 0)),
            pushed_at=raw.get("pushed_at", ""),
            family_versions=json.loads(raw["family_versions"]) if "family_versions" in raw else None,
        )

    @cached_property
    def index(self) -> dict[str, int]:
        """Feature name -> position in a vector of this version (built once per version, not per read)."""
        return {name: i for i, name in enumerate(self.layout)}


class Values(Mapping[str, Any]):
    """One vector's values by feature name, read like a read-only dict (``[name]``, ``get``, ``in``, ``items()``,
    ``==`` a dict; ``dict(values)`` for a copy).

    Every value is decoded; what is not built is a hash table per user: the values stay the list msgpack
    decodes, and the name -> position index is shared by every vector of a read. Reading 100 users of 103
    features, the 100 dicts were half of the decoding time.
    """

    __slots__ = ("_names", "_index", "_values")

    def __init__(self, names: tuple[str, ...], index: Mapping[str, int], values: list[Any]) -> None:
        self._names, self._index, self._values = names, index, values  # index: name -> position in values

    def __getitem__(self, name: str) -> Any:
        return self._values[self._index[name]]

    def get(self, name: str, default: Any = None) -> Any:
        i = self._index.get(name)
        return default if i is None else self._values[i]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def items(self) -> ItemsView[str, Any]:
        return _Items(self)

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"Values({dict(zip(self._names, self._values, strict=True))!r})"


class _Items(ItemsView[str, Any]):
    _mapping: Values

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # pairs in name order, without a lookup per name
        return zip(self._mapping._names, self._mapping._values, strict=True)


class _Values(ValuesView[Any]):
    _mapping: Values

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping._values)


@dataclass
class OnlineVector:
    """One user's features from one version; ``values`` holds only what was asked for.

    ``user_id`` is the canonical id text the vector is stored under (sources/entity_ids.py).
    ``updated_fields`` (of ``values``) were recomputed from events at ``updated_at``, after the
    snapshot's cut-off ``computed_at``; the rest are the snapshot's.
    """

    user_id: str
    version: str
    snapshot_date: dt.date
    computed_at: dt.datetime
    values: Mapping[str, Any]
    updated_at: dt.datetime | None = None
    updated_fields: tuple[str, ...] = ()

    def statuses(self, registry: Registry, now: dt.datetime) -> dict[str, str]:
        """``present`` or ``stale`` per feature: stale once its age exceeds its tolerance (the age of an
        event-updated field counts from ``updated_at``, of the others from ``computed_at``)."""
        out = {}
        for name in self.values:
            since = self.updated_at if name in self.updated_fields and self.updated_at else self.computed_at
            out[name] = STALE if now - since > registry.get_feature(name).staleness_tolerance else PRESENT
        return out


def decode_replies(info: VersionInfo, user_ids: Sequence[str], replies: Sequence[Any],
                   features: Sequence[str] | None) -> dict[str, OnlineVector | None]:
    """Per user, its vector of ``info``'s version from the replies to ``GET`` of its vector and ``HGETALL`` of
    its overlay (two per user, in ``user_ids`` order): ``features`` (all of the layout when None), a name the
    layout lacks as None, overlay fields over the vector's. None for a user without a vector."""
    wanted = info.layout if features is None else tuple(dict.fromkeys(features))
    width = len(info.layout)
    if wanted == info.layout:  # the whole layout, in its order: the decoded list as it is
        index: Mapping[str, int] = info.index
        picks = None
    else:  # positions in the layout, once per call; a name the layout lacks reads the None appended at its end
        index = {name: i for i, name in enumerate(wanted)}
        picks = [info.index.get(name, width) for name in wanted]
    out: dict[str, OnlineVector | None] = {}
    for i, user in enumerate(user_ids):
        blob, overlay = replies[2 * i], replies[2 * i + 1]
        if blob is None:
            out[user] = None  # an overlay without its vector (it outlived it by seconds) is not served
            continue
        values = codec.decode(blob)
        if len(values) != width:
            raise ValueError(f"the vector of {user!r} holds {len(values)} values; "
                             f"version {info.version}'s layout has {width}")
        if picks is not None:
            values.append(None)
            values = list(map(values.__getitem__, picks))
        updated_at: dt.datetime | None = None
        updated: tuple[str, ...] = ()
        if overlay:
            fields = {reply_text(k): v for k, v in overlay.items()}
            updated = tuple(name for name in wanted if name in fields and name in info.index)
            for name in updated:
                values[index[name]] = codec.decode(fields[name])[0]
            if updated:
                updated_at = dt.datetime.fromisoformat(reply_text(fields[OVERLAY_AS_OF]))
        out[user] = OnlineVector(user, info.version, info.snapshot_date, info.computed_at,
                                 Values(wanted, index, values), updated_at, updated)
    return out


def reply_text(value: bytes | str) -> str:
    """A Redis reply as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class PushResult:
    version: str
    snapshot_date: dt.date
    served: bool  # the pointer now names this version
    keys: int = 0
    bytes: int = 0
    seconds: float = 0.0
    previous: str | None = None
    reason: str = ""
    deleted_versions: list[str] = field(default_factory=list)

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0
