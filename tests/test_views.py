"""The analyst views and example queries in sql/ work on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from pipeline.bootstrap import initialise
from pipeline.db.engine import make_engine, session_factory
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
