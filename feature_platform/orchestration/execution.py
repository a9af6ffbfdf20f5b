"""How a run's steps execute: in one process, or side by side when a run computes user shards.

In one process by default: a step's own work on a day of data takes about a second, while a subprocess per
step (Dagster's multiprocess executor) spends 10-30 s importing the definitions; DuckDB and the model
searches use every core inside a step anyway. With FP_SHARDS > 1 each family's shards are steps of their
own, and the multiprocess executor runs them side by side (a distributed executor, on other machines).
"""

from __future__ import annotations

import os
from typing import Any

from feature_platform.config import Settings

IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}


def run_config(settings: Settings) -> dict[str, Any]:
    """The execution part of a run's config: in process for one shard, else one process per step, as many
    at a time as there are CPUs (each shard step is one DuckDB and numpy computation)."""
    if settings.shards == 1:
        return IN_PROCESS
    return {"execution": {"config": {"multiprocess": {"max_concurrent": os.cpu_count() or 1}}}}
