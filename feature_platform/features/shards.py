"""User shards: a day's users split by a stable hash of their id, computed apart, combined into one snapshot.

A user's shard is ``FNV-1a-64(UTF-8 bytes of the canonical user id) mod N``: the same in every process,
on every machine and in every release (no seeded hash, no library's internal hash), and simple enough
for another engine to reproduce. New users land in every shard alike, so shards stay balanced as the
user base grows.

A snapshot's rows are independent per user (the engine merges users in blocks for the same reason),
so a family's snapshot computed shard by shard and combined (:func:`combine`: concatenated, sorted by
user_id as every snapshot is) equals the snapshot computed at once, value for value and, written with
the same settings, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def fnv1a_64(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """FNV-1a 64-bit hash of each string's UTF-8 bytes (``uint64``); vectorised over the byte positions, so
    the cost is one numpy pass per character of the longest id, not a Python call per id."""
    strings = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    strings = pc.cast(strings, pa.large_string())
    if strings.null_count:
        raise ValueError("user ids cannot be null")
    n = len(strings)
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[strings.offset:strings.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashes = np.full(n, FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the multiplication is modulo 2**64 by definition
        for position in range(int(lengths.max()) if n else 0):
            live = np.flatnonzero(lengths > position)
            byte = data[starts[live] + position].astype(np.uint64)
            hashes[live] = (hashes[live] ^ byte) * FNV_PRIME
    return hashes


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: the count must be >= 1 and the index in "
                             f"0 .. {self.count - 1}")

    def __str__(self) -> str:
        return f"shard {self.index + 1}/{self.count}"

    def mask(self, user_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Which of ``user_ids`` belong to this shard."""
        return shard_of(user_ids, self.count) == self.index

    def select(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` (with a ``user_id`` column) in this shard, in their order."""
        if self.count == 1:
            return table
        return table.filter(pa.array(self.mask(table.column("user_id"))))


def shard_of(user_ids: pa.Array | pa.ChunkedArray, count: int) -> np.ndarray:
    """Each user's shard in ``0 .. count - 1``."""
    if count < 1:
        raise ValueError(f"the shard count must be >= 1, got {count}")
    return (fnv1a_64(user_ids) % np.uint64(count)).astype(np.int64)


def shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]


def combine(parts: Sequence[pa.Table]) -> pa.Table:
    """One day's shard snapshots as one snapshot: all rows, sorted by user_id (ids are unique, so the order
    is the unsharded one), in one chunk per column as the engine's own snapshots come."""
    if not parts:
        raise ValueError("no shard snapshots to combine")
    table = pa.concat_tables(parts)
    return table.take(pc.sort_indices(table, sort_keys=[("user_id", "ascending")])).combine_chunks()
