"""A Redis connection on the event loop: the serving hot path's read without blocking the loop for its round trip.

The feature server answers reads on one event loop per worker. Sent through redis-py, each read's Redis round trip
blocks that loop for as long as Redis takes to answer (~50 µs on loopback, more across a network), time in which
the worker can do nothing else. Here the command is written to an asyncio transport and the reply awaited, so
the loop parses the next HTTP request meanwhile; several reads may be in flight on the one connection (Redis
answers in order).

The connection is opened by redis-py (``connection_class(**connection_kwargs)`` of the client's pool, so address,
password, database, Sentinel master and handshake are the client's own), then its socket is handed to the loop.
Replies are parsed by hiredis as redis-py does (bytes, in the protocol the handshake chose; an error reply raises
``ResponseError``, ``NOSCRIPT`` as ``NoScriptError``; out-of-band push messages are skipped). A call not answered
within the client's socket timeout fails with ``TimeoutError`` and drops the connection, as does any connection
error; the next call opens a new one. TLS connections are not handed over (:func:`supported` is False) and the
caller keeps redis-py's path.
"""

from __future__ import annotations

import asyncio
import collections
import os
import weakref
from typing import Any

import hiredis
import redis

_CLIENTS: weakref.WeakKeyDictionary[Any, LoopClient] = weakref.WeakKeyDictionary()  # pool -> its loop connection
CLOSE_WAIT_SECONDS = 1.0


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, hiredis.PushNotification):  # out of band (RESP3), not the answer to a call
                continue
            if not self.waiting:  # a reply no call waits for: the stream cannot be trusted
                self.close()
                return
            future = self.waiting.popleft()
            if future.done():  # timed out: the connection is being dropped anyway
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                noscript = message.startswith("NOSCRIPT")
                future.set_exception((redis.exceptions.NoScriptError if noscript else redis.exceptions.ResponseError)(
                    message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        error = redis.exceptions.ConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LoopClient:
    """Commands of one redis-py client's pool, sent on a connection of one event loop."""

    def __init__(self, pool: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.pool, self.loop, self.pid = pool, loop, os.getpid()
        self.timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        self.protocol: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def call(self, *args: Any) -> Any:
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._open()
        future = self.loop.create_future()
        protocol.waiting.append(future)
        protocol.transport.write(hiredis.pack_command(args))  # type: ignore[union-attr]
        if self.timeout is None:
            return await future
        timer = self.loop.call_later(self.timeout, self._expire, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, protocol: _Protocol, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(redis.exceptions.TimeoutError(f"Redis did not answer within {self.timeout} s"))
            protocol.close()  # the replies still due would answer the wrong calls

    async def _open(self) -> _Protocol:
        if self._opening is not None:  # another call is opening it: wait for that
            return await asyncio.shield(self._opening)
        self._opening = self.loop.create_future()
        try:
            connection = self.pool.connection_class(**self.pool.connection_kwargs)
            connection.connect()  # redis-py's own connect and handshake (auth, database, Sentinel master)
            sock, connection._sock = connection._sock, None  # take the socket over; redis-py forgets it
            connection.disconnect()
            _, protocol = await self.loop.create_connection(_Protocol, sock=sock)
            self.protocol = protocol
            self._opening.set_result(protocol)
            return protocol
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: a failed open with no one else waiting is not an error
            raise
        finally:
            self._opening = None

    def close(self) -> None:
        """Close the connection, from any thread (from the loop's own, it is closed by its next iteration)."""
        protocol, self.protocol = self.protocol, None
        if protocol is None or protocol.transport is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            protocol.close()
        else:
            self.loop.call_soon_threadsafe(protocol.close)

    async def aclose(self) -> None:
        """Close the connection and wait until its socket is closed."""
        protocol = self.protocol
        self.close()
        if protocol is not None and asyncio.get_running_loop() is self.loop:
            await asyncio.wait([protocol.closed], timeout=CLOSE_WAIT_SECONDS)


def supported(client: Any) -> bool:
    """Whether ``client``'s connections can be handed to the loop: plain TCP or unix-socket ones, not TLS ones and
    not a Redis Cluster's (whose client has a pool per node)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return False
    return not issubclass(pool.connection_class, redis.connection.SSLConnection)


async def loop_call(client: Any, *args: Any) -> Any:
    """``client.execute_command(*args)``'s reply (no response callback), without blocking the running loop."""
    loop = asyncio.get_running_loop()
    loop_client = _CLIENTS.get(client.connection_pool)
    if loop_client is None or loop_client.loop is not loop or loop_client.pid != os.getpid():
        if loop_client is not None:
            loop_client.close()  # of another loop (a test's earlier one) or of the parent process
        loop_client = _CLIENTS[client.connection_pool] = LoopClient(client.connection_pool, loop)
    return await loop_client.call(*args)


def close(client: Any) -> None:
    """Close ``client``'s loop connection, if it has one (:func:`~feature_platform.online.connection.release` does)."""
    loop_client = _pop(client)
    if loop_client is not None:
        loop_client.close()


async def aclose(client: Any) -> None:
    """:func:`close`, waiting on the running loop until the socket is closed (before stopping an embedded server,
    which stops only when no connection is left)."""
    loop_client = _pop(client)
    if loop_client is not None:
        await loop_client.aclose()


def _pop(client: Any) -> LoopClient | None:
    pool = getattr(client, "connection_pool", None)
    return _CLIENTS.pop(pool, None) if pool is not None else None
