"""Every family's snapshot of one day as one row per user (what the online store serves), and one user's value
of a feature over the daily snapshots (the feature history)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from feature_platform.offline.store import OfflineStore, UnreadablePartitionError, connect
from feature_platform.registry.registry import Registry

# Rows per row group of a snapshot file. Snapshots are sorted by user_id, so a read of a few users (a feature
# history, a recomputation) touches one small row group per file instead of the whole file.
SNAPSHOT_ROW_GROUP = 16_384


def user_vectors(
    store: OfflineStore,
    registry: Registry,
    day: dt.date,
    families: Sequence[str] | None = None,
) -> pa.Table:
    """``user_id`` plus every feature of ``families`` (default: all) in snapshot ``day``, ordered by user_id.

    Users missing from a family's snapshot get nulls for its features (every family normally has one
    row per known user). A snapshot family without a partition for ``day`` raises: serving half a
    vector is worse than serving yesterday's whole one. A derived family (model outputs) without one
    gets nulls, its registry meaning of "not scored": scores start with the first champion and a run
    scores only its latest day, so older days have none (:func:`missing_derived` names them). A partition
    that is not readable Parquet raises :class:`UnreadablePartitionError` naming it, whatever its family.
    """
    names = list(registry.families) if families is None else list(families)
    paths, absent = {}, []
    for name in names:
        family = registry.family(name)
        table_name = "/".join(family.asset_path)
        path = store.partition_path(table_name, day.isoformat())
        if path.exists():
            unreadable = store.check_partition(table_name, day.isoformat())
            if unreadable is not None:
                raise UnreadablePartitionError(unreadable)
            paths[name] = path
        elif family.derived:
            absent.append(name)
        else:
            raise FileNotFoundError(f"no {family.name} snapshot for {day} ({path}); materialize it first")
    if not paths:
        raise FileNotFoundError(f"no snapshot of {names} for {day}; materialize the feature snapshots first")
    joined_names = list(paths)
    selects = [
        f"(SELECT user_id, {', '.join(registry.family(n).features)} FROM read_parquet($p{i})) AS f{i}"
        for i, n in enumerate(joined_names)
    ]
    joined = selects[0] + "".join(f" FULL OUTER JOIN {s} USING (user_id)" for s in selects[1:])
    columns = [f for n in joined_names for f in registry.family(n).features]
    with connect() as con:
        table = con.sql(f"SELECT user_id, {', '.join(columns)} FROM {joined} ORDER BY user_id",
                        params={f"p{i}": str(paths[n]) for i, n in enumerate(joined_names)}).to_arrow_table()
    for name in absent:
        for feature in registry.list_features(name):
            table = table.append_column(pa.field(feature.name, feature.arrow_type),
                                        pa.nulls(table.num_rows, feature.arrow_type))
    wanted = {f for n in names for f in registry.family(n).features}
    return table.select(["user_id", *(f for f in registry.features if f in wanted)])


def missing_derived(store: OfflineStore, registry: Registry, day: dt.date) -> list[str]:
    """Derived families with no partition for ``day``: their features are null in :func:`user_vectors`."""
    return [f.name for f in registry.families.values()
            if f.derived and not store.partition_path("/".join(f.asset_path), day.isoformat()).exists()]


def feature_history(store: OfflineStore, table: str, feature: str, user_id: str, limit: int
                    ) -> list[tuple[dt.date, Any]]:
    """``(snapshot_date, value)`` of ``user_id``'s ``feature`` in the newest ``limit`` snapshots of ``table``,
    newest first. A snapshot holds a user at most once, so only those files are read (a year of them stays a
    year, however long the retention), each in the row group that holds the user."""
    keys = store.partitions(table)[-limit:]
    files = [str(p) for p in store.partition_files(table, keys[0], keys[-1])] if keys else []
    if not files:  # none, or every one unreadable (the store names those)
        return []
    with connect(threads=1) as con:
        return con.execute(
            f'SELECT snapshot_date, "{feature}" FROM read_parquet($files, union_by_name = true) '
            "WHERE user_id = $user ORDER BY snapshot_date DESC", {"files": files, "user": user_id}).fetchall()
