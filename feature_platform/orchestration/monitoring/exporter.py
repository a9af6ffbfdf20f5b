"""Prometheus metrics of the Dagster side, read from the instance at each scrape: `feature-platform metrics-exporter`.

The feature server exports what readers get (serving/metrics.py, serving/scrape_metrics.py); this exports what
the pipeline did, for the alert rules in deploy/prometheus/rules.yml:

    fp_dagster_runs_total{job,status}                  runs of each platform job that ended success | failure |
                                                       canceled (a count in the instance: it only grows, unless
                                                       runs are deleted)
    fp_dagster_last_success_timestamp_seconds{job}     end of the job's newest successful run
    fp_dagster_last_run_failed{job}                    1 when the job's newest finished run failed, else 0
    fp_asset_check_passed{asset,check,check_severity}  the latest evaluation of every asset check: 1 passed,
                                                       0 failed; check_severity error | warn, as the check
                                                       reported it (not `severity`: alerts set that label)
    fp_ingest_input_rows{asset}                        rows the raw asset's latest ingest read (a backfill's run:
                                                       its whole range), from its materialization metadata
    fp_ingest_quarantined_rows{asset}                  of those, rows refused into quarantine/
    fp_ingest_quarantine_rate_threshold{asset}         the FP_MAX_QUARANTINE_RATE that ingest was checked against

Which jobs and checks: those of the definitions given (every job, plus `__ASSET_JOB`, which the UI's
*Materialize* and asset backfills run as), so a job that never ran has its runs at 0 rather than missing.
A scrape is a few indexed queries per job and per check; nothing is cached between scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from feature_platform.orchestration.constants import CHECK_QUARANTINE_RATE

ASSET_JOB = "__ASSET_JOB"  # the job of runs launched from the UI's Materialize and of asset backfills
RUN_STATUSES = {"success": dg.DagsterRunStatus.SUCCESS, "failure": dg.DagsterRunStatus.FAILURE,
                "canceled": dg.DagsterRunStatus.CANCELED}
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
CHECK_HISTORY = 5  # the latest execution of a check may be planned only (running, or its run failed first)


@dataclass(frozen=True)
class Watched:
    """What the exporter reports on: job names, asset check keys, and the raw assets (those checked for
    quarantine)."""

    jobs: tuple[str, ...]
    checks: tuple[dg.AssetCheckKey, ...]

    @classmethod
    def of(cls, defs: dg.Definitions) -> Watched:
        jobs = sorted({job.name for job in defs.jobs or ()} | {ASSET_JOB})
        checks = sorted(defs.resolve_asset_graph().asset_check_keys, key=lambda k: k.to_user_string())
        return cls(tuple(jobs), tuple(checks))

    @property
    def raw_assets(self) -> tuple[dg.AssetKey, ...]:
        return tuple(key.asset_key for key in self.checks if key.name == CHECK_QUARANTINE_RATE)


class DagsterCollector(Collector):
    """Reads the instance on every collect (every scrape)."""

    def __init__(self, instance: dg.DagsterInstance, watched: Watched) -> None:
        self.instance = instance
        self.watched = watched

    def describe(self) -> Iterator[Any]:
        """The families by name only, without reading the instance (the registry checks names for clashes)."""
        yield CounterMetricFamily("fp_dagster_runs", "")
        for name in ("fp_dagster_last_success_timestamp_seconds", "fp_dagster_last_run_failed", "fp_asset_check_passed",
                     "fp_ingest_input_rows", "fp_ingest_quarantined_rows", "fp_ingest_quarantine_rate_threshold"):
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Any]:
        yield from self._runs()
        evaluations = self._evaluations()
        yield from self._checks(evaluations)
        yield from self._quarantine(evaluations)

    # -- runs --------------------------------------------------------------------------------------
    def _runs(self) -> Iterator[Any]:
        runs = CounterMetricFamily("fp_dagster_runs", "Runs of each platform job that ended in a status, as the "
                                                      "Dagster instance records them.", labels=("job", "status"))
        last_success = GaugeMetricFamily("fp_dagster_last_success_timestamp_seconds",
                                         "Unix time the job's newest successful run ended.", labels=("job",))
        last_failed = GaugeMetricFamily("fp_dagster_last_run_failed", "1 when the job's newest finished (succeeded "
                                        "or failed) run failed, 0 when it succeeded.", labels=("job",))
        instance = self.instance
        for job in self.watched.jobs:
            for label, status in RUN_STATUSES.items():
                runs.add_metric([job, label], instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=[status])))
            success = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]),
                                               limit=1)
            if success:
                ended = success[0].end_time or success[0].update_timestamp.timestamp()
                last_success.add_metric([job], ended)
            finished = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=FINISHED), limit=1)
            if finished:
                last_failed.add_metric([job], int(finished[0].dagster_run.status == dg.DagsterRunStatus.FAILURE))
        yield from (runs, last_success, last_failed)

    # -- asset checks ------------------------------------------------------------------------------
    def _evaluations(self) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
        """Each check's latest evaluation (a check planned in a run that stopped before it is skipped over)."""
        storage = self.instance.event_log_storage
        latest = {}
        for key in self.watched.checks:
            for record in storage.get_asset_check_execution_history(key, limit=CHECK_HISTORY):
                if record.evaluation is not None:
                    latest[key] = record.evaluation
                    break
        return latest

    def _checks(self, evaluations: Mapping[dg.AssetCheckKey, dg.AssetCheckEvaluation]) -> Iterator[Any]:
        passed = GaugeMetricFamily("fp_asset_check_passed", "The latest evaluation of each asset check: 1 passed, "
                                   "0 failed; severity as the check reported it (error blocks what depends on the "
                                   "asset when the check is blocking, warn does not).",
                                   labels=("asset", "check", "check_severity"))
        for key, evaluation in evaluations.items():
            passed.add_metric([key.asset_key.to_user_string(), key.name, evaluation.severity.value.lower()],
                              int(evaluation.passed))
        yield passed

    # -- quarantine --------------------------------------------------------------------------------
    def _quarantine(self, evaluations: Mapping[dg.AssetCheckKey, dg.AssetCheckEvaluation]) -> Iterator[Any]:
        read = GaugeMetricFamily("fp_ingest_input_rows", "Rows the raw asset's latest ingest read (a run over many "
                                 "days: all of them).", labels=("asset",))
        refused = GaugeMetricFamily("fp_ingest_quarantined_rows", "Of those, rows refused into quarantine/ with a "
                                    "reason.", labels=("asset",))
        threshold = GaugeMetricFamily("fp_ingest_quarantine_rate_threshold", "The quarantine rate the latest ingest "
                                      "was checked against (FP_MAX_QUARANTINE_RATE); above it the run failed.",
                                      labels=("asset",))
        raw = self.watched.raw_assets
        for key, entry in self.instance.get_latest_materialization_events(raw).items():
            materialization = entry.asset_materialization if entry is not None else None
            if materialization is None:
                continue
            rows, quarantined = (_number(materialization.metadata, name) for name in ("input_rows", "quarantined_rows"))
            if rows is not None and quarantined is not None:
                read.add_metric([key.to_user_string()], rows)
                refused.add_metric([key.to_user_string()], quarantined)
        for key in raw:
            evaluation = evaluations.get(dg.AssetCheckKey(key, CHECK_QUARANTINE_RATE))
            limit = _number(evaluation.metadata, "threshold") if evaluation is not None else None
            if limit is not None:
                threshold.add_metric([key.to_user_string()], limit)
        yield from (read, refused, threshold)


def _number(metadata: Mapping[str, Any], name: str) -> float | None:
    """A numeric metadata entry's value; None when absent or not a number (an older run's metadata)."""
    value = getattr(metadata.get(name), "value", None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def registry_for(instance: dg.DagsterInstance, defs: dg.Definitions) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DagsterCollector(instance, Watched.of(defs)))
    return registry


def exposition(instance: dg.DagsterInstance, defs: dg.Definitions) -> bytes:
    """The metrics in Prometheus text format, as a scrape of the exporter gets them."""
    return generate_latest(registry_for(instance, defs))


def serve(instance: dg.DagsterInstance, defs: dg.Definitions, host: str, port: int,
          stop: threading.Event | None = None, ready: Callable[[], None] | None = None) -> None:
    """Serve /metrics on ``host:port`` until ``stop`` is set (or the process is interrupted); ``ready`` is
    called once the port is bound."""
    server, thread = start_http_server(port, addr=host, registry=registry_for(instance, defs))
    if ready is not None:
        ready()
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        thread.join()

