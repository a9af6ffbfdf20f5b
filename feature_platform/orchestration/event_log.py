"""Dagster's SQLite event log with its connections kept open: the default local instance's storage.

Dagster's ``SqliteEventLogStorage`` opens a new SQLAlchemy engine and SQLite connection for every event
it writes, twice for an asset event (the run's shard and the cross-run index), and closes them again.
Closing the last connection to a database in WAL mode checkpoints the log into the database file, so
every event pays two connects, two commits with an fsync each and two checkpoints: about 12 ms of a
2-core machine per event, and a backfill of 500 days writes one or two events per partition and asset.
Profiled, that was about 80% of a 500-day run.

This subclass changes only how connections are made: one engine per shard (the index and the few most
recent runs), its single connection kept open and shared under the storage's own lock, with
``synchronous=NORMAL`` (the setting SQLite recommends for WAL: a commit is durable once the log is
checkpointed, and a power cut can lose the last commits but never corrupts the database). Everything
Dagster reads and writes, the schema and the files are Dagster's own: an instance configured with the
stock class reads the same history, and other processes (the webserver, the daemon) see each commit
as before, because WAL readers never wait for the writer.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import dagster as dg
import sqlalchemy as db
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # as Dagster's own storage: wait for another process's write, do not fail
OPEN_RUN_SHARDS = 4
BATCHED = ASSET_EVENTS | ASSET_CHECK_EVENTS  # mirrored into the index; run status events stay one by one  # a run writes to its own shard; a few kept open cover a run and the UI's readers


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose shards keep one open connection each (see the module docstring).

    Used through :class:`LocalStorage`, which puts it where Dagster's default puts its own.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._tables_seen: set[str] = set()
        self._index_cols_seen = False
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> KeptOpenSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> db.engine.Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=StaticPool,  # one connection, reused; the storage's lock serializes its users
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        db.event.listen(engine, "connect", _tune_connection)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for stale in runs[:-OPEN_RUN_SHARDS]:
            self._engines.pop(stale).dispose()
        return engine

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[db.engine.Connection]:
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of one run's events (a step's partitions, a run's plan) in one transaction per shard,
        stored as ``store_event`` stores them one by one; Dagster sends batches when
        ``DAGSTER_EVENT_BATCH_SIZE`` is set, which `feature-platform` does for its local instance."""
        if len({event.run_id for event in events}) != 1 or not all(
                event.is_dagster_event and event.dagster_event_type in BATCHED for event in events):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            # Mirrored into the cross-run index in the same order, with the ids the index gives them.
            ids = conn.execute(SqlEventLogStorageTable.insert().returning(
                SqlEventLogStorageTable.c.id, sort_by_parameter_order=True), rows).scalars().all()
            assets = [(event, event_id) for event, event_id in zip(events, ids, strict=True)
                      if event.dagster_event_type in ASSET_EVENTS]
            if assets:
                self._store_asset_event_tags(conn, [e for e, _ in assets], [i for _, i in assets])
                self._store_asset_entries(conn, assets)
        for event, event_id in zip(events, ids, strict=True):
            if event.dagster_event_type in ASSET_CHECK_EVENTS:
                self.store_asset_check_event(event, event_id)

    def _store_asset_entries(self, conn: db.engine.Connection, assets: list[tuple[EventLogEntry, int]]) -> None:
        """The asset table's row per asset key as ``_store_asset_event`` leaves it after the events one
        by one: each event upserts its values, so a later event of the same kind overwrites an earlier
        one's; only the last of each kind per key is applied (in order), one upsert per key."""
        last: dict[tuple[str, object], tuple[int, EventLogEntry, int]] = {}
        for position, (event, event_id) in enumerate(assets):
            last[(_asset_key(event), event.dagster_event_type)] = (position, event, event_id)
        merged: dict[str, dict] = {}
        has_index_cols = self._has_asset_key_index_cols_on_connection(conn)
        for _, event, event_id in sorted(last.values(), key=lambda entry: entry[0]):
            values = self._get_asset_entry_values(event, event_id, has_index_cols)
            if values:
                merged.setdefault(_asset_key(event), {}).update(values)
        for asset_key, values in merged.items():
            try:
                with conn.begin_nested():
                    conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
            except db.exc.IntegrityError:
                conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == asset_key))

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """The rows Dagster writes for a planned check (one per partition of a partitioned check), with
        the event serialized once instead of once per partition: 500 partitions x 50 checks were
        25,000 serializations of the same event."""
        planned = event.get_dagster_event().event_specific_data
        assert isinstance(planned, AssetCheckEvaluationPlanned)
        partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [{**common, "partition": key} for key in partition_keys])

    def _has_asset_key_index_cols_on_connection(self, conn: db.engine.Connection) -> bool:
        """Asked for every asset event (a schema inspection each time); columns, once there, stay."""
        if not self._index_cols_seen:
            self._index_cols_seen = super()._has_asset_key_index_cols_on_connection(conn)
        return self._index_cols_seen

    def has_table(self, table_name: str) -> bool:
        """Dagster asks before every asset event's tags (a new engine each time); a table, once there, stays."""
        if table_name not in self._tables_seen and super().has_table(table_name):
            self._tables_seen.add(table_name)
        return table_name in self._tables_seen

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # the run shards' files are deleted; no connection may keep them alive
        super().wipe()

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)
        with self._db_lock:
            engine = self._engines.pop(run_id, None)
        if engine is not None:
            engine.dispose()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


def _asset_key(event: EventLogEntry) -> str:
    key = event.get_dagster_event().asset_key
    assert key is not None  # only asset events are passed here
    return key.to_string()


def _tune_connection(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class LocalStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (same folders, same files) with the kept-open event log.

    ``dagster.yaml``::

        storage:
          custom:
            module: feature_platform.orchestration.event_log
            class: LocalStorage

    ``base_dir`` defaults to ``DAGSTER_HOME``, so a data directory can move without editing the file.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage = KeptOpenSqliteEventLogStorage(os.path.join(base_dir, "history", "runs", ""))

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> LocalStorage:
        base_dir = config_value.get("base_dir") or os.environ.get("DAGSTER_HOME")
        if not base_dir:
            raise dg.DagsterInvariantViolationError("LocalStorage needs base_dir or DAGSTER_HOME")
        return cls.from_local(base_dir, inst_data=inst_data)
