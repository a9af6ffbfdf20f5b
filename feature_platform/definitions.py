"""The Dagster entry point: assembles every domain's definitions into one ``Definitions``.

``build_defs(start)`` computes nothing: it collects the domains' assets, checks, jobs, schedules, sensors
and resources, and gives every partitioned asset daily partitions from ``start``. ``defs`` is what
Dagster loads (``dagster dev``, the daemon, run workers, ``dagster definitions validate``): at load, not
at import, it reads the partitions start recorded in the data directory (FP_DATA_DIR, default ./data;
see offline/calendar.py), so every process of one deployment agrees on the partitions. Resources
resolve their other settings at run time.
"""

import dagster as dg

from feature_platform.config import Settings
from feature_platform.offline.calendar import DEFAULT_PARTITIONS_START, partitions_range
from feature_platform.orchestration.automation import JOBS, SCHEDULES, SENSORS
from feature_platform.orchestration.constants import daily_partitions
from feature_platform.orchestration.derived.assets import DERIVED_ASSETS
from feature_platform.orchestration.execution import platform_executor
from feature_platform.orchestration.features.assets import feature_assets
from feature_platform.orchestration.features.checks import FEATURE_CHECKS
from feature_platform.orchestration.models.assets import MODEL_ASSETS
from feature_platform.orchestration.monitoring.freshness import with_freshness_policies
from feature_platform.orchestration.online.assets import ONLINE_ASSETS
from feature_platform.orchestration.online.checks import ONLINE_CHECKS
from feature_platform.orchestration.pipeline import STEP_JOBS
from feature_platform.orchestration.raw.assets import RAW_ASSETS
from feature_platform.orchestration.resources import platform_resources
from feature_platform.orchestration.tiles.assets import TILE_ASSETS
from feature_platform.orchestration.training.assets import TRAINING_ASSETS


def build_defs(start: str = DEFAULT_PARTITIONS_START, settings: Settings | None = None,
               end: str | None = None) -> dg.Definitions:
    """The platform's definitions with daily partitions from ``start`` (ISO date) to ``end`` (historical
    data's last day), else to yesterday; resources from ``settings`` (default: the FP_* variables, as
    ``EnvVar`` where one is set). The shard count (FP_SHARDS) shapes the feature steps: every process of a
    deployment loads the definitions with the same variables, so every one builds the same job."""
    resolved = settings or Settings.from_env()
    defs = dg.Definitions(
        # Global policy: every asset's freshness policy follows from the registry (monitoring/freshness.py).
        assets=with_freshness_policies(
            [*RAW_ASSETS, *TILE_ASSETS, *feature_assets(resolved.shards), *TRAINING_ASSETS, *MODEL_ASSETS,
             *DERIVED_ASSETS, *ONLINE_ASSETS]),
        asset_checks=[*FEATURE_CHECKS, *ONLINE_CHECKS],
        jobs=[*JOBS, *STEP_JOBS],
        schedules=SCHEDULES,
        sensors=SENSORS,
        # Every job, the UI's and the backfills' asset jobs too: in process, a process per step or Celery, as the
        # run config says (orchestration/execution.py).
        executor=platform_executor,
        resources=platform_resources(resolved, from_env=settings is None),
    )
    if start == DEFAULT_PARTITIONS_START and end is None:
        return defs
    partitions = daily_partitions(start, end)
    return defs.map_asset_specs(
        func=lambda spec: spec if spec.partitions_def is None else spec.replace_attributes(partitions_def=partitions))


@dg.definitions
def defs() -> dg.Definitions:
    start, end = partitions_range(Settings.from_env().data_root)
    return build_defs(start, end=end)
