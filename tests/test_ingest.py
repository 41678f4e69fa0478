"""Feed to database, end to end, against a real local HTTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, Feed, FetchFailure, Sighting
from pipeline.http import HttpClient
from pipeline.ingest import (
    FRONT_PAGE_LINK,
    RETRY_PAGES,
    FeedFetch,
    FeedRequest,
    PollResult,
    _describe_poll,
    feed_backoff,
    import_lines,
    poll_feed,
    retry_failed_pages,
    run_cycle,
)
from pipeline.settings import Settings
from tests.local_server import LocalServer, Reply

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parent / "fixtures"

BODY_EN = (
    "Russian President Vladimir Putin and Chinese President Xi Jinping held talks in Beijing on Thursday, "
    "their first meeting since the spring. The two leaders discussed the Power of Siberia 2 gas pipeline, "
    "which would carry fifty billion cubic metres a year from the Yamal fields through Mongolia to northern "
    "China. Officials said pricing remained the main obstacle. Trade between the two countries rose again, "
    "with most payments now settled in yuan and roubles rather than dollars, according to officials in Moscow."
)
BODY_RU = (
    "Президент России Владимир Путин и председатель КНР Си Цзиньпин провели переговоры в Пекине. Стороны "
    "обсудили строительство газопровода «Сила Сибири 2», который должен пройти через Монголию, а также "
    "расчёты в национальных валютах. По словам помощника президента, товарооборот двух стран продолжает "
    "расти, хотя платежи через китайские банки по-прежнему сталкиваются с трудностями из-за санкций."
)


def page(title: str, body: str, lang: str) -> bytes:
    paragraphs = "".join(f"<p>{s.strip()}.</p>" for s in body.split(".") if s.strip())
    return (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<nav><a href='/'>Home</a> <a href='/world'>World</a> <a href='/sport'>Sport</a></nav>"
        f"<article><h1>{title}</h1>{paragraphs}</article>"
        f"<footer>Copyright 2026 Example News. All rights reserved.</footer></body></html>"
    ).encode()


class FeedSite:
    """A feed with validators and a few pages, served by :class:`LocalServer`."""

    def __init__(self) -> None:
        self.items = [("/a", "Putin and Xi talk gas"), ("/b", "Переговоры в Пекине"), ("/missing", "Gone")]
        self.pages = {
            "/a": page("Putin and Xi talk gas", BODY_EN, "en"),
            "/b": page("Переговоры в Пекине", BODY_RU, "ru"),
        }
        self.honour_validators = True
        self.content_type = "application/rss+xml"
        self.server = LocalServer({"/feed": self.feed, "/a": self.page, "/b": self.page})

    def feed_body(self) -> bytes:
        items = "".join(
            f"<item><title>{title}</title><link>{self.server.url(path)}?utm_source=rss</link>"
            f"<pubDate>Thu, 19 Nov 2026 10:00:00 GMT</pubDate></item>"
            for path, title in self.items
        )
        return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Test</title>{items}</channel></rss>'.encode()

    def feed(self, handler: object) -> Reply:
        body = self.feed_body()
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        sent = getattr(handler, "headers").get("If-None-Match")  # noqa: B009
        if self.honour_validators and sent == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"ETag": etag, "Content-Type": self.content_type})

    def page(self, handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        return Reply(200, self.pages[path], {"Content-Type": "text/html; charset=utf-8"})


class JsonFeedSite(FeedSite):
    """The same site, its feed a JSON Feed."""

    def __init__(self) -> None:
        super().__init__()
        self.content_type = "application/feed+json"

    def feed_body(self) -> bytes:
        items = [
            {"id": path, "url": f"{self.server.url(path)}?utm_source=json", "title": title}
            | {"date_published": "2026-11-19T10:00:00Z"}
            for path, title in self.items
        ]
        return json.dumps(
            {"version": "https://jsonfeed.org/version/1.1", "title": "Test", "items": items}
        ).encode()


def count(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def add_feed(session: Session, url: str) -> int:
    feed, _ = repo.upsert_feed(session, url, name="test feed", lang="en")
    session.commit()
    return feed.id


@pytest.mark.parametrize("site_class", [FeedSite, JsonFeedSite], ids=["rss", "json-feed"])
def test_second_poll_is_304_and_stores_nothing(
    session: Session, settings: Settings, site_class: type[FeedSite]
) -> None:
    site = site_class()
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        assert first.outcome == "fetched"
        assert [r.status for r in first.items] == ["new", "new", "error"]
        assert [r.lang for r in first.items[:2]] == ["en", "ru"]
        assert count(session, Article) == 2
        feed = session.get(Feed, feed_id)
        assert feed is not None and feed.etag and feed.next_poll_at == NOW + timedelta(minutes=15)

        second = poll_feed(session, client, settings, feed_id, now=NOW + timedelta(minutes=15))
        assert second.outcome == "not_modified"
        assert site.server.hits[-1]["headers"].get("If-None-Match") == feed.etag
        assert count(session, Article) == 2
        page_hits = [h for h in site.server.hits if h["path"].startswith(("/a", "/b"))]
        assert len(page_hits) == 2

        # A server that ignores validators: the body hash still spares the work.
        site.honour_validators = False
        third = poll_feed(session, client, settings, feed_id, now=NOW + timedelta(minutes=30))
        assert third.outcome == "unchanged"
        assert count(session, Article) == 2


def test_changed_feed_of_stored_items_resolves_only_failures_that_exist(
    session: Session, settings: Settings
) -> None:
    """A changed feed whose items are stored is looked up a window at a time: no update of
    the failures table, unless a stored page still has an open failure."""
    site = FeedSite()
    site.server.routes["/missing"] = lambda h: Reply(410, b"gone")  # (quarantined: not retried)
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        assert [r.status for r in first.items] == ["new", "new", "error"]
        # /a was stored, yet a failure of its page is open (another process recorded it).
        stale = site.server.url("/a") + "?utm_source=rss"
        repo.record_failure(
            session, stage="page", target=stale, error="timed out", permanent=False, retry_after=None
        )
        session.commit()
        updates: list[str] = []
        lookups: list[str] = []

        def watch(conn: object, cursor: object, statement: str, *args: object) -> None:
            if statement.lstrip().upper().startswith("UPDATE FETCH_FAILURES"):
                updates.append(statement)
            if "articles.canonical_url = " in statement or "sightings.article_id = " in statement:
                lookups.append(statement)  # an item's own look-up, not its window's

        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", watch)
        try:
            site.honour_validators = False
            site.items.append(("/b", "Переговоры в Пекине (again)"))  # a new body, no new page
            later = poll_feed(session, client, settings, feed_id, now=NOW + timedelta(minutes=15))
        finally:
            event.remove(engine, "before_cursor_execute", watch)
    assert later.outcome == "fetched"
    assert [r.status for r in later.items] == ["duplicate", "duplicate", "error", "duplicate"]
    # All handled by the first poll (stored, or the page quarantined): none is counted again
    # as a copy or a failure, as if the new body had brought them.
    assert later.counts() == {"seen": 4}
    assert "4 items, 0 new, 0 duplicate, 0 failed (4 seen before)" in _describe_poll(later)
    assert len(updates) == 1, updates  # the open failure of /a, and nothing for /b
    assert len(lookups) == 1, lookups  # /missing, which is not stored; the others were known
    failure = session.scalar(select(FetchFailure).where(FetchFailure.target == stale))
    assert failure is not None and failure.resolved_at is not None
    missing = session.scalar(select(FetchFailure).where(FetchFailure.target.contains("/missing")))
    assert missing is not None and missing.resolved_at is None


def first_poll(
    session: Session, settings: Settings, site: FeedSite, listener: tuple[Any, str, Callable[..., None]]
) -> PollResult:
    """The first poll of ``site``'s feed, with ``listener`` (target, event, function) listening."""
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        event.listen(*listener)
        try:
            return poll_feed(session, client, settings, feed_id, now=NOW)
        finally:
            event.remove(*listener)


def test_new_items_of_a_window_are_not_looked_up_one_by_one(session: Session, settings: Settings) -> None:
    """The window look-up that found a page neither stored nor failed is its item's look-up:
    a new page costs no URL or failure query of its own. A link the feed repeats is looked
    up in its turn, and is then a sighting of the article its first occurrence stored."""
    site = FeedSite()
    site.items.insert(2, ("/a", "Putin and Xi talk gas (repeated)"))
    lookups: list[str] = []

    def watch(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "articles.canonical_url = " in statement or "fetch_failures.target = " in statement:
            lookups.append(statement)

    result = first_poll(session, settings, site, (session.get_bind(), "before_cursor_execute", watch))
    assert [r.status for r in result.items] == ["new", "new", "duplicate", "error"]
    assert result.items[2].article_id == result.items[0].article_id
    # /a and /b: store_candidate's own guard against a row stored by another process since;
    # the repeated /a: its URL look-up (stored, so no failure look-up); /missing: the
    # failure it records.
    by_url = [s for s in lookups if "articles.canonical_url = " in s]
    assert len(by_url) == 3, by_url
    by_failure = [s for s in lookups if "fetch_failures.target = " in s]
    assert len(by_failure) == 1, by_failure
    assert count(session, Article) == 2
    assert count(session, Sighting) == 2  # the repeat is the same sighting (same feed, same link)


def test_a_page_stored_by_another_process_after_the_window_look_up(
    session: Session, settings: Settings
) -> None:
    """Another process stores /b after this one's window look-up found it absent: /b is a
    sighting of that article, neither a second row nor an error."""
    site = FeedSite()
    other = make_engine(settings.db_url)
    stored_elsewhere: list[int] = []
    serve_page = site.page

    def page_stored_meanwhile(handler: object) -> Reply:
        if getattr(handler, "path").startswith("/b") and not stored_elsewhere:  # noqa: B009
            with session_factory(other)() as elsewhere:
                row = Article(
                    url=site.server.url("/b"),
                    canonical_url=site.server.url("/b"),
                    title="Переговоры в Пекине",
                    text=BODY_RU,
                    lang="ru",
                    content_hash="f" * 64,
                    is_seed=False,
                    word_count=len(BODY_RU.split()),
                )
                elsewhere.add(row)
                elsewhere.commit()
                stored_elsewhere.append(row.id)
        return serve_page(handler)

    site.server.routes["/b"] = page_stored_meanwhile
    try:
        with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
            feed_id = add_feed(session, site.server.url("/feed"))
            result = poll_feed(session, client, settings, feed_id, now=NOW)
    finally:
        other.dispose()
    assert stored_elsewhere
    assert [r.status for r in result.items] == ["new", "duplicate", "error"]
    assert result.items[1].article_id == stored_elsewhere[0]
    assert count(session, Article, Article.canonical_url == site.server.url("/b")) == 1
    assert count(session, Sighting, Sighting.article_id == stored_elsewhere[0]) == 1


def test_storing_a_new_article_leaves_nothing_to_flush(session: Session, settings: Settings) -> None:
    """A new article's row carries its verdict when inserted; nothing marks it changed after,
    so the next item's first query has nothing to flush (no unit-of-work pass per item)."""
    site = FeedSite()
    rows = [json.loads(line) for line in (FIXTURES / "classify" / "dev.jsonl").read_text().splitlines()]
    texts = [row["text"] for row in rows if row["lang"] == "en" and len(row["text"]) > 400][:6]
    site.items = [(f"/p{n}", f"Story {n}") for n in range(len(texts))]
    for n, body in enumerate(texts):
        site.pages[f"/p{n}"] = page(f"Story {n}", body, "en")
        site.server.routes[f"/p{n}"] = site.page
    flushes: list[int] = []

    def before_flush(flushing: Session, *args: object) -> None:
        flushes.append(sum(isinstance(row, Article) for row in flushing.dirty))

    result = first_poll(session, settings, site, (session, "before_flush", before_flush))
    assert [r.status for r in result.items] == ["new"] * 6
    assert sum(flushes) == 0, flushes  # (the feed's own row is updated, as it should be)


def refuse_inserts(session: Session, table: str, condition: str) -> None:
    """Make the database refuse, with a run-time error, inserts into ``table`` meeting ``condition``.

    (On SQLite a run-time error, not a constraint violation, which the code forgives as a
    concurrent writer's row.)
    """
    if session.get_bind().dialect.name == "sqlite":
        statements = [
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} WHEN {condition} BEGIN SELECT json('{{'); END"
        ]
    else:
        statements = [
            f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF {condition} THEN "
            "RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
    for statement in statements:
        session.execute(text(statement))
    session.commit()


def test_a_batch_redone_after_a_failure_looks_its_items_up_again(
    session: Session, settings: Settings
) -> None:
    """Pages are looked up a window at a time, inside the open batch; when the batch is rolled
    back, what those look-ups saw of it is gone too. A repeated link redone after the rollback
    points at the article as stored again, not at the row that was rolled back."""
    site = FeedSite()
    url = site.server.url
    site.pages["/refuse"] = page("Переговоры в Пекине", BODY_RU, "ru")
    site.server.routes["/refuse"] = site.page
    # The second feed: /a (new), three unusable links (no page, so the batch stays open),
    # /a again (looked up, in the second window, after /a went into the open batch), then
    # /refuse, stored by the first feed, whose sighting the database refuses.
    bad = "".join(
        f"<item><title>Bad {n}</title><link>http://x.example:99999/{n}</link></item>" for n in range(3)
    )
    feeds = {
        "/one": f"<item><title>Refused</title><link>{url('/refuse')}</link></item>",
        "/two": (
            f"<item><title>Gas</title><link>{url('/a')}</link></item>{bad}"
            f"<item><title>Gas again</title><link>{url('/a')}</link></item>"
            f"<item><title>Refused</title><link>{url('/refuse')}</link></item>"
        ),
    }
    for path, items in feeds.items():
        body = f'<rss version="2.0"><channel><title>{path}</title>{items}</channel></rss>'.encode()
        site.server.routes[path] = lambda h, body=body: Reply(
            200, body, {"Content-Type": "application/rss+xml"}
        )
    two_pages = settings.model_copy(update={"http": settings.http.model_copy(update={"max_concurrency": 2})})
    with site.server, HttpClient(two_pages.http, allow_private_networks=True) as client:
        one = poll_feed(session, client, two_pages, add_feed(session, url("/one")), now=NOW)
        assert [r.status for r in one.items] == ["new"]
        refuse_inserts(session, "sightings", "NEW.url LIKE '%refuse%'")
        two = poll_feed(session, client, two_pages, add_feed(session, url("/two")), now=NOW)
    assert [r.status for r in two.items] == ["new", "error", "error", "error", "duplicate", "error"]
    first, again = two.items[0], two.items[4]
    assert again.article_id == first.article_id, "the article as stored again"
    assert session.get(Article, first.article_id) is not None
    assert count(session, Article) == 2  # /refuse and /a, nothing half-stored
    assert count(session, Sighting) == 2  # /refuse via the first feed, /a via the second


def test_an_item_the_database_refuses_leaves_nothing_half_stored(
    session: Session, settings: Settings
) -> None:
    """An item that fails in its batch is done again alone, in a transaction of its own: when
    it fails again, none of its rows stay (on SQLite the item's first savepoint must not be
    what opens, and then commits, that transaction)."""
    site = FeedSite()
    site.items = [("/a", "Putin and Xi talk gas"), ("/b", "Переговоры в Пекине")]
    refuse_inserts(session, "article_vectors", "NEW.lang = 'ru'")
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        result = poll_feed(session, client, settings, add_feed(session, site.server.url("/feed")), now=NOW)
    assert [r.status for r in result.items] == ["new", "error"]
    assert count(session, Article) == 1, "the refused article left no row behind"
    assert count(session, Sighting) == 1


def _rss(server: LocalServer, paths: list[str]) -> bytes:
    items = "".join(
        f"<item><title>Story {path}</title><link>{server.url(path)}</link>"
        "<pubDate>Thu, 19 Nov 2026 10:00:00 GMT</pubDate></item>"
        for path in paths
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


def test_feeds_read_ahead_without_items_do_not_count_toward_the_read_ahead(
    session: Session, settings: Settings
) -> None:
    """The read-ahead reaches FEEDS_AHEAD feeds that may hold items: feeds read ahead that
    hold none (empty, not a feed) are passed over, so a run of quiet feeds does not stop
    it short of the next feed with pages; a feed beyond is not fetched."""
    from pipeline.ingest import FEEDS_AHEAD, MAX_FEEDS_SCANNED, FeedsAhead
    from pipeline.prepare import PreparePool

    rss = {"Content-Type": "application/rss+xml"}
    server = LocalServer({})
    quiet = [f"/quiet{n}" for n in range(FEEDS_AHEAD + 2)]
    holding = [f"/holding{n}" for n in range(FEEDS_AHEAD + 1)]
    for path in quiet:
        server.routes[path] = lambda h: Reply(200, _rss(server, []), rss)
    server.routes[quiet[-1]] = lambda h: Reply(404, b"gone")  # (a failed fetch holds none either)
    for n, path in enumerate(holding):
        server.routes[path] = lambda h, n=n: Reply(200, _rss(server, [f"/story{n}"]), rss)
    order = ["/current", *quiet, *holding]
    assert len(order) - 1 <= MAX_FEEDS_SCANNED
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        ids = [add_feed(session, server.url(path)) for path in order]
        ahead = FeedsAhead(session, client, settings, ids, NOW, PreparePool(settings, 0))
        assert ahead.take(ids[0]) is None  # (the current feed; nothing was read ahead of it)
        for _ in range(len(order)):  # (one request to the host at a time beside the current)
            ahead.start_next()
            ahead.settle()
        requested = {hit["path"] for hit in server.hits}
        read = [feed_id for feed_id, _ in ahead.fetched_after()]
        ahead.close()
    assert requested == {*quiet, *holding[:FEEDS_AHEAD]}, "the fifth feed with items waits"
    assert read == ids[1 : 1 + len(quiet) + FEEDS_AHEAD]


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_the_next_feed_is_fetched_while_this_ones_items_are_ingested(
    session: Session, settings: Settings, one_at_a_time: bool
) -> None:
    """A cycle fetches (and parses) the next feed while the items of the one before are
    still being fetched and stored, not after them; every item is handled as before. With
    http.max_concurrency 1 (one request at a time), no feed is read ahead."""
    if one_at_a_time:
        settings = settings.model_copy(
            update={
                "http": settings.http.model_copy(update={"max_concurrency": 1, "per_host_concurrency": 1})
            }
        )
    stories = [f"/story{n}" for n in range(30)]
    bodies = {path: page(f"Story {n}", f"Item {n}. " + BODY_EN, "en") for n, path in enumerate(stories)}
    bodies["/other"] = page("Переговоры в Пекине", BODY_RU, "ru")
    html = {"Content-Type": "text/html; charset=utf-8"}
    routes: dict[str, Callable[[Any], Reply]] = {
        path: (lambda handler, body=body: Reply(200, body, html)) for path, body in bodies.items()
    }
    server = LocalServer(routes)
    feed_type = {"Content-Type": "application/rss+xml"}
    routes["/first"] = lambda handler: Reply(200, _rss(server, stories), feed_type)
    routes["/second"] = lambda handler: Reply(200, _rss(server, ["/other"]), feed_type)
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_ids = [add_feed(session, server.url("/first")), add_feed(session, server.url("/second"))]
        summary = run_cycle(session, client, settings, feed_ids=feed_ids, now=NOW)
    paths = [hit["path"] for hit in server.hits]
    last_story = max(position for position, path in enumerate(paths) if path.startswith("/story"))
    if one_at_a_time:
        assert paths.index("/second") > last_story
    else:
        assert paths.index("/second") < last_story, "the second feed waited for the first one's pages"
    assert paths.count("/second") == 1
    assert [poll.outcome for poll in summary.polls] == ["fetched", "fetched"]
    first, second = summary.polls
    assert len(first.items) == 30 and {item.status for item in first.items} <= {"new", "duplicate"}
    # (The Russian page translates the stories' text: a translation copy of one of them.)
    assert [(item.status, item.lang) for item in second.items] == [("duplicate", "ru")]
    assert second.items[0].copy_kind == "translation"


def test_feeds_that_answer_304_are_waited_for_together(session: Session, settings: Settings) -> None:
    """A cycle asks the next feeds while it polls the current one, several at once: four
    slow feeds that answer 304 are in flight together, within the per-host limit."""
    import threading

    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    def slow_feed(handler: Any) -> Reply:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(0.4)
        with lock:
            in_flight[0] -= 1
        if handler.headers.get("If-None-Match") == '"v1"':
            return Reply(304, b"", {"ETag": '"v1"'})
        return Reply(200, _rss(server, []), {"ETag": '"v1"', "Content-Type": "application/rss+xml"})

    paths = ["/f0", "/f1", "/f2", "/f3"]
    server = LocalServer(dict.fromkeys(paths, slow_feed))
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        # Two hosts (two names of this machine): at most two requests at once to each.
        feed_ids = [
            add_feed(session, server.url(path, host="127.0.0.1" if n < 2 else "localhost"))
            for n, path in enumerate(paths)
        ]
        run_cycle(session, client, settings, feed_ids=feed_ids, now=NOW)
        in_flight[1] = 0
        summary = run_cycle(session, client, settings, feed_ids=feed_ids, now=NOW + timedelta(hours=1))
    assert [poll.outcome for poll in summary.polls] == ["not_modified"] * 4
    assert in_flight[1] >= 3, "the feeds were asked one or two at a time"
    assert settings.http.per_host_concurrency == 2 and in_flight[1] <= 4


def test_a_feed_fetched_ahead_is_used_only_if_asked_as_the_feed_is_now(
    session: Session, settings: Settings
) -> None:
    site = FeedSite()
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        feed = session.get(Feed, feed_id)
        assert feed is not None
        # Asked with the validators the feed has now: its outcome is the poll's.
        current: Future[FeedFetch] = Future()
        current.set_result(FeedFetch(FeedRequest.of(feed), error="connection reset (fetched ahead)"))
        failed = poll_feed(session, client, settings, feed_id, now=NOW, ahead=current)
        assert failed.outcome == "error" and "fetched ahead" in (failed.error or "")
        assert site.server.hits == []
        # Asked with validators the feed no longer has: fetched again.
        stale: Future[FeedFetch] = Future()
        stale.set_result(FeedFetch(FeedRequest(feed.url, '"old"', None, None), error="HTTP 500"))
        result = poll_feed(session, client, settings, feed_id, now=NOW + timedelta(hours=1), ahead=stale)
    assert result.outcome == "fetched"
    assert [r.status for r in result.items] == ["new", "new", "error"]


def test_missing_page_recorded_and_run_goes_on(session: Session, settings: Settings) -> None:
    site = FeedSite()
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        add_feed(session, site.server.url("/feed"))
        summary = run_cycle(session, client, settings, now=NOW)
    counts = summary.counts()
    assert (counts["new"], counts["error"]) == (2, 1)
    failure = session.scalar(select(FetchFailure).where(FetchFailure.stage == "page"))
    assert failure is not None
    assert "HTTP 404" in failure.error and not failure.permanent and failure.next_retry_at is not None
    assert failure.item is not None and failure.item["title"] == "Gone"


def test_a_page_not_found_or_refused_is_retried_a_few_times_and_one_gone_is_not(
    session: Session, settings: Settings
) -> None:
    """A single 404 or 403 may be the site's passing trouble (a CDN's hiccup, an article
    announced before its page is live): the page is retried in later runs, with the
    backoff of any failed page, and given up (quarantined) only after
    ``poll.page_retry_limit`` attempts. A 410 Gone is believed at once."""
    site = FeedSite()
    site.items = [("/early", "Not live yet"), ("/dead", "Never was"), ("/removed", "Removed")]
    site.pages["/early"] = site.pages["/a"]
    live = {"early": False}
    site.server.routes.update(
        {
            "/early": lambda h: site.page(h) if live["early"] else Reply(403, b"denied"),
            "/removed": lambda h: Reply(410, b"gone"),
        }
    )
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        first = poll_feed(session, client, settings, add_feed(session, site.server.url("/feed")), now=NOW)
        assert [r.status for r in first.items] == ["error"] * 3
        failures = {
            f.target.split("?")[0].rsplit("/", 1)[-1]: f for f in session.scalars(select(FetchFailure))
        }
        assert not failures["early"].permanent and not failures["dead"].permanent
        assert failures["removed"].permanent and "HTTP 410" in failures["removed"].error
        # The page goes live: its retry stores it.
        live["early"] = True
        retried = retry_failed_pages(session, client, settings, now=NOW + timedelta(minutes=20))
        assert sorted(r.status for r in retried) == ["error", "new"]
        assert session.scalar(select(Article.url)).startswith(site.server.url("/early"))  # type: ignore[union-attr]
        # A page that stays missing is given up after page_retry_limit attempts in all.
        moment = NOW + timedelta(minutes=20)
        for _ in range(settings.poll.page_retry_limit * 2):
            moment += timedelta(days=1)
            retry_failed_pages(session, client, settings, now=moment)
        dead = session.scalar(select(FetchFailure).where(FetchFailure.target.contains("/dead")))
        assert dead is not None and dead.permanent and dead.resolved_at is None
        assert dead.attempts == settings.poll.page_retry_limit
    fetched = [hit["path"].split("?")[0] for hit in site.server.hits]
    assert fetched.count("/dead") == settings.poll.page_retry_limit and fetched.count("/removed") == 1


def test_a_link_redirected_to_a_front_page_or_a_consent_wall_is_no_article(
    session: Session, settings: Settings
) -> None:
    """Taken-down articles sent to the site's front page and links sent to a consent wall
    are recorded as failures (the wall for good, the front page retried): stored, the first
    would be an "article" of the front page's text and every later one its exact copy."""
    site = FeedSite()
    front = page("Example News", BODY_RU, "ru")
    wall = page("Your privacy", "We and our partners use cookies " + BODY_EN, "en")
    site.items = [
        ("/a", "Putin and Xi talk gas"),
        ("/gone/1", "One"),
        ("/gone/2", "Two"),
        ("/walled", "Walled"),
    ]
    site.items.append(("/old/a-copy", "Moved"))
    site.server.routes.update(
        {
            "/": lambda h: Reply(200, front, {"Content-Type": "text/html; charset=utf-8"}),
            "/gone/1": lambda h: Reply(301, b"", {"Location": "/"}),
            "/gone/2": lambda h: Reply(302, b"", {"Location": site.server.url("/", host="localhost")}),
            "/walled": lambda h: Reply(302, b"", {"Location": "/consent/?continue=/walled"}),
            "/consent/": lambda h: Reply(200, wall, {"Content-Type": "text/html; charset=utf-8"}),
            # A move to another article's address is followed as before.
            "/old/a-copy": lambda h: Reply(301, b"", {"Location": "/b"}),
        }
    )
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        add_feed(session, site.server.url("/feed"))
        run_cycle(session, client, settings, now=NOW)
    stored = {row.url.split("?")[0].rsplit(":", 1)[-1] for row in session.scalars(select(Article))}
    assert {url.split("/", 1)[-1] for url in stored} == {"a", "old/a-copy"}
    assert count(session, Article, Article.text.contains("cookies")) == 0
    failures = {f.target.split("?")[0].rsplit("/", 1)[-1]: f for f in session.scalars(select(FetchFailure))}
    assert sorted(failures) == ["1", "2", "walled"]
    for name in ("1", "2"):
        assert "redirected to the front page of" in failures[name].error and not failures[name].permanent
    assert "consent or sign-in page" in failures["walled"].error and failures["walled"].permanent


def _entry_link(site: FeedSite, path: str) -> str:
    if ":" in path:
        return path
    if not path.startswith("/"):
        return site.server.url("/" + path, host="localhost")
    return site.server.url(path)


def test_a_page_that_cannot_be_read_is_stored_with_the_text_its_feed_carries(
    session: Session, settings: Settings
) -> None:
    """A page refused (403) or not found (404) is no lost article when its feed entry
    carries the text (content:encoded): stored from it at once rather than retried; content under the length minimum, a summary alone
    (a teaser, often one for the whole site), a link never fetched (a scheme or address the
    fetcher refuses) and a transient failure are recorded as before."""
    site = FeedSite()
    paragraphs = "".join(f"<p>{s.strip()}.</p>" for s in BODY_EN.split(".") if s.strip())
    content = f"<content:encoded><![CDATA[{paragraphs}]]></content:encoded>"
    entries = [
        ("/refused", "Refused", content),
        ("/gone", "Gone", f"<content:encoded>{html.escape(BODY_RU)}</content:encoded>"),
        ("/teaser", "Teaser", "<content:encoded>Putin and Xi met. Read more.</content:encoded>"),
        ("/blurb", "Blurb", f"<description>{html.escape(BODY_EN)}</description>"),
        ("/busy", "Busy", content),
        ("ftp://files.example/story", "Never fetched", content),
        ("elsewhere", "Another site's page", content),  # (on "localhost": not the feed's site)
    ]

    def feed_body() -> bytes:
        items = "".join(
            f"<item><title>{title}</title><link>{_entry_link(site, path)}</link>"
            f"{extra}<pubDate>Thu, 19 Nov 2026 10:00:00 GMT</pubDate></item>"
            for path, title, extra in entries
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Test</title>'
            f"{items}</channel></rss>"
        ).encode()

    site.feed_body = feed_body  # type: ignore[method-assign]
    site.server.routes.update(
        {
            "/refused": lambda h: Reply(403, b"<html><body>Access denied</body></html>"),
            "/teaser": lambda h: Reply(403, b"denied"),
            "/blurb": lambda h: Reply(403, b"denied"),
            "/elsewhere": lambda h: Reply(403, b"denied"),
            "/busy": lambda h: Reply(503, b"busy"),
        }
    )
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        add_feed(session, site.server.url("/feed"))
        run_cycle(session, client, settings, now=NOW)
    stored = {row.url.rsplit("/", 1)[-1]: row for row in session.scalars(select(Article))}
    assert sorted(stored) == ["gone", "refused"]
    assert stored["refused"].text.startswith("Russian President Vladimir Putin and Chinese President")
    assert stored["refused"].title == "Refused" and stored["refused"].lang == "en"
    assert stored["gone"].lang == "ru" and "Сила Сибири 2" in stored["gone"].text
    failures = {f.target.rsplit("/", 1)[-1]: f for f in session.scalars(select(FetchFailure))}
    assert sorted(failures) == ["blurb", "busy", "elsewhere", "story", "teaser"]
    for name in ("teaser", "blurb"):
        # (retried: a 403 may pass; only after poll.page_retry_limit attempts given up)
        assert not failures[name].permanent and "HTTP 403" in failures[name].error
    assert failures["story"].permanent and "only http and https" in failures["story"].error
    assert not failures["busy"].permanent


def test_same_story_in_two_feeds_is_stored_once(session: Session, settings: Settings) -> None:
    site, other = FeedSite(), FeedSite()
    with site.server, other.server, HttpClient(settings.http, allow_private_networks=True) as client:
        # The second site republishes the first site's links (syndication of the same URLs).
        other.feed_body = site.feed_body  # type: ignore[method-assign]
        first = add_feed(session, site.server.url("/feed"))
        second = add_feed(session, other.server.url("/feed"))
        summary = run_cycle(session, client, settings, feed_ids=[first, second], now=NOW)
        # The second feed's copies are news of this poll, its failed page one failure, not two.
        assert summary.counts()["new"] == 2 and summary.counts()["duplicate"] == 2
        assert (summary.counts()["error"], summary.counts()["seen"]) == (1, 1)
        site.items.append(("/a", "Putin and Xi talk gas (updated)"))  # both feeds change
        again = run_cycle(session, client, settings, feed_ids=[first, second], now=NOW + timedelta(minutes=5))
        assert [poll.outcome for poll in again.polls] == ["fetched", "fetched"]
        assert again.counts()["seen"] == 8, again.counts()
        assert not again.counts()["new"] and not again.counts()["duplicate"] and not again.counts()["error"]
    assert count(session, Article) == 2
    assert count(session, Sighting) == 4
    vias = set(session.scalars(select(Sighting.via)))
    assert vias == {f"feed:{first}", f"feed:{second}"}


def test_syndicated_copy_under_new_url_points_at_original(session: Session, settings: Settings) -> None:
    site = FeedSite()
    site.items.append(("/copy", "Putin and Xi talk gas (syndicated)"))
    site.pages["/copy"] = site.pages["/a"].replace(b"<nav>", b"<nav><a href='/partner'>Partner</a>")
    site.server.routes["/copy"] = site.page
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        result = poll_feed(session, client, settings, add_feed(session, site.server.url("/feed")), now=NOW)
    original, copy = result.items[0], result.items[3]
    assert copy.status == "duplicate"
    assert copy.duplicate_of == original.article_id
    stored = session.get(Article, copy.article_id)
    assert stored is not None and stored.duplicate_of_id == original.article_id and stored.similarity == 1.0


def test_broken_feed_backs_off_exponentially(session: Session, settings: Settings) -> None:
    server = LocalServer(
        {"/feed": lambda h: Reply(200, b"<html>not a feed</html>", {"Content-Type": "text/html"})}
    )
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, server.url("/feed"))
        for attempt in range(1, 4):
            result = poll_feed(session, client, settings, feed_id, now=NOW)
            assert result.outcome == "error" and "not a feed" in (result.error or "")
            feed = session.get(Feed, feed_id)
            assert feed is not None and feed.failure_count == attempt
            assert feed.next_poll_at == NOW + feed_backoff(settings, attempt)
    assert feed_backoff(settings, 1) == timedelta(minutes=15)
    assert feed_backoff(settings, 3) == timedelta(minutes=60)
    assert feed_backoff(settings, 30) == timedelta(hours=24)


def test_a_feed_moved_for_good_is_polled_at_its_new_address_and_keeps_its_identity(
    session: Session, settings: Settings
) -> None:
    """A 301 or 308 moves the feed: its new address is recorded (reported once, in the
    poll's line), later polls go there directly, and the feed keeps its id and its own URL
    (config/feeds.yaml still names it, its articles and sightings stay its own). A
    temporary redirect (302, 307) moves nothing; a "move" to a page that is no feed is not
    followed."""
    site = FeedSite()
    site.server.routes.update(
        {
            "/old-feed": lambda h: Reply(301, b"", {"Location": "/moved"}),
            "/moved": lambda h: Reply(308, b"", {"Location": "/feed"}),
            "/borrowed": lambda h: Reply(302, b"", {"Location": "/feed"}),
            "/detour": lambda h: Reply(307, b"", {"Location": "/feed"}),
            "/ended": lambda h: Reply(301, b"", {"Location": "/home"}),
            "/home": lambda h: Reply(
                200, b"<html><body>Welcome</body></html>", {"Content-Type": "text/html"}
            ),
        }
    )
    lines: list[str] = []
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        moved = add_feed(session, site.server.url("/old-feed"))
        temporary = [add_feed(session, site.server.url(path)) for path in ("/borrowed", "/detour")]
        ended = add_feed(session, site.server.url("/ended"))
        first = run_cycle(session, client, settings, feed_ids=[moved], now=NOW, progress=lines.append)
        assert first.polls[0].moved_to == site.server.url("/feed")
        assert first.counts()["feeds_moved"] == 1 and first.counts()["new"] == 2
        assert any(f"moved permanently to {site.server.url('/feed')}" in line for line in lines)
        feed = session.get(Feed, moved)
        assert feed is not None and feed.url == site.server.url("/old-feed")
        assert feed.moved_url == feed.display_moved_url == site.server.url("/feed")
        hits = len(site.server.hits)
        later = poll_feed(session, client, settings, moved, now=NOW + timedelta(hours=1))
        assert later.outcome == "not_modified" and later.moved_to is None  # (reported once)
        assert [hit["path"] for hit in site.server.hits[hits:]] == ["/feed"]
        for feed_id in temporary:
            result = poll_feed(session, client, settings, feed_id, now=NOW)
            assert result.outcome == "fetched" and result.moved_to is None
            assert session.get(Feed, feed_id).moved_url is None  # type: ignore[union-attr]
        assert poll_feed(session, client, settings, ended, now=NOW).outcome == "error"
        assert session.get(Feed, ended).moved_url is None  # type: ignore[union-attr]
        # The feed is still the one its own URL names: adding it again (init, feeds add)
        # finds it, and the articles it brought are its own.
        again, created = repo.upsert_feed(session, site.server.url("/old-feed"))
        assert not created and again.id == moved
        assert repo.feed_ids_named(session, site.server.url("/feed")) == [moved]
        assert set(session.scalars(select(Article.feed_id))) == {moved}
        from pipeline.db.engine import apply_views, views_file

        apply_views(session.get_bind(), views_file())  # type: ignore[arg-type]
        health = session.execute(
            text("SELECT url, moved_to FROM v_feed_health WHERE id = :id"), {"id": moved}
        )
        assert tuple(health.one()) == (site.server.url("/old-feed"), site.server.url("/feed"))


def test_a_feed_answering_410_is_gone_and_not_polled_until_it_is_reset(
    session: Session, settings: Settings
) -> None:
    """410 Gone says the feed was removed for good: it is marked gone at once (reported as
    such, its failure quarantined) and no cycle polls it again, however long, until
    `feeds reset`; a 404 is only a failure, backed off and polled again."""
    site = FeedSite()
    state = {"status": 410}
    site.server.routes["/gone-feed"] = lambda h: Reply(state["status"], b"gone")
    site.server.routes["/missing-feed"] = lambda h: Reply(404, b"not found")
    lines: list[str] = []
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        gone = add_feed(session, site.server.url("/gone-feed"))
        missing = add_feed(session, site.server.url("/missing-feed"))
        summary = run_cycle(session, client, settings, now=NOW, progress=lines.append)
        assert [poll.outcome for poll in summary.polls] == ["gone", "error"]
        assert summary.counts()["feeds_gone"] == 1 and summary.counts()["feeds_error"] == 1
        assert any("GONE: HTTP 410" in line and "no longer polled" in line for line in lines)
        feed = session.get(Feed, gone)
        assert feed is not None and feed.gone_at == NOW and feed.next_poll_at is None
        assert "feeds reset" in (feed.last_error or "")
        failure = session.scalar(select(FetchFailure).where(FetchFailure.target == feed.url))
        assert failure is not None and failure.permanent and failure.stage == "feed"
        hits = [hit["path"] for hit in site.server.hits]
        for days in (1, 30, 365):
            assert repo.due_feed_ids(session, NOW + timedelta(days=days)) == [missing]
        later = run_cycle(session, client, settings, now=NOW + timedelta(days=2))
        assert [poll.feed_id for poll in later.polls] == [missing]
        assert [hit["path"] for hit in site.server.hits[len(hits) :]] == ["/missing-feed"]
        # Reset by an operator (the feed is back): polled at the next run as a new feed.
        state["status"] = 200
        site.server.routes["/gone-feed"] = site.feed
        repo.reset_feed(session, feed)
        session.commit()
        assert feed.gone_at is None and feed.failure_count == 0 and feed.next_poll_at is None
        assert session.get(FetchFailure, failure.id).resolved_at is not None  # type: ignore[union-attr]
        assert gone in repo.due_feed_ids(session, NOW + timedelta(days=3))
        back = poll_feed(session, client, settings, gone, now=NOW + timedelta(days=3))
        assert back.outcome == "fetched"


def test_transient_page_failure_is_retried(session: Session, settings: Settings) -> None:
    site = FeedSite()
    state = {"fail": True}

    def flaky(handler: object) -> Reply:
        if state["fail"]:
            return Reply(503, b"busy")
        return site.page(handler)

    site.server.routes["/a"] = flaky
    site.server.routes["/missing"] = lambda h: Reply(410, b"gone")  # (quarantined: not retried)
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        first = poll_feed(session, client, settings, add_feed(session, site.server.url("/feed")), now=NOW)
        assert first.items[0].status == "error" and "503" in (first.items[0].error or "")
        assert retry_failed_pages(session, client, settings, now=NOW) == []  # not due yet
        state["fail"] = False
        retried = retry_failed_pages(session, client, settings, now=NOW + timedelta(hours=1))
    assert [r.status for r in retried] == ["new"]
    failure = session.scalar(select(FetchFailure).where(FetchFailure.target.contains("/a")))
    assert failure is not None and failure.resolved_at is not None


def test_a_page_retried_keeps_its_feeds_declared_language(session: Session, settings: Settings) -> None:
    """The language a feed document declares is the page's prior on its retry as on its
    first fetch: Malay read without it is taken for Indonesian."""
    malay = (
        "Presiden Rusia Vladimir Putin dan Presiden China Xi Jinping mengadakan perbincangan di Beijing. "
        "Kedua-dua pemimpin membincangkan saluran paip gas Power of Siberia 2 dan perdagangan antara "
        "kedua-dua negara yang terus berkembang. Menurut pegawai, sebahagian besar pembayaran kini "
        "dibuat dalam yuan dan rubel dan bukan lagi dalam dolar."
    )
    site = FeedSite()
    site.items = [("/a", "Perbincangan di Beijing")]
    site.pages["/a"] = page("Perbincangan di Beijing", malay, "")
    declared = site.feed_body
    site.feed_body = lambda: declared().replace(
        b"<title>Test</title>", b"<title>Test</title><language>ms</language>"
    )  # type: ignore[method-assign]
    state = {"fail": True}

    def flaky(handler: object) -> Reply:
        return Reply(503, b"busy") if state["fail"] else site.page(handler)

    site.server.routes["/a"] = flaky
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed, _ = repo.upsert_feed(session, site.server.url("/feed"), name="no language")
        session.commit()
        first = poll_feed(session, client, settings, feed.id, now=NOW)
        assert first.items[0].status == "error"
        state["fail"] = False
        retried = retry_failed_pages(session, client, settings, now=NOW + timedelta(hours=1))
    assert [r.status for r in retried] == ["new"]
    assert session.scalar(select(Article.lang)) == "ms"


def test_a_304_with_a_new_etag_replaces_the_stored_one(session: Session, settings: Settings) -> None:
    """HTTP caching: the validators a 304 carries replace the stored ones. A server that
    honours only its current ETag would otherwise send the whole feed at every poll."""
    server = LocalServer({})

    def feed(handler: object) -> Reply:
        sent = getattr(handler, "headers").get("If-None-Match")  # noqa: B009
        if sent in ('"e1"', '"e2"'):
            return Reply(304, b"", {"ETag": '"e2"'})
        return Reply(200, _rss(server, []), {"ETag": '"e1"'})

    server.routes["/feed"] = feed
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, server.url("/feed"))
        outcomes = [
            poll_feed(session, client, settings, feed_id, now=NOW + timedelta(hours=i)).outcome
            for i in range(3)
        ]
    assert outcomes == ["fetched", "not_modified", "not_modified"]
    assert [hit["headers"].get("If-None-Match") for hit in server.hits] == [None, '"e1"', '"e2"']
    stored = session.get(Feed, feed_id)
    assert stored is not None and stored.etag == '"e2"'


def test_a_last_modified_in_the_future_is_not_sent_back(session: Session, settings: Settings) -> None:
    """A feed dated in the future (a server's clock, or the date of an item scheduled ahead)
    sent back as If-Modified-Since made a server that compares it with the feed's real time
    of change answer 304 to every poll until then: the feed was never read again."""
    server = LocalServer({})
    paths = ["/a"]
    changed = [NOW - timedelta(days=1)]

    def feed(handler: object) -> Reply:
        since = getattr(handler, "headers").get("If-Modified-Since")  # noqa: B009
        if since and parsedate_to_datetime(since) >= changed[0]:
            return Reply(304)
        return Reply(200, _rss(server, paths), {"Last-Modified": "Fri, 01 Jan 2100 00:00:00 GMT"})

    server.routes["/feed"] = feed
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        paths.append("/b")
        changed[0] = NOW + timedelta(minutes=30)
        second = poll_feed(session, client, settings, feed_id, now=NOW + timedelta(hours=1))
    assert first.outcome == second.outcome == "fetched"
    assert [hit["headers"].get("If-Modified-Since") for hit in server.hits if hit["path"] == "/feed"] == [
        None,
        None,
    ]
    stored = session.get(Feed, feed_id)
    assert stored is not None and stored.last_modified is None


def test_an_update_listed_above_the_report_it_updates_points_at_it(
    session: Session, settings: Settings
) -> None:
    """A feed lists its newest item first: an updated republication (19 Nov) above the
    report it updates (18 Nov). Items are stored oldest first, so the report is the story's
    original and the update its near copy, and the story counts at the report's date."""
    update_body = BODY_EN + " Update: the two sides agreed to meet again in December to settle the price."
    server = LocalServer({})
    server.routes["/feed"] = lambda handler: Reply(
        200,
        (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
            f"<item><title>Update</title><link>{server.url('/update')}</link>"
            "<pubDate>Thu, 19 Nov 2026 09:00:00 GMT</pubDate></item>"
            f"<item><title>Report</title><link>{server.url('/report')}</link>"
            "<pubDate>Wed, 18 Nov 2026 09:00:00 GMT</pubDate></item>"
            "</channel></rss>"
        ).encode(),
    )
    html = {"Content-Type": "text/html; charset=utf-8"}
    server.routes["/report"] = lambda handler: Reply(200, page("Putin and Xi talk gas", BODY_EN, "en"), html)
    server.routes["/update"] = lambda handler: Reply(200, page("Gas talks go on", update_body, "en"), html)
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        poll = poll_feed(session, client, settings, add_feed(session, server.url("/feed")), now=NOW)
    assert [item.status for item in poll.items] == ["new", "duplicate"]
    report = session.scalar(select(Article).where(Article.url.contains("/report")))
    update = session.scalar(select(Article).where(Article.url.contains("/update")))
    assert report is not None and update is not None
    assert report.duplicate_of_id is None
    assert (update.duplicate_of_id, update.copy_kind) == (report.id, "near")


def test_a_host_that_keeps_timing_out_holds_a_cycle_only_briefly(
    session: Session, settings: Settings
) -> None:
    """Five pages of one host that never answer in time: two time out (attempts counted),
    the other three are put off without a request (no attempt counted) and fetched by the
    next cycle's retries, once the host answers again; nothing is lost."""
    texts = {
        "/p0": "Gazprom and CNPC signed a memorandum on the Power of Siberia 2 route through Mongolia. "
        "Pricing talks will continue next year, the companies said in Vladivostok.",
        "/p1": "The Russian and Chinese navies began a joint exercise in the Sea of Japan on Monday. "
        "Ten warships and several aircraft take part in the drills near Vladivostok.",
        "/p2": "Bilateral trade settled in yuan rose to a record share in October, the central bank said. "
        "Exporters reported fewer delays in payments through regional banks.",
        "/p3": "Foreign ministers Lavrov and Wang Yi discussed a settlement in Ukraine by telephone. "
        "Both sides called for talks that address the root causes of the crisis.",
        "/p4": "A joint statement on a multipolar world order was published after the summit in Beijing. "
        "It criticises unilateral sanctions and calls for reform of global governance.",
    }
    paths = list(texts)
    state = {"slow": True}

    def article(handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        body = page(f"Story {path}", texts[path], "en")
        return Reply(
            200, body, {"Content-Type": "text/html; charset=utf-8"}, delay=2.0 if state["slow"] else 0
        )

    server = LocalServer(dict.fromkeys(paths, article))
    server.routes["/feed"] = lambda handler: Reply(200, _rss(server, paths), {"ETag": '"v1"'})
    http = settings.http.model_copy(
        update={"timeout_seconds": 0.3, "per_host_concurrency": 1, "host_timeout_limit": 2}
    )
    quick = settings.model_copy(update={"http": http})
    with server, HttpClient(quick.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, server.url("/feed"))
        started = time.monotonic()
        first = run_cycle(session, client, quick, feed_ids=[feed_id], now=NOW)
        assert time.monotonic() - started < 10
        assert [item.status for item in first.polls[0].items] == ["error"] * 5
        failures = session.scalars(select(FetchFailure).order_by(FetchFailure.target)).all()
        assert sorted(f.attempts for f in failures) == [0, 0, 0, 1, 1]
        assert all(not f.permanent for f in failures)
        assert sum("not fetched" in (f.error or "") for f in failures) == 3
        assert len(server.hits) == 3  # the feed and the two pages that timed out
        state["slow"] = False
        second = run_cycle(session, client, quick, feed_ids=[feed_id], now=NOW + timedelta(minutes=1))
        assert [r.status for r in second.retried] == ["new"] * 3  # (the two others wait 15 min)
        third = run_cycle(session, client, quick, feed_ids=[feed_id], now=NOW + timedelta(hours=1))
        assert [r.status for r in third.retried] == ["new"] * 2
    assert count(session, Article, Article.is_seed.is_(False)) == 5


def test_a_server_asking_to_wait_is_left_alone_that_long(session: Session, settings: Settings) -> None:
    """429 and 503 with Retry-After: the page is not retried, nor the feed polled, before
    the time the server named (the backoff alone would try again in 15 minutes)."""
    site = FeedSite()
    site.server.routes["/a"] = lambda handler: Reply(429, b"slow down", {"Retry-After": "7200"})
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        assert first.items[0].status == "error"
        # (The site's missing page, a 404, is retried after the backoff: only /a is asked here.)
        retried = retry_failed_pages(session, client, settings, now=NOW + timedelta(minutes=90))
        assert [r.url for r in retried if r.url and r.url.split("?")[0].endswith("/a")] == []
        failure = session.scalar(select(FetchFailure).where(FetchFailure.target.contains("/a")))
        assert failure is not None and failure.next_retry_at is not None
        assert failure.next_retry_at.replace(tzinfo=UTC) >= NOW + timedelta(hours=2)
        site.server.routes["/feed"] = lambda handler: Reply(503, b"maintenance", {"Retry-After": "86400"})
        failed = poll_feed(session, client, settings, feed_id, now=NOW)
    assert failed.outcome == "error"
    feed = session.get(Feed, feed_id)
    assert (
        feed is not None
        and feed.next_poll_at is not None
        and feed.next_poll_at.replace(tzinfo=UTC) >= NOW + timedelta(days=1)
    )


def test_import_twice_stores_nothing_new(session: Session, settings: Settings) -> None:
    # a1 and a2 tell the same story loosely enough to pass as a free translation: a month
    # apart, they are not compared.
    lines = [
        json.dumps(
            {
                "id": "a1",
                "url": "https://news.example/a?utm_source=x",
                "title": "Talks",
                "text": BODY_EN,
                "published": "2026-10-01T08:00:00+00:00",
            }
        ),
        json.dumps(
            {"id": "a2", "title": "Переговоры", "text": BODY_RU, "published": "2026-11-01T08:00:00+03:00"}
        ),
        json.dumps({"id": "a3", "url": "https://other.example/copy", "text": BODY_EN}),
        "{not json",
        json.dumps({"id": "a5", "url": "https://news.example/empty"}),
        json.dumps(["a list"]),
        json.dumps({"id": "a7", "html": page("Талант", BODY_RU, "ru").decode()}),
    ]
    first = list(import_lines(session, settings, lines, source="batch.jsonl", now=NOW))
    assert [r.result.status for r in first] == [
        "new",
        "new",
        "duplicate",
        "error",
        "error",
        "error",
        "duplicate",
    ]
    assert first[2].result.duplicate_of == first[0].result.article_id
    assert first[6].result.duplicate_of == first[1].result.article_id
    assert "not valid JSON" in (first[3].result.error or "")
    assert first[1].result.lang == "ru"
    stored = session.get(Article, first[1].result.article_id)
    assert stored is not None and stored.published_at == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
    articles = count(session, Article)
    second = list(import_lines(session, settings, lines, source="batch.jsonl", now=NOW))
    assert count(session, Article) == articles
    assert [r.result.status for r in second] == [
        "duplicate",
        "duplicate",
        "duplicate",
        "error",
        "error",
        "error",
        "duplicate",
    ]
    assert [r.result.article_id for r in second[:3]] == [r.result.article_id for r in first[:3]]
    assert count(session, FetchFailure, FetchFailure.stage == "import") == 3


def _import_twelve_labelled(session: Session, settings: Settings) -> list[int]:
    """The first twelve articles of the classifier's evaluation set, imported; their ids."""
    rows = [
        json.loads(line)
        for line in (FIXTURES / "classify" / "eval.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    ]
    lines = [
        json.dumps({"url": f"https://r.example/{i}", "title": r["title"], "text": r["text"]})
        for i, r in enumerate(rows)
    ]
    results = list(import_lines(session, settings, lines, source="t", now=NOW))
    return sorted({r.result.article_id for r in results if r.result.article_id})


def test_reclassifying_a_batch_replaces_each_articles_labels(session: Session, settings: Settings) -> None:
    from sqlalchemy import delete, select

    from pipeline.db.schema import ArticleTopic, ArticleWatch
    from pipeline.ingest import IngestContext, reclassify_articles

    ids = _import_twelve_labelled(session, settings)

    def labels() -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
        topics = {(a, t) for a, t in session.execute(select(ArticleTopic.article_id, ArticleTopic.topic))}
        watch = {(a, w) for a, w in session.execute(select(ArticleWatch.article_id, ArticleWatch.item))}
        return topics, watch

    stored = labels()
    assert stored[0], "the set has labelled articles"
    # Labels gone from one article, a wrong one on another: the batch puts back what the
    # classifier says, once each.
    first_labelled = min(article_id for article_id, _ in stored[0])
    session.execute(delete(ArticleTopic).where(ArticleTopic.article_id == first_labelled))
    session.add(ArticleTopic(article_id=max(ids), topic="sport", score=1.0, evidence=[]))
    session.commit()
    later = NOW + timedelta(days=1)
    verdicts = reclassify_articles(session, IngestContext.from_settings(settings), [*ids, 10_000], later)
    session.commit()
    assert len(verdicts) == len(ids)
    assert labels() == stored
    assert all(session.get(Article, i).classified_at == later for i in ids)  # type: ignore[union-attr]


def test_reclassifying_encodes_and_classifies_without_the_writers_lock(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reclassify` took the writers' lock first and then encoded the batch's articles
    without vectors and classified them: a batch of 500 held it for minutes, and every
    `run` and `import` beside it waited (on SQLite, past the busy timeout: "database is
    locked"). The batch is encoded and classified first and stored under the lock against
    the articles as they are then: one given a new version meanwhile is classified again."""
    import sqlite3

    from sqlalchemy import delete

    from pipeline import dedup
    from pipeline.db.schema import ArticleTopic, ArticleVector
    from pipeline.ingest import IngestContext, reclassify_articles

    ids = _import_twelve_labelled(session, settings)

    def topics() -> dict[int, set[str]]:
        found: dict[int, set[str]] = {i: set() for i in ids}
        for article_id, topic in session.execute(select(ArticleTopic.article_id, ArticleTopic.topic)):
            found.setdefault(article_id, set()).add(topic)
        return found

    labelled = topics()
    changed = next(i for i in ids if labelled[i])
    source = next(i for i in ids if labelled[i] != labelled[changed])
    new_version = session.get(Article, source)
    assert new_version is not None
    title, text_, content_hash = new_version.title, new_version.text, dedup.content_hash(new_version.text)
    session.execute(delete(ArticleVector))  # (an encoder changed, or a database older than vectors)
    session.commit()
    bind = session.get_bind()
    engine = bind if not hasattr(bind, "engine") else bind.engine
    sqlite = engine.dialect.name == "sqlite"
    other = make_engine(engine.url.render_as_string(hide_password=False))
    turns: list[bool] = []

    def another_writer_takes_its_turn() -> bool:
        """Whether another writer could store now, and if so, a new version of one article."""
        if sqlite:
            raw = sqlite3.connect(engine.url.database or "", timeout=0, isolation_level=None)
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return False
            finally:
                raw.close()
        else:
            with other.connect() as connection:
                free = connection.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": repo.STORE_LOCK_KEY}
                )
                connection.rollback()
            if not free:
                return False
        if not turns:
            with other.begin() as connection:
                connection.execute(
                    text("UPDATE articles SET title = :t, text = :x, content_hash = :h WHERE id = :i"),
                    {"t": title, "x": text_, "h": content_hash, "i": changed},
                )
        return True

    context = IngestContext.from_settings(settings)
    embed = IngestContext.embed

    def embed_beside_another_writer(self: IngestContext, *args: Any, **kwargs: Any) -> Any:
        turns.append(another_writer_takes_its_turn())
        return embed(self, *args, **kwargs)

    monkeypatch.setattr(IngestContext, "embed", embed_beside_another_writer)
    try:
        verdicts = reclassify_articles(session, context, ids, NOW + timedelta(days=1))
        session.commit()
    finally:
        other.dispose()
    assert len(verdicts) == len(ids)
    # Each article encoded once without the lock; the one changed meanwhile again under it.
    assert turns == [True] * len(ids) + [False], "no other writer waited while the batch was encoded"
    expected = {**labelled, changed: labelled[source]}
    assert topics() == expected, "the article changed meanwhile is labelled by its new text"
    stored = set(session.scalars(select(ArticleVector.article_id)))
    assert stored == set(ids), "the vectors encoded are stored"


def test_near_duplicates_found_through_the_database_index(session: Session, settings: Settings) -> None:
    from pipeline.db.schema import ArticleBand, ArticleSignature

    stories = [json.loads(line) for line in (FIXTURES / "dedup" / "stories.jsonl").read_text().splitlines()]
    clusters: dict[str, list[dict[str, str]]] = {}
    for story in stories:
        clusters.setdefault(story["cluster"], []).append(story)
    groups = [members for members in clusters.values() if len(members) >= 3][:6]
    lines = [
        json.dumps(
            {"id": member["id"], "url": f"https://n{i}.example/{member['id']}", "text": member["text"]}
        )
        for members in groups
        for i, member in enumerate(members)
    ]
    results = list(import_lines(session, settings, lines, source="stories", now=NOW))
    first_of_cluster: dict[str, int] = {}
    for line, outcome in zip(lines, results, strict=True):
        cluster = next(s["cluster"] for s in stories if s["id"] == json.loads(line)["id"])
        if cluster not in first_of_cluster:
            assert outcome.result.status == "new"
            first_of_cluster[cluster] = outcome.result.article_id or 0
        else:
            assert outcome.result.status == "duplicate", line[:120]
            assert outcome.result.duplicate_of == first_of_cluster[cluster]
            assert outcome.result.similarity is not None and 0.5 < outcome.result.similarity <= 1.0
    assert count(session, ArticleSignature) == len(lines)
    assert count(session, ArticleBand) == len(lines) * settings.neardup_params().bands


def test_changed_page_under_known_url_becomes_a_version(session: Session, settings: Settings) -> None:
    from pipeline.db.schema import ArticleVersion

    url = "https://news.example/live/summit"
    first = list(
        import_lines(session, settings, [json.dumps({"url": url, "text": BODY_EN})], source="a", now=NOW)
    )
    updated = BODY_EN + " Update: the Kremlin later said a pricing deal was close but not yet signed."
    second = list(
        import_lines(session, settings, [json.dumps({"url": url, "text": updated})], source="b", now=NOW)
    )
    assert second[0].result.status == "duplicate"
    assert second[0].result.article_id == first[0].result.article_id
    assert count(session, Article) == 1
    article = session.get(Article, first[0].result.article_id)
    assert article is not None and article.text.endswith("not yet signed.")
    versions = session.scalars(select(ArticleVersion)).all()
    assert [v.text for v in versions] == [BODY_EN]


def test_a_new_version_reports_the_labels_it_was_given(session: Session, settings: Settings) -> None:
    """A stub about nothing in particular replaced by the summit report: the version line
    carries the labels the article now has, as stored."""
    from pipeline.db.schema import ArticleTopic, ArticleWatch

    url = "https://news.example/live/labels"
    stub = "The weather in the capital stayed mild on Sunday. More details later."
    first = list(
        import_lines(session, settings, [json.dumps({"url": url, "text": stub})], source="a", now=NOW)
    )
    assert first[0].result.topics == []
    line = json.dumps({"url": url, "text": BODY_EN})
    result = next(iter(import_lines(session, settings, [line], source="b", now=NOW))).result
    assert result.copy_kind == "version" and result.article_id == first[0].result.article_id
    topics = set(
        session.scalars(select(ArticleTopic.topic).where(ArticleTopic.article_id == result.article_id))
    )
    watch = set(
        session.scalars(select(ArticleWatch.item).where(ArticleWatch.article_id == result.article_id))
    )
    assert topics, "the summit report is labelled"
    assert {hit.topic for hit in result.topics} == topics
    assert {hit.item for hit in result.watch} == watch


def test_each_version_is_dated_from_when_its_text_was_first_seen(
    session: Session, settings: Settings
) -> None:
    """A live page changed twice: the first text was seen with the article, the second
    from the moment it replaced the first (not from the article's first sighting)."""
    from pipeline.db.schema import ArticleVersion

    url = "https://news.example/live/twice"
    texts = [BODY_EN, BODY_EN + " Update: talks went on.", BODY_EN + " Update: talks ended late."]
    moments = [NOW, NOW + timedelta(hours=2), NOW + timedelta(hours=5)]
    for text_now, moment in zip(texts, moments, strict=True):
        line = json.dumps({"url": url, "text": text_now})
        list(import_lines(session, settings, [line], source="live", now=moment))
    versions = session.scalars(select(ArticleVersion).order_by(ArticleVersion.id)).all()
    seen = [(v.text, v.seen_at, v.replaced_at) for v in versions]
    assert seen == [(texts[0], moments[0], moments[1]), (texts[1], moments[1], moments[2])]


def test_an_import_line_s_feed_is_found_as_articles_feed_finds_it_or_reported(
    session: Session, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A line's ``feed`` was matched only by URL or exact name: "global times" or an
    outlet stored the article under no feed, silently, while ``articles --feed`` reads
    any case, outlets and ids."""
    english, _ = repo.upsert_feed(
        session, "https://tass.example/en.xml", name="TASS (English)", outlet="TASS"
    )
    repo.upsert_feed(session, "https://tass.example/ru.xml", name="ТАСС", outlet="TASS")
    times, _ = repo.upsert_feed(session, "https://gt.example/rss", name="Global Times", outlet="Global Times")
    session.commit()
    feeds = ["global times", "tass (english)", english.id, str(times.id), "TASS", "Nowhere", "Nowhere", 999]
    lines = [
        json.dumps({"url": f"https://n.example/{n}", "text": f"{BODY_EN} Item {n}.", "feed": feed})
        for n, feed in enumerate(feeds)
    ]
    with caplog.at_level("WARNING", logger="pipeline.ingest"):
        results = list(import_lines(session, settings, lines, source="feeds", now=NOW))
    stored = [session.get(Article, r.result.article_id) for r in results]
    assert [article.feed_id if article else "?" for article in stored] == [
        times.id, english.id, english.id, times.id, None, None, None, None
    ]  # fmt: skip
    warnings = [
        record.getMessage() for record in caplog.records if "imported without a feed" in record.getMessage()
    ]
    assert len(warnings) == 3, warnings  # (each value once)
    assert "'TASS' names 2 feeds" in warnings[0]
    assert "'Nowhere' no feed has that URL, id, name or outlet" in warnings[1]
    assert "999 no feed has the id 999" in warnings[2]
    # A name as written that two feeds share names neither; a page already stored that a
    # line says another feed carried is listed under that feed too.
    repo.upsert_feed(session, "https://gt.example/other", name="Global Times", outlet="GT")
    session.commit()
    caplog.clear()
    shared = json.dumps(
        {"url": "https://n.example/shared", "text": f"{BODY_EN} Shared.", "feed": "Global Times"}
    )
    with caplog.at_level("WARNING", logger="pipeline.ingest"):
        result = next(iter(import_lines(session, settings, [shared], source="more", now=NOW))).result
    assert session.get(Article, result.article_id).feed_id is None  # type: ignore[union-attr]
    assert any("'Global Times' names 2 feeds" in record.getMessage() for record in caplog.records)
    again = json.dumps({"url": "https://n.example/0", "text": f"{BODY_EN} Item 0.", "feed": "tass (english)"})
    seen = next(iter(import_lines(session, settings, [again], source="again", now=NOW))).result
    assert seen.article_id == results[0].result.article_id
    listed = repo.search_articles(session, repo.ArticleFilter(feed=str(english.id), include_duplicates=True))
    assert seen.article_id in {article.id for article in listed}


def test_a_page_carried_by_two_feeds_is_listed_under_both(session: Session, settings: Settings) -> None:
    """A page in two feeds is stored once, from the first; `articles --feed` of the second
    (the web list and the API alike) left it out, while its page said "via feed:N"."""
    from pipeline.ingest import IngestContext, build_candidate, store_candidate

    first, _ = repo.upsert_feed(session, "https://a.example/rss", name="A", outlet="Outlet A")
    second, _ = repo.upsert_feed(session, "https://b.example/rss", name="B", outlet="Outlet B")
    context = IngestContext.from_settings(settings)
    url = "https://news.example/story"
    for feed in (first, second):
        candidate = build_candidate(settings, url=url, title="Summit", text=BODY_EN)
        stored = store_candidate(session, candidate, via=f"feed:{feed.id}", context=context, feed_id=feed.id)
    session.commit()
    article_id = stored.article_id
    for feed in (first, second):
        for folded in (False, True):
            wanted = repo.ArticleFilter(feed=str(feed.id), include_duplicates=folded)
            assert [a.id for a in repo.search_articles(session, wanted)] == [article_id], (feed.name, folded)
        assert [a.id for a in repo.search_articles(session, repo.ArticleFilter(feed=feed.outlet))] == [
            article_id
        ]
    other, _ = repo.upsert_feed(session, "https://c.example/rss", name="C")
    assert repo.search_articles(session, repo.ArticleFilter(feed=str(other.id))) == []
    # The SQL view of feed health counts what each feed carried the same way.
    from pipeline.db.engine import apply_views, views_file

    session.commit()
    apply_views(session.get_bind(), views_file())  # type: ignore[arg-type]
    counts = dict(session.execute(text("SELECT name, articles FROM v_feed_health")).all())
    assert counts == {"A": 1, "B": 1, "C": 0}


def test_the_same_page_read_by_another_extractor_is_not_a_new_version(
    session: Session, settings: Settings
) -> None:
    """After an upgrade whose extractor reads a page differently (a masthead no longer
    taken in), importing the same HTML again recorded a version of every such page that
    never changed, relabelled it and moved coverage."""
    from pipeline.db.schema import ArticleVersion

    url = "https://news.example/story/page"
    html = page("Summit talks", BODY_EN, "en").decode()
    line = json.dumps({"url": url, "html": html})
    first = next(iter(import_lines(session, settings, [line], source="a", now=NOW))).result
    article = session.get(Article, first.article_id)
    assert article is not None and article.page_hash is not None
    # As an earlier extractor stored it: another text from the same page.
    article.text = "Home | World | Sport\n\n" + article.text
    article.content_hash = "0" * 64
    session.commit()
    again = next(iter(import_lines(session, settings, [line], source="b", now=NOW))).result
    assert again.status == "duplicate" and again.copy_kind != "version"
    assert session.scalars(select(ArticleVersion)).all() == []
    # A changed page is a version, as before.
    changed = json.dumps(
        {"url": url, "html": html.replace("</article>", "<p>Update: talks ended.</p></article>")}
    )
    updated = next(iter(import_lines(session, settings, [changed], source="c", now=NOW))).result
    assert updated.copy_kind == "version" and len(session.scalars(select(ArticleVersion)).all()) == 1
    # An article stored before pages were hashed learns its page's hash when seen again.
    article.page_hash = None
    session.commit()
    next(iter(import_lines(session, settings, [changed], source="d", now=NOW)))
    assert article.page_hash is not None


def test_a_new_version_without_a_headline_does_not_keep_the_old_one(
    session: Session, settings: Settings
) -> None:
    """A changed page imported without a title kept the replaced text's headline, and with
    it the old story's labels (its evidence was the old headline) and search words."""
    from pipeline.db.schema import ArticleVersion

    url = "https://news.example/live/changed-story"
    headline = "Russia and China hold joint naval exercises in the Sea of Japan"
    first = list(
        import_lines(
            session,
            settings,
            [json.dumps({"url": url, "title": headline, "text": BODY_EN})],
            source="a",
            now=NOW,
        )
    )
    list(import_lines(session, settings, [json.dumps({"url": url, "text": BODY_RU})], source="b", now=NOW))
    article = session.get(Article, first[0].result.article_id)
    assert article is not None and article.text == BODY_RU
    assert article.title is None
    assert [(v.title, v.text) for v in session.scalars(select(ArticleVersion))] == [(headline, BODY_EN)]


def test_another_text_at_a_seed_s_url_is_judged_as_itself_not_as_the_seed(
    session: Session, settings: Settings
) -> None:
    """A text imported under a seed document's URL was reported as an exact copy of the
    seed (similarity 1.0) and stored nowhere: no list, search or coverage showed it."""
    from pipeline.bootstrap import load_seeds

    load_seeds(session, settings)
    seed = session.scalars(select(Article).where(Article.is_seed, Article.url.is_not(None))).first()
    assert seed is not None and seed.url
    line = json.dumps({"url": seed.url, "title": "Joint naval drills", "text": BODY_EN})
    result = next(iter(import_lines(session, settings, [line], source="a", now=NOW))).result
    assert result.status == "new" and result.article_id != seed.id
    stored = session.get(Article, result.article_id)
    assert stored is not None and stored.text == BODY_EN and stored.url == seed.url
    assert stored.canonical_url is None, "the seed keeps its URL"
    assert session.get(Article, seed.id).text != BODY_EN  # type: ignore[union-attr]
    # The same line again is an exact copy of what was stored, not a second article.
    again = next(iter(import_lines(session, settings, [line], source="b", now=NOW))).result
    assert again.status == "duplicate" and again.article_id == result.article_id
    assert again.copy_kind == "exact"
    # The seed's own text at its URL is still the seed.
    own = json.dumps({"url": seed.url, "title": seed.title, "text": seed.text})
    same = next(iter(import_lines(session, settings, [own], source="c", now=NOW))).result
    assert same.status == "duplicate" and same.article_id == seed.id


def test_a_new_version_in_another_language_takes_that_language(session: Session, settings: Settings) -> None:
    """A stub page ("details later") replaced by the article: the row's language is the
    article's, so language filters and the translation check see it as it is now."""
    url = "https://news.example/live/stub"
    first = list(
        import_lines(session, settings, [json.dumps({"url": url, "text": BODY_EN})], source="a", now=NOW)
    )
    list(import_lines(session, settings, [json.dumps({"url": url, "text": BODY_RU})], source="b", now=NOW))
    article = session.get(Article, first[0].result.article_id)
    assert article is not None and article.text == BODY_RU
    assert article.lang == "ru" and article.lang_confidence is not None


def test_extraction_time_limit_quarantines_a_pathological_page() -> None:
    import time as time_module

    from pipeline.errors import ExtractionError
    from pipeline.ingest import time_limit

    started = time_module.monotonic()
    with pytest.raises(ExtractionError, match=r"longer than 0\.2 s") as caught, time_limit(0.2):
        time_module.sleep(5)
    assert caught.value.permanent
    assert time_module.monotonic() - started < 2
    with time_limit(1.0):
        total = sum(range(1000))
    assert total == 499500


def test_hostile_import_lines_are_recorded_and_the_rest_stored(session: Session, settings: Settings) -> None:
    lines = [
        json.dumps(
            {"id": "nul", "url": "https://n.example/nul", "title": "Null\x00byte", "text": BODY_EN + "\x00"}
        ),
        json.dumps({"id": "surrogate", "title": "Half \ud800 pair", "text": BODY_RU + " \ud83d"}),
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"id": "ctl-url", "url": "https://n.example/a\nb", "text": BODY_EN}),
        json.dumps({"id": "big", "html": "<html><body>" + "<div><p>x</p>" * 200_000 + "</body></html>"}),
        json.dumps(
            {"id": "ok", "url": "https://n.example/fine", "text": BODY_EN.replace("Thursday", "Friday")}
        ),
    ]
    results = list(import_lines(session, settings, lines, source="hostile", now=NOW))
    by_id = {r.input_id: r.result for r in results}
    assert by_id["nul"].status == "new"
    stored = session.get(Article, by_id["nul"].article_id)
    assert stored is not None and "\x00" not in stored.text and stored.title == "Nullbyte"
    assert by_id["surrogate"].status == "new"
    assert results[2].result.status == "error" and "nested too deeply" in (results[2].result.error or "")
    assert by_id["ctl-url"].status == "error"
    assert by_id["big"].status in {"new", "error"}  # odd but harmless: it must just not stop the run
    assert by_id["ok"].status in {"new", "duplicate"}
    errors = sum(r.result.status == "error" for r in results)
    assert count(session, FetchFailure, FetchFailure.stage == "import") == errors


def test_a_title_is_stored_on_one_line(session: Session, settings: Settings) -> None:
    """Line breaks in an imported title (a carriage return would overwrite the row a terminal
    prints) and runs of spaces become single spaces; a title of spaces alone is none."""
    lines = [
        json.dumps(
            {"id": "cr", "url": "https://n.example/cr", "title": "Normal title\rOVERWRITE", "text": BODY_EN}
        ),
        json.dumps(
            {
                "id": "nl",
                "url": "https://n.example/nl",
                "title": " Two\n\nlines\u2028 here\t",
                "text": BODY_RU,
            }
        ),
        json.dumps(
            {
                "id": "blank",
                "url": "https://n.example/b",
                "title": " \r\n ",
                "text": "The Russian and Chinese navies began a joint exercise in the Sea of Japan on Monday. "
                "Ten warships and several aircraft take part in the drills near Vladivostok, officials said.",
            }
        ),
    ]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="titles", now=NOW)}
    titles = {key: session.get(Article, result.article_id).title for key, result in results.items()}  # type: ignore[union-attr]
    assert titles == {"cr": "Normal title OVERWRITE", "nl": "Two lines here", "blank": None}


def test_band_lookup_starts_from_the_band_keys(session: Session, settings: Settings) -> None:
    """A regression guard: the candidate query must not scan every stored signature."""
    from sqlalchemy import text

    from pipeline.db.schema import ArticleSignature

    params = settings.neardup_params()
    session.add_all(
        Article(id=i, text="x", lang="en", content_hash=f"{i:064x}", is_seed=False, word_count=1)
        for i in range(1, 201)
    )
    session.flush()
    session.add_all(
        ArticleSignature(article_id=i, scheme=params.scheme, signature=b"\0") for i in range(1, 201)
    )
    for i in range(1, 201):
        repo.store_signature(session, i, params.scheme, b"\0", [i * 1000 + band for band in range(3)])
    session.commit()
    assert repo.band_candidates(session, [5000, 5001, 7002, 999_999], params.scheme) == [5, 7]
    assert repo.band_candidates(session, [5000], "another-scheme") == []
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        plan = " ".join(
            str(row[-1])
            for row in session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT article_id, count(*) FROM article_bands"
                    " WHERE band_key IN (1, 2) GROUP BY article_id"
                )
            )
        )
        assert "article_bands" in plan and "SCAN" not in plan.replace("SCAN CONSTANT ROW", "")


def test_band_lookup_keeps_the_candidates_sharing_the_most_band_keys(
    session: Session, settings: Settings
) -> None:
    from pipeline.db.schema import ArticleSignature

    params = settings.neardup_params()
    count = 1_200  # (more than one query's chunk of ids)
    session.add_all(
        Article(id=i, text="x", lang="en", content_hash=f"{i:064x}", is_seed=False, word_count=1)
        for i in range(1, count + 1)
    )
    session.flush()
    # Every article shares band key 1 (a site's footer); 700 and 900 share three keys, 50
    # shares two; 300 shares three but is signed under another scheme.
    session.add_all(ArticleSignature(article_id=i, scheme="", signature=b"\0") for i in range(1, count + 1))
    extra = {700: [2, 3], 900: [2, 3], 50: [2], 300: [2, 3]}
    for i in range(1, count + 1):
        scheme = "another-scheme" if i == 300 else params.scheme
        repo.store_signature(session, i, scheme, b"\0", [1, *extra.get(i, [])])
    session.commit()
    keys = [1, 2, 3]
    assert repo.band_candidates(session, keys, params.scheme, limit=3) == [50, 700, 900]
    assert repo.band_candidates(session, keys, params.scheme, limit=5) == [1, 2, 50, 700, 900]
    everything = repo.band_candidates(session, keys, params.scheme)
    assert len(everything) == count - 1 and 300 not in everything and everything == sorted(everything)


def test_broken_items_do_not_jam_the_feed(session: Session, settings: Settings) -> None:
    site = FeedSite()
    base_body = site.feed_body

    def hostile_feed() -> bytes:
        extra = (
            b"<item><title>Zero date</title><link>http://x.example:99999/a</link>"
            b"<pubDate>Mon, 01 Jan 0001 00:00:00 GMT</pubDate></item>"
        )
        return base_body().replace(b"</channel>", extra + b"</channel>")

    site.feed_body = hostile_feed  # type: ignore[method-assign]
    long_etag = '"' + "e" * 1500 + '"'
    site.server.routes["/feed"] = lambda h: Reply(
        200, hostile_feed(), {"ETag": long_etag, "Content-Type": "application/rss+xml"}
    )
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        assert [r.status for r in first.items] == ["new", "new", "error", "error"]
        feed = session.get(Feed, feed_id)
        assert feed is not None and feed.next_poll_at is not None and feed.body_hash
        assert feed.etag is None  # too long to keep; the body hash still spares work
        # The 404 waiting for its retry is not fetched again when the feed changes.
        hits_before = sum(1 for h in site.server.hits if h["path"].startswith("/missing"))
        site.items.append(("/b", "Same page again"))
        poll_feed(session, client, settings, feed_id, now=NOW + timedelta(minutes=10))
        assert sum(1 for h in site.server.hits if h["path"].startswith("/missing")) == hits_before


def test_reimporting_old_text_does_not_create_versions(session: Session, settings: Settings) -> None:
    from pipeline.db.schema import ArticleVersion

    url = "https://news.example/story"
    lines = [
        json.dumps({"url": url, "text": BODY_EN}),
        json.dumps({"url": url, "text": BODY_EN + " Update: more."}),
    ]
    for _ in range(3):
        list(import_lines(session, settings, lines, source="twice", now=NOW))
    assert count(session, ArticleVersion) == 1


def test_hostile_feeds_are_refused_and_store_nothing(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    """XML bombs in UTF-16 and behind padding, and an XXE to a local file: each feed fails
    with a clear error, no page is fetched and nothing is stored."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    item = "<item><title>{title}</title><link>/a</link></item>"
    laughs = (
        '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{(p + ";") * 10}">' for p, c in zip(["&a", "&b", "&c", "&d"], "bcde", strict=True)
        )
        + "]>"
    )
    bodies = {
        "/utf16": (
            laughs + '<rss version="2.0"><channel>' + item.format(title="&e;") + "</channel></rss>"
        ).encode("utf-16"),
        "/padded": (
            '<?xml version="1.0"?>'
            + "<!-- padding -->" * 10_000
            + laughs
            + '<rss version="2.0"><channel>'
            + item.format(title="&e;")
            + "</channel></rss>"
        ).encode(),
        "/xxe": (
            f'<?xml version="1.0" encoding="utf-32"?><!DOCTYPE rss [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            '<rss version="2.0"><channel>' + item.format(title="&x;") + "</channel></rss>"
        ).encode("utf-32"),
    }
    routes = {
        path: (lambda h, body=body: Reply(200, body, {"Content-Type": "application/rss+xml"}))
        for path, body in bodies.items()
    }
    routes["/a"] = lambda h: Reply(200, page("Putin and Xi talk gas", BODY_EN, "en"))
    server = LocalServer(routes)
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_ids = [add_feed(session, server.url(path)) for path in bodies]
        summary = run_cycle(session, client, settings, feed_ids=feed_ids, now=NOW)
    assert [poll.outcome for poll in summary.polls] == ["error"] * 3
    for feed_id in feed_ids:
        feed = session.get(Feed, feed_id)
        assert feed is not None and feed.failure_count == 1
        assert "declares XML entities" in (feed.last_error or "")
        assert "TOP-SECRET-MARKER" not in (feed.last_error or "")
    assert session.scalar(select(func.count()).select_from(Article)) == 0
    # (Each feed once; the next is read ahead while one is polled, so in any order.)
    assert sorted(hit["path"] for hit in server.hits) == sorted(bodies), "no item page was fetched"


def test_pages_fetched_ahead_are_stored_in_feed_order(session: Session, settings: Settings) -> None:
    # The first page answers last, its syndicated copy (later in the feed) first: the first
    # item is still the original and the copy points at it, as when fetched one by one.
    site = FeedSite()
    site.items.append(("/copy", "Putin and Xi talk gas (syndicated)"))
    site.pages["/copy"] = site.pages["/a"].replace(b"<nav>", b"<nav><a href='/partner'>Partner</a>")
    spans: dict[str, list[float]] = {}

    def timed_page(handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        started = time.monotonic()
        if path == "/a":
            time.sleep(0.5)
        spans[path] = [started, time.monotonic()]
        return Reply(200, site.pages[path], {"Content-Type": "text/html; charset=utf-8"})

    site.server.routes.update({"/a": timed_page, "/b": timed_page, "/copy": timed_page})
    assert settings.http.max_concurrency > 1 and settings.poll.items_per_commit > 1
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        result = poll_feed(session, client, settings, add_feed(session, site.server.url("/feed")), now=NOW)
    assert spans["/copy"][0] < spans["/a"][1], "the copy was fetched while the first page was slow"
    assert [item.status for item in result.items] == ["new", "new", "error", "duplicate"]
    original, copy = result.items[0], result.items[3]
    assert copy.duplicate_of == original.article_id
    assert original.article_id is not None and copy.article_id is not None
    assert original.article_id < result.items[1].article_id < copy.article_id  # type: ignore[operator]


def test_two_imports_at_once_store_each_text_once(settings: Settings, tmp_path: Path) -> None:
    """Two processes importing the same texts under different URLs (two outlets'
    syndication) at the same time: each text is one original, and its other outlet's copy
    points at it. (Both look a text up before storing it; writers take turns.)"""
    import os
    import subprocess
    import sys

    from pipeline.bootstrap import initialise
    from tests.conftest import REPO_ROOT
    from tests.test_reporting import pos2_articles

    initialise(settings, load_feeds=False)
    texts = [article["text"] for article in pos2_articles()][:8]
    files = []
    for outlet in ("one", "two"):
        path = tmp_path / f"{outlet}.jsonl"
        path.write_text(
            "".join(
                json.dumps({"url": f"https://{outlet}.example/{n}", "text": t}) + "\n"
                for n, t in enumerate(texts)
            )
        )
        files.append(path)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": settings.db_url,
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }
    script = str(Path(sys.executable).parent / "summitwatch")
    runs = [
        subprocess.Popen([script, "import", str(path)], env=environ, stderr=subprocess.PIPE, text=True)
        for path in files
    ]
    outputs = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as fresh:
        originals = fresh.scalars(
            select(Article.content_hash).where(Article.duplicate_of_id.is_(None), ~Article.is_seed)
        ).all()
        stored = fresh.scalar(select(func.count()).select_from(Article).where(~Article.is_seed))
    engine.dispose()
    assert stored == 2 * len(texts)
    assert len(originals) == len(set(originals)), "a text stored twice as an original"


def test_imports_failing_on_the_same_lines_at_once_all_finish(settings: Settings, tmp_path: Path) -> None:
    """Three imports of one file of bad lines at once: each looked a line's failure up, then
    inserted it, and one in three or so died on the failure's unique key ("cannot use the
    database"), leaving the rest of its file unread. Two files of one name in two folders
    are two files: their failures are recorded apart."""
    import os
    import subprocess
    import sys

    from pipeline.bootstrap import initialise
    from tests.conftest import REPO_ROOT

    initialise(settings, load_feeds=False)
    lines = "".join(json.dumps({"id": n, "title": "no text"}) + "\n" for n in range(200))
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "data.jsonl").write_text(lines)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": settings.db_url,
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }
    script = str(Path(sys.executable).parent / "summitwatch")
    for _ in range(2):
        runs = [
            subprocess.Popen(
                [script, "import", "data.jsonl"], cwd=folder, env=environ, stderr=subprocess.PIPE, text=True
            )
            for folder in (*folders, folders[0])
        ]
        outputs = [run.communicate(timeout=300)[1] for run in runs]
        # (1: every line failed, as it should; 2 was the unique key.)
        assert [run.returncode for run in runs] == [1, 1, 1], outputs
        assert all("cannot use the database" not in output for output in outputs), outputs
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as fresh:
        targets = fresh.scalars(select(FetchFailure.target).where(FetchFailure.stage == "import")).all()
    engine.dispose()
    assert len(targets) == len(set(targets)) == 400
    assert {target.rsplit(":", 1)[0] for target in targets} == {
        os.path.abspath(folder / "data.jsonl") for folder in folders
    }


def test_a_line_failed_under_its_file_name_as_typed_is_closed_when_it_imports(
    session: Session, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failures were once recorded under the file's name as typed ("data.jsonl:1"); now
    under its absolute path. A line that failed then and imports now closes either."""
    from tests.test_reporting import pos2_articles

    monkeypatch.chdir(tmp_path)
    repo.record_failure(
        session,
        stage="import",
        target="data.jsonl:1",
        error="line 1: needs 'html' or 'text'",
        permanent=True,
        retry_after=None,
    )
    session.commit()
    line = json.dumps({"url": "https://news.example/fixed", "text": pos2_articles()[0]["text"]})
    [result] = list(import_lines(session, settings, [line], source="data.jsonl"))
    assert result.result.status == "new"
    failure = session.scalar(select(FetchFailure).where(FetchFailure.target == "data.jsonl:1"))
    assert failure is not None and failure.resolved_at is not None


def test_odd_import_fields_fare_alike_on_both_databases(session: Session, settings: Settings) -> None:
    """A NUL in the id or the feed, and a URL whose canonical form (percent-encoded) is over
    the limit: the same outcome on SQLite and PostgreSQL (which failed with a DataError)."""
    from tests.test_reporting import pos2_articles

    texts = [article["text"] for article in pos2_articles()][:3]
    chinese_path = "https://news.example/" + "新闻" * 300  # 621 characters, 5,421 encoded
    lines = [
        json.dumps({"id": "a\u0000b", "text": texts[0]}),
        json.dumps({"id": "c", "feed": "wire\u0000x", "text": texts[1]}),
        json.dumps({"id": "d", "url": chinese_path, "text": texts[2]}, ensure_ascii=False),
    ]
    results = [r.result for r in import_lines(session, settings, lines, source="odd", now=NOW)]
    assert [r.status for r in results] == ["new", "new", "error"]
    assert "longer than 2048 characters" in (results[2].error or "")
    article = session.get(Article, results[0].article_id)
    assert article is not None and article.source_id == "ab"


def test_a_feed_item_without_a_usable_link_is_recorded_once(session: Session, settings: Settings) -> None:
    """Nothing can be fetched for it, ever: it is quarantined among the open failures (it
    was only in the run's output), and the next poll does not add a second row."""
    site = FeedSite()
    base_body = site.feed_body

    def with_broken_items() -> bytes:
        extra = (
            "<item><title>No link at all</title><guid isPermaLink='false'>n-17</guid></item>"
            "<item><title>Bad port</title><link>http://news.example:99999/x</link></item>"
        )
        return base_body().replace(b"</channel>", extra.encode() + b"</channel>")

    site.feed_body = with_broken_items  # type: ignore[method-assign]
    site.honour_validators = False
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        first = poll_feed(session, client, settings, feed_id, now=NOW)
        feed = session.get(Feed, feed_id)
        assert feed is not None
        feed.body_hash = None  # (the same feed asked again in full)
        session.commit()
        poll_feed(session, client, settings, feed_id, now=NOW + timedelta(minutes=15))
    errors = [item.error for item in first.items if item.status == "error"]
    assert "feed item has no link" in errors and any("malformed link" in (e or "") for e in errors)
    recorded = session.scalars(select(FetchFailure).where(FetchFailure.target.contains("#item="))).all()
    assert len(recorded) == 2 and all(f.permanent and f.feed_id == feed_id for f in recorded)
    assert any(f.target.endswith("#item=n-17") for f in recorded)


def test_an_item_linked_to_a_front_page_is_no_article(session: Session, settings: Settings) -> None:
    """Items whose links name a site's front page (a feed template gone wrong): the front
    page was stored as the first one's article and every other item taken for it. Each is
    recorded as a failure of its own, and nothing is fetched or stored."""
    site = FeedSite()
    site.server.routes["/"] = lambda h: Reply(
        200, page("Front page", BODY_EN, "en"), {"Content-Type": "text/html"}
    )
    base_body = site.feed_body

    def front_page_items() -> bytes:
        extra = "".join(
            f"<item><title>Story {n}</title><link>{site.server.url(path)}</link><guid isPermaLink='false'>s-{n}</guid></item>"
            for n, path in enumerate(["/", "/index.html", "/?utm_source=rss"])
        )
        return base_body().replace(b"</channel>", extra.encode() + b"</channel>")

    site.feed_body = front_page_items  # type: ignore[method-assign]
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        result = poll_feed(session, client, settings, feed_id, now=NOW)
    assert [item.error for item in result.items if item.title.startswith("Story")] == [FRONT_PAGE_LINK] * 3
    assert not any(hit["path"].split("?")[0] in ("/", "/index.html") for hit in site.server.hits)
    assert session.scalar(select(func.count()).select_from(Article).where(Article.title == "Front page")) == 0
    recorded = session.scalars(select(FetchFailure).where(FetchFailure.target.contains("#item=s-"))).all()
    assert len(recorded) == 3 and all(f.permanent and f.error == FRONT_PAGE_LINK for f in recorded)


def test_an_item_link_with_spaces_is_fetched_and_stored_percent_encoded(
    session: Session, settings: Settings
) -> None:
    """A link with a literal space ("/news/Putin Xi talks.html") was refused as unusable; a
    browser sends it with the spaces percent-encoded, and so it is fetched and stored. Other
    white space (a no-break space) is still refused."""
    site = FeedSite()
    encoded = "/news/Putin%20Xi%20talks.html"
    site.items = [
        ("/news/Putin Xi talks.html", "Putin and Xi talk gas"),
        ("/news/a\u00a0b", "No-break space"),
    ]
    site.pages[encoded] = site.pages["/a"]
    site.server.routes[encoded] = site.page
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        result = poll_feed(session, client, settings, feed_id, now=NOW)
    assert [(item.status, item.error) for item in result.items] == [
        ("new", None),
        ("error", "link contains control characters or spaces"),
    ]
    article = session.scalar(select(Article))
    assert article is not None and article.url == site.server.url(encoded) + "?utm_source=rss"
    assert [hit["path"] for hit in site.server.hits if hit["path"].startswith("/news/")] == [
        encoded + "?utm_source=rss"
    ]


def test_a_feed_compressed_under_the_old_name_of_gzip_is_read(session: Session, settings: Settings) -> None:
    """Content-Encoding "x-gzip" (RFC 9110: gzip) failed the feed as "not a feed": the
    compressed bytes were parsed."""
    site = FeedSite()
    site.server.routes["/feed"] = lambda h: Reply(
        200,
        gzip.compress(site.feed_body()),
        {"Content-Type": "application/rss+xml", "Content-Encoding": "x-gzip"},
    )
    with site.server, HttpClient(settings.http, allow_private_networks=True) as client:
        feed_id = add_feed(session, site.server.url("/feed"))
        result = poll_feed(session, client, settings, feed_id, now=NOW)
    assert (result.outcome, result.error) == ("fetched", None)
    assert [item.status for item in result.items] == ["new", "new", "error"]


def test_a_short_but_complete_dispatch_in_chinese_is_an_article(settings: Settings) -> None:
    """Length is counted by script: a Han character carries about as much as a short word."""
    from pipeline.errors import ExtractionError
    from pipeline.ingest import build_candidate

    # A complete dispatch of about 120 characters (written for the test).
    dispatch = (
        "新华社北京电 国家主席习近平在人民大会堂同俄罗斯总统普京举行会谈。两国元首就双边关系和共同关心的"
        "国际和地区问题深入交换意见，一致同意加强能源、贸易和互联互通合作，并签署多项合作文件。双方表示将继续"
        "推进西伯利亚力量2号管道项目。"
    )
    assert 100 < len(dispatch) < settings.poll.min_text_chars
    html = page("习近平同普京举行会谈", dispatch, "zh-CN")
    candidate = build_candidate(settings, url="https://example.com/zh/1", title=None, html=html)
    assert candidate.lang == "zh"
    # The same number of Latin letters is still too short, and so is a few Han characters.
    english = "Putin and Xi met in Beijing on Thursday. They talked about gas, trade and payments in yuan."
    for body in (english, "新华社北京电 习近平同普京会谈。"):
        with pytest.raises(ExtractionError, match="extracted text too short"):
            build_candidate(settings, url="https://example.com/short", title=None, html=page("T", body, "en"))


def test_a_title_of_megabytes_is_stored_cut(session: Session, settings: Settings) -> None:
    """A feed carried a 3,000,000-character title, stored whole and shown everywhere."""
    from pipeline.db.schema import Article
    from pipeline.ingest import MAX_TITLE_CHARS

    text = (
        "Russian and Chinese officials met in Harbin on Tuesday to discuss cross-border trade and the "
        "opening of two new rail crossings, the ministry said. " * 4
    )
    line = json.dumps({"url": "https://r.example/long", "title": "Harbin talks " * 250_000, "text": text})
    (result,) = list(import_lines(session, settings, [line], source="t", now=NOW))
    stored = session.get(Article, result.result.article_id)
    assert stored is not None and stored.title is not None
    assert len(stored.title) <= MAX_TITLE_CHARS + 1 and stored.title.endswith(("talks…", "Harbin…"))


def test_a_held_hosts_pages_do_not_keep_other_pages_from_their_retries(
    session: Session, settings: Settings
) -> None:
    """More failed pages of a host that asked to be left alone are due than one run
    retries: they are passed over (and stay due), and the run goes on to the other hosts'
    pages behind them instead of retrying nothing of those, run after run."""
    texts = {
        "/ok0": "Gazprom and CNPC signed a memorandum on the Power of Siberia 2 route through Mongolia. "
        "Pricing talks will continue next year, the companies said in Vladivostok.",
        "/ok1": "The Russian and Chinese navies began a joint exercise in the Sea of Japan on Monday. "
        "Ten warships and several aircraft take part in the drills near Vladivostok.",
        "/ok2": "Bilateral trade settled in yuan rose to a record share in October, the central bank said. "
        "Exporters reported fewer delays in payments through regional banks.",
        "/ok3": "Foreign ministers Lavrov and Wang Yi discussed a settlement in Ukraine by telephone. "
        "Both sides called for talks that address the root causes of the crisis.",
        "/ok4": "A joint statement on a multipolar world order was published after the summit in Beijing. "
        "It criticises unilateral sanctions and calls for reform of global governance.",
    }

    def route(handler: object) -> Reply:
        path = getattr(handler, "path").split("?")[0]  # noqa: B009
        if path.startswith("/held"):
            return Reply(429, b"slow down", {"Retry-After": "3600"})
        return Reply(
            200, page(f"Story {path}", texts[path], "en"), {"Content-Type": "text/html; charset=utf-8"}
        )

    server = LocalServer({})
    server.routes.update({f"/held{n}": route for n in range(RETRY_PAGES + 20)})
    server.routes.update(dict.fromkeys(texts, route))
    with server, HttpClient(settings.http, allow_private_networks=True) as client:
        held = [server.url(f"/held{n}").replace("127.0.0.1", "localhost") for n in range(RETRY_PAGES + 20)]
        good = [server.url(path) for path in texts]
        # The held host's pages failed first, so they are the longest due.
        for offset, url in enumerate([*held, *good]):
            repo.record_failure(
                session,
                stage="page",
                target=url,
                error="timed out",
                permanent=False,
                retry_after=timedelta(minutes=15),
                item={"url": url},
                now=NOW + timedelta(seconds=offset),
            )
        session.commit()
        later = NOW + timedelta(hours=2)
        retried = retry_failed_pages(session, client, settings, now=later)
        # One request to the held host (which trips its breaker), then the good pages.
        assert [r.status for r in retried] == ["error"] + ["new"] * len(good)
        assert sum(1 for path in server.hits if "/held" in str(path)) == 1
        open_held = session.scalars(
            select(FetchFailure).where(
                FetchFailure.target.contains("/held"), FetchFailure.resolved_at.is_(None)
            )
        ).all()
        assert len(open_held) == len(held)  # nothing of theirs lost
        assert count(session, Article, Article.is_seed.is_(False)) == len(good)


def test_an_import_line_is_prepared_without_holding_the_writers_lock(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extraction, language detection, vectors and the classifier's verdict of an import
    line are computed before the writers' lock is taken: another writer waits only for the
    look-ups and inserts. The line is still stored as a new article, with its labels."""
    import sqlite3

    from pipeline import encoder, ingest, topic_heads
    from pipeline.db.engine import upgrade_schema
    from tests.conftest import make_settings

    settings = make_settings(sqlite_url)
    engine = make_engine(settings.db_url)
    upgrade_schema(engine)
    path = sqlite_url.removeprefix("sqlite:///")
    held: dict[str, bool] = {}

    def lock_held() -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        finally:
            other.close()  # (rolls back: nothing written)
        return False

    def watched(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            held[stage] = held.get(stage, False) or lock_held()
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(ingest, "extract_page", watched("extract", ingest.extract_page))
    monkeypatch.setattr(ingest, "detect_language", watched("language", ingest.detect_language))
    monkeypatch.setattr(encoder, "embed_configured", watched("embed", encoder.embed_configured))
    monkeypatch.setattr(topic_heads, "classify_hybrid", watched("classify", topic_heads.classify_hybrid))
    monkeypatch.setattr(ingest, "classify_hybrid", watched("classify", ingest.classify_hybrid))
    lines = [
        json.dumps({"url": "https://one.example/talks", "text": BODY_EN}),
        json.dumps({"url": "https://two.example/talks", "html": page("Talks", BODY_RU, "ru").decode()}),
    ]
    with session_factory(engine)() as session:
        results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    engine.dispose()
    assert [r.status for r in results] == ["new", "new"], results
    assert results[0].watch, "labelled as before"
    assert set(held) == {"extract", "language", "embed", "classify"}, held
    assert not any(held.values()), f"the writers' lock was held while {held}"


def test_an_import_text_longer_than_a_page_may_be_is_refused(sqlite_url: str) -> None:
    """A ``text`` over ``http.max_bytes`` characters (what a page may weigh in bytes) is
    refused and recorded, as a page over the limit is; one within it is stored."""
    from pipeline.db.engine import upgrade_schema
    from tests.conftest import make_settings

    settings = make_settings(sqlite_url, http={"max_bytes": 20_000})
    engine = make_engine(settings.db_url)
    upgrade_schema(engine)
    long_text = (BODY_EN + "\n\n") * (20_000 // (len(BODY_EN) + 2) + 1)
    within = long_text[:20_000]
    lines = [
        json.dumps({"id": "long", "url": "https://n.example/long", "text": long_text}),
        json.dumps({"id": "within", "url": "https://n.example/within", "text": within}),
    ]
    with session_factory(engine)() as session:
        results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
        failures = session.scalars(select(FetchFailure.error).where(FetchFailure.stage == "import")).all()
    engine.dispose()
    assert len(long_text) > 20_000 and results["long"].status == "error"
    assert results["long"].error == "line 1: 'text' is longer than 20,000 characters (http.max_bytes)"
    assert failures == [results["long"].error]
    assert results["within"].status == "new"


def test_an_import_url_without_a_host_or_with_port_0_fails_its_line(
    session: Session, settings: Settings
) -> None:
    """URLs `feeds add` refuses are refused on an import line too, naming the field: else
    different stories under one hostless URL were stored as versions of one article."""
    lines = [
        json.dumps({"id": url, "url": url, "text": f"{BODY_EN} Story number {n}."})
        for n, url in enumerate(
            ["http://", "https:///story", "http://@/story", "http://./story", "http://n.example:0/story"]
        )
    ]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    assert {url: (r.status, r.error) for url, r in results.items()} == {
        "http://": ("error", "line 1: 'url' has no host"),
        "https:///story": ("error", "line 2: 'url' has no host"),
        "http://@/story": ("error", "line 3: 'url' has no host"),
        "http://./story": ("error", "line 4: 'url' has a host name that is not valid: '.'"),
        "http://n.example:0/story": ("error", "line 5: 'url' has port 0"),
    }
    assert count(session, Article, ~Article.is_seed) == 0


def test_a_blank_import_text_falls_back_to_html_and_one_without_letters_is_refused(
    session: Session, settings: Settings
) -> None:
    """A ``text`` of white space or invisible format characters alone is no text: the line's
    ``html`` is read instead (or the line needs one). A text with no letter or digit at all
    (emoji, punctuation) is refused: else every such text hashed as the empty text, and two
    different ones were exact copies of each other."""
    html_en = page("Talks in Beijing", BODY_EN, "en").decode()
    html_ru = page("Переговоры", BODY_RU, "ru").decode()
    lines = [
        json.dumps(
            {"id": "zero-width", "url": "https://n.example/zw", "text": "\u200b\u2060\ufeff", "html": html_en}
        ),
        json.dumps({"id": "spaces", "url": "https://n.example/sp", "text": " \n\t\u00a0", "html": html_ru}),
        json.dumps(
            {"id": "blank-only", "url": "https://n.example/blank", "text": "\u200b \u3164\u2800\ufe0f"}
        ),
        json.dumps({"id": "emoji", "url": "https://n.example/e1", "text": "\U0001f525\U0001f525 \U0001f680"}),
        json.dumps({"id": "other-emoji", "url": "https://n.example/e2", "text": "\U0001f30d \u2764\ufe0f"}),
        json.dumps({"id": "punctuation", "text": "!!! ... ???"}),
    ]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    for name, lang, body in (("zero-width", "en", BODY_EN), ("spaces", "ru", BODY_RU)):
        assert results[name].status == "new", results[name]
        stored = session.get(Article, results[name].article_id)
        assert stored is not None and stored.lang == lang and body.split(".")[0] in stored.text
        assert stored.page_hash is not None, "read from the html"
    assert results["blank-only"].error == "line 3: needs 'html' or 'text'"
    for number, name in enumerate(("emoji", "other-emoji", "punctuation"), 4):
        assert results[name].status == "error", results[name]
        assert results[name].error == f"line {number}: no text: no letters or digits"
    assert count(session, Article, ~Article.is_seed) == 2


def test_an_import_html_over_the_page_limit_is_refused_not_cut_short(sqlite_url: str) -> None:
    """An ``html`` over ``http.max_bytes`` (in UTF-8) is refused, as a fetched page over the
    limit is: cut at the limit, it was stored ending mid-word. One within the limit is read."""
    from pipeline.db.engine import upgrade_schema
    from tests.conftest import make_settings

    settings = make_settings(sqlite_url, http={"max_bytes": 20_000})
    engine = make_engine(settings.db_url)
    upgrade_schema(engine)
    html = page("Talks", BODY_EN, "en").decode()
    heavy = html.replace("</body>", "<p>" + "Сибирь " * 2500 + "</p></body>")  # (2 bytes a letter)
    size = len(heavy.encode("utf-8"))
    assert len(heavy) < 20_000 < size
    lines = [
        json.dumps({"id": "heavy", "url": "https://n.example/heavy", "html": heavy}),
        json.dumps({"id": "page", "url": "https://n.example/page", "html": html}),
    ]
    with session_factory(engine)() as session:
        results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
        failures = session.scalars(select(FetchFailure.error).where(FetchFailure.stage == "import")).all()
    engine.dispose()
    assert results["heavy"].error == (
        f"line 1: 'html' is {size:,} bytes, over the 20,000-byte limit (http.max_bytes)"
    )
    assert failures == [results["heavy"].error]
    assert results["page"].status == "new"
