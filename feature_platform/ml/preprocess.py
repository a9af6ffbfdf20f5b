"""Median imputation and scaling for the linear and forest pipelines, in bounded memory.

scikit-learn's ``SimpleImputer(strategy="median")`` takes the medians of a masked array: it holds about
six copies of the matrix while fitting (2.4 GB for a 922k x 109 float32 split, two such fits at a time)
and its transform lists every missing cell's coordinates. :class:`MedianImputer` fits the same medians
(``keep_empty_features=True``: a column with no value imputes 0.0) one column at a time and fills in
place on its one output copy. :class:`ChunkedStandardScaler` is ``StandardScaler`` fitted in row chunks:
``StandardScaler.fit`` subtracts the mean from the whole float32 matrix into a float64 one (twice the
matrix, 0.8 GB for that split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted


class MedianImputer(TransformerMixin, BaseEstimator):
    """NaN -> its column's median on the fitted rows (0.0 where a column had no value); dtype kept."""

    def fit(self, x: np.ndarray, y: Any = None) -> MedianImputer:
        x = _floats(x)
        self.statistics_ = np.array([_median(x[:, j]) for j in range(x.shape[1])], dtype=x.dtype)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        x = _floats(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"the imputer was fitted on {self.n_features_in_} columns, got {x.shape[1]}; "
                             "expand with the model's own spec")
        out = np.array(x, copy=True, order="C")
        np.copyto(out, self.statistics_, where=np.isnan(out))
        return out


class ChunkedStandardScaler(StandardScaler):
    """``StandardScaler`` (its transform unchanged) whose fit takes the means and variances over
    :data:`CHUNK_ROWS` rows at a time, in float64; for a matrix without NaN (the imputer's output)."""

    def fit(self, x: np.ndarray, y: Any = None, sample_weight: Any = None) -> ChunkedStandardScaler:
        if sample_weight is not None:
            raise ValueError("ChunkedStandardScaler takes no sample weights")
        x = _floats(x)
        if len(x) == 0:
            raise ValueError("ChunkedStandardScaler cannot fit on no rows")
        chunks = range(0, len(x), CHUNK_ROWS)
        mean = np.zeros(x.shape[1], dtype=np.float64)
        for i in chunks:
            mean += np.sum(x[i:i + CHUNK_ROWS], axis=0, dtype=np.float64)
        mean /= len(x)
        var = np.zeros(x.shape[1], dtype=np.float64)
        for i in chunks:
            var += np.sum((x[i:i + CHUNK_ROWS] - mean) ** 2, axis=0)
        var /= len(x)
        self.mean_: np.ndarray | None = mean if self.with_mean else None
        self.var_: np.ndarray | None = var if self.with_mean else None
        self.scale_ = np.where(var > 10 * np.finfo(np.float64).eps, np.sqrt(var), 1.0) if self.with_std else None
        self.n_samples_seen_, self.n_features_in_ = len(x), x.shape[1]
        return self


CHUNK_ROWS = 65_536


def _floats(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _median(column: np.ndarray) -> float:
    values = column[~np.isnan(column)]
    return float(np.median(values)) if len(values) else 0.0
