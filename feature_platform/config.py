"""Platform settings from ``FP_*`` environment variables, read when asked for, never at import time.

One frozen dataclass holds every setting so the CLI, the Dagster resources and the tests resolve
configuration the same way. Tests build ``Settings(...)`` directly instead of patching the environment.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from feature_platform.offline.location import DataRootError, StorePath, data_root

DEFAULT_DATA_DIR = "data"
DEFAULT_RETENTION_DAYS = 365
DEFAULT_MAX_QUARANTINE_RATE = 0.05
DEFAULT_CHURN_HORIZON_DAYS = 30
DEFAULT_MODEL_AUC_FLOOR = 0.7
DEFAULT_REDIS_PREFIX = "fp"
DEFAULT_SENTINEL_MASTER = "mymaster"  # redis-sentinel's own example name
DEFAULT_MAX_BATCH = 1_000
DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: a full batch of user ids is ~130 KB
# DuckDB's memory while raw events are validated and landed; past it DuckDB spills to a temp folder.
DEFAULT_INGEST_MEMORY_MB = 512
# Population stability index thresholds of the drift checks (the usual rule of thumb: < 0.1 stable,
# 0.1-0.25 a moderate shift worth a look, >= 0.25 a shift that changes what a model sees).
DEFAULT_DRIFT_PSI_WARN = 0.1
DEFAULT_DRIFT_PSI_FAIL = 0.25
# What a feature-server caller may do (FP_API_KEYS, JWT `scope`): route groups, see serving/auth.py.
API_SCOPES = ("features:read", "predict", "events:write", "admin")
# The audit log file rotates at this size, keeping this many old files (FP_AUDIT_LOG_MAX_BYTES/_BACKUPS).
DEFAULT_AUDIT_LOG_MAX_BYTES = 10 * 1_048_576
DEFAULT_AUDIT_LOG_BACKUPS = 5
# Computing an unknown user's features on a read (serving/on_demand.py): how long a request waits for it,
# how many users one request may have computed, how long Redis keeps a computed vector.
DEFAULT_ON_DEMAND_BUDGET_MS = 1_000
DEFAULT_ON_DEMAND_MAX_USERS = 10
DEFAULT_ON_DEMAND_TTL_SECONDS = 300


MAX_SHARDS = 1_024  # a step per shard and family: more would be a run of tens of thousands of steps
EXECUTORS = ("in_process", "multiprocess", "celery")  # FP_EXECUTOR (orchestration/execution.py)


class ConfigError(ValueError):
    """A setting has a value the platform cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).resolve())
    # FP_DATA_URL: the data root in an object store (s3://bucket/prefix; offline/location.py); unset: data_dir.
    data_url: str | None = None
    raw_dir: Path | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    max_quarantine_rate: float = DEFAULT_MAX_QUARANTINE_RATE
    topic_model_cutoff: dt.datetime | None = None
    churn_horizon_days: int = DEFAULT_CHURN_HORIZON_DAYS
    model_auc_floor: float = DEFAULT_MODEL_AUC_FLOOR
    redis_url: str | None = None  # None: the embedded redis-server under <data>/online/
    redis_cluster: bool = False
    # FP_REDIS_SENTINELS `host:port,host:port`: Redis Sentinels to ask for the master named
    # FP_REDIS_SENTINEL_MASTER; FP_REDIS_PASSWORD is the master's (and its replicas') password.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = DEFAULT_SENTINEL_MASTER
    redis_password: str | None = field(default=None, repr=False)
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    # FP_API_KEYS, comma-separated entries `key` (every scope) or `key:scope+scope`; empty: loopback only.
    # Secrets stay out of repr (and so out of logs and tracebacks).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    jwt_secret: str | None = field(default=None, repr=False)  # FP_JWT_SECRET: HS256 bearer tokens
    jwt_public_key: str | None = None  # FP_JWT_PUBLIC_KEY (PEM text, or read from that path): RS256 bearer tokens
    jwt_audience: str | None = None  # FP_JWT_AUDIENCE: tokens must carry this `aud`
    jwt_issuer: str | None = None  # FP_JWT_ISSUER: tokens must carry this `iss`
    audit_log: str | None = None  # FP_AUDIT_LOG: a file path, or `-` for stdout; unset: no audit log
    audit_log_max_bytes: int = DEFAULT_AUDIT_LOG_MAX_BYTES  # FP_AUDIT_LOG_MAX_BYTES: rotate the file at this size
    audit_log_backups: int = DEFAULT_AUDIT_LOG_BACKUPS  # FP_AUDIT_LOG_BACKUPS: rotated files kept
    max_batch: int = DEFAULT_MAX_BATCH  # FP_MAX_BATCH: most users (or events) one request may carry
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # FP_MAX_BODY_BYTES: larger request bodies get a 413 unparsed
    drift_psi_warn: float = DEFAULT_DRIFT_PSI_WARN  # FP_DRIFT_PSI_WARN: a feature's PSI from here on warns
    drift_psi_fail: float = DEFAULT_DRIFT_PSI_FAIL  # FP_DRIFT_PSI_FAIL: from here on the drift check fails
    drift_blocks_push: bool = False  # FP_DRIFT_BLOCKS_PUSH: a failing drift check stops the online push
    ingest_memory_mb: int = DEFAULT_INGEST_MEMORY_MB  # FP_INGEST_MEMORY_MB: DuckDB's memory for raw ingestion
    shards: int = 1  # FP_SHARDS: user shards a family's snapshots are computed in, one step each (features/shards.py)
    # FP_EXECUTOR, one of EXECUTORS; unset: in process, or a process per step when FP_SHARDS > 1. With celery the
    # steps go to Celery workers through FP_CELERY_BROKER, results through FP_CELERY_BACKEND (unset: the broker).
    executor: str | None = None
    celery_broker: str | None = field(default=None, repr=False)  # URLs may carry a password
    celery_backend: str | None = field(default=None, repr=False)
    # FP_ON_DEMAND_BUDGET_MS (0: never compute on a read), FP_ON_DEMAND_MAX_USERS, FP_ON_DEMAND_TTL_SECONDS
    on_demand_budget_ms: int = DEFAULT_ON_DEMAND_BUDGET_MS
    on_demand_max_users: int = DEFAULT_ON_DEMAND_MAX_USERS
    on_demand_ttl_seconds: int = DEFAULT_ON_DEMAND_TTL_SECONDS

    def __post_init__(self) -> None:
        if self.data_url:
            try:
                data_root(self.data_url)
            except DataRootError as exc:
                raise ConfigError(str(exc)) from None
        if self.retention_days < 1:
            raise ConfigError(f"FP_RETENTION_DAYS must be >= 1, got {self.retention_days}")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ConfigError(f"FP_SHARDS must be in 1 .. {MAX_SHARDS}, got {self.shards}")
        if self.executor is not None and self.executor not in EXECUTORS:
            raise ConfigError(f"FP_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor == "celery" and not self.celery_broker:
            raise ConfigError("FP_EXECUTOR=celery needs FP_CELERY_BROKER, the URL of the Celery broker the workers "
                              "listen to (redis://host:6379/1; docs/scaling.md)")
        for name, url in (("FP_CELERY_BROKER", self.celery_broker), ("FP_CELERY_BACKEND", self.celery_backend)):
            if url is not None and "://" not in url:  # the value itself stays out of the message: a password
                raise ConfigError(f"{name} must be a URL such as redis://host:6379/1 (no '://' in it)")
        if not 0.0 <= self.max_quarantine_rate <= 1.0:
            raise ConfigError(f"FP_MAX_QUARANTINE_RATE must be in [0, 1], got {self.max_quarantine_rate}")
        if self.churn_horizon_days < 1:
            raise ConfigError(f"FP_CHURN_HORIZON_DAYS must be >= 1, got {self.churn_horizon_days}")
        if not 0.0 <= self.model_auc_floor <= 1.0:
            raise ConfigError(f"FP_MODEL_AUC_FLOOR must be in [0, 1], got {self.model_auc_floor}")
        if self.max_batch < 1:
            raise ConfigError(f"FP_MAX_BATCH must be >= 1, got {self.max_batch}")
        if self.on_demand_budget_ms < 0:
            raise ConfigError(f"FP_ON_DEMAND_BUDGET_MS must be >= 0 (0 turns computing on a read off), "
                              f"got {self.on_demand_budget_ms}")
        if self.on_demand_max_users < 1:
            raise ConfigError(f"FP_ON_DEMAND_MAX_USERS must be >= 1, got {self.on_demand_max_users}")
        if self.on_demand_ttl_seconds < 1:
            raise ConfigError(f"FP_ON_DEMAND_TTL_SECONDS must be >= 1, got {self.on_demand_ttl_seconds}")
        if self.max_body_bytes < 1_024:
            raise ConfigError(f"FP_MAX_BODY_BYTES must be >= 1024, got {self.max_body_bytes}")
        if self.ingest_memory_mb < 64:
            raise ConfigError(f"FP_INGEST_MEMORY_MB must be >= 64, got {self.ingest_memory_mb}")
        if not 0.0 < self.drift_psi_warn <= self.drift_psi_fail:
            raise ConfigError(f"FP_DRIFT_PSI_WARN and FP_DRIFT_PSI_FAIL must satisfy 0 < warn <= fail, got "
                              f"{self.drift_psi_warn} and {self.drift_psi_fail}")
        if self.redis_sentinels and self.redis_url:
            raise ConfigError("set one of FP_REDIS_URL and FP_REDIS_SENTINELS, not both (with Sentinel the master's "
                              "address comes from the sentinels; its password from FP_REDIS_PASSWORD)")
        api_key_scopes(self.api_keys)  # refuses a malformed FP_API_KEYS now, not at the first request
        if self.jwt_secret is not None and self.jwt_public_key is not None:
            raise ConfigError("set one of FP_JWT_SECRET (HS256) and FP_JWT_PUBLIC_KEY (RS256), not both")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise ConfigError("FP_JWT_SECRET must have at least 32 characters (HS256 wants a 256-bit secret)")
        if self.jwt_public_key is not None and "-----BEGIN" not in self.jwt_public_key:
            raise ConfigError("FP_JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----) or a path to one")
        if self.audit_log_max_bytes < 1_024:
            raise ConfigError(f"FP_AUDIT_LOG_MAX_BYTES must be >= 1024, got {self.audit_log_max_bytes}")
        if self.audit_log_backups < 1:
            raise ConfigError(f"FP_AUDIT_LOG_BACKUPS must be >= 1 (0 would let the file grow without bound), "
                              f"got {self.audit_log_backups}")

    @property
    def embedded_redis(self) -> bool:
        """Whether the online store is the embedded redis-server (no FP_REDIS_URL, no FP_REDIS_SENTINELS)."""
        return not self.redis_url and not self.redis_sentinels

    @property
    def auth_configured(self) -> bool:
        """Whether the feature server checks callers (API keys or JWT bearer tokens)."""
        return bool(self.api_keys) or self.jwt_secret is not None or self.jwt_public_key is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_dir = env.get("FP_RAW_DIR")
        return cls(
            data_dir=Path(env.get("FP_DATA_DIR") or DEFAULT_DATA_DIR).resolve(),
            data_url=env.get("FP_DATA_URL") or None,
            raw_dir=Path(raw_dir).resolve() if raw_dir else None,
            retention_days=_int(env, "FP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
            max_quarantine_rate=_float(env, "FP_MAX_QUARANTINE_RATE", DEFAULT_MAX_QUARANTINE_RATE),
            topic_model_cutoff=_datetime(env, "FP_TOPIC_MODEL_CUTOFF"),
            churn_horizon_days=_int(env, "FP_CHURN_HORIZON_DAYS", DEFAULT_CHURN_HORIZON_DAYS),
            model_auc_floor=_float(env, "FP_MODEL_AUC_FLOOR", DEFAULT_MODEL_AUC_FLOOR),
            redis_url=env.get("FP_REDIS_URL") or None,
            redis_cluster=_bool(env, "FP_REDIS_CLUSTER"),
            redis_sentinels=_addresses(env, "FP_REDIS_SENTINELS"),
            redis_sentinel_master=env.get("FP_REDIS_SENTINEL_MASTER") or DEFAULT_SENTINEL_MASTER,
            redis_password=env.get("FP_REDIS_PASSWORD") or None,
            redis_prefix=env.get("FP_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            api_keys=tuple(k.strip() for k in (env.get("FP_API_KEYS") or "").split(",") if k.strip()),
            jwt_secret=env.get("FP_JWT_SECRET") or None,
            jwt_public_key=_pem(env, "FP_JWT_PUBLIC_KEY"),
            jwt_audience=env.get("FP_JWT_AUDIENCE") or None,
            jwt_issuer=env.get("FP_JWT_ISSUER") or None,
            audit_log=env.get("FP_AUDIT_LOG") or None,
            audit_log_max_bytes=_int(env, "FP_AUDIT_LOG_MAX_BYTES", DEFAULT_AUDIT_LOG_MAX_BYTES),
            audit_log_backups=_int(env, "FP_AUDIT_LOG_BACKUPS", DEFAULT_AUDIT_LOG_BACKUPS),
            max_batch=_int(env, "FP_MAX_BATCH", DEFAULT_MAX_BATCH),
            max_body_bytes=_int(env, "FP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            drift_psi_warn=_float(env, "FP_DRIFT_PSI_WARN", DEFAULT_DRIFT_PSI_WARN),
            drift_psi_fail=_float(env, "FP_DRIFT_PSI_FAIL", DEFAULT_DRIFT_PSI_FAIL),
            drift_blocks_push=_bool(env, "FP_DRIFT_BLOCKS_PUSH"),
            ingest_memory_mb=_int(env, "FP_INGEST_MEMORY_MB", DEFAULT_INGEST_MEMORY_MB),
            shards=_int(env, "FP_SHARDS", 1),
            executor=(env.get("FP_EXECUTOR") or "").strip().lower() or None,
            celery_broker=env.get("FP_CELERY_BROKER") or None,
            celery_backend=env.get("FP_CELERY_BACKEND") or None,
            on_demand_budget_ms=_int(env, "FP_ON_DEMAND_BUDGET_MS", DEFAULT_ON_DEMAND_BUDGET_MS),
            on_demand_max_users=_int(env, "FP_ON_DEMAND_MAX_USERS", DEFAULT_ON_DEMAND_MAX_USERS),
            on_demand_ttl_seconds=_int(env, "FP_ON_DEMAND_TTL_SECONDS", DEFAULT_ON_DEMAND_TTL_SECONDS),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def data_root(self) -> StorePath:
        """Where the stored data lives: raw partitions, tiles, snapshots, training sets, quarantine, the
        partition calendar and models. FP_DATA_URL's object store, else the data directory."""
        return data_root(self.data_url) if self.data_url else self.data_dir

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def sample_dir(self) -> Path:
        return self.data_dir / "sample"

    @property
    def models_dir(self) -> StorePath:
        return self.data_root / "models"

    @property
    def online_dir(self) -> Path:
        return self.data_dir / "online"

    @property
    def landing_dir(self) -> Path:
        """Events accepted by POST /events or `events push`, durably appended before the answer."""
        return self.data_dir / "landing"


def api_key_scopes(entries: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """FP_API_KEYS entries -> {key: scopes}. An entry is `key` (every scope, the old form) or `key:scope+scope`
    (the key ends at the first colon). Errors name the entry by position, never by its secret."""
    keys: dict[str, frozenset[str]] = {}
    for position, entry in enumerate(entries, 1):
        key, sep, scope_text = entry.strip().partition(":")
        where = f"FP_API_KEYS entry {position}"
        if not key or any(c.isspace() or c in "+," for c in key):
            raise ConfigError(f"{where}: the key is empty or contains spaces, '+' or ','; write key or "
                              f"key:scope+scope with scopes from {', '.join(API_SCOPES)}")
        scopes = [s.strip() for s in scope_text.split("+")] if sep else list(API_SCOPES)
        unknown = [s for s in scopes if s not in API_SCOPES]
        if unknown:
            raise ConfigError(f"{where}: unknown scopes {unknown}; scopes are {', '.join(API_SCOPES)} joined by '+'"
                              " (key:features:read+predict)")
        if key in keys:
            raise ConfigError(f"{where}: the same key is listed twice; give it one entry with all its scopes")
        keys[key] = frozenset(scopes)
    return keys


def _pem(env: Mapping[str, str], name: str) -> str | None:
    """PEM text as given, or read from the path given."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        return value
    try:
        return Path(value).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"{name} is neither PEM text nor a readable file: {exc}") from None


def _addresses(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    return parse_addresses(env.get(name) or "", name)


def parse_addresses(text: str, name: str = "FP_REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (an IPv6 host in brackets: ``[::1]:26379``); ``name`` is the setting's, for errors."""
    found = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ConfigError(f"{name} must be comma-separated host:port entries, got {entry!r}")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be 1/0, true/false or yes/no, got {env.get(name)!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _datetime(env: Mapping[str, str], name: str) -> dt.datetime | None:
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date or timestamp (UTC), got {value!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
