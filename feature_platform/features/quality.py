"""Data-quality rules for feature snapshots, driven by the registry (ranges, nullability, types).

Plain functions over an Arrow snapshot: the Dagster checks call them, and so can anyone else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.registry.registry import Feature

MAP_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Violation:
    feature: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.feature}: {self.rule} ({self.detail})"


def value_violations(snapshot: pa.Table, features: Sequence[Feature]) -> list[Violation]:
    """Nulls where the registry forbids them, values outside the registry range, malformed maps/vectors."""
    found: list[Violation] = []
    for feature in features:
        column = snapshot.column(feature.name)
        nulls = column.null_count
        if nulls and not feature.nullable:
            found.append(Violation(feature.name, "null_in_non_nullable", f"{nulls} nulls"))
        if feature.type in ("int", "float") and feature.value_range is not None:
            low, high = feature.value_range
            values = pc.drop_null(column)
            if len(values):
                bounds = pc.min_max(values)
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                if feature.type == "float" and any(math.isnan(v) for v in (lo, hi)):
                    found.append(Violation(feature.name, "nan", "NaN values"))
                if low is not None and lo < low:
                    found.append(Violation(feature.name, "below_range", f"min {lo} < {low}"))
                if high is not None and hi > high:
                    found.append(Violation(feature.name, "above_range", f"max {hi} > {high}"))
        elif feature.type == "map":
            found.extend(_map_violations(feature, column))
        elif feature.type == "vector" and feature.length is not None:
            lengths = pc.drop_null(pc.list_value_length(column))
            if len(lengths) and (pc.min(lengths).as_py() != feature.length or pc.max(lengths).as_py() != feature.length):
                found.append(Violation(feature.name, "vector_length", f"expected {feature.length}"))
    return found


def _map_violations(feature: Feature, column: pa.ChunkedArray) -> list[Violation]:
    found = []
    for index, value in enumerate(column.to_pylist()):
        if value is None:
            continue
        scores = [score for _, score in value]
        if any(s is None or s < 0 or s > 1 for s in scores):
            found.append(Violation(feature.name, "map_value_outside_0_1", f"row {index}"))
            break
        if scores and abs(sum(scores) - 1.0) > MAP_SUM_TOLERANCE:
            found.append(Violation(feature.name, "map_not_normalised", f"row {index} sums to {sum(scores)}"))
            break
    return found


def summarize(snapshot: pa.Table, features: Sequence[Feature]) -> list[dict[str, object]]:
    """Per feature: null rate, and for numbers mean / p50 / p99 — what a person scans in the UI."""
    rows = []
    total = snapshot.num_rows or 1
    for feature in features:
        column = snapshot.column(feature.name)
        row: dict[str, object] = {"feature": feature.name, "null_rate": round(column.null_count / total, 4)}
        if feature.type in ("int", "float", "bool"):
            values = pc.drop_null(pc.cast(column, pa.float64()))
            if len(values):
                p50, p99 = pc.quantile(values, q=[0.5, 0.99]).to_pylist()
                row.update(mean=round(pc.mean(values).as_py(), 4), p50=round(p50, 4), p99=round(p99, 4))
        rows.append(row)
    return rows


def summary_markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| feature | null rate | mean | p50 | p99 |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['feature']} | {row['null_rate']} | {row.get('mean', '')} | {row.get('p50', '')} | {row.get('p99', '')} |"
        )
    return "\n".join(lines)
