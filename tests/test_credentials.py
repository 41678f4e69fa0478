"""Feeds with credentials in their URLs, failing and succeeding: the secrets appear nowhere
(command output, every log record, stored errors, SQL views, the web UI), while the real
URL is still what is polled and what ``feeds export-opml`` exports."""

from __future__ import annotations

import base64
import html
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline import cli
from pipeline.errors import FetchError
from pipeline.http import HttpClient
from pipeline.redaction import THIRD_PARTY_LOGGERS, RedactingFilter
from pipeline.settings import HttpSettings, load_settings
from pipeline.web import create_app
from tests.conftest import REPO_ROOT
from tests.local_server import LocalServer, Reply

USER, PASSWORD = "alice-user-77", "s3cretPW-4411"
FEED_TOKEN = "feedTOKEN-9a8b7c"
PAGE_TOKEN = "pageTOKEN-1f2e3d"
STORY_KEY = "storyKEY-5c6d7e"
REDIRECT_KEY = "redirKEY-0a0b0c"
SECRETS = (USER, PASSWORD, FEED_TOKEN, PAGE_TOKEN, STORY_KEY, REDIRECT_KEY)
STORY = (
    "Vladimir Putin and Xi Jinping met in Beijing and agreed to expand settlements in yuan and roubles. "
    "The leaders also discussed the Power of Siberia 2 pipeline and joint naval exercises in the Pacific, "
    "according to a joint statement released by both governments after the talks ended on Thursday. "
)


def rss(items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<item><title>{title}</title><link>{link.replace('&', '&amp;')}</link></item>"
        for title, link in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{entries}</channel></rss>'
    ).encode()


@dataclass
class Site:
    server: LocalServer
    feeds: dict[str, str]


@pytest.fixture
def site() -> Iterator[Site]:
    def story(_: BaseHTTPRequestHandler) -> Reply:
        html = f"<html><head><title>Summit</title></head><body><article><h1>Summit</h1><p>{STORY * 3}</p></article></body></html>"
        return Reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})

    routes = {
        "/private/feed": lambda h: Reply(500, b"down"),
        "/token/feed": lambda h: Reply(404, b"gone"),
        "/redirect/feed": lambda h: Reply(302, b"", {"Location": f"/moved/feed?api_key={REDIRECT_KEY}"}),
        "/moved/feed": lambda h: Reply(503, b"busy"),
        "/page": lambda h: Reply(500, b"page down"),
        "/story": story,
    }
    with LocalServer(routes) as server:
        items = [
            ("Broken page", server.url(f"/page?token={PAGE_TOKEN}&id=1")),
            ("Summit story", server.url(f"/story?id=2&key={STORY_KEY}")),
        ]
        server.routes["/items/feed"] = lambda h: Reply(
            200, rss(items), {"Content-Type": "application/rss+xml"}
        )
        base = server.url("")
        host = base.removeprefix("http://")
        feeds = {
            "userinfo": f"http://{USER}:{PASSWORD}@{host}/private/feed",
            "token": f"{base}/token/feed?access_token={FEED_TOKEN}&lang=en",
            "redirect": f"{base}/redirect/feed",
            "items": f"{base}/items/feed",
        }
        yield Site(server, feeds)


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (config / "feeds.yaml").write_text("feeds: []\n")
    values = {
        "SUMMITWATCH_DB_URL": f"sqlite:///{tmp_path / 'sw.db'}",
        "SUMMITWATCH_CONFIG_DIR": str(config),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "SUMMITWATCH_DIGEST_DIR": str(tmp_path / "digests"),
    }
    for name in list(os.environ):
        if name.startswith(("SUMMITWATCH_", "SLACK_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_no_secret_in_output_logs_database_views_or_web_ui(
    site: Site,
    environment: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, ours and third-party
    assert cli.main(["init"]) == 0
    for url in site.feeds.values():
        assert cli.main(["feeds", "add", url]) == 0
    cli.main(["run", "--once"])
    cli.main(["run", "--once", "--all"])  # the failing feeds fail twice
    assert cli.main(["feeds", "list"]) == 0
    assert cli.main(["feeds", "list", "--json"]) == 0
    assert cli.main(["articles", "--json"]) == 0
    assert cli.main(["articles"]) == 0
    output = capsys.readouterr()
    shown = output.out + output.err

    # The commands did what they say, with the URLs redacted.
    assert (
        f"added feed 1: http://REDACTED@{site.server.url('').removeprefix('http://')}/private/feed" in shown
    )
    assert "access_token=REDACTED&lang=en" in shown
    assert "FAILED: HTTP 500" in shown
    assert "/story?id=2&key=REDACTED" in shown
    assert leaks(shown) == []

    # Every log record, including httpx's request lines and the tracebacks.
    assert any(record.name == "httpx" for record in caplog.records)
    assert any(record.name.startswith("pipeline") for record in caplog.records)
    for record in caplog.records:
        assert leaks(record.getMessage()) == [], record.name
        assert leaks(record.exc_text or "") == []
        if record.exc_info and record.exc_info[1] is not None:
            assert leaks(str(record.exc_info[1])) == []
    assert leaks(caplog.text) == []

    # The real URLs were polled: the server saw the credentials.
    paths = [hit["path"] for hit in site.server.hits]
    assert f"/token/feed?access_token={FEED_TOKEN}&lang=en" in paths
    assert f"/moved/feed?api_key={REDIRECT_KEY}" in paths
    authorizations = [hit["headers"].get("Authorization", "") for hit in site.server.hits]
    assert f"Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}" in authorizations

    # The database keeps the real URLs, and only shows redacted ones.
    database = sqlite3.connect(environment["SUMMITWATCH_DB_URL"].removeprefix("sqlite:///"))
    with database:
        real = {row[0] for row in database.execute("SELECT url FROM feeds")}
        assert set(site.feeds.values()) <= real
        stored_errors = database.execute(
            "SELECT error, display_target FROM fetch_failures UNION ALL "
            "SELECT last_error, display_url FROM feeds UNION ALL SELECT NULL, display_url FROM articles"
        ).fetchall()
        assert len(stored_errors) >= 8
        assert any(error and "HTTP 500" in error for error, _ in stored_errors)
        assert leaks(repr(stored_errors)) == []
        views = {
            name: database.execute(f"SELECT * FROM {name}").fetchall()
            for name in ("v_feed_health", "v_open_failures", "v_news", "v_duplicates")
        }
        assert len(views["v_feed_health"]) == 4
        assert len(views["v_open_failures"]) >= 4
        assert len(views["v_news"]) == 1
        assert leaks(repr(views)) == []
    database.close()

    # The web UI: pages and the JSON API.
    settings = load_settings()
    with TestClient(create_app(settings), base_url="http://localhost") as browser:
        pages = {path: browser.get(path) for path in ("/feeds", "/articles", "/api/articles")}
        article_id = pages["/api/articles"].json()["articles"][0]["id"]
        pages["/article"] = browser.get(f"/articles/{article_id}")
        # A feed is named in a filter by the address the UI shows, its credential redacted.
        shown = re.findall(
            r'<span class="url"><a href="[^"]*"[^>]*>([^<]*access_token=REDACTED[^<]*)</a>',
            pages["/feeds"].text,
        )
        assert shown
        with sqlite3.connect(environment["SUMMITWATCH_DB_URL"].removeprefix("sqlite:///")) as database:
            [(feed_id,)] = database.execute(
                "SELECT id FROM feeds WHERE display_url = ?", (html.unescape(shown[0]),)
            ).fetchall()
        by_shown = browser.get("/api/articles", params={"feed": html.unescape(shown[0])})
        by_id = browser.get("/api/articles", params={"feed": str(feed_id)})
        assert by_shown.status_code == 200, by_shown.text
        assert by_shown.json()["articles"] == by_id.json()["articles"]
    for path, response in pages.items():
        assert response.status_code == 200, path
        assert leaks(response.text) == [], path
    assert "access_token=REDACTED" in pages["/feeds"].text
    assert "HTTP 500" in pages["/feeds"].text
    assert "key=REDACTED" in pages["/article"].text

    # Exporting is the user asking for their own data: the real URLs, as they are.
    assert cli.main(["feeds", "export-opml"]) == 0
    exported = capsys.readouterr().out
    assert PASSWORD in exported
    assert FEED_TOKEN in exported


@pytest.mark.slow
def test_verbose_run_as_a_user_runs_it_shows_no_secret(
    site: Site, environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init"]) == 0
    for url in site.feeds.values():
        assert cli.main(["feeds", "add", url]) == 0
    capsys.readouterr()
    script = str(Path(sys.executable).parent / "summitwatch")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))}
    env.update(environment)
    # A process of its own, as a user runs it: logging configured by the CLI alone.
    polled = subprocess.run(
        [script, "-v", "run", "--once"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "DEBUG" in polled.stderr  # -v logs everything, httpx and httpcore included
    assert "INFO httpx: HTTP Request: GET" in polled.stderr
    assert "REDACTED" in polled.stderr
    assert leaks(polled.stdout + polled.stderr) == []


def test_the_http_client_alone_keeps_credentials_out_of_library_logs(
    site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in an Airflow task: no CLI configured logging, yet httpx's request lines are clean."""
    # Start from loggers as a fresh process has them (earlier tests installed the filter).
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        monkeypatch.setattr(
            logger, "filters", [f for f in logger.filters if not isinstance(f, RedactingFilter)]
        )
    caplog.set_level(logging.DEBUG)
    with HttpClient(HttpSettings(), allow_private_networks=True) as client:
        for url in (site.feeds["userinfo"], site.feeds["token"], site.feeds["redirect"]):
            with pytest.raises(FetchError) as failure:
                client.get(url)
            assert leaks(str(failure.value)) == []
    request_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(request_lines) == 4  # the redirect is two requests
    assert leaks(caplog.text) == []


def test_a_bad_feed_list_does_not_echo_credentials(tmp_path: Path) -> None:
    from pipeline.errors import ConfigError
    from pipeline.feeds import load_feed_registry

    entry = (
        f"  - url: https://{USER}:{PASSWORD}@feeds.example.org/rss?access_token={FEED_TOKEN}\n"
        "    name: Wire\n    outlet: Wire\n    lang: en\n    reason: the wire service, for its summit coverage\n"
    )
    listed_twice = tmp_path / "twice.yaml"
    listed_twice.write_text("feeds:\n" + entry + entry)
    broken = tmp_path / "broken.yaml"
    broken.write_text("feeds:\n" + entry + "   oops: [\n")
    for path, expected in ((listed_twice, "is listed twice"), (broken, "cannot read feed list")):
        with pytest.raises(ConfigError, match=expected) as failure:
            load_feed_registry(path)
        assert leaks(str(failure.value)) == []
