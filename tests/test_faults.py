"""Faults, each with the real component: a database restarted mid-run, a process killed
mid-batch, two ingest runs at once, Slack down for an hour, a feed failing for days.

After each: no article lost, none stored twice, no digest posted twice, and the failure
visible where an operator looks (command output, ``feeds list``, the web UI, the outbox).
"""

from __future__ import annotations

import contextlib
import json
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

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
    """A feed (or ``feeds`` feeds) of the same ``count`` items, each a distinct article page."""

    def __init__(self, count: int, *, feeds: int = 1, rendezvous: int = 1) -> None:
        self.count = count
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
        return Reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})

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


def cli_env(db_url: str, config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": db_url,
        "SUMMITWATCH_CONFIG_DIR": str(config),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        **(extra or {}),
    }


def sw(
    *args: str, db_url: str, config: Path, timeout: float = 300, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        env=cli_env(db_url, config, extra_env),
        cwd=config.parent,
        timeout=timeout,
    )


def start_run(
    db_url: str, config: Path, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``summitwatch run --once --all`` in the background, its stderr going to ``log``."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [SCRIPT, "run", "--once", "--all"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cli_env(db_url, config, extra_env),
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


# One item per transaction, pages fetched one at a time: the kill point is exact.
ONE_BY_ONE = {"SUMMITWATCH_POLL__ITEMS_PER_COMMIT": "1", "SUMMITWATCH_HTTP__MAX_CONCURRENCY": "1"}


@pytest.mark.parametrize("mode", ["one-by-one", "batched"])
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_killed_mid_batch_then_rerun_stores_each_item_once(
    backend: str, mode: str, tmp_path: Path, config_dir: Path, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path / 'killed.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    extra_env = ONE_BY_ONE if mode == "one-by-one" else None
    with NewsSite(12) as site:
        engine = prepare(db_url, config_dir, site)
        run: subprocess.Popen[bytes] | None = None

        def kill_at_page_six(number: int) -> None:
            if number == 6 and run is not None:
                run.send_signal(signal.SIGKILL)  # mid-item: page 6 fetched, never stored

        site.on_page = kill_at_page_six
        run = start_run(db_url, config_dir, tmp_path / "first.log", extra_env)
        run.wait(timeout=300)
        assert run.returncode == -signal.SIGKILL
        stored = stored_count(engine)
        if mode == "one-by-one":
            assert stored == 6, "pages 0-5 were committed before the kill"
        else:
            # Pages are fetched ahead and items committed in batches: what the kill left is
            # whole batches, the first items of the feed in order, and never page 6 or later.
            assert stored < 6
            with engine.connect() as connection:
                urls = set(connection.scalars(select(Article.url).where(Article.is_seed.is_(False))))
            assert urls == {site.url(f"/news/{i}") for i in range(stored)}
        site.on_page = None
        again = sw("run", "--once", "--all", db_url=db_url, config=config_dir, extra_env=extra_env)
        assert again.returncode == 0, again.stderr
        # The kill left the feed unread: the re-run sees every item, those stored as known
        # (from this feed: seen before, not copies).
        seen = f" ({stored} seen before)" if stored else ""
        assert f"{12 - stored} new, 0 duplicate, 0 failed items{seen}" in again.stderr
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
@pytest.mark.parametrize("mode", ["one-by-one", "batched"])
def test_postgres_restarted_mid_run(
    back_before_noticed: bool, mode: str, tmp_path: Path, config_dir: Path, restartable_postgres: Cluster
) -> None:
    """The server stops when page 4 is asked for, and comes back at once or stays down.

    One item at a time, the run is then waiting for that page with no transaction open (it
    never waits for the network inside one): a quick restart goes unnoticed and every item
    is stored; a server still down stops the run with one clear line. In batches, pages are
    fetched ahead, so the restart meets the run mid-batch: it either finishes (the batch
    done again item by item, at most the item met by the outage offered again next poll) or,
    the server not back yet when it checks, stops with the same clear line. A re-run stores
    the rest, each item once."""
    cluster = restartable_postgres
    extra_env = ONE_BY_ONE if mode == "one-by-one" else None
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
        run = start_run(cluster.url, config_dir, log, extra_env)
        run.wait(timeout=300)
        output = log.read_text()
        assert "Traceback" not in output, output
        stopped = run.returncode == 2
        if stopped:
            assert (
                output.strip().splitlines()[-1].startswith("summitwatch: error: the database is unavailable")
            ), output
        if not back_before_noticed:
            assert stopped, output
            cluster.start()
            assert stored_count(engine) < 10  # what the outage cut short was not committed
        elif mode == "one-by-one":
            assert run.returncode == 0, output
            assert "10 new, 0 duplicate, 0 failed items" in output
            assert stored_count(engine) == 10
        elif not stopped:
            assert run.returncode == 0, output
            counts = re.search(r"(\d+) new, 0 duplicate, (\d+) failed items", output)
            assert counts is not None, output
            assert int(counts[1]) + int(counts[2]) == 10 and int(counts[2]) <= 1, output
            assert stored_count(engine) == int(counts[1])
        site.on_page = None
        again = sw("run", "--once", "--all", db_url=cluster.url, config=config_dir)
        assert again.returncode == 0, again.stderr
        assert_each_item_stored_once(engine, site)
    engine.dispose()


def _wait_for(log: Path, text: str, count: int, run: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = log.read_text()
        if output.count(text) >= count:
            return output
        assert run.poll() is None, output
        time.sleep(0.2)
    raise AssertionError(f"no {count} x {text!r} in {seconds} s:\n{log.read_text()}")


@pytest.mark.postgres
@pytest.mark.slow
def test_running_for_good_leaves_no_transaction_open_asleep_and_waits_out_an_outage(
    tmp_path: Path, config_dir: Path, restartable_postgres: Cluster
) -> None:
    """`summitwatch run` kept the transaction of its last query open while it slept: a
    server's idle-in-transaction timeout ended it, a restart between cycles stopped it
    ("database unavailable"), and it held back the server's clean-up all along. Now it
    sleeps with no transaction open, and waits for a database that went away."""
    cluster = restartable_postgres
    with NewsSite(3) as site:
        engine = prepare(cluster.url, config_dir, site)
        engine.dispose()
        log = tmp_path / "daemon.log"
        with log.open("wb") as stderr:
            run = subprocess.Popen(
                [SCRIPT, "run", "--all"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=cli_env(cluster.url, config_dir),
                cwd=config_dir.parent,
            )
        try:
            _wait_for(log, "cycle done", 1, run, 120)
            time.sleep(1.5)  # (asleep until the next check, 30 s on)
            admin = make_engine(cluster.url)
            with admin.connect() as connection:
                states = connection.scalars(
                    text(
                        "SELECT state FROM pg_stat_activity WHERE backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid()"
                    )
                ).all()
            admin.dispose()
            assert states and "idle in transaction" not in states, states
            cluster.stop("fast")
            _wait_for(log, "database unavailable: ", 1, run, 60)
            cluster.start()
            output = _wait_for(log, "cycle done", 2, run, 60)
            assert "Traceback" not in output and "error:" not in output, output
            assert "3 new, 0 duplicate, 0 failed items" in output
        finally:
            run.terminate()
            run.wait(timeout=30)


@pytest.mark.slow
def test_running_for_good_sleeps_until_a_feed_is_due(tmp_path: Path, config_dir: Path) -> None:
    """`summitwatch run` woke every second for the half minute before a feed was due, each
    time running a cycle that polled nothing and printing "0 feeds polled" (29 such lines
    for each real cycle). Now it sleeps until the feed is due, and an idle wake-up says
    nothing."""
    db_url = f"sqlite:///{tmp_path / 'daemon.db'}"
    with NewsSite(3) as site:
        engine = prepare(db_url, config_dir, site)
        with session_factory(engine)() as session:
            for feed in repo.list_feeds(session):
                feed.next_poll_at = datetime.now(UTC) + timedelta(seconds=6)
            session.commit()
        engine.dispose()
        log = tmp_path / "daemon.log"
        with log.open("wb") as stderr:
            run = subprocess.Popen(
                [SCRIPT, "run"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=cli_env(db_url, config_dir),
                cwd=config_dir.parent,
            )
        try:
            _wait_for(log, "cycle done", 1, run, 120)
            time.sleep(3)  # (the next feed is due a poll interval on: asleep till then)
        finally:
            run.terminate()
            run.wait(timeout=30)
    output = log.read_text()
    cycles = [line for line in output.splitlines() if "cycle done" in line]
    assert len(cycles) == 1 and "1 feeds polled" in cycles[0], output
    assert "3 new, 0 duplicate, 0 failed items" in cycles[0]


# Two ingest runs at once --------------------------------------------------------------------

# Both runs fetch one page at a time, in feed order, so that each page's rendezvous pairs
# the two runs' requests for that page. With pages fetched ahead, each run could hold its
# host slots on pages the other has not reached yet, and both would wait out the
# rendezvous instead of meeting in it.
IN_TURN = {"SUMMITWATCH_HTTP__MAX_CONCURRENCY": "1"}


def test_two_cli_runs_at_once_on_sqlite(tmp_path: Path, config_dir: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'overlap.db'}"
    with NewsSite(12, rendezvous=2) as site:
        engine = prepare(db_url, config_dir, site)
        runs = [start_run(db_url, config_dir, tmp_path / f"run{n}.log", extra_env=IN_TURN) for n in range(2)]
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
        try:
            with engine.connect() as connection:
                feed_ids = list(connection.scalars(select(Feed.id)))
            log = tmp_path / "cli.log"
            run = start_run(postgres_url, config_dir, log, extra_env=IN_TURN)
            try:
                settings = make_settings(
                    postgres_url, config_dir=str(config_dir), http={"max_concurrency": 1}
                )
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
        finally:
            engine.dispose()


# Slack down for an hour ---------------------------------------------------------------------


def test_slack_down_for_an_hour_then_each_digest_posted_once(tmp_path: Path) -> None:
    """Slack answers 503 to everything for an hour of digest runs (every 15 minutes): the
    digest stays pending and says why; when Slack is back it is delivered, once."""
    from pipeline import tasks
    from pipeline.db.schema import DigestOutbox
    from pipeline.ingest import import_lines
    from pipeline.reporting import DeliveryFailed
    from tests.slack_server import FakeSlack
    from tests.test_reporting import pos2_articles

    db_url = f"sqlite:///{tmp_path / 'digest.db'}"
    engine = make_engine(db_url)
    upgrade_schema(engine)
    now = datetime.now(UTC)
    with FakeSlack() as slack, session_factory(engine)() as session:
        slack_connection = {"bot_token": slack.token, "channel": "C0DIGEST", "api_url": slack.api_url}
        settings = make_settings(db_url, digest_dir=str(tmp_path / "digests"))
        repo.extend_history(session, now - timedelta(days=30))
        lines = [
            json.dumps(
                {
                    "url": f"https://n.example/{a['id']}",
                    "title": a["title"],
                    "text": a["text"],
                    "published": (now - timedelta(hours=3 + i)).isoformat(),
                }
            )
            for i, a in enumerate(pos2_articles())
        ]
        statuses = [r.result.status for r in import_lines(session, settings, lines, source="t", now=now)]
        assert statuses.count("new") >= 5, "a burst of coverage: a digest is due"
        slack.fail_next(10_000, 503)  # down: every request fails
        for quarter in range(4):  # the digest DAG runs every 15 minutes for an hour
            assert tasks.prepare_digests(slack=slack_connection, settings=settings)["digests_queued"] >= 0
            with pytest.raises(DeliveryFailed, match="503") as failed:
                tasks.deliver_digests(slack=slack_connection, settings=settings)
            session.expire_all()
            rows = session.scalars(select(DigestOutbox).order_by(DigestOutbox.id)).all()
            assert rows and {row.status for row in rows} == {"pending"}, "kept for later, not dropped"
            assert all("503" in (row.last_error or "") for row in rows), "the reason is visible"
            # The oldest is tried each time; the ones after it wait behind it, in order.
            assert rows[0].attempts == quarter + 1 and all(row.attempts == 0 for row in rows[1:])
        assert slack.messages == [], "nothing reached the channel while Slack was down"
        assert str(failed.value) and slack.token not in str(failed.value)
        slack.recover()
        delivered = tasks.deliver_digests(slack=slack_connection, settings=settings)
        assert delivered["sent"] == len(rows)
        again = tasks.deliver_digests(slack=slack_connection, settings=settings)
        assert again["sent"] == 0
        session.expire_all()
        rows = session.scalars(select(DigestOutbox)).all()
        assert {row.status for row in rows} == {"sent"}
        posted = slack.posted_to("C0DIGEST")
        assert len(posted) == sum(row.parts_total for row in rows), "every part once, none twice"
        assert len([m for m in posted if m.thread_ts is None]) == len(rows), "one parent per digest"
        assert len({(m.text, m.thread_ts is None) for m in posted}) == len(posted)
    engine.dispose()


# A feed failing for days --------------------------------------------------------------------


def test_feed_failing_for_days_backs_off_shows_it_and_recovers(tmp_path: Path, config_dir: Path) -> None:
    """A feed answers 503 for three days (simulated clock, a cycle whenever a feed is due):
    its polls back off exponentially up to the cap, the failure shows in ``feeds list`` and
    on the web UI's feeds page, a healthy feed is polled on schedule meanwhile (every six
    hours here), and when the feed is back its items are stored, each once."""
    from pipeline.http import HttpClient
    from pipeline.ingest import run_cycle
    from pipeline.web import create_app
    from tests.test_web import running_server

    db_url = f"sqlite:///{tmp_path / 'days.db'}"
    settings = make_settings(db_url, config_dir=str(config_dir), poll={"interval_minutes": 360})
    start = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    with NewsSite(3, feeds=2) as site:
        engine = prepare(db_url, config_dir, site)
        failing_url, healthy_url = site.url("/feed0"), site.url("/feed1")
        broken = {"on": True}

        def feed0_down(handler: object) -> Reply:
            return Reply(503, b"down") if broken["on"] else site._feed(handler)

        site.server.routes["/feed0"] = feed0_down
        waits: list[timedelta] = []
        now = start
        with (
            session_factory(engine)() as session,
            HttpClient(settings.http, allow_private_networks=True) as client,
        ):
            failing = session.scalars(select(Feed).where(Feed.url == failing_url)).one()
            while now < start + timedelta(days=3):
                summary = run_cycle(session, client, settings, now=now)
                if any(poll.feed_url == failing_url for poll in summary.polls):
                    session.refresh(failing)
                    assert failing.next_poll_at is not None
                    waits.append(failing.next_poll_at - now)
                now = min(feed.next_poll_at for feed in repo.list_feeds(session) if feed.next_poll_at)
            polls_of = {
                url: sum(1 for hit in site.server.hits if hit["path"] == path)
                for url, path in ((failing_url, "/feed0"), (healthy_url, "/feed1"))
            }
            assert polls_of[healthy_url] == 3 * 4, "the healthy feed polled every six hours"
            base, cap = timedelta(minutes=15), timedelta(hours=settings.poll.backoff_max_hours)
            assert waits == [min(base * 2**n, cap) for n in range(len(waits))], waits
            assert waits[-1] == cap and waits[-2] == cap, "the backoff reached its cap and stays there"
            assert polls_of[failing_url] == len(waits) == 9, "nine tries in three days, not 288"
            session.refresh(failing)
            failures = failing.failure_count
            assert failures == 9 and "HTTP 503" in (failing.last_error or "")

            # Visible in `feeds list` ...
            listed = sw("feeds", "list", db_url=db_url, config=config_dir)
            assert listed.returncode == 0, listed.stderr
            row = next(line for line in listed.stdout.splitlines() if failing_url in line)
            assert f"{failures} failures" in row
            assert f"next {failing.next_poll_at:%Y-%m-%d %H:%M}" in row
            assert "last error: HTTP 503" in listed.stdout
            as_json = [
                json.loads(line)
                for line in sw(
                    "feeds", "list", "--json", db_url=db_url, config=config_dir
                ).stdout.splitlines()
            ]
            entry = next(e for e in as_json if e["url"] == failing_url)
            assert entry["failures"] == failures and "HTTP 503" in entry["last_error"]
            assert entry["next_poll_at"] == failing.next_poll_at.isoformat()
            # ... and on the web UI's feeds page.
            with running_server(create_app(settings, clock=lambda: now)) as base_url:
                page = httpx.get(f"{base_url}/feeds", timeout=30).text
            row_html = next(chunk for chunk in page.split("<tr") if failing_url in chunk)
            assert "failing" in row_html and f">{failures}<" in row_html
            assert f"{failing.next_poll_at:%Y-%m-%d %H:%M} UTC" in row_html and "HTTP 503" in row_html
            assert "1 failing" in page

            # Back on day four: the next due poll succeeds and stores every item, once.
            broken["on"] = False
            stored_before = stored_count(engine)
            now = failing.next_poll_at
            run_cycle(session, client, settings, now=now)
            session.refresh(failing)
            assert failing.failure_count == 0 and failing.last_error is None
            assert failing.next_poll_at == now + timedelta(hours=6)
        assert stored_before == 3, "the healthy feed's items, stored on the first cycle"
        assert_each_item_stored_once(engine, site)
    engine.dispose()


def test_an_item_that_fails_unexpectedly_is_recorded_and_retried(
    tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item that raised something unexpected (memory exhausted by a page, a bug its data
    triggers) was counted as failed in the run's output only: the feed was marked as read,
    so it was never offered again, and nothing showed it anywhere."""
    from pipeline import ingest
    from pipeline.db.schema import FetchFailure
    from pipeline.http import HttpClient

    db_url = f"sqlite:///{tmp_path / 'unexpected.db'}"
    settings = make_settings(db_url, config_dir=str(config_dir))
    real_store = ingest.store_candidate
    broken = {"on": True}

    def store(session: object, candidate: ingest.ArticleCandidate, **kwargs: object) -> object:
        if broken["on"] and (candidate.url or "").endswith("/news/1"):
            raise MemoryError
        return real_store(session, candidate, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "store_candidate", store)
    now = datetime.now(UTC)
    with NewsSite(3, feeds=1) as site:
        engine = prepare(db_url, config_dir, site)
        with (
            session_factory(engine)() as session,
            HttpClient(settings.http, allow_private_networks=True) as client,
        ):
            ingest.run_cycle(session, client, settings, now=now)
            assert stored_count(engine) == 2
            failure = session.scalars(select(FetchFailure).where(FetchFailure.stage == "page")).one()
            assert failure.target.endswith("/news/1") and not failure.permanent
            assert "MemoryError" in failure.error and failure.resolved_at is None
            broken["on"] = False
            assert failure.next_retry_at is not None
            ingest.run_cycle(session, client, settings, now=failure.next_retry_at + timedelta(minutes=1))
        assert stored_count(engine) == 3
        assert_each_item_stored_once(engine, site)
    engine.dispose()
