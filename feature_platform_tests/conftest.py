"""Shared fixtures: tiny raw inputs written to tmp_path, and the real servers for marked tests.

A test that needs a server uses the ``postgres_url`` / ``redis_url`` fixture. When the server is
unreachable it is skipped locally with the reason, and fails in CI (CI or FP_REQUIRE_SERVICES set),
so CI can never go green by skipping.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
import pytest
from hypothesis import settings

from feature_platform.orchestration import constants as C
from feature_platform.orchestration.resources import local_resources
from feature_platform.sources.generator import GeneratorConfig, generate
from feature_platform_tests import fault_tally
from feature_platform_tests.helpers import build_once, materialize_range

# Hypothesis profiles. `ci`, the default, is what `.venv/bin/pytest` runs: a quarter of hypothesis' usual example
# count, the same examples every run (derandomized), no deadline (two busy cores). `thorough` is for hunting:
# `.venv/bin/pytest --hypothesis-profile=thorough` (or FP_HYPOTHESIS_PROFILE=thorough), 20 times as many examples,
# random. A test states its relative weight with `helpers.examples(n)` (n of a 100-example profile); the profile
# scales every test alike.
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("FP_HYPOTHESIS_PROFILE", "ci"))  # --hypothesis-profile overrides this

NOW = dt.datetime(2025, 3, 1, 12, 0, 0)


def pytest_configure(config: pytest.Config) -> None:
    """The controller names the fault tally's file before any xdist worker starts (they inherit it)."""
    if not hasattr(config, "workerinput") and not os.environ.get(fault_tally.ENV):
        folder = Path(tempfile.mkdtemp(prefix="fp-fault-tally-"))
        os.environ[fault_tally.ENV] = str(folder / "tally.jsonl")


def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get(fault_tally.ENV)
    if not hasattr(config, "workerinput") and path and Path(path).parent.name.startswith("fp-fault-tally-"):
        shutil.rmtree(Path(path).parent, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    rows = fault_tally.read(Path(os.environ.get(fault_tally.ENV, "/nonexistent")))
    if rows:
        terminalreporter.section("fault suite")
        for line in fault_tally.summary(rows):
            terminalreporter.write_line(line)


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port), timeout=2):
            return True
    except OSError:
        return False


def _unavailable(message: str) -> None:
    """Skip locally with the reason; fail in CI, which must never go green by skipping."""
    if os.environ.get("CI") or os.environ.get("FP_REQUIRE_SERVICES"):
        pytest.fail(f"{message}; CI requires it (.ci/run provides it)")
    pytest.skip(message)


def _service_url(env: str, default: str) -> str:
    url = os.environ.get(env, default)
    if not _reachable(url):
        _unavailable(f"{env}={url} is not reachable; start the server or set {env}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _service_url("FP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service_url("FP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclasses.dataclass(frozen=True)
class S3Server:
    """An S3-compatible server on loopback (moto's server mode, a subprocess) and the AWS variables that
    point clients at it; ``bucket()`` makes a fresh bucket and returns its ``s3://`` URL."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self) -> str:
        import boto3

        name = f"fp-test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket=name)
        return f"s3://{name}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port for the whole session (a worker's), stopped at its end. It logs
    every request: to a file, since a pipe nobody reads would fill and stall it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("s3_server") / "moto.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _reachable(f"http://127.0.0.1:{port}"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server did not start in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket's ``s3://bucket/data`` with this process's AWS variables pointing at the test server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return f"{s3_server.bucket()}/data"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' promtool (Debian package prometheus), for the alert rules' checks and unit tests."""
    path = shutil.which("promtool")
    if path is None:
        _unavailable("promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


@pytest.fixture
def browser():
    """Headless Chromium driven through the system's chromedriver (Debian chromium + chromium-driver)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        _unavailable("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1500,1800"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def write_csv(folder: Path, name: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_source(tmp_path: Path) -> Path:
    """Three days of clean events for three users, plus customers: every row valid."""
    src = tmp_path / "src"
    write_csv(src, "customers", [
        {"user_id": "u1", "age": 30, "gender": "female", "premium": "true", "signup_date": "2024-01-05"},
        {"user_id": "u2", "age": 41, "gender": "male", "premium": "false", "signup_date": "2024-06-01"},
        {"user_id": "u3", "age": "", "gender": "", "premium": "", "signup_date": ""},
    ])
    write_csv(src, "events", [
        {"event_id": "e1", "user_id": "u1", "event_type": "login", "timestamp": "2025-02-01T08:00:00Z", "amount": ""},
        {"event_id": "e2", "user_id": "u1", "event_type": "purchase", "timestamp": "2025-02-01T08:05:00Z", "amount": "12.5"},
        {"event_id": "e3", "user_id": "u2", "event_type": "page_view", "timestamp": "2025-02-02T23:59:59Z", "amount": ""},
        {"event_id": "e4", "user_id": "u3", "event_type": "page_view", "timestamp": "2025-02-03T00:00:00Z", "amount": ""},
    ])
    return src


# -- the generated sample world ----------------------------------------------------------------------------
WORLD_END = dt.date(2025, 3, 12)
WORLD_NOW_UTC = "2025-03-13T03:00:00"  # the morning after WORLD_END's data cut-off


@dataclasses.dataclass(frozen=True)
class SampleWorld:
    """Generated sample data (``src``) and a data directory (``data``) with raw partitions and tiles of
    2025-03-01 .. 2025-03-12 and the feature snapshots of 2025-03-10 .. 2025-03-12; no model, nothing online."""

    root: Path
    end: dt.date = WORLD_END
    now_utc: str = WORLD_NOW_UTC

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def data(self) -> Path:
        return self.root / "data"


def _build_world(root: Path) -> None:
    generate(GeneratorConfig(users=150, days=12, end_date=WORLD_END, seed=5), root / "src")
    resources = local_resources(data_dir=root / "data", raw_dir=root / "src", now_utc=WORLD_NOW_UTC)
    for groups, start in (((C.GROUP_RAW, C.GROUP_TILES), "2025-03-01"), ((C.GROUP_FEATURES,), "2025-03-10")):
        result = materialize_range(resources, dg.AssetSelection.groups(*groups), start, WORLD_END.isoformat())
        assert result.success, [e.message for e in result.all_events if e.is_failure]


@pytest.fixture(scope="session")
def sample_world(tmp_path_factory: pytest.TempPathFactory) -> SampleWorld:
    """150 users x 12 days of sample data, landed and featurized once per session (shared by the xdist
    workers). Read-only: a test that writes takes a copy (``helpers.copy_tree``)."""
    return SampleWorld(build_once(tmp_path_factory, "sample_world", _build_world))
