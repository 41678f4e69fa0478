"""Queries and idempotent writes. Every function takes the caller's session."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from pipeline.coverage import as_utc
from pipeline.db.schema import (
    CONTROL_CHARACTERS,
    MAX_ROW_ID,
    Article,
    ArticleBand,
    ArticleSignature,
    ArticleTopic,
    ArticleVector,
    ArticleVersion,
    ArticleWatch,
    Feed,
    FetchFailure,
    PipelineState,
    Sighting,
    utcnow,
)
from pipeline.feed_urls import clean_name, feed_url_spellings
from pipeline.records import Classification

if TYPE_CHECKING:
    from pipeline.search import SearchQuery

# Feeds ----------------------------------------------------------------------------------


def upsert_feed(
    session: Session,
    url: str,
    *,
    name: str | None = None,
    outlet: str | None = None,
    lang: str | None = None,
    reason: str | None = None,
    enabled: bool | None = True,
) -> tuple[Feed, bool]:
    """Insert a feed or update its descriptive fields; returns (feed, created).

    ``enabled=None`` leaves an existing feed's state as it is (a new one is enabled).

    A feed not found is looked up again under the writers' lock (:func:`begin_write`)
    before it is inserted: two processes adding one feed at once (`feeds import-opml` of
    one file on two hosts, `feeds add` beside `init`) both found it missing and inserted
    it, and the second failed on the unique URL, its whole command with it ("cannot use the
    database: UNIQUE constraint failed: feeds.url").
    """
    feed = feed_by_url(session, url)
    if feed is None:
        begin_write(session)
        feed = feed_by_url(session, url)
    created = feed is None
    if feed is None:
        feed = Feed(url=url, failure_count=0, enabled=enabled is not False)
        session.add(feed)
    # Names as every entry point must store them (feeds.yaml, `feeds add`, OPML): what
    # SQLite would keep, PostgreSQL refused (over 300 characters, a NUL) and with it the
    # whole init or import.
    name, outlet = clean_name(name), clean_name(outlet)
    if reason is not None:  # (free text: its lines kept, what no database stores dropped)
        reason = CONTROL_CHARACTERS.sub("", reason.replace("\r\n", "\n").replace("\r", "\n"))
        reason = re.sub("[\ud800-\udfff]", "\ufffd", reason) or None
    for attribute, value in (("name", name), ("outlet", outlet), ("lang", lang), ("reason", reason)):
        if value is not None:
            setattr(feed, attribute, value)
    if enabled is not None:
        feed.enabled = enabled
    session.flush()
    return feed, created


def feed_by_url(session: Session, url: str) -> Feed | None:
    """The feed stored under ``url`` in any spelling (a row stored before URLs were
    normalised may hold another spelling of it)."""
    return session.scalar(
        select(Feed).where(Feed.url.in_(feed_url_spellings(url))).order_by(Feed.id).limit(1)
    )


def feed_by_reference(session: Session, reference: str) -> Feed | None:
    """The feed ``reference`` names exactly: its id, or its URL in any spelling."""
    reference = reference.strip()
    if not reference or re.search("[\x00-\x1f\x7f\ud800-\udfff]", reference):
        return None  # (no stored URL holds these; PostgreSQL refuses a NUL in a query)
    if reference.isascii() and reference.isdigit():
        return session.get(Feed, int(reference)) if 0 < int(reference) <= MAX_ROW_ID else None
    return feed_by_url(session, reference)


def set_feed_enabled(session: Session, feed: Feed, enabled: bool) -> bool:
    """Enable or disable ``feed``; whether that changed it. Its schedule is kept: a feed
    enabled again is polled when it was next due (at once if that has passed, after its
    backoff if it was failing), so a server that asked for a pause still gets it."""
    changed = feed.enabled != enabled
    feed.enabled = enabled
    session.flush()
    return changed


def reset_feed(session: Session, feed: Feed) -> None:
    """Forget what polling learned of ``feed``: that it is gone (410) or moved (301, 308),
    its failures and backoff and its validators; it is polled at its own URL at the next
    run, as a feed just added."""
    if feed.failure_count or feed.gone_at is not None:
        resolve_failure(session, "feed", feed.url)
    feed.gone_at = None
    feed.moved_url = None
    feed.failure_count = 0
    feed.last_error = None
    feed.next_poll_at = None
    feed.etag = feed.last_modified = feed.body_hash = None
    session.flush()


def list_feeds(session: Session) -> Sequence[Feed]:
    return session.scalars(select(Feed).order_by(Feed.id)).all()


def feed_urls(session: Session, feed_ids: Sequence[int]) -> dict[int, str]:
    """The URL of each of ``feed_ids`` (an id no row can have names none)."""
    feed_ids = [feed_id for feed_id in feed_ids if 0 < feed_id <= MAX_ROW_ID]
    if not feed_ids:
        return {}
    return {
        row[0]: row[1]
        for row in session.execute(select(Feed.id, Feed.url).where(Feed.id.in_(list(feed_ids))))
    }


def due_feed_ids(
    session: Session, now: datetime, *, limit: int | None = None, slack: timedelta = timedelta(0)
) -> list[int]:
    """Enabled feeds whose next poll time has come (or that were never polled); a healthy
    feed's also when it comes within ``slack`` (a failing feed waits for its backoff and
    for what its server asked, to the second). A feed gone (410) is never due."""
    query = (
        select(Feed.id)
        .where(Feed.enabled.is_(True), Feed.gone_at.is_(None))
        .where(
            or_(
                Feed.next_poll_at.is_(None),
                Feed.next_poll_at <= now,
                and_(func.coalesce(Feed.failure_count, 0) == 0, Feed.next_poll_at <= now + slack),
            )
        )
        .order_by(Feed.next_poll_at.is_not(None), Feed.next_poll_at, Feed.id)
    )
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def next_poll_at(session: Session) -> datetime | None:
    """When the next enabled feed (gone ones left out) is due: the earliest next poll time,
    the earliest moment there is for a feed never polled, None when no feed is polled."""
    polled = (Feed.enabled.is_(True), Feed.gone_at.is_(None))
    if session.scalar(select(Feed.id).where(*polled, Feed.next_poll_at.is_(None)).limit(1)) is not None:
        return datetime.min.replace(tzinfo=UTC)
    earliest = session.scalar(select(func.min(Feed.next_poll_at)).where(*polled))
    return None if earliest is None else as_utc(earliest)


def not_polled_since(session: Session, feed_ids: Sequence[int], since: datetime) -> list[int]:
    """Those of ``feed_ids`` without a poll finished at or after ``since``, in the order given.

    A poll that began since but was cut short (its process stopped partway through the
    feed's items) does not count: the feed's remaining items are still to be stored.
    """
    polled: set[int] = set()
    for chunk in _chunks(feed_ids):
        polled.update(
            session.scalars(select(Feed.id).where(Feed.id.in_(chunk), Feed.poll_finished_at >= since))
        )
    return [feed_id for feed_id in feed_ids if feed_id not in polled]


def failing_feed_count(session: Session, feed_ids: Sequence[int]) -> int:
    """How many of ``feed_ids`` failed at their last poll (or are gone)."""
    count = 0
    for chunk in _chunks(feed_ids):
        count += int(
            session.scalar(
                select(func.count())
                .select_from(Feed)
                .where(Feed.id.in_(chunk), or_(Feed.failure_count > 0, Feed.gone_at.is_not(None)))
            )
            or 0
        )
    return count


def stored_since(session: Session, feed_ids: Sequence[int], since: datetime) -> Counter[str]:
    """Articles first stored from ``feed_ids`` at or after ``since``: ``new`` (originals)
    and ``duplicate`` (copies), as a poll that stored them counted them.

    What a poll counted without storing a row (a sighting of a stored article, a failed
    item) is not here: those leave no article behind.
    """
    counts: Counter[str] = Counter()
    for chunk in _chunks(feed_ids):
        rows = session.execute(
            select(Article.duplicate_of_id.is_(None), func.count())
            .where(Article.feed_id.in_(chunk), Article.first_seen_at >= since)
            .group_by(Article.duplicate_of_id.is_(None))
        )
        for original, count in rows:
            counts["new" if original else "duplicate"] += int(count)
    return counts


# Articles -------------------------------------------------------------------------------


# (id, duplicate_of_id, lang, copy_kind) of a stored article, as the ingest path reads it.
KnownArticle = tuple[int, int | None, str, str | None]

# Values per ``IN (...)`` list of the look-ups for many keys at once.
IN_CHUNK = 500
Key = TypeVar("Key", str, int)


def _chunks(values: Iterable[Key]) -> Iterator[list[Key]]:
    """``values`` without repeats, sorted, in lists of at most :data:`IN_CHUNK` (one query each)."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), IN_CHUNK):
        yield wanted[start : start + IN_CHUNK]


def article_by_canonical_url(session: Session, canonical_url: str) -> Article | None:
    return session.scalar(select(Article).where(Article.canonical_url == canonical_url))


def known_url(session: Session, canonical_url: str) -> KnownArticle | None:
    """(id, duplicate_of_id, lang, copy_kind) of the article stored under ``canonical_url``."""
    row = session.execute(
        select(Article.id, Article.duplicate_of_id, Article.lang, Article.copy_kind).where(
            Article.canonical_url == canonical_url
        )
    ).first()
    return (row[0], row[1], row[2], row[3]) if row is not None else None


def known_urls(session: Session, canonical_urls: Sequence[str]) -> set[str]:
    """Which of ``canonical_urls`` are stored already (one query per 500)."""
    found: set[str] = set()
    for chunk in _chunks(canonical_urls):
        found.update(session.scalars(select(Article.canonical_url).where(Article.canonical_url.in_(chunk))))
    return found


def known_articles(session: Session, canonical_urls: Sequence[str]) -> dict[str, KnownArticle]:
    """:func:`known_url` for many URLs at once (one query per 500): canonical URL -> row."""
    found: dict[str, KnownArticle] = {}
    for chunk in _chunks(canonical_urls):
        rows = session.execute(
            select(
                Article.canonical_url, Article.id, Article.duplicate_of_id, Article.lang, Article.copy_kind
            ).where(Article.canonical_url.in_(chunk))
        )
        for canonical, article_id, duplicate_of_id, lang, copy_kind in rows:
            if canonical is not None:
                found[canonical] = (article_id, duplicate_of_id, lang, copy_kind)
    return found


def sighted(session: Session, via: str, seen: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (article id, URL) pairs of ``seen`` already have a sighting via ``via``."""
    wanted = set(seen)
    found: set[tuple[int, str]] = set()
    for chunk in _chunks(article_id for article_id, _ in wanted):
        rows = session.execute(
            select(Sighting.article_id, Sighting.url).where(
                Sighting.via == via, Sighting.article_id.in_(chunk)
            )
        )
        found.update((article_id, url) for article_id, url in rows if (article_id, url) in wanted)
    return found


# The PostgreSQL advisory lock that writers of articles hold for a transaction: any number.
STORE_LOCK_KEY = 7_245_331_019


def begin_write(session: Session) -> None:
    """Open the session's write transaction now, holding the database's one writer lock.

    Storing an article looks it up (URL, text hash, near duplicates, translations), then
    inserts it: two processes doing that at once (two poll tasks, two imports) would each
    store the same text as an original. So writers of articles take turns, a transaction
    (a batch of items) at a time: on SQLite by taking its write lock now, on PostgreSQL an
    advisory lock held until the transaction ends (taken first, so two writers never wait
    on each other's rows: reclassifying and storing a new version deadlocked before).

    On SQLite this also keeps savepoints nested: its Python driver begins a transaction
    only at the first data change, and a ``SAVEPOINT`` issued before that starts the
    transaction itself, so that releasing it commits everything (half an item). One
    statement that changes nothing avoids that. A transaction that holds the lock already
    takes it again for nothing.
    """
    if _is_sqlite(session):
        raw = session.connection().connection.dbapi_connection
        if raw is not None and getattr(raw, "in_transaction", False):
            return
        session.execute(update(PipelineState).where(PipelineState.key.is_(None)).values(value=""))
        return
    transaction = session.get_transaction()
    if transaction is not None and session.info.get("write_lock") is transaction:
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STORE_LOCK_KEY})
    session.info["write_lock"] = session.get_transaction()


def original_by_content_hash(
    session: Session, content_hash: str, *, excluding: int | None = None
) -> Article | None:
    """The earliest stored article with this text hash (an original before a duplicate
    row), other than ``excluding``."""
    query = select(Article).where(Article.content_hash == content_hash)
    if excluding is not None:
        query = query.where(Article.id != excluding)
    return session.scalar(query.order_by(Article.duplicate_of_id.is_not(None), Article.id).limit(1))


def has_copies(session: Session, article_id: int) -> bool:
    """Whether any stored article points at ``article_id`` as its original."""
    found = session.scalar(select(Article.id).where(Article.duplicate_of_id == article_id).limit(1))
    return found is not None


def insert_article(session: Session, article: Article) -> Article | None:
    """Insert ``article`` in a savepoint; ``None`` when a concurrent writer stored its URL first."""
    try:
        with session.begin_nested():
            session.add(article)
            session.flush()
    except IntegrityError:
        return None
    return article


def add_sighting(
    session: Session, article_id: int, via: str, url: str, seen_at: datetime, *, new_article: bool = False
) -> bool:
    """Record that ``article_id`` was seen via ``via`` under ``url``; False if already known.

    ``new_article``: the article was inserted in this transaction, so it has no sightings
    yet; the row is inserted directly (no lookup, no unit-of-work bookkeeping).
    """
    if new_article:
        row = {"article_id": article_id, "via": via, "url": url, "seen_at": seen_at}
        session.execute(insert(Sighting), [row])
        return True
    exists = session.scalar(
        select(Sighting.id).where(Sighting.article_id == article_id, Sighting.via == via, Sighting.url == url)
    )
    if exists:
        return False
    try:
        with session.begin_nested():
            session.add(Sighting(article_id=article_id, via=via, url=url, seen_at=seen_at))
            session.flush()
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class ArticleFilter:
    """What ``summitwatch articles``, ``/articles`` and ``/api/articles`` ask for.

    ``text`` is a search query (:mod:`pipeline.search` syntax). Without
    ``include_duplicates``, copies and translations are folded into their original: a
    story is listed once, by its original, and a search finds it through any of its copies.
    ``until`` is exclusive.
    """

    topic: str | None = None
    watch: str | None = None
    lang: str | None = None
    feed: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    include_duplicates: bool = False
    include_seeds: bool = True
    sort: str = "relevance"  # with a query; "newest" orders by date regardless
    limit: int = 50
    offset: int = 0
    ids: tuple[int, ...] | None = None  # only these articles (e.g. the neighbours of a vector)


@dataclass(frozen=True)
class Found:
    """One listed article and, for a search, its score (higher is better)."""

    article: Article
    score: float | None


SORTS = ("relevance", "newest")


#: A relevance-ordered search first ranks this many matches inside the full-text index
#: (at least eight times the rows the page needs) and widens only when the filters leave
#: the page short.
RANKED_FIRST = 400
_RANKED_ALL_BEYOND = 50_000


def find_articles(session: Session, wanted: ArticleFilter) -> list[Found]:
    """Stored articles matching ``wanted``: best first for a search, else newest first.

    Raises :class:`pipeline.errors.FilterError` for a query that cannot be run or an
    unknown feed, and :class:`pipeline.errors.DatabaseError` for a search on an index
    another analyser made (``summitwatch init`` rebuilds it).
    """
    from pipeline import search
    from pipeline.db import fulltext

    if wanted.text is None:
        return _found(session, wanted, None)
    parsed = search.parse_query(wanted.text)
    fulltext.require_current(session)
    if wanted.sort == "relevance":
        # The page is exact with the best N matches as long as it fills up: a story ranks
        # by its best copy, and every story outside the N scores below all inside, or ties
        # and was stored earlier (the N are cut in that order, and the list orders ties so).
        best = max(RANKED_FIRST, 8 * (wanted.offset + wanted.limit))
        while best <= _RANKED_ALL_BEYOND:
            matched = fulltext.matches(session, parsed, best=best)
            found = _found(session, wanted, matched, _left_out(session, parsed))
            if (
                len(found) >= wanted.limit
                or (session.scalar(select(func.count()).select_from(matched)) or 0) < best
            ):
                return found
            best *= 8
    return _found(session, wanted, fulltext.matches(session, parsed), _left_out(session, parsed))


def _left_out(session: Session, parsed: SearchQuery) -> Subquery | None:
    """The articles holding a word the query leaves out (``-word``), or None."""
    from pipeline.db import fulltext

    exclusions = parsed.exclusions()
    return fulltext.matches(session, exclusions, name="left_out") if exclusions is not None else None


def _slug_column(table: type[ArticleTopic] | type[ArticleWatch]) -> Any:
    """The label table's slug column: a topic's, or a watch item's."""
    return ArticleTopic.topic if table is ArticleTopic else ArticleWatch.item


def labelled_stories(
    table: type[ArticleTopic] | type[ArticleWatch], slug: str | None = None
) -> Select[int, str]:
    """``(article_id, slug)`` of each label any article carries, given to its story's
    original (``coalesce(duplicate_of_id, id)``); ``slug`` keeps one label's rows.

    A story (an original and its copies, translations included) carries every label any of
    its articles carries. Each article is classified in its own language, and a translation
    can carry a label its original did not get: the story is counted and listed under it
    all the same, once. Rows may repeat (an original and its copy with one label).
    """
    member = aliased(Article)
    column = _slug_column(table)
    query = (
        select(func.coalesce(member.duplicate_of_id, member.id).label("article_id"), column.label("slug"))
        .select_from(table)
        .join(member, member.id == table.article_id)
    )
    return query.where(column == slug) if slug is not None else query


def story_has_label(table: type[ArticleTopic] | type[ArticleWatch], slug: str, story: Any = None) -> Any:
    """A condition on an original (``story``, default ``Article.id``): it or one of its
    copies carries the label. Tested row by row, for a walk that stops early (a page of a
    list, a window's articles); :func:`labelled_stories` lists them all at once."""
    story = Article.id if story is None else story
    column = _slug_column(table)
    copy = aliased(Article)
    own = select(table.article_id).where(table.article_id == story, column == slug).exists()
    copied = (
        select(table.article_id)
        .join(copy, copy.id == table.article_id)
        .where(copy.duplicate_of_id == story, column == slug)
        .exists()
    )
    return own | copied


def story_in_language(lang: str, plain: Callable[[Any], Any]) -> Any:
    """A condition on an original: it or one of its copies (a translation) is in ``lang``.

    Tested row by row through the copies' ``duplicate_of_id`` index (``plain``, from
    :func:`index_free`, keeps SQLite from probing the language index for every row instead).
    """
    copy = aliased(Article)
    translated = select(copy.id).where(copy.duplicate_of_id == Article.id, plain(copy.lang) == lang).exists()
    return (plain(Article.lang) == lang) | translated


def _found(
    session: Session, wanted: ArticleFilter, matched: Subquery | None, left_out: Subquery | None = None
) -> list[Found]:
    """The page of ``wanted``; ``matched`` is the full-text subquery of its query (or None),
    ``left_out`` that of the words it excludes: a story with one of them in any of its
    articles is left out, as its articles are."""
    score: Any = None
    if matched is not None:
        if wanted.include_duplicates:
            query = select(Article.id, matched.c.score).join(matched, matched.c.article_id == Article.id)
            score = matched.c.score
        else:
            story = func.coalesce(Article.duplicate_of_id, Article.id)
            folded = (
                select(story.label("story"), func.max(matched.c.score).label("score"))
                .join(matched, matched.c.article_id == Article.id)
                .group_by(story)
            )
            if left_out is not None:
                # An article matches only without the words left out; its story, only if
                # none of its articles has them (a translation without the Latin word
                # must not bring back a story whose original has it).
                member = aliased(Article)
                excluded = select(func.coalesce(member.duplicate_of_id, member.id)).join(
                    left_out, left_out.c.article_id == member.id
                )
                folded = folded.where(story.not_in(excluded))
            stories = folded.subquery("stories")
            query = select(Article.id, stories.c.score).join(stories, stories.c.story == Article.id)
            score = stories.c.score
    else:
        query = select(Article.id, cast(null(), Float))
    plain = index_free(session)
    if wanted.ids is not None:
        query = query.where(Article.id.in_(list(wanted.ids)))
    # Stories folded into their originals are listed under every label of the story (see
    # labelled_stories); articles listed one by one, under their own.
    if wanted.topic:
        # Topics are broad (a tenth to a third of all articles): walk the date order and
        # test membership. Watch items are narrow: start from their few articles.
        own_topic = select(ArticleTopic.article_id).where(ArticleTopic.topic == wanted.topic)
        query = query.where(
            plain(Article.id).in_(own_topic)
            if wanted.include_duplicates
            else story_has_label(ArticleTopic, wanted.topic, plain(Article.id))
        )
    if wanted.watch:
        item = (
            select(ArticleWatch.article_id).where(ArticleWatch.item == wanted.watch)
            if wanted.include_duplicates
            else select(labelled_stories(ArticleWatch, wanted.watch).subquery().c.article_id)
        )
        query = query.where(Article.id.in_(item))
    if wanted.lang:
        query = query.where(
            plain(Article.lang) == wanted.lang
            if wanted.include_duplicates
            else story_in_language(wanted.lang, plain)
        )
    if wanted.feed is not None:  # ("" names no feed: refused, not ignored)
        # What the feed carried: the articles first stored from it, and those it carried
        # after another feed or an import had (a page in two feeds is stored once).
        feed_ids = feed_ids_named(session, wanted.feed)
        carried = select(Sighting.article_id).where(Sighting.via.in_([f"feed:{i}" for i in feed_ids]))
        query = query.where(or_(plain(Article.feed_id).in_(feed_ids), Article.id.in_(carried)))
    moment = article_moment()
    if wanted.since:
        query = query.where(moment >= wanted.since)
    if wanted.until:
        query = query.where(moment < wanted.until)
    if not wanted.include_duplicates:
        query = query.where(plain(Article.duplicate_of_id).is_(None))
    if not wanted.include_seeds:
        query = query.where(plain(Article.is_seed).is_(False))
    order: list[Any] = [moment.desc(), Article.id.desc()]
    if score is not None and wanted.sort == "relevance":
        # Equal scores in the order the best N were cut in (fulltext.matches): the latest
        # stored first. By date, a back-fill imported newest first would put another N
        # on each page size, and pages repeat some ties and never reach others.
        order = [score.desc(), Article.id.desc()]
    # Ids first, rows after: sorting thousands of matches must not carry their texts along.
    rows = session.execute(query.order_by(*order).offset(wanted.offset).limit(wanted.limit)).all()
    if not rows:
        return []
    loaded = articles_by_id(session, [row[0] for row in rows])
    return [Found(loaded[row[0]], row[1]) for row in rows if row[0] in loaded]


def articles_by_id(session: Session, article_ids: Iterable[int]) -> dict[int, Article]:
    """The stored articles of ``article_ids``, by id, read :data:`IN_CHUNK` at a time: a
    list of ``articles --limit 100000`` holds more ids than one statement may bind
    (65,535 on PostgreSQL)."""
    found: dict[int, Article] = {}
    for chunk in _chunks(article_ids):
        found.update((a.id, a) for a in session.scalars(select(Article).where(Article.id.in_(chunk))))
    return found


def article_moment() -> Any:
    """An article's moment, in SQL: when it was published, else when it was first seen.

    The one definition coverage, the digests, the article list (``--since``/``--until``,
    its order, the web UI's day links) and the SQL views (``v_news.moment`` and ``day``)
    use, served by the ``ix_articles_moment`` index. No publication time is stored after
    the article was first seen (ingest stores a date ahead as the first sighting), so it
    is also the earlier of the two.
    """
    return func.coalesce(Article.published_at, Article.first_seen_at)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def index_free(session: Session) -> Callable[[Any], Any]:
    """What keeps a condition on a column from choosing the index: :func:`_not_indexed` on
    SQLite, the column itself on PostgreSQL."""
    return _not_indexed if _is_sqlite(session) else _as_is


def _not_indexed(column: Any) -> Any:
    """``+column``: SQLite then uses no index for this condition.

    Without statistics SQLite drives the newest-first list from the index of an equality
    (``duplicate_of_id IS NULL``, ``lang = 'ru'``) and sorts every row it finds (tens of
    thousands); walking the ``(moment, id)`` index backwards stops after one page.
    PostgreSQL plans from statistics and has no unary plus for text, so it gets the column.
    """
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _as_is(column: Any) -> Any:
    return column


def search_articles(session: Session, wanted: ArticleFilter) -> Sequence[Article]:
    """The articles of :func:`find_articles`, without scores."""
    return [found.article for found in find_articles(session, wanted)]


def feed_ids_named(session: Session, name: str) -> list[int]:
    """Feeds matching ``name``: a feed id, or a feed's name, outlet or URL (any case)."""
    from pipeline.errors import FilterError

    spellings = feed_url_spellings(name)
    # (A feed that moved is found by its new address too, and one whose URL holds a
    # credential by the redacted form the lists and the web UI show.)
    conditions: list[ColumnElement[bool]] = [
        Feed.url.in_(spellings),
        Feed.moved_url.in_(spellings),
        Feed.display_url.in_({name, *spellings}),
    ]
    if name.isascii() and name.isdigit() and int(name) <= MAX_ROW_ID:
        conditions.append(Feed.id == int(name))
    found = set(session.scalars(select(Feed.id).where(or_(*conditions))))
    # Names and outlets are compared here, not with SQL's lower(): SQLite's folds ASCII
    # letters only, so "РИА Новости" never matched itself. The feeds table is small.
    wanted = name.casefold()
    found.update(
        feed_id
        for feed_id, feed_name, outlet in session.execute(select(Feed.id, Feed.name, Feed.outlet))
        if wanted in (feed_name and feed_name.casefold(), outlet and outlet.casefold())
    )
    ids = sorted(found)
    if not ids:
        raise FilterError(f"no feed or outlet is called {name!r} (see `summitwatch feeds list`)")
    return ids


@dataclass(frozen=True)
class ClusterRoot:
    """The root of a stored article's copy cluster, as the database has it now.

    ``pinned``: the root was separated from another cluster by hand (:func:`unlink_copy`):
    no fold joins it to another cluster again, in either direction.
    """

    root_id: int
    is_seed: bool
    pinned: bool = False


def separated_by_hand(link_detail: Any) -> bool:
    """Whether a root's ``link_detail`` says it was separated by hand."""
    return isinstance(link_detail, dict) and "unlinked" in link_detail


def current_roots(session: Session, article_ids: Iterable[int]) -> dict[int, ClusterRoot]:
    """The root of each article's copy cluster, read from the database (not from a cache).

    Clusters can be folded together while a process runs (see :func:`merge_clusters`), so
    a root kept in memory can have become a copy. A copy that another process stored
    against a root folded at the same moment points one step short until
    :func:`flatten_copy_chains` runs; that step is followed here, and such a root is
    reported as a seed, so that nothing is folded on the strength of a stale read.
    """
    ids = sorted(set(article_ids))
    if not ids:
        return {}
    first = dict(
        session.execute(
            select(Article.id, func.coalesce(Article.duplicate_of_id, Article.id)).where(Article.id.in_(ids))
        ).all()
    )
    roots = {
        row.id: (row.duplicate_of_id, row.is_seed, separated_by_hand(row.link_detail))
        for row in session.execute(
            select(Article.id, Article.duplicate_of_id, Article.is_seed, Article.link_detail).where(
                Article.id.in_(set(first.values()))
            )
        )
    }
    found: dict[int, ClusterRoot] = {}
    for article_id, root in first.items():
        further, is_seed, pinned = roots[root]
        found[article_id] = ClusterRoot(further or root, bool(is_seed) or further is not None, pinned)
    return found


def merge_clusters(
    session: Session, into: int, merged: Mapping[int, tuple[float, dict[str, Any]]]
) -> list[int]:
    """Fold the copy clusters rooted at the keys of ``merged`` into the one rooted at ``into``.

    Each folded root becomes a translation copy of ``into`` with its similarity and detail
    (the values of ``merged``; the detail also lists the copies moved with it, so a fold
    can be traced and undone by hand), and its copies point at ``into``: every copy still
    points at its cluster's root. Roots are only ever folded into an earlier one (a lower
    id), so folds never make a cycle.

    The rows are locked (on PostgreSQL; SQLite has one writer at a time) and checked again:
    a root that another process has folded, that is a seed or that was separated by hand
    (:func:`unlink_copy`) stays as it is, and nothing is folded into a row that is no
    longer a root or was separated by hand. Returns the roots folded.
    """
    roots = sorted(merged)
    if not roots or roots[0] <= into:
        raise ValueError(f"clusters {roots} cannot be folded into {into}: only into an earlier root")
    state = {
        row.id: (row.duplicate_of_id, bool(row.is_seed), separated_by_hand(row.link_detail))
        for row in session.execute(
            select(Article.id, Article.duplicate_of_id, Article.is_seed, Article.link_detail)
            .where(Article.id.in_([into, *roots]))
            .order_by(Article.id)
            .with_for_update()
        )
    }
    if into not in state or state[into][0] is not None or state[into][2]:
        return []
    folded = []
    for root in roots:
        parent, is_seed, pinned = state.get(root, (None, True, False))
        if parent is not None or is_seed or pinned:
            continue
        moved = list(
            session.scalars(select(Article.id).where(Article.duplicate_of_id == root).order_by(Article.id))
        )
        similarity, detail = merged[root]
        session.execute(
            update(Article)
            .where(Article.duplicate_of_id == root)
            .values(duplicate_of_id=into)
            .execution_options(synchronize_session="fetch")
        )
        session.execute(
            update(Article)
            .where(Article.id == root)
            .values(
                duplicate_of_id=into,
                copy_kind="translation",
                similarity=similarity,
                link_detail={**detail, "folded_into": into, "moved_copy_ids": moved},
            )
            .execution_options(synchronize_session="fetch")
        )
        folded.append(root)
    return folded


def flatten_copy_chains(session: Session) -> int:
    """Point every copy whose original is itself a copy at that copy's root; rows changed.

    A fold and a new copy of the folded root, committed by two processes at the same
    moment, leave the copy one step short of the root. Run at the end of each run and
    import; a chain is a few rows at most, so this finds nothing nearly always.
    """
    parent = aliased(Article)
    changed = 0
    for _ in range(16):  # each pass shortens every chain by one step
        rows = session.execute(
            select(Article.id, parent.duplicate_of_id)
            .join(parent, Article.duplicate_of_id == parent.id)
            .where(parent.duplicate_of_id.is_not(None))
        ).all()
        if not rows:
            break
        by_root: dict[int, list[int]] = {}
        for article_id, root in rows:
            assert root is not None  # selected so
            by_root.setdefault(root, []).append(article_id)
        for root, article_ids in sorted(by_root.items()):
            session.execute(
                update(Article)
                .where(Article.id.in_(article_ids))
                .values(duplicate_of_id=root)
                .execution_options(synchronize_session="fetch")
            )
        changed += len(rows)
    return changed


@dataclass(frozen=True)
class Unlinked:
    """What :func:`unlink_copy` changed."""

    article_id: int
    was_copy_of: int
    copy_kind: str | None
    restored_copy_ids: list[int]


class NotACopy(LookupError):
    """The article to separate does not exist, or is not a copy."""


def unlink_copy(session: Session, article_id: int, now: datetime, *, reason: str | None = None) -> Unlinked:
    """Separate a copy from its cluster by hand (a wrong link): it becomes an original again.

    It counts as coverage from then on (dated before the collected history, it extends the
    history, as an imported article does), and no fold joins it to another cluster again
    (see :func:`merge_clusters`). Copies that belong with it come along
    (``restored_copy_ids``): a root that a fold had made a copy (its ``link_detail`` names
    ``folded_into`` and the ``moved_copy_ids``) gets back those of its copies still in the
    cluster (a later fold may have moved them on with it), and exact and near copies that
    matched it (or one of those) go with it. What the link said is kept in ``link_detail``
    under ``unlinked``, beside the moment, the ``reason`` given and what was restored. Not
    committed here.

    Raises :class:`NotACopy` for an unknown article or one that is not a copy.
    """
    row = session.execute(
        select(
            Article.id,
            Article.duplicate_of_id,
            Article.copy_kind,
            Article.similarity,
            Article.link_detail,
            Article.published_at,
        )
        .where(Article.id == article_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise NotACopy(f"no article with id {article_id}")
    if row.duplicate_of_id is None:
        raise NotACopy(f"article {article_id} is not a copy: it is an original already")
    root = row.duplicate_of_id
    detail = row.link_detail if isinstance(row.link_detail, dict) else {}
    restored = _taken_along(session, article_id, root, detail)
    if restored:
        session.execute(
            update(Article)
            .where(Article.id.in_(restored))
            .values(duplicate_of_id=article_id)
            .execution_options(synchronize_session="fetch")
        )
        # A copy that matched the separated article now has it as its original: `matched`
        # names only an article other than the original (a copy of a copy).
        forget_matches(session, article_id, article_id)
    record = {
        "copy_of": root,
        "copy_kind": row.copy_kind,
        "similarity": row.similarity,
        "at": now.isoformat(),
        "reason": reason,
        "restored_copy_ids": restored,
        "link_detail": row.link_detail,
    }
    session.execute(
        update(Article)
        .where(Article.id == article_id)
        .values(duplicate_of_id=None, copy_kind=None, similarity=None, link_detail={"unlinked": record})
        .execution_options(synchronize_session="fetch")
    )
    if row.published_at is not None:
        # Coverage now, like a new article: a back-dated one extends the collected history.
        extend_history(session, row.published_at)
    return Unlinked(article_id, root, row.copy_kind, restored)


def _taken_along(session: Session, article_id: int, root: int, detail: Mapping[str, Any]) -> list[int]:
    """The copies in ``root``'s cluster that go with ``article_id`` when it is separated.

    * A folded root's former copies (``moved_copy_ids``) still in the cluster, wherever a
      later fold of the cluster moved them with it (so nested folds are undone in any order).
    * The exact and near copies stored against the root that matched it (``matched`` in
      their ``link_detail``), or matched one of the copies going with it, and so on.
    """
    copies = session.execute(
        select(Article.id, Article.copy_kind, Article.link_detail)
        .where(Article.duplicate_of_id == root, Article.id != article_id)
        .order_by(Article.id)
        .with_for_update()
    ).all()
    moved = {i for i in detail.get("moved_copy_ids") or [] if isinstance(i, int)}
    going = {row.id for row in copies if row.id in moved} if "folded_into" in detail else set()
    matched_by: dict[int, list[int]] = {}
    for row in copies:
        matched = row.link_detail.get("matched") if isinstance(row.link_detail, dict) else None
        if row.copy_kind in ("exact", "near") and isinstance(matched, int):
            matched_by.setdefault(matched, []).append(row.id)
    frontier = [article_id, *sorted(going)]
    while frontier:
        found = [copy for matched in frontier for copy in matched_by.pop(matched, []) if copy not in going]
        going.update(found)
        frontier = found
    return sorted(going)


def forget_matches(session: Session, root: int, article_id: int) -> None:
    """The copies in ``root``'s cluster that matched ``article_id`` (``matched`` in their
    ``link_detail``) no longer name it: its text changed, so they copied a text the cluster
    still tells, not the one it has now, and do not go with it if it is separated."""
    for copy_id, detail in session.execute(
        select(Article.id, Article.link_detail).where(
            Article.duplicate_of_id == root, Article.id != article_id
        )
    ).all():
        if isinstance(detail, dict) and detail.get("matched") == article_id:
            rest = {key: value for key, value in detail.items() if key != "matched"}
            session.execute(
                update(Article)
                .where(Article.id == copy_id)
                .values(link_detail=rest or None)
                .execution_options(synchronize_session="fetch")
            )


def copies_of(session: Session, article_ids: Sequence[int]) -> dict[int, list[Article]]:
    """Duplicate rows pointing at each of ``article_ids`` (each original's in id order)."""
    grouped: dict[int, list[Article]] = {}
    for chunk in _chunks(article_ids):
        rows = session.scalars(
            select(Article).where(Article.duplicate_of_id.in_(chunk)).order_by(Article.id)
        ).all()
        for row in rows:
            assert row.duplicate_of_id is not None
            grouped.setdefault(row.duplicate_of_id, []).append(row)
    return grouped


def languages(session: Session) -> list[str]:
    """The languages of stored articles (read from the language index, not the table)."""
    return sorted(session.scalars(select(Article.lang).distinct()))


def counts_by_language(session: Session) -> list[tuple[str, int, int, int]]:
    """(lang, stored originals, duplicates, seeds) per language."""
    rows = session.execute(
        select(
            Article.lang,
            func.sum(_as_int(Article.duplicate_of_id.is_(None) & Article.is_seed.is_(False))),
            func.sum(_as_int(Article.duplicate_of_id.is_not(None))),
            func.sum(_as_int(Article.is_seed.is_(True))),
        )
        .group_by(Article.lang)
        .order_by(Article.lang)
    ).all()
    return [(lang, int(a or 0), int(b or 0), int(c or 0)) for lang, a, b, c in rows]


def _as_int(condition: Any) -> Any:
    return case((condition, 1), else_=0).cast(Integer)


# Failures -------------------------------------------------------------------------------


def record_failure(
    session: Session,
    *,
    stage: str,
    target: str,
    error: str,
    permanent: bool,
    retry_after: timedelta | None,
    not_before: timedelta | None = None,
    feed_id: int | None = None,
    item: dict[str, Any] | None = None,
    retry_limit: int = 5,
    now: datetime | None = None,
    attempted: bool = True,
) -> FetchFailure:
    """Record (or update) a failure; transient ones get a next retry time until the limit
    (``retry_after`` times the attempts so far, and at least ``not_before``: what the
    server asked for). ``attempted=False``: nothing was tried (a page put off to the next
    run), so the attempts, and with them the limit, stay as they were."""
    now = now or utcnow()
    failure = session.scalar(
        select(FetchFailure).where(FetchFailure.stage == stage, FetchFailure.target == target)
    )
    if failure is None:
        failure = FetchFailure(
            stage=stage,
            target=target,
            feed_id=feed_id,
            error=error,
            attempts=0,
            first_failed_at=now,
            item=item,
        )
        session.add(failure)
    failure.attempts = (failure.attempts or 0) + (1 if attempted else 0)
    failure.error = error
    failure.last_failed_at = now
    failure.resolved_at = None
    failure.permanent = permanent or failure.attempts >= retry_limit
    if item is not None:
        failure.item = item
    failure.next_retry_at = (
        None
        if failure.permanent or retry_after is None
        else now + max(retry_after * failure.attempts, not_before or timedelta(0))
    )
    session.flush()
    return failure


def resolve_failure(session: Session, stage: str, target: str) -> None:
    session.execute(
        update(FetchFailure)
        .where(FetchFailure.stage == stage, FetchFailure.target == target)
        .where(FetchFailure.resolved_at.is_(None))
        .values(resolved_at=utcnow(), next_retry_at=None)
    )


def open_failure_targets(session: Session, stage: str, targets: Sequence[str]) -> set[str]:
    """Which of ``targets`` have an unresolved failure at ``stage`` (one query per 500)."""
    found: set[str] = set()
    for chunk in _chunks(targets):
        found.update(
            session.scalars(
                select(FetchFailure.target).where(
                    FetchFailure.stage == stage,
                    FetchFailure.target.in_(chunk),
                    FetchFailure.resolved_at.is_(None),
                )
            )
        )
    return found


def open_failure(session: Session, stage: str, target: str) -> FetchFailure | None:
    """The unresolved failure recorded for ``target``, if any."""
    return session.scalar(
        select(FetchFailure).where(
            FetchFailure.stage == stage, FetchFailure.target == target, FetchFailure.resolved_at.is_(None)
        )
    )


def failures_due(
    session: Session,
    stage: str,
    now: datetime,
    limit: int = 100,
    *,
    after: tuple[datetime, int] | None = None,
) -> Sequence[FetchFailure]:
    """Open transient failures of ``stage`` due by ``now``, longest due first (then by id);
    ``after``: only those after this (next retry time, id), for the next page of them."""
    query = (
        select(FetchFailure)
        .where(FetchFailure.stage == stage, FetchFailure.resolved_at.is_(None))
        .where(FetchFailure.permanent.is_(False), FetchFailure.next_retry_at <= now)
    )
    if after is not None:
        when, last_id = after
        query = query.where(
            or_(
                FetchFailure.next_retry_at > when,
                and_(FetchFailure.next_retry_at == when, FetchFailure.id > last_id),
            )
        )
    return session.scalars(query.order_by(FetchFailure.next_retry_at, FetchFailure.id).limit(limit)).all()


def open_failures(session: Session, limit: int = 100) -> Sequence[FetchFailure]:
    return session.scalars(
        select(FetchFailure)
        .where(FetchFailure.resolved_at.is_(None))
        .order_by(FetchFailure.last_failed_at.desc())
        .limit(limit)
    ).all()


# Near-duplicate index ---------------------------------------------------------------------


def band_candidates(
    session: Session, keys: Sequence[int], scheme: str, *, limit: int | None = None
) -> list[int]:
    """Ids of articles signed under ``scheme`` that share at least one band key, in id order.

    With ``limit``, only that many: those sharing the most band keys (then the lowest ids).

    Two index-driven steps, so the plan never depends on table statistics: the band keys
    (primary-key prefix of ``article_bands``), then the scheme of just those articles, a
    chunk at a time (never more ids in one query than a driver takes parameters). A single
    join let both SQLite and an unanalysed PostgreSQL start from the signatures and probe
    every stored article (15 s per lookup at 1M signatures instead of 2 ms).
    """
    if not keys:
        return []
    shared = session.execute(
        select(ArticleBand.article_id, func.count())
        .where(ArticleBand.band_key.in_(list(keys)))
        .group_by(ArticleBand.article_id)
    ).all()
    ranked = [article_id for article_id, _ in sorted(shared, key=lambda row: (-row[1], row[0]))]
    found: list[int] = []
    for first in range(0, len(ranked), IN_CHUNK):
        chunk = ranked[first : first + IN_CHUNK]
        signed = set(
            session.scalars(
                select(ArticleSignature.article_id).where(
                    ArticleSignature.article_id.in_(chunk), ArticleSignature.scheme == scheme
                )
            )
        )
        found += [article_id for article_id in chunk if article_id in signed]
        if limit is not None and len(found) >= limit:
            break
    return sorted(found[:limit] if limit is not None else found)


def store_signature(
    session: Session,
    article_id: int,
    scheme: str,
    signature: bytes,
    keys: Sequence[int],
    *,
    new_article: bool = False,
) -> None:
    """Index ``article_id`` under ``keys``, replacing what it had (idempotent).

    ``new_article``: inserted in this transaction, so there is nothing to replace. The rows
    are inserted directly, one multi-row insert per table.
    """
    if new_article:
        session.execute(
            insert(ArticleSignature), [{"article_id": article_id, "scheme": scheme, "signature": signature}]
        )
        if keys:
            bands = [{"band_key": key, "article_id": article_id} for key in sorted(set(keys))]
            session.execute(insert(ArticleBand), bands)
        return
    session.execute(delete(ArticleBand).where(ArticleBand.article_id == article_id))
    existing = session.get(ArticleSignature, article_id)
    if existing is None:
        session.add(ArticleSignature(article_id=article_id, scheme=scheme, signature=signature))
    else:
        existing.scheme, existing.signature = scheme, signature
    session.add_all(ArticleBand(band_key=key, article_id=article_id) for key in sorted(set(keys)))


def drop_signature(session: Session, article_id: int) -> None:
    """Take ``article_id`` out of the near-duplicate index (its text has no signature)."""
    session.execute(delete(ArticleBand).where(ArticleBand.article_id == article_id))
    session.execute(delete(ArticleSignature).where(ArticleSignature.article_id == article_id))


def had_version(session: Session, article_id: int, content_hash: str) -> bool:
    """Whether ``article_id`` once had this text (re-imports of old lines change nothing)."""
    return (
        session.scalar(
            select(ArticleVersion.id)
            .where(ArticleVersion.article_id == article_id, ArticleVersion.content_hash == content_hash)
            .limit(1)
        )
        is not None
    )


def add_version(session: Session, article: Article, seen_at: datetime) -> ArticleVersion:
    """Keep the current text of ``article`` as an earlier version before it is replaced
    (at ``seen_at``). The version's ``seen_at`` is when that text was first seen: when it
    replaced the previous version, or, for the first text, when the article was first seen."""
    previous = session.scalar(
        select(ArticleVersion.replaced_at)
        .where(ArticleVersion.article_id == article.id)
        .order_by(ArticleVersion.id.desc())
        .limit(1)
    )
    version = ArticleVersion(
        article_id=article.id,
        title=article.title,
        text=article.text,
        content_hash=article.content_hash,
        seen_at=previous or article.first_seen_at,
        replaced_at=seen_at,
    )
    session.add(version)
    session.flush()
    return version


# Multilingual vectors ---------------------------------------------------------------------


def store_vectors(
    session: Session,
    article_id: int,
    *,
    model: str,
    lang: str,
    moment: datetime,
    document: bytes,
    sentences: bytes,
    sentence_count: int,
    has_title: bool,
    new_article: bool = False,
) -> None:
    """Store (or replace) the vectors of ``article_id`` (a replacement goes out with the next flush).

    ``new_article``: inserted in this transaction, so it has no vectors to replace (the row
    is inserted directly).
    """
    if new_article:
        values = {
            "article_id": article_id,
            "model": model,
            "lang": lang,
            "moment": moment,
            "document": document,
            "sentences": sentences,
            "sentence_count": sentence_count,
            "has_title": has_title,
        }
        session.execute(insert(ArticleVector), [values])
        return
    row = session.get(ArticleVector, article_id)
    if row is None:
        row = ArticleVector(article_id=article_id)
        session.add(row)
    row.model, row.lang, row.moment = model, lang, moment
    row.document, row.sentences = document, sentences
    row.sentence_count, row.has_title = sentence_count, has_title


@dataclass(frozen=True)
class VectorRow:
    """A stored document vector with what the candidate lookup filters and links on."""

    article_id: int
    root_id: int
    lang: str
    moment: datetime
    document: bytes
    model: str
    dated: bool = True  # False: the article gave no publication time (moment is first seen)


def _vector_rows(session: Session, condition: Any, *extra: Any, latest: int | None = None) -> list[VectorRow]:
    """Rows in the order the database finds them: the lookup ranks by score, then id, so no
    ORDER BY (which would sort a whole window of rows in a temporary B-tree). ``latest``:
    only the rows of the highest ``latest`` article ids (walked backwards on the primary key)."""
    root = func.coalesce(Article.duplicate_of_id, Article.id)
    query = (
        select(
            ArticleVector.article_id,
            root,
            ArticleVector.lang,
            ArticleVector.moment,
            ArticleVector.document,
            ArticleVector.model,
            Article.published_at.is_not(None),
        )
        .join(Article, Article.id == ArticleVector.article_id)
        .where(condition, *extra)
    )
    if latest is not None:
        query = query.order_by(ArticleVector.article_id.desc()).limit(latest)
    return [VectorRow(*row[:-1], dated=bool(row[-1])) for row in session.execute(query)]


def vectors_between(session: Session, model: str, start: datetime, end: datetime) -> list[VectorRow]:
    """Document vectors under ``model`` whose moment is in [start, end).

    Served by the (model, moment) index, so the cost follows the rows in the range, not
    the size of the archive.
    """
    return _vector_rows(
        session, ArticleVector.model == model, ArticleVector.moment >= start, ArticleVector.moment < end
    )


def vectors_after(session: Session, model: str, after_id: int) -> list[VectorRow]:
    """Document vectors of articles with an id above ``after_id`` (stored since a reader last looked).

    Only the primary-key range is given to the database: with the model in the WHERE
    clause too, SQLite walks the whole (model, moment) index instead.
    """
    return [row for row in _vector_rows(session, ArticleVector.article_id > after_id) if row.model == model]


def undated_vectors(session: Session, model: str, limit: int) -> list[VectorRow]:
    """Document vectors of the ``limit`` latest articles that gave no publication time
    (their moment is when they were first seen, which says little about when they were
    written). Served by the index on ``published_at``."""
    if limit <= 0:
        return []
    return _vector_rows(session, Article.published_at.is_(None), ArticleVector.model == model, latest=limit)


def latest_vectors(session: Session, model: str, limit: int) -> list[VectorRow]:
    """Document vectors of the ``limit`` latest stored articles, whatever their moment.

    Read backwards on the primary key; rows of other models are dropped after the read
    (with the model in the WHERE clause, SQLite would walk the (model, moment) index and
    sort), so a database holding two models' vectors returns fewer than ``limit``.
    """
    if limit <= 0:
        return []
    return [row for row in _vector_rows(session, true(), latest=limit) if row.model == model]


def seed_vectors(session: Session, model: str) -> list[VectorRow]:
    """Document vectors of the seed corpus (indexed by ``is_seed``; seeds are few)."""
    seed_ids = list(session.scalars(select(Article.id).where(Article.is_seed == True)))  # noqa: E712
    if not seed_ids:
        return []
    return _vector_rows(session, ArticleVector.article_id.in_(seed_ids), ArticleVector.model == model)


def vectors_of(session: Session, model: str, article_ids: Sequence[int]) -> list[VectorRow]:
    """Document vectors under ``model`` of ``article_ids`` (those that have them)."""
    rows: list[VectorRow] = []
    for chunk in _chunks(article_ids):
        rows.extend(
            row for row in _vector_rows(session, ArticleVector.article_id.in_(chunk)) if row.model == model
        )
    return rows


def latest_article_ids(session: Session, limit: int) -> list[int]:
    """The ``limit`` highest committed article ids (read backwards on the primary key)."""
    return list(session.scalars(select(Article.id).order_by(Article.id.desc()).limit(limit)))


def article_ids_after(session: Session, after_id: int) -> list[int]:
    """Every article id above ``after_id`` (a range of the primary key, nothing else read)."""
    return list(session.scalars(select(Article.id).where(Article.id > after_id)))


def existing_article_ids(session: Session, article_ids: Sequence[int]) -> list[int]:
    """Those of ``article_ids`` that are articles (now visible to this session)."""
    found: list[int] = []
    for chunk in _chunks(article_ids):
        found.extend(session.scalars(select(Article.id).where(Article.id.in_(chunk))))
    return found


def sentence_vectors(session: Session, article_ids: Sequence[int]) -> dict[int, tuple[ArticleVector, str]]:
    """The stored vectors of each of ``article_ids`` with the article's text."""
    if not article_ids:
        return {}
    rows = session.execute(
        select(ArticleVector, Article.text)
        .join(Article, Article.id == ArticleVector.article_id)
        .where(ArticleVector.article_id.in_(list(article_ids)))
    ).all()
    return {vector.article_id: (vector, text) for vector, text in rows}


def article_ids_without_vectors(
    session: Session, model: str, *, after_id: int = 0, limit: int = 200
) -> list[int]:
    """Up to ``limit`` ids above ``after_id`` of articles with no vectors under ``model``."""
    return list(
        session.scalars(
            select(Article.id)
            .outerjoin(ArticleVector, ArticleVector.article_id == Article.id)
            .where(Article.id > after_id)
            .where(or_(ArticleVector.article_id.is_(None), ArticleVector.model != model))
            .order_by(Article.id)
            .limit(limit)
        )
    )


# Classification ---------------------------------------------------------------------------


def replace_classification(
    session: Session, article: Article, verdict: Classification, now: datetime, *, new_article: bool = False
) -> None:
    """Store ``verdict`` as the article's topics and watch items, replacing earlier ones.

    An article never classified (``classified_at`` unset: topics are only written here,
    together with it), or ``new_article`` (inserted in this transaction, its verdict set on
    it before), has nothing to replace; its rows are inserted directly.
    """
    replace_classifications(session, [(article, verdict)], now, new_articles=new_article)


def replace_classifications(
    session: Session,
    verdicts: Sequence[tuple[Article, Classification]],
    now: datetime,
    *,
    new_articles: bool = False,
) -> None:
    """:func:`replace_classification` for many articles: their earlier rows deleted, and
    the new ones inserted, a few statements for the lot."""
    replaced = [
        article.id for article, _ in verdicts if article.classified_at is not None and not new_articles
    ]
    for start in range(0, len(replaced), IN_CHUNK):
        chunk = replaced[start : start + IN_CHUNK]
        session.execute(delete(ArticleTopic).where(ArticleTopic.article_id.in_(chunk)))
        session.execute(delete(ArticleWatch).where(ArticleWatch.article_id.in_(chunk)))
    topics = [
        {"article_id": article.id, "topic": hit.topic, "score": hit.score, "evidence": list(hit.evidence)}
        for article, verdict in verdicts
        for hit in verdict.topics
    ]
    watch = [
        {"article_id": article.id, "item": hit.item, "score": hit.score, "evidence": list(hit.evidence)}
        for article, verdict in verdicts
        for hit in verdict.watch
    ]
    if topics:
        session.execute(insert(ArticleTopic), topics)
    if watch:
        session.execute(insert(ArticleWatch), watch)
    for article, verdict in verdicts:
        if article.relevant != verdict.relevant or article.classified_at != now:
            # (Assigning the same values writes nothing, yet marks the row changed: every
            # later query of the transaction would flush it again first.)
            article.relevant = verdict.relevant
            article.classified_at = now


def labels_of(
    session: Session, article_ids: Sequence[int]
) -> dict[int, tuple[list[ArticleTopic], list[ArticleWatch]]]:
    """Topics and watch items of each of ``article_ids``, each list by score, highest
    first (a watch item without a score, classified before scores were kept, last), then by
    slug: the same order on SQLite and PostgreSQL."""
    result: dict[int, tuple[list[ArticleTopic], list[ArticleWatch]]] = {i: ([], []) for i in article_ids}
    # (An article's labels all come from the one chunk that holds its id.)
    for chunk in _chunks(article_ids):
        for topic in session.scalars(
            select(ArticleTopic)
            .where(ArticleTopic.article_id.in_(chunk))
            .order_by(ArticleTopic.score.is_(None), ArticleTopic.score.desc(), ArticleTopic.topic)
        ):
            result[topic.article_id][0].append(topic)
        for watch in session.scalars(
            select(ArticleWatch)
            .where(ArticleWatch.article_id.in_(chunk))
            .order_by(ArticleWatch.score.is_(None), ArticleWatch.score.desc(), ArticleWatch.item)
        ):
            result[watch.article_id][1].append(watch)
    return result


def article_ids_in_batches(session: Session, batch_size: int = 500) -> Iterator[list[int]]:
    """Every article id, in ascending batches (for re-classification of history)."""
    last = 0
    while True:
        batch = list(
            session.scalars(
                select(Article.id).where(Article.id > last).order_by(Article.id).limit(batch_size)
            )
        )
        if not batch:
            return
        yield batch
        last = batch[-1]


# Installation state -----------------------------------------------------------------------

HISTORY_START = "history_start"


def history_start(session: Session, now: datetime | None = None) -> datetime:
    """When this installation started collecting (recorded on first use), in UTC.

    Stored in UTC; a value stored with another offset (before that was so) or none (UTC)
    is read as the moment it names."""
    row = session.get(PipelineState, HISTORY_START)
    if row is None:
        moment = as_utc(now or utcnow())
        session.add(PipelineState(key=HISTORY_START, value=moment.isoformat()))
        session.flush()
        return moment
    return as_utc(datetime.fromisoformat(row.value))


def collected_until(session: Session, now: datetime) -> datetime:
    """Until when collection is known to have run: the last poll of a feed that is not
    failing, or the last article stored (an import, or a poll's), whichever is later, and
    at most ``now``. ``now`` itself where no feed was ever polled (imports only, or a new
    installation): nothing there tells an outage from a quiet spell.

    The change detector judges bins up to this moment only: while ingest is down (the
    scheduler stopped, every feed failing), an empty day is no data, not a thread that
    went quiet, and every busy series would otherwise report a fall after three days.
    """
    polling = (Feed.enabled.is_(True), Feed.gone_at.is_(None), Feed.poll_finished_at.is_not(None))
    if session.scalar(select(Feed.id).where(*polling).limit(1)) is None:
        return now
    healthy = session.scalar(select(func.max(Feed.poll_finished_at)).where(*polling, Feed.failure_count == 0))
    stored = session.scalar(select(func.max(Article.first_seen_at)).where(Article.is_seed.is_(False)))
    moments = [as_utc(moment) for moment in (healthy, stored) if moment is not None]
    return min(as_utc(now), max(moments)) if moments else as_utc(now)


LABELS_CLASSIFIER = "labels_classifier"


def labels_classifier(session: Session) -> str | None:
    """The identity of the classifier every stored label is known to come from (recorded
    when a database starts empty and after ``reclassify``), or None."""
    row = session.get(PipelineState, LABELS_CLASSIFIER)
    return row.value if row is not None else None


def record_labels_classifier(session: Session, identity: str) -> None:
    row = session.get(PipelineState, LABELS_CLASSIFIER)
    if row is None:
        session.add(PipelineState(key=LABELS_CLASSIFIER, value=identity))
    else:
        row.value = identity
    session.flush()


def extend_history(session: Session, earliest: datetime) -> None:
    """Back-filled articles (imports with past dates) extend the collected history."""
    earliest = as_utc(earliest)
    current = history_start(session, earliest)
    row = session.get(PipelineState, HISTORY_START)
    assert row is not None
    if earliest < current or row.value != current.isoformat():
        # (An earlier start, or one stored with another offset: written in UTC.)
        row.value = min(earliest, current).isoformat()
        session.flush()
