"""Duplicate keys: canonical URLs and normalised-text hashes (exact duplicates).

A pure stage: strings in, keys out. The database decides what the keys collide with.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters that identify a campaign, a click or a session, never the article.
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
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "cmpid",
        "cmp",
        "ito",
        "ocid",
        "ncid",
        "sr_share",
        "share",
        "spm",
        "from",
        "source",
        "src",
        "via",
        "at_medium",
        "at_campaign",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "s_cid",
        "wt.mc_id",
        "rss",
        "rssfeed",
        "feed",
        "outputtype",
        "utm",
    }
)
TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "hmsr", "hmpl", "hmcu", "hmkw", "hmci")
DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """Return the form of ``url`` under which two sightings of one page compare equal.

    Lower-cases scheme and host, drops default ports, ``www.``-agnostic hosts are *not*
    merged (they can be different sites), removes fragments, tracking parameters and a
    trailing slash, sorts the remaining query, and normalises percent-encoding.
    """
    raw = url.strip()
    parts = urlsplit(raw)
    scheme = (parts.scheme or "http").lower()
    if scheme == "https":
        # http and https copies of one page are the same article.
        scheme = "http"
    host = (parts.hostname or "").lower().rstrip(".")
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii") if host else host
    port = parts.port
    netloc = host
    if port and DEFAULT_PORTS.get(parts.scheme.lower()) != port:
        netloc = f"{host}:{port}"
    path = quote(unquote(parts.path or "/"), safe="/:@!$&'()*+,;=-._~%")
    path = re.sub(r"/{2,}", "/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    for suffix in ("/index.html", "/index.htm", "/index.php"):
        if path.endswith(suffix):
            path = path[: -len(suffix)] or "/"
    query_pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    query = urlencode(sorted(query_pairs), doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


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
