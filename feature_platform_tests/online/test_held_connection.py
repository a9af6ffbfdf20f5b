"""held_call: the serving hot path's Redis commands on a connection each thread keeps, with the client's answers."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from feature_platform.online.connection import held_call, release


@pytest.fixture
def client(redis_url):
    client = redis.Redis.from_url(redis_url)
    key = f"fptest:{uuid.uuid4().hex[:8]}:held"
    client.set(key, b"value")
    client.key = key  # type: ignore[attr-defined]
    yield client
    client.delete(key)
    client.connection_pool.disconnect()


def own_id(client) -> int:
    """The id Redis gives the connection a held_call runs on."""
    return held_call(client, "CLIENT", "ID")


def test_answers_as_the_client_does_on_one_connection_per_thread(client):
    assert held_call(client, "GET", client.key) == client.get(client.key) == b"value"
    assert held_call(client, "EVAL", "return {1, 'a', false}", 0) == client.eval("return {1, 'a', false}", 0)
    first = own_id(client)
    assert own_id(client) == first  # kept between calls
    ids = []
    thread = threading.Thread(target=lambda: ids.append(own_id(client)))
    thread.start()
    thread.join()
    assert ids and ids[0] != first  # another thread, another connection
    assert client.connection_pool._in_use_connections  # still the pool's, so pool.disconnect() reaches it


def test_an_error_reply_is_raised_and_the_connection_kept(client):
    first = own_id(client)
    with pytest.raises(redis.exceptions.ResponseError, match="wrong number of arguments|unknown command"):
        held_call(client, "GET")
    assert own_id(client) == first


def test_a_connection_the_server_dropped_is_replaced_and_the_call_answered(client):
    first = own_id(client)
    client.client_kill_filter(_id=first)  # as after a Redis restart or an idle timeout
    assert held_call(client, "GET", client.key) == b"value"  # answered through the client's own path
    again = own_id(client)
    assert again != first and own_id(client) == again  # and a new connection kept from then on


def test_release_closes_it_and_a_later_call_reconnects(client):
    first = own_id(client)
    release(client)
    ids = {int(c["id"]) for c in redis.Redis(connection_pool=redis.ConnectionPool(
        **client.connection_pool.connection_kwargs)).client_list()}
    assert first not in ids
    assert held_call(client, "GET", client.key) == b"value"
