"""Translations stored as copies, through the ingest path, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.db.schema import Article, ArticleVector
from pipeline.ingest import IngestContext, import_lines, reindex_vectors
from pipeline.settings import Settings

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STORY = json.loads((Path(__file__).parent / "fixtures" / "semantic" / "story_yuan.json").read_text())


def line(key: str, *, hours: float = 0, **extra: object) -> str:
    published = (NOW + timedelta(hours=hours)).isoformat()
    record = {"id": key, "url": f"https://{key}.example/story", "title": STORY[key]["title"]}
    return json.dumps({**record, "text": STORY[key]["text"], "published": published, **extra})


def test_translations_fold_into_the_earliest_copy(session: Session, settings: Settings) -> None:
    lines = [line("en", hours=-30), line("ru", hours=-28), line("ru_other", hours=-27), line("zh")]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    original = results["en"]
    assert original.status == "new" and original.copy_kind is None
    for key in ("ru", "zh"):
        assert results[key].status == "duplicate", key
        assert results[key].copy_kind == "translation"
        assert results[key].duplicate_of == original.article_id
    assert results["ru_other"].status == "new"

    zh = session.get(Article, results["zh"].article_id)
    assert zh is not None and zh.copy_kind == "translation" and zh.duplicate_of_id == original.article_id
    assert zh.link_detail is not None
    assert zh.link_detail["method"] == "sentence-alignment"
    assert zh.link_detail["aligned_share"] >= 0.6
    assert zh.link_detail["matched_article_id"] in {original.article_id, results["ru"].article_id}
    # Every stored article has its vectors; only originals count as coverage.
    assert session.scalar(select(func.count()).select_from(ArticleVector)) == session.scalar(
        select(func.count()).select_from(Article)
    )
    originals = session.scalar(
        select(func.count()).select_from(Article).where(Article.duplicate_of_id.is_(None), ~Article.is_seed)
    )
    assert originals == 2
    copies = repo.copies_of(session, [original.article_id])[original.article_id]
    assert sorted(c.lang for c in copies) == ["ru", "zh"]


def test_a_translation_outside_the_window_is_new_coverage(session: Session, settings: Settings) -> None:
    late = settings.translations.window_days * 24 + 24
    lines = [line("en", hours=-late), line("ru")]
    results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert [r.status for r in results] == ["new", "new"]


def test_linking_can_be_switched_off(session: Session, settings: Settings) -> None:
    off = settings.model_copy(
        update={"translations": settings.translations.model_copy(update={"enabled": False})}
    )
    results = [r.result for r in import_lines(session, off, [line("en"), line("ru")], source="t", now=NOW)]
    assert [r.status for r in results] == ["new", "new"]


def test_a_translation_of_a_seed_is_a_copy_of_the_seed(session: Session, settings: Settings) -> None:
    # The seed was published long before the window; seeds are always candidates.
    seed_line = json.dumps(
        {"title": STORY["en"]["title"], "text": STORY["en"]["text"], "published": "2024-05-16T00:00:00+00:00"}
    )
    seed = next(iter(import_lines(session, settings, [seed_line], source="seed", now=NOW))).result
    session.execute(Article.__table__.update().where(Article.id == seed.article_id).values(is_seed=True))
    session.commit()
    result = next(iter(import_lines(session, settings, [line("zh")], source="t", now=NOW))).result
    assert result.copy_kind == "translation" and result.duplicate_of == seed.article_id


def test_reindex_backfills_missing_vectors(session: Session, settings: Settings) -> None:
    list(import_lines(session, settings, [line("en"), line("ru_other")], source="t", now=NOW))
    session.execute(delete(ArticleVector))
    session.commit()
    context = IngestContext.from_settings(settings)
    seen: list[int] = []
    assert reindex_vectors(session, context, batch_size=1, progress=seen.append) == 2
    assert seen == [1, 2]
    assert session.scalar(select(func.count()).select_from(ArticleVector)) == 2
    assert reindex_vectors(session, context) == 0
    assert reindex_vectors(session, context, recompute=True) == 2
