"""What the per-user benchmarks share: timing a call, and a table of medians and maxima against the first row."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the seconds it took."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def print_ratios(title: str, timings: dict[str, list[float]], unit: str = "s") -> None:
    """Median and max of each way, and its median over the first way's (the raw limit), then the load."""
    scale = 1000.0 if unit == "ms" else 1.0
    width = max(len(title), *map(len, timings))
    floor = statistics.median(next(iter(timings.values())))
    print(f"\n{title:<{width}} {'median':>10} {'max':>10} {'x raw':>7}")
    for key, values in timings.items():
        print(f"{key:<{width}} {statistics.median(values) * scale:7.2f} {unit:<2} {max(values) * scale:7.2f} {unit:<2} "
              f"{statistics.median(values) / floor:6.1f}x")
    print(f"load after: {os.getloadavg()[0]:.2f}")
