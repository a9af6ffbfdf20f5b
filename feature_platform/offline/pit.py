"""Point-in-time joins: training rows get the feature values they could have seen, never later ones.

Snapshot D holds only data with timestamp < D+1 00:00 UTC, so it becomes available ("as of") at
D+1 00:00. A row at time ``ts`` gets, per family, the latest snapshot with ``as_of <= ts``: every
piece of data in it is strictly before the row. A row exactly at D+1 00:00 gets snapshot D; one
microsecond earlier gets D-1.

Per family this is two DuckDB joins, not a Python loop:

1. ``ASOF LEFT JOIN`` of the rows to the family's snapshot dates (the partition keys): which
   snapshot each row sees. No snapshot early enough -> null date, ``<family>_snapshot_missing``.
2. ``LEFT JOIN`` of (user_id, chosen date) to the snapshot files actually chosen, reading only the
   requested columns and a constant TRUE that marks a matched user. A user absent from the chosen
   snapshot gets nulls and no fallback to an older snapshot: the snapshot existed, the user was not in
   it (not yet a known customer). Joining ASOF on (user_id, time) over the data instead would wrongly
   fall back to an older snapshot for that user.

So a null feature has one of three causes, told apart by the per-family flags:

    the row's case                        <family>_user_present   <family>_snapshot_missing
    user in the snapshot used             true                    false   (a null is the value)
    user absent from the snapshot used    false                   false
    no snapshot early enough              null                    true

The rows' ids join in their canonical text form (:func:`feature_platform.sources.entity_ids.canonical_ids`),
the form the snapshots store: ``42``, ``42.0`` and ``" 42 "`` all find user ``"42"``. A column that cannot
hold ids (bools), a fractional float, a null or an empty id raises ``EntityIdError`` before any join.
The input rows come back unchanged (user_id as given), once each, in input order, with the features appended.

Pinned versions (``versions``: family -> semver, or a model manifest or the registry, registry/pinning.py):
for a pinned family a row may only join a snapshot of that version, read from the partition files' footers
(offline/versions.py). When a snapshot some row would use (the latest before its time) is of another
version, or of none recorded, the call raises :class:`PinnedVersionError` naming the family, the pinned
version and the dates with the versions found: the data of the pinned version is gone, and falling back to
an older snapshot would silently change the point-in-time rule. Unpinned families are joined as above.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.offline.store import OfflineStore, connect
from feature_platform.offline.versions import PinnedVersionError, check_pinned
from feature_platform.registry.pinning import family_versions, require_known
from feature_platform.registry.registry import Registry, UnknownNameError, load_registry
from feature_platform.sources.entity_ids import canonical_ids

ROW = "__pit_row"
TS = "__pit_ts"
PRESENT = "__pit_present"
FLAGS = ("snapshot_date", "snapshot_missing", "user_present")
__all__ = ["PinnedVersionError", "get_historical_features"]


def get_historical_features(
    entity_rows: pd.DataFrame | pa.Table,
    feature_names: Sequence[str],
    store: OfflineStore,
    registry: Registry | None = None,
    versions: object = None,
) -> pa.Table:
    """Append the requested features, point-in-time correct, to ``entity_rows``.

    ``entity_rows`` needs ``user_id`` (text, integers or whole floats, joined in canonical form) and
    ``timestamp`` (naive UTC; tz-aware is converted to UTC); other columns pass through untouched.
    Output columns: the input's, then the features in the requested order (registry Arrow types), then
    per family ``<family>_snapshot_date`` (date32, the snapshot used, null if none),
    ``<family>_snapshot_missing`` (bool, no snapshot early enough) and ``<family>_user_present`` (bool:
    the user has a row in the snapshot used; false when that snapshot lacks the user, null when there
    is no snapshot). An id with no canonical form raises ``EntityIdError`` (a ValueError)
    naming the row, before any join. ``versions`` pins family versions (module doc): a snapshot of another
    version, or of an unrecorded one, that a row would join raises :class:`PinnedVersionError` (a ValueError).
    """
    if isinstance(feature_names, str):
        raise TypeError(f"feature_names is a list of names; got the string {feature_names!r}")
    registry = registry or load_registry()
    pinned = family_versions(versions)
    require_known(pinned, registry)
    names = list(dict.fromkeys(feature_names))
    unknown = [n for n in names if n not in registry.features]
    if unknown:
        raise UnknownNameError(f"unknown feature(s) {unknown}; see `feature-platform registry list`")
    by_family: dict[str, list[str]] = {}
    for name in names:
        by_family.setdefault(registry.features[name].family, []).append(name)

    entities = entity_rows if isinstance(entity_rows, pa.Table) else pa.Table.from_pandas(
        entity_rows, preserve_index=False)
    keys = _join_keys(entities)
    added = names + [f"{fam}_{flag}" for fam in by_family for flag in FLAGS]
    clash = sorted(set(added) & set(entities.column_names))
    if clash:
        raise ValueError(f"entity_rows already has output column(s) {clash}; rename or drop them first")

    columns: dict[str, pa.ChunkedArray] = {}
    with connect() as con:
        con.register("pit_keys", keys)
        for family, features in by_family.items():
            columns.update(_join_family(con, store, registry, family, features, keys.num_rows, pinned.get(family)))
    out = entities
    for name in added:
        out = out.append_column(name, columns[name])
    return out


def _join_keys(entities: pa.Table) -> pa.Table:
    """Row number, user_id as canonical id text and the timestamp as naive UTC microseconds (floored)."""
    missing = [c for c in ("user_id", "timestamp") if c not in entities.column_names]
    if missing:
        raise ValueError(f"entity_rows needs columns {missing}; got {entities.column_names}")
    ts = entities.column("timestamp")
    if not pa.types.is_timestamp(ts.type):
        raise TypeError(f"entity_rows.timestamp must be a timestamp (naive UTC), got {ts.type}; "
                        "convert it with pandas.to_datetime")
    if ts.type.tz is not None:
        ts = ts.cast(pa.timestamp(ts.type.unit))  # Arrow stores UTC instants: dropping the zone keeps UTC
    if ts.type.unit == "ns":
        ts = pc.floor_temporal(ts, unit="microsecond")  # floor: 1 ns before midnight stays before it
    return pa.table({
        ROW: pa.array(range(entities.num_rows), pa.int64()),
        "user_id": canonical_ids(entities.column("user_id"), "entity_rows.user_id"),
        TS: ts.cast(pa.timestamp("us")),
    })


def _join_family(
    con: duckdb.DuckDBPyConnection,
    store: OfflineStore,
    registry: Registry,
    family: str,
    features: list[str],
    rows: int,
    pinned: str | None = None,
) -> dict[str, pa.ChunkedArray]:
    table = "/".join(registry.family(family).asset_path)
    schema = registry.snapshot_schema(family)
    dates = [dt.date.fromisoformat(key) for key in store.partitions(table)]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pit_chosen AS
        SELECT k.{ROW}, k.user_id, d.snapshot_date
        FROM pit_keys AS k
        ASOF LEFT JOIN (
            SELECT snapshot_date, CAST(snapshot_date + INTERVAL 1 DAY AS TIMESTAMP) AS as_of
            FROM (SELECT unnest($dates::DATE[]) AS snapshot_date)
        ) AS d ON k.{TS} >= d.as_of
        """,
        {"dates": dates},
    )
    used = [d for (d,) in con.execute("SELECT DISTINCT snapshot_date FROM pit_chosen WHERE snapshot_date IS NOT NULL")
            .fetchall()]
    if pinned is not None:  # before any data is read: the footers say which version each chosen file is
        check_pinned(store, registry.family(family), pinned, used)
    quoted = ", ".join(_ident(f) for f in features)
    if used:
        files = [str(store.partition_path(table, d.isoformat())) for d in sorted(used)]
        result = con.sql(
            f"""
            SELECT c.snapshot_date, {", ".join(f"s.{_ident(f)}" for f in features)},
                   CASE WHEN c.snapshot_date IS NOT NULL THEN s.{PRESENT} IS NOT NULL END AS {PRESENT}
            FROM pit_chosen AS c
            LEFT JOIN (SELECT snapshot_date, user_id, TRUE AS {PRESENT}, {quoted}
                       FROM read_parquet($files, union_by_name = true)) AS s
              ON s.user_id = c.user_id AND s.snapshot_date = c.snapshot_date
            ORDER BY c.{ROW}
            """,
            params={"files": files},
        ).to_arrow_table()
        if result.num_rows != rows:
            raise ValueError(f"{table}: a snapshot among {files} has a user twice; fix the partition "
                             "(its one-row-per-user check should have failed)")
        snapshot_date = result.column("snapshot_date").cast(pa.date32())
        values = {f: result.column(f).cast(schema.field(f).type) for f in features}
        present = result.column(PRESENT).cast(pa.bool_())
    else:  # no snapshot files, or none early enough for any row
        snapshot_date = pa.chunked_array([pa.nulls(rows, pa.date32())])
        values = {f: pa.chunked_array([pa.nulls(rows, schema.field(f).type)]) for f in features}
        present = pa.chunked_array([pa.nulls(rows, pa.bool_())])
    return {
        **values,
        f"{family}_snapshot_date": snapshot_date,
        f"{family}_snapshot_missing": pc.is_null(snapshot_date),
        f"{family}_user_present": present,
    }


def _ident(name: str) -> str:
    """A column name as a quoted SQL identifier (names come from the registry, never values)."""
    return '"' + name.replace('"', '""') + '"'
