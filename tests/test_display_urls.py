"""Display forms of URLs in the database: kept in step on every write, filled by the
migration for rows written before it, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from pipeline.db import repo
from pipeline.db.engine import alembic_config, make_engine, session_factory, upgrade_schema
from pipeline.db.schema import Feed
from pipeline.settings import Settings

SECRET_FEED = "https://bob:pw-7788@feeds.example.org/rss?access_token=tok-5566&lang=ru"
SHOWN_FEED = "https://REDACTED@feeds.example.org/rss?access_token=REDACTED&lang=ru"


def test_display_url_follows_every_write(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        feed, _ = repo.upsert_feed(session, SECRET_FEED)
        session.commit()
        assert feed.display_url == SHOWN_FEED
        feed.url = "https://feeds.example.org/plain"
        feed.last_error = f"HTTP 500 from {SECRET_FEED}"
        session.commit()
        failure = repo.record_failure(
            session,
            stage="feed",
            target=SECRET_FEED,
            error=f"cannot fetch {SECRET_FEED}: ConnectError",
            permanent=False,
            retry_after=None,
            feed_id=feed.id,
        )
        session.commit()
        assert failure.target == SECRET_FEED  # looked up and retried by the real URL
        assert repo.open_failure(session, "feed", SECRET_FEED) is not None
    with engine.connect() as connection:
        row = connection.execute(text("SELECT url, display_url, last_error FROM feeds")).one()
        assert row.url == row.display_url == "https://feeds.example.org/plain"
        assert row.last_error == f"HTTP 500 from {SHOWN_FEED}"
        stored = connection.execute(text("SELECT target, display_target, error FROM fetch_failures")).one()
        assert stored.target == SECRET_FEED
        assert stored.display_target == SHOWN_FEED
        assert stored.error == f"cannot fetch {SHOWN_FEED}: ConnectError"
    engine.dispose()


def test_the_migration_fills_display_forms_of_existing_rows(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    command.upgrade(alembic_config(engine), "0005")  # the revision before the display forms
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO feeds (id, url, enabled, failure_count, last_error, created_at) "
                "VALUES (1, :secret, :yes, 2, :error, :now), (2, :plain, :yes, 0, NULL, :now)"
            ),
            {
                "secret": SECRET_FEED,
                "plain": "https://tass.ru/rss/v2.xml",
                "yes": True,
                "error": f"HTTP 503 from {SECRET_FEED}",
                "now": now,
            },
        )
        connection.execute(
            text(
                "INSERT INTO articles (id, url, text, lang, first_seen_at, content_hash, is_seed, word_count) "
                "VALUES (1, :secret, 'x', 'en', :now, 'h1', :no, 1), (2, NULL, 'y', 'en', :now, 'h2', :no, 1)"
            ),
            {"secret": "https://e.org/story?id=1&key=k-9911", "now": now, "no": False},
        )
        connection.execute(
            text(
                "INSERT INTO fetch_failures (stage, target, error, permanent, attempts, "
                "first_failed_at, last_failed_at) VALUES ('feed', :secret, :error, :no, 1, :now, :now)"
            ),
            {"secret": SECRET_FEED, "error": f"timed out fetching {SECRET_FEED}", "no": False, "now": now},
        )
    upgrade_schema(engine)
    with engine.connect() as connection:
        feeds = connection.execute(text("SELECT url, display_url, last_error FROM feeds ORDER BY id")).all()
        assert [f.display_url for f in feeds] == [SHOWN_FEED, "https://tass.ru/rss/v2.xml"]
        assert feeds[0].url == SECRET_FEED
        assert feeds[0].last_error == f"HTTP 503 from {SHOWN_FEED}"
        articles = connection.execute(text("SELECT display_url FROM articles ORDER BY id")).scalars().all()
        assert articles == ["https://e.org/story?id=1&key=REDACTED", None]
        failure = connection.execute(text("SELECT target, display_target, error FROM fetch_failures")).one()
        assert failure.target == SECRET_FEED
        assert failure.display_target == SHOWN_FEED
        assert failure.error == f"timed out fetching {SHOWN_FEED}"
    with session_factory(engine)() as session:
        assert session.get(Feed, 1) is not None
    engine.dispose()
