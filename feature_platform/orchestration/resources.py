"""Dagster resources. Settings resolve at run time (``FP_*`` variables), never at import time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from pydantic import Field

from feature_platform.config import Settings
from feature_platform.offline.store import OfflineStore
from feature_platform.sources.locate import resolve_source_dir


class PlatformResource(dg.ConfigurableResource):
    """Where the platform reads raw inputs and writes everything else.

    Unset fields fall back to the ``FP_*`` environment variables at run time (see README).
    """

    data_dir: str | None = Field(default=None, description="Data directory; default FP_DATA_DIR or ./data.")
    raw_dir: str | None = Field(default=None, description="Raw input folder; default FP_RAW_DIR, then the recorded source.")
    max_quarantine_rate: float | None = Field(
        default=None, description="Blocking threshold on quarantined/input rows; default FP_MAX_QUARANTINE_RATE or 0.05."
    )
    redis_url: str | None = Field(default=None, description="Online store Redis URL; default FP_REDIS_URL, else the "
                                                            "embedded redis-server under <data>/online/.")
    redis_prefix: str | None = Field(default=None, description="Online store key prefix; default FP_REDIS_PREFIX or fp.")
    now_utc: str | None = Field(
        default=None, description="Pin 'now' (ISO timestamp, UTC) for reproducible tests; default the wall clock."
    )

    def settings(self) -> Settings:
        return Settings.from_env().with_overrides(
            data_dir=Path(self.data_dir).resolve() if self.data_dir else None,
            raw_dir=Path(self.raw_dir).resolve() if self.raw_dir else None,
            max_quarantine_rate=self.max_quarantine_rate,
            redis_url=self.redis_url,
            redis_prefix=self.redis_prefix,
        )

    def store(self) -> OfflineStore:
        return OfflineStore(self.settings().data_dir)

    def source_dir(self) -> Path:
        return resolve_source_dir(self.settings())

    def now(self) -> dt.datetime:
        if self.now_utc:
            return dt.datetime.fromisoformat(self.now_utc).replace(tzinfo=None)
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
