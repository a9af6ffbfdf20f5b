"""Jobs that schedules, sensors and backfills target: the daily snapshot path, retraining, retention.

(No ``from __future__ import annotations`` in Dagster files: Dagster inspects the real annotations.)
"""

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from feature_platform.config import Settings
from feature_platform.offline.store import OfflineStore
from feature_platform.online.connection import connected, describe
from feature_platform.online.store import OnlineStore
from feature_platform.orchestration.constants import (
    DERIVED_SNAPSHOTS,
    FEATURE_SNAPSHOTS,
    GROUP_MODELS,
    GROUP_RAW,
    GROUP_TRAINING,
    ONLINE_PUSH,
    TILE_KEYS,
)
from feature_platform.orchestration.execution import IN_PROCESS, platform_executor
from feature_platform.orchestration.resources import ClockResource, OfflineStoreResource
from feature_platform.registry.registry import load_registry

DAILY_JOB = "daily_snapshots_job"
RETRAINING_JOB = "retraining_job"
RETENTION_JOB = "retention_job"

# The daily path, in graph order within one run: raw inputs (yesterday's events, the unpartitioned tables),
# the day's tiles, every family snapshot and its blocking checks, the model scores, the online push. The review topic model
# is left out on purpose: it is refitted deliberately, not daily (see its asset).
DAILY_SELECTION = dg.AssetSelection.groups(GROUP_RAW) | dg.AssetSelection.assets(
    *TILE_KEYS, *FEATURE_SNAPSHOTS, *DERIVED_SNAPSHOTS, ONLINE_PUSH)

# Both run their steps in one process unless a run's config says otherwise (orchestration/execution.py: the daily
# schedule asks for one process per step when FP_SHARDS > 1, for Celery workers with FP_EXECUTOR=celery).
daily_snapshots_job = dg.define_asset_job(
    DAILY_JOB, selection=DAILY_SELECTION, executor_def=platform_executor, config=IN_PROCESS,
    description="One day of the snapshot path: raw inputs, tiles, feature snapshots + checks, scores, online push.",
)
retraining_job = dg.define_asset_job(
    RETRAINING_JOB, selection=dg.AssetSelection.groups(GROUP_TRAINING, GROUP_MODELS),
    executor_def=platform_executor, config=IN_PROCESS,
    description="Rebuild the training sets and retrain the models (each behind its promotion gate).",
)


@dataclass
class RetentionReport:
    keep_days: int
    cutoff: str  # partitions strictly before this ISO date were deleted
    offline_deleted: dict[str, list[str]] = field(default_factory=dict)  # table -> partition keys
    online_deleted: list[str] = field(default_factory=list)  # version ids
    online_note: str = ""

    @property
    def partitions_deleted(self) -> int:
        return sum(len(keys) for keys in self.offline_deleted.values())


def apply_retention(settings: Settings, today: dt.date) -> RetentionReport:
    """Delete offline partitions older than the retention setting and online versions older than the served one.

    The served and the previous online version stay (the previous one is what `online rollback` serves).
    A version still being written (a push in progress, or an interrupted one that its re-run will
    complete) is never touched: the whole online clean-up waits for the next run and says why.
    """
    keep = settings.retention_days
    removed = OfflineStore(settings.data_root).prune_all(keep, today)
    report = RetentionReport(keep_days=keep, cutoff=(today - dt.timedelta(days=keep)).isoformat(),
                             offline_deleted={t: [p.stem for p in paths] for t, paths in removed.items()})
    if settings.embedded_redis and not settings.online_dir.is_dir():  # the embedded store was never started
        report.online_note = "nothing pushed online yet"
        return report
    with connected(settings) as client:
        online = OnlineStore(client, load_registry(), settings.redis_prefix)
        served = online.current()
        writing = [v.version for v in online.versions() if v.status != "complete"]
        if served is None:
            report.online_note = "nothing served online"
        elif writing:
            report.online_note = f"skipped: version(s) {', '.join(writing)} still being written; the next run cleans up"
        else:
            report.online_deleted = online.cleanup()
            report.online_note = f"{describe(settings)}: kept the served {served.version} and the previous version"
    return report


@dg.op(description="Prune offline partitions older than FP_RETENTION_DAYS and online versions older than the served "
                   "one; the deletions are this op's output metadata.")
def prune_expired_data(context: dg.OpExecutionContext, offline: OfflineStoreResource,
                       clock: ClockResource) -> dg.Output[dict]:
    report = apply_retention(offline.settings(), clock.now().date())
    context.log.info("retention %s days: %s offline partitions and %s online versions deleted",
                     report.keep_days, report.partitions_deleted, len(report.online_deleted))
    return dg.Output(
        {"offline": report.offline_deleted, "online": report.online_deleted},
        metadata={
            "retention_days": report.keep_days,
            "cutoff": report.cutoff,
            "offline_partitions_deleted": report.partitions_deleted,
            "offline_deleted": dg.MetadataValue.json(
                {t: {"partitions": len(k), "first": k[0], "last": k[-1]} for t, k in report.offline_deleted.items()}),
            "online_versions_deleted": dg.MetadataValue.json(report.online_deleted),
            "online": report.online_note,
        },
    )


@dg.job(name=RETENTION_JOB, description="Apply the retention setting to the offline and the online store.")
def retention_job() -> None:
    prune_expired_data()


JOBS: list[dg.JobDefinition | UnresolvedAssetJobDefinition] = [daily_snapshots_job, retraining_job, retention_job]
