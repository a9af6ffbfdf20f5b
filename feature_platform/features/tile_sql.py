"""SQL pieces several tiles share. Event types are query parameters; column names are identifiers."""

from __future__ import annotations

from typing import Any

from feature_platform.sources.schema import EVENT_TYPES

EVENT_COUNT_COLUMNS: tuple[str, ...] = tuple(f"n_{event_type}" for event_type in EVENT_TYPES)


def event_counts() -> tuple[str, dict[str, Any]]:
    """``count(*) FILTER (...) AS n_<type>`` for every event type, and the parameters it binds."""
    params = {f"type_{i}": event_type for i, event_type in enumerate(EVENT_TYPES)}
    sql = ",\n".join(f'count(*) FILTER (WHERE event_type = $type_{i}) AS "{name}"'
                     for i, name in enumerate(EVENT_COUNT_COLUMNS))
    return sql, params
