"""``summitwatch init``: schema, seed corpus and configured feeds, all idempotent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pipeline import dedup, neardup
from pipeline.db import fulltext, repo
from pipeline.db.engine import (
    apply_views,
    init_lock,
    make_engine,
    require_writable,
    session_factory,
    upgrade_schema,
    views_file,
)
from pipeline.db.schema import Article, ArticleSignature, ArticleVersion, Feed, PipelineState
from pipeline.errors import DatabaseError
from pipeline.feeds import load_feed_registry
from pipeline.ingest import MAX_URL_LENGTH, IngestContext, build_candidate, index_articles, store_candidate
from pipeline.neardup_params import NearDupParams
from pipeline.seeds import load_seed_documents
from pipeline.settings import Settings


@dataclass(frozen=True)
class InitReport:
    revision_before: str | None
    revision_after: str | None
    seeds_added: int
    seeds_present: int
    feeds_added: int
    feeds_updated: int
    vectors_missing: int = 0
    search_reindexed: int | None = None
    resigned: int = 0
    # Stored articles whose labels may come from another classifier than the configured one
    # (the registry, the learned layer or the classifier's code changed since): 0 if none.
    labels_stale: int = 0
    # Articles whose canonical URL was stored again in the current form (dedup.CANONICAL_URL_SCHEME).
    recanonicalised: int = 0
    # Texts (articles and earlier versions) whose hash was stored again (dedup.CONTENT_HASH_SCHEME).
    rehashed: int = 0


def initialise(
    settings: Settings, *, load_feeds: bool = True, progress: Callable[[str], None] | None = None
) -> InitReport:
    """Create or upgrade the schema, load the seed corpus and the feed list from config."""
    registry = load_feed_registry(settings.feeds_file) if load_feeds else None
    require_writable(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        with init_lock(engine):  # a second init waits, then finds everything in place
            before, after = upgrade_schema(engine)
            apply_views(engine, views_file(settings.config_dir))
            with session_factory(engine)() as session:
                repo.history_start(session)  # collection starts now, unless it started earlier
                # A newer analyser (pipeline.search.SCHEME) re-indexes what is stored.
                reindexed = fulltext.ensure_current(session)
                # So do newer near-duplicate signatures (NearDupParams.scheme), for lookups
                # to find stored articles.
                resigned = resign_stale(session, settings.neardup_params(), progress)
                recanonicalised = recanonicalise(session, progress)
                rehashed = rehash(session, progress)
                added, present = load_seeds(session, settings)
                missing = _index_seeds(session, settings)
                labels_stale = _labels_stale(session, settings)
                feeds_added = feeds_updated = 0

                def described(feed: Feed) -> tuple[object, ...]:
                    return (feed.name, feed.outlet, feed.lang, feed.reason, feed.enabled)

                before_init = {feed.url: described(feed) for feed in repo.list_feeds(session)}
                for entry in registry.feeds if registry else []:
                    feed, created = repo.upsert_feed(
                        session,
                        entry.url,
                        name=entry.name,
                        outlet=entry.outlet,
                        lang=entry.lang,
                        reason=entry.reason,
                        enabled=entry.enabled,
                    )
                    feeds_added += created
                    # Counted only when the file changed something (a name, a language...).
                    feeds_updated += not created and before_init.get(feed.url) != described(feed)
                session.commit()
    finally:
        engine.dispose()
    return InitReport(
        before,
        after,
        added,
        present,
        feeds_added,
        feeds_updated,
        missing,
        reindexed,
        resigned,
        labels_stale,
        recanonicalised,
        rehashed,
    )


def _labels_stale(session: Session, settings: Settings) -> int:
    """How many stored articles may carry labels of another classifier than the configured
    one (0 when their classifier is this one); a database with no articles yet takes this
    one's identity, as every article it stores will be labelled by it."""
    from pipeline.topic_heads import classifier_identity

    current = classifier_identity(settings.topics_file)
    articles = (
        session.scalar(select(func.count()).select_from(Article).where(Article.is_seed.is_(False))) or 0
    )
    if not articles:
        repo.record_labels_classifier(session, current)
        return 0
    return 0 if repo.labels_classifier(session) == current else articles


def _in_batches(
    session: Session,
    table: type[Article] | type[ArticleVersion],
    columns: tuple[Any, ...],
    where: tuple[Any, ...],
    checked: Callable[[int], None] | None,
) -> Iterator[Sequence[Any]]:
    """The rows ``(id, *columns)`` of ``table`` matching ``where``, in id order, a batch of
    :data:`RECANONICALISE_BATCH` at a time (a large database is never read at once);
    ``checked`` hears how many were read every ten batches."""
    last = read = 0
    while batch := session.execute(
        select(table.id, *columns)
        .where(table.id > last, *where)
        .order_by(table.id)
        .limit(RECANONICALISE_BATCH)
    ).all():
        yield batch
        last, read = batch[-1][0], read + len(batch)
        if checked and read % (10 * RECANONICALISE_BATCH) == 0:
            checked(read)


CANONICAL_URL_SCHEME_KEY = "canonical_url_scheme"


def recanonicalise(session: Session, progress: Callable[[str], None] | None = None) -> int:
    """Store every article's canonical URL in the current form, once per scheme
    (:data:`pipeline.dedup.CANONICAL_URL_SCHEME`); returns how many changed.

    A page is looked up by the form of its URL the current code makes: a form stored by an
    earlier one was never found, and the page was stored again on every import or poll.
    When two stored articles now have one form (one page stored twice under the old rules),
    the one that has it already, else the earlier, keeps it, and the other keeps none (it
    stays found by its text); a form longer than the column holds leaves the old one. The
    articles are read a batch at a time, and only those that change are kept in memory.
    """
    stored = session.get(PipelineState, CANONICAL_URL_SCHEME_KEY)
    if stored is not None and stored.value == dedup.CANONICAL_URL_SCHEME:
        return 0
    pending: list[tuple[int, str]] = []  # (article, its new form), in id order
    checked = "canonical URLs: {:,} articles checked against the current rules"
    for batch in _in_batches(
        session,
        Article,
        (Article.url, Article.canonical_url),
        (Article.url.is_not(None), Article.canonical_url.is_not(None)),
        progress and (lambda read: progress(checked.format(read))),
    ):
        for article_id, url, current in batch:
            try:
                form = dedup.canonical_url(url or "")
            except ValueError:
                continue
            if form != current and len(form) <= MAX_URL_LENGTH:  # (the column's size)
                pending.append((article_id, form))
    if pending:
        if progress:
            progress(f"canonical URLs: storing {len(pending):,} in the current form")
        changing = {article_id for article_id, _ in pending}
        forms = sorted({form for _, form in pending})
        taken: set[str] = set()  # (forms that rows keeping theirs already have)
        for start in range(0, len(forms), RESIGN_BATCH):
            chunk = forms[start : start + RESIGN_BATCH]
            held = session.execute(
                select(Article.id, Article.canonical_url).where(Article.canonical_url.in_(chunk))
            )
            taken.update(form for article_id, form in held if article_id not in changing and form is not None)
        final: list[dict[str, object]] = []
        for article_id, form in pending:
            final.append({"id": article_id, "canonical_url": None if form in taken else form})
            taken.add(form)
        # Cleared first: a row's new form may be another changed row's old one (unique column).
        session.execute(
            update(Article), [{"id": article_id, "canonical_url": None} for article_id in changing]
        )
        session.execute(update(Article), [row for row in final if row["canonical_url"] is not None])
    if stored is None:
        session.add(PipelineState(key=CANONICAL_URL_SCHEME_KEY, value=dedup.CANONICAL_URL_SCHEME))
    else:
        stored.value = dedup.CANONICAL_URL_SCHEME
    session.flush()
    return len(pending)


CONTENT_HASH_SCHEME_KEY = "content_hash_scheme"


def rehash(session: Session, progress: Callable[[str], None] | None = None) -> int:
    """Store the hash of every stored text (articles and their earlier versions) as the
    current :func:`pipeline.dedup.content_hash` makes it, once per scheme
    (:data:`pipeline.dedup.CONTENT_HASH_SCHEME`); returns how many changed.

    A text is looked up by the hash the current code makes: a hash stored by an earlier one
    was never found (a copy was stored again), and an article's own page, read again, looked
    changed and became a new version of itself. Texts stored twice under the old folding
    (a copy that differed only in a soft hyphen or an accent) stay two articles.
    """
    stored = session.get(PipelineState, CONTENT_HASH_SCHEME_KEY)
    if stored is not None and stored.value == dedup.CONTENT_HASH_SCHEME:
        return 0
    changed = 0
    checked = "text hashes: {:,} {} checked against the current folding"
    for table, what in ((Article, "articles"), (ArticleVersion, "earlier versions")):
        for batch in _in_batches(
            session,
            table,
            (table.text, table.content_hash),
            (),
            progress and (lambda read, what=what: progress(checked.format(read, what))),
        ):
            rows = [
                {"id": row_id, "content_hash": new}
                for row_id, text, current in batch
                if (new := dedup.content_hash(text or "")) != current
            ]
            if rows:
                session.execute(update(table), rows)
            changed += len(rows)
    if stored is None:
        session.add(PipelineState(key=CONTENT_HASH_SCHEME_KEY, value=dedup.CONTENT_HASH_SCHEME))
    else:
        stored.value = dedup.CONTENT_HASH_SCHEME
    session.flush()
    return changed


NEAR_DUPLICATE_SIGNATURES = "near-duplicate signatures"


def stale_derived_data(session: Session, params: NearDupParams) -> list[str]:
    """What ``init`` would redo before copies are found again: stored forms made by an
    earlier version of summitwatch (or, for signatures, other near-duplicate settings).
    (Not the search index: it finds no copies, and ``init`` rebuilds all of it, articles
    stored before then included.)

    A recorded form that differs counts (``init`` records each one): an empty database
    has nothing to redo, and one made by the schema migrations alone, with no record, is
    taken as current. A record missing where ``init`` made the others was never made:
    an ``init`` of a release from before that form had a scheme ran there (its forms are
    the earliest ones, which ``init`` redoes, as it does whatever is not recorded).
    """
    if session.scalar(select(Article.id).limit(1)) is None:
        return []
    schemes = (
        (CANONICAL_URL_SCHEME_KEY, dedup.CANONICAL_URL_SCHEME, "canonical URLs"),
        (CONTENT_HASH_SCHEME_KEY, dedup.CONTENT_HASH_SCHEME, "text hashes"),
    )
    stored = {key: session.get(PipelineState, key) for key, _, _ in schemes}
    initialised = any(record is not None for record in stored.values())
    stale = []
    for key, current, what in schemes:
        record = stored[key]
        if (record.value != current) if record is not None else initialised:
            stale.append(what)
    # (Two ranges, not "!=": the index on the scheme answers them without reading the rows.)
    other_scheme = select(ArticleSignature.article_id).where(
        (ArticleSignature.scheme < params.scheme) | (ArticleSignature.scheme > params.scheme)
    )
    if session.scalar(other_scheme.limit(1)) is not None:
        stale.append(NEAR_DUPLICATE_SIGNATURES)
    return stale


def require_current_derived_data(session: Session, params: NearDupParams) -> None:
    """Stop before ingesting into a database whose stored forms are out of date: a page,
    a text or a near-copy would be looked up in a form nothing stored has, and be stored
    again as new coverage. ``init`` brings them up to date (it is idempotent)."""
    stale = stale_derived_data(session, params)
    if not stale:
        return
    named = stale[0] if len(stale) == 1 else f"{', '.join(stale[:-1])} and {stale[-1]}"
    made_by = "an earlier version of summitwatch" + (
        " or other near-duplicate settings" if NEAR_DUPLICATE_SIGNATURES in stale else ""
    )
    raise DatabaseError(
        f"out of date in the database: {named} (made by {made_by}), so copies would not be found "
        "and would be counted again: run `summitwatch init` first (it brings them up to date and "
        "keeps everything stored)"
    )


RECANONICALISE_BATCH = 5000
RESIGN_BATCH = 500


def resign_stale(
    session: Session, params: NearDupParams, progress: Callable[[str], None] | None = None
) -> int:
    """Sign again, from their stored text, the articles whose near-duplicate signature was
    made under another scheme (other parameters, an older tokenizer): the lookup compares
    band keys of the current scheme only, so they would never be found. Committed a batch
    at a time, so an interrupted run resumes where it stopped; returns how many."""
    stale = list(
        session.scalars(
            select(ArticleSignature.article_id)
            .where(ArticleSignature.scheme != params.scheme)
            .order_by(ArticleSignature.article_id)
        )
    )
    for first in range(0, len(stale), RESIGN_BATCH):
        chunk = stale[first : first + RESIGN_BATCH]
        rows = session.execute(select(Article.id, Article.text, Article.lang).where(Article.id.in_(chunk)))
        for article_id, text, lang in rows:
            near = neardup.index_of(text or "", lang, params)
            if near.signature:
                signature = neardup.signature_to_bytes(near.signature)
                repo.store_signature(session, article_id, params.scheme, signature, near.keys)
            else:  # (too short under the new scheme: no signature, as for a new article)
                repo.drop_signature(session, article_id)
        session.commit()
        if progress is not None:
            done = min(first + RESIGN_BATCH, len(stale))
            progress(f"near-duplicate signatures: {done} of {len(stale)} re-signed")
    return len(stale)


def load_seeds(session: Session, settings: Settings) -> tuple[int, int]:
    """Store each seed document once (keyed by ``seed:<name>``); returns (added, present)."""
    added = present = 0
    context = IngestContext.from_settings(settings)
    for document in load_seed_documents():
        key = f"seed:{document.name}"
        if session.scalar(select(Article.id).where(Article.source_id == key, Article.is_seed)):
            present += 1
            continue
        candidate = build_candidate(
            settings,
            url=document.url,
            title=document.title,
            text=document.text,
            published_at=document.published_at,
            source_id=key,
        )
        store_candidate(session, candidate, via="seed", context=context, is_seed=True)
        added += 1
    return added, present


def _index_seeds(session: Session, settings: Settings) -> int:
    """Give seeds stored before vectors existed their vectors; count other articles without.

    Seeds are few and always translation candidates, so they are indexed here; a large
    archive is back-filled by ``summitwatch reindex``, with progress, when convenient.
    """
    context = IngestContext.from_settings(settings)
    model = context.sentence_encoder.name
    seeds = set(session.scalars(select(Article.id).where(Article.is_seed.is_(True))))
    missing = repo.article_ids_without_vectors(session, model, limit=10**9)
    index_articles(session, context, [article_id for article_id in missing if article_id in seeds])
    session.flush()
    return sum(1 for article_id in missing if article_id not in seeds)
