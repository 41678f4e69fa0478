"""Coverage series, change detection and the digest outbox.

This is the orchestration behind ``summitwatch coverage``, ``summitwatch digest`` and the
``summitwatch_digest`` DAG. The statistics are in :mod:`pipeline.coverage`, the message
layout in :mod:`pipeline.digest` and the Slack calls in :mod:`pipeline.slack`; this module
reads the database, stores what was detected, and keeps the outbox that makes delivery
exactly-once: a digest is written to ``digests`` (unique per digest key and destination)
in the same transaction that marks its changes as reported, and every part that reaches
Slack is committed before the next is sent. A digest that Slack refuses before any of it
reached the channel gives its changes back in the transaction that quarantines it, so
"reported" always means "in a digest that is pending, sent, or begun in the channel".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine, Integer, cast, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, load_only

from pipeline.classify import TopicRegistry, load_registry
from pipeline.coverage import (
    EPOCH,
    MAX_HISTORY_DAYS,
    Change,
    ChangeMemo,
    DetectorConfig,
    DigestSchedule,
    as_utc,
    bins_from_counts,
    detect_changes,
    detection_lead,
    floor_to_bin,
    is_reported_event,
    load_detector_config,
    reported_events,
    reported_matches,
    series_name,
    unreported_changes,
)
from pipeline.db import repo
from pipeline.db.engine import flocked, lock_file_path
from pipeline.db.repo import history_start, index_free
from pipeline.db.schema import (
    Article,
    ArticleTopic,
    ArticleVector,
    ArticleWatch,
    CoverageChange,
    DigestOutbox,
    Feed,
    PipelineState,
    utcnow,
)
from pipeline.digest import (
    Digest,
    DigestArticle,
    DigestChange,
    DigestStory,
    SeriesTotal,
    build_change_digest,
    build_summary_digest,
    latest_summary_period,
    listed_key,
    render_plain,
    summary_key,
)
from pipeline.encoder import document_from_bytes
from pipeline.errors import SummitwatchError
from pipeline.files import replace_whole
from pipeline.settings import Settings
from pipeline.slack import SlackDeliveryError, SlackTarget
from pipeline.stories import StoryItem, group_stories

log = logging.getLogger(__name__)
# Change detection looks back at most this far (the baseline is 28 days; years are plenty),
# so one article with an absurd date cannot make every run bin decades.
MAX_HISTORY = timedelta(days=MAX_HISTORY_DAYS)


class DeliveryFailed(SummitwatchError):
    """Some digests could not be delivered now; they stay pending for the next run."""


@dataclass(frozen=True)
class Series:
    """One coverage series: a topic or watch item and how many new articles appeared in
    each bin (by the bin's index on the epoch-aligned grid; empty bins are left out)."""

    name: str
    label: str
    counts: dict[int, int]


@dataclass
class CoverageReport:
    """Bins and detected changes of every series over the whole history, or its last
    :data:`MAX_HISTORY` when it is longer: the bins start at ``first_bin``."""

    history_start: datetime
    bins: dict[str, list[tuple[datetime, int]]]
    changes: dict[str, list[Change]]
    labels: dict[str, str]
    first_bin: datetime = EPOCH
    # Change key -> the digest that reported it (or the event it belongs to: a back-fill
    # can move a reported change's detected moment, :func:`reported_digest`).
    reported: dict[tuple[str, str, str], int] = field(default_factory=dict)


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Set when the pending digests only wait for a moment Slack asked for (a Retry-After
    # longer than a run waits): the first of them is not to be tried before then, and the
    # rest follow it in order.
    waiting_until: datetime | None = None


def load_reporting_config(settings: Settings) -> tuple[DetectorConfig, TopicRegistry]:
    """The detector configuration, checked against the topic registry it refers to."""
    registry = load_registry(settings.topics_file)
    config = load_detector_config(settings.config_dir / "digest.yaml")
    config.check_series(
        [series_name("topic", e.slug) for e in registry.topics]
        + [series_name("watch", e.slug) for e in registry.watch]
    )
    return config, registry


# Series and changes ---------------------------------------------------------------------


def _moment() -> Any:
    """An article's moment, in SQL (:func:`pipeline.db.repo.article_moment`): its
    publication time, else when it was first seen; the same in the SQL views and the
    article list."""
    return repo.article_moment()


def _bin_index(session: Session, moment: Any, bin_size: timedelta) -> Any:
    """The index of ``moment``'s bin on the epoch-aligned grid (:func:`floor_to_bin`), in SQL."""
    seconds = int(bin_size.total_seconds())
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        # Stored as UTC text. strftime('%s') would round the fraction of a second (a moment
        # at 05:59:59.9996 falls in the 06:00 bin): the fraction is cut off first, which is
        # exact, since bins are whole minutes.
        return cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer) // seconds
    return cast(func.floor(func.extract("epoch", moment) / seconds), Integer)


# The label table and slug column of each kind of series.
_LABELS: dict[Literal["topic", "watch"], tuple[type[ArticleTopic] | type[ArticleWatch], Any]] = {
    "topic": (ArticleTopic, ArticleTopic.topic),
    "watch": (ArticleWatch, ArticleWatch.item),
}
_ORIGINALS = (Article.duplicate_of_id.is_(None), Article.is_seed.is_(False))
OPENING_CHARS = 400  # of an untitled article's text read for its opening words


def _story_labels(table: type[ArticleTopic] | type[ArticleWatch]) -> Any:
    """Each story's labels, once: ``(article_id, slug)`` with the story's original as the
    article (:func:`pipeline.db.repo.labelled_stories`). A story counts once in a series if
    any of its articles carries the label: a translation classified in its own language
    can carry a label its original did not get, and the story must not count zero times."""
    return repo.labelled_stories(table).distinct().subquery("story_labels")


def load_series(
    session: Session, registry: TopicRegistry, *, bin_size: timedelta, until: datetime
) -> list[Series]:
    """Every topic and watch-item series: its new (non-duplicate, non-seed) articles before
    ``until``, counted per bin by the database (one row per series and bin, not one per
    article: the history holds millions)."""
    counts: dict[str, dict[int, int]] = {}
    moment = _moment()
    index = _bin_index(session, moment, bin_size)
    for kind, (table, _) in _LABELS.items():
        labels = _story_labels(table)
        rows = session.execute(
            select(labels.c.slug, index, func.count())
            .select_from(labels)
            .join(Article, Article.id == labels.c.article_id)
            .where(*_ORIGINALS, moment < until)
            .group_by(labels.c.slug, index)
        )
        for slug, bin_index, count in rows:  # (one row per series and bin)
            counts.setdefault(series_name(kind, slug), {})[int(bin_index)] = int(count)
    result = []
    for kind, entries in (("topic", registry.topics), ("watch", registry.watch)):
        for entry in entries:
            name = series_name(kind, entry.slug)
            result.append(Series(name, entry.label, counts.get(name, {})))
    return result


def series_counts(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """New articles of each series with a moment in [start, end), counted by the database."""
    moment = _moment()
    counts: dict[str, int] = {}
    for kind, (table, _) in _LABELS.items():
        labels = _story_labels(table)
        rows = session.execute(
            select(labels.c.slug, func.count())
            .select_from(labels)
            .join(Article, Article.id == labels.c.article_id)
            .where(*_ORIGINALS, moment >= start, moment < end)
            .group_by(labels.c.slug)
        )
        for slug, count in rows:
            counts[series_name(kind, slug)] = int(count)
    return counts


def compute_coverage(
    session: Session,
    settings: Settings,
    *,
    now: datetime | None = None,
    loaded: tuple[DetectorConfig, TopicRegistry] | None = None,
    memo: ChangeMemo | None = None,
) -> CoverageReport:
    """Bin every series over the whole history (at most :data:`MAX_HISTORY`, counted back
    from ``now``) and detect its changes (stores nothing).

    ``loaded`` is what :func:`load_reporting_config` returned, for callers that hold it
    already (the web app, the digest); otherwise the configuration is read here. ``memo``
    keeps the detected changes between calls (the web app's coverage page: detection over
    two years of history takes a second or more).
    """
    now = now or utcnow()
    config, registry = loaded or load_reporting_config(settings)
    start = history_start(session, now)
    # Bins after the last collection are no data (ingest down): not judged until it runs.
    judged_until = repo.collected_until(session, now)
    all_series = load_series(session, registry, bin_size=config.bin_size, until=now)
    first_bins = [EPOCH + min(series.counts) * config.bin_size for series in all_series if series.counts]
    natural = floor_to_bin(min([start, *first_bins]), config.bin_size)
    # Bounded, so one article with an absurd date cannot make every run bin decades.
    first_bin = max(natural, floor_to_bin(now - MAX_HISTORY, config.bin_size))
    report = CoverageReport(start, {}, {}, {}, first_bin)
    for series in all_series:
        params = config.params_for(series.name)
        bins = bins_from_counts(series.counts, start=first_bin, end=now, bin_size=config.bin_size)
        report.bins[series.name] = bins
        report.labels[series.name] = series.label
        # A history cut short is judged from a lead before the cut, whose own changes are
        # left out (:func:`pipeline.coverage.detection_lead`): the cut moves with every
        # run, and what it cut off must not turn a two-year-old bin into a new change.
        lead_from = max(natural, floor_to_bin(first_bin - detection_lead(params), config.bin_size))
        lead = bins_from_counts(series.counts, start=lead_from, end=first_bin, bin_size=config.bin_size)
        detect = memo.detect if memo is not None else detect_changes
        changes = detect(series.name, lead + bins, params, history_start=start, now=judged_until)
        report.changes[series.name] = [change for change in changes if change.at > first_bin]
    report.reported = reported_digest(session, report, config)
    return report


def reported_digest(
    session: Session, report: CoverageReport, config: DetectorConfig
) -> dict[tuple[str, str, str], int]:
    """The digest that reported each detected change of ``report`` (by its key), when one
    did: the same event as the digest decides it (:func:`pipeline.coverage.reported_matches`).
    A back-fill or an unlink can move a reported change's detected moment; the stored row
    keeps the moment it was reported at."""
    rows = session.execute(
        select(
            CoverageChange.series, CoverageChange.at, CoverageChange.direction, CoverageChange.digest_id
        ).where(CoverageChange.digest_id.is_not(None))
    ).all()
    sent = reported_events((series, at, direction) for series, at, direction, _ in rows)
    digest_of = {
        (series, direction, as_utc(at)): digest_id
        for series, at, direction, digest_id in rows
        if digest_id is not None
    }
    detected = [change for changes in report.changes.values() for change in changes]
    return {
        key: digest_of[(key[0], key[2], moment)]
        for key, moment in reported_matches(detected, sent, config).items()
    }


def coverage_window(now: datetime, days: int) -> tuple[date, date, datetime]:
    """The "last ``days`` days" that ``summitwatch coverage`` and ``/coverage`` show: whole
    UTC days, today (so far) the last of them. Returns the first and last day and the
    start of the first; a bin counts when it starts at or after that (bins divide a day,
    so none straddles it)."""
    last_day = now.astimezone(UTC).date()
    first_day = last_day - timedelta(days=days - 1)
    return first_day, last_day, datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)


def bins_since(
    bins: Sequence[tuple[datetime, int]], since: datetime, bin_size: timedelta
) -> list[tuple[datetime, int]]:
    """A series' bins from ``since`` on (:func:`coverage_window`'s start), every one of them:
    the bins before the history starts (or before the first counted, at most
    ``MAX_HISTORY_DAYS`` back) count zero, as the web UI's days do. Bins are aligned to
    multiples of ``bin_size`` from the epoch, which divides a day, so ``since`` starts one."""
    shown = [(start, count) for start, count in bins if start >= since]
    if not shown:
        return shown
    padding = []
    start = since
    while start < shown[0][0]:
        padding.append((start, 0))
        start += bin_size
    return padding + shown


def store_changes(session: Session, report: CoverageReport, config: DetectorConfig) -> list[CoverageChange]:
    """Upsert the detected changes on (series, at, direction); returns the stored rows.

    One event is one row. A detected change that is the same event as a reported one
    (:func:`pipeline.coverage.unreported_changes`: a back-fill moved its first detectable
    bin) is not stored again: that event's row is the reported one, with its digest. A row
    left unreported beside a reported one of the same event (as earlier versions stored
    it) is removed.

    Every run upserts the whole history's changes, so a series' stored rows are read in
    one query (a few, one per change it ever had), not one query per change.
    """
    by_series: dict[str, list[Change]] = {}
    for changes in report.changes.values():
        for change in changes:
            by_series.setdefault(change.series, []).append(change)
    rows = []
    for series, changes in by_series.items():
        existing = list(session.scalars(select(CoverageChange).where(CoverageChange.series == series)))
        sent = reported_events((old.series, old.at, old.direction) for old in existing if old.digest_id)
        matched = reported_matches(changes, sent, config)
        fresh = {(_aware(c.at), c.direction) for c in changes if c.key not in matched}
        stored: dict[tuple[datetime, str], CoverageChange] = {}
        for old in existing:
            key = (_aware(old.at), old.direction)
            if (
                old.digest_id is None
                and key not in fresh
                and is_reported_event(old.series, old.at, old.direction, sent, config)
            ):
                session.delete(old)
            else:
                stored[key] = old
        for change in changes:
            key = (_aware(change.at), change.direction)
            row = stored.get(key)
            if row is None:
                if change.key in matched:
                    continue  # reported already, as the row of that event
                row = CoverageChange(series=change.series, at=change.at, direction=change.direction)
                session.add(row)
                stored[key] = row
            row.count, row.baseline, row.score = change.count, change.baseline, change.score
            row.explanation, row.detail = change.explanation, change.to_json()
            rows.append(row)
    session.flush()
    return rows


# Building digests -----------------------------------------------------------------------


def destination_name(target: SlackTarget | None) -> str:
    """Where digests go, as recorded in the outbox."""
    if target is None:
        return "file"
    if target.kind == "web_api":
        return f"slack:{target.channel}"
    return "slack-webhook"


def prepare_digests(
    session: Session,
    settings: Settings,
    destination: str,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[Digest]:
    """Detect changes and put the digests they call for in the outbox.

    A change digest for the changes not reported yet, and the scheduled summary when its
    period has ended and it was not sent. With ``dry_run`` nothing is written: the
    digests are only built and returned. Otherwise one run prepares at a time
    (:func:`preparation_lock`): a second waits, then finds the changes reported.
    """
    if dry_run:
        return _prepare_digests(session, settings, destination, now=now, dry_run=True)
    with preparation_lock(session):
        return _prepare_digests(session, settings, destination, now=now, dry_run=False)


# The PostgreSQL advisory lock a preparation of digests holds (any number no other lock uses).
PREPARE_LOCK_KEY = 7_245_331_021


@contextmanager
def preparation_lock(session: Session) -> Iterator[None]:
    """One preparation of digests at a time per database, the others waiting for it.

    Two at once (two ``summitwatch digest`` runs, the command beside the Airflow detect
    task) would both find the same changes unreported and store them: the second failed
    on the unique key of ``coverage_changes``, or reported a change in a second digest.
    Unlike the delivery lock it is waited for: the run that waited then finds the changes
    reported and builds nothing. On PostgreSQL an advisory lock held by the session's
    transaction (the commit that stores the digests releases it); on SQLite an exclusive
    lock on a file beside the database, released after that commit.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PREPARE_LOCK_KEY})
        yield
        return
    path = lock_file_path(engine, "prepare-lock")
    if path is None:
        yield
        return
    with open(path, "a+b") as handle, flocked(handle):
        yield


def _prepare_digests(
    session: Session, settings: Settings, destination: str, *, now: datetime | None, dry_run: bool
) -> list[Digest]:
    now = now or utcnow()
    loaded = load_reporting_config(settings)
    config = loaded[0]
    report = compute_coverage(session, settings, now=now, loaded=loaded)
    digests: list[Digest] = []
    rows = store_changes(session, report, config) if not dry_run else []
    reported = session.execute(
        select(CoverageChange.series, CoverageChange.at, CoverageChange.direction).where(
            CoverageChange.digest_id.is_not(None)
        )
    ).all()
    detected = [change for changes in report.changes.values() for change in changes]
    fresh = unreported_changes(detected, [(r[0], r[1], r[2]) for r in reported], config)
    if fresh:
        items = [_digest_change(session, report, config, change) for change in fresh]
        digest = build_change_digest(
            items,
            web_base_url=settings.web_base_url,
            generated_at=now,
            labels=report.labels,
            stories=digest_stories(session, settings, items),
        )
        listed = {
            listed_key(item.change.series, item.change.at, item.change.direction): [
                int(article.article_id) for article in item.articles
            ]
            for item in items
        }
        digest = replace(digest, listed=listed)
        if not dry_run:
            digest = _unquarantined_key(session, digest, destination)
        digests.append(digest)
        if not dry_run:
            outbox = _enqueue(session, digest, destination)
            keys = {change.key for change in fresh}
            for row in rows:
                if (row.series, row.at.isoformat(), row.direction) in keys and row.digest_id is None:
                    row.digest_id = outbox.id
    state = session.get(PipelineState, PREPARED_AT)
    prepared_before = as_utc(datetime.fromisoformat(state.value)) if state is not None else None
    if config.digest.summary_enabled:
        for start, end in _summary_periods_due(session, config.digest, destination, now, prepared_before):
            if end <= report.history_start:
                continue
            summary = _summary_digest(session, report, settings, loaded[1], start, end)
            digests.append(summary)
            if not dry_run:
                _enqueue(session, summary, destination)
    if not dry_run:
        # When digests were last prepared: a period that ended before it was passed over on
        # purpose (summaries turned off), not missed.
        latest = max(as_utc(now), prepared_before) if prepared_before is not None else as_utc(now)
        if state is None:
            session.add(PipelineState(key=PREPARED_AT, value=latest.isoformat()))
        else:
            state.value = latest.isoformat()
        session.commit()
    return digests


# The pipeline_state key of the moment digests were last prepared.
PREPARED_AT = "digests_prepared_at"


def _summary_periods_due(
    session: Session,
    schedule: DigestSchedule,
    destination: str,
    now: datetime,
    prepared_before: datetime | None = None,
) -> list[tuple[datetime, datetime]]:
    """The ended summary periods to build now, oldest first: the latest, and those missed
    since the last summary built for this kind of destination (at most
    ``summary_catch_up`` of them; the first summary a database builds is the latest's).
    A period that ended before the last preparation of digests (``prepared_before``) was
    not missed: summaries were off then, and turning them on sends no backlog.

    Built once for a kind of destination: a channel spelled another way, or a webhook
    replaced by a token, must not receive the same summary again."""
    built = set(
        session.scalars(
            select(DigestOutbox.digest_key).where(
                DigestOutbox.digest_key.like("summary:%"), _same_kind(destination)
            )
        ).all()
    )
    last = max((end for end in map(_summary_end, built) if end is not None), default=None)
    every = schedule.summary_every
    start, end = latest_summary_period(now, every=every, at=schedule.summary_at)
    due: list[tuple[datetime, datetime]] = []
    while len(due) <= schedule.summary_catch_up:
        if summary_key(start, end) not in built and (last is None or end > last):
            due.append((start, end))
        if last is None or start <= last or (prepared_before is not None and start <= prepared_before):
            break
        start, end = start - every, start
    return due[::-1]


def _summary_end(key: str) -> datetime | None:
    try:
        return datetime.fromisoformat(key.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def _enqueue(session: Session, digest: Digest, destination: str) -> DigestOutbox:
    existing = session.scalar(
        select(DigestOutbox).where(
            DigestOutbox.digest_key == digest.digest_key, DigestOutbox.destination == destination
        )
    )
    if existing is not None:
        return existing
    row = DigestOutbox(
        digest_key=digest.digest_key,
        destination=destination,
        kind=digest.kind,
        payload=digest.to_json(),
        status="pending",
        parts_total=len(digest.messages),
        parts_sent=0,
        attempts=0,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # A concurrent run queued the same digest first.
        winner = session.scalar(
            select(DigestOutbox).where(
                DigestOutbox.digest_key == digest.digest_key, DigestOutbox.destination == destination
            )
        )
        assert winner is not None
        return winner
    return row


def _unquarantined_key(session: Session, digest: Digest, destination: str) -> Digest:
    """``digest`` under a key that no quarantined digest for ``destination`` holds.

    Slack refused a digest of these very changes before any of it reached the channel,
    and gave them back (:func:`_give_back_changes`): the digest built from them now is a
    new one, keyed ``<key>~2`` (then ``~3``, ...), not the quarantined row found again.
    """
    key, number = digest.digest_key, 1
    while (
        session.scalar(
            select(DigestOutbox.status).where(
                DigestOutbox.digest_key == key, DigestOutbox.destination == destination
            )
        )
        == "failed"
    ):
        number += 1
        key = f"{digest.digest_key}~{number}"
    return digest if key == digest.digest_key else replace(digest, digest_key=key)


def _digest_change(
    session: Session, report: CoverageReport, config: DetectorConfig, change: Change
) -> DigestChange:
    bins = report.bins.get(change.series, [])
    trend_start = change.at - timedelta(days=config.digest.trend_days)
    trend = [(start, count) for start, count in bins if trend_start <= start < change.at]
    window_start = change.at - change.window
    articles = top_articles(
        session, change.series, since=window_start, until=change.at, limit=config.digest.articles_per_change
    )
    return DigestChange(change=change, trend_bins=trend, articles=articles)


def digest_stories(session: Session, settings: Settings, items: Sequence[DigestChange]) -> list[DigestStory]:
    """The articles of ``items`` grouped into stories, each article once.

    An article listed under several changes (one event moving two series) belongs to one
    story, which names every series it moved.
    """
    articles: dict[int, DigestArticle] = {}
    series_of: dict[int, list[str]] = {}
    changes_of: dict[int, list[DigestChange]] = {}
    for item in items:
        for article in item.articles:
            key = int(article.article_id)
            articles.setdefault(key, article)
            changes_of.setdefault(key, []).append(item)
            if item.change.series not in series_of.setdefault(key, []):
                series_of[key].append(item.change.series)
    if not articles:
        return []
    vectors = {
        article_id: document_from_bytes(document)
        for article_id, document in session.execute(
            select(ArticleVector.article_id, ArticleVector.document).where(
                ArticleVector.article_id.in_(list(articles))
            )
        )
    }
    moments: dict[int, datetime] = {}
    for article_id, moment in session.execute(
        select(Article.id, _moment()).where(Article.id.in_(list(articles)))
    ):
        moments[article_id] = moment
    grouped = group_stories(
        [StoryItem(i, vectors.get(i), _aware(moments[i]), articles[i].lang) for i in articles],
        similarity=settings.stories.similarity,
        window_hours=settings.stories.window_hours,
        cross_language_similarity=settings.stories.cross_language_similarity,
    )
    stories = []
    for ids in grouped:
        series: list[str] = []
        moved: list[DigestChange] = []
        for article_id in ids:
            series += [name for name in series_of[article_id] if name not in series]
            moved += [item for item in changes_of[article_id] if all(item is not m for m in moved)]
        # The most-copied article leads its story; then by time.
        lead_first = sorted(
            ids, key=lambda i: (-(articles[i].copies + len(articles[i].also_in)), ids.index(i))
        )
        stories.append(DigestStory([articles[i] for i in lead_first], series, [m.change for m in moved]))
    return stories


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def top_articles(
    session: Session,
    series: str | None,
    *,
    since: datetime,
    until: datetime,
    limit: int,
    ids: Sequence[int] | None = None,
) -> list[DigestArticle]:
    """The most-copied new articles of ``series`` (or of any series) in [since, until), with evidence.

    With ``ids``: those articles, in that order (a sent digest's list, as it was sent; an
    article since folded into another story is still shown), with ``series``' evidence.

    Ranked and cut in the database (most copies first, then the latest, then the lowest
    id): the window's originals are joined with the series' labels there, never read into
    memory or passed back as a list of ids (a topic can hold more labelled articles than a
    query takes parameters).
    """
    plain = index_free(session)
    copy = aliased(Article)
    copy_count = (
        select(func.count()).select_from(copy).where(copy.duplicate_of_id == Article.id).scalar_subquery()
    )
    moment = _moment()
    shown = select(Article, copy_count, func.substr(Article.text, 1, OPENING_CHARS)).options(
        load_only(
            Article.id,
            Article.title,
            Article.url,
            Article.lang,
            Article.published_at,
            Article.first_seen_at,
            Article.feed_id,
        )
    )
    query = (
        shown.where(
            # (Not from the indexes of these two: without statistics SQLite would walk every
            # original, or every non-seed, instead of the window.)
            plain(Article.duplicate_of_id).is_(None),
            plain(Article.is_seed).is_(False),
            # coalesce(published_at, first_seen_at) in the window, in a form each column's
            # index can serve
            (Article.published_at >= since) & (Article.published_at < until)
            | (
                Article.published_at.is_(None)
                & (Article.first_seen_at >= since)
                & (Article.first_seen_at < until)
            ),
        )
        .order_by(copy_count.desc(), moment.desc(), Article.id)
        .limit(limit)
    )
    labels: tuple[type[ArticleTopic] | type[ArticleWatch], Any, str] | None = None
    if series:
        kind, slug = series.split(":", 1)
        label_table, column = _LABELS["topic" if kind == "topic" else "watch"]
        labels = (label_table, column, slug)
        # The stories with the label, whichever of their articles carries it.
        query = query.where(repo.story_has_label(label_table, slug))
    else:
        # A story is relevant when any of its articles is; listed when it is in a series
        # too, as the summary counts its articles (an article about a Russian and a
        # Chinese climber on Everest may pass the relevance test and get no topic).
        relevant_copy = aliased(Article)
        query = query.where(
            Article.relevant.is_(True)
            | Article.id.in_(
                select(relevant_copy.duplicate_of_id).where(
                    relevant_copy.duplicate_of_id.is_not(None), relevant_copy.relevant.is_(True)
                )
            ),
            Article.id.in_(_labelled_stories()),
        )
    if ids is not None:
        query = shown.where(Article.id.in_(list(ids)))
    rows = list(session.execute(query).all())
    if ids is not None:
        order = {article_id: index for index, article_id in enumerate(ids)}
        rows.sort(key=lambda row: order[row[0].id])
    ranked = [article for article, _, _ in rows]
    copies = {article.id: count for article, count, _ in rows}
    # An article without a headline is shown by its opening words, as `articles` shows it.
    from pipeline.browse import opening_words, visible_title

    openings = {article.id: opening for article, _, opening in rows}
    ids = list(copies)
    evidence_of: dict[int, list[str]] = {}
    if labels is not None and ids:
        label_table, column, slug = labels
        # The original's own evidence, else that of the first of its copies with the label.
        member = aliased(Article)
        story = func.coalesce(member.duplicate_of_id, member.id)
        for article_id, evidence in session.execute(
            select(story, label_table.evidence)
            .join(member, member.id == label_table.article_id)
            .where(story.in_(ids), column == slug)
            .order_by(member.duplicate_of_id.is_not(None), member.id)
        ):
            evidence_of.setdefault(article_id, list(evidence))
    translations: dict[int, list[tuple[str, str | None]]] = {}
    if ids:
        for root, lang, url in session.execute(
            select(Article.duplicate_of_id, Article.lang, Article.url)
            .where(Article.duplicate_of_id.in_(ids), Article.copy_kind == "translation")
            .order_by(Article.id)
        ):
            if root is not None:
                translations.setdefault(root, []).append((lang, url))
    feeds = {
        f.id: f
        for f in session.scalars(select(Feed).where(Feed.id.in_({a.feed_id for a in ranked if a.feed_id})))
    }
    result = []
    for article in ranked:
        evidence = evidence_of.get(article.id) or []
        result.append(
            DigestArticle(
                article_id=article.id,
                title=visible_title(article.title) or opening_words(openings.get(article.id) or ""),
                url=article.url,
                source=_source(article, feeds),
                lang=article.lang,
                evidence=evidence[0] if evidence else None,
                # Translations into other languages are shown as "also in"; every other copy
                # (a same-language text linked through a translation included) is counted.
                copies=copies[article.id]
                - sum(1 for lang, _ in translations.get(article.id, []) if lang != article.lang),
                published_at=article.published_at,
                also_in=_one_per_language(translations.get(article.id, []), article.lang),
            )
        )
    return result


def _one_per_language(
    translations: Sequence[tuple[str, str | None]], own_lang: str
) -> list[tuple[str, str | None]]:
    """The first translation in each other language, by language code."""
    chosen: dict[str, str | None] = {}
    for lang, url in translations:
        if lang != own_lang and lang not in chosen:
            chosen[lang] = url
    return sorted(chosen.items())


def _source(article: Article, feeds: dict[int, Feed]) -> str | None:
    feed = feeds.get(article.feed_id) if article.feed_id else None
    if feed is not None and (feed.outlet or feed.name):
        return (feed.outlet or feed.name or "").removeprefix("demo: ")
    return urlsplit(article.url).hostname if article.url else None


def _summary_digest(
    session: Session,
    report: CoverageReport,
    settings: Settings,
    registry: TopicRegistry,
    start: datetime,
    end: datetime,
) -> Digest:
    span = end - start
    # Counted by each article's own time: the period (to 07:00, say) need not start or end
    # on a bin edge, and the top articles below are chosen by the same times.
    current, before = series_counts(session, start, end), series_counts(session, start - span, start)
    totals = []
    for name, bins in report.bins.items():
        count, previous = current.get(name, 0), before.get(name, 0)
        # The trend's bins end by the period's end: a bin across it would draw articles
        # from after the period (a 6-hour bin from 06:00 holds the morning after 07:00).
        size = bins[1][0] - bins[0][0] if len(bins) > 1 else timedelta(0)
        trend = [(s, c) for s, c in bins if end - timedelta(days=14) <= s and s + size <= end]
        totals.append(SeriesTotal(name, count, previous, trend))
    changes = [c for changes in report.changes.values() for c in changes if start <= c.at < end]
    articles = top_articles(session, None, since=start, until=end, limit=8)
    return build_summary_digest(
        totals,
        articles,
        period_start=start,
        period_end=end,
        web_base_url=settings.web_base_url,
        changes=changes,
        labels=report.labels,
        article_count=_new_article_count(session, start, end),
    )


def _new_article_count(session: Session, start: datetime, end: datetime) -> int:
    """New (non-copy, non-seed) articles of the period in at least one series, each once."""
    moment = _moment()
    return int(
        session.scalar(
            select(func.count())
            .select_from(Article)
            .where(*_ORIGINALS, Article.id.in_(_labelled_stories()), moment >= start, moment < end)
        )
        or 0
    )


def _labelled_stories() -> Any:
    """The originals of the stories in at least one series (a topic or a watch item)."""
    return select(_story_labels(ArticleTopic).c.article_id).union(
        select(_story_labels(ArticleWatch).c.article_id)
    )


# Delivering -------------------------------------------------------------------------------


def deliver_pending(
    session: Session,
    target: SlackTarget | None,
    destination: str,
    *,
    digest_dir: Path,
    out: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Send every pending digest for ``destination``, resuming where a failed try stopped.

    Without a Slack target the digest is written to ``digest_dir`` (and to ``out``).
    Only Slack refusing the digest's own content (``refused_content``: too long, invalid
    blocks, ...) quarantines it, as ``failed``, and so does a webhook part that runs kept
    posting without its confirmation (``given_up``: it may be in the channel, many times);
    its changes go back to the next digest when none of it reached the channel. Anything
    else (a bad token or channel, a failed ``auth.test``, an answer that is not Slack's,
    an unknown error code, rate limits, outages) is no verdict on the digest: it stays
    pending, and so do the ones after it.
    """
    report = DeliveryReport()
    with delivery_lock(session) as mine:
        if not mine:
            report.errors.append("another delivery is running: its digests are left to it")
            return report
        _deliver(session, target, destination, digest_dir, out, report)
    return report


# The PostgreSQL advisory lock one delivery pass holds (any number, not the writers' one).
DELIVERY_LOCK_KEY = 7_245_331_020


@contextmanager
def delivery_lock(session: Session) -> Iterator[bool]:
    """Whether this process may deliver now: one delivery pass at a time per database.

    Two passes at once (the command beside the Airflow task, a task's retry overlapping a
    zombie attempt) would each read the same pending parts and post them. On PostgreSQL an
    advisory lock on a connection of its own (commits do not release it); on SQLite an
    exclusive lock on a file beside the database. Never waited for: a pass that finds it
    held leaves the digests to the one that holds it.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name == "sqlite":
        path = lock_file_path(engine, "delivery-lock")
        if path is None:
            yield True
            return
        with open(path, "a+b") as handle, flocked(handle, wait=False) as got:
            yield got
        return
    with engine.connect() as connection:
        held = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": DELIVERY_LOCK_KEY}
        ).scalar()
        connection.commit()
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": DELIVERY_LOCK_KEY})
            connection.commit()


def _deliver(
    session: Session,
    target: SlackTarget | None,
    destination: str,
    digest_dir: Path,
    out: Callable[[str], None] | None,
    report: DeliveryReport,
) -> None:
    _readdress_stranded(session, target, destination, report)
    pending = session.scalars(
        select(DigestOutbox)
        .where(DigestOutbox.destination == destination, DigestOutbox.status == "pending")
        .order_by(DigestOutbox.id)
    ).all()
    for position, row in enumerate(pending):
        if row.not_before is not None and as_utc(row.not_before) > utcnow():
            # Slack asked for a wait longer than a run allows: not before then, nor the
            # digests after it (they arrive in order).
            wait = f"Slack asked not to be tried before {as_utc(row.not_before):%Y-%m-%d %H:%M:%S} UTC"
            report.errors.append(f"digest {row.id} waits: {wait} (rate limited)")
            report.pending += [later.id for later in pending[position:]]
            report.waiting_until = as_utc(row.not_before)
            break
        digest = Digest.from_json(row.payload)
        row.attempts += 1
        session.commit()
        try:
            if target is None:
                try:
                    _write_digest_file(digest, row, digest_dir, out)
                except OSError as exc:
                    # The folder is not writable or is a file: an operator fixes that, and the
                    # digest waits, pending, like one Slack could not take for now.
                    raise SlackDeliveryError(
                        f"cannot write the digest to {digest_dir}: {exc.strerror or exc}", permanent=False
                    ) from exc
                row.parts_sent = row.parts_total
            else:
                _send_to_slack(session, target, row, digest)
        except SlackDeliveryError as exc:
            row.last_error = str(exc)
            row.not_before = utcnow() + timedelta(seconds=exc.retry_after) if exc.retry_after else None
            if not exc.in_doubt:
                # The part is certainly not in the channel.
                row.unconfirmed_since, row.unconfirmed_runs = None, 0
            elif exc.posted_in_doubt:
                # This run's post may have put it there (an answer lost): one run more that
                # posted it unconfirmed. (A run that certainly posted nothing, rate-limited
                # or refused a connection, does not count.)
                row.unconfirmed_runs = (row.unconfirmed_runs or 0) + 1
            if exc.refused_content or exc.given_up:
                row.status = "failed"
                given_back = _give_back_changes(session, row)
                if given_back:
                    row.last_error += f"; its {_changes(given_back)} go to the next digest"
                report.failed.append(row.id)
            else:
                report.pending.append(row.id)
            report.errors.append(f"digest {row.id}: {row.last_error}")
            session.commit()
            log.warning("digest %s not delivered: %s", row.id, row.last_error)
            if row.status == "pending":
                if row.not_before is not None:
                    report.waiting_until = as_utc(row.not_before)  # (only rate limited)
                # Slack cannot take it now (rate limited, down, misconfigured): the digests
                # after it wait too, so that they arrive in order and the wait it asked for
                # is kept.
                for later in pending[position + 1 :]:
                    later.last_error = f"waits for digest {row.id}: {exc}"
                    report.pending.append(later.id)
                session.commit()
                break
            continue
        row.status, row.sent_at, row.last_error, row.not_before = "sent", utcnow(), None, None
        session.commit()
        report.sent.append(row.id)


def _give_back_changes(session: Session, row: DigestOutbox) -> int:
    """Unmark the changes of quarantined digest ``row`` when none of it is, or may be, in
    the channel: the next digest reports them (under a new key, :func:`_unquarantined_key`).
    A digest begun in the channel keeps them: its first part named them there. So does a
    digest that was itself rebuilt from given-back changes (``<key>~N``): Slack refused
    the same changes twice, and giving them back again would rebuild and refuse them at
    every run, taking every later change down with them. Returns how many went back."""
    if row.parts_sent or row.unconfirmed_since is not None or "~" in (row.digest_key or ""):
        return 0
    result = session.execute(
        update(CoverageChange).where(CoverageChange.digest_id == row.id).values(digest_id=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _changes(count: int) -> str:
    return f"{count} change" if count == 1 else f"{count} changes"


def pending_digests(session: Session, destination: str) -> list[tuple[Digest, int]]:
    """The digests waiting for ``destination`` (those a stranded Slack row would join
    included), oldest first, each with how many of its parts are delivered already."""
    rows = session.scalars(
        select(DigestOutbox)
        .where(_same_kind(destination), DigestOutbox.status == "pending")
        .order_by(DigestOutbox.id)
    ).all()
    return [(Digest.from_json(row.payload), row.parts_sent or 0) for row in rows]


def _is_slack(destination: str) -> bool:
    return destination.startswith("slack")


def _same_kind(destination: str) -> Any:
    """Outbox rows addressed to a destination of ``destination``'s kind: every Slack channel
    and webhook is one channel of news, a file folder is its own."""
    if _is_slack(destination):
        return DigestOutbox.destination.like("slack%")
    return DigestOutbox.destination == destination


def _readdress_stranded(
    session: Session, target: SlackTarget | None, destination: str, report: DeliveryReport
) -> None:
    """Pending digests queued for another Slack destination (a channel named wrongly then
    corrected, spelled "#name" then by id, a webhook replaced by a bot token): those not
    begun go to ``destination`` now, and so do those begun in the same channel spelled
    another way; one begun in another channel is reported (its first parts are there).
    A part whose answer was lost there is looked for first (:func:`_settle_stranded`)."""
    if not _is_slack(destination):
        return
    stranded = session.scalars(
        select(DigestOutbox)
        .where(
            DigestOutbox.status == "pending",
            DigestOutbox.destination != destination,
            _same_kind(destination),
        )
        .order_by(DigestOutbox.id)
    ).all()
    for row in stranded:
        twin = session.scalar(
            select(DigestOutbox.id).where(
                DigestOutbox.digest_key == row.digest_key, DigestOutbox.destination == destination
            )
        )
        begun = bool(row.parts_sent) or row.unconfirmed_since is not None
        problem = _settle_stranded(target, row) if begun else None
        if problem is None and twin is not None and (row.parts_sent or row.unconfirmed_since is not None):
            problem = (
                f"it is half delivered to {row.destination}, and digest {twin} holds it for {destination}"
            )
        if problem is not None:
            report.errors.append(f"digest {row.id}: {problem}")
            report.pending.append(row.id)
            continue
        if twin is not None:
            row.status, row.last_error = "failed", f"superseded by digest {twin} for {destination}"
            # The twin is the same digest: it reports these changes.
            session.execute(
                update(CoverageChange).where(CoverageChange.digest_id == row.id).values(digest_id=twin)
            )
        else:
            log.info("digest %s: queued for %s, now sent to %s", row.id, row.destination, destination)
            row.destination = destination
    session.commit()


def _settle_stranded(target: SlackTarget | None, row: DigestOutbox) -> str | None:
    """Whether digest ``row``, begun at another Slack destination, can move to ``target``'s:
    ``None`` when it can (with what the channel showed recorded in it), else why not.

    It can when the other destination is the same channel spelled another way ("#name"
    and its ID), and when it turns out not begun at all: a part whose answer was lost
    there (``unconfirmed_since``) is looked for in that channel, under the destination it
    was posted as, and counts as sent if found, as never posted if not. A digest with a
    part in another channel stays there, for the operator to finish.
    """
    where = f"{row.destination} ({row.parts_sent} of {row.parts_total} parts)"
    finish = "set that destination again to finish it"
    old = row.destination.removeprefix("slack:")
    if target is None or target.kind != "web_api" or old == row.destination:
        return f"it is half delivered to {where}: {finish}"
    try:
        same = target.same_channel(old)
    except SlackDeliveryError as exc:
        return f"it is half delivered to {where}, which may be another channel ({exc}): {finish}"
    if row.unconfirmed_since is not None:
        # (Its text tells the part where the server keeps no message metadata.)
        parts = Digest.from_json(row.payload).messages
        try:
            found = target.find_part(
                old,
                row.digest_key,
                row.parts_sent,
                since=row.unconfirmed_since,
                destination=row.destination,
                thread_ts=row.thread_ts,
                text=parts[row.parts_sent].text if row.parts_sent < len(parts) else None,
            )
        except SlackDeliveryError as exc:
            if same and not exc.permanent:
                part = row.parts_sent + 1
                return f"part {part} may be in {row.destination} and cannot be looked for now: {exc}"
            if not same:
                return (
                    f"part {row.parts_sent + 1} may be in {row.destination} (its answer was lost) and it "
                    f"cannot be looked for there ({exc}): {finish}"
                )
            # The same channel, unreadable: delivery posts it again there, at-least-once.
            return None
        if found:
            log.info("digest %s: part %d found in %s", row.id, row.parts_sent + 1, row.destination)
            row.thread_ts = row.thread_ts or found
            row.parts_sent += 1
        row.unconfirmed_since, row.unconfirmed_runs = None, 0
    if same or not row.parts_sent:
        return None
    return (
        f"it is half delivered to {row.destination} ({row.parts_sent} of {row.parts_total} parts): {finish}"
    )


def _send_to_slack(session: Session, target: SlackTarget, row: DigestOutbox, digest: Digest) -> None:
    def on_posting(index: int, at: datetime) -> None:
        # Committed before the post: if the answer never arrives (or this process dies),
        # the next attempt knows to look for the part from this time on.
        if row.unconfirmed_since is None:
            row.unconfirmed_since = at
            session.commit()

    def on_sent(index: int, ts: str) -> None:
        # Committed at once: a crash after this point resumes after this part.
        row.parts_sent = index + 1
        if index == 0 and ts:
            row.thread_ts = ts
        row.unconfirmed_since, row.unconfirmed_runs = None, 0
        session.commit()

    target.post(
        digest.messages,
        already_sent=row.parts_sent,
        thread_ts=row.thread_ts,
        on_sent=on_sent,
        on_posting=on_posting,
        digest_key=row.digest_key,
        destination=row.destination,
        unconfirmed_since=row.unconfirmed_since,
        unconfirmed_runs=row.unconfirmed_runs or 0,
    )


def _write_digest_file(
    digest: Digest, row: DigestOutbox, digest_dir: Path, out: Callable[[str], None] | None
) -> None:
    digest_dir.mkdir(parents=True, exist_ok=True)
    text = render_plain(digest)
    # Named by the outbox row (the order they were made) and by what they say: two
    # databases writing to one folder both number from 1, and must not overwrite each
    # other's digests. Written whole or not at all (a crash leaves no half a digest).
    path = digest_dir / f"digest-{row.id:06d}-{digest.content_hash[:12]}-{digest.kind}.txt"
    replace_whole(path, lambda handle: handle.write((text + "\n").encode("utf-8")))
    if out:
        out(text)
        out(f"(written to {path})")


def outbox_summary(session: Session) -> dict[str, Any]:
    """Digest counts by status, for reports and tests."""
    rows = session.execute(select(DigestOutbox.status, func.count()).group_by(DigestOutbox.status)).all()
    return {status: int(count) for status, count in rows}


def pending_ids(session: Session, destination: str) -> Sequence[int]:
    return session.scalars(
        select(DigestOutbox.id).where(
            DigestOutbox.destination == destination, DigestOutbox.status == "pending"
        )
    ).all()
