"""Near-real-time updates end to end: landed events -> only the affected features of only their users
in the served version's overlay -> after the next daily snapshot, online equals offline again."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from feature_platform.config import Settings
from feature_platform.definitions import build_defs
from feature_platform.offline.snapshots import user_vectors
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connected
from feature_platform.online.store import OnlineStore
from feature_platform.online.updates import Cursor, apply_landed_events
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.landing import LandingLog
from feature_platform_tests.helpers import copy_tree
from feature_platform_tests.online.conftest import standalone_store

defs = build_defs()

REGISTRY = load_registry()
END, NEXT = dt.date(2025, 3, 12), dt.date(2025, 3, 13)
LANDED = dt.datetime(2025, 3, 13, 10, 0)  # events arrive during the day after the served snapshot
PURCHASE_FEATURES = {"monetary_total", "frequency_purchases_90d", "days_since_last_purchase", "has_purchased"}


@dataclass
class World:
    data: Path
    src: Path
    users: list[str]

    @property
    def offline(self) -> OfflineStore:
        return OfflineStore(self.data)

    @property
    def log(self) -> LandingLog:
        return LandingLog(Settings(data_dir=self.data).landing_dir)


def _materialize(data: Path, src: Path, now: str, selection: dg.AssetSelection, start: str, end: str) -> None:
    resources = local_resources(data_dir=str(data), raw_dir=str(src), now_utc=now)
    result = dg.materialize([*defs.assets], selection=selection, resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
                            raise_on_error=False)
    assert result.success


@pytest.fixture(scope="module")
def world(sample_world, tmp_path_factory) -> World:
    """A copy of the sample world (twelve days of generated data, ingested, with the feature snapshots of the
    last days): the tests land events into it and run the next day."""
    data = copy_tree(sample_world.data, tmp_path_factory.mktemp("updates") / "data")
    users = user_vectors(OfflineStore(data), REGISTRY, END).column("user_id").to_pylist()
    return World(data, sample_world.src, users)

def land(log: LandingLog, records: list[dict], at: dt.datetime = LANDED) -> None:
    accepted, rejected = validate_event_records(records, at, landing=log)
    assert rejected == []
    assert log.append(accepted, at).accepted == len(records)


@pytest.fixture(scope="module")
def landed_events(world) -> dict[str, str]:
    """A purchase, an inbound message and a page view land for three users during the next day."""
    a, b, c = world.users[:3]
    land(world.log, [
        {"event_id": "rt-1", "user_id": a, "event_type": "purchase", "timestamp": "2025-03-13T09:30:00Z",
         "amount": 50.0, "channel": "web", "session_id": "rt-s1"},
        {"event_id": "rt-2", "user_id": b, "event_type": "message_in", "timestamp": "2025-03-13T09:00:00Z",
         "conversation_id": "rt-c1", "message_text": "I love it, thank you so much!", "channel": "chat"},
        {"event_id": "rt-3", "user_id": c, "event_type": "page_view", "timestamp": "2025-03-13T09:15:00Z",
         "channel": "app", "session_id": "rt-s3"},
    ])
    return {"purchase": a, "message_in": b, "page_view": c}


@pytest.fixture(scope="module")
def next_day(world, landed_events) -> None:
    """The daily run of the next day: ingest (files + landing log) and the snapshots of that day."""
    _materialize(world.data, world.src, "2025-03-14T03:00:00", dg.AssetSelection.groups(C.GROUP_RAW, C.GROUP_TILES),
                 NEXT.isoformat(), NEXT.isoformat())
    _materialize(world.data, world.src, "2025-03-14T03:00:00", dg.AssetSelection.groups(C.GROUP_FEATURES),
                 NEXT.isoformat(), NEXT.isoformat())


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.redis)])
def online(request, tmp_path):
    yield from standalone_store(request.param, request, tmp_path)


def expected(row: dict) -> dict:
    """An offline row as the online store returns it (maps as dicts)."""
    return {k: (dict(v) if v is not None and REGISTRY.get_feature(k).type == "map" else v)
            for k, v in row.items() if k != "user_id"}


def test_a_purchase_updates_only_the_features_it_affects_for_only_that_user(world, online, tmp_path):
    snapshot = user_vectors(world.offline, REGISTRY, END)
    online.push(snapshot, END)
    buyer = world.users[10]  # nobody else's landed event touches this user
    before = {r["user_id"]: expected(r) for r in snapshot.to_pylist()}
    log = LandingLog(tmp_path / "landing")
    land(log, [{"event_id": "p-1", "user_id": buyer, "event_type": "purchase", "timestamp": "2025-03-13T09:00:00",
                "amount": 42.0, "session_id": "p-s1", "channel": "web"}])

    result = apply_landed_events(online, world.offline, REGISTRY, log, tmp_path / "cursor.json", LANDED)

    layout = set(online.current().layout)
    affected = set(REGISTRY.features_affected_by("purchase")) & layout
    assert affected >= PURCHASE_FEATURES and "sentiment_avg_30d" not in affected
    assert (result.events_read, result.users_updated, result.features_written) == (1, 1, len(affected))
    assert set(result.features) == affected and result.version == online.current().version
    vectors = online.read_many(world.users)
    vector, old = vectors[buyer], before[buyer]
    assert set(vector.updated_fields) == affected and vector.updated_at == LANDED
    assert vector.values["monetary_total"] == pytest.approx(old["monetary_total"] + 42.0)
    assert vector.values["frequency_purchases_90d"] == old["frequency_purchases_90d"] + 1
    assert vector.values["has_purchased"] is True and vector.values["days_since_last_purchase"] == 0
    assert vector.values["event_vector_purchase"] == old["event_vector_purchase"] + 1
    untouched = {k: v for k, v in vector.values.items() if k not in affected}
    assert untouched == {k: v for k, v in old.items() if k not in affected}  # sentiment_avg_30d among them
    for user in world.users:
        if user != buyer:
            assert vectors[user].updated_fields == () and vectors[user].values == before[user], user

    again = apply_landed_events(online, world.offline, REGISTRY, log, tmp_path / "cursor.json", LANDED)
    assert (again.events_read, again.users_updated, again.reapplied) == (0, 0, False)


def test_a_new_push_starts_without_overlay_and_the_updater_reapplies_what_landed_after_its_cut_off(
        world, online, tmp_path):
    snapshot = user_vectors(world.offline, REGISTRY, END)
    online.push(snapshot, END)
    buyer, cursor = world.users[11], tmp_path / "cursor.json"
    log = LandingLog(tmp_path / "landing")
    land(log, [{"event_id": "p-2", "user_id": buyer, "event_type": "purchase", "timestamp": "2025-03-13T09:00:00",
                "amount": 5.0}])
    apply_landed_events(online, world.offline, REGISTRY, log, cursor, LANDED)
    updated = online.read(buyer)
    assert updated.updated_fields
    # a new version of the same day (a re-run with changed data) is pushed: it has no overlay...
    index = snapshot.schema.get_field_index("login_frequency")
    changed = snapshot.set_column(index, "login_frequency", pc.add(snapshot.column(index), 1.0))
    second = online.push(changed, END)
    assert second.served and online.read(buyer).updated_fields == ()
    # ...until the next tick notices the version changed and applies the events again
    result = apply_landed_events(online, world.offline, REGISTRY, log, cursor, LANDED + dt.timedelta(minutes=1))
    assert result.reapplied and (result.events_read, result.events_applied, result.users_updated) == (0, 1, 1)
    assert Cursor.load(cursor).version == second.version
    restored = online.read(buyer)
    assert restored.version == second.version and restored.updated_fields == updated.updated_fields
    assert {k: restored.values[k] for k in restored.updated_fields} == \
        {k: updated.values[k] for k in updated.updated_fields}


def test_online_converges_to_the_next_daily_snapshot(world, landed_events, next_day, online, tmp_path):
    online.push(user_vectors(world.offline, REGISTRY, END), END)
    cursor = tmp_path / "cursor.json"
    result = apply_landed_events(online, world.offline, REGISTRY, world.log, cursor, LANDED + dt.timedelta(minutes=1))
    assert (result.events_read, result.users_updated) == (3, 3)

    tomorrow = {r["user_id"]: expected(r) for r in user_vectors(world.offline, REGISTRY, NEXT).to_pylist()}
    served = online.read_many(world.users)
    for event_type, user in landed_events.items():
        vector = served[user]
        assert set(vector.updated_fields) == set(REGISTRY.features_affected_by(event_type)) & set(vector.values)
        # what the updater wrote is what the daily snapshot of that day computed
        assert {k: vector.values[k] for k in vector.updated_fields} == \
            {k: tomorrow[user][k] for k in vector.updated_fields}, event_type
    assert "sentiment_avg_30d" in served[landed_events["message_in"]].updated_fields
    assert "sentiment_avg_30d" not in served[landed_events["purchase"]].updated_fields
    assert served[landed_events["purchase"]].values["monetary_total"] == tomorrow[landed_events["purchase"]]["monetary_total"]

    online.push(user_vectors(world.offline, REGISTRY, NEXT), NEXT)
    after = apply_landed_events(online, world.offline, REGISTRY, world.log, cursor, dt.datetime(2025, 3, 14, 3, 30))
    assert after.reapplied and after.users_updated == 0  # nothing landed_events after the new cut-off
    served = online.read_many(world.users)
    for user in world.users:
        assert served[user].values == tomorrow[user] and served[user].updated_fields == (), user


@pytest.mark.e2e
def test_cli_events_push_then_stream_once_updates_the_embedded_online_store(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world.data, data, ignore=shutil.ignore_patterns("landing", "online", "dagster_home"))
    settings = Settings(data_dir=data)
    with connected(settings) as client:  # the CLI processes below share this embedded server
        store = OnlineStore(client, REGISTRY, settings.redis_prefix)
        store.push(user_vectors(OfflineStore(data), REGISTRY, END), END)
        buyer = world.users[12]
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        events = tmp_path / "events.json"
        events.write_text(json.dumps([
            {"event_id": "cli-1", "user_id": buyer, "event_type": "purchase", "amount": 9.5,
             "timestamp": (now - dt.timedelta(minutes=1)).isoformat() + "Z"},
            {"event_id": "cli-2", "user_id": buyer, "event_type": "teleport", "timestamp": now.isoformat()},
        ]))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}, "FP_DATA_DIR": str(data)}

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "feature_platform.cli", *args], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300)

        pushed = cli("events", "push", str(events))
        assert pushed.returncode == 1, pushed.stdout + pushed.stderr  # one record rejected
        assert "2 events, 1 accepted, 1 rejected" in pushed.stdout
        assert "rejected record 2 (event_id cli-2): unknown_event_type: event_type=teleport" in pushed.stdout
        streamed = cli("stream", "--once")
        assert streamed.returncode == 0, streamed.stdout + streamed.stderr
        line = streamed.stdout.splitlines()[-1]
        assert "read 1 new events, applied 1 " in line and ": 1 users," in line, line  # first tick: a version new to it
        vector = store.read(buyer)
        assert set(vector.updated_fields) >= PURCHASE_FEATURES and vector.values["has_purchased"] is True
        assert vector.values["days_since_last_purchase"] == 0
        assert "sentiment_avg_30d" not in vector.updated_fields
        assert cli("stream", "--once").stdout.count("read 0 new events") == 1  # the cursor moved on
        assert "a Dagster sensor" in cli("stream", "--help").stdout
