"""Property-based tests (hypothesis): URL canonicalisation, text normalisation and the
feed-parsing wrapper, on generated input rather than hand-picked examples."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pipeline.dedup import TRACKING_PARAMS, TRACKING_PREFIXES, canonical_url, content_hash, normalise_text
from pipeline.feeds import FeedParseError, ParsedFeed, parse_feed
from pipeline.ingest import _tidy_text, clean_string

PROPERTY = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 20, tzinfo=UTC)

# URLs ------------------------------------------------------------------------------------

UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;="
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.lists(label, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["пример.рф", "新闻.中国", "Example.COM", "127.0.0.1", "[2001:db8::1]"]),
)
escaped_byte = st.integers(0, 255).map(lambda b: f"%{b:02x}" if b % 2 else f"%{b:02X}")
path_char = st.one_of(
    st.sampled_from(UNRESERVED + SUB_DELIMS + ":@"),
    st.characters(
        min_codepoint=0xA0, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")
    ),
    escaped_byte,
)
segment = st.lists(path_char, max_size=12).map("".join)
paths = st.lists(segment, max_size=5).map(lambda parts: "/" + "/".join(parts))
query_word = st.text(alphabet=UNRESERVED + "%", min_size=1, max_size=8).filter(
    lambda word: not re.search(r"%(?![0-9A-Fa-f]{2})", word)
)
queries = st.lists(st.tuples(query_word, query_word), max_size=4).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = draw(hosts)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    netloc = host if port is None else f"{host}:{port}"
    query = draw(queries)
    fragment = draw(st.one_of(st.just(""), st.just("#top"), segment.map(lambda s: "#!" + s)))
    return f"{scheme}://{netloc}{draw(paths)}{'?' + query if query else ''}{fragment}"


@PROPERTY
@given(http_urls())
@example("http://example.com/index.html/index.htm")
@example("http://[2001:db8::1]:8080/a")
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once


@PROPERTY
@given(st.sampled_from(["http://", "https://", "HTTP://"]), st.text(max_size=60))
def test_canonical_url_never_raises_anything_but_value_error(prefix: str, rest: str) -> None:
    try:
        result = canonical_url(prefix + rest)
    except ValueError:
        return  # e.g. a port out of range: the item is refused with this message
    assert isinstance(result, str)


@PROPERTY
@given(http_urls())
def test_well_formed_urls_always_canonicalise(url: str) -> None:
    assert canonical_url(url).startswith("http://")


@PROPERTY
@given(hosts, st.lists(segment, min_size=1, max_size=4), st.data())
def test_path_case_is_never_merged(host: str, segments: list[str], data: st.DataObject) -> None:
    path = "/" + "/".join(segments)
    letters = [
        i for i, char in enumerate(path) if char.isascii() and char.isalpha() and not _in_escape(path, i)
    ]
    assume(letters)
    i = data.draw(st.sampled_from(letters))
    other = path[:i] + path[i].swapcase() + path[i + 1 :]
    assert canonical_url(f"http://{host}{path}") != canonical_url(f"http://{host}{other}")


@PROPERTY
@given(hosts, segment, segment)
def test_an_encoded_slash_is_not_a_slash(host: str, left: str, right: str) -> None:
    encoded, raw = f"http://{host}/{left}%2F{right}x", f"http://{host}/{left}/{right}x"
    assert canonical_url(encoded) != canonical_url(raw)


@PROPERTY
@given(hosts, segment, st.sampled_from(UNRESERVED), segment)
def test_an_encoded_unreserved_character_is_that_character(
    host: str, left: str, char: str, right: str
) -> None:
    encoded = f"http://{host}/{left}%{ord(char):02X}{right}x"
    assert canonical_url(encoded) == canonical_url(f"http://{host}/{left}{char}{right}x")


@PROPERTY
@given(hosts, st.integers(0, 255), st.integers(0, 255))
def test_distinct_encoded_bytes_stay_distinct(host: str, first: int, second: int) -> None:
    """Legacy-encoded slugs (windows-1251, GBK) must not collapse into one another."""
    assume(first != second)
    one, two = (f"http://{host}/a%{byte:02X}b" for byte in (first, second))
    assert canonical_url(one) != canonical_url(two)


@PROPERTY
@given(hosts, query_word, query_word, query_word)
def test_distinct_query_values_stay_distinct(host: str, key: str, value: str, other: str) -> None:
    assume(key.lower() not in TRACKING_PARAMS and not key.lower().startswith(TRACKING_PREFIXES))
    assume(canonical_url(f"http://x/?v={value}") != canonical_url(f"http://x/?v={other}"))
    assert canonical_url(f"http://{host}/a?{key}={value}") != canonical_url(f"http://{host}/a?{key}={other}")


def _in_escape(text: str, index: int) -> bool:
    return any(text[j] == "%" for j in range(max(0, index - 2), index))


# Text normalisation ----------------------------------------------------------------------

# Everything a hostile JSON line or page can carry, lone surrogates and NUL included.
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
STORABLE_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@PROPERTY
@given(any_text)
@example("a\x00b\ud800c\udfffd\r\n\x7f")
def test_clean_string_is_idempotent_and_storable(text: str) -> None:
    cleaned = clean_string(text)
    assert clean_string(cleaned) == cleaned
    assert not STORABLE_FORBIDDEN.search(cleaned)
    cleaned.encode("utf-8")  # PostgreSQL and every driver accept it


@PROPERTY
@given(any_text)
@example("  a \t\u00a0 b \r\r\n\n\n\n c  ")
def test_tidy_text_is_idempotent_and_storable(text: str) -> None:
    tidy = _tidy_text(clean_string(text))
    assert _tidy_text(clean_string(tidy)) == tidy
    assert not STORABLE_FORBIDDEN.search(tidy)
    assert "\n\n\n" not in tidy and tidy == tidy.strip()


@PROPERTY
@given(any_text)
@example("\u0130stanbul \ufb03 \u1e9e \u2460")  # casefold and compatibility forms meeting
def test_normalised_text_is_idempotent_and_hashes(text: str) -> None:
    cleaned = clean_string(text)
    folded = normalise_text(cleaned)
    assert normalise_text(folded) == folded
    assert content_hash(cleaned) == content_hash(folded), "hashing the folded form changes nothing"


# The feed-parsing wrapper ----------------------------------------------------------------


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.builds(
            lambda head, body, tail: (head + body + tail).encode("utf-8", "surrogatepass"),
            st.sampled_from(['<?xml version="1.0"?><rss version="2.0"><channel>', "<feed>", "<rdf:RDF>", ""]),
            st.text(max_size=300),
            st.sampled_from(["</channel></rss>", "</feed>", "", "<item><link>"]),
        ),
    )
)
def test_any_bytes_parse_or_raise_feed_parse_error(body: bytes) -> None:
    try:
        parsed = parse_feed(body, feed_url="http://news.example/feed", now=NOW)
    except FeedParseError:
        return
    assert isinstance(parsed, ParsedFeed)
    for item in parsed.items:
        assert item.title is None or not STORABLE_FORBIDDEN.search(item.title)


def _repaired_by_feedparser(title: str) -> bool:
    """feedparser undoes a common mojibake: text that reads as UTF-8 bytes shown as Latin-1
    ("CafÃ©" becomes "Café"). A title that happens to look like that is not round-tripped."""
    try:
        return title.encode("iso-8859-1").decode("utf-8") != title
    except UnicodeError:
        return False


xml_text = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs", "Cc", "Co", "Cn"), exclude_characters="\ufffe\uffff\u2028\u2029\x85"
    ),
    min_size=1,
    max_size=60,
).filter(lambda t: t.strip() and not _repaired_by_feedparser(t))
links = st.builds(
    lambda host, path: f"https://{host}/{path}",
    st.lists(label, min_size=1, max_size=3).map(lambda parts: ".".join(parts) + ".example"),
    st.text(alphabet=string.ascii_letters + string.digits + "-_/", max_size=20),
)


def rss(items: list[tuple[str, str]]) -> bytes:
    body = "".join(f"<item><title>{escape(t)}</title><link>{escape(u)}</link></item>" for t, u in items)
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def atom(items: list[tuple[str, str]]) -> bytes:
    body = "".join(
        f'<entry><title type="text">{escape(t)}</title><id>urn:{n}</id>'
        f'<link rel="alternate" href="{escape(u, {chr(34): "&quot;"})}"/></entry>'
        for n, (t, u) in enumerate(items)
    )
    return f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{body}</feed>'.encode()


@PROPERTY
@given(st.lists(st.tuples(xml_text, links), min_size=1, max_size=8), st.sampled_from([rss, atom]))
def test_generated_feeds_round_trip(items: list[tuple[str, str]], render: object) -> None:
    assert callable(render)
    parsed = parse_feed(render(items), feed_url="http://news.example/feed", now=NOW)
    assert [(item.title, item.url) for item in parsed.items] == [(" ".join(t.split()), u) for t, u in items]
