"""FP_EXECUTOR=celery: a run's steps on dagster-celery workers through a real Redis broker.

The integration test starts two real workers with the documented command (``dagster-celery worker start -A
dagster_celery.app -y deploy/celery/worker.yaml``) on loopback, runs three days of the activity family in two
user shards on the Celery executor, and checks that both workers ran steps and that the snapshots are the
files the in-process run wrote, byte for byte. The other tests cover the settings, the run config and the
errors without dagster-celery.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import psutil
import pytest
import redis
import yaml

from feature_platform.config import ConfigError, Settings
from feature_platform.definitions import build_defs
from feature_platform.orchestration import constants as C
from feature_platform.orchestration.execution import CELERY_INSTALL, IN_PROCESS, platform_executor, run_config
from feature_platform.orchestration.pipeline import RANGE_END_TAG, RANGE_START_TAG
from feature_platform_tests.helpers import copy_tree

REPO = Path(__file__).resolve().parents[2]
WORKER_CONFIG = REPO / "deploy" / "celery" / "worker.yaml"
BROKER_DB = 13  # this file's own Redis database; it deletes only the keys under its run's prefix
JOB = "activity_snapshots_on_celery"
DAYS = ("2025-03-10", "2025-03-11", "2025-03-12")
WORKERS = ("fp-celery-a", "fp-celery-b")


def activity_job() -> dg.JobDefinition:
    """The activity family's snapshots as a job on the platform executor, rebuilt in every worker from its
    FP_DATA_DIR and FP_SHARDS (as a deployment's processes share them)."""
    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.assets(C.USER_ACTIVITY_FEATURES),
                              executor_def=platform_executor)
    return dg.Definitions.merge(build_defs(), dg.Definitions(jobs=[job])).resolve_job_def(JOB)


@dg.op
def answer() -> int:
    return 42


@dg.job(executor_def=platform_executor)
def tiny_job() -> None:
    answer()


# -- settings and run config ------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "executor"), [
    ({}, None),
    ({"FP_EXECUTOR": "multiprocess"}, "multiprocess"),
    ({"FP_EXECUTOR": " Celery ", "FP_CELERY_BROKER": "redis://h:6379/1"}, "celery"),
])
def test_fp_executor_is_parsed(env: dict[str, str], executor: str | None) -> None:
    assert Settings.from_env(env).executor == executor


@pytest.mark.parametrize(("env", "message"), [
    ({"FP_EXECUTOR": "k8s"}, "FP_EXECUTOR must be one of in_process, multiprocess, celery, got 'k8s'"),
    ({"FP_EXECUTOR": "celery"}, "FP_EXECUTOR=celery needs FP_CELERY_BROKER"),
    ({"FP_EXECUTOR": "celery", "FP_CELERY_BROKER": "h:6379"}, "FP_CELERY_BROKER must be a URL"),
    ({"FP_CELERY_BROKER": "redis://h/1", "FP_CELERY_BACKEND": "pw@h"}, "FP_CELERY_BACKEND must be a URL"),
])
def test_bad_executor_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env(env)
    assert "pw@" not in str(raised.value)  # a URL's secret stays out of the message


def test_celery_urls_stay_out_of_repr() -> None:
    settings = Settings.from_env({"FP_CELERY_BROKER": "redis://:secret@h:6379/1"})
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(("env", "execution"), [
    ({}, {"in_process": {}}),
    ({"FP_SHARDS": "4"}, {"multiprocess": {"max_concurrent": os.cpu_count() or 1}}),
    ({"FP_SHARDS": "4", "FP_EXECUTOR": "in_process"}, {"in_process": {}}),
    ({"FP_EXECUTOR": "multiprocess"}, {"multiprocess": {"max_concurrent": os.cpu_count() or 1}}),
    ({"FP_EXECUTOR": "celery", "FP_CELERY_BROKER": "redis://h/1"},
     {"celery": {"broker": {"env": "FP_CELERY_BROKER"}, "backend": None}}),
    ({"FP_EXECUTOR": "celery", "FP_CELERY_BROKER": "redis://h/1", "FP_CELERY_BACKEND": "redis://h/2"},
     {"celery": {"broker": {"env": "FP_CELERY_BROKER"}, "backend": {"env": "FP_CELERY_BACKEND"}}}),
])
def test_run_config_follows_the_settings(env: dict[str, str], execution: dict) -> None:
    """Celery's URLs by reference: the run's stored config (shown in the UI) never holds a password."""
    config = run_config(Settings.from_env(env))
    assert config == {"execution": {"config": execution}}
    if env == {}:
        assert config == IN_PROCESS


def test_every_job_accepts_every_executor_config() -> None:
    defs = build_defs(start="2025-03-01", end="2025-03-12", settings=Settings())
    jobs = [defs.resolve_implicit_global_asset_job_def(), *(defs.resolve_job_def(j.name) for j in defs.jobs or [])]
    assert {job.executor_def.name for job in jobs} == {"platform_executor"}  # backfills run the asset job
    schema = platform_executor.config_schema.as_field().config_type
    assert set(schema.fields) == {"in_process", "multiprocess", "celery"}


def test_platform_executor_runs_in_process_and_refuses_bad_config(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.execute_job(dg.reconstructable(tiny_job), instance=instance, run_config=IN_PROCESS) as result:
            assert result.success and result.output_for_node("answer") == 42
        starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        assert {event.dagster_event.pid for event in starts} == {os.getpid()}
        with pytest.raises(dg.DagsterInvalidConfigError, match="slurm"):
            dg.execute_job(dg.reconstructable(tiny_job), instance=instance,
                           run_config={"execution": {"config": {"slurm": {}}}})


def test_celery_without_dagster_celery_is_a_config_error_saying_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "dagster_celery", None)  # what an install without the extra imports
    settings = Settings.from_env({"FP_EXECUTOR": "celery", "FP_CELERY_BROKER": "redis://127.0.0.1:6379/13"})
    with pytest.raises(ConfigError, match="FP_EXECUTOR=celery needs dagster-celery") as raised:
        run_config(settings)
    assert CELERY_INSTALL in str(raised.value)  # pip install 'feature_platform[celery]'
    # a run whose config asks for Celery by hand fails in the same words, before any step
    monkeypatch.setenv("FP_CELERY_BROKER", "redis://127.0.0.1:6379/13")
    celery = {"execution": {"config": {"celery": {"broker": {"env": "FP_CELERY_BROKER"}}}}}
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with pytest.raises(ConfigError, match=re.escape(CELERY_INSTALL)):
            dg.execute_job(dg.reconstructable(tiny_job), instance=instance, run_config=celery)
        (run,) = instance.get_runs()
        assert run.status != dg.DagsterRunStatus.SUCCESS
        assert not instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)


def test_the_definitions_load_without_dagster_celery() -> None:
    """An install without the extra: the package, its definitions and their executor load."""
    code = ("import sys; sys.modules['dagster_celery'] = None\n"
            "from feature_platform.definitions import build_defs\n"
            "from feature_platform.config import Settings\n"
            "defs = build_defs(start='2025-03-01', end='2025-03-12', settings=Settings())\n"
            "print(defs.resolve_implicit_global_asset_job_def().executor_def.name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "platform_executor"


# -- two real workers ---------------------------------------------------------------------------------------
def _pythonpath() -> str:
    """The repository first (the workers import this test module to rebuild its job), then what we had."""
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def _redis_db(url: str, db: int) -> str:
    return urlparse(url)._replace(path=f"/{db}").geturl()


class Worker:
    """One `dagster-celery worker start` process group (the CLI, the celery worker it runs, its pool child)."""

    def __init__(self, name: str, config: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        cli = Path(sys.executable).with_name("dagster-celery")
        command = [str(cli), "worker", "start", "-A", "dagster_celery.app", "-y", str(config), "-n", name,
                   # import the definitions once, before the pool forks, instead of once per pool child
                   "-i", __name__,
                   "--", "--concurrency=1", "--without-mingle", "--without-gossip"]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # its own process group, ended as one

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """SIGTERM to the group (Celery's warm shutdown), SIGKILL what is left after 20 s; wait for every one."""
        members = self.processes()
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):  # the group is gone already
                os.killpg(self.process.pid, sig)
            _, members = psutil.wait_procs(members, timeout=grace)
            if not members:
                break
        self.process.wait(timeout=10)
        assert not members, f"worker {self.name} left processes behind: {members}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _wait_until_ready(workers: list[Worker], app_conf: dict, broker: str, timeout: float = 60.0) -> None:
    """Until every worker answers a ping through the broker: then each waits on the queue before the run."""
    from celery import Celery

    app = Celery("fp-test-ping", broker=broker, backend=broker)
    app.conf.update(app_conf)
    deadline = time.monotonic() + timeout
    expected = {w.name for w in workers}
    answered: set[str] = set()
    try:
        while time.monotonic() < deadline:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"worker {worker.name} exited with {worker.process.returncode}:\n"
                                         f"{worker.tail()}")
            replies = app.control.ping(timeout=1.0) or []
            answered = {name.split("@")[0] for reply in replies for name in reply}
            if expected <= answered:
                return
        raise AssertionError(f"workers {expected - answered} did not answer within {timeout} s:\n"
                             + "\n".join(w.tail() for w in workers))
    finally:
        app.close()


@pytest.fixture
def celery_broker(redis_url: str) -> Iterator[tuple[str, str]]:
    """Redis DB 13 and a key prefix of this run's own; afterwards every key under the prefix is deleted."""
    url = _redis_db(redis_url, BROKER_DB)
    prefix = f"fp-test-celery-{uuid.uuid4().hex[:12]}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.redis
@pytest.mark.e2e
# dagster-celery registers its task on the run's Celery app once per step submitted (its executor.py), which
# Celery reports; the first registration is the one used, and it is the same function.
@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
def test_steps_run_on_two_celery_workers_and_write_the_in_process_files(sample_world, tmp_path, monkeypatch,
                                                                        celery_broker):
    broker, prefix = celery_broker
    data = copy_tree(sample_world.data, tmp_path / "data")
    table = data / "features" / "user_activity_features"
    for day in DAYS:
        (table / f"{day}.parquet").unlink()  # the sample world's files, written in process, are the reference
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {"FP_DATA_DIR": str(data), "FP_SHARDS": "2", "FP_EXECUTOR": "celery",
           "FP_CELERY_BROKER": broker, "FP_CELERY_BACKEND": broker}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FP_DATA_URL", raising=False)
    # Everything this test writes to Redis goes under its prefix: the runs' side and the workers' side alike.
    # Late acks: a worker whose one pool process runs a step holds no other (unacknowledged) step message, so
    # the two shard steps, submitted together, go to the two workers.
    celery_conf = {"broker_transport_options": {"global_keyprefix": prefix},
                   "result_backend_transport_options": {"global_keyprefix": prefix},
                   "task_acks_late": True}
    worker_config = yaml.safe_load(WORKER_CONFIG.read_text())
    worker_config["execution"]["config"]["config_source"] = celery_conf
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(worker_config))
    config = run_config(Settings.from_env())
    assert set(config["execution"]["config"]) == {"celery"}
    config["execution"]["config"]["celery"]["config_source"] = celery_conf

    # `dagster-celery worker start` runs `celery` from PATH: the one installed next to this Python
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    worker_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "PYTHONPATH": _pythonpath(), "PATH": path}
    workers: list[Worker] = []
    # The instance first: its storage exists before the workers' CLI opens the same DAGSTER_HOME.
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        try:
            for name in WORKERS:
                workers.append(Worker(f"{name}-{os.getpid()}", tmp_path / "worker.yaml", worker_env,
                                      tmp_path / f"{name}.log"))
            _wait_until_ready(workers, celery_conf, broker)
            result = dg.execute_job(dg.reconstructable(activity_job), instance=instance, run_config=config,
                                    tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[-1]})
            assert result.success, "\n".join(w.tail() for w in workers)
            worker_pids = {w.name: {p.pid for p in w.processes()} for w in workers}
        finally:
            for worker in workers:
                worker.stop()
        starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        engine = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)

    # Which worker ran each step: dagster-celery's task records its worker's name; the step's own events their pid.
    ran_on = {}
    for record in engine:
        metadata = record.dagster_event.engine_event_data.metadata
        if "Celery worker" in metadata:
            ran_on[record.step_key] = str(metadata["Celery worker"].value).split("@")[0]
    step_pids = {record.step_key: record.dagster_event.pid for record in starts}
    assert len(step_pids) >= 4 and any("_shard[" in step for step in step_pids), step_pids
    assert set(ran_on) == set(step_pids), (ran_on, step_pids)  # every step went through Celery
    assert set(ran_on.values()) == {w.name for w in workers}, ran_on  # and both workers took steps
    for step, worker in ran_on.items():
        assert step_pids[step] in worker_pids[worker] and step_pids[step] != os.getpid(), (step, worker_pids)

    for day in DAYS:
        expected = (sample_world.data / "features" / "user_activity_features" / f"{day}.parquet").read_bytes()
        assert (table / f"{day}.parquet").read_bytes() == expected, day
    assert not (data / "staging").exists()
