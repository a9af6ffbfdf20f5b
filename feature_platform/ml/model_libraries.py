"""Which library releases wrote a pickled model, and whether the installed ones can read it.

A model is a pickle of scikit-learn / XGBoost / numpy objects, readable only by a compatible release of
each. The manifest records the versions that wrote it (``libraries``) and which libraries the model is
made of (``model_libraries``); loading compares those with the installed releases: scikit-learn and
XGBoost must match in major.minor, numpy in major. Only the libraries the model contains are compared.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import re
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

# Distribution names as recorded in the manifest, with the top-level module their classes live in.
CHECKED_LIBRARIES = {"numpy": "numpy", "scikit-learn": "sklearn", "xgboost": "xgboost"}
# How many leading version components must match for a pickle to load: major.minor, or major.
SAME_RELEASE_PARTS = {"numpy": 1, "scikit-learn": 2, "xgboost": 2}

log = logging.getLogger(__name__)


class ModelLibraryMismatchError(RuntimeError):
    """A saved model was written by a release of a library it is made of that the installed one cannot read."""


def library_versions() -> dict[str, str]:
    """The installed Python, numpy, scikit-learn and XGBoost versions, as a manifest records them."""
    versions = {"python": platform.python_version()}
    for dist in CHECKED_LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def model_libraries(model: object) -> list[str]:
    """Which of numpy, scikit-learn and XGBoost ``model`` is made of (distribution names, sorted).

    Walks the object graph: instance attributes and the items of dicts, lists, tuples and sets,
    noting the top-level module of every object's class and its base classes (an XGBClassifier is
    also a scikit-learn estimator), and of classes and functions held by reference. Arrays and
    scalars end the walk; objects without a ``__dict__`` (slots, extension types) are noted but not
    entered.
    """
    wanted = {module: dist for dist, module in CHECKED_LIBRARIES.items()}
    found: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        modules = {cls.__module__ for cls in type(obj).__mro__}
        if isinstance(obj, type):
            modules.update(cls.__module__ for cls in obj.__mro__)
        elif isinstance(obj, types.FunctionType | types.BuiltinFunctionType):
            modules.add(getattr(obj, "__module__", None) or "")
        found.update(wanted[m] for m in (module.partition(".")[0] for module in modules) if m in wanted)
        if isinstance(obj, str | bytes | bytearray | int | float | complex | np.ndarray | np.generic | type
                      | types.FunctionType | types.BuiltinFunctionType):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return sorted(found)


def check_libraries(manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a model written by a release of one of its libraries that the installed one cannot read
    (``where``: the model's name/version, for the message)."""
    written = manifest.get("libraries")
    used = manifest.get("model_libraries")
    if written is None or used is None:
        log.warning("%s: the manifest does not record the library versions that wrote the model; loading it "
                    "unchecked (retrain to record them)", where)
        return
    installed = library_versions()
    problems = []
    for dist in used:
        saved, have = written.get(dist), installed.get(dist)
        if saved is None:
            continue  # not recorded at save time: nothing to compare
        parts = SAME_RELEASE_PARTS[dist]
        if have is None or _release(have, parts) != _release(saved, parts):
            release = ".".join(_release(saved, parts)) + ".*"
            problems.append(f"{dist} {saved} wrote it, {have or 'none'} is installed (needs {dist}=={release})")
    if problems:
        rule = "same major.minor for scikit-learn and XGBoost, same major for numpy"
        raise ModelLibraryMismatchError(
            f"{where} cannot be loaded: {'; '.join(problems)}. A pickled model needs the library release "
            f"that wrote it ({rule}): retrain the model with the installed versions, or install the "
            "versions named above (constraints.txt pins the tested set)"
        )


def _release(version: str, parts: int) -> tuple[str, ...]:
    """The first ``parts`` numeric components of ``version``: ``("1", "9")`` for "1.9.1" and parts=2."""
    return tuple(re.findall(r"\d+", version)[:parts])
