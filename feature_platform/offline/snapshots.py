"""Every family's snapshot of one day as one row per user: what the online store serves."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry.registry import Registry


def user_vectors(store: OfflineStore, registry: Registry, day: dt.date) -> pa.Table:
    """``user_id`` plus every registry feature of snapshot ``day``, ordered by user_id.

    Users missing from a family's snapshot get nulls for its features (every family normally has one
    row per known user). A family without a partition for ``day`` raises: serving half a vector is
    worse than serving yesterday's whole one.
    """
    paths = {}
    for family in registry.families.values():
        path = store.partition_path("/".join(family.asset_path), day.isoformat())
        if not path.exists():
            raise FileNotFoundError(f"no {family.name} snapshot for {day} ({path}); materialize it first")
        paths[family.name] = path
    names = list(paths)
    selects = [
        f"(SELECT user_id, {', '.join(registry.family(n).features)} FROM read_parquet($p{i})) AS f{i}"
        for i, n in enumerate(names)
    ]
    joined = selects[0] + "".join(f" FULL OUTER JOIN {s} USING (user_id)" for s in selects[1:])
    columns = [f for n in names for f in registry.family(n).features]
    with connect() as con:
        table = con.sql(f"SELECT user_id, {', '.join(columns)} FROM {joined} ORDER BY user_id",
                        params={f"p{i}": str(paths[n]) for i, n in enumerate(names)}).to_arrow_table()
    return table.select(["user_id", *(f for f in registry.features if f in columns)])
