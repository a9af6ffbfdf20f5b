"""The Dagster entry point: assembles every domain's definitions into one ``Definitions``.

It computes nothing and reads no environment variable; resources resolve their settings at run time.
"""

import dagster as dg

from feature_platform.orchestration.derived.assets import DERIVED_ASSETS
from feature_platform.orchestration.features.assets import FEATURE_ASSETS
from feature_platform.orchestration.models.assets import MODEL_ASSETS
from feature_platform.orchestration.online.assets import ONLINE_ASSETS
from feature_platform.orchestration.raw.assets import RAW_ASSETS
from feature_platform.orchestration.resources import PlatformResource
from feature_platform.orchestration.training.assets import TRAINING_ASSETS

defs = dg.Definitions(
    assets=[*RAW_ASSETS, *FEATURE_ASSETS, *TRAINING_ASSETS, *MODEL_ASSETS, *DERIVED_ASSETS, *ONLINE_ASSETS],
    resources={"platform": PlatformResource()},
)
