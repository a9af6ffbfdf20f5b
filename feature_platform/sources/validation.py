"""Row-level validation of raw inputs: every row is either accepted (typed, schema-exact) or
quarantined with the reason it was refused. ``accepted + quarantined == input``, always.

Validation is one DuckDB query per table (TRY_CAST + CASE), so millions of rows validate in seconds.
Each row gets the *first* failing rule, in this order: a row the reader could not read (``malformed_row``,
``invalid_encoding``: see loaders), missing required value, value that does not parse as its type (or is
not finite), rule on the value (unknown event type, negative amount, rating outside 1-5, time
in the future, ...), duplicate key. Among rows sharing a key, the first valid one in file order wins.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from feature_platform.offline.store import connect
from feature_platform.sources.loaders import ROW_FAULT, ROW_FAULT_DETAIL, SOURCE_FILE, SOURCE_ROW, LoadedSource
from feature_platform.sources.schema import (
    CONTROL_CHARACTERS,
    EVENT_TYPES,
    MAX_COUNT,
    MAX_MONEY,
    MAX_SHORT_TEXT,
    MAX_TEXT,
    USER_ID_PATTERN,
    RawTable,
)

QUARANTINE_META = ("reason", "detail", "source_file", "source_row")

# Value rules per table: (column, SQL condition that must hold on the typed value, reason).
# Conditions reference typed columns and the named parameters of rule_params. Numbers have finite bounds
# (schema.MAX_MONEY, MAX_COUNT) so that sums of them downstream stay finite; ids and texts follow the
# rules the server reads them back with (schema.USER_ID_PATTERN, MAX_SHORT_TEXT, MAX_TEXT).
_USER_ID = ("user_id", "regexp_full_match(user_id, $user_id_pattern)", "invalid_user_id")


def _short_text(column: str) -> tuple[str, str, str]:
    return (column, f'length("{column}") <= $max_short_text AND NOT regexp_matches("{column}", $control_characters)',
            f"invalid_{column}")


VALUE_RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "customers": (
        _USER_ID,
        ("age", "age BETWEEN 0 AND 120", "age_out_of_range"),
        ("signup_date", "signup_date <= $today", "signup_date_in_future"),
    ),
    "events": (
        _short_text("event_id"),
        _USER_ID,
        *(_short_text(c) for c in ("session_id", "channel", "listing_id", "conversation_id", "campaign_id")),
        ("message_text", "length(message_text) <= $max_text AND strpos(message_text, chr(0)) = 0",
         "invalid_message_text"),
        ("event_type", "list_contains($event_types, event_type)", "unknown_event_type"),
        ("timestamp", "timestamp <= $now", "timestamp_in_future"),
        ("timestamp", "timestamp >= $min_timestamp", "timestamp_before_partitions_start"),
        ("amount", "amount >= 0", "negative_amount"),
        ("amount", "amount <= $max_money", "amount_out_of_range"),
    ),
    "reviews": (
        _short_text("review_id"),
        _USER_ID,
        ("rating", "rating BETWEEN 1 AND 5", "rating_out_of_range"),
        ("timestamp", "timestamp <= $now", "timestamp_in_future"),
    ),
    "listings": (
        _short_text("listing_id"),
        ("price", "price >= 0", "negative_price"),
        ("price", "price <= $max_money", "price_out_of_range"),
        ("image_count", "image_count >= 0", "negative_image_count"),
        ("image_count", "image_count <= $max_count", "image_count_out_of_range"),
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
        return reason_counts(self.quarantined)

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined.num_rows / self.input_rows if self.input_rows else 0.0


def reason_counts(quarantined: pa.Table) -> dict[str, int]:
    """Quarantined rows per reason, sorted by reason: what the metadata and the summary show."""
    return dict(sorted(Counter(quarantined.column("reason").to_pylist()).items()))


def rule_params(now: dt.datetime, min_timestamp: dt.datetime) -> dict[str, object]:
    """The named parameters the rules may use (a query is given only those it uses: DuckDB refuses others)."""
    return {"now": now, "today": now.date(), "min_timestamp": min_timestamp, "event_types": list(EVENT_TYPES),
            "max_money": MAX_MONEY, "max_count": MAX_COUNT, "user_id_pattern": USER_ID_PATTERN.strip("^$"),
            "control_characters": CONTROL_CHARACTERS, "max_short_text": MAX_SHORT_TEXT, "max_text": MAX_TEXT}


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
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> ValidationResult:
    """Split ``source`` into accepted and quarantined rows. ``now`` is naive UTC. The work runs on ``cursor`` (a
    cursor of a long-lived database, closed here) or else on a new in-memory database, which costs about 10 ms
    to open: what a small batch of events from the API would otherwise spend most of its time on."""
    table = source.table
    con = connect() if cursor is None else cursor
    if cursor is not None:
        con.execute("SET TimeZone = 'UTC'")
    con.register("src", source.data)
    present = source.data.schema
    check_sql = _check_sql(table, present)
    available = rule_params(now, min_timestamp)
    params = {k: v for k, v in available.items() if f"${k}" in check_sql}  # DuckDB refuses unused ones
    # Only typed values and the reason are kept; the original text is re-read for refused rows only.
    con.execute(f"CREATE TEMP TABLE checked AS {check_sql}", params)
    typed = ", ".join(f'"{c.name}"' for c in table.columns)
    order = ", ".join(f'"{k}"' for k in SORT_KEYS[table.name])
    accepted = con.sql(f"SELECT {typed} FROM checked WHERE _reason IS NULL ORDER BY {order}").to_arrow_table()
    quarantined = con.sql(quarantine_sql(table, present)).to_arrow_table()
    con.close()
    return ValidationResult(
        table=table,
        input_rows=source.data.num_rows,
        accepted=accepted.cast(table.arrow_schema),
        quarantined=quarantined.cast(quarantine_schema(table)),
    )


def parse_column(source: LoadedSource, name: str) -> pa.ChunkedArray:
    """One column parsed to its contract type exactly as validation parses it (NULL where it fails)."""
    return parse_columns(source, [name]).column(name)


def parse_columns(source: LoadedSource, names: list[str]) -> pa.Table:
    """Columns parsed to their contract types exactly as validation parses them, in one query."""
    con = connect()
    con.register("src", source.data)
    exprs = ", ".join(f'{_typed_expr(source.table, source.data.schema, name)} AS "{name}"' for name in names)
    parsed = con.sql(f"SELECT {exprs} FROM src").to_arrow_table()
    con.close()
    return parsed.cast(pa.schema([pa.field(name, source.table.column(name).type) for name in names]))


def _typed_expr(table: RawTable, present: pa.Schema, name: str) -> str:
    if name in present.names:
        return _cast_expr(f'"{name}"', present.field(name).type, table.column(name).type)
    if name == table.key and table.derive_key:
        return f"CAST({SOURCE_FILE} AS VARCHAR) || ':' || CAST({SOURCE_ROW} AS VARCHAR)"
    if name in table.defaults_when_absent:
        return "'" + table.defaults_when_absent[name].replace("'", "''") + "'"
    return f"CAST(NULL AS {_duck_type(table.column(name).type)})"


def _raw_expr(present: pa.Schema, name: str, relation: str) -> str:
    """The value as the text that arrived (NULL when the file has no such column)."""
    return f'CAST({relation}."{name}" AS VARCHAR)' if name in present.names else "NULL"


def _check_sql(table: RawTable, present: pa.Schema) -> str:
    """One row per input row: source position, typed columns, and the first failing rule (or NULL).

    Only schema identifiers are formatted in; values are parameters.
    """
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    return f"""
        WITH reasoned AS ({first_failure_sql(table, present)})
        SELECT {SOURCE_FILE}, {SOURCE_ROW}, {columns}, CASE
                WHEN _first IS NULL AND row_number() OVER (
                    PARTITION BY "{table.key}" ORDER BY (_first IS NOT NULL), {SOURCE_FILE}, {SOURCE_ROW}) > 1
                THEN '{duplicate_reason(table)}' ELSE _first END AS _reason
        FROM reasoned
    """


def duplicate_reason(table: RawTable) -> str:
    return f"duplicate_{table.key}"


def first_failure_sql(table: RawTable, present: pa.Schema) -> str:
    """Source position, typed columns and ``_first``, the first failing row-level rule (NULL: none).

    Every rule but the duplicate key looks at its own row only, so this can run on any slice of the input.
    """
    typed_exprs, given_exprs, required_checks, parse_checks = [], [], [], []
    for column in table.columns:
        name = column.name
        typed_exprs.append(f'{_typed_expr(table, present, name)} AS "{name}"')
        given_exprs.append(f'{_given_expr(present, name)} AS "_given_{name}"')
        if column.required:
            required_checks.append(
                f"""WHEN NOT "_given_{name}" AND coalesce(trim(CAST("{name}" AS VARCHAR)), '') = '' THEN 'missing_{name}'"""
            )
        parse_checks.append(f"""WHEN "_given_{name}" AND "{name}" IS NULL THEN 'invalid_{name}'""")
    rule_checks = [
        f"""WHEN "{col}" IS NOT NULL AND NOT ({condition}) THEN '{reason}'"""
        for col, condition, reason in VALUE_RULES.get(table.name, ())
    ]
    fault_checks = [f'WHEN "{ROW_FAULT}" IS NOT NULL THEN "{ROW_FAULT}"'] if ROW_FAULT in present.names else []
    first_failure = "CASE " + " ".join(fault_checks + required_checks + parse_checks + rule_checks) + " END"
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    fault = f', "{ROW_FAULT}"' if fault_checks else ""
    return f"""
        WITH typed AS (
            SELECT {SOURCE_FILE}, {SOURCE_ROW}, {", ".join(typed_exprs)}, {", ".join(given_exprs)}{fault} FROM src
        )
        SELECT {SOURCE_FILE}, {SOURCE_ROW}, {columns}, {first_failure} AS _first FROM typed
    """


def _given_expr(present: pa.Schema, name: str) -> str:
    """Whether the row has a value at all: non-blank text (NULL when the file has no such column)."""
    if name in present.names and _never_blank(present.field(name).type):
        return f'src."{name}" IS NOT NULL'  # a number or a time is never blank text: skip formatting it
    return f"coalesce(trim({_raw_expr(present, name, 'src')}), '') <> ''"


def _never_blank(arrow_type: pa.DataType) -> bool:
    return (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type))


def quarantine_sql(table: RawTable, present: pa.Schema,
                    refused: str = "(SELECT * FROM checked WHERE _reason IS NOT NULL)") -> str:
    """Refused rows with their original text, the reason, a detail naming the value, and the source.

    ``refused`` is the relation of refused rows: source position, typed columns and ``_reason``.
    """
    raw = ", ".join(f'{_raw_expr(present, c.name, "s")} AS "{c.name}"' for c in table.columns)
    # A row the reader could not read has its own detail (file, row, what is wrong).
    fault = f'WHEN s."{ROW_FAULT_DETAIL}" IS NOT NULL THEN s."{ROW_FAULT_DETAIL}" ' if ROW_FAULT_DETAIL in present.names else ""
    detail = "CASE " + fault + " ".join(
        f"""WHEN b._reason LIKE '%\\_{c.name}' ESCAPE '\\' OR b._reason LIKE '{c.name}\\_%' ESCAPE '\\'
              THEN '{c.name}=' || coalesce({_raw_expr(present, c.name, "s")}, CAST(b."{c.name}" AS VARCHAR), 'null')"""
        for c in table.columns
    ) + " END"
    day = ", strftime(b.timestamp, '%Y-%m-%d') AS partition" if table.name == "events" else ""
    return f"""
        SELECT {raw}, b._reason AS reason, {detail} AS detail, CAST(b.{SOURCE_FILE} AS VARCHAR) AS source_file,
               b.{SOURCE_ROW} AS source_row{day}
        FROM {refused} b
        JOIN src s ON s.{SOURCE_FILE} = b.{SOURCE_FILE} AND s.{SOURCE_ROW} = b.{SOURCE_ROW}
        ORDER BY source_file, source_row
    """


def _cast_expr(col: str, source: pa.DataType, target: pa.DataType) -> str:
    if source.equals(target) and not pa.types.is_floating(target):
        return col
    text = f"trim(CAST({col} AS VARCHAR))"
    if pa.types.is_string(target):
        return f"CAST({col} AS VARCHAR)"
    if pa.types.is_integer(target):
        as_double = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN isfinite({as_double}) AND {as_double} = floor({as_double}) THEN TRY_CAST({as_double} AS {_duck_type(target)}) END"
    if pa.types.is_floating(target) and pa.types.is_floating(source):  # NaN and ±inf are no amount
        return f"CASE WHEN isfinite({col}) THEN CAST({col} AS DOUBLE) END"
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
