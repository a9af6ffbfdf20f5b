"""Row-level validation of raw inputs: every row is either accepted (typed, schema-exact) or
quarantined with the reason it was refused. ``accepted + quarantined == input``, always.

Validation is one DuckDB query per table (TRY_CAST + CASE), so millions of rows validate in seconds.
Each row gets the *first* failing rule, in this order: missing required value, value that does not
parse as its type, rule on the value (unknown event type, negative amount, rating outside 1-5, time
in the future, ...), duplicate key. Among rows sharing a key, the first valid one in file order wins.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from feature_platform.offline.store import connect
from feature_platform.sources.loaders import SOURCE_FILE, SOURCE_ROW, LoadedSource
from feature_platform.sources.schema import EVENT_TYPES, RawTable

QUARANTINE_META = ("reason", "detail", "source_file", "source_row")

# Value rules per table: (column, SQL condition that must hold on the typed value, reason).
# Conditions reference typed columns and the named parameters $now, $today, $event_types, $min_timestamp.
VALUE_RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "customers": (
        ("age", "age BETWEEN 0 AND 120", "age_out_of_range"),
        ("signup_date", "signup_date <= $today", "signup_date_in_future"),
    ),
    "events": (
        ("event_type", "list_contains($event_types, event_type)", "unknown_event_type"),
        ("timestamp", "timestamp <= $now", "timestamp_in_future"),
        ("timestamp", "timestamp >= $min_timestamp", "timestamp_before_partitions_start"),
        ("amount", "amount >= 0", "negative_amount"),
    ),
    "reviews": (
        ("rating", "rating BETWEEN 1 AND 5", "rating_out_of_range"),
        ("timestamp", "timestamp <= $now", "timestamp_in_future"),
    ),
    "listings": (
        ("price", "price >= 0", "negative_price"),
        ("image_count", "image_count >= 0", "negative_image_count"),
    ),
}

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("user_id",),
    "events": ("timestamp", "event_id"),
    "reviews": ("timestamp", "review_id"),
    "listings": ("listing_id",),
}


@dataclass(frozen=True)
class ValidationResult:
    table: RawTable
    input_rows: int
    accepted: pa.Table  # exactly table.arrow_schema
    quarantined: pa.Table  # quarantine_schema(table)

    @property
    def reasons(self) -> dict[str, int]:
        counts = Counter(self.quarantined.column("reason").to_pylist())
        return dict(sorted(counts.items()))

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined.num_rows / self.input_rows if self.input_rows else 0.0


def quarantine_schema(table: RawTable) -> pa.Schema:
    """Quarantined rows keep every schema column as the text that arrived, plus why and where."""
    fields = [pa.field(c.name, pa.string()) for c in table.columns]
    fields += [pa.field("reason", pa.string()), pa.field("detail", pa.string()),
               pa.field("source_file", pa.string()), pa.field("source_row", pa.int64())]
    if table.name == "events":
        fields.append(pa.field("partition", pa.string()))
    return pa.schema(fields)


def validate(
    source: LoadedSource,
    now: dt.datetime,
    min_timestamp: dt.datetime = dt.datetime(1970, 1, 1),
) -> ValidationResult:
    """Split ``source`` into accepted and quarantined rows. ``now`` is naive UTC."""
    table = source.table
    con = connect()
    con.register("src", source.data)
    sql = _validation_sql(table, source.data.schema)
    available = {"now": now, "today": now.date(), "min_timestamp": min_timestamp, "event_types": list(EVENT_TYPES)}
    params = {k: v for k, v in available.items() if f"${k}" in sql}  # DuckDB refuses unused ones
    con.execute(f"CREATE TEMP TABLE checked AS {sql}", params)
    typed = ", ".join(f'"{c.name}"' for c in table.columns)
    order = ", ".join(f'"{k}"' for k in SORT_KEYS[table.name])
    accepted = con.sql(f"SELECT {typed} FROM checked WHERE _reason IS NULL ORDER BY {order}").to_arrow_table()
    raw = ", ".join(f'"_raw_{c.name}" AS "{c.name}"' for c in table.columns)
    extra = ", strftime(timestamp, '%Y-%m-%d') AS partition" if table.name == "events" else ""
    quarantined = con.sql(
        f"SELECT {raw}, _reason AS reason, _detail AS detail, {SOURCE_FILE} AS source_file, "
        f"{SOURCE_ROW} AS source_row{extra} FROM checked WHERE _reason IS NOT NULL ORDER BY source_file, source_row"
    ).to_arrow_table()
    con.close()
    return ValidationResult(
        table=table,
        input_rows=source.data.num_rows,
        accepted=accepted.cast(table.arrow_schema),
        quarantined=quarantined.cast(quarantine_schema(table)),
    )


def _validation_sql(table: RawTable, present: pa.Schema) -> str:
    """Build the validation query. Only schema identifiers are formatted in; values are parameters."""
    raw_exprs, typed_exprs, parse_checks, required_checks = [], [], [], []
    for column in table.columns:
        name = column.name
        if name in present.names:
            raw = f'CAST("{name}" AS VARCHAR)'
            typed = _cast_expr(f'"{name}"', present.field(name).type, column.type)
        elif name == table.key and table.derive_key:
            raw = "NULL"
            typed = f"CAST({SOURCE_FILE} AS VARCHAR) || ':' || CAST({SOURCE_ROW} AS VARCHAR)"
        elif name in table.defaults_when_absent:
            raw = "NULL"
            typed = "'" + table.defaults_when_absent[name].replace("'", "''") + "'"
        else:
            raw, typed = "NULL", f"CAST(NULL AS {_duck_type(column.type)})"
        raw_exprs.append(f'{raw} AS "_raw_{name}"')
        typed_exprs.append(f'{typed} AS "{name}"')
        if column.required:
            required_checks.append(
                f"""WHEN coalesce(trim("_raw_{name}"), '') = '' AND coalesce(trim(CAST("{name}" AS VARCHAR)), '') = ''
                      THEN 'missing_{name}'"""
            )
        parse_checks.append(
            f"""WHEN "_raw_{name}" IS NOT NULL AND trim("_raw_{name}") <> '' AND "{name}" IS NULL THEN 'invalid_{name}'"""
        )
    rule_checks = [
        f"""WHEN "{col}" IS NOT NULL AND NOT ({condition}) THEN '{reason}'"""
        for col, condition, reason in VALUE_RULES.get(table.name, ())
    ]
    first_failure = "CASE " + " ".join(required_checks + parse_checks + rule_checks) + " END"
    detail = "CASE " + " ".join(
        f"""WHEN _reason LIKE '%\\_{c.name}' ESCAPE '\\' OR _reason LIKE '{c.name}\\_%' ESCAPE '\\'
              THEN '{c.name}=' || coalesce("_raw_{c.name}", CAST("{c.name}" AS VARCHAR), 'null')"""
        for c in table.columns
    ) + " END"
    key = f'"{table.key}"'
    return f"""
        WITH typed AS (
            SELECT {SOURCE_FILE}, {SOURCE_ROW}, {", ".join(raw_exprs)}, {", ".join(typed_exprs)} FROM src
        ), reasoned AS (
            SELECT *, {first_failure} AS _first FROM typed
        ), deduped AS (
            SELECT *, CASE
                WHEN _first IS NULL AND row_number() OVER (
                    PARTITION BY {key} ORDER BY (_first IS NOT NULL), {SOURCE_FILE}, {SOURCE_ROW}) > 1
                THEN 'duplicate_{table.key}' ELSE _first END AS _reason
            FROM reasoned
        )
        SELECT *, {detail} AS _detail FROM deduped
    """


def _cast_expr(col: str, source: pa.DataType, target: pa.DataType) -> str:
    if source.equals(target):
        return col
    text = f"trim(CAST({col} AS VARCHAR))"
    if pa.types.is_string(target):
        return f"CAST({col} AS VARCHAR)"
    if pa.types.is_integer(target):
        as_double = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN isfinite({as_double}) AND {as_double} = floor({as_double}) THEN TRY_CAST({as_double} AS {_duck_type(target)}) END"
    if pa.types.is_floating(target):
        as_double = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN isfinite({as_double}) THEN {as_double} END"
    if pa.types.is_boolean(target):
        return (
            f"CASE WHEN lower({text}) IN ('true', 't', '1', 'yes', 'y') THEN true "
            f"WHEN lower({text}) IN ('false', 'f', '0', 'no', 'n') THEN false END"
        )
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(source) and source.tz is None:
            return f"CAST({col} AS TIMESTAMP)"
        return f"CAST(timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) AS TIMESTAMP)"
    if pa.types.is_date(target):
        return f"COALESCE(TRY_CAST({text} AS DATE), CAST(TRY_CAST({text} AS TIMESTAMP) AS DATE))"
    raise TypeError(f"no cast from {source} to {target}")


def _duck_type(arrow_type: pa.DataType) -> str:
    mapping = {
        pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN", pa.timestamp("us"): "TIMESTAMP", pa.date32(): "DATE",
    }
    return mapping[arrow_type]
