"""Contact model on the contact training set: XGBoost, a listing-contact-rate baseline, ranking quality.

The model predicts whether a listing view (or impression) leads to a contact or favourite of that
listing by the same user (see :func:`feature_platform.ml.training_sets.contact_training_set`). Its
inputs are the user's point-in-time features plus the listing and the context of the view, all
through the one expansion (:func:`feature_platform.ml.expand.expand`, listing and context columns
passed as ``extra``, with the user-listing match inputs of :func:`add_match_inputs`).

Two splits, as for churn: ``random`` (80/20 stratified) and ``out_of_time`` (train on the views
before the time that leaves the last ``oot_fraction`` of views, test on those). The baseline is
what a product without a model would use: each listing's historical contact rate on the training
rows, smoothed towards the overall rate with :data:`PRIOR_VIEWS` pseudo-views (an unseen listing
gets the overall rate). Ranking quality per user (NDCG@k and precision@k over the listings a user
viewed in the test rows) is reported for model and baseline.

XGBoost's depth and number of rounds come from one search (:mod:`feature_platform.ml.search`) on the
views in neither test set: fitted on the earlier ones, early-stopped and scored on the latest
``oot_fraction`` of them. Seeded, and every fit single-threaded (two run at a time, see
:mod:`feature_platform.ml.search`), so a seed gives identical metrics and model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from xgboost import XGBClassifier

from feature_platform.ml import evaluation, search
from feature_platform.ml.evaluation import (
    BY_USER,
    DEFAULT_AUC_FLOOR,
    Evaluation,
    TooLittleDataError,
    evaluate,
    require_split_classes,
    split_by_user,
)
from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion, list_entries
from feature_platform.registry.registry import Registry

LABEL = "contacted"
MODEL = "xgboost"
BASELINE = "baseline_listing_rate"
OOT = "out_of_time"
# Listing and context inputs (not registry features): column -> expansion kind.
EXTRA_INPUTS = {
    "listing_category_affinity": "numeric",  # the user-listing match inputs of add_match_inputs
    "listing_city_affinity": "numeric",
    "listing_price_gap": "numeric",
    "price": "numeric",
    "price_rank": "numeric",
    "is_premium": "numeric",
    "image_count": "numeric",
    "day_of_week": "numeric",
    "hour": "numeric",
    "category_id": "categorical",
    "city": "categorical",
    "device": "categorical",
}
PRIOR_VIEWS = 20.0
RANK_K = 5
DEPTHS = (3, 5)  # searched; the rounds are found by early stopping


@dataclass
class ContactTrainingResult:
    evaluations: dict[str, dict[str, Evaluation]]  # split -> MODEL / BASELINE -> evaluation
    specs: dict[str, ExpansionSpec]
    estimators: dict[str, Any] = field(repr=False)  # split -> fitted model
    seed: int
    final_spec: ExpansionSpec | None = None
    final_model: Any = field(default=None, repr=False)
    champion: str = MODEL

    @property
    def champion_oot_auc(self) -> float:
        return self.evaluations[OOT][MODEL].roc_auc

    @property
    def baseline_oot_auc(self) -> float:
        return self.evaluations[OOT][BASELINE].roc_auc

    def metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {s: {m: e.metrics() for m, e in models.items()} for s, models in self.evaluations.items()}


def train_contact_model(
    table: pa.Table,
    feature_names: Sequence[str],
    registry: Registry,
    seed: int = 7,
    oot_fraction: float = 0.2,
    progress: Callable[[str], None] = lambda _line: None,
) -> ContactTrainingResult:
    """Fit and evaluate the model and the baseline on both splits; refit the model on every labelled row.

    ``progress`` gets a line per stage: the search, the fits, each split's score."""
    data = add_match_inputs(_labelled(table))
    y = np.asarray(data.column(LABEL).to_numpy(zero_copy_only=False), dtype=np.int64)
    splits = {BY_USER: split_by_user(data.column("user_id"), y, seed), OOT: _oot_split(data, oot_fraction)}
    require_split_classes(y, splits)
    search_fit, search_val = _search_split(data, [test for _, test in splits.values()], oot_fraction)
    search_fit, search_val = search.checked_rows(y, search_fit, search_val, seed)

    # Expansion is row by row: the matrix of every labelled row, taken at a split's rows, is that split's
    # matrix, and the specs fitted on different rows are usually equal, so expand usually runs once. float32
    # because XGBoost bins float32 values anyway (the same model), at half the memory and copying.
    matrices: dict[ExpansionSpec, np.ndarray] = {}

    def matrix(rows: np.ndarray) -> tuple[ExpansionSpec, np.ndarray]:
        spec = fit_expansion(data.take(rows), feature_names, registry, extra=EXTRA_INPUTS)
        if spec not in matrices:
            matrices[spec] = expand(data, spec)[0].astype(np.float32)
        return spec, matrices[spec]

    _, x = matrix(np.sort(np.concatenate([search_fit, search_val])))
    progress(f"contact: searching {len(DEPTHS)} depths on {len(search_fit):,} views, validated on {len(search_val):,}")
    params = search.best_params({MODEL: (partial(_model, seed), [{"max_depth": d} for d in DEPTHS])},
                                x[search_fit], y[search_fit], x[search_val], y[search_val])[MODEL]
    split_matrices = {split: matrix(train) for split, (train, _) in splits.items()}
    final_spec, x_all = matrix(np.arange(len(y)))
    # The final refit needs no split's result, so it runs beside the two split fits.
    progress(f"contact: fitting {params} on {', '.join(f'{s}: {len(r):,} views' for s, (r, _) in splits.items())} "
             f"and all {len(y):,}")
    *fitted, final_model = search.run_all([
        *(partial(search.fit_rows, _model(seed, params), split_matrices[split][1], y, train)
          for split, (train, _) in splits.items()),
        partial(_model(seed, params).fit, x_all, y),
    ])
    evaluations: dict[str, dict[str, Evaluation]] = {}
    specs: dict[str, ExpansionSpec] = {}
    estimators: dict[str, Any] = {}
    users = np.asarray(data.column("user_id").to_pylist(), dtype=object)
    for (split, (train, test)), model in zip(splits.items(), fitted, strict=True):
        spec, x = split_matrices[split]
        p = model.predict_proba(x[test])[:, 1]
        model_eval = evaluate(y[test], p, spec.columns, model.feature_importances_, params, len(train))
        progress(f"contact: xgboost on {split}: ROC-AUC {model_eval.roc_auc:.3f} ({len(test):,} test views)")
        model_eval.ranking = ranking_metrics(users[test], y[test], p, RANK_K)
        test_rows = data.take(test)
        rates = listing_contact_rates(data.take(train))
        base = baseline_scores(test_rows, rates)
        base_eval = evaluate(y[test], base, ["listing_contact_rate"], np.array([1.0]), {"prior_views": PRIOR_VIEWS},
                             len(train))
        base_eval.ranking = ranking_metrics(users[test], y[test], base, RANK_K)
        specs[split], estimators[split] = spec, model
        evaluations[split] = {MODEL: model_eval, BASELINE: base_eval}
    return ContactTrainingResult(evaluations, specs, estimators, seed, final_spec, final_model)


def add_match_inputs(table: pa.Table) -> pa.Table:
    """How well each row's listing matches its user, from the user's point-in-time affinities.

    ``listing_category_affinity`` = category_affinity[category_id], ``listing_city_affinity`` =
    city_affinity[city] (0 when the map lacks the key, null when the map or the key is null, as for a
    listing missing from ``raw/listings``), and
    ``listing_price_gap`` = |price_rank - price_sensitivity| (null when either is null). The same
    function builds these inputs for training and for serving a prediction.
    """
    out = table
    for name, map_column, key_column in (("listing_category_affinity", "category_affinity", "category_id"),
                                         ("listing_city_affinity", "city_affinity", "city")):
        out = out.append_column(name, _lookup(table.column(map_column), table.column(key_column)))
    gap = pc.abs(pc.subtract(pc.cast(table.column("price_rank"), pa.float64()),
                             pc.cast(table.column("price_sensitivity"), pa.float64())))
    return out.append_column("listing_price_gap", gap)


def _lookup(maps: pa.ChunkedArray, keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Per row, the map's value at the row's key: 0.0 when the map lacks the key; null when the map, the key
    or that value is null; a key twice in one map gives its last value (as a dict built from the pairs)."""
    rows, entries = list_entries(maps)
    keys = keys.combine_chunks()
    hit = pc.fill_null(pc.equal(entries.field(0), keys.take(pa.array(rows))), False)  # a null key hits nothing
    hits = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
    last = hits[len(hits) - 1 - np.unique(rows[hits][::-1], return_index=True)[1]]  # rows ascend: one hit per row
    values = entries.field(1)
    out = np.zeros(len(keys), dtype=np.float64)
    null = ~(_valid(maps) & _valid(keys))
    out[rows[last]] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)[last]
    null[rows[last]] |= ~_valid(values)[last]
    return pa.array(out, type=pa.float64(), mask=null)


def _valid(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.is_valid(array).to_numpy(zero_copy_only=False)


def promotion_decision(result: ContactTrainingResult, auc_floor: float = DEFAULT_AUC_FLOOR) -> tuple[bool, str]:
    """Promote when the model's out-of-time ROC-AUC beats the listing-rate baseline's and the floor."""
    return evaluation.promotion_decision(MODEL, result.champion_oot_auc, BASELINE, result.baseline_oot_auc, auc_floor)


def listing_contact_rates(table: pa.Table) -> dict[str, Any]:
    """Smoothed contact rate per listing over ``table``'s rows: (contacts + m·prior) / (views + m)."""
    listings = table.column("listing_id").to_pylist()
    labels = np.asarray(table.column(LABEL).to_numpy(zero_copy_only=False), dtype=np.float64)
    prior = float(labels.mean()) if len(labels) else 0.0
    views: dict[str, float] = {}
    contacts: dict[str, float] = {}
    for listing, label in zip(listings, labels, strict=True):
        views[listing] = views.get(listing, 0.0) + 1.0
        contacts[listing] = contacts.get(listing, 0.0) + label
    return {
        "prior": prior,
        "rates": {k: (contacts[k] + PRIOR_VIEWS * prior) / (views[k] + PRIOR_VIEWS) for k in views},
    }


def baseline_scores(table: pa.Table, rates: dict[str, Any]) -> np.ndarray:
    known = rates["rates"]
    return np.array([known.get(k, rates["prior"]) for k in table.column("listing_id").to_pylist()], dtype=np.float64)


def ranking_metrics(users: Sequence[Any], y: np.ndarray, scores: np.ndarray, k: int = RANK_K) -> dict[str, float]:
    """Mean NDCG@k and precision@k over users with at least one positive among their rows.

    Each user's rows are ranked by score, highest first (ties keep row order). Precision@k divides
    the positives in the top min(k, n) by min(k, n). NDCG uses binary gains and log2(rank + 1).
    """
    groups: dict[Any, list[int]] = {}
    for i, user in enumerate(users):
        groups.setdefault(user, []).append(i)
    ndcgs, precisions = [], []
    for rows in groups.values():
        labels = np.asarray(y)[rows]
        if labels.sum() == 0:
            continue
        order = sorted(range(len(rows)), key=lambda j: -float(scores[rows[j]]))
        top = labels[order][:k]
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(top))
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, int(labels.sum()))))
        ndcgs.append(dcg / ideal)
        precisions.append(float(top.sum()) / len(top))
    return {
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else float("nan"),
        f"precision@{k}": float(np.mean(precisions)) if precisions else float("nan"),
        "users_ranked": len(ndcgs),
    }


def has_labelled_rows(table: pa.Table) -> bool:
    return table.num_rows > 0 and bool(pc.any(pc.fill_null(table.column("labelled"), False)).as_py())


def _labelled(table: pa.Table) -> pa.Table:
    for column in (LABEL, "labelled", "timestamp", "listing_id", "user_id"):
        if column not in table.column_names:
            raise KeyError(f"column {column!r} missing; pass the contact training set (contact_training_set)")
    data = table.filter(pc.and_(pc.fill_null(table.column("labelled"), False), pc.is_valid(table.column(LABEL))))
    if data.num_rows == 0:
        raise TooLittleDataError("no labelled listing views: ingest events with listing_viewed or impression rows")
    return data


def _oot_split(data: pa.Table, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"oot_fraction must be in (0, 1), got {fraction}")
    late = _latest(_timestamps(data), fraction)
    if late.all() or not late.any():
        raise TooLittleDataError("out-of-time split: every view has the same timestamp; there is no earlier part to train on")
    return np.flatnonzero(~late), np.flatnonzero(late)


def _search_split(data: pa.Table, tests: Sequence[np.ndarray], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The views in none of ``tests``: the latest ``fraction`` of them validate, the earlier ones fit."""
    rows = np.setdiff1d(np.arange(data.num_rows), np.concatenate(tests))
    late = _latest(_timestamps(data)[rows], fraction)
    if late.all() or not late.any():
        raise TooLittleDataError("the hyper-parameter search: the views outside the test sets all have the same timestamp; "
                         "there is no earlier part to fit on. Use more days of events")
    return rows[~late], rows[late]


def _timestamps(data: pa.Table) -> np.ndarray:
    return pc.cast(data.column("timestamp"), pa.int64()).to_numpy(zero_copy_only=False)


def _latest(ts: np.ndarray, fraction: float) -> np.ndarray:
    """True for the rows at or after the time that leaves the last ``fraction`` of ``ts``."""
    cut = np.sort(ts)[min(int(len(ts) * (1.0 - fraction)), len(ts) - 1)]
    return ts >= cut


def _model(seed: int, params: dict[str, Any] | None = None) -> XGBClassifier:
    model = XGBClassifier(n_estimators=150, learning_rate=0.1, importance_type="gain", eval_metric="logloss",
                          tree_method="hist", random_state=seed, n_jobs=1)
    return model.set_params(**(params or {}))
