"""The bundled demo site: its files match its manifest and ground truth, and its dates
follow the day it is served on without breaking its encodings."""

from __future__ import annotations

import calendar
import re
import urllib.request
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

import feedparser
import pytest
import yaml

from pipeline.fixture_site import DateShift, FixtureServer, FixtureSite

ROOT = resources.files("pipeline") / "data" / "demo_site"
EXPECTED: dict[str, Any] = yaml.safe_load((ROOT / "expected.yaml").read_text(encoding="utf-8"))
REFERENCE = date.fromisoformat(EXPECTED["date_cases"]["shift"]["reference_date"])
# Served on the reference day, a month later, across a new year, and before the reference.
DAYS = [
    REFERENCE,
    REFERENCE + timedelta(days=27),
    REFERENCE + timedelta(days=400),
    REFERENCE - timedelta(days=3),
]
RU_DAYS = ["Понедельник", "Вторник", "Среда", "Четверг", "Пятница", "Суббота", "Воскресенье"]
RU_MONTHS = [
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
ZH_DAYS = "一二三四五六日"


def text_of(site: FixtureSite, path: str) -> str:
    body = site.body(path, "127.0.0.1:9")
    assert body is not None
    encoding = site.encodings[path]
    assert encoding is not None
    return body.decode(encoding)


def test_manifest_lists_the_pages_of_the_ground_truth() -> None:
    site = FixtureSite()
    pages = set(EXPECTED["pages"])
    assert pages <= set(site.content_types)
    for path, page in EXPECTED["pages"].items():
        assert site.content_types[path] == page["content_type"], path
    assert {f.path for f in site.feeds} == set(EXPECTED["feeds"])
    assert len(pages) == EXPECTED["counts"]["article_pages"]
    assert sum(len(feed["items"]) for feed in EXPECTED["feeds"].values()) == EXPECTED["counts"]["feed_items"]
    for pair in EXPECTED["translations"]:
        assert EXPECTED["pages"][pair["page"]]["translation_of"] == pair["translation_of"]
        assert EXPECTED["pages"][pair["page"]]["lang"] != EXPECTED["pages"][pair["translation_of"]]["lang"]


def test_on_the_reference_day_every_file_is_served_as_written() -> None:
    site = FixtureSite(today=REFERENCE)
    assert site.shift.days == 0
    for path in site.content_types:
        raw = (ROOT / path).read_bytes()
        assert site.body(path, "127.0.0.1:9") == raw.replace(b"{BASE}", b"127.0.0.1:9"), path


@pytest.mark.parametrize("today", DAYS, ids=str)
def test_feed_dates_follow_the_day_and_files_keep_their_encodings(today: date) -> None:
    site = FixtureSite(today=today)
    assert site.shift.days == (today - REFERENCE).days
    for path, feed in EXPECTED["feeds"].items():
        parsed = feedparser.parse(site.body(path, "{BASE}"))
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        dates = {e.link: e.get("published_parsed") or e.get("updated_parsed") for e in parsed.entries}
        for item in feed["items"]:
            if item["pub_date"] is None:
                assert dates[item["link"]] is None
                continue
            served = site.shift.moment(datetime.fromisoformat(item["pub_date"]))
            assert calendar.timegm(dates[item["link"]]) == served.timestamp(), (path, item["link"])
    for path in EXPECTED["pages"]:
        page = EXPECTED["pages"][path]
        text = text_of(site, path)  # decodes strictly in the page's own charset
        published = site.shift.moment(datetime.fromisoformat(page["published_at"]))
        assert f'content="{published.isoformat()}"' in text, path


@pytest.mark.parametrize("today", DAYS, ids=str)
def test_weekdays_stay_true_to_their_dates(today: date) -> None:
    site = FixtureSite(today=today)
    checked = 0
    for path in site.content_types:
        if site.encodings[path] is None:
            continue
        text = text_of(site, path)
        for match in re.finditer(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (\w{3}) (\d{4})", text):
            weekday, day, month, year = match.groups()
            written = datetime.strptime(f"{day} {month} {year}", "%d %b %Y").date()
            assert f"{written:%a}" == weekday, (path, match.group(0))
            checked += 1
        for match in re.finditer(rf"({'|'.join(RU_DAYS)}), (\d+) (\w+) (\d{{4}})", text):
            weekday, day, month, year = match.groups()
            written = date(int(year), RU_MONTHS.index(month) + 1, int(day))
            assert RU_DAYS[written.weekday()] == weekday, (path, match.group(0))
            checked += 1
        for match in re.finditer(r"(\d{4})年(\d+)月(\d+)日 星期(.)", text):
            year, month, day, weekday = match.groups()
            written = date(int(year), int(month), int(day))
            assert ZH_DAYS[written.weekday()] == weekday, (path, match.group(0))
            checked += 1
    assert checked >= 26


def test_weekday_names_in_the_text_move_with_the_dates() -> None:
    path = "pages/en/putin-xi-beijing-summit-joint-statement.html"
    # 27 October 2026 was a Tuesday; four days later it is a Saturday.
    moved = text_of(FixtureSite(today=REFERENCE + timedelta(days=4)), path)
    assert "signed a joint statement in Beijing on Saturday" in moved
    assert "31 October 2026, 09:40 GMT" in moved
    assert "travel on to Harbin on Sunday" in moved
    russian = text_of(
        FixtureSite(today=REFERENCE - timedelta(days=1)), "pages/ru/putin-si-pekin-sovmestnoe-zayavlenie.html"
    )
    assert "Понедельник, 26 октября 2026" in russian
    assert "Во вторник российский президент отправится" in russian, "the preposition follows the new day"
    chinese = text_of(
        FixtureSite(today=REFERENCE + timedelta(days=10)), "pages/zh/zhong-e-yuanshou-beijing-huiwu.html"
    )
    assert "<p>11月6日，国家主席习近平" in chinese, "a date without a year moves too"


def test_history_the_articles_cite_stays_as_written() -> None:
    site = FixtureSite(today=REFERENCE + timedelta(days=100))
    text = text_of(site, "pages/en/turkstream-gas-flows-europe-record.html")
    assert "stopped on January 1, 2025" in text
    assert "中方自2025年9月15日起" in text_of(site, "pages/zh/zhong-e-jiaoyu-nian-liuxuesheng-mianqian.html")
    assert "в сентябре 2025 года" in text_of(
        site, "pages/ru/putin-si-sovmestnoe-zayavlenie-perevod-eurasia-ledger.html"
    )


def test_date_shift_rules() -> None:
    shift = DateShift(days=3, shift_from=date(2026, 10, 1), default_year=2026)
    assert shift.apply("Thu, 29 Oct 2026 08:00:00 +0300") == "Sun, 01 Nov 2026 08:00:00 +0300"
    assert shift.apply("2026-12-30T23:00:00Z; /2026/12/30/") == "2027-01-02T23:00:00Z; /2027/01/02/"
    assert (
        shift.apply("30.10.2026, 30 октября, October 30, 2026, Oct 30")
        == "02.11.2026, 2 ноября, November 2, 2026, Nov 2"
    )
    assert shift.apply("2026年10月30日 星期五, 10月30日") == "2026年11月2日 星期一, 11月2日"
    assert (
        shift.apply("в субботу, в пятницу; Суббота, 31 октября 2026")
        == "во вторник, в понедельник; Вторник, 3 ноября 2026"
    )
    # Before shift_from, not a date, or not a weekday: untouched.
    unchanged = "30.09.2026, 2025-10-30, v=2026.10.3, 0451-00000000, деловая среда, 每周五班"
    assert shift.apply(unchanged) == unchanged
    assert (
        shift.moment(datetime.fromisoformat("2026-10-30T23:30:00+03:00")).isoformat()
        == "2026-11-02T23:30:00+03:00"
    )


def test_server_sends_shifted_bytes_with_stable_validators() -> None:
    today = REFERENCE + timedelta(days=27)
    path = "feeds/ru-vestnik-vostoka.rss.xml"
    with FixtureServer(FixtureSite(today=today)) as server:
        with urllib.request.urlopen(server.url(path)) as response:
            body = response.read()
            etag = response.headers["ETag"]
            last_modified = response.headers["Last-Modified"]
            assert response.headers["Content-Type"] == "application/rss+xml; charset=windows-1251"
        assert "Tue, 01 Dec 2026 14:20:00 +0300".encode("cp1251") in body
        assert "Вестник Востока".encode("cp1251") in body
        request = urllib.request.Request(server.url(path), headers={"If-None-Match": etag})
        with pytest.raises(urllib.error.HTTPError) as not_modified:
            urllib.request.urlopen(request)
        assert not_modified.value.code == 304
    with FixtureServer(FixtureSite(today=REFERENCE)) as server:
        with urllib.request.urlopen(server.url(path)) as response:
            assert response.headers["ETag"] != etag
            assert response.headers["Last-Modified"] != last_modified
