from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.feed_urls import normalise_feed_url
from pipeline.feeds import (
    FeedParseError,
    load_feed_registry,
    parse_feed,
    parse_opml,
    to_opml,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)
FEED_URL = "http://news.example/feed"

RSS091 = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old</title><link>http://news.example/</link><description>d</description>
<item><title>Caf\xe9 talks</title><link>http://news.example/a</link><description>x</description></item>
</channel></rss>"""

RSS10 = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://news.example/"><title>RDF</title><link>http://news.example/</link><description>d</description>
<items><rdf:Seq><rdf:li rdf:resource="http://news.example/b"/></rdf:Seq></items></channel>
<item rdf:about="http://news.example/b"><title>Встреча в Кремле</title><link>http://news.example/b</link>
<dc:date>2026-11-02T10:00:00+03:00</dc:date></item>
</rdf:RDF>""".encode()

RSS20 = """<?xml version="1.0" encoding="windows-1251"?>
<rss version="2.0"><channel><title>Лента</title><link>http://news.example/</link><description>d</description>
<item><title>Сила Сибири 2: новые переговоры</title><link>/news/psib2?utm_source=rss</link>
<guid>n-1</guid><pubDate>Mon, 02 Nov 2026 08:30:00 +0300</pubDate></item>
<item><title>Из будущего</title><link>http://news.example/future</link><pubDate>Sat, 01 Nov 2031 08:30:00 GMT</pubDate></item>
<item><title>Без даты</title><link>http://news.example/nodate</link></item>
</channel></rss>""".encode("cp1251")

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title><id>urn:x</id><updated>2026-11-03T00:00:00Z</updated>
<entry><title>普京与习近平会谈</title><id>urn:1</id><link rel="alternate" href="http://news.example/zh/1"/>
<published>2026-11-03T09:00:00+08:00</published><updated>2026-11-03T10:00:00+08:00</updated></entry>
</feed>""".encode()


def test_rss_091_latin1() -> None:
    parsed = parse_feed(RSS091, feed_url=FEED_URL, now=NOW)
    assert [i.title for i in parsed.items] == ["Café talks"]
    assert parsed.items[0].published_at is None


def test_rss_10_rdf_with_dc_date() -> None:
    parsed = parse_feed(RSS10, feed_url=FEED_URL, now=NOW)
    item = parsed.items[0]
    assert item.title == "Встреча в Кремле"
    assert item.published_at == datetime(2026, 11, 2, 7, 0, tzinfo=UTC)


def test_rss_20_windows_1251_relative_links_and_dates() -> None:
    parsed = parse_feed(RSS20, feed_url=FEED_URL, now=NOW)
    assert parsed.title == "Лента"
    first, future, undated = parsed.items
    assert first.title == "Сила Сибири 2: новые переговоры"
    assert first.url == "http://news.example/news/psib2?utm_source=rss"
    assert first.published_at == datetime(2026, 11, 2, 5, 30, tzinfo=UTC)
    assert future.published_at is None  # a date years ahead is not trusted
    assert undated.published_at is None


def test_atom_prefers_published() -> None:
    parsed = parse_feed(ATOM, feed_url=FEED_URL, now=NOW)
    assert parsed.items[0].url == "http://news.example/zh/1"
    assert parsed.items[0].title == "普京与习近平会谈"
    assert parsed.items[0].published_at == datetime(2026, 11, 3, 1, 0, tzinfo=UTC)


def test_charset_from_http_header_when_xml_declares_none() -> None:
    body = """<?xml version="1.0"?><rss version="2.0"><channel><title>Новости</title>
<item><title>Юань и рубль</title><link>http://news.example/c</link></item></channel></rss>""".encode("koi8-r")
    parsed = parse_feed(body, feed_url=FEED_URL, content_type="text/xml; charset=koi8-r", now=NOW)
    assert parsed.items[0].title == "Юань и рубль"


def test_gb18030_feed() -> None:
    body = """<?xml version="1.0" encoding="gb18030"?><rss version="2.0"><channel><title>新闻</title>
<item><title>西伯利亚力量2号管道</title><link>http://news.example/zh/2</link></item></channel></rss>""".encode(
        "gb18030"
    )
    assert parse_feed(body, feed_url=FEED_URL, now=NOW).items[0].title == "西伯利亚力量2号管道"


def test_xml_bomb_refused() -> None:
    bomb = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<rss version="2.0"><channel><title>&lol2;</title></channel></rss>"""
    with pytest.raises(FeedParseError, match="entit"):
        parse_feed(bomb, feed_url=FEED_URL, now=NOW)


@pytest.mark.parametrize(
    "body", [b"<html><body><p>Not a feed</p></body></html>", b"", b"\x89PNG\r\n\x1a\n\0\0"]
)
def test_not_a_feed(body: bytes) -> None:
    with pytest.raises(FeedParseError, match="not a feed"):
        parse_feed(body, feed_url=FEED_URL, now=NOW)


def test_max_items() -> None:
    items = "".join(f"<item><title>t{i}</title><link>http://n.example/{i}</link></item>" for i in range(50))
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    assert len(parse_feed(body, feed_url=FEED_URL, now=NOW, max_items=10).items) == 10


def test_opml_round_trip() -> None:
    feeds = [
        {"url": "https://tass.com/rss/v2.xml", "name": "TASS", "lang": "en", "outlet": "TASS"},
        {"url": "http://example.com/a?b=1&c=2", "name": "Amp & <co>"},
    ]
    back = parse_opml(to_opml(feeds))
    assert back == [
        {"url": "https://tass.com/rss/v2.xml", "name": "TASS", "lang": "en", "outlet": "TASS"},
        {"url": "http://example.com/a?b=1&c=2", "name": "Amp & <co>"},
    ]


def test_opml_never_names_a_feed_after_its_url_and_exports_control_characters_safely() -> None:
    """An outline without a title was named after its URL, credentials included, and that
    name is shown unredacted everywhere; a name with a control character made the export
    invalid XML."""
    body = b'<opml version="2.0"><body><outline type="rss" xmlUrl="http://u:S3CRET@n.example/f?token=T0K"/></body></opml>'
    (entry,) = parse_opml(body)
    assert entry["name"] == "n.example" and "S3CRET" not in entry["name"]
    exported = to_opml([{"url": "https://n.example/f", "name": "Bad\x01Name\x0c", "outlet": "Out\x02let"}])
    assert parse_opml(exported) == [{"url": "https://n.example/f", "name": "Bad Name", "outlet": "Out let"}]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (" http://127.0.0.1:8931/feed.xml ", "http://127.0.0.1:8931/feed.xml"),
        ("HTTPS://Example.COM/feed", "https://example.com/feed"),
        ("https://tass.com:443/rss/v2.xml#latest", "https://tass.com/rss/v2.xml"),
        ("http://n.example:80", "http://n.example/"),
        ("https://user:Pw@Host.example:8443?x=1", "https://user:Pw@host.example:8443/?x=1"),
        ("http://münchen.example/feed", "http://xn--mnchen-3ya.example/feed"),
        # IDNA 2008, as the HTTP client writes it (IDNA 2003 made "ß" "ss": another domain).
        ("http://straße.example/feed", "http://xn--strae-oqa.example/feed"),
        ("http://[::1]:8080/f", "http://[::1]:8080/f"),
    ],
)
def test_a_feed_url_has_one_spelling(url: str, expected: str) -> None:
    assert normalise_feed_url(url) == expected
    assert normalise_feed_url(expected) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://exa\tmple.com/feed",
        "http://exa mple.com/x",
        "http://n.example/a\nb",
        "http://127.0.0.1:abc/feed.xml",
        "http://127.0.0.1:99999/feed.xml",
        "ftp://n.example/feed",
        "http:///feed",
        "http://",
        "http://@/feed",
        "http://:80/feed",
        "http://./feed",
        "http://news..example/feed",
        "http://n.example:0/feed",
        "https://n.example/" + "a" * 2100,
    ],
)
def test_a_feed_url_that_could_never_be_fetched_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"must|port|longer|host"):
        normalise_feed_url(url)


def test_opml_bomb_and_garbage_refused() -> None:
    with pytest.raises(ConfigError):
        parse_opml(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><opml><body><outline xmlUrl="&a;"/></body></opml>')
    with pytest.raises(ConfigError):
        parse_opml(b"not xml at all")


SHIPPED = Path(__file__).resolve().parent.parent / "config" / "feeds.yaml"
REGISTRY = load_feed_registry(SHIPPED)


@pytest.mark.parametrize("entry", REGISTRY.feeds, ids=lambda e: e.name)
def test_shipped_feed_entry(entry: object) -> None:
    from pipeline.feeds import FeedEntry

    assert isinstance(entry, FeedEntry)
    assert entry.url.startswith(("http://", "https://"))
    assert entry.lang in {"en", "ru", "zh"}
    assert len(entry.reason) >= 30, "each feed says why it is on the list"


def test_shipped_feeds_cover_three_languages() -> None:
    langs = {entry.lang for entry in REGISTRY.feeds}
    assert {"en", "ru", "zh"} <= langs


def test_bad_feed_list_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n  - url: ftp://x\n    name: X\n    outlet: X\n    lang: en\n    reason: just a test entry\n"
    )
    with pytest.raises(ConfigError, match=r"feeds\.0\.url"):
        load_feed_registry(path)


# XML hardening: entity declarations refused wherever they are -----------------------------

NORMAL = (
    '<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel><title>Feed</title>'
    "<item><title>Summit in Beijing</title><link>http://news.example/a</link></item></channel></rss>"
)
LAUGHS = (
    '<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE rss [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">' for n in range(1, 10))
    + ']><rss version="2.0"><channel><title>&lol9;</title></channel></rss>'
)
# (declared encoding, Python codec, byte-order mark)
ENCODINGS = [
    ("utf-8", "utf-8", b""),
    ("utf-8", "utf-8", codecs.BOM_UTF8),
    ("utf-16", "utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16", "utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-16", "utf-16-le", b""),
    ("utf-16", "utf-16-be", b""),
    ("utf-32", "utf-32-le", codecs.BOM_UTF32_LE),
    ("utf-32", "utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-32", "utf-32-le", b""),
    ("utf-32", "utf-32-be", b""),
    ("utf-7", "utf-7", b""),
    ("cp037", "cp037", b""),  # EBCDIC
]
ENCODING_IDS = [f"{codec}{'-bom' if bom else ''}" for _, codec, bom in ENCODINGS]


def encoded(template: str, declared: str, codec: str, bom: bytes) -> bytes:
    return bom + template.format(encoding=declared).encode(codec)


@pytest.mark.parametrize(("declared", "codec", "bom"), ENCODINGS, ids=ENCODING_IDS)
def test_normal_feed_parses_in_every_encoding(declared: str, codec: str, bom: bytes) -> None:
    parsed = parse_feed(encoded(NORMAL, declared, codec, bom), feed_url=FEED_URL, now=NOW)
    assert [(i.title, i.url) for i in parsed.items] == [("Summit in Beijing", "http://news.example/a")]


@pytest.mark.parametrize(("declared", "codec", "bom"), ENCODINGS, ids=ENCODING_IDS)
def test_billion_laughs_refused_in_every_encoding(declared: str, codec: str, bom: bytes) -> None:
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(encoded(LAUGHS, declared, codec, bom), feed_url=FEED_URL, now=NOW)


@pytest.mark.parametrize(
    "padding", [" " * 100_000, "<!-- " + "x" * 100_000 + " -->", "\n<!-- pad -->" * 8000]
)
@pytest.mark.parametrize("codec", ["utf-8", "utf-16-le", "utf-32-be"])
def test_declarations_past_any_padding_are_refused(padding: str, codec: str) -> None:
    head = '<?xml version="1.0"?>' if codec == "utf-8" else ""
    body = (head + padding + LAUGHS.split("?>", 1)[1]).encode(codec)
    assert len(body) > 100_000
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(body, feed_url=FEED_URL, now=NOW)
    # The same padding in front of a normal feed is harmless.
    declaration = f'<?xml version="1.0" encoding="{codec[:6]}"?>'
    normal = (declaration + padding + NORMAL.split("?>", 1)[1]).encode(codec)
    assert parse_feed(normal, feed_url=FEED_URL, now=NOW).items[0].title == "Summit in Beijing"


def test_entity_declaration_at_the_end_is_refused() -> None:
    body = NORMAL.format(encoding="utf-8") + "\n" + "<!-- more -->\n" * 20_000 + '<!ENTITY late "x">'
    assert len(body) > 200_000
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(body.encode(), feed_url=FEED_URL, now=NOW)


def test_internal_subset_without_entities_is_refused() -> None:
    body = '<!DOCTYPE rss [<!ATTLIST item xmlns CDATA "urn:x">]>' + NORMAL.split("?>", 1)[1]
    with pytest.raises(FeedParseError, match="internal subset"):
        parse_feed(body.encode(), feed_url=FEED_URL, now=NOW)


@pytest.mark.parametrize("codec", ["utf-8", "utf-16", "utf-32"])
def test_xxe_to_a_local_file_is_refused(tmp_path: Path, codec: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (
        f'<?xml version="1.0" encoding="{codec}"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        '<rss version="2.0"><channel><title>t</title><item><title>&xxe;</title>'
        "<link>http://news.example/x</link></item></channel></rss>"
    ).encode(codec)
    with pytest.raises(FeedParseError, match="declares XML entities") as caught:
        parse_feed(body, feed_url=FEED_URL, now=NOW)
    assert "TOP-SECRET-MARKER" not in str(caught.value)


def test_a_body_naming_a_local_file_is_not_read_as_that_file(tmp_path: Path) -> None:
    """feedparser opens a bytes argument that names a file; the body is data, never a path."""
    local = tmp_path / "local-feed.xml"
    local.write_bytes(NORMAL.format(encoding="utf-8").encode())
    with pytest.raises(FeedParseError, match="not a feed"):
        parse_feed(str(local).encode(), feed_url=FEED_URL, now=NOW)


def test_utf7_hidden_declarations_are_refused() -> None:
    """In UTF-7, "<" may be written as "+ADw-": no byte pattern finds it, decoding does."""
    declaration, rest = LAUGHS.format(encoding="utf-7").split("?>", 1)
    body = (declaration + "?>").encode() + rest.encode("utf-7").replace(b"<", b"+ADw-")
    assert b"<!" not in body
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(body, feed_url=FEED_URL, now=NOW)


# JSON Feed ----------------------------------------------------------------------------------


def json_feed(items: list[object], version: str = "https://jsonfeed.org/version/1.1") -> bytes:
    return json.dumps({"version": version, "title": "Wire", "items": items}, ensure_ascii=False).encode()


def test_json_feed_items_links_dates_and_summaries() -> None:
    body = json_feed(
        [
            {
                "id": "1",
                "url": "/2026/11/summit",
                "title": "Putin and Xi meet",
                "date_published": "2026-11-19T10:00:00+03:00",
                "summary": "Talks in  Beijing",
            },
            # No url: the external one; a date with Z; the text as summary.
            {"id": "2", "external_url": "https://other.example/a", "date_modified": "2026-11-18T08:00:00Z"},
            # No url at all but an id that is one; an RFC 822 date where RFC 3339 was due.
            {
                "id": "https://news.example/b",
                "content_text": "Текст",
                "date_published": "Wed, 18 Nov 2026 06:00:00 GMT",
            },
            # A date in the future beyond tolerance and a placeholder date are no dates.
            {"id": "4", "url": "https://news.example/c", "date_published": "2027-01-01T00:00:00Z"},
            {"id": "5", "url": "https://news.example/d", "date_published": "1970-01-01T00:00:00Z"},
            "not an item",
        ],
        version="https://jsonfeed.org/version/1",
    )
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW)
    assert parsed.title == "Wire"
    # Oldest first (the order items are stored in), the undated last in the feed's order.
    assert [(item.url, item.published_at) for item in parsed.items] == [
        ("https://news.example/b", datetime(2026, 11, 18, 6, 0, tzinfo=UTC)),
        ("https://other.example/a", datetime(2026, 11, 18, 8, 0, tzinfo=UTC)),
        ("http://news.example/2026/11/summit", datetime(2026, 11, 19, 7, 0, tzinfo=UTC)),
        ("https://news.example/c", None),
        ("https://news.example/d", None),
    ]
    third, second, first = parsed.items[:3]
    assert (first.title, first.summary, first.guid) == ("Putin and Xi meet", "Talks in Beijing", "1")
    assert second.title is None and third.summary == "Текст"
    assert parsed.warnings == ["JSON Feed item that is not an object skipped: str"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_json_feed_in_utf16_or_utf32_is_read(encoding: str) -> None:
    text = json_feed([{"id": "1", "url": "https://news.example/1", "title": "Путин и Си: встреча в Пекине"}])
    body = text.decode("utf-8").encode(encoding)
    (item,) = parse_feed(body, feed_url=FEED_URL, content_type=None, now=NOW).items
    assert item.url == "https://news.example/1" and item.title == "Путин и Си: встреча в Пекине"


def test_json_feed_in_another_charset_is_read_in_the_one_the_server_names() -> None:
    text = json_feed([{"id": "1", "url": "https://news.example/1", "title": "Réunion à Pékin"}])
    body = text.decode("utf-8").encode("windows-1252")
    (item,) = parse_feed(
        body, feed_url=FEED_URL, content_type="application/feed+json; charset=windows-1252", now=NOW
    ).items
    assert item.title == "Réunion à Pékin"
    # Without a charset (or with one that names no codec) its items are still read.
    for content_type in ("application/feed+json", "application/json; charset=no-such-codec"):
        parsed = parse_feed(body, feed_url=FEED_URL, content_type=content_type, now=NOW)
        assert [i.url for i in parsed.items] == ["https://news.example/1"], content_type
        assert parsed.warnings and parsed.warnings[0].startswith("not UTF-8: read as ")


def test_json_feed_served_with_a_bom_or_as_json_and_the_item_limit() -> None:
    body = json_feed([{"id": str(i), "url": f"https://news.example/{i}"} for i in range(30)])
    assert len(parse_feed(b"\xef\xbb\xbf\n" + body, feed_url=FEED_URL, now=NOW, max_items=10).items) == 10
    # An RSS document a server labels JSON is still read as RSS.
    rss = b'<rss version="2.0"><channel><title>x</title><item><link>http://n.example/1</link></item></channel></rss>'
    assert [
        i.url for i in parse_feed(rss, feed_url=FEED_URL, content_type="application/json", now=NOW).items
    ] == ["http://n.example/1"]


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', None, "invalid JSON"),
        (b'{"error": "rate limited"}', "application/json", "without a JSON Feed version"),
        (b"[1, 2, 3]", "application/feed+json", "without a JSON Feed version"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', None, "without an items list"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, None, "invalid JSON"),
    ],
)
def test_json_that_is_no_feed_is_refused(body: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(FeedParseError, match=f"not a feed: .*{reason}"):
        parse_feed(body, feed_url=FEED_URL, content_type=content_type, now=NOW)


def test_a_json_feed_with_a_stray_byte_loses_that_byte_not_its_items() -> None:
    """A title cut mid-character (one byte that is not UTF-8) cost every item of the feed at
    every poll; an RSS feed loses only that character."""
    titles = [f"Путин и Си Цзиньпин обсудили газопровод, день {i}" for i in range(3)]
    body = json_feed(
        [{"id": str(i), "url": f"https://news.example/{i}", "title": t} for i, t in enumerate(titles)]
    )
    body = body.replace(titles[1].encode(), "Путин и Си".encode() + b"\xd0")
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW)
    assert [item.url for item in parsed.items] == [f"https://news.example/{i}" for i in range(3)]
    assert [item.title for item in parsed.items] == [titles[0], "Путин и Си\ufffd", titles[2]]
    assert parsed.warnings == ["bytes that are not UTF-8 became U+FFFD"]
    # UTF-16 that does not decode is still refused: no stray byte to pass over.
    with pytest.raises(FeedParseError, match="invalid JSON"):
        parse_feed("{".encode("utf-16-le") + b"\x00\xd8", feed_url=FEED_URL, now=NOW)


def test_a_page_given_for_its_feed_says_where_its_feeds_are() -> None:
    links = "".join(
        f'<link rel="alternate" type="application/rss+xml" href="/rss/{i}.xml?a=1&amp;b=2">' for i in range(7)
    )
    page = (
        "<!doctype html><html><head><title>News</title>"
        "<link href='https://news.example/atom' type='application/atom+xml' rel='alternate'>"
        "<link rel=stylesheet href=/site.css><link rel=alternate hreflang=ru href=/ru/>"
        f"{links}</head><body><p>Front page</p></body></html>"
    ).encode()
    with pytest.raises(FeedParseError) as raised:
        parse_feed(page, feed_url="https://news.example/", now=NOW)
    message = str(raised.value)
    assert message.startswith("not a feed: an HTML page that links to feeds: https://news.example/atom, ")
    assert "https://news.example/rss/0.xml?a=1&b=2" in message
    assert "site.css" not in message and "/ru/" not in message
    assert message.count("https://") == 5  # at most five named


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"<rss version='2.0'><channel><title>x</title><language>ru-RU</language>"
            b"<item><link>http://n.example/1</link></item></channel></rss>",
            ["ru"],
        ),
        (
            b"<feed xmlns='http://www.w3.org/2005/Atom' xml:lang='zh-CN'><title>x</title>"
            b"<entry><title>t</title><link href='http://n.example/1'/></entry></feed>",
            ["zh"],
        ),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "language": "de-DE", "items": '
            b'[{"id": "1", "url": "http://n.example/1"}, {"id": "2", "url": "http://n.example/2", "language": "fr"}]}',
            ["de", "fr"],
        ),
        # No declaration, or one that is no language code.
        (
            b"<rss version='2.0'><channel><title>x</title><item><link>http://n.example/1</link></item></channel></rss>",
            [None],
        ),
        (
            b"<rss version='2.0'><channel><title>x</title><language>english</language>"
            b"<item><link>http://n.example/1</link></item></channel></rss>",
            [None],
        ),
    ],
)
def test_the_language_a_feed_declares_goes_with_its_items(body: bytes, expected: list[str | None]) -> None:
    # (A prior for each page's language when the feed registry names none.)
    assert [item.lang for item in parse_feed(body, feed_url=FEED_URL, now=NOW).items] == expected


def test_json_feed_dates_at_the_calendar_edges_and_odd_fields_lose_nothing() -> None:
    body = json_feed(
        [
            {"id": "1", "url": "https://news.example/1", "date_published": "0001-01-01T00:00:00+01:00"},
            {"id": "2", "url": "https://news.example/2", "date_published": "9999-12-31T23:00:00-23:59"},
            {"id": "3", "url": "https://news.example/3", "date_published": "Fri, 31 Dec 9999 23:59:59 -0100"},
            # An unreadable publication date: the modification date is taken.
            {
                "id": "4",
                "url": "https://news.example/4",
                "date_published": "soon",
                "date_modified": "2026-11-19",
            },
            {"id": [1, 2], "url": "https://news.example/5", "title": 7, "summary": None, "date_published": 5},
        ]
    )
    items = parse_feed(body, feed_url=FEED_URL, now=NOW).items
    # (the one dated item first: items are stored oldest first, the undated last)
    assert [(item.url, item.published_at) for item in items] == [
        ("https://news.example/4", datetime(2026, 11, 19, tzinfo=UTC)),
        *((f"https://news.example/{i}", None) for i in (1, 2, 3, 5)),
    ]
    assert (items[4].guid, items[4].title, items[4].summary) == (None, None, None)


def test_feed_discovery_reads_only_announced_feeds() -> None:
    page = (
        b"<html><head>"
        b"<!-- <link rel='alternate' type='application/rss+xml' href='/commented.xml'> -->"
        b"<script>document.write(\"<link rel='alternate' type='application/rss+xml' href='/scripted.xml'>\")</script>"
        b"<link rel='alternate' type='application/json' href='/wp-json/wp/v2/posts/123'>"
        b"<link rel='alternate' type='application/rss+xml' href='javascript:alert(1)'>"
        # A terminal escape in a link: never echoed into an error message.
        b"<link rel='alternate' type='application/rss+xml' href='/a\x1b[31mRED\x1b[0m.xml'>"
        # A C1 control (CSI, in UTF-8) and a right-to-left override: left out too.
        b"<link rel='alternate' type='application/rss+xml' href='/b\xc2\x9b2J.xml'>"
        b"<link rel='alternate' type='application/rss+xml' href='/c\xe2\x80\xae.xml'>"
        b"<link rel='alternate' title='a > b' type='application/rss+xml; charset=utf-8' href='/world/rss.xml'>"
        b"</head><body><p>Front page</p></body></html>"
    )
    with pytest.raises(FeedParseError, match="links to feeds") as raised:
        parse_feed(page, feed_url="https://news.example/", now=NOW)
    assert (
        str(raised.value)
        == "not a feed: an HTML page that links to feeds: https://news.example/world/rss.xml"
    )


# Feeds whose bytes and labels disagree -------------------------------------------------------

RUSSIAN = """<?xml version="1.0" encoding="{encoding}"?>
<rss version="2.0"><channel><title>Лента новостей</title><link>http://news.example/</link>
<item><title>Мирный план и переговоры в Пекине</title><link>http://news.example/1</link></item>
<item><title>Сила Сибири 2: новые условия поставок газа</title><link>http://news.example/2</link></item>
</channel></rss>"""
TITLES = ["Мирный план и переговоры в Пекине", "Сила Сибири 2: новые условия поставок газа"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # Valid UTF-8 served with a legacy charset: the bytes win.
        (RUSSIAN.format(encoding="utf-8").encode(), "application/rss+xml; charset=windows-1251"),
        # A UTF-8 byte-order mark beats the header too.
        (codecs.BOM_UTF8 + RUSSIAN.format(encoding="utf-8").encode(), "text/xml; charset=windows-1251"),
        # UTF-16 with its mark, served as UTF-8.
        (
            codecs.BOM_UTF16_LE + RUSSIAN.format(encoding="utf-16").encode("utf-16-le"),
            "text/xml; charset=utf-8",
        ),
        # windows-1251 with no declaration anywhere (XML's default would be UTF-8).
        (RUSSIAN.replace(' encoding="{encoding}"', "").encode("cp1251"), "text/xml"),
    ],
    ids=["utf8-served-as-1251", "utf8-bom-served-as-1251", "utf16-bom-served-as-utf8", "1251-undeclared"],
)
def test_a_feed_is_read_in_the_charset_its_bytes_are_in(body: bytes, content_type: str) -> None:
    parsed = parse_feed(body, feed_url=FEED_URL, content_type=content_type, now=NOW)
    assert [item.title for item in parsed.items] == TITLES


def test_one_stray_byte_in_a_utf8_feed_costs_one_character() -> None:
    body = RUSSIAN.format(encoding="utf-8").encode().replace("Пекине".encode(), "Пеки".encode() + b"\x92")
    parsed = parse_feed(body, feed_url=FEED_URL, content_type="application/rss+xml", now=NOW)
    assert [item.title for item in parsed.items] == ["Мирный план и переговоры в Пеки\ufffd", TITLES[1]]


def test_character_references_no_character_has_do_not_fail_the_feed() -> None:
    body = b"""<rss version="2.0"><channel><title>x</title>
<item><title>Smile &#55357;&#56832; from Beijing</title><link>http://news.example/1</link></item>
<item><title>Broken &#55357; and &#x110000; and &#0; refs</title><link>http://news.example/2</link></item>
<item><title>Fine &#1057;&#1080;&#1083;&#1072;</title><link>http://news.example/3</link></item>
</channel></rss>"""
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW)
    assert [item.title for item in parsed.items] == [
        "Smile \U0001f600 from Beijing",
        "Broken \ufffd and \ufffd and \ufffd refs",
        "Fine Сила",
    ]


def test_a_feed_listing_its_oldest_first_keeps_its_newest_items() -> None:
    items = "".join(
        f"<item><title>t{day}</title><link>http://n.example/{day}</link>"
        f"<pubDate>{day:02d} Nov 2026 08:00:00 GMT</pubDate></item>"
        for day in range(1, 16)
    )
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW, max_items=5)
    assert [item.title for item in parsed.items] == ["t11", "t12", "t13", "t14", "t15"]
    assert any("10 of 15 items left out (the oldest" in warning for warning in parsed.warnings)


@pytest.mark.parametrize(
    "undated", ["", "<pubDate>01 Jan 1970 00:00:00 GMT</pubDate>"], ids=["no date", "a placeholder date"]
)
def test_a_feed_listing_its_oldest_first_keeps_its_newest_items_with_an_undated_one(undated: str) -> None:
    """One undated item (or one whose date is a placeholder) among them: the dated items
    still show which end of the feed is its newest, and that end is kept (the first items
    were kept before: the oldest, at every poll, so that no new item was ever reached)."""
    items = "".join(
        f"<item><title>t{day}</title><link>http://n.example/{day}</link>"
        + (undated if day == 1 else f"<pubDate>{day:02d} Nov 2026 08:00:00 GMT</pubDate>")
        + "</item>"
        for day in range(1, 16)
    )
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW, max_items=5)
    assert sorted(item.title or "" for item in parsed.items) == ["t11", "t12", "t13", "t14", "t15"]
    assert any("10 of 15 items left out (the first ones" in warning for warning in parsed.warnings)
    # The same items listed newest first: the first ones are the newest.
    reversed_items = "".join(reversed([f"<item>{part}" for part in items.split("<item>") if part]))
    newest_first = f'<rss version="2.0"><channel><title>x</title>{reversed_items}</channel></rss>'.encode()
    parsed = parse_feed(newest_first, feed_url=FEED_URL, now=NOW, max_items=5)
    assert sorted(item.title or "" for item in parsed.items) == ["t11", "t12", "t13", "t14", "t15"]


def test_a_json_feed_with_a_lone_surrogate_in_a_link_loses_only_that_character() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": ['
        b'{"id": "1", "url": "https://news.example/a\\ud800b", "title": "T\\udfff"}]}'
    )
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW)
    assert [(item.url, item.title) for item in parsed.items] == [("https://news.example/a\ufffdb", "T\ufffd")]


def test_a_guid_that_is_no_url_is_no_link() -> None:
    """feedparser copies a guid into the link of an item without one: "12345" or an Atom
    id "e1" became a relative link, and a page that does not exist was fetched."""
    rss = (
        b'<rss version="2.0"><channel><title>x</title>'
        b"<item><title>a</title><guid>12345</guid></item>"
        b"<item><title>b</title><guid>https://n.example/b</guid></item>"
        b"<item><title>c</title><link>/rel/c</link></item></channel></rss>"
    )
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>'
        b"<entry><title>e</title><id>e1</id></entry>"
        b'<entry><title>f</title><id>tag:x,2024:f</id><link href="/f"/></entry></feed>'
    )
    base = "https://news.example/rss/feed.xml"
    assert [(i.title, i.url) for i in parse_feed(rss, feed_url=base, now=NOW).items] == [
        ("a", None),
        ("b", "https://n.example/b"),
        ("c", "https://news.example/rel/c"),
    ]
    assert [(i.title, i.url) for i in parse_feed(atom, feed_url=base, now=NOW).items] == [
        ("e", None),
        ("f", "https://news.example/f"),
    ]


def test_an_item_linked_to_its_site_s_front_page_takes_the_address_its_guid_gives() -> None:
    """A feed whose template links every item to the site's front page, each item's own
    address in its guid: the front page was fetched as the first item's article and every
    other item taken for it. An item with a front-page link and no address elsewhere keeps
    it (ingest refuses it); a link to an article is kept whatever the guid says."""
    rss = (
        b'<rss version="2.0"><channel><title>x</title><link>https://news.example/</link>'
        b"<item><title>a</title><link>https://news.example/</link><guid>https://news.example/2026/a</guid></item>"
        b"<item><title>b</title><link>https://news.example/en/?utm_source=rss</link>"
        b"<guid>https://news.example/2026/b</guid></item>"
        b"<item><title>c</title><link>https://news.example/</link><guid>c-17</guid></item>"
        b"<item><title>d</title><link>https://news.example/2026/d</link><guid>https://news.example/</guid></item>"
        b"<item><title>e</title><link>https://news.example/#!/article/12345</link><guid>e-5</guid></item>"
        b"</channel></rss>"
    )
    assert [(i.title, i.url) for i in parse_feed(rss, feed_url=FEED_URL, now=NOW).items] == [
        ("a", "https://news.example/2026/a"),
        ("b", "https://news.example/2026/b"),
        ("c", "https://news.example/"),
        ("d", "https://news.example/2026/d"),
        ("e", "https://news.example/#!/article/12345"),  # (a script-driven site's page)
    ]
    from pipeline.feed_urls import front_page

    assert not front_page("https://news.example/#!/article/12345") and front_page("https://news.example/#top")


def test_a_feed_with_an_element_crowded_with_attributes_is_refused() -> None:
    """feedparser's time grows with the square of one element's attributes: 200,000 on a
    title took five minutes."""
    crowd = " ".join(f'a{i}="x"' for i in range(100_000))
    body = (
        f'<rss version="2.0"><channel><title {crowd}>t</title><item><title>x</title></item></channel></rss>'
    )
    with pytest.raises(FeedParseError, match="100,000 attributes"):
        parse_feed(body.encode(), feed_url=FEED_URL, now=NOW)


def test_a_title_given_as_markup_is_stored_as_the_text_it_shows() -> None:
    """feedparser hands on a title marked as HTML (Atom ``type="html"`` or ``"xhtml"``, an
    RSS title holding tags or references) as the markup it is: headlines were stored with
    "&amp;" and "<b>" in them. A plain-text title keeps what it says, a "<" included."""
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom">'
        b'<title type="html">Wire &amp;amp; &lt;i&gt;More&lt;/i&gt;</title>'
        b'<entry><id>urn:1</id><link href="/1"/>'
        b'<title type="html">Putin &amp;amp; Xi sign &amp;lt;Power of Siberia 2&amp;gt; deal</title></entry>'
        b'<entry><id>urn:2</id><link href="/2"/><title type="xhtml">'
        b'<div xmlns="http://www.w3.org/1999/xhtml"><b>Putin</b> and Xi<br/>in Beijing</div></title></entry>'
        b'<entry><id>urn:3</id><link href="/3"/>'
        b'<title type="text">Putin &lt; Xi &amp;amp; &lt;b&gt;</title></entry>'
        b"</feed>"
    )
    parsed = parse_feed(atom, feed_url=FEED_URL, now=NOW)
    assert parsed.title == "Wire & More"
    assert [item.title for item in parsed.items] == [
        "Putin & Xi sign <Power of Siberia 2> deal",
        "Putin and Xi in Beijing",
        "Putin < Xi &amp; <b>",
    ]
    rss = """<rss version="2.0"><channel><title>Лента</title>
<item><title><![CDATA[<b>Putin</b> &amp; Xi]]></title><link>/4</link></item>
<item><title>&lt;em&gt;Сила Сибири 2&lt;/em&gt;:  переговоры&lt;br&gt;в Пекине</title><link>/5</link></item>
<item><title>Putin &lt; Xi</title><link>/6</link></item>
<item><title><![CDATA[Putin < Xi & co]]></title><link>/7</link></item>
</channel></rss>""".encode()
    assert [item.title for item in parse_feed(rss, feed_url=FEED_URL, now=NOW).items] == [
        "Putin & Xi",
        "Сила Сибири 2: переговоры в Пекине",
        "Putin < Xi",
        "Putin < Xi & co",
    ]


def test_an_rss_title_with_a_tag_feedparser_does_not_allow_is_still_read_as_markup() -> None:
    """feedparser takes an untyped title for markup only when every tag in it is on its old
    sanitiser's list: a <mark>, a <wbr>, Word's <o:p> or a <script> left the whole title
    stored as markup, "&amp;" and tags shown."""
    rss = """<rss version="2.0"><channel><title><![CDATA[Лента <mark>новостей</mark> &amp; co]]></title>
<item><title><![CDATA[«Сила Сибири&nbsp;2» <mark>подписана</mark>]]></title><link>/1</link></item>
<item><title><![CDATA[<o:p></o:p>Putin &amp; Xi meet]]></title><link>/2</link></item>
<item><title><![CDATA[Talks in Bei<wbr>jing</title>]]></title><link>/3</link></item>
<item><title><![CDATA[<script>document.write("x")</script>Putin <b>and</b> Xi]]></title><link>/4</link></item>
<item><title>AT&amp;T; says Putin &lt; Xi</title><link>/5</link></item>
</channel></rss>""".encode()
    parsed = parse_feed(rss, feed_url=FEED_URL, now=NOW)
    assert parsed.title == "Лента новостей & co"
    assert [item.title for item in parsed.items] == [
        "«Сила Сибири 2» подписана",
        "Putin & Xi meet",
        "Talks in Beijing",
        "Putin and Xi",
        "AT&T; says Putin < Xi",  # (a reference HTML does not define: plain text)
    ]


def test_rss_dates_feedparser_misses_or_misreads_are_read() -> None:
    """feedparser gives no date for a time without a zone, an offset after "GMT" without
    a colon, or Russian month and day names (the item took the time it was first seen),
    and reads a zone name it does not know ("MSK", "UTC+03:00") as UTC. A zone name that
    names several offsets is read as feedparser reads it (CST: US Central), and the
    bounds every date is held to stay."""
    dates = {
        "no zone": ("Mon, 07 Dec 2026 10:00:00", datetime(2026, 12, 7, 10, 0, tzinfo=UTC)),
        "GMT+8": ("Mon, 07 Dec 2026 10:00:00 GMT+8", datetime(2026, 12, 7, 2, 0, tzinfo=UTC)),
        "UTC+03:00": ("Mon, 07 Dec 2026 10:00:00 UTC+03:00", datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
        "MSK": ("Mon, 07 Dec 2026 10:00:00 MSK", datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
        "Russian": ("Пн, 07 дек 2026 10:00:00 +0300", datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
        "genitive": ("7 декабря 2026 г. 10:00:00 +0300", datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
        "French": ("lun., 07 déc. 2026 10:00:00 +0100", datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),
        "comment": ("Mon, 07 Dec 2026 10:00:00 +0300 (MSK)", datetime(2026, 12, 7, 7, 0, tzinfo=UTC)),
        "CST": ("Mon, 07 Dec 2026 10:00:00 CST", datetime(2026, 12, 7, 16, 0, tzinfo=UTC)),
        "placeholder": ("Чт, 01 янв 1970 03:00:00 MSK", None),
        "future": ("Ср, 07 дек 2044 10:00:00", None),
    }
    items = "".join(
        f"<item><title>{name}</title><link>/{index}</link><pubDate>{text}</pubDate></item>"
        for index, (name, (text, _)) in enumerate(dates.items())
    )
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(body, feed_url=FEED_URL, now=datetime(2026, 12, 8, tzinfo=UTC))
    assert {item.title: item.published_at for item in parsed.items} == {
        name: expected for name, (_, expected) in dates.items()
    }


def test_no_date_however_odd_fails_its_feed() -> None:
    """A date is read or left out, never an error: the words of a date in every order and
    with odd digits ("²", Arabic-Indic), in RSS and JSON Feed alike (one such date made
    the whole feed fail)."""
    import itertools

    pool = ["10", "2026", "Dec", "²", "٢٠٢٦", "дек", "0", "99999", "10:00:00"]
    texts = [" ".join(words) for size in (2, 3, 4) for words in itertools.permutations(pool, size)]
    texts += [text + zone for text in texts[:300] for zone in (" GMT", " +0300", " MSK", " GMT+99")]
    items = "".join(
        f"<item><link>/{n}</link><pubDate>{text}</pubDate></item>" for n, text in enumerate(texts)
    )
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(body, feed_url=FEED_URL, now=NOW, max_items=len(texts))
    assert len(parsed.items) == len(texts)
    json_items = [
        {"id": str(n), "url": f"https://news.example/{n}", "date_published": t} for n, t in enumerate(texts)
    ]
    assert len(
        parse_feed(json_feed(json_items), feed_url=FEED_URL, now=NOW, max_items=len(texts)).items
    ) == len(texts)


def test_json_feed_rfc822_dates_are_read_as_a_feed_s_are() -> None:
    """An RFC 822 date where RFC 3339 was due: email.utils took an offset with a colon for
    no zone (and the time for UTC), and knew no Russian month."""
    body = json_feed(
        [
            {
                "id": "1",
                "url": "https://news.example/1",
                "date_published": "Thu, 19 Nov 2026 10:00:00 +03:00",
            },
            {"id": "2", "url": "https://news.example/2", "date_published": "Чт, 19 ноя 2026 11:00:00 +0300"},
        ]
    )
    assert [item.published_at for item in parse_feed(body, feed_url=FEED_URL, now=NOW).items] == [
        datetime(2026, 11, 19, 7, 0, tzinfo=UTC),
        datetime(2026, 11, 19, 8, 0, tzinfo=UTC),
    ]


def test_a_link_with_spaces_is_percent_encoded_as_a_browser_sends_it() -> None:
    """A link with a literal space was refused as unusable. Only spaces, and only after the
    host, are encoded: a host with a space, or another white space character, is still
    refused where the item is screened."""
    links = [
        "/news/Putin Xi talks.html",
        "http://news.example/search?q=Putin Xi#part two",
        "http://news example/a b",
        "http://news.example/a\u00a0b",
    ]
    items = "".join(f"<item><title>t{i}</title><link>{link}</link></item>" for i, link in enumerate(links))
    body = f'<rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()
    assert [item.url for item in parse_feed(body, feed_url=FEED_URL, now=NOW).items] == [
        "http://news.example/news/Putin%20Xi%20talks.html",
        "http://news.example/search?q=Putin%20Xi#part%20two",
        "http://news example/a b",
        "http://news.example/a\u00a0b",
    ]


def test_a_feedburner_original_link_is_the_item_s_link() -> None:
    """A feed FeedBurner serves links every item to a redirect of its own; the page's
    address is in feedburner:origLink. One that is no absolute http(s) URL is not taken."""
    namespace = 'xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"'
    rss = (
        f'<rss version="2.0" {namespace}><channel><title>x</title>'
        "<item><title>a</title><link>http://feedproxy.google.com/~r/wire/~3/Xk1/</link>"
        "<feedburner:origLink>https://news.example/2026/11/summit</feedburner:origLink></item>"
        "<item><title>b</title><link>http://feedproxy.google.com/~r/wire/~3/Yz2/</link>"
        "<feedburner:origLink>javascript:alert(1)</feedburner:origLink></item>"
        "<item><title>c</title><link>http://feedproxy.google.com/~r/wire/~3/Zq3/</link>"
        "<feedburner:origLink>/relative</feedburner:origLink></item>"
        "</channel></rss>"
    ).encode()
    atom = (
        f'<feed xmlns="http://www.w3.org/2005/Atom" {namespace}><title>x</title>'
        '<entry><id>urn:1</id><title>d</title><link href="http://feeds.feedburner.com/~r/wire/~3/Ab4/"/>'
        "<feedburner:origLink>https://news.example/2026/11/pipeline</feedburner:origLink></entry></feed>"
    ).encode()
    assert [item.url for item in parse_feed(rss, feed_url=FEED_URL, now=NOW).items] == [
        "https://news.example/2026/11/summit",
        "http://feedproxy.google.com/~r/wire/~3/Yz2/",
        "http://feedproxy.google.com/~r/wire/~3/Zq3/",
    ]
    assert [item.url for item in parse_feed(atom, feed_url=FEED_URL, now=NOW).items] == [
        "https://news.example/2026/11/pipeline"
    ]
