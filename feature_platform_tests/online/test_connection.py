"""The embedded online store's redis-server lives as long as the processes using it, and keeps its data."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

CLIENT = """
import sys, threading
from pathlib import Path
from feature_platform.config import Settings
from feature_platform.online.connection import connect, held_call
client = connect(Settings(data_dir=Path(sys.argv[1])))
def work():  # several pooled connections, as the server's threads and pipelines open, and held ones
    for _ in range(20):
        client.set("fp:probe", "kept")
        held_call(client, "GET", "fp:probe")
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(client.pid)
"""


def test_a_process_that_used_the_embedded_store_stops_its_server_and_saves_on_exit(tmp_path):
    result = subprocess.run([sys.executable, "-c", CLIENT, str(tmp_path)], capture_output=True, text=True,
                            timeout=120, check=True)
    pid = int(result.stdout.split()[-1])
    deadline = time.monotonic() + 15
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the embedded redis-server {pid} outlived its process"
        time.sleep(0.1)
    again = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from feature_platform.config import Settings; "
         "from feature_platform.online.connection import connect; "
         "print(connect(Settings(data_dir=Path(sys.argv[1]))).get('fp:probe').decode())", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True)
    assert again.stdout.strip() == "kept"  # saved to <data>/online/redis.db at exit, loaded by the next process
