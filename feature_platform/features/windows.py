"""Sliding windows over daily partial aggregates (tiles): exact, and independent of a run's range.

A :class:`RowSet` holds partial aggregates keyed by (group, day), sorted by group then day. A group
is a user, or one entity of a user: a session, a conversation, a campaign, a channel, an affinity
key. For a snapshot day D and a window of W days, a snapshot sees the rows with
D-W+1 <= day <= D: for each group, one contiguous run [lo, hi] of the sorted rows (:meth:`runs`).
Every windowed feature is a function of such runs:

- counts and integer sums are prefix-sum differences over the rows: exact;
- the first and last day or timestamp a window sees are those of the run's first and last row;
- float sums are added row by row in day order, starting from 0.0 (:meth:`ordered_sum`), so the
  value for D depends only on the rows D sees, never on which other days a run computes: a one-day
  run and a backfill write the same bits;
- distinct counts (sessions, conversations, channels, campaigns) are the number of runs per user.

Days are whole days since 1970-01-01 (``int64``); timestamps are microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

US_PER_DAY = 86_400_000_000
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class Runs:
    """The rows one snapshot day sees: per visible group, rows lo..hi (inclusive) of the RowSet."""

    group: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return len(self.group)


@dataclass
class RowSet:
    """Partial aggregates per (group, day), sorted by (group, day); one row per pair."""

    group: np.ndarray  # int64 group index, 0 .. groups-1
    day: np.ndarray  # int64 days since the epoch
    owner: np.ndarray  # int64 user index of each group (``owner[group]``)
    columns: dict[str, np.ndarray]
    _prefix: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _totals: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, group: np.ndarray, day: np.ndarray, owner: np.ndarray, columns: Mapping[str, np.ndarray]) -> RowSet:
        order = np.lexsort((day, group))
        return cls(
            group=np.asarray(group, np.int64)[order],
            day=np.asarray(day, np.int64)[order],
            owner=np.asarray(owner, np.int64),
            columns={name: np.asarray(values)[order] for name, values in columns.items()},
        )

    def __len__(self) -> int:
        return len(self.group)

    @property
    def groups(self) -> int:
        return len(self.owner)

    def runs(self, day: int, window: int) -> Runs:
        """Per group, the rows with ``day - window + 1 <= row day <= day``."""
        visible = np.flatnonzero((self.day <= day) & (self.day > day - window))
        if visible.size == 0:
            empty = np.zeros(0, np.int64)
            return Runs(empty, empty, empty)
        groups = self.group[visible]
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        ends = np.r_[starts[1:], visible.size] - 1
        return Runs(group=groups[starts], lo=visible[starts], hi=visible[ends])

    def prefix(self, name: str) -> np.ndarray:
        """Cumulative sum of an integer column with a leading 0: rows lo..hi sum to p[hi+1] - p[lo]."""
        if name not in self._prefix:
            values = self.columns[name]
            out = np.zeros((len(values) + 1, *values.shape[1:]), np.int64 if values.ndim == 1 else values.dtype)
            np.cumsum(values, axis=0, out=out[1:])
            self._prefix[name] = out
        return self._prefix[name]

    def total(self, runs: Runs, name: str) -> np.ndarray:
        """Exact sum of an integer column (or of each column of an integer matrix) over each run.

        The first total of a column adds each run's rows directly (one pass, no prefix array: what a
        one-day run needs); from the second on, prefix sums answer every run in constant time."""
        if name in self._prefix or self._totals.get(name, 0) >= 1:
            p = self.prefix(name)
            return p[runs.hi + 1] - p[runs.lo]
        self._totals[name] = self._totals.get(name, 0) + 1
        return segment_sums(self.columns[name], runs)

    def ordered_sum(self, runs: Runs, term: Callable[[np.ndarray], np.ndarray] | str) -> np.ndarray:
        """Float sum of ``term(rows)`` over each run, added in day order starting from 0.0.

        The additions happen in the same order whatever else is computed, so the result is bit-for-bit
        a function of the run's rows alone. Runs are processed longest first so that step j touches
        only the runs that still have a j-th row.
        """
        # `term` is callable when it is not a column name; mypy does not narrow through `values` (the typed
        # rewrite would change every family's fingerprint, see registry/fingerprint.py, for no value change).
        values = self.columns[term] if isinstance(term, str) else None
        at = (lambda rows: values[rows]) if values is not None else term
        length = runs.hi - runs.lo + 1
        order = np.argsort(-length, kind="stable")
        lo, ordered_length = runs.lo[order], length[order]
        acc = np.zeros(len(order), np.float64)
        steps = int(ordered_length[0]) if len(order) else 0
        # active[j]: how many runs (longest first) have more than j rows
        active = np.searchsorted(-ordered_length, -np.arange(steps), side="left")
        for j in range(steps):
            n = int(active[j])
            acc[:n] += at(lo[:n] + j)  # type: ignore[operator]  # a callable here, see above
        out = np.empty_like(acc)
        out[order] = acc
        return out

    def per_owner(self, runs: Runs, values: np.ndarray | None, users: int) -> np.ndarray:
        """Sum per user of a per-run value (``None``: count the runs), in run order."""
        owners = self.owner[runs.group]
        if values is None:
            return np.bincount(owners, minlength=users).astype(np.int64)
        if np.issubdtype(np.asarray(values).dtype, np.integer):
            out = np.zeros(users, np.int64)
            np.add.at(out, owners, values)
            return out
        return np.bincount(owners, weights=values, minlength=users)

    def scatter(self, runs: Runs, values: np.ndarray, users: int, fill: float | int = 0) -> np.ndarray:
        """A per-user array from a per-run value of a user-level RowSet (one run per user at most)."""
        out = np.full(users, fill, dtype=np.asarray(values).dtype)
        out[runs.group] = values
        return out


def segment_sums(values: np.ndarray, runs: Runs) -> np.ndarray:
    """Sum of rows lo..hi of ``values`` (a column or a matrix) for each run, in one pass."""
    if len(runs) == 0:
        return np.zeros((0, *values.shape[1:]), np.int64 if values.ndim == 1 else values.dtype)
    bounds = np.empty(2 * len(runs), np.int64)
    bounds[0::2], bounds[1::2] = runs.lo, runs.hi + 1
    if bounds[-1] == len(values):
        bounds = bounds[:-1]  # the last run ends the array: its segment runs to the end
    # Segments alternate run, gap, run, ...: keep every other one.
    sums = np.add.reduceat(values, bounds, axis=0)[0::2]
    return sums.astype(np.int64) if values.ndim == 1 else sums


def days_since_epoch(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """date32 -> int64 days since 1970-01-01."""
    return pc.cast(values, pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)


def micros(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """timestamp[us] -> int64 microseconds since the epoch (nulls become the minimum int64)."""
    filled = pc.fill_null(pc.cast(values, pa.int64()), np.iinfo(np.int64).min)
    return filled.to_numpy(zero_copy_only=False)


def column(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy feature column as Arrow, null where ``valid`` is False."""
    if valid is None:
        return pa.array(values)
    return pa.array(values, mask=~np.asarray(valid, bool))


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> pa.Array:
    """numerator / denominator as float, null where the denominator is 0."""
    valid = denominator != 0
    out = np.zeros(len(numerator), np.float64)
    np.divide(numerator, denominator, out=out, where=valid)
    return column(out, valid)


def days_since(last_day: np.ndarray, day: int, valid: np.ndarray) -> pa.Array:
    """D - last day as int, null where there is none."""
    return column(np.where(valid, day - last_day, 0).astype(np.int64), valid)
