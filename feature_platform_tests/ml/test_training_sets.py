"""Training sets on a tiny hand-written store: label boundaries, row keeping, point-in-time features."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from feature_platform.ml.training_sets import (
    churn_training_set,
    contact_training_set,
    default_churn_dates,
    training_features,
    training_metadata,
)
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
from feature_platform.sources.schema import CUSTOMERS, EVENTS, LISTINGS

REGISTRY = load_registry()
FIRST, LAST = dt.date(2025, 3, 1), dt.date(2025, 3, 20)  # raw/events partitions, every day
H = 3
SENTINEL = -999_999
FEATURES = ["total_events", "session_count"]


def day(d: int) -> dt.date:
    return dt.date(2025, 3, d)


def at(d: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2025, 3, d, hour, minute, second)


def write_events(store: OfflineStore, events: list[dict]) -> None:
    """One partition per day FIRST..LAST (empty where no event), in the raw contract's schema."""
    for offset in range((LAST - FIRST).days + 1):
        d = FIRST + dt.timedelta(days=offset)
        rows = [e for e in events if e["timestamp"].date() == d]
        table = pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in EVENTS.arrow_schema},
                         schema=EVENTS.arrow_schema)
        store.write("raw/events", table, partition=d.isoformat())


def write_rows(store: OfflineStore, table: str, schema: pa.Schema, rows: list[dict]) -> None:
    store.write(table, pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema},
                                schema=schema))


def write_snapshot(store: OfflineStore, d: dt.date, values: dict[str, int]) -> None:
    """An activity snapshot: total_events per user as given, every other feature null."""
    schema = REGISTRY.snapshot_schema("activity")
    users = sorted(values)
    given = {"snapshot_date": [d] * len(users), "user_id": users, "total_events": [values[u] for u in users]}
    table = pa.table({f.name: pa.array(given.get(f.name, [None] * len(users)), f.type) for f in schema}, schema=schema)
    store.write("/".join(REGISTRY.family("activity").asset_path), table, partition=d.isoformat())


def event(event_id: str, user: str, kind: str, ts: dt.datetime, **extra: str | None) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": kind, "timestamp": ts, **extra}


# -- churn -----------------------------------------------------------------------------------------

@pytest.fixture
def churn_store(tmp_path: Path) -> OfflineStore:
    """u1 always known, u2 from 03-05, u3 from 03-01, u4 from 03-20; activity snapshots 03-03/04/10/17/18."""
    store = OfflineStore(tmp_path)
    write_rows(store, "raw/customers", CUSTOMERS.arrow_schema, [
        {"user_id": "u1", "signup_date": None},
        {"user_id": "u2", "signup_date": day(5)},
        {"user_id": "u3", "signup_date": day(1)},
        {"user_id": "u4", "signup_date": day(20)},
    ])
    write_events(store, [
        event("e1", "u1", "login", at(4)),                 # exactly D+1 00:00 for D=03-03: inside (not in snapshot D)
        event("e2", "u3", "page_view", at(6, 23, 59, 59)),  # last day of the 03-03 horizon: inside
        event("e3", "u3", "purchase", at(10, 23)),          # inside snapshot 03-10, before its horizon
        event("e4", "u1", "email_open", at(14)),            # exactly D+1+H 00:00 for D=03-10: outside (day D+H+1)
        event("e5", "u2", "login", at(14, 0, 0, 1)),        # 1 s after the 03-10 horizon: outside
        event("e6", "u3", "purchase", at(20, 12)),          # inside the 03-17 horizon (ends 03-21 00:00)
    ])
    write_snapshot(store, day(3), {"u1": 33, "u3": 3})
    write_snapshot(store, day(4), {"u1": SENTINEL, "u3": SENTINEL})  # later than D=03-03: must not leak
    write_snapshot(store, day(10), {"u1": 110, "u2": 210, "u3": 310})
    write_snapshot(store, day(17), {"u1": 117})
    write_snapshot(store, day(18), {"u1": 118})
    return store


DATES = [day(3), day(10), day(17), day(18)]


def churn(store: OfflineStore, dates: list[dt.date] | None = DATES) -> dict[tuple[str, dt.date], dict]:
    table = churn_training_set(store, REGISTRY, dates, horizon_days=H, feature_names=FEATURES)
    return {(r["user_id"], r["snapshot_date"]): r for r in table.to_pylist()}


@pytest.mark.parametrize(("user", "d", "expected"), [
    pytest.param("u1", day(3), 0, id="event-exactly-at-D+1-midnight-is-inside-the-horizon"),
    pytest.param("u3", day(3), 0, id="event-on-the-last-day-of-the-horizon"),
    pytest.param("u1", day(10), 1, id="event-exactly-at-D+1+H-midnight-is-outside"),
    pytest.param("u2", day(10), 1, id="event-1s-after-the-horizon-is-outside"),
    pytest.param("u3", day(10), 1, id="event-before-the-horizon-only"),
    pytest.param("u1", day(17), 1, id="no-activity-churned"),
    pytest.param("u3", day(17), 0, id="D+H-equals-last-data-day-is-labelled"),
])
def test_churn_label_boundaries(churn_store, user, d, expected):
    row = churn(churn_store)[(user, d)]
    assert (row["churned"], row["labelled"]) == (expected, True)


def test_churn_label_is_null_when_the_horizon_passes_the_data_end(churn_store):
    rows = churn(churn_store)
    assert {(u, d): (r["churned"], r["labelled"]) for (u, d), r in rows.items() if d == day(18)} == {
        ("u1", day(18)): (None, False), ("u2", day(18)): (None, False), ("u3", day(18)): (None, False)}


def test_churn_has_one_row_per_known_user_and_date(churn_store):
    table = churn_training_set(churn_store, REGISTRY, DATES, horizon_days=H, feature_names=FEATURES)
    assert table.num_rows == 2 + 3 + 3 + 3  # u2 known from 03-05, u4 only from 03-20
    assert sorted(churn(churn_store)) == sorted(
        [("u1", day(3)), ("u3", day(3))] + [(u, d) for d in DATES[1:] for u in ("u1", "u2", "u3")])
    assert table.column_names == ["user_id", "snapshot_date", *FEATURES, "activity_snapshot_date",
                                  "activity_snapshot_missing", "activity_user_present", "churned", "labelled"]
    assert table.schema.field("churned").type == pa.int64()


def test_churn_features_come_from_snapshot_d(churn_store):
    rows = churn(churn_store)
    assert {k: (r["total_events"], r["activity_snapshot_date"]) for k, r in rows.items()} == {
        ("u1", day(3)): (33, day(3)), ("u3", day(3)): (3, day(3)),
        ("u1", day(10)): (110, day(10)), ("u2", day(10)): (210, day(10)), ("u3", day(10)): (310, day(10)),
        ("u1", day(17)): (117, day(17)), ("u2", day(17)): (None, day(17)), ("u3", day(17)): (None, day(17)),
        ("u1", day(18)): (118, day(18)), ("u2", day(18)): (None, day(18)), ("u3", day(18)): (None, day(18)),
    }
    assert not any(r["activity_snapshot_missing"] for r in rows.values())
    # snapshots 03-17 and 03-18 hold only u1: u2 and u3 are absent from them, not users with null values
    absent = {("u2", day(17)), ("u3", day(17)), ("u2", day(18)), ("u3", day(18))}
    assert {k: r["activity_user_present"] for k, r in rows.items()} == {k: k not in absent for k in rows}


def test_churn_default_dates_are_weekly_back_from_the_last_labelable_snapshot(churn_store):
    assert default_churn_dates(churn_store, REGISTRY, H) == [day(3), day(10), day(17)]  # 03-04 off-week, 03-18 unlabelable
    assert sorted({d for _, d in churn(churn_store, dates=None)}) == [day(3), day(10), day(17)]


def test_churn_with_all_snapshot_features_flags_families_without_snapshots(churn_store):
    table = churn_training_set(churn_store, REGISTRY, [day(3)], horizon_days=H)
    assert set(REGISTRY.snapshot_features()) <= set(table.column_names)
    assert table.column("lead_snapshot_missing").to_pylist() == [True, True]
    assert table.column("activity_snapshot_missing").to_pylist() == [False, False]


def write_scores(store: OfflineStore, d: dt.date, users: list[str]) -> None:
    schema = REGISTRY.snapshot_schema("derived")
    store.write("/".join(REGISTRY.family("derived").asset_path), pa.table(
        {"snapshot_date": [d] * len(users), "user_id": users, "churn_risk_score": [0.5] * len(users)}, schema=schema),
        partition=d.isoformat())


def test_no_training_set_carries_a_model_score_even_when_scores_exist(churn_store, tmp_path):
    write_scores(churn_store, day(3), ["u1", "u3"])
    table = churn_training_set(churn_store, REGISTRY, [day(3)], horizon_days=H)
    assert "churn_risk_score" not in table.column_names and "derived_snapshot_date" not in table.column_names
    with pytest.raises(ValueError, match=r"\['churn_risk_score'\] are model outputs.*its own score"):
        churn_training_set(churn_store, REGISTRY, [day(3)], horizon_days=H,
                           feature_names=["total_events", "churn_risk_score"])
    assert "churn_risk_score" not in training_features(REGISTRY)
    assert training_features(REGISTRY) == [f for f in REGISTRY.features if REGISTRY.features[f].family != "derived"]


def test_churn_refuses_a_missing_events_day_inside_the_horizon(churn_store):
    churn_store.partition_path("raw/events", day(12).isoformat()).unlink()
    with pytest.raises(ValueError, match="2025-03-12"):
        churn(churn_store)
    assert churn(churn_store, [day(3)])  # a horizon clear of the gap still works


def test_churn_metadata(churn_store):
    table = churn_training_set(churn_store, REGISTRY, DATES, horizon_days=H, feature_names=FEATURES)
    meta = training_metadata(table, "churned", REGISTRY)
    assert meta == {
        "rows": 11,
        "labelled_rows": 8,
        "label_rate": 5 / 8,  # u1@03-03, u2@03-10, u3@03-10, u1@03-17, u2@03-17
        "snapshot_date_min": "2025-03-03",
        "snapshot_date_max": "2025-03-18",
        "registry_version": REGISTRY.version,
        "feature_versions": {f: REGISTRY.get_feature_version(f) for f in FEATURES},
        "family_versions": None,  # an in-memory table records none; a written one does (test_versions.py)
    }


# -- contact ---------------------------------------------------------------------------------------

CONTACT_EVENTS = [
    # (view id, expected contacted, expected labelled)
    event("a", "v1", "listing_viewed", at(2, 10), listing_id="L1", session_id="s1"),
    event("a+", "v1", "listing_favorited", at(4, 12), listing_id="L1", session_id="s1"),  # same session, 50 h later
    event("b", "v1", "impression", at(5, 10), listing_id="L2", session_id="s2"),
    event("b+", "v1", "listing_contact_clicked", at(6, 10), listing_id="L2", session_id="s3"),  # exactly 24 h
    event("c", "v2", "listing_viewed", at(7, 10), listing_id="L1", session_id="s4"),
    event("c+", "v2", "listing_contact_clicked", at(8, 10, 0, 1), listing_id="L1", session_id="s5"),  # 24 h + 1 s
    event("d", "v2", "listing_viewed", at(9, 10), listing_id="L2", session_id="s6"),
    event("d-", "v2", "listing_contact_clicked", at(9, 9), listing_id="L2", session_id="s6"),  # before the view
    event("e", "v1", "listing_viewed", at(10, 10), listing_id="L1", session_id="s7"),
    event("e+", "v2", "listing_contact_clicked", at(10, 11), listing_id="L1", session_id="s7"),  # another user
    event("e++", "v1", "listing_favorited", at(10, 11), listing_id="L2", session_id="s7"),  # another listing
    event("f", "v1", "listing_viewed", at(11, 10), listing_id="L9", session_id="s8"),  # listing not in raw/listings
    event("g", "v2", "listing_viewed", at(12, 10), listing_id="L1", session_id=None),
    event("g+", "v2", "listing_favorited", at(14, 10), listing_id="L1", session_id=None),  # null sessions never match
    event("h", "v1", "impression", at(20, 12), listing_id="L1", session_id="s9"),  # 24 h window passes the data end
    event("x", "v1", "page_view", at(3, 8)),
]
EXPECTED_CONTACT = {"a": 1, "b": 1, "c": 0, "d": 0, "e": 0, "f": 0, "g": 0, "h": 0}


@pytest.fixture
def contact_store(tmp_path: Path) -> OfflineStore:
    store = OfflineStore(tmp_path)
    write_rows(store, "raw/customers", CUSTOMERS.arrow_schema, [
        {"user_id": "v1", "device": "mobile"}, {"user_id": "v2", "device": None}])
    write_rows(store, "raw/listings", LISTINGS.arrow_schema, [
        {"listing_id": "L1", "category_id": "cars", "city": "madrid", "price": 9500.0, "is_premium": True,
         "image_count": 7},
        {"listing_id": "L2", "category_id": "flats", "city": "porto", "price": 800.0, "is_premium": False,
         "image_count": 0},
    ])
    write_events(store, CONTACT_EVENTS)
    write_snapshot(store, day(4), {"v1": 4, "v2": 40})
    write_snapshot(store, day(5), {"v1": SENTINEL, "v2": SENTINEL})  # available 03-06 00:00: after view b
    write_snapshot(store, day(6), {"v1": 6, "v2": 60})
    return store


def contact(store: OfflineStore) -> pa.Table:
    return contact_training_set(store, REGISTRY, feature_names=FEATURES)


def test_contact_labels(contact_store):
    rows = {r["event_id"]: r for r in contact(contact_store).to_pylist()}
    assert {k: r["contacted"] for k, r in rows.items()} == EXPECTED_CONTACT
    assert {k for k, r in rows.items() if not r["labelled"]} == {"h"}


def test_contact_keeps_every_view_and_impression_once_in_time_order(contact_store):
    table = contact(contact_store)
    assert table.column("event_id").to_pylist() == list(EXPECTED_CONTACT)
    assert table.column_names == [
        "event_id", "user_id", "event_type", "listing_id", "session_id", "timestamp",
        "category_id", "city", "price", "is_premium", "image_count", "price_rank", "day_of_week", "hour", "device",
        *FEATURES, "activity_snapshot_date", "activity_snapshot_missing", "activity_user_present", "contacted",
        "labelled"]


def test_contact_listing_and_context_columns(contact_store):
    rows = {r["event_id"]: r for r in contact(contact_store).to_pylist()}
    assert {k: rows[k]["category_id"] for k in ("a", "b", "f")} == {"a": "cars", "b": "flats", "f": None}
    assert (rows["f"]["price"], rows["f"]["is_premium"], rows["f"]["image_count"]) == (None, None, None)
    assert (rows["a"]["price"], rows["a"]["is_premium"], rows["a"]["image_count"]) == (9500.0, True, 7)
    assert rows["a"]["price_rank"] == 0.0 and rows["f"]["price_rank"] is None  # alone in its category; unknown
    # 2025-03-02 is a Sunday, 03-05 a Wednesday, 03-10 a Monday
    assert {k: rows[k]["day_of_week"] for k in ("a", "b", "e")} == {"a": 6, "b": 2, "e": 0}
    assert {rows[k]["hour"] for k in ("a", "b", "h")} == {10, 12}
    assert (rows["a"]["device"], rows["c"]["device"]) == ("mobile", None)


def test_contact_features_come_from_the_latest_snapshot_before_the_event(contact_store):
    rows = {r["event_id"]: r for r in contact(contact_store).to_pylist()}
    assert {k: (r["total_events"], r["activity_snapshot_date"]) for k, r in rows.items()} == {
        "a": (None, None),  # 03-02: no snapshot available yet
        "b": (4, day(4)),   # 03-05 10:00 sees 03-04; 03-05 (the sentinel) only from 03-06 00:00
        "c": (60, day(6)), "d": (60, day(6)), "e": (6, day(6)), "f": (6, day(6)),
        "g": (60, day(6)), "h": (6, day(6)),
    }
    assert rows["a"]["activity_snapshot_missing"] is True and rows["a"]["activity_user_present"] is None


def test_contact_defaults_to_the_snapshot_features_without_model_scores(contact_store):
    write_scores(contact_store, day(4), ["v1", "v2"])
    table = contact_training_set(contact_store, REGISTRY)
    assert set(training_features(REGISTRY)) <= set(table.column_names)
    assert "churn_risk_score" not in table.column_names


def test_contact_metadata(contact_store):
    meta = training_metadata(contact(contact_store), "contacted", REGISTRY)
    assert (meta["rows"], meta["labelled_rows"], meta["label_rate"]) == (8, 7, 2 / 7)
    assert (meta["snapshot_date_min"], meta["snapshot_date_max"]) == ("2025-03-04", "2025-03-06")
    assert meta["feature_versions"] == {f: REGISTRY.get_feature_version(f) for f in FEATURES}


def test_metadata_names_a_missing_label():
    with pytest.raises(KeyError, match="churned"):
        training_metadata(pa.table({"x": [1]}), "churned", REGISTRY)
