"""Profile family: age, premium and one-hot profile attributes over the registry's fixed vocabularies.

For each attribute in the family config's ``one_hot`` there is one int column per vocabulary value
(``location_lisbon``) plus ``<attr>__other`` (a non-empty value outside the vocabulary) and
``<attr>__missing`` (null or blank). Values are matched after trimming whitespace and lowercasing
(" Lisbon " -> location_lisbon), so exactly one of an attribute's columns is 1 on every row. The
columns come from the registry, not the data: every partition has the same columns.
"""

from __future__ import annotations

import pyarrow as pa

from feature_platform.features.base import SnapshotContext
from feature_platform.registry.registry import load_registry
from feature_platform.sources.schema import CUSTOMERS

# What "trim" removes: ASCII whitespace (Python's str.strip() on ASCII text).
WHITESPACE = " \t\n\r\f\v"


def compute(ctx: SnapshotContext) -> pa.Table:
    vocabularies = load_registry().vocabularies
    params: dict[str, str] = {"whitespace": WHITESPACE}
    columns = []
    for attr in ctx.config["one_hot"]:
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
    one_hot = "".join(f",\n{c}" for c in columns)
    return ctx.sql(f"SELECT u.user_id, u.age, u.premium{one_hot}\nFROM users u", **params).to_arrow_table()
