"""Gauges computed when /metrics is scraped, never on a request: is Redis reachable, does it serve a complete
version, how old is the snapshot reads are answered from, and the staleness tolerance that age is judged by.

The alert rules (deploy/prometheus/rules.yml) compare these; a request pays nothing for them. A scrape asks
Redis for the served version (two small reads) only while the read breaker is closed: while it is open,
reads skip Redis and the scrape does too, reporting it unreachable; a scrape whose Redis call fails opens
the breaker itself, so a hanging Redis holds the event loop for one timeout, not for every scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from feature_platform.online.vectors import VersionInfo
from feature_platform.registry.registry import Registry
from feature_platform.serving.retrieval import REDIS_ERRORS, Retriever
from feature_platform.serving.state import ServingState

REDIS_UP = "fp_redis_up"
ONLINE_VERSION_SERVED = "fp_online_version_served"
SNAPSHOT_AGE = "fp_served_snapshot_age_seconds"
STALENESS_TOLERANCE = "fp_staleness_tolerance_seconds"


class ServedSnapshotCollector(Collector):
    """The scrape-time gauges of one server (registered on its :class:`ServingMetrics` registry)."""

    def __init__(self, retriever: Retriever, state: Callable[[], ServingState]) -> None:
        self.retriever = retriever
        self.state = state
        self._tolerance: tuple[Registry | None, float | None] = (None, None)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names only (the registry checks them for clashes), without touching Redis."""
        for name in (REDIS_UP, ONLINE_VERSION_SERVED, SNAPSHOT_AGE, STALENESS_TOLERANCE):
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.state()
        reachable, served = self._online()
        yield GaugeMetricFamily(REDIS_UP, "1 when the online store (Redis) answered this scrape, 0 when not "
                                          "(or reads skip it after a recent failure).", value=int(reachable))
        yield GaugeMetricFamily(ONLINE_VERSION_SERVED, "1 when Redis serves a complete version; 0 when reads fall "
                                                       "back to the offline snapshot (Redis unreachable, nothing "
                                                       "pushed, or the pointer names a gone or unfinished version).",
                                value=int(served is not None))
        computed_at = served.computed_at if served is not None else (
            state.offline.computed_at if state.offline is not None else None)
        age = GaugeMetricFamily(SNAPSHOT_AGE, "Seconds since the data cut-off (D+1 00:00 UTC) of the snapshot reads "
                                              "are answered from: the online served version, else the offline "
                                              "snapshot; absent when there is neither.")
        if computed_at is not None:
            age.add_metric([], (self.retriever.clock() - computed_at).total_seconds())
        yield age
        tolerance = GaugeMetricFamily(STALENESS_TOLERANCE, "The shortest staleness tolerance of the features served "
                                                           "online, in seconds: past it some values are served stale.")
        shortest = self._shortest_tolerance(state.registry)
        if shortest is not None:
            tolerance.add_metric([], shortest)
        yield tolerance

    def _online(self) -> tuple[bool, VersionInfo | None]:
        online = self.retriever.online
        if online is None or not self.retriever.online_available:
            return False, None
        try:
            served, _problem = online.served()
        except REDIS_ERRORS as exc:  # the next scrapes and reads skip Redis for a while: no wait per scrape
            self.retriever.trip(exc)
            return False, None
        return True, served

    def _shortest_tolerance(self, registry: Registry) -> float | None:
        cached, seconds = self._tolerance
        if cached is not registry:
            online = [f.staleness_tolerance for f in registry.features.values() if "online" in f.serving_location]
            seconds = min(online).total_seconds() if online else None
            self._tolerance = (registry, seconds)
        return seconds
