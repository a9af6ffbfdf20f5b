"""Fingerprints of feature computations, so nobody changes a feature's meaning silently.

A family's fingerprint hashes what determines its values: the code of its module (its tile and its
merge) and of the feature_platform.features modules it imports, directly or through them (as an AST
without docstrings, so comments and formatting do not count), its registry config, and its
features' names and types. The lock file
(fingerprints.lock, committed) records the fingerprint of every released family version. A test
fails when the current fingerprint differs from the one recorded for the current version: change
the computation, bump the family version, run `feature-platform registry lock`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
from pathlib import Path

from feature_platform.registry.registry import Family, Registry, RegistryError, load_registry

LOCK_PATH = Path(__file__).with_name("fingerprints.lock")
FEATURES_PACKAGE = "feature_platform.features"
# Every node whose ``body`` is a list of statements (Expression, Lambda and IfExp hold one expression).
_STATEMENT_BLOCKS = (ast.Module, ast.Interactive, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For,
                     ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.TryStar,
                     ast.ExceptHandler, ast.match_case)
# Shared modules count only through the parts that decide values (windows, what a snapshot sees,
# how output is conformed), so logging or plumbing there does not force every family to bump.
SEMANTIC_PARTS = {
    "feature_platform.features.base": ("LOOKBACK_DAYS", "conform"),
    "feature_platform.features.engine": (
        "ALL_HISTORY", "TileContext", "TileBuilder.load", "TileBuilder.tiles", "MergeContext", "_ints", "_convert",
        "compute_snapshots", "_merge_context", "_assemble", "_sorted_customers", "_epoch_day",
    ),
}


def _select(tree: ast.Module, names: tuple[str, ...]) -> ast.Module:
    kept: list[ast.stmt] = []
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        name = getattr(node, "name", None) or (targets[0] if targets else None)
        if name in names:
            kept.append(node)
        elif isinstance(node, ast.ClassDef):
            kept.extend(m for m in node.body if f"{node.name}.{getattr(m, 'name', '')}" in names)
    return ast.Module(body=kept, type_ignores=[])


def _top_level_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def _closure(tree: ast.Module, names: set[str]) -> tuple[str, ...]:
    """The imported names plus every top-level definition they use, transitively."""
    defined = {name: node for node in tree.body for name in _top_level_names(node)}
    wanted, todo = set(), [n for n in names if n in defined]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name) and n.id in defined)
    return tuple(sorted(wanted))


def _normalised_source(module_name: str, imported: set[str] | None = None) -> str:
    """The module's AST without docstrings; only what ``imported`` names reach, when given."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    if module_name in SEMANTIC_PARTS:
        tree = _select(tree, SEMANTIC_PARTS[module_name])
    elif imported is not None:
        tree = _select(tree, _closure(tree, imported))
    for node in ast.walk(tree):
        if not isinstance(node, _STATEMENT_BLOCKS):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _feature_imports(module_name: str) -> dict[str, set[str] | None]:
    """Shared feature modules a family uses: module -> the names it imports (None: the whole module)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    found: dict[str, set[str] | None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(FEATURES_PACKAGE):
            if node.module == FEATURES_PACKAGE:  # from feature_platform.features import sentiment
                found.update({f"{FEATURES_PACKAGE}.{alias.name}": None for alias in node.names})
            elif (names := found.setdefault(node.module, set())) is not None:
                names.update(alias.name for alias in node.names)
    found.pop(module_name, None)
    return dict(sorted(found.items()))


def _shared_modules(module_name: str) -> dict[str, set[str] | None]:
    """Feature modules ``module_name`` uses, directly or through them, with the names used of each."""
    found: dict[str, set[str] | None] = {}
    todo = [module_name]
    while todo:
        for shared, names in _feature_imports(todo.pop()).items():
            if shared == module_name:
                continue
            before = found.get(shared, set())
            merged = None if names is None or before is None else before | names
            if shared not in found or merged != before:
                found[shared] = merged
                todo.append(shared)
    return dict(sorted(found.items()))


def family_fingerprint(family: Family, registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    digest = hashlib.sha256()
    for module_name, imported in [(family.module, None), *_shared_modules(family.module).items()]:
        digest.update(module_name.encode())
        digest.update(_normalised_source(module_name, imported).encode())
    digest.update(json.dumps(family.config, sort_keys=True, default=str).encode())
    digest.update(json.dumps([(f.name, f.type, f.length) for f in registry.list_features(family.name)]).encode())
    return digest.hexdigest()[:16]


def read_lock(path: Path = LOCK_PATH) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text()) if path.exists() else {}


def unlocked_changes(registry: Registry | None = None, path: Path = LOCK_PATH) -> list[str]:
    """Families whose computation differs from what their current version recorded, as messages."""
    registry = registry or load_registry()
    lock = read_lock(path)
    problems = []
    for family in registry.families.values():
        current = family_fingerprint(family, registry)
        recorded = lock.get(family.name, {}).get(family.version)
        if recorded is None:
            problems.append(f"{family.name} {family.version}: not recorded; run `feature-platform registry lock`")
        elif recorded != current:
            problems.append(
                f"{family.name} {family.version}: computation changed (fingerprint {recorded} -> {current}) but the "
                f"version was not bumped; bump families.{family.name}.version in feature_registry.yaml, then run "
                "`feature-platform registry lock`"
            )
    return problems


def lock(registry: Registry | None = None, path: Path = LOCK_PATH) -> dict[str, str]:
    """Record the fingerprint of every family version not recorded yet. Recorded versions never change."""
    registry = registry or load_registry()
    data = read_lock(path)
    added = {}
    for family in registry.families.values():
        current = family_fingerprint(family, registry)
        versions = data.setdefault(family.name, {})
        if family.version in versions and versions[family.version] != current:
            raise RegistryError(
                f"{family.name} {family.version} was recorded with fingerprint {versions[family.version]}; its "
                f"computation now gives {current}. Bump the family version instead of re-recording it."
            )
        if family.version not in versions:
            versions[family.version] = current
            added[family.name] = family.version
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return added
