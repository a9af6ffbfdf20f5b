"""A model is only served the feature-family versions it was trained on.

A champion's manifest records the family versions of its training set (``family_versions``); a served vector
comes from an online version, whose push recorded the version of each family's snapshot file, or from the
offline snapshot, whose files record theirs (offline/versions.py). A prediction whose vector holds another
version of a family the model reads -- or one nothing recorded (pushed or written before versions were) -- is
refused with 409 naming the family, the model's version and the served one, and counted in
``fp_version_mismatch_total{model,family}``: a model scoring features computed differently from those it
learned on is a silent skew. Not checked: registry defaults (no snapshot computed them), values given in the
request, and models whose manifest records no versions (trained before they were recorded: /health says so).
A vector computed on demand is computed by this release's code, so it holds the registry's current versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from feature_platform.offline.versions import UNKNOWN
from feature_platform.online.store import OnlineStore
from feature_platform.serving.metrics import ServingMetrics
from feature_platform.serving.retrieval import DEFAULT, OFFLINE, ONLINE, ServedVector
from feature_platform.serving.state import Champion, ServingState

SKEW_STATUS = 409
RESPONSES: dict[int | str, dict[str, Any]] = {SKEW_STATUS: {
    "description": "The served feature vector holds a feature-family version the champion model was not trained on"}}


@dataclass(frozen=True)
class Mismatch:
    family: str
    trained: str  # the version the model was trained on
    served: str | None  # the version of the vector served; None: not recorded

    def __str__(self) -> str:
        return f"{self.family} {self.trained} (served: {self.served or UNKNOWN})"


def mismatches(trained: Mapping[str, str], served: Mapping[str, str | None]) -> list[Mismatch]:
    """The families whose served version differs from the trained one (an unrecorded one always differs)."""
    return [Mismatch(family, version, served.get(family)) for family, version in sorted(trained.items())
            if served.get(family) != version]


def served_versions(vector: ServedVector, state: ServingState,
                    online: OnlineStore | None) -> Mapping[str, str | None] | None:
    """The family versions ``vector`` was computed at; None when no snapshot computed it (registry defaults)."""
    if vector.source == DEFAULT:
        return None
    if vector.source == ONLINE:
        info = online.version_info(vector.version) if online is not None and vector.version else None
        return (info.family_versions if info is not None else None) or {}  # a push of an older release: unknown
    if vector.source == OFFLINE:
        return state.offline.family_versions if state.offline is not None else {}
    return {name: family.version for name, family in state.registry.families.items()}  # computed now


def require_trained_versions(champion: Champion, state: ServingState, online: OnlineStore | None,
                             vector: ServedVector, metrics: ServingMetrics) -> None:
    """Raise 409 (and count it) when ``vector`` holds a family version ``champion`` was not trained on."""
    if champion.family_versions is None:
        return
    served = served_versions(vector, state, online)
    if served is None:
        return
    found = mismatches(champion.family_versions, served)
    if not found:
        return
    for mismatch in found:
        metrics.version_mismatches.labels(champion.name, mismatch.family).inc()
    where = (f"the online vector (version {vector.version})" if vector.source == ONLINE else
             f"the offline snapshot {vector.snapshot_date}" if vector.source == OFFLINE else
             f"the {vector.source} vector")
    skew = "; ".join(f"{m.family}: the model has {m.trained}, {where} has "
                     f"{m.served or 'an unrecorded version (written before versions were recorded)'}" for m in found)
    raise HTTPException(SKEW_STATUS, detail=(
        f"feature version mismatch for the {champion.name} model {champion.version}: {skew}. Serve snapshots of "
        "the model's versions (re-push them) or promote a model trained on the served versions"))
