"""Helpers shared by the test layers: free ports, waiting for a server, hypothesis example counts, and
in-process materializations of a partition range."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import settings

from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG


def free_port() -> int:
    """A TCP port on the loopback interface nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], seconds: float, what: str, interval: float = 0.2,
               ignore: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """Poll ``condition`` until it is truthy; ``ignore``: exceptions that mean "not yet". Fails after ``seconds``
    naming ``what`` it waited for."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(interval)


def examples(weight: int) -> int:
    """A test's hypothesis example count: its relative ``weight`` (the count it gets from a profile of 100
    examples) scaled by the active profile's ``max_examples`` (conftest.py: ``ci`` the default, ``thorough``)."""
    return max(1, round(weight * settings.default.max_examples / 100))


@cache
def _every_asset() -> list:
    from feature_platform.definitions import build_defs

    defs = build_defs()
    return [*defs.assets]


def materialize_range(resources: dict, selection: dg.AssetSelection | list, start: str, end: str,
                      raise_on_error: bool = False, **kwargs) -> dg.ExecuteInProcessResult:
    """One in-process run of ``selection`` over the days ``start`` .. ``end`` (the range tags the CLI and the
    backfills set), on an ephemeral instance."""
    return dg.materialize(_every_asset(), selection=selection, resources=resources,
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error,
                          tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, **kwargs)


def build_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder ``build`` fills once per test session and every xdist worker shares: the first worker to ask
    builds it under a file lock, the others wait for it and reuse it. Treat it as read-only (``copy_tree``)."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's base folder, above each worker's own
    root, done = base / name, base / f"{name}.built"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            root.mkdir()
            build(root)
            done.touch()
    return root


def copy_tree(source: Path, target: Path) -> Path:
    """A private copy of a shared folder for a test that writes to it (without an embedded Redis' socket and
    settings files, which name the original's running server)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.sock", "*.settings"), dirs_exist_ok=True)
    return target
