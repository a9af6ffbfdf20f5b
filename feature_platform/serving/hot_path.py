"""The two read routes every client calls, answered without FastAPI's per-request machinery.

``GET /features/{user_id}`` and ``POST /features/batch`` carry most of a feature server's traffic. Through
FastAPI a request pays routing, dependency solving, a request model and a response object, about 0.1 ms of
CPU before the handler runs. :class:`HotPath` is a pure ASGI middleware inside the app's others (latency
metrics, audit log, body limit: they see these requests as before): it recognises the two routes, checks
the inputs by the same rules (the path's id pattern, the query parameters, ``BatchRequest`` for the body),
authorises with the same :class:`~feature_platform.serving.auth.Access`, and calls the same handler code
the routes use. Answers are identical: what the handler returns, or the error it raises, rendered as
FastAPI renders it.

Anything it does not recognise exactly (another route, a query parameter it does not parse the way FastAPI
would, an input that fails validation) goes to the app untouched, the request body replayed, so FastAPI
answers it (its 422 names the field). The route template and path parameters are set on the scope, so the
latency histogram and the audit log label these requests as FastAPI would.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
import redis
from fastapi import HTTPException
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from feature_platform.serving.auth import FEATURES_READ, Access
from feature_platform.serving.metrics import Receive, Scope, Send
from feature_platform.serving.schemas import BatchRequest
from feature_platform.sources.schema import USER_ID_PATTERN

PREFIX = "/features/"
BATCH_PATH = "/features/batch"
MAX_FEATURES_QUERY = 20_000  # the route's `features` max_length
USER_ID = re.compile(USER_ID_PATTERN)
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class Handlers:
    """What the routes do, shared with them: ``single(user_id, features, defaults)`` and ``batch(body)``
    return (are awaited for) the answer's content or raise the HTTPException the route would; ``single_route``
    and ``batch_route`` are the routes themselves (their templates label metrics and audit lines)."""

    single: Callable[[str, str | None, bool], Awaitable[Any]]
    batch: Callable[[BatchRequest], Awaitable[Any]]
    single_route: APIRoute
    batch_route: APIRoute


class HotPath:
    def __init__(self, app: Any, access: Access, handlers: Callable[[], Handlers | None]) -> None:
        self.app, self.access, self.handlers = app, access, handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handlers = self.handlers() if scope["type"] == "http" else None
        if handlers is not None:
            method, path = scope["method"], scope["path"]
            if method == "GET" and path.startswith(PREFIX):
                handle = self._single(scope, handlers, path[len(PREFIX):])
                if handle is not None:
                    await (await self._answer(scope, handle))(scope, receive, send)
                    return
            elif method == "POST" and path == BATCH_PATH:
                body, receive = await _read_body(receive)
                handle = self._batch(scope, handlers, body)
                if handle is not None:
                    await (await self._answer(scope, handle))(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _single(self, scope: Scope, handlers: Handlers, user_id: str) -> Callable[[], Awaitable[Any]] | None:
        if "/" in user_id or not USER_ID.match(user_id) or user_id == "batch":
            return None
        query = _single_query(scope["query_string"])
        if query is None:
            return None
        _route(scope, handlers.single_route, {"user_id": user_id})
        return lambda: handlers.single(user_id, *query)

    def _batch(self, scope: Scope, handlers: Handlers, body: bytes) -> Callable[[], Awaitable[Any]] | None:
        if scope["query_string"] or not _is_json(scope):
            return None
        try:  # as FastAPI reads a body: JSON to Python, then the model in Python mode
            request = BatchRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None  # FastAPI's 422, with its wording
        _route(scope, handlers.batch_route, {})

        def handle() -> Awaitable[Any]:  # authorised by then, as the route records the users only once it runs
            scope.setdefault("state", {})["users"] = len(request.user_ids)  # for the audit log
            return handlers.batch(request)
        return handle

    async def _answer(self, scope: Scope, handle: Callable[[], Awaitable[Any]]) -> Response | _Answer:
        """The route's answer: authorise (as the route's dependency does), then the handler; an HTTPException
        or a Redis error becomes the response the app's handlers would give."""
        try:
            self._authorize(scope)
            return _Answer(encode(await handle()))
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        except redis.exceptions.RedisError as exc:
            return JSONResponse({"detail": f"online store error: {exc}"}, status_code=503)

    def _authorize(self, scope: Scope) -> None:
        key = token = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1") or None
            elif name == b"authorization" and self.access.tokens is not None:
                scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
                token = credentials if scheme.lower() == "bearer" and credentials else None
        self.access.authorize(Request(scope), FEATURES_READ, key, token)


class _Answer:
    """A 200 with a JSON body, sent as the two ASGI messages a Starlette ``Response`` sends (same headers),
    without building one per request."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(self.body)).encode()), *_JSON_HEADERS]})
        await send({"type": "http.response.body", "body": self.body})


def encode(content: Any) -> bytes:
    """JSON bytes of ``content`` as the server sends it: NaN and infinities as null, anything that is not
    JSON by ``str`` (datetimes and dataclasses included, as ``json.dumps(default=str)`` has them)."""
    try:
        return orjson.dumps(content, default=str,
                            option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)
    except TypeError:  # an integer beyond 64 bits, which orjson refuses and the standard library writes
        return json.dumps(finite(content), separators=(",", ":"), default=str).encode()


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: such floats are sent as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def _single_query(raw: bytes) -> tuple[str | None, bool] | None:
    """``(features, defaults)`` of a query string the way the route reads it, or None to let FastAPI read it
    (a repeated or unknown parameter, ``version``, a ``defaults`` other than true/false, an overlong list)."""
    if not raw:
        return None, False
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or not set(names) <= {"features", "defaults"}:
        return None
    given = dict(pairs)
    features = given.get("features")
    if features is not None and len(features) > MAX_FEATURES_QUERY:
        return None
    defaults = given.get("defaults", "false")
    if defaults not in ("true", "false"):
        return None
    return features, defaults == "true"


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


def _route(scope: Scope, route: APIRoute, params: dict[str, str]) -> None:
    scope["route"] = route
    scope["path_params"] = params
    scope["endpoint"] = route.endpoint


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that replays it to whoever reads the request next."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _replay([message], receive)
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[MutableMapping[str, Any]], receive: Receive) -> Receive:
    async def replayed() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else await receive()
    return replayed
