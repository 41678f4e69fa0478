"""The bundled offline news site (``pipeline/data/demo_site``), served on 127.0.0.1.

It speaks plain HTTP the way real feed servers do: strong ETags and Last-Modified on
every file, ``304 Not Modified`` for matching conditional requests, a charset in the
Content-Type where the manifest gives one, 404 for anything else. The demo polls it; the
tests use it as a real server.

The site's news is written as of the manifest's reference date. Served on another day,
every date in its feeds and pages that falls on or after the manifest's ``shift_from``
moves forward by the same number of whole days (machine-readable and written-out dates
in English, Russian and Chinese, and the weekday names beside and within them), so the
newest articles are always recent and coverage windows counted back from today see
them. Earlier dates (the history the articles cite) are left as they are. Each file is
decoded and re-encoded in its own charset, so windows-1251 and GB18030 bytes stay valid.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlsplit

from pipeline import yamlfile

PLACEHOLDER = "{BASE}"
# A fixed modification time (moved with the dates) keeps Last-Modified stable across runs.
SITE_MTIME = 1_763_900_000.0

_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_EN_MONTH_ABBR = [month[:3] for month in _EN_MONTHS]
_RU_MONTHS = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
]
_EN_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_EN_DAY_ABBR = [day[:3] for day in _EN_DAYS]
_RU_DAYS = ["понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье"]
# After "в"/"во" ("on Tuesday"): the feminine names take the accusative.
_RU_DAYS_ON = ["понедельник", "вторник", "среду", "четверг", "пятницу", "субботу", "воскресенье"]
_ZH_DAYS = "一二三四五六日"


def _alternatives(words: list[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


# One pass over the text, so nothing is shifted twice. Longer forms come first.
_DATES = re.compile(
    rf"(?P<rfc_wd>{_alternatives(_EN_DAY_ABBR)}), (?P<rfc_d>\d{{2}})"
    rf" (?P<rfc_m>{_alternatives(_EN_MONTH_ABBR)}) (?P<rfc_y>\d{{4}})"
    rf"|(?<!\d)(?P<iso_y>\d{{4}})-(?P<iso_m>\d{{2}})-(?P<iso_d>\d{{2}})(?!\d)"
    rf"|/(?P<path_y>\d{{4}})/(?P<path_m>\d{{2}})/(?P<path_d>\d{{2}})/"
    rf"|(?<![\d.])(?P<dot_d>\d{{2}})\.(?P<dot_m>\d{{2}})\.(?P<dot_y>\d{{4}})(?!\d)"
    rf"|(?<!\d)(?:(?P<zh_y>\d{{4}})年)?(?P<zh_m>\d{{1,2}})月(?P<zh_d>\d{{1,2}})日"
    rf"|星期(?P<zh_wd>[{_ZH_DAYS}天])"
    rf"|(?<!\d)(?P<en1_d>\d{{1,2}}) (?P<en1_m>{_alternatives(_EN_MONTHS)})(?: (?P<en1_y>\d{{4}}))?(?!\d)"
    rf"|\b(?P<en2_m>{_alternatives(_EN_MONTHS)}) (?P<en2_d>\d{{1,2}})(?:, (?P<en2_y>\d{{4}}))?(?!\d)"
    rf"|\b(?P<ab_m>{_alternatives(_EN_MONTH_ABBR)}) (?P<ab_d>\d{{1,2}})(?!\d)"
    rf"|(?<!\d)(?P<ru_d>\d{{1,2}}) (?P<ru_m>{_alternatives(_RU_MONTHS)})(?: (?P<ru_y>\d{{4}}))?(?!\d)"
    rf"|\b(?P<en_wd>{_alternatives(_EN_DAYS)})\b"
    rf"|\b(?P<ru_on>[Вв]о?) (?P<ru_wd_on>{_alternatives(_RU_DAYS_ON)})\b"
    # Capitalised only, as in a date line ("Вторник, 27 октября"): "среда" is also "environment".
    rf"|\b(?P<ru_wd>{_alternatives([day.capitalize() for day in _RU_DAYS])})\b"
)


@dataclass(frozen=True)
class DateShift:
    """Move the site's dates forward by ``days`` whole days (back when negative).

    Dates before ``shift_from`` stay; a date written without a year is read in
    ``default_year``. Weekday names move with the dates (the site names no weekday
    outside its own weeks). Russian weekday names are recognised after "в"/"во" and,
    capitalised, at the head of a date line; "среда" alone also means "environment".
    """

    days: int
    shift_from: date
    default_year: int

    def day(self, value: date) -> date:
        """``value`` as the site shows it."""
        return value + timedelta(days=self.days) if value >= self.shift_from else value

    def moment(self, value: datetime) -> datetime:
        """A date and time of the site (by its written, local date) as the site shows it."""
        return value + timedelta(days=self.days) if value.date() >= self.shift_from else value

    def apply(self, text: str) -> str:
        """``text`` with every date it writes (in the forms the site uses) shifted."""
        if self.days == 0:
            return text
        return _DATES.sub(self._replace, text)

    def _shifted(self, year: str | None, month: int, day: str) -> date | None:
        try:
            written = date(int(year) if year else self.default_year, month, int(day))
        except ValueError:
            return None
        return self.day(written) if written >= self.shift_from else None

    def _replace(self, match: re.Match[str]) -> str:
        g = match.groupdict()
        original = match.group(0)
        if g["rfc_wd"]:
            new = self._shifted(g["rfc_y"], _EN_MONTH_ABBR.index(g["rfc_m"]) + 1, g["rfc_d"])
            if new is None:
                return original
            return f"{_EN_DAY_ABBR[new.weekday()]}, {new:%d} {_EN_MONTH_ABBR[new.month - 1]} {new.year}"
        for prefix in ("iso", "path", "dot"):
            if g[f"{prefix}_y"]:
                new = self._shifted(g[f"{prefix}_y"], int(g[f"{prefix}_m"]), g[f"{prefix}_d"])
                if new is None:
                    return original
                if prefix == "iso":
                    return f"{new:%Y-%m-%d}"
                if prefix == "path":
                    return f"/{new:%Y/%m/%d}/"
                return f"{new:%d.%m.%Y}"
        if g["zh_m"]:
            new = self._shifted(g["zh_y"], int(g["zh_m"]), g["zh_d"])
            if new is None:
                return original
            return f"{f'{new.year}年' if g['zh_y'] else ''}{new.month}月{new.day}日"
        if g["en1_m"] or g["en2_m"] or g["ab_m"] or g["ru_m"]:
            if g["ab_m"]:
                year, month, day, names = None, g["ab_m"], g["ab_d"], _EN_MONTH_ABBR
            elif g["en1_m"]:
                year, month, day, names = g["en1_y"], g["en1_m"], g["en1_d"], _EN_MONTHS
            elif g["en2_m"]:
                year, month, day, names = g["en2_y"], g["en2_m"], g["en2_d"], _EN_MONTHS
            else:
                year, month, day, names = g["ru_y"], g["ru_m"], g["ru_d"], _RU_MONTHS
            new = self._shifted(year, names.index(month) + 1, day)
            if new is None:
                return original
            name = names[new.month - 1]
            if g["en2_m"] or g["ab_m"]:
                return f"{name} {new.day}" + (f", {new.year}" if year else "")
            return f"{new.day} {name}" + (f" {new.year}" if year else "")
        step = self.days % 7
        if g["zh_wd"]:
            index = (_ZH_DAYS.index("日" if g["zh_wd"] == "天" else g["zh_wd"]) + step) % 7
            return f"星期{_ZH_DAYS[index]}"
        if g["en_wd"]:
            return _EN_DAYS[(_EN_DAYS.index(g["en_wd"]) + step) % 7]
        if g["ru_wd_on"]:
            new_day = _RU_DAYS_ON[(_RU_DAYS_ON.index(g["ru_wd_on"]) + step) % 7]
            preposition = "во" if new_day == "вторник" else "в"
            if g["ru_on"][0].isupper():
                preposition = preposition.capitalize()
            return f"{preposition} {new_day}"
        return _RU_DAYS[(_RU_DAYS.index(g["ru_wd"].lower()) + step) % 7].capitalize()


@dataclass(frozen=True)
class SiteFeed:
    path: str
    name: str
    outlet: str
    lang: str


class FixtureSite:
    """The demo site's files, with ``{BASE}`` replaced by the address it is served on.

    ``today`` (default: the current UTC date) is the day the site is served on; its
    dates are shifted to it (see :class:`DateShift`).
    """

    def __init__(self, root: Traversable | None = None, *, today: date | None = None) -> None:
        self.root = root or resources.files("pipeline") / "data" / "demo_site"
        manifest = yamlfile.safe_load((self.root / "manifest.yaml").read_text(encoding="utf-8"))
        self.feeds = [SiteFeed(f["path"], f["name"], f["outlet"], f["lang"]) for f in manifest["feeds"]]
        entries = [*manifest["feeds"], *manifest.get("pages", [])]
        self.content_types: dict[str, str] = {entry["path"]: entry["content_type"] for entry in entries}
        self.encodings: dict[str, str | None] = {entry["path"]: _encoding(entry) for entry in entries}
        self.reference_date = date.fromisoformat(str(manifest["dates"]["reference"]))
        self.today = today or datetime.now(UTC).date()
        self.shift = DateShift(
            days=(self.today - self.reference_date).days,
            shift_from=date.fromisoformat(str(manifest["dates"]["shift_from"])),
            default_year=self.reference_date.year,
        )
        self.last_modified = SITE_MTIME + self.shift.days * 86_400

    def body(self, path: str, base: str) -> bytes | None:
        if path not in self.content_types:
            return None
        raw = (self.root / path).read_bytes()
        encoding = self.encodings[path]
        if encoding is None:
            return raw.replace(PLACEHOLDER.encode("ascii"), base.encode("ascii"))
        text = self.shift.apply(raw.decode(encoding))
        return text.replace(PLACEHOLDER, base).encode(encoding)


def _encoding(entry: dict[str, Any]) -> str | None:
    """The charset a manifest entry's text is in: its own ``encoding``, else the
    Content-Type's; ``None`` for a binary file (served byte for byte)."""
    if "encoding" in entry:
        return str(entry["encoding"])
    for parameter in entry["content_type"].split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key.lower() == "charset":
            return str(value.strip('"'))
    if entry["content_type"].startswith(("text/", "application/rss", "application/atom", "application/rdf")):
        raise ValueError(
            f"demo site manifest: {entry['path']} needs an encoding (its content_type has no charset)"
        )
    return None


class FixtureServer:
    """Serve a :class:`FixtureSite` on 127.0.0.1 in a background thread (use ``with``)."""

    def __init__(self, site: FixtureSite | None = None, *, port: int = 0) -> None:
        self.site = site or FixtureSite()
        self.requests: list[dict[str, Any]] = []
        self._server = _bind(port, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.base}/{path.lstrip('/')}"

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path.lstrip("/")
                body = server.site.body(path, server.base)
                record: dict[str, Any] = {
                    "path": path,
                    "if_none_match": self.headers.get("If-None-Match"),
                    "if_modified_since": self.headers.get("If-Modified-Since"),
                    "user_agent": self.headers.get("User-Agent"),
                }
                if body is None:
                    record["status"] = 404
                    server.requests.append(record)
                    self.send_error(404, "Not Found")
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                last_modified = formatdate(server.site.last_modified, usegmt=True)
                if _not_modified(self.headers, etag, server.site.last_modified):
                    record["status"] = 304
                    server.requests.append(record)
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                record["status"] = 200
                server.requests.append(record)
                self.send_response(200)
                self.send_header("Content-Type", server.site.content_types[path])
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", last_modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _not_modified(headers: Any, etag: str, last_modified: float) -> bool:
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
    since = headers.get("If-Modified-Since")
    if since:
        try:
            return parsedate_to_datetime(since).timestamp() >= last_modified
        except (TypeError, ValueError):
            return False
    return False


def _bind(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        if port == 0:
            raise
        # The preferred port is taken: any free port will do.
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)
