"""loop_call: Redis commands awaited on the event loop, with redis-py's answers, errors, timeouts and reconnects."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid

import hiredis
import pytest
import redis

from feature_platform.online import loop_connection
from feature_platform.online.loop_connection import aclose, loop_call


@pytest.fixture
def client(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    key = f"fptest:{uuid.uuid4().hex[:8]}:loop"
    client.set(key, b"value")
    client.key = key  # type: ignore[attr-defined]
    yield client
    client.delete(key)
    loop_connection.close(client)
    client.connection_pool.disconnect()


def run(coro):
    return asyncio.run(coro)


def test_replies_are_redis_pys_and_many_calls_share_one_connection_in_order(client):

    async def go():
        script = await loop_call(client, "EVAL", "return {1, 'a', false, {ARGV[1]}}", 0, "x")
        same = await asyncio.gather(*(loop_call(client, "GET", client.key) for _ in range(50)))
        echoes = await asyncio.gather(*(loop_call(client, "ECHO", str(i)) for i in range(200)))
        ids = {await loop_call(client, "CLIENT", "ID") for _ in range(5)}
        return script, same, echoes, ids

    script, same, echoes, ids = run(go())
    assert script == client.eval("return {1, 'a', false, {ARGV[1]}}", 0, "x") == [1, b"a", None, [b"x"]]
    assert same == [b"value"] * 50
    assert echoes == [str(i).encode() for i in range(200)]  # each call gets its own reply, in order
    assert len(ids) == 1


def test_error_replies_raise_as_redis_py_does_and_the_connection_serves_on(client):
    async def go():
        with pytest.raises(redis.exceptions.NoScriptError):
            await loop_call(client, "EVALSHA", "0" * 40, 0)
        with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments"):
            await loop_call(client, "GET")
        first = await loop_call(client, "CLIENT", "ID")
        assert await loop_call(client, "GET", client.key) == b"value"
        return first, await loop_call(client, "CLIENT", "ID")

    first, again = run(go())
    assert first == again


def test_a_dropped_connection_fails_its_calls_and_the_next_call_reconnects(client):
    async def go():
        first = await loop_call(client, "CLIENT", "ID")
        pending = asyncio.ensure_future(loop_call(client, "BLPOP", f"{client.key}:empty", 1))
        await asyncio.sleep(0.1)
        client.client_kill_filter(_id=first)  # as a Redis restart or a failover would
        with pytest.raises(redis.exceptions.ConnectionError):
            await pending
        again = await loop_call(client, "CLIENT", "ID")
        return first, again, await loop_call(client, "GET", client.key)

    first, again, value = run(go())
    assert again != first and value == b"value"


def test_aclose_closes_the_socket(client):
    async def go():
        own = await loop_call(client, "CLIENT", "ID")
        await aclose(client)
        return own

    own = run(go())
    assert own not in {int(c["id"]) for c in client.client_list()}


class Silent:
    """A server that speaks RESP (+OK to everything but HELLO, so redis-py's handshake passes) until it is sent
    ``GET stall``; from then on it reads but never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn: socket.socket) -> None:
        reader, stalled = hiredis.Reader(), False
        while data := conn.recv(65536):
            reader.feed(data)
            while (command := reader.gets()) is not False:
                stalled = stalled or command[:2] == [b"GET", b"stall"]
                if command[0] == b"HELLO":
                    conn.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")  # RESP3, as redis-py asks for
                elif not stalled:
                    conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.listener.close()


def test_a_call_not_answered_within_the_socket_timeout_fails_and_drops_the_connection():
    server = Silent()
    client = redis.Redis(port=server.port, socket_timeout=0.3)
    try:
        async def go():
            assert await loop_call(client, "PING") == b"OK"
            first = loop_connection._CLIENTS[client.connection_pool].protocol
            with pytest.raises(redis.exceptions.TimeoutError, match="within 0.3 s"):
                await loop_call(client, "GET", "stall")
            await asyncio.sleep(0)  # the dropped connection's close completes
            assert first.transport is None
            return await loop_call(client, "PING")  # a new connection (the server answers it again)

        assert run(go()) == b"OK"
    finally:
        loop_connection.close(client)
        server.close()


def test_tls_and_cluster_clients_keep_redis_pys_path():
    assert not loop_connection.supported(redis.Redis(ssl=True))
    assert loop_connection.supported(redis.Redis(unix_socket_path="/tmp/none.sock"))
    assert not loop_connection.supported(redis.RedisCluster.__new__(redis.RedisCluster))


def test_the_scripted_read_on_the_loop_answers_as_the_blocking_one(client):
    from feature_platform.online import scripted_read

    prefix = client.key.rsplit(":", 1)[0]
    client.hset(f"{prefix}:current", "version", "v1")
    client.set(f"{prefix}:v1:u:a", b"blob-a")
    client.hset(f"{prefix}:v1:e:a", mapping={"f": b"1"})
    try:
        blocking = scripted_read.read(client, f"{prefix}:current", prefix, None, ["a", "b"])
        client.script_flush()  # the loop's read loads the script again, as the blocking one does
        on_loop = run(scripted_read.read_async(client, f"{prefix}:current", prefix, None, ["a", "b"]))
        assert on_loop == blocking == (b"v1", [b"blob-a", {b"f": b"1"}, None, {}])
    finally:
        client.delete(f"{prefix}:current", f"{prefix}:v1:u:a", f"{prefix}:v1:e:a")


def test_push_messages_between_replies_are_not_taken_for_answers(client):
    async def go():
        own = await loop_call(client, "CLIENT", "ID")
        assert await loop_call(client, "CLIENT", "TRACKING", "ON") == b"OK"
        assert await loop_call(client, "GET", client.key) == b"value"  # now tracked: a change pushes an invalidation
        client.set(client.key, b"changed")
        await asyncio.sleep(0.05)
        echoes = [await loop_call(client, "ECHO", str(i)) for i in range(3)]
        return own, echoes, await loop_call(client, "GET", client.key), await loop_call(client, "CLIENT", "ID")

    own, echoes, value, still = run(go())
    assert echoes == [b"0", b"1", b"2"] and value == b"changed"
    assert still == own  # the push did not cost the connection


def test_a_read_whose_loop_connection_is_lost_is_read_again_through_redis_py(client, monkeypatch):
    from feature_platform.online import scripted_read

    prefix = client.key.rsplit(":", 1)[0]
    client.hset(f"{prefix}:current", "version", "v1")
    client.set(f"{prefix}:v1:u:a", b"blob-a")

    async def lost(*_args):
        raise redis.exceptions.ConnectionError("connection to Redis lost: reset")

    try:
        monkeypatch.setattr(scripted_read, "loop_call", lost)
        assert run(scripted_read.read_async(client, f"{prefix}:current", prefix, None, ["a"])) == (b"v1", [b"blob-a", {}])

        async def hung(*_args):
            raise redis.exceptions.TimeoutError("Redis did not answer within 2 s")
        monkeypatch.setattr(scripted_read, "loop_call", hung)  # a timeout is not read again: it would wait as long
        with pytest.raises(redis.exceptions.TimeoutError):
            run(scripted_read.read_async(client, f"{prefix}:current", prefix, None, ["a"]))
    finally:
        client.delete(f"{prefix}:current", f"{prefix}:v1:u:a")
