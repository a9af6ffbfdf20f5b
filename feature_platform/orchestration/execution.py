"""How a run's steps execute: in one process, a process per step, or on Celery workers on other machines.

In one process by default: a step's own work on a day of data takes about a second, while a subprocess per
step (Dagster's multiprocess executor) spends 10-30 s importing the definitions; DuckDB and the model
searches use every core inside a step anyway. With FP_SHARDS > 1 each family's shards are steps of their
own, and the multiprocess executor runs them side by side. FP_EXECUTOR=celery sends every step to Celery
workers (``dagster-celery worker start``, docs/scaling.md), which may run on other machines.

Every job (and the asset jobs of the UI and of backfills) has one executor definition, ``platform_executor``,
that accepts all three as run config, so the run config alone picks the executor: the schedule and the
backfill launcher ask ``run_config(settings)``. dagster-celery is an optional dependency
(``pip install 'feature_platform[celery]'``), imported only when a run asks for Celery.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from feature_platform.config import ConfigError, Settings

IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
CELERY_INSTALL = "pip install 'feature_platform[celery]'"

# The Celery part of the run config: what dagster_celery's own executor takes, less what we fix (retries on,
# as every Dagster executor has them by default). Declared here so the definitions load without dagster-celery.
CELERY_CONFIG = {
    "broker": dg.Field(dg.StringSource, description="The Celery broker's URL, e.g. redis://host:6379/1 "
                                                    "(FP_CELERY_BROKER); the workers must use the same."),
    "backend": dg.Field(dg.Noneable(dg.StringSource), is_required=False, default_value=None,
                        description="Celery's result backend URL (FP_CELERY_BACKEND); default: the broker."),
    "config_source": dg.Field(dg.Permissive(), is_required=False,
                              description="More Celery settings by their lowercase names (broker_transport_options, "
                                          "...), on top of dagster-celery's defaults; the workers need the same."),
}


def run_config(settings: Settings) -> dict[str, Any]:
    """The execution part of a run's config. FP_EXECUTOR unset: in process for one shard, else one process per
    step, as many at a time as there are CPUs (each shard step is one DuckDB and numpy computation).

    Celery's URLs go in by reference ({"env": "FP_CELERY_BROKER"}): the run's process reads them from its own
    environment, so a password in them never lands in the run's stored config (which the UI shows)."""
    executor = settings.executor or ("in_process" if settings.shards == 1 else "multiprocess")
    if executor == "in_process":
        return IN_PROCESS
    if executor == "multiprocess":
        return {"execution": {"config": {"multiprocess": {"max_concurrent": os.cpu_count() or 1}}}}
    celery_executor_def()  # refuses now, at the tick or the launch, rather than in the run
    backend = {"env": "FP_CELERY_BACKEND"} if settings.celery_backend else None
    return {"execution": {"config": {"celery": {"broker": {"env": "FP_CELERY_BROKER"}, "backend": backend}}}}


def celery_executor_def() -> dg.ExecutorDefinition:
    """dagster-celery's executor, or a ConfigError that says what to install."""
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ConfigError(f"FP_EXECUTOR=celery needs dagster-celery, which is not installed ({exc}): "
                          f"{CELERY_INSTALL}") from None
    return celery_executor


def _requirements(config: Mapping[str, object]) -> Sequence[dg.ExecutorRequirement]:
    # A step in another process or machine: a reconstructable job, a persistent instance, persisted outputs.
    return [] if "in_process" in config else dg.multiple_process_executor_requirements()


def _create_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """The executor the run config chose, built by Dagster's (or dagster-celery's) own definition."""
    ((choice, config),) = init_context.executor_config.items()
    if not isinstance(config, Mapping):  # a selector's branch is always a dict
        raise TypeError(f"the {choice} executor's config must be a mapping, got {config!r}")
    if choice == "celery":
        delegate = celery_executor_def()
        config = {"broker": config["broker"], "backend": config["backend"] or config["broker"],
                  "config_source": config.get("config_source") or {}, "retries": {"enabled": {}}}
    else:
        delegate = dg.in_process_executor if choice == "in_process" else dg.multiprocess_executor
    create = delegate.executor_creation_fn
    if create is None:  # Dagster's and dagster-celery's definitions always have one
        raise TypeError(f"the executor definition {delegate.name} cannot create an executor")
    return create(dg.InitExecutorContext(job=init_context.job, executor_def=delegate, executor_config=config,
                                         instance=init_context.instance))


platform_executor = dg.ExecutorDefinition(
    name="platform_executor",
    config_schema=dg.Field(
        dg.Selector({
            "in_process": dg.in_process_executor.config_schema.as_field(),
            "multiprocess": dg.multiprocess_executor.config_schema.as_field(),
            "celery": dg.Field(CELERY_CONFIG, description="Every step as a Celery task on dagster-celery workers "
                                                          f"({CELERY_INSTALL}; docs/scaling.md)."),
        }),
        # Dagster's own default executor's default, for runs launched without execution config (the UI).
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
    executor_creation_fn=_create_executor,
    description="Dagster's in-process or multiprocess executor, or dagster-celery's Celery executor, as the run "
                "config says (feature_platform/orchestration/execution.py).",
)
