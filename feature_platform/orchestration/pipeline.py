"""The platform's end-to-end materialization, in dependency order, as in-process Dagster runs.

`feature-platform run` and `feature-platform ingest` use this: each step is one Dagster run recorded
in the instance (so it shows up in `dagster dev` afterwards); partitioned assets of a step run as a
single-run backfill over the whole date range, except a step marked ``latest_only``: model scores are
computed for the day the online step pushes (the last one), not re-computed for history with a model
trained after it, and the online store, which serves one snapshot, is pushed (and recorded) for that day.
"""

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from feature_platform.orchestration.constants import (
    GROUP_DERIVED,
    GROUP_FEATURES,
    GROUP_MODELS,
    GROUP_ONLINE,
    GROUP_RAW,
    GROUP_TILES,
    GROUP_TRAINING,
)
from feature_platform.orchestration.execution import IN_PROCESS, platform_executor
from feature_platform.orchestration.metadata import SUMMARY

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Which process runs a CLI run in-process: a run whose process is gone (kill -9, power loss) would stay
# STARTED forever, as no run launcher or daemon watches an in-process run; the next CLI run marks it failed.
PID_TAG = "feature_platform/pid"
HOST_TAG = "feature_platform/host"
# The step summary below reports failures; Dagster's own console lines would repeat them with stack traces.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class Step:
    label: str
    job: str  # the named job the step runs as: what the UI's Runs and Overview pages show
    selection: dg.AssetSelection
    latest_only: bool = False  # materialize only the last day of the range
    # A failed check here ends the run only when later steps depend on what it guards. A model that
    # fails its promotion gate is simply not served (the previous champion stays), so scoring with the
    # serving champion and pushing the features still go ahead; the gate is reported as failed.
    later_steps_proceed_on_failed_checks: bool = False


@dataclass
class StepOutcome:
    label: str
    run_id: str
    seconds: float
    success: bool
    rows: dict[str, int] = field(default_factory=dict)  # asset -> rows (summed over partitions)
    partitions: dict[str, int] = field(default_factory=dict)  # asset -> partitions materialized
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    checks_warned: list[str] = field(default_factory=list)  # failed checks of WARN severity: reported, not fatal
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per model / push / skipped asset: what a person wants to know


RAW_STEP = Step("raw inputs", "ingest_raw_inputs", dg.AssetSelection.groups(GROUP_RAW))
TILES_STEP = Step("daily tiles", "build_daily_tiles", dg.AssetSelection.groups(GROUP_TILES))
FEATURES_STEP = Step("feature snapshots", "build_feature_snapshots", dg.AssetSelection.groups(GROUP_FEATURES))
TRAINING_STEP = Step("training sets", "build_training_sets", dg.AssetSelection.groups(GROUP_TRAINING))
MODELS_STEP = Step("models", "train_models", dg.AssetSelection.groups(GROUP_MODELS),
                   later_steps_proceed_on_failed_checks=True)
SCORES_STEP = Step("model scores", "score_users", dg.AssetSelection.groups(GROUP_DERIVED), latest_only=True)
ONLINE_STEP = Step("online store", "push_online_store", dg.AssetSelection.groups(GROUP_ONLINE), latest_only=True)
ALL_STEPS: tuple[Step, ...] = (RAW_STEP, TILES_STEP, FEATURES_STEP, TRAINING_STEP, MODELS_STEP, SCORES_STEP, ONLINE_STEP)

# One job per step, in the definitions too, so the UI names what each `feature-platform run` run did (and a
# step can be launched from it alone). In process, like the scheduled jobs: a step is one process's work.
STEP_JOBS = [dg.define_asset_job(step.job, selection=step.selection, executor_def=platform_executor,
                                 config=IN_PROCESS,
                                 description=f"The `{step.label}` step of `feature-platform run`, over the run's "
                                             "date range (tags dagster/asset_partition_range_start/end).")
             for step in ALL_STEPS]


def run_steps(
    defs: dg.Definitions,
    steps: Sequence[Step],
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
    first_day: str,
    last_day: str,
    echo: Callable[[str], None],
) -> list[StepOutcome]:
    """Materialize ``steps`` in order over [first_day, last_day]; stop at the first failed step (a step
    whose only failures are checks and that lets later steps proceed does not stop the run)."""
    runner = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks,
                            jobs=[job for job in STEP_JOBS if job.name in {step.job for step in steps}],
                            resources=dict(resources))
    for run_id, pid in fail_abandoned_runs(instance):
        echo(f"run {run_id[:8]} was left STARTED by process {pid}, which is gone: marked failed")
    owner = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    outcomes = []
    for index, step in enumerate(steps, start=1):
        echo(f"[{index}/{len(steps)}] {step.label} ...")
        started = time.monotonic()
        result = runner.resolve_job_def(step.job).execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: last_day if step.latest_only else first_day, RANGE_END_TAG: last_day, **owner},
            run_config=QUIET_CONSOLE,
            raise_on_error=False,
        )
        outcome = _outcome(step, result, time.monotonic() - started)
        outcomes.append(outcome)
        echo(_describe(outcome))
        if not outcome.success and (outcome.errors or not step.later_steps_proceed_on_failed_checks):
            break
    return outcomes


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[tuple[str, int]]:
    """Mark failed the runs a CLI process on this host started and did not finish because it died."""
    failed = []
    alive = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(alive))):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid is None or host != socket.gethostname() or _process_alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the process that ran it (pid {pid} on {host}) is gone: it was killed "
                                        "or crashed before the run finished")
        failed.append((run.run_id, int(pid)))
    return failed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _outcome(step: Step, result: dg.ExecuteInProcessResult, seconds: float) -> StepOutcome:
    outcome = StepOutcome(label=step.label, run_id=result.run_id, seconds=seconds, success=result.success)
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        key = mat.asset_key.to_user_string()
        outcome.partitions[key] = outcome.partitions.get(key, 0) + (1 if mat.partition else 0)
        if (range_rows := mat.metadata.get("range_rows")) is not None:
            outcome.rows[key] = _count(range_rows.value)  # every partition of the range carries the same total
        elif (rows := mat.metadata.get("dagster/row_count")) is not None:
            outcome.rows[key] = outcome.rows.get(key, 0) + _count(rows.value)
        if (lines := mat.metadata.get(SUMMARY)) is not None:  # the asset's own account of its outcome
            first, *rest = str(lines.value).splitlines() or [""]
            _note(outcome, "\n".join([f"{key:<34} {first}", *(f"    {'':<34} {line}" for line in rest)]))
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            error = event.step_failure_data.error
            if error.cls_name == "DagsterAssetCheckFailedError":
                continue  # reported below, with the check's own explanation
            while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
                error = error.cause  # the user's exception, not Dagster's wrapper
            outcome.errors.append(f"{event.step_key}: {error.cls_name}: {error.message.strip()}")
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            outcome.checks_passed += 1
        else:
            why = f" ({evaluation.description})" if evaluation.description else ""
            failed = outcome.checks_warned if evaluation.severity == dg.AssetCheckSeverity.WARN else outcome.checks_failed
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}{why}")
    return outcome


def _count(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"a row count must be an int, got {value!r}")
    return value


def _note(outcome: StepOutcome, line: str) -> None:
    """A multi-partition materialization reports the same metadata per partition: say it once."""
    if line not in outcome.notes:
        outcome.notes.append(line)


def _describe(outcome: StepOutcome) -> str:
    lines = [f"    {line}" for line in outcome.notes]
    for key in sorted(outcome.rows):
        parts = f", {outcome.partitions[key]} partitions" if outcome.partitions.get(key) else ""
        lines.append(f"    {key:<34} {outcome.rows[key]:>12,} rows{parts}")
    status = "ok" if outcome.success else "FAILED"
    ran = outcome.checks_passed + len(outcome.checks_failed) + len(outcome.checks_warned)
    checks = f"{outcome.checks_passed} of {ran} checks passed" if ran else "no checks on these assets"
    if outcome.checks_failed:
        checks += f", {len(outcome.checks_failed)} failed:" + "".join(f"\n      - {c}" for c in outcome.checks_failed)
    if outcome.checks_warned:
        checks += f", {len(outcome.checks_warned)} warned:" + "".join(f"\n      - {c}" for c in outcome.checks_warned)
    lines.append(f"    {status} in {outcome.seconds:.1f} s; {checks} (run {outcome.run_id[:8]})")
    lines.extend(f"    error in {error}" for error in outcome.errors)
    return "\n".join(lines)
