"""Predictions from the champion models, built from a served vector by the training code's own functions.

The model sees exactly what training gave it: the registry features typed as the registry says,
expanded by the model's saved :class:`ExpansionSpec`; for contact, the listing inputs (price_rank as
training computes it), the view's context and the user-listing match inputs of ``add_match_inputs``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.ml.contact import add_match_inputs
from feature_platform.ml.expand import ExpansionSpec, expand
from feature_platform.ml.training_sets import LISTING_COLUMNS
from feature_platform.registry.registry import Registry
from feature_platform.serving.state import Champion

# The user features add_match_inputs reads, and the listing and context columns of a view, typed as training has them.
MATCH_FEATURES = ("category_affinity", "city_affinity", "price_sensitivity")
VIEW_INPUT_TYPES = {
    **dict(zip(LISTING_COLUMNS, (pa.string(), pa.string(), pa.float64(), pa.bool_(), pa.int64()), strict=True)),
    "price_rank": pa.float64(), "device": pa.string(), "hour": pa.int64(), "day_of_week": pa.int64(),
}


def feature_table(registry: Registry, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> pa.Table:
    """``rows`` (name -> value, maps as dicts) as a table typed by the registry; absent names are null."""
    columns = {}
    for name in names:
        feature = registry.get_feature(name)
        values = [row.get(name) for row in rows]
        if feature.type == "map":
            values = [None if v is None else list(v.items()) for v in values]
        columns[name] = pa.array(values, type=feature.arrow_type)
    return pa.table(columns) if columns else pa.table({"_": pa.nulls(len(rows))}).drop(["_"])


def _probabilities(champion: Champion, table: pa.Table) -> tuple[np.ndarray, list[str]]:
    """The model's probabilities for the rows of ``table`` and the features it had to impute (imputed_features)."""
    matrix, _ = expand(table, champion.spec)
    return champion.model.predict_proba(matrix)[:, 1], imputed_features(champion, matrix)


def imputed_features(champion: Champion, matrix: np.ndarray) -> list[str]:
    """The registry features the model reads (in its order) that reached it as NaN in some row: a null value
    (status missing, or a registry default that is null), which the model's imputer fills (the training
    pipeline's median or constant; XGBoost's learned default branch). A map whose fitted keys are merely
    absent from the value is 0.0, not NaN (ml/expand.py), and a registry default that is a value (0) is
    given to the model as that value: neither is listed."""
    missing = np.isnan(matrix).any(axis=0)
    reads, imputed, start = set(champion.feature_names), [], 0
    for feature in champion.spec.features:
        end = start + len(feature.columns)
        if feature.name in reads and missing[start:end].any():
            imputed.append(feature.name)
        start = end
    return imputed


def predict_churn(champion: Champion, registry: Registry, values: Mapping[str, Any]) -> tuple[float, list[str]]:
    """The churn probability of one user from their feature values (missing features are null), and the
    features the model imputed."""
    probabilities, imputed = _probabilities(champion, feature_table(registry, [values], champion.feature_names))
    return float(probabilities[0]), imputed


def contact_context(context: Mapping[str, Any], device: str | None, now: dt.datetime) -> dict[str, Any]:
    """The view's context: given keys win; the profile's device and the current hour/weekday fill the rest."""
    return {
        "device": context.get("device", device),
        "hour": int(context.get("hour", now.hour)),
        "day_of_week": int(context.get("day_of_week", now.weekday())),  # 0 = Monday, as training
    }


def predict_contact(champion: Champion, registry: Registry, values: Mapping[str, Any],
                    listings: Sequence[Mapping[str, Any] | None],
                    context: Mapping[str, Any]) -> tuple[list[float], list[str]]:
    """Contact probability for each listing (a None listing: unknown to raw/listings, its inputs null), and
    the user's features the model imputed (the same for every listing: one vector)."""
    names = list(dict.fromkeys([*champion.feature_names, *MATCH_FEATURES]))
    table = feature_table(registry, [values] * len(listings), names)
    for column, kind in VIEW_INPUT_TYPES.items():
        if column in context:
            table = table.append_column(column, pa.array([context[column]] * len(listings), type=kind))
        else:
            table = table.append_column(column, pa.array([(row or {}).get(column) for row in listings], type=kind))
    probabilities, imputed = _probabilities(champion, add_match_inputs(table))
    return [float(p) for p in probabilities], imputed


def context_vector(spec: ExpansionSpec, registry: Registry,
                   values: Mapping[str, Any]) -> tuple[list[str], list[float | None]]:
    """The dense numeric vector of ``values`` in the spec's fixed column order (NaN -> None for JSON)."""
    names = [f.name for f in spec.features]
    matrix, columns = expand(feature_table(registry, [values], names), spec)
    return columns, [None if np.isnan(v) else float(v) for v in matrix[0]]
