"""The HTTP seam: the only module that fetches feeds and pages.

Every request is bounded: connect and read timeouts plus an overall deadline, a cap on
the body size (streamed, so a 1 GB page costs at most ``max_bytes`` of memory), a
redirect limit, and an SSRF guard that refuses loopback, private, link-local and other
non-public addresses unless explicitly allowed (link-local ones, where cloud metadata
services answer, are refused even then).

The guard sits in the transport, where connections are opened: a host name is resolved
once, every address it resolves to is checked, and the socket is opened to one of those
checked addresses. Nothing resolves the name a second time, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot reach an internal address.
TLS still runs against the host name: the name goes out as SNI and the certificate is
verified for it. Every redirect hop opens its connection through the same guard.

When private networks are allowed, a host is also looked up once per client to decide
whether its connections are kept alive (loopback and private ones are not, unless
``keep_alive_private``); that answer only sets a request header, it never picks the
address connected to.
"""

from __future__ import annotations

import html
import ipaddress
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from pipeline.errors import FetchError
from pipeline.feed_urls import front_page
from pipeline.redaction import install_log_redaction, redact_url
from pipeline.settings import HttpSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Redirects that say the resource has a new address for good (RFC 9110, 15.4.2 and 15.4.9).
PERMANENT_REDIRECTS = frozenset({301, 308})
# Statuses worth retrying later; every other 4xx means the URL itself is bad.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
# Statuses that say the URL is bad but that real sites also give in passing: a CDN's
# hiccup, a geo or bot block lifted later, an article announced before its page is live.
# Not permanent: the caller retries a few times before it believes them (a page, up to
# ``poll.page_retry_limit``). 410 Gone is said on purpose, and is believed at once.
PASSING_REFUSALS = frozenset({403, 404})
# "bytes FIRST-LAST/COMPLETE" (RFC 9110, 14.4): a 206 answer's Content-Range.
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)\s*-\s*(\d+)\s*/\s*(\d+)\s*", re.IGNORECASE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolves a host name (never an address literal) for a port to address strings.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), stream sockets only."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class HttpResponse:
    """A completed fetch: the final URL, status, headers that matter, and the body bytes."""

    url: str
    final_url: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # Where the URL asked for has moved for good: the target of the permanent redirects
    # (301, 308) the answer began with, before any temporary one (302, 303, 307). None when
    # the first answer was no permanent redirect. (A 301 to a 302 moved the URL to the
    # 302's address, which is only borrowing another's: RFC 9110, section 15.4.)
    moved_to: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def charset(self) -> str | None:
        if not self.content_type:
            return None
        message = Message()
        message["content-type"] = self.content_type
        value = message.get_param("charset")
        return value if isinstance(value, str) else None


class HttpClient:
    """A bounded HTTP client. Create one per run or task and close it (or use ``with``)."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        allow_private_networks: bool = False,
        resolver: Resolver = system_resolver,
        network_backend: httpcore.NetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``resolver`` turns host names into addresses (the one lookup per connection);
        ``network_backend`` opens sockets to the checked addresses; ``ssl_context``
        decides which certificates are trusted (default: the certifi bundle).
        """
        self.settings = settings
        self.allow_private_networks = allow_private_networks
        # httpx logs every request line with its URL (credentials included) at INFO.
        install_log_redaction()
        timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        backend = GuardedBackend(
            resolver,
            allow_private_networks=allow_private_networks,
            inner=network_backend or httpcore.SyncBackend(),
        )
        self._backend = backend
        # Whether a (host, port) is on a loopback or private address: its connections are
        # closed after each response unless settings.keep_alive_private (see HttpSettings).
        self._private_hosts: dict[tuple[str, int], bool] = {}
        self._hosts_lock = threading.Lock()
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            transport=_GuardedTransport(backend, ssl_context or httpx.create_ssl_context(trust_env=False)),
            trust_env=False,
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
    ) -> HttpResponse:
        """Fetch ``url`` with conditional-GET validators; 304 comes back as a response.

        Redirects are followed up to ``max_redirects``, each hop through the SSRF guard and
        to http(s) only; the response says where the URL moved for good
        (:attr:`HttpResponse.moved_to`).

        Raises :class:`FetchError` (``permanent`` for a bad URL, a refused address, a
        4xx status but 403 and 404 (:data:`PASSING_REFUSALS`) or an oversize body;
        transient for timeouts, refused connections, 5xx/429, 403 and 404, and a 206 that
        holds only part of the document).
        """
        headers: dict[str, str] = {}
        # A validator a server sent with bytes outside ASCII cannot go back in a header: the
        # request would fail before it is sent, at every poll. Without it, a full answer.
        if etag and sendable(etag):
            headers["If-None-Match"] = etag
        if last_modified and sendable(last_modified):
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        deadline = time.monotonic() + self.settings.timeout_seconds * 2
        _DEADLINE.at = deadline  # also while the headers arrive (see _BoundedStream)
        try:
            return self._get(url, headers, deadline)
        finally:
            _DEADLINE.at = None

    def _get(self, url: str, headers: dict[str, str], deadline: float) -> HttpResponse:
        current = url
        moved_to: str | None = None
        moving = True  # (every answer so far a permanent redirect)
        for _hop in range(self.settings.max_redirects + 1):
            try:
                self._check_url(current)
            except ValueError as exc:  # urlsplit's port parsing and friends
                raise FetchError(
                    f"refusing {_redact(current)}: malformed URL ({exc})", permanent=True
                ) from None
            hop_headers = headers
            if self._closes_after_response(current):
                hop_headers = {**headers, "Connection": "close"}
            try:
                with self._client.stream("GET", current, headers=hop_headers) as response:
                    if response.status_code in REDIRECT_STATUSES:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchError(
                                f"HTTP {response.status_code} without Location from {_redact(current)}",
                                permanent=True,
                            )
                        try:
                            current = urljoin(current, location)
                        except ValueError:
                            raise FetchError(
                                f"malformed redirect from {_redact(current)}", permanent=True
                            ) from None
                        moving = moving and response.status_code in PERMANENT_REDIRECTS
                        moved_to = current if moving else moved_to
                        continue
                    body = self._read_capped(response, current, deadline)
                    if not _stream_complete(response):
                        raise FetchError(f"{_redact(current)} ended before its compressed body did")
                    partial = response.status_code == 206
                    if partial and not _whole_range(response.headers.get("content-range")):
                        # Partial Content to a request that asked for no range (a cache or CDN
                        # astray): a piece of the page, which would be stored cut short and,
                        # its URL then known, never fetched again. Retried like a server error.
                        raise FetchError(
                            f"HTTP 206 from {_redact(current)}: only part of the document, "
                            "though the whole was asked for",
                            answered=True,
                            status=206,
                        )
                    kept = {
                        name: response.headers[name]
                        for name in ("content-type", "etag", "last-modified", "retry-after", "refresh")
                        if name in response.headers
                    }
                    result = HttpResponse(url, current, response.status_code, body, kept, moved_to)
            except RefusedAddress as exc:
                raise FetchError(_refusal_message(current, exc.host, exc.address), permanent=True) from None
            except httpx.TimeoutException:
                raise FetchError(f"timed out fetching {_redact(current)}", timed_out=True) from None
            except httpx.InvalidURL as exc:
                raise FetchError(f"invalid URL {_redact(current)}: {exc}", permanent=True) from None
            except UnicodeError:
                # An international host name that IDNA refuses ("xn--zz"), at any hop.
                raise FetchError(f"invalid host name in {_redact(current)}", permanent=True) from None
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.RemoteProtocolError) and "location" in str(exc).lower():
                    # httpx reads a redirect's Location before we do, and refuses one that is
                    # no URL ("http://[::1", "http://0251.0376.0251.0376/"): the page's fault,
                    # not the network's, so not retried.
                    raise FetchError(f"malformed redirect from {_redact(current)}", permanent=True) from None
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    # Checked for the URL's host name, never for the address connected to.
                    raise FetchError(
                        f"cannot fetch {_redact(current)}: TLS certificate verification failed"
                    ) from None
                raise FetchError(f"cannot fetch {_redact(current)}: {_what_failed(exc)}") from None
            if result.status == 304 and "If-None-Match" not in headers and "If-Modified-Since" not in headers:
                # "Not modified" since nothing: the server answers 304 whatever is asked, so
                # the document was never read. Retried like a server error.
                raise FetchError(f"HTTP 304 from {_redact(current)} to a request without validators")
            if 200 <= result.status < 300:
                refreshed = _refreshed_to(current, result)
                if refreshed is not None:
                    # A page that only sends the browser on (<meta http-equiv="refresh">) is
                    # followed as a redirect, a temporary one: counted as a hop, guarded alike.
                    moving, current = False, refreshed
                    continue
            if result.status == 304 or 200 <= result.status < 300:
                return result
            transient = result.status in TRANSIENT_STATUSES
            raise FetchError(
                f"HTTP {result.status} from {_redact(current)}",
                permanent=not transient and result.status not in PASSING_REFUSALS,
                retry_after=retry_after_seconds(result.headers.get("retry-after")) if transient else None,
                answered=True,
                status=result.status,
            )
        raise FetchError(
            f"more than {self.settings.max_redirects} redirects from {_redact(url)}", permanent=True
        )

    def _closes_after_response(self, url: str) -> bool:
        """Whether ``url``'s server is on a loopback or private address and its connection is
        not kept alive (``keep_alive_private`` off). Looked up once per host and port."""
        if not self.allow_private_networks or self.settings.keep_alive_private:
            return False  # (without the first, such an address is refused anyway)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with self._hosts_lock:
            known = self._private_hosts.get((host, port))
        if known is None:
            try:
                addresses = self._backend.vetted_addresses(host, port)
            except (RefusedAddress, FetchError):
                addresses = []  # refused or unresolvable: the request itself will say so
            known = any(not _is_public(address) for address in addresses)
            with self._hosts_lock:
                self._private_hosts[(host, port)] = known
        return known

    def _read_capped(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        limit = self.settings.max_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(
                f"{_redact(url)} is {int(declared):,} bytes, over the {limit:,}-byte limit",
                permanent=True,
                answered=True,
            )
        codings = [
            coding.strip().lower()
            for coding in response.headers.get("content-encoding", "").split(",")
            if coding.strip() and coding.strip().lower() != "identity"
        ]
        if len(codings) > 1:
            # Each layer is unpacked whole before the size is counted: two layers of gzip
            # make a few kilobytes on the wire gigabytes in memory. No real server stacks
            # them; one layer is unpacked chunk by chunk within the limit.
            raise FetchError(
                f"{_redact(url)} is compressed {len(codings)} times over ({', '.join(codings)}): refused",
                permanent=True,
            )
        if any(coding in _CODING_ALIASES for coding in codings):
            # httpx knows only the plain names and would pass the compressed bytes on as the
            # body (a feed read as "not a feed"). (Set before the first chunk is read: httpx picks
            # its decoder then.)
            response.headers["content-encoding"] = ", ".join(_CODING_ALIASES.get(c, c) for c in codings)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(
                    f"{_redact(url)} is over the {limit:,}-byte limit", permanent=True, answered=True
                )
            if time.monotonic() > deadline:
                raise FetchError(f"timed out reading {_redact(url)} (body too slow)", timed_out=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_url(self, url: str) -> None:
        """Refuse what needs no lookup: other schemes, no host, a bad port, a private literal.

        Host names are checked where the connection is opened (:class:`GuardedBackend`).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refusing {_redact(url)!r}: only http and https are fetched", permanent=True)
        if not parts.hostname:
            raise FetchError(f"refusing {_redact(url)!r}: no host", permanent=True)
        if parts.port == 0:  # (parts.port raises ValueError for a port out of range)
            # No server listens on port 0: the connection fails at every retry ("ConnectError",
            # transient). A feed or import line naming it is refused as malformed too.
            raise FetchError(f"refusing {_redact(url)!r}: port 0", permanent=True)
        literal = _literal_address(parts.hostname)
        if literal is not None and _refused(literal, allow_private_networks=self.allow_private_networks):
            raise FetchError(_refusal_message(url, parts.hostname, literal), permanent=True)


class PendingPage:
    """A page being fetched: :meth:`result` waits for it and gives the response or raises."""

    def __init__(self, fetch: Future[HttpResponse] | Callable[[], HttpResponse]) -> None:
        self._fetch = fetch

    def ready(self) -> bool:
        """Whether :meth:`result` would return without waiting for the network."""
        return isinstance(self._fetch, Future) and self._fetch.done()

    def wait(self) -> None:
        """Wait until the page is in (or its fetch failed); fetches it now if one at a time."""
        if isinstance(self._fetch, Future):
            wait([self._fetch])
        else:
            try:
                response = self._fetch()
            except Exception as exc:  # kept for result(), as a future keeps it
                error = exc

                def fail() -> HttpResponse:
                    raise error

                self._fetch = fail
            else:
                self._fetch = lambda: response

    def result(self) -> HttpResponse:
        if isinstance(self._fetch, Future):
            return self._fetch.result()
        return self._fetch()


class PageFetcher:
    """Fetch many URLs through one :class:`HttpClient` concurrently, politely.

    At most ``max_concurrency`` requests are in flight in all, and at most ``per_host`` to
    any one host (keyed by the host of the URL asked for). :meth:`submit` returns a future
    at once; its result is the :class:`HttpResponse` or the :class:`FetchError` that
    :meth:`HttpClient.get` would give. Callers consume the futures in their own order, so
    what is done with the pages does not depend on which answered first. With
    ``max_concurrency`` 1 every fetch runs in the calling thread, when its result is asked
    for.
    """

    def __init__(
        self, client: HttpClient, *, max_concurrency: int, per_host: int, breaker: HostBreaker | None = None
    ) -> None:
        self.client = client
        self.per_host = max(1, per_host)
        self.breaker = breaker or HostBreaker(0)
        self._pool = (
            ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="fetch")
            if max_concurrency > 1
            else None
        )
        self._hosts: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> PageFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, *, drop_waiting: bool = True) -> None:
        """Wait for the requests in flight; those not started are dropped, or with
        ``drop_waiting=False`` made too. Pages asked for afterwards are fetched one at a
        time, when their result is asked for."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=drop_waiting)
            self._pool = None

    def submit(self, url: str, *, accept: str | None = None) -> PendingPage:
        """Start fetching ``url`` (one at a time: when the result is asked for)."""
        if self._pool is None:
            return PendingPage(lambda: self.breaker.get(self.client, url, accept=accept))
        return PendingPage(self._pool.submit(self._polite_get, url, accept))

    def _polite_get(self, url: str, accept: str | None) -> HttpResponse:
        with self._lock:
            gate = self._hosts.setdefault(host_of(url), threading.Semaphore(self.per_host))
        with gate:  # (a page waiting here for its host sees a breaker tripped meanwhile)
            return self.breaker.get(self.client, url, accept=accept)


class HostBreaker:
    """Stops asking a host for pages once ``limit`` of them in a row timed out, or once it
    answered that it wants to be left alone (a 429 or 503 with Retry-After). 0: never.

    A host that lets every page run into the time limits (overloaded, or dripping bytes on
    purpose) would otherwise hold a run for its whole list: two pages at a time per host,
    each up to twice ``http.timeout_seconds``; and a host rate-limiting us would be asked
    for every other page at once, each such request a failed attempt. Once tripped, its
    other pages fail at once with a *deferred* :class:`FetchError` (transient; no request
    made, no attempt counted; with the wait the host asked for), and are retried in a later
    run. Any other answer from the host (even an error status) resets its count.

    A host stays tripped for the breaker's life (a polling cycle and its retries), or, with
    ``hold`` seconds, that long (or as long as it asked, if longer): ``summitwatch run``
    keeps one breaker across its cycles, so that a dead host is not asked again every
    cycle. Shared by the fetch threads.
    """

    def __init__(self, limit: int, *, hold: float | None = None) -> None:
        self.limit = limit
        self.hold = hold
        self._streaks: dict[str, int] = {}
        # host -> (until, on the monotonic clock: None for the breaker's life; why; the
        # seconds the host asked to wait, if it did)
        self._tripped: dict[str, tuple[float | None, str, float | None]] = {}
        self._lock = threading.Lock()

    def tripped(self, url: str) -> bool:
        """Whether ``url``'s host is not asked now."""
        return self._trip_of(host_of(url)) is not None

    def get(self, client: HttpClient, url: str, *, accept: str | None = None) -> HttpResponse:
        """``client.get(url)``, unless the host's breaker is tripped (a deferred error)."""
        host = host_of(url)
        trip = self._trip_of(host)
        if trip is not None:
            _, reason, wait = trip
            raise FetchError(
                f"not fetched: {reason}; retried in a later run", deferred=True, retry_after=wait
            )
        try:
            response = client.get(url, accept=accept)
        except FetchError as exc:
            self._count(host, exc)
            raise
        self._count(host, None)
        return response

    def _trip_of(self, host: str) -> tuple[float | None, str, float | None] | None:
        if self.limit <= 0:
            return None
        with self._lock:
            trip = self._tripped.get(host)
            if trip is not None and trip[0] is not None and time.monotonic() >= trip[0]:
                del self._tripped[host]  # (held long enough: asked again)
                self._streaks.pop(host, None)
                return None
            return trip

    def _count(self, host: str, error: FetchError | None) -> None:
        if self.limit <= 0:
            return
        shown = host or "its host"
        with self._lock:
            if error is not None and error.retry_after is not None:
                wait = error.retry_after
                self._trip(host, f"{shown} asked to be left alone for {wait:g} s", wait)
            elif error is not None and error.timed_out:
                self._streaks[host] = streak = self._streaks.get(host, 0) + 1
                if streak >= self.limit and host not in self._tripped:
                    self._trip(host, f"{shown} timed out on {streak} pages in a row", None)
            else:
                self._streaks[host] = 0

    def _trip(self, host: str, reason: str, wait: float | None) -> None:
        seconds = max(self.hold or 0.0, wait or 0.0)
        until = time.monotonic() + seconds if self.hold is not None or wait is not None else None
        self._tripped[host] = (until, reason, wait)


class RefusedAddress(Exception):
    """A host resolved to an address the SSRF guard refuses; nothing was connected."""

    def __init__(self, host: str, address: IPAddress) -> None:
        super().__init__(f"{host} resolves to non-public {address}")
        self.host = host
        self.address = address


class GuardedBackend(httpcore.NetworkBackend):
    """Opens every TCP connection to an address it resolved and checked itself.

    httpcore asks for ``connect_tcp(host, port)`` with the URL's host; this backend
    resolves the host once (``resolver``), refuses the connection if any address is not
    public (unless private networks are allowed; link-local never), and asks ``inner`` to connect to one
    of the checked addresses. httpcore then starts TLS on that stream with the original
    host name as SNI and for certificate verification.
    """

    def __init__(
        self, resolver: Resolver, *, allow_private_networks: bool, inner: httpcore.NetworkBackend
    ) -> None:
        self._resolver = resolver
        self._allow_private_networks = allow_private_networks
        self._inner = inner

    def vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` resolves to, each checked; raises :class:`RefusedAddress`."""
        literal = _literal_address(host)
        addresses = [literal] if literal is not None else _resolve(self._resolver, host, port)
        for address in addresses:
            if _refused(address, allow_private_networks=self._allow_private_networks):
                raise RefusedAddress(host, address)
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.vetted_addresses(host, port)[:_MAX_ADDRESSES_TRIED]:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
            else:
                return _QuickAckStream(stream)
        assert failure is not None  # vetted_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for fetching")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# Old names of content codings some servers still send: RFC 9110 (section 8.4.1.3) has a
# recipient treat "x-gzip" as "gzip"; "x-deflate" is the same habit for "deflate".
_CODING_ALIASES = {"x-gzip": "gzip", "x-deflate": "deflate"}

# The deadline of the request this thread is making (HttpClient.get), for its reads.
_DEADLINE = threading.local()


def sendable(value: str) -> bool:
    """Whether a header value can be sent back as it came: printable ASCII."""
    return value.isascii() and value.isprintable()


def _stream_complete(response: httpx.Response) -> bool:
    """False when a gzip or deflate body stopped before its compressed stream ended.

    A connection closed mid-body without a Content-Length looks like a complete response
    to HTTP; only the decompressor knows its stream had more to come, and httpx does not
    ask it. A page cut in half would be stored cut, and never fetched again.
    """
    decoder = getattr(response, "_decoder", None)
    decoders = getattr(decoder, "children", None) or [decoder]
    for each in decoders:
        decompressor = getattr(each, "decompressor", None)
        if decompressor is not None and getattr(decompressor, "eof", True) is False:
            return False
    return True


def _whole_range(content_range: str | None) -> bool:
    """Whether a 206 answer's Content-Range says its body is the whole document (a server
    that answers every request with a range, the whole of it: "bytes 0-999/1000")."""
    match = _CONTENT_RANGE.fullmatch(content_range or "")
    if match is None:
        return False
    first, last, complete = (int(group) for group in match.groups())
    return first == 0 and last + 1 == complete


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header as seconds from now (a number of seconds or an HTTP date),
    None when absent or unreadable; capped at a week."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        seconds = seconds_until_http_date(value, now=now)
        if math.isnan(seconds):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def seconds_until_http_date(value: str, *, now: float | None = None) -> float:
    """The seconds from ``now`` (the clock's time) to an HTTP date (RFC 9110: always GMT,
    so one written without a zone, "-0000", is read as UTC): negative once past, NaN when
    ``value`` is no date."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return math.nan
    if moment is None:
        return math.nan
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - (time.time() if now is None else now)


MAX_RETRY_AFTER_SECONDS = 7 * 24 * 3600
# A host with many addresses must not multiply the connect timeout without bound.
_MAX_ADDRESSES_TRIED = 3
# Linux's TCP_QUICKACK (None elsewhere).
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class _QuickAckStream(httpcore.NetworkStream):
    """A connection that acknowledges what it receives at once (TCP_QUICKACK before each
    read, where the system has it), and whose reads end at the request's deadline.

    On a kept-alive connection the kernel delays its acknowledgements (up to 40 ms) in the
    hope of sending them with the next request. A server that writes a response in more
    than one piece with Nagle's algorithm on (Python's own ``http.server`` speaking
    HTTP/1.1, for one) holds the rest of the response until the first piece is
    acknowledged: every response on a reused connection then took 40 ms more (measured:
    44 ms a page from a local server, against 0.3 ms for a new connection). The flag
    does not stay set, so it is set again before each read: one system call.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline: float | None = getattr(_DEADLINE, "at", None)
        if deadline is not None:
            # The request's overall deadline bounds every read, the headers' too: a server
            # that sends a header line every 20 s would otherwise never meet the read timeout.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise httpcore.ReadTimeout("the request's deadline passed")
            timeout = remaining if timeout is None else min(timeout, remaining)
        if self._socket is not None and _QUICKACK is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                self._socket = None  # not a TCP socket after all: nothing to hurry
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _QuickAckStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool opening connections through ``backend``."""

    def __init__(self, backend: GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; replace it with
        # the same pool on the guarded backend (proxies are never used: trust_env=False).
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _refused(address: IPAddress, *, allow_private_networks: bool) -> bool:
    """Whether the guard refuses ``address``. Link-local addresses (where cloud metadata
    services answer, 169.254.169.254) are refused even when private networks are allowed:
    no feed lives there."""
    if _is_link_local(address):
        return True
    return not allow_private_networks and not _is_public(address)


# What an httpx error means, for a failure's message (the class name alone said little).
_HTTPX_ERRORS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.DecodingError, "the body is not in the Content-Encoding it was sent with"),
    (httpx.RemoteProtocolError, "the server broke off or garbled its answer"),
    (httpx.ReadError, "the connection broke while the answer was read"),
    (httpx.WriteError, "the connection broke while the request was sent"),
    (httpx.ConnectError, "no connection to the server"),
    (httpx.TooManyRedirects, "too many redirects"),
)


def _what_failed(exc: httpx.HTTPError) -> str:
    """``exc`` said plainly, its class named: "no connection to the server (ConnectError)"."""
    name = type(exc).__name__
    meaning = next((text for kind, text in _HTTPX_ERRORS if isinstance(exc, kind)), None)
    return f"{meaning} ({name})" if meaning else name


def _refusal_message(url: str, host: str, address: IPAddress) -> str:
    if _is_link_local(address):
        hint = "link-local addresses are never fetched"
    else:
        hint = "set SUMMITWATCH_ALLOW_PRIVATE_NETWORKS=true to allow"
    return f"refusing {_redact(url)}: {host} resolves to non-public {address} ({hint})"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: mapped, 6to4, Teredo, NAT64, IPv4-compatible."""
    embedded = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    if address in _NAT64 or int(address) >> 32 == 0:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [inner for inner in embedded if inner is not None]


def _is_public(address: IPAddress) -> bool:
    """Global unicast, also after unwrapping IPv4 addresses embedded in IPv6 forms."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(_is_public(inner) for inner in _embedded_ipv4(address))
    return True


def _is_link_local(address: IPAddress) -> bool:
    if address.is_link_local:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        return any(inner.is_link_local for inner in _embedded_ipv4(address))
    return False


def _redact(url: str) -> str:
    """A URL fit for logs and error messages (the one rule in :mod:`pipeline.redaction`)."""
    return redact_url(url)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return _unmapped(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _resolve(resolver: Resolver, host: str, port: int) -> list[IPAddress]:
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = _unmapped(ipaddress.ip_address(answer.split("%", 1)[0]))
        except ValueError:
            raise FetchError(f"cannot resolve {host}: resolver answered {answer!r}") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no addresses")
    return addresses


# Second-level labels under which a country's sites are registered ("example.co.uk",
# "example.com.cn"): a site is then named by three labels, not two.
_SHARED_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gov", "gv", "ne", "net", "or", "org"})


def site_of(url: str) -> str:
    """The site ``url`` belongs to, as its host's registered name ("news.example.com" and
    "example.com" are one site, "example.co.uk" is named by three labels); "" when it has
    no host. An approximation without the public suffix list, good for telling a feed's
    own pages from other sites'."""
    labels = host_of(url).rstrip(".").split(".")
    if len(labels) < 2 or all(label.isdigit() for label in labels):
        return ".".join(labels)  # (a single name, an IP address)
    size = 3 if len(labels) >= 3 and labels[-2] in _SHARED_SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-size:])


def host_of(url: str) -> str:
    """The host a per-host limit counts ``url`` under (lower case; "" when it has none or
    cannot be parsed, so that such addresses share one limit)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# Where a redirect from an article's link lands when the article is not there: a site's
# front page (an article taken down or moved, a link a site no longer serves) or a wall
# asking for consent, a sign-in or a subscription. Every link sent there would otherwise
# be stored as that page's text: the first as an "article", the others as its copies.
_WALL_WORDS = frozenset(
    {
        "consent",
        "cookie-consent",
        "gdpr",
        "guce",
        "login",
        "log-in",
        "signin",
        "sign-in",
        "auth",
        "sso",
        "paywall",
        "subscribe",
        "subscription",
        "register",
    }
)
_WALL_HOST_LABELS = frozenset({"consent", "guce", "login", "signin", "auth", "sso", "accounts", "paywall"})


# <meta http-equiv="refresh" content="0; url=..."> (attributes in any order and quoting).
_META_REFRESH = re.compile(
    rb"<meta\b(?=[^>]*\bhttp-equiv\s*=\s*[\"']?\s*refresh\b)[^>]*\bcontent\s*=\s*"
    rb"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s>]+))",
    re.IGNORECASE,
)
_REFRESH_URL = re.compile(r"^\s*\d*(?:\.\d*)?\s*[;,]?\s*(?:url\s*=\s*)?['\"]?(?P<url>[^'\"]*)", re.IGNORECASE)
_HTML_NOISE = re.compile(
    rb"<(script|style|noscript)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL
)
# The head of a page the refresh is looked for in, and the visible text a page that only
# sends the browser on holds at most (a line saying so, a link): more is a page of its own
# that happens to reload itself, read as it is.
REFRESH_SCAN_BYTES = 16_384
REFRESH_PAGE_TEXT = 600


def _refreshed_to(current: str, response: HttpResponse) -> str | None:
    """Where a page that is only a ``<meta http-equiv="refresh">`` (or a ``Refresh`` header,
    its twin, which browsers obey alike: an answer with no body but it) to another address
    sends the browser, or None: the page has text of its own, the refresh names no address,
    its own, or one that is not http(s), or the answer is not HTML."""
    header = response.headers.get("refresh")
    if header is not None:
        content = header
    else:
        kind = response.headers.get("content-type", "").lower()
        if kind and "html" not in kind:
            return None
        found = _META_REFRESH.search(response.body[:REFRESH_SCAN_BYTES])
        if found is None:
            return None
        content = html.unescape(
            (found.group("dq") or found.group("sq") or found.group("bare") or b"").decode("utf-8", "replace")
        )
    target = _REFRESH_URL.match(content)
    address = target.group("url").strip() if target else ""
    if not address:
        return None  # (a page that reloads itself now and then)
    try:
        joined = str(urljoin(current, address))
        scheme = urlsplit(joined).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("http", "https") or joined.split("#", 1)[0] == current.split("#", 1)[0]:
        return None
    text = _HTML_NOISE.sub(b" ", response.body[: REFRESH_SCAN_BYTES * 64])
    if len(html.unescape(b" ".join(text.split()).decode("utf-8", "replace"))) > REFRESH_PAGE_TEXT:
        return None
    return joined


def redirected_away(requested: str, final: str) -> FetchError | None:
    """Why the page a redirect from ``requested`` ended on (``final``) is not the article
    the link named, or None when it may be (no redirect, or one to another article's
    address). A consent, sign-in or subscription wall is permanent (it is what this
    fetcher will always be shown); a site's front page is retried, in case the redirect was
    the site's passing trouble, up to ``poll.page_retry_limit``."""
    try:
        asked, landed = urlsplit(requested), urlsplit(final)
    except ValueError:
        return None
    if (asked.netloc.lower(), asked.path, asked.query) == (landed.netloc.lower(), landed.path, landed.query):
        return None
    host = (landed.hostname or "").lower()
    # Only what the redirect added counts: an article filed under "/news/gdpr/" moved to
    # "www." is no consent wall.
    segments = _segments(landed.path) - _segments(asked.path)
    label = host.split(".")[0]
    if (label in _WALL_HOST_LABELS and label != (asked.hostname or "").lower().split(".")[0]) or (
        segments & _WALL_WORDS
    ):
        return FetchError(
            f"redirected to a consent or sign-in page ({redact_url(final)[:200]}), not the article",
            permanent=True,
            answered=True,
        )
    if front_page(landed) and not front_page(asked):
        return FetchError(f"redirected to the front page of {host}, not the article")
    return None


def _segments(path: str) -> set[str]:
    return {segment.lower() for segment in path.split("/") if segment}
