"""Churn models on the churn training set: three tuned models, a recency baseline, a promotion rule.

Only labelled rows are used. Two splits are evaluated: ``random`` (80/20, stratified) and
``out_of_time`` (train on snapshot dates before the last ``oot_dates`` dates, test on those). The
out-of-time split is the one that matters: the champion is the model with the best out-of-time
ROC-AUC, and promotion compares it with the recency baseline on that split. Features go through
:func:`feature_platform.ml.expand.expand`, its spec fitted on each split's training rows only.
Everything is seeded and single-threaded, so a seed gives identical metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from feature_platform.ml import evaluation
from feature_platform.ml.evaluation import DEFAULT_AUC_FLOOR, Evaluation, evaluate, require_both_classes
from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.registry.registry import Registry

LABEL = "churned"
BASELINE = "baseline_recency"
BASELINE_FEATURE = "last_active_days"
RECENCY_NULL_DAYS = 365.0  # null recency = nothing in the 90-day lookback: older than any real value
MODELS = ("logistic_regression", "random_forest", "xgboost")
SPLITS = ("random", "out_of_time")
OOT = "out_of_time"
CV_FOLDS = 3


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
    def baseline_oot_auc(self) -> float:
        return self.evaluations[OOT][BASELINE].roc_auc

    def metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {s: {m: e.metrics() for m, e in models.items()} for s, models in self.evaluations.items()}


def train_churn_models(
    table: pa.Table,
    feature_names: Sequence[str],
    registry: Registry,
    seed: int = 7,
    oot_dates: int = 2,
) -> ChurnTrainingResult:
    """Fit and evaluate every model on both splits; the champion has the best out-of-time ROC-AUC."""
    data = _labelled(table)
    if BASELINE_FEATURE not in data.column_names:
        raise KeyError(f"the baseline needs {BASELINE_FEATURE!r}; include it in the training set")
    y = np.asarray(data.column(LABEL).to_numpy(zero_copy_only=False), dtype=np.int64)
    splits = {"random": _random_split(y, seed), OOT: _oot_split(data, oot_dates)}

    evaluations: dict[str, dict[str, Evaluation]] = {}
    specs: dict[str, ExpansionSpec] = {}
    estimators: dict[str, dict[str, Any]] = {}
    for split, (train, test) in splits.items():
        require_both_classes(y[train], split, "training")
        require_both_classes(y[test], split, "test")
        spec = fit_expansion(data.take(train), feature_names, registry)
        x_train, columns = expand(data.take(train), spec)
        x_test, _ = expand(data.take(test), spec)
        specs[split], evaluations[split], estimators[split] = spec, {}, {}
        for name in MODELS:
            search = GridSearchCV(_model(name, seed), _grid(name), scoring="roc_auc", n_jobs=1,
                                  cv=StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed))
            search.fit(x_train, y[train])
            model = search.best_estimator_
            importance = _importance(name, model)
            evaluations[split][name] = evaluate(y[test], model.predict_proba(x_test)[:, 1], columns, importance,
                                                search.best_params_, len(train))
            estimators[split][name] = model
        baseline = _baseline(seed)
        recency_train = _recency(data.take(train))
        baseline.fit(recency_train, y[train])
        coef = float(abs(baseline.named_steps["model"].coef_[0][0]))
        evaluations[split][BASELINE] = evaluate(y[test], baseline.predict_proba(_recency(data.take(test)))[:, 1],
                                                [BASELINE_FEATURE], np.array([coef]), {}, len(train))
        estimators[split][BASELINE] = baseline

    champion = max(MODELS, key=lambda m: (evaluations[OOT][m].roc_auc, -MODELS.index(m)))
    # What is served: the champion with its out-of-time hyper-parameters, refitted on every labelled row.
    final_spec = fit_expansion(data, feature_names, registry)
    final_model = clone(estimators[OOT][champion]).fit(expand(data, final_spec)[0], y)
    return ChurnTrainingResult(evaluations, specs, estimators, champion, seed, final_spec, final_model)


def promotion_decision(result: ChurnTrainingResult, auc_floor: float = DEFAULT_AUC_FLOOR) -> tuple[bool, str]:
    """Promote when the champion's out-of-time ROC-AUC beats the recency baseline's and is at least the floor."""
    return evaluation.promotion_decision(result.champion, result.champion_oot_auc, BASELINE, result.baseline_oot_auc,
                                         auc_floor)


def _labelled(table: pa.Table) -> pa.Table:
    for column in (LABEL, "labelled", "snapshot_date"):
        if column not in table.column_names:
            raise KeyError(f"column {column!r} missing; pass the churn training set (churn_training_set)")
    mask = pc.and_(pc.fill_null(table.column("labelled"), False), pc.is_valid(table.column(LABEL)))
    data = table.filter(mask)
    if data.num_rows == 0:
        raise ValueError("no labelled rows: every snapshot date is too recent for the label horizon")
    return data


def _random_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _oot_split(data: pa.Table, oot_dates: int) -> tuple[np.ndarray, np.ndarray]:
    dates = np.asarray(data.column("snapshot_date").to_pylist(), dtype=object)
    distinct = sorted(set(dates))
    if oot_dates < 1 or len(distinct) <= oot_dates:
        raise ValueError(f"out-of-time split needs more than oot_dates={oot_dates} labelled snapshot dates, "
                         f"found {len(distinct)}")
    test = np.isin(dates, distinct[-oot_dates:])
    return np.flatnonzero(~test), np.flatnonzero(test)


def _model(name: str, seed: int) -> Any:
    if name == "logistic_regression":
        return Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(l1_ratio=0.0, max_iter=2000, random_state=seed)),
        ])
    if name == "random_forest":
        return Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("model", RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)),
        ])
    return XGBClassifier(n_estimators=150, learning_rate=0.1, importance_type="gain", eval_metric="logloss",
                         tree_method="hist", random_state=seed, n_jobs=1)


def _grid(name: str) -> dict[str, list[Any]]:
    return {
        "logistic_regression": {"model__C": [0.1, 1.0]},
        "random_forest": {"model__max_depth": [4, 8], "model__min_samples_leaf": [5]},
        "xgboost": {"max_depth": [2, 4]},
    }[name]


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


def _recency(table: pa.Table) -> np.ndarray:
    column = pc.cast(table.column(BASELINE_FEATURE), pa.float64())
    return column.to_numpy(zero_copy_only=False).reshape(-1, 1)
