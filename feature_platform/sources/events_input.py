"""The events input as one stream of chunks: the user's files, then the landing log (a file, one day's
landings, at a time), never all at once.

Ingestion validates both together so that an event that arrived both ways counts once. When both are
present, columns the files lack are filled the way validation would read them (a derived event id, the
default event type), and a column whose type differs between the two (CSV text next to typed landed
values) is text in both, so adding landed rows changes nothing for the files' rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.sources import loaders
from feature_platform.sources.landing import SOURCE_LABEL, LandingLog
from feature_platform.sources.loaders import (
    CHUNK_ROWS,
    FAULT_FIELDS,
    LABEL_TYPE,
    ROW_FAULT,
    ROW_FAULT_DETAIL,
    SOURCE_FILE,
    SOURCE_ROW,
)
from feature_platform.sources.schema import EVENTS
from feature_platform.sources.validation import parse_columns


@dataclass(frozen=True)
class EventsInput:
    files: loaders.SourceFiles | None
    landing: LandingLog | None
    schema: pa.Schema  # what every chunk has: the columns, then source file and row
    landed: dict[Path, int] = field(default_factory=dict)  # the log's files and sizes when it was opened

    @property
    def labels(self) -> list[str]:
        """Every source label (``_source_file``) the chunks can carry."""
        own = list(self.files.labels) if self.files else []
        return own + [landed_label(path) for path in self.landed]

    @property
    def source_files(self) -> tuple[Path, ...]:
        return (self.files.files if self.files else ()) + tuple(p for p, size in self.landed.items() if size)

    def chunks(self, rows: int = CHUNK_ROWS, only: set[str] | None = None) -> Iterator[pa.Table]:
        """Every row, files first, at most ``rows`` at a time; ``only``: just the files with those labels."""
        if self.files is not None:
            for chunk in self.files.chunks(rows, only):
                yield self._conform_file(chunk) if self.landed else chunk
        if self.landing is not None:
            wanted = {p: size for p, size in self.landed.items() if only is None or landed_label(p) in only}
            for _, chunk in self.landing.labelled(wanted):
                yield self._conform(chunk) if self.files is not None else chunk

    def _conform_file(self, chunk: pa.Table) -> pa.Table:
        assert self.files is not None
        source = loaders.LoadedSource(table=EVENTS, files=self.files.files, data=chunk,
                                      absent_columns=self.files.absent_columns)
        missing = [name for name in EVENTS.column_names if name not in chunk.column_names]
        columns = {name: chunk.column(name) for name in EVENTS.column_names if name not in missing}
        if missing:
            columns |= {name: column for name, column in zip(missing, parse_columns(source, missing).columns,
                                                             strict=True)}
        columns = {name: columns[name] for name in EVENTS.column_names}
        return self._conform(pa.table({**columns, SOURCE_FILE: chunk.column(SOURCE_FILE),
                                        SOURCE_ROW: chunk.column(SOURCE_ROW), ROW_FAULT: chunk.column(ROW_FAULT),
                                        ROW_FAULT_DETAIL: chunk.column(ROW_FAULT_DETAIL)}))

    def _conform(self, chunk: pa.Table) -> pa.Table:
        """The chunk in the input's schema; a landed chunk has no row faults (its lines were written typed)."""
        arrays = [pa.nulls(chunk.num_rows, f.type) if f.name not in chunk.column_names
                  else chunk.column(f.name) if chunk.column(f.name).type.equals(f.type)
                  else pc.cast(chunk.column(f.name), f.type) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def landed_label(path: Path) -> str:
    return f"{SOURCE_LABEL}/{path.name}"


def open_events(source_dir: Path, landing: LandingLog | None) -> EventsInput | None:
    """The user's events files and the landed events as one input (None when there is neither)."""
    files = loaders.open_source(source_dir, EVENTS)
    landed = {p: s for p, s in landing.committed().items() if s} if landing is not None else {}
    if not landed:
        return None if files is None else EventsInput(files=files, landing=None, schema=files.schema)
    sources = [pa.field(SOURCE_FILE, LABEL_TYPE), pa.field(SOURCE_ROW, pa.int64())]
    if files is None:
        return EventsInput(files=None, landing=landing, landed=landed, schema=pa.schema([*EVENTS.arrow_schema, *sources]))
    fields = []
    for column in EVENTS.columns:
        mine = files.schema.field(column.name).type if column.name in files.schema.names else column.type
        # e.g. CSV text next to typed landed values: validation parses the text of both
        fields.append(pa.field(column.name, mine if mine.equals(column.type) else pa.string()))
    return EventsInput(files=files, landing=landing, landed=landed,
                       schema=pa.schema([*fields, *sources, *FAULT_FIELDS]))
