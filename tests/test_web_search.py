"""Search in the web UI, in headless Chromium against a real uvicorn server.

English, Russian and Chinese queries typed into the search box find their inflected or
unspaced matches, with the matched original words marked; a hostile title that matches
is shown as text and runs nothing; the page requests nothing from other hosts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.bootstrap import initialise
from pipeline.db.engine import make_engine, session_factory
from pipeline.ingest import import_lines
from pipeline.settings import Settings
from pipeline.web import create_app
from tests.conftest import make_settings
from tests.test_search import fixture_articles
from tests.test_web import CHROMIUM_ARGS, assert_png, chromium, running_server  # noqa: F401

HOSTILE_TITLE = '<img src=x onerror=alert("title")> Gas pipeline <script>alert("x")</script> talks'
HOSTILE_TEXT = (
    'The <b onmouseover=alert("text")>pipeline</b> consortium met again in Ulaanbaatar; </mark><script>'
    'alert("snippet")</script> officials gave no date for the start of construction or for a price deal.'
)


def populate(settings: Settings) -> dict[str, int]:
    initialise(settings, load_feeds=False)
    lines = [
        json.dumps(
            {
                "id": a["id"],
                "url": f"https://news.example/{a['id']}",
                "title": a["title"],
                "text": a["text"],
                "lang": a["lang"],
            },
            ensure_ascii=False,
        )
        for a in fixture_articles()
    ]
    lines.append(
        json.dumps(
            {
                "id": "hostile",
                "url": "https://hostile.example/x",
                "title": HOSTILE_TITLE,
                "text": HOSTILE_TEXT,
            }
        )
    )
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            results = list(import_lines(session, settings, lines, source="web-search"))
    finally:
        engine.dispose()
    assert all(r.result.status == "new" for r in results), [r.result.error for r in results]
    return {r.input_id: r.result.article_id for r in results}


def test_search_pages_and_exports_over_http(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    ids = populate(settings)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        page = client.get("/articles", params={"q": "pipelines"})
        assert page.status_code == 200
        # The hostile snippet is escaped text; only <mark> is markup.
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text
        assert "<mark>pipeline</mark>" in page.text
        # Stable, shareable URLs: the list links to itself with every filter.
        assert 'href="/articles?q=pipelines" class="permalink"' in page.text
        exported = client.get("/articles", params={"q": "pipelines", "format": "csv", "xlang": "0"})
        assert exported.headers["content-type"].startswith("text/csv")
        # A byte order mark first, or Excel reads the UTF-8 file in the legacy code page.
        assert exported.content.startswith("\ufeffid,".encode())
        lines = exported.content.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("id,published_at") and len(lines) == 4  # header + 3 articles
        # An export takes a limit up to 5,000 rows, as documented (a page: 200).
        many = {"seeds": "1", "format": "csv", "limit": "500"}
        assert client.get("/articles", params=many).status_code == 200
        assert client.get("/articles", params={**many, "format": "jsonl", "limit": "5001"}).status_code == 400
        assert client.get("/articles", params={"limit": "500"}).status_code == 400
        # (an export starts from its first row: a page number does not make it too deep)
        assert client.get("/articles", params={**many, "limit": "5000", "page": "2"}).status_code == 200
        assert "'<img src=x" not in exported.text and "<img src=x onerror" in exported.text
        jsonl = client.get("/api/articles", params={"q": "Сибирь", "format": "jsonl", "xlang": "0"})
        records = [json.loads(line) for line in jsonl.text.splitlines()]
        assert {r["id"] for r in records} == {ids["ru-siberia"], ids["ru-siberia-record"], ids["ru-elka"]}
        assert all(r["snippet"][s:e].lower().startswith("сибир") for r in records for s, e in r["highlights"])
        # AND and NOT in capitals are operators here too.
        typed = {"q": "Путин AND Си NOT Харбин", "format": "jsonl", "xlang": "0"}
        operators = client.get("/api/articles", params=typed)
        assert [json.loads(line)["id"] for line in operators.text.splitlines()] == [ids["ru-putin"]]
        bad = client.get("/api/articles", params={"q": "-only"})
        assert bad.status_code == 400 and "only excludes" in bad.json()["error"]
        assert client.get("/articles", params={"q": "x" * 10_000}).status_code == 400
        assert client.get("/articles", params={"q": 'NEAR("a" b) OR'}).status_code == 200
        assert client.get("/digests").status_code == 200


@pytest.mark.slow
def test_search_in_a_real_browser(chromium: Path, sqlite_url: str, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    settings = make_settings(sqlite_url)
    ids = populate(settings)
    problems: list[str] = []
    with running_server(create_app(settings)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "request",
                lambda request: None if request.url.startswith(base) else problems.append(request.url),
            )

            def search(query: str) -> list[int]:
                page.goto(f"{base}/articles")
                page.fill('input[name="q"]', query)
                page.get_by_role("button", name="Filter").click()
                page.wait_for_load_state()
                links = page.locator("table.articles:not(.cross-language) tbody tr a", has_text="details")
                return [int(text.split("#")[1]) for text in links.all_inner_texts()]

            english = search("pipelines")
            assert {ids["en-pipeline"], ids["en-hockey"], ids["hostile"]} == set(english)
            assert english.index(ids["en-pipeline"]) < english.index(ids["en-hockey"])
            marks = page.locator("table.articles mark").all_inner_texts()
            assert {mark.lower() for mark in marks} == {"pipeline"}
            hostile = page.locator("tr", has=page.locator(f'a[href="/articles/{ids["hostile"]}"]'))
            assert '<script>alert("x")</script>' in hostile.locator(".title").inner_text()
            assert '<script>alert("snippet")</script>' in hostile.locator(".snippet").inner_text()
            assert page.locator("table.articles img").count() == 0
            page.screenshot(path=tmp_path / "search-en.png", full_page=True)

            assert set(search("Сибирь")) == {ids["ru-siberia"], ids["ru-siberia-record"], ids["ru-elka"]}
            assert "Сибири" in page.locator("table.articles mark").all_inner_texts()
            page.screenshot(path=tmp_path / "search-ru.png", full_page=True)

            assert search("能源合作") == [ids["zh-energy"]]
            assert {"能源", "合作"} <= set(page.locator("table.articles mark").all_inner_texts())
            page.screenshot(path=tmp_path / "search-zh.png", full_page=True)
            # The URL of a result can be shared: opening it gives the same list.
            shared = page.url
            page.goto(shared)
            assert page.locator('input[name="q"]').input_value() == "能源合作"

            # Coverage in other languages, found by meaning, marked as such.
            assert search("yuan payments") == [ids["en-yuan"]]
            other = page.locator("table.cross-language tbody tr")
            assert other.count() >= 1
            assert other.locator(".badge.xlang").count() == other.count()
            assert page.locator("table.cross-language", has_text="Расчеты в юанях растут").count() == 1
            page.screenshot(path=tmp_path / "search-xlang.png", full_page=True)

            page.goto(f"{base}/articles/{ids['en-drills']}")
            assert page.locator("#related table tbody tr").count() >= 1
            page.screenshot(path=tmp_path / "related.png", full_page=True)
            context.close()
        finally:
            browser.close()
    for name in ("search-en", "search-ru", "search-zh", "search-xlang", "related"):
        assert_png(tmp_path / f"{name}.png")
    assert problems == []
