"""Model outputs as features: a champion's probability per user, the snapshot of a derived family.

The derived family's snapshot of D is the champion applied to the user vectors of D (every snapshot
family joined per user) through the champion's own stored :class:`ExpansionSpec` and the same
:func:`expand` that fitted it, so a served score equals what the stored model predicts for that vector.
Without a champion every score is null: "no model yet" must never look like a probability of 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from feature_platform.ml.expand import ExpansionSpec, expand


def positive_probability(model: Any, spec: ExpansionSpec, vectors: pa.Table) -> np.ndarray:
    """``model.predict_proba`` of class 1 for each row of ``vectors``, expanded by the model's own spec."""
    missing = [f.name for f in spec.features if f.name not in vectors.column_names]
    if missing:
        raise KeyError(f"the model needs feature(s) {missing}, which the snapshot lacks (a registry change since "
                       "training?); retrain and promote the model")
    x, _ = expand(vectors, spec)
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


def score_users(vectors: pa.Table, column: str, model: Any | None = None, spec: ExpansionSpec | None = None) -> pa.Table:
    """``user_id`` and ``column`` (float64): the model's probability per row of ``vectors``, or null
    for every user when ``model`` is None (no champion). Rows keep the order of ``vectors``."""
    users = vectors.column("user_id").cast(pa.string())
    if model is None:
        scores = pa.nulls(vectors.num_rows, pa.float64())
    else:
        if spec is None:
            raise ValueError("a model scores through its stored expansion spec; pass the spec ModelStore.load returned")
        scores = pa.array(positive_probability(model, spec, vectors), pa.float64())
    return pa.table({"user_id": users, column: scores})


def score_summary(scores: pa.Table, column: str) -> dict[str, float | int | None]:
    """Rows, nulls and the spread of the scores: what a person checks after a scoring run."""
    values = scores.column(column).drop_null().to_numpy()
    stats: dict[str, float | int | None] = {"rows": scores.num_rows, "nulls": scores.column(column).null_count}
    for name, fn in (("min", np.min), ("mean", np.mean), ("p50", np.median), ("max", np.max)):
        stats[name] = round(float(fn(values)), 4) if len(values) else None
    stats["p99"] = round(float(np.quantile(values, 0.99)), 4) if len(values) else None
    return stats
