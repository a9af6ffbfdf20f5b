"""In-process materializations of the raw assets into tmp_path."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from feature_platform.definitions import defs
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import PlatformResource
from feature_platform_tests.conftest import write_csv

EVERY = [*defs.assets]


def _resources(tmp_path, src, **kwargs):
    return {"platform": PlatformResource(data_dir=str(tmp_path / "data"), raw_dir=str(src), now_utc="2025-03-01T12:00:00", **kwargs)}


def test_one_partition_lands_with_metadata_and_passing_checks(tmp_path, tiny_source):
    result = dg.materialize(EVERY, selection=[C.RAW_EVENTS], partition_key="2025-02-01",
                            resources=_resources(tmp_path, tiny_source), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [mat] = result.asset_materializations_for_node("raw__events")
    assert mat.partition == "2025-02-01"
    assert mat.metadata["dagster/row_count"].value == 2
    assert [c.name for c in mat.metadata["dagster/column_schema"].schema.columns][:4] == [
        "event_id", "user_id", "event_type", "timestamp"
    ]
    assert mat.metadata["path"].value.endswith("raw/events/2025-02-01.parquet")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {C.CHECK_SCHEMA: True, C.CHECK_QUARANTINE_RATE: True, C.CHECK_ROWS_BALANCE: True}
    assert pq.read_table(tmp_path / "data" / "raw" / "events" / "2025-02-01.parquet").num_rows == 2


def test_a_partition_range_is_one_run(tmp_path, tiny_source):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(EVERY, selection=dg.AssetSelection.groups(C.GROUP_RAW), instance=instance,
                            resources=_resources(tmp_path, tiny_source),
                            tags={RANGE_START_TAG: "2025-02-01", RANGE_END_TAG: "2025-02-03"})
    assert result.success
    partitions = sorted(m.partition for m in result.asset_materializations_for_node("raw__events"))
    assert partitions == ["2025-02-01", "2025-02-02", "2025-02-03"]
    assert len(instance.get_runs()) == 1


def test_too_many_bad_rows_block_the_run_with_a_reason(tmp_path):
    src = tmp_path / "src"
    write_csv(src, "customers", [{"user_id": "u1"}])
    write_csv(src, "events", [
        {"event_id": str(i), "user_id": "u1", "event_type": "purchase" if i % 2 else "teleport",
         "timestamp": "2025-02-01T10:00:00"} for i in range(10)
    ])
    result = dg.materialize(EVERY, selection=[C.RAW_EVENTS], partition_key="2025-02-01", raise_on_error=False,
                            resources=_resources(tmp_path, src), instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed.check_name == C.CHECK_QUARANTINE_RATE
    assert "5 of 10 rows quarantined" in failed.description
    [mat] = result.asset_materializations_for_node("raw__events")
    assert mat.metadata["quarantine_reasons"].value == {"unknown_event_type": 5}
    assert (mat.metadata["accepted_rows"].value, mat.metadata["quarantined_rows"].value) == (5, 5)
    # the quarantine keeps the refused rows with their reason
    q = pq.read_table(tmp_path / "data" / "quarantine" / "events" / "2025-02-01.parquet")
    assert set(q.column("reason").to_pylist()) == {"unknown_event_type"}


def test_missing_raw_data_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FP_RAW_DIR", raising=False)
    result = dg.materialize(EVERY, selection=[C.RAW_CUSTOMERS], raise_on_error=False,
                            resources={"platform": PlatformResource(data_dir=str(tmp_path / "data"))},
                            instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "feature-platform ingest --source DIR" in str(failure.step_failure_data.error)
