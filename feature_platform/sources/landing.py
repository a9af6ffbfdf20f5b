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

Event ids are unique over the whole log. Checking a batch before it lands: ``event_records.py``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import re
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from feature_platform.sources.event_records import naive_utc, utc_now
from feature_platform.sources.loaders import SOURCE_FILE, SOURCE_ROW, label_column, row_column
from feature_platform.sources.schema import EVENTS, TS

EVENTS_DIR = "events"
LOCK_FILE = ".lock"
LANDED_AT = "landed_at"
LOG_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")
# Source labels of landed rows. Validation keeps the first row of a duplicated event_id in label
# order, and source-file labels start with "events", so a row of the user's own input always wins.
SOURCE_LABEL = "landing/events"
LINE_SCHEMA = pa.schema([*EVENTS.arrow_schema, pa.field(LANDED_AT, TS)])

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

    def committed(self) -> dict[Path, int]:
        """A snapshot of the log: each file's size with no append in progress, what a reader may read."""
        return self._committed()

    def labelled(self, sizes: Mapping[Path, int]) -> Iterator[tuple[Path, pa.Table]]:
        """Each file of the snapshot ``sizes`` as one more events input for ingestion: the contract's
        columns, rows labelled with file and line (``_source_file``, ``_source_row``)."""
        for path, _, _, table in self._chunks({}, sizes):
            data = table.drop_columns([LANDED_AT])
            rows = data.num_rows
            data = data.append_column(SOURCE_FILE, label_column(f"{SOURCE_LABEL}/{path.name}", rows))
            yield path, data.append_column(SOURCE_ROW, row_column(1, rows))

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
