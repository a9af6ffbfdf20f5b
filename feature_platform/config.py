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

DEFAULT_DATA_DIR = "data"
DEFAULT_RETENTION_DAYS = 365
DEFAULT_MAX_QUARANTINE_RATE = 0.05
DEFAULT_CHURN_HORIZON_DAYS = 30
DEFAULT_MODEL_AUC_FLOOR = 0.7
DEFAULT_REDIS_PREFIX = "fp"
DEFAULT_MAX_BATCH = 1_000
DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: a full batch of user ids is ~130 KB
# DuckDB's memory while raw events are validated and landed; past it DuckDB spills to a temp folder.
DEFAULT_INGEST_MEMORY_MB = 512
# Population stability index thresholds of the drift checks (the usual rule of thumb: < 0.1 stable,
# 0.1-0.25 a moderate shift worth a look, >= 0.25 a shift that changes what a model sees).
DEFAULT_DRIFT_PSI_WARN = 0.1
DEFAULT_DRIFT_PSI_FAIL = 0.25


class ConfigError(ValueError):
    """A setting has a value the platform cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).resolve())
    raw_dir: Path | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    max_quarantine_rate: float = DEFAULT_MAX_QUARANTINE_RATE
    topic_model_cutoff: dt.datetime | None = None
    churn_horizon_days: int = DEFAULT_CHURN_HORIZON_DAYS
    model_auc_floor: float = DEFAULT_MODEL_AUC_FLOOR
    redis_url: str | None = None  # None: the embedded redis-server under <data>/online/
    redis_cluster: bool = False
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    api_keys: tuple[str, ...] = ()  # FP_API_KEYS, comma-separated; empty: the server binds to loopback only
    max_batch: int = DEFAULT_MAX_BATCH  # FP_MAX_BATCH: most users (or events) one request may carry
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # FP_MAX_BODY_BYTES: larger request bodies get a 413 unparsed
    drift_psi_warn: float = DEFAULT_DRIFT_PSI_WARN  # FP_DRIFT_PSI_WARN: a feature's PSI from here on warns
    drift_psi_fail: float = DEFAULT_DRIFT_PSI_FAIL  # FP_DRIFT_PSI_FAIL: from here on the drift check fails
    drift_blocks_push: bool = False  # FP_DRIFT_BLOCKS_PUSH: a failing drift check stops the online push
    ingest_memory_mb: int = DEFAULT_INGEST_MEMORY_MB  # FP_INGEST_MEMORY_MB: DuckDB's memory for raw ingestion

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ConfigError(f"FP_RETENTION_DAYS must be >= 1, got {self.retention_days}")
        if not 0.0 <= self.max_quarantine_rate <= 1.0:
            raise ConfigError(f"FP_MAX_QUARANTINE_RATE must be in [0, 1], got {self.max_quarantine_rate}")
        if self.churn_horizon_days < 1:
            raise ConfigError(f"FP_CHURN_HORIZON_DAYS must be >= 1, got {self.churn_horizon_days}")
        if not 0.0 <= self.model_auc_floor <= 1.0:
            raise ConfigError(f"FP_MODEL_AUC_FLOOR must be in [0, 1], got {self.model_auc_floor}")
        if self.max_batch < 1:
            raise ConfigError(f"FP_MAX_BATCH must be >= 1, got {self.max_batch}")
        if self.max_body_bytes < 1_024:
            raise ConfigError(f"FP_MAX_BODY_BYTES must be >= 1024, got {self.max_body_bytes}")
        if self.ingest_memory_mb < 64:
            raise ConfigError(f"FP_INGEST_MEMORY_MB must be >= 64, got {self.ingest_memory_mb}")
        if not 0.0 < self.drift_psi_warn <= self.drift_psi_fail:
            raise ConfigError(f"FP_DRIFT_PSI_WARN and FP_DRIFT_PSI_FAIL must satisfy 0 < warn <= fail, got "
                              f"{self.drift_psi_warn} and {self.drift_psi_fail}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_dir = env.get("FP_RAW_DIR")
        return cls(
            data_dir=Path(env.get("FP_DATA_DIR") or DEFAULT_DATA_DIR).resolve(),
            raw_dir=Path(raw_dir).resolve() if raw_dir else None,
            retention_days=_int(env, "FP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
            max_quarantine_rate=_float(env, "FP_MAX_QUARANTINE_RATE", DEFAULT_MAX_QUARANTINE_RATE),
            topic_model_cutoff=_datetime(env, "FP_TOPIC_MODEL_CUTOFF"),
            churn_horizon_days=_int(env, "FP_CHURN_HORIZON_DAYS", DEFAULT_CHURN_HORIZON_DAYS),
            model_auc_floor=_float(env, "FP_MODEL_AUC_FLOOR", DEFAULT_MODEL_AUC_FLOOR),
            redis_url=env.get("FP_REDIS_URL") or None,
            redis_cluster=_bool(env, "FP_REDIS_CLUSTER"),
            redis_prefix=env.get("FP_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            api_keys=tuple(k.strip() for k in (env.get("FP_API_KEYS") or "").split(",") if k.strip()),
            max_batch=_int(env, "FP_MAX_BATCH", DEFAULT_MAX_BATCH),
            max_body_bytes=_int(env, "FP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            drift_psi_warn=_float(env, "FP_DRIFT_PSI_WARN", DEFAULT_DRIFT_PSI_WARN),
            drift_psi_fail=_float(env, "FP_DRIFT_PSI_FAIL", DEFAULT_DRIFT_PSI_FAIL),
            drift_blocks_push=_bool(env, "FP_DRIFT_BLOCKS_PUSH"),
            ingest_memory_mb=_int(env, "FP_INGEST_MEMORY_MB", DEFAULT_INGEST_MEMORY_MB),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def sample_dir(self) -> Path:
        return self.data_dir / "sample"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def online_dir(self) -> Path:
        return self.data_dir / "online"

    @property
    def landing_dir(self) -> Path:
        """Events accepted by POST /events or `events push`, durably appended before the answer."""
        return self.data_dir / "landing"


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
