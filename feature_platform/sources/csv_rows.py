"""Reading a CSV file row by row, keeping the rows that cannot be read.

A row with more or fewer fields than the header, or with bytes that are not UTF-8, does not refuse the
file: it keeps its row number (``_source_row``) and travels with the others, marked by ``_row_fault``
(the reason) and ``_row_fault_detail`` (file, row and what is wrong), for validation to quarantine. A
file with more such rows than readable ones is refused whole (:class:`UnreadableCsvError`).

A quote that is never closed would make the parser read the rest of the file as one value, silently. A
file whose quote characters do not pair up is therefore read line by line (:func:`_line_batches`): each
line is a row, a line whose quote stays open is an ``unclosed_quote`` row, and the lines after it are read
as usual. A header that is not UTF-8 has its bad bytes escaped in the column names.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from feature_platform.sources.csv_dialect import WHITESPACE, WhitespaceAsCommas, open_text

SOURCE_ROW = "_source_row"
ROW_FAULT = "_row_fault"  # why a CSV row could not be read (null: it could): a quarantine reason
ROW_FAULT_DETAIL = "_row_fault_detail"  # file, row and what is wrong with it
MALFORMED_ROW = "malformed_row"  # more or fewer fields than the header
INVALID_ENCODING = "invalid_encoding"  # bytes that are not UTF-8
UNCLOSED_QUOTE = "unclosed_quote"  # a quoted value still open at the end of its line, in a file whose quotes do not pair
FAULT_FIELDS = (pa.field(ROW_FAULT, pa.string()), pa.field(ROW_FAULT_DETAIL, pa.string()))
FAULT_TEXT = 120  # characters of an unreadable row quoted in its detail


class UnreadableCsvError(ValueError):
    """Most rows of a CSV file cannot be read: it is not a CSV of the table it was given as."""


def open_csv(path: Path, delimiter: str, on_invalid: Callable[[pacsv.InvalidRow], str] | None = None,
             names: Sequence[str] | None = None, **options) -> pacsv.CSVStreamingReader:
    """A reader that skips rows of the wrong width, telling ``on_invalid`` (it answers "skip"). Parsing on
    one thread is what gives the handler each row's number (and is no slower on a streamed file).
    ``names``: the header's names as :func:`header` read them (the header line is then skipped)."""
    parse = pacsv.ParseOptions(delimiter="," if delimiter == WHITESPACE else delimiter,
                               invalid_row_handler=on_invalid or (lambda row: "skip"))
    source = WhitespaceAsCommas(path) if delimiter == WHITESPACE else path
    read = (pacsv.ReadOptions(use_threads=False) if names is None
            else pacsv.ReadOptions(use_threads=False, skip_rows=1, column_names=list(names)))
    options.setdefault("read_options", read)
    return pacsv.open_csv(source, parse_options=parse, **options)


def header(path: Path, delimiter: str) -> list[str]:
    """The column names of the file's header line; bytes that are not UTF-8 are escaped (``caf\\xe9``)."""
    try:
        return open_csv(path, delimiter).schema.names
    except UnicodeDecodeError:  # read the header line as a row of bytes instead
        first = open_csv(path, delimiter, read_options=pacsv.ReadOptions(
            use_threads=False, autogenerate_column_names=True, block_size=1 << 20)).read_next_batch()
        return [_text(column[0].as_py()) for column in first.columns]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return "" if value is None else str(value)


@functools.lru_cache(maxsize=64)
def _quotes_pair(path: Path, size: int, modified_ns: int) -> bool:
    """Whether the file holds an even number of quote characters (a closed quoted value holds two, an
    escaped quote inside it two more); ``size`` and ``modified_ns`` key the cache."""
    count = 0
    with open_text(path) as handle:
        while chunk := handle.read(1 << 22):
            count += chunk.count(b'"')
    return count % 2 == 0


def csv_batches(path: Path, delimiter: str, read: tuple[str, ...], label: str, rows: int) -> Iterator[pa.Table]:
    """The CSV file's ``read`` columns as text, ``rows`` rows at a time, with ``_source_row`` and the row
    faults: a row of the wrong width keeps its place (and number) with null values, a value that is not
    UTF-8 is kept as text with its bad bytes escaped (``caf\\xe9``)."""
    stat = path.stat()
    if not _quotes_pair(path, stat.st_size, stat.st_mtime_ns):
        yield from _checked(path, _line_batches(path, delimiter, read, label, rows), rows)
        return
    skipped: list[tuple[int, str]] = []  # (row, detail) of rows the parser skipped, in file order

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # parsing on one thread always numbers rows
            return "error"
        text = row.text if len(row.text) <= FAULT_TEXT else row.text[:FAULT_TEXT] + "..."
        lines = row.text.count("\n") + 1
        spans = f" (a quoted value runs over {lines} lines: a quote closed in the wrong place?)" if lines > 1 else ""
        skipped.append((row.number - 1,  # the parser counts the header as row 1
                        f"{row.actual_columns} fields, expected {row.expected_columns}{spans}: {text!r}"))
        return "skip"

    names = header(path, delimiter)
    reader = open_csv(path, delimiter, on_invalid, names, convert_options=pacsv.ConvertOptions(
        include_columns=list(read) or names[:1],
        column_types={name: pa.binary() for name in names},  # bytes: a bad one refuses its row, not the file
        strings_can_be_null=True,
        null_values=[""],  # "NA", "nan", "null" stay text for validation to judge
    ))

    def blocks() -> Iterator[pa.Table]:  # about 1 MB of text each, numbered, skipped rows put back
        next_row = 1
        for batch in reader:
            block, next_row = _numbered(pa.Table.from_batches([batch]), next_row, skipped, label)
            yield block
        if skipped:  # rows of the wrong width after the last readable one
            yield _malformed(reader.schema, skipped, label)

    yield from _checked(path, (_decoded(block, read, label) for block in blocks()), rows)


def _checked(path: Path, blocks: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """``blocks`` cut into tables of ``rows`` rows; refuses the file when most of its rows are faults."""
    rows_seen = faults = 0
    first_fault: str | None = None
    pending: list[pa.RecordBatch] = []
    size = 0
    for block in blocks:
        rows_seen += block.num_rows
        if bad := block.num_rows - block.column(ROW_FAULT).null_count:
            faults += bad
            first_fault = first_fault or pc.drop_null(block.column(ROW_FAULT_DETAIL))[0].as_py()
        pending += block.to_batches()
        size += block.num_rows
        while size >= rows:  # cut into chunks of ``rows``
            data = pa.Table.from_batches(pending, schema=block.schema)
            yield data.slice(0, rows)
            rest = data.slice(rows)
            pending, size = rest.to_batches(), rest.num_rows
    if size:
        yield pa.Table.from_batches(pending)
    if faults * 2 > rows_seen:
        raise UnreadableCsvError(f"{path}: cannot be read as CSV: {faults:,} of its {rows_seen:,} rows are unreadable (the "
                          f"wrong number of fields, or bytes that are not UTF-8), so the file is refused whole; is "
                          f"it a UTF-8 CSV of this table with one header line? The first: {first_fault}")


def _line_batches(path: Path, delimiter: str, read: tuple[str, ...], label: str, rows: int) -> Iterator[pa.Table]:
    """The file read one line per row (for files whose quotes do not pair), in tables of ``rows`` rows
    shaped like :func:`csv_batches`'s; row numbers are line numbers after the header."""
    with open_text(path) as handle:
        lines = iter(handle)
        names = _split(next(lines, b"").decode("utf-8", errors="backslashreplace"), delimiter)
        names = names if names is not None else []
        wanted = [names.index(name) for name in read]
        values: list[list[str | None]] = [[] for _ in read]
        numbers: list[int] = []
        faults: list[str | None] = []
        details: list[str | None] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                line, fault, detail = raw.decode("utf-8"), None, None
            except UnicodeDecodeError as exc:
                line = raw.decode("utf-8", errors="backslashreplace")
                fault, detail = INVALID_ENCODING, f"bytes that are not UTF-8 (0x{raw[exc.start]:02x} at {exc.start})"
            fields = _split(line.rstrip("\r\n"), delimiter)
            shown = repr(line[:FAULT_TEXT] + ("..." if len(line) > FAULT_TEXT else ""))
            if fields is None:
                fault, detail = UNCLOSED_QUOTE, f"a quoted value is not closed on its line: {shown}"
            elif len(fields) != len(names):
                fault, detail = MALFORMED_ROW, f"{len(fields)} fields, expected {len(names)}: {shown}"
            else:
                detail = f"{detail}: {shown}" if detail else None
            numbers.append(number)
            faults.append(fault)
            details.append(f"{label} row {number}: {detail}" if detail else None)
            for column, index in zip(values, wanted, strict=True):
                column.append(fields[index] or None if fields is not None and fault != MALFORMED_ROW else None)
            if len(numbers) == rows:
                yield _line_table(read, values, numbers, faults, details)
                values, numbers, faults, details = [[] for _ in read], [], [], []
        if numbers or not read:
            yield _line_table(read, values, numbers, faults, details)


def _split(line: str, delimiter: str) -> list[str] | None:
    """The fields of one line (None: a quoted value is still open at its end)."""
    if delimiter == WHITESPACE:
        return line.split()  # runs of spaces and tabs, as WhitespaceAsCommas reads them
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error:
        return None


def _line_table(read: tuple[str, ...], values: list[list[str | None]], numbers: list[int],
                faults: list[str | None], details: list[str | None]) -> pa.Table:
    columns = {name: pa.array(column, pa.string()) for name, column in zip(read, values, strict=True)}
    columns |= {SOURCE_ROW: pa.array(numbers, pa.int64()), ROW_FAULT: pa.array(faults, pa.string()),
                ROW_FAULT_DETAIL: pa.array(details, pa.string())}
    return pa.table(columns)


def _numbered(block: pa.Table, next_row: int, skipped: list[tuple[int, str]], label: str) -> tuple[pa.Table, int]:
    """The block's rows with their numbers in the file (``_source_row``), and back in their places among
    them the skipped rows (of the wrong width) that come before its last row. Returns the rows and the
    number of the next row."""
    good = block.num_rows
    bad = np.array([row for row, _ in skipped], dtype=np.int64)
    candidates = np.arange(next_row, next_row + good + len(bad), dtype=np.int64)
    numbers = candidates[~np.isin(candidates, bad)][:good]
    end = int(numbers[-1]) if good else next_row - 1
    data = _with_faults(block, pa.array(numbers, pa.int64()))
    if placed := [(row, detail) for row, detail in skipped if row < end]:
        skipped[:] = [(row, detail) for row, detail in skipped if row >= end]
        data = pa.concat_tables([data, _malformed(block.schema, placed, label)]).sort_by(SOURCE_ROW)
    return data, end + 1


def _with_faults(data: pa.Table, numbers: pa.Array, faults: list[str | None] | None = None,
                 details: list[str | None] | None = None) -> pa.Table:
    rows = data.num_rows
    data = data.append_column(SOURCE_ROW, numbers)
    data = data.append_column(ROW_FAULT, pa.array(faults, pa.string()) if faults else pa.nulls(rows, pa.string()))
    return data.append_column(ROW_FAULT_DETAIL,
                              pa.array(details, pa.string()) if details else pa.nulls(rows, pa.string()))


def _malformed(schema: pa.Schema, skipped: list[tuple[int, str]], label: str) -> pa.Table:
    """Rows of the wrong width, taking their places: every value null, the reason and where they are."""
    rows = len(skipped)
    empty = pa.table({f.name: pa.nulls(rows, f.type) for f in schema}, schema=schema)
    table = _with_faults(empty, pa.array([row for row, _ in skipped], pa.int64()), [MALFORMED_ROW] * rows,
                         [f"{label} row {row}: {detail}" for row, detail in skipped])
    skipped.clear()
    return table


def _decoded(block: pa.Table, read: tuple[str, ...], label: str) -> pa.Table:
    """The ``read`` columns (bytes) as text, and ``_source_row`` and the faults. A value that is not UTF-8
    makes its row an ``invalid_encoding`` fault, kept with the bad bytes escaped."""
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    marks: dict[int, str] = {}
    for name in read:
        values = block.column(name)
        try:
            columns[name] = values.cast(pa.string())
        except pa.ArrowInvalid:  # a bad byte somewhere: find which (rare, so value by value is fine)
            columns[name] = pa.array([_decode(value, name, i, marks) for i, value in enumerate(values.to_pylist())],
                                     pa.string())
    faults, details = block.column(ROW_FAULT), block.column(ROW_FAULT_DETAIL)
    if marks:
        numbers = block.column(SOURCE_ROW).to_pylist()
        reasons, texts = faults.to_pylist(), details.to_pylist()
        for i, what in marks.items():
            if reasons[i] is None:
                reasons[i], texts[i] = INVALID_ENCODING, f"{label} row {numbers[i]}: {what}"
        faults, details = pa.chunked_array([pa.array(reasons, pa.string())]), pa.chunked_array([pa.array(texts, pa.string())])
    columns |= {SOURCE_ROW: block.column(SOURCE_ROW), ROW_FAULT: faults, ROW_FAULT_DETAIL: details}
    return pa.table(columns)


def _decode(value: bytes | None, column: str, index: int, marks: dict[int, str]) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = value.decode("utf-8", errors="backslashreplace")
        marks.setdefault(index, f"{column} is not UTF-8 (byte 0x{value[exc.start]:02x} at {exc.start}): "
                                f"{text[:FAULT_TEXT]!r}")
        return text
