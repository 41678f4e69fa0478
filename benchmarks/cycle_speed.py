#!/usr/bin/env python3
"""One polling cycle: ``summitwatch run --once --all`` beside the bare libraries, same feeds, same run.

Everything runs on this machine, offline:

* a **feed server** (``http.server`` in its own process on 127.0.0.1) serves ``--feeds``
  RSS feeds (default 8) linking about 150 **real** article texts rendered as HTML pages
  with the boilerplate a news site has (navigation, related links, footer). The texts are
  the tuning (non-held-out) real excerpts of the repository: ``tests/fixtures/classify/
  real_train.jsonl`` and the ``dev`` half of ``tests/fixtures/xlingual/articles.jsonl``
  (whole events, so translations of one another are in the mix), in en/ru/zh and
  ar/de/es/fr/it/ja/ko/nl/pl/pt/th. A few pages are syndicated: the same text under a
  second outlet's URL. Feeds and pages carry an ETag and answer conditional requests.
  ``--texts full`` takes whole articles instead: the reference texts of
  ``../shared/extraction-benchmark`` (English news and features, median about 3,200
  characters against the excerpts' 800), where every per-sentence and per-character
  stage costs what it costs on a long article.
* **bare**: a fresh Python process doing the essential work with the bare libraries,
  one item after another: ``urllib`` fetch, ``feedparser``, ``trafilatura.extract``,
  ``langdetect.detect`` and one call of the product's encoder
  (``pipeline.encoder.load_encoder()``) per article on its title and lead paragraph.
  Nothing is stored, nothing is deduplicated or classified.
* **summitwatch**: ``summitwatch run --once --all`` as a subprocess on a copy of a
  database initialised beforehand (schema + seed corpus + the benchmark feeds, SQLite):
  every stage, the extraction cascade, language, exact + near + cross-language dedupe,
  classification and storage.

Both are timed from process start to exit (imports and model loading included), best of
``--repeat``; they alternate so machine load hits both alike, and the **ratio** of the
two best times is the headline. Then, once each, outside the timed runs:

* a **profile** of the summitwatch run: each stage's *exclusive* wall time, found by
  wrapping the functions the ingest layer calls (page fetches done ahead in other threads
  are listed apart, ``(threads)``: they overlap the main thread's work; ``fetch_wait`` is
  the main thread waiting for a page), and the number of session flushes. Stages a
  prepare worker does are not in it: ``prepare_wait`` is the main process waiting for a
  worker, ``workers_start`` loading the models before forking one, and extract /
  language / encoder / classify count only the items the main process did itself;
* **start-up**: ``summitwatch --help`` and ``summitwatch feeds list``, best of 5;
* a **pool check**: extraction + language detection of every page in this process, one
  after another, on 2 threads and on 2 worker processes (started by fork and by spawn,
  start-up timed apart): what a bounded pool would save on those stages.

Articles per hour per core = items / CPU seconds (user + system) of the process, × 3600.

Writes ``benchmarks/results/cycle_speed.json`` (``--output``) and prints Markdown tables.

Usage::

    python benchmarks/cycle_speed.py                   # 8 feeds, ~150 articles, best of 3
    python benchmarks/cycle_speed.py --repeat 2 --label before
    python benchmarks/cycle_speed.py --texts full --label full  # whole articles
    git archive OLD pipeline config sql | tar -x -C /tmp/old  # earlier code, same run:
    python benchmarks/cycle_speed.py --baseline-src /tmp/old --baseline-label OLD
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import html
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import AbstractContextManager
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import site_server  # noqa: E402  (beside this script: the local site's server process)

REAL_TRAIN = REPO_ROOT / "tests" / "fixtures" / "classify" / "real_train.jsonl"
FULL_TEXTS = REPO_ROOT.parent / "shared" / "extraction-benchmark" / "ground-truth.json"
XLINGUAL = REPO_ROOT / "tests" / "fixtures" / "xlingual" / "articles.jsonl"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "cycle_speed.json"
SUMMITWATCH = Path(sys.executable).with_name("summitwatch")
SCRIPT = "benchmarks/cycle_speed.py"
# Items are dated a few minutes apart from this moment (2026-11-25 08:00 UTC).
SITE_TIME = 1_795_680_000.0
MIN_TEXT_CHARS = 300
OUTLETS = (
    ("wire-en", "en"),
    ("daily-en", "en"),
    ("vestnik-ru", "ru"),
    ("obozrenie-ru", "ru"),
    ("ribao-zh", "zh"),
    ("shibao-zh", "zh"),
    ("world-mixed", None),
    ("global-mixed", None),
)


# The articles -------------------------------------------------------------------------------


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def select_articles(target: int = 150) -> list[dict[str, Any]]:
    """About ``target`` real texts, deterministic: whole xlingual dev events, then real_train by language."""
    chosen: list[dict[str, Any]] = []
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _load(XLINGUAL):
        if row.get("split") == "dev" and len(row["text"]) >= MIN_TEXT_CHARS:
            by_event[row["event"]].append(row)
    for event in sorted(by_event):
        rows = by_event[event]
        if len({row["lang"] for row in rows}) < 2:
            continue
        chosen.extend(sorted(rows, key=lambda row: row["id"]))
        if len(chosen) >= target * 2 // 5:
            break
    train = [row for row in _load(REAL_TRAIN) if len(row["text"]) >= MIN_TEXT_CHARS]
    languages = sorted({row["lang"] for row in train})
    queues = {
        lang: sorted((r for r in train if r["lang"] == lang), key=lambda r: r["id"]) for lang in languages
    }
    # Round robin over languages, the big three twice per round: mostly en/ru/zh, every language present.
    order = [*languages, "en", "ru", "zh"]
    while len(chosen) < target and any(queues.values()):
        for lang in order:
            if queues.get(lang) and len(chosen) < target:
                chosen.append(queues[lang].pop(0))
    return [
        {
            "id": row["id"],
            "lang": row["lang"],
            "title": (row.get("title") or "").strip() or _first_line(row["text"]),
            "text": row["text"],
        }
        for row in chosen
    ]


def select_full_articles(target: int = 150) -> list[dict[str, Any]]:
    """About ``target`` whole real articles: the extraction benchmark's reference texts.

    Their median length is about 3,200 characters (the excerpts': about 800), so every
    per-character and per-sentence stage is loaded as a long article loads it. They carry
    no language label: ``langdetect`` (seeded) on the first 2,000 characters picks the
    feed, and only the feed (the pipeline detects again).
    """
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    chosen: list[dict[str, Any]] = []
    for key, row in sorted(json.loads(FULL_TEXTS.read_text(encoding="utf-8")).items()):
        text = (row.get("articleBody") or "").strip()
        if len(text) < MIN_TEXT_CHARS:
            continue
        try:
            lang = detect(text[:2000]).split("-")[0]
        except LangDetectException:
            lang = "und"
        chosen.append({"id": key[:16], "lang": lang, "title": _first_line(text), "text": text})
        if len(chosen) >= target:
            break
    return chosen


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line[:110].rsplit(" ", 1)[0] if len(line) > 110 and " " in line[:110] else line[:110]


def article_page(article: dict[str, Any], outlet: str, published: str, related: list[str]) -> bytes:
    """One article in a news-site template, with navigation, related links and a footer."""
    paragraphs = "\n".join(
        f"<p>{html.escape(p.strip())}</p>" for p in article["text"].split("\n") if p.strip()
    )
    links = "\n".join(
        f'<li><a href="/{outlet}/related/{k}.html">{html.escape(t)}</a></li>' for k, t in enumerate(related)
    )
    title = html.escape(article["title"])
    return f"""<!DOCTYPE html>
<html lang="{html.escape(article["lang"])}"><head><meta charset="utf-8">
<title>{title} | {outlet}</title>
<meta property="og:title" content="{title}">
<meta name="author" content="Staff correspondent">
<meta property="article:published_time" content="{published}">
</head><body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/economy">Economy</a>
<a href="/energy">Energy</a> <a href="/opinion">Opinion</a> <a href="/subscribe">Subscribe</a></nav></header>
<main><article>
<h1>{title}</h1>
<p class="byline">By Staff correspondent, {outlet}</p>
<time datetime="{published}">{published[:10]}</time>
{paragraphs}
</article>
<aside><h2>Related</h2><ul>{links}</ul></aside></main>
<footer><p>&copy; 2026 {outlet}. All rights reserved.</p>
<p><a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact</a></p></footer>
</body></html>""".encode()


def build_site(root: Path, feeds: int, articles: list[dict[str, Any]], syndicated: int) -> dict[str, Any]:
    """Write feeds and pages under ``root``: each article goes to a feed of its language."""
    outlets = [OUTLETS[index % len(OUTLETS)] for index in range(feeds)]
    entries: list[list[tuple[str, str, float]]] = [[] for _ in outlets]
    placed: Counter[str] = Counter()
    for number, article in enumerate(articles):
        homes = (
            [i for i, (_, lang) in enumerate(outlets) if lang == article["lang"]]
            or [i for i, (_, lang) in enumerate(outlets) if lang is None]
            or list(range(len(outlets)))
        )
        feed_index = homes[number % len(homes)]
        copies = [feed_index]
        if number % max(len(articles) // max(syndicated, 1), 1) == 0 and placed["syndicated"] < syndicated:
            copies.append((feed_index + 3) % len(outlets))  # another outlet carries the same text
            placed["syndicated"] += 1
        for copy, index in enumerate(copies):
            outlet = outlets[index][0]
            moment = SITE_TIME + 300 * number + 60 * copy
            published = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(moment))
            slug = hashlib.sha1(f"{article['id']}-{index}".encode()).hexdigest()[:12]
            path = f"{outlet}/news/{time.strftime('%Y/%m/%d', time.gmtime(moment))}/{slug}.html"
            related = [a["title"] for a in articles[number + 1 : number + 6]]
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(article_page(article, outlet, published, related))
            entries[index].append((article["title"], path, moment))
            placed[article["lang"]] += 1
    (root / "feeds").mkdir(parents=True, exist_ok=True)
    feed_list = []
    for index, (outlet, lang) in enumerate(outlets):
        path = f"feeds/{outlet}-{index}.xml"
        (root / path).write_bytes(rss(outlet, lang, sorted(entries[index], key=lambda e: -e[2])))
        feed_list.append({"path": path, "lang": lang, "items": len(entries[index])})
    return {
        "feeds": feed_list,
        "articles": len(articles),
        "items": sum(len(e) for e in entries),
        "syndicated_copies": placed["syndicated"],
        "items_by_language": {k: v for k, v in sorted(placed.items()) if k != "syndicated"},
    }


def rss(outlet: str, lang: str | None, entries: list[tuple[str, str, float]]) -> bytes:
    items = "".join(
        f"<item><title>{html.escape(title)}</title><link>{{BASE}}/{path}</link>"
        f'<guid isPermaLink="true">{{BASE}}/{path}</guid><pubDate>{formatdate(moment, usegmt=True)}</pubDate>'
        f"<description>{html.escape(title)}</description></item>"
        for title, path, moment in entries
    )
    language = f"<language>{lang}</language>" if lang else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{outlet}</title><link>{{BASE}}/{outlet}/</link>{language}"
        f"<description>{outlet} news</description>{items}</channel></rss>"
    ).encode()


# The feed server ----------------------------------------------------------------------------


# Seconds every feed document and every page waits before it is answered ("feed,page" in
# milliseconds, set by --latency-ms for the server process): a remote site's round trips.
LATENCY_VARIABLE = "CYCLE_SPEED_LATENCY_MS"
# Set by --plain-server: the server writes as Python's http.server does by default.
PLAIN_VARIABLE = "CYCLE_SPEED_PLAIN_SERVER"


def serve(root: Path, port_file: Path) -> None:
    """Serve ``root`` until killed, with ETags and conditional GET (``--serve ROOT --port-file F``)."""
    cache: dict[str, bytes] = {}
    lock = threading.Lock()
    feed_delay, page_delay = (int(ms) / 1000 for ms in os.environ.get(LATENCY_VARIABLE, "0,0").split(","))

    plain = os.environ.get(PLAIN_VARIABLE) == "1"

    class Handler(site_server.QuietHandler):
        protocol_version = "HTTP/1.1"
        # One write per response and no Nagle: no delayed-ACK stall between headers and
        # body. With --plain-server, headers and body are written apart with Nagle on, as
        # Python's http.server does: a client that keeps connections alive must ACK at once.
        wbufsize = 0 if plain else -1
        disable_nagle_algorithm = not plain

        def do_GET(self) -> None:
            relative = urlsplit(self.path).path.lstrip("/")
            file = (root / relative).resolve()
            if not file.is_relative_to(root) or not file.is_file():
                self.send(404, b"not found", "text/plain", {})
                return
            with lock:
                body = cache.get(relative)
                if body is None:
                    body = file.read_bytes().replace(b"{BASE}", f"http://{self.headers.get('Host')}".encode())
                    cache[relative] = body
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = {"ETag": etag, "Last-Modified": formatdate(SITE_TIME, usegmt=True)}
            is_feed = relative.startswith("feeds/")
            delay = feed_delay if is_feed else page_delay
            if delay:
                time.sleep(delay)
            if self.headers.get("If-None-Match") == etag:
                self.send(304, b"", None, headers)
                return
            kind = "application/rss+xml; charset=utf-8" if is_feed else "text/html; charset=utf-8"
            self.send(200, body, kind, headers)

    site_server.serve_forever(Handler, port_file)


def feed_server(root: Path) -> AbstractContextManager[str]:
    """This script's site served from a process of its own; yields the base URL."""
    return site_server.server_process(__file__, root)


# The bare libraries -------------------------------------------------------------------------


def bare_cycle(feed_urls: list[str]) -> dict[str, Any]:
    """The essential work with the bare libraries, sequential; prints and returns the stage times."""
    started = time.perf_counter()
    import urllib.request

    import feedparser
    import langdetect
    import trafilatura

    from pipeline.encoder import load_encoder

    stages: defaultdict[str, float] = defaultdict(float)
    stages["imports"] = time.perf_counter() - started

    def timed(stage: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            stages[stage] += time.perf_counter() - began

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as response:
            return bytes(response.read())

    encoder = timed("encoder_load", load_encoder)
    counts: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for feed_url in feed_urls:
        body = timed("fetch", fetch, feed_url)
        parsed = timed("feed_parse", feedparser.parse, body)
        for entry in parsed.entries:
            counts["items"] += 1
            page = timed("fetch", fetch, entry.link)
            text = timed("extract", trafilatura.extract, page)
            if not text:
                counts["no_text"] += 1
                continue
            try:
                lang = timed("language", langdetect.detect, text)
            except langdetect.LangDetectException:
                lang = "und"
            languages[lang] += 1
            lead = text.split("\n", 1)[0]
            timed("encoder", encoder.encode, [entry.get("title", ""), lead])
            counts["articles"] += 1
    stages["total"] = time.perf_counter() - started
    return {
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "counts": dict(counts),
        "languages": dict(languages),
    }


# The summitwatch run, profiled --------------------------------------------------------------


class StageClock:
    """Exclusive wall time per stage; a wrapped call inside another counts only once (per thread)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self) -> list[float]:
        if not hasattr(self._local, "children"):
            self._local.children = []
        children: list[float] = self._local.children
        return children

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return
        clock = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            children = clock._stack()
            children.append(0.0)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                nested = children.pop()
                if children:
                    children[-1] += elapsed
                in_main = threading.current_thread() is threading.main_thread()
                label = stage if in_main else f"{stage} (threads)"
                with clock._lock:
                    clock.seconds[label] += elapsed - nested
                    clock.calls[label] += 1

        setattr(owner, name, timed)


STAGES: dict[str, list[tuple[str, str]]] = {
    # stage: [(module or module:Class, function)], looked up where the ingest layer uses them
    "fetch": [("pipeline.http:HttpClient", "get")],
    # Waiting in the main thread for a page fetched ahead (when pages are fetched concurrently).
    "fetch_wait": [("pipeline.http:PendingPage", "wait"), ("pipeline.http:PendingPage", "result")],
    "feed_parse": [("pipeline.ingest", "parse_feed")],
    "extract": [("pipeline.ingest", "extract_page")],
    "language": [("pipeline.ingest", "detect_language")],
    "dedupe.exact": [
        ("pipeline.db.repo", "known_url"),
        ("pipeline.db.repo", "article_by_canonical_url"),
        ("pipeline.db.repo", "original_by_content_hash"),
        ("pipeline.db.repo", "known_urls"),
        ("pipeline.db.repo", "known_articles"),
        ("pipeline.db.repo", "sighted"),
        ("pipeline.db.repo", "open_failure_targets"),
    ],
    "dedupe.near": [
        ("pipeline.neardup", "profile"),
        ("pipeline.neardup", "signature"),
        ("pipeline.neardup", "band_keys"),
        ("pipeline.ingest", "_closest_near_duplicate"),
    ],
    "encoder": [("pipeline.ingest:IngestContext", "embed")],
    # Waiting for a prepare worker's result (extraction, language and vectors done there).
    "prepare_wait": [("pipeline.prepare:PreparePool", "collect")],
    "workers_start": [("pipeline.prepare:PreparePool", "start_for")],
    "dedupe.translation": [("pipeline.ingest", "_closest_translation")],
    "classify": [("pipeline.ingest", "classify"), ("pipeline.ingest:IngestContext", "verdict")],
    "store": [
        ("sqlalchemy.orm:Session", "flush"),
        ("sqlalchemy.orm:Session", "commit"),
        ("pipeline.db.repo", "insert_article"),
        ("pipeline.db.repo", "begin_write"),
        ("pipeline.db.repo", "add_sighting"),
        ("pipeline.db.repo", "store_signature"),
        ("pipeline.db.repo", "store_vectors"),
        ("pipeline.db.repo", "replace_classification"),
        ("pipeline.db.fulltext", "index_article"),
    ],
}


def profiled_run() -> None:
    """``summitwatch run --once --all`` in this process with every stage timed; prints JSON."""
    began = time.perf_counter()
    import importlib

    from pipeline import cli

    clock = StageClock()
    flushes = Counter[str]()
    imported = time.perf_counter() - began
    for stage, targets in STAGES.items():
        for where, name in targets:
            module_name, _, class_name = where.partition(":")
            owner: Any = importlib.import_module(module_name)
            if class_name:
                owner = getattr(owner, class_name, None)
            clock.wrap(owner, name, stage)
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "after_flush")
    def count_flush(session: Session, context: Any) -> None:
        flushes["flushes"] += 1

    status = cli.main(["run", "--once", "--all"])
    wall = time.perf_counter() - began
    seconds = dict(clock.seconds)
    seconds["startup_imports"] = imported
    # Work in fetch threads overlaps the main thread's: "other" is what the main thread
    # spent outside every timed stage.
    seconds["other"] = wall - sum(v for k, v in seconds.items() if not k.endswith("(threads)"))
    print(
        json.dumps(
            {
                "status": status,
                "wall_seconds": round(wall, 3),
                "stage_seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
                "stage_calls": dict(clock.calls),
                "session_flushes": flushes["flushes"],
            }
        )
    )


# Would a pool pay for the CPU-bound stages? ---------------------------------------------------


def _extract_and_detect(page: bytes) -> str:
    from pipeline.extract import extract_page
    from pipeline.language import detect_language

    return detect_language(extract_page(page).text).lang


def _warm(_: int) -> str:
    return _extract_and_detect(
        b"<html><body><article><p>" + b"Warm up the extraction and the language profiles. " * 20 + b"</p>"
        b"</article></body></html>"
    )


def pool_check(root: Path) -> dict[str, Any]:
    """Extraction + language of every page: one after another, 2 threads, 2 processes (fork, spawn)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    pages = [path.read_bytes() for path in sorted(root.rglob("*.html"))]
    _warm(0)
    timings: dict[str, Any] = {"pages": len(pages)}
    began = time.perf_counter()
    expected = [_extract_and_detect(page) for page in pages]
    timings["sequential_seconds"] = round(time.perf_counter() - began, 3)
    with ThreadPoolExecutor(2) as threads:
        began = time.perf_counter()
        assert list(threads.map(_extract_and_detect, pages)) == expected
        timings["threads_2_seconds"] = round(time.perf_counter() - began, 3)
    for method in ("fork", "spawn"):
        began = time.perf_counter()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as processes:
            list(processes.map(_warm, range(2)))
            ready = time.perf_counter() - began
            assert list(processes.map(_extract_and_detect, pages, chunksize=8)) == expected
        timings[f"processes_2_{method}_seconds"] = round(time.perf_counter() - began, 3)
        timings[f"processes_2_{method}_start_seconds"] = round(ready, 3)
    return timings


# Orchestration ------------------------------------------------------------------------------


def environment(db_url: str, config_dir: Path, source: Path | None = None) -> dict[str, str]:
    """The child's environment; ``source``: run the ``pipeline`` package of that checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))}
    env.update(
        {
            "SUMMITWATCH_DB_URL": db_url,
            "SUMMITWATCH_CONFIG_DIR": str(config_dir),
            "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
            "PYTHONHASHSEED": "0",
        }
    )
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def timed_process(
    command: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU (user + system) seconds of one child process.

    ``cwd``: where it runs. An earlier checkout's side must run *in* that checkout:
    ``python -m`` puts the working directory before ``PYTHONPATH`` on the import path, so
    from this checkout it would import this checkout's ``pipeline``.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done


def prepare_database(
    work: Path, base: str, site: dict[str, Any], source: Path | None = None
) -> tuple[Path, Path]:
    """An initialised template database (schema, seeds, benchmark feeds) and its config dir.

    ``source``: a checkout of other code (its ``pipeline`` and ``config``) to prepare for.
    """
    import yaml

    name = "baseline-" if source else ""
    config_dir = work / f"{name}config"
    shutil.copytree((source or REPO_ROOT) / "config", config_dir)
    feeds = [
        {
            "url": f"{base}/{feed['path']}",
            "name": Path(feed["path"]).stem,
            "outlet": Path(feed["path"]).stem,
            # A mixed feed declares English though it carries many languages, as real ones do.
            "lang": feed["lang"] or "en",
            "reason": "benchmark feed",
        }
        for feed in site["feeds"]
    ]
    (config_dir / "feeds.yaml").write_text(
        yaml.safe_dump({"feeds": feeds}, allow_unicode=True), encoding="utf-8"
    )
    template = work / f"{name}template.db"
    init = [sys.executable, "-m", "pipeline.cli", "init"] if source else [str(SUMMITWATCH), "init"]
    timed_process(init, environment(f"sqlite:///{template}", config_dir, source), cwd=source)
    return template, config_dir


def count_stored(db_path: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(db_path) as connection:
        new, copies = connection.execute(
            "SELECT sum(duplicate_of_id IS NULL), sum(duplicate_of_id IS NOT NULL) FROM articles"
            " WHERE NOT is_seed"
        ).fetchone()
        kinds = dict(
            connection.execute(
                "SELECT coalesce(copy_kind, 'original'), count(*) FROM articles WHERE NOT is_seed GROUP BY 1"
            ).fetchall()
        )
        failures = connection.execute("SELECT count(*) FROM fetch_failures WHERE stage = 'page'").fetchone()[
            0
        ]
    return {
        "stored_originals": int(new or 0),
        "stored_copies": int(copies or 0),
        "page_failures": int(failures),
        **kinds,
    }


def best_of(command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    times = [timed_process(command, env)[:2] for _ in range(runs)]
    walls = [wall for wall, _ in times]
    return {"best_seconds": round(min(walls), 3), "runs_seconds": [round(w, 3) for w in walls]}


def auto_prepare_workers() -> int:
    """The prepare workers ``poll.workers: auto`` starts on this machine (as a command)."""
    from pipeline.settings import PollSettings

    return PollSettings(workers="auto").worker_count()


def configured_encoder_model() -> str:
    """The encoder model the summitwatch side runs: ``encoder.model`` of the repository's
    ``config/`` (the child's environment carries no ``SUMMITWATCH_`` variables)."""
    from pipeline.settings import load_settings

    return load_settings({"SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")}).encoder.model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--feeds", type=int, default=8)
    parser.add_argument("--articles", type=int, default=150)
    parser.add_argument(
        "--texts",
        choices=("excerpts", "full"),
        default="excerpts",
        help="the repository's real excerpts (default) or whole real articles (the extraction benchmark's)",
    )
    parser.add_argument("--syndicated", type=int, default=6, help="articles also carried by a second outlet")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (best is kept)")
    parser.add_argument("--label", default="current", help="name of this run in the results file")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a checkout of earlier code (its pipeline/ and config/) run as a third side, for before/after",
    )
    parser.add_argument("--baseline-label", help="what the baseline checkout is (e.g. a commit)")
    parser.add_argument(
        "--latency-ms",
        default="0,0",
        help="FEED,PAGE: milliseconds the server waits before answering each feed document and "
        "each page (a remote site's round trip; default 0,0: the local server as it is)",
    )
    parser.add_argument(
        "--plain-server",
        action="store_true",
        help="serve as Python's http.server does by default over HTTP/1.1 (headers and body "
        "written apart, Nagle's algorithm on), instead of one write per response without Nagle",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--profiled-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_src:
        args.baseline_src = args.baseline_src.resolve()  # its side runs with it as working directory
    if args.serve:
        serve(args.serve.resolve(), args.port_file)
        return 0
    if args.bare is not None:
        print(json.dumps(bare_cycle(args.bare)))
        return 0
    if args.profiled_run:
        profiled_run()
        return 0
    try:
        latency = [int(ms) for ms in args.latency_ms.split(",")]
        if len(latency) != 2 or min(latency) < 0:
            raise ValueError
    except ValueError:
        parser.error(f"--latency-ms {args.latency_ms!r}: expected FEED,PAGE milliseconds, e.g. 300,100")
    os.environ[LATENCY_VARIABLE] = ",".join(map(str, latency))  # (read by the server process)
    os.environ[PLAIN_VARIABLE] = "1" if args.plain_server else "0"

    # Every side runs from bytecode, as an installed package does: the library wheels are
    # compiled at install, and `make` compiles this checkout (and here, any other code
    # compared), which would otherwise be compiled again on each start where .pyc files
    # cannot be written.
    for source in (REPO_ROOT, *([args.baseline_src] if args.baseline_src else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(source) / "pipeline")], check=True)
    load = os.getloadavg()
    articles = (select_full_articles if args.texts == "full" else select_articles)(args.articles)
    with tempfile.TemporaryDirectory(prefix="cycle-speed-") as temporary:
        work = Path(temporary)
        site = build_site(work / "site", args.feeds, articles, args.syndicated)
        with feed_server(work / "site") as base:
            feed_urls = [f"{base}/{feed['path']}" for feed in site["feeds"]]
            template, config_dir = prepare_database(work, base, site)
            bare_command = [sys.executable, __file__, "--bare", *feed_urls]
            run_command = [str(SUMMITWATCH), "run", "--once", "--all"]
            # Other code is run as a module: its entry point may differ from the installed one.
            baseline_command = [sys.executable, "-m", "pipeline.cli", *run_command[1:]]
            bare_runs: list[tuple[float, float, dict[str, Any]]] = []
            ours_runs: list[tuple[float, float]] = []
            stored: dict[str, int] = {}
            baseline_runs: list[tuple[float, float]] = []
            baseline_stored: dict[str, int] = {}
            if args.baseline_src:
                baseline_template, baseline_config = prepare_database(work, base, site, args.baseline_src)

            def run_bare(repetition: int) -> str:
                wall, cpu, done = timed_process(bare_command, environment("sqlite://", config_dir))
                bare_runs.append((wall, cpu, json.loads(done.stdout)))
                return f"bare {wall:.2f} s"

            def run_ours(repetition: int) -> str:
                nonlocal stored
                database = work / f"run-{repetition}.db"
                shutil.copyfile(template, database)
                wall, cpu, _ = timed_process(run_command, environment(f"sqlite:///{database}", config_dir))
                ours_runs.append((wall, cpu))
                stored = count_stored(database)
                return f"summitwatch {wall:.2f} s"

            def run_baseline(repetition: int) -> str:
                nonlocal baseline_stored
                database = work / f"baseline-{repetition}.db"
                shutil.copyfile(baseline_template, database)
                env = environment(f"sqlite:///{database}", baseline_config, args.baseline_src)
                wall, cpu, _ = timed_process(baseline_command, env, cwd=args.baseline_src)
                baseline_runs.append((wall, cpu))
                baseline_stored = count_stored(database)
                return f"baseline code {wall:.2f} s"

            sides = [run_bare, run_ours, *([run_baseline] if args.baseline_src else [])]
            for repetition in range(args.repeat):
                # The order turns each repetition, so that no side always runs after another.
                turn = repetition % len(sides)
                done_now = [side(repetition) for side in sides[turn:] + sides[:turn]]
                print(f"run {repetition + 1}: " + ", ".join(done_now), file=sys.stderr)
            database = work / "profiled.db"
            shutil.copyfile(template, database)
            _, _, done = timed_process(
                [sys.executable, __file__, "--profiled-run"], environment(f"sqlite:///{database}", config_dir)
            )
            profile = json.loads(done.stdout.strip().splitlines()[-1])
            pools = pool_check(work / "site")
            startup_env = environment(f"sqlite:///{template}", config_dir)
            startup = {
                "help": best_of([str(SUMMITWATCH), "--help"], startup_env, 5),
                "feeds_list": best_of([str(SUMMITWATCH), "feeds", "list"], startup_env, 5),
            }
    best_bare = min(bare_runs, key=lambda run: run[0])
    best_ours = min(ours_runs, key=lambda run: run[0])
    items = site["items"]
    result = {
        "benchmark": "cycle_speed",
        "label": args.label,
        # (The baseline's folder is a path on the measuring machine: not recorded.)
        "command": re.sub(r"(--baseline-src[ =])\S+", r"\1DIR", " ".join(["python", SCRIPT, *sys.argv[1:]])),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # What poll.workers: auto gives here (runs on more CPUs start more workers).
            "prepare_workers_auto": auto_prepare_workers(),
            "encoder_model": configured_encoder_model(),
            "load_average_at_start": [round(x, 2) for x in load],
            "note": "shared 2-core machine, other jobs running: compare the ratios (same run)",
            "database": "SQLite, initialised beforehand (schema, seeds, feeds), a fresh copy per run",
        },
        "texts": args.texts,
        "latency_ms": {"feed": latency[0], "page": latency[1]},
        "plain_server": args.plain_server,
        "site": site,
        "bare": {
            "best_seconds": round(best_bare[0], 3),
            "median_seconds": round(statistics.median(run[0] for run in bare_runs), 3),
            "runs_seconds": [round(run[0], 3) for run in bare_runs],
            "cpu_seconds": round(best_bare[1], 3),
            "articles_per_hour_per_core": round(items / best_bare[1] * 3600),
            **best_bare[2],
        },
        "summitwatch": {
            "best_seconds": round(best_ours[0], 3),
            "median_seconds": round(statistics.median(run[0] for run in ours_runs), 3),
            "runs_seconds": [round(run[0], 3) for run in ours_runs],
            "cpu_seconds": round(best_ours[1], 3),
            "articles_per_hour_per_core": round(items / best_ours[1] * 3600),
            "stored": stored,
            "profile": profile,
        },
        **(
            {
                "baseline_code": {
                    "source": args.baseline_label or "another checkout (no --baseline-label given)",
                    "best_seconds": round(min(baseline_runs)[0], 3),
                    "median_seconds": round(statistics.median(run[0] for run in baseline_runs), 3),
                    "median_ratio": round(
                        statistics.median(run[0] for run in baseline_runs)
                        / statistics.median(run[0] for run in bare_runs),
                        2,
                    ),
                    "runs_seconds": [round(run[0], 3) for run in baseline_runs],
                    "cpu_seconds": round(min(baseline_runs)[1], 3),
                    "ratio": round(min(baseline_runs)[0] / best_bare[0], 2),
                    "cpu_ratio": round(min(baseline_runs)[1] / best_bare[1], 2),
                    "stored": baseline_stored,
                }
            }
            if baseline_runs
            else {}
        ),
        "ratio": round(best_ours[0] / best_bare[0], 2),
        # Medians as well: on a shared machine one lucky run can carry the best time.
        "median_ratio": round(
            statistics.median(run[0] for run in ours_runs) / statistics.median(run[0] for run in bare_runs), 2
        ),
        # CPU seconds of the best runs: less sensitive to other jobs on the machine than wall time.
        "cpu_ratio": round(best_ours[1] / best_bare[1], 2),
        "startup_seconds": startup,
        # In this process, pages from disk: what a pool would save on extraction + language.
        "cpu_pool_check": pools,
    }
    previous: dict[str, Any] = {}
    if args.output.exists():
        previous = json.loads(args.output.read_text(encoding="utf-8"))
    runs = previous.get("runs", {})
    runs[args.label] = result
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"benchmark": "cycle_speed", "runs": runs}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print_tables(result)
    return 0


def print_tables(result: dict[str, Any]) -> None:
    bare, ours = result["bare"], result["summitwatch"]
    print(f"\n{result['site']['items']} items in {len(result['site']['feeds'])} feeds ({result['label']})\n")
    print("| pipeline | best s | runs | CPU s | articles/hour/core |")
    print("|---|---:|---|---:|---:|")
    for name, side in (("bare libraries", bare), ("summitwatch run --once --all", ours)):
        runs = ", ".join(f"{s:.2f}" for s in side["runs_seconds"])
        print(
            f"| {name} | {side['best_seconds']:.2f} | {runs} | {side['cpu_seconds']:.2f} "
            f"| {side['articles_per_hour_per_core']:,} |"
        )
    print(
        f"\nratio: {result['ratio']:.2f}x best, {result['median_ratio']:.2f}x median "
        f"(CPU {result['cpu_ratio']:.2f}x); stored: {ours['stored']}"
    )
    if "baseline_code" in result:
        print(f"baseline code: {result['baseline_code']}")
    print(f"session flushes: {ours['profile']['session_flushes']}")
    print("\n| stage (summitwatch, profiled run) | s |\n|---|---:|")
    for stage, seconds in sorted(ours["profile"]["stage_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {seconds:.2f} |")
    print("\n| stage (bare) | s |\n|---|---:|")
    for stage, seconds in bare["stage_seconds"].items():
        print(f"| {stage} | {seconds:.2f} |")
    print(f"\nstart-up: {result['startup_seconds']}")
    print(f"extraction + language pool check: {result['cpu_pool_check']}")


if __name__ == "__main__":
    sys.exit(main())
