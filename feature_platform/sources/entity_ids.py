"""One canonical form for entity ids, whatever type a raw file or a caller gives them.

An id is text everywhere the platform stores or looks one up (Parquet ``user_id`` columns, Redis keys,
the HTTP routes), so the same customer must become the same text from every input:

    text            as given, surrounding whitespace trimmed (``" u1 "`` is ``u1``)
    integer         its decimal digits (``42`` is ``"42"``; any integer width, signed or not)
    whole float     the integer it holds (``42.0`` is ``"42"``: pandas exports an id column with a
                    missing value as floats); a float with a fraction, NaN or infinity is not an id,
                    nor is one beyond 2**53, where a float no longer holds every integer (digits lost)
    anything else   (bools, dates, bytes, lists, ...) is refused, as is a null or an empty id

This is what the ingest does to raw files' id columns (sources/loaders.py, sources/ingest.py); the online
push, online reads, the point-in-time join and the HTTP batch route use these functions, so an export with
integer ids joins and serves like the text ids of the same customers. A bad id is an
:class:`EntityIdError` (a ValueError) naming the column, the row and the value, raised before any work.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

MAX_EXACT_FLOAT = 2.0**53  # every integer up to this is exactly a float64
FLOAT_RULE = "a float id must be a whole number within +-2**53"


class EntityIdError(ValueError):
    """An id that has no canonical text form; the message names where and what."""


def canonical_id(value: Any, what: str = "user_id") -> str:
    """``value`` as canonical id text (see the module docstring), else :class:`EntityIdError`."""
    if isinstance(value, str):
        text = value.strip()
        if text:
            return text
        raise EntityIdError(f"{what}: an empty id")
    if isinstance(value, bool) or value is None:
        raise EntityIdError(f"{what}: {value!r} is not an id (ids are text or whole numbers)")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) <= MAX_EXACT_FLOAT:
            return str(int(number))
        raise EntityIdError(f"{what}: {value!r} is not an id ({FLOAT_RULE})")
    raise EntityIdError(f"{what}: {value!r} ({type(value).__name__}) is not an id (ids are text or whole numbers)")


def canonical_ids_list(values: Iterable[Any], what: str = "user_id") -> list[str]:
    """Each of ``values`` as canonical id text; the error names the first bad one's position."""
    out = []
    for i, value in enumerate(values):
        try:
            out.append(canonical_id(value, what))
        except EntityIdError as exc:
            raise EntityIdError(f"{exc} (item {i})") from None
    return out


def canonical_ids(values: pa.Array | pa.ChunkedArray, what: str = "user_id") -> pa.ChunkedArray:
    """An Arrow column of ids as canonical text (``pa.string()``), vectorised; :class:`EntityIdError` on a
    column type that cannot hold ids or on the first null, empty, fractional or non-finite value (row named)."""
    column = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_null(kind):  # no value at all: fine when there are no rows
        if len(column):
            raise EntityIdError(f"{what}: null at row 0 (every row needs an id)")
        return pa.chunked_array([], pa.string())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    elif pa.types.is_integer(kind):
        text = column.cast(pa.string())
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        whole = pc.equal(pc.floor(column), column)
        exact = pc.less_equal(pc.abs(column), MAX_EXACT_FLOAT)
        bad = pc.invert(pc.fill_null(pc.and_(pc.and_(finite, whole), exact), True))
        if pc.any(bad).as_py():
            row = pc.index(bad, True).as_py()
            raise EntityIdError(f"{what}: {column[row].as_py()!r} at row {row} is not an id ({FLOAT_RULE})")
        text = column.cast(pa.int64()).cast(pa.string())
    else:
        raise EntityIdError(f"{what}: a column of {kind} cannot hold ids (ids are text or whole numbers)")
    if text.null_count:
        row = pc.index(pc.is_null(text), True).as_py()
        raise EntityIdError(f"{what}: null at row {row} (every row needs an id)")
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():
        raise EntityIdError(f"{what}: an empty id at row {pc.index(empty, True).as_py()}")
    return text
