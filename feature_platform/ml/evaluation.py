"""What every model reports on a test split, and the promotion rule both model families share.

An :class:`Evaluation` holds the test-set metrics (ROC-AUC, PR-AUC, log loss, Brier score, the
classification report at :data:`THRESHOLD`), the top features by importance, the calibration
curve, and the test labels and scores themselves so plots can be drawn from it later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    classification_report,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

TOP_FEATURES = 20
CALIBRATION_BINS = 10
THRESHOLD = 0.5
DEFAULT_AUC_FLOOR = 0.7


@dataclass
class Evaluation:
    """Test-set metrics of one model on one split."""

    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    classification_report: dict[str, Any]
    importance: list[tuple[str, float]]  # top TOP_FEATURES, largest first
    calibration: dict[str, list[float]]  # prob_true / prob_pred per non-empty bin
    best_params: dict[str, Any]
    n_train: int
    n_test: int
    ranking: dict[str, float] = field(default_factory=dict)  # e.g. ndcg@5, precision@5 (contact)
    y_true: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    y_score: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def metrics(self) -> dict[str, Any]:
        """JSON-ready metrics (the test labels and scores are left out)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("y_true", "y_score")}


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    columns: Sequence[str],
    importance: np.ndarray,
    best_params: dict[str, Any],
    n_train: int,
) -> Evaluation:
    """Metrics of scores ``p`` against labels ``y``; ``importance`` is aligned with ``columns``."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=CALIBRATION_BINS)
    order = sorted(range(len(columns)), key=lambda i: (-float(importance[i]), columns[i]))[:TOP_FEATURES]
    return Evaluation(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        classification_report=classification_report(y, (p >= THRESHOLD).astype(int), labels=[0, 1],
                                                     output_dict=True, zero_division=0),
        importance=[(columns[i], float(importance[i])) for i in order],
        calibration={"prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist()},
        best_params=dict(best_params),
        n_train=n_train,
        n_test=len(y),
        y_true=y,
        y_score=p,
    )


BY_USER = "by_user"  # the random split: a random fifth of the users held out with all their rows
TEST_SHARE = 0.2


def split_by_user(users: pa.ChunkedArray | pa.Array, y: np.ndarray, seed: int,
                  test_share: float = TEST_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), every row of a user on the same side: a random ``test_share`` of the users,
    stratified by whether the user has any positive row.

    A user's rows on neighbouring dates are near-copies with overlapping label windows; a split by row puts
    one in training and its twin in the test, and reads as a much better model than it is."""
    users = users.combine_chunks() if isinstance(users, pa.ChunkedArray) else users
    codes = pc.dictionary_encode(users).indices.to_numpy(zero_copy_only=False)
    positive = np.bincount(codes, weights=y) > 0
    groups = np.arange(len(positive))
    if len(groups) < 2:
        raise ValueError(f"{BY_USER} split: the rows belong to {len(groups)} user(s); it needs two at least")
    held_out = math.ceil(test_share * len(groups))
    # Stratified when each side can hold both kinds of user; a handful of users is split plainly.
    can_stratify = min(positive.sum(), (~positive).sum()) >= 2 and min(held_out, len(groups) - held_out) >= 2
    stratify = positive if can_stratify else None
    _, test_users = train_test_split(groups, test_size=test_share, stratify=stratify, random_state=seed)
    test = np.zeros(len(groups), dtype=bool)
    test[test_users] = True
    return np.flatnonzero(~test[codes]), np.flatnonzero(test[codes])


class TooLittleDataError(ValueError):
    """The training set is too small for a model's splits (too few labelled snapshot dates, one class only):
    more history is the fix, not a code change, so the training asset skips with this message."""


def require_split_classes(y: np.ndarray, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Every split's training and test rows hold both classes."""
    for split, (train, test) in splits.items():
        require_both_classes(y[train], split, "training")
        require_both_classes(y[test], split, "test")


def require_both_classes(y: np.ndarray, split: str, part: str) -> None:
    if len(np.unique(y)) < 2:
        raise TooLittleDataError(f"{split} split: the {part} rows hold one class only; ROC-AUC is undefined. "
                         "Use more data (more snapshot dates or days of events)")


def promotion_decision(
    champion: str,
    auc: float,
    baseline: str,
    baseline_auc: float,
    auc_floor: float = DEFAULT_AUC_FLOOR,
) -> tuple[bool, str]:
    """Promote when the champion's out-of-time ROC-AUC beats the baseline's and is at least the floor."""
    problems = []
    if not auc > baseline_auc:
        problems.append(f"does not beat the baseline ({baseline}, OOT ROC-AUC {baseline_auc:.4f})")
    if not auc >= auc_floor:
        problems.append(f"is below the AUC floor {auc_floor:.4f}")
    head = f"champion {champion} OOT ROC-AUC {auc:.4f}"
    if problems:
        return False, f"not promoted: {head} {' and '.join(problems)}"
    return True, f"promoted: {head} beats the baseline {baseline} ({baseline_auc:.4f}) and the floor {auc_floor:.4f}"
