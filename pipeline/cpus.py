"""How many CPUs this process may really use, and how many prepare workers that makes.

``os.cpu_count()`` names the machine's CPUs. A container or a service is often given
fewer: an affinity mask (``taskset``, a systemd ``CPUAffinity``) or a CFS quota of its
cgroup (``docker run --cpus 2``, a Kubernetes CPU limit). Starting a worker per machine
CPU under a 2-CPU quota would make the workers take turns, each holding its own memory.
So the count is the smallest of the three.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# More prepare workers than this bring little: the process that stores what they prepare
# becomes the bottleneck, and each worker holds about 0.4 GB.
MAX_AUTO_WORKERS = 4


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cpus(root: Path) -> float | None:
    """The CPUs a cgroup's CFS quota allows (v2 ``cpu.max``, else v1), or None without one."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        try:
            quota, period = int(quota_text), int(period_text)
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None  # -1: no quota
    return None


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process can use: the affinity mask, capped by the cgroup's quota (at least 1).

    A fractional quota counts up (1.5 CPUs: 2), since a worker still uses the half.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _quota_cpus(cgroup_root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def auto_workers(cpus: int, *, in_task: bool = False) -> int:
    """Prepare workers for ``poll.workers: auto`` on ``cpus`` usable CPUs.

    A command runs one cycle: one worker per CPU beside its own, up to
    :data:`MAX_AUTO_WORKERS`; none on one CPU, where a worker would only take turns with
    the process. An Airflow task is one of several polls running side by side (the DAG
    maps its batches over the workers' slots), which share the CPUs already: one worker
    each, as long as there are two CPUs.
    """
    if cpus < 2:
        return 0
    return 1 if in_task else min(cpus - 1, MAX_AUTO_WORKERS)
