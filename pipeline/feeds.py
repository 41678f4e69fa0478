"""Feeds: the feed registry (``config/feeds.yaml``, OPML) and parsing feed bytes into items
(RSS and Atom through feedparser, JSON Feed directly).

A pure stage: bytes in, :class:`FeedItem` records out. Fetching is done by ``pipeline.http``.
"""

from __future__ import annotations

import calendar
import html.entities
import io
import itertools
import json
import re
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import defusedxml.ElementTree as SafeET
import feedparser
import lxml.etree
import lxml.html
import yaml
from feedparser.encodings import convert_to_utf8
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline import yamlfile
from pipeline.charsets import crowded_tag, normalise_charset, parse_content_type
from pipeline.errors import ConfigError
from pipeline.feed_urls import FEED_LANG_PATTERN, clean_name, front_page, normalise_feed_url
from pipeline.importers import without_surrogates
from pipeline.language import normalise_code
from pipeline.records import FeedItem
from pipeline.redaction import redact_text

# feedparser tolerates a clock-skewed feed; anything further ahead than this is not a date.
FUTURE_TOLERANCE = timedelta(hours=6)
# Dates before this are placeholders of broken systems (1970-01-01, 0001-01-01), not news.
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
# Sorts before every real publication time.
_NEVER = datetime.min.replace(tzinfo=UTC)
# Entity declarations are how XML bombs expand and how XXE reads local files; no real news
# feed needs them, nor a DOCTYPE with an internal subset (where declarations live). Both are
# refused wherever they appear: looked for in the document as the parser will decode it,
# and in the raw bytes read as UTF-8/ASCII, UTF-16 and UTF-32 (either byte order), so
# neither an encoding nor padding (whitespace, comments, 64 KB of anything) hides them.
_DANGEROUS_IN_DECODED = re.compile(rb"<!(?:ENTITY|DOCTYPE[^\[<>]{0,4096}\[)", re.IGNORECASE)
# "<!ENTITY" with up to three NUL bytes after each character: its UTF-16 and UTF-32 forms.
_DANGEROUS_IN_RAW = re.compile(
    b"".join(re.escape(char.encode()) + rb"\x00{0,3}" for char in "<!ENTITY"), re.IGNORECASE
)


class FeedEntry(BaseModel):
    """One entry of ``config/feeds.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    name: str = Field(min_length=1)
    outlet: str = Field(min_length=1)
    lang: str = Field(pattern=FEED_LANG_PATTERN)
    reason: str = Field(min_length=10)
    # None (not given): a new feed is enabled and a listed one keeps the state it has
    # (`summitwatch feeds disable` holds across `init`); true or false sets it.
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return normalise_feed_url(value)


class FeedRegistry(BaseModel):
    """The whole feed list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feeds: list[FeedEntry]

    @field_validator("feeds")
    @classmethod
    def _unique_urls(cls, value: list[FeedEntry]) -> list[FeedEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.url in seen:
                raise ValueError(f"feed {entry.url} is listed twice")
            seen.add(entry.url)
        return value


def load_feed_registry(path: Path) -> FeedRegistry:
    """Read and validate a feeds YAML file; :class:`ConfigError` names the bad entry."""
    try:
        data = yamlfile.read_file(path) or {"feeds": []}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read feed list: {_yaml_problem(exc)}") from None
    try:
        return FeedRegistry.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(redact_text(f"{path}: invalid feed list:\n  " + "\n  ".join(problems))) from None


def _yaml_problem(exc: Exception) -> str:
    """What is wrong and where, without the quoted source line: it may hold a feed URL with
    credentials, cut where no redaction rule can recognise them."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or 'invalid YAML'} at line {mark.line + 1}, column {mark.column + 1}"
    return redact_text(str(exc))


@dataclass(frozen=True)
class ParsedFeed:
    """The result of parsing one feed body; its items oldest first (:func:`oldest_first`)."""

    title: str | None
    items: list[FeedItem]
    warnings: list[str] = field(default_factory=list)


class FeedParseError(ValueError):
    """The body is not a usable feed (not XML/RSS/Atom, or refused as dangerous)."""


def parse_feed(
    body: bytes,
    *,
    feed_url: str,
    content_type: str | None = None,
    now: datetime | None = None,
    max_items: int = 200,
) -> ParsedFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes into items.

    The HTTP content type (with its charset) is passed on to feedparser, which weighs it
    against the XML declaration. A body that is a JSON object (or served as JSON) is read
    as a JSON Feed (:func:`parse_json_feed`). Items get absolute URLs (an entry's
    feedburner ``origLink`` rather than FeedBurner's redirect); titles given as markup
    become the text they show (:func:`_feed_text`); dates are feedparser's, or
    :func:`rfc822_date`'s for RFC 822 dates it misses or misreads; dates in the future
    beyond a small tolerance are dropped (the first-seen time is used instead).
    """
    now = now or datetime.now(UTC)
    if _looks_like_json(body, content_type):
        label = parse_content_type(content_type)[1]
        charset = normalise_charset(label) if label else None
        return parse_json_feed(body, feed_url=feed_url, now=now, max_items=max_items, charset=charset)
    if not body.isascii():
        body, content_type = _as_utf8(body, content_type)
    body = _repair_references(body)
    headers = {"content-type": content_type} if content_type else {}
    refuse_entity_declarations(body, headers)
    crowded = crowded_tag(body)
    if crowded is not None:
        raise FeedParseError(f"not a feed: {crowded}")
    try:
        # A stream, never bytes: feedparser treats a bytes argument naming a file as that file.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise FeedParseError(f"not a feed: unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    warnings: list[str] = []
    if parsed.get("bozo"):
        warnings.append(f"{type(parsed.get('bozo_exception')).__name__}: {parsed.get('bozo_exception')}")
    if not parsed.get("version") and not parsed.entries:
        linked = feeds_linked_from(body, feed_url)
        if linked:
            # A site's page given for its feed: say where its feeds are.
            raise FeedParseError(f"not a feed: an HTML page that links to feeds: {', '.join(linked)}")
        reason = warnings[0] if warnings else "no RSS or Atom structure found"
        raise FeedParseError(f"not a feed: {reason}")
    items = []
    version = str(parsed.get("version") or "")
    declared = _language(parsed.feed.get("language"))
    entries = _newest(parsed.entries, max_items, lambda entry: _entry_date(entry, now), warnings)
    for entry in entries:
        link = _entry_link(entry)
        items.append(
            FeedItem(
                url=_item_url(feed_url, link),
                title=_feed_text(entry, "title", version),
                published_at=_entry_date(entry, now),
                feed_url=feed_url,
                summary=_clean(entry.get("summary")),
                guid=_clean(entry.get("id")),
                lang=_language(entry.get("language")) or declared,
                content=_entry_content(entry),
            )
        )
    title = _feed_text(parsed.feed, "title", version)
    return ParsedFeed(title=title, items=oldest_first(items), warnings=warnings)


def _json_content(entry: dict[str, Any]) -> str | None:
    """A JSON Feed item's content as HTML: ``content_html``, else ``content_text`` escaped."""
    markup = _first_string(entry, "content_html")
    if markup is not None and markup.strip():
        return _clean(markup)
    plain = _first_string(entry, "content_text")
    if plain is None or not plain.strip():
        return None
    return _clean(_paragraphs(plain))


def _paragraphs(plain: str) -> str:
    """Plain text as HTML: each non-blank line a paragraph, its characters escaped."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in plain.splitlines() if line.strip())


def _entry_content(entry: Any) -> str | None:
    """The longest content an entry carries, as HTML (plain text escaped), or None."""
    best: str | None = None
    for part in entry.get("content") or []:
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(value, str) or not value.strip():
            continue
        kind = str(part.get("type") or "text/html").lower()
        if "html" not in kind:
            if not kind.startswith("text/"):
                continue  # (an image or other media given inline, in base64)
            value = _paragraphs(value)
        if best is None or len(value) > len(best):
            best = value
    return _clean(best)


# <link rel="alternate" type="application/rss+xml" href="..."> in a page's head, in any
# attribute order (feed autodiscovery); the page's first 256 KB are read, comments and
# scripts left out. A quoted attribute may hold a ">".
_LINK_TAG = re.compile(rb"""<link\b(?:[^>"']|"[^"]*"|'[^']*'){0,2000}>""", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""([a-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
# (Not plain application/json: WordPress announces its REST API's posts with it.)
_FEED_TYPES = (b"application/rss+xml", b"application/atom+xml", b"application/feed+json")
_HIDDEN = ((b"<!--", b"-->"), (b"<script", b"</script"))
DISCOVERY_BYTES = 262_144
MAX_LINKED_FEEDS = 5


def feeds_linked_from(body: bytes, page_url: str) -> list[str]:
    """The feeds an HTML page announces (``<link rel="alternate" type="application/rss+xml">``
    and the Atom and JSON Feed types), as absolute http(s) URLs spelled as ``feeds add``
    stores them, at most :data:`MAX_LINKED_FEEDS`. A link ``feeds add`` would refuse (with
    spaces or control characters: a hostile page's terminal escapes) is left out."""
    found: list[str] = []
    for tag in _LINK_TAG.finditer(_visible(body[:DISCOVERY_BYTES])):
        attributes = {
            match.group(1).lower(): (match.group(2) or match.group(3) or match.group(4) or b"").strip()
            for match in _ATTRIBUTE.finditer(tag.group())
        }
        rel = attributes.get(b"rel", b"").lower().split()
        media = attributes.get(b"type", b"").split(b";")[0].strip().lower()
        if b"alternate" not in rel or media not in _FEED_TYPES:
            continue
        href = attributes.get(b"href", b"").decode("utf-8", "replace")
        url = _absolute(page_url, html.unescape(href)) if href else None
        try:
            url = normalise_feed_url(url) if url else None
        except ValueError:
            continue
        if url and url not in found:
            found.append(url)
        if len(found) == MAX_LINKED_FEEDS:
            break
    return found


def _visible(page: bytes) -> bytes:
    """``page`` without its comments and scripts (one pass; an unclosed one ends the page)."""
    lowered = page.lower()
    kept: list[bytes] = []
    position = 0
    # Where each kind opens next, found again only once passed: found afresh at every
    # comment, a page of thousands of comments and no script searched its whole rest for
    # "<script" each time (quadratic).
    following = {opening: lowered.find(opening) for opening, _ in _HIDDEN}
    while True:
        for opening, found in following.items():
            if 0 <= found < position:
                following[opening] = lowered.find(opening, position)
        starts = [(following[opening], opening, closing) for opening, closing in _HIDDEN]
        starts = [start for start in starts if start[0] >= 0]
        if not starts:
            kept.append(page[position:])
            return b"".join(kept)
        start, opening, closing = min(starts)
        kept.append(page[position:start])
        end = lowered.find(closing, start + len(opening))
        if end < 0:
            return b"".join(kept)
        position = end + len(closing)


_JSON_FEED_VERSION = "https://jsonfeed.org/version/"
# Byte order marks (UTF-8, and UTF-16/32's), white space and the NUL bytes of a UTF-16 or
# UTF-32 body, before its first character.
_BOM_AND_SPACE = b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n"


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    """A JSON object, or a body served as JSON that is not markup (a misconfigured server
    may label an RSS document JSON: it still starts with "<")."""
    first = body.lstrip(_BOM_AND_SPACE)[:1]
    media = (content_type or "").split(";")[0].strip().lower()
    return first == b"{" or (media.endswith(("/json", "+json")) and first != b"<")


def parse_json_feed(
    body: bytes, *, feed_url: str, now: datetime, max_items: int = 200, charset: str | None = None
) -> ParsedFeed:
    """Parse a JSON Feed (versions 1 and 1.1, https://jsonfeed.org) into items.

    An item's link is its ``url``, else its ``external_url``, else an ``id`` that is an
    http(s) URL; its date is ``date_published``, else ``date_modified`` (RFC 3339), held to
    the same bounds as a feed's dates. Items that are not objects are skipped with a
    warning; a body that is not JSON, or JSON without a JSON Feed ``version``, is no feed.
    The body may be in UTF-8 (with or without a byte order mark), UTF-16 or UTF-32; a
    body that is none of these is decoded as a page is (the HTTP ``charset`` if it reads
    plausibly, else the charset detected; UTF-8 with a stray byte keeps the rest), with a
    warning.
    """
    warnings: list[str] = []
    try:
        # (bytes: UTF-8, or UTF-16 or UTF-32 with or without a byte order mark, RFC 7159)
        try:
            document = json.loads(body)
        except UnicodeDecodeError:
            if b"\x00" in body[:4]:
                raise  # (UTF-16 or UTF-32 that does not decode)
            # Not UTF-8: read as a page is (the server's charset, the document's evidence),
            # UTF-8 with a stray byte (a title cut mid-character) keeping the rest, rather
            # than every item of the feed being lost at every poll.
            from pipeline.extract import decode_document  # (loaded by every poll that extracts)

            text, codec = decode_document(body, charset)
            document = json.loads(text)
            warnings.append(
                "bytes that are not UTF-8 became U+FFFD"
                if codec == "utf-8"
                else f"not UTF-8: read as {codec}"
            )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FeedParseError(f"not a feed: invalid JSON ({type(exc).__name__})") from None
    document = without_surrogates(document)  # a lone "\\ud800" escape fits no URL or database
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version.startswith(_JSON_FEED_VERSION):
        raise FeedParseError("not a feed: JSON without a JSON Feed version")
    entries = document.get("items")
    if not isinstance(entries, list):
        raise FeedParseError("not a feed: a JSON Feed without an items list")
    items: list[FeedItem] = []
    declared = _language(document.get("language"))

    def dated(entry: Any) -> datetime | None:
        return _json_date(entry, now) if isinstance(entry, dict) else None

    for entry in _newest(entries, max_items, dated, warnings):
        if not isinstance(entry, dict):
            warnings.append(f"JSON Feed item that is not an object skipped: {type(entry).__name__}")
            continue
        raw_id = entry.get("id")
        guid = _clean(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
        page = _first_string(entry, "url", "external_url")
        if page is not None:
            link: str | None = page.strip()
        else:
            link = guid if guid and guid.startswith(("http://", "https://")) else None
        items.append(
            FeedItem(
                url=_item_url(feed_url, link),
                title=_clean(_first_string(entry, "title")),
                published_at=_json_date(entry, now),
                feed_url=feed_url,
                summary=_clean(_first_string(entry, "summary", "content_text")),
                guid=guid,
                lang=_language(entry.get("language")) or declared,
                content=_json_content(entry),
            )
        )
    return ParsedFeed(
        title=_clean(_first_string(document, "title")), items=oldest_first(items), warnings=warnings
    )


def oldest_first(items: list[FeedItem]) -> list[FeedItem]:
    """A feed's items in the order they are stored: by publication time, oldest first, those
    without one last (each is dated when first seen, after every dated one), ties in the
    feed's order.

    Of two copies of one text the first stored is the root, which the other points at and
    whose moment the story counts at. Feeds mostly list their newest items first, so taken
    in the feed's order an updated republication listed above its original would become the
    root, and the story would count at the update's later date.
    """
    return sorted(items, key=lambda item: (item.published_at is None, item.published_at or _NEVER))


def _first_string(record: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` whose value in ``record`` is a string (JSON fields may be anything)."""
    return next((record[key] for key in keys if isinstance(record.get(key), str)), None)


def _json_date(entry: dict[str, Any], now: datetime) -> datetime | None:
    for key in ("date_published", "date_modified"):
        value = entry.get(key)
        if not isinstance(value, str):
            continue
        try:
            moment: datetime | None = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = rfc822_date(value)  # an RFC 822 date, as in RSS, where RFC 3339 was due
        if moment is None:
            continue  # unreadable: the next date, if any
        return _plausible(moment if moment.tzinfo else moment.replace(tzinfo=UTC), now)
    return None


def _plausible(moment: datetime, now: datetime) -> datetime | None:
    """``moment`` in UTC, or None when it is in the future beyond tolerance or a placeholder."""
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):  # "0001-01-01T00:00:00+01:00" and the like
        return None
    if moment > now + FUTURE_TOLERANCE or moment < EARLIEST_DATE:
        return None
    return moment


def _newest(
    entries: list[Any], limit: int, date_of: Callable[[Any], datetime | None], warnings: list[str]
) -> list[Any]:
    """At most ``limit`` of a feed's entries, in the feed's order: the newest when every
    entry is dated (a feed may list its oldest first); else those at the feed's newest end,
    as its dated entries show it (the last ones when their dates mostly rise down the feed,
    the first ones otherwise, as most feeds list their newest first). Taking the first ones
    of a feed listed oldest first would keep its oldest entries at every poll and never
    reach a new one."""
    if len(entries) <= limit:
        return entries
    dates = [date_of(entry) for entry in entries]
    known = [moment for moment in dates if moment is not None]
    if len(known) == len(entries):
        newest = sorted(range(len(entries)), key=known.__getitem__, reverse=True)[:limit]
        kept = [entries[index] for index in sorted(newest)]
        which = "the oldest"
    elif sum((b > a) - (b < a) for a, b in itertools.pairwise(known)) > 0:  # more rises than falls
        kept = entries[-limit:]
        which = "the first ones: the feed lists its oldest first"
    else:
        kept = entries[:limit]
        which = "those after the first"
    warnings.append(
        f"{len(entries) - limit} of {len(entries)} items left out ({which}; at most {limit} a poll)"
    )
    return kept


# An XML declaration's encoding, rewritten when the body is handed on in UTF-8.
_XML_ENCODING = re.compile(r"""\A(\s*<\?xml\b[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")


def _as_utf8(body: bytes, content_type: str | None) -> tuple[bytes, str]:
    """A feed's bytes in UTF-8, decoded by the evidence pages get (:func:`pipeline.extract.
    decode_document`): a byte-order mark, then UTF-8 that validates (or nearly: stray bytes
    among many more well-formed characters), then the declared charsets if they read
    plausibly, then detection.

    feedparser would believe the HTTP header over the document: valid UTF-8 served as
    windows-1251 came out garbled, and one stray byte in a UTF-8 feed made it read every
    title in another codec.
    """
    from pipeline.extract import decode_document  # (loaded by every poll that extracts pages)

    media, label = parse_content_type(content_type)
    text, _ = decode_document(body, label)
    text = _XML_ENCODING.sub(lambda match: f"{match.group(1)}{match.group(2)}utf-8{match.group(2)}", text, 1)
    return text.encode("utf-8", "replace"), f"{media or 'application/xml'}; charset=utf-8"


# Numeric character references, two in a row for a UTF-16 surrogate pair written out as
# two (&#55357;&#56832; for one emoji, as some content systems do).
_REFERENCE = rb"&#(?:[xX][0-9a-fA-F]{1,8}|[0-9]{1,10});"
_REFERENCES = re.compile(rb"(" + _REFERENCE + rb")(" + _REFERENCE + rb")?")


def _repair_references(body: bytes) -> bytes:
    """Character references no character can have (a lone surrogate, beyond U+10FFFF, NUL)
    made U+FFFD, and a surrogate pair written as two references made its character: the
    parser would otherwise fail the whole feed for one title."""
    if b"&#" not in body:
        return body

    def code(reference: bytes) -> int:
        digits = reference[2:-1]
        return int(digits[1:], 16) if digits[:1] in (b"x", b"X") else int(digits)

    def fixed(reference: bytes, value: int) -> bytes:
        return b"&#xFFFD;" if value == 0 or 0xD800 <= value <= 0xDFFF or value > 0x10FFFF else reference

    def repair(match: re.Match[bytes]) -> bytes:
        first, second = match.group(1), match.group(2)
        high = code(first)
        if second is None:
            return fixed(first, high)
        low = code(second)
        if 0xD800 <= high <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
            return b"&#x%X;" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        return fixed(first, high) + fixed(second, low)

    return _REFERENCES.sub(repair, body)


def refuse_entity_declarations(body: bytes, headers: dict[str, str]) -> None:
    """Raise :class:`FeedParseError` if ``body`` declares XML entities or an internal DTD subset.

    The document is decoded exactly as feedparser will decode it (HTTP charset, BOM, XML
    declaration), so a bomb in UTF-16, UTF-32, EBCDIC or UTF-7 is seen like one in UTF-8.
    """
    if _DANGEROUS_IN_RAW.search(body) or _DANGEROUS_IN_DECODED.search(
        convert_to_utf8(dict(headers), body, {})
    ):
        raise FeedParseError(
            "feed declares XML entities or a DTD internal subset (possible entity-expansion "
            "bomb or external-entity read); refused"
        )


def _entry_link(entry: Any) -> str | None:
    # A feed FeedBurner serves links each item to a redirect of FeedBurner's own and gives
    # the page's address in feedburner:origLink: the redirect was stored as the article's URL.
    original = entry.get("feedburner_origlink")
    if (
        isinstance(original, str)
        and _host_of(original)
        and original.strip().lower().startswith(("http://", "https://"))
    ):
        return original.strip()
    link = entry.get("link")
    if link and entry.get("guidislink") and not str(link).strip().startswith(("http://", "https://")):
        # feedparser copies a guid into the link when an item has none ("12345", an Atom
        # id "e1"): taken as a relative link it named a page that does not exist.
        link = None
    guid = entry.get("id")
    permalink = str(guid).strip() if guid and str(guid).startswith(("http://", "https://")) else None
    if link:
        link = str(link).strip()
        if permalink and front_page(link) and not front_page(permalink):
            # Every item linked to its site's front page (a feed template gone wrong), its
            # own address in its guid: the front page was stored as the first item's
            # article and every other item taken for it.
            return permalink
        return link
    for candidate in entry.get("links", []):
        if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
            return str(candidate["href"]).strip()
    return permalink


def _entry_date(entry: Any, now: datetime) -> datetime | None:
    """An entry's publication date, else its update's, else its creation's, held to
    :func:`_plausible`.

    Each is read by :func:`rfc822_date` when it is an RFC 822 date that function reads,
    else as feedparser read it: feedparser gives no date for one without a zone, with a
    zone such as "GMT+8" or in Russian, and reads a zone name it does not know ("MSK",
    "UTC+03:00") as UTC.
    """
    for key in ("published", "updated", "created"):
        # (Read as stored: feedparser's own look-up of "updated" gives "published" when
        # there is none, with a deprecation warning.)
        raw = dict.get(entry, key)
        moment = rfc822_date(raw) if isinstance(raw, str) else None
        if moment is None:
            value = dict.get(entry, f"{key}_parsed")
            if not isinstance(value, time.struct_time):
                continue
            try:
                moment = datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (ValueError, OverflowError, OSError):
                return None  # "0000-00-00" and other impossible dates
        return _plausible(moment, now)
    return None


# Month names as feeds write them, in English, Russian, Ukrainian, German, French and
# Spanish: in full (nominative and genitive: "7 декабря") and abbreviated.
_MONTH_NAMES = (
    "january jan январь января янв січень січня січ januar jän jänner janvier janv enero ene",
    "february feb февраль февраля фев февр лютий лютого лют februar février févr fév febrero",
    "march mar март марта березень березня бер märz mär mrz mars marzo",
    "april apr апрель апреля апр квітень квітня кві avril avr abril abr",
    "may май мая травень травня тра mai mayo",
    "june jun июнь июня июн червень червня чер juni juin junio",
    "july jul июль июля июл липень липня лип juli juillet juil julio",
    "august aug август августа авг серпень серпня сер août agosto ago",
    "september sep sept сентябрь сентября сен сент вересень вересня вер septembre septiembre setiembre",
    "october oct октябрь октября окт жовтень жовтня жов oktober okt octobre octubre",
    "november nov ноябрь ноября ноя нояб листопад листопада лис novembre noviembre",
    "december dec декабрь декабря дек грудень грудня гру dezember dez décembre déc diciembre dic",
)
# (as RFC 822 and email.utils spell them)
_ENGLISH_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {
    word: english
    for english, words in zip(_ENGLISH_MONTHS, _MONTH_NAMES, strict=True)
    for word in words.split()
}
# Zone names outside RFC 822 that feeds use and that name one offset. A name that names
# several is left as feedparser and email.utils read it: CST is US Central (-06:00),
# not China's +08:00. MSK is Moscow's offset since October 2014.
_ZONES = {
    "msk": "+0300",
    "cet": "+0100",
    "cest": "+0200",
    "eet": "+0200",
    "eest": "+0300",
    "wet": "+0000",
    "west": "+0100",
    "jst": "+0900",
    "kst": "+0900",
    "hkt": "+0800",
}
_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?")
_WORD_OR_NUMBER = re.compile(r"[^\W\d_]+\.?|\d+")
# "+0300", "+03:00", "+3", "GMT+8", "UTC+03:00".
_OFFSET = re.compile(r"(?:gmt|utc|ut)?\s*([+-])(\d{1,2}):?(\d{2})?")
_COMMENT = re.compile(r"\([^()]*\)")
# A leading word and a comma: the day's name.
_DAY_NAME = re.compile(r"\A\s*[^\W\d_]+\.?\s*,")
# Longer than any date: not read.
_MAX_DATE_CHARS = 120


def rfc822_date(text: str) -> datetime | None:
    """An RFC 822 date (RSS's) as feeds write it, or None when ``text`` is not one or its
    zone is a name this does not know (feedparser's reading of it stands then).

    Beyond :func:`email.utils.parsedate_to_datetime`: month names in the languages of
    :data:`_MONTH_NAMES`, day names in any ("Пн, 07 дек 2026"), a time without a zone (read
    as UTC), offsets after "GMT" or "UTC" and with a colon, and the zone names of
    :data:`_ZONES`.
    """
    if len(text) > _MAX_DATE_CHARS:
        return None
    text = _COMMENT.sub(" ", unicodedata.normalize("NFC", text))  # "+0300 (MSK)"
    text = _DAY_NAME.sub("", text, count=1)  # (French and Spanish "mar." is Tuesday)
    clock = _CLOCK.search(text)
    head, zone = (text[: clock.start()], text[clock.end() :].strip().lower()) if clock else (text, "")
    # A day's date and its month's name; every other word (a day name, Russian "г.",
    # Spanish "de") is left out.
    words = []
    for token in _WORD_OR_NUMBER.findall(head):
        if token[0].isdigit():
            words.append(token)
        elif token.rstrip(".").lower() in _MONTHS:
            words.append(_MONTHS[token.rstrip(".").lower()])
    if len(words) != 3 or sum(word in _ENGLISH_MONTHS for word in words) != 1:
        return None
    year = words[-1]
    if not year.isdecimal():
        return None  # "10 2026 Dec": not a day, a month and a year
    if not (len(year) == 2 or 1000 <= int(year) <= 9999):
        return None  # (email.utils reads "0001" as 2001, as a two-digit year)
    offset = _OFFSET.fullmatch(zone)
    if offset is not None:
        sign, hours, minutes = offset.groups()
        zone = f"{sign}{int(hours):02d}{int(minutes or 0):02d}"
    elif not zone or zone in ("gmt", "utc", "ut", "z"):
        zone = "+0000"
    elif zone in _ZONES:
        zone = _ZONES[zone]
    elif not zone.isalpha():
        return None
    try:
        moment = parsedate_to_datetime(f"{' '.join(words)} {clock.group() if clock else '00:00'} {zone}")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        # "-0000" (UTC, the local zone unknown) and a zone name email.utils does not know,
        # which feedparser takes for UTC.
        return moment.replace(tzinfo=UTC) if zone == "-0000" else None
    return moment


def _absolute(feed_url: str, link: str | None) -> str | None:
    if not link:
        return None
    try:
        return urljoin(feed_url, link)
    except ValueError:
        return link  # refused later, per item, with its reason


# A URL's scheme and authority, and the rest.
_AUTHORITY = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)(.*)", re.DOTALL)


def _item_url(feed_url: str, link: str | None) -> str | None:
    """An item's link made absolute, its spaces percent-encoded as a browser sends them
    ("/news/Putin Xi talks.html"). Only the spaces of its path, query and fragment: a host
    with a space is no host, and other white space and control characters are refused
    where the item is screened (``pipeline.ingest``)."""
    url = _absolute(feed_url, link)
    parts = _AUTHORITY.fullmatch(url) if url and " " in url else None
    if parts is None or " " in parts.group(1):
        return url
    return parts.group(1) + parts.group(2).replace(" ", "%20")


def _language(value: Any) -> str | None:
    """A declared language as a primary code ("en-US" → "en"); None when it is not one."""
    return normalise_code(value) if isinstance(value, str) else None


# NUL and other control characters: PostgreSQL refuses NUL, and none belong in a title.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = _CONTROL.sub("", str(value))
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


# The types feedparser gives a title marked as markup (Atom type="html" or "xhtml") or, in
# RSS, whose titles say nothing, one that holds tags or references (escaped, or in CDATA).
_MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def _feed_text(container: Any, key: str, version: str = "") -> str | None:
    """A feed's or an entry's text (its ``key``, a title) as plain text: markup as it reads
    (:func:`_html_text`), plain text as written ("Putin < Xi"). feedparser is asked to
    leave markup as the feed has it (it would otherwise sanitise it, not remove it).

    In a feed that is no Atom feed (``version``, feedparser's), whose titles say nothing of
    their type, feedparser takes a title for markup only when every tag in it is one its
    old sanitiser allows: one ``<mark>``, ``<wbr>``, ``<script>`` or Word's ``<o:p>`` beside
    an ``&amp;`` left the whole title as markup, tags and references shown. Such a title is
    read as markup when it shows what feedparser asks of markup otherwise (a closing tag or
    a reference, every reference one HTML defines)."""
    value = container.get(key)
    detail = container.get(f"{key}_detail")
    if isinstance(value, str) and isinstance(detail, dict):
        kind = detail.get("type")
        guessed = kind == "text/plain" and not version.startswith("atom") and _looks_like_markup(value)
        if kind in _MARKUP_TYPES or guessed:
            value = _html_text(_CONTROL.sub("", value))
    return _clean(value)


_CLOSING_TAG = re.compile(r"</[A-Za-z][\w:.-]*\s*>")
_REFERENCE_NAME = re.compile(r"&#?(\w+);")


def _looks_like_markup(text: str) -> bool:
    """feedparser's test of whether a title in a feed of untyped titles is HTML, without its
    list of allowed tags: a closing tag or a character reference, and no reference to a
    name HTML does not define ("AT&T;" stays as written)."""
    if not (_CLOSING_TAG.search(text) or _REFERENCE_NAME.search(text)):
        return False
    return all(
        name.isdigit() or name[:1] in "xX" or name in html.entities.entitydefs
        for name in _REFERENCE_NAME.findall(text)
    )


# Elements whose content is never shown, and those that set their content apart (a line
# break or a paragraph between two words is a space).
_UNSEEN = ("script", "style", "template")
_APART = (
    "br", "p", "div", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td", "th",
    "blockquote", "hr", "pre", "table", "ul", "ol", "section", "article", "header", "footer",
)  # fmt: skip
# A tag, for markup libxml2 refuses (a string it cannot hold).
_TAG = re.compile(r"<[^<>]*>")


def _html_text(markup: str) -> str:
    """The text ``markup`` shows: tags, comments, scripts and styles left out, character
    references read once ("&amp;lt;" in a title's XML is "&lt;" in its HTML, "<" on
    screen). libxml2 parses it, in time linear in its length (Python's html.parser took
    minutes over 400 KB of "<a"); nothing in it is run or fetched."""
    if "<" not in markup and "&" not in markup:
        return markup
    parser = lxml.html.HTMLParser(
        remove_comments=True, remove_pis=True, collect_ids=False, default_doctype=False
    )
    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div", parser=parser)
    except (lxml.etree.ParserError, ValueError):
        return html.unescape(_TAG.sub(" ", markup))
    for element in list(root.iter(*_UNSEEN)):
        element.drop_tree()
    for element in root.iter(*_APART):
        element.text = " " + (element.text or "")
        element.tail = " " + (element.tail or "")
    return str(root.text_content())


# OPML --------------------------------------------------------------------------------------


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


# The outline attribute that marks a feed exported while disabled.
DISABLED_ATTRIBUTE = "summitwatchDisabled"


def parse_opml(body: bytes) -> list[dict[str, str]]:
    """Feeds listed in an OPML document: ``[{"url", "name", "lang"?, "outlet"?}]``, as
    written (:func:`normalise_feed_url` checks the URLs). Without a title or text, a
    feed is named after its host: never its URL, which may carry a credential."""
    try:
        root = SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises several unrelated types
        raise ConfigError(f"cannot read OPML: {type(exc).__name__}: {exc}") from None
    feeds = []
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl") or outline.get("xmlurl")
        if not url:
            continue
        name = clean_name(outline.get("title")) or clean_name(outline.get("text"))
        if not name or name == url.strip():
            name = _host_of(url) or "feed"
        entry = {"url": url.strip(), "name": name}
        lang = outline.get("language")
        if lang:
            entry["lang"] = lang.strip()
        outlet = clean_name(outline.get("description"))  # as to_opml writes it
        if outlet:
            entry["outlet"] = outlet
        if (outline.get(DISABLED_ATTRIBUTE) or "").strip().lower() == "true":
            entry["disabled"] = "true"  # (as to_opml writes a disabled feed)
        feeds.append(entry)
    return feeds


def to_opml(feeds: list[dict[str, Any]], *, title: str = "summitwatch feeds") -> bytes:
    """An OPML 2.0 document listing ``feeds`` (``url``, ``name``, optional ``lang``, ``outlet``)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for feed in feeds:
        # (Control characters cannot appear in XML 1.0 at all: a name holding one would make
        # the export unreadable.)
        name, outlet = clean_name(feed.get("name")), clean_name(feed.get("outlet"))
        attributes = {"type": "rss", "text": name or _host_of(feed["url"]) or "feed", "xmlUrl": feed["url"]}
        if name:
            attributes["title"] = name
        if feed.get("lang"):
            attributes["language"] = feed["lang"]
        if outlet:
            attributes["description"] = outlet
        if feed.get("enabled") is False:
            # An attribute of our own (OPML readers ignore those): a backup restored keeps
            # a disabled feed disabled.
            attributes[DISABLED_ATTRIBUTE] = "true"
        ET.SubElement(body, "outline", attributes)
    ET.indent(root)
    document = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + document + "\n").encode("utf-8")
