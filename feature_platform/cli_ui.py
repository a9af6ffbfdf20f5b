"""`feature-platform ui`: Dagster's UI (``dagster dev``) on a data directory, as one well-behaved process.

``dagster dev`` runs the webserver, the daemon and code servers as its children. Run directly it is slow
to stop on SIGTERM and can leave those children behind; its output carries notices meant for Dagster's
own developers. Here it runs in a process group of its own: SIGINT or SIGTERM to this command asks it
to shut down (SIGINT, which it handles), and whatever of the group is still there after
``STOP_SECONDS`` is killed, so nothing outlives the command. Its output is passed through without the
Supersession/Beta/Preview warning blocks and the welcome banner.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from feature_platform.cli_common import echo

STOP_SECONDS = 10
_NOTICE = re.compile(r"(SupersessionWarning|BetaWarning|PreviewWarning|ExperimentalWarning):")
_BANNER = re.compile(r"Welcome to Dagster!")


def quiet_lines(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` without Dagster's API notices (a ``...Warning:`` line, the indented source line Python
    prints under it and blank lines after) and its welcome banner."""
    skipping = False
    for line in lines:
        if _NOTICE.search(line) or _BANNER.search(line):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        yield line


def run_ui(data_dir: Path, dagster_home: str, host: str, port: int) -> int:
    env = {**os.environ, "FP_DATA_DIR": str(data_dir), "DAGSTER_HOME": dagster_home}
    # The dagster of this interpreter, so `.venv/bin/feature-platform ui` works without an activated venv.
    command = [sys.executable, "-m", "dagster", "dev", "-m", "feature_platform.definitions", "-h", host,
               "-p", str(port)]
    echo(f"DAGSTER_HOME={dagster_home} {' '.join(command)}")
    echo(f"the UI will be at http://{host}:{port} (Ctrl-C stops it and everything it started)")
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1, start_new_session=True)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            echo("stopping the UI ...")
            _signal(child.pid, signal.SIGINT, group=False)  # dagster dev shuts its children down on SIGINT

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    pump = threading.Thread(target=_pump, args=(child,), daemon=True)
    pump.start()
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping.is_set():
                    try:
                        code = child.wait(timeout=STOP_SECONDS)
                    except subprocess.TimeoutExpired:
                        code = -signal.SIGKILL
                    break
    finally:
        _signal(child.pid, signal.SIGKILL, group=True)  # code servers, run workers: nothing outlives us
        child.wait()
        pump.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping.is_set() else code


def _pump(child: subprocess.Popen) -> None:
    assert child.stdout is not None
    for line in quiet_lines(child.stdout):
        sys.stdout.write(line)
        sys.stdout.flush()


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
