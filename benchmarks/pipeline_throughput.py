#!/usr/bin/env python3
"""Articles per hour per worker: the real ingest DAG on Airflow + PostgreSQL, and the bare pipeline.

Everything runs on this machine, offline:

* a **feed server** (``http.server`` in its own process on 127.0.0.1) serves ``--feeds``
  RSS feeds of ``--items`` links each. The pages are the 181 real-world pages of
  ``../shared/extraction-benchmark/html`` (the same HTML the extraction benchmark times)
  and the 465 stories of ``tests/fixtures/dedup/stories.jsonl`` rendered into a news-site
  template (navigation, related links, footer), under varied URLs; beyond 646 items pages
  repeat under new URLs. Feeds carry ETag/Last-Modified and answer conditional requests.
* a **temporary PostgreSQL** cluster (``tests/postgres_server.py``) holds the Airflow
  metadata database and the summitwatch databases (schema + seed corpus by
  ``pipeline.bootstrap.initialise``).

Measured, in this order:

1. **bare**: ``pipeline.tasks.poll_feed_batch(all feed ids)`` in this process (one
   worker, no Airflow), with each stage's *exclusive* time recorded by wrapping the
   functions the ingest layer calls: fetch (``HttpClient.get``), feed parse, extract,
   language, dedupe (URL/hash lookups, MinHash profile/signature/bands, LSH candidates
   and verification), classify, store (inserts, sightings, signatures, commits).
2. **re-polls** of the same feeds, bare: the server answering ``304`` (conditional GET
   honoured), the server ignoring validators (same body again: the body-hash check), and
   the server changing the feed body but not its items (every item's URL looked up).
3. **airflow**: the real ``summitwatch_ingest`` DAG, with ``airflow scheduler``,
   ``airflow dag-processor`` and ``airflow api-server`` running with the
   **LocalExecutor** (``--parallelism`` task slots, default 2 = the cores), triggered once;
   ``SUMMITWATCH_POLL__BATCH_SIZE`` splits the feeds into ``--batches`` mapped tasks.
   Task durations come from the Airflow metadata database. ``--airflow-mode dags-test``
   runs ``airflow dags test`` instead (one process, no executor): the fallback.

"Articles" are feed items that went through the pipeline (new, duplicate or failed).
Per worker = articles / busy time of one worker (sum of the ``poll_batch`` task
durations, or the bare call's wall time).

For a load replay (many feeds through the DAG), options leave parts out or add some:
``--skip-bare`` leaves out 1 and 2, ``--skip-repoll`` leaves out 2; ``--resources``
samples the resident memory (``/proc``, every 0.5 s) of the Airflow components' process
trees while the DAG runs, and measures the summitwatch database the DAG wrote (size and
rows); ``--bare-libraries`` then runs the bare-library loop of ``cycle_speed.py`` (fetch,
feedparser, trafilatura, langdetect, one encoder call per article, nothing stored) over
the same feeds, in a process of its own, for the ratio of the DAG's wall time to it.

Writes ``benchmarks/results/pipeline_throughput.json`` (``--output``) and prints Markdown
tables.

Usage::

    python benchmarks/pipeline_throughput.py                     # 24 feeds x 25 items
    python benchmarks/pipeline_throughput.py --feeds 8 --items 10 --skip-airflow
    python benchmarks/pipeline_throughput.py --airflow-mode dags-test
    python benchmarks/pipeline_throughput.py --feeds 500 --items 50 --skip-bare --resources \\
        --bare-libraries --airflow-timeout 6000 --output benchmarks/results/load_replay_dag.json
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import html
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import AbstractContextManager
from email.utils import formatdate
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import site_server  # noqa: E402  (beside this script: the local site's server process)

STORIES = REPO_ROOT / "tests" / "fixtures" / "dedup" / "stories.jsonl"
PAGES_DIR = REPO_ROOT.parent / "shared" / "extraction-benchmark" / "html"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "pipeline_throughput.json"
DAG_ID = "summitwatch_ingest"
SITE_MTIME = 1_763_900_000.0
OUTLETS = (
    "eurasia-wire",
    "steppe-daily",
    "pacific-ledger",
    "north-review",
    "silk-road-post",
    "kremlin-watch",
)


# The site ---------------------------------------------------------------------------------


def story_page(story: dict[str, Any], outlet: str, related: list[tuple[str, str]]) -> bytes:
    """One story in a plain news-site template, with the boilerplate a real page has."""
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in story["text"].split("\n\n") if p.strip())
    links = "\n".join(f'<li><a href="{html.escape(u)}">{html.escape(t)}</a></li>' for u, t in related)
    lang = html.escape(story["lang"])
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8">
<title>{html.escape(story["title"])} | {outlet}</title>
<meta property="og:title" content="{html.escape(story["title"])}">
<meta name="author" content="Staff correspondent">
<meta property="article:published_time" content="2026-01-15T08:00:00+00:00">
</head><body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/economy">Economy</a>
<a href="/energy">Energy</a> <a href="/opinion">Opinion</a> <a href="/subscribe">Subscribe</a></nav></header>
<main><article>
<h1>{html.escape(story["title"])}</h1>
<p class="byline">By Staff correspondent, {outlet}</p>
<time datetime="2026-01-15T08:00:00+00:00">15 January 2026</time>
{paragraphs}
</article>
<aside><h2>Related</h2><ul>{links}</ul></aside></main>
<footer><p>&copy; 2026 {outlet}. All rights reserved.</p>
<p><a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact</a></p></footer>
</body></html>""".encode()


def build_site(root: Path, feeds: int, items: int, seed: int = 7) -> dict[str, Any]:
    """Write feeds and pages under ``root``; returns a description of the site."""
    rng = random.Random(seed)
    stories = [json.loads(line) for line in STORIES.read_text(encoding="utf-8").splitlines()]
    real_pages = sorted(PAGES_DIR.glob("*.html.gz"))
    sources: list[tuple[str, Any]] = [("real", p) for p in real_pages] + [("story", s) for s in stories]
    rng.shuffle(sources)
    (root / "feeds").mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    feed_paths = []
    number = 0
    for feed_index in range(feeds):
        outlet = OUTLETS[feed_index % len(OUTLETS)]
        entries = []
        for item_index in range(items):
            kind, source = sources[number % len(sources)]
            repeat = number // len(sources)
            number += 1
            section = ("world", "politics", "economy", "asia")[item_index % 4]
            slug = hashlib.sha1(f"{feed_index}-{item_index}".encode()).hexdigest()[:10]
            style = feed_index % 3
            if style == 0:
                path = f"{outlet}/{section}/2026/01/{slug}-{item_index}.html"
            elif style == 1:
                path = f"{outlet}/news/{slug}/index.html"
            else:
                path = f"{outlet}/a/{feed_index}{item_index:03d}.html"
            if kind == "real":
                body = gzip.decompress(source.read_bytes())
                title = f"Report {feed_index}-{item_index}"
            else:
                related = [(f"/{outlet}/related/{k}.html", f"More on {section} #{k}") for k in range(6)]
                body = story_page(source, outlet, related)
                title = source["title"]
            counts[kind if not repeat else f"{kind} (repeated under a new URL)"] += 1
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            entries.append((title, path, item_index))
        feed_path = f"feeds/{outlet}-{feed_index}.xml"
        (root / feed_path).write_bytes(rss(outlet, feed_index, entries))
        feed_paths.append(feed_path)
    return {"feeds": feed_paths, "items_per_feed": items, "pages_by_kind": dict(counts)}


def rss(outlet: str, feed_index: int, entries: list[tuple[str, str, int]], build: str = "") -> bytes:
    items = []
    for title, path, position in entries:
        when = formatdate(SITE_MTIME - 600 * position, usegmt=True)
        items.append(
            f"<item><title>{html.escape(title)}</title><link>{{BASE}}/{path}</link>"
            f'<guid isPermaLink="true">{{BASE}}/{path}</guid><pubDate>{when}</pubDate>'
            f"<description>{html.escape(title)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{outlet} feed {feed_index}</title><link>{{BASE}}/{outlet}/</link>"
        f"<description>benchmark feed</description>{build}" + "".join(items) + "</channel></rss>"
    ).encode()


def serve(root: Path, port_file: Path) -> None:
    """Serve ``root`` until killed (run in a subprocess: ``--serve ROOT --port-file FILE``).

    ``GET /_mode?<mode>`` switches how feeds answer: ``etag`` (honour If-None-Match),
    ``ignore`` (always 200 with the same body), ``touch`` (always 200, a new
    ``lastBuildDate`` in the body: new bytes, same items).
    """
    state = {"mode": "etag", "touches": 0}
    cache: dict[str, bytes] = {}
    lock = threading.Lock()

    class Handler(site_server.QuietHandler):
        protocol_version = "HTTP/1.1"
        # One send per response and no Nagle delay: with the unbuffered default, headers and
        # body go out in two writes and each 200 stalls ~40 ms on the client's delayed ACK.
        wbufsize = -1
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/_mode":
                state["mode"] = parts.query
                self.send(200, b"ok", "text/plain", {})
                return
            relative = parts.path.lstrip("/")
            file = (root / relative).resolve()
            if not file.is_relative_to(root) or not file.is_file():
                self.send(404, b"not found", "text/plain", {})
                return
            with lock:
                body = cache.get(relative)
                if body is None:
                    base = f"http://{self.headers.get('Host')}".encode()
                    body = file.read_bytes().replace(b"{BASE}", base)
                    cache[relative] = body
            is_feed = relative.startswith("feeds/")
            if is_feed and state["mode"] == "touch":
                with lock:
                    state["touches"] += 1
                    built = formatdate(SITE_MTIME + state["touches"], usegmt=True)
                stamp = f"<lastBuildDate>{built}</lastBuildDate>"
                body = body.replace(b"<description>benchmark feed</description>", stamp.encode(), 1)
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = {"ETag": etag, "Last-Modified": formatdate(SITE_MTIME, usegmt=True)}
            if is_feed and state["mode"] == "etag" and self.headers.get("If-None-Match") == etag:
                self.send(304, b"", None, headers)
                return
            kind = "application/rss+xml; charset=utf-8" if is_feed else "text/html; charset=utf-8"
            self.send(200, body, kind, headers)

    site_server.serve_forever(Handler, port_file)


def feed_server(root: Path) -> AbstractContextManager[str]:
    """This script's site served from a process of its own; yields the base URL."""
    return site_server.server_process(__file__, root)


def set_mode(base: str, mode: str) -> None:
    import httpx

    httpx.get(f"{base}/_mode?{mode}", timeout=10).raise_for_status()


# Databases --------------------------------------------------------------------------------


def create_database(server_url: str, name: str) -> str:
    import psycopg

    conninfo = server_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def prepare_summitwatch(db_url: str, base: str, site: dict[str, Any]) -> list[int]:
    """Schema, seed corpus and the benchmark feeds; returns the feed ids."""
    from pipeline.bootstrap import initialise
    from pipeline.db import repo
    from pipeline.db.engine import make_engine, session_factory

    settings = bench_settings(db_url)
    initialise(settings, load_feeds=False)
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            ids = []
            for path in site["feeds"]:
                feed, _ = repo.upsert_feed(session, f"{base}/{path}", name=path, reason="benchmark feed")
                ids.append(feed.id)
            session.commit()
    finally:
        engine.dispose()
    return ids


def bench_settings(db_url: str) -> Any:
    from pipeline.settings import load_settings

    return load_settings(
        environ={"SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")},
        overrides={"db_url": db_url, "allow_private_networks": True},
    )


def count_items(db_url: str) -> dict[str, int]:
    """Feed items that went through the pipeline, by outcome (from the database)."""
    import psycopg

    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as connection:
        articles, duplicates = connection.execute(
            "SELECT count(*) FILTER (WHERE duplicate_of_id IS NULL), count(*) FILTER (WHERE duplicate_of_id"
            " IS NOT NULL) FROM articles WHERE NOT is_seed"
        ).fetchone()
        sightings = connection.execute("SELECT count(*) FROM sightings WHERE via LIKE 'feed:%'").fetchone()
        failures = connection.execute("SELECT count(*) FROM fetch_failures WHERE stage = 'page'").fetchone()
        assert sightings is not None
        assert failures is not None
    return {
        "stored_new": int(articles),
        "stored_duplicate": int(duplicates),
        "feed_sightings": int(sightings[0]),
        "page_failures": int(failures[0]),
        "items_processed": int(sightings[0]) + int(failures[0]),
    }


# Stage timing -----------------------------------------------------------------------------


class StageClock:
    """Exclusive wall time per stage: a wrapped call nested in another counts only once."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.function_calls: Counter[str] = Counter()
        self._children: list[float] = []
        self._stages: list[str] = []
        self._patched: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, stage: str, inside: dict[str, str] | None = None) -> None:
        """Time ``owner.name`` as ``stage`` (or ``inside[parent stage]`` when nested there)."""
        original = getattr(owner, name, None)
        if original is None:
            return
        clock = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            parent = clock._stages[-1] if clock._stages else None
            label = (inside or {}).get(parent or "", stage)
            clock._children.append(0.0)
            clock._stages.append(label)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                nested = clock._children.pop()
                clock._stages.pop()
                clock.seconds[label] += elapsed - nested
                clock.calls[label] += 1
                clock.function_calls[name] += 1
                if clock._children:
                    clock._children[-1] += elapsed

        self._patched.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()


def instrument(clock: StageClock) -> None:
    """Wrap what the ingest layer calls, by stage (names looked up where they are used)."""
    from sqlalchemy.orm import Session

    from pipeline import dedup, ingest, neardup
    from pipeline.db import repo
    from pipeline.http import HttpClient

    clock.wrap(HttpClient, "get", "fetch")
    clock.wrap(ingest, "parse_feed", "feed_parse")
    clock.wrap(ingest, "extract_page", "extract")
    clock.wrap(ingest, "detect_language", "language")
    # Dedupe, split: exact (URL and text hash), MinHash of the new article, the LSH
    # candidate query, and verification (fetching each candidate, shingling its text again,
    # comparing): a candidate's profile() counts as verification.
    for name in ("canonical_url", "content_hash"):
        clock.wrap(dedup, name, "dedupe.exact")
    for name in ("article_by_canonical_url", "original_by_content_hash"):
        clock.wrap(repo, name, "dedupe.exact")
    verifying = {"dedupe.verify": "dedupe.verify"}
    for name in ("profile", "signature", "band_keys", "signature_to_bytes"):
        clock.wrap(neardup, name, "dedupe.minhash", inside=verifying)
    clock.wrap(neardup, "verify_profiles", "dedupe.verify")
    clock.wrap(repo, "band_candidates", "dedupe.lsh_query")
    clock.wrap(ingest, "_closest_near_duplicate", "dedupe.verify")
    clock.wrap(ingest, "classify_article", "classify")
    for name in (
        "insert_article",
        "add_sighting",
        "store_signature",
        "resolve_failure",
        "record_failure",
        "replace_classification",
        "add_version",
    ):
        clock.wrap(repo, name, "store")
    clock.wrap(Session, "commit", "store")


def run_bare(db_url: str, feed_ids: list[int], *, stages: bool) -> dict[str, Any]:
    """One ``poll_feed_batch`` over every feed in this process; returns counts and timings."""
    from pipeline.tasks import poll_feed_batch

    settings = bench_settings(db_url)
    clock = StageClock()
    if stages:
        instrument(clock)
    try:
        started = time.perf_counter()
        counts = poll_feed_batch(feed_ids, settings=settings)
        wall = time.perf_counter() - started
    finally:
        clock.restore()
    result: dict[str, Any] = {"wall_seconds": round(wall, 3), "counts": counts}
    if stages:
        accounted = sum(clock.seconds.values())
        split = {stage: round(seconds, 3) for stage, seconds in sorted(clock.seconds.items())}
        split["other"] = round(wall - accounted, 3)
        result["stage_seconds"] = split
        result["stage_calls"] = dict(clock.calls)
        result["function_calls"] = dict(clock.function_calls)
    return result


# Airflow ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_command() -> str:
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else "airflow"


def airflow_environment(
    home: Path, metadata_url: str, db_url: str, args: argparse.Namespace
) -> dict[str, str]:
    port = free_port()
    batch_size = max(1, -(-args.feeds // args.batches))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SUMMITWATCH_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        # Airflow would pick asyncpg for its async engine; psycopg 3 does async too.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "summitwatch-benchmark-secret",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # A queued task's workload token is valid for task_queued_timeout (default 600 s): a
        # mapped task waiting longer than that for a free slot fails its first try ("Invalid
        # auth token") and starts again only after the retry delay.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(max(600, round(args.airflow_timeout))),
        "SUMMITWATCH_DB_URL": db_url,
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "SUMMITWATCH_POLL__BATCH_SIZE": str(batch_size),
        # A feed polled once is not due again while the benchmark runs, however long the
        # scheduled run takes: the triggered run after it then finds nothing to poll.
        "SUMMITWATCH_POLL__INTERVAL_MINUTES": "1440",
        "PYTHONPATH": str(REPO_ROOT),
    }


def airflow_cli(env: dict[str, str], *arguments: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [airflow_command(), *arguments], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(arguments)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def metadata_query(metadata_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    conninfo = metadata_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as connection:
        return list(connection.execute(sql, params).fetchall())


def run_airflow_local_executor(
    home: Path, metadata_url: str, db_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Scheduler + DAG processor + API server with the LocalExecutor; one triggered run."""
    env = airflow_environment(home, metadata_url, db_url, args)
    started = time.perf_counter()
    airflow_cli(env, "db", "migrate")
    migrate_seconds = time.perf_counter() - started
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = home / "logs-bench"
    logs.mkdir(parents=True, exist_ok=True)
    sampler: TreeSampler | None = None
    try:
        for component in ("api-server", "dag-processor", "scheduler"):
            with (logs / f"{component}.log").open("wb") as log:
                processes[component] = subprocess.Popen(
                    [airflow_command(), component], env=env, stdout=log, stderr=subprocess.STDOUT
                )
        if args.resources:
            sampler = TreeSampler({name: process.pid for name, process in processes.items()})
            sampler.start()
        deadline = time.monotonic() + 240
        while not metadata_query(metadata_url, "SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,)):
            dead = [name for name, process in processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{DAG_ID} was not parsed (dead components: {dead}); logs in {logs}")
            time.sleep(2)
        airflow_cli(env, "dags", "unpause", DAG_ID)
        triggered_at = time.time()
        airflow_cli(env, "dags", "trigger", DAG_ID)
        deadline = time.monotonic() + args.airflow_timeout
        while True:
            states = metadata_query(metadata_url, "SELECT state FROM dag_run WHERE dag_id = %s", (DAG_ID,))
            if states and all(state in ("success", "failed") for (state,) in states):
                break
            dead = [name for name, process in processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the DAG run did not finish (dead components: {dead}); logs in {logs}")
            time.sleep(2)
        finished_at = time.time()
    finally:
        if sampler is not None:
            sampler.stop()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    result = collect_airflow(metadata_url)
    result["mode"] = "LocalExecutor (scheduler + dag-processor + api-server)"
    result["parallelism"] = args.parallelism
    result["db_migrate_seconds"] = round(migrate_seconds, 1)
    result["trigger_to_all_runs_done_seconds"] = round(finished_at - triggered_at, 1)
    if sampler is not None:
        result["peak_rss"] = sampler.result()
    return result


def run_airflow_dags_test(
    home: Path, metadata_url: str, db_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The fallback: ``airflow dags test`` (the whole run in one process, tasks in sequence)."""
    env = airflow_environment(home, metadata_url, db_url, args)
    airflow_cli(env, "db", "migrate")
    started = time.perf_counter()
    airflow_cli(env, "dags", "test", DAG_ID, timeout=args.airflow_timeout)
    wall = time.perf_counter() - started
    result = collect_airflow(metadata_url)
    result["mode"] = "airflow dags test (fallback: one process, no executor, tasks in sequence)"
    result["dags_test_wall_seconds"] = round(wall, 1)
    return result


def collect_airflow(metadata_url: str) -> dict[str, Any]:
    runs = metadata_query(
        metadata_url,
        "SELECT run_id, state, run_type, start_date, end_date FROM dag_run WHERE dag_id = %s"
        " ORDER BY start_date",
        (DAG_ID,),
    )
    tasks = metadata_query(
        metadata_url,
        "SELECT run_id, task_id, map_index, state, queued_dttm, start_date, end_date, duration, try_number"
        " FROM task_instance WHERE dag_id = %s ORDER BY start_date",
        (DAG_ID,),
    )
    polls = [t for t in tasks if t[1] == "poll_batch" and t[5] and t[6]]
    task_rows = [
        {
            "run_id": t[0],
            "task_id": t[1],
            "map_index": t[2],
            "state": t[3],
            "queued_to_start_seconds": round((t[5] - t[4]).total_seconds(), 2) if t[4] and t[5] else None,
            "duration_seconds": round(float(t[7]), 2) if t[7] is not None else None,
            "try_number": t[8],
        }
        for t in tasks
    ]
    run_rows = [
        {
            "run_id": r[0],
            "state": r[1],
            "run_type": r[2],
            "wall_seconds": round((r[4] - r[3]).total_seconds(), 2) if r[3] and r[4] else None,
        }
        for r in runs
    ]
    first_start = min((t[5] for t in polls), default=None)
    last_end = max((t[6] for t in polls), default=None)
    return {
        "runs": run_rows,
        "tasks": task_rows,
        "poll_batch_tasks": len(polls),
        "poll_batch_busy_seconds": round(sum(float(t[7] or 0) for t in polls), 2),
        "poll_batch_span_seconds": round((last_end - first_start).total_seconds(), 2) if polls else None,
    }


# Resources --------------------------------------------------------------------------------


# Titles Airflow gives its processes: a task runner "airflow worker -- <task instance id>",
# a LocalExecutor worker (which supervises the task runners it forks) the longer prefix.
TASK_TITLE = "airflow worker -- "
EXECUTOR_TITLE = "airflow worker -- LocalExecutor"


def proc_status(pid: int) -> tuple[int, int] | None:
    """``(parent pid, VmRSS in kB)`` of a process, None if it is gone or has no memory."""
    parent, rss = 0, None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("PPid:"):
                    parent = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None if rss is None else (parent, rss)


def proc_pss_kb(pid: int) -> int:
    """Proportional set size of a process (shared pages split between their users), kB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


class TreeSampler:
    """Peak resident memory of the process trees under ``roots``, sampled from ``/proc``.

    Every ``interval`` seconds a background thread walks each root's descendants and reads
    their VmRSS; every ``pss_every``-th walk also reads their PSS, which splits the pages
    that forked processes share between them instead of counting them in each. A *task
    process* is the topmost process of a subtree titled ``airflow worker -- <id>`` (a task
    runner); ``task_with_children`` adds what it started (its prepare workers).
    """

    def __init__(self, roots: dict[str, int], interval: float = 0.5, pss_every: int = 4) -> None:
        self.roots = roots
        self.interval = interval
        self.pss_every = pss_every
        self.samples = 0
        self.peaks: dict[str, tuple[float, str]] = {}
        # (seconds, largest task process, scheduler tree, all trees), MB
        self.timeline: list[tuple[float, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._started = 0.0
        self._cpu_seconds = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.thread_time()
            self.sample()
            self._cpu_seconds += time.thread_time() - began
            self._stop.wait(self.interval)

    def _peak(self, key: str, mb: float, detail: str = "") -> None:
        if mb > self.peaks.get(key, (0.0, ""))[0]:
            self.peaks[key] = (mb, detail)

    def sample(self) -> None:
        """One walk over the trees: updates the peaks and the timeline."""
        parents: dict[int, int] = {}
        rss_kb: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            found = proc_status(int(entry)) if entry.isdigit() else None
            if found:
                parents[int(entry)], rss_kb[int(entry)] = found
        children: defaultdict[int, list[int]] = defaultdict(list)
        for pid, parent in parents.items():
            children[parent].append(pid)
        with_pss = self.samples % self.pss_every == 0
        self.samples += 1
        tasks: defaultdict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        trees: dict[str, float] = {}
        total_pss = 0.0
        largest_task = 0.0
        for component, root in self.roots.items():
            tree_rss = tree_pss = 0.0
            stack: list[tuple[int, int | None]] = [(root, None)] if root in rss_kb else []
            while stack:
                pid, task = stack.pop()
                mb = rss_kb[pid] / 1024
                pss = proc_pss_kb(pid) / 1024 if with_pss else 0.0
                tree_rss += mb
                tree_pss += pss
                title = proc_title(pid)
                if task is not None:
                    role = "a task process's child"
                elif title.startswith(EXECUTOR_TITLE):
                    role = "LocalExecutor worker"
                elif title.startswith(TASK_TITLE):
                    task, role = pid, "task process"
                    largest_task = max(largest_task, mb)
                    self._peak("task_process_mb", mb)
                else:
                    role = component if pid == root else f"{component}'s child: {title[:60]}"
                if task is not None:
                    tasks[task][0] += mb
                    tasks[task][1] += pss
                self._peak("largest_process_mb", mb, role)
                stack.extend((child, task) for child in children.get(pid, ()))
            trees[component] = tree_rss
            self._peak(f"tree_mb.{component}", tree_rss)
            if with_pss:
                self._peak(f"tree_pss_mb.{component}", tree_pss)
                total_pss += tree_pss
        for task_rss, task_pss in tasks.values():
            self._peak("task_with_children_mb", task_rss)
            if with_pss:
                self._peak("task_with_children_pss_mb", task_pss)
        self._peak("all_trees_mb", sum(trees.values()))
        if with_pss:
            self._peak("all_trees_pss_mb", total_pss)
        self.timeline.append(
            (
                time.monotonic() - self._started,
                largest_task,
                trees.get("scheduler", 0.0),
                sum(trees.values()),
            )
        )

    def result(self, bucket_seconds: float = 30.0) -> dict[str, Any]:
        """The peaks (MB) and, per ``bucket_seconds``, the largest values sampled in it."""
        buckets: dict[int, list[float]] = {}
        for seconds, *values in self.timeline:
            key = int(seconds // bucket_seconds)
            buckets[key] = [max(pair) for pair in zip(buckets.get(key, [0.0] * 3), values, strict=True)]
        peaks = {key: round(mb, 1) for key, (mb, _) in sorted(self.peaks.items())}
        return {
            "interval_seconds": self.interval,
            "pss_every_nth_sample": self.pss_every,
            "samples": self.samples,
            "sampler_cpu_seconds": round(self._cpu_seconds, 2),
            **peaks,
            "largest_process": self.peaks.get("largest_process_mb", (0.0, ""))[1],
            "timeline_columns": ["seconds", "largest_task_process_mb", "scheduler_tree_mb", "all_trees_mb"],
            "timeline": [
                [round(bucket * bucket_seconds), *(round(v, 1) for v in values)]
                for bucket, values in sorted(buckets.items())
            ],
        }


def database_report(db_url: str) -> dict[str, Any]:
    """Size of the summitwatch database, its largest tables and what it holds."""
    import psycopg

    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as connection:
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        kinds = connection.execute(
            "SELECT coalesce(copy_kind, 'original'), count(*) FROM articles WHERE NOT is_seed GROUP BY 1"
        ).fetchall()
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM articles WHERE is_seed), (SELECT count(*) FROM sightings),"
            " (SELECT count(*) FROM article_vectors), (SELECT count(*) FROM article_bands)"
        ).fetchone()
        tables = connection.execute(
            "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC LIMIT 6"
        ).fetchall()
    assert size is not None
    assert counts is not None
    by_kind = {str(kind): int(number) for kind, number in kinds}
    originals = by_kind.get("original", 0)
    return {
        "database_mb": round(size[0] / 1e6, 1),
        "articles_stored": sum(by_kind.values()),
        "stored_originals": originals,
        "stored_copies": sum(by_kind.values()) - originals,
        "copies_by_kind": {kind: n for kind, n in sorted(by_kind.items()) if kind != "original"},
        "seed_articles": int(counts[0]),
        "sightings": int(counts[1]),
        "article_vectors_rows": int(counts[2]),
        "article_bands_rows": int(counts[3]),
        "largest_tables_mb": {str(name): round(int(bytes_) / 1e6, 1) for name, bytes_ in tables},
    }


def run_bare_libraries(base: str, site: dict[str, Any], work: Path) -> dict[str, Any]:
    """The bare-library loop of ``cycle_speed.py`` over this site's feeds, in a fresh process."""
    import cycle_speed
    import load_replay

    urls = [f"{base}/{path}" for path in site["feeds"]]
    env = cycle_speed.environment("sqlite://", REPO_ROOT / "config")
    command = [sys.executable, cycle_speed.__file__, "--bare", *urls]
    bare = load_replay.measured(command, env, work)
    detail = json.loads(bare.pop("stdout"))
    items = int(detail["counts"].get("items", 0))
    return {
        **bare,
        "items": items,
        "items_per_hour": per_hour(items, bare["wall_seconds"]),
        "stage_seconds": detail["stage_seconds"],
        "counts": detail["counts"],
    }


# Running ----------------------------------------------------------------------------------


def per_hour(items: int, seconds: float | None) -> float | None:
    return round(items / seconds * 3600) if seconds else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.postgres_server import temporary_cluster

    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    result: dict[str, Any] = {
        "benchmark": "pipeline_throughput",
        "environment": environment(),
        "setup": {"feeds": args.feeds, "items_per_feed": args.items, "batches": args.batches},
    }
    try:
        site = build_site(work / "site", args.feeds, args.items)
        result["setup"]["pages_by_kind"] = site["pages_by_kind"]
        with temporary_cluster() as server_url, feed_server(work / "site") as base:
            result["setup"]["database"] = "temporary PostgreSQL (fsync off), tests/postgres_server.py"
            if not args.skip_bare:
                result.update(run_bare_side(server_url, base, site, args))
            if not args.skip_airflow:
                result["airflow"] = run_airflow_side(server_url, base, site, work, args)
            if args.bare_libraries:
                print(f"bare libraries: {len(site['feeds'])} feeds x {args.items} items...", flush=True)
                bare_libraries = run_bare_libraries(base, site, work)
                airflow = result.get("airflow", {})
                if "dag_wall_seconds" in airflow:
                    bare_wall = bare_libraries["wall_seconds"]
                    bare_libraries["ratio_dag_wall"] = round(airflow["dag_wall_seconds"] / bare_wall, 2)
                    bare_libraries["ratio_poll_span"] = round(
                        airflow["poll_batch_span_seconds"] / bare_wall, 2
                    )
                result["bare_libraries"] = bare_libraries
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def run_bare_side(
    server_url: str, base: str, site: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The bare ``poll_feed_batch`` run with its stage split, then (unless skipped) the re-polls."""
    bare_url = create_database(server_url, "sw_bare")
    feed_ids = prepare_summitwatch(bare_url, base, site)
    print(f"bare pipeline: {len(feed_ids)} feeds x {args.items} items...", flush=True)
    bare = run_bare(bare_url, feed_ids, stages=True)
    bare["items"] = count_items(bare_url)
    processed = bare["items"]["items_processed"]
    bare["articles_per_hour_per_worker"] = per_hour(processed, bare["wall_seconds"])
    bare["ms_per_article"] = round(bare["wall_seconds"] / max(1, processed) * 1000, 1)
    if args.skip_repoll:
        return {"bare": bare}
    # What one poll_feed_batch call costs with no feed (engine, schema check, HTTP
    # client, failed-page retry query): subtracted from the re-poll figures.
    fixed = min(run_bare(bare_url, [], stages=False)["wall_seconds"] for _ in range(3))
    repolls: dict[str, Any] = {"fixed_overhead_seconds_per_call": fixed}
    for mode, label in (
        ("etag", "304_not_modified"),
        ("ignore", "same_body_no_validators"),
        ("touch", "new_body_same_items"),
    ):
        set_mode(base, mode)
        repoll = run_bare(bare_url, feed_ids, stages=False)
        repoll["ms_per_feed"] = round(repoll["wall_seconds"] / len(feed_ids) * 1000, 2)
        net = max(0.0, repoll["wall_seconds"] - fixed)
        repoll["ms_per_feed_net_of_fixed_overhead"] = round(net / len(feed_ids) * 1000, 2)
        repolls[label] = repoll
    set_mode(base, "etag")
    return {"bare": bare, "repoll": repolls}


def run_airflow_side(
    server_url: str, base: str, site: dict[str, Any], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The DAG run on a fresh summitwatch database (and, with ``--resources``, its size)."""
    dag_url = create_database(server_url, "sw_dag")
    prepare_summitwatch(dag_url, base, site)
    before = database_report(dag_url)["database_mb"] if args.resources else None
    metadata_url = create_database(server_url, "airflow")
    home = work / "airflow"
    home.mkdir()
    print(f"airflow ({args.airflow_mode})...", flush=True)
    try:
        if args.airflow_mode == "local-executor":
            airflow = run_airflow_local_executor(home, metadata_url, dag_url, args)
        else:
            airflow = run_airflow_dags_test(home, metadata_url, dag_url, args)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        airflow = {"error": str(exc)[-3000:]}
        kept = Path(tempfile.mkdtemp(prefix="throughput-airflow-logs-"))
        shutil.copytree(home, kept / "airflow", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock"))
        airflow["logs_kept_in"] = str(kept)
    if "error" in airflow:
        return airflow
    airflow["items"] = count_items(dag_url)
    processed = airflow["items"]["items_processed"]
    airflow["articles_per_hour_per_worker"] = per_hour(processed, airflow["poll_batch_busy_seconds"])
    airflow["articles_per_hour_wall"] = per_hour(processed, airflow["poll_batch_span_seconds"])
    if args.resources or args.bare_libraries:
        # The runs that polled (unpausing also starts the latest scheduled run, which does
        # the work; the triggered run after it finds no feed due): start to end of each.
        polled = {
            t["run_id"] for t in airflow["tasks"] if t["task_id"] == "poll_batch" and t["duration_seconds"]
        }
        walls = [r["wall_seconds"] for r in airflow["runs"] if r["run_id"] in polled and r["wall_seconds"]]
        airflow["dag_wall_seconds"] = round(sum(walls), 1)
        airflow["articles_per_hour_dag_wall"] = per_hour(processed, airflow["dag_wall_seconds"])
    if args.resources:
        airflow["database"] = {**database_report(dag_url), "database_mb_before_run": before}
    return airflow


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("apache-airflow", "sqlalchemy", "psycopg", "trafilatura", "httpx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **versions,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["| run | articles | worker busy s | articles/hour/worker | wall s | articles/hour (wall) |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    bare = result.get("bare")
    if bare:
        processed = bare["items"]["items_processed"]
        lines.append(
            f"| bare `poll_feed_batch`, 1 process | {processed} | {bare['wall_seconds']:.1f} "
            f"| {bare['articles_per_hour_per_worker']:,} | {bare['wall_seconds']:.1f} "
            f"| {bare['articles_per_hour_per_worker']:,} |"
        )
    airflow = result.get("airflow")
    if airflow and "error" not in airflow:
        items = airflow["items"]["items_processed"]
        label = airflow["mode"].split(" (")[0]
        lines.append(
            f"| Airflow {label}, {airflow['poll_batch_tasks']} mapped poll_batch tasks "
            f"| {items} | {airflow['poll_batch_busy_seconds']:.1f} "
            f"| {airflow['articles_per_hour_per_worker']:,} "
            f"| {airflow['poll_batch_span_seconds']:.1f} | {airflow['articles_per_hour_wall']:,} |"
        )
    elif airflow:
        lines.append(f"| Airflow: failed ({airflow['error'][:200]!r}) ||||||")
    libraries = result.get("bare_libraries")
    if libraries:
        lines.append(
            f"| bare libraries (`cycle_speed.py --bare`), 1 process | {libraries['items']} "
            f"| {libraries['wall_seconds']:.1f} | {libraries['items_per_hour']:,} "
            f"| {libraries['wall_seconds']:.1f} | {libraries['items_per_hour']:,} |"
        )
    if bare:
        lines += stage_lines(bare)
    if "repoll" in result:
        lines += repoll_lines(result["repoll"])
    if airflow and "error" not in airflow:
        lines += load_lines(airflow, libraries)
    return "\n".join(lines)


def stage_lines(bare: dict[str, Any]) -> list[str]:
    processed = bare["items"]["items_processed"]
    split = bare.get("stage_seconds", {})
    total = sum(split.values())
    stages: dict[str, float] = {}
    for stage, seconds in split.items():
        stages[stage.split(".")[0]] = stages.get(stage.split(".")[0], 0.0) + seconds
    lines = ["", "Per-stage split (bare run, exclusive time):", "", "| stage | s | share | ms/article |"]
    lines.append("|---|---:|---:|---:|")

    def row(name: str, seconds: float) -> str:
        per_article = seconds / max(1, processed) * 1000
        return f"| {name} | {seconds:.2f} | {seconds / total:.0%} | {per_article:.1f} |"

    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        lines.append(row(stage, seconds))
        if stage == "dedupe":
            for part, part_seconds in sorted(split.items(), key=lambda kv: -kv[1]):
                if part.startswith("dedupe."):
                    lines.append(row(f"&nbsp;&nbsp;{part}", part_seconds))
    calls = bare.get("function_calls", {})
    if calls.get("band_candidates"):
        lookups, verified = calls["band_candidates"], calls.get("verify_profiles", 0)
        lines.append("")
        lines.append(
            f"LSH lookups: {lookups}; candidates verified: {verified} ({verified / lookups:.1f} per lookup)."
        )
    return lines


def repoll_lines(repoll: dict[str, Any]) -> list[str]:
    fixed = repoll.get("fixed_overhead_seconds_per_call", 0.0)
    lines = [
        "",
        f"Re-polling the same feeds (bare; one call's fixed overhead, {fixed * 1000:.0f} ms, subtracted):",
        "",
        "| server answers | ms per feed |",
        "|---|---:|",
    ]
    for label, entry in repoll.items():
        if isinstance(entry, dict):
            lines.append(f"| {label} | {entry['ms_per_feed_net_of_fixed_overhead']:.1f} |")
    return lines


def load_lines(airflow: dict[str, Any], libraries: dict[str, Any] | None) -> list[str]:
    """The DAG's wall time, peak memory and database, and the ratio to the bare libraries."""
    if not {"dag_wall_seconds", "peak_rss", "database"} & airflow.keys():
        return []
    lines = [""]
    if "dag_wall_seconds" in airflow:
        lines.append(
            f"DAG runs that polled, start to end: {airflow['dag_wall_seconds']:.1f} s "
            f"({airflow['articles_per_hour_dag_wall']:,} articles/hour)."
        )
    if libraries and "ratio_dag_wall" in libraries:
        lines.append(
            f"Bare libraries: {libraries['wall_seconds']:.1f} s; DAG wall / bare: "
            f"**{libraries['ratio_dag_wall']}x** (poll_batch span / bare: {libraries['ratio_poll_span']}x)."
        )
    rss = airflow.get("peak_rss")
    if rss:
        lines.append(
            f"Peak RSS: largest task process {rss.get('task_process_mb', 0):.0f} MB, with its children "
            f"{rss.get('task_with_children_mb', 0):.0f} MB "
            f"(PSS {rss.get('task_with_children_pss_mb', 0):.0f}); "
            f"scheduler tree {rss.get('tree_mb.scheduler', 0):.0f} MB (PSS "
            f"{rss.get('tree_pss_mb.scheduler', 0):.0f}); all three components "
            f"{rss.get('all_trees_mb', 0):.0f} MB (PSS {rss.get('all_trees_pss_mb', 0):.0f}); "
            f"{rss['samples']} samples."
        )
    database = airflow.get("database")
    if database:
        lines.append(
            f"Database after the run: {database['database_mb']:.1f} MB (before: "
            f"{database['database_mb_before_run']:.1f} MB); {database['stored_originals']:,} originals + "
            f"{database['stored_copies']:,} copies stored."
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=24)
    parser.add_argument("--items", type=int, default=25, help="items (article links) per feed")
    parser.add_argument("--batches", type=int, default=4, help="mapped poll_batch tasks in the DAG run")
    parser.add_argument("--parallelism", type=int, default=2, help="LocalExecutor task slots")
    parser.add_argument("--airflow-mode", choices=("local-executor", "dags-test"), default="local-executor")
    parser.add_argument("--airflow-timeout", type=float, default=1200)
    parser.add_argument("--skip-airflow", action="store_true")
    parser.add_argument(
        "--skip-bare", action="store_true", help="leave out the bare poll_feed_batch run and the re-polls"
    )
    parser.add_argument("--skip-repoll", action="store_true", help="leave out the re-poll measurements")
    parser.add_argument(
        "--resources",
        action="store_true",
        help="peak RSS of the Airflow process trees during the DAG run, size and rows of its database",
    )
    parser.add_argument(
        "--bare-libraries",
        action="store_true",
        help="time cycle_speed.py's bare-library loop over the same feeds (ratio to the DAG's wall time)",
    )
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve).resolve(), Path(args.port_file))
        return 0
    started = time.perf_counter()
    result = run(args)
    result["wall_seconds_total"] = round(time.perf_counter() - started, 1)
    result["command"] = " ".join(["python", "benchmarks/pipeline_throughput.py", *sys.argv[1:]])
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
