"""Digests: detected changes and their articles in, Slack messages and plain text out.

A pure stage: it formats, it does not query or send. The caller (CLI ``digest``, the
digest DAG) gathers the unreported changes, each with its recent trend and its top new
articles, calls :func:`build_change_digest` (or :func:`build_summary_digest` on the
summary schedule), stores the :class:`Digest` in the outbox (:meth:`Digest.to_json`), and
hands its messages to ``pipeline.slack`` or prints :func:`render_plain`.

Every message respects Slack's Block Kit limits (at most 50 blocks, section text at most
3000 characters, header text at most 150, counted as Slack counts them: in UTF-16 units,
an emoji two) and a per-message size budget; what does not fit the first message goes to
follow-ups that the Slack seam threads under it. Text from
articles is escaped for mrkdwn (``&``, ``<``, ``>``), so a title can neither break a link
nor ping ``<!channel>``. Every message carries a plain ``text`` fallback next to its
blocks (notifications and screen readers use it).

Changes are duck-typed (:class:`ChangeLike`): stages do not import each other, and
``pipeline.coverage.Change`` has the fields needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode, urlsplit

from pipeline.formatting import format_number, one_direction
from pipeline.redaction import redact_optional
from pipeline.unicode_marks import joins_previous

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
# Slack accepts 40,000 characters of top-level text but shows notifications from the
# start of it; the fallback only needs to say what the message is.
MAX_FALLBACK_TEXT = 3000
# Slack documents no total-size limit for blocks, but very large messages are refused
# or collapsed; a modest budget also keeps each message readable on a phone.
DEFAULT_MESSAGE_BUDGET = 12_000
TITLE_CHARS = 200
EVIDENCE_CHARS = 280
SOURCE_CHARS = 60
# A clipped title ends at a space within this many characters of the limit, not inside a word.
CLIP_TO_SPACE = 20
MAX_LINK_URL = 1500
SPARK_CHARS = "▁▂▃▄▅▆▇█"
ARROWS = {"up": "↑", "down": "↓"}
EMOJI = {"up": ":chart_with_upwards_trend:", "down": ":chart_with_downwards_trend:"}
Block = dict[str, Any]
_SMALL_WORDS = frozenset({"a", "an", "and", "of", "the", "to", "in", "on", "for", "with"})
# An escaped character ("&amp;", "&lt;", "&gt;") cut short at the end of a text.
_OPEN_ENTITY = re.compile(r"&[#a-zA-Z0-9]*$")


class ChangeLike(Protocol):
    """What the digest needs from a detected change (``pipeline.coverage.Change`` fits)."""

    @property
    def series(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def direction(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def baseline(self) -> float: ...
    @property
    def explanation(self) -> str: ...


@dataclass(frozen=True)
class DigestArticle:
    """One article shown in a digest. ``copies`` counts its folded duplicates.

    ``also_in`` lists its translations (language, URL), shown as "also in: ru, zh".
    """

    article_id: int | str
    title: str | None
    url: str | None
    source: str | None = None
    lang: str | None = None
    evidence: str | None = None
    copies: int = 0
    published_at: datetime | None = None
    also_in: Sequence[tuple[str, str | None]] = ()


@dataclass(frozen=True)
class DigestStory:
    """One event's articles (any outlet or language) and the series they moved.

    ``changes`` are the changes its articles were listed under, when the caller knows them:
    a digest can hold two changes of one series (a burst, then the silence after it, both
    reported late), and a story shows the figures of its own. Without them, a series'
    figures are those of its change in the digest.
    """

    articles: Sequence[DigestArticle]
    series: Sequence[str]
    changes: Sequence[ChangeLike] = ()


@dataclass(frozen=True)
class DigestChange:
    """A change with what the digest shows about it: the trend and the top new articles."""

    change: ChangeLike
    trend_bins: Sequence[tuple[datetime, int]]
    articles: Sequence[DigestArticle] = ()


@dataclass(frozen=True)
class SeriesTotal:
    """One series in the summary digest: articles in the period, the period before, trend."""

    series: str
    count: int
    previous_count: int | None = None
    trend_bins: Sequence[tuple[datetime, int]] = ()


@dataclass(frozen=True)
class SlackMessage:
    """One Slack message: a plain ``text`` fallback and Block Kit ``blocks``."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The payload fields (``text``, ``blocks``) as JSON-ready data."""
        return {"text": self.text, "blocks": self.blocks}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlackMessage:
        """Rebuild a message stored with :meth:`to_json`."""
        return cls(text=str(data["text"]), blocks=list(data.get("blocks") or []))


@dataclass(frozen=True)
class Digest:
    """A digest ready to deliver: the first message is the parent, the rest follow-ups.

    ``digest_key`` identifies what the digest reports (the set of changes, or the summary
    period), so the outbox can refuse to store the same digest twice; ``content_hash``
    identifies the exact messages. ``text`` is the whole digest as plain text.
    """

    kind: Literal["changes", "summary"]
    digest_key: str
    text: str
    messages: list[SlackMessage]
    # The article ids listed under each change (:func:`listed_key`), in order: what the web
    # page of a sent digest shows, whatever has been stored since.
    listed: Mapping[str, Sequence[int]] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the messages, stable across runs and machines."""
        payload = json.dumps([m.to_json() for m in self.messages], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """Everything needed to deliver the digest later, for the outbox."""
        return {
            "kind": self.kind,
            "digest_key": self.digest_key,
            "content_hash": self.content_hash,
            "text": self.text,
            "messages": [m.to_json() for m in self.messages],
            **({"listed": {key: list(ids) for key, ids in self.listed.items()}} if self.listed else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Digest:
        """Rebuild a digest stored with :meth:`to_json`: deliver the stored messages,
        never rebuilt ones, so a retry sends exactly what the first attempt started."""
        kind = data["kind"]
        if kind not in ("changes", "summary"):
            raise ValueError(f"unknown digest kind {kind!r}")
        return cls(
            kind=kind,
            digest_key=str(data["digest_key"]),
            text=str(data["text"]),
            messages=[SlackMessage.from_json(m) for m in data["messages"]],
            listed={str(key): [int(i) for i in ids] for key, ids in (data.get("listed") or {}).items()},
        )


def listed_key(series: str, at: datetime, direction: str) -> str:
    """The key of one change in :attr:`Digest.listed`."""
    return f"{series} {at.isoformat()} {direction}"


# ---------------------------------------------------------------------------------------
# Public builders
# ---------------------------------------------------------------------------------------


def build_change_digest(
    changes: Sequence[DigestChange],
    *,
    web_base_url: str | None,
    generated_at: datetime,
    labels: Mapping[str, str] | None = None,
    message_budget: int = DEFAULT_MESSAGE_BUDGET,
    stories: Sequence[DigestStory] | None = None,
) -> Digest:
    """The digest for ``changes`` (at least one): an overview, then a section per change.

    Watch items come before topics, then changes are in time order. ``labels`` maps series
    names to display names (default: the slug, humanised). ``web_base_url`` adds links to
    the web UI's article list for each series.

    With ``stories``, articles are not listed under each change: every story is shown
    once after the changes, with the series it moved and those series' figures, then its
    articles, so an article that counted for two series appears once.
    """
    if not changes:
        raise ValueError("a change digest needs at least one change")
    labels = labels or {}
    web_base_url = redact_optional(web_base_url)  # digests never carry credentials
    ordered = sorted(
        changes, key=lambda c: (not c.change.series.startswith("watch:"), c.change.at, c.change.series)
    )
    key_source = "\n".join(
        sorted(f"{c.change.series}|{_iso(c.change.at)}|{c.change.direction}" for c in ordered)
    )
    digest_key = "changes:" + hashlib.sha256(key_source.encode("utf-8")).hexdigest()[:32]

    if len(ordered) == 1:
        only = ordered[0].change
        title = f"Coverage change: {_label(only.series, labels)} {ARROWS.get(only.direction, '')}"
    else:
        ups = sum(1 for c in ordered if c.change.direction == "up")
        moves = f"{ups} up, {len(ordered) - ups} down"
        names = len({c.change.series for c in ordered})
        # (Two changes of one series, a burst and the silence after it reported late, are
        # two changes in one series.)
        title = (
            f"Coverage changed in {len(ordered)} series ({moves})"
            if names == len(ordered)
            else f"{len(ordered)} coverage changes in {_plural(names, 'series', 'series')} ({moves})"
        )
    generated = f"Generated {_when(generated_at)}"
    intro = [_Unit([_header(title)], title), _Unit([_context([generated])], generated)]
    overview_lines = [_overview_line(c.change, labels) for c in ordered]
    units = intro + _line_sections(overview_lines) if len(ordered) > 1 else intro
    for item in ordered:
        units.append(_change_unit(item, labels, web_base_url, generated_at, with_articles=stories is None))
    if stories:
        by_series: dict[str, list[ChangeLike]] = {}
        for c in ordered:
            by_series.setdefault(c.change.series, []).append(c.change)
        heading = f"{_plural(len(stories), 'story', 'stories')} behind these changes"
        units.append(_Unit([{"type": "divider"}, _section(f"*{_escape(heading)}*")], f"\n{heading}"))
        for number, story in enumerate(stories, 1):
            units.append(_story_unit(number, story, by_series, labels))
    return _assemble("changes", digest_key, units, continuation=f"{title} (continued)", budget=message_budget)


def build_summary_digest(
    series_totals: Sequence[SeriesTotal],
    top_articles: Sequence[DigestArticle],
    *,
    period_start: datetime,
    period_end: datetime,
    web_base_url: str | None,
    changes: Sequence[ChangeLike] = (),
    labels: Mapping[str, str] | None = None,
    message_budget: int = DEFAULT_MESSAGE_BUDGET,
    article_count: int | None = None,
) -> Digest:
    """The scheduled summary: articles per series in the period, its changes, top articles.

    Series are listed by count (busiest first) with the previous period's count and a
    sparkline; series without coverage are named on one line at the end. ``article_count``
    is the number of new articles in the period (one article can move several series);
    without it, the series counts are added up.
    """
    labels = labels or {}
    web_base_url = redact_optional(web_base_url)  # digests never carry credentials
    span = period_end - period_start
    if span == timedelta(days=1):
        title = f"Daily coverage summary: {period_start.day} {period_start:%B %Y}"
    elif span == timedelta(days=7):
        title = f"Weekly coverage summary: week to {period_end.day} {period_end:%B %Y}"
    else:
        title = f"Coverage summary: {_when(period_start)} – {_when(period_end)}"
    digest_key = summary_key(period_start, period_end)
    total = sum(s.count for s in series_totals) if article_count is None else article_count
    period = f"{_when(period_start)} – {_when(period_end)} · {_plural(total, 'new article')}"
    units = [_Unit([_header(title)], title), _Unit([_context([period])], period)]

    active = sorted((s for s in series_totals if s.count > 0), key=lambda s: (-s.count, s.series))
    silent = sorted(s.series for s in series_totals if s.count == 0)
    lines = []
    for item in active:
        previous = "" if item.previous_count is None else f" (previous period {item.previous_count})"
        spark = f" `{sparkline([c for _, c in item.trend_bins])}`" if item.trend_bins else ""
        name = _label(item.series, labels)
        # (The period's articles, as counted: not those of the whole day, nor those since.)
        link_target = _series_url(web_base_url, item.series, period_start, period_end)
        shown = _link(link_target, name) if link_target else f"*{_escape(name)}*"
        lines.append(
            (
                f"{shown} ({_kind(item.series)}): {item.count}{previous}{spark}",
                f"{name} ({_kind(item.series)}): {item.count}{previous}"
                + (f" {sparkline([c for _, c in item.trend_bins])}" if item.trend_bins else ""),
            )
        )
    if silent:
        names = [_label(s, labels) for s in silent]
        intro = "_No new coverage:_ "
        shown = _listing([_escape(name) for name in names], MAX_SECTION_TEXT - len(intro))
        lines.append((intro + shown, f"No new coverage: {', '.join(names)}"))
    if not lines:
        lines.append(("_No series configured._", "No series configured."))
    units += _line_sections(lines, heading=("*Coverage by series*", "\nCoverage by series"))

    if changes:
        change_lines = [
            (
                f"{EMOJI.get(c.direction, '')} *{_escape(_label(c.series, labels))}*: "
                f"{_escape(c.explanation)}",
                f"{ARROWS.get(c.direction, '')} {_label(c.series, labels)}: {c.explanation}",
            )
            for c in sorted(changes, key=lambda c: (c.at, c.series))
        ]
        units.append(_Unit([{"type": "divider"}], ""))
        units += _line_sections(change_lines, heading=("*Changes reported*", "\nChanges reported"))
    if top_articles:
        units.append(_Unit([{"type": "divider"}], ""))
        units += _line_sections(
            [_article_lines(a) for a in top_articles], heading=("*Top new articles*", "\nTop new articles")
        )
    if web_base_url:
        text = f"<{_safe_url(web_base_url.rstrip('/') + '/articles')}|Browse all articles in summitwatch>"
        units.append(_Unit([_context([text])], f"Browse all articles: {web_base_url.rstrip('/')}/articles"))
    return _assemble("summary", digest_key, units, continuation=f"{title} (continued)", budget=message_budget)


def render_plain(digest: Digest) -> str:
    """The whole digest as plain text, for stdout, a file or ``--dry-run``."""
    return digest.text


def sparkline(counts: Sequence[int]) -> str:
    """``[0, 1, 4, 8]`` → ``▁▂▅█``: a bar per count, scaled to the largest.

    A zero is always the lowest bar and any non-zero count is at least the second, so
    silence and a little coverage look different.
    """
    if not counts:
        return ""
    top = max(counts)
    if top <= 0:
        return SPARK_CHARS[0] * len(counts)
    levels = len(SPARK_CHARS) - 1
    return "".join(
        SPARK_CHARS[0] if count <= 0 else SPARK_CHARS[max(1, -(-count * levels // top))] for count in counts
    )


def latest_summary_period(now: datetime, *, every: timedelta, at: time) -> tuple[datetime, datetime]:
    """The most recent summary period that has ended by ``now``: ``(start, end)``.

    Periods end at ``at`` (UTC) every ``every``; weekly ones end on Mondays. The caller
    keys the summary digest by this period, so asking again before the next slot gives
    the same period and the outbox refuses a second summary.
    """
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    # An anchor on a Monday makes weekly periods end on Mondays; daily ones don't care.
    anchor = datetime(1970, 1, 5, at.hour, at.minute, tzinfo=UTC)
    end = now - (now - anchor) % every
    return end - every, end


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup (``&``, ``<``, ``>``)."""
    return _escape(text)


# ---------------------------------------------------------------------------------------
# Units and packing
# ---------------------------------------------------------------------------------------


@dataclass
class _Unit:
    """Blocks that belong together (kept in one message when they fit) and their plain text."""

    blocks: list[Block]
    plain: str


def _story_unit(
    number: int, story: DigestStory, changes: Mapping[str, Sequence[ChangeLike]], labels: Mapping[str, str]
) -> _Unit:
    moved = []
    for series in story.series:
        # The story's own changes of the series; else the series' changes in the digest.
        own = [c for c in story.changes if c.series == series] or changes.get(series, [])
        figures = [
            f"{ARROWS.get(c.direction, '')} {c.count} vs {format_number(c.baseline)} expected" for c in own
        ]
        moved.append(f"{_label(series, labels)} {', '.join(figures)}".strip())
    languages = sorted(
        {a.lang for a in story.articles if a.lang} | {lang for a in story.articles for lang, _ in a.also_in}
    )
    outlets = len({a.source for a in story.articles if a.source})
    facts = [_plural(len(story.articles), "article")]
    if outlets > 1:
        facts.append(f"{outlets} outlets")
    if languages:
        facts.append(", ".join(languages))
    heading = f"Story {number} · {' · '.join(facts)}"
    moved_text = "Moved: " + "; ".join(moved) if moved else ""
    mrkdwn = [f"*{_escape(heading)}*"]
    if moved:
        room = MAX_SECTION_TEXT - slack_length(mrkdwn[0]) - len("\nMoved: ")
        mrkdwn.append("Moved: " + _listing([_escape(m) for m in moved], room, separator="; "))
    plain = ["", heading] + ([moved_text] if moved_text else [])
    blocks: list[Block] = [_section("\n".join(mrkdwn))]
    article_lines = [_article_lines(a) for a in story.articles]
    for text in _pack_lines([m for m, _ in article_lines]):
        blocks.append(_section(text))
    plain += [p for _, p in article_lines]
    return _Unit(blocks, "\n".join(plain))


def _change_unit(
    item: DigestChange,
    labels: Mapping[str, str],
    web_base_url: str | None,
    generated_at: datetime,
    *,
    with_articles: bool = True,
) -> _Unit:
    change = item.change
    name = _label(change.series, labels)
    counts = [count for _, count in item.trend_bins]
    trend = ""
    if counts:
        trend = (
            f"`{sparkline(counts)}` {_trend_label(item.trend_bins, generated_at)}, "
            f"max {max(counts)} per {_bin_label(item.trend_bins)}"
        )
    direction_word = "up" if change.direction == "up" else "down"
    mrkdwn_lines = [
        f"{EMOJI.get(change.direction, '')} *{_escape(name)}* ({_kind(change.series)}) · *{direction_word}*",
        _escape(change.explanation),
    ]
    plain_lines = [
        f"{ARROWS.get(change.direction, '')} {name} ({_kind(change.series)}), {direction_word}",
        change.explanation,
    ]
    if trend:
        mrkdwn_lines.append(trend)
        plain_lines.append(trend.replace("`", ""))
    blocks: list[Block] = [{"type": "divider"}, _section("\n".join(mrkdwn_lines))]
    plain = ["", *plain_lines]
    if item.articles and with_articles:
        article_lines = [_article_lines(a) for a in item.articles]
        for text in _pack_lines([m for m, _ in article_lines]):
            blocks.append(_section(text))
        plain += [p for _, p in article_lines]
    elif change.direction == "up" and with_articles:
        plain.append("(no articles to show)")
    link = _series_url(web_base_url, change.series, change.at - timedelta(days=7))
    if link:
        blocks.append(_context([_link(link, f"All {name} articles in summitwatch")]))
        plain.append(f"All articles: {link}")
    return _Unit(blocks, "\n".join(plain))


def _overview_line(change: ChangeLike, labels: Mapping[str, str]) -> tuple[str, str]:
    name = _label(change.series, labels)
    counts = f"{change.count} vs {format_number(change.baseline)} expected"
    return (
        f"{EMOJI.get(change.direction, '')} *{_escape(name)}* ({_kind(change.series)}): {counts}",
        f"{ARROWS.get(change.direction, '')} {name} ({_kind(change.series)}): {counts}",
    )


def _article_lines(article: DigestArticle) -> tuple[str, str]:
    """One article as (mrkdwn, plain), shrunk until the mrkdwn fits a section."""
    title_chars, evidence_chars = TITLE_CHARS, EVIDENCE_CHARS
    while True:
        mrkdwn, plain = _article_text(article, title_chars, evidence_chars)
        if slack_length(mrkdwn) <= MAX_SECTION_TEXT or title_chars <= 20:
            return _fit_mrkdwn(mrkdwn, MAX_SECTION_TEXT), plain
        title_chars, evidence_chars = title_chars // 2, evidence_chars // 2


def _article_text(article: DigestArticle, title_chars: int, evidence_chars: int) -> tuple[str, str]:
    # An article link may carry a subscriber key or signature: digests show it redacted.
    shown_url = redact_optional(article.url)
    title = _clip(
        _one_line(article.title) or _one_line(shown_url) or f"Article {article.article_id}", title_chars
    )
    url = shown_url if shown_url and _is_web_url(shown_url) and len(shown_url) <= MAX_LINK_URL else None
    details = [
        d
        for d in (
            _clip(_one_line(article.source), SOURCE_CHARS),
            _one_line(article.lang),
            _plural(article.copies, "copy", "copies", prefix="+") if article.copies > 0 else "",
        )
        if d
    ]
    detail_text = " · ".join(details)
    shown = _link(url, title) if url else f"*{_escape(title)}*"
    mrkdwn = f"• {shown}" + (f" — {_escape(detail_text)}" if detail_text else "")
    plain = (
        f"- {title}"
        + (f" — {detail_text}" if detail_text else "")
        + (f"\n  {shown_url}" if shown_url else "")
    )
    if article.also_in:
        also_in = [(lang, redact_optional(link)) for lang, link in article.also_in]
        linked = [
            _link(link, lang) if link and _is_web_url(link) and len(link) <= MAX_LINK_URL else _escape(lang)
            for lang, link in also_in
        ]
        mrkdwn += f" · also in: {', '.join(linked)}"
        plain += "\n  also in: " + ", ".join(f"{lang} {link}" if link else lang for lang, link in also_in)
    evidence = _clip(_one_line(article.evidence), evidence_chars)
    if evidence:
        mrkdwn += f"\n> {_escape(evidence)}"
        plain += f"\n  “{evidence}”"
    return mrkdwn, plain


def _line_sections(lines: Sequence[tuple[str, str]], heading: tuple[str, str] | None = None) -> list[_Unit]:
    """Lines packed into as few sections as the section limit allows, one unit per section."""
    mrkdwn = [m for m, _ in lines]
    plain = [p for _, p in lines]
    if heading:
        mrkdwn, plain = [heading[0], *mrkdwn], [heading[1], *plain]
    units = []
    cursor = 0
    for group in _group_lines(mrkdwn):
        # The plain text follows the same split, so each message's fallback matches its blocks.
        units.append(_Unit([_section("\n".join(group))], "\n".join(plain[cursor : cursor + len(group)])))
        cursor += len(group)
    return units


def _pack_lines(lines: Sequence[str]) -> list[str]:
    """Join lines with newlines into texts of at most ``MAX_SECTION_TEXT`` characters."""
    return ["\n".join(group) for group in _group_lines(lines)]


def _group_lines(lines: Sequence[str]) -> list[list[str]]:
    groups: list[list[str]] = []
    length = 0
    for line in lines:
        line = _fit_mrkdwn(line, MAX_SECTION_TEXT)
        size = slack_length(line)
        if groups and length + 1 + size <= MAX_SECTION_TEXT:
            groups[-1].append(line)
            length += 1 + size
        else:
            groups.append([line])
            length = size
    return groups


def _assemble(
    kind: Literal["changes", "summary"],
    digest_key: str,
    units: Sequence[_Unit],
    *,
    continuation: str,
    budget: int,
) -> Digest:
    """Pack units into messages under the block limit and the size budget."""
    reserved_blocks = 1  # the "continued" context block at the top of each follow-up
    reserved_chars = 200
    pages: list[list[_Unit]] = [[]]
    for unit in units:
        pieces = [unit] if _fits_alone(unit, budget, reserved_blocks, reserved_chars) else _split_unit(unit)
        for piece in pieces:
            page = pages[-1]
            block_count = sum(len(u.blocks) for u in page) + len(piece.blocks) + reserved_blocks
            chars = sum(_block_chars(u.blocks) for u in page) + _block_chars(piece.blocks) + reserved_chars
            if page and (block_count > MAX_BLOCKS or chars > budget):
                pages.append([])
            pages[-1].append(piece)
    messages = []
    total = len(pages)
    plain_parts: list[str] = []
    for number, page in enumerate(pages, start=1):
        blocks: list[Block] = []
        plain: list[str] = []
        if number > 1:
            label = f"{continuation} · part {number} of {total}"
            blocks.append(_context([_escape(label)]))
            plain.append(label)
        for position, unit in enumerate(page):
            # A divider opening a follow-up separates nothing.
            opens_page = position == 0 and number > 1
            divider_first = unit.blocks[:1] == [{"type": "divider"}]
            blocks += unit.blocks[1:] if opens_page and divider_first else unit.blocks
            if unit.plain:
                plain.append(unit.plain)
        text = "\n".join(plain).strip("\n")
        plain_parts.append(text)
        # The fallback text is mrkdwn too (notifications show it): escaped like the blocks,
        # so that a title can neither ping <!channel> nor pass off a link there either.
        messages.append(SlackMessage(text=_fit_mrkdwn(_escape(text), MAX_FALLBACK_TEXT), blocks=blocks))
    return Digest(kind=kind, digest_key=digest_key, text="\n\n".join(plain_parts) + "\n", messages=messages)


def _fits_alone(unit: _Unit, budget: int, reserved_blocks: int, reserved_chars: int) -> bool:
    return (
        len(unit.blocks) + reserved_blocks <= MAX_BLOCKS
        and _block_chars(unit.blocks) + reserved_chars <= budget
    )


def _split_unit(unit: _Unit) -> list[_Unit]:
    # Too big for any one message: let its blocks travel separately (the plain text stays
    # with the first so nothing is lost from the fallback).
    return [_Unit([block], unit.plain if i == 0 else "") for i, block in enumerate(unit.blocks)]


def _block_chars(blocks: Sequence[Block]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False))


# ---------------------------------------------------------------------------------------
# Blocks and text helpers
# ---------------------------------------------------------------------------------------


def _header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER_TEXT), "emoji": True},
    }


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit_mrkdwn(text, MAX_SECTION_TEXT)}}


def _context(texts: Sequence[str]) -> Block:
    elements = [
        {"type": "mrkdwn", "text": _fit_mrkdwn(t, MAX_SECTION_TEXT)} for t in texts[:MAX_CONTEXT_ELEMENTS]
    ]
    return {"type": "context", "elements": elements}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, title: str) -> str:
    # "|" ends the URL part of a Slack link, so a title may not contain one either.
    return f"<{_safe_url(url)}|{_escape(title).replace('|', '¦')}>"


def _safe_url(url: str) -> str:
    """The URL as Slack wants it inside ``<…|…>``: characters that would end the link
    (``|``, ``<``, ``>``, spaces) percent-encoded, and ``&`` escaped like all mrkdwn text."""
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._").replace("&", "&amp;")


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _series_url(
    web_base_url: str | None, series: str, since: datetime, until: datetime | None = None
) -> str | None:
    """The web UI's list of ``series``' articles from the day of ``since`` on; with ``until``,
    those from ``since`` to just before ``until`` (whole days when both are midnights UTC,
    moments otherwise: the web UI's links to a window write it so)."""
    if not web_base_url or ":" not in series:
        return None
    kind, slug = series.split(":", 1)
    start = since.astimezone(UTC)
    bounds = {"since": f"{start:%Y-%m-%d}"}
    if until is not None:
        end = until.astimezone(UTC)
        if start.time() == end.time() == time(0, 0):
            bounds["until"] = f"{end - timedelta(days=1):%Y-%m-%d}"
        else:
            last = end - timedelta(microseconds=1)
            bounds = {"since": f"{start:%Y-%m-%dT%H:%M:%S}Z", "until": f"{last:%Y-%m-%dT%H:%M:%S.%f}Z"}
    query = urlencode({kind: slug, **bounds})
    return f"{web_base_url.rstrip('/')}/articles?{query}"


def _label(series: str, labels: Mapping[str, str]) -> str:
    if series in labels:
        return labels[series]
    words = series.split(":", 1)[-1].replace("_", " ").split()
    if not words:
        return series
    # Title case reads right for named things ("Power of Siberia 2", "Middle East").
    return " ".join(w if i and w in _SMALL_WORDS else w[:1].upper() + w[1:] for i, w in enumerate(words))


def _kind(series: str) -> str:
    return "watch item" if series.startswith("watch:") else "topic"


def _one_line(text: str | None) -> str:
    # (Without bidirectional controls: a headline's unclosed right-to-left override would
    # turn the rest of its line around, outlet and language included.)
    return re.sub(r"\s+", " ", one_direction(text or "")).strip()


def slack_length(text: str) -> int:
    """Characters as Slack counts them for its limits: UTF-16 code units, so an emoji or a
    rare CJK character outside the Basic Multilingual Plane counts two."""
    return len(text) + sum(1 for char in text if char > "\uffff")


def _fit(text: str, limit: int) -> str:
    """The longest start of ``text`` within ``limit`` (:func:`slack_length`), cut between
    characters and never inside an escaped character (``&amp;``: a bare ``&`` is left)."""
    if len(text) <= limit // 2 or slack_length(text) <= limit:
        return text
    size = 0
    for index, char in enumerate(text):
        size += 2 if char > "\uffff" else 1
        if size > limit:
            # Not inside what reads as one character (a flag's two letters, an emoji and
            # its modifiers, a letter and its marks).
            while index > 0 and joins_previous(text, index):
                index -= 1
            return _OPEN_ENTITY.sub("", text[:index])
    return text


def _clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` (with "…"), cut at a space near the end rather than inside
    a word (a text without spaces nearby, such as Chinese, is cut where it must be)."""
    if slack_length(text) <= limit:
        return text
    cut = _fit(text, max(0, limit - 1))
    if cut and not cut[-1].isspace() and not text[len(cut)].isspace():
        space = cut.rfind(" ", max(0, len(cut) - CLIP_TO_SPACE))
        if space > 0:
            cut = cut[:space]
    return cut.rstrip() + "…"


def _clip_mrkdwn(text: str, limit: int) -> str:
    """:func:`_clip` for mrkdwn: never inside an escaped character or a ``<link|title>``."""
    if slack_length(text) <= limit:
        return text
    cut = _fit(text, max(0, limit - 1))
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut.rstrip() + "…"


def _fit_mrkdwn(text: str, limit: int) -> str:
    """mrkdwn lines within ``limit``: the first whole lines that fit, then "… +N more
    lines" for those left out (a first line too long alone is clipped, :func:`_clip_mrkdwn`)."""
    if slack_length(text) <= limit:
        return text
    lines = text.split("\n")
    size = -1
    for kept, line in enumerate(lines):
        left = len(lines) - kept
        if size + 1 + slack_length(line) + len(_more(left - 1, "line")) + 1 > limit:
            break
        size += 1 + slack_length(line)
    if kept == 0:
        marker = _more(left - 1, "line")
        first = _clip_mrkdwn(lines[0], limit - (len(marker) + 1 if marker else 0))
        return first + (f"\n{marker}" if marker else "")
    return "\n".join([*lines[:kept], _more(left, "line")])


def _listing(items: Sequence[str], limit: int, *, separator: str = ", ") -> str:
    """``items`` (mrkdwn) joined by ``separator``: as many whole ones as fit ``limit``, then
    "… +N more" for those left out."""
    joined = separator.join(items)
    if slack_length(joined) <= limit:
        return joined
    size = -len(separator)
    kept = 0
    for item in items:
        marker = _more(len(items) - kept - 1)
        if size + len(separator) + slack_length(item) + len(separator) + len(marker) > limit:
            break
        size += len(separator) + slack_length(item)
        kept += 1
    marker = _more(len(items) - kept)
    if kept == 0:
        return _clip_mrkdwn(items[0], limit - len(separator) - len(_more(len(items) - 1))) + (
            separator + _more(len(items) - 1) if len(items) > 1 else ""
        )
    return separator.join([*items[:kept], marker])


def _more(count: int, noun: str = "") -> str:
    """ "… +3 more" (or "… +3 more lines"); empty for none."""
    if count <= 0:
        return ""
    return f"… +{count} more" + (f" {noun}{'' if count == 1 else 's'}" if noun else "")


def _plural(count: int, singular: str, plural: str | None = None, *, prefix: str = "") -> str:
    noun = singular if count == 1 else (plural or singular + "s")
    return f"{prefix}{count} {noun}"


def summary_key(start: datetime, end: datetime) -> str:
    """The key of the summary digest of the period from ``start`` to ``end``."""
    return f"summary:{_iso(start)}/{_iso(end)}"


def _iso(moment: datetime) -> str:
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _when(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _bin_label(bins: Sequence[tuple[datetime, int]]) -> str:
    if len(bins) < 2:
        return "bin"
    size = bins[1][0] - bins[0][0]
    if size == timedelta(days=1):
        return "day"
    hours = size / timedelta(hours=1)
    return f"{hours:g} h"


def _trend_label(bins: Sequence[tuple[datetime, int]], generated_at: datetime) -> str:
    """ "last 14 days" when the trend runs up to the digest; otherwise "14 days to <date>".

    The trend ends where its change was detected; a change reported a bin or more after
    that (a back-fill, a digest that waited for Slack) gets the date, not "last".
    """
    if len(bins) < 2:
        return "trend"
    step = bins[1][0] - bins[0][0]
    span = (bins[-1][0] - bins[0][0]) + step
    days = span / timedelta(days=1)
    length = f"{days:g} days" if days >= 2 else f"{span / timedelta(hours=1):g} h"
    end = bins[-1][0] + step
    if generated_at - end < 2 * step:
        return f"last {length}"
    return f"{length} to {_when(end)}"
