"""In-process materializations of the raw assets into tmp_path."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import local_resources
from feature_platform_tests.conftest import write_csv

defs = build_defs()

EVERY = [*defs.assets]


def _resources(tmp_path, src, **kwargs):
    return local_resources(data_dir=str(tmp_path / "data"), raw_dir=str(src), now_utc="2025-03-01T12:00:00", **kwargs)


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
                            resources=local_resources(data_dir=str(tmp_path / "data")),
                            instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "feature-platform ingest --source DIR" in str(failure.step_failure_data.error)


def test_partitions_start_where_the_data_starts_so_a_1990s_file_lands(tmp_path):
    """With the partitions from the data's first day, 1997 events land and tile like any others; an event
    before that day is quarantined with its reason, not dropped."""
    src = tmp_path / "src"
    write_csv(src, "customers", [{"user_id": "c1", "signup_date": "1996-12-01"}, {"user_id": "c2"}])
    purchases = [{"event_id": f"p{i}", "user_id": f"c{1 + i % 2}", "event_type": "purchase",
                  "timestamp": f"1997-01-0{1 + i % 2}T00:00:00", "amount": "29.33"} for i in range(1, 41)]
    write_csv(src, "events", [
        *purchases,
        {"event_id": "p0", "user_id": "c2", "event_type": "purchase", "timestamp": "1996-12-31T23:00:00", "amount": "1"},
    ])
    early = build_defs("1997-01-01")
    result = dg.materialize([*early.assets], selection=dg.AssetSelection.groups(C.GROUP_RAW, C.GROUP_TILES)
                            - dg.AssetSelection.assets(C.REVIEW_TOPIC_MODEL, C.TILES_REVIEW),
                            instance=dg.DagsterInstance.ephemeral(),
                            resources=local_resources(data_dir=str(tmp_path / "data"), raw_dir=str(src),
                                                                    now_utc="1997-01-03T12:00:00"),
                            tags={RANGE_START_TAG: "1997-01-01", RANGE_END_TAG: "1997-01-02"})
    assert result.success
    assert sorted(m.partition for m in result.asset_materializations_for_node("raw__events")) == ["1997-01-01",
                                                                                                  "1997-01-02"]
    assert pq.read_table(tmp_path / "data" / "raw" / "events" / "1997-01-01.parquet").num_rows == 20
    quarantined = pq.read_table(tmp_path / "data" / "quarantine" / "events" / "unassigned.parquet")
    assert quarantined.column("reason").to_pylist() == ["timestamp_before_partitions_start"]
    assert (tmp_path / "data" / "tiles" / "activity" / "1997-01-02.parquet").exists()
    # the same definitions with the default start refuse the 1997 partitions outright
    assert "1997-01-01" not in build_defs().resolve_asset_graph().get(C.RAW_EVENTS).partitions_def.get_partition_keys()
