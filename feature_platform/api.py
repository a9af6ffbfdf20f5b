"""The feature store from Python (a notebook, a training script): online vectors and point-in-time data.

    from feature_platform import FeatureStore

    store = FeatureStore("data")                       # a data directory `feature-platform run` filled
    store.get_online_features(["u000001", "u000002"], ["total_events", "churn_risk_score"])
    store.get_historical_features(entity_df, ["total_events", "monetary_total"])
    store.get_historical_features(entity_df, ["total_events"], versions={"activity": "1.1.0"})  # pinned

Online vectors come from the online store the run pushed (the embedded redis-server under the data
directory, or FP_REDIS_URL / FP_REDIS_SENTINELS), exactly as the feature server reads them; historical
features are the point-in-time join of offline/pit.py. Other settings come from the FP_* variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from feature_platform.config import Settings
from feature_platform.offline.pit import get_historical_features
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connect, release
from feature_platform.online.store import OnlineStore
from feature_platform.registry.registry import Registry, load_registry
from feature_platform.sources.entity_ids import canonical_ids_list


class FeatureStore:
    """One data directory's features: the registry, the online store and the offline store."""

    def __init__(self, data_dir: str | Path | None = None, **settings: Any) -> None:
        """``data_dir``: the data directory (default FP_DATA_DIR, else ./data); ``settings``: other
        :class:`~feature_platform.config.Settings` fields to override (e.g. ``redis_url``)."""
        base = Settings.from_env()
        self.settings = base.with_overrides(data_dir=Path(data_dir).resolve() if data_dir else None, **settings)
        self.registry: Registry = load_registry()
        self._online: OnlineStore | None = None

    def list_features(self, family: str | None = None) -> pd.DataFrame:
        """The registry's features (name, family, type, version, description), of one family if given."""
        return pd.DataFrame([{"name": f.name, "family": f.family, "type": f.type, "version": f.version,
                              "description": f.description} for f in self.registry.list_features(family)])

    def get_online_features(self, user_ids: Sequence[str | int | float],
                            features: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per user id (in the order given): ``user_id``, ``found`` (the served snapshot has the user),
        ``snapshot_date``, then the features (every online feature when ``features`` is None). A user the
        snapshot does not hold has ``found`` False and nulls.

        Ids are text or whole numbers: ``42``, ``42.0`` and ``"42"`` are the same user (its canonical id text,
        sources/entity_ids.py); ``user_id`` holds them as given. A bad id (a bool, a fraction, a null) is an
        :class:`~feature_platform.sources.entity_ids.EntityIdError` naming the item, before Redis is asked."""
        if isinstance(user_ids, str):
            raise TypeError(f"user_ids is a list of ids; got the string {user_ids!r}")
        keys = canonical_ids_list(user_ids)
        online = self._online_store()
        names = list(features) if features is not None else None
        vectors = online.read_many(keys, names)
        columns = names or next((list(v.values) for v in vectors.values() if v is not None), [])
        rows = []
        for user, key in zip(user_ids, keys, strict=True):
            vector = vectors[key]
            values = vector.values if vector is not None else {}
            rows.append({"user_id": user, "found": vector is not None,
                         "snapshot_date": vector.snapshot_date if vector is not None else None,
                         **{name: values.get(name) for name in columns}})
        return pd.DataFrame(rows, columns=["user_id", "found", "snapshot_date", *columns])

    def get_historical_features(self, entity_df: pd.DataFrame, features: Sequence[str],
                                versions: object = None) -> pd.DataFrame:
        """``entity_df`` (``user_id``, ``timestamp`` in UTC, other columns kept) with each feature as it was
        known at the row's time: from the latest snapshot available then, never a later one. Per family,
        ``<family>_snapshot_date`` names the snapshot used and ``<family>_snapshot_missing`` is True when
        none was available yet.

        ``versions`` pins family versions: ``{"activity": "1.1.0"}``, a model's manifest (the versions it was
        trained on) or a registry. A pinned family's rows join only snapshots of that version; when the snapshot a
        row would use is of another (or an unrecorded) version, :class:`~feature_platform.offline.versions.
        PinnedVersionError` (a ValueError) names the family, the version and the dates."""
        return get_historical_features(entity_df, features, OfflineStore(self.settings.data_root),
                                       self.registry, versions).to_pandas()

    def close(self) -> None:
        """Let the online store's connection go (and the embedded redis-server, unless another process uses it)."""
        if self._online is not None:
            release(self._online.client)
            self._online = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _online_store(self) -> OnlineStore:
        if self._online is None:
            self._online = OnlineStore(connect(self.settings), self.registry, self.settings.redis_prefix)
        return self._online
