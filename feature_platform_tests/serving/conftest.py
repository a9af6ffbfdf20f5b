"""A small served data directory for the server tests: snapshots, an online push, two champion models.

The models are small scikit-learn pipelines fitted here on the snapshot (the real training is tested in
ml/ and orchestration/); what the server tests check is that a prediction is the champion's output on
the vector the server serves, expanded by the model's own saved spec.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from feature_platform.config import Settings
from feature_platform.definitions import build_defs
from feature_platform.ml.contact import EXTRA_INPUTS, add_match_inputs
from feature_platform.ml.expand import expand, fit_expansion
from feature_platform.ml.model_store import ModelStore
from feature_platform.ml.training_sets import listing_inputs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connect
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform_tests.helpers import copy_tree

defs = build_defs()

END = dt.date(2025, 3, 12)
START = dt.date(2025, 3, 10)
REGISTRY = load_registry()
CHURN_FEATURES = ("total_events", "last_active_days", "monetary_total", "category_affinity", "topic_vector", "premium")


def _materialize(resources: dict, selection: dg.AssetSelection, start: dt.date, end: dt.date) -> None:
    result = dg.materialize([*defs.assets], selection=selection, resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                            tags={RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()})
    assert result.success


def _pipeline():
    return make_pipeline(SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True),
                         StandardScaler(), LogisticRegression(max_iter=500))


def save_churn_model(data: Path, label_shift: float = 0.0) -> str:
    """Fit and promote a churn champion on snapshot END; returns its version."""
    table = user_vectors(OfflineStore(data), REGISTRY, END)
    names = [n for n in CHURN_FEATURES if n in REGISTRY.features]
    spec = fit_expansion(table, names, REGISTRY)
    x, _ = expand(table, spec)
    y = (np.nan_to_num(x[:, 0]) > np.nanmedian(x[:, 0]) + label_shift).astype(int)
    y[:2] = [0, 1]  # both classes, whatever the data
    return _save(data, "churn", _pipeline().fit(x, y), spec, names)


def save_contact_model(data: Path) -> str:
    store = OfflineStore(data)
    users = user_vectors(store, REGISTRY, END)
    listings = listing_inputs(store)
    rows = []
    for i, user in enumerate(users.to_pylist()):
        for j in range(3):
            listing = listings.slice((i * 3 + j) % listings.num_rows, 1).to_pylist()[0]
            rows.append({**user, **listing, "device": "mobile", "hour": (i + j) % 24, "day_of_week": j % 7})
    names = ["total_events", "category_affinity", "city_affinity", "price_sensitivity"]
    table = pa.Table.from_pylist(rows, schema=pa.schema(
        [users.schema.field(n) for n in names] + [listings.schema.field(c) for c in listings.column_names]
        + [pa.field("device", pa.string()), pa.field("hour", pa.int64()), pa.field("day_of_week", pa.int64())]))
    table = add_match_inputs(table)
    spec = fit_expansion(table, names, REGISTRY, extra=EXTRA_INPUTS)
    x, _ = expand(table, spec)
    y = (np.nan_to_num(table.column("price_rank").to_numpy(zero_copy_only=False).astype(float)) < 0.5).astype(int)
    y[:2] = [0, 1]
    return _save(data, "contact", _pipeline().fit(x, y), spec, names)


def _save(data: Path, name: str, model, spec, names) -> str:
    models = ModelStore(Settings(data_dir=data).models_dir)
    version = models.save_version(
        name, model=model, spec=spec, feature_names=names,
        registry_versions={n: REGISTRY.get_feature_version(n) for n in names},
        training_fingerprint=f"test-{name}-{len(models.versions(name))}", metrics={}, plots={},
        card=f"# {name} (test model)")
    models.promote(name, version.version, "test fixture")
    return version.version


@pytest.fixture(scope="session")
def served_data(sample_world, tmp_path_factory) -> Path:
    """A copy of the sample world (raw data, snapshots of START .. END), two champions, END pushed to the
    embedded online store."""
    data = copy_tree(sample_world.data, tmp_path_factory.mktemp("serving") / "data")
    resources = local_resources(data_dir=data, raw_dir=sample_world.src, now_utc=sample_world.now_utc)
    save_churn_model(data)
    save_contact_model(data)
    _materialize(resources, dg.AssetSelection.assets(C.ONLINE_PUSH), END, END)
    connect(Settings(data_dir=data)).save()  # on disk now, as a finished `run` leaves it, for copies of `data`
    return data
