"""The landing log: raw events accepted one batch at a time (``POST /events``, `feature-platform events
push`), made durable before the sender is answered, then read by the online updater and by ingestion.

Layout under ``<data>/landing/`` (``Settings.landing_dir``)::

    events/<YYYY-MM-DD>.jsonl    one JSON object per line, in the file of the UTC day it arrived:
                                 the raw contract's fields (ISO timestamps, naive UTC) + landed_at
    events/.lock                 flock'ed exclusively by an appender, shared by a reader

An append takes the lock, writes its lines with one ``write``, fsyncs the file (and the folder when it
created the file) and only then returns, so an acknowledged event survives the death of the process
or the machine. A process killed mid-write leaves at most an incomplete last line: readers stop at the
last newline, and the next append cuts the torn tail off first (it was never acknowledged).

Validation is batch ingestion's own (``validation.validate`` on the records as a one-file source), so
an event accepted here is accepted by the daily ingest too; this module adds only what JSON brings:
unknown fields and values of the wrong JSON type. Event ids must be unique over the whole log.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import io
import json
import os
import re
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from feature_platform.sources.loaders import SOURCE_FILE, SOURCE_ROW, LoadedSource, SourceError
from feature_platform.sources.schema import EVENTS, TS
from feature_platform.sources.validation import validate

EVENTS_DIR = "events"
LOCK_FILE = ".lock"
LANDED_AT = "landed_at"
LOG_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")
# Source labels of landed rows. Validation keeps the first row of a duplicated event_id in label
# order, and source-file labels start with "events", so a row of the user's own input always wins.
SOURCE_LABEL = "landing/events"
REQUEST_LABEL = "request"
LINE_SCHEMA = pa.schema([*EVENTS.arrow_schema, pa.field(LANDED_AT, TS)])
DUPLICATE = f"duplicate_{EVENTS.key}"

Cursor = dict[str, int]  # log file name -> bytes already read


@dataclass(frozen=True)
class AppendResult:
    """What one append made durable: ``accepted`` lines at ``[start_offset, end_offset)`` of ``path``."""

    accepted: int
    path: Path | None  # None when nothing was written
    start_offset: int = 0
    end_offset: int = 0
    # Event ids already in the log (a retried or concurrent request): not appended again. Report them as
    # rejected duplicates; validate_event_records(..., landing=log) catches all but concurrent ones.
    duplicates: tuple[str, ...] = ()


# -- validation ------------------------------------------------------------------------------------
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
        result = validate(source, now)
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
            first_index = {}
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


# -- the log ---------------------------------------------------------------------------------------
class _KnownIds:
    """Event ids of the log, read incrementally: per process, shared by every LandingLog of one folder,
    so a server that opens the log per request does not re-read it per request."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.read: Cursor = {}
        self.lock = threading.Lock()


_KNOWN: dict[Path, _KnownIds] = {}
_KNOWN_LOCK = threading.Lock()


class LandingLog:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / EVENTS_DIR

    def path_for(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.jsonl"

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if LOG_FILE.match(p.name))

    # -- append ----------------------------------------------------------------------------------
    def append(self, accepted: pa.Table, now: dt.datetime | None = None) -> AppendResult:
        """Append validated events durably (fsync) before returning; ``now`` is the arrival time.

        Events whose id is already in the log are skipped and listed in ``duplicates``, checked under
        the lock, so two requests racing with the same event never both land it.
        """
        table = accepted.select(EVENTS.column_names).cast(EVENTS.arrow_schema)
        landed_at = naive_utc(now) if now is not None else utc_now()
        if table.num_rows == 0:
            return AppendResult(accepted=0, path=None)
        created_folder = not self.folder.is_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        if created_folder:
            _fsync_dir(self.folder.parent)
        path = self.path_for(landed_at.date())
        # Lock order everywhere: the file lock, then the in-process id cache.
        with self._lock(fcntl.LOCK_EX), self._known() as known:
            self._refresh(known, self._sizes())
            lines, duplicates, batch_ids = [], [], set()
            stamp = landed_at.isoformat(timespec="microseconds")
            for row in table.to_pylist():
                event_id = row[EVENTS.key]
                if event_id in known.ids or event_id in batch_ids:
                    duplicates.append(event_id)
                    continue
                batch_ids.add(event_id)
                lines.append(_line(row, stamp))
            if not lines:
                return AppendResult(accepted=0, path=None, duplicates=tuple(duplicates))
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = _cut_torn_tail(fd, path)
                _write_all(fd, b"".join(lines))
                os.fsync(fd)
                end = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.folder)
            # Only ids this process appended are added here; anything else is read by the next refresh.
            if known.read.get(path.name, 0) == start:
                known.ids.update(batch_ids)
                known.read[path.name] = end
        return AppendResult(accepted=len(lines), path=path, start_offset=start, end_offset=end,
                            duplicates=tuple(duplicates))

    # -- read ----------------------------------------------------------------------------------
    def read(self, since: Mapping[str, int] | None = None) -> tuple[pa.Table, Cursor]:
        """Events appended after ``since`` (everything when None), in append order, and the new cursor.

        A cursor is ``{file name: byte offset}``; keep it to read only what arrived since.
        """
        parts, cursor = [], dict(since or {})
        for path, _, end, table in self._chunks(cursor, self._committed()):
            parts.append(table.drop_columns([LANDED_AT]))
            cursor[path.name] = end
        return _concat(parts, EVENTS.arrow_schema), cursor

    def events(self, landed_since: dt.datetime | None = None, user_ids: Collection[str] | None = None) -> pa.Table:
        """Every landed event (of ``user_ids``; that arrived at or after ``landed_since``), EVENTS schema."""
        first_day = naive_utc(landed_since).date() if landed_since is not None else None
        table = _concat([t for _, _, _, t in self._chunks({}, self._committed(), first_day)], LINE_SCHEMA)
        if landed_since is not None:
            table = table.filter(pc.greater_equal(table.column(LANDED_AT), pa.scalar(naive_utc(landed_since), TS)))
        if user_ids is not None:
            table = table.filter(pc.is_in(table.column("user_id"), value_set=pa.array(sorted(user_ids), pa.string())))
        return table.drop_columns([LANDED_AT])

    def loaded_source(self) -> LoadedSource | None:
        """The whole log as one more events input for ingestion (rows labelled with file and line)."""
        parts, files = [], []
        for path, _, _, table in self._chunks({}, self._committed()):
            label = f"{SOURCE_LABEL}/{path.name}"
            data = table.drop_columns([LANDED_AT])
            data = data.append_column(SOURCE_FILE, pa.array([label] * data.num_rows).dictionary_encode())
            data = data.append_column(SOURCE_ROW, pa.array(np.arange(1, data.num_rows + 1, dtype=np.int64)))
            parts.append(data)
            files.append(path)
        if not parts:
            return None
        return LoadedSource(table=EVENTS, files=tuple(files), data=pa.concat_tables(parts), absent_columns=())

    def event_ids(self) -> set[str]:
        """Every event id in the log (a copy)."""
        if not self.folder.is_dir():
            return set()
        with self._lock(fcntl.LOCK_SH), self._known() as known:
            self._refresh(known, self._sizes())
            return set(known.ids)

    # -- internals -------------------------------------------------------------------------------
    def _sizes(self) -> dict[Path, int]:
        return {p: p.stat().st_size for p in self.files()}

    def _committed(self) -> dict[Path, int]:
        """File sizes with no append in progress: what a reader may read up to."""
        if not self.folder.is_dir():
            return {}
        with self._lock(fcntl.LOCK_SH):
            return self._sizes()

    @staticmethod
    def _chunks(since: Mapping[str, int], sizes: Mapping[Path, int], first_day: dt.date | None = None
                ) -> Iterator[tuple[Path, int, int, pa.Table]]:
        """(file, start, end offset, lines parsed) per file with complete lines after ``since``."""
        for path, size in sizes.items():
            if first_day is not None and path.stem < first_day.isoformat():
                continue
            start = since.get(path.name, 0)
            if size <= start:
                continue
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(size - start)
            complete = data.rfind(b"\n") + 1  # a torn last line (a writer died mid-write) is not an event
            if complete:
                yield path, start, start + complete, _parse(data[:complete], path)

    @contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextmanager
    def _known(self) -> Iterator[_KnownIds]:
        with _KNOWN_LOCK:
            known = _KNOWN.setdefault(self.folder.resolve(), _KnownIds())
        with known.lock:
            yield known

    def _refresh(self, known: _KnownIds, sizes: Mapping[Path, int]) -> None:
        for path, _, end, table in self._chunks(known.read, sizes):
            known.ids.update(table.column(EVENTS.key).to_pylist())
            known.read[path.name] = end


def _line(row: Mapping[str, Any], landed_at: str) -> bytes:
    record = {name: (value.isoformat(timespec="microseconds") if isinstance(value, dt.datetime) else value)
              for name, value in row.items()}
    record[LANDED_AT] = landed_at
    # One event per line: json.dumps escapes newlines inside values.
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _parse(data: bytes, path: Path) -> pa.Table:
    options = pajson.ParseOptions(explicit_schema=LINE_SCHEMA, unexpected_field_behavior="ignore")
    try:
        return pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=len(data) + 1),
                                parse_options=options)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: a complete line is not a landed event ({exc}); the file was edited by hand?") from None


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Drop an incomplete last line (a writer died mid-append, unacknowledged); return the file size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with open(path, "rb") as fh:
        end = size
        while end > 0:
            begin = max(0, end - 65_536)
            fh.seek(begin)
            chunk = fh.read(end - begin)
            if end == size and chunk.endswith(b"\n"):
                return size
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = begin + newline + 1
                break
            end = begin
        else:
            keep = 0
    os.ftruncate(fd, keep)
    return keep


def _fsync_dir(folder: Path) -> None:
    """A new file's name is durable only once its folder is fsynced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
