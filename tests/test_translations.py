"""Translations stored as copies, through the ingest path, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipeline import crosslingual
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, ArticleVector
from pipeline.ingest import (
    IngestContext,
    _closest_translation,
    flatten_copy_chains,
    import_lines,
    reindex_vectors,
)
from pipeline.records import ArticleCandidate
from pipeline.settings import Settings
from pipeline.vectorindex import VectorIndex

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"
STORY = json.loads((FIXTURES / "semantic" / "story_yuan.json").read_text())


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


def test_two_stories_under_one_translated_footer_are_not_translations(
    session: Session, settings: Settings
) -> None:
    """A Chinese story on reactor fuel and an English one on chocolate sales share only
    their outlet's disclaimer and "about the author", each in its own language: those
    sentences aligned in order, names and all, and the two were linked (and, through later
    translations, ten such stories folded into one)."""
    stories = {
        row["id"]: row
        for row in map(json.loads, (FIXTURES / "dedup" / "stories.jsonl").read_text("utf-8").splitlines())
    }
    lines = [
        json.dumps(
            {
                "id": key,
                "url": f"https://{key}.example/story",
                "title": stories[key]["title"],
                "text": stories[key]["text"],
                "published": (NOW + timedelta(hours=hours)).isoformat(),
            }
        )
        for key, hours in (("zh-t03", -3), ("en-t09", -1), ("ru-t09", 0))
    ]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    assert results["zh-t03"].status == results["en-t09"].status == "new"
    # The English story's own translation is still found.
    assert results["ru-t09"].copy_kind == "translation"
    assert results["ru-t09"].duplicate_of == results["en-t09"].article_id
    side = crosslingual.Side
    verdict = crosslingual.verify_translation(
        side("zh", stories["zh-t03"]["text"], *_vectors(settings, stories["zh-t03"])),
        side("en", stories["en-t09"]["text"], *_vectors(settings, stories["en-t09"])),
        settings.translation_params(),
    )
    assert not verdict.is_translation and "only the ending aligns" in verdict.reason


def _vectors(settings: Settings, row: dict[str, str]) -> tuple[object, bool]:
    from pipeline import encoder

    model = encoder.load_encoder(settings.encoder.model, threads=settings.encoder.threads)
    vectors = encoder.embed_configured(model, row["title"], row["text"], settings.encoder)
    return vectors.sentences, vectors.has_title


def test_translations_in_other_languages_fold_with_their_figures_read(
    session: Session, settings: Settings
) -> None:
    # French, Spanish and Arabic renderings write the amount, the per cent and the month
    # with their own words; each is detected, verified and folded like ru and zh.
    lines = [line("en", hours=-30), line("fr", hours=-20), line("es", hours=-10), line("ar")]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    original = results["en"]
    assert original.status == "new"
    for key in ("fr", "es", "ar"):
        assert results[key].status == "duplicate" and results[key].copy_kind == "translation", key
        assert results[key].duplicate_of == original.article_id
        copy = session.get(Article, results[key].article_id)
        assert copy is not None and copy.lang == key and copy.link_detail is not None
        assert copy.link_detail["number_agreement"] == 1.0, copy.link_detail


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


def at_url(key: str, url: str, *, hours: float = 0, text: str | None = None) -> str:
    """A line with ``key``'s story (or ``text``) under the page ``url``."""
    published = (NOW + timedelta(hours=hours)).isoformat()
    body = text if text is not None else STORY[key]["text"]
    return json.dumps(
        {"id": url, "url": url, "title": STORY[key]["title"], "text": body, "published": published}
    )


def _link(session: Session, article_id: int | None) -> tuple[int | None, str | None, dict | None]:
    session.expire_all()
    article = session.get(Article, article_id)
    assert article is not None
    return article.duplicate_of_id, article.copy_kind, article.link_detail


def test_a_copy_whose_page_now_carries_another_story_becomes_an_original(
    session: Session, settings: Settings
) -> None:
    """The Russian translation's page now carries another outlet's report: no longer a copy
    of the English, it counts as coverage of its own, and says what it was linked to."""
    lines = [line("en", hours=-30), line("ru", hours=-28)]
    en, ru = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert ru.copy_kind == "translation" and ru.duplicate_of == en.article_id
    changed = at_url("ru_other", "https://ru.example/story", hours=-28)
    later = NOW + timedelta(hours=1)
    result = next(iter(import_lines(session, settings, [changed], source="v2", now=later))).result
    assert result.copy_kind == "version" and result.article_id == ru.article_id
    assert result.duplicate_of == ru.article_id  # its own original now
    parent, kind, detail = _link(session, ru.article_id)
    assert parent is None and kind is None and detail is not None
    previous = detail["previous_link"]
    assert previous["copy_of"] == en.article_id and previous["copy_kind"] == "translation"
    assert previous["at"] == later.isoformat() and "matches no stored article" in previous["reason"]
    assert previous["link_detail"]["method"] == "sentence-alignment"
    assert not repo.current_roots(session, [ru.article_id])[ru.article_id].pinned  # not by hand
    # The same version again changes nothing.
    again = next(
        iter(import_lines(session, settings, [changed], source="v2", now=later + timedelta(hours=1)))
    )
    assert again.result.duplicate_of == ru.article_id
    assert _link(session, ru.article_id) == (None, None, detail)


def test_a_stub_replaced_by_a_copy_of_a_stored_article_becomes_that_copy(
    session: Session, settings: Settings
) -> None:
    """Pages first stored as stubs ("details later") now carry the English report word for
    word, with a line added, and in Russian: each becomes the copy it now is."""
    stub = "Officials met in Harbin on Tuesday. Details to follow, this story is being updated."
    urls = {kind: f"https://{kind}.stub.example/live" for kind in ("exact", "near", "translation")}
    lines = [at_url("en", url, text=stub) for url in urls.values()] + [line("en")]
    results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert [r.status for r in results] == ["new", "duplicate", "duplicate", "new"]  # one stub, three URLs
    stub_id, en = results[0].article_id, results[-1].article_id
    assert {r.duplicate_of for r in results[1:3]} == {stub_id}
    extra = STORY["en"]["text"] + "\n\nThe working group will report to both governments by June."
    changed = [
        at_url("ru_other", urls["exact"]),
        at_url("en", urls["near"], text=extra),
        at_url("ru", urls["translation"]),
    ]
    later = NOW + timedelta(hours=1)
    exact, near, translation = [
        r.result for r in import_lines(session, settings, changed, source="v2", now=later)
    ]
    assert [r.copy_kind for r in (exact, near, translation)] == ["version"] * 3
    # The first stub has copies (the other two URLs had its text): a root keeps its links,
    # whatever its page carries now.
    assert exact.article_id == stub_id and exact.duplicate_of == stub_id
    assert _link(session, stub_id)[:2] == (None, None)
    # Copies of the stub whose new text copies the English report move to it.
    assert near.duplicate_of == en and translation.duplicate_of == en
    assert _link(session, near.article_id)[:2] == (en, "near")
    parent, kind, detail = _link(session, translation.article_id)
    assert (parent, kind) == (en, "translation") and detail is not None
    assert detail["matched_article_id"] in {en, near.article_id}
    assert detail["previous_link"]["copy_of"] == stub_id and detail["previous_link"]["copy_kind"] == "exact"
    # A lone stub (no copies) replaced by the very text of a stored article: an exact copy.
    lone = "https://lone.stub.example/live"
    stored = import_lines(
        session, settings, [at_url("en", lone, text=stub + " More soon.")], source="t", now=NOW
    )
    assert next(iter(stored)).result.status == "new"
    again = next(iter(import_lines(session, settings, [at_url("en", lone)], source="v2", now=later))).result
    assert again.duplicate_of == en and _link(session, again.article_id)[:2] == (en, "exact")
    originals = session.scalar(
        select(func.count()).select_from(Article).where(Article.duplicate_of_id.is_(None))
    )
    assert originals == 2  # the English report, and the first stub (a root)


def test_a_copy_becoming_an_original_extends_the_history(session: Session, settings: Settings) -> None:
    repo.history_start(session, NOW)
    early = -40 * 24
    lines = [line("en"), at_url("en", "https://early.example/copy", hours=early)]
    en, copy = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert copy.duplicate_of == en.article_id and repo.history_start(session) == NOW
    changed = at_url("ru_other", "https://early.example/copy", hours=early)
    list(import_lines(session, settings, [changed], source="v2", now=NOW))
    assert _link(session, copy.article_id)[0] is None
    assert repo.history_start(session) == NOW + timedelta(hours=early)


# Whole articles of the tuning half of the whole-article set: an English report and its
# Russian and Chinese translations, the two translations too loosely aligned with each other
# to be linked directly (each is linked with the English).
WHOLE = {
    row["id"]: row
    for row in map(json.loads, (FIXTURES / "xlingual_full" / "articles.jsonl").read_text().splitlines())
    if row["split"] == "dev"
}


def whole_line(key: str, *, url: str | None = None) -> str:
    record = {"id": url or key, "url": url or f"https://{key}.example/story", "text": WHOLE[key]["text"]}
    return json.dumps({**record, "published": NOW.isoformat()})


def test_a_translation_of_two_clusters_folds_them_into_the_earliest(
    session: Session, settings: Settings
) -> None:
    """Russian, then Chinese (not linked to the Russian), then a copy of the Chinese, then
    the English they both translate: one story, whatever the order it arrived in."""
    context = IngestContext.from_settings(settings)
    sides = {}
    for key in ("xf-07-ru", "xf-07-zh"):
        vectors = context.embed(None, WHOLE[key]["text"])
        sides[key] = crosslingual.Side(
            WHOLE[key]["lang"], WHOLE[key]["text"], vectors.sentences, vectors.has_title
        )
    premise = crosslingual.verify_translation(
        sides["xf-07-ru"], sides["xf-07-zh"], context.translation_params, context.gazetteer
    )
    assert not premise.is_translation  # what makes the order matter

    lines = [
        whole_line("xf-07-ru"),
        whole_line("xf-07-zh"),
        whole_line("xf-07-zh", url="https://mirror.example/zh"),
        whole_line("xf-07-en"),
    ]
    results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    ru, zh, mirror, en = results
    assert [r.status for r in results] == ["new", "new", "duplicate", "duplicate"]
    assert mirror.copy_kind == "exact" and mirror.duplicate_of == zh.article_id
    assert en.copy_kind == "translation" and en.duplicate_of == ru.article_id
    session.expire_all()
    folded = session.get(Article, zh.article_id)
    assert folded is not None and folded.duplicate_of_id == ru.article_id
    assert folded.copy_kind == "translation" and folded.link_detail is not None
    assert folded.link_detail["matched_article_id"] == en.article_id
    assert folded.link_detail["aligned_article_id"] == zh.article_id
    assert folded.link_detail["reason"].startswith(f"joined through article {en.article_id}")
    # Every copy points at the root, the copy of the folded cluster included.
    copies = repo.copies_of(session, [ru.article_id])[ru.article_id]
    assert sorted(c.id for c in copies) == sorted([zh.article_id, mirror.article_id, en.article_id])
    assert (
        session.scalar(select(func.count()).select_from(Article).where(Article.duplicate_of_id.is_(None)))
        == 1
    )


def test_a_folded_cluster_separated_by_hand_gets_its_copies_back_and_stays_apart(
    session: Session, settings: Settings
) -> None:
    lines = [
        whole_line("xf-07-ru"),
        whole_line("xf-07-zh"),
        whole_line("xf-07-zh", url="https://mirror.example/zh"),
        whole_line("xf-07-en"),
    ]
    ru, zh, mirror, en = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert _parents(session)[zh.article_id] == ru.article_id  # folded (see above)
    assert ru.article_id is not None and zh.article_id is not None and en.article_id is not None

    done = repo.unlink_copy(session, zh.article_id, NOW, reason="a different text")
    session.commit()
    assert done == repo.Unlinked(zh.article_id, ru.article_id, "translation", [mirror.article_id])
    parents = _parents(session)
    assert parents[zh.article_id] is None
    assert parents[mirror.article_id] == zh.article_id  # the copy the fold had moved
    assert parents[en.article_id] == ru.article_id  # what no one separated stays
    separated = session.get(Article, zh.article_id)
    assert separated is not None and separated.copy_kind is None and separated.similarity is None
    record = (separated.link_detail or {})["unlinked"]
    assert record["copy_of"] == ru.article_id and record["reason"] == "a different text"
    assert record["link_detail"]["folded_into"] == ru.article_id  # what the link said, kept
    assert record["restored_copy_ids"] == [mirror.article_id]

    # No fold joins it again: not through a later translation of both, not directly.
    assert repo.current_roots(session, [zh.article_id])[zh.article_id].pinned
    context = IngestContext.from_settings(settings)
    text = WHOLE["xf-07-en"]["text"]
    candidate = ArticleCandidate(url=None, title=None, text=text, lang="en", published_at=NOW)
    link = _closest_translation(session, candidate, context.embed(None, text), NOW, context)
    assert link is not None and link.root == ru.article_id and link.merged == {}
    assert repo.merge_clusters(session, ru.article_id, {zh.article_id: (0.9, {})}) == []
    assert _parents(session)[zh.article_id] is None
    # Nor is anything folded into it.
    assert repo.merge_clusters(session, zh.article_id, {zh.article_id + 100: (0.9, {})}) == []


def test_only_a_copy_can_be_separated(session: Session) -> None:
    _bare(session, 1)
    _bare(session, 2, of=1)
    with pytest.raises(repo.NotACopy, match="not a copy"):
        repo.unlink_copy(session, 1, NOW)
    with pytest.raises(repo.NotACopy, match="no article with id 99"):
        repo.unlink_copy(session, 99, NOW)
    done = repo.unlink_copy(session, 2, NOW)
    assert done == repo.Unlinked(2, 1, "exact", [])
    assert _parents(session) == {1: None, 2: None}
    with pytest.raises(repo.NotACopy, match="not a copy"):
        repo.unlink_copy(session, 2, NOW)


def test_a_back_dated_copy_separated_by_hand_extends_the_history(session: Session) -> None:
    """A copy dated before collection started counts once separated: change detection must
    see its day, as it sees an imported article's."""
    repo.history_start(session, NOW)
    _bare(session, 1)
    _bare(session, 2, of=1)
    early = NOW - timedelta(days=40)
    session.execute(Article.__table__.update().where(Article.id == 2).values(published_at=early))
    repo.unlink_copy(session, 2, NOW)
    assert repo.history_start(session) == early
    # An original's date that falls inside the history changes nothing.
    _bare(session, 3, of=1)
    session.execute(Article.__table__.update().where(Article.id == 3).values(published_at=NOW))
    repo.unlink_copy(session, 3, NOW)
    assert repo.history_start(session) == early


def test_copies_of_a_separated_copy_go_with_it(session: Session, settings: Settings) -> None:
    """The Russian translation's text republished word for word, and with a line added,
    elsewhere: both are stored against the English root, naming the Russian they matched,
    and go with it when an analyst separates it."""
    ru_text = STORY["ru"]["text"]
    lines = [
        line("en", hours=-30),
        line("ru", hours=-28),
        at_url("ru", "https://mirror.example/ru", hours=-27),
        at_url(
            "ru",
            "https://mirror.example/ru-plus",
            hours=-26,
            text=ru_text + "\n\nОб этом сообщили в понедельник.",
        ),
    ]
    en, ru, exact, near = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert (exact.copy_kind, exact.duplicate_of) == ("exact", en.article_id)
    assert (near.copy_kind, near.duplicate_of) == ("near", en.article_id)
    assert _link(session, exact.article_id)[2] == {"matched": ru.article_id}
    near_detail = _link(session, near.article_id)[2]
    assert near_detail is not None and near_detail["matched"] in {ru.article_id, exact.article_id}
    assert ru.article_id is not None
    done = repo.unlink_copy(session, ru.article_id, NOW)
    assert done.restored_copy_ids == sorted([exact.article_id, near.article_id])
    parents = _parents(session)
    assert parents[ru.article_id] is None
    assert parents[exact.article_id] == parents[near.article_id] == ru.article_id


def test_a_changed_copy_no_longer_takes_copies_of_its_former_text(
    session: Session, settings: Settings
) -> None:
    lines = [
        line("en", hours=-30),
        line("ru", hours=-28),
        at_url("ru", "https://mirror.example/ru", hours=-27),
    ]
    en, ru, exact = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert _link(session, exact.article_id)[2] == {"matched": ru.article_id}
    # The Russian page now carries an English copy with a line added: still in the cluster.
    extra = STORY["en"]["text"] + "\n\nThe working group will report to both governments by June."
    changed = at_url("en", "https://ru.example/story", hours=-28, text=extra)
    list(import_lines(session, settings, [changed], source="v2", now=NOW))
    assert _link(session, ru.article_id)[:2] == (en.article_id, "near")
    assert _link(session, exact.article_id) == (en.article_id, "exact", None)
    assert ru.article_id is not None
    assert repo.unlink_copy(session, ru.article_id, NOW).restored_copy_ids == []


def test_copies_of_copies_of_a_separated_copy_go_with_it(session: Session) -> None:
    _bare(session, 1)
    _bare(session, 2, of=1)  # the copy separated
    _bare(session, 3, of=1, detail={"matched": 2})
    _bare(session, 4, of=1, detail={"matched": 3})  # a copy of a copy of 2
    _bare(session, 5, of=1, detail={"matched": 1})
    _bare(session, 6, of=1, detail={"matched": 2}, kind="translation")  # aligned, not copied
    done = repo.unlink_copy(session, 2, NOW)
    assert done.restored_copy_ids == [3, 4]
    assert _parents(session) == {1: None, 2: None, 3: 2, 4: 2, 5: 1, 6: 1}
    # `matched` names an article other than the copy's original only: 3 matched 2, its
    # original now; 4 still names 3, the copy it matched.
    assert _link(session, 3)[2] is None and _link(session, 4)[2] == {"matched": 3}


@pytest.mark.parametrize("order", [(3, 2), (2, 3)])
def test_nested_folds_undo_in_either_order(session: Session, order: tuple[int, int]) -> None:
    """Cluster 3 folded into 2, then 2 (with it) into 1: separating 3 and 2, in either
    order, gives each its own copies back."""
    for article_id in (1, 2, 3):
        _bare(session, article_id)
    _bare(session, 4, of=3)
    _bare(session, 5, of=2)
    _bare(session, 6, of=1)
    assert repo.merge_clusters(session, 2, {3: (0.8, {})}) == [3]
    assert repo.merge_clusters(session, 1, {2: (0.8, {})}) == [2]
    assert _parents(session) == {1: None, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}
    for article_id in order:
        repo.unlink_copy(session, article_id, NOW)
    assert _parents(session) == {1: None, 2: None, 3: None, 4: 3, 5: 2, 6: 1}


def test_a_seed_is_never_folded_into_another_cluster(session: Session, settings: Settings) -> None:
    zh = next(iter(import_lines(session, settings, [whole_line("xf-07-zh")], source="t", now=NOW))).result
    seed = next(
        iter(import_lines(session, settings, [whole_line("xf-07-ru")], source="seed", now=NOW))
    ).result
    session.execute(Article.__table__.update().where(Article.id == seed.article_id).values(is_seed=True))
    session.commit()
    en = next(iter(import_lines(session, settings, [whole_line("xf-07-en")], source="t", now=NOW))).result
    assert en.copy_kind == "translation" and en.duplicate_of == zh.article_id
    session.expire_all()
    kept = session.get(Article, seed.article_id)
    assert kept is not None and kept.duplicate_of_id is None and kept.is_seed


def _bare(
    session: Session,
    article_id: int,
    *,
    of: int | None = None,
    seed: bool = False,
    detail: dict | None = None,
    kind: str = "exact",
) -> None:
    session.add(
        Article(
            id=article_id,
            text=f"article {article_id}",
            lang="en",
            first_seen_at=NOW,
            content_hash=f"h{article_id}",
            duplicate_of_id=of,
            copy_kind=kind if of else None,
            link_detail=detail,
            is_seed=seed,
        )
    )
    session.flush()


def _parents(session: Session) -> dict[int, int | None]:
    session.expire_all()
    return dict(session.execute(select(Article.id, Article.duplicate_of_id).order_by(Article.id)).all())


def test_a_fold_checks_its_rows_again_and_moves_every_copy(session: Session) -> None:
    for article_id in (1, 2, 5, 10):
        _bare(session, article_id)
    _bare(session, 3, seed=True)
    _bare(session, 4, of=2)
    _bare(session, 6, of=5)
    _bare(session, 11, of=10)
    detail = {"reason": "aligned"}
    # Another process folded 11's cluster first, or 3 is a seed: nothing happens.
    assert repo.merge_clusters(session, 11, {12: (0.8, detail)}) == []
    assert repo.merge_clusters(session, 1, {3: (0.8, detail)}) == []
    assert repo.merge_clusters(session, 1, {2: (0.8, detail), 5: (0.7, detail), 11: (0.7, detail)}) == [2, 5]
    parents = _parents(session)
    assert parents == {1: None, 2: 1, 3: None, 4: 1, 5: 1, 6: 1, 10: None, 11: 10}
    folded = session.get(Article, 2)
    assert folded is not None and folded.copy_kind == "translation" and folded.similarity == 0.8
    assert folded.link_detail == {"reason": "aligned", "folded_into": 1, "moved_copy_ids": [4]}


def test_a_copy_left_short_of_its_root_by_a_concurrent_fold_is_repaired(session: Session) -> None:
    _bare(session, 1)
    _bare(session, 2, of=1)
    _bare(session, 3, of=2)  # stored against 2 while 2 was being folded into 1
    _bare(session, 4, of=3)
    assert repo.current_roots(session, [1, 2]) == {
        1: repo.ClusterRoot(1, is_seed=False),
        2: repo.ClusterRoot(1, is_seed=False),
    }
    # One step short: the root is followed, and never folded on the strength of that read.
    assert repo.current_roots(session, [3]) == {3: repo.ClusterRoot(1, is_seed=True)}
    assert flatten_copy_chains(session) == 3
    assert _parents(session) == {1: None, 2: 1, 3: 1, 4: 1}
    assert flatten_copy_chains(session) == 0


def test_clusters_fold_only_into_an_earlier_root(session: Session) -> None:
    with pytest.raises(ValueError, match="only into an earlier root"):
        repo.merge_clusters(session, 5, {3: (0.8, {})})
    with pytest.raises(ValueError, match="only into an earlier root"):
        repo.merge_clusters(session, 5, {})


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


def test_a_new_version_stored_while_a_reindex_encodes_keeps_its_own_vectors(
    session: Session, settings: Settings
) -> None:
    """A reindex encodes a batch without the writers' lock; another process storing a new
    version of one of its articles meanwhile must not have that text's vectors replaced by
    the old text's."""
    from sqlalchemy import update

    from pipeline import dedup

    list(import_lines(session, settings, [line("en"), line("ru_other")], source="t", now=NOW))
    session.execute(delete(ArticleVector))
    session.commit()
    context = IngestContext.from_settings(settings)
    first = session.scalars(select(Article.id).order_by(Article.id)).first()
    other = make_engine(settings.db_url)
    real_embed = context.embed
    calls: list[str | None] = []

    def embed_while_another_process_writes(title: str | None, text: str) -> object:
        vectors = real_embed(title, text)
        if not calls:  # the batch's first article encoded: another process updates it
            with session_factory(other)() as writer:
                new_text = STORY["zh"]["text"]
                writer.execute(
                    update(Article)
                    .where(Article.id == first)
                    .values(
                        title=STORY["zh"]["title"], text=new_text, content_hash=dedup.content_hash(new_text)
                    )
                )
                writer.commit()
        calls.append(title)
        return vectors

    # (The context is frozen: the encoder's call is where the other process's write is timed.)
    object.__setattr__(context, "embed", embed_while_another_process_writes)
    try:
        assert reindex_vectors(session, context, batch_size=10) == 2
    finally:
        other.dispose()
    raced = session.get(ArticleVector, first)
    assert raced is not None
    raced_document = raced.document
    session.expire_all()
    object.__setattr__(context, "embed", real_embed)
    assert reindex_vectors(session, context, recompute=True) == 2
    again = session.get(ArticleVector, first)
    assert again is not None and again.document == raced_document, "the old text's vectors were kept"


def _store_vector(
    session: Session,
    article_id: int | None,
    lang: str,
    moment: datetime,
    vector: list[float],
    *,
    dated: bool = True,
) -> int:
    """An article with a document vector; ``article_id`` None takes the next id, as the
    ingest path does. Returns the id."""
    import uuid

    import numpy as np

    from pipeline.encoder import document_to_bytes

    array = np.array(vector + [0.0] * (512 - len(vector)), dtype=np.float32)
    article = Article(
        id=article_id,
        text=f"article {article_id or uuid.uuid4().hex}",
        lang=lang,
        published_at=moment if dated else None,
        first_seen_at=moment,
        content_hash=f"h{article_id or uuid.uuid4().hex}",
        is_seed=False,
        word_count=2,
    )
    session.add(article)
    session.flush()
    repo.store_vectors(
        session,
        article.id,
        model="m",
        lang=lang,
        moment=moment,
        document=document_to_bytes(array / np.linalg.norm(array)),
        sentences=b"",
        sentence_count=0,
        has_title=False,
    )
    return article.id


def _nearest_ids(
    index: VectorIndex,
    session: Session,
    at: datetime,
    *,
    days: float = 7,
    not_lang: str = "de",
    undated: bool = False,
) -> list[int]:
    """The ids the index finds near the first axis, within ``days`` of ``at``."""
    import numpy as np

    query = np.zeros(512, dtype=np.float32)
    query[0] = 1.0
    found = index.nearest(
        session,
        query,
        start=at - timedelta(days=days),
        end=at + timedelta(days=days),
        not_lang=not_lang,
        min_score=0.5,
        limit=5,
        undated=undated,
    )
    return [c.article_id for c in found]


def test_the_vector_index_reads_days_once_and_sees_later_rows(session: Session, settings: Settings) -> None:

    _store_vector(session, 1, "en", NOW, [1, 0])
    _store_vector(session, 2, "ru", NOW - timedelta(days=2), [0.9, 0.1])
    _store_vector(session, 3, "ru", NOW - timedelta(days=30), [1, 0])  # outside the window
    _store_vector(session, 4, "zh", NOW, [0, 1])  # far in meaning
    session.commit()
    index = VectorIndex("m", max_days=20, refresh_seconds=0)  # others' rows on every lookup

    def ids(not_lang: str = "de") -> list[int]:
        return _nearest_ids(index, session, NOW, not_lang=not_lang)

    assert ids() == [1, 2]
    assert ids(not_lang="en") == [2]
    # Another worker stores a row in a day this reader has loaded already.
    other = make_engine(settings.db_url)
    with session_factory(other)() as writer:
        _store_vector(writer, 5, "fr", NOW - timedelta(hours=1), [1, 0.05])
        writer.commit()
    other.dispose()
    assert ids() == [1, 5, 2]
    # Far-away days are read when asked for, and old ones are dropped beyond max_days.
    assert _nearest_ids(index, session, NOW - timedelta(days=30), days=1, not_lang="en") == [3]
    assert len(index._days) <= 20
    assert ids() == [1, 5, 2]


def test_the_vector_index_sees_its_own_rows_at_once_and_others_after_the_refresh(
    session: Session, settings: Settings
) -> None:
    """Rows this process stores are added as stored; rows another process stored are read at
    most every refresh_seconds, and an own row with a higher id does not hide them."""
    import numpy as np

    from pipeline.encoder import document_to_bytes

    _store_vector(session, 1, "en", NOW, [1, 0])
    session.commit()
    index = VectorIndex("m", refresh_seconds=3600)

    def ids() -> list[int]:
        return _nearest_ids(index, session, NOW, days=1)

    assert ids() == [1]
    other = make_engine(settings.db_url)
    with session_factory(other)() as writer:
        _store_vector(writer, 5, "fr", NOW - timedelta(hours=1), [1, 0.05])
        writer.commit()
    other.dispose()
    own = np.zeros(512, dtype=np.float32)
    own[:2] = [1, 0.1]
    _store_vector(session, 9, "ru", NOW, [1, 0.1])
    index.add([repo.VectorRow(9, 9, "ru", NOW, document_to_bytes(own / np.linalg.norm(own)), "m")])
    assert ids() == [1, 9]  # its own row at once; the other's not before the refresh
    index._refreshed -= 3600  # (the refresh interval has passed)
    assert ids() == [1, 5, 9]


def test_an_article_committed_after_one_with_a_higher_id_is_still_read(
    session: Session, settings: Settings
) -> None:
    """Ids are not committed in the order they are handed out: a row whose id is below the
    largest the reader has read, committed later, is read by the next refresh, into its day
    and (undated) into the pools, whether the reader skipped it at its first read or at a
    refresh."""
    _store_vector(session, 1, "en", NOW, [1, 0])
    _store_vector(session, 4, "fr", NOW, [1, 0.05])
    session.commit()
    index = VectorIndex("m", refresh_seconds=0)
    assert _nearest_ids(index, session, NOW) == [1, 4]
    assert sorted(index._gaps) == [2, 3]  # skipped at the first read: looked for by every refresh
    other = make_engine(settings.db_url)
    with session_factory(other)() as writer:
        _store_vector(writer, 2, "ru", NOW - timedelta(hours=1), [1, 0.1])
        # Undated, first seen two years back: a candidate through the undated pool only,
        # which was read when the largest id was 4.
        _store_vector(writer, 3, "zh", NOW - timedelta(days=700), [1, 0.15], dated=False)
        writer.commit()
    assert _nearest_ids(index, session, NOW) == [1, 4, 2, 3]
    assert index._gaps == {}
    with session_factory(other)() as writer:
        _store_vector(writer, 7, "ru", NOW, [1, 0.2])
        writer.commit()
    assert _nearest_ids(index, session, NOW) == [1, 4, 2, 3, 7]
    assert sorted(index._gaps) == [5, 6]  # skipped by a refresh
    with session_factory(other)() as writer:
        _store_vector(writer, 6, "zh", NOW + timedelta(hours=2), [1, 0.12])
        writer.commit()
    other.dispose()
    assert _nearest_ids(index, session, NOW, not_lang="ru") == [1, 4, 6, 3]
    assert sorted(index._gaps) == [5]


def test_a_skipped_id_is_looked_for_a_bounded_time(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id that never appears (its transaction rolled back) stops being looked for after
    GAP_SECONDS, and at most MAX_GAPS are looked for, the latest kept."""
    from pipeline import vectorindex

    _store_vector(session, 1, "en", NOW, [1, 0])
    _store_vector(session, 10, "en", NOW, [1, 0.1])
    session.commit()
    index = VectorIndex("m", refresh_seconds=0)
    monkeypatch.setattr(vectorindex, "MAX_GAPS", 5)
    assert _nearest_ids(index, session, NOW, not_lang="ru") == [1, 10]
    assert sorted(index._gaps) == [5, 6, 7, 8, 9]
    monkeypatch.setattr(vectorindex, "GAP_SECONDS", -1.0)  # (every gap is past it)
    assert _nearest_ids(index, session, NOW, not_lang="ru") == [1, 10]
    assert index._gaps == {}


@pytest.mark.postgres
def test_a_batch_committed_after_a_later_one_is_read_on_postgresql(postgres_url: str) -> None:
    """Two real PostgreSQL transactions: the one that took the lower id commits second."""
    from pipeline.db.engine import upgrade_schema

    engine = make_engine(postgres_url)
    try:
        upgrade_schema(engine)
        sessions = session_factory(engine)
        with sessions() as reader, sessions() as slow, sessions() as fast:
            first = _store_vector(reader, None, "en", NOW, [1, 0])
            reader.commit()
            index = VectorIndex("m", refresh_seconds=0)
            assert _nearest_ids(index, reader, NOW) == [first]
            late = _store_vector(slow, None, "ru", NOW, [1, 0.1])  # takes its id, stays open
            early = _store_vector(fast, None, "fr", NOW, [1, 0.05])
            fast.commit()
            assert late < early
            assert _nearest_ids(index, reader, NOW) == [first, early]
            slow.commit()
            assert _nearest_ids(index, reader, NOW) == [first, early, late]
    finally:
        engine.dispose()


def test_the_window_is_not_applied_to_undated_articles(session: Session, settings: Settings) -> None:
    """An undated article's moment is when it was first seen: it is a candidate for every
    lookup, and an undated query is compared with the latest articles whatever their dates,
    within undated_scope."""
    import numpy as np

    from pipeline.encoder import document_to_bytes

    long_ago = NOW - timedelta(days=700)
    _store_vector(session, 1, "en", long_ago, [1, 0])  # dated, two years back
    _store_vector(session, 2, "ru", NOW, [0.95, 0.05], dated=False)  # first seen now
    _store_vector(session, 3, "zh", long_ago - timedelta(days=1), [0.9, 0.1])  # dated, older still
    session.commit()

    def ids(index: VectorIndex, at: datetime, *, undated: bool = False) -> list[int]:
        return _nearest_ids(index, session, at, undated=undated)

    index = VectorIndex("m", refresh_seconds=3600)  # others' rows when the test says so
    # A dated query two years back finds its window and the undated article.
    assert ids(index, long_ago) == [1, 2, 3]
    # A dated query today finds the undated article, not the old dated ones.
    assert ids(index, NOW) == [2]
    # An undated query today (first seen now) is compared with everything.
    assert ids(index, NOW, undated=True) == [1, 2, 3]
    # Rows stored afterwards join the pools: an undated one by this process at once, a
    # dated one a year back by another at the next refresh.
    _store_vector(session, 4, "ru", NOW, [0.99, 0.01], dated=False)
    session.commit()
    own = np.zeros(512, dtype=np.float32)
    own[:2] = [0.99, 0.01]
    index.add(
        [repo.VectorRow(4, 4, "ru", NOW, document_to_bytes(own / np.linalg.norm(own)), "m", dated=False)]
    )
    assert ids(index, long_ago) == [1, 4, 2, 3]
    assert ids(index, NOW, undated=True) == [1, 4, 2, 3]
    other = make_engine(settings.db_url)
    with session_factory(other)() as writer:
        _store_vector(writer, 5, "en", NOW - timedelta(days=365), [0.97, 0.03])
        writer.commit()
    assert ids(index, NOW, undated=True) == [1, 4, 2, 3]  # not before the refresh
    index._refreshed -= 3600
    assert ids(index, NOW, undated=True) == [1, 4, 5, 2, 3]
    # Two more by another process: the dated one, read with its day first, does not hide
    # the undated one (a lower id) from the refresh.
    with session_factory(other)() as writer:
        _store_vector(writer, 6, "ru", NOW, [0.98, 0.02], dated=False)
        _store_vector(writer, 7, "zh", NOW - timedelta(days=60), [1, 0])
        writer.commit()
    other.dispose()
    index._refreshed -= 3600
    assert sorted(ids(index, NOW - timedelta(days=60))) == [2, 4, 6, 7]
    assert sorted(ids(index, NOW)) == [2, 4, 6]
    # Only the latest undated_scope articles are compared whatever their moment.
    narrow = VectorIndex("m", refresh_seconds=3600, undated_scope=1)
    assert ids(narrow, NOW, undated=True) == [4, 6, 7, 2]  # the latest (7) and today's window
    assert ids(narrow, long_ago) == [1, 6, 3]  # the latest undated article (6), not 2 or 4
    # With no scope, undated articles use the window like the others.
    windowed = VectorIndex("m", refresh_seconds=3600, undated_scope=0)
    assert ids(windowed, NOW, undated=True) == [4, 6, 2]
    assert ids(windowed, long_ago) == [1, 3]


@pytest.mark.parametrize("undated_first", [False, True])
def test_an_undated_translation_is_linked_to_an_original_dated_years_before(
    session: Session, settings: Settings, undated_first: bool
) -> None:
    """Imported from an archive today, an undated page is compared with its translation
    whatever the translation's date, in either order."""
    undated = json.dumps(
        {
            "id": "ru",
            "url": "https://ru.example/story",
            "title": STORY["ru"]["title"],
            "text": STORY["ru"]["text"],
        }
    )
    dated = line("en", hours=-900 * 24)
    lines = [undated, dated] if undated_first else [dated, undated]
    first, second = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert (first.status, second.status) == ("new", "duplicate")
    assert second.copy_kind == "translation" and second.duplicate_of == first.article_id
    published = {a.lang: a.published_at for a in session.scalars(select(Article))}
    assert published["ru"] is None and published["en"] is not None
    assert NOW - published["en"] > timedelta(days=settings.translations.window_days)
    # With no scope, the window applies to the undated page's first-seen moment: not linked.
    windowed = settings.model_copy(
        update={"translations": settings.translations.model_copy(update={"undated_scope": 0})}
    )
    session.execute(delete(Article))
    session.commit()
    results = [r.result for r in import_lines(session, windowed, lines, source="t", now=NOW)]
    assert [r.status for r in results] == ["new", "new"]


def test_the_vector_index_ranks_ties_by_id_whatever_order_rows_arrive_in(session: Session) -> None:
    import numpy as np

    # The same vector three times, the higher ids earlier: the database returns a day's
    # rows by moment, so here the highest id first.
    for hours, article_id in enumerate([21, 22, 23], 1):
        _store_vector(session, article_id, "ru", NOW - timedelta(hours=hours), [1, 0])
    _store_vector(session, 24, "ru", NOW - timedelta(hours=5), [0.8, 0.6])
    session.commit()
    query = np.zeros(512, dtype=np.float32)
    query[0] = 1.0
    found = VectorIndex("m").nearest(
        session, query, start=NOW - timedelta(days=1), end=NOW, not_lang="en", min_score=0.5, limit=2
    )
    assert [c.article_id for c in found] == [21, 22]
    assert [round(c.score, 3) for c in found] == [1.0, 1.0]


def test_a_translation_counts_once_in_coverage(session: Session, settings: Settings) -> None:
    from pipeline.reporting import compute_coverage

    lines = [line("en", hours=-5), line("ru", hours=-4), line("zh", hours=-3)]
    results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    assert [r.status for r in results] == ["new", "duplicate", "duplicate"]
    labelled = {hit.topic for hit in results[0].topics} | {f"watch:{w.item}" for w in results[0].watch}
    assert "trade_finance" in labelled, "the story is about yuan payments"
    report = compute_coverage(session, settings, now=NOW)
    assert sum(count for _, count in report.bins["topic:trade_finance"]) == 1


def test_a_story_listed_under_its_translations_label_shows_that_label(
    session: Session, settings: Settings
) -> None:
    """A translation is classified in its own language and can carry a label its original
    did not get: the story is listed under it, and its row (CLI, JSON, web) shows it,
    named as its copy's; listed one by one (``--duplicates``), each article shows its own."""
    from starlette.testclient import TestClient

    from pipeline import browse
    from pipeline.db.schema import ArticleTopic, ArticleWatch
    from pipeline.web import create_app

    lines = [line("en", hours=-5), line("ru", hours=-4)]
    results = [r.result for r in import_lines(session, settings, lines, source="t", now=NOW)]
    original, copy = results[0].article_id, results[1].article_id
    assert results[1].copy_kind == "translation" and results[1].duplicate_of == original
    own = set(session.scalars(select(ArticleTopic.topic).where(ArticleTopic.article_id == original)))
    borrowed = next(slug for slug in ("military", "ukraine", "energy", "diplomacy") if slug not in own)
    session.execute(delete(ArticleTopic).where(ArticleTopic.article_id == copy, ArticleTopic.topic.in_(own)))
    session.add(ArticleTopic(article_id=copy, topic=borrowed, score=0.8, evidence=["сказано в переводе"]))
    session.add(ArticleWatch(article_id=copy, item="joint_exercises", score=0.7, evidence=[]))
    session.commit()

    wanted = repo.ArticleFilter(topic=borrowed, limit=10)
    [row] = browse.list_articles(session, wanted).rows
    assert row.article.id == original
    topics = {t.topic: t.article_id for t in row.topics}
    assert topics[borrowed] == copy and all(topics[slug] == original for slug in own)
    assert {w.item: w.article_id for w in row.watch}.get("joint_exercises") == copy
    data = browse.row_json(row)
    assert {t["topic"]: t["evidence_from"] for t in data["topics"]}[borrowed] == copy
    assert [t["evidence"] for t in data["topics"] if t["topic"] == borrowed] == [["сказано в переводе"]]
    # One by one, the original carries only its own labels and is not listed under the other.
    one_by_one = browse.list_articles(session, repo.ArticleFilter(include_duplicates=True, limit=10)).rows
    [first] = [r for r in one_by_one if r.article.id == original]
    assert {t.topic for t in first.topics} == own
    assert "joint_exercises" not in {w.item for w in first.watch}
    with TestClient(create_app(settings, clock=lambda: NOW), base_url="http://localhost") as client:
        page = client.get("/articles", params={"topic": borrowed})
        assert page.status_code == 200
        assert f'title="carried by its copy #{copy}"' in page.text
        assert page.text.count("carried by its copy") == 2  # the topic and the watch item


def test_the_article_page_lists_translations_with_their_reason(session: Session, settings: Settings) -> None:
    from starlette.testclient import TestClient

    from pipeline.web import create_app

    lines = [line("en", hours=-30), line("ru", hours=-28), line("zh")]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    session.commit()
    original, zh = results["en"].article_id, results["zh"].article_id
    stored_zh = session.get(Article, zh)
    assert stored_zh is not None and stored_zh.link_detail is not None
    with TestClient(create_app(settings, clock=lambda: NOW), base_url="http://localhost") as client:
        page = client.get(f"/articles/{original}")
        assert page.status_code == 200
        assert "Also in: ru, zh" in page.text
        assert page.text.count(">translation</td>") == 2
        copy_page = client.get(f"/articles/{zh}")
        assert copy_page.status_code == 200
        assert f'A translation (zh) of\n  <a href="/articles/{original}"' in copy_page.text
        assert stored_zh.link_detail["reason"] in copy_page.text


def test_what_the_run_keeps_of_its_stored_rows_goes_with_a_rollback(
    session: Session, settings: Settings
) -> None:
    """Vectors kept for articles stored in a transaction are dropped when it is rolled back
    (their ids may be given to other articles), kept when it commits, and an article's kept
    sentence vectors are dropped when its vectors are replaced (the index keeps the new row:
    test_replaced_vectors_take_the_old_ones_place_in_the_index)."""
    import numpy as np

    from pipeline.encoder import ArticleVectors
    from pipeline.ingest import StoredSide, _store_vectors

    context = IngestContext.from_settings(settings)
    try:
        index = context.vector_index("m")

        def remember(article_id: int) -> None:
            _store_vector(session, article_id, "en", NOW, [1, 0])
            row = repo.VectorRow(article_id, article_id, "en", NOW, b"\0" * 1024, "m")
            context.remember_stored(session, row, StoredSide("m", b"", False, "text"))

        remember(1)
        session.commit()
        assert list(context.recent) == [1]
        assert context.vector_indexes == {"m": index}
        remember(2)
        session.rollback()
        assert not context.recent
        assert not context.vector_indexes  # read again from the database when next asked
        assert session.get(Article, 1) is not None and session.get(Article, 2) is None
        # Replacing a kept article's vectors (a new version, a re-index) drops its kept side.
        remember(3)
        session.commit()
        assert list(context.recent) == [3]
        unit = np.zeros((1, 512), dtype=np.float32)
        unit[0, 0] = 1.0
        replaced = ArticleVectors("m", unit[0], unit, ("text",), False)
        _store_vectors(session, context, 3, replaced, "en", NOW, dated=True)
        assert not context.recent
    finally:
        context.close()


def test_replaced_vectors_take_the_old_ones_place_in_the_index(session: Session, settings: Settings) -> None:
    """A new version of a page replaces its vectors: the run's index holds the new ones
    where it held the old, by day, among the undated or the latest articles, without reading
    anything again, and finds what a fresh index finds. A rollback puts the old ones back."""
    import numpy as np

    from pipeline.encoder import ArticleVectors
    from pipeline.ingest import _store_vectors

    long_ago = NOW - timedelta(days=400)
    _store_vector(session, 1, "en", NOW, [1, 0])
    _store_vector(session, 2, "ru", long_ago, [1, 0], dated=False)  # first seen long ago, no date
    _store_vector(session, 3, "zh", NOW - timedelta(days=1), [0.8, 0.6])
    _store_vector(session, 4, "en", long_ago, [0.9, 0.1])  # dated long ago
    session.commit()

    def vectors(*values: float) -> ArticleVectors:
        unit = np.zeros((1, 512), dtype=np.float32)
        unit[0, : len(values)] = values
        unit /= np.linalg.norm(unit)
        return ArticleVectors("m", unit[0], unit, ("text",), False)

    def replace(article_id: int, lang: str, moment: datetime, *values: float, dated: bool = True) -> None:
        _store_vectors(session, context, article_id, vectors(*values), lang, moment, dated=dated)

    context = IngestContext.from_settings(settings)
    try:
        index = context.vector_index("m")
        assert _nearest_ids(index, session, NOW) == [1, 2, 3]
        assert _nearest_ids(index, session, NOW, undated=True) == [1, 2, 4, 3]  # the latest too
        days = dict(index._days)
        # Rewritten on another subject (orthogonal to the query): by day, undated, latest.
        replace(1, "en", NOW, 0, 1)
        replace(2, "ru", long_ago, 0, 1, dated=False)
        replace(4, "en", long_ago, 0, 1)
        assert _nearest_ids(index, session, NOW) == [3]
        assert _nearest_ids(index, session, NOW, undated=True) == [3]
        # And two back on it.
        replace(2, "ru", long_ago, 1, 0.1, dated=False)
        replace(4, "en", long_ago, 1, 0.2)
        assert _nearest_ids(index, session, NOW, undated=True) == [2, 4, 3]
        assert index._days.keys() == days.keys() and all(index._days[day] is days[day] for day in days)
        assert context.vector_indexes == {"m": index}  # nothing was read again
        session.commit()
        assert _nearest_ids(VectorIndex("m"), session, NOW, undated=True) == [2, 4, 3]
        # A replacement rolled back: the index is dropped and read again as stored.
        replace(3, "zh", NOW - timedelta(days=1), 0, 1)
        assert _nearest_ids(index, session, NOW) == [2]
        session.rollback()
        assert not context.vector_indexes
        assert _nearest_ids(context.vector_index("m"), session, NOW) == [2, 3]
    finally:
        context.close()


def test_a_long_lived_session_does_not_keep_each_runs_context(session: Session, settings: Settings) -> None:
    """`summitwatch run` keeps one session for every cycle and builds a context per cycle:
    the session's rollback listener must not keep a finished context (and its kept vectors)
    alive, and closing the context removes the listener."""
    import gc
    import weakref

    from sqlalchemy import event

    from pipeline.ingest import StoredSide

    def one_run() -> tuple[weakref.ref[IngestContext], object]:
        context = IngestContext.from_settings(settings)
        _store_vector(session, 7, "en", NOW, [1, 0])
        row = repo.VectorRow(7, 7, "en", NOW, b"\0" * 1024, "m")
        context.remember_stored(session, row, StoredSide("m", b"", False, "text"))
        session.commit()
        (listener,) = context.watched.values()
        context.close()
        assert not event.contains(session, "after_soft_rollback", listener)
        return weakref.ref(context), listener

    ref, _ = one_run()
    gc.collect()
    assert ref() is None
    # Not closed (a run that crashed): the listener holds the context weakly.
    context = IngestContext.from_settings(settings)
    context.remember_stored(
        session,
        repo.VectorRow(999_999, 999_999, "en", NOW, b"\0" * 1024, "m"),
        StoredSide("m", b"", False, "t"),
    )
    unclosed = weakref.ref(context)
    context.pool.close()
    del context
    gc.collect()
    assert unclosed() is None
    session.rollback()  # the orphaned listener finds no context, and does nothing


def _capped(settings: Settings, max_sentences: int) -> Settings:
    encoder_settings = settings.encoder.model_copy(update={"max_sentences": max_sentences})
    return settings.model_copy(update={"encoder": encoder_settings})


def test_vectors_stored_under_a_higher_limit_are_read_as_their_first_units(
    session: Session, settings: Settings
) -> None:
    stored = next(
        iter(import_lines(session, _capped(settings, 40), [line("en")], source="t", now=NOW))
    ).result
    row_before = session.get(ArticleVector, stored.article_id)
    assert row_before is not None and row_before.sentence_count == 6  # the title and 5 sentences
    kept = row_before.sentences
    article = session.get(Article, stored.article_id)
    assert article is not None
    vectors = IngestContext.from_settings(_capped(settings, 2)).stored_vectors(session, article)
    from pipeline.encoder import sentences_from_bytes

    assert len(vectors.units) == 3 and vectors.has_title
    assert (vectors.sentences == sentences_from_bytes(kept, vectors.sentences.shape[1])[:3]).all()
    session.expire_all()
    row_after = session.get(ArticleVector, stored.article_id)
    assert row_after is not None and row_after.sentences == kept  # nothing encoded or stored again


# Three dev-half translation pairs (tests/fixtures/xlingual), each side joined in order: a
# text of about 20 sentences in English and 34 in Chinese.
JOINED_PAIRS = (("xl-0130", "xl-0131"), ("xl-0161", "xl-0160"), ("xl-0165", "xl-0166"))


def _joined(side: int, key: str) -> str:
    lines = (Path(__file__).parent / "fixtures" / "xlingual" / "articles.jsonl").read_text().splitlines()
    rows = {row["id"]: row for row in map(json.loads, lines)}
    picked = [rows[pair[side]] for pair in JOINED_PAIRS]
    assert all(row["split"] == "dev" for row in picked)
    record = {"id": key, "url": f"https://{key}.example/joined", "title": picked[0]["title"]}
    text = "\n".join(row["text"] for row in picked)
    return json.dumps({**record, "text": text, "published": NOW.isoformat()})


def test_a_translation_is_found_when_the_original_was_stored_under_a_higher_limit(
    session: Session, settings: Settings
) -> None:
    # The stored side (34 sentences stored) is cut to the units the new side can have (6
    # sentences and the title): relative positions are compared over the same extent.
    stored = next(iter(import_lines(session, _capped(settings, 40), [_joined(1, "zh")], source="t", now=NOW)))
    row = session.get(ArticleVector, stored.result.article_id)
    assert row is not None and row.sentence_count > 30
    result = next(
        iter(import_lines(session, _capped(settings, 6), [_joined(0, "en")], source="t", now=NOW))
    ).result
    assert result.copy_kind == "translation" and result.duplicate_of == stored.result.article_id


def test_a_days_arrays_grow_as_rows_arrive_and_match_a_fresh_stack() -> None:
    import numpy as np

    from pipeline.encoder import document_to_bytes
    from pipeline.vectorindex import _Day

    rng = np.random.default_rng(2)

    def row(article_id: int) -> repo.VectorRow:
        vector = rng.standard_normal(8).astype(np.float32)
        lang = ("en", "ru", "zh", "zh-hant")[article_id % 4]
        moment = datetime(2026, 11, 20, tzinfo=UTC) + timedelta(minutes=article_id)
        return repo.VectorRow(article_id, article_id, lang, moment, document_to_bytes(vector), "m")

    growing = _Day()
    for article_id in range(1, 60):  # (past the first capacity, read after every row)
        growing.add(row(article_id))
        if article_id % 7 == 0:
            growing.drop(article_id - 3)
        fresh = _Day(rows=list(growing.rows))
        for got, expected in zip(growing.arrays(8), fresh.arrays(8), strict=True):
            assert np.array_equal(got, expected)
    vectors, moments, langs = growing.arrays(8)
    assert len(vectors) == len(growing.rows) == len(moments) == len(langs)
    assert list(langs[:3]) == [r.lang for r in growing.rows[:3]] and "zh-hant" in set(langs)


def test_a_story_counts_under_the_labels_of_any_of_its_articles_once(
    session: Session, settings: Settings
) -> None:
    """The original (zh, say) was classified without a label its translation (en) carries:
    the story still counts once under it, in the series, the digest's articles, the folded
    list and the analyst views, whichever language arrived first."""
    from sqlalchemy import text

    from pipeline.db.engine import apply_views
    from pipeline.db.schema import ArticleTopic, ArticleWatch
    from pipeline.reporting import series_counts, top_articles

    apply_views(session.get_bind())  # type: ignore[arg-type]

    lines = [line("en", hours=-30), line("ru", hours=-28), line("zh", hours=-27)]
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="t", now=NOW)}
    root = results["en"].article_id
    assert root is not None and results["ru"].duplicate_of == root and results["zh"].duplicate_of == root
    topic = session.scalar(
        select(ArticleTopic.topic).where(ArticleTopic.article_id == results["ru"].article_id)
    )
    assert topic is not None, "the translation carries a topic"
    # Only the translations carry the topic (and the watch items): as if the original's
    # language had given it none.
    session.execute(delete(ArticleTopic).where(ArticleTopic.article_id == root))
    session.execute(delete(ArticleWatch).where(ArticleWatch.article_id == root))
    session.commit()
    counts = series_counts(session, NOW - timedelta(days=3), NOW)
    assert counts[f"topic:{topic}"] == 1  # once, though two translations carry it
    listed = top_articles(session, f"topic:{topic}", since=NOW - timedelta(days=3), until=NOW, limit=8)
    assert [a.article_id for a in listed] == [root]
    assert listed[0].evidence  # the translation's evidence, the original having none
    found = repo.find_articles(session, repo.ArticleFilter(topic=topic))
    assert [f.article.id for f in found] == [root]
    # Listed one by one, each article is under its own labels only.
    alone = repo.find_articles(session, repo.ArticleFilter(topic=topic, include_duplicates=True))
    assert root not in [f.article.id for f in alone] and len(alone) == 2
    view = session.execute(
        text("SELECT article_id, evidence_from FROM v_article_topics WHERE topic = :t"), {"t": topic}
    ).all()
    assert [row.article_id for row in view] == [root]
    assert view[0].evidence_from == min(results["ru"].article_id or 0, results["zh"].article_id or 0)
