"""The fault suite's tally: what each fault test tried and what it saw, printed at the end of the run.

Every test that replays a fault records one line (``record``): the case, how many inputs or requests it
tried, and the counts that must stay zero — 5xx answers, acknowledged events lost, vectors mixing two
snapshots. Lines go to one JSON-lines file shared by the xdist workers (its path is set by the controller
before the workers start, in ``FP_FAULT_TALLY``); the controller prints the per-case table and the totals
in the terminal summary, so a CI log shows the suite's figures, not just its pass count.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

ENV = "FP_FAULT_TALLY"
ZERO = ("server_errors", "events_lost", "mixed_vectors")  # what every fault case must keep at zero


def record(case: str, *, inputs: int, server_errors: int = 0, events_lost: int = 0, mixed_vectors: int = 0,
           **seen: int) -> None:
    """Add one fault case to the tally (a no-op outside pytest's session, e.g. a test run by hand)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"case": case, "inputs": inputs, "server_errors": server_errors, "events_lost": events_lost,
                       "mixed_vectors": mixed_vectors, **seen}) + "\n"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(rows: list[dict]) -> list[str]:
    """The terminal summary lines: one per case (cases recorded several times are added up), then totals."""
    cases: dict[str, dict[str, int]] = {}
    for row in rows:
        case = cases.setdefault(row["case"], {})
        for key, value in row.items():
            if key != "case":
                case[key] = case.get(key, 0) + int(value)
    width = max(len(name) for name in cases)
    lines = [f"{'case':<{width}}  {'inputs':>7}  {'5xx':>4}  {'lost':>4}  {'mixed':>5}  other"]
    for name in sorted(cases):
        c = cases[name]
        other = ", ".join(f"{k} {v:,}" for k, v in sorted(c.items()) if k not in ("inputs", *ZERO))
        lines.append(f"{name:<{width}}  {c['inputs']:>7,}  {c['server_errors']:>4}  {c['events_lost']:>4}  "
                     f"{c['mixed_vectors']:>5}  {other}")
    total = {key: sum(c[key] for c in cases.values()) for key in ("inputs", *ZERO)}
    lines.append(f"{len(cases)} fault cases: {total['inputs']:,} inputs tried, {total['server_errors']} 5xx seen, "
                 f"{total['events_lost']} events lost, {total['mixed_vectors']} mixed vectors seen")
    return lines
