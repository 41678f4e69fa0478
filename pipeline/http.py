"""The HTTP seam: the only module that fetches feeds and pages.

Every request is bounded: connect and read timeouts plus an overall deadline, a cap on
the body size (streamed, so a 1 GB page costs at most ``max_bytes`` of memory), a
redirect limit, and an SSRF guard that refuses loopback, private, link-local and other
non-public addresses (re-checked on every redirect hop) unless explicitly allowed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urljoin, urlsplit

import httpx

from pipeline.errors import FetchError
from pipeline.redaction import install_log_redaction, redact_url
from pipeline.settings import HttpSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Statuses worth retrying later; every other 4xx means the URL itself is bad.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class HttpResponse:
    """A completed fetch: the final URL, status, headers that matter, and the body bytes."""

    url: str
    final_url: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.allow_private_networks = allow_private_networks
        # httpx logs every request line with its URL (credentials included) at INFO.
        install_log_redaction()
        timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            transport=transport,
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

        Raises :class:`FetchError` (``permanent`` for a bad URL, a refused address, a
        4xx status or an oversize body; transient for timeouts, refused connections and
        5xx/429).
        """
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        deadline = time.monotonic() + self.settings.timeout_seconds * 2
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            try:
                self._check_url(current)
            except ValueError as exc:  # urlsplit's port parsing and friends
                raise FetchError(
                    f"refusing {_redact(current)}: malformed URL ({exc})", permanent=True
                ) from None
            try:
                with self._client.stream("GET", current, headers=headers) as response:
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
                        continue
                    body = self._read_capped(response, current, deadline)
                    kept = {
                        name: response.headers[name]
                        for name in ("content-type", "etag", "last-modified", "retry-after")
                        if name in response.headers
                    }
                    result = HttpResponse(url, current, response.status_code, body, kept)
            except httpx.TimeoutException:
                raise FetchError(f"timed out fetching {_redact(current)}") from None
            except httpx.InvalidURL as exc:
                raise FetchError(f"invalid URL {_redact(current)}: {exc}", permanent=True) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch {_redact(current)}: {type(exc).__name__}") from None
            if result.status == 304 or 200 <= result.status < 300:
                return result
            raise FetchError(
                f"HTTP {result.status} from {_redact(current)}",
                permanent=result.status not in TRANSIENT_STATUSES,
            )
        raise FetchError(
            f"more than {self.settings.max_redirects} redirects from {_redact(url)}", permanent=True
        )

    def _read_capped(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        limit = self.settings.max_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(
                f"{_redact(url)} is {int(declared):,} bytes, over the {limit:,}-byte limit", permanent=True
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(f"{_redact(url)} is over the {limit:,}-byte limit", permanent=True)
            if time.monotonic() > deadline:
                raise FetchError(f"timed out reading {_redact(url)} (body too slow)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refusing {_redact(url)!r}: only http and https are fetched", permanent=True)
        if not parts.hostname:
            raise FetchError(f"refusing {_redact(url)!r}: no host", permanent=True)
        if self.allow_private_networks:
            return
        for address in _resolve(parts.hostname, parts.port or 443):
            if not _is_public(address):
                raise FetchError(
                    f"refusing {_redact(url)}: {parts.hostname} resolves to non-public {address} "
                    "(set SUMMITWATCH_ALLOW_PRIVATE_NETWORKS=true to allow)",
                    permanent=True,
                )


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global unicast, also after unwrapping IPv4 addresses embedded in IPv6 forms."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
        if address in _NAT64 or int(address) >> 32 == 0:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(inner is None or _is_public(inner) for inner in embedded)
    return True


def _redact(url: str) -> str:
    """A URL fit for logs and error messages (the one rule in :mod:`pipeline.redaction`)."""
    return redact_url(url)


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.append(address)
    return addresses
