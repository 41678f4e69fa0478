"""Ingestion: the stages composed into "a feed item goes in, a stored article comes out".

This is the orchestration layer shared by the CLI (``run``, ``import``, ``demo``) and the
Airflow tasks. Stages stay pure; this module owns the order, the database writes and the
three outcomes of an item: stored (``new``), rejected as expected (``duplicate``), or
failed (``error``, recorded in ``fetch_failures`` and retried or quarantined).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import signal
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, object_session

from pipeline import crosslingual, dedup, encoder, importers, language, neardup
from pipeline.classify import TopicRegistry, classify, load_registry
from pipeline.crosslingual import Gazetteer, TranslationParams
from pipeline.db import fulltext, repo
from pipeline.db.engine import driver_reason, is_busy, refuses_writes, require_database
from pipeline.db.schema import CONTROL_CHARACTERS, MAX_ROW_ID, Article, ArticleVector, Feed, utcnow
from pipeline.errors import (
    ConfigError,
    DatabaseBusy,
    DatabaseError,
    ExtractionError,
    FetchError,
    FilterError,
    ItemError,
)
from pipeline.extract import extract_page
from pipeline.feed_urls import front_page, normalise_feed_url
from pipeline.feeds import EARLIEST_DATE, FeedParseError, ParsedFeed, parse_feed, rfc822_date
from pipeline.http import (
    PASSING_REFUSALS,
    HostBreaker,
    HttpClient,
    HttpResponse,
    PageFetcher,
    PendingPage,
    host_of,
    redirected_away,
    seconds_until_http_date,
    sendable,
    site_of,
)
from pipeline.language import detect_language
from pipeline.neardup import NearDupParams
from pipeline.prepare import (
    MIN_PAGES_FOR_WORKERS,
    PageJob,
    Prepared,
    PreparePool,
    TextWork,
    classified,
    page_candidate,
    prepare_page,
    text_work,
)
from pipeline.records import ArticleCandidate, Classification, FeedItem, Fingerprint, TopicHit, WatchHit
from pipeline.redaction import redact_optional, redact_text, redact_url
from pipeline.settings import Settings
from pipeline.topic_heads import LabelHeads, classify_hybrid, load_heads
from pipeline.unicode_marks import is_blank
from pipeline.vectorindex import VectorIndex

log = logging.getLogger(__name__)

# A publication time this far after the moment an item is read is a wrong clock or time
# zone, not a date: the item is taken as undated.
FUTURE_TOLERANCE = timedelta(hours=6)

Status = Literal["new", "duplicate", "error"]
CopyKind = Literal["exact", "near", "version", "translation"]
# How one feed's poll ends (a poll task counts each as ``feeds_<outcome>``).
FeedOutcome = Literal["fetched", "not_modified", "unchanged", "error", "gone"]
COPY_KINDS: frozenset[str] = frozenset({"exact", "near", "version", "translation"})
ProgressCallback = Callable[[str], None]
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
MAX_URL_LENGTH = 2048
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]|\w+", re.UNICODE)


@dataclass
class ItemResult:
    """What happened to one item."""

    status: Status
    article_id: int | None = None
    duplicate_of: int | None = None
    similarity: float | None = None
    lang: str | None = None
    error: str | None = None
    url: str | None = None
    title: str | None = None
    topics: list[TopicHit] = field(default_factory=list)
    watch: list[WatchHit] = field(default_factory=list)
    copy_kind: CopyKind | None = None
    # Handled before this poll: stored from an earlier poll of the same feed, or its page's
    # failure recorded earlier (waiting for its retry, or quarantined). Counted as ``seen``,
    # apart from what this poll found: a feed lists the same items until they scroll off.
    seen_before: bool = False

    def counted_as(self) -> str:
        """The key this item adds to a poll's counts: its status, or ``seen``."""
        return "seen" if self.seen_before else self.status


def _forget_on_rollback(context: weakref.ref[IngestContext]) -> Callable[[Session, object], None]:
    def forget(session: Session, previous: object) -> None:
        alive = context()
        if alive is not None:
            alive.forget_kept()

    return forget


# Vectors offered ahead and not yet taken that are kept (the oldest are dropped).
OFFERED_LIMIT = 64
# Articles stored by this run whose sentence vectors (as stored) and text are kept, for the
# translation check of the items after them (the oldest are dropped; a few MB).
RECENT_LIMIT = 1024


class StoredSide(NamedTuple):
    """What the translation check reads of a stored article: its sentence vectors as stored."""

    model: str
    sentences: bytes
    has_title: bool
    text: str


@dataclass(frozen=True)
class IngestContext:
    """What every item of a run needs, built once per run (or task) from the settings.

    The encoder is loaded on first use (a run where every feed answers 304 never loads it)
    and then kept for the process.
    """

    settings: Settings
    neardup_params: NearDupParams
    registry: TopicRegistry
    gazetteer: Gazetteer
    translation_params: TranslationParams
    pool: PreparePool
    # The hosts whose pages timed out too often in a row in this run (their other pages wait).
    hosts: HostBreaker = field(default_factory=lambda: HostBreaker(0))
    vector_indexes: dict[str, VectorIndex] = field(default_factory=dict)
    loaded_heads: dict[str, LabelHeads] = field(default_factory=dict)
    # What a prepare worker computed (vectors, verdict), waiting for its article to be stored.
    offered: OrderedDict[tuple[str | None, str], Prepared] = field(default_factory=OrderedDict)
    # Articles this run stored (by id), for the translation check of later items.
    recent: OrderedDict[int, StoredSide] = field(default_factory=OrderedDict)
    # Sessions whose rollbacks drop what this context keeps of rows written through them,
    # with the listener each was given (removed by close()).
    watched: weakref.WeakKeyDictionary[Session, Callable[[Session, object], None]] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    @classmethod
    def from_settings(cls, settings: Settings, hosts: HostBreaker | None = None) -> IngestContext:
        """``hosts``: the breaker of hosts not to ask (one kept across runs); by default one
        for this run alone."""
        language.use_cache(settings.encoder.cache_path)
        return cls(
            settings,
            settings.neardup_params(),
            load_registry(settings.topics_file),
            crosslingual.load_gazetteer(settings.gazetteer_file),
            settings.translation_params(),
            PreparePool(settings, settings.poll.worker_count()),
            hosts or HostBreaker(settings.http.host_timeout_limit),
        )

    def close(self) -> None:
        """Stop the prepare workers, if any were started, and stop listening to sessions."""
        self.pool.close()
        for session, listener in list(self.watched.items()):
            event.remove(session, "after_soft_rollback", listener)
        self.watched.clear()

    def offer(self, prepared: Prepared) -> None:
        """What a worker computed for a candidate; :meth:`embed` and :meth:`verdict` take it."""
        if prepared.candidate is None:
            return
        self.offered[(prepared.candidate.title, prepared.candidate.text)] = prepared
        while len(self.offered) > OFFERED_LIMIT:  # an item that turned out to be a copy
            self.offered.popitem(last=False)

    def _watch(self, session: Session) -> None:
        """Drop what is kept when ``session`` rolls back: a rollback takes the rows written
        through it away (on SQLite their ids may come back for other articles) and puts
        replaced vectors back. (The listener holds the context weakly: a long-lived session
        must not keep every run's context.)"""
        if session not in self.watched:
            listener = _forget_on_rollback(weakref.ref(self))
            event.listen(session, "after_soft_rollback", listener)
            self.watched[session] = listener

    def remember_stored(self, session: Session, row: repo.VectorRow, side: StoredSide) -> None:
        """A new article's vectors as just stored through ``session``: the vector index and
        the translation check see them without reading them back."""
        self._watch(session)
        index = self.vector_indexes.get(row.model)
        if index is not None:
            index.add([row])
        self.recent[row.article_id] = side
        while len(self.recent) > RECENT_LIMIT:
            self.recent.popitem(last=False)

    def replaced(self, session: Session, row: repo.VectorRow) -> None:
        """The vectors of ``row.article_id`` were just replaced through ``session`` by
        ``row``'s: what this run keeps of the old ones goes, the vector indexes hold the new
        one in their place (an index that cannot tell where it belongs is dropped)."""
        self._watch(session)
        self.recent.pop(row.article_id, None)
        for model, index in list(self.vector_indexes.items()):
            if not index.replace(row.article_id, row):
                del self.vector_indexes[model]

    def forget_kept(self) -> None:
        """Drop what this run keeps of stored vectors (after a rollback, which can take rows
        away): the next lookup reads them again, day by day."""
        self.recent.clear()
        self.vector_indexes.clear()

    def prepare_here(self, job: PageJob) -> Future[Prepared]:
        """A worker's job done in this process: what :func:`prepare_page` and the classifier give."""
        done: Future[Prepared] = Future()
        try:
            prepared = classified(
                prepare_page(self.settings, job, self.gazetteer), self.registry, self.classifier_heads
            )
        except Exception as exc:  # raised in the job's own turn, not in the current item's
            done.set_exception(exc)
        else:
            done.set_result(prepared)
        return done

    def text_work(self, candidate: ArticleCandidate) -> TextWork | None:
        """What a worker computed of ``candidate``'s text (shingles, evidence, search terms)."""
        offered = self.offered.get((candidate.title, candidate.text))
        return offered.text if offered is not None else None

    def verdict(self, article: Article, vectors: encoder.ArticleVectors) -> Classification:
        """The hybrid classifier's verdict on a new article (a worker's, when it computed one)."""
        offered = self.offered.pop((article.title, article.text), None)
        if offered is not None and offered.classification is not None and offered.vectors is vectors:
            return offered.classification
        return classify_hybrid(
            self.registry,
            self.classifier_heads,
            title=article.title,
            text=article.text,
            lang=article.lang,
            vectors=vectors,
        )

    @property
    def sentence_encoder(self) -> encoder.SentenceEncoder:
        return encoder.load_configured(self.settings.encoder)

    @property
    def classifier_heads(self) -> LabelHeads:
        """The classifier's learned layer for the configured encoder, loaded on first use."""
        model = self.sentence_encoder.name
        if model not in self.loaded_heads:
            self.loaded_heads[model] = load_heads(
                self.registry, encoder=self.sentence_encoder, cache_dir=self.settings.encoder.cache_path
            )
        return self.loaded_heads[model]

    def stored_vectors(
        self,
        session: Session,
        article: Article,
        *,
        rows: Mapping[int, tuple[ArticleVector, str]] | None = None,
    ) -> encoder.ArticleVectors:
        """The article's stored vectors (computed and stored if it has none under this encoder).

        ``rows``: what :func:`pipeline.db.repo.sentence_vectors` gave for a batch of
        articles including this one (otherwise read here).
        """
        if rows is None:
            rows = repo.sentence_vectors(session, [article.id])
        vectors = self.usable_vectors(article, rows)
        if vectors is None:
            vectors = self.embed(article.title, article.text)
            _store_article_vectors(session, self, article, vectors)
        return vectors

    def usable_vectors(
        self, article: Article, rows: Mapping[int, tuple[ArticleVector, str]]
    ) -> encoder.ArticleVectors | None:
        """The article's vectors in ``rows`` (:func:`pipeline.db.repo.sentence_vectors`),
        when they are this encoder's for its text as it is; None when it must be encoded."""
        model = self.sentence_encoder.name
        row = rows.get(article.id)
        limits = self.settings.encoder
        if row is None or row[0].model != model:
            return None
        units, has_title = encoder.article_units(
            article.title,
            article.text,
            max_sentences=limits.max_sentences,
            max_chars=limits.max_sentence_chars,
        )
        sentences = encoder.sentences_from_bytes(row[0].sentences, self.sentence_encoder.dim)
        # Stored under a higher max_sentences: the units are the first ones of those
        # stored (each unit's vector is its own), so a lowered limit re-encodes nothing.
        sentences = sentences[: len(units)]
        if len(units) != len(sentences) or has_title != row[0].has_title:
            return None
        document = encoder.document_from_bytes(row[0].document)
        return encoder.ArticleVectors(model, document, sentences, tuple(units), has_title)

    def vector_index(self, model: str) -> VectorIndex:
        """The run's view of the stored document vectors of ``model``."""
        if model not in self.vector_indexes:
            self.vector_indexes[model] = VectorIndex(
                model, undated_scope=self.settings.translations.undated_scope
            )
        return self.vector_indexes[model]

    def embed(self, title: str | None, text: str) -> encoder.ArticleVectors:
        """The vectors of an article, with the configured limits (those offered, if any)."""
        offered = self.offered.get((title, text))
        if offered is not None and offered.vectors is not None:
            return offered.vectors
        limits = self.settings.encoder
        return encoder.embed_configured(self.sentence_encoder, title, text, limits)


@dataclass
class PollResult:
    """What happened to one feed in one cycle."""

    feed_id: int
    feed_url: str
    outcome: FeedOutcome
    items: list[ItemResult] = field(default_factory=list)
    error: str | None = None
    # Where the feed was found to have moved for good in this poll (polled there from now on).
    moved_to: str | None = None

    def counts(self) -> Counter[str]:
        return Counter(item.counted_as() for item in self.items)


@dataclass
class CycleSummary:
    """Totals over one polling cycle."""

    polls: list[PollResult] = field(default_factory=list)
    retried: list[ItemResult] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for poll in self.polls:
            total.update(poll.counts())
            total[f"feeds_{poll.outcome}"] += 1
            if poll.moved_to:
                total["feeds_moved"] += 1
        total.update(item.counted_as() for item in self.retried)
        return total

    def new_by_language(self) -> Counter[str]:
        return Counter(
            item.lang or "und" for poll in self.polls for item in [*poll.items] if item.status == "new"
        ) + Counter(item.lang or "und" for item in self.retried if item.status == "new")


# Building a candidate (pure stages) -------------------------------------------------------


def build_candidate(
    settings: Settings,
    *,
    url: str | None,
    title: str | None,
    html: bytes | None = None,
    text: str | None = None,
    published_at: datetime | None = None,
    content_type: str | None = None,
    lang_hint: str | None = None,
    feed_url: str | None = None,
    source_id: str | None = None,
    now: datetime | None = None,
) -> ArticleCandidate:
    """Extract (if HTML), detect the language and fingerprint one item.

    Raises :class:`ExtractionError` when there is no usable text.
    """
    now = now or utcnow()
    extracted_date: str | None = None
    page_lang: str | None = None
    page_hash: str | None = None
    if text is None:
        if html is None:
            raise ExtractionError("item has neither html nor text", permanent=True)
        page_hash = hashlib.sha256(html).hexdigest()
        with time_limit(settings.poll.extract_timeout_seconds):
            page = extract_page(html, url=url, content_type=content_type, max_bytes=settings.http.max_bytes)
        if page.error:
            raise ExtractionError(page.error, permanent=True)
        text = page.text
        title = title or page.title
        page_lang = page.lang_hint
        extracted_date = page.date
        stripped = text.strip()
        length = language.text_length(stripped)  # (a Han character counts as a short word)
        if length < settings.poll.min_text_chars:
            counted = f", counted as {length}" if length != len(stripped) else ""
            raise ExtractionError(
                f"extracted text too short ({len(stripped)} characters{counted}, minimum "
                f"{settings.poll.min_text_chars})",
                permanent=True,
            )
    text = _tidy_text(clean_string(text))
    # A title is one line: line breaks and runs of spaces (an import's "\r", a page's
    # wrapped <title>) would break every list that prints it.
    title = _bounded_title(" ".join(clean_string(title).split())) or None if title else title
    if not text:
        raise ExtractionError("empty text", permanent=True)
    if not _LETTER_OR_DIGIT.search(text) and not dedup.normalise_text(text):
        # Emoji, symbols or punctuation alone: nothing to read, detect or classify, and no
        # text to tell two such items apart by (each would hash as the empty text, an
        # exact copy of every other).
        raise ExtractionError("no text: no letters or digits", permanent=True)
    published = published_at or _parse_date(extracted_date)
    if published is not None and published > now + FUTURE_TOLERANCE:
        published = None  # a wrong clock or time zone: the date says nothing
    guess = detect_language(
        f"{title or ''}\n{text}",
        priors=[page_lang, lang_hint],  # what the page declares, then the feed (or import line)
        min_letters=settings.language.min_letters,
        min_confidence=settings.language.min_confidence,
        sample_chars=settings.language.sample_chars,
    )
    fingerprint = Fingerprint(
        canonical_url=dedup.canonical_url(url) if url else None,
        content_hash=dedup.content_hash(text),
        page_hash=page_hash,
    )
    return ArticleCandidate(
        url=url,
        title=(title or "").strip() or None,
        text=text,
        lang=guess.lang,
        published_at=published,
        feed_url=feed_url,
        source_id=source_id,
        fingerprint=fingerprint,
        extra={"lang_confidence": guess.confidence},
    )


class _TimeLimitExceeded(BaseException):
    # BaseException: library code that catches Exception must not swallow the time limit.
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Stop the block after ``seconds`` of wall time with a permanent :class:`ExtractionError`.

    Pathological pages (hundreds of thousands of links or unclosed tags) can keep the
    HTML parser busy for minutes. The limit uses SIGALRM, so it applies in the main
    thread (the CLI, an Airflow task process); elsewhere the block runs unbounded.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _TimeLimitExceeded

    outer_remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_remaining and outer_remaining <= seconds:
        yield  # an outer timer (Airflow's execution_timeout) fires first anyway
        return
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _TimeLimitExceeded:
        raise ExtractionError(f"extraction took longer than {seconds:g} s", permanent=True) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining:
            # Give the outer timer (e.g. Airflow's execution_timeout) its remaining time back.
            signal.setitimer(signal.ITIMER_REAL, max(outer_remaining - (time.monotonic() - started), 0.001))


# Longest title stored: a feed or page can carry megabytes in its <title>, which every
# list, digest and search would then show.
MAX_TITLE_CHARS = 1000


def _bounded_title(title: str) -> str:
    """``title`` cut to :data:`MAX_TITLE_CHARS`, at a space when one is near the end."""
    if len(title) <= MAX_TITLE_CHARS:
        return title
    cut = title.rfind(" ", MAX_TITLE_CHARS - 100, MAX_TITLE_CHARS)
    return title[: cut if cut > 0 else MAX_TITLE_CHARS].rstrip() + "…"


def clean_string(value: str) -> str:
    """Drop what no database should store: NUL and other control characters, lone surrogates.

    PostgreSQL refuses NUL in text and any database driver refuses unpaired surrogates
    (which JSON input can carry as ``\\ud800``); either would otherwise fail the item late.
    """
    value = CONTROL_CHARACTERS.sub("", value)
    return value.encode("utf-8", "replace").decode("utf-8")


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def _tidy_text(text: str) -> str:
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.replace("\r", "\n").split("\n")]
    tidy = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", tidy).strip()


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # Placeholder dates of broken systems (1970-01-01, 0001-01-01) are no dates at all.
    return moment if moment >= EARLIEST_DATE else None


def count_words(text: str) -> int:
    """Words in space-separated scripts, characters in Chinese/Japanese."""
    return len(_WORD.findall(text))


# Storing (exact deduplication) -----------------------------------------------------------


def store_candidate(
    session: Session,
    candidate: ArticleCandidate,
    *,
    via: str,
    context: IngestContext,
    feed_id: int | None = None,
    seen_at: datetime | None = None,
    is_seed: bool = False,
) -> ItemResult:
    """Store ``candidate`` unless it is already known; always record the sighting.

    In order:

    * the same canonical URL (polled twice, the same link in two feeds) adds only a
      sighting; if the text changed, the old text is kept as a version and replaced, and
      the article is linked as its new text is (:func:`_link_new_version`);
    * the same normalised text with no URL (a re-imported line) adds only a sighting;
    * the same text under another URL (syndication) is stored pointing at the earliest
      copy, with similarity 1.0;
    * a near duplicate (MinHash LSH candidates, each verified) is stored pointing at the
      earliest copy of the closest match, with its similarity;
    * anything else is new coverage.

    Every stored row (original or copy) is classified; only originals count as coverage.
    """
    neardup_params = context.neardup_params
    seen_at = seen_at or utcnow()
    assert candidate.fingerprint is not None
    canonical = candidate.fingerprint.canonical_url
    content_hash = candidate.fingerprint.content_hash
    sighting_url = candidate.url or f"text:{content_hash[:16]}"
    existing = repo.article_by_canonical_url(session, canonical) if canonical else None
    if existing is not None and existing.is_seed and existing.content_hash != content_hash:
        # Another text at a seed document's URL: the seed's text is the curated one and is
        # never replaced, so this text is judged as a text without a URL of its own (a page
        # extracted from the seed's site is a near copy of it; something else is stored as
        # what it is). It was reported as an exact copy of the seed and stored nowhere.
        canonical, existing = None, None
    page_hash = candidate.fingerprint.page_hash
    if existing is not None:
        repo.add_sighting(session, existing.id, via, sighting_url, seen_at)
        if page_hash and existing.page_hash is None and existing.content_hash == content_hash:
            existing.page_hash = page_hash  # (stored before pages were hashed: known from now on)
        # The page it was stored from, read again by another extractor (after an upgrade),
        # is the same page: only a changed page is a new version.
        same_page = page_hash is not None and existing.page_hash == page_hash
        if (
            existing.content_hash != content_hash
            and not same_page
            and not repo.had_version(session, existing.id, content_hash)
        ):
            vectors, near = _replace_with_new_version(session, existing, candidate, context, seen_at)
            _link_new_version(session, existing, candidate, vectors, near, context, seen_at)
            verdict = classify_article(
                session, existing, context.registry, seen_at, context.classifier_heads, vectors
            )
            return _duplicate_result(
                existing.id,
                existing.duplicate_of_id,
                existing.lang,
                "version",
                candidate,
                verdict=verdict,
            )
        return _duplicate_result(
            existing.id,
            existing.duplicate_of_id,
            existing.lang,
            existing.copy_kind,
            candidate,
            existing.similarity,
        )
    original = repo.original_by_content_hash(session, content_hash)
    if original is not None and canonical is None:
        repo.add_sighting(session, original.id, via, sighting_url, seen_at)
        return _duplicate_result(
            original.id,
            original.duplicate_of_id,
            original.lang,
            original.copy_kind,
            candidate,
            original.similarity,
        )
    ahead = context.text_work(candidate)  # computed with the vectors (None for seeds)
    if ahead is not None:
        crosslingual.remember_evidence(candidate.text, candidate.lang, ahead.evidence, context.gazetteer)
    near = (
        ahead.near if ahead is not None else neardup.index_of(candidate.text, candidate.lang, neardup_params)
    )
    duplicate_of, similarity, copy_kind, link_detail = _copy_link(session, original, near, neardup_params)
    vectors = context.embed(candidate.title, candidate.text)
    # A date a little ahead (FUTURE_TOLERANCE: a clock or time-zone slip) cannot be when it
    # was published, as it was seen before: it is stored as the moment it was first seen.
    # So ``coalesce(published_at, first_seen_at)`` is the one moment every reader uses
    # (coverage, the SQL views, the article list and its filters).
    published_at = min(candidate.published_at, seen_at) if candidate.published_at else None
    moment = published_at or seen_at
    translation: TranslationLink | None = None
    if duplicate_of is None and context.settings.translations.enabled:
        translation = _closest_translation(session, candidate, vectors, moment, context)
        if translation is not None:
            duplicate_of, similarity, link_detail = (
                translation.root,
                translation.similarity,
                translation.detail,
            )
            copy_kind = "translation"
    article = Article(
        url=candidate.url,
        canonical_url=canonical,
        source_id=candidate.source_id,
        title=candidate.title,
        text=candidate.text,
        lang=candidate.lang,
        lang_confidence=candidate.extra.get("lang_confidence"),
        published_at=published_at,
        first_seen_at=seen_at,
        feed_id=feed_id,
        content_hash=content_hash,
        page_hash=candidate.fingerprint.page_hash,
        duplicate_of_id=duplicate_of,
        similarity=similarity,
        copy_kind=copy_kind,
        link_detail=link_detail,
        is_seed=is_seed,
        word_count=count_words(candidate.text),
    )
    # Classified before the insert, so that the row is written once, verdict included.
    verdict = context.verdict(article, vectors)
    article.relevant, article.classified_at = verdict.relevant, seen_at
    stored = repo.insert_article(session, article)
    if stored is None:
        # Another worker stored the same URL between our lookup and insert.
        assert canonical is not None
        winner = repo.article_by_canonical_url(session, canonical)
        assert winner is not None
        repo.add_sighting(session, winner.id, via, sighting_url, seen_at)
        return _duplicate_result(
            winner.id, winner.duplicate_of_id, winner.lang, winner.copy_kind, candidate, winner.similarity
        )
    if translation is not None:
        translation.merge_into_root(session, stored.id)
    # A new row: its sighting, signature, vectors and labels are only inserted (nothing to
    # replace), directly, without the look-ups and deletes a replacement needs.
    repo.add_sighting(session, stored.id, via, sighting_url, seen_at, new_article=True)
    fulltext.index_article(
        session, stored.id, stored.title, stored.text, indexed=ahead.indexed if ahead is not None else None
    )
    if near.signature:
        repo.store_signature(
            session,
            stored.id,
            neardup_params.scheme,
            neardup.signature_to_bytes(near.signature),
            near.keys,
            new_article=True,
        )
    dated = candidate.published_at is not None
    document, sentences = _store_vectors(
        session, context, stored.id, vectors, candidate.lang, moment, dated=dated, new_article=True
    )
    context.remember_stored(
        session,
        repo.VectorRow(
            stored.id,
            duplicate_of or stored.id,
            candidate.lang,
            moment.astimezone(UTC),
            document,
            vectors.model,
            dated=dated,
        ),
        StoredSide(vectors.model, sentences, vectors.has_title, candidate.text),
    )
    repo.replace_classification(session, stored, verdict, seen_at, new_article=True)
    status: Status = "duplicate" if duplicate_of is not None else "new"
    return ItemResult(
        status,
        stored.id,
        duplicate_of,
        similarity,
        stored.lang,
        url=candidate.url,
        title=candidate.title,
        topics=verdict.topics,
        watch=verdict.watch,
        copy_kind=copy_kind,
    )


def reindex_vectors(
    session: Session,
    context: IngestContext,
    *,
    recompute: bool = False,
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Compute the vectors of stored articles lacking them (``recompute``: of every article).

    Commits after each batch, so an interrupted back-fill resumes where it stopped. Returns
    how many articles were indexed.
    """
    model = context.sentence_encoder.name
    done = 0
    last = 0
    while True:
        if recompute:
            ids = list(
                session.scalars(
                    select(Article.id).where(Article.id > last).order_by(Article.id).limit(batch_size)
                )
            )
        else:
            ids = repo.article_ids_without_vectors(session, model, after_id=last, limit=batch_size)
        if not ids:
            return done
        wanted = select(Article).where(Article.id.in_(ids)).order_by(Article.id)
        # Encoded without the writers' lock (seconds a batch), then stored under it against
        # the articles as they are now: one given a new version meanwhile (another process
        # storing it) is encoded again, never given the vectors of the text it had.
        encoded = {
            article.id: ((article.title, article.content_hash), context.embed(article.title, article.text))
            for article in session.scalars(wanted)
        }
        repo.begin_write(session)
        for article in session.scalars(wanted.execution_options(populate_existing=True)):
            read, vectors = encoded.get(article.id, (None, None))
            if vectors is None or read != (article.title, article.content_hash):
                vectors = context.embed(article.title, article.text)
            _store_article_vectors(session, context, article, vectors)
        session.commit()
        done += len(ids)
        last = ids[-1]
        if progress:
            progress(done)


def index_articles(session: Session, context: IngestContext, article_ids: Sequence[int]) -> None:
    """Compute and store the vectors of ``article_ids`` (replacing any they had)."""
    if not article_ids:
        return
    for article in session.scalars(
        select(Article).where(Article.id.in_(list(article_ids))).order_by(Article.id)
    ):
        vectors = context.embed(article.title, article.text)
        _store_article_vectors(session, context, article, vectors)


def reclassify_articles(
    session: Session, context: IngestContext, article_ids: Sequence[int], now: datetime
) -> list[Classification]:
    """Classify the articles of ``article_ids`` again with their stored vectors (encoded and
    stored where missing) and replace their labels: a few statements for the batch, not
    several per article. Returns the verdicts, in id order; ids no longer stored are skipped.

    The batch is encoded (where it has no vectors) and classified without the writers'
    lock, then stored under it (:func:`pipeline.db.repo.begin_write`) against the articles
    as they are then: one given a new version meanwhile (a `run` or `import` beside it) is
    classified again. Done under the lock, a batch of 500 articles without vectors held it
    for minutes, and every `run` and `import` beside it stopped, the database locked.
    """
    wanted = select(Article).where(Article.id.in_(list(article_ids))).order_by(Article.id)
    articles = list(session.scalars(wanted))
    rows = repo.sentence_vectors(session, [article.id for article in articles])
    # (id: (title and text hash classified, vectors encoded here to store or None, verdict))
    prepared: dict[int, tuple[tuple[str | None, str], encoder.ArticleVectors | None, Classification]] = {}
    for article in articles:
        encoded = None
        vectors = context.usable_vectors(article, rows)
        if vectors is None:
            vectors = encoded = context.embed(article.title, article.text)
        verdict = _hybrid_verdict(context.registry, context.classifier_heads, article, vectors)
        prepared[article.id] = ((article.title, article.content_hash), encoded, verdict)
    repo.begin_write(session)  # (writers take turns: see repo.begin_write)
    verdicts: list[tuple[Article, Classification]] = []
    for article in session.scalars(wanted.execution_options(populate_existing=True)):
        earlier = prepared.get(article.id)
        if earlier is None or earlier[0] != (article.title, article.content_hash):
            vectors = context.stored_vectors(session, article)
            verdicts.append(
                (article, _hybrid_verdict(context.registry, context.classifier_heads, article, vectors))
            )
            continue
        _, encoded, verdict = earlier
        if encoded is not None:
            _store_article_vectors(session, context, article, encoded)
        verdicts.append((article, verdict))
    repo.replace_classifications(session, verdicts, now)
    return [verdict for _, verdict in verdicts]


def _hybrid_verdict(
    registry: TopicRegistry, heads: LabelHeads, article: Article, vectors: encoder.ArticleVectors
) -> Classification:
    return classify_hybrid(
        registry, heads, title=article.title, text=article.text, lang=article.lang, vectors=vectors
    )


def classify_article(
    session: Session,
    article: Article,
    registry: TopicRegistry,
    now: datetime,
    heads: LabelHeads | None = None,
    vectors: encoder.ArticleVectors | None = None,
) -> Classification:
    """Classify a stored article and save its topics, watch items and evidence.

    With ``heads`` and the article's ``vectors`` the hybrid classifier decides (what ingest
    and ``reclassify`` run); without, the rules alone.
    """
    if heads is not None and vectors is not None:
        verdict = _hybrid_verdict(registry, heads, article, vectors)
    else:
        verdict = classify(registry, title=article.title, text=article.text, lang=article.lang)
    repo.replace_classification(session, article, verdict, now)
    return verdict


def _closest_near_duplicate(
    session: Session,
    shingled: neardup.ShingleProfile,
    keys: list[int],
    params: NearDupParams,
    *,
    excluding: int | None = None,
) -> tuple[int, float, int] | None:
    """The earliest copy (the root) of the best verified LSH candidate (sharing a band key),
    with its similarity, and that candidate; ``excluding``: a stored article not to compare
    with (itself)."""
    best: tuple[float, float, int] | None = None
    best_article: Article | None = None
    limit = params.max_candidates + (1 if excluding is not None else 0)  # (itself shares every key)
    candidate_ids = [
        article_id
        for article_id in repo.band_candidates(session, keys, params.scheme, limit=limit)
        if article_id != excluding
    ]
    candidates = (
        session.scalars(select(Article).where(Article.id.in_(candidate_ids))).all() if candidate_ids else []
    )
    for other in sorted(candidates, key=lambda article: article.id):
        verdict = neardup.verify_profiles(shingled, neardup.profile(other.text, other.lang, params), params)
        if not verdict.is_duplicate:
            continue
        rank = (round(verdict.jaccard, 3), round(verdict.similarity, 3), -other.id)
        if best is None or rank > best:
            best, best_article = rank, other
    if best is None or best_article is None:
        return None
    return best_article.duplicate_of_id or best_article.id, round(best[1], 4), best_article.id


def _copy_link(
    session: Session,
    same_text: Article | None,
    near: neardup.TextIndex,
    params: NearDupParams,
    *,
    excluding: int | None = None,
) -> tuple[int | None, float | None, CopyKind | None, dict[str, Any] | None]:
    """``(root, similarity, kind, link_detail)`` of a text as an exact copy of ``same_text``
    (a stored article with its text) or a near copy of a stored article, else all None.
    ``excluding``: a stored article not to compare with (itself, for a new version)."""
    if same_text is not None:
        root = same_text.duplicate_of_id or same_text.id
        return root, 1.0, "exact", _matched(root, same_text.id)
    if near.signature:
        match = _closest_near_duplicate(session, near.profile, near.keys, params, excluding=excluding)
        if match is not None:
            root, similarity, matched = match
            return root, similarity, "near", _matched(root, matched)
    return None, None, None, None


def _matched(root: int, matched: int) -> dict[str, Any] | None:
    """An exact or near copy's ``link_detail``: the article it matched, when that is not the
    root it is stored against (a copy of a copy), so that ``unlink`` of that article takes
    it along (:func:`pipeline.db.repo.unlink_copy`)."""
    return {"matched": matched} if matched != root else None


def _replace_with_new_version(
    session: Session,
    article: Article,
    candidate: ArticleCandidate,
    context: IngestContext,
    seen_at: datetime,
) -> tuple[encoder.ArticleVectors, neardup.TextIndex]:
    """The page behind a known URL changed: keep the old text as a version, store the new.

    Returns the new text's vectors and near-duplicate profile.
    """
    assert candidate.fingerprint is not None
    repo.add_version(session, article, seen_at)
    article.text = candidate.text
    # The new text's headline, or none: the old one stays with the old text (its version),
    # and kept here it gave the new text the old story's labels and search words.
    article.title = candidate.title
    article.content_hash = candidate.fingerprint.content_hash
    article.page_hash = candidate.fingerprint.page_hash
    article.word_count = count_words(candidate.text)
    # The new text's language: a stub ("details later", und) replaced by the article, or a
    # page that now carries another language's text. Vectors and labels follow it.
    article.lang = candidate.lang
    article.lang_confidence = candidate.extra.get("lang_confidence")
    params = context.neardup_params
    vectors = context.embed(article.title, candidate.text)
    _store_article_vectors(session, context, article, vectors)
    fulltext.index_article(session, article.id, article.title, article.text)
    near = neardup.index_of(candidate.text, candidate.lang, params)
    if near.signature:
        signature = neardup.signature_to_bytes(near.signature)
        repo.store_signature(session, article.id, params.scheme, signature, near.keys)
    session.flush()
    return vectors, near


# The link columns of an article, read again before a new version is linked.
_LINK_COLUMNS = ["duplicate_of_id", "copy_kind", "similarity", "link_detail"]
# What a fold wrote in its folded root's link_detail, kept while the root stays in that cluster.
_FOLD_KEYS = ("folded_into", "moved_copy_ids")


def _link_new_version(
    session: Session,
    article: Article,
    candidate: ArticleCandidate,
    vectors: encoder.ArticleVectors,
    near: neardup.TextIndex,
    context: IngestContext,
    seen_at: datetime,
) -> None:
    """Link a stored ``article`` whose page changed as its new text is, by the checks and
    thresholds a new article passes (same text, near duplicate, translation).

    * A copy whose new text still matches its cluster stays in it (kind and similarity as
      they are now); one whose text matches another cluster moves there; one whose text
      matches nothing becomes an original, counted as coverage from then on, and its
      ``link_detail`` keeps the link it had under ``previous_link`` (with the moment and
      why). The copies a fold had moved with it stay in the cluster: they copied its
      former text.
    * An original with no copies whose new text is a copy (a stub replaced by a syndicated
      text or a translation) becomes that copy, and folds clusters as a new translation does.
    * A root with copies keeps its links, and so do its copies: they copied the text it
      had, which the cluster still tells, and separating them cannot be decided from the
      new text alone (``unlink`` separates by hand). An article separated by hand stays an
      original: the analyst's decision holds.

    Runs under the writers' lock (:func:`pipeline.db.repo.begin_write`); the link is read
    again from the database under it, so a link changed by another process is not undone.
    """
    repo.begin_write(session)
    session.refresh(article, _LINK_COLUMNS)
    if article.is_seed or (article.duplicate_of_id is None and repo.separated_by_hand(article.link_detail)):
        return
    if article.duplicate_of_id is None and repo.has_copies(session, article.id):
        return
    assert article.content_hash is not None
    translation: TranslationLink | None = None
    was = article.duplicate_of_id
    if was is not None:
        # Copies that matched its former text are copies of the cluster's story, not of it.
        repo.forget_matches(session, was, article.id)
    same_text = repo.original_by_content_hash(session, article.content_hash, excluding=article.id)
    duplicate_of, similarity, copy_kind, detail = _copy_link(
        session, same_text, near, context.neardup_params, excluding=article.id
    )
    if duplicate_of is None and context.settings.translations.enabled:
        as_stored = dataclasses.replace(candidate, published_at=article.published_at)
        moment = article.published_at or article.first_seen_at
        translation = _closest_translation(session, as_stored, vectors, moment, context, excluding=article.id)
        if translation is not None:
            duplicate_of, similarity, detail = translation.root, translation.similarity, translation.detail
            copy_kind = "translation"
    if duplicate_of == was and was is not None:
        # Still in its cluster: the kind and similarity the new text has (a fold's record kept).
        old = article.link_detail if isinstance(article.link_detail, dict) else {}
        kept = {key: old[key] for key in _FOLD_KEYS if key in old}
        detail = {**(detail or {}), **kept} or None
        article.copy_kind, article.similarity, article.link_detail = copy_kind, similarity, detail
    elif duplicate_of is None and was is None:
        return  # an original, still
    else:
        if was is not None:
            previous = {
                "copy_of": was,
                "copy_kind": article.copy_kind,
                "similarity": article.similarity,
                "at": seen_at.isoformat(),
                "reason": "its page changed: "
                + (
                    "the new text matches no stored article"
                    if duplicate_of is None
                    else f"the new text is a {copy_kind} copy of another story ({duplicate_of})"
                ),
                "link_detail": article.link_detail,
            }
            detail = {**(detail or {}), "previous_link": previous}
        article.duplicate_of_id, article.copy_kind = duplicate_of, copy_kind
        article.similarity, article.link_detail = similarity, detail
        if duplicate_of is None and article.published_at is not None:
            # Coverage now, like a new article: a back-dated one extends the collected history.
            repo.extend_history(session, article.published_at)
        log.info(
            "article %d changed: %s",
            article.id,
            "now an original" if duplicate_of is None else f"now a {copy_kind} copy of {duplicate_of}",
        )
    session.flush()
    if translation is not None and duplicate_of != was:
        translation.merge_into_root(session, article.id)


def _duplicate_result(
    article_id: int,
    duplicate_of_id: int | None,
    lang: str,
    copy_kind: str | None,
    item: ArticleCandidate | FeedItem,
    similarity: float | None = None,
    *,
    verdict: Classification | None = None,
) -> ItemResult:
    """An item already stored under ``article_id``: it duplicates that article's original.

    It is the same text as that row, so it relates to the original as that row does (an
    original's own text is an ``exact`` copy, similarity 1; a copy's, with the copy's
    stored ``similarity`` when known); a changed page under a known URL is a ``version``.
    ``verdict``: the labels the row was just given (a new version is classified again),
    reported with the result.
    """
    kind = cast(CopyKind, copy_kind if copy_kind in COPY_KINDS else "exact")
    if kind == "version":
        similarity = None
    elif duplicate_of_id is None or similarity is None:
        similarity = 1.0
    return ItemResult(
        "duplicate",
        article_id,
        duplicate_of_id or article_id,
        similarity,
        lang,
        url=item.url,
        title=item.title,
        topics=list(verdict.topics) if verdict is not None else [],
        watch=list(verdict.watch) if verdict is not None else [],
        copy_kind=kind,
    )


def _store_article_vectors(
    session: Session, context: IngestContext, article: Article, vectors: encoder.ArticleVectors
) -> None:
    """Store (or replace) the vectors of a stored ``article``."""
    _store_vectors(
        session,
        context,
        article.id,
        vectors,
        article.lang,
        article.published_at or article.first_seen_at,
        dated=article.published_at is not None,
    )


def _store_vectors(
    session: Session,
    context: IngestContext,
    article_id: int,
    vectors: encoder.ArticleVectors,
    lang: str,
    moment: datetime,
    *,
    dated: bool,
    new_article: bool = False,
) -> tuple[bytes, bytes]:
    """Store the vectors of ``article_id``; returns them as stored (document, sentences).

    ``dated``: ``moment`` is a publication time (not when the article was first seen).
    Replaced vectors take the old ones' place in what ``context`` keeps (a new article's
    are kept by the caller).
    """
    document = encoder.document_to_bytes(vectors.document)
    sentences = encoder.sentences_to_bytes(vectors.sentences)
    repo.store_vectors(
        session,
        article_id,
        model=vectors.model,
        lang=lang,
        moment=moment,
        document=document,
        sentences=sentences,
        sentence_count=len(vectors.units),
        has_title=vectors.has_title,
        new_article=new_article,
    )
    if not new_article:
        root = article_id  # (the lookup reads roots from the database when it links)
        context.replaced(
            session,
            repo.VectorRow(
                article_id, root, lang, moment.astimezone(UTC), document, vectors.model, dated=dated
            ),
        )
    return document, sentences


def _closest_translation(
    session: Session,
    candidate: ArticleCandidate,
    vectors: encoder.ArticleVectors,
    moment: datetime,
    context: IngestContext,
    *,
    excluding: int | None = None,
) -> TranslationLink | None:
    """The root of the stored article ``candidate`` translates, its similarity and the evidence.

    ``excluding``: a stored article not to compare with (itself, for a new version).

    Candidates are articles in other languages published within the window around
    ``moment`` (and every seed); the window is not applied to an article that gave no
    publication time, on either side (:mod:`pipeline.vectorindex`). The closest by
    document vector are verified by sentence alignment. ``None`` when none is a
    translation. When the candidate translates texts of several clusters, the link names
    the earliest root and the clusters to fold into it.
    """
    if candidate.lang == "und":
        return None
    params = context.settings.translations
    window = timedelta(days=params.window_days)
    shortlist = context.vector_index(vectors.model).nearest(
        session,
        vectors.document,
        start=moment - window,
        end=moment + window,
        not_lang=candidate.lang,
        min_score=params.candidate_similarity,
        limit=params.max_candidates,
        undated=candidate.published_at is None,
    )
    shortlist = [row for row in shortlist if row.article_id != excluding]
    if not shortlist:
        return None
    loaded = {row.article_id: context.recent.get(row.article_id) for row in shortlist}
    unread = [article_id for article_id, side in loaded.items() if side is None]
    for article_id, (stored_vectors, text) in repo.sentence_vectors(session, unread).items():
        loaded[article_id] = StoredSide(
            stored_vectors.model, stored_vectors.sentences, stored_vectors.has_title, text
        )
    new_side = crosslingual.Side(candidate.lang, candidate.text, vectors.sentences, vectors.has_title)
    verified: list[tuple[float, int, float, crosslingual.TranslationVerdict]] = []
    for row in shortlist:
        score = row.score
        stored_side = loaded.get(row.article_id)
        if stored_side is None or stored_side.model != vectors.model:
            continue
        rows = encoder.sentences_from_bytes(stored_side.sentences, vectors.document.shape[0])
        # Both sides cover the same extent: rows stored under a higher max_sentences are cut
        # to the units the new article has at most (the alignment compares relative positions).
        rows = rows[: context.settings.encoder.max_sentences + (1 if stored_side.has_title else 0)]
        other = crosslingual.Side(row.lang, stored_side.text, rows, stored_side.has_title)
        verdict = crosslingual.verify_translation(
            new_side, other, context.translation_params, context.gazetteer
        )
        if verdict.is_translation:
            verified.append((verdict.share * verdict.mean_similarity, row.article_id, score, verdict))
    if not verified:
        return None
    # The best verified match of each cluster (clusters as the database has them now).
    verified.sort(key=lambda found: (-found[0], found[1]))
    roots = repo.current_roots(session, [found[1] for found in verified])
    best_of: dict[int, tuple[int, float, crosslingual.TranslationVerdict]] = {}
    for _, article_id, score, verdict in verified:
        best_of.setdefault(roots[article_id].root_id, (article_id, score, verdict))
    # A translation of two clusters' texts makes them one story in several languages: the
    # article joins the earliest, and the later ones (not seeds) are folded into it once it
    # is stored, whatever order the three arrived in. Clusters an analyst separated by hand
    # are never joined again: then the article only joins the earliest.
    root = min(best_of)
    article_id, score, verdict = best_of[root]
    pinned = any(roots[matched].pinned for matched, _, _ in best_of.values())
    merged = {
        other: best_of[other]
        for other in best_of
        if other != root and not pinned and not roots[best_of[other][0]].is_seed
    }
    detail = {**verdict.as_detail(), "matched_article_id": article_id, "document_similarity": round(score, 3)}
    return TranslationLink(root, round(verdict.mean_similarity, 4), detail, merged)


@dataclass(frozen=True)
class TranslationLink:
    """A new article's translation link, and the other clusters its text joins to it."""

    root: int
    similarity: float
    detail: dict[str, Any]
    # root of another cluster -> (its article matched, document similarity, the verdict)
    merged: dict[int, tuple[int, float, crosslingual.TranslationVerdict]]

    def merge_into_root(self, session: Session, article_id: int) -> None:
        """Fold the other clusters into this link's root, the new article (``article_id``,
        stored) being the evidence: it translates a text of each."""
        if not self.merged:
            return
        folded = {
            other: (
                round(verdict.mean_similarity, 4),
                {
                    **verdict.as_detail(),
                    "reason": f"joined through article {article_id}, a translation of both: {verdict.reason}",
                    "matched_article_id": article_id,
                    "aligned_article_id": matched,  # the article of this cluster it aligned with
                    "document_similarity": round(score, 3),
                },
            )
            for other, (matched, score, verdict) in self.merged.items()
        }
        done = repo.merge_clusters(session, self.root, folded)
        if done:
            log.info(
                "article %d translates texts of clusters %s: folded into cluster %d",
                article_id,
                ", ".join(str(other) for other in done),
                self.root,
            )


# Feeds and pages --------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedRequest:
    """What a feed's poll asks with: its address, validators and the hash of its last body."""

    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None

    @classmethod
    def of(cls, feed: Feed) -> FeedRequest:
        return cls(feed.poll_url, feed.etag, feed.last_modified, feed.body_hash)


@dataclass(frozen=True)
class FeedFetch:
    """A feed's conditional GET and, when the body changed, the body parsed; or the error."""

    request: FeedRequest
    response: HttpResponse | None = None
    error: str | None = None  # the fetch failed
    retry_after: float | None = None  # seconds the server asked to wait (Retry-After)
    status: int | None = None  # the HTTP status of a failed fetch's error answer
    body_hash: str | None = None
    parsed: ParsedFeed | None = None
    parse_error: str | None = None  # the body is not a usable feed


def fetch_feed(client: HttpClient, settings: Settings, request: FeedRequest, now: datetime) -> FeedFetch:
    """Fetch a feed and parse its body if it changed: no database, so in any thread."""
    try:
        response = client.get(
            request.url, etag=request.etag, last_modified=request.last_modified, accept=FEED_ACCEPT
        )
    except FetchError as exc:
        return FeedFetch(request, error=str(exc), retry_after=exc.retry_after, status=exc.status)
    if response.not_modified:
        return FeedFetch(request, response)
    body_hash = hashlib.sha256(response.body).hexdigest()
    if body_hash == request.body_hash:
        return FeedFetch(request, response, body_hash=body_hash)
    try:
        parsed = parse_feed(
            response.body,
            feed_url=response.final_url,
            content_type=response.content_type,
            now=now,
            max_items=settings.poll.max_items_per_feed,
        )
    except FeedParseError as exc:
        return FeedFetch(request, response, body_hash=body_hash, parse_error=str(exc))
    return FeedFetch(request, response, body_hash=body_hash, parsed=parsed)


def poll_feed(
    session: Session,
    client: HttpClient,
    settings: Settings,
    feed_id: int,
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
    context: IngestContext | None = None,
    ahead: Future[FeedFetch] | None = None,
    upcoming: Callable[[], int] | None = None,
    pages: CyclePages | None = None,
) -> PollResult:
    """Poll one feed: conditional GET, skip an unchanged body, then ingest each new item.

    The feed's validators (ETag, Last-Modified, body hash) are saved only after every item
    was handled, so a crash mid-feed means the next poll sees the items again; those
    already stored cost one indexed lookup each. ``ahead``: the feed fetched (and parsed)
    while the feed before it was being ingested (:class:`FeedsAhead`); used if it was
    asked with what the feed row holds now. ``upcoming``: see :func:`_ingest_feed_items`;
    ``pages``: the cycle's pages (:class:`CyclePages`).
    """
    now = now or utcnow()
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise ValueError(f"no feed with id {feed_id}")
    feed.last_polled_at = now
    request = FeedRequest.of(feed)
    fetched = ahead.result() if ahead is not None else None  # (a bug in it is raised here)
    if fetched is None or fetched.request != request:  # (the feed changed since: asked again)
        fetched = fetch_feed(client, settings, request, now)
    if fetched.error is not None and fetched.status == GONE:
        return _feed_gone(session, feed, fetched.error, now)
    if fetched.error is not None:
        return _feed_failed(session, settings, feed, fetched.error, now, retry_after=fetched.retry_after)
    response = fetched.response
    assert response is not None
    feed.last_status = response.status
    if response.not_modified:
        # A 304 may carry new validators (HTTP caching: they replace the stored ones); a
        # server honouring only its current ETag would otherwise send the body every time.
        etag, last_modified = _validators(response.headers, now)
        feed.etag, feed.last_modified = etag or feed.etag, last_modified or feed.last_modified
        moved = _follow_move(feed, response)
        _feed_succeeded(settings, feed, now)
        session.commit()
        return PollResult(feed.id, feed.url, "not_modified", moved_to=moved)
    body_hash = fetched.body_hash
    if body_hash == feed.body_hash:
        # Some servers ignore validators or send new ones for the same bytes.
        feed.etag, feed.last_modified = _validators(response.headers, now)
        moved = _follow_move(feed, response)
        _feed_succeeded(settings, feed, now)
        session.commit()
        return PollResult(feed.id, feed.url, "unchanged", moved_to=moved)
    if fetched.parse_error is not None:
        # (Not followed: a feed "moved" to a page that is no feed, its site's front page
        # often, has not moved but ended; its own address is polled again.)
        return _feed_failed(session, settings, feed, fetched.parse_error, now)
    parsed = fetched.parsed
    assert parsed is not None
    moved = _follow_move(feed, response)
    for warning in parsed.warnings:
        log.info("feed %s: %s", redact_url(feed.url), redact_text(warning))
    # The poll itself is recorded now: a pending update of the feed row would otherwise
    # hold SQLite's write lock through every page fetch of the first item.
    session.commit()
    result = PollResult(feed.id, feed.url, "fetched", moved_to=moved)
    own = context is None
    context = context or IngestContext.from_settings(settings)
    try:
        complete = _ingest_feed_items(
            session,
            client,
            settings,
            feed,
            parsed.items,
            now=now,
            context=context,
            result=result,
            progress=progress,
            upcoming=upcoming,
            pages=pages,
        )
    finally:
        if own:
            context.close()
    if complete:
        feed.etag, feed.last_modified = _validators(response.headers, now)
        feed.body_hash = body_hash
    if parsed.title and not feed.name:
        feed.name = clean_string(parsed.title)[:300]
    _feed_succeeded(settings, feed, now)
    session.commit()
    return result


def _follow_move(feed: Feed, response: HttpResponse) -> str | None:
    """Record where a feed moved for good (its poll began with a 301 or 308) and return the
    new address, once: the next poll asks there directly, so it is not reported again. A
    temporary redirect (302, 303, 307) moves nothing. A feed moved back to its own address
    forgets the move."""
    target = response.moved_to
    if target is None or target == feed.poll_url:
        return None
    if len(target) > MAX_URL_LENGTH:
        return None  # (no column holds it: followed at every poll instead)
    feed.moved_url = None if target == feed.url else target
    log.warning(
        "feed %s moved permanently (HTTP 301/308) to %s: polled there from now on",
        redact_url(feed.url),
        redact_url(target),
    )
    return target


def _session_of(feed: Feed) -> Session:
    session = object_session(feed)
    assert session is not None
    return session


def _validators(headers: dict[str, str], now: datetime) -> tuple[str | None, str | None]:
    """ETag and Last-Modified to send next time; absurdly long, binary or non-ASCII ones
    (which no request header can carry back) are dropped, and so is a Last-Modified in the
    future (beyond :data:`FUTURE_TOLERANCE`, a clock or time zone slip): no server may send
    one (RFC 9110, 8.8.2.1), and sent back as If-Modified-Since it made a server that
    compares it with its feed's real time of change answer 304 to every poll until then,
    however the feed changed (a feed dated 2100 was never read again)."""

    def kept(value: str | None, longest: int) -> str | None:
        value = clean_string(value or "")
        return value if 0 < len(value) <= longest and sendable(value) else None

    last_modified = kept(headers.get("last-modified"), 128)
    # (Not a date, NaN: the server's own business what it makes of it.)
    ahead = seconds_until_http_date(last_modified, now=now.timestamp()) if last_modified else math.nan
    if ahead > FUTURE_TOLERANCE.total_seconds():
        last_modified = None
    return kept(headers.get("etag"), 1024), last_modified


def _server_wait(exc: ItemError) -> timedelta | None:
    """How long the server asked to be left alone (a 429 or 503 with Retry-After)."""
    seconds = getattr(exc, "retry_after", None)
    return timedelta(seconds=seconds) if seconds else None


def _feed_succeeded(settings: Settings, feed: Feed, now: datetime) -> None:
    if feed.failure_count:
        repo.resolve_failure(_session_of(feed), "feed", feed.url)
    feed.failure_count = 0
    feed.last_error = None
    feed.gone_at = None  # (a gone feed polled by name, `run --all` or a DAG's feed_ids, is back)
    feed.next_poll_at = now + timedelta(minutes=settings.poll.interval_minutes)
    feed.poll_finished_at = utcnow()  # (committed with the rest of the poll's outcome)


def _feed_failed(
    session: Session,
    settings: Settings,
    feed: Feed,
    error: str,
    now: datetime,
    *,
    retry_after: float | None = None,
) -> PollResult:
    """A feed whose poll failed: polled again after the backoff (doubling with each failure
    in a row), or later if the server asked (429 or 503 with Retry-After)."""
    error = redact_text(error)  # shown, logged and stored: never with credentials
    wait = max(feed_backoff(settings, (feed.failure_count or 0) + 1), timedelta(seconds=retry_after or 0))
    _record_feed_failure(session, feed, error, next_poll_at=now + wait, permanent=False)
    log.warning("feed %s failed (%d in a row): %s", redact_url(feed.url), feed.failure_count, error)
    return PollResult(feed.id, feed.url, "error", error=error)


# "410 Gone": the server says the feed was removed on purpose and for good (RFC 9110,
# 15.5.11; feedparser's documentation: stop polling it).
GONE = 410


def _feed_gone(session: Session, feed: Feed, error: str, now: datetime) -> PollResult:
    """A feed that answered 410 Gone: marked gone and no longer polled (:func:`repo.
    due_feed_ids` passes it over) until ``summitwatch feeds reset`` (or a poll asked for
    by name that it answers) brings it back; its failure is quarantined."""
    error = redact_text(f"{error}: the feed is gone; no longer polled (`summitwatch feeds reset {feed.id}`)")
    feed.gone_at = feed.gone_at or now
    _record_feed_failure(session, feed, error, next_poll_at=None, permanent=True)
    log.warning("feed %s is gone (HTTP 410): no longer polled", redact_url(feed.url))
    return PollResult(feed.id, feed.url, "gone", error=error)


def _record_feed_failure(
    session: Session, feed: Feed, error: str, *, next_poll_at: datetime | None, permanent: bool
) -> None:
    """One more failed poll of ``feed`` in a row, committed: on the feed (``feeds list``
    shows it) and among the failures (a failing feed is retried for as long as it fails,
    a ``permanent`` one quarantined)."""
    feed.failure_count = (feed.failure_count or 0) + 1
    feed.last_error = error
    feed.next_poll_at = next_poll_at
    feed.poll_finished_at = utcnow()
    repo.record_failure(
        session,
        stage="feed",
        target=feed.url,
        error=error,
        permanent=permanent,
        retry_after=None,
        feed_id=feed.id,
        retry_limit=10**6,
    )
    session.commit()


def feed_backoff(settings: Settings, failures: int) -> timedelta:
    """Exponential backoff after ``failures`` consecutive failures, capped."""
    minutes = settings.poll.backoff_base_minutes * (2 ** min(max(failures - 1, 0), 20))
    return min(timedelta(minutes=minutes), timedelta(hours=settings.poll.backoff_max_hours))


def ingest_item(
    session: Session,
    client: HttpClient,
    settings: Settings,
    item: FeedItem,
    *,
    feed: Feed | None,
    now: datetime,
    context: IngestContext | None = None,
) -> ItemResult:
    """Fetch, extract and store one feed item; failures are recorded, never raised."""
    hosts = context.hosts if context is not None else HostBreaker(0)
    return _finish_item(
        session,
        settings,
        item,
        lambda: hosts.get(client, item.url or "", accept=PAGE_ACCEPT),
        feed=feed,
        now=now,
        context=context,
    )


FRONT_PAGE_LINK = "link is a site's front page, not an article"


def _screen_item(item: FeedItem) -> tuple[str | None, ItemResult | None]:
    """The canonical URL of a feed item, or the error result of an unusable link."""
    url = item.url
    if not url:
        return None, ItemResult("error", error="feed item has no link", title=item.title)
    if len(url) > MAX_URL_LENGTH:
        return None, ItemResult("error", error="link longer than 2048 characters", title=item.title)
    if CONTROL_CHARACTERS.search(url) or any(char.isspace() for char in url):
        return None, ItemResult("error", error="link contains control characters or spaces", title=item.title)
    try:
        canonical = dedup.canonical_url(url)
    except ValueError as exc:  # e.g. a port out of range
        return None, ItemResult("error", error=f"malformed link: {exc}", url=url, title=item.title)
    if len(canonical) > MAX_URL_LENGTH:
        return None, ItemResult("error", error="link longer than 2048 characters", url=url, title=item.title)
    if front_page(url):
        # A link to a site's front page is no article: fetched, the front page was stored as
        # the item's article, and every other item linked there taken for it.
        return None, ItemResult("error", error=FRONT_PAGE_LINK, title=item.title)
    return canonical, None


def _unusable_item_target(feed: Feed, item: FeedItem) -> str:
    """Where a feed item without a usable link is recorded: its feed and its guid (else a
    hash of its title and link), so the same item is one failure at every poll."""
    key = (
        item.guid
        or hashlib.blake2b(
            f"{item.title or ''}\n{item.url or ''}".encode("utf-8", "replace"), digest_size=8
        ).hexdigest()
    )
    return f"{feed.url}#item={clean_string(key)[:512]}"


def _via(feed: Feed | None) -> str:
    """How an item reached the pipeline, as its sighting records it."""
    return f"feed:{feed.id}" if feed else "retry"


def _finish_item(
    session: Session,
    settings: Settings,
    item: FeedItem,
    fetch: Callable[[], HttpResponse],
    *,
    feed: Feed | None,
    now: datetime,
    context: IngestContext | None = None,
    prepared: Callable[[], ArticleCandidate] | None = None,
    failed_before: bool | None = None,
    stored: tuple[repo.KnownArticle, bool] | None = None,
    absent: bool = False,
) -> ItemResult:
    """One item, its page obtained by ``fetch`` if it must be; failures recorded, never raised.

    ``prepared``: the item's candidate as a prepare worker built it (raising what building
    it raised), used instead of fetching and extracting here. ``failed_before``: whether
    the page had an unresolved failure when the caller looked that up for many items at
    once; False spares a stored item's poll the update that would resolve it.
    ``stored``: the stored article under the item's URL and whether this feed's sighting
    of it exists, looked up by the caller for many items at once; a feed whose items are
    all stored then costs no query per item. ``absent``: that look-up found neither an
    article under the item's URL nor an open failure of its page, and no earlier item of
    the feed has that URL, so neither is looked up again (an article another process
    stores meanwhile is still found before the insert, by :func:`store_candidate`).
    """
    via = _via(feed)
    canonical, refused = _screen_item(item)
    if refused is not None or canonical is None or item.url is None:
        refused = refused or ItemResult("error", error="feed item has no link", title=item.title)
        if feed is not None:
            # Nothing to fetch, ever: recorded once (quarantined), so that the item shows
            # among the open failures instead of only in this run's output.
            recorded = repo.record_failure(
                session,
                stage="page",
                target=_unusable_item_target(feed, item),
                error=refused.error or "unusable link",
                permanent=True,
                retry_after=None,
                feed_id=feed.id,
                item={"url": clean_string(item.url or "")[:2048] or None, "title": item.title},
                now=now,
            )
            refused.seen_before = recorded.attempts > 1
        return refused
    url = item.url
    known = stored[0] if stored is not None else None if absent else repo.known_url(session, canonical)
    if known is not None:
        # Already stored: a sighting, no fetch. (Only ids and language are loaded.)
        article_id, duplicate_of_id, lang, copy_kind = known
        sighted = stored is not None and stored[1]
        if not sighted:
            sighted = not repo.add_sighting(session, article_id, via, url, now)
        if failed_before is not False:  # (a failure recorded since is resolved by its retry)
            repo.resolve_failure(session, "page", url)
        result = _duplicate_result(article_id, duplicate_of_id, lang, copy_kind, FeedItem(url, item.title))
        result.seen_before = sighted and feed is not None
        return result
    earlier = None if absent else repo.open_failure(session, "page", url)
    if earlier is not None and (earlier.permanent or (earlier.next_retry_at or now) > now):
        # Quarantined, or waiting for its retry time: not fetched again on every feed change.
        state = "quarantined" if earlier.permanent else "retry pending"
        return ItemResult(
            "error", error=f"{state}: {earlier.error}", url=url, title=item.title, seen_before=True
        )
    try:
        if prepared is not None:
            candidate = prepared()
        else:
            response = fetch()
            away = redirected_away(response.url, response.final_url)
            if away is not None:
                raise away
            candidate = page_candidate(
                settings, item, response.body, response.content_type, _lang_hint(feed, item), now
            )
    except ItemError as exc:
        carried = _carried_by_feed(settings, item, _lang_hint(feed, item), now) if _unreadable(exc) else None
        if carried is None:
            return _page_failed(session, settings, item, url, exc, feed=feed, now=now)
        log.info(
            "%s: %s; stored with the text its feed entry carries", redact_url(url), redact_text(str(exc))
        )
        candidate = carried
    repo.begin_write(session)  # (a batch holds it already; a page retried alone takes it here)
    result = store_candidate(
        session,
        candidate,
        via=via,
        context=context or IngestContext.from_settings(settings),
        feed_id=feed.id if feed else None,
        seen_at=now,
    )
    if earlier is not None:
        repo.resolve_failure(session, "page", url)
    return result


def _unreadable(failure: ItemError) -> bool:
    """Whether a page's failure leaves its feed entry's text as the article's: the server
    answered for good with something other than the article (gone, behind a wall, too
    large), or refused or did not find it (403, 404: retried when the entry carries no
    text, but when it does, the article is here), or the page held no text. Not a link
    never fetched (an address the fetcher refuses, a malformed URL: its feed's text is not
    stored under it either), nor another failure that is retried (a timeout, a 5xx)."""
    if isinstance(failure, FetchError) and failure.status in PASSING_REFUSALS:
        return True
    if not failure.permanent:
        return False
    return isinstance(failure, ExtractionError) or (isinstance(failure, FetchError) and failure.answered)


def _carried_by_feed(
    settings: Settings, item: FeedItem, lang_hint: str | None, now: datetime
) -> ArticleCandidate | None:
    """The article as its feed entry carries it (its content: RSS content:encoded, Atom
    content, JSON Feed content), for a page that cannot be read (:func:`_unreadable`); None
    when it carries none, or too little to stand for the article (under the length
    minimum). Not the entry's summary: a teaser, often the same for every item of a site.
    Only for the feed's own site's pages: a feed that links another site's page (an
    aggregator's) does not speak for that site's text."""
    carried = item.content
    if not carried or not item.url or not item.feed_url or site_of(item.url) != site_of(item.feed_url):
        return None
    page = f"<!doctype html><html><head><meta charset='utf-8'></head><body><article>{carried}</article>"
    try:
        return build_candidate(
            settings,
            url=item.url,
            title=item.title,
            html=(page + "</body></html>").encode("utf-8", errors="replace"),
            published_at=item.published_at,
            lang_hint=lang_hint,
            feed_url=item.feed_url,
            now=now,
        )
    except ItemError:
        return None


def _page_failed(
    session: Session,
    settings: Settings,
    item: FeedItem,
    url: str,
    exc: ItemError,
    *,
    feed: Feed | None,
    now: datetime,
) -> ItemResult:
    """Record why an item's page gave no article (retried later unless permanent)."""
    # A page not requested (its host timed out too often in this run) is no attempt: it
    # is due again at once, for the next run.
    deferred = isinstance(exc, FetchError) and exc.deferred
    repo.record_failure(
        session,
        stage="page",
        target=url,
        error=str(exc),
        permanent=exc.permanent,
        retry_after=timedelta(0) if deferred else timedelta(minutes=settings.poll.backoff_base_minutes),
        not_before=_server_wait(exc),
        feed_id=feed.id if feed else None,
        item=_retry_payload(item, url),
        retry_limit=settings.poll.page_retry_limit,
        now=now,
        attempted=not deferred,
    )
    return ItemResult("error", error=str(exc), url=url, title=item.title)


def _is_article_page(response: HttpResponse) -> bool:
    """Whether a page fetched ahead is worth preparing: not where a redirect away from the
    article led (refused in the item's turn, :func:`_finish_item`)."""
    return redirected_away(response.url, response.final_url) is None


# Seconds a batch of items may keep its transaction open (on SQLite, the write lock).
BATCH_SECONDS = 2.0


def page_fetcher(client: HttpClient, settings: Settings, breaker: HostBreaker | None = None) -> PageFetcher:
    """A fetcher of pages within the ``http`` settings' limits (in all and per host);
    ``breaker``: the run's record of hosts that timed out too often (:class:`HostBreaker`)."""
    http = settings.http
    return PageFetcher(
        client, max_concurrency=http.max_concurrency, per_host=http.per_host_concurrency, breaker=breaker
    )


def _ingest_feed_items(
    session: Session,
    client: HttpClient,
    settings: Settings,
    feed: Feed,
    items: Sequence[FeedItem],
    *,
    now: datetime,
    context: IngestContext,
    result: PollResult,
    progress: ProgressCallback | None,
    upcoming: Callable[[], int] | None = None,
    pages: CyclePages | None = None,
) -> bool:
    """Ingest a feed's items in order, pages fetched ahead, committed in batches.

    Pages are fetched concurrently (``http.max_concurrency`` in all, ``http.per_host_
    concurrency`` per host), a window ahead of the item being processed; items are
    extracted and stored one after another in feed order, so the outcome never depends on
    which page answered first. A batch of up to ``poll.items_per_commit`` items (or
    :data:`BATCH_SECONDS` of work) is one transaction. When an item fails inside a batch,
    the batch is rolled back and its items are done again one by one, each committed on
    its own, so one bad item costs nobody else. Returns False when an item met a transient
    database error: the feed is then not marked as read and offers it again next poll.
    ``upcoming``: how many more new items the cycle holds as far as it knows (the feeds
    before this one and those read ahead), counted when this feed alone would start no
    prepare worker: a cycle of many small feeds is worth them too.
    ``pages``: the cycle's fetcher and the pages fetched ahead for this feed
    (:class:`CyclePages`); once all of this feed's pages are handed out, it fetches the
    next feed's.
    """
    http = settings.http
    window = http.max_concurrency * 2
    complete = True
    # Workers for the items not stored yet (a changed feed body often lists only known
    # ones), started before the fetch threads so that they can be forked.
    # Each item's canonical URL (None for one refused), screened once for the feed.
    canonicals = [_screen_item(item)[0] for item in items]
    linked = {canonical for canonical in canonicals if canonical}
    fresh = len(linked - repo.known_urls(session, sorted(linked)))
    if upcoming is not None and 0 < fresh < MIN_PAGES_FOR_WORKERS and not context.pool.running:
        fresh += upcoming()
    use_workers = context.pool.start_for(
        fresh, lambda: (context.registry, context.classifier_heads), context.gazetteer
    )
    own_fetcher = pages is None
    fetcher = page_fetcher(client, settings, context.hosts) if pages is None else pages.fetcher()
    # This feed's pages fetched (and prepared) ahead while the feed before was stored.
    early = pages.take(feed.id) if pages is not None else {}
    if pages is not None:
        pages.current = linked  # (its pages are this feed's to fetch, not a later one's)
    rank = pages.rank(feed.id) if pages is not None else 0  # (the order of this feed's jobs)
    with fetcher if own_fetcher else contextlib.nullcontext(fetcher):
        ahead: dict[int, PendingPage] = {}
        # Items handed to a prepare worker (extraction, language, vectors), in feed order.
        jobs: dict[int, tuple[PageJob, Future[Prepared]]] = {}
        next_job = 0
        retried: set[int] = set()  # pages with an earlier failure: fetched (if due) in turn
        next_to_submit = 0
        # Items stored already when their window was looked up: (article, sighting exists).
        # (Stored articles stay; an item stored since is found by its own look-up.)
        stored: dict[int, tuple[repo.KnownArticle, bool]] = {}
        # Items the window look-up found neither stored nor failed, first of their URL in
        # the feed (a repeated link is looked up in its turn: its first may be stored by then).
        absent: set[int] = set()
        first_of: dict[str, int] = {}
        for index, (item, canonical) in enumerate(zip(items, canonicals, strict=True)):
            first_of.setdefault(item.url or "", index)
            if canonical:
                first_of.setdefault(canonical, index)
        via = _via(feed)

        def fetch_ahead(position: int) -> None:
            nonlocal next_to_submit
            limit = min(len(items), position + window)
            if next_to_submit >= limit or next_to_submit - position > window // 2:
                return  # enough in flight; refilled half a window at a time (one lookup each)
            upcoming = list(range(max(next_to_submit, position), limit))
            next_to_submit = limit
            looked_up = {index: canonicals[index] for index in upcoming}
            known = repo.known_articles(session, [c for c in looked_up.values() if c])
            seen = [(known[c][0], items[i].url or "") for i, c in looked_up.items() if c in known]
            sighted = repo.sighted(session, via, seen) if seen else set()
            # A page that failed before is fetched (or not) when its turn comes, as before.
            failed = repo.open_failure_targets(session, "page", [items[i].url or "" for i in upcoming])
            for index, canonical in looked_up.items():
                url = items[index].url
                if canonical in known and url:
                    stored[index] = (known[canonical], (known[canonical][0], url) in sighted)
                if url in failed:
                    retried.add(index)
                elif canonical and url and canonical not in known:
                    entry = early.pop(url, None)
                    if entry is None:
                        ahead[index] = fetcher.submit(url, accept=PAGE_ACCEPT)
                    else:
                        ahead[index] = entry.page
                        if entry.job is not None:
                            queued, future = entry.job
                            if use_workers and queued == PageJob(
                                items[index],
                                queued.body,
                                queued.content_type,
                                _lang_hint(feed, items[index]),
                                now,
                            ):
                                jobs[index] = entry.job  # (the page is the one it was made from)
                            else:
                                context.pool.take_back(future)
                    if first_of[url] == index and first_of[canonical] == index:
                        absent.add(index)

        def hand_out(position: int) -> None:
            """Give the workers the pages fetched so far, in feed order, after ``position``.

            (The item at ``position`` is being done here: handing it out now would only
            have this process wait for it.)
            """
            nonlocal next_job
            next_job = max(next_job, position + 1)
            while use_workers and next_job < next_to_submit:  # (the pages asked for so far)
                page = ahead.get(next_job)
                if page is not None and next_job not in retried and next_job not in jobs:
                    if not page.ready():
                        return  # handed out in order: the rest wait for this page
                    try:
                        response = page.result()
                    except Exception:  # raised again in the item's turn
                        response = None
                    if response is not None and _is_article_page(response):
                        item = items[next_job]
                        job = PageJob(item, response.body, response.content_type, _lang_hint(feed, item), now)
                        jobs[next_job] = (job, context.pool.submit(job, (rank, next_job)))
                next_job += 1

        def look_ahead() -> None:
            """Once this feed has no page left for the workers: the next feeds' (CyclePages)."""
            if pages is not None and use_workers and next_job >= len(items):
                pages.look_ahead()

        def process(index: int) -> ItemResult:
            item = items[index]
            hand_out(index)
            look_ahead()
            page = ahead.get(index)
            fetch = page.result if page else (lambda: client.get(item.url or "", accept=PAGE_ACCEPT))
            job = jobs.get(index)
            if job is not None and context.pool.take_back(job[1]):
                del jobs[index]  # (a batch done again item by item must not wait for it)
                job = None  # no worker has started it: done here rather than waited for
            # While a worker is still on this item, take back later jobs no worker has
            # started, newest first, and do them here: neither side idles while the other
            # has work, and the results are the same whoever computes them.
            for later in sorted((k for k in jobs if k > index), reverse=True):
                if job is None or job[1].done():
                    break
                queued, future = jobs[later]
                if context.pool.take_back(future):
                    jobs[later] = (queued, context.prepare_here(queued))
            # Then the next feed's, fetched ahead (see CyclePages).
            while (
                pages is not None
                and job is not None
                and not job[1].done()
                and pages.take_back_one(context.prepare_here)
            ):
                pass
            prepared = functools.partial(_collect, context, *job) if job else None
            return _finish_item(
                session,
                settings,
                item,
                fetch,
                feed=feed,
                now=now,
                context=context,
                prepared=prepared,
                # (fetch_ahead looked these up for the item's window before its turn)
                failed_before=index in retried,
                stored=stored.get(index),
                absent=index in absent,
            )

        def report(outcomes: list[ItemResult]) -> None:
            for outcome in outcomes:
                result.items.append(outcome)
                if progress:
                    progress(_describe_item(outcome))

        batch: list[tuple[int, ItemResult]] = []
        started = time.monotonic()

        def settle(failed: int | None = None) -> None:
            """Commit the batch; if an item (``failed``) or the commit fails, redo it item by item."""
            nonlocal batch, complete
            positions = [done for done, _ in batch] + ([failed] if failed is not None else [])
            if failed is None:
                try:
                    session.commit()
                except Exception:
                    failed = -1
                else:
                    report([outcome for _, outcome in batch])
            if failed is not None:
                # Roll the batch back (the database gone stops the run here), then do its
                # items again one at a time. What the window look-ups saw of the batch went
                # with it: those items look themselves up again.
                require_database(session)
                stored.clear()
                absent.clear()
                outcomes = []
                for position in positions:
                    outcome, committed = _process_alone(
                        session, feed, items[position], process, position, fetches=position in retried
                    )
                    complete = complete and committed
                    outcomes.append(outcome)
                report(outcomes)
            for position in positions:
                ahead.pop(position, None)  # the page is no longer needed
                unused = jobs.pop(position, None)
                if unused is not None:
                    context.pool.take_back(unused[1])  # (an item found stored in its turn)
            batch = []

        for index in range(len(items)):
            fetch_ahead(index)
            page = ahead.get(index)
            if batch and (index in retried or (page is not None and not page.ready())):
                # Never wait for the network inside an open transaction (on SQLite, the
                # write lock that every other writer waits for): commit what is done first.
                settle()
            opens = not batch
            if opens:
                if page is not None:
                    page.wait()
                started = time.monotonic()
            try:
                if opens and index not in retried:  # (a retried page is fetched in process())
                    # (In the try: a database that went away fails here as in the item.)
                    repo.begin_write(session)
                batch.append((index, process(index)))
            except Exception:
                settle(failed=index)
                continue
            if len(batch) >= settings.poll.items_per_commit or time.monotonic() - started >= BATCH_SECONDS:
                settle()
            look_ahead()  # (pages that came in since: the workers would run dry at the end)
        settle()
    return complete


def _collect(context: IngestContext, job: PageJob, future: Future[Prepared]) -> ArticleCandidate:
    """A worker's candidate for ``job``; its vectors and verdict are offered to the context."""
    prepared = context.pool.collect(job, future)
    context.offer(prepared)
    return prepared.unwrap()


def _process_alone(
    session: Session,
    feed: Feed,
    item: FeedItem,
    process: Callable[[int], ItemResult],
    position: int,
    *,
    fetches: bool = False,
) -> tuple[ItemResult, bool]:
    """One item in a transaction of its own; (outcome, False) after a transient database error.

    The transaction is opened first, as a batch's is: on SQLite the item's first savepoint
    would otherwise begin it, and releasing that savepoint would commit half an item.
    Unless the item ``fetches`` its page itself (one that failed before): the write lock is
    never held while waiting for the network, as in a batch.
    """
    try:
        if not fetches:
            repo.begin_write(session)
        outcome = process(position)
        session.commit()
        return outcome, True
    except ConfigError:
        # A setting no item can be processed with (an encoder that does not load): every
        # item would fail the same way and the feed move on past them. Stop the run.
        session.rollback()
        raise
    except Exception as exc:
        # The database gone (restart, network) is no fault of the item: stop the run.
        require_database(session)
        outcome = ItemResult("error", error=f"could not be processed: {type(exc).__name__}", url=item.url)
        if isinstance(exc, OperationalError):
            # Transient (a lock held too long, a connection cut and restored): the feed
            # is not marked as read, so the next poll offers the item again.
            log.warning(
                "feed %s: item %s: database error, offered again next poll: %s",
                redact_url(feed.url),
                redact_optional(item.url),
                driver_reason(exc),
            )
            return outcome, False
        # One item the database refuses (or a bug it triggers, or memory it exhausts) must
        # not cost the rest of the feed, nor leave the feed unsaved and failing on every
        # later cycle. It is recorded as a failed page, retried later like one: else, the
        # feed marked as read, it would never be offered again.
        log.exception("feed %s: item %s failed", redact_url(feed.url), redact_optional(item.url))
        _record_unexpected_failure(session, feed, item, f"{outcome.error}: {exc}"[:1000])
        return outcome, True


def _retry_payload(item: FeedItem, url: str) -> dict[str, Any]:
    """What a failed page's record keeps of its feed item, for :func:`retry_failed_pages`."""
    return {
        "url": url,
        "title": item.title,
        "feed_url": item.feed_url,
        "published_at": item.published_at.isoformat() if item.published_at else None,
        # The feed document's declared language: the page's prior on its retry too.
        "lang": item.lang,
        "guid": item.guid,
    }


def _text_or_none(value: Any) -> str | None:
    """A string kept in a failure's record, or None (records made before it was kept)."""
    return value if isinstance(value, str) and value else None


def _record_unexpected_failure(session: Session, feed: Feed, item: FeedItem, error: str) -> None:
    canonical, refused = _screen_item(item)
    url = item.url  # (the target a fetch failure of the item is recorded under)
    if refused is not None or canonical is None or not url:
        return
    try:
        repo.record_failure(
            session,
            stage="page",
            target=url,
            error=redact_text(error),
            permanent=False,
            retry_after=timedelta(minutes=15),
            feed_id=feed.id,
            item=_retry_payload(item, url),
        )
        session.commit()
    except SQLAlchemyError:
        session.rollback()  # (the database refusing this too: the log line above remains)
        log.warning("could not record the failure of %s", redact_optional(item.url))


# Pages retried per run at most (the longest due first; the rest wait for the next run).
RETRY_PAGES = 100


def retry_failed_pages(
    session: Session,
    client: HttpClient,
    settings: Settings,
    *,
    now: datetime | None = None,
    context: IngestContext | None = None,
) -> list[ItemResult]:
    """Retry pages whose transient failure is due again (timeouts, 5xx): up to
    ``RETRY_PAGES`` of them, longest due first. A page whose host is not asked in this run
    (:class:`HostBreaker`) is passed over and stays due; the pages after it are read on, so
    a host held for many runs never keeps the other hosts' pages from their retries."""
    now = now or utcnow()
    results: list[ItemResult] = []
    after: tuple[datetime, int] | None = None
    while len(results) < RETRY_PAGES:
        due = repo.failures_due(session, "page", now, RETRY_PAGES, after=after)
        if not due:
            break
        after = (due[-1].next_retry_at or now, due[-1].id)  # (read before the retries change them)
        if context is None:
            context = IngestContext.from_settings(settings)
        for failure in due:
            payload = failure.item or {"url": failure.target}
            if context.hosts.tripped(payload.get("url") or failure.target):
                continue  # (its host timed out too often in this run: left due, for the next)
            feed = session.get(Feed, failure.feed_id) if failure.feed_id else None
            item = FeedItem(
                url=payload.get("url") or failure.target,
                title=payload.get("title"),
                published_at=_parse_date(payload.get("published_at")),
                feed_url=payload.get("feed_url"),
                guid=_text_or_none(payload.get("guid")),
                lang=_text_or_none(payload.get("lang")),
            )
            results.append(ingest_item(session, client, settings, item, feed=feed, now=now, context=context))
            session.commit()
            if len(results) >= RETRY_PAGES:
                break
    return results


def run_cycle(
    session: Session,
    client: HttpClient,
    settings: Settings,
    *,
    feed_ids: Iterable[int] | None = None,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
    retry_pages: bool = True,
    hosts: HostBreaker | None = None,
) -> CycleSummary:
    """Poll every due feed (or ``feed_ids``) once, then retry failed pages that are due and
    repair copy chains. ``retry_pages=False``: the caller finishes the cycle itself (the
    DAG's last task does both once for all its batches). ``hosts``: the hosts not to ask,
    kept across cycles by a caller that runs many (:class:`HostBreaker`)."""
    now = now or utcnow()
    ids = list(feed_ids) if feed_ids is not None else repo.due_feed_ids(session, now)
    summary = CycleSummary()
    context = IngestContext.from_settings(settings, hosts)
    ahead = FeedsAhead(session, client, settings, ids, now, context.pool)
    prepared = 0  # new items stored from this cycle's feeds so far

    def upcoming() -> int:  # (asked only for a feed with new items of its own)
        return prepared + ahead.fresh_ahead()

    pages = CyclePages(session, client, settings, ahead, context.pool, now, context.hosts)
    try:
        for position, feed_id in enumerate(ids, 1):
            fetched_ahead = ahead.take(feed_id)
            ahead.start_next()  # (the next feed is fetched while this one is polled)
            try:
                poll = poll_feed(
                    session,
                    client,
                    settings,
                    feed_id,
                    now=now,
                    progress=progress,
                    context=context,
                    ahead=fetched_ahead,
                    upcoming=upcoming,
                    pages=pages,
                )
            except (DatabaseError, ConfigError):
                raise
            except Exception as exc:
                # Another writer holding the database's lock past the busy timeout is no
                # fault of the feed: it would fail every feed after it the same way, and
                # recording the failure needs the lock that could not be had. (It was logged
                # as the feed's unexpected failure, with a traceback, and backed the feed off.)
                _stop_when_busy(session, exc)
                # A bug on one feed must not stop the cycle (the database being gone must);
                # the feed backs off like a failure.
                require_database(session)
                log.exception("feed %s failed unexpectedly", feed_id)
                feed = session.get(Feed, feed_id)
                if feed is None:
                    continue
                poll = _feed_failed(session, settings, feed, f"unexpected {type(exc).__name__}: {exc}", now)
            finally:
                pages.done_with(feed_id)  # (pages fetched ahead that its poll did not use)
            summary.polls.append(poll)
            prepared += sum(1 for item in poll.items if item.status == "new")
            if progress:
                progress(f"[{position}/{len(ids)}] {_describe_poll(poll)}")
        if retry_pages:
            summary.retried = retry_failed_pages(session, client, settings, now=now, context=context)
            flatten_copy_chains(session)
    finally:
        pages.close()
        ahead.close()
        context.close()
    return summary


def _stop_when_busy(session: Session, exc: BaseException) -> None:
    """Raise :class:`DatabaseBusy` (after a rollback) when ``exc`` says another writer held
    the database's lock for longer than this process waits for it."""
    if isinstance(exc, DBAPIError) and is_busy(exc):
        session.rollback()
        reason = driver_reason(exc)
        raise DatabaseBusy(
            f"the database stayed locked by another writer ({reason}); what was committed is kept: "
            "run again once that writer is done",
            reason=reason,
        ) from None


def _lang_hint(feed: Feed | None, item: FeedItem) -> str | None:
    """The language a page's source declares: the feed registry's, else the feed document's."""
    return (feed.lang if feed else None) or item.lang


# Feeds of a cycle fetched ahead of the one being polled, at most (each in a thread).
FEEDS_AHEAD = 4
# Feeds looked at beyond the current one, at most, to find FEEDS_AHEAD that may hold items:
# one read ahead that holds none (not modified, unchanged, empty or failed) does not
# count, so a run of quiet feeds does not leave the workers waiting at each feed's end.
MAX_FEEDS_SCANNED = 16


def _holds_items(fetch: Future[FeedFetch]) -> bool:
    """Whether a feed fetched ahead (done) gave a parsed document with items; one whose
    read-ahead raised counts as holding some (its poll raises again in its turn, and
    :meth:`FeedsAhead.fetched_after` stops there)."""
    if fetch.exception() is not None:
        return True
    parsed = fetch.result().parsed
    return parsed is not None and bool(parsed.items)


class FeedsAhead:
    """The next feeds of a cycle, fetched and parsed in threads while the current one is
    polled and its items ingested (:func:`fetch_feed` needs no database), so that neither
    the network's wait nor the parse sits between two feeds, and a run of feeds that
    answer 304 waits for several answers at once, not one after another.

    Up to :data:`FEEDS_AHEAD` feeds ahead that may hold items (a feed read ahead without
    any does not count, up to :data:`MAX_FEEDS_SCANNED` feeds), and no more requests in
    flight to one host than ``http.per_host_concurrency`` (the current feed's own request
    counted); these are requests beside the page fetches' limits (``http.max_concurrency``),
    and none are made with ``http.max_concurrency`` 1 (one request at a time). Each fetch
    runs in a thread of its own that ends with it. Prepare workers are forked only while
    the process has no other thread, so before it forks them the pool waits for the
    fetches in flight (:attr:`PreparePool.before_fork`): once a cycle at most, for
    requests it would make anyway.
    """

    def __init__(
        self,
        session: Session,
        client: HttpClient,
        settings: Settings,
        feed_ids: Sequence[int],
        now: datetime,
        pool: PreparePool,
    ) -> None:
        self.session, self.client, self.settings, self.now, self.pool = session, client, settings, now, pool
        self.order = list(feed_ids)
        self.started: dict[int, tuple[Future[FeedFetch], threading.Thread, str]] = {}
        self._position = -1
        pool.before_fork.append(self.settle)

    def take(self, feed_id: int) -> Future[FeedFetch] | None:
        """The fetch started ahead for ``feed_id``, done (None: fetched in its turn);
        ``feed_id`` becomes the feed :meth:`start_next` reads ahead of."""
        later = self.order[self._position + 1 :]
        self._position = self._position + 1 + later.index(feed_id) if feed_id in later else -1
        started = self.started.pop(feed_id, None)
        if started is None:
            return None
        future, thread, _ = started
        thread.join()  # (the poll needs its result now anyway)
        return future

    def _ahead(self) -> list[int]:
        """The feeds read ahead of the current one: the next :data:`FEEDS_AHEAD` that may
        hold items, and those between them that were read and hold none, within
        :data:`MAX_FEEDS_SCANNED`."""
        if self._position < 0:
            return []
        ahead: list[int] = []
        holding = 0
        for feed_id in self.order[self._position + 1 : self._position + 1 + MAX_FEEDS_SCANNED]:
            ahead.append(feed_id)
            started = self.started.get(feed_id)
            if started is None or not started[0].done() or _holds_items(started[0]):
                holding += 1
                if holding >= FEEDS_AHEAD:
                    break
        return ahead

    def start_next(self) -> None:
        """Start fetching the feeds after the current one (:meth:`_ahead`).

        A failure here only means no read-ahead: the feed is fetched in its turn."""
        http = self.settings.http
        if http.max_concurrency <= 1 or not 0 <= self._position < len(self.order):
            return
        try:
            current = self.session.get(Feed, self.order[self._position])
            busy = Counter(host for _, thread, host in self.started.values() if thread.is_alive())
            if current is not None:
                busy[host_of(current.poll_url)] += 1  # (polled now: its own request may be in flight)
            for feed_id in self._ahead():
                if feed_id in self.started:
                    continue
                feed = self.session.get(Feed, feed_id)
                if feed is None:
                    continue
                host = host_of(feed.poll_url)
                if busy[host] >= http.per_host_concurrency:
                    continue  # (fetched later, or in its turn)
                busy[host] += 1
                self._start(feed_id, FeedRequest.of(feed), host)
        except SQLAlchemyError as exc:
            log.debug("feeds not read ahead: %s", exc)

    def fresh_ahead(self) -> int:
        """New items (their pages not stored) of the feeds after the current one that have
        been read ahead and are in; 0 when the database cannot say."""
        canonicals: set[str] = set()
        for _, fetched in self._read_ahead():
            parsed = fetched.parsed if fetched is not None else None
            for item in parsed.items if parsed is not None else ():
                canonical = _screen_item(item)[0]
                if canonical:
                    canonicals.add(canonical)
        if not canonicals:
            return 0
        try:
            return len(canonicals - repo.known_urls(self.session, sorted(canonicals)))
        except SQLAlchemyError:
            return 0

    def fetched_after(self) -> list[tuple[int, FeedFetch]]:
        """The feeds read ahead (:meth:`_ahead`), in order, as far as each is in (stops at
        the first that is not)."""
        done: list[tuple[int, FeedFetch]] = []
        for feed_id, fetched in self._read_ahead():
            if fetched is None:
                break
            done.append((feed_id, fetched))
        return done

    def _read_ahead(self) -> Iterator[tuple[int, FeedFetch | None]]:
        """The feeds read ahead (:meth:`_ahead`), each with its fetch if it is in (None if
        not)."""
        for feed_id in self._ahead():
            started = self.started.get(feed_id)
            if started is None or not started[0].done() or started[0].exception() is not None:
                yield feed_id, None
            else:
                yield feed_id, started[0].result()

    def _start(self, feed_id: int, request: FeedRequest, host: str) -> None:
        future: Future[FeedFetch] = Future()

        def fetch() -> None:
            try:
                future.set_result(fetch_feed(self.client, self.settings, request, self.now))
            except BaseException as exc:  # (raised again by the poll, in its turn)
                future.set_exception(exc)

        # A daemon: a cycle stopped by an error does not wait for a slow feed server.
        thread = threading.Thread(target=fetch, name="summitwatch-feed-ahead", daemon=True)
        thread.start()
        self.started[feed_id] = (future, thread, host)

    def settle(self) -> None:
        """Wait for the fetches in flight (their results are kept for their turn)."""
        for _, thread, _ in self.started.values():
            thread.join()

    def close(self) -> None:
        """Drop what was fetched for nothing (the cycle stopped early)."""
        self.started.clear()
        if self.settle in self.pool.before_fork:
            self.pool.before_fork.remove(self.settle)


@dataclass
class EarlyPage:
    """A page of a later feed fetched (and, once in, handed to a prepare worker) ahead."""

    item: FeedItem
    position: int  # the item's in its feed
    page: PendingPage
    lang_hint: str | None
    job: tuple[PageJob, Future[Prepared]] | None = None
    handled: bool = False  # its job was submitted, or its fetch failed (raised in its turn)


class CyclePages:
    """The pages of a cycle: one fetcher for every feed, and the next feeds' new pages
    fetched and prepared while the current feed's last items are stored.

    Within a feed, pages are fetched a window ahead and prepared in the workers while this
    process stores the items before them. At a feed's end that stops: the workers have
    nothing left while this process stores the last items, and a feed of one or two items
    is done here alone. So once every page of the current feed is in a worker's hands, the
    first new items of the next feeds (read ahead by :class:`FeedsAhead`; not stored, no
    open failure; up to ``http.max_concurrency`` items in all) are fetched and handed to
    the workers as their pages come in, behind every job of the current feed
    (:meth:`PreparePool.submit`'s order); each feed's poll takes those pages and jobs over
    as if it had started them itself. Preparing a page depends on the page alone, so the
    outcome is the same; a page a poll no longer wants (stored in between, or the feed
    changed) is dropped and its job withdrawn. One fetcher serves the whole cycle, so its
    per-host limit holds across feeds too.
    """

    def __init__(
        self,
        session: Session,
        client: HttpClient,
        settings: Settings,
        feeds: FeedsAhead,
        pool: PreparePool,
        now: datetime,
        hosts: HostBreaker | None = None,
    ) -> None:
        self.session, self.client, self.settings, self.feeds, self.pool, self.now = (
            session,
            client,
            settings,
            feeds,
            pool,
            now,
        )
        self.hosts = hosts
        self._fetcher: PageFetcher | None = None
        # Feeds looked ahead at, in cycle order: their pages fetched ahead, by URL.
        self._early: dict[int, dict[str, EarlyPage]] = {}
        # The canonical URLs of the feed being polled, and of every item of the feeds looked
        # ahead at: a page two feeds list is fetched once, for the first (the second finds
        # it stored by then).
        self.current: set[str] = set()
        self._listed: set[str] = set()
        # Prepare workers are forked only while the process has no other thread: before
        # that, the fetcher's threads finish their requests and end (it starts again later).
        pool.before_fork.append(self.settle)

    def fetcher(self) -> PageFetcher:
        if self._fetcher is None:
            self._fetcher = page_fetcher(self.client, self.settings, self.hosts)
        return self._fetcher

    def rank(self, feed_id: int) -> int:
        """The position of ``feed_id`` in the cycle (the first part of its jobs' order)."""
        return self.feeds.order.index(feed_id) if feed_id in self.feeds.order else len(self.feeds.order)

    def look_ahead(self) -> None:
        """Fetch the next feeds' first new pages, and hand those that are in to the workers.

        Called while the current feed has no page left to hand out. A feed is looked at
        once, when it has been read ahead, and only while fewer than
        ``http.max_concurrency`` pages fetched ahead wait for their feed.
        """
        self.feeds.start_next()  # (feeds fetched ahead since: the next ones, as slots free up)
        budget = self.settings.http.max_concurrency
        waiting = sum(len(early) for early in self._early.values())
        for feed_id, fetched in self.feeds.fetched_after():
            if waiting >= budget:
                break
            if feed_id in self._early:
                continue
            self._early[feed_id] = {}
            try:
                self._fetch_early(feed_id, fetched, budget - waiting)
            except SQLAlchemyError as exc:
                log.debug("pages of feed %s not fetched ahead: %s", feed_id, exc)
            waiting += len(self._early[feed_id])
        for feed_id, early in self._early.items():
            rank = self.rank(feed_id)
            for entry in early.values():
                if entry.handled:
                    continue
                if not entry.page.ready():
                    return  # handed out in cycle order: the rest wait for this page
                entry.handled = True
                try:
                    response: HttpResponse | None = entry.page.result()
                except Exception:  # raised again in the item's turn
                    response = None
                if response is not None and _is_article_page(response):
                    job = PageJob(entry.item, response.body, response.content_type, entry.lang_hint, self.now)
                    entry.job = (job, self.pool.submit(job, (rank, entry.position)))

    def _fetch_early(self, feed_id: int, fetched: FeedFetch, limit: int) -> None:
        feed = self.session.get(Feed, feed_id)
        if (
            feed is None
            or fetched.parsed is None
            or fetched.request != FeedRequest.of(feed)
            or fetched.body_hash == feed.body_hash
        ):
            return  # (nothing to ingest, or asked again in its turn)
        listed = [(item, _screen_item(item)[0]) for item in fetched.parsed.items]
        items = listed[: self.settings.http.max_concurrency * 2]
        known = repo.known_urls(self.session, sorted({c for _, c in items if c}))
        known |= self.current | self._listed
        failed = repo.open_failure_targets(
            self.session, "page", sorted({item.url or "" for item, _ in items})
        )
        early = self._early[feed_id]
        for position, (item, canonical) in enumerate(items):
            url = item.url or ""
            if not url or canonical is None or canonical in known or url in failed or url in early:
                continue
            if len(early) >= limit:
                break
            known.add(canonical)  # (a second link to one page is fetched in its turn)
            page = self.fetcher().submit(url, accept=PAGE_ACCEPT)
            early[url] = EarlyPage(item, position, page, _lang_hint(feed, item))
        self._listed.update(canonical for _, canonical in listed if canonical)

    def take_back_one(self, prepare_here: Callable[[PageJob], Future[Prepared]]) -> bool:
        """Withdraw the latest early job no worker has started and do it with
        ``prepare_here`` (this process, waiting for a worker, would otherwise idle)."""
        for early in reversed(self._early.values()):
            for entry in reversed(early.values()):
                if entry.job is not None and self.pool.take_back(entry.job[1]):
                    entry.job = (entry.job[0], prepare_here(entry.job[0]))
                    return True
        return False

    def take(self, feed_id: int) -> dict[str, EarlyPage]:
        """The pages fetched ahead for ``feed_id``, by URL (the poll pops those it uses)."""
        return self._early.setdefault(feed_id, {})

    def done_with(self, feed_id: int) -> None:
        """After ``feed_id``'s poll, however it ended: withdraw the jobs of the pages fetched
        ahead for it that it did not use (a job already running just ends)."""
        self._drop(self._early.pop(feed_id, {}))
        self.current = set()

    def _drop(self, early: dict[str, EarlyPage]) -> None:
        for entry in early.values():
            if entry.job is not None:
                self.pool.take_back(entry.job[1])
        early.clear()

    def settle(self) -> None:
        """End the fetcher's threads, their requests done (results kept for their turn)."""
        if self._fetcher is not None:
            self._fetcher.close(drop_waiting=False)
            self._fetcher = None

    def close(self) -> None:
        for early in self._early.values():
            self._drop(early)
        self._early.clear()
        if self.settle in self.pool.before_fork:
            self.pool.before_fork.remove(self.settle)
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None


def flatten_copy_chains(session: Session) -> int:
    """Repair copies left one step short of their root by a concurrent fold, and commit
    (:func:`pipeline.db.repo.flatten_copy_chains`); how many were re-pointed."""
    changed = repo.flatten_copy_chains(session)
    if changed:
        log.warning("re-pointed %d copies whose original had been folded into another cluster", changed)
    session.commit()
    return changed


def _describe_poll(poll: PollResult) -> str:
    shown = redact_url(poll.feed_url)
    if poll.moved_to:
        shown += f" (moved permanently to {redact_url(poll.moved_to)}: polled there from now on)"
    if poll.outcome == "error":
        return f"{shown}: FAILED: {redact_text(poll.error or '')}"
    if poll.outcome == "gone":
        return f"{shown}: GONE: {redact_text(poll.error or '')}"
    if poll.outcome != "fetched":
        return f"{shown}: {poll.outcome.replace('_', ' ')}, nothing to do"
    counts = poll.counts()
    return (
        f"{shown}: {len(poll.items)} items, {counts['new']} new, "
        f"{counts['duplicate']} duplicate, {counts['error']} failed" + seen_before(counts)
    )


def seen_before(counts: Counter[str]) -> str:
    """How a poll's summary names the items handled before it (:attr:`ItemResult.seen_before`)."""
    return f" ({counts['seen']} seen before)" if counts["seen"] else ""


def _describe_item(item: ItemResult) -> str:
    label = item.title or redact_optional(item.url) or "(untitled)"
    if item.status == "error":
        return f"  ! {label[:80]}: {redact_text(item.error or '')}"
    return f"  {'+' if item.status == 'new' else '='} [{item.lang}] {label[:80]}"


# Import files -----------------------------------------------------------------------------


@dataclass
class ImportResult:
    """One line of an import file and what became of it."""

    line_number: int
    input_id: Any
    result: ItemResult


def import_lines(
    session: Session,
    settings: Settings,
    lines: Iterable[str],
    *,
    source: str,
    now: datetime | None = None,
    context: IngestContext | None = None,
) -> Iterator[ImportResult]:
    """Ingest pre-fetched JSON lines through the same stages, one commit per line.

    Fields other than the documented ones are ignored, each name reported once (as a
    warning) the first time it appears.
    """
    context = context or IngestContext.from_settings(settings)
    reported: set[str] = set()
    reported_feeds: set[str] = set()
    recorded_as = _failure_source(source) if source != "-" else source
    for number, (where, raw) in enumerate(importers.numbered_records(lines), 1):
        if not raw.strip():
            continue
        input_id: Any = None
        # Where a failure is recorded (and resolved when the line is imported later): the
        # file and line; standard input has no name, so its lines are told by content.
        target = (
            f"{recorded_as}:{number}"
            if source != "-"
            else f"-:{hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()}"
        )
        failure: BaseException | None = None
        try:
            # Read, extracted, detected, embedded and classified before the writers' lock
            # is taken (see repo.begin_write): another writer waits only for the look-ups
            # and inserts, as for a batch of a poll.
            record = importers.loads_strict(raw)
            if not isinstance(record, dict):
                raise ExtractionError(f"{where.split()[0]} is not a JSON object", permanent=True)
            record = importers.without_surrogates(record)  # lone "\\ud800" escapes
            record = importers.to_native(record)  # news-please and JSON Feed items
            input_id = record.get("id")
            unknown = sorted(set(record) - IMPORT_FIELDS - reported)
            if unknown:
                reported.update(unknown)
                log.warning(
                    "import %s %s: ignoring unknown field(s) %s (reported once)",
                    source,
                    where,
                    ", ".join(repr(name[:60]) for name in unknown[:20]),
                )
            candidate = _candidate_from_record(settings, record, now or utcnow())
            feed_id, unresolved = _feed_id_for(session, record.get("feed"))
            if unresolved and (feed_named := repr(record.get("feed"))[:200]) not in reported_feeds:
                reported_feeds.add(feed_named)
                log.warning(
                    "import %s %s: feed %s %s; imported without a feed (reported once)",
                    source,
                    where,
                    feed_named,
                    unresolved,
                )
            _prepare_import(session, context, candidate)
            # (What was read ends here: the look-ups under the lock see every commit since.)
            session.commit()
        except (ValueError, ItemError, RecursionError, SQLAlchemyError) as exc:
            session.rollback()
            _stop_for_the_database(session, exc, number)
            if isinstance(exc, SQLAlchemyError):  # (a feed look-up the database refused)
                log.exception("import %s %s could not be read", source, where)
            failure = exc
        if failure is None:
            try:
                # One line, one transaction, holding the writers' lock from its first look-up:
                # two imports at once must not both store one text. The line's text is looked
                # up again under it, so what another writer stored meanwhile is seen.
                repo.begin_write(session)
                result = store_candidate(
                    session,
                    candidate,
                    # (a line naming its feed was seen in that feed: listed under it, as a poll's)
                    via=f"feed:{feed_id}" if feed_id is not None else "import",
                    context=context,
                    feed_id=feed_id,
                    seen_at=now or utcnow(),
                )
                repo.resolve_failure(session, "import", target)
                if recorded_as != source:  # (recorded under the name as typed before)
                    repo.resolve_failure(session, "import", f"{source}:{number}")
                if result.status == "new" and candidate.published_at is not None:
                    # Importing past articles back-fills the coverage history.
                    repo.extend_history(session, candidate.published_at)
            except (ValueError, ItemError, RecursionError, SQLAlchemyError) as exc:
                # The line's partial writes are discarded; earlier lines are committed already.
                session.rollback()
                _stop_for_the_database(session, exc, number)
                if isinstance(exc, SQLAlchemyError):
                    log.exception("import %s %s could not be stored", source, where)
                failure = exc
        if failure is not None:
            message = f"{where}: {_short_error(failure)}"
            try:
                # Under the writers' lock, as the line would have been stored: two imports
                # failing on the same line at once must not both insert its failure (one
                # died on the key).
                repo.begin_write(session)
                repo.record_failure(
                    session,
                    stage="import",
                    target=target,
                    error=message,
                    permanent=True,
                    retry_after=None,
                    item={"line": clean_string(raw[:2000])},
                )
            except SQLAlchemyError as exc:
                session.rollback()
                _stop_for_the_database(session, exc, number)
                raise
            result = ItemResult("error", error=message)
        session.commit()
        yield ImportResult(number, input_id, result)
    flatten_copy_chains(session)


def _prepare_import(session: Session, context: IngestContext, candidate: ArticleCandidate) -> None:
    """Compute, before the writers' lock is taken, what storing ``candidate`` as a new row
    needs (its near-duplicate signature, translation evidence and search terms, vectors
    and verdict): :func:`store_candidate` takes them from ``context`` as it takes a prepare
    worker's. A text found stored already (a file imported again) is not worth it: it only
    adds a sighting. (The look-up here only saves work; the one under the lock decides.)"""
    assert candidate.fingerprint is not None
    canonical = candidate.fingerprint.canonical_url
    if canonical is not None and repo.known_url(session, canonical) is not None:
        return  # the same page, or a new version of it (done under the lock, as for a poll)
    if canonical is None and repo.original_by_content_hash(session, candidate.fingerprint.content_hash):
        return
    vectors = context.embed(candidate.title, candidate.text)
    work = text_work(context.settings, candidate, context.gazetteer)
    context.offer(
        classified(Prepared(candidate, vectors, text=work), context.registry, context.classifier_heads)
    )


def _stop_for_the_database(session: Session, exc: BaseException, number: int) -> None:
    """End the import when ``exc`` is no fault of line ``number`` (after a rollback): a
    database that refuses writes, has gone away, or stayed locked by another writer past
    the busy timeout would fail every later line the same way, and recording the line as
    failed would need the lock it just could not get."""
    if not isinstance(exc, DBAPIError):
        return
    if refuses_writes(exc):
        raise exc
    if is_busy(exc):
        reason = driver_reason(exc)
        raise DatabaseBusy(
            f"line {number}: the database stayed locked by another writer ({reason}); the lines "
            "before it are imported: run the import again once that writer is done",
            reason=reason,
        ) from None
    if isinstance(exc, OperationalError):
        require_database(session)  # gone: DatabaseUnavailable


def _failure_source(source: str) -> str:
    """The file an import's failures are recorded under: its absolute path as named (two
    files of one name in two folders are two files; a link is not followed, so a link
    to this week's export stays one file), a digest of it when too long to store."""
    try:
        path = os.path.abspath(source)
    except (OSError, ValueError):
        path = source
    path = path.encode("utf-8", "backslashreplace").decode("utf-8")  # (a name in no encoding)
    if len(path) > _MAX_FAILURE_SOURCE:
        digest = hashlib.blake2b(path.encode("utf-8"), digest_size=12).hexdigest()
        path = f"{path[:200]}…{digest}"
    return path


# FetchFailure.target holds 2048 characters: the path, a colon and a line number fit.
_MAX_FAILURE_SOURCE = 2000


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, SQLAlchemyError):
        return f"could not be stored: {type(exc).__name__}"
    return str(exc)


IMPORT_FIELDS = frozenset({"id", "url", "title", "html", "text", "published", "feed", "lang"})


def _candidate_from_record(settings: Settings, record: dict[str, Any], now: datetime) -> ArticleCandidate:
    url = record.get("url")
    if url is not None and (
        not isinstance(url, str)
        or not url[:8].lower().startswith(("http://", "https://"))
        or CONTROL_CHARACTERS.search(url)
        or any(char.isspace() for char in url)
    ):
        raise ExtractionError("'url' must be an http(s) URL", permanent=True)
    if url and (len(url) > MAX_URL_LENGTH or len(dedup.canonical_url(url)) > MAX_URL_LENGTH):
        # (The canonical form percent-encodes: a Chinese path triples in length.)
        raise ExtractionError("'url' longer than 2048 characters", permanent=True)
    if url:
        # What `feeds add` refuses (no host, a port that is not one, a host name of empty
        # labels): such URLs name no page, and every story given one would be stored as a
        # new version of one article.
        try:
            normalise_feed_url(url)
        except ValueError as exc:
            raise ExtractionError(f"'url' {exc}", permanent=True) from None
    html, text = record.get("html"), record.get("text")
    if html is not None and not isinstance(html, str):
        raise ExtractionError("'html' must be a string", permanent=True)
    if text is not None and not isinstance(text, str):
        raise ExtractionError("'text' must be a string", permanent=True)
    if text is not None and len(text) > settings.http.max_bytes:
        # As a page over http.max_bytes is refused: no article is that long, and detecting,
        # embedding and indexing tens of megabytes takes minutes and gigabytes.
        raise ExtractionError(
            f"'text' is longer than {settings.http.max_bytes:,} characters (http.max_bytes)", permanent=True
        )
    if text is not None and is_blank(text):
        # Spaces, line breaks or invisible format characters alone (an exporter's empty
        # field, a zero-width space): no text, so the page's HTML is read if there is one.
        text = None
    if not (html or text):
        raise ExtractionError("needs 'html' or 'text'", permanent=True)
    published_at = _read_published(record.get("published"))
    if published_at is not None and published_at < EARLIEST_DATE:
        log.warning(
            "import: 'published' %r is before 1990, a placeholder date: imported undated", record["published"]
        )
        published_at = None
    elif published_at is not None and published_at > now + FUTURE_TOLERANCE:
        log.warning("import: 'published' %r is in the future: imported undated", record["published"])
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        log.warning("import: 'title' is a JSON %s, not a string: imported untitled", _json_type(title))
        title = None
    input_id = record.get("id")
    if (input_id is not None and not isinstance(input_id, str | int | float)) or isinstance(input_id, bool):
        log.warning("import: 'id' is a JSON %s, not a string or number: ignored", _json_type(input_id))
        input_id = None
    body = html.encode("utf-8") if html and not text else None
    if body is not None and len(body) > settings.http.max_bytes:
        # Refused as a fetched page over the limit is (cut short, it would be stored mid-word).
        raise ExtractionError(
            f"'html' is {len(body):,} bytes, over the {settings.http.max_bytes:,}-byte limit "
            "(http.max_bytes)",
            permanent=True,
        )
    return build_candidate(
        settings,
        url=url,
        title=title,
        html=body,
        text=text or None,
        published_at=published_at,
        content_type="text/html; charset=utf-8",
        lang_hint=record.get("lang") if isinstance(record.get("lang"), str) else None,
        source_id=clean_string(str(input_id))[:512] if input_id is not None else None,
        now=now,
    )


# A leap second ("23:59:60"), which datetime cannot hold: read as the second before.
_LEAP_SECOND = re.compile(r"(?<=\d\d:\d\d):60(?=\D|$)")


def _read_published(published: Any) -> datetime | None:
    """The moment an import line's ``published`` names: ISO 8601, an RFC 822 date as feeds
    write them ("Tue, 10 Nov 2026 10:00:00 GMT", in other languages too), or Unix seconds or
    milliseconds (a number, or a string of digits). A value that is none of these, or empty,
    is no date: the line is imported undated, with a warning, rather than lost."""
    if published is None:
        return None
    if isinstance(published, bool) or not isinstance(published, str | int | float):
        log.warning("import: 'published' is a JSON %s, not a date: imported undated", _json_type(published))
        return None
    text = published.strip() if isinstance(published, str) else ""
    if isinstance(published, str) and not text:
        # An exporter's empty field: no date, as with none at all.
        log.warning("import: 'published' is empty: imported undated")
        return None
    moment: datetime | None = None
    if not isinstance(published, str) or (text.isascii() and text.isdigit() and 9 <= len(text) <= 13):
        seconds = float(published)
        if 1e11 <= abs(seconds) < 1e14:
            seconds /= 1000  # (milliseconds, as JavaScript counts)
        with contextlib.suppress(OverflowError, OSError, ValueError):
            moment = datetime.fromtimestamp(seconds, UTC)
    else:
        try:
            moment = datetime.fromisoformat(_LEAP_SECOND.sub(":59", text))
        except ValueError:
            moment = rfc822_date(text)
    if moment is None:
        log.warning(
            "import: 'published' %r is not a date (ISO 8601, RFC 822, Unix seconds): imported undated",
            published if not isinstance(published, str) else published[:100],
        )
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else type(value).__name__


def _feed_id_for(session: Session, feed: Any) -> tuple[int | None, str | None]:
    """The feed an import line's ``feed`` names, and if none, why (for a warning).

    A feed's URL in any spelling, else its name as written, else (as ``articles --feed``
    reads them) its id, or its name or outlet in any case: a name or outlet only when it
    names one feed.
    """
    if feed is None or feed == "":
        return None, None
    if isinstance(feed, int) and not isinstance(feed, bool):
        found = session.get(Feed, feed) if 0 < feed <= MAX_ROW_ID else None
        return (found.id, None) if found else (None, f"no feed has the id {feed}")
    if not isinstance(feed, str) or CONTROL_CHARACTERS.search(feed) or len(feed) > MAX_URL_LENGTH:
        return None, "not a feed's URL, id or name"  # (PostgreSQL would refuse a NUL in the look-up)
    by_url = repo.feed_by_url(session, feed)
    if by_url is not None:
        return by_url.id, None
    # A name as written first (two feeds may share one: then it names neither), then in any
    # case, or an outlet, or an id.
    named = list(session.scalars(select(Feed.id).where(Feed.name == feed).order_by(Feed.id)))
    if not named:
        try:
            named = repo.feed_ids_named(session, " ".join(feed.split()))
        except FilterError:
            named = []
    if len(named) == 1:
        return named[0], None
    if named:
        return None, f"names {len(named)} feeds (ids {', '.join(map(str, named[:10]))}): give one's URL or id"
    return None, "no feed has that URL, id, name or outlet (see `summitwatch feeds list`)"
