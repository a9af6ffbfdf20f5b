"""The HTTP bench's load generator against a server that ends its keep-alive connections: the generator
reconnects and goes on, and what it reports matches what the server did."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

EVERY = 3  # answers a connection gets before the server ends it
CONNECTIONS = 4
PATHS = ["/features/u1", "/features/u2", "/features/missing"]
OPTIONS = {"rate": 300.0, "warmup": 0.0, "duration": 1.0, "connections": CONNECTIONS,
           "closed_duration": 1.0, "closed_connections": CONNECTIONS}


def _load_bench() -> Any:
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_http.py"
    spec = importlib.util.spec_from_file_location("bench_http", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


class ClosingServer:
    """HTTP/1.1 keep-alive: 200 for a user, 404 for /features/missing. After EVERY answers on a connection it
    ends the connection as ``how`` says, and counts what it did:

    - "drop": reads the next request and closes without answering (the client reads end of file);
    - "reset": the same with a TCP reset (the client reads ECONNRESET);
    - "announce": the EVERY-th answer carries ``Connection: close`` and the connection closes after it.
    """

    def __init__(self, how: str) -> None:
        self.how = how
        self.accepted = self.ok = self.not_found = self.dropped = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if answered == EVERY:
                    self.dropped += 1
                    if self.how == "reset":  # linger 0: close sends RST instead of FIN
                        writer.get_extra_info("socket").setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                answered += 1
                if head.split(b" ", 2)[1].endswith(b"/missing"):
                    self.not_found += 1
                    status, body = b"404 Not Found", b'{"detail":"unknown user"}'
                else:
                    self.ok += 1
                    status, body = b"200 OK", b'{"found":true}'
                last = self.how == "announce" and answered == EVERY
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n" + (b"Connection: close\r\n" if last else b"")
                             + b"\r\n" + body)
                await writer.drain()
                if last:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):  # the client closed
            pass
        writer.close()


@pytest.fixture
def serve() -> Iterator[Callable[[str], tuple[ClosingServer, int]]]:
    """Starts a ClosingServer on a loopback port, its event loop on a thread: the generator blocks this one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started: list[asyncio.Server] = []

    def start(how: str) -> tuple[ClosingServer, int]:
        closing = ClosingServer(how)
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(closing.handle, "127.0.0.1", 0), loop).result()
        started.append(server)
        return closing, server.sockets[0].getsockname()[1]

    yield start
    for server in started:
        loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


@pytest.mark.parametrize("kind", ["open", "closed"])
@pytest.mark.parametrize("how", ["drop", "reset", "announce"])
def test_generator_reconnects_and_counts(serve: Callable[[str], tuple[ClosingServer, int]], kind: str,
                                         how: str) -> None:
    server, port = serve(how)

    result = bench.run_load(kind, port, PATHS, OPTIONS)

    assert result["ok"] == server.ok > 0
    assert result["non_200"] == server.not_found > 0
    assert result["lost"] == result["resets"] == server.dropped
    assert result["requests"] == result["ok"] + result["non_200"] + result["lost"]
    assert server.accepted == CONNECTIONS + result["reconnects"]
    assert result["connect_failures"] == 0
    if kind == "open":
        assert result["requests"] == OPTIONS["rate"] * OPTIONS["duration"]
    if how == "announce":  # told before it sent: nothing lost, every close followed by a new connection
        assert server.dropped == 0 and result["reconnects"] > 0
    else:
        assert server.dropped > 0 and result["reconnects"] > 0
