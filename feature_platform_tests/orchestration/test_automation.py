"""Schedules, the retraining sensor and the retention job, evaluated without a daemon."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa
import pytest

from feature_platform.config import Settings
from feature_platform.offline.calendar import record_partitions
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connected
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.automation import SCHEDULES, SENSORS
from feature_platform.orchestration.automation.backfill import (
    BackfillError,
    backfill_targets,
    check_range,
    missing_tile_windows,
)
from feature_platform.orchestration.automation.jobs import apply_retention, retention_job
from feature_platform.orchestration.automation.schedules import (
    DAILY_SCHEDULE,
    RETRAINING_SCHEDULE,
    build_schedules,
    previous_day,
)
from feature_platform.orchestration.automation.sensors import (
    retrain_on_feature_version_change,
    version_changes,
    versions_fingerprint,
)
from feature_platform.orchestration.execution import IN_PROCESS
from feature_platform.orchestration.models.assets import registry_versions
from feature_platform.orchestration.resources import local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.locate import SAMPLE_RECORD, remember_source

REGISTRY = load_registry()
UTC = dt.UTC


def _schedule(name: str, schedules=SCHEDULES) -> dg.ScheduleDefinition:
    return next(s for s in schedules if s.name == name)


@pytest.mark.parametrize(("scheduled", "partition"), [
    (dt.datetime(2025, 3, 11, 3, 0, tzinfo=UTC), "2025-03-10"),
    (dt.datetime(2025, 3, 1, 3, 0, tzinfo=UTC), "2025-02-28"),  # across a month end
    (dt.datetime(2024, 3, 1, 3, 0, tzinfo=UTC), "2024-02-29"),  # leap day
    (dt.datetime(2025, 1, 1, 3, 0, tzinfo=UTC), "2024-12-31"),  # across a year end
])
def test_a_daily_tick_requests_the_previous_utc_day_once(scheduled, partition):
    schedule = _schedule(DAILY_SCHEDULE)
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    from feature_platform.definitions import build_defs

    defs = build_defs()

    context = dg.build_schedule_context(scheduled_execution_time=scheduled, repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [(partition, partition)]
    assert partition in C.DAILY_PARTITIONS.get_partition_keys(current_time=scheduled)


def test_a_tick_late_in_another_time_zone_still_targets_the_utc_day_before():
    # 01:30 on the 11th in UTC+2 is 23:30 UTC on the 10th: the UTC day before is the 9th
    scheduled = dt.datetime(2025, 3, 11, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert previous_day(scheduled) == "2025-03-09"


def test_a_try_out_tick_after_the_sample_data_ends_skips_saying_why(tmp_path, monkeypatch):
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    (settings.sample_dir).mkdir(parents=True)
    (settings.sample_dir / SAMPLE_RECORD).write_text('{"users": 10, "days": 5, "end_date": "2025-03-10", "seed": 7}')
    remember_source(settings, settings.sample_dir, kind="sample")
    monkeypatch.setenv("FP_DATA_DIR", str(data))
    monkeypatch.delenv("FP_RAW_DIR", raising=False)
    schedule = _schedule(DAILY_SCHEDULE)
    from feature_platform.definitions import build_defs

    repository = build_defs().get_repository_def()

    def tick(day: int) -> dg.ScheduleExecutionData:
        return schedule.evaluate_tick(dg.build_schedule_context(
            scheduled_execution_time=dt.datetime(2025, 3, day, 3, 0, tzinfo=UTC), repository_def=repository))

    assert [r.partition_key for r in tick(11).run_requests] == ["2025-03-10"]  # the sample's last day runs
    assert tick(11).run_requests[0].run_config == IN_PROCESS  # one process per run
    monkeypatch.setenv("FP_SHARDS", "2")  # shard steps side by side: a process per step
    assert "multiprocess" in tick(11).run_requests[0].run_config["execution"]["config"]
    monkeypatch.delenv("FP_SHARDS")
    late = tick(12)  # a UI left open overnight: no data for the 11th
    assert late.run_requests == [] and "no raw data for 2025-03-11" in late.skip_message
    assert "ends 2025-03-10" in late.skip_message and "FP_RAW_DIR" in late.skip_message
    own = tmp_path / "own"
    own.mkdir()
    remember_source(settings, own, kind="external")  # a real source: production runs every day
    assert [r.partition_key for r in tick(12).run_requests] == ["2025-03-11"]
    record_partitions(data, "2025-03-01", "2025-03-10")  # ... unless it is a historical data set, ended
    historical = tick(12)
    assert historical.run_requests == [] and "the data set ends 2025-03-10" in historical.skip_message


def test_the_crons_are_configurable_through_build_schedules():
    schedules = build_schedules(daily_cron="30 1 * * *", retraining_cron="0 6 * * 0")
    assert _schedule(DAILY_SCHEDULE, schedules).cron_schedule == "30 1 * * *"
    assert _schedule(RETRAINING_SCHEDULE, schedules).cron_schedule == "0 6 * * 0"
    tick = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2025, 3, 11, 1, 30, tzinfo=UTC))
    assert _schedule(DAILY_SCHEDULE, schedules)(tick).partition_key == "2025-03-10"


def test_every_schedule_and_sensor_starts_running():
    assert {s.default_status for s in SCHEDULES} == {dg.DefaultScheduleStatus.RUNNING}
    assert {s.default_status for s in SENSORS} == {dg.DefaultSensorStatus.RUNNING}
    assert _schedule(RETRAINING_SCHEDULE).cron_schedule == "0 4 * * 1"


# -- the retraining sensor ----------------------------------------------------------------------------
def _trained(instance: dg.DagsterInstance, versions: dict[str, str]) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=C.TRAINING_DATASET, metadata={"feature_versions": dg.MetadataValue.json(versions)}))


def _tick(instance, tmp_path, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources=local_resources(data_dir=str(tmp_path)))
    return retrain_on_feature_version_change(context)


def test_the_sensor_fires_once_on_a_feature_version_change_and_not_otherwise(tmp_path):
    current = {name: REGISTRY.features[name].version for name in REGISTRY.snapshot_features()}
    with dg.instance_for_test() as instance:
        assert isinstance(_tick(instance, tmp_path), dg.SkipReason)  # nothing trained yet
        _trained(instance, current)
        assert isinstance(_tick(instance, tmp_path), dg.SkipReason)  # trained on the current versions

        name = next(iter(current))
        _trained(instance, {**current, name: "v0-old"})
        fired = _tick(instance, tmp_path)
        assert isinstance(fired, dg.SensorResult) and len(fired.run_requests) == 1
        assert fired.cursor == versions_fingerprint(REGISTRY)
        assert fired.run_requests[0].run_key == f"feature-versions-{fired.cursor}"
        # the same versions again (the retraining is still running, or failed): no second request
        again = _tick(instance, tmp_path, cursor=fired.cursor)
        assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message
        # a cursor from other versions (the registry changed again since): request again
        assert isinstance(_tick(instance, tmp_path, cursor="0123456789abcdef"), dg.SensorResult)
        # retrained: the new training set records the current versions, nothing to do
        _trained(instance, current)
        assert isinstance(_tick(instance, tmp_path, cursor=fired.cursor), dg.SkipReason)


def test_version_changes_compare_features_and_champion_families_but_not_the_registry_version():
    current = registry_versions(REGISTRY)
    family = next(k for k in current if k.startswith("family:"))
    feature = REGISTRY.snapshot_features()[0]
    assert version_changes(REGISTRY, {}, {"churn": {**current, "registry": "some-older-registry"}}) == []
    assert version_changes(REGISTRY, {}, {"churn": {**current, family: "v0"}}) == [
        f"churn champion: {family} v0 -> {current[family]}"]
    assert sorted(version_changes(REGISTRY, {"training/training_dataset": {feature: "v0", "gone": "v1"}}, {})) == [
        "training/training_dataset: feature gone v1 -> removed",
        f"training/training_dataset: feature {feature} v0 -> {REGISTRY.features[feature].version}"]


# -- retention -----------------------------------------------------------------------------------------
def _offline_partitions(root, today: dt.date, ages: list[int]) -> OfflineStore:
    store = OfflineStore(root)
    for table in ("raw/events", "features/lead_features"):
        for age in ages:
            store.write(table, pa.table({"x": [age]}), partition=(today - dt.timedelta(days=age)).isoformat())
    store.write("training/training_dataset", pa.table({"x": [1]}))  # unpartitioned: never pruned
    return store


def _push(online: OnlineStore, day: dt.date, marker: int, fail_after_batches: int | None = None):
    field = REGISTRY.snapshot_schema(REGISTRY.get_feature("total_events").family).field("total_events")
    table = pa.table({"user_id": ["u1", "u2"], "total_events": pa.array([marker, marker + 1], field.type)})
    return online.push(table, day, batch=1, fail_after_batches=fail_after_batches)


def test_retention_job_deletes_only_partitions_older_than_the_setting_and_reports_them(tmp_path):
    today = dt.date(2025, 3, 11)
    store = _offline_partitions(tmp_path, today, [400, 366, 365, 10, 0])
    resources = local_resources(data_dir=str(tmp_path), now_utc="2025-03-11T05:00:00")
    result = retention_job.execute_in_process(resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    cutoff = (today - dt.timedelta(days=365)).isoformat()  # FP_RETENTION_DAYS default 365: older than this goes
    kept = [(today - dt.timedelta(days=a)).isoformat() for a in (365, 10, 0)]
    deleted = [(today - dt.timedelta(days=a)).isoformat() for a in (400, 366)]
    for table in ("raw/events", "features/lead_features"):
        assert store.partitions(table) == sorted(kept)
    assert store.table_path("training/training_dataset").exists()
    assert result.output_for_node("prune_expired_data") == {
        "offline": {"features/lead_features": deleted, "raw/events": deleted}, "online": []}
    output = next(e for e in result.all_events if e.is_successful_output)
    meta = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert meta["cutoff"] == cutoff and meta["offline_partitions_deleted"] == 4
    assert meta["online"] == "nothing pushed online yet"


def test_retention_deletes_online_versions_older_than_the_served_one_and_keeps_served_and_previous(tmp_path):
    settings = Settings(data_dir=tmp_path, retention_days=30)
    with connected(settings) as client:
        _retention_keeps_served_and_previous(settings, OnlineStore(client, REGISTRY, settings.redis_prefix))


def _retention_keeps_served_and_previous(settings: Settings, online: OnlineStore) -> None:
    first = _push(online, dt.date(2025, 3, 8), 1).version
    served = _push(online, dt.date(2025, 3, 9), 2).version
    report = apply_retention(settings, dt.date(2025, 3, 11))
    assert report.online_deleted == [] and {v.version for v in online.versions()} == {first, served}  # rollback target
    online.client.hdel(online.pointer_key, "previous")  # `first` is now neither served nor the rollback target
    report = apply_retention(settings, dt.date(2025, 3, 11))
    assert report.online_deleted == [first] and {v.version for v in online.versions()} == {served}
    assert not list(online.client.scan_iter(match=f"{online.prefix}:{first}:*"))
    assert online.current().version == served and online.read("u1").values["total_events"] == 2


def test_retention_leaves_online_versions_alone_while_one_is_being_written(tmp_path):
    settings = Settings(data_dir=tmp_path, retention_days=30)
    with connected(settings) as client:
        _retention_waits_for_a_version_being_written(settings, OnlineStore(client, REGISTRY, settings.redis_prefix))


def _retention_waits_for_a_version_being_written(settings: Settings, online: OnlineStore) -> None:
    _push(online, dt.date(2025, 3, 8), 1)
    served = _push(online, dt.date(2025, 3, 9), 2).version
    with pytest.raises(ConnectionError):
        _push(online, dt.date(2025, 3, 10), 3, fail_after_batches=1)  # dies mid-push: a version stays 'writing'
    before = {v.version for v in online.versions()}
    report = apply_retention(settings, dt.date(2025, 3, 11))
    assert report.online_deleted == [] and "still being written" in report.online_note
    assert {v.version for v in online.versions()} == before and online.current().version == served


# -- backfill arguments (the backfill itself: e2e/test_backfill_cli.py) ----------------------------------------
def test_backfill_targets_default_to_the_snapshot_path_and_accept_groups_and_keys():
    from feature_platform.definitions import build_defs

    defs = build_defs()

    assert backfill_targets(None, defs) == [C.RAW_EVENTS, *C.TILE_KEYS, *C.FEATURE_SNAPSHOTS, C.ONLINE_PUSH]
    assert backfill_targets(["derived", "raw/events"], defs) == [C.CHURN_RISK_SCORES, C.RAW_EVENTS]
    with pytest.raises(BackfillError, match="neither a group"):
        backfill_targets(["nope"], defs)


def test_a_backfill_adds_the_tile_days_its_snapshots_windows_lack(tmp_path):
    from feature_platform.definitions import build_defs

    defs = build_defs()

    store = OfflineStore(tmp_path)
    empty = pa.table({"x": pa.array([], pa.int64())})
    for day in ("2025-01-01", "2025-02-10", "2025-02-25", "2025-03-01", "2025-03-10"):
        store.write("raw/events", empty, partition=day)
    for day in ("2025-02-25", "2025-03-01"):
        store.write("tiles/lead", empty, partition=day)
    start = dt.date(2025, 3, 5)
    # lead looks back 90 days (to 2024-12-06): 2025-01-01 and 2025-02-10 have raw events but no tiles;
    # engagement looks back 30 days (to 2025-02-04): 2025-02-10 onwards, none of them tiled
    windows = missing_tile_windows(tmp_path, [C.LEAD_FEATURES, C.ENGAGEMENT_FEATURES], start, defs)
    assert windows == {C.TILES_LEAD: dt.date(2025, 1, 1), C.TILES_ENGAGEMENT: dt.date(2025, 2, 10)}
    # only the snapshots being backfilled count, and days from the start on are in the backfill anyway
    assert missing_tile_windows(tmp_path, [C.RAW_EVENTS], start, defs) == {}
    assert missing_tile_windows(tmp_path, [C.LEAD_FEATURES], dt.date(2025, 1, 1), defs) == {}


@pytest.mark.parametrize(("first", "start", "end", "message"), [
    ("2020-01-01", "2025-03-10", "2025-03-01", "is after --end"),
    ("2020-01-01", "2019-12-31", "2020-01-02", "partitions run from 2020-01-01"),
    ("2020-01-01", "2020-01-01", "2999-01-01", "partitions run from 2020-01-01"),
    ("1997-01-01", "1996-12-31", "1997-03-01", "partitions run from 1997-01-01")])
def test_backfill_refuses_a_range_the_partitions_do_not_have(first, start, end, message):
    from feature_platform.definitions import build_defs

    with pytest.raises(BackfillError, match=message):
        check_range(dt.date.fromisoformat(start), dt.date.fromisoformat(end), build_defs(first))


def test_backfill_accepts_days_from_the_datas_first_day():
    from feature_platform.definitions import build_defs

    check_range(dt.date(1997, 1, 1), dt.date(1998, 6, 30), build_defs("1997-01-01"))
