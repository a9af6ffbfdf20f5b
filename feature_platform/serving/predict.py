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


def _probabilities(champion: Champion, table: pa.Table) -> np.ndarray:
    matrix, _ = expand(table, champion.spec)
    return champion.model.predict_proba(matrix)[:, 1]


def predict_churn(champion: Champion, registry: Registry, values: Mapping[str, Any]) -> float:
    """The churn probability of one user from their feature values (missing features are null)."""
    return float(_probabilities(champion, feature_table(registry, [values], champion.feature_names))[0])


def contact_context(context: Mapping[str, Any], device: str | None, now: dt.datetime) -> dict[str, Any]:
    """The view's context: given keys win; the profile's device and the current hour/weekday fill the rest."""
    return {
        "device": context.get("device", device),
        "hour": int(context.get("hour", now.hour)),
        "day_of_week": int(context.get("day_of_week", now.weekday())),  # 0 = Monday, as training
    }


def predict_contact(champion: Champion, registry: Registry, values: Mapping[str, Any],
                    listings: Sequence[Mapping[str, Any] | None], context: Mapping[str, Any]) -> list[float]:
    """Contact probability for each listing (a None listing: unknown to raw/listings, its inputs null)."""
    names = list(dict.fromkeys([*champion.feature_names, *MATCH_FEATURES]))
    table = feature_table(registry, [values] * len(listings), names)
    for column, kind in VIEW_INPUT_TYPES.items():
        if column in context:
            table = table.append_column(column, pa.array([context[column]] * len(listings), type=kind))
        else:
            table = table.append_column(column, pa.array([(row or {}).get(column) for row in listings], type=kind))
    return [float(p) for p in _probabilities(champion, add_match_inputs(table))]


def context_vector(spec: ExpansionSpec, registry: Registry,
                   values: Mapping[str, Any]) -> tuple[list[str], list[float | None]]:
    """The dense numeric vector of ``values`` in the spec's fixed column order (NaN -> None for JSON)."""
    names = [f.name for f in spec.features]
    matrix, columns = expand(feature_table(registry, [values], names), spec)
    return columns, [None if np.isnan(v) else float(v) for v in matrix[0]]
