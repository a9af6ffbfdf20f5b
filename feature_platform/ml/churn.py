"""Churn models on the churn training set: three tuned models, a recency baseline, a promotion rule.

Only labelled rows are used. Two splits are evaluated: ``random`` (80/20, stratified) and
``out_of_time`` (train on snapshot dates before the last ``oot_dates`` dates, test on those). The
out-of-time split is the one that matters: the champion is the model with the best out-of-time
ROC-AUC, and promotion compares it with the recency baseline on that split. Features go through
:func:`feature_platform.ml.expand.expand`, its spec fitted on each split's training rows only.

Each model's hyper-parameters come from one search (:mod:`feature_platform.ml.search`) on the rows
in neither test set: candidates fit on their earlier snapshot dates and are scored on the latest one.
Everything is seeded and every fit single-threaded (two run at a time, see :mod:`feature_platform.ml.search`),
so a seed gives identical metrics and models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from xgboost import XGBClassifier

from feature_platform.ml import evaluation, search
from feature_platform.ml.btyd import BgNbd
from feature_platform.ml.evaluation import (
    BY_USER,
    DEFAULT_AUC_FLOOR,
    Evaluation,
    TooLittleDataError,
    evaluate,
    require_split_classes,
    split_by_user,
)
from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.ml.preprocess import ChunkedStandardScaler, MedianImputer
from feature_platform.registry.registry import Registry

LABEL = "churned"
BASELINE = "baseline_recency"
BG_NBD = "baseline_bg_nbd"  # the buy-till-you-die model (ml/btyd.py) on the lifetime family's x, t_x, T
BASELINES = (BASELINE, BG_NBD)
BTYD_FEATURES = ("btyd_frequency", "btyd_recency_days", "btyd_age_days")
BASELINE_FEATURE = "last_active_days"
RECENCY_NULL_DAYS = 365.0  # null recency = nothing in the 90-day lookback: older than any real value
MODELS = ("logistic_regression", "random_forest", "xgboost")
FIT_ORDER = MODELS[::-1]  # longest fit first, so the last fit to start on a core is a short one
FOREST_MAX_SAMPLES = 100_000
SPLITS = (BY_USER, "out_of_time")
OOT = "out_of_time"


@dataclass
class ChurnTrainingResult:
    evaluations: dict[str, dict[str, Evaluation]]  # split -> model (incl. BASELINE) -> evaluation
    specs: dict[str, ExpansionSpec]  # split -> expansion fitted on its training rows
    estimators: dict[str, dict[str, Any]] = field(repr=False)  # split -> model -> fitted estimator
    champion: str
    seed: int
    final_spec: ExpansionSpec | None = None  # fitted on every labelled row: what is served
    final_model: Any = field(default=None, repr=False)  # the champion refitted on every labelled row

    @property
    def champion_oot_auc(self) -> float:
        return self.evaluations[OOT][self.champion].roc_auc

    @property
    def best_baseline(self) -> str:
        """The baseline with the best out-of-time ROC-AUC: the one the champion must beat."""
        present = [b for b in BASELINES if b in self.evaluations[OOT]]
        return max(present, key=lambda b: (self.evaluations[OOT][b].roc_auc, -BASELINES.index(b)))

    @property
    def baseline_oot_auc(self) -> float:
        return self.evaluations[OOT][self.best_baseline].roc_auc

    def metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {s: {m: e.metrics() for m, e in models.items()} for s, models in self.evaluations.items()}


def _quiet(_line: str) -> None:
    pass


def train_churn_models(
    table: pa.Table,
    feature_names: Sequence[str],
    registry: Registry,
    seed: int = 7,
    oot_dates: int = 2,
    progress: Callable[[str], None] = _quiet,
    horizon_days: int = 30,
) -> ChurnTrainingResult:
    """Fit and evaluate every model on both splits; the champion has the best out-of-time ROC-AUC.

    ``progress`` gets a line per stage: the search, the split fits, each model's score, the refit. Besides
    recency, a BG/NBD model fitted on each split's training rows is a baseline when the table has the
    lifetime family's x, t_x, T; it scores P(no purchase in the next ``horizon_days``), the label's horizon."""
    data = _labelled(table)
    if BASELINE_FEATURE not in data.column_names:
        raise KeyError(f"the baseline needs {BASELINE_FEATURE!r}; include it in the training set")
    y = np.asarray(data.column(LABEL).to_numpy(zero_copy_only=False), dtype=np.int64)
    splits = {BY_USER: split_by_user(data.column("user_id"), y, seed), OOT: _oot_split(data, oot_dates)}
    require_split_classes(y, splits)
    search_fit, search_val = _search_split(data, [test for _, test in splits.values()])
    search_fit, search_val = search.checked_rows(y, search_fit, search_val, seed)

    # Expansion is row by row, so the matrix of every labelled row, taken at a split's rows, is that
    # split's matrix; the specs fitted on different rows are usually equal, and then expand runs once.
    # float32: what XGBoost and the forest split on anyway, at half the memory. Its rows are in ``order``
    # (row ``r`` at ``at[r]``), in which each split's training rows are one block: a fit takes a view of
    # them, not a 0.4 GB copy (plus the copy XGBoost and the pipelines make of their own).
    order, blocks = _training_order(len(y), {split: train for split, (train, _) in splits.items()})
    at = np.empty_like(order)
    at[order] = np.arange(len(order))
    y_ordered = y[order]
    matrices: dict[ExpansionSpec, np.ndarray] = {}

    def matrix(rows: np.ndarray) -> tuple[ExpansionSpec, np.ndarray]:
        spec = fit_expansion(data, feature_names, registry, rows=rows)
        if spec not in matrices:
            matrices[spec] = expand(data, spec, np.float32)[0][order]
        return spec, matrices[spec]

    # One BLAS thread (the linear models' products): fits already run two at a time, a second BLAS thread on
    # these small matrices mostly waits (a 13k x 115 matrix-vector product took 10x longer with two on a busy
    # machine), and the coefficients' last bits depend on the BLAS thread count, which would follow the machine.
    with threadpool_limits(limits=1, user_api="blas"):
        _, x = matrix(np.sort(np.concatenate([search_fit, search_val])))
        progress(f"churn: searching {sum(len(_candidates(m)) for m in MODELS)} candidates of {len(MODELS)} models "
                 f"on {len(search_fit):,} rows, validated on {len(search_val):,}")
        params = search.best_params({name: (partial(_model, name, seed, rows=len(search_fit)), _candidates(name))
                                     for name in MODELS},
                                    x[at[search_fit]], y[search_fit], x[at[search_val]], y[search_val])
        del x
        split_matrices = {split: matrix(train) for split, (train, _) in splits.items()}
        final_spec, x_all = matrix(np.arange(len(y)))

        def fit(split: str, name: str) -> Callable[[], Any]:
            block = blocks[split]
            return partial(_model(name, seed, params[name], block.stop - block.start).fit, split_matrices[split][1][block],
                           y_ordered[block])

        def score(split: str, fitted: list[Any]) -> tuple[dict[str, Evaluation], dict[str, Any]]:
            spec, x = split_matrices[split]
            return _score_split(split, dict(zip(FIT_ORDER, fitted, strict=True)), splits[split], spec,
                                x[at[splits[split][1]]], data, y, params, seed, horizon_days, progress)

        # The out-of-time fits first: they name the champion, whose refit on every row (the longest fit) then
        # runs beside the by-user fits instead of alone at the end with the other core idle.
        scored: dict[str, tuple[dict[str, Evaluation], dict[str, Any]]] = {}
        progress(f"churn: fitting {len(MODELS)} models on {OOT}'s {len(splits[OOT][0]):,} rows")
        scored[OOT] = score(OOT, search.run_all([fit(OOT, name) for name in FIT_ORDER]))
        champion = max(MODELS, key=lambda m: (scored[OOT][0][m].roc_auc, -MODELS.index(m)))
        # What is served: the champion with the searched hyper-parameters, refitted on every labelled row.
        progress(f"churn: refitting the champion, {champion}, on all {len(y):,} labelled rows, beside "
                 f"{len(MODELS)} models on {BY_USER}'s {len(splits[BY_USER][0]):,} rows")
        refit = partial(_model(champion, seed, params[champion], len(y)).fit, x_all, y_ordered)
        jobs: list[Callable[[], Any]] = [refit, *(fit(BY_USER, name) for name in FIT_ORDER)]
        final_model, *fitted = search.run_all(jobs)
        scored[BY_USER] = score(BY_USER, fitted)
    evaluations = {split: scored[split][0] for split in splits}
    estimators = {split: scored[split][1] for split in splits}
    specs = {split: split_matrices[split][0] for split in splits}
    return ChurnTrainingResult(evaluations, specs, estimators, champion, seed, final_spec, final_model)


def _score_split(
    split: str,
    fitted: dict[str, Any],
    rows: tuple[np.ndarray, np.ndarray],
    spec: ExpansionSpec,
    x_test: np.ndarray,
    data: pa.Table,
    y: np.ndarray,
    params: dict[str, dict[str, Any]],
    seed: int,
    horizon_days: int,
    progress: Callable[[str], None],
) -> tuple[dict[str, Evaluation], dict[str, Any]]:
    """Per model and baseline of one split, its evaluation on the split's test rows and its estimator; the
    baselines are fitted here, on the split's training rows."""
    train, test = rows
    evaluations: dict[str, Evaluation] = {}
    estimators: dict[str, Any] = {}
    for name in MODELS:
        model = fitted[name]
        evaluations[name] = evaluate(y[test], model.predict_proba(x_test)[:, 1], spec.columns,
                                     _importance(name, model), params[name], len(train))
        estimators[name] = model
        progress(f"churn: {name} on {split}: ROC-AUC {evaluations[name].roc_auc:.3f} ({len(test):,} test rows)")
    baseline = _baseline(seed)
    baseline.fit(_recency(data, train), y[train])
    coef = float(abs(baseline.named_steps["model"].coef_[0][0]))
    evaluations[BASELINE] = evaluate(y[test], baseline.predict_proba(_recency(data, test))[:, 1],
                                     [BASELINE_FEATURE], np.array([coef]), {}, len(train))
    estimators[BASELINE] = baseline
    if all(name in data.column_names for name in BTYD_FEATURES):
        btyd = BgNbd.fit(*_btyd_summary(data, train))
        quiet = btyd.probability_no_purchase(horizon_days, *_btyd_summary(data, test))
        evaluations[BG_NBD] = evaluate(y[test], quiet, list(BTYD_FEATURES), np.zeros(len(BTYD_FEATURES)), vars(btyd),
                                       len(train))
        estimators[BG_NBD] = btyd
    progress(f"churn: baselines on {split}: " + ", ".join(
        f"{b} ROC-AUC {evaluations[b].roc_auc:.3f}" for b in BASELINES if b in evaluations))
    return evaluations, estimators


def promotion_decision(result: ChurnTrainingResult, auc_floor: float = DEFAULT_AUC_FLOOR) -> tuple[bool, str]:
    """Promote when the champion's out-of-time ROC-AUC beats the best baseline's (recency, BG/NBD) and is at
    least the floor."""
    return evaluation.promotion_decision(result.champion, result.champion_oot_auc, result.best_baseline,
                                         result.baseline_oot_auc, auc_floor)


def _labelled(table: pa.Table) -> pa.Table:
    for column in (LABEL, "labelled", "snapshot_date"):
        if column not in table.column_names:
            raise KeyError(f"column {column!r} missing; pass the churn training set (churn_training_set)")
    mask = pc.and_(pc.fill_null(table.column("labelled"), False), pc.is_valid(table.column(LABEL)))
    data = table if pc.all(mask).as_py() else table.filter(mask)  # filter copies every column, even keeping all
    if data.num_rows == 0:
        raise TooLittleDataError("no labelled rows: every snapshot date is too recent for the label horizon")
    return data


def _training_order(rows: int, trains: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, slice]]:
    """An order of the rows in which each of two splits' training rows are one block, and those blocks:
    the rows only the first split trains on, then those both do, then those only the second does, then the
    rest; each group in row order, so the order follows from the splits alone (same splits, same models)."""
    (first, first_rows), (second, second_rows) = trains.items()
    group = np.full(rows, 3, dtype=np.int8)
    in_first, in_second = np.zeros(rows, dtype=bool), np.zeros(rows, dtype=bool)
    in_first[first_rows], in_second[second_rows] = True, True
    group[in_first & ~in_second], group[in_first & in_second], group[~in_first & in_second] = 0, 1, 2
    order = np.argsort(group, kind="stable")
    only_first = int((group == 0).sum())
    return order, {first: slice(0, len(first_rows)), second: slice(only_first, only_first + len(second_rows))}


def _oot_split(data: pa.Table, oot_dates: int) -> tuple[np.ndarray, np.ndarray]:
    dates = data.column("snapshot_date")
    distinct = sorted(pc.unique(dates).to_pylist())
    if oot_dates < 1 or len(distinct) <= oot_dates:
        raise TooLittleDataError(f"the out-of-time split needs more than oot_dates={oot_dates} labelled snapshot dates, "
                         f"found {len(distinct)}")
    test = _on_dates(dates, distinct[-oot_dates:])
    return np.flatnonzero(~test), np.flatnonzero(test)


def _search_split(data: pa.Table, tests: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows in none of ``tests``: those of their latest snapshot date validate, the earlier ones fit."""
    rows = np.setdiff1d(np.arange(data.num_rows), np.concatenate(tests))
    dates = data.column("snapshot_date").take(rows)
    distinct = sorted(pc.unique(dates).to_pylist())
    if len(distinct) < 2:
        raise TooLittleDataError("the hyper-parameter search needs two labelled snapshot dates before the out-of-time test "
                         f"dates (one to fit on, the latest to validate on), found {len(distinct)}; use more "
                         "snapshot dates or a smaller oot_dates")
    validate = _on_dates(dates, distinct[-1:])
    return rows[~validate], rows[validate]


def _on_dates(dates: pa.ChunkedArray, chosen: list[Any]) -> np.ndarray:
    """A boolean per row: is its date one of ``chosen``. In Arrow, not over a million Python dates."""
    hit = pc.is_in(dates, value_set=pa.array(chosen, dates.type))
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


def _model(name: str, seed: int, params: dict[str, Any] | None = None, rows: int | None = None) -> Any:
    """An unfitted model; ``rows``, the rows it will be fitted on, caps each forest tree's bootstrap sample at
    :data:`FOREST_MAX_SAMPLES` (a forest of 100 full-size trees on a million rows takes most of an hour on
    one core; trees on 100k-row samples rank as well)."""
    if name == "logistic_regression":
        model: Any = Pipeline([
            ("impute", MedianImputer()),
            ("scale", ChunkedStandardScaler(copy=False)),  # scales the imputer's output, a fresh array, in place
            ("model", LogisticRegression(l1_ratio=0.0, max_iter=2000, random_state=seed)),
        ])
    elif name == "random_forest":
        model = Pipeline([
            ("impute", MedianImputer()),
            ("model", RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1,
                                             max_samples=FOREST_MAX_SAMPLES if (rows or 0) > FOREST_MAX_SAMPLES else None)),
        ])
    else:
        model = XGBClassifier(n_estimators=150, learning_rate=0.1, importance_type="gain", eval_metric="logloss",
                              tree_method="hist", random_state=seed, n_jobs=1)
    return model.set_params(**(params or {}))


def _candidates(name: str) -> list[dict[str, Any]]:
    """The searched parameter sets; XGBoost's number of rounds is found by early stopping (search.MAX_ROUNDS)."""
    candidates: dict[str, list[dict[str, Any]]] = {
        "logistic_regression": [{"model__C": 0.1}, {"model__C": 1.0}],
        "random_forest": [{"model__max_depth": 4, "model__min_samples_leaf": 5},
                          {"model__max_depth": 8, "model__min_samples_leaf": 5}],
        "xgboost": [{"max_depth": 2}, {"max_depth": 4}],
    }
    return candidates[name]


def _importance(name: str, model: Any) -> np.ndarray:
    if name == "logistic_regression":
        return np.abs(model.named_steps["model"].coef_[0])
    if name == "random_forest":
        return model.named_steps["model"].feature_importances_
    return model.feature_importances_  # gain, from importance_type="gain"


def _baseline(seed: int) -> Pipeline:
    return Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value=RECENCY_NULL_DAYS)),
        ("scale", StandardScaler()),
        ("model", LogisticRegression(max_iter=1000, random_state=seed)),
    ])


def _recency(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """The baseline's one input at ``rows``, taken from its column alone (``table.take`` copies every column)."""
    column = pc.cast(table.column(BASELINE_FEATURE).take(rows), pa.float64())
    return column.to_numpy(zero_copy_only=False).reshape(-1, 1)


def _btyd_summary(data: pa.Table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) at ``rows``; a customer without a purchase is x = t_x = T = 0 (not yet born to BG/NBD)."""
    def summary(name: str) -> np.ndarray:
        return np.nan_to_num(np.asarray(pc.fill_null(data.column(name).take(rows), 0).to_numpy(
            zero_copy_only=False), dtype=np.float64))

    x, t_x, age = (summary(name) for name in BTYD_FEATURES)
    return x, t_x, age

