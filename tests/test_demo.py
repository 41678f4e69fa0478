"""`summitwatch demo` end to end against the bundled site, checked against its ground truth."""

from __future__ import annotations

import html
import re
import socket
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from starlette.testclient import TestClient

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, CoverageChange, Feed, FetchFailure, Sighting
from pipeline.demo import run_demo
from pipeline.fixture_site import FixtureSite
from pipeline.web import create_app
from tests.conftest import make_settings
from tests.slack_server import FakeSlack
from tests.test_cli import sw

EXPECTED: dict[str, Any] = yaml.safe_load(
    (resources.files("pipeline") / "data" / "demo_site" / "expected.yaml").read_text(encoding="utf-8")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_page(session: Any) -> dict[str, Article]:
    articles = session.scalars(select(Article).where(Article.is_seed.is_(False))).all()
    return {a.url.split("/", 3)[3].split("?")[0]: a for a in articles}


@pytest.mark.slow
def test_demo_stores_the_site_as_expected(
    tmp_path: Path, airflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    settings = make_settings(f"sqlite:///{tmp_path / 'demo.db'}", digest_dir=str(tmp_path / "digests"))
    port = free_port()
    lines: list[str] = []
    progress: list[str] = []
    today = datetime.now(UTC).date()
    site = FixtureSite(today=today)  # the site as the demo serves it today
    with FakeSlack() as slack:
        # A Slack destination exported for the real installation: the demo's DAG runs
        # posted their fixture digests to it.
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real-installation")
        monkeypatch.setenv("SLACK_CHANNEL", "C0REAL")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        assert run_demo(settings, port=port, out=progress.append, today=today, result=lines.append) == 0
    assert slack.requests == [], "the demo writes its digests to files only"
    output = "\n".join(lines)
    assert "language" in output and "articles" in output
    # Progress apart from the result (the command: standard error and standard output).
    logged = "\n".join(progress)
    assert "task poll_batch[0] done" in logged, "the demo runs the real Airflow DAGs"
    assert "task deliver done" in logged
    assert "this run:" not in logged and "task deliver done" not in output
    assert lines[0].startswith("this run:")
    digests = sorted((tmp_path / "digests").iterdir())
    assert [d.name.split("-")[-1] for d in digests] == ["changes.txt", "summary.txt"]
    changes_digest = digests[0].read_text()
    if datetime.now(UTC).hour >= 8:
        # The daily summary (config/digest.yaml: the day to 07:00 UTC) holds the site's
        # newest article, from the day before.
        assert " · 0 new articles" not in digests[1].read_text()
    # The demo prints the change digest it wrote, line by line.
    for line in changes_digest.splitlines():
        assert (f"  | {line}" if line else "  |") in lines
    # The site's dates follow today, but its burst is days old: the changes are told with
    # their window's dates rather than as "the last 24 h".
    assert re.search(
        r"articles in the 24 h from \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d UTC ",
        changes_digest,
    )
    assert "in the last 24 h" not in changes_digest
    # The translated republication is folded under its original: listed once, "also in: ru".
    for pair in EXPECTED["translations"]:
        original_url = f"http://127.0.0.1:{port}/{pair['translation_of']}"
        translation_url = f"http://127.0.0.1:{port}/{pair['page']}"
        assert changes_digest.count(original_url) == 1
        assert f"also in: ru {translation_url}" in changes_digest
        assert changes_digest.count(translation_url) == 1
    # One event's reports in three languages are one story of the digest (the encoder
    # puts languages apart: stories.cross_language_similarity).
    stories = re.split(r"^Story \d+ · ", changes_digest, flags=re.MULTILINE)[1:]
    for group in EXPECTED["same_event_reports"]:
        urls = [f"http://127.0.0.1:{port}/{path}" for path in group["pages"]]
        holding = [story for story in stories if any(url in story for url in urls)]
        assert all(url in changes_digest for url in urls), "the digest lists every report"
        assert len(holding) == 1, "the reports of one event are split into stories"

    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        stored = by_page(session)
        for path, page in EXPECTED["pages"].items():
            assert path in stored, f"{path} was not stored"
            article = stored[path]
            assert article.lang == page["lang"], path
            assert article.title == page["title"], path
            assert len(article.text) > 300
            assert "cookie" not in article.text.lower(), f"{path}: footer leaked into the text"
        for pair in EXPECTED["exact_duplicates"]:
            copy, original = stored[pair["page"]], stored[pair["duplicate_of"]]
            assert copy.duplicate_of_id == original.id
        for pair in EXPECTED["translations"]:
            copy, original = stored[pair["page"]], stored[pair["translation_of"]]
            assert copy.duplicate_of_id == original.id and copy.copy_kind == "translation"
        for group in EXPECTED["same_event_reports"]:
            # Same summit, different texts: not copies of each other (a translation of
            # one of them may point at it, but no report points at another report).
            reports = {stored[path].id for path in group["pages"]}
            assert all(stored[path].duplicate_of_id not in reports for path in group["pages"])
        for case in EXPECTED["url_duplicates"]:
            article = stored[case["page"]]
            sightings = session.scalars(select(Sighting).where(Sighting.article_id == article.id)).all()
            assert len(sightings) == len(case["links"])
        # The site is gone once the demo ends: a `run` on this database must not poll it.
        demo_feeds = [f for f in session.scalars(select(Feed)) if f.url.startswith("http://127.0.0.1:")]
        assert demo_feeds and not any(f.enabled for f in demo_feeds)
        failures = session.scalars(select(FetchFailure)).all()
        assert len(failures) == len(EXPECTED["broken_items"])
        # A link to a PDF is quarantined; a page not found (404) is retried in later runs
        # (it may yet go live) and quarantined only after poll.page_retry_limit attempts.
        missing = {
            item["link"].rsplit("/", 1)[-1]
            for item in EXPECTED["broken_items"]
            if item["expect_status"] == 404
        }
        assert missing and all(f.permanent != (f.target.rsplit("/", 1)[-1] in missing) for f in failures)
        for pair in EXPECTED["near_duplicates"]:
            # The feed lists the update above the report it updates: stored oldest first,
            # the report is the original and the update points at it.
            copy, original = stored[pair["page"]], stored[pair["near_duplicate_of"]]
            assert original.duplicate_of_id is None and copy.duplicate_of_id == original.id
            assert copy.similarity is not None and 0.5 < copy.similarity < 1.0
        originals = [a for a in stored.values() if a.duplicate_of_id is None]
        expected_copies = sum(
            len(EXPECTED[key]) for key in ("exact_duplicates", "near_duplicates", "translations")
        )
        assert len(originals) == len(stored) - expected_copies
        for case in EXPECTED["date_cases"]["future_pub_date"]:
            # The feed's date is years ahead; the page's own date (its day) is used.
            article = stored[case["link"].split("/", 3)[3]]
            page_date = site.shift.moment(datetime.fromisoformat(case["page_published_at"]))
            assert article.published_at is not None and article.published_at.date() == page_date.date()
        newest = max(a.published_at for a in stored.values() if a.published_at is not None)
        assert timedelta(0) < datetime.now(UTC) - newest < timedelta(days=2, hours=1), (
            "the site's news is recent"
        )
        reported = session.scalars(select(CoverageChange).where(CoverageChange.digest_id.is_not(None))).all()
    engine.dispose()
    # The digest's sections: one per change, headed by the series' display name.
    overview = re.findall(r"^[↑↓] (.+) \((?:topic|watch item)\), (?:up|down)", changes_digest, re.MULTILINE)
    assert len(overview) == len(reported) >= 1

    # The coverage page (`summitwatch serve`, /coverage) shows the changes the digest reported.
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        coverage = client.get("/coverage")
    assert coverage.status_code == 200
    assert "No changes detected" not in coverage.text
    for change in reported:
        entry = re.search(
            rf'<li id="change-{change.series.replace(":", "-")}-\d+" class="{change.direction}">(.*?)</li>',
            coverage.text,
            re.DOTALL,
        )
        assert entry, f"{change.series} is not on the coverage page"
        shown = html.unescape(entry.group(1))
        assert f"{change.at:%Y-%m-%d %H:%M} UTC" in shown
        assert change.explanation in shown, "the same explanation, with the window's dates"
        name = re.search(r"<strong>(.+?)</strong>", shown)
        assert name and name.group(1) in overview, "the same display name as in the digest"
    # So does `summitwatch coverage`, under the same display names.
    shown = sw("coverage", db=tmp_path / "demo.db")
    printed = shown.stdout
    # The bars span the days the totals count: the history's 6-hour bins within the last 30
    # whole UTC days, two to a bar (at most 60 bars).
    assert re.search(
        r"last 30 days, since \d{4}-\d\d-\d\d 00:00 UTC \(totals and bars alike; a bar per 12 hours\)",
        shown.stderr,
    )
    bars = [
        line.split()[-1] for line in printed.splitlines() if re.match(r"^\S.* \((topic|watch):\w+\) ", line)
    ]
    assert bars and len({len(bar) for bar in bars}) == 1 and len(bars[0]) <= 60, bars
    for change in reported:
        assert f"{change.at:%Y-%m-%d %H:%M} UTC {change.direction}: {change.explanation}" in printed
    for name in overview:
        assert re.search(rf"^{re.escape(name)} \((topic|watch):\w+\) ", printed, re.MULTILINE), name

    # A second run: every feed answers 304 and nothing new is stored.
    again: list[str] = []
    run_demo(settings, port=port, out=again.append, today=today)
    assert any("0 new, 0 duplicate, 0 failed items; 6 feeds not modified" in line for line in again)
    assert len(list((tmp_path / "digests").iterdir())) == 2, "nothing is reported twice"


def test_a_demo_on_another_port_reuses_the_feeds_of_the_last_one(tmp_path: Path) -> None:
    """The site takes another port when the usual one is busy: each such run added the six
    feeds again under new URLs."""
    from pipeline.bootstrap import initialise
    from pipeline.db import repo
    from pipeline.demo import DEMO_OUTLET_PREFIX, _follow_the_site
    from pipeline.fixture_site import FixtureServer

    settings = make_settings(f"sqlite:///{tmp_path / 'ports.db'}")
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session, FixtureServer() as first, FixtureServer() as second:
        for feed in first.site.feeds:
            repo.upsert_feed(session, first.url(feed.path), outlet=DEMO_OUTLET_PREFIX + feed.outlet)
        repo.upsert_feed(session, "https://news.example/rss", outlet="News")
        session.commit()
        old = {feed.id: feed.url for feed in repo.list_feeds(session)}
        # The next run finds the usual port busy and serves the site on another.
        _follow_the_site(session, second)
        session.commit()
        now = {feed.id: feed.url for feed in repo.list_feeds(session)}
        assert set(now) == set(old), "no feed added or removed"
        assert now[max(now)] == "https://news.example/rss", "other feeds are left alone"
        assert sorted(u for u in now.values() if "127.0.0.1" in u) == sorted(
            second.url(feed.path) for feed in second.site.feeds
        )
    engine.dispose()
