"""Feature drift as the population stability index (PSI) between a reference and a current sample.

PSI = sum over bins of (a - e) * ln(a / e), with e the reference's share of rows in a bin and a the
current sample's. It is 0 for identical shares, never negative, and grows with the shift; the usual
reading is < 0.1 stable, 0.1-0.25 a moderate shift, >= 0.25 a large one (the FP_DRIFT_PSI_* defaults).

Binning rules (fixed, so a value means the same from day to day):
    columns      every registry feature is expanded as the models see it (ml/expand.py, fitted on the
                 reference): int/float/bool one column (bool 1.0/0.0), a vector one column per position
                 (``topic_0`` ..), a map one column per key the reference holds (``name__key``; a key the
                 row lacks is 0.0). Keys that only the current sample has are not measured.
    missing      a null (NaN after expansion) is a bin of its own in every column, so a change in the
                 share of nulls is drift too.
    categories   a column with at most :data:`MAX_CATEGORIES` distinct non-null values in both samples
                 together (booleans, one-hot flags, small counts) gets one bin per value.
    quantiles    any other column gets the reference's deciles as edges (numpy's linear interpolation,
                 duplicates dropped) and right-closed bins (-inf, q1], (q1, q2], .., (q9, inf).
    epsilon      a bin's share is floored at :data:`EPSILON` in both samples (not renormalized), so an
                 empty bin contributes a large but finite term instead of an infinite one.
An empty sample has no distribution: the column is skipped with the reason, never reported as 0.

What a snapshot is compared with (so that a large PSI means the population changed, not the calendar):
    weekday      the sample data and real users have a weekly rhythm (weekend activity, Tuesday campaigns),
                 so snapshot D is compared with D-7, the same weekday a week before, when that partition
                 exists, else with D-1 (the label says which: ``D-7 (<date>)`` or ``D-1 (<date>)``). The
                 churn champion's training rows (weekly dates, one weekday) are a reference on that weekday only.
    ageing       :data:`AGEING_FEATURES` count days since a user's first event or purchase: the anchor never
                 moves, so every value grows by exactly one per day. Before binning, the reference's values
                 are aged by the days between the two snapshots (:func:`age_values`); a value aged past the
                 registry range's upper bound becomes null, as the current snapshot would have it.
    filling      a feature's registry ``window`` (30d, 90d, all) covers fewer days on a young history: 33 days
                 of data give a 90-day count 33 days, a week later 40. Its values grow with the window, not
                 with the population, so when D's value covers over :data:`FILLING_TOLERANCE` more days than
                 the reference's, the column's PSI is reported but not judged (``filling``; the aged features
                 excepted). Against D-7, a 30-day window is judged from the 35th day of data on, a 90-day one
                 and ``all`` from the 77th.
    noise        small samples differ by chance: the level is judged on the PSI above :func:`noise_floor`,
                 the PSI two samples of these sizes stay under about 49 times in 50 when nothing changed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike

from feature_platform.ml.expand import expand, fit_expansion
from feature_platform.ml.model_store import ModelStore, training_fingerprint
from feature_platform.offline.store import OfflineStore
from feature_platform.registry.registry import Feature, Registry

EPSILON = 1e-4
MAX_CATEGORIES = 10
QUANTILES = tuple(i / 10 for i in range(1, 10))
MISSING = "missing"
CHURN_MODEL_NAME = "churn"
TRAINING_TABLE = "training/training_dataset"
WEEK = 7
FILLING_TOLERANCE = 0.1  # judged once D's window covers at most 10% more days than the reference's

AGEING_FEATURES = frozenset({"tenure_days", "first_purchase_days", "btyd_age_days"})
"""Features that are ``D - <day of the user's first event or purchase>`` (registry computation ``D - min(..)``).

Only these are aged. The recency features (``last_active_days``, ``recency_days``, ``days_since_last_purchase``,
``last_purchase_days``: ``D - max(..)``) also grow by one a day, but an event resets them to 0, so in a steady
population their distribution does not move from week to week; ageing their reference would read every user
active since then as drift. A test holds this list to the registry's computations.
"""


@dataclass(frozen=True)
class Binned:
    """One column's bins: labels and the shares of reference and current rows (each sums to 1)."""

    labels: tuple[str, ...]
    reference: np.ndarray
    current: np.ndarray
    method: str  # "categories" or "quantiles"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    feature: str
    psi: float
    method: str
    bins: int
    noise: float = 0.0  # the PSI samples of these sizes stay under with no change at all (noise_floor)
    filling: str = ""  # why the column is not judged: its window covers more days on D than on the reference

    @property
    def excess(self) -> float:
        """PSI above the noise floor: what the warn and fail thresholds judge (0 for a filling window)."""
        return 0.0 if self.filling else max(0.0, self.psi - self.noise)


def noise_floor(bins: int, reference_rows: int, current_rows: int) -> float:
    """The PSI two samples of these sizes drawn from one distribution stay under about 49 times in 50.

    Under no change, PSI * n_ref * n_cur / (n_ref + n_cur) is about chi-square with bins - 1 degrees of
    freedom (mean bins - 1, variance 2 (bins - 1)); the floor is its mean plus two standard deviations,
    times (1/n_ref + 1/n_cur). 0.019 for 2,000 rows in 10 bins, 0.23 for 150: a small population is not
    alerted on its sampling noise, a large one is judged almost on its raw PSI.
    """
    if reference_rows < 1 or current_rows < 1 or bins < 2:
        return 0.0
    dof = bins - 1
    return (dof + 2.0 * math.sqrt(2.0 * dof)) * (1.0 / reference_rows + 1.0 / current_rows)


def filling_reason(feature: Feature, history_days: int | None, age_days: int) -> str:
    """Why ``feature`` is not judged when D has ``history_days`` of data and the reference ``age_days`` fewer
    ("" when it is judged: no window, an aged feature, an unknown history, or spans within the tolerance)."""
    if history_days is None or feature.name in AGEING_FEATURES:
        return ""
    current = feature.days_covered(history_days)
    reference = feature.days_covered(max(history_days - age_days, 0))
    if current is None or reference is None or current <= reference * (1 + FILLING_TOLERANCE):
        return ""
    return (f"window {feature.window} still filling: it covers {reference} days of data on the reference "
            f"and {current} on D")


@dataclass
class DriftReport:
    """Per-column PSI of one comparison (e.g. snapshot D against D-7), worst first."""

    reference: str
    current: str
    columns: list[ColumnDrift] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # column or feature -> why no PSI
    reference_rows: int = 0
    current_rows: int = 0
    age_days: int = 0  # days the reference's AGEING_FEATURES were aged by
    aged: tuple[str, ...] = ()  # the features aged
    filling: dict[str, str] = field(default_factory=dict)  # feature -> why its columns are not judged

    @property
    def worst(self) -> ColumnDrift | None:
        return self.columns[0] if self.columns else None

    @property
    def max_psi(self) -> float:
        return self.columns[0].psi if self.columns else 0.0

    @property
    def worst_judged(self) -> ColumnDrift | None:
        """The column furthest above its noise floor: the one the level is judged on."""
        return max(self.columns, key=lambda c: (c.excess, not c.filling, c.psi)) if self.columns else None

    @property
    def max_excess(self) -> float:
        worst = self.worst_judged
        return worst.excess if worst else 0.0

    def level(self, warn: float, fail: float) -> str:
        return drift_level(self.max_excess, warn, fail)

    def psi_by_column(self) -> dict[str, float]:
        return {c.column: round(c.psi, 6) for c in self.columns}


def drift_level(psi: float, warn: float, fail: float) -> str:
    """``ok`` below ``warn``, ``warn`` from there, ``fail`` from ``fail`` on (both bounds inclusive)."""
    return "fail" if psi >= fail else "warn" if psi >= warn else "ok"


def psi_from_shares(reference: ArrayLike, current: ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI of two share vectors over the same bins; shares below ``epsilon`` count as ``epsilon``."""
    e = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"share vectors must be 1-D and of one length, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def bin_column(reference: np.ndarray, current: np.ndarray) -> Binned:
    """Bin two float samples (NaN = missing) by the module's rules; both must be non-empty."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("cannot bin an empty sample: a distribution needs at least one row")
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    values = np.unique(np.concatenate([ref_ok, cur_ok]))
    if values.size <= MAX_CATEGORIES:
        labels = [_fmt(v) for v in values]
        ref_idx, cur_idx = np.searchsorted(values, ref_ok), np.searchsorted(values, cur_ok)
        method = "categories"
    else:
        edges = np.unique(np.quantile(ref_ok, QUANTILES)) if ref_ok.size else np.array([])
        bounds = ["-inf", *(_fmt(e) for e in edges), "inf"]
        labels = [f"({lo}, {hi}]" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        ref_idx = np.searchsorted(edges, ref_ok, side="left")
        cur_idx = np.searchsorted(edges, cur_ok, side="left")
        method = "quantiles"
    n = len(labels)
    ref_counts = np.append(np.bincount(ref_idx, minlength=n), ref.size - ref_ok.size)
    cur_counts = np.append(np.bincount(cur_idx, minlength=n), cur.size - cur_ok.size)
    return Binned((*labels, MISSING), ref_counts / ref.size, cur_counts / cur.size, method)


def column_psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    binned = bin_column(reference, current)
    return psi_from_shares(binned.reference, binned.current, epsilon)


def age_values(values: np.ndarray, days: int, cap: float | None = None) -> np.ndarray:
    """``values`` (days since an anchor that never moves; NaN = null) as they read ``days`` later.

    Each grows by ``days``; one past ``cap`` (the registry range's upper bound) becomes null, as a snapshot
    nulls a value outside the window it covers. A user whose anchor falls between the two snapshots is new in
    the later one and has no reference value to age.
    """
    if days < 0:
        raise ValueError(f"a reference cannot be later than the snapshot it is compared with (days={days})")
    aged = np.asarray(values, dtype=np.float64) + days
    if cap is not None:
        aged[aged > cap] = np.nan
    return aged


def expanded_columns(
    reference: pa.Table, current: pa.Table, features: Sequence[str], registry: Registry, age_days: int = 0
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """``[(column, feature)]`` and the two float matrices, expanded by a spec fitted on the reference.

    ``age_days``: the days from the reference's snapshot to the current one; the reference's
    :data:`AGEING_FEATURES` are aged by that many days (:func:`age_values`).
    """
    spec = fit_expansion(reference, features, registry)
    ref, _ = expand(reference, spec)
    cur, _ = expand(current, spec)
    owners = [(column, f.name) for f in spec.features for column in f.columns]
    for i, (_, feature) in enumerate(owners):
        if age_days and feature in AGEING_FEATURES:
            bounds = registry.get_feature(feature).value_range
            ref[:, i] = age_values(ref[:, i], age_days, bounds[1] if bounds else None)
    return owners, ref, cur


def drift_report(
    reference: pa.Table,
    current: pa.Table,
    features: Sequence[str],
    registry: Registry,
    reference_label: str,
    current_label: str,
    age_days: int = 0,
    history_days: int | None = None,
) -> DriftReport:
    """PSI of every column of ``features`` (registry names present in both tables), worst first.

    ``age_days``: days from the reference's snapshot to the current one (see :func:`expanded_columns`).
    ``history_days``: days of data up to and including D (from the data's first day); with it, features
    whose window is still filling are reported but not judged (:func:`filling_reason`).
    """
    present = [f for f in features if f in reference.column_names and f in current.column_names]
    report = DriftReport(reference_label, current_label, reference_rows=reference.num_rows,
                         current_rows=current.num_rows, age_days=age_days,
                         aged=tuple(f for f in present if f in AGEING_FEATURES) if age_days else ())
    for name in features:
        if name not in present:
            report.skipped[name] = f"not a column of both {reference_label} and {current_label}"
    if reference.num_rows == 0 or current.num_rows == 0:
        empty = reference_label if reference.num_rows == 0 else current_label
        report.skipped.update({name: f"{empty} has no rows" for name in present})
        return report
    owners, ref, cur = expanded_columns(reference, current, present, registry, age_days)
    for name in present:
        if registry.get_feature(name).type == "map" and not any(f == name for _, f in owners):
            report.skipped[name] = f"the map has no key in {reference_label}"
        if why := filling_reason(registry.get_feature(name), history_days, age_days):
            report.filling[name] = why
    for i, (column, feature) in enumerate(owners):
        binned = bin_column(ref[:, i], cur[:, i])
        report.columns.append(ColumnDrift(column, feature, psi_from_shares(binned.reference, binned.current),
                                          binned.method, len(binned.labels),
                                          noise_floor(len(binned.labels), ref.shape[0], cur.shape[0]),
                                          report.filling.get(feature, "")))
    report.columns.sort(key=lambda c: (-c.psi, c.column))
    return report


def column_bins(reference: pa.Table, current: pa.Table, feature: str, column: str, registry: Registry,
                age_days: int = 0) -> Binned:
    """The bins of one expanded column of ``feature`` (to plot the worst one), the reference aged as compared."""
    owners, ref, cur = expanded_columns(reference, current, [feature], registry, age_days)
    index = [c for c, _ in owners].index(column)
    return bin_column(ref[:, index], cur[:, index])


def worst_markdown(reports: Sequence[DriftReport], warn: float, fail: float, top: int = 10) -> str:
    """The ``top`` worst columns of each comparison as one markdown table."""
    lines = ["| compared with | column | feature | PSI | level | bins |", "| --- | --- | --- | --- | --- | --- |"]
    for report in reports:
        for c in report.columns[:top]:
            level = "not judged (window filling)" if c.filling else drift_level(c.excess, warn, fail)
            lines.append(f"| {report.reference} | {c.column} | {c.feature} | {c.psi:.4f} | "
                         f"{level} | {c.bins} ({c.method}) |")
        if not report.columns:
            why = next(iter(report.skipped.values()), "nothing to compare")
            lines.append(f"| {report.reference} | - | - | - | skipped | {why} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Reference:
    """A sample to compare a snapshot with (``age_days`` before it), or why there is none (``note``)."""

    label: str
    table: pa.Table | None
    note: str = ""
    age_days: int = 0


def reference_day(day: dt.date, stored: Collection[str]) -> dt.date | None:
    """D-7 (the same weekday) when ``stored`` (ISO dates) holds it, else D-1 when it holds that, else None."""
    for back in (WEEK, 1):
        candidate = day - dt.timedelta(days=back)
        if candidate.isoformat() in stored:
            return candidate
    return None


def weekday_reference(store: OfflineStore, table: str, day: dt.date) -> Reference:
    """Snapshot D-7 of ``table`` (``features/<asset>``), else D-1; labelled ``D-7 (<date>)`` / ``D-1 (<date>)``."""
    week_ago, previous = day - dt.timedelta(days=WEEK), day - dt.timedelta(days=1)
    found = reference_day(day, set(store.partitions(table)))
    if found is None:
        return Reference(f"D-7 ({week_ago})", None, f"no {table} partition {week_ago} or {previous} to compare with")
    back = (day - found).days
    note = "" if back == WEEK else (f"no {table} partition {week_ago}: compared with D-1, another weekday, so the "
                                    "weekly rhythm counts as drift")
    return Reference(f"D-{back} ({found})", store.read(table, found.isoformat(), found.isoformat()), note, back)


def champion_training_rows(store: OfflineStore, models: ModelStore, day: dt.date) -> Reference:
    """The churn champion's newest labelled training rows on D's weekday, to compare snapshot D with.

    Only one snapshot date is taken: the set spans many weeks, and the newest population the model learnt
    from is the fair reference for today's. Its dates are weekly, so they share one weekday; on another
    weekday there is no reference (said in the note), as the weekly rhythm would read as drift. The rows
    are ``age_days`` = D - their date old, which the ageing features are aged by.

    The training set on disk is used only when its fingerprint equals the one in the champion's manifest:
    a set rebuilt since (new dates, new features) is not what the champion saw, and there is no
    reference then, said in the note (retraining restores one).
    """
    champion = models.champion(CHURN_MODEL_NAME)
    if champion is None:
        return Reference("champion training set", None, f"no {CHURN_MODEL_NAME} champion yet")
    label = f"champion training set ({CHURN_MODEL_NAME} {champion.version})"
    try:
        table = store.read_table(TRAINING_TABLE)
    except FileNotFoundError as exc:
        return Reference(label, None, str(exc))
    if training_fingerprint(table) != champion.manifest.get("training_fingerprint"):
        return Reference(label, None, f"{TRAINING_TABLE} was rebuilt after {champion.version} was trained "
                                      "(its fingerprint differs from the model's manifest)")
    if "snapshot_date" not in table.column_names:
        return Reference(label, None, f"{TRAINING_TABLE} has no snapshot_date: the rows' weekday and age are unknown")
    if "labelled" in table.column_names:
        table = table.filter(pc.fill_null(table.column("labelled"), False))
    dates = set(table.column("snapshot_date").to_pylist())
    found = same_weekday(day, dates)
    if found is None:
        newest = max(dates, default=None)
        why = (f"its newest labelled rows ({newest}) are a {newest:%A} and D a {day:%A}: the training rows are a "
               "reference on their own weekday only") if newest else f"{TRAINING_TABLE} has no labelled rows"
        return Reference(label, None, why)
    table = table.filter(pc.equal(table.column("snapshot_date"), pa.scalar(found, pa.date32())))
    return Reference(f"{label}, rows of {found}", table, age_days=(day - found).days)


def same_weekday(day: dt.date, dates: Collection[dt.date]) -> dt.date | None:
    """The newest of ``dates`` on or before ``day`` that falls on ``day``'s weekday, else None."""
    return max((d for d in dates if d <= day and (day - d).days % WEEK == 0), default=None)


def _fmt(value: float) -> str:
    return f"{value:.6g}"
