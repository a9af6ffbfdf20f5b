"""The data root in an object store (FP_DATA_URL=s3://bucket/prefix), against a real S3-compatible server on
loopback (moto's server mode, started by the ``s3_server`` fixture): the store, the model store and the asset
graph write there what they write locally, byte for byte, and a write is whole or absent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from upath import UPath

from feature_platform.config import ConfigError, Settings
from feature_platform.definitions import build_defs
from feature_platform.ml.expand import expand, fit_expansion
from feature_platform.ml.model_store import ModelStore, training_fingerprint
from feature_platform.offline.calendar import partitions_range, record_partitions
from feature_platform.offline.location import committed, data_root
from feature_platform.offline.store import OfflineStore, connect
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform.orchestration.resources import STEP_OUTPUTS, local_resources
from feature_platform.registry import load_registry
from feature_platform.sources.ingest import default_landing
from feature_platform_tests.helpers import materialize_range

pytestmark = pytest.mark.e2e  # a server subprocess

TABLE = "features/example"
FEATURES = ["days_since_last_purchase", "total_events"]
SCHEMA = pa.schema([("user_id", pa.string()), ("value", pa.float64())])


def _day(i: int) -> pa.Table:
    return pa.table({"user_id": [f"u{j}" for j in range(5)], "value": [float(i * 10 + j) for j in range(5)]},
                    schema=SCHEMA)


def _objects(root: UPath) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_store_writes_the_bytes_a_local_store_writes_and_reads_them_back_through_duckdb(s3_root, tmp_path):
    remote, local = OfflineStore(s3_root), OfflineStore(tmp_path)
    assert remote.remote and not local.remote and str(remote.root) == s3_root
    days = [(dt.date(2025, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(4)]
    for i, day in enumerate(days):
        assert remote.write(TABLE, _day(i), partition=day).bytes == local.write(TABLE, _day(i), partition=day).bytes
    remote.write("raw/customers", _day(9))
    local.write("raw/customers", _day(9))

    assert remote.partitions(TABLE) == days and list(remote.tables()) == [TABLE]
    for day in days:
        assert remote.partition_path(TABLE, day).read_bytes() == local.partition_path(TABLE, day).read_bytes()
    assert remote.read(TABLE, days[1], days[2]).equals(local.read(TABLE, days[1], days[2]))
    assert remote.read(TABLE).num_rows == 20  # the glob, read by DuckDB through the registered filesystem
    assert remote.read_table("raw/customers").equals(_day(9))
    with connect() as con:
        total = remote.scan(con, TABLE, days[0], days[3]).aggregate("sum(value) AS s").fetchall()[0]
    assert total is not None and total[0] == 340.0  # sum over days i of (10 i + 0..4): 50 (0+1+2+3) + 4 x 10

    removed = remote.prune_all(keep_days=2, today=dt.date(2025, 3, 5))
    assert {t: [p.stem for p in paths] for t, paths in removed.items()} == {TABLE: days[:2]}
    assert remote.partitions(TABLE) == days[2:]


def test_a_write_is_whole_or_absent_and_an_unreadable_object_is_named_and_skipped(s3_root):
    store = OfflineStore(s3_root)
    path = store.partition_path(TABLE, "2025-03-01")
    store.write(TABLE, _day(1), partition="2025-03-01")
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="killed"), committed(path) as tmp:
        tmp.write_bytes(b"PAR1 half a file")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == before  # the old object, never the half-written one
    assert sorted(p.name for p in path.parent.iterdir()) == ["2025-03-01.parquet"]  # no temp object either

    path.parent.joinpath("2025-03-02.parquet").write_bytes(before[: len(before) // 2])  # damaged out of band
    reader = OfflineStore(s3_root, skip_unreadable=True)
    assert [p.stem for p in reader.partition_files(TABLE)] == ["2025-03-01"]
    [found] = reader.unreadable.values()
    assert found.partition == "2025-03-02" and "s3://" in found.message and "backfill" in found.message
    assert reader.read(TABLE).num_rows == 5


def test_the_partition_calendar_lives_in_the_data_root(s3_root):
    assert partitions_range(data_root(s3_root)) == ("2020-01-01", None)  # nothing recorded yet
    assert record_partitions(data_root(s3_root), "2025-03-01", "2025-03-12") == ("2025-03-01", "2025-03-12")
    assert partitions_range(data_root(s3_root)) == ("2025-03-01", "2025-03-12")


def test_models_are_saved_promoted_and_loaded_and_a_version_without_its_manifest_is_not_listed(s3_root):
    store = ModelStore(f"{s3_root}/models")
    table = pa.table({"days_since_last_purchase": pa.array([1, 30, 2, 60, 5, 90], pa.int64()),
                      "total_events": pa.array([40, 3, 25, 1, 30, 0], pa.int64())})
    spec = fit_expansion(table, FEATURES, load_registry())
    x, _ = expand(table, spec)
    model = LogisticRegression().fit(x, np.array([0, 1, 0, 1, 0, 1]))
    saved = store.save_version("churn", model=model, spec=spec, feature_names=FEATURES,
                               registry_versions={"lead": "1.0.0"}, training_fingerprint=training_fingerprint(table),
                               metrics={"roc_auc": 0.9}, plots={"roc": b"\x89PNG"}, card="# churn\n")
    store.promote("churn", saved.version, "first model")
    champion = store.champion("churn")
    assert champion is not None and champion.version == saved.version and str(champion.path).startswith("s3://")
    loaded, loaded_spec, _ = store.load("churn", saved.version)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))  # type: ignore[attr-defined]
    assert loaded_spec.columns == spec.columns

    partial = store.version_dir("churn", "20250101T000000Z-0123456789")  # a save that died before its manifest
    (partial / "model.joblib").write_bytes(b"not yet committed")
    assert [v.version for v in store.versions("churn")] == [saved.version]


def test_the_landing_log_stays_local_and_a_store_in_an_object_store_asks_for_it(s3_root, tmp_path):
    with pytest.raises(ValueError, match="object store; pass the landing log"):
        default_landing(OfflineStore(s3_root))
    assert default_landing(OfflineStore(tmp_path)).root == tmp_path / "landing"


def test_bad_data_urls_are_refused_with_the_variable_named():
    with pytest.raises(ConfigError, match="FP_DATA_URL .*s3://"):
        Settings.from_env({"FP_DATA_URL": "gs://bucket/data"})
    with pytest.raises(ConfigError, match="names no bucket"):
        Settings.from_env({"FP_DATA_URL": "s3://"})
    local = Settings.from_env({"FP_DATA_DIR": "/tmp/x"})
    assert local.data_root == Path("/tmp/x") and local.models_dir == Path("/tmp/x/models")
    remote = Settings.from_env({"FP_DATA_DIR": "/tmp/x", "FP_DATA_URL": "s3://bucket/prefix/"})
    assert str(remote.data_root) == "s3://bucket/prefix" and str(remote.models_dir) == "s3://bucket/prefix/models"
    assert remote.dagster_home == Path("/tmp/x/dagster_home")  # the instance and the landing log stay local


def test_the_asset_graph_writes_to_the_object_store_the_files_it_writes_locally(sample_world, s3_root, tmp_path):
    """The sample world's raw partitions, tiles and snapshots (two runs: a range each), computed again with the
    data root in the object store: every file the same bytes, nothing written under the local data directory
    but the landing log's folder."""
    resources = local_resources(data_dir=tmp_path / "local", raw_dir=sample_world.src, now_utc=sample_world.now_utc,
                                data_url=s3_root)
    end = sample_world.end.isoformat()
    for groups, start in (((C.GROUP_RAW, C.GROUP_TILES), "2025-03-01"), ((C.GROUP_FEATURES,), "2025-03-10")):
        result = materialize_range(resources, dg.AssetSelection.groups(*groups), start, end)
        assert result.success, [e.message for e in result.all_events if e.is_failure]

    expected = {p.relative_to(sample_world.data).as_posix(): p.read_bytes()
                for folder in ("raw", "tiles", "features", "quarantine")
                for p in (sample_world.data / folder).rglob("*.parquet")}
    actual = {key: data for key, data in _objects(UPath(s3_root)).items() if key.endswith(".parquet")}
    assert sorted(actual) == sorted(expected)
    assert [key for key in expected if actual[key] != expected[key]] == []
    local = tmp_path / "local"
    assert not local.exists() or not [p for p in local.rglob("*.parquet")]


def test_a_sharded_run_hands_its_shard_results_over_through_the_object_store(sample_world, s3_root, tmp_path,
                                                                            monkeypatch):
    """With FP_SHARDS=2 a family's shard steps pass their results to its combine step through the IO manager,
    which an object-store data root puts in the bucket (where workers on other machines read them): the combined
    snapshots are the sample world's unsharded files, and the staged shard files are gone."""
    monkeypatch.setenv("FP_SHARDS", "2")
    assets = [*build_defs().assets]  # the definitions every process of such a deployment loads
    resources = local_resources(data_dir=tmp_path / "local", raw_dir=sample_world.src, now_utc=sample_world.now_utc,
                                data_url=s3_root, shards=2)
    bucket = UPath(s3_root)
    for folder in ("raw", "tiles"):  # the landed inputs, as a previous run left them
        for path in (sample_world.data / folder).rglob("*.parquet"):
            (bucket / path.relative_to(sample_world.data).as_posix()).write_bytes(path.read_bytes())
    day = sample_world.end.isoformat()
    result = dg.materialize(assets, selection=[C.USER_ACTIVITY_FEATURES], resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), tags={RANGE_START_TAG: day, RANGE_END_TAG: day})
    assert result.success
    assert len([e for e in result.all_events if e.is_step_success and "_shard[" in e.step_key]) == 2
    table = "features/user_activity_features"
    assert (bucket / table / f"{day}.parquet").read_bytes() == (sample_world.data / table / f"{day}.parquet").read_bytes()
    outputs = [p for p in (bucket / STEP_OUTPUTS).rglob("*") if p.is_file()]
    assert outputs, "the shard results were not handed over through the bucket"
    assert not (bucket / "staging").exists() or not [p for p in (bucket / "staging").rglob("*") if p.is_file()]
