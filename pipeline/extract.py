"""Article extraction: the bytes of one fetched page in, its main text and metadata out.

A pure stage: no network, no database, no other pipeline stage. :func:`extract_page` never
raises on bad input; every problem ends up in :attr:`ExtractedPage.error`.

The work happens in four steps:

1. **Refuse what is not HTML.** Magic bytes (PDF, images, archives, media, ...) and the
   HTTP content type are checked first; whatever the type, a body without a single HTML
   tag near its start is refused too (plain text, XML feeds, JSON, error messages).
2. **Decode.** A byte-order mark wins. Otherwise valid UTF-8 that contains non-ASCII bytes
   is taken as UTF-8 whatever the page claims (legacy-encoded text practically never
   validates as UTF-8, while "says windows-1251 but was re-saved as UTF-8" is common), and
   so is UTF-8 with stray bytes, as long as its well-formed multi-byte characters outnumber
   them two to one (or, where the page declares UTF-8, up to three or one in fifty): the
   stray bytes are read in the single-byte charset the page declares (a "read also"
   include left in the site's old charset) or become U+FFFD, where a legacy codec guessed
   for the whole page would garble every other character. (A page declaring UTF-8 with
   not one valid multi-byte character is legacy text: a single-byte codec is detected.)
   UTF-8 encoded twice over (read as windows-1252 or Latin-1 and written out as UTF-8
   again) is read back once when the whole document allows it (:func:`_undouble_utf8`).
   Then the declared charsets (HTTP header, ``<meta>``, XML declaration) are tried in that
   order (but a Latin-1/windows-1252 header, often the server's default, comes after the
   page's own declarations, unless ``<html lang>`` names a language written in
   windows-1252); each must decode strictly *and* look plausible next to what
   charset_normalizer detects, because single-byte codecs decode anything and so prove
   nothing. Failing all that, the codec is detected from the page's text (tags
   stripped): among the legacy codecs of the language ``<html lang>`` names, if any reads
   the page cleanly; else charset_normalizer guesses, and a Latin guess yields to
   windows-1252 (the WHATWG default) when that reads at least as cleanly. Windows-1251
   and Mac Cyrillic, which both read alike to the detector, are told apart by the shape
   of the words each makes (capitals where capitals go). A 7-bit page with ISO-2022-JP's
   escape sequences is ISO-2022-JP unless it declares another ISO-2022 codec.
3. **Extract** with trafilatura: precision mode first, balanced mode when that finds
   too little, and a re-run when the article is split over several look-alike
   containers (see :func:`_extract_text`). Zero-width non-joiners and joiners (spelling
   in Persian, Kurdish and the Indic scripts), which trafilatura would drop, are carried
   through it as stand-in letters and put back (:func:`_protect_joiners`). An article
   taken from the page's JSON-LD ``articleBody`` (no text in the markup) keeps the
   body's paragraph breaks, which trafilatura runs together (:func:`_json_ld_paragraphs`).
4. **Clean up** the text with language-independent rules, which compare lines with the
   page's own metadata and links rather than with word lists: leading lines repeating
   the headline, giving the publication date or naming the author are dropped, and so
   are closing lines that are (mostly) the text of a link or button on the page,
   closing lists made of such links, bylines and copyright notices (a line opening with
   "©" or "Copyright 2024", or a short one with "©", "Copyright" or an "all rights
   reserved" formula; a sentence about copyright is text). A page that says its content
   is not free (schema.org ``isAccessibleForFree: false``, ``article:content_tier``
   "locked") and whose whole text is a short prompt speaking of a subscription is an
   error, "paywalled: only a subscription prompt" (:func:`_only_a_subscription_prompt`).

Oversize bodies are **truncated** to ``max_bytes`` and extracted anyway (HTML parsers
recover from a cut-off document, and the article text is almost always in the first
megabytes); the truncation is logged, and a multi-byte character cut in half at the end
does not count against the declared charset.
"""

from __future__ import annotations

import codecs
import functools
import json
import logging
import re
import unicodedata
from collections.abc import Collection, Iterator
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import charset_normalizer
import lxml.etree
import lxml.html
import trafilatura
from trafilatura.settings import Document

from pipeline.charsets import crowded_tag, normalise_charset, parse_content_type
from pipeline.language import text_length
from pipeline.records import ExtractedPage
from pipeline.sentences import split_sentences

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- tunables

# A precision-mode result shorter than this (in characters) is suspicious: the strict
# filters may have thrown the article away with the boilerplate. The balanced mode is then
# tried as well (see _extract_text). Two short paragraphs' worth.
SHORT_TEXT_CHARS: Final = 600
# ... and the balanced result replaces it only if it is at least this many times longer,
# so that a genuinely short article keeps its precise extraction.
FALLBACK_MIN_GAIN: Final = 2.0
# Continuation containers (article bodies split into chunks around ad slots) are looked
# for at most this many levels above the container holding the extracted paragraphs.
TWIN_MAX_LEVELS: Final = 3
# Continuations must add at least this many characters of paragraph text, together.
TWIN_MIN_NEW_CHARS: Final = 200
# Extracted lines at least this long anchor the search for the article container.
ANCHOR_LINE_CHARS: Final = 60
# A table cell with this much text (or a nested table, or two blocks) lays out a page,
# it does not hold data (see _unwrap_layout_tables).
LAYOUT_CELL_CHARS: Final = 200
# At most this many lines are removed from the end of the text by the trailing cleanup.
MAX_TRAILING_DROP: Final = 12
# A trailing line counts as a link (and is dropped) when links' text covers this share of it.
TRAILING_LINK_SHARE: Final = 0.5
# In a closing list, an item whose text is this much link counts as a link; a list of
# such items is a related-links box (the items are often "Kicker: <a>headline</a>").
LIST_ITEM_LINK_SHARE: Final = 0.3
# At most this many lines (headline, dateline, byline) are removed from the start.
MAX_LEADING_DROP: Final = 3
# A leading line naming the publication date is a dateline only if this short.
DATELINE_MAX_CHARS: Final = 100
# A closing list longer than this is content (a long enumeration), not a related-links box.
MAX_LINK_BOX_ITEMS: Final = 30
# Lines with more words than this are prose, never "a link" (also bounds the lookup cost).
LINK_LINE_MAX_WORDS: Final = 60
# A one-word link text is kept for matching only if this long (CJK headlines have no spaces).
MIN_ANCHOR_CHARS: Final = 8
# A line naming the author is a byline (not a sentence mentioning them) if this short.
BYLINE_MAX_WORDS: Final = 12
# A line of at most this many words left at the end after dropping a box is its heading.
ORPHAN_HEADING_WORDS: Final = 5

# --------------------------------------------------------------------------- sniffing

# (prefix, description) of binary formats a crawler meets in place of an article page.
_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF-", "PDF document"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x00\x00\x01\x00", "icon"),
    (b"PK\x03\x04", "ZIP archive (or office document)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"(\xb5/\xfd", "zstd-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE document (old MS Office)"),
    (b"{\\rtf", "RTF document"),
    (b"\x7fELF", "executable"),
    (b"\x00asm", "WebAssembly module"),
    (b"wOFF", "web font"),
    (b"wOF2", "web font"),
    (b"OggS", "Ogg media"),
    (b"fLaC", "FLAC audio"),
    (b"ID3", "MP3 audio"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM media"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"%!PS", "PostScript document"),
)

_HTML_MIMES: Final = frozenset({"text/html", "application/xhtml+xml", "application/vnd.wap.xhtml+xml"})
# Types that say "not an article page" outright, even if the body had a tag or two in it.
_NON_HTML_MIME_PREFIXES: Final = ("image/", "audio/", "video/", "font/", "model/", "multipart/")
_NON_HTML_MIMES: Final = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "application/x-bzip2",
        "application/json",
        "application/ld+json",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "text/css",
        "text/csv",
        "text/calendar",
        "application/msword",
        "application/rtf",
        "application/postscript",
        "application/x-shockwave-flash",
        "application/wasm",
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/x-font-woff",
        "application/vnd.ms-fontobject",
    }
)
# Office documents and friends ("application/vnd.openxmlformats-...", "vnd.ms-excel", ...).
_NON_HTML_MIME_RE: Final = re.compile(r"^application/vnd\.(?!wap\.xhtml)")

# Enough of a tag vocabulary to tell markup from plain text, XML feeds and binary noise.
_LOOKS_LIKE_HTML_RE: Final = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|title|meta|p|div|article|main|section|br|h[1-6]"
    rb"|table|span|a\s|img\s|ul|script)\b",
    re.IGNORECASE,
)
# C0 controls other than tab, LF, FF, CR and ESC (ISO-2022 uses ESC) never occur in text.
_CONTROL_BYTES: Final = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))

# --------------------------------------------------------------------------- charsets

_BOMS: Final[tuple[tuple[bytes, str], ...]] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Covers <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">.
_META_CHARSET_RE: Final = re.compile(
    rb"""<meta\b[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.IGNORECASE
)
_XML_DECL_RE: Final = re.compile(
    rb"""^\s*<\?xml\b[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9_.:+-]{1,40})""", re.IGNORECASE
)
# How far into the page the charset declarations are looked for. WHATWG pre-scans only
# 1024 bytes, but real pages put kilobytes of scripts before their <meta charset>.
_DECLARATION_SCAN_BYTES: Final = 65_536
# How much of the page charset_normalizer gets to look at (after stripping the tags).
_DETECTION_SAMPLE_BYTES: Final = 262_144
# Switch away from a declared (strictly decodable) charset only if it reads this much
# messier, by charset_normalizer's mess ratio, than the detected one.
_MESS_MARGIN: Final = 0.1
# The legacy single-byte codecs each language is written in (the first is the usual one),
# for the language a page names in its <html lang>: charset detection alone confuses
# codecs that differ in a few letters (Turkish windows-1254 read as windows-1252 gives
# "Baþkaný", Polish windows-1250 read as ISO-8859-4 "W³adimir").
_WESTERN: Final = ("cp1252", "iso8859_15")
_WESTERN_LANGS: Final = "en fr de es it pt nl da sv no nb nn fi is ga ca eu gl af id ms sw lb"
_CENTRAL: Final = ("cp1250", "iso8859_2")
_CYRILLIC: Final = ("cp1251", "koi8_r", "koi8_u", "mac_cyrillic", "iso8859_5")
_BALTIC: Final = ("cp1257", "iso8859_13", "iso8859_4")
_LANG_CODECS: Final[dict[str, tuple[str, ...]]] = {
    **dict.fromkeys(_WESTERN_LANGS.split(), _WESTERN),
    **dict.fromkeys(("pl", "cs", "sk", "hu", "sl", "hr", "bs", "ro"), _CENTRAL),
    **dict.fromkeys(("ru", "uk", "bg", "sr", "mk", "be"), _CYRILLIC),
    **dict.fromkeys(("et", "lv", "lt"), _BALTIC),
    "tr": ("cp1254",),
    "el": ("cp1253", "iso8859_7"),
    "he": ("cp1255", "iso8859_8"),
    "yi": ("cp1255", "iso8859_8"),
    "ar": ("cp1256", "iso8859_6"),
    "fa": ("cp1256",),
    "ur": ("cp1256",),
    "vi": ("cp1258",),
    "th": ("cp874",),
}
# <html lang="tr"> (or xml:lang) in the raw bytes, read before decoding.
_HTML_LANG_RE: Final = re.compile(
    rb"""<html\b[^>]{0,512}?\blang\s*=\s*["']?\s*([A-Za-z0-9_-]{2,24})""", re.IGNORECASE
)


# --------------------------------------------------------------------------- text helpers

_WORD_RE: Final = re.compile(r"\w+")
_ISO_DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INVALID_XML_CHARS_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NUMBER_RE: Final = re.compile(r"\d+")
_SENTENCE_STOPS: Final = frozenset(".!?。！？")
_NON_WORD_RUN_RE: Final = re.compile(r"\W*")
_LIST_MARKER_RE: Final = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.)])\s+")
# Copyright notices, not sentences about copyright: a line opening with "©", "(c)" or
# "Copyright" followed by a year or "©" ("© 2024 Agency", "Copyright 2024 Name"), or
# naming "©"/"(c) 2019"/"Copyright" or an "all rights reserved" formula in a few words (the
# English word is used as a legal term in many languages; the formula is in each).
_COPYRIGHT_OPENING_RE: Final = re.compile(
    # ("(c)" alone also opens the third item of a list: only with a year, or as "(c) Copyright".)
    r"^\W*(?:©|℗|\(c\)\s*(?:(?:19|20)\d\d|copyright)|copyright\s*(?:©|\(c\))?\s*(?:19|20)\d\d|copyright\s*©)",
    re.IGNORECASE,
)
_COPYRIGHT_RE: Final = re.compile(
    r"©|\(c\)\s*(?:19|20)\d\d|\bcopyright\b|all rights reserved|все права защищены|版权所有|版權所有"
    r"|著作権|저작권|alle rechte vorbehalten|tous droits réservés|todos los derechos reservados"
    r"|tutti i diritti riservati|todos os direitos reservados|wszelkie prawa zastrzeżone",
    re.IGNORECASE,
)
# ... at most this many words (a notice with the owner's name; sentences are longer).
COPYRIGHT_MAX_WORDS: Final = 12

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
# ISO 639-2/3 codes sometimes put in lang attributes, for the languages we expect most.
_LANG3_TO_1: Final = {
    "eng": "en",
    "rus": "ru",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "yue": "zh",
    "deu": "de",
    "ger": "de",
    "fra": "fr",
    "fre": "fr",
    "spa": "es",
    "por": "pt",
    "ita": "it",
    "jpn": "ja",
    "kor": "ko",
    "ara": "ar",
    "ukr": "uk",
    "pol": "pl",
    "tur": "tr",
    "nld": "nl",
    "dut": "nl",
    "fas": "fa",
    "per": "fa",
    "hin": "hi",
    "vie": "vi",
    "kaz": "kk",
    "bel": "be",
    "mon": "mn",
}
# Withdrawn ISO 639-1 codes that old sites still use.
_LANG_RENAMED: Final = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro", "sh": "sr"}


def _norm(text: str) -> str:
    """Word tokens of ``text``, case-folded and space-joined: a markup-proof comparison key."""
    return " ".join(_WORD_RE.findall(text)).casefold()


# =========================================================================== public API


def extract_page(
    body: bytes,
    *,
    url: str | None = None,
    content_type: str | None = None,
    max_bytes: int = 5_000_000,
    favor_recall: bool = False,
) -> ExtractedPage:
    """Extract the main text, title, date and declared language of one HTML page.

    Args:
        body: the raw response body, in whatever encoding the server sent.
        url: the page's URL, if known; helps date extraction and link resolution.
        content_type: the HTTP ``Content-Type`` header, if known (its ``charset``
            parameter is one of the charset candidates; its type decides, together with
            the magic bytes, whether the body is HTML at all).
        max_bytes: bodies longer than this are cut to this length before extraction.
        favor_recall: use trafilatura's balanced mode with comment-like blocks kept,
            for pages known to be wanted whole (the seed corpus: a multi-author
            conversation page whose contributions sit in comment-like containers).

    Returns:
        An :class:`ExtractedPage`. On failure ``text`` is empty and ``error`` says why
        (non-HTML content, empty body, no main text found, ...); title, date and
        language hint are kept whenever the page could be parsed.

    Raises:
        TypeError: ``body`` is not bytes-like (a caller bug, not bad input).
        ValueError: ``max_bytes`` is not positive.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    data = bytes(body)
    try:
        return _extract_page(
            data, url=url, content_type=content_type, max_bytes=max_bytes, favor_recall=favor_recall
        )
    except Exception as exc:
        # Unexpected: a bug here or in a library. Bad input must not crash the pipeline,
        # but the traceback has to reach the logs or the bug would never be fixed.
        logger.exception("extraction failed unexpectedly for %s", url or "<no url>")
        return ExtractedPage(text="", error=f"extraction failed: {type(exc).__name__}: {exc}")


# =========================================================================== the stage


def _extract_page(
    data: bytes, *, url: str | None, content_type: str | None, max_bytes: int, favor_recall: bool = False
) -> ExtractedPage:
    if not data.strip():
        return ExtractedPage(text="", error="empty body")
    if len(data) > max_bytes:
        logger.info("body of %s truncated from %d to %d bytes", url, len(data), max_bytes)
        data = data[:max_bytes]

    mime, http_charset = parse_content_type(content_type)
    refusal = _refuse_non_html(data, mime, http_charset) or crowded_tag(data)
    if refusal is not None:
        return ExtractedPage(text="", error=refusal)

    html, encoding = _decode_html(data, http_charset)
    tree = _parse_html(html)
    if tree is None:
        return ExtractedPage(text="", error="no HTML document could be parsed")

    lang_hint = _lang_hint(tree)
    joiners = _protect_joiners(tree, html)
    meta = _metadata(tree, url)
    _unwrap_layout_tables(tree)
    _flatten_crowded_inline(tree)
    text = _extract_text(tree, url, favor_recall=favor_recall)
    if text:
        text = _clean_text(text, tree, meta)
    title = meta.title
    if joiners:
        text = text.translate(joiners)
        title = title.translate(joiners) if title else title
    if text:
        text = _json_ld_paragraphs(text, tree, joiners)
    if text and _only_a_subscription_prompt(text, tree):
        return ExtractedPage(text="", title=title, date=meta.date, lang_hint=lang_hint, error=PAYWALLED)
    logger.debug("extracted %d chars from %s (%s)", len(text), url, encoding)
    return ExtractedPage(
        text=text,
        title=title,
        date=meta.date,
        lang_hint=lang_hint,
        error=None if text else "no main text found",
    )


# --------------------------------------------------------------------------- sniffing


def _refuse_non_html(data: bytes, mime: str, http_charset: str | None = None) -> str | None:
    """Say why ``data`` is not an HTML page, or return None if it may be one."""
    head = data[:4096]
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not HTML: {what}"
    if head[4:8] == b"ftyp":
        return "not HTML: MP4/HEIF media"
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return f"not HTML: RIFF {head[8:12].decode('ascii').strip()} data"
    if mime.startswith(_NON_HTML_MIME_PREFIXES) or mime in _NON_HTML_MIMES:
        return f"not HTML: content type {mime}"
    if _NON_HTML_MIME_RE.match(mime):
        return f"not HTML: content type {mime}"
    if not any(head.startswith(bom) for bom, _ in _BOMS) and _wide_codec(head, http_charset) is None:
        stripped = head.lstrip()
        controls = sum(stripped.count(bytes([c])) for c in _CONTROL_BYTES)
        if controls > max(2, len(stripped) // 100):
            return "not HTML: binary data"
    if not _looks_like_html(data, http_charset):
        # Whatever the type says (text/plain, XML feeds, octet-stream, an error message
        # sent as text/html), a body without a single HTML tag is no article page.
        return f"not HTML: no HTML markup (content type {mime or 'unknown'})"
    return None


def _looks_like_html(data: bytes, http_charset: str | None = None) -> bool:
    head = data[:8192]
    wide = next((codec for bom, codec in _BOMS if head.startswith(bom)), None)
    if wide is None:
        wide = _wide_codec(head, http_charset)
    return _markup_in(head, wide)


def _markup_in(head: bytes, wide: str | None) -> bool:
    if wide is not None:
        # UTF-16/32 markup: bring the ASCII tags back to single bytes for the pattern.
        head = head.decode(wide, "ignore").encode("ascii", "ignore")
    return _LOOKS_LIKE_HTML_RE.search(head) is not None


# The byte orders an HTTP header's UTF-16 or UTF-32 label names ("utf-16" alone: either).
_WIDE_LABELS: Final[dict[str, tuple[str, ...]]] = {
    "utf-16": ("utf-16-le", "utf-16-be"),
    "utf-16le": ("utf-16-le",),
    "utf-16be": ("utf-16-be",),
    "utf-32": ("utf-32-le", "utf-32-be"),
    "utf-32le": ("utf-32-le",),
    "utf-32be": ("utf-32-be",),
}


def _wide_codec(head: bytes, http_charset: str | None) -> str | None:
    """The UTF-16 or UTF-32 codec a body without a byte order mark is in, or None.

    Its start shows it when it is mostly ASCII markup (every other byte NUL). A page whose
    text begins early (Chinese, Russian) does not show it so; then the HTTP header's label
    is believed, as browsers believe it (unlike a ``<meta>``'s, which could not have been
    read in an ASCII-compatible charset), when the body holds NUL bytes, which no page in an
    ASCII-compatible charset does, and its markup reads in that codec.
    """
    if _looks_like_utf16(head):
        return "utf-16-le" if head[1:2] == b"\x00" else "utf-16-be"
    label = (http_charset or "").strip().strip("\"'").lower().replace("_", "-")
    if label not in _WIDE_LABELS or b"\x00" not in head:
        return None
    return next((codec for codec in _WIDE_LABELS[label] if _markup_in(head, codec)), None)


def _looks_like_utf16(head: bytes) -> bool:
    """BOM-less UTF-16 markup: every other byte of the ASCII-heavy start is NUL."""
    sample = head[:512]
    if len(sample) < 16:
        return False
    nul_even = sample[0::2].count(0)
    nul_odd = sample[1::2].count(0)
    half = len(sample) // 2
    return max(nul_even, nul_odd) > 0.5 * half and min(nul_even, nul_odd) < 0.05 * half


# --------------------------------------------------------------------------- decoding


def _decode_html(data: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode an HTML body to text, returning ``(text, codec name)``.

    See the module docstring for the order of evidence. Undecodable bytes left after
    choosing a codec become U+FFFD; this function does not raise on bad input.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, "replace"), encoding
    wide = _wide_codec(data[:8192], http_charset)
    if wide is not None:
        return data.decode(wide, "replace"), wide

    is_ascii = data.isascii()
    utf8_ok = _decodes_strictly(data, "utf-8")
    if utf8_ok and not is_ascii:
        return _undouble_utf8(data.decode("utf-8", "replace")), "utf-8"
    declared = list(_declared_charsets(data, http_charset))
    # Latin-1/windows-1252 in the HTTP header is often the server's default (Apache's
    # AddDefaultCharset), sent whatever the page is in, and a single-byte codec that
    # decodes anything proves nothing: the page's own declarations go first, taken only
    # when they read plausibly.
    server_default = (
        bool(http_charset)
        and normalise_charset(http_charset or "") == "cp1252"
        # (unless the page's language is written in windows-1252: then the header fits)
        and "cp1252" not in _lang_codecs(data)
    )
    if server_default:
        declared = [*declared[1:], declared[0]]
    if not is_ascii:
        nearly = _nearly_utf8(data, declared)
        if nearly is not None:
            return nearly

    if (
        is_ascii
        and _iso2022_jp_escapes(data)
        and not any((normalise_charset(label) or "").startswith("iso2022") for label in declared)
        and _decodes_strictly(data, "iso2022_jp")
    ):
        # 7-bit Japanese: reads as ASCII with escape sequences unless recognised, and a
        # declared Latin-1 (the server's default) or UTF-8 cannot be what it is.
        return data.decode("iso2022_jp", "replace"), "iso2022_jp"

    for index, label in enumerate(declared):
        codec = normalise_charset(label)
        if codec is None or codec == "utf-8" or not _ascii_compatible(codec):
            # Unusable label; or UTF-8, which already failed validation above; or a codec
            # (EBCDIC, ...) in which the ASCII markup we read the label from is impossible.
            continue
        if not _decodes_strictly(data, codec):
            logger.debug("declared charset %s does not decode the page", label)
            continue
        if is_ascii:
            # Any ASCII-compatible codec reads ASCII alike, except 7-bit ones with escape
            # sequences (ISO-2022-JP), for which the label is the only evidence there is.
            return data.decode(codec, "replace"), codec
        guessed = _cyrillic_twin(data, _plausible_or_guess(data, codec))
        if guessed != codec:
            logger.debug("declared charset %s implausible, detected %s", label, guessed)
            if server_default and index < len(declared) - 1:
                continue  # the page's own label, ahead of the header's: the header decides
        return data.decode(guessed, "replace"), guessed

    if is_ascii:
        return data.decode("ascii"), "ascii"
    guess = _detect_charset(data)
    if guess is not None:
        guess = _cyrillic_twin(data, guess)
        return data.decode(guess, "replace"), guess
    return data.decode("utf-8", "replace"), "utf-8"


# windows-1252's letters in 0x80-0x9F, back to their bytes (the other bytes of the range,
# which windows-1252 leaves undefined, come through as the C1 controls Latin-1 makes them).
_CP1252_HIGH: Final = {
    ord(char): byte for byte in range(0x80, 0xA0) if (char := bytes([byte]).decode("cp1252", "ignore"))
}
# Past this many rounds the text is what it is.
_MAX_UNDOUBLINGS: Final = 3


def _undouble_utf8(text: str) -> str:
    """``text`` with UTF-8 that was encoded twice read back once: a page in UTF-8 whose
    bytes a database or template read as windows-1252 (or Latin-1) and wrote out as UTF-8
    again ("ÐšÐ¸Ñ‚Ð°Ð¹" for "Китай", "Ã©" for "é"). Taken only when the whole
    document goes back to bytes in that charset and those bytes are valid UTF-8, which
    text that was written in Latin letters practically never is (an "é" alone is a lone
    lead byte); a page in any other script fails at its first letter."""
    for _ in range(_MAX_UNDOUBLINGS):
        try:
            raw = text.encode("cp1252")
        except UnicodeEncodeError as exc:
            if ord(exc.object[exc.start]) > 0xFF:
                return text  # (a letter of another script: no page read as windows-1252)
            try:  # (a C1 control: a byte windows-1252 leaves undefined, read as Latin-1)
                raw = text.translate(_CP1252_HIGH).encode("latin-1")
            except UnicodeEncodeError:
                return text
        try:
            undone = raw.decode("utf-8")
        except UnicodeDecodeError:
            return text
        if undone == text:
            return text
        logger.debug("UTF-8 encoded twice: read back once")
        text = undone
    return text


def decode_document(data: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode a fetched document (an HTML page, a feed) to text: ``(text, codec name)``.

    The order of evidence of the module docstring; never raises on bad input.
    """
    return _decode_html(data, http_charset)


# UTF-8 that does not validate: stray bytes among many well-formed characters (legacy-
# encoded text practically never forms multi-byte sequences by chance: a windows-1251 page
# forms about one for every seventy stray bytes), or a few among few when UTF-8 is what
# the document declares.
_UTF8_STRAY_SHARE = 0.5
_UTF8_MIN_WIDE = 20
_UTF8_STRAY_DECLARED = 3
_UTF8_STRAY_DECLARED_SHARE = 0.02
# ISO-2022-JP's escape sequences into JIS X 0208 (ESC $ B, ESC $ @) and back to ASCII or
# JIS-Roman (ESC ( B, ESC ( J): both kinds must occur for a page to be taken for it.
_ISO2022_JP_IN: Final = (b"\x1b$B", b"\x1b$@")
_ISO2022_JP_OUT: Final = (b"\x1b(B", b"\x1b(J")
# The single-byte codec of last resort: WHATWG's default for pages that declare nothing.
_DEFAULT_SINGLE_BYTE: Final = "cp1252"
_STRAY_RUN_RE: Final = re.compile("[\udc80-\udcff]+")
# Whole UTF-8 sequences by their shape alone (lead byte, then its continuation bytes).
_UTF8_SHAPED: Final = re.compile(
    rb"(?:[\xc0-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf7][\x80-\xbf]{3})+"
)


def _nearly_utf8(data: bytes, declared: list[str]) -> tuple[str, str] | None:
    """``(text, codec)`` if ``data`` is UTF-8 with some invalid bytes (a page pasted
    together from a UTF-8 template and a legacy-encoded include, one character cut), else
    None.

    The invalid runs are read with the first single-byte codec the page declares (the
    include is usually in the page's old charset), or become U+FFFD when it declares none:
    either way they cost those bytes alone, where a legacy codec guessed for the whole
    page would garble every other character. A page that declares UTF-8 but has not one
    valid multi-byte character is not UTF-8 at all: its few stray bytes are legacy text
    (an accented name in a Latin-1 page), read in the single-byte codec detected for it;
    unless every run of them has UTF-8's shape (an encoded surrogate, an overlong form):
    that is broken UTF-8 (:func:`_broken_utf8`).
    """
    text = data.decode("utf-8", "surrogateescape")
    stray = sum(len(run) for run in _STRAY_RUN_RE.findall(text))
    if stray == 0:
        return None  # (only a final character cut off: valid, and decoded above)
    wide = _non_ascii(text) - stray
    mostly_utf8 = wide >= _UTF8_MIN_WIDE and stray <= _UTF8_STRAY_SHARE * wide
    says_utf8 = bool(declared) and normalise_charset(declared[0]) == "utf-8"
    if (
        says_utf8
        and wide == 0
        and all(_UTF8_SHAPED.fullmatch(_stray_bytes(run)) for run in _STRAY_RUN_RE.findall(text))
    ):
        # Each stray run has UTF-8's shape (a lead byte and its continuation bytes: an
        # encoded surrogate, an overlong form), which legacy letters practically never
        # have: broken UTF-8, not the letters of a codec guessed from a few bytes.
        return _broken_utf8(data), "utf-8"
    if not mostly_utf8 and not (
        says_utf8 and stray <= max(_UTF8_STRAY_DECLARED, _UTF8_STRAY_DECLARED_SHARE * wide)
    ):
        return None
    if wide == 0:
        codec = _detect_charset(data, single_byte=True) or _DEFAULT_SINGLE_BYTE
        return data.decode(codec, "replace"), codec
    legacy = next((codec for codec in map(normalise_charset, declared) if _single_byte(codec)), None)
    if legacy is None:
        return data.decode("utf-8", "replace"), "utf-8"
    return _STRAY_RUN_RE.sub(lambda run: _stray_bytes(run.group()).decode(legacy, "replace"), text), "utf-8"


def _broken_utf8(data: bytes) -> str:
    """UTF-8 with encoded surrogates (CESU-8, Java's "modified UTF-8": a character beyond
    the Basic Multilingual Plane written as two three-byte halves) read as the characters
    the pairs stand for; anything else invalid, and a lone half, as U+FFFD."""
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _stray_bytes(run: str) -> bytes:
    """The bytes behind a run of ``surrogateescape`` characters."""
    return bytes(ord(char) - 0xDC00 for char in run)


@functools.lru_cache(maxsize=64)
def _single_byte(codec: str | None) -> bool:
    """Whether ``codec`` is an ASCII-compatible codec with one byte per character."""
    if codec is None or codec == "utf-8" or not _ascii_compatible(codec):
        return False
    high = bytes(range(0x80, 0x100))
    try:
        decoded = high.decode(codec, "replace")
    except LookupError:
        return False
    # (some bytes may be undefined: windows-1251's 0x98, a third of ISO-8859-8's)
    return len(decoded) == len(high) and decoded.count("\ufffd") < len(high) // 2


def _iso2022_jp_escapes(data: bytes) -> bool:
    return any(esc in data for esc in _ISO2022_JP_IN) and any(esc in data for esc in _ISO2022_JP_OUT)


def _declared_charsets(data: bytes, http_charset: str | None) -> Iterator[str]:
    """Charset labels the page declares, strongest first: HTTP, <meta>, XML declaration."""
    if http_charset:
        yield http_charset
    head = data[:_DECLARATION_SCAN_BYTES]
    meta = _META_CHARSET_RE.search(head)
    if meta:
        yield meta.group(1).decode("ascii")
    xml = _XML_DECL_RE.match(head)
    if xml:
        yield xml.group(1).decode("ascii")


def _lang_codecs(data: bytes) -> tuple[str, ...]:
    """The legacy codecs of the language the page's ``<html lang>`` names, () if none."""
    match = _HTML_LANG_RE.search(data[:_DECLARATION_SCAN_BYTES])
    lang = _normalise_lang(match.group(1).decode("ascii")) if match else None
    return _LANG_CODECS.get(lang or "", ())


@functools.lru_cache(maxsize=64)
def _ascii_compatible(codec: str) -> bool:
    probe = b'<meta charset="x"> <p>Az09</p>'
    try:
        return probe.decode(codec) == probe.decode("ascii")
    except (UnicodeDecodeError, LookupError):
        return False


def _decodes_strictly(data: bytes, encoding: str) -> bool:
    """Whether ``data`` is valid in ``encoding``, forgiving a cut-off final character
    (the body may have been truncated to max_bytes in the middle of one)."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        decoder.decode(data, final=False)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _text_sample(data: bytes) -> bytes:
    """The page with its tags removed: markup is ASCII and only dilutes the evidence."""
    head = data[:_DETECTION_SAMPLE_BYTES]
    if len(data) > len(head):
        # End on a space or tag start, never inside a multi-byte character: a cut-off
        # final character disqualifies the right codec (no CJK trail byte is 0x20 or "<").
        cut = max(head.rfind(b" "), head.rfind(b"<"))
        head = head[:cut] if cut > 0 else head
    sample = re.sub(rb"\s+", b" ", re.sub(rb"<[^<>]{0,4096}>", b" ", head))
    # Too little text left (a page that is all markup and scripts): use everything.
    return sample if len(sample) >= 256 else head


def _detect_charset(data: bytes, *, single_byte: bool = False) -> str | None:
    """The codec the page's text reads best in, None if there is none; with
    ``single_byte``, only a single-byte codec will do.

    When ``<html lang>`` names a language, the legacy codecs it is written in are tried
    first and the cleanest of them wins (the detector alone takes Turkish windows-1254
    for windows-1252, Polish windows-1250 for ISO-8859-4). Otherwise charset_normalizer
    guesses, and a guess of another Latin codec yields to windows-1252 (the WHATWG
    default) when that reads the page at least as cleanly: "José Peña" must not become
    "Peńa" because the detector had too few letters to go by.
    """
    sample = _text_sample(data)
    by_lang = _cleanest(sample, _lang_codecs(data))
    if by_lang is not None:
        return by_lang
    best = charset_normalizer.from_bytes(sample).best()
    if best is not None and single_byte and not _single_byte(normalise_charset(best.encoding)):
        best = None
    if best is None or _latin_only(str(best)):
        default = charset_normalizer.from_bytes(sample, cp_isolation=[_DEFAULT_SINGLE_BYTE]).best()
        if default is not None and (best is None or default.chaos <= best.chaos):
            return _DEFAULT_SINGLE_BYTE
    return best.encoding if best is not None else None


def _cleanest(sample: bytes, codecs_: tuple[str, ...]) -> str | None:
    """Of ``codecs_`` (in order of preference), the one that decodes ``sample`` strictly
    and reads least messy by charset_normalizer's mess ratio; None if none reads well."""
    scored = []
    for rank, codec in enumerate(codecs_):
        if not _decodes_strictly(sample, codec):
            continue
        match = charset_normalizer.from_bytes(sample, cp_isolation=[codec]).best()
        if match is not None:
            scored.append((round(match.chaos, 3), rank, codec))
    return min(scored)[2] if scored else None


def _latin_only(text: str) -> bool:
    """Whether every non-ASCII letter of ``text`` is a Latin one (é, ñ, ł, ş, ...)."""
    return all(
        unicodedata.name(char, "").startswith("LATIN") for char in text if char > "\x7f" and char.isalpha()
    )


def _same_codec(a: str, b: str) -> bool:
    try:
        return codecs.lookup(a).name == codecs.lookup(b).name
    except LookupError:
        return False


def _plausible_or_guess(data: bytes, declared: str) -> str:
    """Return ``declared`` unless charset_normalizer finds it clearly worse than its guess.

    A strict decode proves little for single-byte codecs (they map every byte) and not
    much for some CJK ones (GBK text happens to be valid EUC-KR), so the declared codec's
    mess ratio (odd character mixes, mixed scripts) is compared with the best guess's.
    """
    sample = _text_sample(data)
    guess = charset_normalizer.from_bytes(sample).best()
    if guess is None or _same_codec(guess.encoding, declared):
        return declared
    if sample.decode(declared, "replace") == str(guess):
        return declared  # both codecs agree on this page
    declared_match = charset_normalizer.from_bytes(sample, cp_isolation=[declared]).best()
    if declared_match is None:
        return guess.encoding  # the declared codec reads as gibberish (mess above 20 %)
    if declared_match.chaos - guess.chaos >= _MESS_MARGIN:
        return guess.encoding
    return declared


# Windows-1251 and Mac Cyrillic share the lower-case letters: each reads the other's text
# as Russian with its capitals turned into punctuation or Serbian letters ("Џрезидент",
# "‚ладимир") and, from Mac Cyrillic, every "я" into "Я". Both map nearly every byte and
# the mess detector scores them alike, so the shape of the words decides.
_CYRILLIC_TWINS: Final = {"cp1251": "mac-cyrillic", "mac-cyrillic": "cp1251"}
_CYRILLIC_WORD_RE: Final = re.compile(r"[^\W\d_]+")
_WELL_FORMED_CYRILLIC_RE: Final = re.compile(
    r"[А-ЯЁІЇЄҐЎЂЃЈЉЊЋЌЏЅ]?[а-яёіїєґўђѓјљњћќџѕ]+|[А-ЯЁІЇЄҐЎЂЃЈЉЊЋЌЏЅ]+|[A-Za-z]+"
)
_TWIN_MARGIN: Final = 0.05
_TWIN_SAMPLE_BYTES: Final = 16_384


def _non_ascii(text: str) -> int:
    """How many characters of ``text`` are not ASCII (counted in C: a page is long)."""
    return len(text) - len(text.encode("ascii", "ignore"))


def _word_shape(text: str) -> float:
    """The share of non-ASCII characters that are letters of well-formed Cyrillic words
    (lower case, capitalised or all capitals)."""
    wide = _non_ascii(text)
    if not wide:
        return 0.0
    good = sum(
        len(word)
        for word in _CYRILLIC_WORD_RE.findall(text)
        if not word.isascii() and _WELL_FORMED_CYRILLIC_RE.fullmatch(word)
    )
    return good / wide


def _cyrillic_twin(data: bytes, codec: str) -> str:
    """``codec``, or its Cyrillic twin when that reads the page's words clearly better."""
    try:
        name = codecs.lookup(codec).name
    except LookupError:
        return codec
    twin = _CYRILLIC_TWINS.get(name)
    if twin is None or not _decodes_strictly(data, twin):
        return codec
    sample = _text_sample(data)[:_TWIN_SAMPLE_BYTES]  # (a few thousand words tell; both are single-byte)
    if (
        _word_shape(sample.decode(twin, "replace")) - _word_shape(sample.decode(name, "replace"))
        >= _TWIN_MARGIN
    ):
        return twin
    return codec


# --------------------------------------------------------------------------- parsing


def _parse_html(html: str) -> Any:
    """Parse decoded HTML into an lxml tree (None if there is no document at all).

    The tree is built from UTF-8 bytes with the parser's encoding pinned: given a ``str``,
    libxml2 may still obey a ``<meta charset>`` in the page and re-decode it into
    mojibake, and it rejects strings that carry an XML encoding declaration.
    """
    cleaned = _INVALID_XML_CHARS_RE.sub("", html)
    if not cleaned.strip():
        return None
    data = cleaned.encode("utf-8", "replace")
    tree, too_deep = _parse_bytes(data, huge=False)
    if too_deep:
        # libxml2 silently drops whatever is nested more than 255 elements deep (400
        # paragraphs each in an unclosed <font>, an old CMS's habit, kept 253): parse
        # again with its limit at 2047. A page deeper than that too is built to hurt (its
        # tree cost trafilatura seconds, for no text): the first parse is kept for it.
        deep, still_too_deep = _parse_bytes(data, huge=True)
        if deep is not None and not still_too_deep:
            tree = deep
    return tree


def _parse_bytes(data: bytes, *, huge: bool) -> tuple[Any, bool]:
    """(tree or None, whether libxml2 hit its nesting limit)."""
    parser = lxml.html.HTMLParser(
        encoding="utf-8",
        huge_tree=huge,  # (its other limits guard huge inputs; the body is cut to max_bytes)
        collect_ids=False,
        default_doctype=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        tree = lxml.html.document_fromstring(data, parser=parser)
    except (lxml.etree.ParserError, ValueError) as exc:
        logger.debug("HTML parsing failed: %s", exc)
        return None, False
    too_deep = any("Excessive depth" in entry.message for entry in parser.error_log)
    if tree is None or len(tree) == 0:
        return None, too_deep
    return tree, too_deep


# Zero-width non-joiners and joiners are spelling in Persian, Kurdish and the Indic
# scripts ("رئیس‌جمهور", "क्‍ष"), but trafilatura drops every character Python does not
# count as printable. They pass through it as stand-ins, letters of dead scripts (Gothic,
# Old Italic, Linear B) that the page does not contain, and are put back afterwards.
_JOINER_STAND_INS: Final = (
    ("\U00010330", "\U00010331"),
    ("\U00010300", "\U00010301"),
    ("\U00010000", "\U00010001"),
)
_JOINER_ENTITY: Final = re.compile(r"&(?:zwn?j|#x0*200[cd]|#0*820[45]);", re.IGNORECASE)


def _protect_joiners(tree: Any, html: str) -> dict[int, str] | None:
    """Swap the zero-width (non-)joiners in ``tree``'s text and attributes for stand-ins.

    Returns the ``str.translate`` table that puts them back; None when the page has none
    (nothing changed) or already holds every pair of stand-ins (then they are left to be
    dropped, as before).
    """
    # (Substring tests first: a regular expression starting with a class of characters
    # tries every position of the page, a millisecond and more on every page.)
    if "\u200c" not in html and "\u200d" not in html and not _JOINER_ENTITY.search(html):
        return None
    whole = lxml.etree.tostring(tree, encoding="unicode")
    if "\u200c" not in whole and "\u200d" not in whole:
        return None
    pair = next((p for p in _JOINER_STAND_INS if p[0] not in whole and p[1] not in whole), None)
    if pair is None:
        return None
    swap = str.maketrans({"\u200c": pair[0], "\u200d": pair[1]})
    for element in tree.iter():
        if element.text and ("\u200c" in element.text or "\u200d" in element.text):
            element.text = element.text.translate(swap)
        if element.tail and ("\u200c" in element.tail or "\u200d" in element.tail):
            element.tail = element.tail.translate(swap)
        if isinstance(element.tag, str):
            for key, value in element.items():
                if "\u200c" in value or "\u200d" in value:
                    element.set(key, value.translate(swap))
    return {ord(pair[0]): "\u200c", ord(pair[1]): "\u200d"}


def _json_ld_paragraphs(text: str, tree: Any, joiners: dict[int, str] | None) -> str:
    """``text`` with each line that is a JSON-LD ``articleBody`` run together (trafilatura
    takes the body from there when the markup has none, and joins its lines) replaced by
    that body's paragraphs: one line per line of the body, blank lines and spacing dropped."""
    bodies = [body.translate(joiners) if joiners else body for body in _json_ld_bodies(tree) if "\n" in body]
    if not bodies:
        return text
    paragraphs = {_run_together(body): body for body in bodies}
    lines = []
    for line in text.split("\n"):
        body = paragraphs.get(_run_together(line))
        if body is None:
            lines.append(line)
        else:
            lines.extend(" ".join(part.split()) for part in body.splitlines() if part.strip())
    return "\n".join(lines)


def _run_together(text: str) -> str:
    """``text`` as trafilatura renders a JSON value: one line, single spaces, printable."""
    return " ".join("".join(char for char in text if char.isprintable() or char.isspace()).split())


def _json_ld_bodies(tree: Any) -> Iterator[str]:
    """The ``articleBody`` strings of the page's JSON-LD scripts, nested ones included."""
    for item in _json_ld_objects(tree):
        body = item.get("articleBody")
        if isinstance(body, str):
            yield body


PAYWALLED: Final = "paywalled: only a subscription prompt"
# A paywalled page shows a prompt of a few sentences where the article would be.
PAYWALL_PROMPT_CHARS: Final = 500
# What a page marked not free may hold beside its subscription prompt and still be one.
PAYWALL_REST_CHARS: Final = 150
# Stems of "subscribe"/"subscription" in the languages the feeds carry (English, French,
# German, Dutch, Spanish, Portuguese, Italian, Russian, Chinese, Japanese, Korean, Arabic,
# Turkish, Polish, Swedish). A prompt names the subscription; a news brief seldom does.
_SUBSCRIPTION_WORDS: Final = re.compile(
    r"subscri|abonn|suscri|assinatura|assine|abbona|подписк|订阅|訂閱|購読|구독|اشترك|اشتراك|abonelik|prenumer",
    re.IGNORECASE,
)


def _only_a_subscription_prompt(text: str, tree: Any) -> bool:
    """Whether ``text`` is a paywall's prompt instead of the article: the page says its
    content is not free (schema.org ``isAccessibleForFree: false`` in JSON-LD or microdata,
    or ``article:content_tier`` "locked"), the text is short (under
    :data:`PAYWALL_PROMPT_CHARS`) and it speaks of a subscription. Markers alone do not
    decide (a page marked so may still be served whole), nor does a prompt's wording alone."""
    if len(text) >= PAYWALL_PROMPT_CHARS or not _SUBSCRIPTION_WORDS.search(text):
        return False
    # A short article that ends on a line about subscribing is still an article: what is
    # left without the sentences that mention a subscription must be less than a brief.
    rest = " ".join(
        sentence for sentence in split_sentences(text) if not _SUBSCRIPTION_WORDS.search(sentence)
    )
    if text_length(rest) >= PAYWALL_REST_CHARS:
        return False
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
        if key == "article:content_tier" and (meta.get("content") or "").strip().lower() == "locked":
            return True
    for element in tree.xpath("//*[@itemprop='isAccessibleForFree']"):
        if (element.get("content") or element.text_content() or "").strip().lower() == "false":
            return True
    return any(_not_free(item.get("isAccessibleForFree", True)) for item in _json_ld_objects(tree))


def _not_free(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no"))


def _json_ld_objects(tree: Any) -> Iterator[dict[str, Any]]:
    """The objects of the page's JSON-LD scripts, nested ones included."""
    for script in tree.iter("script"):
        if (script.get("type") or "").split(";")[
            0
        ].strip().lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text, strict=False)
        except (ValueError, RecursionError):  # (not JSON, or nested past the parser's depth)
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                yield item
                stack.extend(value for value in item.values() if isinstance(value, dict | list))
            elif isinstance(item, list):
                stack.extend(item)


def _lang_hint(tree: Any) -> str | None:
    """The language the page declares (``<html lang>``, Content-Language, og:locale)."""
    candidates: list[str] = [tree.get("lang") or "", tree.get(_XML_LANG) or ""]
    body = tree.find("body")
    if body is not None:
        candidates.append(body.get("lang") or "")
    for meta in tree.iterfind(".//meta"):
        key = (meta.get("http-equiv") or meta.get("name") or meta.get("property") or "").lower()
        if key in {"content-language", "language", "dc.language", "og:locale"}:
            candidates.append(meta.get("content") or "")
    for value in candidates:
        code = _normalise_lang(value)
        if code is not None:
            return code
    return None


def _normalise_lang(value: str) -> str | None:
    """``"en-US"`` -> ``"en"``, ``"zh_Hans_CN"`` -> ``"zh"``, ``"rus"`` -> ``"ru"``."""
    first = value.split(",")[0].strip().replace("_", "-")
    primary = first.split("-")[0].lower()
    if not primary.isascii() or not primary.isalpha():
        return None
    if len(primary) == 2:
        return _LANG_RENAMED.get(primary, primary)
    if len(primary) == 3:
        return _LANG3_TO_1.get(primary)
    return None


class _Meta(NamedTuple):
    title: str | None = None
    date: str | None = None  # ISO YYYY-MM-DD
    authors: tuple[str, ...] = ()


def _metadata(tree: Any, url: str | None) -> _Meta:
    """Title, publication date and author names from trafilatura/htmldate.

    The date comes from the page's metadata and markup (meta tags, JSON-LD, the URL,
    <time> and date-classed elements), never from htmldate's extensive search of the
    body text: that turned "In 2019 the two countries..." into 2019-01-01 on a page
    with no date, a guess worse than none.
    """
    # The latest date a page may give: tomorrow in UTC, for a page written where it is
    # already tomorrow (Beijing after 16:00 UTC). trafilatura's default is the machine's
    # local today, and htmldate, refusing the page's own date, fell back to its month:
    # the 1st. Ingest judges a date ahead of now (FUTURE_TOLERANCE).
    latest = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    date_config = {"original_date": True, "extensive_search": False, "max_date": latest}
    try:
        doc = trafilatura.extract_metadata(tree, default_url=url, date_config=date_config, extensive=False)
    except Exception:
        # Metadata is a side dish: a library bug on an odd date string must not cost the
        # article text. Logged with its traceback so that it gets fixed, not hidden.
        logger.warning("metadata extraction failed for %s", url or "<no url>", exc_info=True)
        # The date is what such bugs trip on (htmldate on a zone offset of 24 hours or
        # more, "+25:00"): without the page's dates, its title and authors are still read.
        # (A page could otherwise shed its headline with one such meta tag.)
        try:
            doc = trafilatura.extract_metadata(
                _without_dates(tree), default_url=url, date_config=date_config, extensive=False
            )
        except Exception:
            return _Meta()
    title = " ".join(doc.title.split()) if doc.title else None
    date = doc.date if doc.date and _ISO_DATE_RE.match(doc.date) else None
    # trafilatura joins several authors with "; ".
    authors = tuple(a for a in (_norm(part) for part in (doc.author or "").split(";")) if " " in a)
    return _Meta(title or None, date, authors)


_DATE_KEY: Final = re.compile(r"date|time|modified|published|created|updated", re.IGNORECASE)


def _without_dates(tree: Any) -> Any:
    """A copy of ``tree`` without what dates are read from: ``<meta>`` tags named for a
    date or time, ``<time>`` elements and JSON-LD (whose dates sit beside its headline)."""
    copy = deepcopy(tree)
    for element in list(copy.iter("meta", "time", "script")):
        if element.tag == "meta":
            key = " ".join(element.get(name) or "" for name in ("property", "name", "itemprop", "http-equiv"))
            if not _DATE_KEY.search(key):
                continue
        elif element.tag == "script" and "ld+json" not in (element.get("type") or "").lower():
            continue
        element.drop_tree()
    return copy


# --------------------------------------------------------------------------- extraction


_BLOCKS: Final = frozenset(
    {"p", "div", "ul", "ol", "dl", "blockquote", "article", "section"}
    | {"header", "footer", "nav", "aside", "main", "h1", "h2", "h3", "h4", "h5", "h6"}
)
_TABLE_PARTS: Final = ("tr", "td", "th", "tbody", "thead", "tfoot", "caption")


# Inline formatting that says nothing about what is the article: its tags can go and leave
# their text in place. (Links stay: trafilatura judges boilerplate by their density.)
_FORMATTING_TAGS: Final = (
    "span", "font", "b", "i", "em", "strong", "u", "small", "big", "mark", "abbr", "sup", "sub",
    "s", "strike", "tt", "cite", "q", "nobr", "ins", "del", "bdi", "bdo",
)  # fmt: skip
# More of them than this and they are removed before extraction. trafilatura's search for
# a page's paragraph text (``//p//text()``) takes time quadratic in its pieces in libxml2:
# 16,000 one-word spans (288 KB) took 19 s, and a 1 MB page of ordinary prose with its
# bold and italics ran past the extraction's time limit and was lost. The pages of the
# extraction benchmark have at most 443.
MAX_FORMATTING_ELEMENTS: Final = 2000
_FLATTENED: Final = "summitwatch-flattened"


def _flatten_crowded_inline(tree: Any) -> bool:
    """Remove the plain inline formatting tags of a page crowded with them (their text
    stays); whether it was done.

    Only tags without attributes go: one with a class, a style or an ``aria-hidden`` may be
    what trafilatura drops with its text (hidden, a share button, a byline), so it stays
    for trafilatura to judge."""
    for count, _ in enumerate(tree.iter(*_FORMATTING_TAGS), start=1):
        if count > MAX_FORMATTING_ELEMENTS:
            for element in tree.iter(*_FORMATTING_TAGS):
                if not element.attrib:
                    element.tag = _FLATTENED  # (then removed at once, in C: one by one, a
                    # long paragraph's text was copied again at every tag)
            lxml.etree.strip_tags(tree, _FLATTENED)
            # A removed tag leaves its text as a node of its own beside its neighbours' in
            # libxml2 (the search walks those): set again, each element's text and tail are
            # one node each.
            for element in tree.iter(lxml.etree.Element):
                if element.text is not None:
                    element.text = element.text
                if element.tail is not None:
                    element.tail = element.tail
            return True
    return False


def _unwrap_layout_tables(tree: Any) -> int:
    """Turn the tables that lay out a page into plain blocks; returns how many.

    Old sites (and some still built on them) put the whole page in a table: the masthead
    in one row, the article and a sidebar in two cells. trafilatura renders a table as
    table rows, so the article came out as one cell of text after the masthead's row,
    its paragraphs run together. A table is layout when a cell of its own holds a table,
    two blocks (a headline and a paragraph), or a long text, or when its only row holds a
    block (a masthead's logo and links); a table of figures keeps its rows, even with each
    cell in a paragraph of its own or a heading over its columns.
    """
    unwrapped = 0
    for table in list(tree.iter("table")):
        parts = _own_parts(table)
        cells = [el for el in parts if el.tag in ("td", "th")]
        rows = sum(1 for el in parts if el.tag == "tr")
        if not any(_lays_out(cell, single_row=rows <= 1) for cell in cells):
            continue
        for el in (table, *parts):
            el.tag = "div"
        unwrapped += 1
    return unwrapped


def _own_parts(table: Any) -> list[Any]:
    """The rows, cells and sections of ``table`` itself, not of the tables inside it
    (each element is visited once per table it belongs to: nested tables stay linear)."""
    parts: list[Any] = []
    stack = list(reversed(table))
    while stack:
        el = stack.pop()
        if el.tag == "table":
            continue
        if el.tag in _TABLE_PARTS:
            parts.append(el)
        stack.extend(reversed(el))
    return parts


def _lays_out(cell: Any, *, single_row: bool) -> bool:
    blocks = 0
    for el in cell.iterdescendants():
        tag = el.tag
        if not isinstance(tag, str):  # (comments, processing instructions)
            continue
        if tag == "table":
            return True
        if tag in _BLOCKS:
            blocks += 1
            if blocks >= 2 or single_row:
                return True
    return len(cell.text_content()) >= LAYOUT_CELL_CHARS


def _trafilatura_text(tree: Any, url: str | None, *, precision: bool, comments: bool = False) -> str:
    """One trafilatura run over ``tree`` (which trafilatura copies, not modifies)."""
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        include_comments=comments,  # reader comments are not the article, unless all is wanted
        favor_precision=precision,
        with_metadata=False,  # done once, separately
    )
    if not isinstance(doc, Document) or not doc.text:
        return ""
    if comments and doc.comments:
        # bare_extraction keeps comment-like blocks apart; extract() would append them.
        return f"{doc.text.strip()}\n{doc.comments.strip()}"
    return doc.text.strip()


def _extract_text(tree: Any, url: str | None, *, favor_recall: bool = False) -> str:
    """Main text of the page, by a cascade of trafilatura runs.

    1. Precision mode: trafilatura's stricter filters drop most of the teasers, share
       bars and newsletter boxes that its default mode keeps.
    2. If that leaves almost nothing (under SHORT_TEXT_CHARS), the strict filters may
       have eaten the article: the balanced mode (which also has trafilatura's own
       baseline and recall rescues) runs too, and wins if it finds several times more.
    3. Articles split into sibling chunks (a container per few paragraphs, ads between)
       come out truncated, because trafilatura keeps only the first matching container:
       such continuation containers are merged into the first and extraction re-run.
    """
    precision = not favor_recall
    text = _trafilatura_text(tree, url, precision=precision, comments=favor_recall)
    if precision and len(text) < SHORT_TEXT_CHARS:
        balanced = _trafilatura_text(tree, url, precision=False)
        if len(balanced) >= FALLBACK_MIN_GAIN * max(len(text), 1):
            text, precision = balanced, False
    if text:
        merged_tree = _merge_continuations(tree, text)
        if merged_tree is not None:
            merged = _trafilatura_text(merged_tree, url, precision=precision, comments=favor_recall)
            if len(merged) > len(text):
                text = merged
    return text


def _merge_continuations(tree: Any, text: str) -> Any:
    """A copy of ``tree`` with the article's continuation containers merged into the
    first one, or None if the article does not look split.

    The container is the lowest common ancestor of the <p> elements whose text the
    extraction kept. Its "twins" are elements with the same tag and class attribute
    within TWIN_MAX_LEVELS levels above it, wrapped in the same chain of (tag, class)
    elements up to the common ancestor, that hold paragraphs the extraction missed.
    A twin under a branch with its own headline or <article> element is another article
    (infinite scroll), not a continuation (see :func:`_branch_is_continuation`).
    """
    wanted = {_norm(line) for line in text.splitlines() if len(line) >= ANCHOR_LINE_CHARS}
    if len(wanted) < 2:
        return None
    hits = [p for p in tree.iter("p") if _norm(p.text_content()) in wanted]
    if len(hits) < 2:
        return None
    container = _common_ancestor(hits)
    css_class = (container.get("class") or "").strip()
    if not css_class or container.tag in ("html", "body"):
        return None

    extracted = _norm(text)
    twins: list[Any] = []
    ancestor = container
    for _ in range(TWIN_MAX_LEVELS):
        parent = ancestor.getparent()
        if parent is None or parent.tag in ("html", "body"):
            break
        ancestor = parent
        signature = _path_signature(container, ancestor)
        twins = [
            el
            for el in ancestor.iter(container.tag)
            if el is not container
            and el.get("class", "").strip() == css_class
            and not _is_related(el, container)
            and _path_signature(el, ancestor) == signature
            and _branch_is_continuation(el, ancestor)
        ]
        if twins:
            break
    # Look-alikes that hold nothing new (empty placeholders, repeated pull quotes) are not
    # continuations; and the continuations together must add a real amount of text.
    gains = [(twin, _new_paragraph_chars(twin, extracted)) for twin in twins]
    twins = [twin for twin, gain in gains if gain > 0]
    if sum(gain for _, gain in gains) < TWIN_MIN_NEW_CHARS:
        return None

    root = tree.getroottree()
    paths = [root.getpath(container)] + [root.getpath(twin) for twin in twins]
    copy = deepcopy(tree)
    first, *rest = (copy.getroottree().xpath(path)[0] for path in paths)
    for twin in rest:
        for child in list(twin):
            first.append(child)  # moves the child; document order is kept
        if twin.text and twin.text.strip():
            # loose text directly in the twin (before its first child) would be lost
            extra = lxml.html.Element("p")
            extra.text = twin.text
            first.append(extra)
    logger.debug("merged %d continuation containers <%s class=%r>", len(rest), container.tag, css_class)
    return copy


def _common_ancestor(elements: list[Any]) -> Any:
    first = elements[0]
    chain = [first, *first.iterancestors()]
    depth = {id(el): i for i, el in enumerate(chain)}
    best = 0
    for el in elements[1:]:
        for anc in (el, *el.iterancestors()):
            if id(anc) in depth:
                best = max(best, depth[id(anc)])
                break
    return chain[best]


def _is_related(a: Any, b: Any) -> bool:
    """Whether one of the two elements contains the other."""
    return any(anc is b for anc in a.iterancestors()) or any(anc is a for anc in b.iterancestors())


def _path_signature(el: Any, ancestor: Any) -> list[tuple[str, str]]:
    """(tag, class) of ``el`` and its ancestors below ``ancestor``: two chunks of one
    article are wrapped alike, a look-alike box elsewhere on the page is not."""
    out = []
    for node in (el, *el.iterancestors()):
        if node is ancestor:
            break
        out.append((str(node.tag), (node.get("class") or "").strip()))
    return out


def _branch_is_continuation(el: Any, ancestor: Any) -> bool:
    """False if ``el`` sits in a section of its own under ``ancestor``: another story, as
    infinite-scroll pages append them. Such a branch has an <h1>, its own <article>
    element, or (unless ``ancestor`` is inside one <article>, where an <h2> is a subhead)
    a headline <h2> or a <time> outside the text container ``el``.
    """
    branch = el
    for anc in el.iterancestors():
        if anc is ancestor:
            break
        branch = anc
    if next(branch.iter("h1", "article"), None) is not None:
        return False
    if any(node.tag == "article" for node in (ancestor, *ancestor.iterancestors())):
        return True  # chunks of one <article>: its <h2> are subheads
    inside = set(el.iter())
    return all(node in inside for node in branch.iter("h2", "time"))


def _new_paragraph_chars(el: Any, extracted: str) -> int:
    total = 0
    for p in el.iter("p"):
        key = _norm(p.text_content())
        if key and key not in extracted:
            total += len(key)
    return total


# --------------------------------------------------------------------------- cleanup


def _clean_text(text: str, tree: Any, meta: _Meta) -> str:
    """Drop leading headline/dateline/byline lines and trailing site furniture.

    Every rule is language-independent: it compares with the page's own <h1>, title,
    publication date, author and link texts, or looks at digits and punctuation only.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    headlines = {_norm(h.text_content()) for h in tree.iter("h1")}
    if meta.title:
        headlines.add(_norm(meta.title))
    headlines.discard("")
    # The extraction often starts with the page's headline and/or a "date, time, author"
    # line: metadata (kept in .title/.date), not article text. Only at the very start: a
    # heading further down is content.
    for _ in range(MAX_LEADING_DROP):
        first = lines[0]
        if len(lines) > 1 and (
            _norm(first) in headlines or _is_dateline(first, meta.date) or _is_byline(first, meta.authors)
        ):
            lines.pop(0)
        else:
            break
    lines = _drop_trailing_junk(lines, _anchor_texts(tree), meta.authors)
    return "\n".join(lines)


def _ends_sentence(line: str) -> bool:
    """Whether ``line`` ends with a sentence stop, then only non-word characters (quotes,
    brackets, spaces). Read from the end: a search for the stop made a line of ten thousand
    dots and a letter cost seconds, each dot's try running to the letter."""
    reversed_line = line[::-1]
    run = _NON_WORD_RUN_RE.match(reversed_line)  # (always matches)
    tail = reversed_line[: run.end()] if run else ""
    return not _SENTENCE_STOPS.isdisjoint(tail)


def _is_byline(line: str, authors: tuple[str, ...]) -> bool:
    """A short line, not a sentence, naming the article's author ("By Anna Reporter")."""
    if not authors or len(_WORD_RE.findall(line)) > BYLINE_MAX_WORDS or _ends_sentence(line):
        return False
    key = f" {_norm(line)} "
    return any(f" {author} " in key for author in authors)


def _is_dateline(line: str, date: str | None) -> bool:
    """A short line, not a sentence, naming the publication date's year and day."""
    if date is None or len(line) > DATELINE_MAX_CHARS or _ends_sentence(line):
        return False
    numbers = {int(n) for n in _NUMBER_RE.findall(line)}
    year, _month, day = (int(part) for part in date.split("-"))
    return year in numbers and day in numbers


def _drop_trailing_junk(
    lines: list[str], anchors: Collection[str], authors: tuple[str, ...] = ()
) -> list[str]:
    """Remove site furniture trafilatura let through at the end of the article.

    From the end backwards: lines that are (mostly) the text of a link on the page, a
    copyright notice or a byline; a closing list whose items are mostly links, as a whole (a
    related-articles box; a bullet or two may carry extra text); and finally the short
    heading such a box leaves orphaned ("Related", "More from us").
    """
    budget = MAX_TRAILING_DROP
    dropped = False
    while len(lines) > 1 and budget > 0:
        if _is_trailing_junk(lines[-1], anchors) or _is_byline(lines[-1], authors):
            lines = lines[:-1]
        elif (block := _trailing_list_block(lines)) and _mostly_links(lines[-block:], anchors):
            lines = lines[:-block]
        else:
            break
        budget -= 1
        dropped = True
    if dropped and len(lines) > 1 and _is_orphan_heading(lines[-1]):
        lines = lines[:-1]
    return lines


def _trailing_list_block(lines: list[str]) -> int:
    """How many of the last lines are list items (rendered by trafilatura as "- item");
    0 if none, if the text is nothing but the list, or if it is too long to be a box."""
    count = 0
    for line in reversed(lines):
        if not _LIST_MARKER_RE.match(line):
            break
        count += 1
    return count if count < len(lines) and count <= MAX_LINK_BOX_ITEMS else 0


def _mostly_links(items: list[str], anchors: Collection[str]) -> bool:
    linked = sum(_link_share(item, anchors) >= LIST_ITEM_LINK_SHARE for item in items)
    return linked * 2 > len(items)


def _is_orphan_heading(line: str) -> bool:
    """A few words with no sentence punctuation: the title of a box that was removed."""
    return len(_WORD_RE.findall(line)) <= ORPHAN_HEADING_WORDS and not _ends_sentence(line)


def _anchor_texts(tree: Any) -> set[str]:
    """Normalised texts of the page's links and buttons ("Share this", "Subscribe") that
    are long enough to be unambiguous."""
    out: set[str] = set()
    for a in tree.iter("a", "button"):
        key = _norm(a.text_content())
        # Two words or more, or one long "word" (CJK text has no spaces): a lone short
        # word ("Home", "More") would match ordinary prose.
        if " " in key or len(key) >= MIN_ANCHOR_CHARS:
            out.add(key)
    return out


def _is_trailing_junk(line: str, anchors: Collection[str]) -> bool:
    """A closing line that is a bare link (related articles, "follow us on ...") or a
    copyright notice: site furniture trafilatura let through at the article's end."""
    if _is_copyright_notice(line):
        return True
    return _link_share(line, anchors) >= TRAILING_LINK_SHARE


def _is_copyright_notice(line: str) -> bool:
    """ "© 2024 Agency. All rights reserved", "Copyright 2024 Name", "Фото: © ТАСС": not a
    sentence that mentions copyright (a story about piracy ends with one)."""
    if len(line) >= 300:
        return False
    if _COPYRIGHT_OPENING_RE.match(line):
        return True
    return _COPYRIGHT_RE.search(line) is not None and len(_WORD_RE.findall(line)) <= COPYRIGHT_MAX_WORDS


def _link_share(line: str, anchors: Collection[str]) -> float:
    """Share of the line's text (by characters) that is the text of some link on the page.

    Every run of consecutive words is looked up, longest first, so the cost depends on the
    line's length only, never on the number of links; long lines are prose, not links.
    """
    words = _norm(_LIST_MARKER_RE.sub("", line)).split()
    if not words or len(words) > LINK_LINE_MAX_WORDS:
        return 0.0
    covered = [False] * len(words)
    i = 0
    while i < len(words):
        for j in range(len(words), i, -1):
            if " ".join(words[i:j]) in anchors:
                covered[i:j] = [True] * (j - i)
                i = j
                break
        else:
            i += 1
    total = sum(len(w) + 1 for w in words)
    return sum(len(w) + 1 for w, c in zip(words, covered, strict=True) if c) / total
