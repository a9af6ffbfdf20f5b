"""One entity's feature vector as one compact Redis value, exact for every registry type.

A vector is a MessagePack array of the values in the order of a *layout* (the ordered feature names
of one pushed version, stored with that version), so names are not repeated in every key. MessagePack
keeps what the registry types need: ints as ints, floats as 64-bit doubles (bit-exact), booleans,
``nil`` for null (distinct from 0 and from an empty map), maps as maps and vectors as arrays.

Maps arrive from Parquet as ``[(key, value), ...]`` pairs and come back as ``{key: value}``; the
pair order carries no meaning (a map feature is a set of keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import pyarrow as pa


def encode(values: Sequence[Any]) -> bytes:
    return msgpack.packb(list(values), use_bin_type=True)


def decode(blob: bytes) -> list[Any]:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True)


def rows_to_values(table: pa.Table, layout: Sequence[str], types: Mapping[str, str]) -> list[list[Any]]:
    """Per row of ``table``, its values in ``layout`` order, maps turned into dicts."""
    columns = []
    for name in layout:
        values = table.column(name).to_pylist()
        if types[name] == "map":
            values = [None if v is None else dict(v) for v in values]
        columns.append(values)
    return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(table.num_rows)]
