"""Benchmark: POST /events with a batch of 10 events, in process, beside the durable append alone.

    python bench/bench_events.py [--data-dir /tmp/fp-bench-http] [--requests 60] [--batch 10]

``--data-dir`` is a `feature-platform run` data directory (bench_http.py makes one); it is copied (without its
landing log) so the runs land into a folder of their own. Measured per request, after 10 warm-up requests:

- raw limit: ``LandingLog.append`` of the same batch, already validated (the fsync'd write every accepted
  event costs, and nothing else);
- the route through the app (FastAPI's TestClient): JSON, field rules, validation by the ingest's rules,
  the duplicate check against the landing log, the same append.

Every request must answer 202 with the whole batch accepted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
from pathlib import Path

from bench_report import print_ratios, timed
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.serving.api import create_app
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.landing import LandingLog

WARMUP = 10


def batch(label: str, n: int, size: int) -> list[dict]:
    return [{"event_id": f"{label}-{n}-{i}", "user_id": "u0000001", "event_type": "page_view",
             "timestamp": "2026-12-03T09:00:00Z", "channel": "web", "session_id": f"{label}-{n}"}
            for i in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fp-bench-http"))
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    print(f"POST /events of {args.batch} events x {args.requests}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}); load {os.getloadavg()[0]:.2f}; "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    work = Path(tempfile.mkdtemp(prefix="fp-bench-events-"))
    data = shutil.copytree(args.data_dir, work / "data", ignore=shutil.ignore_patterns("*.sock", "*.settings",
                                                                                      "landing"))
    raw_log = LandingLog(work / "raw-landing")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    timings: dict[str, list[float]] = {"raw limit: the fsync'd append alone": [], "POST /events (in process)": []}
    try:
        with TestClient(create_app(Settings(data_dir=data), reload_seconds=0)) as client:
            for n in range(args.requests + WARMUP):
                accepted, _ = validate_event_records(batch("raw", n, args.batch), now)
                _, append = timed(lambda a=accepted: raw_log.append(a, now))
                answer, post = timed(lambda n=n: client.post("/events", json={"events": batch("api", n, args.batch)}))
                assert answer.status_code == 202 and answer.json()["accepted"] == args.batch, answer.text
                if n >= WARMUP:
                    timings["raw limit: the fsync'd append alone"].append(append)
                    timings["POST /events (in process)"].append(post)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_ratios(f"one request of {args.batch} events", timings, "ms")


if __name__ == "__main__":
    main()
