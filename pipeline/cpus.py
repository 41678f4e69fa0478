"""How many CPUs (and how much memory) this process may really use, and how many prepare
workers that makes.

``os.cpu_count()`` names the machine's CPUs. A container or a service is often given
fewer: an affinity mask (``taskset``, a systemd ``CPUAffinity``) or a CFS quota of its
cgroup (``docker run --cpus 2``, a Kubernetes CPU limit, a systemd ``CPUQuota``).
Starting a worker per machine CPU under a 2-CPU quota would make the workers take turns,
each holding its own memory. So the count is the smallest of the three. The quota is read
where the process's own cgroup is (``/proc/self/cgroup`` under the cgroup mounts of
``/proc/self/mountinfo``) and in every cgroup above it up to the mount, cgroup v2 or v1:
inside a container the container's cgroup is the mount's top, on a systemd host a
service's is a few levels down. Memory is bounded the same way (the cgroup's limit and
the memory available now), since each worker holds a copy of what it computes with.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# More prepare workers than this bring little: the process that stores what they prepare
# becomes the bottleneck.
MAX_AUTO_WORKERS = 4
# Resident memory of a command (its models, parsers, the database session) and of each
# prepare worker beside it (forked: its own pages, vectors and copies of touched memory),
# rounded up from the load replay's peaks (README, Polling speed: Load).
MAIN_PROCESS_BYTES = 500 * 2**20
WORKER_BYTES = 400 * 2**20
_UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a number near 2**63
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class _Mount:
    root: PurePosixPath  # the cgroup the mount shows at its top
    point: Path  # where it is mounted (under the root of the file system read)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _mounts(root: Path) -> dict[str, _Mount]:
    """Cgroup mounts by controller ("" for the cgroup v2 hierarchy)."""
    text = _read(root / "proc/self/mountinfo")
    if text is None:  # not Linux, or hidden: the usual places
        top = PurePosixPath("/")
        return {
            "": _Mount(top, root / "sys/fs/cgroup"),
            "cpu": _Mount(top, root / "sys/fs/cgroup/cpu"),
            "memory": _Mount(top, root / "sys/fs/cgroup/memory"),
        }
    mounts: dict[str, _Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 4:
            continue
        kind, options = fields[dash + 1], fields[dash + 3].split(",")
        # Octal escapes (a space is "\040") in the mount point.
        point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
        mount = _Mount(PurePosixPath(fields[3]), root / point.lstrip("/"))
        if kind == "cgroup2":
            mounts.setdefault("", mount)
        elif kind == "cgroup":
            for option in options:
                mounts.setdefault(option, mount)
    return mounts


def _cgroup_folders(root: Path, *controllers: str) -> list[list[Path]]:
    """For each of ``controllers`` ("" for v2): the folders of this process's cgroup and of
    every cgroup above it up to the mount's top, innermost first (none if not mounted).
    The mounts and the process's cgroups are read once for all of them."""
    mounts = _mounts(root)
    memberships = [
        fields
        for fields in (line.split(":", 2) for line in (_read(root / "proc/self/cgroup") or "").splitlines())
        if len(fields) == 3  # hierarchy id, controllers ("" on v2), path
    ]
    return [_folders(mounts.get(controller), controller, memberships) for controller in controllers]


def _folders(mount: _Mount | None, controller: str, memberships: list[list[str]]) -> list[Path]:
    if mount is None:
        return []
    own: PurePosixPath | None = None
    for fields in memberships:
        if controller in (fields[1].split(",") if fields[1] else [""]):
            own = PurePosixPath(fields[2])
    folders = [mount.point]
    if own is not None:
        try:
            relative = own.relative_to(mount.root)
        except ValueError:  # the process's cgroup is outside what the mount shows
            relative = PurePosixPath()
        folder = mount.point
        for part in relative.parts:
            if part in ("", "/", ".."):
                continue
            folder = folder / part
            folders.append(folder)
    return [folder for folder in reversed(folders) if folder.is_dir()]


def _cpu_quota(root: Path) -> float | None:
    """The smallest CFS quota of this process's cgroups, in CPUs (None without one)."""
    quotas: list[float] = []
    unified, v1 = _cgroup_folders(root, "", "cpu")
    for folder in unified:
        parts = (_read(folder / "cpu.max") or "").split()
        if len(parts) == 2 and all(_DIGITS.fullmatch(part) for part in parts) and int(parts[1]) > 0:
            quotas.append(int(parts[0]) / int(parts[1]))
    for folder in v1:
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        try:
            if quota is not None and period is not None and int(quota) > 0 and int(period) > 0:
                quotas.append(int(quota) / int(period))
        except ValueError:
            continue
    return min(quotas) if quotas else None


def usable_cpus(root: Path = Path("/")) -> int:
    """CPUs this process can use: the affinity mask, capped by its cgroups' CPU quota.

    A fractional quota counts down (1.5 CPUs: 1), at least 1: a worker on the half would
    mostly take turns with the process.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cpu_quota(root)
    if quota is not None:
        count = min(count, int(quota))
    return max(1, count)


def usable_memory(root: Path = Path("/")) -> int | None:
    """Bytes this process may still use: the memory available now, capped by its cgroups'
    limits (None when neither can be read)."""
    limits: list[int] = []
    unified, v1 = _cgroup_folders(root, "", "memory")
    for folder in unified:
        value = _read(folder / "memory.max")
        if value is not None and _DIGITS.fullmatch(value):
            limits.append(int(value))
    for folder in v1:
        value = _read(folder / "memory.limit_in_bytes")
        if value is not None and _DIGITS.fullmatch(value) and int(value) < _UNLIMITED:
            limits.append(int(value))
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", _read(root / "proc/meminfo") or "", re.MULTILINE)
    if match:
        limits.append(int(match.group(1)) * 1024)
    return min(limits) if limits else None


def auto_workers(cpus: int, memory: int | None = None, *, in_task: bool = False) -> int:
    """Prepare workers for ``poll.workers: auto`` on ``cpus`` usable CPUs and ``memory``
    usable bytes (None: unknown, not a bound).

    A command runs one cycle: one worker per CPU beside its own, up to
    :data:`MAX_AUTO_WORKERS`, and only as many as the memory holds beside the process;
    none on one CPU, where a worker would only take turns with the process. An Airflow
    task is one of several polls running side by side (the DAG maps its batches over the
    workers' slots), which share the CPUs already: one worker each, as long as there are
    two CPUs and the memory for it.
    """
    if cpus < 2:
        return 0
    count = 1 if in_task else min(cpus - 1, MAX_AUTO_WORKERS)
    if memory is not None:
        count = min(count, max(0, (memory - MAIN_PROCESS_BYTES) // WORKER_BYTES))
    return count
