"""Small measuring helpers shared by the benchmarks: latency summaries, RSS, results files."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean/max of a list of milliseconds (nearest-rank percentiles)."""
    if not values_ms:
        return {"n": 0}
    ordered = sorted(values_ms)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "n": len(ordered),
        "p50": round(rank(0.50), 4),
        "p95": round(rank(0.95), 4),
        "mean": round(statistics.fmean(ordered), 4),
        "max": round(ordered[-1], 4),
    }


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def record_run(path: Path, key: str, result: dict[str, Any]) -> None:
    """Add (or replace) run ``key`` in the results file at ``path`` (``{"runs": {...}}``)."""
    existing: dict[str, Any] = {}
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
    existing.setdefault("runs", {})[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written to {path}", file=sys.stderr)
