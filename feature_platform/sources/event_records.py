"""Checking a batch of raw events that arrives as JSON (``POST /events``) or a file (`events push`).

Validation is batch ingestion's own (``validation.validate`` on the records as a one-file source), so
an event accepted here is accepted by the daily ingest too; this module adds only what JSON brings:
unknown fields and values of the wrong JSON type, and, given the landing log, ids it already holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from feature_platform.offline.store import connect
from feature_platform.sources.loaders import SOURCE_FILE, SOURCE_ROW, LoadedSource, SourceError
from feature_platform.sources.schema import EVENTS
from feature_platform.sources.validation import validate

if TYPE_CHECKING:
    import duckdb

    from feature_platform.sources.landing import LandingLog

REQUEST_LABEL = "request"  # the source label of a request's rows in validation
DUPLICATE = f"duplicate_{EVENTS.key}"
_DATABASE: list[duckdb.DuckDBPyConnection] = []  # one per process, opened at the first batch (see _cursor)
_DATABASE_LOCK = threading.Lock()


def validate_event_records(
    records: Sequence[Any], now: dt.datetime, landing: LandingLog | None = None
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Split a batch of JSON events into (accepted rows in ``EVENTS.arrow_schema``, rejected entries).

    A rejected entry is ``{"index", "event_id", "reasons", "detail"}``; ``index`` is the record's
    position in ``records`` and ``detail`` names the field. The rules are the daily ingest's, applied
    by the same code; with ``landing``, an event id already landed is a ``duplicate_event_id`` too.
    """
    now = naive_utc(now)
    rejected: dict[int, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    for index, record in enumerate(records):
        problems = _json_problems(record)
        if problems:
            rejected[index] = _rejection(index, record, [p[0] for p in problems], "; ".join(p[1] for p in problems))
            continue
        rows.append({name: _as_text(record.get(name)) for name in EVENTS.column_names})
        positions.append(index)

    accepted = EVENTS.arrow_schema.empty_table()
    if rows:
        data = pa.table({name: pa.array([r[name] for r in rows], pa.string()) for name in EVENTS.column_names})
        data = data.append_column(SOURCE_FILE, pa.array([REQUEST_LABEL] * len(rows)).dictionary_encode())
        data = data.append_column(SOURCE_ROW, pa.array(np.arange(1, len(rows) + 1, dtype=np.int64)))
        source = LoadedSource(table=EVENTS, files=(), data=data, absent_columns=())
        result = validate(source, now, cursor=_cursor())
        accepted = result.accepted
        for q in result.quarantined.select(["event_id", "reason", "detail", "source_row"]).to_pylist():
            index = positions[q["source_row"] - 1]
            rejected[index] = {"index": index, "event_id": q["event_id"], "reasons": [q["reason"]],
                               "detail": _explain(q["reason"], q["detail"])}
    if landing is not None and accepted.num_rows:
        landed = landing.event_ids()
        ids = accepted.column(EVENTS.key).to_pylist()
        again = [i for i, event_id in enumerate(ids) if event_id in landed]
        if again:
            first_index: dict[Any, int] = {}
            for index, row in zip(positions, rows, strict=True):
                if index not in rejected:
                    first_index.setdefault(row[EVENTS.key], index)
            for i in again:
                index = first_index[ids[i]]
                rejected[index] = {"index": index, "event_id": ids[i], "reasons": [DUPLICATE],
                                   "detail": f"event_id={ids[i]} was already landed (sent before?)"}
            keep = np.ones(accepted.num_rows, dtype=bool)
            keep[again] = False
            accepted = accepted.filter(pa.array(keep))
    return accepted, [rejected[i] for i in sorted(rejected)]


# JSON types each contract type takes; anything else (objects, lists, booleans for text...) is refused
# here, because as text it would pass for an id. Numbers and text go on to validation as text, exactly
# as a CSV cell would.
_ALLOWED: dict[str, tuple[type, ...]] = {"string": (str, int), "double": (str, int, float), "timestamp[us]": (str,)}
_EXPECTED = {"string": "text", "double": "a number", "timestamp[us]": "an ISO 8601 timestamp string"}


def _json_problems(record: Any) -> list[tuple[str, str]]:
    if not isinstance(record, Mapping):
        return [("not_an_object", f"expected a JSON object with the fields {', '.join(EVENTS.column_names)}, "
                                  f"got {type(record).__name__}")]
    problems = []
    unknown = [str(k) for k in record if k not in EVENTS.column_names]
    if unknown:
        problems.append(("unknown_field", f"unknown field(s) {', '.join(sorted(unknown))}; the fields are "
                                          f"{', '.join(EVENTS.column_names)}"))
    for column in EVENTS.columns:
        value = record.get(column.name)
        kind = str(column.type)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, _ALLOWED.get(kind, (str, int, float))):
            problems.append((f"invalid_{column.name}", f"{column.name}: expected {_EXPECTED.get(kind, 'a scalar')}, "
                                                        f"got {_json_type(value)} {value!r:.60}"))
    return problems


def _json_type(value: Any) -> str:
    return {bool: "boolean", dict: "object", list: "array", str: "text", int: "number", float: "number"}.get(
        type(value), type(value).__name__)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return repr(value) if isinstance(value, float) else str(value)  # repr: the shortest exact float text


def _rejection(index: int, record: Any, reasons: list[str], detail: str) -> dict[str, Any]:
    event_id = record.get(EVENTS.key) if isinstance(record, Mapping) else None
    return {"index": index, "event_id": None if event_id is None else str(event_id), "reasons": reasons,
            "detail": detail}


def _explain(reason: str, detail: str | None) -> str:
    detail = detail or ""
    if reason == DUPLICATE:
        return f"{detail} appears earlier in this batch"
    if reason.startswith("missing_"):
        return f"{reason.removeprefix('missing_')} is required"
    return detail


def read_event_file(path: Path) -> list[Any]:
    """Records of a JSON array, JSON lines or CSV (header = field names) file, for `events push`.

    CSV cells are text and an empty cell is null, as in batch ingestion; JSON values keep their type.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot be read: {exc}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        records: list[Any] = []
        for row in reader:
            if None in row:
                raise SourceError(f"{path}: line {reader.line_num} has more cells than the header")
            records.append({k: (v if v != "" else None) for k, v in row.items()})
        return records
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: not a JSON array: {exc}") from None
        return list(records)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}: line {number} is not JSON ({exc}); expected a JSON array, JSON lines "
                                  "or CSV") from None
    return records


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """The platform's time convention: naive UTC (an aware time is converted)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the process's in-memory DuckDB for validating one batch of events (its own temp tables), so a
    request does not pay for opening a database. The database is opened at the first batch and lives as long as
    the process; cursors are taken under a lock, one per batch, as DuckDB wants one per thread."""
    with _DATABASE_LOCK:
        if not _DATABASE:
            _DATABASE.append(connect())
        return _DATABASE[0].cursor()
