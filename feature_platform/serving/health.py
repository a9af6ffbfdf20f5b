"""GET /health: whether features can be served, and what is degraded since when (for load balancers and people)."""

from __future__ import annotations

from typing import Any

from feature_platform.online.store import OnlineStore
from feature_platform.serving.retrieval import REDIS, REDIS_ERRORS, Retriever
from feature_platform.serving.state import ServingState, StateHolder


def health_report(state: ServingState, holder: StateHolder, retriever: Retriever, online: OnlineStore
                  ) -> tuple[dict[str, Any], int]:
    """The report and its HTTP status: ``ok`` / ``degraded`` (200, with each dependency's problem and since when)
    while features can be served, ``down`` (503) when neither Redis nor an offline snapshot can answer."""
    served, error, pointer_problem = None, None, None
    try:
        if retriever.online_available:
            info, pointer_problem = online.served()
            served = {"version": info.version, "snapshot_date": info.snapshot_date.isoformat()} if info else None
    except REDIS_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc}"
    reachable = error is None and retriever.online_available
    unreadable = list(holder.offline_store.unreadable.values())
    problems = list(state.problems)
    offline_problems = [p for p in problems if p.startswith(("offline", "no offline"))]
    offline_problems += [u.message for u in unreadable if str(u.path) not in " ".join(offline_problems)]
    model_problems = [p for p in problems if p not in offline_problems]
    checks = {  # dependency -> (what is wrong or None, since when at the latest)
        REDIS: (None if reachable else error or "unreachable: a read failed, reads skip Redis for a few seconds "
                "and use the offline snapshot", None),
        "online_version": (pointer_problem or (None if served or not reachable else
                                               "nothing is pushed online yet; reads use the offline snapshot"),
                           None),
        "offline_snapshot": ("; ".join(offline_problems) or None, state.loaded_at),
        "models": ("; ".join(model_problems) or None, state.loaded_at),
    }
    degraded = []
    for dependency, (problem, first_seen) in checks.items():
        since = retriever.degraded_since(dependency, problem is not None, first_seen)
        if problem is not None and since is not None:
            degraded.append({"dependency": dependency, "problem": problem, "since": since.isoformat()})
    down = served is None and state.offline is None  # neither Redis nor the offline store can answer
    status = "down" if down else "degraded" if degraded else "ok"
    return {
        "status": status,
        "degraded": degraded,
        "online": {"reachable": reachable, "served": served, "error": error, "problem": pointer_problem},
        "offline_snapshot": state.offline.day.isoformat() if state.offline else None,
        "offline_unreadable": [str(u.path) for u in unreadable],
        "models": {name: champion.version for name, champion in state.champions.items()},
        "registry_version": state.registry.version,
        "loaded_at": state.loaded_at.isoformat(),
        "reloads": holder.reloads,
        "problems": problems + [f"offline partition skipped: {u.message}" for u in unreadable
                                if str(u.path) not in " ".join(problems)],
    }, 503 if down else 200
