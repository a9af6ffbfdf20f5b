"""Input limits of the server: the request body size, and the per-field rules of a raw event.

The body limit is a pure ASGI middleware so an oversized request is refused (413) before a byte of
it is parsed: by its Content-Length up front, or, for a chunked body, as soon as the bytes received
pass the limit. GET and HEAD requests (the hot path) pass straight through.

An event's fields follow raw ingestion's id and text rules (``sources/schema.py``, one definition, also
behind the read side's ``schemas.UserId``), so nothing lands that the server would refuse to read back;
numbers are bounded as ingestion bounds them. The checks here add JSON strictness (an integer user id
is refused, as reads refuse it) and name the field in pydantic's words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from feature_platform.serving.metrics import Receive, Scope, Send
from feature_platform.serving.schemas import Amount, MessageText, ShortText, UserIdOrNumber
from feature_platform.sources.entity_ids import canonical_id
from feature_platform.sources.schema import EVENTS

_BODYLESS = frozenset(("GET", "HEAD", "OPTIONS"))


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; FastAPI answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=_too_large(limit), headers={"connection": "close"})


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes (FP_MAX_BODY_BYTES)"


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``: no parsing, no buffering, and the connection is closed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        body = json.dumps({"detail": _too_large(max_bytes)}).encode()
        self._start = {"type": "http.response.start", "status": 413,
                       "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                   (b"connection", b"close")]}
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send(self._start)
                await send(self._body)
                return
        limit = self.max_bytes
        received = 0

        async def counted() -> Any:  # a chunked body (or a Content-Length that lies) is counted as it streams
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:  # read outside a route (which answers it itself): answer here
            await send(self._start)
            await send(self._body)


# -- raw events --------------------------------------------------------------------------------------
_RULES: dict[str, TypeAdapter[Any]] = {
    # strict (a float or a bool is not text) but for whole numbers, read as their text as batch reads read them
    "user_id": TypeAdapter(UserIdOrNumber, config={"strict": True}),
    "message_text": TypeAdapter(MessageText),
    "amount": TypeAdapter(Amount),
}
_SHORT_TEXT = TypeAdapter(ShortText)
_COLUMNS = frozenset(EVENTS.column_names)


def with_text_user_id(record: Any) -> Any:
    """``record`` with a whole-number ``user_id`` as its canonical text (``42`` is ``"42"``, as a raw file's
    integer ids land); anything else as it is (``event_problems`` refused the numbers that are no id)."""
    user = record.get("user_id") if isinstance(record, Mapping) else None
    if isinstance(user, int | float) and not isinstance(user, bool):
        return {**record, "user_id": canonical_id(user)}
    return record


def event_problems(records: Sequence[Any]) -> dict[int, dict[str, Any]]:
    """Rejections (by index, shaped as ``validate_event_records``'s) of events breaking the server's field rules.

    Only what the daily ingest does not check: id syntax, text lengths, number bounds. Types and
    unknown fields are left to ``validate_event_records`` (a value of the wrong JSON type is skipped here).
    """
    rejected: dict[int, dict[str, Any]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            continue
        reasons, details = [], []
        for name, value in record.items():
            if name not in _COLUMNS:
                continue
            rule = _RULES.get(name)
            if rule is None:
                if not isinstance(value, str):
                    continue
                rule = _SHORT_TEXT
            elif value is None or isinstance(value, bool | dict | list):
                continue
            try:
                rule.validate_python(value)
            except ValidationError as exc:
                reasons.append(f"invalid_{name}")
                details.append(f"{name}: {exc.errors()[0]['msg']}")
        if reasons:
            event_id = record.get("event_id")
            rejected[index] = {"index": index,
                               "event_id": event_id if isinstance(event_id, str) and len(event_id) <= 128 else None,
                               "reasons": reasons, "detail": "; ".join(details)}
    return rejected
