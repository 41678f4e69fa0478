"""The one spelling of a feed URL, shared by the feed list, the command line and the
database look-ups, and what a site's front page looks like (light: no feed parser behind
it)."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlsplit

import idna

# Longest feed URL taken (the databases' URL column; PostgreSQL refuses longer ones).
MAX_FEED_URL_LENGTH = 2048
FEED_LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Bidirectional controls (embeddings, overrides, isolates, marks): never part of an
# address, and a right-to-left override would turn around a line that prints one.
_NEVER_IN_URLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalise_feed_url(value: str) -> str:
    """The one spelling of a feed URL, or :class:`ValueError` saying why it is not one.

    Surrounding whitespace is dropped; whitespace or control characters (C0, C1 and the
    bidirectional ones) inside, a scheme
    other than http(s), a missing host or a port that is not one are refused (each would
    fail at every poll). Scheme and host are lower-cased, an internationalised host is
    written in ASCII (punycode), the default port, an empty path and the fragment (never
    sent to the server) are dropped, so one feed is not stored, and polled, twice.
    """
    url = value.strip()
    if any(
        char.isspace() or char in _NEVER_IN_URLS or 0x7F <= ord(char) <= 0x9F or ord(char) < 32
        for char in url
    ):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an absolute http(s) URL")
    if not parts.hostname:  # ("http://", "https:///", "http://@/x", "http://:80/")
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if port == 0:
        raise ValueError("has port 0")
    try:
        # IDNA 2008 with UTS 46 mapping, as the HTTP client writes it: Python's own "idna"
        # codec (IDNA 2003) maps "ß" to "ss" and "ς" to "σ", another registrant's domain.
        host = (
            parts.hostname if parts.hostname.isascii() else idna.encode(parts.hostname, uts46=True).decode()
        )
    except (UnicodeError, idna.IDNAError):
        raise ValueError(f"has a host name that is not valid: {parts.hostname!r}") from None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    elif "" in host.removesuffix(".").split("."):
        # ("http://./", "http://a..b/": no name; one final dot is the root's, and allowed.)
        raise ValueError(f"has a host name that is not valid: {parts.hostname!r}")
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    normal = f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    if len(normal) > MAX_FEED_URL_LENGTH:
        raise ValueError(f"is longer than {MAX_FEED_URL_LENGTH} characters")
    return normal


def feed_url_spellings(value: str) -> list[str]:
    """``value`` and, when it is a feed URL, its one spelling: what a stored feed may be
    called by (rows stored before URLs were normalised keep the spelling they were given)."""
    try:
        normal = normalise_feed_url(value)
    except ValueError:
        return [value]
    return [value] if normal == value else [value, normal]


# A feed's name and outlet hold this many characters (the columns' size).
MAX_NAME_CHARS = 300


def clean_name(value: str | None) -> str | None:
    """A feed's name or outlet as stored and shown: control characters dropped (a NUL,
    which PostgreSQL refuses; an escape that would reach the terminal), spaces collapsed,
    cut to :data:`MAX_NAME_CHARS`; None when nothing is left."""
    if value is None:
        return None
    text = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", value).split())
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)  # (lone surrogates, which no driver takes)
    return text[:MAX_NAME_CHARS].rstrip() or None


# The paths of a site's front page (and its index pages).
_FRONT_PAGE_PATHS = frozenset({"", "/", "/index.html", "/index.htm", "/index.php", "/default.aspx", "/home"})


def front_page(url: SplitResult | str) -> bool:
    """Whether ``url`` is a site's front page: its root (or index page, or a language's root
    such as "/en/") with no query but tracking parameters. "/?p=123",
    "/index.php?id=5" and "/#!/article/7" are articles. A URL that cannot be read is none."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else url
        if isinstance(url, str) and (parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname):
            return False
    except ValueError:
        return False
    if parts.fragment.startswith("!"):
        return False  # a "#!" route names a page of a script-driven site (its URL keeps it too)
    path = parts.path.lower()
    segments = [segment for segment in path.split("/") if segment]
    root = path in _FRONT_PAGE_PATHS or (
        len(segments) == 1 and len(segments[0]) == 2 and segments[0].isalpha()
    )
    query = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return root and all(name.lower().startswith(("utm_", "fbclid", "gclid", "ref")) for name in query)
