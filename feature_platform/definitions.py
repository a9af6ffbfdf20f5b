"""The Dagster entry point: assembles every domain's definitions into one ``Definitions``.

It computes nothing and reads no environment variable; resources resolve their settings at run time.
"""

import dagster as dg

from feature_platform.orchestration.automation import JOBS, SCHEDULES, SENSORS
from feature_platform.orchestration.derived.assets import DERIVED_ASSETS
from feature_platform.orchestration.features.assets import FEATURE_ASSETS
from feature_platform.orchestration.features.checks import FEATURE_CHECKS
from feature_platform.orchestration.models.assets import MODEL_ASSETS
from feature_platform.orchestration.monitoring.freshness import with_freshness_policies
from feature_platform.orchestration.online.assets import ONLINE_ASSETS
from feature_platform.orchestration.online.checks import ONLINE_CHECKS
from feature_platform.orchestration.raw.assets import RAW_ASSETS
from feature_platform.orchestration.resources import PlatformResource
from feature_platform.orchestration.tiles.assets import TILE_ASSETS
from feature_platform.orchestration.training.assets import TRAINING_ASSETS

defs = dg.Definitions(
    # Global policy: every asset's freshness policy follows from the registry (monitoring/freshness.py).
    assets=with_freshness_policies(
        [*RAW_ASSETS, *TILE_ASSETS, *FEATURE_ASSETS, *TRAINING_ASSETS, *MODEL_ASSETS, *DERIVED_ASSETS, *ONLINE_ASSETS]),
    asset_checks=[*FEATURE_CHECKS, *ONLINE_CHECKS],
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={"platform": PlatformResource()},
)
