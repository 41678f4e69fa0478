"""Article dumps of other tools, read as ``summitwatch import`` lines.

``summitwatch import`` takes JSON Lines of its own shape (``id``, ``url``, ``title``,
``html``, ``text``, ``published``, ``feed``, ``lang``). It also takes, detected per
line or per file:

* **news-please** articles (one JSON object per line, a JSON array, or one pretty-printed
  object per file): ``url``, ``title``, ``maintext`` (else ``description``),
  ``date_publish``, ``language``;
* **JSON Feed 1.1**: a whole feed document (``{"version": "https://jsonfeed.org/version/1.1",
  "items": [...]}``, in a file or on one line) or its items one per line: ``id``, ``url``
  (else ``external_url``), ``title``, ``content_text`` (else ``content_html``, extracted
  like a page; else ``summary``), ``date_published``, ``language`` (else the feed's);
  the feed's ``feed_url`` names the feed the items came from.

Each foreign record is mapped to the native shape here (see the README table); fields
that the mapping does not use are dropped, as a foreign format has many of its own.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

log = logging.getLogger(__name__)

JSON_FEED_VERSION = "https://jsonfeed.org/version/"
NEWS_PLEASE_FIELDS = frozenset({"maintext", "date_publish", "source_domain", "date_download", "localpath"})
JSON_FEED_ITEM_FIELDS = frozenset({"content_html", "content_text", "date_published", "external_url"})


def record_format(record: dict[str, Any]) -> str:
    """``"jsonfeed"`` (a whole feed), ``"jsonfeed-item"``, ``"news-please"`` or ``"native"``."""
    version = record.get("version")
    if isinstance(version, str) and version.startswith(JSON_FEED_VERSION) and "items" in record:
        return "jsonfeed"
    if "text" in record or "html" in record:
        return "native"
    if NEWS_PLEASE_FIELDS & record.keys():
        return "news-please"
    if JSON_FEED_ITEM_FIELDS & record.keys():
        return "jsonfeed-item"
    return "native"


def to_native(record: dict[str, Any], *, feed_language: Any = None, feed_url: Any = None) -> dict[str, Any]:
    """``record`` in the native import shape (unchanged when it already is)."""
    kind = record_format(record)
    if kind == "news-please":
        return _drop_none(
            {
                "id": record.get("id", record.get("filename")),
                "url": record.get("url"),
                "title": record.get("title"),
                "text": record.get("maintext") or record.get("description"),
                "published": _iso(record.get("date_publish")),
                "lang": record.get("language"),
            }
        )
    if kind == "jsonfeed-item":
        text = record.get("content_text")
        html = record.get("content_html")
        return _drop_none(
            {
                "id": record.get("id"),
                "url": record.get("url") or record.get("external_url"),
                "title": record.get("title"),
                "text": text if text else (None if html else record.get("summary")),
                "html": html if not text else None,
                "published": _iso(record.get("date_published")),
                "lang": record.get("language") or feed_language,
                "feed": feed_url,
            }
        )
    return record


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if value is not None}


def _iso(value: Any) -> Any:
    """news-please writes ``2024-05-16 08:00:00``; a date the importer then reads as ISO 8601."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return value  # the importer reports it as not a date


def expand_lines(lines: Iterable[str]) -> Iterator[str]:
    """The input as one JSON record per line (:func:`numbered_records` without the places)."""
    for _, record in numbered_records(lines):
        yield record


def numbered_records(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """The input as JSON records, each with where it is in the input ("line 3", "record 3").

    A file that is one JSON document (a JSON array, a pretty-printed object, a JSON Feed),
    blank lines before it allowed, is split into its records, numbered from 1; JSON Lines
    pass through unchanged, so errors keep their line numbers. A JSON Feed document on one
    line becomes its items. Lines end at a line feed only: U+2028 and U+2029 may sit inside
    a JSON string.
    """
    iterator = iter(lines)
    leading: list[str] = []
    first: str | None = None
    for line in iterator:
        if line.lstrip("\ufeff").strip():
            first = line
            break
        leading.append(line)
    if first is None:
        return
    stripped = first.lstrip("\ufeff").strip()
    if stripped.startswith("[") or (stripped.startswith("{") and not _is_json(stripped)):
        # One JSON document spread over the file.
        whole = "".join(leading) + first + "".join(iterator)
        try:
            document = loads_strict(whole.lstrip("\ufeff"))
        except (ValueError, RecursionError):
            # Not one document: each line gets its own error.
            for number, line in enumerate(_split_lines(whole), 1):
                yield f"line {number}", line
            return
        for number, record in enumerate(_records_of(document), 1):
            yield f"record {number}", record
        return
    for number, line in enumerate(_chain(leading, first, iterator), 1):
        for record in _expand_line(line):
            yield f"line {number}", record


def _split_lines(text: str) -> list[str]:
    """``text`` cut at line feeds (a final one ends the last line), carriage returns dropped."""
    if text.endswith("\n"):
        text = text[:-1]
    return [line.removesuffix("\r") for line in text.split("\n")]


def _chain(leading: list[str], first: str, rest: Iterator[str]) -> Iterator[str]:
    yield from leading
    yield first
    yield from rest


def _expand_line(line: str) -> Iterator[str]:
    if '"items"' in line and "jsonfeed.org" in line:
        try:
            document = json.loads(line)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and record_format(document) == "jsonfeed":
            yield from _records_of(document)
            return
    yield line


def _records_of(document: Any) -> Iterator[str]:
    if isinstance(document, dict) and record_format(document) == "jsonfeed":
        items = document.get("items")
        language, feed_url = document.get("language"), document.get("feed_url")
        for item in items if isinstance(items, list) else [items]:
            native = (
                to_native(item, feed_language=language, feed_url=feed_url) if isinstance(item, dict) else item
            )
            yield json.dumps(native, ensure_ascii=False)
        return
    for record in document if isinstance(document, list) else [document]:
        yield json.dumps(record, ensure_ascii=False)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


class Utf8Lines:
    """The lines of a byte stream as text, each decoded as UTF-8 on its own.

    A byte-order mark at the start of a line is dropped. Bytes that are not UTF-8 (a Latin-1 or
    Windows-1251 export) become U+FFFD; the first such line is reported when it is read,
    and :attr:`replaced` counts them, so the import can say how many lines lost
    characters instead of storing them silently.
    """

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self._stream = stream
        self._name = name
        self.replaced = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._stream, 1):
            if raw.startswith(b"\xef\xbb\xbf"):
                # (Not only the first line's: files written with one and joined with `cat`
                # carry one at the start of each.)
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.replaced += 1
                if self.replaced == 1:
                    log.warning(
                        "%s line %d is not UTF-8 (byte 0x%02x at %d): such bytes are replaced with "
                        "U+FFFD; convert the file to UTF-8 to keep them (iconv -f CHARSET -t UTF-8)",
                        self._name,
                        number,
                        raw[exc.start],
                        exc.start,
                    )
                yield raw.decode("utf-8", "replace")

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Utf8Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with lone surrogates (``"\\ud800"`` escapes) made U+FFFD.

    JSON may escape half of a UTF-16 pair on its own; no database or UTF-8 output can hold
    it, so it is replaced wherever it is (keys, the id, the URL, the HTML), as
    ``ingest.clean_string`` does for the text.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {without_surrogates(key): without_surrogates(item) for key, item in value.items()}
    return value


def refuse_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: a number too large for a float (``1e400``) is
    refused, not read as infinity (which no JSON output could carry on)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


# Python refuses to read a longer integer (a guard against quadratic conversion); said
# here in the input's terms.
MAX_INT_DIGITS = 4300


def bounded_int(text: str) -> int:
    """``json.loads``'s ``parse_int``: an integer of more than :data:`MAX_INT_DIGITS`
    digits is refused with a message about the input."""
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise ValueError(f"the number {text[:20]}... has more than {MAX_INT_DIGITS} digits")
    return int(text)


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN, Infinity, numbers out of a float's range and
    integers too long to read."""
    return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float, parse_int=bounded_int)
