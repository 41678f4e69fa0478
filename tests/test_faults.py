"""Faults, each with the real component: a database restarted mid-run, a process killed
mid-batch, two ingest runs at once, Slack down for an hour, a feed failing for days.

After each: no article lost, none stored twice, no digest posted twice, and the failure
visible where an operator looks (command output, ``feeds list``, the web UI, the outbox).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory, upgrade_schema
from pipeline.db.schema import Article, Feed, Sighting
from tests.conftest import REPO_ROOT, make_settings
from tests.local_server import LocalServer, Reply
from tests.optional_suites import require
from tests.postgres_server import Cluster, running_cluster

pytestmark = pytest.mark.slow
SCRIPT = str(Path(sys.executable).parent / "summitwatch")
VOCABULARY = (
    "agreement analysts border budget cabinet capital ceasefire coalition committee congress "
    "council currency customs debate delegation deputy diplomat economy election embassy energy "
    "envoy exports factory farmers finance governor harbour imports industry inflation investors "
    "journalists judges landmark lawmakers leaders markets minister mining navy negotiators "
    "officials opposition parliament pension pipeline police port premier president prices province "
    "railway reform refinery region reporters sanctions senate shipping spokesman statement steel "
    "strike summit tariffs taxes telecom tourism trade treaty union voters wages warehouse wheat "
    "workers yesterday morning evening quietly sharply slowly again later earlier announced "
    "rejected approved delayed expanded reduced signed"
)
WORDS = VOCABULARY.split()


def article_text(number: int) -> str:
    """A distinct English article: no two share enough word runs to be near duplicates."""
    pick = random.Random(number)
    sentences = [" ".join(pick.choice(WORDS) for _ in range(14)).capitalize() + "." for _ in range(5)]
    return " ".join(sentences)


class NewsSite:
    """A feed of ``count`` items whose pages answer after ``page_delay`` seconds."""

    def __init__(self, count: int, *, page_delay: float = 0.0, feeds: int = 1, rendezvous: int = 1) -> None:
        self.count = count
        self.page_delay = page_delay
        # With rendezvous=N each page is answered only once N clients asked for it (or after
        # a timeout): N runs then fetch and store every item at the same moment.
        self._barriers = {i: threading.Barrier(rendezvous, timeout=30) for i in range(count)}
        self.rendezvous = rendezvous
        # Called with the page number before a page is answered: the moment to inject a
        # fault while the client is in the middle of an item.
        self.on_page: Callable[[int], None] | None = None
        self.feed_status = 200
        routes = {f"/feed{n}": self._feed for n in range(feeds)}
        routes.update({f"/news/{i}": self._page for i in range(count)})
        self.server = LocalServer(routes)
        self.feeds = feeds

    def _feed(self, handler: object) -> Reply:
        if self.feed_status != 200:
            return Reply(self.feed_status, b"unavailable")
        items = "".join(
            f"<item><title>Report {i}</title><link>/news/{i}</link><guid>n-{i}</guid></item>"
            for i in range(self.count)
        )
        body = f'<rss version="2.0"><channel><title>Slow news</title>{items}</channel></rss>'
        return Reply(200, body.encode(), {"Content-Type": "application/rss+xml; charset=utf-8"})

    def _page(self, handler: object) -> Reply:
        number = int(str(getattr(handler, "path")).rsplit("/", 1)[1])  # noqa: B009
        if self.rendezvous > 1:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barriers[number].wait()
        if self.on_page is not None:
            self.on_page(number)
        html = (
            f"<html lang='en'><head><title>Report {number}</title></head><body><article>"
            f"<h1>Report {number}</h1><p>{article_text(number)}</p></article></body></html>"
        )
        return Reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"}, delay=self.page_delay)

    def url(self, path: str) -> str:
        return self.server.url(path)

    @property
    def page_urls(self) -> set[str]:
        return {self.url(f"/news/{i}") for i in range(self.count)}

    def page_hits(self) -> int:
        return sum(1 for hit in self.server.hits if hit["path"].startswith("/news/"))

    def __enter__(self) -> NewsSite:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The shipped configuration without its feeds: tests stay on 127.0.0.1."""
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (config / "feeds.yaml").write_text("feeds: []\n")
    return config


def cli_env(db_url: str, config: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": db_url,
        "SUMMITWATCH_CONFIG_DIR": str(config),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
    }


def sw(*args: str, db_url: str, config: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        env=cli_env(db_url, config),
        cwd=config.parent,
        timeout=timeout,
    )


def start_run(db_url: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``summitwatch run --once --all`` in the background, its stderr going to ``log``."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [SCRIPT, "run", "--once", "--all"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cli_env(db_url, config),
            cwd=config.parent,
        )


def prepare(db_url: str, config: Path, site: NewsSite) -> Engine:
    """A database at the current schema with the site's feeds; returns an engine on it."""
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        for n in range(site.feeds):
            repo.upsert_feed(session, site.url(f"/feed{n}"), name=f"Slow news {n}", lang="en")
        session.commit()
    return engine


def stored_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).select_from(Article).where(Article.is_seed.is_(False)))
            or 0
        )


def wait_for_articles(
    engine: Engine, at_least: int, process: subprocess.Popen[bytes], seconds: float = 240
) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        count = stored_count(engine)
        if count >= at_least:
            return count
        assert process.poll() is None, "the run ended before the fault could be injected"
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} articles stored after {seconds} s")


def assert_each_item_stored_once(engine: Engine, site: NewsSite) -> None:
    """Every page of the site stored exactly once, seen exactly once per feed."""
    with engine.connect() as connection:
        urls = list(connection.scalars(select(Article.url).where(Article.is_seed.is_(False))))
        sightings = connection.execute(
            select(Sighting.article_id, Sighting.via, Sighting.url)
            .join(Article, Article.id == Sighting.article_id)
            .where(Article.is_seed.is_(False))
        ).all()
    assert sorted(urls) == sorted(site.page_urls), "no article lost, none stored twice"
    assert len(sightings) == site.count * site.feeds, "one sighting per item and feed, none doubled"
    assert len(set(sightings)) == len(sightings)


# kill -9 mid-batch -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_killed_mid_batch_then_rerun_stores_each_item_once(
    backend: str, tmp_path: Path, config_dir: Path, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path / 'killed.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with NewsSite(12) as site:
        engine = prepare(db_url, config_dir, site)
        run: subprocess.Popen[bytes] | None = None

        def kill_at_page_six(number: int) -> None:
            if number == 6 and run is not None:
                run.send_signal(signal.SIGKILL)  # mid-item: page 6 fetched, never stored

        site.on_page = kill_at_page_six
        run = start_run(db_url, config_dir, tmp_path / "first.log")
        run.wait(timeout=300)
        assert run.returncode == -signal.SIGKILL
        assert stored_count(engine) == 6, "pages 0-5 were committed before the kill"
        site.on_page = None
        again = sw("run", "--once", "--all", db_url=db_url, config=config_dir)
        assert again.returncode == 0, again.stderr
        # The kill left the feed unread: the re-run sees every item, the first six as known.
        assert "6 new, 6 duplicate, 0 failed items" in again.stderr
        assert_each_item_stored_once(engine, site)
    engine.dispose()


# PostgreSQL restarted mid-run --------------------------------------------------------------


@pytest.fixture
def restartable_postgres() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own, so stopping it disturbs no other test."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except RuntimeError as exc:
        require("postgres", f"no PostgreSQL server available: {exc}")


@pytest.mark.postgres
@pytest.mark.parametrize("back_before_noticed", [True, False], ids=["quick-restart", "down-until-exit"])
def test_postgres_restarted_mid_run(
    back_before_noticed: bool, tmp_path: Path, config_dir: Path, restartable_postgres: Cluster
) -> None:
    """The server stops while the run waits for page 4 (its transaction open). Either it is
    back before the run's next statement (the run finishes, the item is offered again next
    poll) or it is still down (the run stops with one clear line). A re-run stores the rest."""
    cluster = restartable_postgres
    with NewsSite(10) as site:
        engine = prepare(cluster.url, config_dir, site)
        engine.dispose()

        def restart_at_page_four(number: int) -> None:
            if number == 4:
                cluster.stop("fast")  # every connection is cut, open transactions are aborted
                if back_before_noticed:
                    cluster.start()

        site.on_page = restart_at_page_four
        log = tmp_path / "first.log"
        run = start_run(cluster.url, config_dir, log)
        run.wait(timeout=300)
        output = log.read_text()
        assert "Traceback" not in output, output
        if back_before_noticed:
            assert run.returncode == 0, output
            assert "database error, offered again next poll" in output
            assert "9 new, 0 duplicate, 1 failed items" in output
        else:
            assert run.returncode == 2, output
            assert (
                output.strip().splitlines()[-1].startswith("summitwatch: error: the database is unavailable")
            )
            cluster.start()
        assert stored_count(engine) in (4, 9)
        site.on_page = None
        again = sw("run", "--once", "--all", db_url=cluster.url, config=config_dir)
        assert again.returncode == 0, again.stderr
        assert_each_item_stored_once(engine, site)
    engine.dispose()


# Two ingest runs at once --------------------------------------------------------------------


def test_two_cli_runs_at_once_on_sqlite(tmp_path: Path, config_dir: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'overlap.db'}"
    with NewsSite(12, rendezvous=2) as site:
        engine = prepare(db_url, config_dir, site)
        runs = [start_run(db_url, config_dir, tmp_path / f"run{n}.log") for n in range(2)]
        for run in runs:
            run.wait(timeout=600)
        logs = [(tmp_path / f"run{n}.log").read_text() for n in range(2)]
        assert [run.returncode for run in runs] == [0, 0], logs
        assert site.page_hits() == 2 * site.count, "both runs fetched every page at the same moment"
        totals = [log.strip().splitlines()[-1] for log in logs]
        new = [int(re.search(r"; (\d+) new, (\d+) duplicate, 0 failed items", t)[1]) for t in totals]  # type: ignore[index]
        assert sum(new) == site.count, totals
        assert_each_item_stored_once(engine, site)
    engine.dispose()


@pytest.mark.postgres
def test_cli_run_and_dag_poll_task_at_once_on_postgres(
    tmp_path: Path, config_dir: Path, postgres_url: str
) -> None:
    """The CLI polls while the DAG's task bodies (plan, poll each batch, finish) poll the same
    feed in this process; every page is fetched by both at the same moment."""
    from pipeline import tasks

    with NewsSite(12, rendezvous=2) as site:
        engine = prepare(postgres_url, config_dir, site)
        with engine.connect() as connection:
            feed_ids = list(connection.scalars(select(Feed.id)))
        log = tmp_path / "cli.log"
        run = start_run(postgres_url, config_dir, log)
        try:
            settings = make_settings(postgres_url, config_dir=str(config_dir))
            batches = tasks.plan_feed_batches(feed_ids, settings=settings)
            results = [tasks.poll_feed_batch(batch, settings=settings) for batch in batches]
            totals = tasks.finish_ingest(results, settings=settings)
        finally:
            run.wait(timeout=600)
        output = log.read_text()
        assert run.returncode == 0, output
        assert site.page_hits() == 2 * site.count, "both fetched every page at the same moment"
        cli_new = int(re.findall(r"; (\d+) new, \d+ duplicate, 0 failed items", output)[-1])
        assert totals.get("error", 0) == 0, totals
        assert cli_new + totals.get("new", 0) == site.count, (output, totals)
        assert_each_item_stored_once(engine, site)
    engine.dispose()
