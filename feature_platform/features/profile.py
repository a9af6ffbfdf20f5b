"""Profile family: age, premium and one-hot profile attributes over the registry's fixed vocabularies.

For each attribute in the family config's ``one_hot`` there is one int column per vocabulary value
(``location_lisbon``) plus ``<attr>__other`` (a non-empty value outside the vocabulary) and
``<attr>__missing`` (null or blank). Values are matched after trimming whitespace and lowercasing
(" Lisbon " -> location_lisbon), so exactly one of an attribute's columns is 1 on every row. The
columns come from the registry, not the data: every partition has the same columns.

No tiles: a profile has no time window. Every snapshot day of a run gets the same values (for the
users known that day), computed once per block of users.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from feature_platform.features.engine import MergeContext
from feature_platform.offline.store import connect
from feature_platform.registry.registry import load_registry
from feature_platform.sources.schema import CUSTOMERS

LOOKBACK = 1
# What "trim" removes: ASCII whitespace (Python's str.strip() on ASCII text).
WHITESPACE = " \t\n\r\f\v"


def one_hot_sql(one_hot: list[str]) -> tuple[str, dict[str, str]]:
    """The select list of the profile features over a table aliased ``u``, and its parameters."""
    vocabularies = load_registry().vocabularies
    params: dict[str, str] = {"whitespace": WHITESPACE}
    columns = []
    for attr in one_hot:
        CUSTOMERS.column(attr)  # raises, naming the columns, if the config names a non-profile attribute
        if attr not in vocabularies:
            raise ValueError(f"profile one_hot attribute {attr!r} has no vocabulary in the registry")
        # Attribute and column names are identifiers from the raw contract and registry; values are parameters.
        value = f'lower(trim(u."{attr}", $whitespace))'
        names = []
        for word in vocabularies[attr]:
            key = f"v{len(params)}"
            params[key] = word.lower()
            names.append(f"${key}")
            columns.append(f'CAST(coalesce({value} = ${key}, false) AS INTEGER) AS "{attr}_{word}"')
        unknown = f"{value} NOT IN ({', '.join(names)})" if names else "true"
        columns.append(f'CAST(coalesce({value} <> \'\' AND {unknown}, false) AS INTEGER) AS "{attr}__other"')
        columns.append(f"CAST(coalesce({value} = '', true) AS INTEGER) AS \"{attr}__missing\"")
    return "u.age, u.premium" + "".join(f",\n{c}" for c in columns), params


def snapshots(ctx: MergeContext) -> Iterator[dict[str, pa.Array]]:
    select, params = one_hot_sql(list(ctx.config["one_hot"]))
    with connect(threads=1) as con:
        con.register("customers", ctx.customers)
        table = con.sql(f"SELECT {select} FROM customers u", params=params).to_arrow_table()
    features = {name: table.column(name).combine_chunks() for name in table.column_names}
    for _ in ctx.days:
        yield features
