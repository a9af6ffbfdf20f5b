"""Find and read raw input files (CSV or Parquet, a file or a folder of files) into Arrow.

A file that cannot be read raises :class:`SourceError` naming the file and the problem, so the user
sees "events.csv: row 17 has 5 columns, expected 4" rather than a traceback from inside pyarrow.
A CSV row that cannot be read does not refuse the file: it travels with the others, marked for
validation to quarantine (``csv_rows.py``).
Column names are matched to the schema case-insensitively and through each column's aliases
(``customer_id`` -> ``user_id``, ``date`` -> ``timestamp``), which is what lets a plain
transactions export go through without a mapping file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_platform.sources import time_formats
from feature_platform.sources.csv_dialect import sniff
from feature_platform.sources.csv_rows import (  # noqa: F401 (the row fields are part of this module's API)
    FAULT_FIELDS,
    INVALID_ENCODING,
    MALFORMED_ROW,
    ROW_FAULT,
    ROW_FAULT_DETAIL,
    SOURCE_ROW,
    UnreadableCsvError,
    csv_batches,
    header,
)
from feature_platform.sources.schema import FILE_SUFFIXES, RawTable
from feature_platform.sources.time_formats import TimeFormat

SOURCE_FILE = "_source_file"
LABEL_TYPE = pa.dictionary(pa.int32(), pa.string())  # of _source_file
# Rows per chunk of a streamed input: a bound on what one chunk holds in memory (~100 MB of events).
CHUNK_ROWS = 1_000_000
WHOLE_FILE = 2**62  # rows per chunk that reads each file at once


class SourceError(Exception):
    """A raw input that cannot be used at all (unreadable, ambiguous, missing a required column)."""


@dataclass(frozen=True)
class LoadedSource:
    table: RawTable
    files: tuple[Path, ...]
    data: pa.Table  # schema columns present in the files + _source_file, _source_row
    absent_columns: tuple[str, ...]
    unmapped: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # file -> columns no schema column takes
    time_formats: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # file -> {column: non-ISO format}


@dataclass(frozen=True)
class _FilePlan:
    """How one file is read: which of its columns, renamed to what, which float ids become integers."""

    path: Path
    label: str  # the file relative to the source folder: the rows' _source_file
    read: tuple[str, ...]  # the file's own column names, in file order
    rename: dict[str, str]  # file column -> schema column
    whole_floats: frozenset[str]  # float id columns whose every value is a whole number
    delimiter: str = ","  # CSV: the sniffed separator (csv_dialect.WHITESPACE: runs of spaces)
    time_formats: tuple[tuple[str, TimeFormat], ...] = ()  # schema column -> its non-ISO format in this file
    unmapped: tuple[str, ...] = ()  # the file's columns that are no schema column under any accepted name
    columns: tuple[str, ...] = ()  # every column of the file, in its order


@dataclass(frozen=True)
class SourceFiles:
    """The files of one table, opened but not read: the schema every chunk is given, and the chunks.

    A chunk looks exactly like the same rows of :func:`load`'s table (same columns, same types, same
    source labels and rows), so row-level work on chunks gives the same answer as on the whole.
    """

    table: RawTable
    files: tuple[Path, ...]
    schema: pa.Schema  # schema columns present in any file + _source_file, _source_row, _row_fault(_detail)
    absent_columns: tuple[str, ...]
    plans: tuple[_FilePlan, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(p.label for p in self.plans)

    @property
    def unmapped(self) -> dict[str, list[str]]:
        """File -> its columns that map to no schema column (read by nothing; reported, not dropped silently)."""
        return {p.label: list(p.unmapped) for p in self.plans if p.unmapped}

    @property
    def time_formats(self) -> dict[str, dict[str, str]]:
        """File -> {column: the non-ISO date/time format recognised in it}."""
        return {p.label: {column: fmt.describe() for column, fmt in p.time_formats}
                for p in self.plans if p.time_formats}

    def chunks(self, rows: int = CHUNK_ROWS, only: set[str] | None = None) -> Iterator[pa.Table]:
        """The rows of every file (``only``: of the files with those labels) in order, at most ``rows`` at
        a time; a chunk never spans two files."""
        for plan in self.plans:
            if only is not None and plan.label not in only:
                continue
            first_row = 1
            for batch in _batches(plan, rows):
                extras = {name: batch.column(name) for name in (SOURCE_ROW, ROW_FAULT, ROW_FAULT_DETAIL)
                          if name in batch.column_names}  # CSV: its own row numbers and faults
                data = batch.drop_columns(list(extras))
                extras.setdefault(SOURCE_ROW, row_column(first_row, batch.num_rows))
                chunk = _conform(_to_schema_names(data, plan), self.schema, plan.label, extras)
                if chunk.num_rows:
                    first_row = int(chunk.column(SOURCE_ROW)[-1].as_py()) + 1
                yield chunk


def find_files(source_dir: Path, table: RawTable) -> list[Path]:
    """The files holding ``table`` in ``source_dir``: ``<name>.<ext>`` or every file in ``<name>/``."""
    candidates = [source_dir / f"{table.name}{suffix}" for suffix in FILE_SUFFIXES]
    found = [p for p in candidates if p.is_file()]
    folder = source_dir / table.name
    if folder.is_dir():
        found.append(folder)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SourceError(f"{source_dir}: more than one input for {table.name} ({names}); keep one")
    if not found:
        return []
    if found[0].is_file():
        return found
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _suffix(p) in FILE_SUFFIXES)
    if not files:
        raise SourceError(f"{folder}: folder has no {'/'.join(FILE_SUFFIXES)} files")
    return files


def open_source(source_dir: Path, table: RawTable, columns: set[str] | None = None) -> SourceFiles | None:
    """Plan the reading of every file of ``table`` under ``source_dir`` (``None``: the table has no file).

    Reads each file's header (Parquet: its schema), and of a Parquet file with float id columns those
    columns, to decide what :func:`load` would: every rename, the type of every column, and which
    columns are absent. ``columns`` (schema names) reads only those, e.g. the timestamps.
    """
    files = find_files(source_dir, table)
    if not files:
        return None
    keep = _column_filter(table, columns)
    plans, parts = [], []
    for path in files:
        plan, fields = _plan_file(path, path.relative_to(source_dir).as_posix(), table, keep)
        plans.append(plan)
        parts.append(pa.schema([*fields, pa.field(SOURCE_FILE, LABEL_TYPE), pa.field(SOURCE_ROW, pa.int64()),
                                *FAULT_FIELDS]))
    schema = _unify(parts)
    present = set(schema.names)
    missing_required = [] if columns is not None else [
        c.name for c in table.columns
        if c.required and c.name not in present and not (c.name == table.key and table.derive_key)
        and c.name not in table.defaults_when_absent
    ]
    if missing_required:
        raise SourceError(
            f"{files[0] if len(files) == 1 else source_dir / table.name}: required column(s) "
            f"{', '.join(missing_required)} not found; the columns are "
            f"{list(dict.fromkeys(n for plan in plans for n in plan.columns))} "
            f"(accepted names: {_accepted_names(table, missing_required)})"
        )
    absent = tuple(c.name for c in table.columns if c.name not in present)
    return SourceFiles(table=table, files=tuple(files), schema=schema, absent_columns=absent, plans=tuple(plans))


def load(source_dir: Path, table: RawTable, columns: set[str] | None = None) -> LoadedSource | None:
    """Read every file of ``table`` under ``source_dir`` into memory; ``None`` when the table has no file.

    For the small tables and tests; the events input is read in chunks (:func:`open_source`).
    """
    source = open_source(source_dir, table, columns)
    if source is None:
        return None
    chunks = list(source.chunks(rows=WHOLE_FILE))
    data = pa.concat_tables(chunks) if chunks else source.schema.empty_table()
    return LoadedSource(table=table, files=source.files, data=data, absent_columns=source.absent_columns,
                        unmapped=source.unmapped, time_formats=source.time_formats)


def label_column(label: str, rows: int) -> pa.DictionaryArray:
    """``_source_file`` for ``rows`` rows of one file: one dictionary entry, not ``rows`` strings."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([label], pa.string()))


def row_column(first: int, rows: int) -> pa.Array:
    """``_source_row``: 1-based line of the data in its file."""
    return pa.array(np.arange(first, first + rows, dtype=np.int64))


def without_faults(chunk: pa.Table) -> pa.Table:
    """The chunk's rows that could be read (a CSV row with a fault has no trustworthy values)."""
    if ROW_FAULT not in chunk.column_names or not chunk.column(ROW_FAULT).null_count < chunk.num_rows:
        return chunk
    return chunk.filter(pc.is_null(chunk.column(ROW_FAULT)))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def _column_filter(table: RawTable, columns: set[str] | None):
    if columns is None:
        return None
    lookup = _name_lookup(table)
    return lambda original: lookup.get(_norm(original)) in columns


def _plan_file(path: Path, label: str, table: RawTable, keep) -> tuple[_FilePlan, list[pa.Field]]:
    """What to read of one file and the schema columns it gives (name and type)."""
    suffix = _suffix(path)
    delimiter = ","
    try:
        if suffix == ".parquet":
            file_schema = pq.read_schema(path)
            types = {name: file_schema.field(name).type for name in file_schema.names}
        else:
            # Everything as text: validation decides what parses, row by row, instead of the reader
            # refusing the whole file over one bad value.
            delimiter = sniff(path)
            types = dict.fromkeys(header(path, delimiter), pa.string())
            _refuse_headerless(path, list(types), table)
        unmapped = tuple(n for n in types if n not in _chosen_columns(list(types), table, path).values())
        names = [name for name in types if keep is None or keep(name)]
        chosen = _chosen_columns(names, table, path)
        read = tuple(name for name in names if name in chosen.values())
        # Ids exported by pandas often arrive as floats (12345.0): whole-number floats become integers.
        floats = [n for n in read if pa.types.is_floating(types[n]) and n.lower().endswith("id")]
        whole = frozenset(n for n in floats if _all_whole(path, n))
        plan = _FilePlan(path=path, label=label, read=read, rename={o: t for t, o in chosen.items()},
                         whole_floats=whole, delimiter=delimiter, unmapped=unmapped, columns=tuple(types))
        formats = tuple((target, fmt) for target, original in chosen.items()
                        if _is_time(table, target) and pa.types.is_string(types[original])
                        and (fmt := time_formats.detect(_first_values(plan, original))) is not None)
    except UnreadableCsvError as exc:
        raise SourceError(str(exc)) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise _unreadable(path, exc) from None
    fields = [pa.field(target, pa.int64() if original in whole else types[original])
              for target, original in chosen.items()]
    return replace(plan, time_formats=formats), fields


def _is_time(table: RawTable, column: str) -> bool:
    kind = table.column(column).type
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind)


def _first_values(plan: _FilePlan, column: str) -> pa.ChunkedArray:
    """The first values of one column of the file (a sample to recognise its format)."""
    batch = next(_batches(replace(plan, read=(column,)), time_formats.SAMPLE_VALUES), None)
    return batch.column(0) if batch is not None and batch.num_columns else pa.chunked_array([], pa.string())


_VALUE = re.compile(r"^[\s$€£+-]*[\d.,:/ -]+$")


def _refuse_headerless(path: Path, names: list[str], table: RawTable) -> None:
    """A first line of values (``00001 19970101 1 11.77``) read as a header would map nothing: say so."""
    if names and all(_VALUE.match(name) for name in names):
        wanted = ", ".join(c.name for c in table.columns if c.required and c.name not in table.defaults_when_absent
                           and not (c.name == table.key and table.derive_key))
        raise SourceError(f"{path}: the first line {names} looks like data, not column names; add a header "
                          f"line naming the columns (at least {wanted})")


def _all_whole(path: Path, column: str) -> bool:
    """Whether every value of a float column is a whole number (read a row group at a time)."""
    parquet = pq.ParquetFile(path)
    for group in range(parquet.metadata.num_row_groups):
        values = parquet.read_row_group(group, columns=[column]).column(0).drop_null()
        if len(values) and not pc.all(pc.equal(values, pc.floor(values))).as_py():
            return False
    return True


def _batches(plan: _FilePlan, rows: int) -> Iterator[pa.Table]:
    """The file's ``read`` columns, about ``rows`` rows at a time, in file order."""
    path, read = plan.path, plan.read
    suffix = _suffix(path)
    try:
        if suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            if not read:  # no column of the schema: the rows still count (their values are absent)
                for group in range(parquet.metadata.num_row_groups):
                    yield _no_columns(parquet.metadata.row_group(group).num_rows)
                return
            # One reader per row group: a reader over the whole file keeps what it has read.
            for group in range(parquet.metadata.num_row_groups):
                for batch in parquet.iter_batches(batch_size=rows, row_groups=[group], columns=list(read)):
                    yield pa.Table.from_batches([batch])
        else:
            yield from csv_batches(path, plan.delimiter, read, plan.label, rows)
    except UnreadableCsvError as exc:
        raise SourceError(str(exc)) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise _unreadable(path, exc) from None


def _chosen_columns(names: list[str], table: RawTable, path: Path) -> dict[str, str]:
    """Schema column -> the file's column holding it, through whichever accepted name the file uses."""
    lookup = _name_lookup(table)
    claims: dict[str, list[str]] = {}
    for original in names:
        if (target := lookup.get(_norm(original))) is not None:
            claims.setdefault(target, []).append(original)
    chosen: dict[str, str] = {}
    for target, originals in claims.items():
        exact = [o for o in originals if _norm(o) == target]
        if len(originals) > 1 and len(exact) != 1:
            raise SourceError(f"{path}: columns {originals} all map to {target!r}; keep one")
        chosen[target] = exact[0] if exact else originals[0]
    return chosen


def _name_lookup(table: RawTable) -> dict[str, str]:
    return {_norm(name): column.name for column in table.columns for name in (column.name, *column.aliases)}


def _no_columns(rows: int) -> pa.Table:
    return pa.table({"_": pa.nulls(rows)}).drop_columns(["_"])


def _unreadable(path: Path, exc: Exception) -> SourceError:
    kind = "Parquet" if _suffix(path) == ".parquet" else "CSV"
    return SourceError(f"{path}: cannot be read as {kind}: {exc}")


def _to_schema_names(data: pa.Table, plan: _FilePlan) -> pa.Table:
    formats = dict(plan.time_formats)
    columns = {}
    for original, target in plan.rename.items():
        if original not in data.column_names:
            continue
        column = data.column(original)
        if original in plan.whole_floats:
            column = pc.cast(column, pa.int64(), safe=False)
        elif target in formats:
            column = time_formats.to_iso(column, formats[target])
        columns[target] = column
    return pa.Table.from_pydict(columns) if columns else data


def _conform(data: pa.Table, schema: pa.Schema, label: str, extras: dict[str, pa.Array | pa.ChunkedArray]
             ) -> pa.Table:
    """One file's chunk with every column of ``schema``: absent ones null, others cast where files disagree.
    ``extras``: its ``_source_row`` and, of a CSV file, its row faults."""
    rows = data.num_rows
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for field in schema:
        if field.name == SOURCE_FILE:
            arrays.append(label_column(label, rows))
        elif field.name in extras:
            arrays.append(extras[field.name])
        elif field.name in data.column_names:
            column = data.column(field.name)
            arrays.append(column if column.type.equals(field.type) else pc.cast(column, field.type))
        else:
            arrays.append(pa.nulls(rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _unify(parts: list[pa.Schema]) -> pa.Schema:
    """The schema of all files together."""
    if len(parts) == 1:
        return parts[0]
    # Files of one table may disagree on a column's type (int in one, text in another): read such a
    # column as text everywhere and let validation parse it.
    types: dict[str, set[pa.DataType]] = {}
    for part in parts:
        for field in part:
            types.setdefault(field.name, set()).add(field.type)
    text = {name for name, seen in types.items() if len(seen) > 1 and name not in (SOURCE_FILE, SOURCE_ROW)}
    unified = [pa.schema([pa.field(f.name, pa.string()) if f.name in text else f for f in part]) for part in parts]
    return pa.unify_schemas(unified, promote_options="permissive")


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _accepted_names(table: RawTable, names: list[str]) -> str:
    return "; ".join(f"{n}: {', '.join((n, *table.column(n).aliases))}" for n in names)
