"""Prometheus metrics of one server (its own registry, so two apps in one process never collide)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Feature reads are sub-millisecond; the buckets resolve them instead of lumping them under 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("fp_request_latency_seconds", "Request latency by route, method and status.",
                                 ("route", "method", "status"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.online = Counter("fp_online_lookups_total", "Online store lookups per user: hit, miss, stale, error.",
                              ("result",), registry=self.registry)
        self.fallbacks = Counter("fp_fallbacks_total", "Vectors served from a fallback: offline, computed or default.",
                                 ("to",), registry=self.registry)
        self.predictions = Counter("fp_predictions_total", "Predictions served per model.", ("model",),
                                   registry=self.registry)
        self.events = Counter("fp_events_total", "Events received: accepted or rejected.", ("result",),
                              registry=self.registry)
        self.reloads = Counter("fp_reloads_total", "Reloads of the registry, snapshot and champions.",
                               registry=self.registry)
        self.version_mismatches = Counter(
            "fp_version_mismatch_total", "Predictions refused (409): the served vector holds a feature-family "
            "version the model was not trained on, per model and family.", ("model", "family"), registry=self.registry)
        on_demand = Counter("fp_on_demand_total", "Users computed on demand: computed, cached (a computed vector "
                            "read back), timeout (not within the budget), limit (over the per-request limit), "
                            "error (failed).",
                            ("result",), registry=self.registry)
        self.on_demand = {result: on_demand.labels(result)
                          for result in ("computed", "cached", "timeout", "limit", "error")}
        self.on_demand_seconds = Histogram("fp_on_demand_seconds", "Time a request waited for on-demand computing.",
                                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                                           registry=self.registry)
        # The children every read touches, looked up once (labels() takes a lock and builds a key per call);
        # they also make these series exist, at 0, from the first scrape.
        self.lookups = {result: self.online.labels(result) for result in ("hit", "miss", "stale", "error")}
        self.fallbacks_to = {to: self.fallbacks.labels(to) for to in ("offline", "computed", "default")}
        self._latency_children: dict[tuple[str, str, str], Any] = {}

    def observe_latency(self, template: str, method: str, status: int, seconds: float) -> None:
        key = (template, method, str(status))
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self.latency.labels(*key)
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StatusObservingMiddleware:
    """Pure ASGI middleware (no per-request task or body copy) that calls :meth:`observe` after every HTTP
    request with its final status (500 when the app raised before answering) and its start time."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.observe(scope, status[0], started)

    def observe(self, scope: Scope, status: int, started: float) -> None:
        raise NotImplementedError


class LatencyMiddleware(StatusObservingMiddleware):
    """Times every HTTP request by route template, method and status."""

    def __init__(self, app: Callable, metrics: ServingMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    def observe(self, scope: Scope, status: int, started: float) -> None:
        template = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe_latency(template, scope["method"], status, time.perf_counter() - started)
