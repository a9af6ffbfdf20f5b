"""Validation of an input bigger than memory: chunk by chunk into DuckDB, which spills to disk past its
memory limit (``FP_INGEST_MEMORY_MB``).

The answer is :func:`validation.validate`'s on the whole input, row for row. Every rule but the
duplicate key looks at its own row only, so it is judged as each chunk arrives, and a refused row's
original text is taken from its chunk. The duplicate key needs every row: once all are in, among valid
rows sharing a key the first in (source file, row) order wins, and the chunks that hold the others are
read again for their original text (none, usually).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from types import TracebackType

import pyarrow as pa

from feature_platform.offline.store import connect
from feature_platform.sources.loaders import SOURCE_FILE, SOURCE_ROW
from feature_platform.sources.schema import RawTable
from feature_platform.sources.validation import (
    SORT_KEYS,
    duplicate_reason,
    first_failure_sql,
    quarantine_schema,
    quarantine_sql,
    rule_params,
)

# Rows per Arrow chunk of a DuckDB result read at once (60 vectors of 2,048). Parquet's dictionary
# fallback depends on where a column's Arrow chunks end, so rows read back in a stream are handed to the
# writer cut where reading the whole sorted result at once would have cut them: every EXPORT_ROWS rows.
EXPORT_ROWS = 122_880
BATCH_ROWS = EXPORT_ROWS  # rows per batch read back from DuckDB
log = logging.getLogger(__name__)


class ChunkedValidation:
    """Add every chunk (:meth:`add`), call :meth:`finish`, then read the accepted and quarantined rows back.

    Tables in DuckDB: ``checked`` (every input row: file number, row, typed columns, ``_reason``) and
    ``quarantine`` (refused rows as :func:`validation.quarantine_schema`). File numbers follow the
    labels' sort order, so ordering by number is ordering by label.
    """

    def __init__(self, table: RawTable, present: pa.Schema, labels: Sequence[str], now: dt.datetime,
                 min_timestamp: dt.datetime, memory_limit_mb: int) -> None:
        self.table = table
        self.present = present
        self.input_rows = 0
        self.rows_by_label: dict[str, int] = {}
        self._numbers = {label: i for i, label in enumerate(sorted(set(labels)))}
        self._columns = ", ".join(f'"{c.name}"' for c in table.columns)
        self._check = first_failure_sql(table, present)
        self._values = rule_params(now, min_timestamp)
        self.con = connect(memory_limit=f"{memory_limit_mb}MB")
        try:
            self.con.register("src", present.empty_table())
            self._run(f"CREATE TABLE checked AS SELECT 0 AS _file, {SOURCE_ROW}, {self._columns}, _first AS _reason "
                      f"FROM ({self._check}) LIMIT 0")
            self.con.unregister("src")
            self.con.register("shape", quarantine_schema(table).empty_table())
            self._run("CREATE TABLE quarantine AS SELECT * FROM shape")
            self.con.unregister("shape")
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> ChunkedValidation:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.con.close()

    # -- input -----------------------------------------------------------------------------------
    def add(self, chunk: pa.Table) -> None:
        """Judge one chunk (rows of one source file) by every rule but the duplicate key."""
        if not chunk.num_rows:
            return
        label, first, last = self._span(chunk)
        self.con.register("src", chunk)
        try:
            self._run(f"INSERT INTO checked SELECT $file, {SOURCE_ROW}, {self._columns}, _first FROM ({self._check})",
                      file=self._numbers[label])
            self._quarantine(label, first, last, "_reason IS NOT NULL")
        finally:
            self.con.unregister("src")
        self.input_rows += chunk.num_rows
        self.rows_by_label[label] = self.rows_by_label.get(label, 0) + chunk.num_rows

    def finish(self, read_again: Callable[[set[str]], Iterable[pa.Table]]) -> int:
        """Judge the duplicate key over all rows; ``read_again(labels)`` gives those files' chunks again,
        exactly as they were added. Returns the number of duplicates."""
        key, reason = f'"{self.table.key}"', duplicate_reason(self.table)
        self._run(f"""
            CREATE TEMP TABLE duplicates AS SELECT _file, {SOURCE_ROW} FROM (
                SELECT _file, {SOURCE_ROW}, row_number() OVER (PARTITION BY {key} ORDER BY _file, {SOURCE_ROW}) AS n
                FROM checked WHERE _reason IS NULL
            ) WHERE n > 1""")
        count = self._scalar("SELECT count(*) FROM duplicates")
        if not count:
            return 0
        self._run(f"""UPDATE checked SET _reason = $reason FROM duplicates d
                      WHERE checked._file = d._file AND checked.{SOURCE_ROW} = d.{SOURCE_ROW}""", reason=reason)
        numbers = {n for (n,) in self.con.execute("SELECT DISTINCT _file FROM duplicates").fetchall()}
        labels = {label for label, n in self._numbers.items() if n in numbers}
        log.info("%s: %s duplicate %s; reading %s file(s) again for their original text",
                 self.table.name, f"{count:,}", self.table.key, len(labels))
        for chunk in read_again(labels):
            if chunk.num_rows:
                label, first, last = self._span(chunk)
                self.con.register("src", chunk)
                try:
                    self._quarantine(label, first, last, "_reason = $reason", reason=reason)
                finally:
                    self.con.unregister("src")
        return count

    # -- output ----------------------------------------------------------------------------------
    def accepted(self, start: dt.datetime, end: dt.datetime) -> pa.RecordBatchReader:
        """Accepted rows with ``start <= timestamp < end``, typed, in the table's sort order."""
        order = ", ".join(f'"{k}"' for k in SORT_KEYS[self.table.name])
        return self._reader(f"""SELECT {self._columns} FROM checked WHERE _reason IS NULL
                                AND "timestamp" >= $start AND "timestamp" < $end ORDER BY {order}""",
                            start=start, end=end)

    def accepted_count(self, since: dt.datetime | None = None, before: dt.datetime | None = None) -> int:
        """Accepted rows with ``since <= timestamp < before`` (either bound optional)."""
        return self._scalar('SELECT count(*) FROM checked WHERE _reason IS NULL AND "timestamp" >= $since '
                            'AND "timestamp" < $before', since=since or dt.datetime.min,
                            before=before or dt.datetime.max)

    def quarantined(self, where: str, order: str, **params: object) -> pa.RecordBatchReader:
        """Quarantined rows (``quarantine_schema``) matching ``where``, sorted by ``order`` (SQL, no values),
        with ``_block``: the row's position among all quarantined rows in source order // EXPORT_ROWS."""
        ranked = (f"SELECT *, (row_number() OVER (ORDER BY source_file, source_row) - 1) // {EXPORT_ROWS} "
                  f"AS _block FROM quarantine")
        return self._reader(f"SELECT * FROM ({ranked}) WHERE {where} ORDER BY {order}", **params)

    def reason_counts(self, where: str, **params: object) -> dict[str, int]:
        rows = self.con.execute(f"SELECT reason, count(*) FROM quarantine WHERE {where} GROUP BY reason",
                                self._params(where, params)).fetchall()
        return dict(sorted((reason, int(n)) for reason, n in rows))

    def numbers(self, labels: Iterable[str]) -> list[int]:
        return [self._numbers[label] for label in labels]

    def query(self, sql: str, **params: object) -> list[tuple]:
        """Any read over ``checked`` and ``quarantine`` (values as parameters)."""
        return self.con.execute(sql, self._params(sql, params)).fetchall()

    # -- internals -------------------------------------------------------------------------------
    def _quarantine(self, label: str, first: int, last: int, which: str, **params: object) -> None:
        """Quarantine this chunk's rows of ``checked`` matching ``which``, with their original text."""
        span = f"_file = $file AND {SOURCE_ROW} BETWEEN $first AND $last"
        if not self._scalar(f"SELECT count(*) FROM checked WHERE {span} AND {which}", file=self._numbers[label],
                            first=first, last=last, **params):
            return
        refused = (f"(SELECT $label AS {SOURCE_FILE}, * EXCLUDE (_file) FROM checked WHERE {span} AND {which})")
        self._run(f"INSERT INTO quarantine {quarantine_sql(self.table, self.present, refused)}",
                  label=label, file=self._numbers[label], first=first, last=last, **params)

    def _span(self, chunk: pa.Table) -> tuple[str, int, int]:
        rows = chunk.column(SOURCE_ROW)
        return str(chunk.column(SOURCE_FILE)[0].as_py()), int(rows[0].as_py()), int(rows[-1].as_py())

    def _run(self, sql: str, **params: object) -> None:
        self.con.execute(sql, self._params(sql, params)).fetchall()

    def _scalar(self, sql: str, **params: object) -> int:
        [(value,)] = self.con.execute(sql, self._params(sql, params)).fetchall()
        return int(value)

    def _reader(self, sql: str, **params: object) -> pa.RecordBatchReader:
        return self.con.sql(sql, params=self._params(sql, params)).to_arrow_reader(BATCH_ROWS)

    def _params(self, sql: str, given: dict[str, object]) -> dict[str, object]:
        """The named parameters ``sql`` uses (DuckDB refuses unused ones)."""
        values = {**self._values, **given}
        return {k: v for k, v in values.items() if f"${k}" in sql}


def read_ahead(reader: pa.RecordBatchReader, depth: int = 4) -> Generator[pa.RecordBatch, None, None]:
    """The reader's batches, fetched by a thread up to ``depth`` ahead: DuckDB produces the next ones
    while the caller compresses and writes these. The reader is done with when the iteration ends."""
    batches: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: pa.RecordBatch | BaseException | None) -> None:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def fetch() -> None:
        try:
            for batch in reader:
                put(batch)
                if stop.is_set():
                    return
            put(None)
        except BaseException as exc:  # handed to the caller's thread
            put(exc)

    thread = threading.Thread(target=fetch, name="duckdb-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
