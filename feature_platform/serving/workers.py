"""`feature-platform serve --workers N`: N server processes on one port, each with a listening socket of its own.

uvicorn's own ``--workers`` hands every process the one listening socket, and the first process to wake
accepts every pending connection: clients that keep connections open (load balancers, pools, the HTTP
benchmark's 16 connections) all land on one worker while the others idle. Here each worker gets its own
socket bound to the same address with ``SO_REUSEPORT``, so the kernel spreads new connections over the
workers by a hash of the client's address and port.

The supervisor (:func:`supervise`) starts the workers, starts a new one on a dead one's socket, and stops
them all on SIGINT or SIGTERM. A worker that exits with uvicorn's start-up failure code is not restarted
(it would fail again): the supervisor stops with that code.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)
STARTUP_FAILURE = 3  # uvicorn's exit code for an app that failed to start
POLL_SECONDS = 0.5
STOP_SECONDS = 30.0


def reuse_port_sockets(first: socket.socket, count: int) -> list[socket.socket]:
    """``first`` (bound with SO_REUSEPORT) and ``count - 1`` more sockets bound to its address the same way."""
    address = first.getsockname()[:2]
    sockets = [first]
    try:
        for _ in range(count - 1):
            sock = socket.socket(first.family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets[1:]:
            sock.close()
        raise
    return sockets


def _run_worker(config: Any, sock: socket.socket) -> None:
    """One worker process: a uvicorn server of ``config`` (an import-string app) accepting on ``sock``."""
    import uvicorn

    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def supervise(config: Any, sockets: Sequence[socket.socket]) -> int:
    """Run a worker per socket until SIGINT/SIGTERM (then 0) or a worker's start-up failure (then 3)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: nothing inherited by fork
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(sock: socket.socket) -> Any:
        process = context.Process(target=_run_worker, args=(config, sock), name="feature-platform serve worker")
        process.start()
        return process

    processes = [start(sock) for sock in sockets]
    code = 0
    try:
        while not stop.wait(POLL_SECONDS):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                process.join()
                if process.exitcode == STARTUP_FAILURE:
                    log.error("worker %s failed to start; stopping", process.pid)
                    code = STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("worker %s exited (code %s); starting another", process.pid, process.exitcode)
                processes[i] = start(sockets[i])
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
