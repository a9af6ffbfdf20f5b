"""The kept-open, batching SQLite event log records exactly what Dagster's stock one records.

The same small graph (two daily assets backfilled in one run, an asset check, a failing run) runs
on an instance with Dagster's default storage and on one with ``LocalStorage``; every read the UI
and the CLI make — materialized and failed partitions, the latest materialization per partition,
asset records, check evaluations, the run's event log — must agree.
"""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from feature_platform.orchestration.event_log import KeptOpenSqliteEventLogStorage

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
RANGE = {"dagster/asset_partition_range_start": "2026-01-02", "dagster/asset_partition_range_end": "2026-01-09"}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(),
          check_specs=[dg.AssetCheckSpec("positive", asset="upstream")])
def upstream(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(metadata={"days": len(context.partition_keys)})
    yield dg.AssetCheckResult(passed=True, check_name="positive")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[upstream],
          config_schema={"fail": dg.Field(bool, default_value=False)})
def downstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    if context.op_execution_context.op_config["fail"]:
        raise RuntimeError("asked to fail")
    return dg.MaterializeResult(metadata={"first": context.partition_keys[0]})


def _instance(tmp_path, kept_open: bool) -> dg.DagsterInstance:
    home = tmp_path / ("kept_open" if kept_open else "stock")
    home.mkdir()
    storage = ("custom:\n    module: feature_platform.orchestration.event_log\n    class: LocalStorage\n"
               f"    config:\n      base_dir: {home}\n") if kept_open else f"sqlite:\n    base_dir: {home}\n"
    (home / "dagster.yaml").write_text(f"storage:\n  {storage}telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _record(instance: dg.DagsterInstance) -> dict:
    """What a person sees of the two runs, minus ids and timestamps."""
    assets = [dg.AssetKey("upstream"), dg.AssetKey("downstream")]
    seen: dict = {}
    for key in assets:
        latest = instance.get_latest_materialization_events([key])
        seen[key.to_user_string()] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "latest_partition": latest[key].dagster_event.partition if latest.get(key) else None,
            "materializations": len(instance.fetch_materializations(key, limit=1000).records),
            "planned": len(instance.get_event_records(dg.EventRecordsFilter(
                dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key))),
            "status": {p: str(s) for p, s in sorted(instance.get_status_by_partition(key, DAYS.get_partition_keys(), DAYS).items())},
        }
    check = dg.AssetCheckKey(dg.AssetKey("upstream"), "positive")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    seen["check"] = sorted(str(record.status) for record in history)
    with sqlite3.connect(Path(instance.root_directory) / "history" / "runs" / "index.db") as db:
        seen["check_rows"] = sorted(db.execute(
            "select asset_key, check_name, partition, execution_status, length(evaluation_event) > 0 "
            "from asset_check_executions").fetchall(), key=repr)
    runs = instance.get_runs()
    seen["runs"] = sorted(
        (run.status.value, tuple(sorted(e.dagster_event_type.value for e in instance.all_logs(run.run_id) if e.is_dagster_event)))
        for run in runs)
    return seen


def _exercise(instance: dg.DagsterInstance) -> None:
    ok = dg.materialize([upstream, downstream], instance=instance, tags=RANGE)
    assert ok.success
    failed = dg.materialize([upstream, downstream], instance=instance, tags=RANGE, raise_on_error=False,
                            run_config={"ops": {"downstream": {"config": {"fail": True}}}})
    assert not failed.success
    single = dg.materialize([upstream], instance=instance, partition_key="2026-01-10")
    assert single.success


@pytest.mark.filterwarnings("ignore:Function `EventMethods.get_event_records` is deprecated")
@pytest.mark.parametrize("batch_size", ["0", "1000"])
def test_kept_open_storage_records_what_the_stock_storage_records(tmp_path, monkeypatch, batch_size):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)
    stock, kept = _instance(tmp_path, kept_open=False), _instance(tmp_path, kept_open=True)
    assert isinstance(kept.event_log_storage, KeptOpenSqliteEventLogStorage)
    _exercise(stock)
    _exercise(kept)
    expected, actual = _record(stock), _record(kept)
    assert actual == expected
    assert expected["upstream"]["materialized"] == [f"2026-01-{d:02d}" for d in range(2, 11)]
    assert expected["upstream"]["materializations"] == 8 + 8 + 1
    assert set(expected["downstream"]["status"].values()) >= {"AssetPartitionStatus.FAILED"}
    assert len(expected["check_rows"]) >= 8 + 8  # a planned row per partition of each range run


def test_a_second_instance_reads_what_the_first_wrote_while_it_keeps_connections_open(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    writer = _instance(tmp_path, kept_open=True)
    assert dg.materialize([upstream], instance=writer, tags=RANGE).success
    reader = dg.DagsterInstance.from_config(str(tmp_path / "kept_open"))  # e.g. the webserver's process
    assert len(reader.get_materialized_partitions(dg.AssetKey("upstream"))) == 8
    assert dg.materialize([upstream], instance=writer, partition_key="2026-01-10").success
    assert "2026-01-10" in reader.get_materialized_partitions(dg.AssetKey("upstream"))


def test_deleting_and_wiping_close_the_kept_connections(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    instance = _instance(tmp_path, kept_open=True)
    result = dg.materialize([upstream], instance=instance, tags=RANGE)
    instance.delete_run(result.run_id)
    assert not (tmp_path / "kept_open" / "history" / "runs" / f"{result.run_id}.db").exists() or \
        instance.all_logs(result.run_id) == []
    assert dg.materialize([upstream], instance=instance, tags=RANGE).success
    instance.wipe()
    assert instance.get_runs() == [] and not instance.get_materialized_partitions(dg.AssetKey("upstream"))
    assert dg.materialize([upstream], instance=instance, partition_key="2026-01-03").success
    assert instance.get_materialized_partitions(dg.AssetKey("upstream")) == {"2026-01-03"}
