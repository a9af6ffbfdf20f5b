"""Pinned feature-family versions: the one shape (family -> semver) every caller's record is turned into.

Training and experiments pin the family versions their data must have been computed at; serving takes the
latest. A pin can be given as any record that says which versions were used:

- a plain mapping ``{"activity": "1.1.0", ...}``;
- a model manifest (a mapping with ``family_versions``, or an older one with only ``registry_versions``,
  whose ``family:<name>`` keys are the registry's versions at training time), or an object with a
  ``manifest`` attribute (a stored model version);
- the registry (:class:`Registry`), or a registry snapshot as a mapping (``{"families": {name: {"version":
  ...}}}``, the YAML's shape): its current versions.

A family absent from the result is not pinned. An unknown family name is an error, never a silent unpin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feature_platform.registry.registry import SEMVER, Registry, UnknownNameError, did_you_mean

MANIFEST_FAMILY_VERSIONS = "family_versions"  # a model manifest's record of its training data's versions
MANIFEST_REGISTRY_VERSIONS = "registry_versions"  # the registry's versions at training time (older manifests)
FAMILY_PREFIX = "family:"  # how registry_versions names a family


class PinError(ValueError):
    """A pin that is not a family -> semver mapping the registry can use; the message says what is wrong."""


def family_versions(pin: object) -> dict[str, str]:
    """``pin`` (see the module doc) as family -> version; {} for None."""
    if pin is None:
        return {}
    if isinstance(pin, Registry):
        return {name: family.version for name, family in pin.families.items()}
    manifest = getattr(pin, "manifest", None)
    record = manifest if isinstance(manifest, Mapping) else pin
    if not isinstance(record, Mapping):
        raise PinError(f"feature versions are a mapping of family -> version (or a model manifest, or the "
                       f"registry); got {type(pin).__name__}")
    if isinstance(record.get(MANIFEST_FAMILY_VERSIONS), Mapping):
        return _checked(record[MANIFEST_FAMILY_VERSIONS])
    if MANIFEST_FAMILY_VERSIONS in record:  # null: the training set recorded none; the registry's are no stand-in
        raise PinError(f"the model manifest {record.get('name', '')}/{record.get('version', '')} records no family "
                       "versions (its training set recorded none); pin the versions by name instead")
    if isinstance(record.get("families"), Mapping):  # a registry snapshot
        return _checked({name: spec.get("version") if isinstance(spec, Mapping) else spec
                         for name, spec in record["families"].items()})
    recorded: Mapping[Any, Any] = record
    if isinstance(record.get(MANIFEST_REGISTRY_VERSIONS), Mapping):  # a manifest written before family_versions
        recorded = record[MANIFEST_REGISTRY_VERSIONS]
        if not any(str(key).startswith(FAMILY_PREFIX) for key in recorded):
            raise PinError(f"the model manifest {record.get('name', '')}/{record.get('version', '')} records no "
                           "family versions (trained before they were recorded); pin the versions by name instead")
    if any(str(key).startswith(FAMILY_PREFIX) for key in recorded):  # registry_versions: {"family:x": .., ..}
        return _checked({key[len(FAMILY_PREFIX):]: value for key, value in recorded.items()
                         if str(key).startswith(FAMILY_PREFIX)})
    return _checked(recorded)


def require_known(pinned: Mapping[str, str], registry: Registry) -> None:
    """Refuse a pinned family the registry does not know (a typo would otherwise pin nothing)."""
    unknown = [name for name in pinned if name not in registry.families]
    if unknown:
        hints = "".join(did_you_mean(name, registry.families) for name in unknown)
        raise UnknownNameError(f"feature versions pin unknown famil{'y' if len(unknown) == 1 else 'ies'} "
                               f"{unknown}{hints}; families: {', '.join(sorted(registry.families))}")


def _checked(versions: Mapping[Any, Any]) -> dict[str, str]:
    out = {}
    for name, version in versions.items():
        if not isinstance(name, str) or not isinstance(version, str) or not SEMVER.match(version):
            raise PinError(f"feature versions: {name!r} -> {version!r} is not a family name and a semver "
                           "version (e.g. 'activity': '1.1.0')")
        out[name] = version
    return out
