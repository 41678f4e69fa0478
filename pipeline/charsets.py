"""Charset labels: the one from a Content-Type header, and the Python codec a label means;
and the one screen every document passes before a parser reads it (:func:`crowded_tag`).

Shared by page extraction (``pipeline.extract``) and feed parsing (``pipeline.feeds``), and
light enough for the latter to import without the extraction libraries.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

HTTP_CHARSET_RE: Final = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)

# Labels whose WHATWG meaning differs from Python's codec of the same name; mostly "the
# label names a subset, browsers decode with the superset" (latin-1 pages are cp1252).
CHARSET_ALIASES: Final[dict[str, str | None]] = {
    **dict.fromkeys(
        (
            "iso-8859-1",
            "iso8859-1",
            "iso_8859-1",
            "latin1",
            "latin-1",
            "l1",
            "ascii",
            "us-ascii",
            "ansi_x3.4-1968",
            "windows-1252",
            "x-cp1252",
            "cp819",
            "ibm819",
        ),
        "cp1252",
    ),
    **dict.fromkeys(
        (
            "gb2312",
            "gbk",
            "x-gbk",
            "gb_2312-80",
            "gb_2312",
            "csgb2312",
            "chinese",
            "iso-ir-58",
            "cp936",
            "ms936",
            "windows-936",
            "euc-cn",
            "gb18030",
        ),
        "gb18030",
    ),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys(
        (
            "shift_jis",
            "shift-jis",
            "sjis",
            "x-sjis",
            "ms_kanji",
            "csshiftjis",
            "windows-31j",
            "ms932",
            "cp932",
        ),
        "cp932",
    ),
    **dict.fromkeys(
        (
            "euc-kr",
            "ks_c_5601-1987",
            "ks_c_5601-1989",
            "ksc5601",
            "korean",
            "windows-949",
            "cp949",
            "csksc56011987",
            "iso-ir-149",
        ),
        "cp949",
    ),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "latin5", "l5"), "cp1254"),
    **dict.fromkeys(("tis-620", "iso-8859-11", "windows-874", "dos-874"), "cp874"),
    **dict.fromkeys(("x-mac-cyrillic", "x-mac-ukrainian"), "mac-cyrillic"),
    "iso-8859-8-i": "iso-8859-8",
    # A <meta> claiming UTF-16/32 in a page without a BOM is wrong by construction (the
    # ASCII meta tag could not have been read otherwise); browsers treat it as UTF-8.
    **dict.fromkeys(("utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be"), "utf-8"),
    # Never honoured: a known script-injection vector and no real page uses them.
    **dict.fromkeys(("utf-7", "x-user-defined", "replacement"), None),
}


def parse_content_type(content_type: str | None) -> tuple[str, str | None]:
    """Split a Content-Type header into (lower-case media type, charset parameter)."""
    if not content_type:
        return "", None
    mime = content_type.split(";", 1)[0].strip().lower()
    match = HTTP_CHARSET_RE.search(content_type)
    return mime, match.group(1) if match else None


def normalise_charset(label: str) -> str | None:
    """Map a charset label to a Python codec name, or None if it is unknown or unusable."""
    key = label.strip().strip("\"'").lower()
    if key in CHARSET_ALIASES:
        return CHARSET_ALIASES[key]
    try:
        info = codecs.lookup(key)
    except LookupError:
        return None
    # codecs.lookup also knows bytes-to-bytes codecs (base64, zlib, ...): not charsets.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return CHARSET_ALIASES.get(info.name, info.name)


# A tag this long is looked at more closely (a long inline style or a data: URI in an
# attribute makes one now and then), and one with more attributes than this is refused.
_LONG_TAG: Final = re.compile(rb"<[^<>]{16384,}>")
_ATTRIBUTE: Final = re.compile(rb"[\s\"'][^\s=<>\"'/]+\s*=")
MAX_ATTRIBUTES: Final = 1000


def crowded_tag(data: bytes) -> str | None:
    """Why a document is refused before any parser reads it, or None.

    libxml2 (pages) and feedparser (feeds) take time that grows faster than the number of
    attributes on one element: 120,000 on a 1 MB page held a run for over two minutes, in
    C code that no time limit interrupts. No real page or feed puts a thousand attributes
    on one element.
    """
    for match in _LONG_TAG.finditer(data):
        count = sum(1 for _ in _ATTRIBUTE.finditer(match.group()))
        if count > MAX_ATTRIBUTES:
            return f"an element with {count:,} attributes: refused (parsers stall on it)"
    return None
