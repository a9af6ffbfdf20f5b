"""Reading a CSV file row by row, keeping the rows that cannot be read.

A row with more or fewer fields than the header, or with bytes that are not UTF-8, does not refuse the
file: it keeps its row number (``_source_row``) and travels with the others, marked by ``_row_fault``
(the reason) and ``_row_fault_detail`` (file, row and what is wrong), for validation to quarantine. A
file with more such rows than readable ones is refused whole (:class:`UnreadableCsvError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from feature_platform.sources.csv_dialect import WHITESPACE, WhitespaceAsCommas

SOURCE_ROW = "_source_row"
ROW_FAULT = "_row_fault"  # why a CSV row could not be read (null: it could): a quarantine reason
ROW_FAULT_DETAIL = "_row_fault_detail"  # file, row and what is wrong with it
MALFORMED_ROW = "malformed_row"  # more or fewer fields than the header
INVALID_ENCODING = "invalid_encoding"  # bytes that are not UTF-8
FAULT_FIELDS = (pa.field(ROW_FAULT, pa.string()), pa.field(ROW_FAULT_DETAIL, pa.string()))
FAULT_TEXT = 120  # characters of an unreadable row quoted in its detail


class UnreadableCsvError(ValueError):
    """Most rows of a CSV file cannot be read: it is not a CSV of the table it was given as."""


def open_csv(path: Path, delimiter: str, on_invalid: Callable[[pacsv.InvalidRow], str] | None = None,
             **options) -> pacsv.CSVStreamingReader:
    """A reader that skips rows of the wrong width, telling ``on_invalid`` (it answers "skip"). Parsing on
    one thread is what gives the handler each row's number (and is no slower on a streamed file)."""
    parse = pacsv.ParseOptions(delimiter="," if delimiter == WHITESPACE else delimiter,
                               invalid_row_handler=on_invalid or (lambda row: "skip"))
    source = WhitespaceAsCommas(path) if delimiter == WHITESPACE else path
    return pacsv.open_csv(source, read_options=pacsv.ReadOptions(use_threads=False), parse_options=parse, **options)


def csv_batches(path: Path, delimiter: str, read: tuple[str, ...], label: str, rows: int) -> Iterator[pa.Table]:
    """The CSV file's ``read`` columns as text, ``rows`` rows at a time, with ``_source_row`` and the row
    faults: a row of the wrong width keeps its place (and number) with null values, a value that is not
    UTF-8 is kept as text with its bad bytes escaped (``caf\\xe9``)."""
    skipped: list[tuple[int, str]] = []  # (row, detail) of rows the parser skipped, in file order

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # parsing on one thread always numbers rows
            return "error"
        text = row.text if len(row.text) <= FAULT_TEXT else row.text[:FAULT_TEXT] + "..."
        skipped.append((row.number - 1,  # the parser counts the header as row 1
                        f"{row.actual_columns} fields, expected {row.expected_columns}: {text!r}"))
        return "skip"

    header = open_csv(path, delimiter).schema.names
    reader = open_csv(path, delimiter, on_invalid, convert_options=pacsv.ConvertOptions(
        include_columns=list(read) or header[:1],
        column_types={name: pa.binary() for name in header},  # bytes: a bad one refuses its row, not the file
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

    rows_seen = faults = 0
    first_fault: str | None = None
    pending: list[pa.RecordBatch] = []
    size = 0
    for block in blocks():
        block = _decoded(block, read, label)
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
