"""Training sets: labelled rows with point-in-time correct features, built from the offline store.

Both builders pick features with :func:`get_historical_features`, so a row only sees snapshots whose
data is strictly before the row's time. By default they take every feature of the snapshot families
and none of a derived family (model outputs such as churn_risk_score): a model must not learn from
its own, or another model's, scores of the same rows. Labels are computed in DuckDB over
``raw/events`` (read with ``OfflineStore.scan``), with every value passed as a query parameter.

Churn (one row per known user and snapshot date D)
    The row's time is D+1 00:00, so it gets snapshot D. The label window is half-open like the
    snapshot's, [D+1 00:00, D+1+H 00:00): exactly the days D+1 .. D+H. An event at D+1 00:00 (a
    date-only purchase on D+1) is in the label, not in snapshot D, which holds data < D+1 00:00; an
    event at D+1+H 00:00 belongs to day D+H+1 and is outside. ``churned`` = 1 when the user has no
    event of any type (purchases included) in the window, 0 otherwise. L being the last ``raw/events``
    partition, the label is null and ``labelled`` false when D+H > L. Every day D+1..D+H of a
    labelled date must have a partition (an empty file means no events); a gap raises rather than
    labelling users as churned for want of data.

Contact (one row per ``listing_viewed`` / ``impression`` event)
    ``contacted`` = 1 when the same user has a ``listing_contact_clicked`` or ``listing_favorited``
    of the same listing strictly after the view and either in the same (non-null) session or at most
    24 h after it (inclusive), else 0. ``labelled`` is false for a 0 whose 24 h window reaches past
    the end of the data (the answer could still change); ``contacted`` stays 0 there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.offline.pit import get_historical_features
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.offline.versions import recorded_family_versions
from feature_platform.registry.pinning import family_versions, require_known
from feature_platform.registry.registry import Registry, load_registry
from feature_platform.sources.ingest import raw_table
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS

EVENTS_TABLE = raw_table("events")
CUSTOMERS_TABLE = raw_table("customers")
LISTINGS_TABLE = raw_table("listings")
SNAPSHOT_FAMILY = "activity"  # its partitions are the candidate churn snapshot dates
VIEW_TYPES = ("listing_viewed", "impression")
CONTACT_TYPES = ("listing_contact_clicked", "listing_favorited")
CONTACT_WINDOW_HOURS = 24
LISTING_COLUMNS = ("category_id", "city", "price", "is_premium", "image_count")
CONTEXT_COLUMNS = ("day_of_week", "hour", "device")
VIEW_COLUMNS = ("event_id", "user_id", "event_type", "listing_id", "session_id", "timestamp")
ROW = "__ts_row"
# A listing's price_rank: the percent rank of its price among the listings of its category (0 = cheapest).
LISTINGS_WITH_PRICE_RANK = """
    SELECT *, CASE WHEN price IS NULL THEN NULL
                   ELSE percent_rank() OVER (PARTITION BY category_id ORDER BY price) END AS price_rank
    FROM listings"""


def churn_training_set(
    store: OfflineStore,
    registry: Registry | None,
    snapshot_dates: Sequence[dt.date] | None = None,
    horizon_days: int = 30,
    feature_names: Sequence[str] | None = None,
    every_days: int = 7,
    versions: object = None,
) -> pa.Table:
    """One row per (user known at D, snapshot date D): features of snapshot D, ``churned``, ``labelled``.

    ``snapshot_dates`` defaults to :func:`default_churn_dates` (one date every ``every_days``).
    ``feature_names`` defaults to :func:`training_features`; a derived feature (the churn model's own
    score) is refused. Columns: user_id, snapshot_date, the features, per family
    ``<family>_snapshot_date`` / ``<family>_snapshot_missing`` / ``<family>_user_present`` (flags, not
    model inputs), churned (int64, null when unlabelled), labelled (bool). Rows are ordered by
    snapshot_date, user_id. ``versions`` pins family versions (:func:`get_historical_features`).
    """
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    registry = registry or load_registry()
    names = list(feature_names) if feature_names is not None else training_features(registry)
    derived = [n for n in names if n in registry.features and registry.family(registry.features[n].family).derived]
    if derived:
        raise ValueError(f"{derived} are model outputs (a derived family); the churn model would train on its own "
                         "score. Leave them out of feature_names")
    last_day = last_event_day(store)
    if snapshot_dates is None:
        dates = default_churn_dates(store, registry, horizon_days, last_day, every_days)
    else:
        dates = sorted(set(snapshot_dates))
    if not dates:
        raise ValueError("no snapshot dates given; pass at least one date or None for the default")
    horizon = dt.timedelta(days=horizon_days)
    labelled_dates = [d for d in dates if d + horizon <= last_day]
    _require_event_partitions(store, labelled_dates, horizon_days)

    with connect() as con:
        con.register("customers", _customers(store))
        con.sql(
            f"""
            SELECT c.user_id, d.snapshot_date, CAST(d.snapshot_date + INTERVAL 1 DAY AS TIMESTAMP) AS timestamp,
                   row_number() OVER (ORDER BY d.snapshot_date, c.user_id) AS {ROW}
            FROM (SELECT unnest($dates::DATE[]) AS snapshot_date) AS d
            JOIN customers AS c ON c.signup_date IS NULL OR c.signup_date <= d.snapshot_date
            """,
            params={"dates": dates},
        ).create("churn_rows")
        if labelled_dates:
            start = (min(labelled_dates) + dt.timedelta(days=1)).isoformat()
            end = (max(labelled_dates) + horizon + dt.timedelta(days=1)).isoformat()
            events = store.scan(con, EVENTS_TABLE, start, end, EVENTS.arrow_schema)
        else:
            events = con.from_arrow(EVENTS.arrow_schema.empty_table())
        events.create_view("label_events")
        labelled = con.sql(
            f"""
            SELECT r.user_id, r.snapshot_date, r.timestamp,
                   CASE WHEN r.snapshot_date + $h::INTEGER > $last::DATE THEN NULL
                        WHEN EXISTS (
                            SELECT 1 FROM label_events AS e
                            WHERE e.user_id = r.user_id
                              AND e.timestamp >= r.timestamp
                              AND e.timestamp < r.timestamp + to_days($h::INTEGER)
                        ) THEN 0
                        ELSE 1 END::BIGINT AS churned,
                   r.snapshot_date + $h::INTEGER <= $last::DATE AS labelled
            FROM churn_rows AS r
            ORDER BY r.{ROW}
            """,
            params={"h": horizon_days, "last": last_day},
        ).to_arrow_table()

    rows = labelled.select(["user_id", "snapshot_date", "timestamp"]).cast(
        pa.schema([("user_id", pa.string()), ("snapshot_date", pa.date32()), ("timestamp", pa.timestamp("us"))]))
    out = get_historical_features(rows, names, store, registry, versions).drop_columns(["timestamp"])
    out = out.append_column("churned", labelled.column("churned").cast(pa.int64()))
    return out.append_column("labelled", labelled.column("labelled").cast(pa.bool_()))


def training_features(registry: Registry) -> list[str]:
    """The default model inputs: every snapshot-family feature, no derived one (models' outputs).

    The registry's ``dependencies: model_inputs`` of a derived feature stands for this same list.
    """
    return registry.snapshot_features()


def training_versions(registry: Registry, feature_names: Sequence[str], pin: object = None) -> dict[str, str]:
    """The family versions a training set of ``feature_names`` is built at: per family of those features, the
    pinned version (``pin``: see registry/pinning.py), else the registry's current one. Every family is pinned,
    so a training set never mixes versions silently."""
    pinned = family_versions(pin)
    require_known(pinned, registry)
    families = dict.fromkeys(registry.get_feature(name).family for name in feature_names)
    return {family: pinned.get(family, registry.family(family).version) for family in families}


def default_churn_dates(
    store: OfflineStore,
    registry: Registry,
    horizon_days: int,
    last_day: dt.date | None = None,
    every_days: int = 7,
) -> list[dt.date]:
    """Weekly (``every_days``) dates among the activity snapshot partitions, counting back from the
    last labelable one.

    A date D is labelable when D + horizon_days <= the last ``raw/events`` partition. Dates are
    D_last, D_last - 7, D_last - 14, ... where a snapshot partition exists (gaps are skipped).
    """
    if every_days < 1:
        raise ValueError(f"every_days must be at least 1, got {every_days}")
    last_day = last_day or last_event_day(store)
    table = "/".join(registry.family(SNAPSHOT_FAMILY).asset_path)
    horizon = dt.timedelta(days=horizon_days)
    complete = [d for d in map(dt.date.fromisoformat, store.partitions(table)) if d + horizon <= last_day]
    if not complete:
        raise ValueError(f"no partition of {table} has a full {horizon_days}-day label horizon before the last "
                         f"raw/events day {last_day}; materialize older snapshots or pass snapshot_dates")
    anchor = max(complete)
    return [d for d in complete if (anchor - d).days % every_days == 0]


def contact_training_set(
    store: OfflineStore,
    registry: Registry | None,
    feature_names: Sequence[str] | None = None,
    versions: object = None,
) -> pa.Table:
    """One row per listing view or impression: user features as of the event, listing, context, label.

    Columns: event_id, user_id, event_type, listing_id, session_id, timestamp, category_id, city,
    price, is_premium, image_count, price_rank (the percent rank of the price among the listings of
    its category, 0 = cheapest; all null for a listing missing from ``raw/listings``), day_of_week
    (0 = Monday), hour, device (from ``raw/customers``), the user features and per-family flags of
    :func:`get_historical_features`, contacted (int64), labelled (bool). Ordered by timestamp, event_id.
    ``feature_names`` defaults to :func:`training_features`; ``versions`` pins family versions
    (:func:`get_historical_features`).
    """
    registry = registry or load_registry()
    data_end = dt.datetime.combine(last_event_day(store) + dt.timedelta(days=1), dt.time(0))
    with connect() as con:
        store.scan(con, EVENTS_TABLE, schema=EVENTS.arrow_schema).create_view("raw_events")
        con.register("customers", _customers(store))
        con.register("listings", _optional_table(store, LISTINGS_TABLE, LISTINGS.arrow_schema))
        con.sql(
            f"""
            SELECT {", ".join(VIEW_COLUMNS)}, row_number() OVER (ORDER BY timestamp, event_id) AS {ROW}
            FROM raw_events WHERE list_contains($views, event_type)
            """,
            params={"views": list(VIEW_TYPES)},
        ).create("views")
        con.sql(
            "SELECT user_id, listing_id, session_id, timestamp FROM raw_events WHERE list_contains($contacts, event_type)",
            params={"contacts": list(CONTACT_TYPES)},
        ).create("contacts")
        views = _views_with_labels(con, data_end)

    names = list(feature_names) if feature_names is not None else training_features(registry)
    out = get_historical_features(views, names, store, registry, versions)
    flags = [c for c in out.column_names if c not in views.column_names and c not in names]
    base = [c for c in views.column_names if c not in ("contacted", "labelled")]
    return out.select([*base, *names, *flags, "contacted", "labelled"])


def _views_with_labels(con: duckdb.DuckDBPyConnection, data_end: dt.datetime) -> pa.Table:
    (rows,), = con.execute("SELECT count(*) FROM views").fetchall()
    table = con.sql(
        f"""
        SELECT {", ".join(f"v.{c}" for c in VIEW_COLUMNS)},
               {", ".join(f"l.{c}" for c in LISTING_COLUMNS)}, l.price_rank,
               (isodow(v.timestamp) - 1)::BIGINT AS day_of_week,
               hour(v.timestamp)::BIGINT AS hour,
               c.device,
               lab.contacted,
               lab.contacted = 1 OR v.timestamp + to_hours($window::INTEGER) < $end::TIMESTAMP AS labelled
        FROM views AS v
        LEFT JOIN ({LISTINGS_WITH_PRICE_RANK}) AS l ON l.listing_id = v.listing_id
        LEFT JOIN customers AS c ON c.user_id = v.user_id
        JOIN (
            SELECT v2.{ROW}, CASE WHEN EXISTS (
                SELECT 1 FROM contacts AS k
                WHERE k.user_id = v2.user_id AND k.listing_id = v2.listing_id AND k.timestamp > v2.timestamp
                  AND (k.session_id = v2.session_id OR k.timestamp <= v2.timestamp + to_hours($window::INTEGER))
            ) THEN 1 ELSE 0 END::BIGINT AS contacted
            FROM views AS v2
        ) AS lab ON lab.{ROW} = v.{ROW}
        ORDER BY v.{ROW}
        """,
        params={"window": CONTACT_WINDOW_HOURS, "end": data_end},
    ).to_arrow_table()
    if table.num_rows != rows:
        raise ValueError(f"{rows} views became {table.num_rows} rows: a listing_id in {LISTINGS_TABLE} or a "
                         f"user_id in {CUSTOMERS_TABLE} is listed twice; fix that table")
    return table


def training_metadata(table: pa.Table, label: str, registry: Registry | None = None) -> dict[str, Any]:
    """Summary to store next to a training set: sizes, label rate, snapshot dates, feature versions.

    Labelled rows are those with ``labelled`` true (when the column exists) and a non-null label; the
    label rate is the mean label over them (None when there are none). The snapshot date range is
    over ``snapshot_date`` when present, else over every ``<family>_snapshot_date`` (ISO strings).
    ``family_versions``: the versions recorded in the training set's file (offline/versions.py), None when it
    records none (built before they were recorded).
    """
    if label not in table.column_names:
        raise KeyError(f"label column {label!r} not in the table; columns: {table.column_names}")
    registry = registry or load_registry()
    values = table.column(label)
    mask = pc.is_valid(values)
    if "labelled" in table.column_names:
        mask = pc.and_(mask, pc.fill_null(table.column("labelled"), False))
    labelled = pc.filter(values, mask)
    count = len(labelled)
    rate = pc.mean(labelled.cast(pa.float64())).as_py() if count else None

    date_columns = ["snapshot_date"] if "snapshot_date" in table.column_names else [
        c for c in table.column_names if c.endswith("_snapshot_date")]
    dates = [d for c in date_columns for d in (pc.min(table.column(c)).as_py(), pc.max(table.column(c)).as_py())
             if d is not None]
    features = [c for c in table.column_names if c in registry.features]
    return {
        "rows": table.num_rows,
        "labelled_rows": count,
        "label_rate": rate,
        "snapshot_date_min": min(dates).isoformat() if dates else None,
        "snapshot_date_max": max(dates).isoformat() if dates else None,
        "registry_version": registry.version,
        "feature_versions": {name: registry.get_feature_version(name) for name in features},
        "family_versions": recorded_family_versions(table.schema),
    }


def last_event_day(store: OfflineStore) -> dt.date:
    """The last ``raw/events`` partition: the data ends at the following midnight."""
    partitions = store.partitions(EVENTS_TABLE)
    if not partitions:
        raise FileNotFoundError(f"no {EVENTS_TABLE} partitions under {store.root}; run `feature-platform ingest`")
    return dt.date.fromisoformat(partitions[-1])


def _require_event_partitions(store: OfflineStore, dates: Sequence[dt.date], horizon_days: int) -> None:
    have = set(store.partitions(EVENTS_TABLE))
    missing = sorted({
        (d + dt.timedelta(days=k)).isoformat() for d in dates for k in range(1, horizon_days + 1)
    } - have)
    if missing:
        raise ValueError(f"{EVENTS_TABLE} lacks partitions {missing[:5]}{' ...' if len(missing) > 5 else ''} inside "
                         "the label horizon; ingest those days (an empty partition means no events) or drop the dates")


def listing_inputs(store: OfflineStore) -> pa.Table:
    """listing_id, the listing columns and price_rank of every listing: the contact model's listing inputs,
    computed for serving exactly as for training."""
    with connect() as con:
        con.register("listings", _optional_table(store, LISTINGS_TABLE, LISTINGS.arrow_schema))
        return con.sql(f"SELECT listing_id, {', '.join(LISTING_COLUMNS)}, price_rank "
                       f"FROM ({LISTINGS_WITH_PRICE_RANK}) ORDER BY listing_id").to_arrow_table()


def _customers(store: OfflineStore) -> pa.Table:
    return store.read_table(CUSTOMERS_TABLE).select(["user_id", "signup_date", "device"]).cast(pa.schema(
        [CUSTOMERS.arrow_schema.field(c) for c in ("user_id", "signup_date", "device")]))


def _optional_table(store: OfflineStore, table: str, schema: pa.Schema) -> pa.Table:
    path = store.table_path(table)
    return store.read_table(table).select(schema.names).cast(schema) if path.exists() else schema.empty_table()
