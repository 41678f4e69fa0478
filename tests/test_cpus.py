"""The CPUs a process may use (affinity, cgroup quota) and the prepare workers they make."""

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


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({}, None),  # no cgroup files at all
        ({"cpu.max": "max 100000"}, None),  # v2 without a quota
        ({"cpu.max": "100000 100000"}, 1),
        ({"cpu.max": "50000 100000"}, 1),  # half a CPU still counts as one
        ({"cpu.max": "150000 100000"}, 2),  # 1.5 CPUs: the half is used too
        ({"cpu.max": "not numbers"}, None),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),  # v1, no quota
        ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 1),
    ],
)
def test_usable_cpus_is_capped_by_the_cgroup_quota(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    expected = affinity() if limit is None else min(affinity(), limit)
    assert cpus.usable_cpus(cgroup(tmp_path, files)) == expected


def test_a_quota_above_the_affinity_mask_leaves_the_mask(tmp_path: Path) -> None:
    # A process pinned to one CPU (taskset, CPUAffinity=) under a generous quota.
    script = (
        "import os, sys; from pathlib import Path; from pipeline import cpus;"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
        "root = Path(sys.argv[1]); (root / 'cpu.max').write_text('800000 100000');"
        "print(cpus.usable_cpus(root))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "1"


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
def test_auto_workers(count: int, command: int, task: int) -> None:
    assert cpus.auto_workers(count) == command
    assert cpus.auto_workers(count, in_task=True) == task


def test_workers_default_to_auto_and_resolve_for_this_machine(tmp_path: Path) -> None:
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    assert settings.poll.workers == "auto"
    assert settings.poll.worker_count() == cpus.auto_workers(cpus.usable_cpus())
    assert settings.poll.worker_count(in_task=True) == cpus.auto_workers(cpus.usable_cpus(), in_task=True)
    fixed = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": "3"})
    assert fixed.poll.workers == 3
    assert fixed.poll.worker_count() == fixed.poll.worker_count(in_task=True) == 3


@pytest.mark.parametrize("value", ["many", "-1", "17", "1.5", ""])
def test_a_bad_worker_count_is_one_clear_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": value})
    message = str(caught.value)
    assert "'poll.workers'" in message
    assert "auto or a whole number from 0 to 16" in message
    assert message.count("setting '") == 1


def test_a_poll_task_takes_one_worker_for_auto_and_keeps_a_number(tmp_path: Path) -> None:
    auto = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    assert _task_workers(auto).poll.workers == cpus.auto_workers(cpus.usable_cpus(), in_task=True)
    assert _task_workers(auto).poll.workers in (0, 1)
    assert auto.poll.workers == "auto"  # the caller's settings are left as they were
    fixed = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_POLL__WORKERS": "2"})
    assert _task_workers(fixed).poll.workers == 2
