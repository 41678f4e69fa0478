"""The read-only web UI (`summitwatch serve`).

Pages, filters, errors and the JSON API run through Starlette's TestClient against a
populated database on SQLite and PostgreSQL. The whole UI also runs in a real browser
(Debian's chromium through Playwright, JavaScript off) against a real uvicorn server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pipeline import cli
from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import head_revision, make_engine, session_factory
from pipeline.errors import DatabaseError
from pipeline.ingest import import_lines
from pipeline.reporting import prepare_digests
from pipeline.settings import Settings
from pipeline.web import create_app
from pipeline.web.app import web_url, when_parameter
from tests.conftest import REPO_ROOT, make_settings
from tests.optional_suites import require

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EVAL = REPO_ROOT / "tests" / "fixtures" / "classify" / "eval.jsonl"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_TITLE = '<script>alert("title")</script> Power of Siberia 2: <b>talks</b> resume'
HOSTILE_TEXT = (
    'Gazprom said on Thursday that the <img src=x onerror=alert("evidence")> Power of Siberia 2 pipeline '
    "to China would carry 50 billion cubic metres of gas a year once Moscow and Beijing agree on a price.\n\n"
    "Vladimir Putin and Xi Jinping discussed the route across Mongolia when they met in Beijing, "
    "and both sides said technical talks between Gazprom and CNPC would resume next month. "
    "Russian officials described the project as a pillar of the energy partnership with China."
)


@dataclass(frozen=True)
class Corpus:
    """What :func:`populate` stored: article ids by role."""

    pos2: list[int]  # Power of Siberia 2 articles, in a burst on the last day
    others: list[int]
    original: int  # has one exact copy
    copy: int
    hostile: int  # markup in its title and evidence
    changed: int  # its page changed: one earlier version


def eval_articles() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]


def populate(settings: Settings) -> Corpus:
    """Seeds, three feeds (one failing) and eval articles: a month of background coverage,
    a burst of Power of Siberia 2 coverage, an exact copy, a hostile article, a changed page."""
    initialise(settings, load_feeds=False)
    rows = eval_articles()
    pos2 = [r for r in rows if "power_of_siberia_2" in r["watch"]]
    # Near-misses are left out: these tests are about browsing, and a near-miss labelled
    # either way by the classifier (its own tests measure that) would change the filters.
    others = [r for i, r in enumerate(rows) if i % 6 == 0 and r not in pos2 and "near-miss" not in r["note"]]
    feed_names = {"en": "Eurasia Ledger", "ru": "Вестник Востока"}

    def line(row: dict[str, Any], published: datetime, **extra: Any) -> str:
        record = {
            "id": row["id"],
            "url": f"https://{row['lang']}.news.example/{row['id']}",
            "title": row["title"],
            "text": row["text"],
            "published": published.isoformat(),
        }
        if row["lang"] in feed_names:
            record["feed"] = feed_names[row["lang"]]
        return json.dumps({**record, **extra}, ensure_ascii=False)

    # The burst falls on the last day (NOW is noon), so the change is that day's whatever
    # the classifier's exact labels.
    lines = [line(r, NOW - timedelta(minutes=30 + 50 * i)) for i, r in enumerate(pos2)]
    lines += [line(r, NOW - timedelta(hours=30 + 19 * i)) for i, r in enumerate(others)]
    lines.append(line(pos2[0], NOW - timedelta(hours=1), id="copy", url="https://mirror.example/pos2-copy"))
    lines.append(
        json.dumps(
            {
                "id": "hostile",
                "url": "https://hostile.example/pos2",
                "title": HOSTILE_TITLE,
                "text": HOSTILE_TEXT,
                "published": (NOW - timedelta(hours=2)).isoformat(),
            }
        )
    )
    lines.append(json.dumps({"id": "broken", "url": "https://n.example/empty"}))  # an open failure
    changed = others[0]
    lines.append(line(changed, NOW - timedelta(hours=30), text=changed["text"] + "\n\nCorrection: updated."))

    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            repo.extend_history(session, NOW - timedelta(days=30))
            ledger, _ = repo.upsert_feed(
                session, "https://ledger.example/rss.xml", name="Eurasia Ledger", outlet="Eurasia Ledger"
            )
            ledger.lang, ledger.last_status = "en", 200
            ledger.last_polled_at, ledger.next_poll_at = (
                NOW - timedelta(minutes=10),
                NOW + timedelta(minutes=5),
            )
            repo.upsert_feed(session, "https://vestnik.example/rss", name="Вестник Востока", lang="ru")
            broken, _ = repo.upsert_feed(session, "https://broken.example/feed.xml", name="Broken Wire")
            broken.failure_count, broken.last_status = 3, 503
            broken.last_error = "HTTP 503 from https://broken.example/feed.xml <Service Unavailable>"
            broken.last_polled_at, broken.next_poll_at = NOW - timedelta(hours=1), NOW + timedelta(hours=2)
            session.commit()
            results = list(import_lines(session, settings, lines, source="web-test", now=NOW))
    finally:
        engine.dispose()
    ids = {r.input_id: r.result.article_id for r in results}
    statuses = {r.input_id: r.result.status for r in results}
    assert statuses["copy"] == "duplicate" and statuses["hostile"] == "new", statuses
    assert statuses["broken"] == "error"
    assert all(ids[r["id"]] for r in pos2 + others)
    return Corpus(
        pos2=[ids[r["id"]] for r in pos2],
        others=[ids[r["id"]] for r in others],
        original=ids[pos2[0]["id"]],
        copy=ids["copy"],
        hostile=ids["hostile"],
        changed=ids[changed["id"]],
    )


@contextmanager
def web_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=lambda: NOW), base_url="http://localhost") as client:
        yield client


def ids_on_page(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/articles/(\d+)">details', html)]


# Fast tests: TestClient, SQLite and PostgreSQL ------------------------------------------------


def test_article_list_filters_and_pages(settings: Settings) -> None:
    corpus = populate(settings)
    with web_client(settings) as client:
        home = client.get("/")
        assert home.status_code == 200
        assert home.headers["content-type"].startswith("text/html")
        listed = ids_on_page(home.text)
        assert len(listed) == 20, "the CLI's default page size"
        assert corpus.copy not in listed, "copies are folded into their original"
        assert 'class="badge watch"' in home.text and 'class="badge topic"' in home.text
        assert "Eurasia Ledger" in home.text, "the outlet of the feed"
        listed = client.get("/articles").text
        assert listed.count("details #") == 20, "/articles is the same page"
        assert listed.count('<div class="title" dir="auto">') == 20

        # The copy shows on its original's row, and as a row of its own with duplicates=1.
        pos2 = client.get("/articles", params={"watch": "power_of_siberia_2"}).text
        assert set(ids_on_page(pos2)) == {*corpus.pos2, corpus.hostile}
        assert f'href="/articles/{corpus.original}#copies">+1 copy</a>' in pos2
        with_copies = client.get("/articles", params={"watch": "power_of_siberia_2", "duplicates": "1"})
        assert corpus.copy in ids_on_page(with_copies.text)
        assert f'copy of <a href="/articles/{corpus.original}">' in with_copies.text
        # The form's selections survive the round trip.
        assert '<option value="power_of_siberia_2" selected>Power of Siberia 2</option>' in pos2
        assert '<option value="taiwan_asia">Taiwan &amp; Asia</option>' in pos2, "display names from config"

        # Filters combine; an empty form field means "any".
        english = client.get("/", params={"topic": "energy", "lang": "en", "watch": "", "q": ""})
        assert english.status_code == 200
        for article_id in ids_on_page(english.text):
            detail = client.get(f"/articles/{article_id}").text
            assert "badge topic" in detail and ">en" in detail
        since = client.get("/", params={"since": (NOW - timedelta(days=1)).date().isoformat()})
        assert set(ids_on_page(since.text)) >= set(corpus.pos2)
        assert not set(ids_on_page(since.text)) & set(corpus.others[3:])
        assert ids_on_page(client.get("/", params={"q": "Mongolia"}).text)
        assert not ids_on_page(client.get("/", params={"q": "no such words at all"}).text)
        seeds = client.get("/", params={"seeds": "1", "limit": "200"}).text
        assert seeds.count(">seed<") == 5

        # Pages are consecutive slices of the same ordering, with links between them.
        first = client.get("/", params={"limit": "3"}).text
        second = client.get("/", params={"limit": "3", "page": "2"}).text
        six = ids_on_page(client.get("/", params={"limit": "6"}).text)
        assert ids_on_page(first) + ids_on_page(second) == six
        assert 'href="?limit=3&amp;page=2"' in first
        assert 'href="?limit=3"' in second and 'href="?limit=3&amp;page=3"' in second
        last = client.get("/", params={"watch": "power_of_siberia_2", "limit": "200"}).text
        assert "Older" not in last

        # An export holds the whole result; an empty limit field is no limit, as elsewhere.
        every = client.get("/articles", params={"format": "jsonl"}).text.splitlines()
        assert len(every) > 20
        assert len(client.get("/articles", params={"format": "jsonl", "limit": ""}).text.splitlines()) == len(
            every
        )
        assert len(client.get("/articles", params={"format": "jsonl", "limit": "3"}).text.splitlines()) == 3


def test_no_page_links_past_the_deepest_page_allowed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More matches than can be paged through: the deepest page links no deeper page, which
    would be refused, and says to narrow the list (MAX_WINDOW made small for the test)."""
    populate(settings)
    monkeypatch.setattr("pipeline.web.app.MAX_WINDOW", 6)
    with web_client(settings) as client:
        first = client.get("/articles", params={"limit": "3"}).text
        assert 'rel="next" href="?limit=3&amp;page=2"' in first and "narrow the list" not in first
        deepest = client.get("/articles", params={"limit": "3", "page": "2"})
        assert deepest.status_code == 200 and len(ids_on_page(deepest.text)) == 3
        assert 'rel="next"' not in deepest.text and "Older" not in deepest.text
        assert "Only the first 6 matches can be paged through: narrow the list" in deepest.text
        assert client.get("/articles", params={"limit": "3", "page": "3"}).status_code == 400
        assert (
            client.get("/api/articles", params={"limit": "3"}).json()["next"]
            == "/api/articles?limit=3&page=2"
        )
        assert client.get("/api/articles", params={"limit": "3", "page": "2"}).json()["next"] is None


def test_moments_before_the_year_1000_make_links_that_work(settings: Settings) -> None:
    """strftime's "%Y" wrote the year 999 as "999": the next page's link and the form's
    value were then refused (400)."""
    assert when_parameter(datetime(999, 5, 1, tzinfo=UTC)) == "0999-05-01T00:00:00Z"
    assert when_parameter(datetime(1, 1, 1, 0, 0, 0, 5, tzinfo=UTC)) == "0001-01-01T00:00:00.000005Z"
    populate(settings)
    with web_client(settings) as client:
        first = client.get("/api/articles", params={"since": "0999-05-01T00:00Z", "limit": "1"}).json()
        assert first["next"] and "0999-05-01T00%3A00%3A00Z" in first["next"]
        assert client.get(first["next"]).status_code == 200
        page = client.get("/articles", params={"since": "0999-05-01T00:00Z", "limit": "1"}).text
        assert 'value="0999-05-01T00:00:00"' in page
        nxt = re.search(r'rel="next" href="([^"]+)"', page)
        assert nxt is not None
        assert client.get("/articles" + nxt.group(1).replace("&amp;", "&")).status_code == 200


def test_api_returns_what_the_cli_prints(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = populate(settings)
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(REPO_ROOT / "config"))
    cases: list[dict[str, str]] = [
        {},
        {"watch": "power_of_siberia_2"},
        {"topic": "energy", "lang": "en"},
        {"watch": "power_of_siberia_2", "duplicates": "1"},
        {"q": "Mongolia", "since": "2026-11-01"},
        {"seeds": "1", "limit": "50"},
    ]
    with web_client(settings) as client:
        for params in cases:
            response = client.get("/api/articles", params=params)
            assert response.status_code == 200, params
            assert response.headers["content-type"] == "application/json"
            body = response.json()
            argv = ["--db", settings.db_url, "articles", "--json"]
            for name, value in params.items():
                argv += [f"--{name}"] if name in ("duplicates", "seeds") else [f"--{name}", value]
            assert cli.main(argv) == 0
            printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert body["articles"] == printed, params
        everything = client.get(
            "/api/articles", params={"watch": "power_of_siberia_2", "limit": "200"}
        ).json()
        assert {a["id"] for a in everything["articles"]} == {*corpus.pos2, corpus.hostile}
        assert everything["next"] is None
        paged = client.get("/api/articles", params={"limit": "2"}).json()
        assert paged["page"] == 1 and paged["limit"] == 2
        assert paged["next"] == "/api/articles?limit=2&page=2"
        assert len(client.get(paged["next"]).json()["articles"]) == 2
        original = next(a for a in everything["articles"] if a["id"] == corpus.original)
        assert original["copies"] == [
            {
                "id": corpus.copy,
                "url": "https://mirror.example/pos2-copy",
                "lang": "en",
                "copy_kind": "exact",
                "similarity": 1.0,
            }
        ]
        assert original["watch"][0]["item"] == "power_of_siberia_2" and original["watch"][0]["evidence"]


def test_the_language_filter_takes_a_code_in_any_spelling_as_the_cli_does(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(settings)
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(REPO_ROOT / "config"))
    with web_client(settings) as client:
        for given, code in (("EN", "en"), ("zh-CN", "zh"), ("ru_RU", "ru")):
            articles = client.get("/api/articles", params={"lang": given}).json()["articles"]
            assert articles, given
            assert articles == client.get("/api/articles", params={"lang": code}).json()["articles"]
            assert cli.main(["--db", settings.db_url, "articles", "--json", "--lang", given]) == 0
            assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == articles
            # The form and its links carry the code as stored, selected once.
            html = client.get("/articles", params={"lang": given}).text
            assert re.findall(r'<option value="([^"]*)" selected>', html) == [code, "1", "relevance"], given
            assert f'value="{given}"' not in html and f"lang={code}" in html


def test_article_coverage_and_feed_pages(settings: Settings) -> None:
    corpus = populate(settings)
    with web_client(settings) as client:
        original = client.get(f"/articles/{corpus.original}")
        assert original.status_code == 200
        html = original.text
        assert "Power of Siberia 2" in html
        # Titles and text take their direction from their own script (Arabic, Persian,
        # Hebrew, Uyghur are read right to left).
        assert '<h1 class="article-title" dir="auto">' in html
        assert re.search(r'<div class="text" lang="[a-z]+">\s*<p dir="auto">', html)
        assert '<a class="badge watch" href="/articles?watch=power_of_siberia_2"' in html
        assert html.count("<q>") >= 2, "evidence sentences for its topics and watch item"
        # Topics and watch items show their display names from config/topics.yaml.
        assert re.search(r'class="badge topic"[^>]*>Energy <span class="score">\d\.\d\d</span>', html)
        assert re.search(
            r'class="badge watch"[^>]*>Power of Siberia 2 <span class="score">\d\.\d\d</span></a>', html
        )
        assert f'href="/articles/{corpus.copy}">#{corpus.copy}</a>' in html
        assert "https://mirror.example/pos2-copy" in html
        copy = client.get(f"/articles/{corpus.copy}").text
        assert f'<a href="/articles/{corpus.original}" dir="auto">#{corpus.original}' in copy
        assert "similarity 1.00" in copy
        changed = client.get(f"/articles/{corpus.changed}").text
        assert "Earlier versions" in changed and "Correction: updated." in changed

        coverage = client.get("/coverage")
        assert coverage.status_code == 200
        assert '<svg class="sparkline"' in coverage.text
        assert coverage.text.count("<svg") == 15, "ten topics and five watch items"
        assert 'href="/articles?watch=power_of_siberia_2&amp;since=' in coverage.text
        assert "articles in the last 24 h" in coverage.text, "the change's explanation"
        assert '<rect class="up"' in coverage.text, "the burst's day is marked"
        assert client.get("/coverage", params={"days": "7"}).text.count('<rect class="') == 15 * 7

        feeds = client.get("/feeds")
        assert feeds.status_code == 200
        assert "Broken Wire" in feeds.text and '<span class="state failing">failing</span>' in feeds.text
        assert "HTTP 503 from https://broken.example/feed.xml &lt;Service Unavailable&gt;" in feeds.text
        assert f"{NOW + timedelta(hours=2):%Y-%m-%d %H:%M} UTC" in feeds.text, "next poll"
        assert "needs &#39;html&#39; or &#39;text&#39;" in feeds.text, "the open import failure"
        assert "quarantined" in feeds.text

        # A feed gone (410) and one moved for good (301, 308) say so.
        engine = make_engine(settings.db_url)
        with session_factory(engine)() as session:
            gone = repo.feed_by_url(session, "https://vestnik.example/rss")
            moved = repo.feed_by_url(session, "https://broken.example/feed.xml")
            assert gone is not None and moved is not None
            gone.gone_at, moved.moved_url = NOW, "https://broken.example/new/feed.xml?key=S3CRET"
            session.commit()
        engine.dispose()
        feeds = client.get("/feeds").text
        assert '<span class="state gone">gone (410)</span>' in feeds
        assert "moved permanently to" in feeds and "https://broken.example/new/feed.xml?key=REDACTED" in feeds
        assert "S3CRET" not in feeds

        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "schema": head_revision()}


def test_article_text_takes_its_direction_from_its_own_script(settings: Settings) -> None:
    """Evidence, snippets and titles quoted elsewhere are laid out by their own script, as
    titles and bodies are: an Arabic sentence in a left-to-right line had its full stop at
    the wrong end."""
    corpus = populate(settings)
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            prepare_digests(session, settings, "file", now=NOW)
            digest_id = session.execute(text("SELECT min(id) FROM digests")).scalar_one()
            session.commit()
    finally:
        engine.dispose()
    with web_client(settings) as client:
        original = client.get(f"/articles/{corpus.original}").text
        assert original.count('<li dir="auto"><q>') == original.count("<q>") >= 2
        copy = client.get(f"/articles/{corpus.copy}").text
        assert f'<a href="/articles/{corpus.original}" dir="auto">#{corpus.original} ' in copy
        found = client.get("/articles", params={"q": "Mongolia"}).text
        assert found.count('<p class="snippet" dir="auto">') == found.count('class="snippet"') >= 1
        digest = client.get(f"/digests/{digest_id}").text
        listed = re.findall(r'<li><a href="/articles/\d+"( dir="auto")?>', digest)
        assert listed and all(listed), listed


def test_a_copy_names_an_untitled_original_by_its_opening_words(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    lines = [
        json.dumps({"id": name, "url": f"https://{name}.example/pos2", "text": HOSTILE_TEXT.split("\n\n")[1]})
        for name in ("original", "copy")
    ]
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            ids = {
                r.input_id: r.result.article_id for r in import_lines(session, settings, lines, source="t")
            }
    finally:
        engine.dispose()
    with web_client(settings) as client:
        listed = client.get("/articles", params={"duplicates": "1"}).text
        opening = "Vladimir Putin and Xi Jinping discussed the route across Mongolia when they…"
        assert f">{opening}</a>" in listed, "the lists' name for it"
        copy = client.get(f"/articles/{ids['copy']}").text
        assert f'<a href="/articles/{ids["original"]}" dir="auto">#{ids["original"]} {opening}</a>' in copy
        assert "(untitled)" not in copy


def test_a_copy_separated_by_hand_is_shown_as_an_original(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = populate(settings)
    argv = ["--db", settings.db_url, "unlink", str(corpus.copy), "--reason", "<b>own</b> rewrite", "--json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {
        "article_id": corpus.copy,
        "was_copy_of": corpus.original,
        "copy_kind": "exact",
        "restored_copy_ids": [],
    }
    assert cli.main(argv[:4]) == 1  # not a copy any more
    assert f"article {corpus.copy} is not a copy" in capsys.readouterr().err
    with web_client(settings) as client:
        page = client.get(f"/articles/{corpus.copy}").text
        assert f'Separated by hand from <a href="/articles/{corpus.original}">#{corpus.original}</a>' in page
        assert "&lt;b&gt;own&lt;/b&gt; rewrite" in page and "<b>own</b>" not in page
        assert "do not count as new coverage" not in page
        original = client.get(f"/articles/{corpus.original}").text
        assert f'href="/articles/{corpus.copy}">#{corpus.copy}</a>' not in original
        listed = client.get("/api/articles", params={"limit": "200"}).json()["articles"]
        assert corpus.copy in [row["id"] for row in listed]  # an original: listed on its own


def test_a_copy_whose_page_changed_to_another_story_is_shown_as_an_original(settings: Settings) -> None:
    corpus = populate(settings)
    story = (
        "Fishermen in the northern port reported a record catch of herring this week. "
        "The harbour master said the boats returned early because of a storm warning."
    )
    line = json.dumps({"url": "https://mirror.example/pos2-copy", "title": "Herring", "text": story})
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            result = next(iter(import_lines(session, settings, [line], source="v2", now=NOW))).result
    finally:
        engine.dispose()
    assert result.article_id == corpus.copy and result.duplicate_of == corpus.copy
    with web_client(settings) as client:
        page = client.get(f"/articles/{corpus.copy}").text
        assert (
            f'Linked as an exact copy of <a href="/articles/{corpus.original}">#{corpus.original}</a>' in page
        )
        assert "until its page changed" in page and "do not count as new coverage" not in page


def test_hostile_titles_and_evidence_are_escaped(settings: Settings) -> None:
    corpus = populate(settings)
    with web_client(settings) as client:
        pages = [
            client.get("/", params={"watch": "power_of_siberia_2"}).text,
            client.get(f"/articles/{corpus.hostile}").text,
        ]
    for html in pages:
        assert "<script" not in html
        assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in html
        assert "<b>talks</b>" not in html and "&lt;b&gt;talks&lt;/b&gt;" in html
    detail = pages[1]
    assert "<img" not in detail
    assert "&lt;img src=x onerror=alert(&#34;evidence&#34;)&gt;" in detail
    assert re.search(r"<q>[^<]*&lt;img src=x", detail), "the evidence sentence, escaped"


def test_a_watch_item_added_to_the_config_is_served_without_a_restart(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The topic registry was read once when `serve` started: a watch item added (and
    back-filled with `reclassify`) was refused by the list and missing from the coverage
    page until a restart, while the CLI and the SQL views had it."""
    import shutil

    import yaml

    from pipeline.settings import load_settings

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(config)}, overrides={"db_url": sqlite_url})
    initialise(settings, load_feeds=False)
    topics_file = config / "topics.yaml"
    with web_client(settings) as client:
        assert client.get("/api/articles?watch=arctic_route_too").status_code == 400
        registry = yaml.safe_load(topics_file.read_text(encoding="utf-8"))
        added = dict(registry["watch"]["arctic_route"], label="Arctic route, too")
        registry["watch"]["arctic_route_too"] = added
        topics_file.write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
        assert client.get("/api/articles?watch=arctic_route_too").status_code == 200
        assert "Arctic route, too" in client.get("/coverage").text
        # A file left invalid mid-edit: the last good registry is kept, nothing fails.
        topics_file.write_text("watch: [unclosed", encoding="utf-8")
        assert client.get("/api/articles?watch=arctic_route_too").status_code == 200
        assert client.get("/coverage").status_code == 200


def test_a_bad_parameter_is_named_but_not_repeated_at_length(settings: Settings) -> None:
    """A crafted link cannot make the UI's own message say a sentence of its choosing: a bad
    value is quoted to its first 40 characters, without bidirectional controls."""
    from urllib.parse import quote

    initialise(settings, load_feeds=False)
    planted = "Your session has expired. Call the security desk at +1 555 0100 now to restore access."
    with web_client(settings) as client:
        for name in ("topic", "watch", "lang", "sort", "since", "page", "duplicates", "format"):
            for value in (planted, "\u202e" + planted):
                page = client.get(f"/articles?{name}={quote(value)}")
                assert page.status_code == 400, (name, page.text)
                api = client.get(f"/api/articles?{name}={quote(value)}")
                message = api.json()["error"]
                assert api.status_code == 400 and "Your session has expired. Call the secu" in message, (
                    message
                )
                assert "security desk" not in message and "restore access" not in message, message
                assert "\u202e" not in message
                assert "restore access" not in page.text and "\u202e" not in page.text


def test_bad_requests_unknown_ids_and_read_only(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    with web_client(settings) as client:
        bad = {
            "topic=sports": "unknown topic 'sports'; topics: diplomacy, energy",
            "watch=pipelines": "unknown watch item 'pipelines'; watch items: arctic_route",
            "since=yesterday": "since: not a date or a moment: 'yesterday' (use YYYY-MM-DD or YYYY-MM-DDTHH:MM",
            "since=2026-02-30": "since: not a date",
            "until=2026-11-01T25:00": "until: not a date or a moment",
            "since=9999-12-31T23:59%2B-5:00": "since: not a date or a moment",
            # A moment past year 9999 in UTC: said so, as the CLI says it.
            "until=9999-12-31T23:00-05:00": "until: out of range: '9999-12-31T23:00-05:00' is not between",
            "page=two": "page: not a whole number: 'two'",
            "page=0": "page: must be between 1",
            "limit=100000": "limit: must be between 1 and 200",
            "duplicates=maybe": "duplicates: expected 1 or 0",
            "lang=%3Cscript%3E": "lang: not a language code",
            # Only codes the language detector gives: no article could have another.
            "lang=Russian": "lang: not a language code the detector gives: 'Russian' (e.g. en, ru, zh",
            "lang=xx": "lang: not a language code the detector gives: 'xx'",
            "page=4000&limit=200": "too deep",
            # Over 4,300 digits Python refuses to convert: refused before that, not a 500.
            "page=1" + "0" * 4300: "page: must be between 1",
            "feed=a%00b": "feed: control characters are not allowed",
        }
        for query, message in bad.items():
            page = client.get(f"/articles?{query}")
            assert page.status_code == 400, query
            assert page.headers["content-type"].startswith("text/html")
            assert message.replace("'", "&#39;") in page.text, (query, page.text)
            api = client.get(f"/api/articles?{query}")
            assert api.status_code == 400
            assert message in api.json()["error"]
        assert client.get("/coverage?days=x").status_code == 400
        assert client.get("/coverage?days=0").status_code == 400
        # As far back as `coverage --days` counts (it was capped at 365 here, 730 there).
        coverage = client.get("/coverage?days=500")
        assert coverage.status_code == 200
        assert 'name="days" value="500" min="1" max="730"' in coverage.text, "the form allows as much"
        assert client.get("/coverage?days=731").status_code == 400

        missing = client.get("/articles/999999")
        assert missing.status_code == 404 and "There is no article 999999." in missing.text
        assert client.get("/articles/99999999999999999999").status_code == 404
        assert client.get("/articles/1" + "0" * 5000).status_code == 404
        assert client.get("/digests/1" + "0" * 5000).status_code == 404
        # The last day there is: everything up to it, no day after it to compute.
        assert client.get("/articles?until=9999-12-31").status_code == 200
        assert client.get("/api/articles?until=9999-12-31").status_code == 200
        assert client.get("/api/articles?since=0001-01-01").status_code == 200
        assert client.get("/api/articles?lang=EN-gb").status_code == 200
        assert client.get("/articles/abc").status_code == 404
        assert client.get("/nowhere").status_code == 404
        assert client.get("/api/nowhere").json() == {"error": "Not Found"}

        # Read-only: GET and HEAD only, everywhere.
        assert client.head("/").status_code == 200
        for path in ("/", "/articles", "/articles/1", "/api/articles", "/coverage", "/feeds", "/healthz"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                response = client.request(method, path)
                assert response.status_code == 405, (method, path)
                assert "GET" in response.headers["allow"]

        # Everything is served from here: one local stylesheet, no scripts, a strict CSP.
        home = client.get("/")
        assert "<script" not in home.text
        assert re.findall(r'(?:href|src)="(?:https?:)?//', home.text) == []
        assert '<link rel="stylesheet" href="/static/style.css">' in home.text
        css = client.get("/static/style.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "url(" not in css.text and "@import" not in css.text
        # A word wider than its column breaks (test_a_very_long_word_stays_in_its_column).
        assert re.search(
            r"\.text p,[^{]* p\.snippet, ul\.evidence li[^{]*\{ overflow-wrap: anywhere; \}", css.text
        )
        policy = home.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert home.headers["x-content-type-options"] == "nosniff"
        assert missing.headers["content-security-policy"] == policy


def test_digest_links_open_the_article_list(settings: Settings) -> None:
    """The digest links to {web_base_url}/articles?watch=…&since=…; those pages list the burst."""
    corpus = populate(settings)
    linked = settings.model_copy(update={"web_base_url": "http://localhost"})
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            digests = prepare_digests(session, linked, "file", now=NOW, dry_run=True)
            session.rollback()
    finally:
        engine.dispose()
    links = sorted({link for d in digests for link in re.findall(r"All articles: (\S+)", d.text)})
    assert any("watch=power_of_siberia_2" in link for link in links), links
    with web_client(settings) as client:
        for link in links:
            page = client.get(link)
            assert page.status_code == 200, link
            assert "details #" in page.text, link
        pos2 = next(link for link in links if "watch=power_of_siberia_2" in link)
        assert corpus.original in ids_on_page(client.get(pos2).text)


def test_a_window_between_two_moments_lists_its_articles_only(settings: Settings) -> None:
    """A change's window need not start or end at midnight UTC: its link carries the two
    moments, and the list holds what was published between them, as the CLI's filters."""
    from pipeline.web.app import window_query

    corpus = populate(settings)
    start, end = NOW - timedelta(hours=3), NOW - timedelta(hours=1)  # 09:00 to 11:00 UTC
    link = window_query("watch", "power_of_siberia_2", start, end)
    assert link == (
        "?watch=power_of_siberia_2&since=2026-11-20T09%3A00%3A00Z&until=2026-11-20T10%3A59%3A59.999999Z"
    )
    # A window of whole days is written as days.
    assert window_query("topic", "energy", NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)) == (
        "?topic=energy&since=2026-11-20&until=2026-11-20"
    )
    with web_client(settings) as client:
        # Every article of the window, whatever its labels: the burst's 10:40, 09:50 and
        # 09:00 articles and the hostile one at 10:00 (the copy at 11:00 is folded anyway).
        window = {name: value for name, value in parse_qsl(link[1:]) if name != "watch"}
        listed = set(ids_on_page(client.get("/articles", params=window).text))
        assert listed == {*corpus.pos2[1:4], corpus.hostile}
        # The same moments with an offset, and the form shows them to the second, in UTC.
        shifted = client.get(
            "/articles",
            params={"since": "2026-11-20T12:00:00+03:00", "until": "2026-11-20T13:59:59.999999+03:00"},
        )
        assert set(ids_on_page(shifted.text)) == listed
        assert 'type="datetime-local" name="since" value="2026-11-20T09:00:00"' in shifted.text
        # The offset typed into the address bar as it reads: its "+" unencoded, which a
        # query string takes for a space.
        typed = client.get("/articles?since=2026-11-20T12:00+03:00&until=2026-11-20T13:59:59.999999+0300")
        assert typed.status_code == 200, typed.text
        assert set(ids_on_page(typed.text)) == listed


def test_app_connects_only_when_started(tmp_path: Path) -> None:
    """Creating the app touches nothing; starting it on an empty database fails clearly."""
    path = tmp_path / "never.db"
    settings = make_settings(f"sqlite:///{path}")
    app = create_app(settings)
    assert isinstance(app, Starlette)
    assert not path.exists()
    with pytest.raises(DatabaseError, match=r"run `summitwatch init` first"):
        with TestClient(app, base_url="http://localhost"):
            pass


def test_only_web_addresses_become_links() -> None:
    assert web_url("https://news.example/a?b=1") == "https://news.example/a?b=1"
    assert web_url("http://news.example/") == "http://news.example/"
    for hostile in (
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "//evil.example/",
        "https://",
        "",
        None,
    ):
        assert web_url(hostile) is None, hostile


# The serve command --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summitwatch(db: Path, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }
    script = str(Path(sys.executable).parent / "summitwatch")
    return subprocess.Popen(
        [script, "--db", f"sqlite:///{db}", *args],
        env=environ,
        cwd=db.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_serve_needs_an_initialised_database(tmp_path: Path) -> None:
    done = summitwatch(tmp_path / "empty.db", "serve", "--port", str(free_port()))
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2
    assert "run `summitwatch init` first" in stderr
    assert "Traceback" not in stderr


def test_serve_runs_uvicorn_until_interrupted(sqlite_url: str, tmp_path: Path) -> None:
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    initialise(make_settings(sqlite_url), load_feeds=False)
    port = free_port()
    server = summitwatch(db, "serve", "--port", str(port))
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok", "schema": head_revision()}
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/" in stderr
    assert "Application shutdown complete" in stderr


def test_serve_stops_in_one_line_on_an_address_it_cannot_listen_on(sqlite_url: str) -> None:
    """A port in use or an address not on this machine stopped only after the encoder had
    loaded (about 20 s), with uvicorn's error and shutdown lines, exit status 3."""
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    initialise(make_settings(sqlite_url), load_feeds=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, reason in (
            (("--port", str(port)), f"127.0.0.1:{port}: address already in use"),
            # (TEST-NET-1: never an address of this machine, and nothing to resolve.)
            (
                ("--host", "192.0.2.1", "--port", str(port)),
                f"192.0.2.1:{port}: cannot assign requested address",
            ),
        ):
            server = summitwatch(db, "serve", *args)
            _, stderr = server.communicate(timeout=60)
            assert server.returncode == 2, stderr
            assert stderr.splitlines() == [f"summitwatch: error: cannot listen on {reason}"]
    # An empty host (an unset variable) is every interface to getaddrinfo: refused.
    for host in ("", " "):
        server = summitwatch(db, "serve", "--host", host, "--port", "8")
        _, stderr = server.communicate(timeout=60)
        assert server.returncode == 2, stderr
        assert stderr.splitlines() == [
            "summitwatch: error: no address to listen on: give --host 127.0.0.1, or 0.0.0.0 for every interface"
        ]


# The browser test -----------------------------------------------------------------------------


@contextmanager
def running_server(app: Starlette) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free 127.0.0.1 port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", ws="none", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "the server did not stop"


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        require("chromium", f"no {CHROMIUM}")
    return CHROMIUM


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path


@pytest.mark.slow
def test_browse_in_a_real_browser(chromium: Path, sqlite_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings = make_settings(sqlite_url)
    corpus = populate(settings)
    problems: list[str] = []
    with running_server(create_app(settings, clock=lambda: NOW)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            # Everything works without JavaScript.
            context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}"))
            page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.on(
                "request",
                lambda request: None if request.url.startswith(base) else problems.append(request.url),
            )

            page.goto(f"{base}/")
            assert page.title() == "Articles · summitwatch"
            assert page.locator("table.articles tbody tr").count() == 20
            page.screenshot(path=tmp_path / "articles.png", full_page=True)

            # Filter by watch item through the form.
            page.select_option('select[name="watch"]', "power_of_siberia_2")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(re.compile(r"watch=power_of_siberia_2"))
            rows = page.locator("table.articles tbody tr")
            assert rows.count() == len(corpus.pos2) + 1
            assert rows.filter(has=page.locator(".badge.watch", has_text="Power of Siberia 2")).count() == (
                rows.count()
            )
            assert page.locator('select[name="watch"]').input_value() == "power_of_siberia_2"

            # The hostile title shows as text and runs nothing.
            hostile = page.locator("tr", has=page.locator(f'a[href="/articles/{corpus.hostile}"]'))
            assert '<script>alert("title")</script>' in hostile.locator(".title").inner_text()

            # Open an article and see its evidence.
            page.locator(f'a[href="/articles/{corpus.original}"]', has_text="details").click()
            page.wait_for_url(f"{base}/articles/{corpus.original}")
            assert "Power of Siberia 2" in page.locator("h1").inner_text()
            evidence = page.locator("ul.evidence q")
            assert evidence.count() >= 2
            assert evidence.first.is_visible()
            assert page.locator("#copies table tbody tr").count() == 1
            page.screenshot(path=tmp_path / "article.png", full_page=True)

            page.get_by_role("link", name="Coverage").click()
            page.wait_for_url(f"{base}/coverage")
            row = page.locator("#watch-power_of_siberia_2")
            assert row.locator("svg.sparkline rect").count() == 30
            assert row.locator("a.change.up").count() >= 1
            assert "articles in the last 24 h" in page.locator("ol.changes-list").inner_text()
            page.screenshot(path=tmp_path / "coverage.png", full_page=True)

            page.get_by_role("link", name="Feeds").click()
            page.wait_for_url(f"{base}/feeds")
            broken = page.locator("tr", has_text="Broken Wire")
            assert "failing" in broken.inner_text() and "HTTP 503" in broken.inner_text()
            page.screenshot(path=tmp_path / "feeds.png", full_page=True)
            context.close()
        finally:
            browser.close()
    for name in ("articles", "article", "coverage", "feeds"):
        assert_png(tmp_path / f"{name}.png")
    assert problems == []


@pytest.mark.slow
def test_a_very_long_word_stays_in_its_column(chromium: Path, sqlite_url: str) -> None:
    """A 3,000-letter word in a title and text wraps: it does not spill over the Details
    sidebar or widen the article list past the page."""
    from playwright.sync_api import sync_playwright

    settings = make_settings(sqlite_url)
    initialise(settings, load_feeds=False)
    # (Latin, as the rest of the text: a run of Cyrillic this long makes the page Russian,
    # and the evidence this test looks at would then hang on the classifier's margin.)
    word = "Siberia" * 430
    line = json.dumps(
        {
            "url": "https://long.example/word",
            "title": f"Power of Siberia 2 {word}",
            "text": f"Gazprom and CNPC signed the Power of Siberia 2 contract {word}.\n\n"
            + HOSTILE_TEXT.split("\n\n")[1],
            "published": (NOW - timedelta(hours=2)).isoformat(),
        },
        ensure_ascii=False,
    )
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            [imported] = list(import_lines(session, settings, [line], source="web-test", now=NOW))
    finally:
        engine.dispose()
    article_id = imported.result.article_id
    with running_server(create_app(settings, clock=lambda: NOW)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            # Nothing is wider than its box (the text spilled over the sidebar), nor the page
            # wider than the window (the article list's title cell grew with the word).
            spills = "boxes => !boxes.length || boxes.some(e => e.scrollWidth > e.clientWidth + 1)"
            page.goto(f"{base}/articles/{article_id}")
            for selector in ("h1", ".text p", "ul.evidence li"):
                assert page.locator(selector).evaluate_all(spills) is False, selector
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            page.goto(f"{base}/articles?q=Gazprom")
            for selector in ("td.article .title", "p.snippet"):
                assert page.locator(selector).evaluate_all(spills) is False, selector
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            context.close()
        finally:
            browser.close()


def test_digest_history_shows_every_digest_its_changes_and_delivery(settings: Settings) -> None:
    corpus = populate(settings)
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            digests = prepare_digests(session, settings, "slack:#russia-china", now=NOW)
            # The same digests also queued for a second destination, already delivered there.
            session.execute(
                text(
                    "INSERT INTO digests (digest_key, destination, kind, payload, status, parts_total, "
                    "parts_sent, attempts, created_at) SELECT digest_key, 'file', kind, payload, 'sent', "
                    "parts_total, parts_total, 1, created_at FROM digests"
                )
            )
            session.execute(
                text("UPDATE digests SET attempts = 2, last_error = :e WHERE destination <> 'file'"),
                {"e": "Slack <unavailable> & retrying"},
            )
            outbox = session.execute(text("SELECT id, destination, status FROM digests ORDER BY id")).all()
            session.commit()
    finally:
        engine.dispose()
    assert digests and outbox
    with web_client(settings) as client:
        history = client.get("/digests")
        assert history.status_code == 200
        assert (
            history.text.count('class="delivery sent"') >= 1
            and history.text.count('class="delivery pending"') >= 1
        )
        assert "Slack &lt;unavailable&gt; &amp; retrying" in history.text
        first = outbox[0][0]
        detail = client.get(f"/digests/{first}")
        assert detail.status_code == 200
        assert "slack:#russia-china" in detail.text and "file" in detail.text
        # Its changes with their explanations and top articles, linked to the window's list.
        assert "<strong>Power of Siberia 2</strong>" in detail.text, "the display name from config"
        assert any(f'href="/articles/{article_id}"' in detail.text for article_id in corpus.pos2)
        windows = re.findall(r'href="(/articles\?watch=power_of_siberia_2&amp;since=[^"]+)"', detail.text)
        assert windows
        listed: set[int] = set()
        for window in windows:
            listed |= set(ids_on_page(client.get(window.replace("&amp;", "&")).text))
        # The window's articles: Power of Siberia 2 coverage of the day that changed.
        assert listed and listed <= {*corpus.pos2, corpus.hostile}, windows
        assert client.get("/digests/999999").status_code == 404


def populated_with_digests(settings: Settings) -> tuple[int, dict[str, Any]]:
    """:func:`populate`, then the digests built and queued: the changes digest's id and payload."""
    populate(settings)
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            assert prepare_digests(session, settings, "file", now=NOW)
            session.commit()
            digest_id, payload = session.execute(
                text("SELECT id, payload FROM digests WHERE kind = 'changes' ORDER BY id LIMIT 1")
            ).one()
    finally:
        engine.dispose()
    return digest_id, json.loads(payload) if isinstance(payload, str) else payload


def test_a_sent_digest_s_page_lists_the_articles_it_sent(settings: Settings) -> None:
    """Not those the window ranks first now: the ids stored with the digest, in order,
    as many as the digest listed (articles_per_change), copies counted as the digest does."""
    digest_id, payload = populated_with_digests(settings)
    listed = payload["listed"]
    assert listed and all(len(ids) <= 5 for ids in listed.values())
    with web_client(settings) as client:
        page = client.get(f"/digests/{digest_id}").text
    shown = [
        [int(i) for i in re.findall(r'<li><a href="/articles/(\d+)"', block)]
        for block in re.findall(r'<ul class="digest-articles">(.*?)</ul>', page, flags=re.S)
    ]
    assert sorted(map(sorted, shown)) == sorted(map(sorted, listed.values()))
    assert "+1 copies" not in page


def test_a_change_reads_as_the_coverage_command_has_it(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One formatting of the expected count in a change's header and its explanation, and
    the digest that reported it named and linked, as `summitwatch coverage` names it."""
    populated_with_digests(settings)
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(REPO_ROOT / "config"))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    assert cli.main(["--db", settings.db_url, "coverage"]) == 0
    told = set(re.findall(r"\(reported in digest (\d+)\)", capsys.readouterr().out))
    assert told
    with web_client(settings) as client:
        coverage = client.get("/coverage").text
        heads = re.findall(r"([\d.]+) expected(.*?)</span>\s*</div>\s*<p>.*?\(([\d.]+) expected;", coverage)
        assert heads and all(head == explained for head, _, explained in heads), heads
        linked = {re.search(r'href="/digests/(\d+)">reported in digest \1<', rest) for _, rest, _ in heads}
        assert {found.group(1) for found in linked if found} == told
        digest = client.get(f"/digests/{min(told)}").text
        heads = re.findall(r"([\d.]+) expected</span>\s*</div>\s*<p>.*?\(([\d.]+) expected;", digest)
        assert heads and all(head == explained for head, explained in heads), heads


def test_web_ui_does_not_import_the_cli() -> None:
    """The web layer and the CLI are both thin shells; what they share lives in pipeline."""
    probe = "import sys, pipeline.web.app; print(sorted(m for m in sys.modules if m == 'pipeline.cli'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_command_and_the_page_count_the_same_days_of_coverage(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coverage --days N`` and ``/coverage?days=N`` total the same bins: the N whole UTC
    days ending today, no bin before them."""
    populate(settings)
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(REPO_ROOT / "config"))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    with web_client(settings) as client:
        for days in (1, 2, 7):
            page = client.get("/coverage", params={"days": str(days)}).text
            shown = {
                name.replace("-", ":", 1): int(total)
                for name, total in re.findall(
                    r'<tr id="([a-z]+-[a-z0-9_]+)">.*?: (\d+) articles in \d+ days', page, re.DOTALL
                )
            }
            assert len(shown) == 15
            assert cli.main(["--db", settings.db_url, "coverage", "--json", "--days", str(days)]) == 0
            printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            totals = {line["series"]: sum(count for _, count in line["bins"]) for line in printed}
            assert totals == shown, days
            first = min(datetime.fromisoformat(start) for line in printed for start, _ in line["bins"])
            assert first == datetime.combine(NOW.date() - timedelta(days=days - 1), datetime.min.time(), UTC)
        assert shown["watch:power_of_siberia_2"] > 0
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "1"]) == 0
    assert "last 1 day, since 2026-11-20 00:00 UTC" in capsys.readouterr().err


def test_the_coverage_page_keeps_its_detection_and_still_counts_what_arrives(settings: Settings) -> None:
    """The page keeps the changes it detected between requests, so asking again shows the
    same page; an article stored meanwhile is counted at the next request, not later."""
    populate(settings)

    def pos2_total(page: str) -> int:
        found = re.search(r'<tr id="watch-power_of_siberia_2">.*?: (\d+) articles in \d+ days', page, re.S)
        assert found, page[:500]
        return int(found.group(1))

    line = {
        "id": "late",
        "url": "https://late.example/pos2",
        "title": "Gazprom and CNPC agree the gas price for the Power of Siberia 2 pipeline",
        "text": (
            "Gazprom and China National Petroleum Corporation agreed the price formula for gas "
            "delivered through the Power of Siberia 2 pipeline across Mongolia, the company said on "
            "Thursday. The line will carry 50 billion cubic metres a year from the Yamal fields once "
            "built, and construction of the Mongolian section is to start next spring, according to "
            "the statement, which did not give the price."
        ),
        "published": (NOW - timedelta(hours=3)).isoformat(),
    }
    with web_client(settings) as client:
        first = client.get("/coverage", params={"days": "1"}).text
        assert client.get("/coverage", params={"days": "1"}).text == first
        engine = make_engine(settings.db_url)
        try:
            with session_factory(engine)() as session:
                [stored] = import_lines(session, settings, [json.dumps(line)], source="late", now=NOW)
        finally:
            engine.dispose()
        assert stored.result.status == "new"
        assert "power_of_siberia_2" in [hit.item for hit in stored.result.watch]
        assert pos2_total(client.get("/coverage", params={"days": "1"}).text) == pos2_total(first) + 1


def test_a_request_naming_another_host_is_refused(settings: Settings) -> None:
    """No login, so the UI answers only to its own names: a page that rebinds its own name
    to this machine (DNS rebinding) gets 400, while addresses, localhost, this machine's
    name, the name it listens on and the base URL's host are served."""
    populate(settings)
    named = settings.model_copy(update={"web_base_url": "https://news.example.org/summitwatch"})
    app = create_app(named, clock=lambda: NOW, hosts=["ui.internal"])
    with TestClient(app, base_url="http://localhost") as client:
        for host in (
            "127.0.0.1:8000",
            "[::1]:8000",
            "10.1.2.3",
            "LocalHost.",
            "app.localhost:8000",
            socket.gethostname(),
            "news.example.org",
            "ui.internal:8000",
        ):
            answer = client.get("/feeds", headers={"host": host})
            assert answer.status_code == 200, host
        for host in (
            "rebind.attacker.example:8000",
            "news.example.org.evil.example",
            "localhost.evil",
            "[::1",
        ):
            answer = client.get("/api/articles", headers={"host": host})
            assert answer.status_code == 400, host
            assert "Unknown host" in answer.text and "article" not in answer.text
            assert answer.headers["x-frame-options"] == "DENY"
        # A trailing-slash redirect builds its address from the header: not from another's.
        assert (
            client.get("/articles/1/", headers={"host": "evil.example"}, follow_redirects=False).status_code
            == 400
        )
    with TestClient(create_app(settings, clock=lambda: NOW), base_url="http://localhost") as client:
        assert client.get("/feeds", headers={"host": "news.example.org"}).status_code == 400


def test_stored_text_cannot_turn_the_pages_own_words_around(settings: Settings) -> None:
    """A feed's name with a right-to-left override is isolated from the words beside it, and
    each paragraph of a text takes its own direction: one Hebrew greeting at the top of an
    English article does not right-align the English paragraphs after it."""
    initialise(settings, load_feeds=False)
    name = "\u202eRLO Wire"
    mixed = [
        "שלום עליכם, said the minister as the talks opened in Beijing on Thursday morning.",
        "Russia and China signed an agreement on gas supplies through the Power of Siberia 2 "
        "pipeline, the two governments said in a joint statement after the meeting.",
        "The talks ended on Friday with a dinner for the delegations and a press conference.",
    ]
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            repo.upsert_feed(session, "https://rlo.example/feed.xml", name=name, outlet=name)
            session.commit()
            line = {
                "id": "mixed",
                "url": "https://rlo.example/mixed",
                "title": "Talks open in Beijing",
                "text": "\n\n".join(mixed),
                "published": (NOW - timedelta(hours=2)).isoformat(),
                "feed": "https://rlo.example/feed.xml",
            }
            [stored] = import_lines(session, settings, [json.dumps(line)], source="rlo", now=NOW)
    finally:
        engine.dispose()
    assert stored.result.status == "new"
    with web_client(settings) as client:
        listing = client.get("/").text
        digest_like = [listing, client.get(f"/articles/{stored.result.article_id}").text]
        for page in digest_like:
            shown = [m.start() for m in re.finditer(re.escape(name), page)]
            assert shown
            for at in shown:  # each isolated: in a <bdi>, an element with a dir, an <option>
                tag = page[page.rfind("<", 0, at) : at]
                in_bdi = page.rfind("<bdi", 0, at) > page.rfind("</bdi>", 0, at)
                assert in_bdi or tag.startswith("<option") or 'dir="auto"' in tag, tag
        detail = digest_like[1]
        body = re.search(r'<div class="text" lang="en">(.*?)</div>', detail, re.S)
        assert body, "the text's container takes no direction of its own"
        paragraphs = re.findall(r"<p([^>]*)>(.*?)</p>", body.group(1), re.S)
        assert [unescape(text) for _, text in paragraphs] == mixed
        assert all('dir="auto"' in attributes for attributes, _ in paragraphs)
