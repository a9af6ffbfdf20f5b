"""What every feature family shares: the longest lookback, the family module, the output contract.

A snapshot of D sees only data with timestamp < D+1 00:00 UTC; its windows end at D ("30d" is
D-29 .. D) and the longest is ``LOOKBACK_DAYS``. How snapshots are computed from daily tiles is in
:mod:`feature_platform.features.engine`.
"""

from __future__ import annotations

import datetime as dt
import importlib
from types import ModuleType

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.offline.store import OfflineStore, connect
from feature_platform.registry.registry import Family, Registry

LOOKBACK_DAYS = 90


def known_user_count(store: OfflineStore, day: dt.date) -> int:
    """Customers known at D (signup_date null or <= D): the rows every snapshot of D must have,
    including a derived family's, which is not computed from raw tables."""
    path = store.table_path("raw/customers")
    if not path.exists():
        raise FileNotFoundError(f"raw/customers has not been written yet (expected {path}); ingest first")
    with connect() as con:
        return con.execute("SELECT count(*) FROM read_parquet($p) WHERE signup_date IS NULL OR signup_date <= $day",
                           {"p": str(path), "day": day}).fetchall()[0][0]


def family_module(family: Family) -> ModuleType:
    return importlib.import_module(family.module)


def conform(table: pa.Table, registry: Registry, family: Family, day: dt.date) -> pa.Table:
    """Order, type and sort a family's output exactly as the registry's snapshot schema says.

    A missing or unexpected column is a bug in the family, so it raises instead of padding.
    """
    schema = registry.snapshot_schema(family.name)
    expected = set(schema.names) - {"snapshot_date"}
    produced = set(table.column_names)
    if produced != expected:
        raise ValueError(
            f"family {family.name} produced columns that differ from the registry: "
            f"missing {sorted(expected - produced)}, unexpected {sorted(produced - expected)}"
        )
    table = table.append_column("snapshot_date", pa.array([day] * table.num_rows, pa.date32()))
    table = table.take(pc.sort_indices(table, sort_keys=[("user_id", "ascending")]))
    return table.select(schema.names).cast(schema).combine_chunks()
