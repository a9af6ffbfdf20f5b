"""A tiny churn champion, trained by hand on one day's user vectors, for tests that need one fast."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from feature_platform.ml.expand import ExpansionSpec, expand, fit_expansion
from feature_platform.ml.model_store import ModelStore, ModelVersion
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry


def promote_tiny_churn_champion(data: Path, day: dt.date) -> tuple[object, ExpansionSpec, ModelVersion]:
    """Fit a logistic regression on snapshot ``day`` (label: below-median total_events) and promote it."""
    registry = load_registry()
    inputs = [f.name for f in registry.families.values() if not f.derived]
    vectors = user_vectors(OfflineStore(data), registry, day, inputs)
    spec = fit_expansion(vectors, registry.snapshot_features(), registry)
    x, _ = expand(vectors, spec)
    events = np.nan_to_num(x[:, spec.columns.index("total_events")])
    y = (events < np.median(events)).astype(int)
    model = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                      ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))]).fit(x, y)
    store = ModelStore(data / "models")
    version = store.save_version(
        "churn", model=model, spec=spec, feature_names=registry.snapshot_features(), registry_versions={},
        training_fingerprint="tiny", metrics={}, plots={}, card="tiny test champion")
    store.promote("churn", version.version, "test")
    return model, spec, version
