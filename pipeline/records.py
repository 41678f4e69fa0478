"""The records that flow between pipeline stages.

Each stage adds its own part. Every record is a plain dataclass whose fields are JSON
types (or datetimes, serialised as ISO 8601 by :func:`to_json`), because records cross
process and Airflow task boundaries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class FeedItem:
    """One entry of a polled feed (or one line of an import file)."""

    url: str | None
    title: str | None = None
    published_at: datetime | None = None
    feed_url: str | None = None
    summary: str | None = None
    guid: str | None = None
    # The language the feed document declares (RSS <language>, Atom xml:lang, JSON Feed
    # "language"): a prior for the page's language when the feed registry names none.
    lang: str | None = None
    # The whole article as the entry carries it (RSS content:encoded, Atom content), as
    # HTML: the article's text when its page cannot be read.
    content: str | None = None


@dataclass(frozen=True)
class FetchedPage:
    """Bytes of an article page as the HTTP seam returned them."""

    url: str
    final_url: str
    body: bytes
    content_type: str | None = None
    charset: str | None = None


@dataclass(frozen=True)
class ExtractedPage:
    """What extraction found in one HTML page."""

    text: str
    title: str | None = None
    date: str | None = None
    lang_hint: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class LanguageGuess:
    """The detected language: an ISO 639-1 code, ``zh`` for all Chinese, or ``und``."""

    lang: str
    confidence: float


@dataclass(frozen=True)
class Fingerprint:
    """Exact-duplicate keys of one article."""

    canonical_url: str | None
    content_hash: str
    # The page as fetched (its bytes' SHA-256), for items extracted from HTML: the same page
    # read again by a later extractor is the same page, not a new version of it.
    page_hash: str | None = None


@dataclass
class ArticleCandidate:
    """An item on its way into the database, after extraction and language detection."""

    url: str | None
    title: str | None
    text: str
    lang: str
    published_at: datetime | None
    feed_url: str | None = None
    source_id: str | None = None
    fingerprint: Fingerprint | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def to_json(value: Any) -> Any:
    """Turn a record (or a structure holding records) into JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class TopicHit:
    """A topic assigned to an article, with the phrases or sentences that decided it."""

    topic: str
    score: float
    evidence: list[str]


@dataclass(frozen=True)
class WatchHit:
    """A watch item an article is about, with its evidence and (from the hybrid) its probability."""

    item: str
    evidence: list[str]
    score: float | None = None


@dataclass(frozen=True)
class Classification:
    """The classifier's verdict on one article.

    ``abstained`` names labels the classifier would not decide: their probability fell
    just below the threshold (not assigned; worth an analyst's look).
    """

    topics: list[TopicHit]
    watch: list[WatchHit]
    relevant: bool
    abstained: list[str] = field(default_factory=list)
