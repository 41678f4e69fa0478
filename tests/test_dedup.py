from __future__ import annotations

import pytest

from pipeline.dedup import canonical_url, content_hash, normalise_text


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTPS://Example.COM/news/1", "http://example.com/news/1"),
        ("http://example.com/news/1/", "http://example.com/news/1"),
        ("http://example.com/news/1#comments", "http://example.com/news/1"),
        ("http://example.com/news/1?utm_source=rss&utm_medium=feed", "http://example.com/news/1"),
        ("http://example.com/a?id=2&fbclid=xyz&b=1", "http://example.com/a?b=1&id=2"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "http://example.com/a"),
        ("http://example.com//a//b", "http://example.com/a/b"),
        ("http://example.com/a/index.html", "http://example.com/a"),
        ("http://пример.рф/статья", "http://xn--e1afmkfd.xn--p1ai/%D1%81%D1%82%D0%B0%D1%82%D1%8C%D1%8F"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/news/./1", "http://example.com/news/1"),
        ("http://example.com/news/x/../1", "http://example.com/news/1"),
        ("http://example.com/news/%2E/1", "http://example.com/news/1"),
        ("http://example.com/../../news/1", "http://example.com/news/1"),
        ("http://example.com/news/1/.", "http://example.com/news/1"),
        ("http://example.com/news/2/..", "http://example.com/news"),
        ("http://Straße.de/a", "http://xn--strae-oqa.de/a"),
    ],
)
def test_same_page_same_canonical_url(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/news/1", "http://example.com/news/2"),
        ("http://example.com/a?id=1", "http://example.com/a?id=2"),
        ("http://example.com/a", "http://www.example.com/a"),
        ("http://example.com:8080/a", "http://example.com/a"),
    ],
)
def test_different_pages_stay_different(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


def test_content_hash_ignores_layout_not_words() -> None:
    text = "Putin and Xi met in Beijing.\n\nThey signed 20 agreements."
    assert content_hash(text) == content_hash("  putin and XI met in Beijing!  They signed 20 agreements ")
    assert content_hash(text) != content_hash("Putin and Xi met in Moscow. They signed 20 agreements.")


def test_normalise_text_handles_cjk_and_compatibility_forms() -> None:
    assert normalise_text("习近平，普京！") == "习近平 普京"
    assert normalise_text("ＡＢＣ　１２３") == "abc 123"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(
            "Стороны договорились ещё раз встретиться.", "Стороны договорились еще раз встретиться.", id="yo"
        ),
        pytest.param("Пу́тин прибыл в Пеки́н.", "Путин прибыл в Пекин.", id="stress"),
        pytest.param(
            "Gas\u00adlie\u00adfe\u00adrun\u00adgen durch Sibirien",
            "Gaslieferungen durch Sibirien",
            id="soft-hyphen",
        ),
        pytest.param("Putin met Xi in Bei\u200bjing.", "Putin met Xi in Beijing.", id="zero-width-space"),
        pytest.param(
            "Pu\u2060tin et Xi à Pékin, déclaration commune",
            "Putin et Xi a Pekin, declaration commune",
            id="accents",
        ),
        pytest.param("Tổng thống Nga đã hội đàm", "Tong thong Nga da hoi dam", id="vietnamese-ascii"),
        pytest.param("普京与習近平通電話", "普京与习近平通电话", id="traditional"),
        pytest.param("بحث بوتين وشي", "بحث بوتین وشی", id="arabic-yeh"),
    ],
)
def test_content_hash_folds_the_spelling_copies_differ_in(a: str, b: str) -> None:
    """A short brief gets no near-duplicate signature: its copy is found by the hash alone,
    so the hash folds what the near-duplicate shingles fold (invisible characters, ё, the
    Arabic letter variants, Traditional characters) and the accents a copy may lose."""
    assert content_hash(a) == content_hash(b)
    assert normalise_text(normalise_text(a)) == normalise_text(a)


def test_content_hash_keeps_letters_of_their_own() -> None:
    """й, ї and ў are letters, not accented и, і and у: a word written with them stays itself."""
    assert content_hash("мой край") != content_hash("мои край")
    assert content_hash("їжак") != content_hash("іжак")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Legacy-encoded slugs must not collapse into replacement characters.
        ("http://ru.example/%EF%F0%E8%E2%E5%F2.html", "http://ru.example/%E0%E1%E2%E3%E4%E5.html"),
        ("http://ru.example/a%2Fb", "http://ru.example/a/b"),
        ("http://cn.example/list?source=123", "http://cn.example/list?source=456"),
        ("http://app.example/#!/story/1", "http://app.example/#!/story/2"),
        ("http://example.com/news/1/../2", "http://example.com/news/1"),
        ("http://example.com/news/..1", "http://example.com/news/1"),
        ("http://example.com/a%2F..%2Fb", "http://example.com/b"),
        # Other registrants' domains in IDNA 2008 (Python's IDNA 2003 codec merged them).
        ("http://straße.de/a", "http://strasse.de/a"),
        ("http://ευρώπης.eu/a", "http://ευρώπησ.eu/a"),
    ],
)
def test_distinct_urls_are_not_merged(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


def test_percent_encoding_is_normalised_not_decoded() -> None:
    assert canonical_url("http://x.example/%7euser/%e4%b8%ad") == "http://x.example/~user/%E4%B8%AD"
    assert canonical_url("http://x.example/中") == canonical_url("http://x.example/%E4%B8%AD")


def test_unparseable_url_raises_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        canonical_url("http://x.example:99999/a")
