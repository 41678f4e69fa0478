"""The read-only web UI (``summitwatch serve``): a thin layer over :mod:`pipeline.db.repo`.

:func:`create_app` builds a Starlette application. Its lifespan creates the database
engine (after checking the schema) and disposes of it on shutdown; each request opens
its own session and never commits. Only GET and HEAD are routed.

Pages are Jinja2 templates with autoescaping on: titles, texts and evidence come from
the open web and are treated as hostile. The pages need no JavaScript and load nothing
from other hosts, and a Content-Security-Policy tells the browser so. The UI has no
login: it is meant to listen on this machine (or behind a proxy), so a request naming a
host it is not known by is refused (:class:`KnownHosts`), which keeps a web page that
rebinds its own name to this machine's address from reading it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import browse, nearby
from pipeline.browse import lower_bound, upper_bound
from pipeline.classify import Entry, TopicRegistry
from pipeline.coverage import MAX_HISTORY_DAYS, Change, ChangeMemo, DetectorConfig, as_utc
from pipeline.db import repo
from pipeline.db.engine import current_revision, make_engine, require_current_schema, session_factory
from pipeline.db.schema import (
    CONTROL_CHARACTERS,
    MAX_ROW_ID,
    Article,
    ArticleVector,
    ArticleVersion,
    CoverageChange,
    DigestOutbox,
    Sighting,
    utcnow,
)
from pipeline.digest import listed_key
from pipeline.errors import FilterError, SummitwatchError
from pipeline.formatting import echoed, format_number, json_line, one_direction
from pipeline.redaction import redact_optional, redact_text, redact_url
from pipeline.reporting import compute_coverage, coverage_window, load_reporting_config, top_articles
from pipeline.settings import Settings

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

DEFAULT_LIMIT = 20  # as `summitwatch articles`
MAX_LIMIT = 200
# repo.search_articles has no offset, so a page is cut from the newest matching rows;
# pages deeper than this are refused with a hint to narrow the filters.
MAX_WINDOW = 5000
MAX_QUERY_CHARS = 500  # as pipeline.search.MAX_QUERY_CHARS
MAX_EXPORT = 5000  # rows in one CSV or JSON Lines export
FORMATS = ("html", "csv", "jsonl")
MAX_COVERAGE_DAYS = MAX_HISTORY_DAYS  # what is counted, as for `coverage --days`
SPARK_HEIGHT = 32  # the coverage sparkline, in SVG units: a bar per day
SPARK_STEP = 6
# Ids are INTEGER on both databases; a larger one would overflow the driver, not miss.
MAX_ID = MAX_ROW_ID
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A moment whose "+03:00" was typed into the address bar unencoded: the query string reads a
# "+" as a space, so the offset arrives as " 03:00" (a "-" offset arrives as it was typed).
_SPACED_OFFSET = re.compile(r"(T[\d:.,]+) (\d{2}(?::?\d{2})?)$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


log = logging.getLogger(__name__)

# Application ------------------------------------------------------------------------------


class Resources:
    """What the running app holds: created in the lifespan, released on shutdown.

    The topic registry and the digest settings are read again when their files change
    (each load is cached by the file's size and modification time, so a request costs a
    ``stat``): a watch item added and back-filled with ``reclassify`` is listed, filtered
    and charted without restarting ``serve``. A file left invalid (mid-edit) is reported in
    the log and the last good one kept.
    """

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        cross_language: browse.CrossLanguage,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.settings = settings
        self.cross_language = cross_language
        self._loaded = load_reporting_config(settings)  # (the first load's errors stop the start)
        self._reported: str | None = None
        self._lock = threading.Lock()

    def loaded(self) -> tuple[DetectorConfig, TopicRegistry]:
        """The digest settings and the registry, read together (one file version each)."""
        try:
            loaded = load_reporting_config(self.settings)
        except SummitwatchError as exc:
            with self._lock:
                if str(exc) != self._reported:  # (once per error, not once per request)
                    self._reported = str(exc)
                    log.warning("configuration not reloaded, the last good one kept: %s", exc)
                return self._loaded
        with self._lock:
            self._loaded, self._reported = loaded, None
        return loaded

    @property
    def registry(self) -> TopicRegistry:
        return self.loaded()[1]

    @property
    def detector(self) -> DetectorConfig:
        return self.loaded()[0]


def create_app(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, hosts: Iterable[str] = ()
) -> Starlette:
    """The web UI over the database in ``settings``; ``clock`` gives "now" (tests pin it).

    Requests must name this machine (an address, ``localhost``, its host name), the host of
    ``settings.web_base_url`` or one of ``hosts`` (the name it listens on): see
    :class:`KnownHosts`.

    Creating the app connects to nothing. Its lifespan creates the engine, refuses to
    start on a missing or outdated schema (run ``summitwatch init``), loads the topic
    registry and the coverage settings, and disposes of the engine on shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.db_url, long_lived=True)
        try:
            resources = await run_in_threadpool(_start, settings, engine)
            yield {"resources": resources}
        finally:
            engine.dispose()

    _register_record_ids()
    site = _Site(settings, _template_environment(), clock)
    routes: list[BaseRoute] = [
        Route("/", site.article_list, methods=["GET"], name="home"),
        # The digest links to /articles?topic=…&since=…; it is the same page.
        Route("/articles", site.article_list, methods=["GET"], name="articles"),
        Route("/articles/{article_id:record_id}", site.article_detail, methods=["GET"], name="article"),
        Route("/coverage", site.coverage, methods=["GET"], name="coverage"),
        Route("/feeds", site.feeds, methods=["GET"], name="feeds"),
        Route("/digests", site.digests, methods=["GET"], name="digests"),
        Route("/digests/{digest_id:record_id}", site.digest_detail, methods=["GET"], name="digest"),
        Route("/healthz", site.healthz, methods=["GET"], name="healthz"),
        Route("/api/articles", site.api_articles, methods=["GET"], name="api_articles"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(KnownHosts, names=known_host_names(settings, hosts)),
        ],
        exception_handlers={
            HTTPException: site.http_error,
            SQLAlchemyError: site.database_error,
            SummitwatchError: site.configuration_error,
        },
    )


def _start(settings: Settings, engine: Engine) -> Resources:
    require_current_schema(engine)
    cross_language = browse.CrossLanguage(
        model=settings.encoder.model,
        threads=settings.encoder.threads,
        cache_dir=settings.encoder.cache_path,
        cache=nearby.VectorCache(),
    )
    return Resources(engine, session_factory(engine), settings, cross_language)


def known_host_names(settings: Settings, hosts: Iterable[str] = ()) -> frozenset[str]:
    """The names a request may give in its Host header besides an address: ``localhost``,
    this machine's names, the host of ``settings.web_base_url`` and ``hosts``."""
    names = {"localhost", socket.gethostname(), *hosts}
    with suppress(OSError):
        names.add(socket.getfqdn())
    if settings.web_base_url:
        with suppress(ValueError):
            names.add(urlsplit(settings.web_base_url).hostname or "")
    return frozenset(name for name in (_host_name(n) for n in names) if name)


def _host_name(host: str) -> str:
    """``host`` (a name, an address, with or without its port) as it is compared: lower
    case, no port, no brackets, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class KnownHosts:
    """Refuses (400) a request whose Host header names a host the UI is not known by.

    An address is always accepted (a page can only rebind a *name* to this machine), as are
    ``localhost`` and its subdomains (RFC 6761) and :func:`known_host_names`. A browser
    always sends the header; a request without one (HTTP/1.0) is served.
    """

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = [value for name, value in scope["headers"] if name == b"host"]
            host = _host_name(given[0].decode("latin-1")) if given else ""
            if given and not (_is_address(host) or host in self.names or host.endswith(".localhost")):
                response = Response(
                    "Unknown host: this UI answers to its own names (set SUMMITWATCH_WEB_BASE_URL "
                    "to the address it is reached at).\n",
                    status_code=400,
                    media_type="text/plain",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response (pages, errors, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _template_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["day"] = lambda moment: f"{moment:%Y-%m-%d}" if moment else ""
    environment.filters["when"] = lambda moment: f"{as_utc(moment):%Y-%m-%d %H:%M} UTC" if moment else ""
    environment.filters["web_url"] = web_url
    # URLs and error texts are shown with credentials redacted (hrefs too: web_url).
    environment.filters["redact"] = redact_optional
    environment.filters["redact_text"] = lambda text: redact_text(text) if text else text
    environment.filters["one_direction"] = one_direction
    environment.filters["label"] = _display_name
    environment.filters["number"] = format_number  # as change explanations and `coverage` write them
    # An article without a headline is named by its opening words, as the lists name it.
    environment.filters["display_title"] = browse.display_title
    # A window ending at 00:00 ends on the day before (for an inclusive "until" day).
    environment.filters["end_day"] = lambda moment: f"{moment - timedelta(seconds=1):%Y-%m-%d}"
    environment.globals["window_query"] = window_query
    # A since/until field shows a moment (a change's window) to the second, in UTC.
    environment.filters["is_moment"] = lambda when: isinstance(when, datetime)
    environment.filters["input_value"] = lambda when: (
        when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        if isinstance(when, datetime)
        else when.isoformat()
        if when
        else ""
    )
    return environment


@jinja2.pass_context
def _display_name(context: jinja2.runtime.Context, slug: str) -> str:
    """A topic's or watch item's display name (``label`` in ``config/topics.yaml``)."""
    names: dict[str, str] = context.get("display_names") or {}
    return names.get(slug) or slug.replace("_", " ")


def web_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) address safe to put in a link (credentials redacted),
    else ``None``."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return redact_url(url) if parts.scheme in ("http", "https") and parts.netloc else None


# Query parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """The article filters of ``/``, ``/articles`` and ``/api/articles`` (as the CLI's flags).

    :meth:`link` writes them back as a stable query string: the same filters always give
    the same URL, so a result can be pasted into Slack and opened by someone else.
    """

    topic: str | None = None
    watch: str | None = None
    lang: str | None = None
    feed: str | None = None
    # A day, or a moment (a change's window need not start or end at midnight UTC).
    since: date | datetime | None = None
    until: date | datetime | None = None
    q: str | None = None
    sort: str = "relevance"
    xlang: bool = True  # a search also finds coverage in other languages, by meaning
    duplicates: bool = False
    seeds: bool = False
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    @property
    def next_page_allowed(self) -> bool:
        """Whether :func:`parse_list_query` accepts the page after this one (see MAX_WINDOW)."""
        return (self.page + 1) * self.limit <= MAX_WINDOW

    @property
    def filtered(self) -> bool:
        """Whether anything narrows or widens the default list."""
        return self != ListQuery(page=self.page, limit=self.limit)

    def to_filter(self, *, limit: int | None = None) -> repo.ArticleFilter:
        """The repository filter for this page (``limit`` rows from the page's offset)."""
        return repo.ArticleFilter(
            topic=self.topic,
            watch=self.watch,
            lang=self.lang,
            feed=self.feed,
            since=lower_bound(self.since) if self.since else None,
            until=upper_bound(self.until) if self.until else None,
            text=self.q,
            include_duplicates=self.duplicates,
            include_seeds=self.seeds,
            sort=self.sort,
            limit=limit or self.limit,
            offset=self.offset,
        )

    def link(self, **changes: Any) -> str:
        """The query string (``?…``, or ``""``) for these filters with ``changes`` applied."""
        target = replace(self, **changes)
        params: list[tuple[str, str]] = []
        for name in ("q", "topic", "watch", "lang", "feed"):
            value = getattr(target, name)
            if value:
                params.append((name, value))
        if target.since:
            params.append(("since", when_parameter(target.since)))
        if target.until:
            params.append(("until", when_parameter(target.until)))
        if target.sort != "relevance":
            params.append(("sort", target.sort))
        if not target.xlang:
            params.append(("xlang", "0"))
        if target.duplicates:
            params.append(("duplicates", "1"))
        if target.seeds:
            params.append(("seeds", "1"))
        if target.limit != DEFAULT_LIMIT:
            params.append(("limit", str(target.limit)))
        if target.page != 1:
            params.append(("page", str(target.page)))
        return f"?{urlencode(params)}" if params else ""

    def export_link(self, fmt: str) -> str:
        """This result (from its first row, up to the export limit) as ``fmt``."""
        link = self.link(page=1, limit=DEFAULT_LIMIT)
        return f"{link}&format={fmt}" if link else f"?format={fmt}"


def when_parameter(when: date | datetime) -> str:
    """A ``since``/``until`` value as a link writes it: the day, or the moment in UTC."""
    if isinstance(when, datetime):
        moment = when.astimezone(UTC)
        if moment.microsecond:
            return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        # (isoformat, not strftime: "%Y" leaves a year before 1000 unpadded, "999-05-01".)
        return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    return when.isoformat()


def window_query(kind: str, slug: str, start: datetime, end: datetime) -> str:
    """The ``/articles`` query string of one series' articles from ``start`` to just before
    ``end`` (a change's window): whole days when the window is, moments otherwise."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    midnight = datetime.min.time()
    if start.time() == midnight and end.time() == midnight:
        since: date | datetime = start.date()
        until: date | datetime = end.date() - timedelta(days=1)
    else:
        since, until = start, end - timedelta(microseconds=1)
    return "?" + urlencode({kind: slug, "since": when_parameter(since), "until": when_parameter(until)})


class BadRequest(HTTPException):
    """A query parameter that cannot be used; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def parse_list_query(params: QueryParams, registry: TopicRegistry) -> ListQuery:
    """Read and check the article filters; :class:`BadRequest` names the bad parameter.

    Empty values count as absent (a GET form submits every field).
    """
    topic = _text(params, "topic")
    if topic is not None and topic not in _slugs(registry.topics):
        raise BadRequest(f"unknown topic {echoed(topic)}; topics: {', '.join(_slugs(registry.topics))}")
    watch = _text(params, "watch")
    if watch is not None and watch not in _slugs(registry.watch):
        raise BadRequest(
            f"unknown watch item {echoed(watch)}; watch items: {', '.join(_slugs(registry.watch))}"
        )
    lang = _text(params, "lang")
    try:
        lang = browse.language_filter(lang, option="lang")
    except FilterError as exc:
        raise BadRequest(str(exc)) from None
    feed = _text(params, "feed")
    if feed is not None and len(feed) > 300:
        raise BadRequest("feed: longer than 300 characters")
    q = _text(params, "q")
    if q is not None and len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"q: longer than {MAX_QUERY_CHARS} characters")
    sort = _text(params, "sort") or "relevance"
    if sort not in repo.SORTS:
        raise BadRequest(f"sort: expected one of {', '.join(repo.SORTS)}, not {echoed(sort)}")
    exporting = parse_format(params) != "html"
    query = ListQuery(
        topic=topic,
        watch=watch,
        lang=lang,
        feed=feed,
        since=_date(params, "since"),
        until=_date(params, "until"),
        q=q,
        sort=sort,
        xlang=_flag(params, "xlang", default=True),
        duplicates=_flag(params, "duplicates"),
        seeds=_flag(params, "seeds"),
        page=_integer(params, "page", default=1, low=1, high=MAX_WINDOW),
        # (an export takes up to MAX_EXPORT rows, a page MAX_LIMIT)
        limit=_integer(
            params,
            "limit",
            default=DEFAULT_LIMIT,
            low=1,
            high=MAX_EXPORT if exporting else MAX_LIMIT,
        ),
    )
    if not exporting and query.offset + query.limit > MAX_WINDOW:
        # (an export starts from the first row whatever the page: up to MAX_EXPORT rows)
        raise BadRequest(
            f"page {query.page} is too deep (only the first {MAX_WINDOW} matches can be paged "
            "through): narrow the list with since, q or another filter"
        )
    return query


def parse_format(params: QueryParams) -> str:
    """``format``: html (default), csv or jsonl."""
    fmt = _text(params, "format") or "html"
    if fmt not in FORMATS:
        raise BadRequest(f"format: expected one of {', '.join(FORMATS)}, not {echoed(fmt)}")
    return fmt


class _RecordId(Convertor[int]):
    """A path's record id: up to 19 digits (Starlette's own ``int`` converts any length,
    and Python refuses over 4,300 digits with an error the page would show as a 500)."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


def _register_record_ids() -> None:
    if "record_id" not in CONVERTOR_TYPES:
        register_url_convertor("record_id", _RecordId())


def _date(params: QueryParams, name: str) -> date | datetime | None:
    """A day (``2026-11-01``) or a moment (``2026-11-01T10:00Z``, ``…+03:00``; UTC when
    no offset is given), as the CLI's ``--since``/``--until`` take them."""
    value = _text(params, name)
    if value is None:
        return None
    try:
        if _DAY.match(value):
            return date.fromisoformat(value)
        if "T" not in value:
            raise ValueError(value)
        moment = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", value))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except OverflowError:  # (a moment whose offset takes it past year 1 or 9999 in UTC)
        raise BadRequest(
            f"{name}: out of range: {echoed(value)} is not between 0001-01-01 and 9999-12-31 in UTC"
        ) from None
    except ValueError:
        raise BadRequest(
            f"{name}: not a date or a moment: {echoed(value)} "
            "(use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC unless an offset is given)"
        ) from None


def _slugs(entries: Sequence[Entry]) -> list[str]:
    return sorted(entry.slug for entry in entries)


def _text(params: QueryParams, name: str) -> str | None:
    value = params.get(name, "").strip()
    if CONTROL_CHARACTERS.search(value):
        # (PostgreSQL refuses NUL in text: the query would fail as if the database were down.)
        raise BadRequest(f"{name}: control characters are not allowed")
    return value or None


def _flag(params: QueryParams, name: str, *, default: bool = False) -> bool:
    value = params.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: expected 1 or 0, not {echoed(params.get(name, ''))}")


def _integer(params: QueryParams, name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"{name}: not a whole number: {echoed(raw)}")
    if len(raw.lstrip("0")) > len(str(high)):
        # (Before int(): Python refuses to convert over 4,300 digits.)
        raise BadRequest(f"{name}: must be between {low} and {high}, not {raw[:20]}…")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}, not {value}")
    return value


# What the pages show -----------------------------------------------------------------------


@dataclass(frozen=True)
class ResultPage:
    query: ListQuery
    rows: list[browse.ArticleRow]
    has_more: bool
    cross_language: list[browse.ArticleRow] = field(default_factory=list)

    @property
    def has_older(self) -> bool:
        """Whether to link the next page: more rows match, and it is not too deep to ask for."""
        return self.has_more and self.query.next_page_allowed


source_name = browse.source_name


def search(
    session: Session,
    query: ListQuery,
    *,
    limit: int | None = None,
    cross_language: browse.CrossLanguage | None = None,
) -> ResultPage:
    """One page of the article list (:func:`browse.list_articles`) for ``query``."""
    options = cross_language if query.xlang else None
    found = browse.list_articles(session, query.to_filter(limit=limit), cross_language=options)
    return ResultPage(query, found.rows, found.has_more, found.cross_language)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    css: str
    day: date


@dataclass(frozen=True)
class SeriesView:
    """One coverage series on the coverage page: daily counts and the changes in view."""

    name: str
    kind: str
    slug: str
    label: str
    description: str
    days: list[tuple[date, int]]
    changes: list[Change]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.days)

    @property
    def peak(self) -> tuple[date, int] | None:
        best = max(self.days, key=lambda day: (day[1], day[0]), default=None)
        return best if best and best[1] else None

    @property
    def first_day(self) -> date:
        return self.days[0][0]

    @property
    def spark_width(self) -> int:
        return len(self.days) * SPARK_STEP

    def day_link(self, day: date) -> str:
        """The articles of this series on ``day`` (a bar of the chart)."""
        return f"?{urlencode({self.kind: self.slug, 'since': day.isoformat(), 'until': day.isoformat()})}"

    def bars(self) -> list[Bar]:
        """An inline-SVG bar per day, scaled to the busiest day; days with a change stand out."""
        top = max((count for _, count in self.days), default=0)
        # A change is stamped with the end of its window: one at 00:00 is about the day before.
        changed = {(c.at - timedelta(seconds=1)).astimezone(UTC).date(): c.direction for c in self.changes}
        bars = []
        for index, (day, count) in enumerate(self.days):
            direction = changed.get(day)
            # An empty day is a hairline; one with a change (a fall to silence) a little more.
            silent = 2.0 if direction else 1.0
            height = max(3.0, count / top * (SPARK_HEIGHT - 2)) if count > 0 else silent
            label = f"{day:%Y-%m-%d}: {count} article{'' if count == 1 else 's'}"
            bars.append(
                Bar(
                    x=index * SPARK_STEP,
                    y=SPARK_HEIGHT - height,
                    width=SPARK_STEP - 1,
                    height=height,
                    label=f"{label}, change {direction}" if direction else label,
                    css=direction or ("count" if count > 0 else "zero"),
                    day=day,
                )
            )
        return bars


def daily_counts(
    bins: Sequence[tuple[datetime, int]], first_day: date, last_day: date
) -> list[tuple[date, int]]:
    """Sum ``bins`` (of any size up to a day) per UTC day from ``first_day`` to ``last_day``."""
    totals: dict[date, int] = {}
    for start, count in bins:
        day = start.astimezone(UTC).date()
        if first_day <= day <= last_day:
            totals[day] = totals.get(day, 0) + count
    span = (last_day - first_day).days + 1
    return [
        (first_day + timedelta(days=i), totals.get(first_day + timedelta(days=i), 0)) for i in range(span)
    ]


@dataclass(frozen=True)
class RelatedItem:
    """A story in "related coverage" on an article page."""

    id: int
    display_title: str
    lang: str
    source: str | None
    moment: datetime

    @classmethod
    def of(cls, article: Article) -> RelatedItem:
        return cls(
            article.id,
            browse.display_title(article),
            article.lang,
            browse.source_name(article),
            article.published_at or article.first_seen_at,
        )


@dataclass(frozen=True)
class DigestView:
    """One digest (one ``digest_key``) and its delivery to each destination (outbox rows)."""

    key: str
    kind: str
    created_at: datetime
    deliveries: list[DigestOutbox]
    changes: int

    @property
    def id(self) -> int:
        return self.deliveries[0].id

    @property
    def headline(self) -> str:
        text = str(self.deliveries[0].payload.get("text") or "")
        return next((line.strip() for line in text.splitlines() if line.strip()), self.key)

    @property
    def status(self) -> str:
        states = {row.status for row in self.deliveries}
        return states.pop() if len(states) == 1 else "mixed"


def digest_views(session: Session, rows: Sequence[DigestOutbox]) -> list[DigestView]:
    """Outbox rows grouped by digest (one per destination), newest digest first."""
    grouped: dict[str, list[DigestOutbox]] = {}
    for row in rows:
        grouped.setdefault(row.digest_key, []).append(row)
    ids = [row.id for row in rows]
    counts = (
        dict(
            session.execute(
                select(CoverageChange.digest_id, func.count())
                .where(CoverageChange.digest_id.in_(ids))
                .group_by(CoverageChange.digest_id)
            ).all()
        )
        if ids
        else {}
    )
    views = [
        DigestView(
            key,
            group[0].kind,
            min(row.created_at for row in group),
            sorted(group, key=lambda row: row.destination),
            sum(counts.get(row.id, 0) for row in group),
        )
        for key, group in grouped.items()
    ]
    return sorted(views, key=lambda view: (view.created_at, view.id), reverse=True)


# Views -------------------------------------------------------------------------------------


class _Site:
    """The request handlers, sharing the settings, the templates and the clock."""

    def __init__(
        self, settings: Settings, templates: jinja2.Environment, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.clock = clock
        # The coverage page detects changes over the whole history; what it found is kept
        # (keyed by the counts, so never stale), and requests arriving together wait for
        # one detection rather than each running its own.
        self.changes = ChangeMemo()
        self.coverage_lock = threading.Lock()

    # Pages

    def article_list(self, request: Request) -> Response:
        resources = _resources(request)
        query = parse_list_query(request.query_params, resources.registry)
        fmt = parse_format(request.query_params)
        if fmt != "html":
            return self.export(request, query, fmt)
        with resources.sessions() as session:
            error = None
            try:
                page = search(session, query, cross_language=resources.cross_language)
            except FilterError as exc:
                # The form stays on screen with the reason, so the query can be fixed.
                error, page = str(exc), ResultPage(query, [], has_more=False)
            languages = repo.languages(session)
            if query.lang and query.lang not in languages:
                languages.append(query.lang)
            return self.render(
                request,
                "articles.html",
                status_code=400 if error else 200,
                page=page,
                query=query,
                error=error,
                languages=languages,
                feeds=repo.list_feeds(session),
                topics=resources.registry.topics,
                watch_items=resources.registry.watch,
                max_window=MAX_WINDOW,
            )

    def export(self, request: Request, query: ListQuery, fmt: str) -> Response:
        """The result of ``query`` from its first row as CSV or JSON Lines (up to MAX_EXPORT rows)."""
        resources = _resources(request)
        wanted = replace(query, page=1)
        with resources.sessions() as session:
            try:
                explicit = bool(request.query_params.get("limit", "").strip())  # (empty: absent)
                page = search(
                    session,
                    wanted,
                    limit=None if explicit else MAX_EXPORT,
                    cross_language=resources.cross_language,
                )
            except FilterError as exc:
                raise BadRequest(str(exc)) from None
        name = "summitwatch-articles"
        rows = [*page.rows, *page.cross_language]
        if fmt == "csv":
            # A byte order mark first: Excel reads a CSV file without one in the machine's
            # legacy code page, and every Cyrillic or Chinese headline came out as mojibake.
            return Response(
                "\ufeff" + browse.csv_text(rows),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{name}.csv"'},
            )
        lines = "".join(json_line(browse.row_json(row)) + "\n" for row in rows)
        return Response(
            lines,
            media_type="application/x-ndjson; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}.jsonl"'},
        )

    def article_detail(self, request: Request) -> Response:
        resources = _resources(request)
        article_id: int = request.path_params["article_id"]
        with resources.sessions() as session:
            article = session.get(Article, article_id) if article_id <= MAX_ID else None
            if article is None:
                raise HTTPException(404, f"There is no article {article_id}.")
            topics, watch = repo.labels_of(session, [article.id])[article.id]
            copies = repo.copies_of(session, [article.id]).get(article.id, [])
            versions = session.scalars(
                select(ArticleVersion)
                .where(ArticleVersion.article_id == article.id)
                .order_by(ArticleVersion.replaced_at.desc(), ArticleVersion.id.desc())
            ).all()
            sightings = session.scalars(
                select(Sighting)
                .where(Sighting.article_id == article.id)
                .order_by(Sighting.seen_at, Sighting.id)
            ).all()
            registry = resources.registry
            allowance = self.settings.stories.cross_language_allowance
            neighbours = nearby.related_to(session, article, cross_language_allowance=allowance)
            related_articles = {
                a.id: a
                for a in session.scalars(
                    select(Article).where(Article.id.in_([n.root_id for n in neighbours]))
                )
            }
            browse.load_related(session, list(related_articles.values()))
            related = [
                (RelatedItem.of(related_articles[n.root_id]), n.similarity)
                for n in neighbours
                if n.root_id in related_articles
            ]
            return self.render(
                request,
                "article.html",
                article=article,
                display_title=browse.display_title(article),
                related=related,
                cross_language_allowance=allowance,
                has_vector=session.get(ArticleVector, article.id) is not None,
                source=source_name(article),
                paragraphs=paragraphs(article.text),
                topics=topics,
                watch=watch,
                copies=copies,
                versions=versions,
                sightings=sightings,
                descriptions={entry.slug: entry.description for entry in registry.entries},
            )

    def coverage(self, request: Request) -> Response:
        resources = _resources(request)
        detector, registry = resources.loaded()  # (the page reads one version of each file)
        days = _integer(
            request.query_params,
            "days",
            default=min(detector.coverage_days, MAX_COVERAGE_DAYS),
            low=1,
            high=MAX_COVERAGE_DAYS,
        )
        now = self.clock()
        with self.coverage_lock, resources.sessions() as session:
            report = compute_coverage(
                session, self.settings, now=now, loaded=(detector, registry), memo=self.changes
            )
            session.rollback()  # compute_coverage may note when history started; the UI writes nothing
        first_day, last_day, since = coverage_window(now, days)
        descriptions = {entry.slug: entry.description for entry in registry.entries}
        series = []
        for name, bins in report.bins.items():
            kind, slug = name.split(":", 1)
            changes = sorted((c for c in report.changes.get(name, []) if c.at >= since), key=lambda c: c.at)
            series.append(
                SeriesView(
                    name=name,
                    kind=kind,
                    slug=slug,
                    label=report.labels.get(name, slug),
                    description=descriptions.get(slug, ""),
                    days=daily_counts(bins, first_day, last_day),
                    changes=changes,
                )
            )
        all_changes = sorted((c for s in series for c in s.changes), key=lambda c: c.at, reverse=True)
        return self.render(
            request,
            "coverage.html",
            series=series,
            changes=all_changes,
            labels=report.labels,
            reported=report.reported,
            days=days,
            max_days=MAX_COVERAGE_DAYS,
            first_day=first_day,
            last_day=last_day,
            history_start=report.history_start,
            now=now,
        )

    def feeds(self, request: Request) -> Response:
        resources = _resources(request)
        with resources.sessions() as session:
            return self.render(
                request,
                "feeds.html",
                feeds=repo.list_feeds(session),
                failures=repo.open_failures(session, limit=100),
                now=self.clock(),
            )

    def digests(self, request: Request) -> Response:
        resources = _resources(request)
        with resources.sessions() as session:
            rows = session.scalars(
                select(DigestOutbox)
                .order_by(DigestOutbox.created_at.desc(), DigestOutbox.id.desc())
                .limit(600)
            ).all()
            return self.render(request, "digests.html", digests=digest_views(session, rows))

    def digest_detail(self, request: Request) -> Response:
        resources = _resources(request)
        digest_id: int = request.path_params["digest_id"]
        with resources.sessions() as session:
            row = session.get(DigestOutbox, digest_id) if digest_id <= MAX_ID else None
            if row is None:
                raise HTTPException(404, f"There is no digest {digest_id}.")
            deliveries = session.scalars(
                select(DigestOutbox)
                .where(DigestOutbox.digest_key == row.digest_key)
                .order_by(DigestOutbox.id)
            ).all()
            [view] = digest_views(session, deliveries)
            changes = session.scalars(
                select(CoverageChange)
                .where(CoverageChange.digest_id.in_([d.id for d in deliveries]))
                .order_by(CoverageChange.at, CoverageChange.series)
            ).all()
            labels = {f"{e.kind}:{e.slug}": e.label for e in resources.registry.entries}
            # The articles each change listed as the digest was sent (digests stored before
            # it kept them: those the change's window ranks first now, as many).
            listed = dict(row.payload.get("listed") or {})
            shown = []
            for change in changes:
                hours = float(change.detail.get("window_hours") or 24)
                since = change.at - timedelta(hours=hours)
                ids = listed.get(listed_key(change.series, change.at, change.direction))
                articles = top_articles(
                    session,
                    change.series,
                    since=since,
                    until=change.at,
                    limit=len(ids) if ids is not None else resources.detector.digest.articles_per_change,
                    ids=[int(i) for i in ids] if ids is not None else None,
                )
                kind, slug = change.series.split(":", 1)
                link = window_query(kind, slug, since, change.at)
                shown.append((change, labels.get(change.series, slug), articles, link))
            return self.render(
                request,
                "digest.html",
                digest=view,
                text=str(row.payload.get("text") or ""),
                changes=shown,
            )

    # JSON

    def healthz(self, request: Request) -> Response:
        resources = _resources(request)
        try:
            revision = current_revision(resources.engine)
        except SummitwatchError as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "schema": revision})

    def api_articles(self, request: Request) -> Response:
        """The article list as JSON: each article as a line of ``summitwatch articles --json``.

        ``format=csv`` or ``format=jsonl`` exports the result instead, as ``/articles`` does.
        """
        resources = _resources(request)
        query = parse_list_query(request.query_params, resources.registry)
        fmt = parse_format(request.query_params)
        if fmt != "html":
            return self.export(request, query, fmt)
        with resources.sessions() as session:
            try:
                page = search(session, query, cross_language=resources.cross_language)
            except FilterError as exc:
                raise BadRequest(str(exc)) from None
            # Articles found by meaning in other languages follow, marked "match": "cross-language".
            articles = [browse.row_json(row) for row in [*page.rows, *page.cross_language]]
        next_link = f"{request.url.path}{query.link(page=query.page + 1)}" if page.has_older else None
        return JSONResponse(
            {"articles": articles, "page": query.page, "limit": query.limit, "next": next_link}
        )

    # Errors

    def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if _wants_json(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
        return self.render(
            request,
            "error.html",
            status_code=exc.status_code,
            headers=headers,
            title=titles.get(exc.status_code, f"Error {exc.status_code}"),
            message=exc.detail,
        )

    def database_error(self, request: Request, exc: Exception) -> Response:
        message = "The database cannot be read right now; try again shortly."
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=503)
        return self.render(
            request, "error.html", status_code=503, title="Database unavailable", message=message
        )

    def configuration_error(self, request: Request, exc: Exception) -> Response:
        message = f"summitwatch cannot show this page: {exc}"
        if _wants_json(request):
            return JSONResponse({"error": message}, status_code=500)
        return self.render(
            request, "error.html", status_code=500, title="Configuration error", message=message
        )

    def render(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        path = request.url.path
        # Error pages can render before the lifespan loaded the registry.
        resources: Resources | None = getattr(request.state, "resources", None)
        html = self.templates.get_template(template).render(
            root=root,
            path=path[len(root) :] if root and path.startswith(root) else path,
            generated_at=self.clock(),
            display_names={e.slug: e.label for e in resources.registry.entries} if resources else {},
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=headers)


def _resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/healthz"


def paragraphs(text: str) -> list[str]:
    """The article text split at blank lines (single line breaks are kept by the stylesheet)."""
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
