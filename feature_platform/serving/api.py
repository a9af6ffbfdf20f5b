"""The feature and prediction server (FastAPI): `feature-platform serve`.

Routes (all but /health need an API key or bearer token with the route's scope when auth is configured;
serving/auth.py):

    GET  /health                                   liveness, what is loaded, Redis reachable
    GET  /features/{user_id}?features=a,b&version= one vector (or a subset), per-feature status and source
    POST /features/batch                           many users in one online round trip
    GET  /features/{user_id}/history?feature=&limit=  a feature over the user's last N daily snapshots
    GET  /context/{user_id}                        the dense numeric context vector, fixed registry order
    GET  /registry/features, /registry/features/{name}  metadata, version, lineage
    POST /predict/churn, /predict/contact          champion model predictions, naming the features it imputed
    POST /events                                   raw events, validated and durably landed (202)
    GET  /metrics                                  Prometheus text format
    GET  /docs, /redoc, /openapi.json              the API docs (Swagger UI, ReDoc) and spec: no key needed;
                                                   their JS/CSS are served from /docs/static, no CDN

Handlers are ``async`` and call Redis synchronously: a read is one sub-millisecond round trip, and
skipping the thread pool hop is what keeps p99 low on one worker. The two read routes are also answered by
serving/hot_path.py without FastAPI's per-request machinery, from the same handler code. Slow work (reloads) runs on a
background thread; handlers only read the current state reference.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from redis.backoff import NoBackoff
from redis.retry import Retry

from feature_platform.config import Settings
from feature_platform.offline.snapshots import feature_history
from feature_platform.online import loop_connection
from feature_platform.online.connection import connect as redis_connect
from feature_platform.online.connection import release
from feature_platform.online.store import OnlineStore, OnlineStoreError
from feature_platform.serving import predict
from feature_platform.serving.auth import ADMIN, EVENTS_WRITE, FEATURES_READ, PREDICT, Access, AuditLog, AuditMiddleware
from feature_platform.serving.docs import add_docs
from feature_platform.serving.health import health_report
from feature_platform.serving.hot_path import Handlers, HotPath, encode
from feature_platform.serving.limits import BodyLimitMiddleware, event_problems, with_text_user_id
from feature_platform.serving.metrics import LatencyMiddleware, ServingMetrics
from feature_platform.serving.on_demand import COMPUTED, ERROR, TIMEOUT, OnDemand
from feature_platform.serving.retrieval import Retriever, ServedVector
from feature_platform.serving.schemas import (
    NAME_PATTERN,
    BatchRequest,
    BatchResponse,
    ChurnPrediction,
    ChurnRequest,
    ContactPrediction,
    ContactRequest,
    EventsRequest,
    FeatureVector,
    Problem,
    UserIdPath,
)
from feature_platform.serving.scrape_metrics import ServedSnapshotCollector
from feature_platform.serving.state import CHURN, CONTACT, Champion, ServingState, StateHolder, context_features
from feature_platform.serving.versions import RESPONSES as VERSION_SKEW
from feature_platform.serving.versions import require_trained_versions
from feature_platform.sources.event_records import validate_event_records
from feature_platform.sources.landing import LandingLog

MAX_HISTORY = 365
DEFAULT_RELOAD_SECONDS = 30.0
REDIS_TIMEOUT_SECONDS = 0.5
# One immediate retry, on a connection error only (a pooled connection to a restarted server, or to a
# master the sentinels replaced); a timeout is not retried: the read falls back offline instead, and the
# breaker (serving/retrieval.py) keeps the next requests from waiting. redis-py's default would retry 10
# times with backoff, holding a request for seconds while Redis hangs.
REDIS_RETRY = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))


def _problem(status: int, loc: list[str], msg: str) -> HTTPException:
    """An error whose detail names the field, shaped like FastAPI's own validation errors."""
    return HTTPException(status, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


WORKER_RELOAD_ENV = "_FP_SERVE_RELOAD_SECONDS"  # set by `serve --workers N` for the processes it starts


def worker_app() -> FastAPI:
    """The app of one `feature-platform serve --workers N` process: FP_* settings from the environment the
    supervising process set (data directory included), its own Redis connection pool."""
    return create_app(Settings.from_env(), reload_seconds=float(os.environ.get(WORKER_RELOAD_ENV,
                                                                                DEFAULT_RELOAD_SECONDS)))


def _json(content: Any, status: int = 200) -> Response:
    return Response(encode(content), status_code=status, media_type="application/json")


# -- the app -------------------------------------------------------------------------------------
def create_app(settings: Settings, *, online: OnlineStore | None = None, holder: StateHolder | None = None,
               reload_seconds: float = DEFAULT_RELOAD_SECONDS,
               clock: Callable[[], dt.datetime] | None = None) -> FastAPI:
    """The server for ``settings``; ``online``/``holder`` are injectable for tests."""
    holder = holder or StateHolder(settings, clock=clock)
    metrics = ServingMetrics()
    if online is None:
        client = redis_connect(settings, socket_timeout=REDIS_TIMEOUT_SECONDS,
                               socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=REDIS_RETRY)
        online = OnlineStore(client, holder.state.registry, settings.redis_prefix)
    now: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    retriever = Retriever(online, metrics, now)
    metrics.registry.register(ServedSnapshotCollector(retriever, lambda: holder.state))  # computed per scrape
    on_demand = OnDemand(settings, holder.offline_store, retriever)
    access = Access(settings)  # refuses an unusable FP_JWT_PUBLIC_KEY now, not at the first request
    audit = AuditLog.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _ = holder.state  # load before the first request
        if reload_seconds > 0:
            holder.start(reload_seconds)
        yield
        holder.stop()
        on_demand.close()
        await loop_connection.aclose(online.client)  # its socket closed before an embedded server is let go
        release(online.client)
        if audit is not None:
            audit.close()

    app = FastAPI(
        title="feature_platform server",
        version="1.0.0",
        description="Features and predictions from the feature platform. Send `X-API-Key` (FP_API_KEYS) or "
                    "`Authorization: Bearer <JWT>` (FP_JWT_SECRET / FP_JWT_PUBLIC_KEY) with the route's scope.",
        lifespan=lifespan,
        docs_url=None,  # both pages are declared below, with their assets served by this app (add_docs)
        redoc_url=None,
    )
    add_docs(app)
    # Innermost: the two read routes skip FastAPI's per-request work (serving/hot_path.py); the middlewares
    # added after it (body limit, audit, latency) wrap it as they wrap the routes.
    app.add_middleware(HotPath, access=access, handlers=lambda: getattr(app.state, "hot_handlers", None))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    protected: set[str] = set()  # templates of the routes needing a scope, filled once they are declared
    if audit is not None:
        app.add_middleware(AuditMiddleware, audit=audit, protected=protected)
    app.add_middleware(LatencyMiddleware, metrics=metrics)  # outermost: times the 413s too
    app.state.holder, app.state.metrics, app.state.retriever = holder, metrics, retriever
    app.state.on_demand = on_demand

    guards: set[Callable[..., Any]] = set()

    def needs(scope: str) -> list[Any]:
        """The dependencies of a route needing ``scope`` (such routes are the audited ones)."""
        guard = access.require(scope)
        guards.add(guard)
        return [Depends(guard)]

    def current() -> ServingState:
        state = holder.state
        if state.signature != getattr(app.state, "seen_signature", None):
            if getattr(app.state, "seen_signature", None) is not None:
                metrics.reloads.inc()
            app.state.seen_signature = state.signature
            online.registry = state.registry
        return state

    def feature_names(state: ServingState, raw: str | list[str] | None, loc: list[str]) -> list[str] | None:
        if raw is None:
            return None
        names = [n.strip() for n in raw.split(",") if n.strip()] if isinstance(raw, str) else list(raw)
        if not names:
            raise _problem(422, loc, "name at least one feature, or leave the parameter out for all")
        unknown = [n for n in names if n not in state.registry.features]
        if unknown:
            raise _problem(422, loc, f"unknown features {unknown}; GET /registry/features lists them")
        return list(dict.fromkeys(names))

    def champion_of(state: ServingState, name: str) -> Champion:
        champion = state.champions.get(name)
        if champion is None:
            raise HTTPException(503, detail=f"no {name} champion model yet; run the pipeline or train one")
        return champion

    def check_batch(size: int, loc: list[str]) -> None:
        if size > settings.max_batch:
            raise _problem(422, loc, f"{size} items; at most {settings.max_batch} per request (FP_MAX_BATCH)")

    async def read_one(user_id: str, features: str | None, defaults: bool, version: str | None = None
                       ) -> dict[str, Any]:
        state = current()
        names = feature_names(state, features, ["query", "features"])
        return (await one_vector(state, user_id, names, version, defaults)).as_json()

    async def read_batch(body: BatchRequest) -> dict[str, Any]:
        state = current()
        check_batch(len(body.user_ids), ["body", "user_ids"])
        names = feature_names(state, body.features, ["body", "features"])
        users = list(dict.fromkeys(body.user_ids))
        found, _ = await retrieve(state, users, names, body.version, True, ["body", "version"])
        results = []
        for user in users:
            vector = found[user]
            assert vector is not None, "with defaults=True every user is served, from the registry defaults at worst"
            item = vector.as_json()
            if not body.defaults and not item["found"]:
                item["features"] = {}
            results.append(item)
        return {"results": results}

    async def retrieve(state: ServingState, users: list[str], names: list[str] | None, version: str | None,
                       defaults: bool, loc: list[str]) -> tuple[dict[str, ServedVector | None], dict[str, str]]:
        """The retrieval flow: Redis, the offline snapshot, computed on demand (customers only, not for a pinned
        version), the registry defaults when ``defaults``. Also why on-demand computing did not answer a user."""
        try:
            found = await retriever.vectors(state, users, names, version)
        except OnlineStoreError as exc:
            raise _problem(404, loc, str(exc)) from None
        marks: dict[str, str] = {}
        unknown = [user for user in users if found[user] is None]
        computable = [user for user in unknown if state.is_customer(user)]
        if computable and version is None and on_demand.enabled:
            served = retriever.served_features(state.registry, names)
            for user, item in (await on_demand.vectors(state, computable, served)).items():
                if isinstance(item, str):
                    marks[user] = item
                else:
                    found[user] = item
                    metrics.fallbacks_to[COMPUTED].inc()
        if defaults:
            for user in unknown:
                if found[user] is None:
                    found[user] = retriever.default_vector(state.registry, user, names, marks.get(user))
        return found, marks

    async def one_vector(state: ServingState, user_id: str, names: list[str] | None = None,
                         version: str | None = None, defaults: bool = False) -> ServedVector:
        found, marks = await retrieve(state, [user_id], names, version, defaults, ["query", "version"])
        vector = found[user_id]
        if vector is None:
            if marks.get(user_id) == ERROR:
                raise HTTPException(404, detail=f"user {user_id!r} is in no snapshot yet, and computing their "
                                                "features failed (the server's log says why); ask with defaults=true "
                                                "for the registry defaults")
            if marks.get(user_id) == TIMEOUT:
                raise HTTPException(404, detail=f"user {user_id!r} is in no snapshot yet, and computing their "
                                                "features took longer than FP_ON_DEMAND_BUDGET_MS: retry shortly "
                                                "(the result is being cached), or ask with defaults=true")
            raise HTTPException(404, detail=f"unknown user {user_id!r}: in no online or offline snapshot and not "
                                            "computable (ask with defaults=true for the registry defaults)")
        return vector

    not_found: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 422: {"model": Problem}}

    @app.get("/health", tags=["operations"], responses={
        200: {"description": "`status` ok, or degraded: serving, with `degraded` naming each dependency, why, "
                             "and since when"},
        503: {"description": "`status` down: no source can serve features (no online version, no offline "
                             "snapshot)"}})
    async def health() -> Response:
        """ok / degraded / down for load balancers: 200 while features can be served, 503 when not."""
        report, status = health_report(current(), holder, retriever, online)
        return _json(report, status)

    @app.get("/features/{user_id}", tags=["features"], dependencies=needs(FEATURES_READ),
             responses={200: {"model": FeatureVector}, **not_found})
    async def get_features(
        user_id: UserIdPath,
        features: Annotated[str | None, Query(max_length=20_000, description="Comma-separated names")] = None,
        version: Annotated[str | None, Query(max_length=200)] = None,
        defaults: bool = False,
    ) -> Response:
        return _json(await read_one(user_id, features, defaults, version))

    @app.post("/features/batch", tags=["features"], dependencies=needs(FEATURES_READ),
              responses={200: {"model": BatchResponse}, **not_found})
    async def batch(body: BatchRequest, request: Request) -> Response:
        request.state.users = len(body.user_ids)  # for the audit log
        return _json(await read_batch(body))

    @app.get("/features/{user_id}/history", tags=["features"], dependencies=needs(FEATURES_READ), responses=not_found)
    def history(  # DuckDB over the partitions: on the thread pool, not the event loop
        user_id: UserIdPath,
        feature: Annotated[str, Query(pattern=NAME_PATTERN, description="One registry feature")],
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 30,
    ) -> Response:
        state = current()
        feature_names(state, feature, ["query", "feature"])
        family = state.registry.family(state.registry.get_feature(feature).family)
        table = "/".join(family.asset_path)
        # Unreadable partitions are left out (the store checks them) and named in the answer.
        rows = feature_history(holder.offline_store, table, feature, user_id, limit)
        skipped = [{"path": str(u.path), "snapshot_date": u.partition, "problem": u.message}
                   for u in list(holder.offline_store.unreadable.values()) if u.table == table]
        if not rows:
            raise HTTPException(404, detail=f"user {user_id!r} is in no offline snapshot of {family.name}")
        is_map = state.registry.get_feature(feature).type == "map"
        return _json({"user_id": user_id, "feature": feature, "version": state.registry.get_feature_version(feature),
                      "values": [{"snapshot_date": day.isoformat(),
                                  "value": dict(value) if is_map and value is not None else value}
                                 for day, value in rows],
                      "skipped": skipped})

    @app.get("/context/{user_id}", tags=["features"], dependencies=needs(FEATURES_READ), responses=not_found)
    async def context(user_id: UserIdPath) -> Response:
        state = current()
        if state.context_spec is None:
            raise HTTPException(503, detail="no offline snapshot yet to fix the context layout; run the pipeline")
        vector = await one_vector(state, user_id, context_features(state.registry))
        names, values = predict.context_vector(state.context_spec, state.registry, vector.values)
        return _json({"user_id": user_id, "names": names, "values": values, "source": vector.source,
                      "version": vector.version,
                      "computed_at": vector.computed_at.isoformat() if vector.computed_at else None,
                      "layout": {"features": [f.name for f in state.context_spec.features], "columns": len(names)}})

    @app.get("/registry/features", tags=["registry"], dependencies=needs(FEATURES_READ))
    async def registry_features() -> Response:
        state = current()
        return _json({"registry_version": state.registry.version,
                      "features": [_feature_json(f) for f in state.registry.features.values()]})

    @app.get("/registry/features/{name}", tags=["registry"], dependencies=needs(FEATURES_READ), responses=not_found)
    async def registry_feature(name: Annotated[str, Path(max_length=128)]) -> Response:
        state = current()
        if name not in state.registry.features:
            raise HTTPException(404, detail=f"unknown feature {name!r}; GET /registry/features lists them")
        feature = state.registry.get_feature(name)
        return _json({**_feature_json(feature), "lineage": asdict(state.registry.lineage(name))})

    @app.post("/predict/churn", tags=["predictions"], dependencies=needs(PREDICT),
              responses={200: {"model": ChurnPrediction}, **not_found, **VERSION_SKEW})
    async def predict_churn(body: ChurnRequest, request: Request) -> Response:
        request.state.users = 1
        state = current()
        champion = champion_of(state, CHURN)
        if body.features is not None:
            feature_names(state, list(body.features), ["body", "features"])
            values, source, snapshot = body.features, "request", None
        else:
            assert body.user_id is not None, "ChurnRequest.one_of: exactly one of user_id and features"
            vector = await one_vector(state, body.user_id, list(champion.feature_names), defaults=body.defaults)
            require_trained_versions(champion, state, online, vector, metrics)  # 409 on a version skew
            values, source, snapshot = vector.values, vector.source, vector.version
        try:
            probability, imputed = predict.predict_churn(champion, state.registry, values)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _problem(422, ["body", "features"], f"values do not fit the registry types: {exc}") from None
        metrics.predictions.labels(CHURN).inc()
        return _json({"user_id": body.user_id, "probability": probability, "model": CHURN,
                      "model_version": champion.version, "feature_source": source, "snapshot_version": snapshot,
                      "imputed": imputed})

    @app.post("/predict/contact", tags=["predictions"], dependencies=needs(PREDICT),
              responses={200: {"model": ContactPrediction}, **not_found, **VERSION_SKEW})
    async def predict_contact(body: ContactRequest, request: Request) -> Response:
        request.state.users = 1
        state = current()
        champion = champion_of(state, CONTACT)
        check_batch(len(body.listing_ids), ["body", "listing_ids"])
        names = list(dict.fromkeys([*champion.feature_names, *predict.MATCH_FEATURES]))
        vector = await one_vector(state, body.user_id, names, defaults=body.defaults)
        require_trained_versions(champion, state, online, vector, metrics)  # 409 on a version skew
        given = body.context.model_dump(exclude_none=True)
        context_values = predict.contact_context(given, state.devices.get(body.user_id), now())
        listings = [state.listings.get(listing) for listing in body.listing_ids]
        probabilities, imputed = predict.predict_contact(champion, state.registry, vector.values, listings,
                                                         context_values)
        ranked = sorted(zip(body.listing_ids, probabilities, listings, strict=True), key=lambda r: (-r[1], r[0]))
        metrics.predictions.labels(CONTACT).inc()
        return _json({"user_id": body.user_id, "model": CONTACT, "model_version": champion.version,
                      "context": context_values, "feature_source": vector.source, "imputed": imputed,
                      "listings": [{"listing_id": listing, "probability": p, "rank": i + 1, "known": row is not None}
                                   for i, (listing, p, row) in enumerate(ranked)]})

    @app.post("/events", tags=["events"], dependencies=needs(EVENTS_WRITE), status_code=202, responses=not_found)
    def events(body: EventsRequest, request: Request) -> Response:  # validation + fsync: on the thread pool
        request.state.users = len(body.events)  # for the audit log: the events sent
        check_batch(len(body.events), ["body", "events"])
        log = LandingLog(settings.landing_dir)
        refused = event_problems(body.events)  # ids reads would refuse, overlong texts, amounts out of bounds
        kept = [i for i in range(len(body.events)) if i not in refused]
        accepted, rejected = validate_event_records([with_text_user_id(body.events[i]) for i in kept], now(),
                                                    landing=log)
        rejected = sorted([*refused.values(), *({**r, "index": kept[r["index"]]} for r in rejected)],
                          key=lambda r: r["index"])
        result = log.append(accepted) if accepted.num_rows else None  # durable (fsync) before the answer
        landed = result.accepted if result else 0
        if result is not None and result.duplicates:  # another request landed the same ids meanwhile
            index = {str(event.get("event_id")): i for i, event in enumerate(body.events)}
            rejected += [{"index": index.get(event_id), "event_id": event_id, "reasons": ["duplicate_event_id"],
                          "detail": "event_id: already landed by another request"} for event_id in result.duplicates]
        metrics.events.labels("accepted").inc(landed)
        metrics.events.labels("rejected").inc(len(rejected))
        return _json({"accepted": landed, "rejected": rejected}, 202 if landed else 422)

    @app.get("/metrics", tags=["operations"], dependencies=needs(ADMIN))
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    protected.update(route.path for route in app.routes if isinstance(route, APIRoute)
                     and any(d.dependency in guards for d in route.dependencies))
    routes = {(route.path, method): route for route in app.routes if isinstance(route, APIRoute)
              for method in route.methods or ()}
    app.state.hot_handlers = Handlers(read_one, read_batch, routes["/features/{user_id}", "GET"],
                                      routes["/features/batch", "POST"])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler, but a NaN/Infinity in the echoed input is sent as null instead of failing (a 500)
        return _json({"detail": jsonable_encoder(exc.errors())}, 422)

    @app.exception_handler(redis.exceptions.RedisError)
    async def redis_down(_: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        return JSONResponse({"detail": f"online store error: {exc}"}, status_code=503)

    return app


def _feature_json(feature: Any) -> dict[str, Any]:
    return {
        "name": feature.name, "family": feature.family, "type": feature.type, "version": feature.version,
        "description": feature.description, "owner": feature.owner, "source": feature.source,
        "computation": feature.computation, "dependencies": list(feature.dependencies),
        "staleness_tolerance_seconds": int(feature.staleness_tolerance.total_seconds()),
        "computation_frequency": feature.computation_frequency, "serving_location": list(feature.serving_location),
        "default": feature.default, "nullable": feature.nullable, "event_types": list(feature.event_types),
        "range": list(feature.value_range) if feature.value_range else None, "length": feature.length,
    }
