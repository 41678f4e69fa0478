"""Prepare workers: pages extracted, detected, embedded and classified in other processes.

The console script runs a feed of real excerpts with and without workers: what it stores
must be the same. A worker killed under a job is replaced and the job done again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.classify import TopicRegistry, load_registry
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory, upgrade_schema
from pipeline.encoder import load_encoder
from pipeline.prepare import MIN_PAGES_FOR_WORKERS, PageJob, PreparePool
from pipeline.records import FeedItem
from pipeline.settings import Settings
from pipeline.topic_heads import LabelHeads, load_heads
from tests.conftest import REPO_ROOT, make_settings
from tests.local_server import LocalServer, Reply

SCRIPT = str(Path(sys.executable).parent / "summitwatch")
REAL = REPO_ROOT / "tests" / "fixtures" / "classify" / "real_train.jsonl"
NOW = datetime(2026, 11, 19, 12, tzinfo=UTC)


def excerpts(count: int) -> list[dict[str, str]]:
    """``count`` real excerpts, en/ru/zh in turn, long enough to be articles."""
    rows = [json.loads(line) for line in REAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_lang = {
        lang: [r for r in rows if r["lang"] == lang and len(r["text"]) > 400] for lang in ("en", "ru", "zh")
    }
    chosen = []
    for index in range(count):
        queue = by_lang[("en", "ru", "zh")[index % 3]]
        chosen.append(queue[index // 3])
    return chosen


def html_page(row: dict[str, str]) -> bytes:
    title = (row.get("title") or row["text"][:60]).replace("<", " ")
    paragraphs = "".join(f"<p>{p}</p>" for p in row["text"].replace("<", " ").split("\n") if p.strip())
    return (
        f"<!doctype html><html lang='{row['lang']}'><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><nav><a href='/'>Home</a></nav><article><h1>{title}</h1>{paragraphs}</article>"
        "<footer>All rights reserved.</footer></body></html>"
    ).encode()


def rss(server: LocalServer, paths: list[str], channel: str) -> Reply:
    """An RSS document linking ``paths`` of ``server``, one minute apart."""
    items = "".join(
        f"<item><title>{path}</title><link>{server.url(path)}</link>"
        f"<pubDate>Thu, 19 Nov 2026 {10 + n // 60:02d}:{n % 60:02d}:00 GMT</pubDate></item>"
        for n, path in enumerate(paths)
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel>{channel}{items}</channel></rss>'
    return Reply(200, body.encode(), {"Content-Type": "application/rss+xml"})


def site(rows: list[dict[str, str]], page_delay: float = 0.0) -> LocalServer:
    """A feed of the pages, the first one carried twice (a syndicated copy under a second URL)."""
    pages = {f"/p{i}": html_page(row) for i, row in enumerate(rows)}
    pages["/copy"] = pages["/p0"].replace(b"<nav>", b"<nav><a href='/partner'>Partner</a>")
    server: LocalServer
    polls = [0]

    def feed(handler: object) -> Reply:
        polls[0] += 1  # the body changes on every poll (a build number), the items do not
        return rss(server, list(pages), f"<title>t</title><generator>build {polls[0]}</generator>")

    def page(handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        return Reply(200, pages[path], {"Content-Type": "text/html; charset=utf-8"}, delay=page_delay)

    server = LocalServer({"/feed": feed, **dict.fromkeys(pages, page)})
    return server


def new_database(db: Path, *feed_urls: str) -> None:
    engine = make_engine(f"sqlite:///{db}")
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        for number, feed_url in enumerate(feed_urls):
            repo.upsert_feed(session, feed_url, name=f"feed {number}" if number else "feed", lang="en")
        session.commit()
    engine.dispose()


def cli_env(db: Path, workers: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "SUMMITWATCH_POLL__WORKERS": str(workers),
    }


def run_cli(db: Path, workers: int, *feed_urls: str) -> str:
    """``summitwatch -v run --once --all`` on a new database holding the feeds; its stderr."""
    new_database(db, *feed_urls)
    done = subprocess.run(
        [SCRIPT, "-v", "run", "--once", "--all"],
        capture_output=True,
        text=True,
        env=cli_env(db, workers),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def stored(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT a.url, a.title, a.lang, a.copy_kind, o.url, a.text, v.document, v.sentences,"
            " (SELECT group_concat(t.topic || ':' || t.score || ':' || t.evidence, ',') FROM"
            "  (SELECT * FROM article_topics WHERE article_id = a.id ORDER BY topic) t),"
            " (SELECT group_concat(w.item || ':' || w.evidence, ',') FROM"
            "  (SELECT * FROM article_watch WHERE article_id = a.id ORDER BY item) w),"
            # What the workers compute of the text besides: shingles, evidence, search terms.
            " s.signature, (SELECT group_concat(band_key, ',') FROM"
            "  (SELECT band_key FROM article_bands WHERE article_id = a.id ORDER BY band_key)),"
            " (SELECT f.title || '|' || f.body FROM article_fts f WHERE f.rowid = a.id),"
            " a.link_detail, a.similarity, a.relevant, a.word_count"
            " FROM articles a LEFT JOIN articles o ON o.id = a.duplicate_of_id"
            " LEFT JOIN article_vectors v ON v.article_id = a.id"
            " LEFT JOIN article_signatures s ON s.article_id = a.id"
            " WHERE NOT a.is_seed ORDER BY a.url"
        ).fetchall()


@pytest.mark.slow
def test_workers_store_exactly_what_one_process_stores(tmp_path: Path) -> None:
    rows = excerpts(MIN_PAGES_FOR_WORKERS + 4)
    with site(rows) as server:
        alone = run_cli(tmp_path / "alone.db", 0, server.url("/feed"))
        pooled = run_cli(tmp_path / "pooled.db", 1, server.url("/feed"))
        two_workers = run_cli(tmp_path / "two.db", 2, server.url("/feed"))
        again = subprocess.run(
            [SCRIPT, "-v", "run", "--once", "--all"],
            capture_output=True,
            text=True,
            env=cli_env(tmp_path / "pooled.db", 1),
            timeout=300,
        )
    assert "prepare worker" not in alone
    assert "started 1 prepare worker(s) by fork" in pooled  # the CLI has no other thread then
    assert "started 2 prepare worker(s) by fork" in two_workers
    assert again.returncode == 0 and "0 new" in again.stderr
    assert "prepare worker" not in again.stderr, "a changed feed of known items starts no worker"
    one, two = stored(tmp_path / "alone.db"), stored(tmp_path / "pooled.db")
    assert len(one) == len(rows) + 1
    assert [row[3] for row in one].count("exact") == 1 or [row[3] for row in one].count("near") == 1
    assert {row[2] for row in one} == {"en", "ru", "zh"}
    assert all(row[6] and row[7] for row in one), "every article has its vectors"
    assert any(row[8] for row in one), "some articles have topics"
    assert all(row[10] and row[11] and row[12] for row in one), "signatures, bands and search terms"
    assert one == two
    assert stored(tmp_path / "two.db") == one  # whichever worker does which page


def small_feeds(rows: list[dict[str, str]], per_feed: int) -> LocalServer:
    """Feeds of ``per_feed`` pages each (``/feed0``, ``/feed1``...), one after another; each
    feed after the first also lists the last page of the feed before (as sibling section
    feeds of one site do)."""
    pages = {f"/p{i}": html_page(row) for i, row in enumerate(rows)}
    paths = list(pages)
    server: LocalServer

    def feed_route(number: int) -> object:
        def feed(handler: object) -> Reply:
            chunk = paths[max(0, number * per_feed - 1) : (number + 1) * per_feed]
            return rss(server, chunk, f"<title>f{number}</title>")

        return feed

    def page(handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        return Reply(200, pages[path], {"Content-Type": "text/html; charset=utf-8"})

    feeds = {f"/feed{n}": feed_route(n) for n in range(len(paths) // per_feed)}
    server = LocalServer({**feeds, **dict.fromkeys(pages, page)})  # type: ignore[dict-item]
    return server


@pytest.mark.slow
def test_a_cycle_of_small_feeds_starts_the_workers_and_stores_what_one_process_stores(
    tmp_path: Path,
) -> None:
    """No feed holds MIN_PAGES_FOR_WORKERS new items, the cycle does: the workers start
    (counting the new items of the feeds before and of those read ahead), the next feeds'
    pages are fetched ahead for them, every page is fetched once (one two feeds list too),
    and what is stored is what one process alone stores."""
    per_feed, count = 3, 18
    assert per_feed < MIN_PAGES_FOR_WORKERS < count
    rows = excerpts(count)
    runs = {}
    with small_feeds(rows, per_feed) as server:
        for workers in (0, 1):
            db = tmp_path / f"w{workers}.db"
            before = len(server.hits)
            log = run_cli(db, workers, *(server.url(f"/feed{n}") for n in range(count // per_feed)))
            pages = [hit["path"] for hit in server.hits[before:] if hit["path"].startswith("/p")]
            runs[workers] = (log, pages, stored(db))
    alone, pooled = runs[0], runs[1]
    assert "prepare worker" not in alone[0] and "started 1 prepare worker(s)" in pooled[0]
    assert sorted(pooled[1]) == sorted(alone[1]) == sorted(f"/p{i}" for i in range(count)), "each page once"
    assert len(pooled[2]) == count and pooled[2] == alone[2]


def test_jobs_not_yet_given_to_a_worker_can_be_taken_back_and_go_out_in_their_order(db_url: str) -> None:
    """The executor holds one job per worker and one more; the pool keeps the rest, so this
    process can still take any of them back, and gives them out lowest order first."""
    settings = make_settings(db_url)
    pool = PreparePool(settings, 1)
    empty = b"<html><body></body></html>"

    def job(name: str) -> PageJob:
        return PageJob(FeedItem(f"http://example.org/{name}", name), empty, None, "en", NOW)

    jobs = {name: job(name) for name in "abcdef"}
    try:
        assert pool.start_for(MIN_PAGES_FOR_WORKERS, classifier)
        # The worker is kept busy meanwhile, so that nothing given to it is done yet.
        assert pool._executor is not None
        busy = pool._executor.submit(time.sleep, 3)
        futures = {"a": pool.submit(jobs["a"], (1, 0)), "b": pool.submit(jobs["b"], (1, 1))}
        # A later feed's job first, then the current feed's: the current feed's go out first.
        futures["c"] = pool.submit(jobs["c"], (2, 0))
        futures["d"] = pool.submit(jobs["d"], (1, 2))
        futures["e"] = pool.submit(jobs["e"], (1, 3))
        assert pool.waiting() == [jobs["d"], jobs["e"], jobs["c"]]
        assert not busy.done(), "the checks ran while the worker was busy"
        assert not pool.take_back(futures["a"]) and not pool.take_back(futures["b"]), "given out"
        assert pool.take_back(futures["e"]) and futures["e"].cancelled()
        assert not pool.take_back(futures["e"]), "taken back once"
        assert pool.waiting() == [jobs["d"], jobs["c"]]
        # Waiting for a job still held gives it out at once; the rest follow in order.
        prepared = pool.collect(jobs["c"], futures["c"])
        assert prepared.error is not None  # (a page without text: an error, from a worker)
        for name in ("a", "b", "d"):
            assert pool.collect(jobs[name], futures[name]).error is not None
        assert pool.waiting() == []
        futures["f"] = pool.submit(jobs["f"], (9, 9))
    finally:
        pool.close()
    assert futures["f"].done(), "close() leaves no future waiting for ever"


def test_a_worker_that_finishes_a_job_is_given_the_next_one_held_at_once(db_url: str) -> None:
    """While this process is busy with an item of its own (no submit, no collect), the
    jobs the pool holds still go out one by one as the worker finishes the ones before."""
    settings = make_settings(db_url)
    pool = PreparePool(settings, 1)
    empty = b"<html><body></body></html>"
    jobs = [PageJob(FeedItem(f"http://example.org/{k}", str(k)), empty, None, "en", NOW) for k in range(6)]
    try:
        assert pool.start_for(MIN_PAGES_FOR_WORKERS, classifier)
        assert pool._executor is not None
        busy = pool._executor.submit(time.sleep, 1)  # (nothing given to the worker is done yet)
        futures = [pool.submit(job, (1, k)) for k, job in enumerate(jobs)]
        assert len(pool.waiting()) == len(jobs) - 2, "the executor holds one job per worker and one more"
        assert not busy.done(), "checked while the worker was busy"
        deadline = time.monotonic() + 30
        while not all(future.done() for future in futures) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.waiting() == []
        assert all(future.done() and not future.cancelled() for future in futures)
        assert all(future.result().error is not None for future in futures)  # (pages without text)
        assert [pool.collect(job, future).error for job, future in zip(jobs, futures, strict=True)] == [
            future.result().error for future in futures
        ]
    finally:
        pool.close()


def job_for(settings: Settings, text: str) -> PageJob:
    body = f"<html><body><article><h1>Talks</h1><p>{text}</p></article></body></html>".encode()
    return PageJob(FeedItem("http://example.org/a", "Talks"), body, "text/html", "en", NOW)


TEXT = (
    "Vladimir Putin and Xi Jinping met in Beijing and agreed to expand settlements in yuan and roubles. "
    "The leaders also discussed the Power of Siberia 2 pipeline and joint naval exercises in the Pacific."
)


def classifier() -> tuple[TopicRegistry, LabelHeads]:
    registry = load_registry(REPO_ROOT / "config" / "topics.yaml")
    return registry, load_heads(registry, encoder=load_encoder())


def worker_pids() -> set[int]:
    import multiprocessing

    return {child.pid for child in multiprocessing.active_children() if child.pid}


@pytest.mark.slow
def test_a_worker_killed_under_a_job_is_replaced_and_the_job_done_again(db_url: str) -> None:
    settings = make_settings(db_url)
    pool = PreparePool(settings, 1)
    try:
        assert not pool.start_for(MIN_PAGES_FOR_WORKERS - 1, classifier), (
            "a short feed is prepared in the process"
        )
        assert pool.start_for(MIN_PAGES_FOR_WORKERS, classifier)
        job = job_for(settings, TEXT)
        first = pool.collect(job, pool.submit(job))
        assert first.candidate is not None and first.vectors is not None and first.classification is not None
        before = worker_pids()
        assert before
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        again = pool.collect(job, pool.submit(job))
        assert again.error is None and again.candidate == first.candidate
        assert again.vectors is not None and (again.vectors.document == first.vectors.document).all()
        assert worker_pids().isdisjoint(before), "the dead worker was replaced"
    finally:
        pool.close()
    assert not worker_pids()


@pytest.mark.slow
def test_a_job_whose_worker_was_killed_is_done_again_in_a_worker_of_its_own(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker dies under a long job (or before it starts it): the job is tried again
    in a worker started for it alone, and its result is the one a live worker gives."""
    settings = make_settings(db_url)
    pool = PreparePool(settings, 1)
    long_text = " ".join([TEXT] * 4000)  # (extracting it takes the worker a while)
    job = job_for(settings, long_text)
    try:
        assert pool.start_for(MIN_PAGES_FOR_WORKERS, classifier)
        expected = pool.collect(job_for(settings, TEXT), pool.submit(job_for(settings, TEXT)))
        assert expected.candidate is not None
        before = worker_pids()
        future = pool.submit(job)
        time.sleep(0.3)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="pipeline.prepare"):
            again = pool.collect(job, future)
        assert "trying http://example.org/a again alone" in caplog.text
        assert again.error is None and again.candidate is not None and again.vectors is not None
        assert again.candidate.text.startswith(TEXT[:40]) and len(again.candidate.text) > len(TEXT) * 1000
        # The pool itself works on afterwards, in fresh workers.
        later = pool.collect(job_for(settings, TEXT), pool.submit(job_for(settings, TEXT)))
        assert later.candidate == expected.candidate and worker_pids().isdisjoint(before)
    finally:
        pool.close()
    assert not worker_pids()


def test_a_page_without_text_comes_back_as_the_same_error(db_url: str) -> None:
    settings = make_settings(db_url)
    pool = PreparePool(settings, 1)
    try:
        pool.start_for(MIN_PAGES_FOR_WORKERS, classifier)
        job = PageJob(
            FeedItem("http://example.org/a", "Talks"), b"<html><body></body></html>", None, "en", NOW
        )
        prepared = pool.collect(job, pool.submit(job))
    finally:
        pool.close()
    assert prepared.candidate is None and prepared.permanent
    with pytest.raises(Exception, match="text") as raised:
        prepared.unwrap()
    assert type(raised.value).__name__ == "ExtractionError"


def processes_using(db: Path) -> set[int]:
    """The processes whose environment names ``db`` (a run and the workers it started)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(db).encode() in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue  # ended meanwhile, or not ours
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")
def test_workers_end_when_their_run_is_killed(tmp_path: Path) -> None:
    # kill -9 leaves the run no chance to stop its pool: the worker must notice by itself.
    db = tmp_path / "killed.db"
    with site(excerpts(MIN_PAGES_FOR_WORKERS + 4), page_delay=0.5) as server:
        new_database(db, server.url("/feed"))
        run = subprocess.Popen(
            [SCRIPT, "run", "--once", "--all"],
            env=cli_env(db, 1),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while len(processes_using(db)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            workers = processes_using(db) - {run.pid}
            assert workers, "the run started a worker"
        finally:
            run.kill()
            run.wait()
        deadline = time.monotonic() + 10
        while processes_using(db) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not processes_using(db), "no worker outlives its run"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")
def test_ctrl_c_stops_a_run_with_its_workers_in_one_line(tmp_path: Path) -> None:
    """Ctrl+C reaches the whole process group: the run says "interrupted" once, and its
    prepare workers no longer each print a KeyboardInterrupt traceback."""
    db = tmp_path / "interrupted.db"
    with site(excerpts(MIN_PAGES_FOR_WORKERS + 4), page_delay=0.5) as server:
        new_database(db, server.url("/feed"))
        run = subprocess.Popen(
            [SCRIPT, "run", "--once", "--all"],
            env=cli_env(db, 1),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # (its own process group, as a terminal's job)
        )
        try:
            deadline = time.monotonic() + 30
            while len(processes_using(db)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert processes_using(db) - {run.pid}, "the run started a worker"
            os.killpg(run.pid, signal.SIGINT)
            _, errors = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 130, errors
    assert errors.strip().splitlines()[-1] == "summitwatch: interrupted"
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors, errors


@pytest.mark.parametrize(
    ("signum", "said"),
    [
        (signal.SIGTERM, "summitwatch: terminated"),
        (signal.SIGHUP, "terminated (its terminal or session closed: SIGHUP)"),
    ],
)
def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path: Path, signum: int, said: str) -> None:
    """``kill`` (SIGTERM) ends a command with one line and status 143, what it committed
    kept, rather than at once and silently; here an import waiting for its next line. So
    does SIGHUP (the SSH session a `run` was started in closed), with status 129: it ended
    the command at once and without a word."""
    db = tmp_path / "t.db"
    new_database(db)
    line = {
        "url": "https://a.example/1",
        "title": "Putin and Xi",
        "text": " ".join(["Russian and Chinese leaders met in Beijing to discuss gas and trade."] * 6),
    }
    command = subprocess.Popen(
        [SCRIPT, "import", "--json", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(db, 0),
    )
    assert command.stdin is not None and command.stdout is not None
    command.stdin.write(json.dumps(line) + "\n")
    command.stdin.flush()
    first = command.stdout.readline()  # the line's result: stored and committed
    assert json.loads(first)["status"] == "new", first
    command.send_signal(signum)
    _, errors = command.communicate(timeout=60)
    assert command.returncode == 128 + signum, errors
    assert errors.strip().endswith(said) and "Traceback" not in errors
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT url FROM articles").fetchall() == [("https://a.example/1",)]
