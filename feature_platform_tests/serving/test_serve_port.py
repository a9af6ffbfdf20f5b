"""`feature-platform serve` on a port another process listens on: one line, exit 2, at once, nothing started."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from feature_platform_tests.serving.test_server import CLI

# The CLI starts in about a second; before the check it loaded the models, started the embedded
# redis-server and printed its start-up lines, then failed after about 12 s.
QUICK_SECONDS = 6.0


@pytest.mark.e2e
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])  # 0.0.0.0 without keys: 127.0.0.1 is what is bound
def test_a_busy_port_is_one_line_and_exit_2_before_anything_starts(tmp_path, host):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FP_")}  # no keys: loopback only
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([CLI, "serve", "--data-dir", str(data), "--host", host, "--port", str(port)],
                                capture_output=True, text=True, timeout=120, env=env)
        seconds = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == f"error: 127.0.0.1:{port} is already in use; pick another with --port\n"
    assert result.stderr == ""  # no traceback, no uvicorn log
    assert seconds < QUICK_SECONDS, f"took {seconds:.1f} s: something started before the port check"
    assert not data.exists()  # no embedded redis-server, no model or snapshot loading touched the data dir
