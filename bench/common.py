"""Small helpers: run statistics, progress lines, process memory, percentiles."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line with the time since the bench started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True, file=sys.stdout)


def elapsed() -> float:
    return time.monotonic() - _T0


def stats(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median with min and max of the runs (and the runs themselves)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "runs": [round(v, digits) for v in vals],
    }


def rates(n: int, seconds: Sequence[float]) -> dict[str, Any]:
    """Jobs per second of each run (n jobs in each run's seconds)."""
    return stats([n / s for s in seconds if s > 0], digits=1)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB (from /proc/<pid>/status), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct and indirect child processes of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def tree_rss_mb(pid: int) -> float | None:
    """RSS of a process plus its children, in MB."""
    own = rss_mb(pid)
    if own is None:
        return None
    return own + sum(rss_mb(k) or 0.0 for k in children(pid))


def loadavg() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews every figure)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""
