"""The read-only web UI (``summitwatch serve``): a thin layer over :mod:`pipeline.db.repo`.

:func:`create_app` builds a Starlette application. Its lifespan creates the database
engine (after checking the schema) and disposes of it on shutdown; each request opens
its own session and never commits. Only GET and HEAD are routed.

Pages are Jinja2 templates with autoescaping on: titles, texts and evidence come from
the open web and are treated as hostile. The pages need no JavaScript and load nothing
from other hosts, and a Content-Security-Policy tells the browser so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.classify import Entry, TopicRegistry
from pipeline.cli import _article_json
from pipeline.coverage import Change, DetectorConfig
from pipeline.db import repo
from pipeline.db.engine import current_revision, make_engine, require_current_schema, session_factory
from pipeline.db.schema import Article, ArticleTopic, ArticleVersion, ArticleWatch, Feed, Sighting, utcnow
from pipeline.errors import SummitwatchError
from pipeline.redaction import redact_optional, redact_text, redact_url
from pipeline.reporting import compute_coverage, load_reporting_config
from pipeline.settings import Settings

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

DEFAULT_LIMIT = 20  # as `summitwatch articles`
MAX_LIMIT = 200
# repo.search_articles has no offset, so a page is cut from the newest matching rows;
# pages deeper than this are refused with a hint to narrow the filters.
MAX_WINDOW = 5000
MAX_QUERY_CHARS = 500
MAX_COVERAGE_DAYS = 365
SPARK_HEIGHT = 32  # the coverage sparkline, in SVG units: a bar per day
SPARK_STEP = 6
# Ids are INTEGER on both databases; a larger one would overflow the driver, not miss.
MAX_ID = 2**31 - 1
_LANG = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
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


# Application ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What the running app holds: created in the lifespan, released on shutdown."""

    engine: Engine
    sessions: sessionmaker[Session]
    registry: TopicRegistry
    coverage_days: int
    detector: DetectorConfig


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The web UI over the database in ``settings``; ``clock`` gives "now" (tests pin it).

    Creating the app connects to nothing. Its lifespan creates the engine, refuses to
    start on a missing or outdated schema (run ``summitwatch init``), loads the topic
    registry and the coverage settings, and disposes of the engine on shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.db_url)
        try:
            resources = await run_in_threadpool(_start, settings, engine)
            yield {"resources": resources}
        finally:
            engine.dispose()

    site = _Site(settings, _template_environment(), clock)
    routes: list[BaseRoute] = [
        Route("/", site.article_list, methods=["GET"], name="home"),
        # The digest links to /articles?topic=…&since=…; it is the same page.
        Route("/articles", site.article_list, methods=["GET"], name="articles"),
        Route("/articles/{article_id:int}", site.article_detail, methods=["GET"], name="article"),
        Route("/coverage", site.coverage, methods=["GET"], name="coverage"),
        Route("/feeds", site.feeds, methods=["GET"], name="feeds"),
        Route("/healthz", site.healthz, methods=["GET"], name="healthz"),
        Route("/api/articles", site.api_articles, methods=["GET"], name="api_articles"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            HTTPException: site.http_error,
            SQLAlchemyError: site.database_error,
            SummitwatchError: site.configuration_error,
        },
    )


def _start(settings: Settings, engine: Engine) -> Resources:
    require_current_schema(engine)
    config, registry = load_reporting_config(settings)
    return Resources(engine, session_factory(engine), registry, config.coverage_days, config)


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
    environment.filters["when"] = lambda moment: f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""
    environment.filters["web_url"] = web_url
    # URLs and error texts are shown with credentials redacted (hrefs too: web_url).
    environment.filters["redact"] = redact_optional
    environment.filters["redact_text"] = lambda text: redact_text(text) if text else text
    environment.filters["label"] = lambda slug: slug.replace("_", " ")
    return environment


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
    """The article filters of ``/``, ``/articles`` and ``/api/articles`` (as the CLI's)."""

    topic: str | None = None
    watch: str | None = None
    lang: str | None = None
    since: date | None = None
    q: str | None = None
    duplicates: bool = False
    seeds: bool = False
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    @property
    def filtered(self) -> bool:
        """Whether anything narrows or widens the default list."""
        return self != ListQuery(page=self.page, limit=self.limit)

    def to_filter(self) -> repo.ArticleFilter:
        """The repository filter for this page, plus one row to tell whether more follow."""
        return repo.ArticleFilter(
            topic=self.topic,
            watch=self.watch,
            lang=self.lang,
            since=datetime.combine(self.since, datetime.min.time(), tzinfo=UTC) if self.since else None,
            text=self.q,
            include_duplicates=self.duplicates,
            include_seeds=self.seeds,
            limit=self.offset + self.limit + 1,
        )

    def link(self, **changes: Any) -> str:
        """The query string (``?…``, or ``""``) for these filters with ``changes`` applied."""
        target = replace(self, **changes)
        params: list[tuple[str, str]] = []
        for name in ("topic", "watch", "lang", "q"):
            value = getattr(target, name)
            if value:
                params.append((name, value))
        if target.since:
            params.append(("since", target.since.isoformat()))
        if target.duplicates:
            params.append(("duplicates", "1"))
        if target.seeds:
            params.append(("seeds", "1"))
        if target.limit != DEFAULT_LIMIT:
            params.append(("limit", str(target.limit)))
        if target.page != 1:
            params.append(("page", str(target.page)))
        return f"?{urlencode(params)}" if params else ""


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
        raise BadRequest(f"unknown topic {topic!r}; topics: {', '.join(_slugs(registry.topics))}")
    watch = _text(params, "watch")
    if watch is not None and watch not in _slugs(registry.watch):
        raise BadRequest(f"unknown watch item {watch!r}; watch items: {', '.join(_slugs(registry.watch))}")
    lang = _text(params, "lang")
    if lang is not None and not _LANG.match(lang):
        raise BadRequest(f"lang: not a language code: {lang!r} (use e.g. en, ru, zh)")
    since = _text(params, "since")
    since_day: date | None = None
    if since is not None:
        try:
            if not _DAY.match(since):
                raise ValueError(since)
            since_day = date.fromisoformat(since)
        except ValueError:
            raise BadRequest(f"since: not a date: {since!r} (use YYYY-MM-DD)") from None
    q = _text(params, "q")
    if q is not None and len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"q: longer than {MAX_QUERY_CHARS} characters")
    query = ListQuery(
        topic=topic,
        watch=watch,
        lang=lang,
        since=since_day,
        q=q,
        duplicates=_flag(params, "duplicates"),
        seeds=_flag(params, "seeds"),
        page=_integer(params, "page", default=1, low=1, high=MAX_WINDOW),
        limit=_integer(params, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
    )
    if query.offset + query.limit > MAX_WINDOW:
        raise BadRequest(
            f"page {query.page} is too deep (only the newest {MAX_WINDOW} matches can be paged "
            "through): narrow the list with since, q or another filter"
        )
    return query


def _slugs(entries: Sequence[Entry]) -> list[str]:
    return sorted(entry.slug for entry in entries)


def _text(params: QueryParams, name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def _flag(params: QueryParams, name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: expected 1 or 0, not {params.get(name)!r}")


def _integer(params: QueryParams, name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"{name}: not a whole number: {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}, not {value}")
    return value


# What the pages show -----------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleRow:
    """One article with its copies and labels, as the list shows it."""

    article: Article
    copies: list[Article]
    topics: list[ArticleTopic]
    watch: list[ArticleWatch]

    @property
    def moment(self) -> datetime:
        return self.article.published_at or self.article.first_seen_at

    @property
    def source(self) -> str | None:
        """The outlet (or feed name), else the host of the article's URL."""
        return source_name(self.article)


@dataclass(frozen=True)
class ResultPage:
    query: ListQuery
    rows: list[ArticleRow]
    has_more: bool


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


def search(session: Session, query: ListQuery) -> ResultPage:
    """One page of :func:`repo.search_articles` with copies, labels, feeds and originals."""
    found = repo.search_articles(session, query.to_filter())
    window = list(found[query.offset : query.offset + query.limit])
    ids = [article.id for article in window]
    copies = repo.copies_of(session, ids)
    labels = repo.labels_of(session, ids)
    _load_related(session, window)
    rows = [ArticleRow(a, copies.get(a.id, []), *labels[a.id]) for a in window]
    return ResultPage(query, rows, has_more=len(found) > query.offset + query.limit)


def _load_related(session: Session, articles: Sequence[Article]) -> None:
    # Two queries instead of a lazy load per row for `article.feed` and `.duplicate_of`.
    feed_ids = {a.feed_id for a in articles if a.feed_id is not None}
    original_ids = {a.duplicate_of_id for a in articles if a.duplicate_of_id is not None}
    feeds = {f.id: f for f in session.scalars(select(Feed).where(Feed.id.in_(feed_ids)))} if feed_ids else {}
    originals = (
        {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(original_ids)))}
        if original_ids
        else {}
    )
    for article in articles:
        set_committed_value(article, "feed", feeds.get(article.feed_id) if article.feed_id else None)
        set_committed_value(
            article,
            "duplicate_of",
            originals.get(article.duplicate_of_id) if article.duplicate_of_id else None,
        )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    css: str


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


# Views -------------------------------------------------------------------------------------


class _Site:
    """The request handlers, sharing the settings, the templates and the clock."""

    def __init__(
        self, settings: Settings, templates: jinja2.Environment, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.clock = clock

    # Pages

    def article_list(self, request: Request) -> Response:
        resources = _resources(request)
        query = parse_list_query(request.query_params, resources.registry)
        with resources.sessions() as session:
            page = search(session, query)
            languages = [lang for lang, *_ in repo.counts_by_language(session)]
            if query.lang and query.lang not in languages:
                languages.append(query.lang)
            return self.render(
                request,
                "articles.html",
                page=page,
                query=query,
                languages=languages,
                topics=resources.registry.topics,
                watch_items=resources.registry.watch,
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
            return self.render(
                request,
                "article.html",
                article=article,
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
        days = _integer(
            request.query_params, "days", default=resources.coverage_days, low=1, high=MAX_COVERAGE_DAYS
        )
        now = self.clock()
        with resources.sessions() as session:
            report = compute_coverage(
                session, self.settings, now=now, loaded=(resources.detector, resources.registry)
            )
            session.rollback()  # compute_coverage may note when history started; the UI writes nothing
        last_day = now.astimezone(UTC).date()
        first_day = last_day - timedelta(days=days - 1)
        since = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
        descriptions = {entry.slug: entry.description for entry in resources.registry.entries}
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
            days=days,
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

    # JSON

    def healthz(self, request: Request) -> Response:
        resources = _resources(request)
        try:
            revision = current_revision(resources.engine)
        except SummitwatchError as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "schema": revision})

    def api_articles(self, request: Request) -> Response:
        """The article list as JSON: each article as a line of ``summitwatch articles --json``."""
        resources = _resources(request)
        query = parse_list_query(request.query_params, resources.registry)
        with resources.sessions() as session:
            page = search(session, query)
            articles = [_article_json(r.article, r.copies, r.topics, r.watch) for r in page.rows]
        next_link = f"{request.url.path}{query.link(page=query.page + 1)}" if page.has_more else None
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
        html = self.templates.get_template(template).render(
            root=root,
            path=path[len(root) :] if root and path.startswith(root) else path,
            generated_at=self.clock(),
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
