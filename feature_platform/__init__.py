"""feature_platform: a feature store orchestrated by Dagster.

From Python: ``from feature_platform import FeatureStore`` (see feature_platform/api.py). The name is
loaded on first use, so importing the package (as every CLI command does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feature_platform.api import FeatureStore

__all__ = ["FeatureStore"]


def __getattr__(name: str) -> Any:
    if name == "FeatureStore":
        from feature_platform.api import FeatureStore

        return FeatureStore
    raise AttributeError(f"module 'feature_platform' has no attribute {name!r}")
