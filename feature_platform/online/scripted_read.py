"""A read of many users as one Redis command: a Lua script that follows the pointer and fetches, per user,
the vector and its overlay of that version, server-side.

Sent as a pipeline, a read of 100 users is 201 commands (the pointer's ``HGET``, a ``GET`` and an ``HGETALL``
per user) that redis-py packs and parses one by one, about twice the client time of the 100 bare ``GET`` s
the vectors alone would take. The script is one ``EVALSHA`` and one array reply, and it is atomic: the
pointer, the vectors and the overlays are read at one instant, so no swap can fall between them.

A script may only touch keys of one hash slot in a Redis Cluster, and these keys span slots: a cluster
client keeps the pipeline (:func:`supports`). The script is loaded on first use and again after a server
restart or ``SCRIPT FLUSH`` (the ``NOSCRIPT`` answer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from feature_platform.online.connection import held_call
from feature_platform.online.loop_connection import loop_call

# KEYS[1]: the pointer hash. ARGV[1]: the key prefix; ARGV[2]: the version, or "" for the one the pointer
# names; ARGV[3..]: user ids. Returns {version or false, vector 1, overlay 1 (flat), vector 2, ...}; a missing
# vector is false (a null reply).
SCRIPT = """
local version = ARGV[2]
if version == '' then
  version = redis.call('HGET', KEYS[1], 'version')
  if not version then return {false} end
end
local out = {version}
local base = ARGV[1] .. ':' .. version
for i = 3, #ARGV do
  out[#out + 1] = redis.call('GET', base .. ':u:' .. ARGV[i])
  out[#out + 1] = redis.call('HGETALL', base .. ':e:' .. ARGV[i])
end
return out
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def supports(client: Any) -> bool:
    """Whether ``client`` may run the script: any Redis but a cluster (its keys span hash slots). Asked of
    what the client does, not its class, so a wrapper around a cluster client is one too."""
    return not isinstance(client, RedisCluster) and not callable(getattr(client, "get_primaries", None))


def read(client: Any, pointer_key: str, prefix: str, version: str | None,
         user_ids: Sequence[str]) -> tuple[Any, list[Any]]:
    """``(version read, replies)``: the version (the pointer's when ``version`` is None; None when the pointer
    names none) and per user its vector and its overlay as a dict, in ``user_ids`` order, as a pipeline of
    ``GET`` and ``HGETALL`` would give them."""
    args = _args(pointer_key, prefix, version, user_ids)
    try:
        reply = held_call(client, *args)
    except redis.exceptions.NoScriptError:
        client.script_load(SCRIPT)
        reply = held_call(client, *args)
    return _split(reply)


async def read_async(client: Any, pointer_key: str, prefix: str, version: str | None,
                     user_ids: Sequence[str]) -> tuple[Any, list[Any]]:
    """:func:`read`, awaiting the reply on the running loop (online/loop_connection.py) instead of blocking it. A
    lost connection is read again through :func:`read` (redis-py's path and retry policy); a timeout is raised."""
    args = _args(pointer_key, prefix, version, user_ids)
    try:
        try:
            reply = await loop_call(client, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(SCRIPT)
            reply = await loop_call(client, *args)
    except redis.exceptions.ConnectionError:
        return read(client, pointer_key, prefix, version, user_ids)
    return _split(reply)


def _args(pointer_key: str, prefix: str, version: str | None, user_ids: Sequence[str]) -> tuple[Any, ...]:
    return ("EVALSHA", SHA, 1, pointer_key, prefix, version or "", *user_ids)


def _split(reply: list[Any]) -> tuple[Any, list[Any]]:
    served, flat = reply[0], reply[1:]
    if served is None:
        return None, []
    replies: list[Any] = []
    for i in range(0, len(flat), 2):
        overlay = flat[i + 1]
        replies += (flat[i], dict(zip(overlay[::2], overlay[1::2], strict=True)) if overlay else {})
    return served, replies
