#!/usr/bin/env python3
"""Load: many feeds replayed through ``summitwatch run --once --all``, beside the bare libraries.

A local feed server (the one of ``benchmarks/cycle_speed.py``, on 127.0.0.1) serves
``--feeds`` RSS feeds of ``--items`` items each. The pages are the real texts of
``cycle_speed.py`` (the non-held-out real excerpts of the repository, 458 of them) plus the
181 real article pages of ``../shared/extraction-benchmark/html`` (MIT licence, English);
beyond those 639, texts repeat under new URLs and outlets, which the pipeline stores as
exact copies (each still classified, embedded and stored). Measured, each in a fresh
process on a freshly initialised SQLite database:

* **summitwatch**: ``summitwatch run --once --all``: wall time, CPU time, peak RSS (of
  that process alone), database size after the run, items per hour;
* **bare**: the bare-library loop of ``cycle_speed.py`` over the same feeds (fetch,
  feedparser, trafilatura, langdetect, one encoder call per article), for the ratio.

The issue asks for 500 feeds x 50 items (25,000 items: about an hour and a half per side on
this 2-core machine shared with other work); the default here is a smaller replay, named
in the results. The Airflow path at scale is ``benchmarks/pipeline_throughput.py``.

Usage::

    python benchmarks/load_replay.py                         # 40 feeds x 25 items
    python benchmarks/load_replay.py --feeds 500 --items 50  # the full replay
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import cycle_speed  # noqa: E402  (the site, server and bare loop are shared)

REPO_ROOT = BENCHMARKS.parent
PAGES_DIR = REPO_ROOT.parent / "shared" / "extraction-benchmark" / "html"
RESULTS = BENCHMARKS / "results" / "load_replay.json"


def build_site(root: Path, feeds: int, items: int) -> dict[str, Any]:
    """``feeds`` feeds of ``items`` pages, the real texts dealt out in turn."""
    texts = cycle_speed.select_articles(10_000)
    real_pages = sorted(PAGES_DIR.glob("*.html.gz")) if PAGES_DIR.is_dir() else []
    sources: list[tuple[str, Any]] = [("excerpt", t) for t in texts] + [("page", p) for p in real_pages]
    entries: list[list[tuple[str, str, float]]] = [[] for _ in range(feeds)]
    number = 0
    for item in range(items):
        for feed in range(feeds):
            kind, source = sources[number % len(sources)]
            outlet = f"outlet-{feed}"
            moment = cycle_speed.SITE_TIME + 60 * number
            slug = hashlib.sha1(f"{feed}-{item}".encode()).hexdigest()[:12]
            path = f"{outlet}/news/{slug}.html"
            if kind == "excerpt":
                published = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(moment))
                body = cycle_speed.article_page(source, outlet, published, [])
                title = source["title"]
            else:
                body = gzip.decompress(source.read_bytes())
                title = f"Report {feed}-{item}"
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            entries[feed].append((title, path, moment))
            number += 1
    (root / "feeds").mkdir(parents=True, exist_ok=True)
    paths = []
    for feed in range(feeds):
        path = f"feeds/outlet-{feed}.xml"
        (root / path).write_bytes(cycle_speed.rss(f"outlet-{feed}", "en", entries[feed]))
        paths.append({"path": path, "lang": None, "items": items})
    return {
        "feeds": paths,
        "items": feeds * items,
        "distinct_texts": min(len(sources), feeds * items),
        "texts_available": len(sources),
    }


def measured(command: list[str], env: dict[str, str], work: Path) -> dict[str, Any]:
    """Wall, CPU and peak RSS of one child process (its own, from wait4)."""
    out, err = work / "child.out", work / "child.err"
    began = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{err.read_text()[-3000:]}")
    return {
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stdout": out.read_text(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--feeds", type=int, default=40)
    parser.add_argument("--items", type=int, default=25)
    parser.add_argument("--label", default="current")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="load-replay-") as temporary:
        work = Path(temporary)
        site = build_site(work / "site", args.feeds, args.items)
        with cycle_speed.feed_server(work / "site") as base:
            template, config_dir = cycle_speed.prepare_database(work, base, site)
            database = work / "run.db"
            shutil.copyfile(template, database)
            env = cycle_speed.environment(f"sqlite:///{database}", config_dir)
            ours = measured([str(cycle_speed.SUMMITWATCH), "run", "--once", "--all"], env, work)
            stored = cycle_speed.count_stored(database)
            size = sum(p.stat().st_size for p in work.glob("run.db*"))
            template_size = template.stat().st_size
            urls = [f"{base}/{feed['path']}" for feed in site["feeds"]]
            bare = measured([sys.executable, str(BENCHMARKS / "cycle_speed.py"), "--bare", *urls], env, work)
    items = site["items"]
    ours.pop("stdout")
    bare_detail = json.loads(bare.pop("stdout"))
    result = {
        "label": args.label,
        "command": " ".join(["python", "benchmarks/load_replay.py", *sys.argv[1:]]),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # What poll.workers: auto gives here (runs on more CPUs start more workers).
            "prepare_workers_auto": cycle_speed.auto_prepare_workers(),
            "encoder_model": cycle_speed.configured_encoder_model(),
            "load_average_at_start": [round(x, 2) for x in load],
            "note": "shared 2-core machine, other jobs running; SQLite database",
        },
        "site": site,
        "summitwatch": {
            **ours,
            "items_per_hour": round(items / ours["wall_seconds"] * 3600),
            "items_per_hour_per_core": round(items / ours["cpu_seconds"] * 3600),
            "stored": stored,
            "database_mb": round(size / 1e6, 1),
            "database_mb_before_run": round(template_size / 1e6, 1),
        },
        "bare": {
            **bare,
            "items_per_hour": round(items / bare["wall_seconds"] * 3600),
            "stage_seconds": bare_detail["stage_seconds"],
        },
        "ratio": round(ours["wall_seconds"] / bare["wall_seconds"], 2),
        "cpu_ratio": round(ours["cpu_seconds"] / bare["cpu_seconds"], 2),
    }
    stored_runs = json.loads(args.output.read_text(encoding="utf-8")) if args.output.exists() else {}
    runs = stored_runs.get("runs", {})
    runs[args.label] = result
    args.output.write_text(
        json.dumps({"benchmark": "load_replay", "runs": runs}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print(json.dumps({k: v for k, v in result.items() if k != "site"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
