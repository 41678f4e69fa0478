"""The analyst views and example queries in sql/ work on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from pipeline.bootstrap import initialise
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import ArticleTopic
from pipeline.ingest import import_lines
from pipeline.settings import Settings
from tests.conftest import REPO_ROOT
from tests.test_reporting import pos2_articles

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_views_and_queries(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    articles = pos2_articles()[:3]
    lines = [
        json.dumps(
            {
                "url": f"https://n.example/{a['id']}",
                "title": a["title"],
                "text": a["text"],
                "published": "2026-11-02T10:00:00+00:00",
            }
        )
        for a in articles
    ]
    lines.append(json.dumps({"url": "https://copy.example/x", "text": articles[0]["text"]}))
    with session_factory(engine)() as session:
        statuses = [r.result.status for r in import_lines(session, settings, lines, source="v", now=NOW)]
    assert statuses == ["new", "new", "new", "duplicate"]
    with engine.connect() as connection:
        news = connection.execute(text("SELECT id, day, copies FROM v_news ORDER BY id")).all()
        assert len(news) == 3
        assert str(news[0].day) == "2026-11-02"
        assert sorted(row.copies for row in news) == [0, 0, 1]
        watch = connection.execute(
            text("SELECT COUNT(*) FROM v_article_watch WHERE item = 'power_of_siberia_2'")
        ).scalar_one()
        assert watch == 3
        daily = connection.execute(
            text("SELECT articles FROM v_daily_coverage WHERE series = 'watch:power_of_siberia_2'")
        ).scalar_one()
        assert daily == 3
        duplicates = connection.execute(text("SELECT copy_url, similarity FROM v_duplicates")).all()
        assert [(d.copy_url, d.similarity) for d in duplicates] == [("https://copy.example/x", 1.0)]
        for name in ("v_article_topics", "v_feed_health", "v_open_failures", "v_coverage_changes"):
            connection.execute(text(f"SELECT * FROM {name}")).all()
        queries = [
            q.strip() for q in (REPO_ROOT / "sql" / "queries.sql").read_text().split(";") if "SELECT" in q
        ]
        assert len(queries) == 5
        results = [connection.execute(text(q)).all() for q in queries]
        assert len(results[0]) == 3
    engine.dispose()


def test_an_article_dated_a_little_ahead_counts_on_one_day_everywhere(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import dated 3 hours ahead (accepted: a clock or time-zone slip) at 22:00 is on
    the day it was seen for coverage, v_daily_coverage, ``articles --since/--until`` and
    the coverage page's bar link alike: a bar of 3 opens 3 articles."""
    from starlette.testclient import TestClient

    from pipeline import cli
    from pipeline.reporting import compute_coverage
    from pipeline.web import create_app

    now = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    published = ["2026-12-06T09:00:00+00:00", "2026-12-06T12:00:00+00:00", "2026-12-07T01:00:00+00:00"]
    lines = [
        json.dumps(
            {"url": f"https://n.example/{a['id']}", "title": a["title"], "text": a["text"], "published": p}
        )
        for a, p in zip(pos2_articles()[:3], published, strict=True)
    ]
    with session_factory(engine)() as session:
        statuses = [r.result.status for r in import_lines(session, settings, lines, source="v", now=now)]
        assert statuses == ["new"] * 3
        report = compute_coverage(session, settings, now=now + timedelta(hours=1))
        session.rollback()
    by_day: dict[str, int] = {}
    for start, count in report.bins["watch:power_of_siberia_2"]:
        by_day[f"{start:%Y-%m-%d}"] = by_day.get(f"{start:%Y-%m-%d}", 0) + count
    assert {day: n for day, n in by_day.items() if n} == {"2026-12-06": 3}
    with engine.connect() as connection:
        daily = connection.execute(
            text("SELECT day, articles FROM v_daily_coverage WHERE series = 'watch:power_of_siberia_2'")
        ).all()
    engine.dispose()
    assert [(str(day), n) for day, n in daily] == [("2026-12-06", 3)]
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    argv = ["--db", settings.db_url, "articles", "--watch", "power_of_siberia_2", "--json"]
    assert cli.main([*argv, "--since", "2026-12-06", "--until", "2026-12-06"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    with TestClient(
        create_app(settings, clock=lambda: now + timedelta(hours=1)), base_url="http://localhost"
    ) as client:
        page = client.get("/coverage", params={"days": "2"}).text
        assert "2026-12-06: 3 articles" in page
        link = "/articles?watch=power_of_siberia_2&since=2026-12-06&until=2026-12-06"
        assert f'href="{link.replace("&", "&amp;")}"' in page
        listed = client.get("/api/articles" + link.removeprefix("/articles")).json()["articles"]
        assert len(listed) == 3


def test_evidence_in_the_views_reads_as_text(settings: Settings) -> None:
    """JSON columns keep Russian and Chinese as they are: psql and sqlite3 show the
    evidence of v_article_topics as sentences, not \\uXXXX escapes."""
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    text_ru = "Россия и Китай подписали соглашение о поставках газа по газопроводу."
    line = json.dumps({"url": "https://n.example/ru", "title": "Газ", "text": text_ru}, ensure_ascii=False)
    with session_factory(engine)() as session:
        [outcome] = import_lines(session, settings, [line], source="v", now=NOW)
        evidence = [text_ru, "中俄能源合作"]
        session.merge(
            ArticleTopic(article_id=outcome.result.article_id, topic="energy", score=0.9, evidence=evidence)
        )
        session.commit()
    with engine.connect() as connection:
        shown = connection.execute(
            text("SELECT CAST(evidence AS TEXT) FROM v_article_topics WHERE topic = 'energy'")
        ).scalar_one()
    engine.dispose()
    assert "\\u" not in shown and json.loads(shown) == evidence
    assert text_ru in shown
