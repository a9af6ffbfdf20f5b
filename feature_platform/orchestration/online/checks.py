"""Online staleness: how old the snapshot Redis serves is, against the registry's tolerance.

The freshness policy says when the push last ran; this check says what readers get. Age counts from
the served snapshot's data cut-off (``computed_at``, D+1 00:00 UTC), the same clock the server uses
to report a value ``stale``. Expectation and thresholds come from the one freshness rule
(orchestration/monitoring/freshness.py): past the warn window (a daily push missed) the check warns,
past the tolerance it fails with ERROR, since every served value is then reported stale.
"""

import dagster as dg

from feature_platform.online.store import OnlineStore
from feature_platform.orchestration.constants import CHECK_ONLINE_STALENESS, ONLINE_PUSH
from feature_platform.orchestration.monitoring.freshness import expectation_for
from feature_platform.orchestration.resources import ClockResource, OnlineStoreResource
from feature_platform.registry.registry import load_registry


@dg.asset_check(
    asset=ONLINE_PUSH,
    name=CHECK_ONLINE_STALENESS,
    description="The served snapshot's age (now - its data cut-off) is within the staleness tolerance of the "
                "features served online; warns once the next daily push is overdue.",
)
def served_snapshot_within_staleness_tolerance(online: OnlineStoreResource, clock: ClockResource) -> dg.AssetCheckResult:
    registry = load_registry()
    expectation = expectation_for(ONLINE_PUSH, None, {}, registry)
    assert expectation is not None  # the online push always has one: its features' staleness tolerance
    with online.connected() as client:
        served = OnlineStore(client, registry, online.prefix).current()
    tolerance_hours = expectation.tolerance.total_seconds() / 3600
    warn = expectation.warn_window
    if served is None:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR,
            description="nothing is served: materialize online/user_features_push",
            metadata={"served_version": "none", "tolerance_hours": tolerance_hours})
    age = clock.now() - served.computed_at
    stale, late = age > expectation.tolerance, warn is not None and age > warn
    age_text = f"served {served.version} is {age.total_seconds() / 3600:.1f} h old"
    if stale:
        description = f"{age_text}, past the {tolerance_hours:g} h tolerance: every value is reported stale"
    elif late and warn is not None:
        description = f"{age_text}, past {warn.total_seconds() / 3600:g} h: the next push is overdue"
    else:
        description = f"{age_text}, within the {tolerance_hours:g} h tolerance"
    return dg.AssetCheckResult(
        passed=not (stale or late),
        severity=dg.AssetCheckSeverity.ERROR if stale else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "served_version": served.version,
            "snapshot_date": served.snapshot_date.isoformat(),
            "computed_at": served.computed_at.isoformat(),
            "age_hours": round(age.total_seconds() / 3600, 2),
            "tolerance_hours": tolerance_hours,
            "warn_after_hours": warn.total_seconds() / 3600 if warn else "none",
            "basis": expectation.basis,
        },
    )


ONLINE_CHECKS = [served_snapshot_within_staleness_tolerance]
