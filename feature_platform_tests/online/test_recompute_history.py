"""A few users recomputed (the stream updater's and serving's on-demand computation): from their stored tiles
they are their rows of the stored snapshot, and from raw events alone they read as far back as the families
need (a lifetime count includes purchases older than the 90-day windows)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from feature_platform.features import topics
from feature_platform.features.engine import snapshots_from_tables
from feature_platform.features.recompute import recompute
from feature_platform.features.review import TOPIC_MODEL_ARTIFACT
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.registry import load_registry
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.landing import LandingLog
from feature_platform.sources.schema import CUSTOMERS, EVENTS

REGISTRY = load_registry()
DAY = dt.date(2025, 3, 13)
PURCHASES = {dt.datetime(2024, 6, 2, 10): 10.0, dt.datetime(2024, 10, 1, 9): 15.0, dt.datetime(2025, 3, 1, 12): 20.0}


def _events() -> pa.Table:
    rows = [{"event_id": f"e{i}", "user_id": "u1", "event_type": "purchase", "timestamp": at, "amount": amount,
             "session_id": f"s{i}", "channel": "web"} for i, (at, amount) in enumerate(PURCHASES.items())]
    return pa.Table.from_pylist(rows, schema=EVENTS.arrow_schema)


def test_lifetime_features_count_purchases_older_than_ninety_days(tmp_path):
    store = OfflineStore(tmp_path / "data")
    customers = pa.Table.from_pylist([{"user_id": "u1", "signup_date": dt.date(2024, 1, 5)}],
                                     schema=CUSTOMERS.arrow_schema)
    store.write("raw/customers", customers)
    events = _events()
    for i in range(events.num_rows):
        day = events.column("timestamp")[i].as_py().date()
        store.write("raw/events", events.slice(i, 1), partition=day.isoformat())
    wanted = {"lifetime_purchases", "lifetime_spend", "monetary_total"}

    values = recompute(store, REGISTRY, LandingLog(tmp_path / "landing"), {"u1": wanted}, DAY)["u1"]

    assert values["lifetime_purchases"] == 3 and values["lifetime_spend"] == 45.0
    assert values["monetary_total"] == 20.0  # the 90-day window holds the last purchase only
    for family in ("lifetime", "lead"):  # the batch engine over every event gives the same values
        [(_, snapshot, _)] = snapshots_from_tables(REGISTRY, REGISTRY.family(family), [DAY], events, customers)
        row = snapshot.to_pylist()[0]
        assert {k: values[k] for k in wanted if k in row} == {k: row[k] for k in wanted if k in row}


def test_a_few_users_recomputed_from_stored_tiles_equal_their_rows_of_the_stored_snapshot(sample_world, tmp_path):
    store = OfflineStore(sample_world.data)
    day = sample_world.end
    snapshot = user_vectors(store, REGISTRY, day)
    users = snapshot.column("user_id").to_pylist()[::37]  # a few users spread over the id range
    names = {f.name for f in REGISTRY.features.values() if not REGISTRY.family(f.family).derived}
    artifacts = {TOPIC_MODEL_ARTIFACT: topics.load_current_or_none(sample_world.data / "models" / topics.MODELS_FOLDER)}

    values = recompute(store, REGISTRY, LandingLog(tmp_path / "landing"), dict.fromkeys(users, names), day, artifacts)

    maps = {f.name for f in REGISTRY.features.values() if f.type == "map"}
    rows = {r["user_id"]: r for r in snapshot.to_pylist()}
    assert sorted(values) == sorted(users)
    for user in users:
        expected = {k: dict(v) if k in maps and v is not None else v for k, v in rows[user].items() if k in names}
        assert values[user] == expected, user


def test_landed_events_count_for_days_not_ingested_yet_and_wait_for_a_rerun_otherwise(tmp_path):
    store = OfflineStore(tmp_path / "data")
    store.write("raw/customers", pa.Table.from_pylist([{"user_id": "u1", "signup_date": dt.date(2024, 1, 5)}],
                                                      schema=CUSTOMERS.arrow_schema))
    events = _events()
    for i in range(events.num_rows):
        store.write("raw/events", events.slice(i, 1), partition=events.column("timestamp")[i].as_py().date().isoformat())
    log = LandingLog(tmp_path / "landing")
    arrived = dt.datetime(2025, 3, 13, 10, 0)
    accepted, rejected = validate_event_records([
        {"event_id": "late", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-03-01T18:00:00",
         "amount": 5.0},  # its day is ingested: the batch counts it once that day is re-run
        {"event_id": "today", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-03-13T09:00:00",
         "amount": 7.0},  # no raw partition yet: the next daily run ingests it
    ], arrived, landing=log)
    assert rejected == [] and log.append(accepted, arrived).accepted == 2

    values = recompute(store, REGISTRY, log, {"u1": {"lifetime_purchases", "lifetime_spend"}}, DAY)["u1"]

    assert values == {"lifetime_purchases": 4, "lifetime_spend": 52.0}
