"""The model store: every trained model as an immutable, self-describing version folder.

Layout under ``Settings.models_dir``::

    <root>/<name>/<version>/model.joblib      the fitted estimator (joblib.dump)
                            expansion.json    the ExpansionSpec (spec.to_json()), applied unchanged at serving
                            features.json     {"feature_names": [...], "columns": [...]} in model order
                            metrics.json      evaluation metrics (sorted keys, indent 2)
                            <plot>.png        one file per plot
                            model_card.md     the human-readable card
                            manifest.json     name, version, created_at, feature_names, columns,
                                              registry_versions, family_versions (of the training
                                              set's snapshots; null: not recorded), training_fingerprint, info, the
                                              library versions that wrote the model, and the sha256
                                              of every other file in the folder
    <root>/<name>/champion.json               the promoted version, the one before it and the last 20 promotions
    <root>/<name>/rejections.json             the last 50 candidates that were not promoted, and why

A version id is ``<created_at as YYYYMMDDTHHMMSSZ>-<10 hex>``, the hex a sha256 over the training
fingerprint, the expansion spec and ``info``: ids sort by time, and the same training in the same
second gets the same id. A version is written into a dot-prefixed temp folder next to the final one
and renamed into place, so a reader or a crash never sees half a version; dot-prefixed folders are
never listed. In an object store (no rename; offline/location.py) the folder is written locally and
uploaded file by file, the manifest last: a version without its manifest is not listed or loaded. champion.json and rejections.json are rewritten whole through a temp file and a rename.
The store expects one writer per model name at a time (one Dagster run); it does not lock.

The manifest hashes make :meth:`ModelStore.load` refuse a file that changed after it was saved.
They protect against corruption and accidental edits, not against someone who can also rewrite the
manifest: only load models from a store you trust (joblib files are pickles).

A pickle is only as portable as the classes in it. The manifest's ``libraries`` records the Python,
numpy, scikit-learn and XGBoost versions that wrote the model, and ``model_libraries`` which of
numpy, scikit-learn and XGBoost the model object is made of. :meth:`ModelStore.load` refuses, before
unpickling, a model whose libraries are incompatible with the installed ones
(:class:`ModelLibraryMismatchError`, naming both versions; see model_libraries.py). The rule:

- scikit-learn and XGBoost: the same major.minor release (patch releases may differ). Neither
  supports unpickling across releases: an estimator's attributes change between minor releases,
  and a model that unpickles anyway can predict differently.
- numpy: the same major release (numpy 2 pickles reference ``numpy._core``, unknown to numpy 1).
- Python: recorded for diagnosis, not checked (the pickles of these libraries do not depend on it).
- A library the model is not made of is not checked: an XGBoost upgrade leaves a scikit-learn
  logistic regression loadable.

A manifest written before versions were recorded loads with a warning: nothing says what wrote it.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.ml.expand import ExpansionSpec

# ModelLibraryMismatchError and model_libraries stay importable from here: what load raises, what save records.
from feature_platform.ml.model_libraries import (  # noqa: F401
    ModelLibraryMismatchError,
    check_libraries,
    library_versions,
    model_libraries,
)
from feature_platform.offline.location import StorePath, store_path, upload
from feature_platform.offline.store import atomic_write_bytes

MODEL_FILE = "model.joblib"
EXPANSION_FILE = "expansion.json"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.md"
MANIFEST_FILE = "manifest.json"
CHAMPION_FILE = "champion.json"
REJECTIONS_FILE = "rejections.json"
RESERVED_FILES = (MODEL_FILE, EXPANSION_FILE, FEATURES_FILE, METRICS_FILE, CARD_FILE, MANIFEST_FILE)
HISTORY_KEPT = 20
REJECTIONS_KEPT = 50
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # no leading dot: dot folders are temp folders
VERSION_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
HASH_CHARS = 10
# Fixed Parquet options for training_fingerprint: no dictionary, compression or statistics, and pages
# far larger than a row group, so the bytes depend on the rows and the schema, not on how the table is chunked.
FINGERPRINT_ROW_GROUP = 65_536
FINGERPRINT_PAGE_BYTES = 1 << 30


log = logging.getLogger(__name__)


class ModelIntegrityError(RuntimeError):
    """A file of a saved version is missing or differs from the hash its manifest recorded."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: StorePath
    created_at: str  # ISO 8601, UTC
    manifest: dict


class ModelStore:
    def __init__(self, root: StorePath | str) -> None:
        """``root``: a local folder or an object-store URL (offline/location.py)."""
        self.root = store_path(root)

    # -- paths -------------------------------------------------------------------------------
    def model_dir(self, name: str) -> StorePath:
        return self.root / _safe(name, "model name")

    def version_dir(self, name: str, version: str) -> StorePath:
        return self.model_dir(name) / _safe(version, "version")

    # -- writes ------------------------------------------------------------------------------
    def save_version(
        self,
        name: str,
        *,
        model: object,
        spec: ExpansionSpec,
        feature_names: Sequence[str],
        registry_versions: Mapping[str, str],
        training_fingerprint: str,
        metrics: Mapping,
        plots: Mapping[str, bytes],
        card: str | Callable[[str], str],
        info: Mapping | None = None,
        created_at: dt.datetime | None = None,
        family_versions: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Write a new version of ``name`` and return it; nothing is visible until every file is written.

        A naive ``created_at`` is taken as UTC (the platform's only time zone); the default is now.
        ``card`` is the model card's markdown, or a function of the version id that returns it.
        """
        folder = self.model_dir(name)
        for key in plots:
            _safe(key, "plot key")
        when = _utc(created_at or dt.datetime.now(dt.UTC))
        info_json = _dumps(dict(info or {}))
        digest = hashlib.sha256("\0".join([training_fingerprint, spec.to_json(), info_json]).encode())
        version = f"{when.strftime(VERSION_TIME_FORMAT)}-{digest.hexdigest()[:HASH_CHARS]}"
        final = self.version_dir(name, version)

        if isinstance(folder, Path):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{version}.{uuid.uuid4().hex}.tmp"
            tmp.mkdir()
        else:  # built locally, then uploaded (_publish)
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp"))
        try:
            joblib.dump(model, tmp / MODEL_FILE)
            _fsync(tmp / MODEL_FILE)
            atomic_write_bytes(tmp / EXPANSION_FILE, spec.to_json().encode())
            features = {"feature_names": list(feature_names), "columns": spec.columns}
            atomic_write_bytes(tmp / FEATURES_FILE, _dumps(features, indent=2).encode())
            atomic_write_bytes(tmp / METRICS_FILE, _dumps(dict(metrics), indent=2).encode())
            for key, png in plots.items():
                atomic_write_bytes(tmp / f"{key}.png", bytes(png))
            atomic_write_bytes(tmp / CARD_FILE, (card(version) if callable(card) else card).encode())
            manifest = {
                "name": name,
                "version": version,
                "created_at": when.isoformat(),
                "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                "feature_names": list(feature_names),
                "columns": spec.columns,
                "registry_versions": dict(registry_versions),
                "family_versions": dict(family_versions) if family_versions is not None else None,
                "training_fingerprint": training_fingerprint,
                "info": json.loads(info_json),
                "libraries": library_versions(),
                "model_libraries": model_libraries(model),
                "files": {p.name: _sha256(p) for p in sorted(tmp.iterdir())},
            }
            atomic_write_bytes(tmp / MANIFEST_FILE, _dumps(manifest, indent=2).encode())
            _fsync_dir(tmp)
            _publish(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return self._version(name, version)

    def promote(self, name: str, version: str, reason: str) -> None:
        """Make ``version`` the champion of ``name``, keeping the one before it and the last promotions."""
        self._require(name, version)
        path = self.model_dir(name) / CHAMPION_FILE
        current = _read_json(path) or {}
        now = _utc(dt.datetime.now(dt.UTC)).isoformat()
        history = [*current.get("history", []), {"version": version, "promoted_at": now, "reason": reason}]
        atomic_write_bytes(path, _dumps({
            "version": version,
            "promoted_at": now,
            "reason": reason,
            "previous": current.get("version"),
            "history": history[-HISTORY_KEPT:],
        }, indent=2).encode())

    def record_rejection(self, name: str, version: str, reason: str) -> None:
        """Log that ``version`` was not promoted and why; the champion stays as it is."""
        self._require(name, version)
        path = self.model_dir(name) / REJECTIONS_FILE
        entries = [*(_read_json(path) or []), {"version": version, "at": _utc(dt.datetime.now(dt.UTC)).isoformat(),
                                               "reason": reason}]
        atomic_write_bytes(path, _dumps(entries[-REJECTIONS_KEPT:], indent=2).encode())

    # -- reads -------------------------------------------------------------------------------
    def versions(self, name: str) -> list[ModelVersion]:
        """Every complete version of ``name``, oldest first."""
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        found = [
            self._version(name, p.name)
            for p in folder.iterdir()
            if p.is_dir() and SAFE_NAME.fullmatch(p.name) and (p / MANIFEST_FILE).is_file()
        ]
        return sorted(found, key=lambda v: (v.created_at, v.version))

    def load(self, name: str, version: str) -> tuple[object, ExpansionSpec, ModelVersion]:
        """The model, its expansion spec and its version, after checking every file against the manifest."""
        meta = self._require(name, version)
        for file, expected in meta.manifest["files"].items():
            path = meta.path / file
            if not path.is_file():
                raise ModelIntegrityError(f"{name}/{version}: {file} is listed in the manifest but missing; "
                                          "the version is damaged, retrain or promote another version")
            if _sha256(path) != expected:
                raise ModelIntegrityError(f"{name}/{version}: {file} does not match the sha256 in its manifest; "
                                          "it changed after saving, retrain or promote another version")
        spec = ExpansionSpec.from_json((meta.path / EXPANSION_FILE).read_text())
        if spec.columns != meta.manifest["columns"]:
            raise ModelIntegrityError(f"{name}/{version}: {EXPANSION_FILE} columns differ from the manifest's")
        check_libraries(meta.manifest, f"{meta.name}/{meta.version}")
        with (meta.path / MODEL_FILE).open("rb") as fh:
            return joblib.load(fh), spec, meta

    def champion(self, name: str) -> ModelVersion | None:
        """The promoted version of ``name``, or None when nothing was ever promoted."""
        current = _read_json(self.model_dir(name) / CHAMPION_FILE)
        if current is None:
            return None
        version = current["version"]
        if not (self.version_dir(name, version) / MANIFEST_FILE).is_file():
            raise FileNotFoundError(f"{CHAMPION_FILE} of {name} names version {version}, which is not in "
                                    f"{self.model_dir(name)}; promote an existing version")
        return self._version(name, version)

    # -- helpers -----------------------------------------------------------------------------
    def _version(self, name: str, version: str) -> ModelVersion:
        path = self.version_dir(name, version)
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        return ModelVersion(name=name, version=version, path=path, created_at=manifest["created_at"],
                            manifest=manifest)

    def _require(self, name: str, version: str) -> ModelVersion:
        if not (self.version_dir(name, version) / MANIFEST_FILE).is_file():
            known = [v.version for v in self.versions(name)]
            raise ValueError(f"{name} has no saved version {version!r} under {self.root}; saved versions: {known}")
        return self._version(name, version)


def training_fingerprint(table: pa.Table) -> str:
    """A sha256 hex over ``table``'s schema and rows, the same however the table is chunked or sliced.

    The hash is over a Parquet serialization with fixed options (no dictionary, compression or
    statistics, 65,536-row groups, one page per column chunk) streamed into the digest. Parquet,
    unlike the Arrow IPC stream, writes neither the bytes under nulls nor the padding bits of
    validity bitmaps, which differ between equal tables (a slice, a computed column). The schema is
    part of the file (the Arrow schema in the footer); table-level schema metadata, such as pandas'
    index notes, is dropped first. The footer also names the pyarrow version, so upgrading pyarrow
    changes every fingerprint once (a spurious difference, never a false match). A column chunk of
    more than 1 GiB in one row group would be split into pages by write order and lose the guarantee.
    """
    sink = _HashingSink()
    pq.write_table(
        table.replace_schema_metadata(None),
        sink,
        row_group_size=FINGERPRINT_ROW_GROUP,
        data_page_size=FINGERPRINT_PAGE_BYTES,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
        write_page_index=False,
        version="2.6",
        data_page_version="1.0",
    )
    return sink.digest.hexdigest()


class _HashingSink:
    """A write-only file object that feeds a sha256 instead of storing bytes."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _safe(value: str, what: str) -> str:
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a safe path component: use letters, digits, '_', '-' and '.', "
                         "not starting with '.'")
    return value


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).replace(microsecond=0)


def _json_default(value: Any) -> Any:
    """What json cannot encode by itself: numpy scalars and arrays, sets, paths and timestamps."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable; convert it to numbers, strings or lists")


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, sort_keys=True, indent=indent, default=_json_default)


def _sha256(path: StorePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: StorePath) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # POSIX only; makes renames and new entries durable
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, final: StorePath) -> None:
    """Rename the finished ``tmp`` folder to ``final`` (in an object store: upload it, the manifest last).

    ``final`` exists only when the same training was saved in the same second. With identical files
    it is kept as it is; otherwise it is moved aside and replaced, which leaves a moment in which the
    version is absent (POSIX cannot rename a folder over a non-empty one), never one with mixed files.
    """
    if not isinstance(final, Path):
        if _read_json(final / MANIFEST_FILE) == _read_json(tmp / MANIFEST_FILE):
            return
        for file in sorted(tmp.iterdir(), key=lambda p: p.name == MANIFEST_FILE):  # the manifest commits it
            upload(file, final / file.name)
        return
    try:
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if _read_json(final / MANIFEST_FILE) == _read_json(tmp / MANIFEST_FILE):
            return  # the caller removes tmp
        old = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(final.parent)
