#!/usr/bin/env python3
"""How long Airflow takes to parse each DAG file, against an empty DAG parsed the same way.

The DAG processor re-parses every file in ``dags/`` continuously (every
``min_file_process_interval``, 30 s by default), each time in a fresh child process, so
a DAG file's import cost is paid again and again (STYLE.md: "DAG files are
configuration"). For each file of ``dags/`` and for two generated baselines -- an empty
DAG file (one ``@dag`` with no task, the floor of what any DAG costs) and a TaskFlow DAG
using the same Airflow features as the project's (tasks, ``.expand()``, an Asset) but
no project import -- this script runs ``--runs``
fresh Python processes, interleaved file by file so they share the machine's load. In
each process Airflow is imported first (the DAG processor has it imported already; not
timed), then:

* **cold**: ``DagBag(dag_folder=<that one file>)`` (examples off via the environment), the first
  parse in the process, which also imports whatever the DAG file imports
  (``pipeline.settings``, pydantic models, YAML...): what the DAG processor pays per parse;
* **warm**: ``--warm`` more DagBags on the same file in the same process (the file's
  module is executed again; modules it imports are already loaded).

Reports the median of each, the ratio to the empty DAG, the milliseconds above the
TaskFlow baseline (the project's own share), the modules a cold parse had to
import, and DagBag's own ``dagbag_stats`` duration. Writes
``benchmarks/results/dag_parse.json`` and prints a Markdown table.

Usage: python benchmarks/dag_parse.py [--runs 10] [--warm 5] [--dags-folder dags]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results" / "dag_parse.json"
EMPTY_DAG = '''"""The floor: one DAG, no tasks, nothing imported beyond the Airflow SDK."""

import pendulum
from airflow.sdk import dag


@dag(
    dag_id="empty_baseline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def empty_baseline() -> None:
    pass


empty_baseline()
'''
# A second floor: the same Airflow features the project's DAGs use (TaskFlow tasks, mapping,
# an Asset), but no project import: what is left above it is the project's own cost.
TASKFLOW_DAG = '''"""Airflow-only floor: TaskFlow tasks, .expand() and an Asset outlet; no project code."""

import pendulum
from airflow.sdk import Asset, dag, task

OUT = Asset(name="baseline_asset", uri="baseline://asset")


@dag(
    dag_id="taskflow_baseline",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
)
def taskflow_baseline() -> None:
    @task
    def plan() -> list[int]:
        return [1, 2]

    @task(max_active_tis_per_dagrun=8)
    def work(item: int) -> int:
        return item

    @task(outlets=[OUT], trigger_rule="all_done")
    def finish(results: list[int]) -> int:
        return sum(results)

    finish(work.expand(item=plan()))


taskflow_baseline()
'''


def worker(path: str, warm: int) -> dict[str, Any]:
    """Parse ``path`` once cold and ``warm`` times warm in this process (run in a subprocess)."""
    import airflow  # noqa: F401  (the DAG processor has Airflow imported before it parses)
    import pendulum  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import dag  # noqa: F401

    before = set(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=path)
    cold = time.perf_counter() - started
    imported = sorted(set(sys.modules) - before)
    stats = [stat.duration.total_seconds() for stat in bag.dagbag_stats] if bag.dagbag_stats else []
    warm_times = []
    for _ in range(warm):
        started = time.perf_counter()
        DagBag(dag_folder=path)
        warm_times.append(time.perf_counter() - started)
    packages = sorted({name.split(".")[0] for name in imported if not name.startswith("unusual_prefix")})
    return {
        "cold_seconds": cold,
        "warm_seconds": warm_times,
        "dagbag_stats_seconds": stats,
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
        "modules_imported": len(imported),
        "packages_imported": packages,
    }


def run_worker(path: Path, warm: int, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", str(path), "--warm", str(warm)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"parsing {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def airflow_environment(home: Path, dags_folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }


def measure(dags_folder: Path, runs: int, warm: int) -> dict[str, Any]:
    files = sorted(p for p in dags_folder.glob("*.py") if not p.name.startswith("_"))
    if not files:
        raise SystemExit(f"no DAG files in {dags_folder}")
    with tempfile.TemporaryDirectory(prefix="dag-parse-") as tmp:
        home, empty_dir = Path(tmp) / "airflow", Path(tmp) / "empty"
        home.mkdir()
        empty_dir.mkdir()
        empty = empty_dir / "empty_dag.py"
        empty.write_text(EMPTY_DAG, encoding="utf-8")
        taskflow = empty_dir / "taskflow_dag.py"
        taskflow.write_text(TASKFLOW_DAG, encoding="utf-8")
        env = airflow_environment(home, dags_folder)
        targets = {
            "(empty DAG)": empty,
            "(TaskFlow DAG, no project code)": taskflow,
            **{p.name: p for p in files},
        }
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for run in range(runs):
            for name, path in targets.items():  # interleaved: every file sees the same load
                samples[name].append(run_worker(path, warm, env))
            print(f"run {run + 1}/{runs} done", file=sys.stderr)
    results: dict[str, Any] = {}
    for name, runs_of_file in samples.items():
        cold = [s["cold_seconds"] * 1000 for s in runs_of_file]
        warm_ms = [w * 1000 for s in runs_of_file for w in s["warm_seconds"]]
        stats = [d * 1000 for s in runs_of_file for d in s["dagbag_stats_seconds"]]
        first = runs_of_file[0]
        results[name] = {
            "cold_ms": {
                "median": statistics.median(cold),
                "min": min(cold),
                "max": max(cold),
                "n": len(cold),
            },
            "warm_ms": {
                "median": statistics.median(warm_ms) if warm_ms else None,
                "min": min(warm_ms) if warm_ms else None,
                "n": len(warm_ms),
            },
            "dagbag_stats_ms_median": statistics.median(stats) if stats else None,
            "dag_ids": first["dag_ids"],
            "import_errors": first["import_errors"],
            "modules_imported_by_cold_parse": first["modules_imported"],
            "packages_imported_by_cold_parse": first["packages_imported"],
        }
    baseline, floor = results["(empty DAG)"], results["(TaskFlow DAG, no project code)"]
    for entry in results.values():
        entry["cold_ratio_to_empty"] = round(entry["cold_ms"]["median"] / baseline["cold_ms"]["median"], 2)
        over_floor = entry["cold_ms"]["median"] - floor["cold_ms"]["median"]
        entry["cold_ms_over_taskflow_floor"] = round(over_floor, 1)
        if entry["warm_ms"]["median"] and baseline["warm_ms"]["median"]:
            entry["warm_ratio_to_empty"] = round(
                entry["warm_ms"]["median"] / baseline["warm_ms"]["median"], 2
            )
    return results


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| DAG file | DAGs | cold parse ms (median) | x empty | ms over TaskFlow floor "
        "| warm parse ms (median) | x empty | modules imported by a cold parse |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["files"].items():
        warm = entry["warm_ms"]["median"]
        lines.append(
            f"| {name} | {', '.join(entry['dag_ids']) or '-'} | {entry['cold_ms']['median']:.1f} "
            f"| {entry['cold_ratio_to_empty']:.2f} | {entry['cold_ms_over_taskflow_floor']:+.1f} "
            f"| {warm:.1f} | {entry.get('warm_ratio_to_empty', 0):.2f} "
            f"| {entry['modules_imported_by_cold_parse']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per file")
    parser.add_argument("--warm", type=int, default=5, help="warm parses per process")
    parser.add_argument("--dags-folder", default=str(REPO_ROOT / "dags"))
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.warm)))
        return 0
    started = time.perf_counter()
    files = measure(Path(args.dags_folder).resolve(), args.runs, args.warm)
    result = {
        "benchmark": "dag_parse",
        "method": (
            "per file: --runs fresh processes (interleaved across files); in each, Airflow imported "
            "first (untimed), then one cold DagBag(dag_folder=file) and --warm more in the same process; "
            "time.perf_counter around each DagBag"
        ),
        "runs": args.runs,
        "warm_per_run": args.warm,
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "apache-airflow": metadata.version("apache-airflow"),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
        "files": files,
        "command": " ".join(["python", "benchmarks/dag_parse.py", *sys.argv[1:]]),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
