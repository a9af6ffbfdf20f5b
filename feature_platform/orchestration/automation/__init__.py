"""Automation: the jobs, schedules and sensors that run the asset graph without a person.

- ``daily_snapshots_schedule`` (03:00 UTC): yesterday's raw/events partition with the raw tables, every
  family snapshot with its checks, the derived scores and the online push, as one run in graph order.
- ``weekly_retraining_schedule`` (Monday 04:00 UTC) and the ``retrain_on_feature_version_change``
  sensor: training sets and models, early when the features a model was trained on changed version.
- ``retention_schedule`` (05:00 UTC): offline partitions past FP_RETENTION_DAYS, online versions
  older than the served one.
- Backfills over a date range: :mod:`.backfill` (and ``feature-platform backfill``).

All of them start RUNNING: Dagster's default (STOPPED) would leave a fresh deployment silently idle.

Deliberately not declared here: the near-real-time updater (``feature-platform stream``). It is a
process, not a sensor, because its goal is seconds from event to online value: a sensor only decides
which runs to request, its ticks are separate evaluations ~30 s apart, and a run per batch adds launch
overhead. The daily schedule stays the source of truth (README, "Near-real-time events").
"""

from feature_platform.orchestration.automation.jobs import JOBS
from feature_platform.orchestration.automation.schedules import SCHEDULES
from feature_platform.orchestration.automation.sensors import SENSORS

__all__ = ["JOBS", "SCHEDULES", "SENSORS"]
