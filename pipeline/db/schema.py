"""The ORM schema. Alembic migrations in ``migrations/`` create and upgrade it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from pipeline.redaction import redact_optional, redact_text

# Control characters no stored text holds (tab, newlines and form feed excepted): PostgreSQL
# refuses NUL in text, and the others are never meant as content.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# One naming convention from the first migration on, so constraints can be altered by name
# on both SQLite (batch mode) and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


#: The largest row id: ids are INTEGER columns, 32-bit on PostgreSQL. A larger number
#: names no row on either database (PostgreSQL refused it as "integer out of range").
MAX_ROW_ID = 2**31 - 1


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Feed(Base):
    """A polled feed, with its conditional-GET validators and failure state."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    # What is shown (feeds list, web UI, SQL views): the URL with credentials redacted.
    # ``url`` stays real: it is what is polled and exported.
    display_url: Mapped[str | None] = mapped_column(Text)
    # Where the feed moved for good (a 301 or 308 answered its poll): polled there from
    # then on. ``url`` stays the feed's identity (config/feeds.yaml, OPML, look-ups).
    moved_url: Mapped[str | None] = mapped_column(String(2048))
    display_moved_url: Mapped[str | None] = mapped_column(Text)  # ``moved_url`` redacted
    name: Mapped[str | None] = mapped_column(String(300))
    outlet: Mapped[str | None] = mapped_column(String(300))
    lang: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    etag: Mapped[str | None] = mapped_column(String(1024))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    body_hash: Mapped[str | None] = mapped_column(String(64))
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # when the last poll began
    # When the last poll finished: every item handled, or the failure recorded. A poll cut
    # short (the process stopped, the database lost) leaves it as it was, so that a retried
    # task polls that feed again (``repo.not_polled_since``).
    poll_finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_poll_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # When the feed answered 410 Gone: not polled from then on, until `feeds reset`.
    gone_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @validates("url")
    def _keep_display_url(self, key: str, value: str) -> str:
        self.display_url = redact_optional(value)
        return value

    @validates("moved_url")
    def _keep_display_moved_url(self, key: str, value: str | None) -> str | None:
        self.display_moved_url = redact_optional(value)
        return value

    @property
    def poll_url(self) -> str:
        """The address the feed is polled at: where it moved for good, else its own."""
        return self.moved_url or self.url

    @validates("last_error")
    def _redact_error(self, key: str, value: str | None) -> str | None:
        return None if value is None else redact_text(value)


class Article(Base):
    """One stored article (or seed document); duplicates point at their earlier copy."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str | None] = mapped_column(String(2048))
    display_url: Mapped[str | None] = mapped_column(Text)  # ``url`` redacted, for display
    canonical_url: Mapped[str | None] = mapped_column(String(2048), unique=True)
    source_id: Mapped[str | None] = mapped_column(String(512))
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(16), index=True)
    lang_confidence: Mapped[float | None] = mapped_column(Float)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    # SHA-256 of the page it was extracted from (None for a text import, or stored before 0016).
    page_hash: Mapped[str | None] = mapped_column(String(64))
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("articles.id", ondelete="SET NULL"), index=True
    )
    similarity: Mapped[float | None] = mapped_column(Float)
    # How a copy relates to its original: exact | near | translation (NULL on originals).
    copy_kind: Mapped[str | None] = mapped_column(String(16))
    # Why a copy was linked (the measurements behind the decision), for analysts to check.
    link_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_seed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    word_count: Mapped[int] = mapped_column(Integer, default=0)
    relevant: Mapped[bool | None] = mapped_column(Boolean)
    classified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    feed: Mapped[Feed | None] = relationship()
    duplicate_of: Mapped[Article | None] = relationship(remote_side=[id])

    @validates("url")
    def _keep_display_url(self, key: str, value: str | None) -> str | None:
        self.display_url = redact_optional(value)
        return value


class Sighting(Base):
    """Every time an article was seen: which feed or import, under which URL, when."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("article_id", "via", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    via: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# The articles a feed carried (``articles --feed``): the feed each page was first stored
# from is the article's own, the others its sightings'.
Index("ix_sightings_via", Sighting.via)


class FetchFailure(Base):
    """An item that failed (feed, page, extraction, import line), kept for retry or report."""

    __tablename__ = "fetch_failures"
    __table_args__ = (UniqueConstraint("stage", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    # The real URL (or import line): failures are looked up and retried by it.
    target: Mapped[str] = mapped_column(String(2048))
    display_target: Mapped[str | None] = mapped_column(Text)  # ``target`` redacted, for display
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    error: Mapped[str] = mapped_column(Text)
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    item: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @validates("target")
    def _keep_display_target(self, key: str, value: str) -> str:
        self.display_target = redact_optional(value)
        return value

    @validates("error")
    def _redact_error(self, key: str, value: str) -> str:
        # Error texts quote URLs; the stored text is only ever shown, so it is kept redacted.
        return redact_text(value)


Index("ix_fetch_failures_retry", FetchFailure.resolved_at, FetchFailure.next_retry_at)


class ArticleSignature(Base):
    """The MinHash signature of an article, under the scheme (parameters) it was made with."""

    __tablename__ = "article_signatures"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(80), index=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class ArticleBand(Base):
    """One LSH band key of an article: articles sharing a key are near-duplicate candidates."""

    __tablename__ = "article_bands"

    band_key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True, autoincrement=False, index=True
    )


class ArticleVector(Base):
    """The multilingual vectors of an article: a document vector and one per sentence.

    ``lang`` and ``moment`` (publication time, else first seen) are copied from the article
    so the cross-language candidate lookup reads this table alone, bounded by time.
    """

    __tablename__ = "article_vectors"
    __table_args__ = (Index("ix_article_vectors_model_moment", "model", "moment"),)

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(120))
    lang: Mapped[str] = mapped_column(String(16))
    moment: Mapped[datetime] = mapped_column(UtcDateTime)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    sentences: Mapped[bytes] = mapped_column(LargeBinary)
    sentence_count: Mapped[int] = mapped_column(Integer)
    has_title: Mapped[bool] = mapped_column(Boolean)


class ArticleVersion(Base):
    """An earlier text of an article whose page changed under the same URL."""

    __tablename__ = "article_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ArticleTopic(Base):
    """A topic assigned to an article, with its score and the evidence that decided it."""

    __tablename__ = "article_topics"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[list[str]] = mapped_column(JSON)


class ArticleWatch(Base):
    """A watch item an article mentions, with its score and evidence."""

    __tablename__ = "article_watch"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    item: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    # The calibrated probability; NULL on rows classified before scores were stored (until
    # ``summitwatch reclassify``).
    score: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[list[str]] = mapped_column(JSON)


class PipelineState(Base):
    """Small facts about the installation itself, e.g. when collection started."""

    __tablename__ = "pipeline_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CoverageChange(Base):
    """A detected change in a coverage series; ``digest_id`` is set once it was reported."""

    __tablename__ = "coverage_changes"
    __table_args__ = (UniqueConstraint("series", "at", "direction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series: Mapped[str] = mapped_column(String(128), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    direction: Mapped[str] = mapped_column(String(8))
    count: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"), index=True)


class DigestOutbox(Base):
    """A digest to deliver, keyed by what it reports and where it goes: the exactly-once ledger.

    Delivery resumes from ``parts_sent`` (and threads under ``thread_ts``), so a retried
    task never posts a confirmed part twice; ``unconfirmed_since`` marks a part whose post
    may have reached Slack without its answer reaching us. A Slack outage leaves the row
    pending for the next run.
    """

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("digest_key", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest_key: Mapped[str] = mapped_column(String(200))
    destination: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    parts_total: Mapped[int] = mapped_column(Integer)
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    thread_ts: Mapped[str | None] = mapped_column(String(64))
    # Set before part ``parts_sent`` is first posted, cleared when Slack confirms it: when
    # set, that part may be in the channel without being recorded here, and the next
    # attempt looks for it (from this time on) before posting it.
    unconfirmed_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Slack rate-limited the last attempt and asked not to be tried before this (its
    # Retry-After, longer than a run waits): the next pass leaves the digest until then.
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # How many runs posted part ``parts_sent`` without its confirmation (reset when it is
    # confirmed, or certainly not in the channel): an incoming webhook, which cannot look
    # in the channel, stops posting it again after a few (slack.UNCONFIRMED_RUNS).
    unconfirmed_runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @validates("last_error")
    def _redact_error(self, key: str, value: str | None) -> str | None:
        return None if value is None else redact_text(value)
