"""Schema and migrations behave the same on SQLite and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, inspect, select
from sqlalchemy.orm import Session

from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import (
    apply_views,
    current_revision,
    head_revision,
    make_engine,
    require_current_schema,
    session_factory,
    upgrade_schema,
)
from pipeline.db.schema import Article, ArticleBand, ArticleSignature, Feed, Sighting
from pipeline.errors import DatabaseError, FilterError
from pipeline.settings import Settings


def test_init_is_idempotent(settings: Settings) -> None:
    first = initialise(settings)
    assert first.revision_before is None
    assert first.revision_after == head_revision()
    assert first.seeds_added == 5
    assert first.feeds_added >= 20
    second = initialise(settings)
    assert (second.seeds_added, second.seeds_present) == (0, 5)
    assert second.feeds_added == 0
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        assert session.scalar(select(Article.id).where(~Article.is_seed).limit(1)) is None
        seeds = session.scalars(select(Article).where(Article.is_seed)).all()
        assert len(seeds) == 5
        assert len(session.scalars(select(Feed)).all()) == first.feeds_added
        assert len(session.scalars(select(Sighting)).all()) == 5
    engine.dispose()


def test_init_signs_again_what_an_older_near_duplicate_scheme_signed(settings: Settings) -> None:
    import json

    from pipeline import neardup
    from pipeline.ingest import import_lines

    initialise(settings, load_feeds=False)
    params = settings.neardup_params()
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            signed = session.scalars(select(ArticleSignature)).all()
            assert signed and all(row.scheme == params.scheme for row in signed)
            # As an older release left them: another scheme, band keys the lookup never meets.
            for row in signed:
                row.scheme = "mh1-older"
            session.execute(delete(ArticleBand))
            session.add_all(ArticleBand(band_key=-1, article_id=row.article_id) for row in signed)
            session.commit()
        lines: list[str] = []
        report = initialise(settings, load_feeds=False, progress=lines.append)
        assert report.resigned == len(signed)
        assert lines[-1] == f"near-duplicate signatures: {len(signed)} of {len(signed)} re-signed"
        with session_factory(engine)() as session:
            assert {row.scheme for row in session.scalars(select(ArticleSignature))} == {params.scheme}
            seed = session.scalar(select(Article).where(Article.is_seed).order_by(Article.id).limit(1))
            assert seed is not None
            bands = set(
                session.scalars(select(ArticleBand.band_key).where(ArticleBand.article_id == seed.id))
            )
            assert bands == set(neardup.index_of(seed.text, seed.lang, params).keys)
            # The seed is found again: a copy without its last paragraph is linked to it.
            copy = "\n\n".join(seed.text.split("\n\n")[:-1])
            line = json.dumps(
                {"id": "copy", "url": "https://copies.example/1", "title": seed.title, "text": copy}
            )
            (result,) = import_lines(session, settings, [line], source="test")
            session.commit()
            assert (result.result.status, result.result.duplicate_of) == ("duplicate", seed.id)
        assert initialise(settings, load_feeds=False).resigned == 0
    finally:
        engine.dispose()


def test_seed_html_page_becomes_clean_text(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        page = session.scalar(select(Article).where(Article.source_id == "seed:002_757e41e2329b2dfd"))
        assert page is not None
        assert page.title == "The Future According to Xi and Putin"
        assert page.url == "https://www.chinafile.com/conversation/future-according-xi-and-putin"
        assert page.published_at == datetime(2024, 5, 28, 16, 47, tzinfo=UTC)
        assert page.lang == "en"
        for junk in ("<div", "</p>", "class=", "layout:", "---", "&#38;", "views-field", "](http"):
            assert junk not in page.text
        assert "nuclear security guarantee" in page.text
        assert page.word_count > 1000
        wix = session.scalar(select(Article).where(Article.source_id == "seed:004_865bbbfa3529be1a"))
        assert wix is not None
        assert not wix.text.lower().startswith("top of page")
        assert not wix.text.lower().endswith("bottom of page")
    engine.dispose()


def test_schema_has_the_documented_tables(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"feeds", "articles", "sightings", "fetch_failures", "alembic_version"} <= tables
    article_columns = {c["name"] for c in inspect(engine).get_columns("articles")}
    assert {
        "url",
        "canonical_url",
        "title",
        "text",
        "lang",
        "published_at",
        "first_seen_at",
        "feed_id",
        "content_hash",
        "duplicate_of_id",
    } <= article_columns
    feed_columns = {c["name"] for c in inspect(engine).get_columns("feeds")}
    assert {
        "etag",
        "last_modified",
        "failure_count",
        "next_poll_at",
        "body_hash",
        "moved_url",
        "gone_at",
        "poll_finished_at",
    } <= feed_columns
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_unmigrated_database_is_a_clear_error(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    with pytest.raises(DatabaseError, match="summitwatch init"):
        require_current_schema(engine)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII"])
def test_init_refuses_a_database_not_in_utf8_before_making_anything(
    encoding: str, postgres_server_url: str, tmp_path: Path
) -> None:
    """A LATIN1 database got the schema, then init died with a traceback on the seed
    corpus's first curly quote, and later runs polled nothing without a word. A SQL_ASCII
    one crashed every command with a TypeError from the driver's first connection (its
    text came back as bytes) before anything could say why."""
    import subprocess
    import sys

    from sqlalchemy import create_engine, text

    from tests.conftest import REPO_ROOT, make_settings

    name = f"{encoding.lower()}_db"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(
            text(
                f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            )
        )
    url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with pytest.raises(DatabaseError, match=f"encoding is {encoding}; summitwatch needs UTF8"):
            initialise(make_settings(url), load_feeds=False)
        engine = make_engine(url)
        assert current_revision(engine) is None, "nothing was made"
        engine.dispose()
        script = str(Path(sys.executable).parent / "summitwatch")
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SUMMITWATCH_DB_URL": url,
            "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        }
        for command, said in (
            (["init"], f"encoding is {encoding}; summitwatch needs UTF8"),
            (["articles"], "summitwatch init"),
        ):
            done = subprocess.run([script, *command], capture_output=True, text=True, env=environment)
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("summitwatch: error:") and said in line, done.stderr
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="cannot connect") as raised:
        current_revision(engine)
    # One line: the driver goes on with a tab-indented hint on a line of its own.
    message = str(raised.value)
    assert "\n" not in message and "\t" not in message
    assert "Is the server running" in message


def test_timestamps_round_trip_as_utc(settings: Settings) -> None:
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    moment = datetime(2026, 11, 2, 5, 30, tzinfo=UTC)
    with session_factory(engine)() as session:
        feed, created = repo.upsert_feed(session, "http://news.example/feed", name="x")
        assert created
        feed.next_poll_at = moment
        session.commit()
        assert repo.due_feed_ids(session, moment) == [feed.id]
        assert repo.due_feed_ids(session, datetime(2026, 11, 2, 5, 29, tzinfo=UTC)) == []
    with session_factory(engine)() as session:
        stored = session.get(Feed, feed.id)
        assert stored is not None and stored.next_poll_at == moment
        assert stored.next_poll_at.tzinfo is not None
    engine.dispose()


def test_head_revision_read_from_the_files_is_alembics() -> None:
    from pipeline.db.engine import _alembic_head, head_revision

    assert head_revision() is not None
    assert head_revision() == _alembic_head()


def test_sqlite_connections_use_the_log_and_sync_it_at_checkpoints(tmp_path: Path) -> None:
    # WAL (readers beside a writer) with synchronous=NORMAL (1): a commit does not wait for
    # the disk; what a killed process committed survives (tests/test_faults.py kills one).
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    # The digest outbox's engines wait for the disk at every commit (FULL, 2): a part
    # recorded as posted must not be rolled back by a power cut and posted again.
    durable = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}", durable=True)
    with durable.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    durable.dispose()


def test_an_older_database_stores_no_publication_after_the_first_sighting(db_url: str) -> None:
    """Migration 0010: a row stored dated after it was first seen (ingest accepts dates a
    little ahead) takes its first sighting as its publication time, vectors included, so
    coalesce(published_at, first_seen_at) places it where coverage always did."""
    from alembic import command
    from sqlalchemy import text

    from pipeline.db.engine import alembic_config, make_engine, upgrade_schema

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0009")
    seen, ahead, before = (
        "2026-12-06 22:00:00+00:00",
        "2026-12-07 01:00:00+00:00",
        "2026-12-06 09:00:00+00:00",
    )
    with engine.begin() as connection:
        for article_id, published in ((1, ahead), (2, before), (3, None)):
            connection.execute(
                text(
                    "INSERT INTO articles (id, text, lang, content_hash, is_seed, word_count, first_seen_at, "
                    "published_at) VALUES (:id, 't', 'en', :hash, false, 1, :seen, :published)"
                ),
                {"id": article_id, "hash": f"{article_id:064d}", "seen": seen, "published": published},
            )
        connection.execute(
            text(
                "INSERT INTO article_vectors (article_id, model, lang, moment, document, sentences, "
                "sentence_count, has_title) VALUES (1, 'm', 'en', :moment, :blob, :blob, 0, false)"
            ),
            {"moment": ahead, "blob": b""},
        )
    upgrade_schema(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, published_at, first_seen_at FROM articles ORDER BY id")
        ).all()
        moment = connection.execute(text("SELECT moment FROM article_vectors")).scalar_one()
    engine.dispose()
    as_text = [(i, str(p)[:16] if p else None, str(s)[:16]) for i, p, s in rows]
    assert as_text == [
        (1, "2026-12-06 22:00", "2026-12-06 22:00"),
        (2, "2026-12-06 09:00", "2026-12-06 22:00"),
        (3, None, "2026-12-06 22:00"),
    ]
    assert str(moment)[:16] == "2026-12-06 22:00"


def test_an_older_database_s_feed_urls_take_their_one_spelling(db_url: str) -> None:
    """Migration 0011: feeds stored before URLs were normalised kept their spelling, so
    adding one again in the new spelling made a second row, and one feed stored under
    several spellings was polled once for each."""
    from alembic import command
    from sqlalchemy import text

    from pipeline.db import repo
    from pipeline.db.engine import alembic_config, make_engine, session_factory, upgrade_schema

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0010")
    stored = [
        "https://Example.COM:443/rss#top",
        "https://news.example.org",
        "https://news.example.org/",
        "http://straße.example/feed",
        "x y",
    ]
    with engine.begin() as connection:
        for feed_id, url in enumerate(stored, 1):
            connection.execute(
                text(
                    "INSERT INTO feeds (id, url, display_url, enabled, failure_count, created_at) "
                    "VALUES (:id, :url, :shown, true, 0, :now)"
                ),
                {"id": feed_id, "url": url, "shown": url, "now": "2026-12-01 00:00:00+00:00"},
            )
        connection.execute(
            text(
                "INSERT INTO articles (id, text, lang, content_hash, is_seed, word_count, first_seen_at, "
                "feed_id) VALUES (1, 't', 'en', :hash, false, 1, :now, 3)"
            ),
            {"hash": "0" * 64, "now": "2026-12-01 00:00:00+00:00"},
        )
        # Seen in the feed's two spellings (one URL twice, one once): rows 2 and 3 merge.
        for via, url in (("feed:3", "https://a/1"), ("feed:2", "https://a/1"), ("feed:3", "https://a/2")):
            connection.execute(
                text("INSERT INTO sightings (article_id, via, url, seen_at) VALUES (1, :via, :url, :now)"),
                {"via": via, "url": url, "now": "2026-12-01 00:00:00+00:00"},
            )
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        sightings = session.execute(text("SELECT via, url FROM sightings ORDER BY url")).all()
        assert [tuple(row) for row in sightings] == [("feed:2", "https://a/1"), ("feed:2", "https://a/2")]
        feeds = {feed.id: (feed.url, feed.display_url) for feed in repo.list_feeds(session)}
        # One row per feed, the oldest kept with the others' articles; IDNA 2008 keeps "ß"
        # (IDNA 2003 made it "ss": another domain); a URL that is none is left as it is.
        assert feeds == {
            1: ("https://example.com/rss", "https://example.com/rss"),
            2: ("https://news.example.org/", "https://news.example.org/"),
            4: ("http://xn--strae-oqa.example/feed", "http://xn--strae-oqa.example/feed"),
            5: ("x y", "x y"),
        }
        assert session.execute(text("SELECT feed_id FROM articles")).scalar_one() == 2
        # Adding a feed again in any spelling finds its row; so do the other look-ups.
        _, created = repo.upsert_feed(session, "HTTPS://example.com/rss")
        assert not created
        assert repo.feed_ids_named(session, "https://EXAMPLE.com/rss") == [1]
        session.commit()
        assert len(repo.list_feeds(session)) == 4
    engine.dispose()


def test_one_feed_added_by_two_processes_at_once_is_one_feed(db_url: str) -> None:
    """Two writers add the same feed at once (two `feeds import-opml` of one file, `feeds add`
    beside `init`): each looked it up, found nothing and inserted it, and the second failed
    on the unique URL ("cannot use the database: UNIQUE constraint failed: feeds.url"),
    losing every other feed of its command. The second now waits, then finds the first's."""
    import threading

    engine = make_engine(db_url)
    upgrade_schema(engine)
    factory = session_factory(engine)
    outcome: list[object] = []
    with factory() as first:
        repo.upsert_feed(first, "https://news.example/rss", name="first")

        def second() -> None:
            with factory() as session:
                try:
                    _, created = repo.upsert_feed(session, "https://news.example/rss", lang="en")
                    session.commit()
                    outcome.append(created)
                except Exception as exc:
                    outcome.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)  # (the second is under way: waiting, or past its look-up)
        first.commit()
        thread.join(60)
    try:
        assert outcome == [False], outcome
        with factory() as session:
            feeds = [(feed.url, feed.name, feed.lang) for feed in repo.list_feeds(session)]
        assert feeds == [("https://news.example/rss", "first", "en")]
    finally:
        engine.dispose()


def test_an_older_database_s_feeds_have_not_moved_nor_gone(db_url: str) -> None:
    """Migrations 0018 and 0019: a feed stored before moves and 410s were recorded is
    polled at its own URL, and is due, until a 301, 308 or 410 says otherwise."""
    from alembic import command
    from sqlalchemy import text

    from pipeline.db import repo
    from pipeline.db.engine import alembic_config, make_engine, session_factory, upgrade_schema

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0017")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO feeds (id, url, display_url, enabled, failure_count, created_at) "
                "VALUES (1, 'https://a.example/rss', 'https://a.example/rss', true, 0, :now)"
            ),
            {"now": "2026-12-01 00:00:00+00:00"},
        )
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        (feed,) = repo.list_feeds(session)
        assert (feed.moved_url, feed.display_moved_url, feed.poll_url) == (
            None,
            None,
            "https://a.example/rss",
        )
        assert feed.gone_at is None and repo.due_feed_ids(session, datetime.now(UTC)) == [1]
        feed.moved_url = "https://b.example/rss?token=S3CRET"
        session.commit()
        shown = session.execute(text("SELECT display_moved_url FROM feeds")).scalar_one()
        assert shown == "https://b.example/rss?token=REDACTED"
    engine.dispose()


def test_canonical_urls_are_stored_again_in_the_current_form_on_either_database(session: Session) -> None:
    """``init``'s re-making of canonical URLs stored by earlier rules: two rows holding each
    other's form swap without a clash, and a form longer than the column (percent-encoding
    makes a URL longer) leaves the old one instead of failing every ``init`` on PostgreSQL."""
    from sqlalchemy import text

    from pipeline.bootstrap import recanonicalise
    from pipeline.dedup import canonical_url

    urls = ["https://n.example/a", "https://n.example/b", "https://n.example/" + "ж" * 400]
    forms = [canonical_url(url) for url in urls]
    assert len(forms[2]) > 2048
    stored = [forms[1], forms[0], "https://n.example/old-form"]
    for article_id, (url, form) in enumerate(zip(urls, stored, strict=True), 1):
        session.add(
            Article(
                id=article_id, url=url, canonical_url=form, text="x", lang="en",
                content_hash=f"{article_id:064x}", is_seed=False, word_count=1,
            )
        )  # fmt: skip
    session.commit()
    assert recanonicalise(session) == 2
    session.commit()
    rows = dict(session.execute(text("SELECT id, canonical_url FROM articles ORDER BY id")).all())
    assert rows == {1: forms[0], 2: forms[1], 3: "https://n.example/old-form"}
    assert recanonicalise(session) == 0, "once per scheme"


def test_text_hashes_are_stored_again_under_the_current_folding(settings: Settings) -> None:
    """``init`` hashes stored texts again when the folding changed (an older release kept
    soft hyphens and ё in the hash): the same page imported again is not a new version of
    itself, and a copy that differs only in them is found."""
    import json

    from sqlalchemy import update

    from pipeline.bootstrap import CONTENT_HASH_SCHEME_KEY
    from pipeline.db.schema import ArticleVersion, PipelineState
    from pipeline.ingest import import_lines

    initialise(settings, load_feeds=False)
    brief = (
        "Путин и Си обсудили поставки газа по «Си\u00adле Сибири». Стороны договорились ещё раз встретиться."
    )
    line = json.dumps({"url": "https://briefs.example/1", "text": brief}, ensure_ascii=False)
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            (stored,) = import_lines(session, settings, [line], source="t")
            session.commit()
            first = stored.result.article_id
            assert first is not None
            # As an older release left them: the text's hash and a version's under the old folding.
            session.execute(update(Article).where(Article.id == first).values(content_hash="0" * 64))
            session.add(
                ArticleVersion(article_id=first, text=brief, content_hash="1" * 64, seen_at=datetime.now(UTC))
            )
            session.execute(delete(PipelineState).where(PipelineState.key == CONTENT_HASH_SCHEME_KEY))
            session.commit()
        lines: list[str] = []
        assert initialise(settings, load_feeds=False, progress=lines.append).rehashed >= 2
        assert initialise(settings, load_feeds=False).rehashed == 0, "once per scheme"
        with session_factory(engine)() as session:
            (again,) = import_lines(session, settings, [line], source="t")
            # The page it was stored from, not a new version of itself.
            assert (again.result.status, again.result.copy_kind) == ("duplicate", "exact")
            plain = brief.replace("\u00ad", "").replace("ё", "е")
            copy = json.dumps({"url": "https://briefs.example/2", "text": plain}, ensure_ascii=False)
            (found,) = import_lines(session, settings, [copy], source="t")
            session.commit()
            assert (found.result.status, found.result.duplicate_of) == ("duplicate", first)
            versions = session.scalars(select(ArticleVersion.content_hash)).all()
            assert versions == [session.get(Article, first).content_hash]  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_an_article_s_labels_come_in_the_same_order_on_either_database(session: Session) -> None:
    """Watch items came in no set order (PostgreSQL: as stored; SQLite: by slug), and topics
    of equal scores in either: the web UI and the listings showed them differently."""
    from pipeline.db.schema import ArticleTopic, ArticleWatch

    session.add(
        Article(
            id=1, url="https://n.example/a", canonical_url="https://n.example/a", text="x", lang="en",
            content_hash=f"{1:064x}", is_seed=False, word_count=1,
        )
    )  # fmt: skip
    session.flush()
    for topic, score in (("zeta", 0.8), ("mu", 0.8), ("alpha", 0.3), ("omega", 0.9)):
        session.add(ArticleTopic(article_id=1, topic=topic, score=score, evidence=[]))
    for item, score in (("delta", 0.9), ("old", None), ("bravo", 0.5), ("alpha", 0.9), ("charlie", None)):
        session.add(ArticleWatch(article_id=1, item=item, score=score, evidence=[]))
    session.commit()
    topics, watch = repo.labels_of(session, [1])[1]
    assert [t.topic for t in topics] == ["omega", "mu", "zeta", "alpha"]
    assert [w.item for w in watch] == ["alpha", "delta", "bravo", "charlie", "old"]


def test_a_feed_is_found_by_its_name_or_outlet_in_any_case_and_script(session: Session) -> None:
    """SQLite's lower() folds ASCII letters only: "РИА Новости" did not even match itself."""
    ria, _ = repo.upsert_feed(session, "https://ria.example/rss", name="РИА Новости", outlet="Россия Сегодня")
    xinhua, _ = repo.upsert_feed(session, "https://xinhua.example/rss", name="Xinhua", outlet="新华社")
    strasse, _ = repo.upsert_feed(session, "https://strasse.example/rss", name="Die Straße")
    session.commit()
    for name in ("РИА Новости", "риа новости", "РИА НОВОСТИ", "РОССИЯ сегодня"):
        assert repo.feed_ids_named(session, name) == [ria.id], name
    for name in ("新华社", "XINHUA", str(xinhua.id), "https://XINHUA.example/rss"):
        assert repo.feed_ids_named(session, name) == [xinhua.id], name
    assert repo.feed_ids_named(session, "DIE STRASSE") == [strasse.id]
    with pytest.raises(FilterError, match="no feed or outlet is called 'РИА'"):
        repo.feed_ids_named(session, "РИА")


def test_feed_names_are_stored_alike_on_both_databases_however_they_come(session: Session) -> None:
    """A name over 300 characters, or with a NUL, was stored by SQLite and refused by
    PostgreSQL ("value too long", "cannot contain NUL"), which stopped init or an OPML
    import whole; an escape reached the terminal of `feeds list`."""
    long_name = "Steppe\x00Observer \x1b[31m" + "N" * 400
    feed, created = repo.upsert_feed(
        session, "https://steppe.example/rss", name=long_name, outlet="  Steppe\tMedia\ud800 "
    )
    session.commit()
    assert created
    session.expire_all()
    stored = session.get(Feed, feed.id)
    assert stored is not None and stored.name is not None
    assert stored.name.startswith("Steppe Observer [31mNNN") and len(stored.name) == 300
    assert "\x00" not in stored.name and "\x1b" not in stored.name
    assert stored.outlet == "Steppe Media\ufffd"
    repo.upsert_feed(session, "https://steppe.example/rss", reason="paused\x00 for now\nback in May")
    session.commit()
    assert session.get(Feed, feed.id).reason == "paused for now\nback in May"  # type: ignore[union-attr]
    # Nothing left of a name is no name: the stored one stays.
    repo.upsert_feed(session, "https://steppe.example/rss", name="\x00\x07 ")
    session.commit()
    assert session.get(Feed, feed.id).name == stored.name  # type: ignore[union-attr]


def test_an_older_database_s_quarantined_digests_give_their_changes_back(db_url: str) -> None:
    """Migration 0012: earlier versions quarantined a digest on any unexpected answer (a
    proxy's page, a wrong SLACK_API_URL) and its changes stayed reported though nothing
    reached Slack. Such a digest's changes are unreported again; a superseded one's go to
    its twin; a digest begun in the channel keeps them."""
    from alembic import command
    from sqlalchemy import text

    from pipeline.db.engine import alembic_config, make_engine, upgrade_schema

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0011")
    now = "2026-12-01 00:00:00+00:00"
    digests = [
        # id, key, destination, status, parts sent
        (1, "changes:a", "slack:C1", "failed", 0),  # "Slack refused auth.test: HTTP 404"
        (2, "changes:b", "slack:#news", "failed", 0),  # superseded by 3
        (3, "changes:b", "slack:C1", "sent", 1),
        (4, "changes:c", "slack:C1", "failed", 1),  # begun in the channel
    ]
    with engine.begin() as connection:
        for digest_id, key, destination, status, sent in digests:
            connection.execute(
                text(
                    "INSERT INTO digests (id, digest_key, destination, kind, payload, status, parts_total, "
                    "parts_sent, attempts, created_at) VALUES (:id, :key, :destination, 'changes', '{}', "
                    ":status, 2, :sent, 1, :now)"
                ),
                {
                    "id": digest_id,
                    "key": key,
                    "destination": destination,
                    "status": status,
                    "sent": sent,
                    "now": now,
                },
            )
        for change_id, digest_id in ((1, 1), (2, 1), (3, 2), (4, 4)):
            connection.execute(
                text(
                    "INSERT INTO coverage_changes (id, series, at, direction, count, baseline, score, "
                    "explanation, detail, detected_at, digest_id) VALUES (:id, 'topic:energy', :at, 'up', 5, "
                    "1.0, 3.0, 'x', '{}', :now, :digest)"
                ),
                {
                    "id": change_id,
                    "at": f"2026-11-{change_id:02d} 00:00:00+00:00",
                    "now": now,
                    "digest": digest_id,
                },
            )
    upgrade_schema(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, digest_id FROM coverage_changes ORDER BY id")).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [(1, None), (2, None), (3, 3), (4, 4)]


def test_an_older_database_s_evidence_is_rewritten_as_text(db_url: str) -> None:
    """Migration 0014: evidence stored with \\uXXXX escapes is rewritten with the
    characters themselves; what it says is unchanged."""
    import json

    from alembic import command
    from sqlalchemy import text

    from pipeline.db.engine import alembic_config, upgrade_schema

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0011")
    cast = "CAST(:evidence AS json)" if engine.dialect.name == "postgresql" else ":evidence"
    evidence = {"energy": ["Россия и Китай", "中俄"], "military": ["Plain English, a \\u backslash"]}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO articles (id, text, lang, content_hash, is_seed, word_count, first_seen_at) "
                "VALUES (1, 't', 'ru', :hash, false, 1, :now)"
            ),
            {"hash": "0" * 64, "now": "2026-12-01 00:00:00+00:00"},
        )
        for topic, sentences in evidence.items():
            connection.execute(
                text(
                    f"INSERT INTO article_topics (article_id, topic, score, evidence) VALUES (1, :t, 0.9, {cast})"
                ),
                {"t": topic, "evidence": json.dumps(sentences)},
            )
        connection.execute(
            text(
                f"INSERT INTO article_watch (article_id, item, evidence) VALUES (1, 'arctic_route', {cast})"
            ),
            {"evidence": json.dumps(["Северный морской путь"])},
        )
    upgrade_schema(engine)
    with engine.connect() as connection:
        stored = dict(
            connection.execute(text("SELECT topic, CAST(evidence AS TEXT) FROM article_topics")).all()
        )
        watch = connection.execute(text("SELECT CAST(evidence AS TEXT) FROM article_watch")).scalar_one()
    engine.dispose()
    assert stored["energy"] == '["Россия и Китай", "中俄"]'
    assert {topic: json.loads(value) for topic, value in stored.items()} == evidence
    assert watch == '["Северный морской путь"]'


_KILLED_MIGRATION = """
import os, signal, sys
from alembic import command
from sqlalchemy import Engine, event, text
from pipeline.db import engine as E

url, start, marker = sys.argv[1:4]
if start != "none":
    made = E.make_engine(url)
    command.upgrade(E.alembic_config(made), start)
    with made.begin() as connection:
        connection.execute(text("INSERT INTO feeds (url, name, enabled, failure_count, created_at) VALUES ('https://a.example/rss', 'a', 1, 0, '2026-01-01 00:00:00')"))
    made.dispose()

@event.listens_for(Engine, "after_cursor_execute")
def killed(conn, cursor, statement, *args):
    if marker in statement.upper():
        os.kill(os.getpid(), signal.SIGKILL)

E.upgrade_schema(E.make_engine(url))
"""


@pytest.mark.parametrize(
    ("start", "marker"),
    [("none", "CREATE TABLE ARTICLE_SIGNATURES"), ("0015", "ADD COLUMN PAGE_HASH")],
    ids=["first-init", "upgrade"],
)
def test_a_migration_killed_halfway_leaves_a_database_the_next_init_completes(
    tmp_path: Path, start: str, marker: str
) -> None:
    """On SQLite each schema change committed on its own and the revision was recorded last:
    a process killed halfway left tables without a revision, and every later init failed
    ("table feeds already exists", "duplicate column name"). The migrations are one
    transaction: killed, nothing of them stays, and the next init completes them."""
    import signal
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MIGRATION, url, start, marker],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    engine = make_engine(url)
    try:
        assert current_revision(engine) == (None if start == "none" else start)
        before, after = upgrade_schema(engine)
        assert (before, after) == (None if start == "none" else start, head_revision())
        with Session(engine) as session:
            assert list(session.scalars(select(Feed.url))) == (
                [] if start == "none" else ["https://a.example/rss"]
            )
    finally:
        engine.dispose()


_KILLED_VIEWS = """
import os, signal, sys
from sqlalchemy import Engine, event
from pipeline.db import engine as E

url = sys.argv[1]

@event.listens_for(Engine, "after_cursor_execute")
def killed(conn, cursor, statement, *args):
    if "CREATE VIEW V_DAILY_COVERAGE" in statement.upper():
        os.kill(os.getpid(), signal.SIGKILL)

E.apply_views(E.make_engine(url))
"""


def test_views_replaced_by_an_init_killed_halfway_are_all_still_there(tmp_path: Path) -> None:
    """On SQLite each DROP VIEW and CREATE VIEW of `init` committed on its own: an analyst's
    query while `init` ran found a view gone ("no such table: v_daily_coverage"), and an
    `init` killed between them left the views after that point gone until the next one.
    They are replaced in one transaction: killed, the views are those before."""
    import signal
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'views.db'}"
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        names = apply_views(engine)
        assert "v_daily_coverage" in names
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_VIEWS, url], capture_output=True, text=True, timeout=120
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert set(names) <= set(inspect(engine).get_view_names())
        with engine.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
    finally:
        engine.dispose()


def test_an_in_memory_database_is_migrated_in_place() -> None:
    """The migrations' own engine is for a file: an in-memory database is the engine's
    own, and another engine would migrate another one."""
    from sqlalchemy.pool import StaticPool

    engine = make_engine("sqlite://", poolclass=StaticPool)
    try:
        assert upgrade_schema(engine) == (None, head_revision())
        assert "articles" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_database_url_at_fault_is_told_from_a_database_away(postgres_url: str, tmp_path: Path) -> None:
    """A missing database or a statement timeout too short is the URL's or the server
    settings' fault: the error says what to fix, where it used to say the database was
    unavailable and to run again once it was back (which changes nothing)."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    script = str(Path(sys.executable).parent / "summitwatch")
    base = postgres_url.rsplit("/", 1)[0]
    cases = [
        (f"{base}/sw_no_such_database", "create it, or fix the database name in the URL"),
        (f"{postgres_url}?options=-c%20statement_timeout%3D1", "raise statement_timeout"),
    ]
    for url, said in cases:
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SUMMITWATCH_DB_URL": url,
            "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        }
        for command in (["init"], ["articles"]):
            done = subprocess.run([script, *command], capture_output=True, text=True, env=environment)
            assert done.returncode == 2, done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("summitwatch: error:") and said in line, (command, line)
            assert "run again once it is back" not in line
