"""Find and read raw input files (CSV or Parquet, a file or a folder of files) into Arrow.

A file that cannot be read raises :class:`SourceError` naming the file and the problem, so the user
sees "events.csv: row 17 has 5 columns, expected 4" rather than a traceback from inside pyarrow.
Column names are matched to the schema case-insensitively and through each column's aliases
(``customer_id`` -> ``user_id``, ``date`` -> ``timestamp``), which is what lets a plain
transactions export go through without a mapping file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feature_platform.sources.schema import FILE_SUFFIXES, RawTable

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"


class SourceError(Exception):
    """A raw input that cannot be used at all (unreadable, ambiguous, missing a required column)."""


@dataclass(frozen=True)
class LoadedSource:
    table: RawTable
    files: tuple[Path, ...]
    data: pa.Table  # schema columns present in the files + _source_file, _source_row
    absent_columns: tuple[str, ...]


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


def load(source_dir: Path, table: RawTable, columns: set[str] | None = None) -> LoadedSource | None:
    """Read every file of ``table`` under ``source_dir``; ``None`` when the table has no file.

    ``columns`` (schema names) reads only those columns, e.g. the timestamps to find a date range.
    """
    files = find_files(source_dir, table)
    if not files:
        return None
    parts = []
    for path in files:
        data = _read_file(path, _column_filter(table, columns))
        data = _rename_to_schema(data, table, path)
        label = path.relative_to(source_dir).as_posix()
        n = data.num_rows
        data = data.append_column(SOURCE_FILE, pa.array([label] * n, pa.dictionary(pa.int32(), pa.string())))
        data = data.append_column(SOURCE_ROW, pa.array(np.arange(1, n + 1, dtype=np.int64)))
        parts.append(data)
    data = _concat(parts)
    present = set(data.column_names)
    missing_required = [] if columns is not None else [
        c.name for c in table.columns
        if c.required and c.name not in present and not (c.name == table.key and table.derive_key)
        and c.name not in table.defaults_when_absent
    ]
    if missing_required:
        raise SourceError(
            f"{files[0] if len(files) == 1 else source_dir / table.name}: required column(s) "
            f"{', '.join(missing_required)} not found; columns are {sorted(present - {SOURCE_FILE, SOURCE_ROW})} "
            f"(accepted names: {_accepted_names(table, missing_required)})"
        )
    absent = tuple(c.name for c in table.columns if c.name not in present)
    return LoadedSource(table=table, files=tuple(files), data=data, absent_columns=absent)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def _column_filter(table: RawTable, columns: set[str] | None):
    if columns is None:
        return None
    lookup = _name_lookup(table)
    return lambda original: lookup.get(_norm(original)) in columns


def _read_file(path: Path, keep=None) -> pa.Table:
    suffix = _suffix(path)
    try:
        if suffix == ".parquet":
            selected = None if keep is None else [n for n in pq.read_schema(path).names if keep(n)]
            data = pq.read_table(path, columns=selected)
        else:
            # Everything as text: validation decides what parses, row by row, instead of the reader
            # refusing the whole file over one bad value.
            header = pacsv.open_csv(path).schema.names
            data = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    include_columns=None if keep is None else [n for n in header if keep(n)],
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=True,
                    null_values=[""],  # "NA", "nan", "null" stay text for validation to judge
                ),
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        raise SourceError(f"{path}: cannot be read as {kind}: {exc}") from None
    return _integral_floats_to_int(data)


def _integral_floats_to_int(data: pa.Table) -> pa.Table:
    """Ids exported by pandas often arrive as floats (12345.0); make whole-number floats integers."""
    for i, field in enumerate(data.schema):
        if pa.types.is_floating(field.type) and field.name.lower().endswith("id"):
            col = data.column(i)
            values = col.drop_null()
            if len(values) == 0 or pc.all(pc.equal(values, pc.floor(values))).as_py():
                data = data.set_column(i, field.name, pc.cast(col, pa.int64(), safe=False))
    return data


def _rename_to_schema(data: pa.Table, table: RawTable, path: Path) -> pa.Table:
    """Keep the schema's columns, renamed from whichever accepted name the file uses."""
    lookup = _name_lookup(table)
    claims: dict[str, list[str]] = {}
    for original in data.column_names:
        if (target := lookup.get(_norm(original))) is not None:
            claims.setdefault(target, []).append(original)
    chosen: dict[str, str] = {}
    for target, originals in claims.items():
        exact = [o for o in originals if _norm(o) == target]
        if len(originals) > 1 and len(exact) != 1:
            raise SourceError(f"{path}: columns {originals} all map to {target!r}; keep one")
        chosen[target] = exact[0] if exact else originals[0]
    return pa.table({target: data.column(original) for target, original in chosen.items()})


def _name_lookup(table: RawTable) -> dict[str, str]:
    return {_norm(name): column.name for column in table.columns for name in (column.name, *column.aliases)}


def _concat(parts: list[pa.Table]) -> pa.Table:
    if len(parts) == 1:
        return parts[0]
    # Files of one table may disagree on a column's type (int in one, text in another): read such a
    # column as text everywhere and let validation parse it.
    types: dict[str, set[pa.DataType]] = {}
    for part in parts:
        for field in part.schema:
            types.setdefault(field.name, set()).add(field.type)
    unified = []
    for part in parts:
        for i, field in enumerate(part.schema):
            if len(types[field.name]) > 1 and field.name not in (SOURCE_FILE, SOURCE_ROW):
                part = part.set_column(i, field.name, pc.cast(part.column(i), pa.string()))
        unified.append(part)
    return pa.concat_tables(unified, promote_options="permissive")


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _accepted_names(table: RawTable, names: list[str]) -> str:
    return "; ".join(f"{n}: {', '.join((n, *table.column(n).aliases))}" for n in names)
