"""Duplicate keys: canonical URLs and normalised-text hashes (exact duplicates).

A pure stage: strings in, keys out. The database decides what the keys collide with.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import idna

# Query parameters that identify a campaign, a click or a session, never the article.
# Generic names (source, from, ref, id...) are left alone: sites use them for content.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gclsrc",
        "msclkid",
        "yclid",
        "ysclid",
        "igshid",
        "twclid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ref_src",
        "ref_url",
        "cmpid",
        "ito",
        "ocid",
        "ncid",
        "sr_share",
        "spm",
        "at_medium",
        "at_campaign",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "s_cid",
        "wt.mc_id",
        "utm",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hmsr", "hmpl", "hmcu", "hmkw", "hmci")
DEFAULT_PORTS = {"http": 80, "https": 443}
_INDEX_PAGES = ("/index.html", "/index.htm", "/index.php")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters that are unsafe raw in a URL component; percent-encoded when they appear.
_SAFE_RAW = "/:@!$&'()*+,;=-._~%"


# Raised whenever canonical_url gives another form for some URL: `summitwatch init` then
# stores every article's canonical URL again (a stored form the look-ups no longer make
# would let the same page be stored again). 2: parameters such as from/source/ref/share
# kept, %20 and %2F kept as written, legacy-charset bytes and #! routes kept. 3: "." and ".."
# path segments removed (RFC 3986, 5.2.4), as every client does before it asks. 4: an
# international host name in IDNA 2008 (UTS 46), as the HTTP client writes it.
CANONICAL_URL_SCHEME = "4"


def canonical_url(url: str) -> str:
    """Return the form of ``url`` under which two sightings of one page compare equal.

    Lower-cases scheme and host, treats http and https alike, drops default ports,
    resolves "." and ".." path segments, removes fragments (except ``#!`` routes),
    tracking parameters and a trailing slash,
    sorts the remaining query, and normalises percent-encoding as RFC 3986 section 6.2.2
    says: hex digits upper-cased and only unreserved characters decoded, so that ``%2F``
    stays distinct from ``/`` and bytes in legacy encodings (windows-1251, GBK) survive.
    ``www.`` is not stripped: it can be a different site. Raises ValueError for a URL
    that cannot be parsed (e.g. a port out of range).
    """
    raw = url.strip()
    parts = urlsplit(raw)
    scheme = (parts.scheme or "http").lower()
    if scheme == "https":
        # http and https copies of one page are the same article.
        scheme = "http"
    host = (parts.hostname or "").lower().rstrip(".")
    if not host.isascii():
        # IDNA 2008 with UTS 46 mapping, as the HTTP client asks for it (and as feed URLs are
        # spelt): Python's own "idna" codec (IDNA 2003) maps "ß" to "ss" and "ς" to "σ", so
        # a page at "straße.de" was taken for one at "strasse.de", another registrant's
        # domain, and never fetched. A name IDNA 2008 refuses cannot be fetched; its
        # IDNA 2003 form still compares equal spellings.
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (UnicodeError, idna.IDNAError):
            with contextlib.suppress(UnicodeError):
                host = host.encode("idna").decode("ascii")
    port = parts.port
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    if port and DEFAULT_PORTS.get(parts.scheme.lower()) != port:
        netloc = f"{netloc}:{port}"
    path = _remove_dot_segments(_normalise_escapes(quote(parts.path or "/", safe=_SAFE_RAW)))
    path = re.sub(r"/{2,}", "/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    # Until none is left: ".../index.html/index.htm" must canonicalise in one go (idempotence).
    while path.endswith(_INDEX_PAGES):
        path = path[: -len(next(s for s in _INDEX_PAGES if path.endswith(s)))] or "/"
    pairs = []
    for piece in parts.query.split("&"):
        if not piece:
            continue
        key = piece.split("=", 1)[0]
        if _is_tracking(unquote(key)):
            continue
        pairs.append(_normalise_escapes(quote(piece, safe=_SAFE_RAW + "?")))
    query = "&".join(sorted(pairs))
    fragment = parts.fragment if parts.fragment.startswith("!") else ""
    return urlunsplit((scheme, netloc, path, query, fragment))


def _normalise_escapes(component: str) -> str:
    def repair(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _PERCENT.sub(repair, component)


def _remove_dot_segments(path: str) -> str:
    """``path`` without its "." and ".." segments (RFC 3986, 5.2.4), as a browser or httpx
    sends it: "/news/./a" and "/news/x/../a" are the page "/news/a" (a feed's link written
    relative to a folder), asked for and answered under that one address."""
    if not path.startswith("/"):
        return path
    segments = path.split("/")[1:]
    if "." not in segments and ".." not in segments:
        return path
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):
        kept.append("")  # ("/a/b/.." is the folder "/a/")
    return "/" + "/".join(kept)


def _is_tracking(key: str) -> bool:
    lowered = key.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Fold a text to the form used for hashing: NFKC, case-folded, punctuation-free."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT_OR_SPACE.sub(" ", folded).strip()


def content_hash(text: str) -> str:
    """SHA-256 of the normalised text: equal for copies that differ only in layout."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()
