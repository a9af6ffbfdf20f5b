"""Where the stored files live: a local folder, or an object store (``s3://bucket/prefix``).

``FP_DATA_URL=s3://bucket/prefix`` puts the data root -- raw partitions, tiles, snapshots, training sets,
quarantine, the partition calendar, models and their cards -- in an S3-compatible object store; the
endpoint and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, or a profile). ``FP_DATA_DIR`` stays the local working folder
of one machine: the Dagster instance, the embedded Redis, the landing log of incoming events, logs.

Paths under an object-store root are :class:`upath.UPath` objects over fsspec's S3 filesystem (``pip install
'feature_platform[s3]'``): the pathlib calls the store makes (``/``, ``exists``, ``iterdir``, ``open``,
``unlink``, ``stat``) work on both kinds. An object store has no rename, so a write is committed whole
instead: the file is written to a local temp file and uploaded in one request (a multipart upload is
completed only after its last part), so a reader sees the previous object or the new one, never a part.
A folder's listing is cached for LISTING_TTL_SECONDS: each file a read opens would otherwise cost a request or
three for its size and date (an object store answers each in milliseconds, a local disk in microseconds). This
process's own writes and deletes update the cache at once; another process's writes are seen within the TTL,
which is shorter than any step's hand-over to the next. DuckDB reads the Parquet objects
directly through the same filesystem, registered on every connection ``offline.store.connect`` makes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
from upath import UPath

# A path in the data root: a local path, or an object in the object store.
StorePath: TypeAlias = Path | UPath
OBJECT_STORE_SCHEMES = ("s3",)
LISTING_TTL_SECONDS = 5.0  # how long a folder listing of the object store is reused in one process
_filesystems: dict[str, Any] = {}  # protocol -> the fsspec filesystem of the object-store roots opened here


class DataRootError(ValueError):
    """The data root is not a folder or an object-store URL the platform can use."""


def data_root(value: str | os.PathLike[str]) -> StorePath:
    """The root a setting names: an absolute local path, or a :class:`UPath` for ``s3://bucket[/prefix]``."""
    text = os.fspath(value) if not isinstance(value, UPath) else str(value)
    scheme, sep, rest = text.partition("://")
    if not sep or (len(scheme) == 1 and scheme.isalpha()):  # a local path (or a Windows drive letter)
        return Path(text).expanduser().resolve()
    if scheme == "file":
        return Path(rest).resolve()
    if scheme not in OBJECT_STORE_SCHEMES:
        raise DataRootError(f"FP_DATA_URL {text!r}: the object stores supported are "
                            f"{', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)} (or give a local path)")
    if not rest.strip("/"):
        raise DataRootError(f"FP_DATA_URL {text!r} names no bucket; write s3://bucket/prefix")
    if importlib.util.find_spec("s3fs") is None:  # fsspec finds it by the scheme
        raise DataRootError(f"FP_DATA_URL {text!r} needs fsspec's S3 filesystem: pip install "
                            "'feature_platform[s3]' (s3fs)")
    root = UPath(text.rstrip("/"), use_listings_cache=True, listings_expiry_time=LISTING_TTL_SECONDS)
    _filesystems.setdefault(scheme, root.fs)
    return root


def store_path(value: str | os.PathLike[str] | UPath) -> StorePath:
    """``value`` as a path of the store: an object-store URL through :func:`data_root`, a path as it is."""
    if isinstance(value, Path | UPath):
        return value
    return data_root(value) if "://" in os.fspath(value) else Path(value)


def is_remote(path: StorePath) -> bool:
    """Whether ``path`` is an object in an object store (no rename, no fsync, no local file)."""
    return not isinstance(path, Path)


def register_filesystems(con: duckdb.DuckDBPyConnection) -> None:
    """Let DuckDB read ``s3://`` paths of the object-store roots opened in this process."""
    for fs in _filesystems.values():
        con.register_filesystem(fs)


@contextmanager
def committed(path: StorePath) -> Iterator[Path]:
    """A local file to write; when the block ends without error it becomes ``path`` whole, else nothing.

    Local: a dot-prefixed temp file next to ``path`` (no ``.parquet`` suffix, so no glob sees it),
    fsync, rename. Object store: a local temp file uploaded in one request at the end.
    """
    if not isinstance(path, Path):
        fd, name = tempfile.mkstemp(prefix=".feature_platform-upload-", suffix=".tmp")
        os.close(fd)
        staged = Path(name)
        try:
            yield staged
            upload(staged, path)
        finally:
            staged.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def upload(local: Path, target: StorePath) -> None:
    """Copy the local file ``local`` to ``target`` (one object, visible once complete)."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        return
    target.fs.put_file(str(local), target.path)


def remove_tree(path: StorePath) -> None:
    """Delete the folder ``path`` and everything in it; nothing to do when it is absent."""
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with suppress(FileNotFoundError):
        path.fs.rm(path.path, recursive=True)


def relative_key(path: StorePath, root: StorePath) -> str:
    """``path`` relative to ``root``, with forward slashes (``features/user_activity_features``)."""
    inner, outer = path.as_posix(), root.as_posix().rstrip("/")
    if not inner.startswith(outer + "/"):
        raise ValueError(f"{inner} is not under {outer}")
    return inner[len(outer) + 1:]


def arrow_file(path: StorePath) -> tuple[str, Any]:
    """``(path, filesystem)`` arguments for pyarrow's readers: the local path and None, or the object's key
    and its fsspec filesystem (pyarrow wraps it)."""
    if isinstance(path, Path):
        return str(path), None
    return path.path, path.fs
