"""`summitwatch import` of other tools' dumps: news-please JSON and JSON Feed 1.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline import cli, importers
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory, upgrade_schema
from pipeline.db.schema import Article, Feed
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "import"


@pytest.fixture
def sqlite_session(sqlite_url: str) -> Iterator[Session]:
    engine = make_engine(sqlite_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def test_formats_are_told_apart_per_record() -> None:
    assert importers.record_format({"maintext": "x", "url": "https://a.example/"}) == "news-please"
    assert importers.record_format({"id": "1", "content_text": "x"}) == "jsonfeed-item"
    assert importers.record_format({"version": "https://jsonfeed.org/version/1.1", "items": []}) == "jsonfeed"
    assert importers.record_format({"id": "1", "text": "x", "date_publish": "2026-01-01"}) == "native"


def test_news_please_fields_map_to_the_native_shape() -> None:
    line = (FIXTURES / "news-please.jsonl").read_text("utf-8").splitlines()[0]
    assert importers.to_native(json.loads(line)) == {
        "id": "https%3A%2F%2Fwire.example%2Fpos2.json",
        "url": "https://wire.example/pos2",
        "title": "Power of Siberia 2 talks resume",
        "text": "Gazprom and CNPC resumed talks on the Power of Siberia 2 pipeline in Beijing on Saturday, "
        "officials said, with the price formula still unresolved.",
        "published": "2026-11-01T18:30:00",
        "lang": "en",
    }


def test_a_json_feed_document_becomes_its_items() -> None:
    lines = list(importers.expand_lines((FIXTURES / "feed.json").read_text("utf-8").splitlines(True)))
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == ["ledger-101", "ledger-102"]
    assert records[0]["text"].startswith("Russian importers") and records[0]["lang"] == "en"
    assert records[1]["html"].startswith("<html>") and records[1]["lang"] == "zh"
    assert {r["feed"] for r in records} == {"https://ledger.example/feed.json"}
    # The same document on one line of a JSON Lines file.
    one_line = json.dumps(json.loads((FIXTURES / "feed.json").read_text("utf-8")))
    assert list(importers.expand_lines([one_line + "\n", '{"id": "x", "text": "y"}\n'])) == [
        *lines,
        '{"id": "x", "text": "y"}\n',
    ]


def test_a_json_array_file_is_split_and_broken_documents_report_per_line() -> None:
    assert list(importers.expand_lines(['[{"id": 1, "text": "a"},\n', ' {"id": 2, "text": "b"}]\n'])) == [
        '{"id": 1, "text": "a"}',
        '{"id": 2, "text": "b"}',
    ]
    assert list(importers.expand_lines(["[{broken\n", "more\n"])) == ["[{broken", "more"]


def test_import_stores_news_please_and_json_feed_articles(
    sqlite_url: str, sqlite_session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.upsert_feed(sqlite_session, "https://ledger.example/feed.json", name="Eurasia Ledger")
    sqlite_session.commit()
    results = []
    for name in ("news-please.jsonl", "feed.json"):
        assert cli.main(["--db", sqlite_url, "import", "--json", str(FIXTURES / name)]) == 0
        results += [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in results] == ["new", "new", "new", "new"], results
    assert [r["lang"] for r in results] == ["en", "ru", "en", "zh"]
    articles = {a.url: a for a in sqlite_session.scalars(select(Article).where(Article.is_seed.is_(False)))}
    pos2 = articles["https://wire.example/pos2"]
    assert pos2.title == "Power of Siberia 2 talks resume" and pos2.published_at is not None
    assert pos2.published_at.isoformat() == "2026-11-01T18:30:00+00:00"
    assert articles["https://vestnik.example/yuan"].title is None
    ledger = sqlite_session.scalar(select(Feed.id).where(Feed.name == "Eurasia Ledger"))
    arctic = articles["https://ledger.example/102"]
    assert arctic.feed_id == ledger and "上海至圣彼得堡" in arctic.text
    assert arctic.published_at is not None and arctic.published_at.isoformat() == "2026-11-05T02:00:00+00:00"
    # Imported articles are searchable at once.
    found = repo.find_articles(sqlite_session, repo.ArticleFilter(text="北极航线", include_seeds=False))
    assert [f.article.url for f in found] == ["https://ledger.example/102"]


def test_a_byte_order_mark_is_dropped_at_the_start_of_every_line() -> None:
    """Files written with a byte order mark and joined with `cat` carry one at the start of
    each: every line is read without it (the second failed as "not valid JSON")."""
    import io

    one = b"\xef\xbb\xbf" + json.dumps({"id": 1, "text": "first"}).encode() + b"\n"
    two = b"\xef\xbb\xbf" + json.dumps({"id": 2, "text": "second"}).encode() + b"\r\n"
    inner = json.dumps({"id": 3, "text": "\ufeffkept inside"}).encode() + b"\n"
    lines = list(importers.Utf8Lines(io.BytesIO(one + two + inner), "joined.jsonl"))
    assert not any(line.startswith("\ufeff") for line in lines)
    records = [json.loads(raw) for _, raw in importers.numbered_records(lines)]
    assert [record["id"] for record in records] == [1, 2, 3]
    assert records[2]["text"] == "\ufeffkept inside", "only the line's own mark goes"
