"""The pipelines' imputer and scaler: scikit-learn's answers, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from feature_platform.ml import preprocess
from feature_platform.ml.preprocess import ChunkedStandardScaler, MedianImputer

NAN = np.nan


def test_median_imputer_by_hand() -> None:
    x = np.array([[1.0, NAN, NAN], [3.0, 2.0, NAN], [NAN, 4.0, NAN], [10.0, 9.0, NAN]], dtype=np.float32)
    imputer = MedianImputer().fit(x)
    np.testing.assert_array_equal(imputer.statistics_, [3.0, 4.0, 0.0])  # a column without values imputes 0
    out = imputer.transform(x)
    assert out.dtype == np.float32 and np.isnan(x).sum() == 6  # the input is left alone
    np.testing.assert_array_equal(out, [[1, 4, 0], [3, 2, 0], [3, 4, 0], [10, 9, 0]])
    with pytest.raises(ValueError, match="fitted on 3 columns, got 2"):
        imputer.transform(x[:, :2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_imputer_equals_simple_imputer(dtype: type) -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=(1001, 6)).astype(dtype)
    x[rng.uniform(size=x.shape) < 0.3] = NAN
    x[:, 4] = NAN
    ours = MedianImputer().fit(x[:1000])  # an even count: the median is a mean of two
    reference = SimpleImputer(strategy="median", keep_empty_features=True).fit(x[:1000])
    np.testing.assert_array_equal(ours.statistics_, reference.statistics_)
    np.testing.assert_array_equal(ours.transform(x), reference.transform(x))


def test_chunked_scaler_equals_standard_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess, "CHUNK_ROWS", 7)  # many chunks and a short last one
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 3.0, size=(100, 4)).astype(np.float32)
    x[:, 2] = 1.5  # constant: scale 1, as StandardScaler
    ours, reference = ChunkedStandardScaler().fit(x), StandardScaler().fit(x)
    np.testing.assert_allclose(ours.mean_, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, reference.var_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.scale_, reference.scale_, rtol=1e-9)
    np.testing.assert_allclose(ours.transform(x), reference.transform(x), rtol=1e-6, atol=1e-6)
