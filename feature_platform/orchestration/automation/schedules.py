"""Schedules: the daily snapshot run, weekly retraining, daily retention. All start RUNNING, all in UTC.

The crons are constants here, not FP_ variables: a schedule's cron is part of the definitions, which
read no environment variable at load (STYLE.md 1), and the webserver and the daemon load them in
separate processes that must agree. To change one, edit the constant, or build your own Definitions
with ``build_schedules(daily_cron=...)``.
"""

import datetime as dt

import dagster as dg

from feature_platform.config import Settings
from feature_platform.offline.calendar import recorded_partitions
from feature_platform.orchestration.automation.jobs import daily_snapshots_job, retention_job, retraining_job
from feature_platform.orchestration.execution import run_config
from feature_platform.sources.locate import sample_last_day

DAILY_CRON = "0 3 * * *"  # 03:00 UTC: yesterday's partition, once the day is over and late files landed
RETRAINING_CRON = "0 4 * * 1"  # Monday 04:00 UTC, after that day's snapshots
RETENTION_CRON = "0 5 * * *"  # 05:00 UTC, after the daily run
TIMEZONE = "UTC"  # the partitions' time zone; a day is a UTC day
DAILY_SCHEDULE = "daily_snapshots_schedule"
RETRAINING_SCHEDULE = "weekly_retraining_schedule"
RETENTION_SCHEDULE = "retention_schedule"


def previous_day(scheduled: dt.datetime) -> str:
    """The partition key a tick materializes: the UTC day before the scheduled time (that day is over)."""
    when = scheduled.astimezone(dt.UTC) if scheduled.tzinfo else scheduled
    return (when.date() - dt.timedelta(days=1)).isoformat()


def sample_ended(settings: Settings, day: str) -> dg.SkipReason | None:
    """A tick for a day after the data skips, saying why, instead of running on no data: after generated
    sample data (a try-out), or after a historical data set (whose partitions end on its last day). A
    source that reaches yesterday (production) is always run."""
    last = sample_last_day(settings)
    if last is not None and day > last:
        return dg.SkipReason(f"no raw data for {day}: the raw source is the generated sample data, which ends {last}. "
                             "Generate newer data (`feature-platform run --end-date ...`) or point FP_RAW_DIR at real "
                             "data (`feature-platform ingest --source DIR`).")
    recorded = recorded_partitions(settings.data_root)
    if recorded is not None and recorded[1] is not None and day > recorded[1]:
        return dg.SkipReason(f"no raw data for {day}: the data set ends {recorded[1]} (historical data: its "
                             "partitions end there). Ingest newer data with `feature-platform ingest --source DIR`.")
    return None


def build_schedules(daily_cron: str = DAILY_CRON, retraining_cron: str = RETRAINING_CRON,
                    retention_cron: str = RETENTION_CRON) -> list[dg.ScheduleDefinition]:
    """The platform's schedules with the given crons (UTC)."""

    @dg.schedule(name=DAILY_SCHEDULE, cron_schedule=daily_cron, job=daily_snapshots_job, execution_timezone=TIMEZONE,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Yesterday's partition of the snapshot path: raw inputs, feature snapshots and their "
                             "checks, model scores, online push (one run).")
    def daily_snapshots(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        key = previous_day(context.scheduled_execution_time)
        skip = sample_ended(Settings.from_env(), key)
        if skip is not None:
            return skip
        # one run per day, even if a tick is re-evaluated; steps side by side when FP_SHARDS > 1
        return dg.RunRequest(run_key=key, partition_key=key, run_config=run_config(Settings.from_env()))

    retraining = dg.ScheduleDefinition(
        name=RETRAINING_SCHEDULE, cron_schedule=retraining_cron, job=retraining_job, execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuild the training sets and retrain the models; a new champion is served only past its gate.")
    retention = dg.ScheduleDefinition(
        name=RETENTION_SCHEDULE, cron_schedule=retention_cron, job=retention_job, execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Delete offline partitions older than FP_RETENTION_DAYS and superseded online versions.")
    return [daily_snapshots, retraining, retention]


SCHEDULES = build_schedules()
