"""The CPUs and memory a process may use (affinity, cgroup quota and limits, v1 and v2,
found through /proc/self/cgroup and /proc/self/mountinfo) and the prepare workers they make.

Each case lays out a machine's files under a folder (its ``proc`` and ``sys``) as the
kernel shows them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cpus
from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.tasks import _task_workers

GIB = 2**30
V2_MOUNT = "30 23 0:26 {root} /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n"
V1_MOUNT = "32 31 0:29 {root} /sys/fs/cgroup/{folder} rw,relatime - cgroup cgroup rw,{controllers}\n"
MEMINFO = "MemTotal:       25165824 kB\nMemFree:         1000000 kB\nMemAvailable:   {kb} kB\n"

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def machine(tmp_path: Path, mountinfo: str | None, cgroup: str, files: dict[str, str]) -> Path:
    """A file system root holding ``proc/self/{mountinfo,cgroup}`` and ``files``."""
    (tmp_path / "proc/self").mkdir(parents=True)
    if mountinfo is not None:
        (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return tmp_path


@needs_affinity
@pytest.mark.parametrize(
    ("mountinfo", "cgroup", "files", "limit"),
    [
        # A container with its own cgroup namespace (Docker, Podman, Kubernetes on v2).
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000"}, None),
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "200000 100000"}, 2),
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "100000 100000"}, 1),
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000"}, 1),  # rounds down
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "50000 100000"}, 1),  # at least 1
        (V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "not numbers"}, None),
        # A systemd host: the top has no cpu.max; a service's CPUQuota is a few levels down...
        (
            V2_MOUNT.format(root="/"),
            "0::/system.slice/summitwatch.service\n",
            {"sys/fs/cgroup/system.slice/summitwatch.service/cpu.max": "100000 100000"},
            1,
        ),
        # ...or on a slice above it: the smallest quota on the way up counts.
        (
            V2_MOUNT.format(root="/"),
            "0::/system.slice/summitwatch.service\n",
            {
                "sys/fs/cgroup/system.slice/cpu.max": "100000 100000",
                "sys/fs/cgroup/system.slice/summitwatch.service/cpu.max": "max 100000",
            },
            1,
        ),
        # A mount that shows a cgroup below the hierarchy's top (a bind mount of a pod's).
        (
            V2_MOUNT.format(root="/kubepods/pod1"),
            "0::/kubepods/pod1/container\n",
            {"sys/fs/cgroup/container/cpu.max": "100000 100000"},
            1,
        ),
        # The process's cgroup is not under what the mount shows: the mount's top is read.
        (
            V2_MOUNT.format(root="/"),
            "0::/docker/0123abcd\n",
            {"sys/fs/cgroup/cpu.max": "100000 100000"},
            1,
        ),
        # cgroup v1, the cpu controller mounted alone or with cpuacct.
        (
            V1_MOUNT.format(root="/", folder="cpu", controllers="cpu"),
            "4:memory:/\n1:cpu:/batch\n",
            {"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"},
            None,
        ),
        (
            V1_MOUNT.format(root="/", folder="cpu,cpuacct", controllers="cpu,cpuacct"),
            "3:cpu,cpuacct:/user.slice\n",
            {
                "sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_quota_us": "100000",
                "sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_period_us": "100000",
            },
            1,
        ),
        # No mountinfo to read: the usual places.
        (None, "", {"sys/fs/cgroup/cpu.max": "100000 100000"}, 1),
        (None, "", {}, None),
    ],
)
def test_usable_cpus_follows_the_quota_of_the_process_cgroup(
    tmp_path: Path, mountinfo: str | None, cgroup: str, files: dict[str, str], limit: int | None
) -> None:
    root = machine(tmp_path, mountinfo, cgroup, files)
    assert cpus.usable_cpus(root) == (affinity() if limit is None else min(affinity(), limit))


@needs_affinity
def test_a_quota_above_the_affinity_mask_leaves_the_mask(tmp_path: Path) -> None:
    # A process pinned to one CPU (taskset, CPUAffinity=) under a generous quota.
    machine(tmp_path, V2_MOUNT.format(root="/"), "0::/\n", {"sys/fs/cgroup/cpu.max": "800000 100000"})
    script = (
        "import os, sys; from pathlib import Path; from pipeline import cpus;"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
        "print(cpus.usable_cpus(Path(sys.argv[1])))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize(
    ("mountinfo", "cgroup", "files", "expected"),
    [
        # v2: the smallest of the cgroups' memory.max and what is available now.
        (
            V2_MOUNT.format(root="/"),
            "0::/app\n",
            {"sys/fs/cgroup/app/memory.max": str(GIB), "proc/meminfo": MEMINFO.format(kb=8 * 2**20)},
            GIB,
        ),
        (
            V2_MOUNT.format(root="/"),
            "0::/app\n",
            {"sys/fs/cgroup/app/memory.max": "max", "proc/meminfo": MEMINFO.format(kb=2**20)},
            GIB,
        ),
        # v1: "no limit" is a huge number, not a limit.
        (
            V1_MOUNT.format(root="/", folder="memory", controllers="memory"),
            "4:memory:/process_api/abc\n",
            {
                "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
                "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": str(2 * GIB),
                "proc/meminfo": MEMINFO.format(kb=8 * 2**20),
            },
            2 * GIB,
        ),
        (V2_MOUNT.format(root="/"), "0::/\n", {}, None),
    ],
)
def test_usable_memory(
    tmp_path: Path, mountinfo: str, cgroup: str, files: dict[str, str], expected: int | None
) -> None:
    assert cpus.usable_memory(machine(tmp_path, mountinfo, cgroup, files)) == expected


@pytest.mark.parametrize(
    ("count", "command", "task"),
    [
        (1, 0, 0),
        (2, 1, 1),
        (3, 2, 1),
        (5, 4, 1),
        (8, cpus.MAX_AUTO_WORKERS, 1),
        (64, cpus.MAX_AUTO_WORKERS, 1),
    ],
)
def test_auto_workers_by_cpus(count: int, command: int, task: int) -> None:
    assert cpus.auto_workers(count) == command
    assert cpus.auto_workers(count, in_task=True) == task


def test_auto_workers_fit_the_memory() -> None:
    main, worker = cpus.MAIN_PROCESS_BYTES, cpus.WORKER_BYTES
    assert cpus.auto_workers(8, main + 2 * worker) == 2
    assert cpus.auto_workers(8, main + 2 * worker - 1) == 1
    assert cpus.auto_workers(8, main + worker - 1) == 0
    assert cpus.auto_workers(8, main - 1) == 0  # less than the process itself: none
    assert cpus.auto_workers(8, 64 * GIB) == cpus.MAX_AUTO_WORKERS
    assert cpus.auto_workers(8, main + worker - 1, in_task=True) == 0
    assert cpus.auto_workers(8, None, in_task=True) == 1


def test_workers_default_to_auto_and_resolve_for_this_machine(tmp_path: Path) -> None:
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    assert settings.poll.workers == "auto"
    here = cpus.usable_cpus(), cpus.usable_memory()
    # (The memory available moves between two reads; this machine's is far from a bound.)
    assert settings.poll.worker_count() == cpus.auto_workers(*here)
    assert settings.poll.worker_count(in_task=True) == cpus.auto_workers(*here, in_task=True)
    fixed = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": "3"})
    assert fixed.poll.workers == 3
    assert fixed.poll.worker_count() == fixed.poll.worker_count(in_task=True) == 3
    for spelled in ("AUTO", " auto "):
        loose = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": spelled})
        assert loose.poll.workers == "auto"


@pytest.mark.parametrize("value", ["many", "-1", "17", "1.5", "", "+3", "\u0663", "\uff13", "\u00b2"])
def test_a_bad_worker_count_is_one_clear_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": value})
    message = str(caught.value)
    assert "'poll.workers'" in message
    assert "auto or a whole number from 0 to 16" in message
    assert message.count("setting '") == 1


def test_a_worker_count_in_yaml(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("poll:\n  workers: 2\n")
    assert load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)}).poll.workers == 2
    (tmp_path / "settings.yaml").write_text("poll:\n  workers: true\n")
    with pytest.raises(ConfigError, match=r"poll\.workers"):
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})


def test_a_task_takes_one_worker_for_auto_and_keeps_a_number(tmp_path: Path) -> None:
    auto = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    assert _task_workers(auto).poll.workers == cpus.auto_workers(
        cpus.usable_cpus(), cpus.usable_memory(), in_task=True
    )
    assert _task_workers(auto).poll.workers in (0, 1)
    assert auto.poll.workers == "auto"  # the caller's settings are left as they were
    fixed = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": "2"})
    assert _task_workers(fixed).poll.workers == 2
