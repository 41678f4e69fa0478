"""The article list as analysts browse it: ``summitwatch articles``, ``/articles`` and ``/api/articles``.

One function builds a result page (articles with their copies, labels, feed and, for a
search, a highlighted snippet) and the three output forms are made from it: the table
or page, JSON lines and CSV. The CLI and the web layer only parse their flags.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from pipeline import nearby, search
from pipeline.db import repo
from pipeline.db.schema import Article, ArticleTopic, ArticleWatch, Feed
from pipeline.encoder import DEFAULT_MODEL
from pipeline.errors import FilterError
from pipeline.formatting import echoed
from pipeline.language import LANGUAGE_EXAMPLES, filter_language
from pipeline.redaction import redact_optional
from pipeline.unicode_marks import cluster_start, is_blank, joins_previous

UNTITLED_WORDS = 12
UNTITLED_CHARS = 80
_WORDS = re.compile(r"\S+")
_HAN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def lower_bound(when: date | datetime) -> datetime:
    """The inclusive bound of ``since``: a day from its start (UTC), a moment itself."""
    if isinstance(when, datetime):
        return when
    return datetime.combine(when, datetime.min.time(), tzinfo=UTC)


def upper_bound(when: date | datetime) -> datetime | None:
    """The exclusive bound after ``until`` (the CLI's ``--until``, the web UI's ``until``):
    a day includes the whole day (UTC), a moment that moment itself; None when nothing
    can come after it (the last day or moment there is)."""
    try:
        if isinstance(when, datetime):
            return when + timedelta(microseconds=1)
        return lower_bound(when + timedelta(days=1))
    except OverflowError:
        return None


def display_title(article: Article) -> str:
    """The headline, or for an article without one its opening words (ending in "…"). A
    headline of nothing visible (zero-width spaces, a Hangul filler, a blank Braille
    pattern) is none: the list would show an empty line."""
    return visible_title(article.title) or opening_words(article.text)


def visible_title(title: str | None) -> str | None:
    """``title`` stripped, or None when it shows nothing (empty, or only invisible characters)."""
    return title.strip() if title and not is_blank(title) else None


def opening_words(text: str, *, words: int = UNTITLED_WORDS) -> str:
    """The first words of ``text`` on one line: a dozen words, or 80 characters of Chinese."""
    flat = " ".join(text.split())
    if not flat:
        return "(no text)"
    most = UNTITLED_CHARS * words // UNTITLED_WORDS
    opening = " ".join(_WORDS.findall(flat)[:words])
    if len(opening) > most or _HAN.search(opening):
        cut = most
        # Not between a letter and its marks (a Thai vowel sign), nor after a virama or a
        # Khmer coeng, which joins the next letter to the one before, nor inside an emoji.
        while 0 < cut < len(opening) and joins_previous(opening, cut):
            cut -= 1
        opening = opening[:cut]
    return opening + ("…" if len(opening) < len(flat) else "")


def language_filter(value: str | None, *, option: str = "lang") -> str | None:
    """A language filter's code as stored (``--lang``, ``?lang=``): ``EN`` and ``zh-CN`` are
    ``en`` and ``zh``. A value that is no code the language detector gives (``Russian``,
    ``xx``, an empty one) could match no article: refused (:class:`FilterError`, naming
    ``option``). None is no filter (the web UI passes an empty field as None)."""
    if value is None:
        return None
    code = filter_language(value)
    if code is None:
        raise FilterError(
            f"{option}: not a language code the detector gives: {echoed(value)} (e.g. {LANGUAGE_EXAMPLES})"
        )
    return code


def source_name(article: Article) -> str | None:
    """Where an article comes from: its feed's outlet or name, else its URL's host."""
    feed = article.feed
    if feed is not None and (feed.outlet or feed.name):
        return feed.outlet or feed.name
    if article.url:
        try:
            return urlsplit(article.url).hostname
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class ArticleRow:
    """One listed article with its copies and labels; for a search its score and snippet.

    ``matched_in`` is the copy (e.g. a translation) whose text matched when the original's
    own title and text do not: the story was found through it.
    """

    article: Article
    copies: list[Article]
    topics: list[ArticleTopic]
    watch: list[ArticleWatch]
    score: float | None = None
    title_marks: search.Highlighted | None = None
    snippet: search.Highlighted | None = None
    matched_in: Article | None = None
    cross_language: bool = False  # found by meaning in another language, not by its words

    @property
    def moment(self) -> datetime:
        return self.article.published_at or self.article.first_seen_at

    @property
    def source(self) -> str | None:
        return source_name(self.article)

    @property
    def title(self) -> str:
        return display_title(self.article)

    @property
    def untitled(self) -> bool:
        return visible_title(self.article.title) is None


@dataclass(frozen=True)
class ResultPage:
    rows: list[ArticleRow]
    has_more: bool
    cross_language: list[ArticleRow] = field(default_factory=list)


@dataclass(frozen=True)
class CrossLanguage:
    """How a search also looks in other languages: the encoder and how many results to add."""

    model: str = DEFAULT_MODEL
    threads: int = 1
    cache_dir: Path | None = None  # the encoder's cache (``encoder.cache_dir``)
    limit: int = 10
    max_candidates: int = nearby.MAX_CANDIDATES
    cache: nearby.VectorCache | None = None  # a long-running process (serve) keeps vectors


def warm_up(options: CrossLanguage) -> None:
    """Load what the first search would otherwise wait for: the segmenter and the encoder."""
    search.parse_query("能源合作")
    nearby.encode_query("warm up", options.model, options.threads, options.cache_dir)


def list_articles(
    session: Session, wanted: repo.ArticleFilter, *, cross_language: CrossLanguage | None = None
) -> ResultPage:
    """One page of :func:`repo.find_articles` (``wanted.limit`` rows from ``wanted.offset``).

    With ``cross_language``, the first page of a search also carries the articles in
    other scripts nearest the query by meaning (:mod:`pipeline.nearby`).
    """
    query = search.parse_query(wanted.text) if wanted.text is not None else None
    found = repo.find_articles(session, _one_more(wanted))
    window = found[: wanted.limit]
    rows = _rows(session, window, query, stories=not wanted.include_duplicates)
    extra: list[ArticleRow] = []
    if cross_language is not None and wanted.text is not None and wanted.offset == 0:
        shown = {row.article.id for row in rows}
        extra = [
            row for row in _cross_language(session, wanted, cross_language) if row.article.id not in shown
        ]
    return ResultPage(rows, has_more=len(found) > wanted.limit, cross_language=extra)


def _cross_language(session: Session, wanted: repo.ArticleFilter, options: CrossLanguage) -> list[ArticleRow]:
    assert wanted.text is not None
    model, vector = nearby.encode_query(wanted.text, options.model, options.threads, options.cache_dir)
    neighbours = nearby.nearest(
        session,
        vector,
        model=model,
        start=wanted.since,
        end=wanted.until,
        max_candidates=options.max_candidates,
        min_similarity=nearby.MIN_QUERY_SIMILARITY,
        langs_excluded_by_script=nearby.script_of_query(wanted.text),
        limit=options.limit * 3,
        cache=options.cache,
    )
    similarity: dict[int, float] = {}
    for neighbour in neighbours:
        listed = neighbour.article_id if wanted.include_duplicates else neighbour.root_id
        similarity.setdefault(listed, neighbour.similarity)
    if not similarity:
        return []
    ids = tuple(similarity)
    # The list's filters apply. A story listed here neither matched the query's words (a
    # copy in the query's script can make it a text result, on any page) nor is listed by
    # an article in the query's script (its original, when a translation was the nearest).
    allowed = repo.find_articles(session, replace(wanted, text=None, ids=ids, limit=len(ids), offset=0))
    worded = {
        f.article.id for f in repo.find_articles(session, replace(wanted, ids=ids, limit=len(ids), offset=0))
    }
    script = nearby.script_of_query(wanted.text)
    kept = sorted(
        (
            repo.Found(f.article, similarity[f.article.id])
            for f in allowed
            if f.article.id not in worded and nearby.script_of_lang(f.article.lang or "") != script
        ),
        key=lambda f: -(f.score or 0.0),
    )[: options.limit]
    rows = _rows(session, kept, None, opening=True, stories=not wanted.include_duplicates)
    return [replace(row, cross_language=True) for row in rows]


def _rows(
    session: Session,
    window: Sequence[repo.Found],
    query: search.SearchQuery | None,
    *,
    opening: bool = False,
    stories: bool = True,
) -> list[ArticleRow]:
    """The rows of ``window``; with ``stories`` each original shows its story's labels."""
    articles = [item.article for item in window]
    ids = [article.id for article in articles]
    copies = repo.copies_of(session, ids)
    labels = (
        _story_labels(repo.labels_of(session, ids + [c.id for row in copies.values() for c in row]), copies)
        if stories
        else repo.labels_of(session, ids)
    )
    load_related(session, articles + [copy for row in copies.values() for copy in row])
    rows = []
    for item in window:
        article = item.article
        row_copies = copies.get(article.id, [])
        topics, watch = labels[article.id]
        if opening:
            lead = search.Highlighted(((opening_words(article.text, words=40), False),))
            rows.append(ArticleRow(article, row_copies, topics, watch, item.score, snippet=lead))
            continue
        if query is None:
            rows.append(ArticleRow(article, row_copies, topics, watch))
            continue
        title_marks = search.highlight(display_title(article), query)
        matched_in = None
        # (One reading of a long text gives both its passage and the terms it holds.)
        text_marks, text_terms = search.snippet_and_terms(article.text, query)
        # A story matches when any of its articles does: when a copy (a translation, say)
        # holds more of the query's terms than the original, its passage is the one shown,
        # and the row says where the words were found.
        if row_copies:
            own = len(search.matched_terms(display_title(article), query) | text_terms)
            for copy in row_copies:
                held = _terms_held(copy.title or "", copy.text, query)
                if held > own:
                    own, matched_in, text_marks = held, copy, search.snippet(copy.text, query)
        rows.append(
            ArticleRow(article, row_copies, topics, watch, item.score, title_marks, text_marks, matched_in)
        )
    return rows


def _story_labels(
    labels: dict[int, tuple[list[ArticleTopic], list[ArticleWatch]]], copies: dict[int, list[Article]]
) -> dict[int, tuple[list[ArticleTopic], list[ArticleWatch]]]:
    """Each original's labels as its story's: its own, then those only its copies carry.

    A story is listed under every label any of its articles carries (a translation is
    classified in its own language and can carry one its original did not get), so its row
    shows them all, as ``v_story_labels`` does: the original's own label when it has one,
    else its first copy's (that label's ``article_id`` says which copy).
    """
    merged: dict[int, tuple[list[ArticleTopic], list[ArticleWatch]]] = {}
    for article_id, copy_rows in copies.items():
        topics, watch = list(labels[article_id][0]), list(labels[article_id][1])
        for copy in copy_rows:
            copy_topics, copy_watch = labels[copy.id]
            topics += [t for t in copy_topics if t.topic not in {held.topic for held in topics}]
            watch += [w for w in copy_watch if w.item not in {held.item for held in watch}]
        merged[article_id] = (topics, watch)
    return labels | merged


def _terms_held(title: str, text: str, query: search.SearchQuery) -> int:
    """How many distinct terms of ``query`` an article's title and text hold together."""
    return len(search.matched_terms(title, query) | search.matched_terms(text, query))


def _one_more(wanted: repo.ArticleFilter) -> repo.ArticleFilter:
    return replace(wanted, limit=wanted.limit + 1)


def load_related(session: Session, articles: Sequence[Article]) -> None:
    """Load ``feed`` and ``duplicate_of`` of ``articles`` in a few queries, not one per row."""
    feed_ids = {a.feed_id for a in articles if a.feed_id is not None}
    original_ids = {a.duplicate_of_id for a in articles if a.duplicate_of_id is not None}
    feeds = {f.id: f for f in session.scalars(select(Feed).where(Feed.id.in_(feed_ids)))} if feed_ids else {}
    originals = repo.articles_by_id(session, original_ids)
    for article in articles:
        set_committed_value(article, "feed", feeds.get(article.feed_id) if article.feed_id else None)
        set_committed_value(
            article,
            "duplicate_of",
            originals.get(article.duplicate_of_id) if article.duplicate_of_id else None,
        )


# Output forms ----------------------------------------------------------------------------------


def article_json(
    row: Article, row_copies: list[Article], topics: list[ArticleTopic], watch: list[ArticleWatch]
) -> dict[str, Any]:
    """One article as a line of ``summitwatch articles --json`` (and an item of ``/api/articles``)."""
    original = row.duplicate_of
    return {
        "id": row.id,
        "url": redact_optional(row.url),
        "title": row.title,
        "display_title": display_title(row),
        "lang": row.lang,
        "published_at": row.published_at.isoformat() if row.published_at else None,
        "first_seen_at": row.first_seen_at.isoformat(),
        "feed_id": row.feed_id,
        "source": source_name(row),
        "is_seed": row.is_seed,
        "duplicate_of": row.duplicate_of_id,
        "duplicate_of_title": original.title if original is not None else None,
        "duplicate_of_url": redact_optional(original.url) if original is not None else None,
        "copy_kind": row.copy_kind,
        "link_detail": row.link_detail,
        "similarity": row.similarity,
        "relevant": row.relevant,
        # A story's label carried only by a copy (a translation, say) names that copy.
        "topics": [
            {"topic": t.topic, "score": t.score, "evidence": t.evidence, "evidence_from": t.article_id}
            for t in topics
        ],
        "watch": [
            {"item": w.item, "score": w.score, "evidence": w.evidence, "evidence_from": w.article_id}
            for w in watch
        ],
        "words": row.word_count,
        "copies": [
            {
                "id": c.id,
                "url": redact_optional(c.url),
                "lang": c.lang,
                "copy_kind": c.copy_kind,
                "similarity": c.similarity,
            }
            for c in row_copies
        ],
        "text": row.text[: cluster_start(row.text, 500)],
    }


def row_json(row: ArticleRow) -> dict[str, Any]:
    """:func:`article_json` plus, for a search, how it matched, its score and the snippet.

    ``match`` is ``"text"`` (its words) or ``"cross-language"`` (its meaning, in another
    language; ``score`` is then the cosine similarity to the query).
    """
    data = article_json(row.article, row.copies, row.topics, row.watch)
    if row.snippet is not None:
        data["match"] = "cross-language" if row.cross_language else "text"
        data["score"] = row.score
        data["snippet"] = row.snippet.text
        data["highlights"] = row.snippet.ranges()
        data["matched_in"] = (
            {"id": row.matched_in.id, "lang": row.matched_in.lang} if row.matched_in is not None else None
        )
    return data


CSV_COLUMNS = (
    "id",
    "published_at",
    "first_seen_at",
    "lang",
    "title",
    "url",
    "source",
    "feed_id",
    "topics",
    "watch",
    "is_seed",
    "duplicate_of",
    "copies",
    "score",
    "snippet",
    "match",
)


def csv_text(rows: Iterable[ArticleRow]) -> str:
    """The rows as CSV (a header line first); cells that a spreadsheet would run as a formula are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        article = row.article
        writer.writerow(
            [
                _cell(value)
                for value in (
                    article.id,
                    article.published_at.isoformat() if article.published_at else "",
                    article.first_seen_at.isoformat(),
                    article.lang,
                    row.title,
                    redact_optional(article.url) or "",
                    row.source or "",
                    article.feed_id if article.feed_id is not None else "",
                    ";".join(t.topic for t in row.topics),
                    ";".join(w.item for w in row.watch),
                    int(article.is_seed),
                    article.duplicate_of_id if article.duplicate_of_id is not None else "",
                    len(row.copies),
                    f"{row.score:.4f}" if row.score is not None else "",
                    row.snippet.text if row.snippet is not None else "",
                    ("cross-language" if row.cross_language else "text") if row.snippet is not None else "",
                )
            ]
        )
    return out.getvalue()


def _cell(value: Any) -> Any:
    # A title like "=HYPERLINK(...)" must stay text when the export is opened in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
