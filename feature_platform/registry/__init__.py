"""The feature registry (feature_registry.yaml) and its API."""

from feature_platform.registry.registry import (
    Family,
    Feature,
    Lineage,
    Registry,
    RegistryError,
    load_registry,
    parse_registry,
)


def list_features(family: str | None = None) -> list[Feature]:
    return load_registry().list_features(family)


def get_feature(name: str) -> Feature:
    return load_registry().get_feature(name)


def get_feature_version(name: str) -> str:
    return load_registry().get_feature_version(name)


def lineage(name: str) -> Lineage:
    return load_registry().lineage(name)


__all__ = [
    "Family", "Feature", "Lineage", "Registry", "RegistryError",
    "get_feature", "get_feature_version", "lineage", "list_features", "load_registry", "parse_registry",
]
