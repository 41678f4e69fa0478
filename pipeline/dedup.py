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

from pipeline.hanzi import simplified_characters

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

# Raised whenever normalise_text folds some text otherwise: `summitwatch init` then hashes
# every stored text again (a hash the look-ups no longer make would let the same text be
# stored again, and a page read again would look changed). 2: the spelling variants below.
CONTENT_HASH_SCHEME = "2"

# Spelling that copies of one text vary in without changing a word: Russian ё written е;
# the Arabic and Persian forms of yeh and kaf (ي ی ى, ك ک), alef with or without hamza
# (أ إ آ ٱ), teh marbuta and heh, vowel marks and the tatweel; and invisible characters
# (a soft hyphen, a zero-width space, non-joiner or word joiner, a byte-order mark), left
# out so that a word they sit in, or a Persian word written with or without its
# non-joiner, stays one word. The text hash and the near-duplicate shingles
# (pipeline.neardup) fold them alike.
# The invisible characters a word may carry (see SPELLING_FOLD).
INVISIBLE_IN_WORDS = ("\u00ad", "\u200b", "\u200c", "\u2060", "\ufeff")
SPELLING_FOLD = str.maketrans(
    {
        "ё": "е",
        "\u06cc": "\u064a",
        "\u0649": "\u064a",
        "\u06a9": "\u0643",
        "\u0623": "\u0627",
        "\u0625": "\u0627",
        "\u0622": "\u0627",
        "\u0671": "\u0627",
        "\u0629": "\u0647",
        **dict.fromkeys(
            [
                "\u0640",
                "\u0670",
                *map(chr, range(0x064B, 0x0653)),
                *INVISIBLE_IN_WORDS,
            ],
            None,
        ),
    }
)
# Accents a copy may carry or lose (a wire or feed that writes ASCII only, a page that
# marks Russian stress): the marks of Latin letters, and the stress accents of Cyrillic
# ones (not the breve of й or the diaeresis of ї, which are letters of their own).
_LATIN_MARKS = re.compile("(?<=[a-z\u00df-\u024f])[\u0300-\u036f]+")
_CYRILLIC_STRESS = re.compile("(?<=[\u0400-\u052f])[\u0300\u0301]+")
# Latin letters with a stroke or without a dot, which have no accent to leave out: an
# ASCII copy writes them as these.
_LATIN_PLAIN = str.maketrans({"đ": "d", "ł": "l", "ø": "o", "ħ": "h", "ı": "i"})


_FOLD_TABLE = {**SPELLING_FOLD, **_LATIN_PLAIN}
# (Characters are looked for first: translating or decomposing a whole text costs seconds
# on a text of millions of characters, and most texts hold few or none of them.)
_FOLDED = re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(_FOLD_TABLE)) + "]+")
_ACCENTED = re.compile("[\u00c0-\u024f\u1e00-\u1eff\u0300-\u036f\u0400\u040d\u0450\u045d]")


def fold_spelling(text: str) -> str:
    """``text`` (NFKC, case-folded) with the spelling variants copies differ in folded:
    :data:`SPELLING_FOLD`, Latin accents and Cyrillic stress marks left out, Traditional
    Chinese characters read as Simplified ones (character for character)."""
    if text.isascii():
        return text
    text = _FOLDED.sub(lambda run: run[0].translate(_FOLD_TABLE), text)
    if _ACCENTED.search(text):
        decomposed = unicodedata.normalize("NFD", text)
        bare = _CYRILLIC_STRESS.sub("", _LATIN_MARKS.sub("", decomposed))
        text = unicodedata.normalize("NFC", bare)
    return simplified_characters(text)


def normalise_text(text: str) -> str:
    """Fold a text to the form used for hashing: NFKC, case-folded, spelling variants
    folded (:func:`fold_spelling`), punctuation-free."""
    folded = fold_spelling(unicodedata.normalize("NFKC", text).casefold())
    return _PUNCT_OR_SPACE.sub(" ", folded).strip()


def content_hash(text: str) -> str:
    """SHA-256 of the normalised text: equal for copies that differ only in layout, in
    invisible characters, in accents or in the spelling variants :func:`fold_spelling`
    folds (a short brief has no near-duplicate signature: this is its only test)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()
