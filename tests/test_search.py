"""Full-text search: the analyser, the query language, snippets, and the index on SQLite and PostgreSQL.

The labelled fixtures in tests/fixtures/search/ (articles and queries with the articles
each must find, written for these tests) run on both databases: the same query must
find the same articles on both.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, bindparam, text
from sqlalchemy.orm import Session

from pipeline import search
from pipeline.browse import list_articles
from pipeline.db import fulltext, repo
from pipeline.db.engine import alembic_config, make_engine, session_factory, upgrade_schema
from pipeline.db.schema import Article, UtcDateTime
from pipeline.errors import DatabaseError, FilterError
from pipeline.ingest import import_lines
from pipeline.settings import Settings
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "search"


def fixture_articles() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / "articles.jsonl").read_text("utf-8").splitlines()]


def fixture_queries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / "queries.jsonl").read_text("utf-8").splitlines()]


def import_fixtures(session: Session, settings: Settings) -> dict[int, str]:
    """Store the fixture articles; returns fixture id by database id."""
    lines = [
        json.dumps(
            {
                "id": a["id"],
                "url": f"https://news.example/{a['id']}",
                "title": a["title"],
                "text": a["text"],
                "lang": a["lang"],
                "published": f"2026-11-{1 + i % 28:02d}T10:00:00+00:00",
            },
            ensure_ascii=False,
        )
        for i, a in enumerate(fixture_articles())
    ]
    results = list(import_lines(session, settings, lines, source="search-fixtures"))
    assert [r.result.status for r in results] == ["new"] * len(lines)
    return {r.result.article_id: r.input_id for r in results if r.result.article_id is not None}


def found(session: Session, names: dict[int, str], query: str, **filters: Any) -> list[str]:
    wanted = repo.ArticleFilter(text=query, include_seeds=False, limit=100, **filters)
    return [names.get(f.article.id, str(f.article.id)) for f in repo.find_articles(session, wanted)]


# The analyser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("pipelines", "the pipeline"),
        ("negotiations", "negotiating"),
        ("Сибирь", "Сибири"),
        ("ПУТИН", "путин"),
        ("Путина", "путину"),
        ("Ёлки", "елки"),
        ("İSTANBUL", "istanbul"),
        ("STRASSE", "straße"),
        ("ＧＡＳ", "gas"),
        ("Russia's", "russia"),
        # The Russian stemmer takes a bare noun's last letters for an ending: stemmed again.
        ("Китай", "Китая"),
        ("Китаю", "Китая"),
        ("Газпром", "Газпрома"),
        ("Газпромом", "Газпрому"),
        ("Лавров", "Лаврова"),
        ("Иран", "Ирана"),
        ("Байден", "Байдена"),
        ("саммит", "саммита"),
    ],
)
def test_inflected_and_folded_forms_share_terms(one: str, other: str) -> None:
    assert search.terms(one)[-1] == search.terms(other)[-1]


def test_different_words_keep_different_terms() -> None:
    assert search.terms("pipeline")[0] != search.terms("pipe")[0]
    assert search.terms("Сибирь")[0] != search.terms("Сирия")[0]
    # Stemmed again only down to three letters: exercises are not "to teach".
    assert search.terms("учения")[0] != search.terms("учить")[0]
    assert search.terms("военные")[0] != search.terms("во")[0]


@pytest.mark.parametrize(
    ("word", "stop_word"),
    [("ИИ", "и"), ("имя", "им"), ("тему", "тем"), ("ins", "in"), ("ands", "and"), ("της", "τ")],
)
def test_no_word_is_stemmed_into_a_stop_word_or_a_single_letter(word: str, stop_word: str) -> None:
    # Kept whole, in the index and in a query alike.
    assert search.terms(word) == [word.casefold()]
    assert search.terms(stop_word) == [stop_word]
    assert search.parse_query(word).fts5() == f'"{word.casefold()}"'


def test_stop_words_are_indexed_as_they_are() -> None:
    assert search.terms("собой событие") == ["собой", "соб"]
    assert search.terms("being does") == ["being", "does"]


def test_chinese_runs_are_indexed_as_bigrams_with_the_last_character() -> None:
    assert search.terms("能源领域合作") == ["能源", "源领", "领域", "域合", "合作", "作"]
    assert search.terms("中 俄") == ["中", "俄"]


def test_token_offsets_point_at_the_original_words() -> None:
    text = "The PIPELINES of Сибири и 能源合作."
    assert [text[t.start : t.end] for t in search.tokens(text)] == [
        "The",
        "PIPELINES",
        "of",
        "Сибири",
        "и",
        "能源",
        "源合",
        "合作",
        "作",
    ]


def test_index_terms_are_the_tokens_a_query_and_a_snippet_see() -> None:
    for article in fixture_articles():
        for part in (article["title"] or "", article["text"]):
            assert search.terms(part) == [token.term for token in search.tokens(part)]


def test_query_syntax() -> None:
    query = search.parse_query('"power of siberia" gas OR oil -ukraine')
    assert query.fts5() == '("power of siberia" AND ("gas" OR "oil")) NOT "ukrain"'
    assert query.tsquery() == "('power' <-> 'of' <-> 'siberia') & ('gas' | 'oil') & !'ukrain'"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Путин AND Си", "Путин Си"),
        ("Путин NOT Харбин", "Путин -Харбин"),
        ('gas AND NOT "joint drill"', 'gas -"joint drill"'),
        ("NOT oil gas AND", "gas -oil"),
        ("gas OR oil NOT pipeline", "gas OR oil -pipeline"),
    ],
)
def test_and_and_not_in_capitals_are_operators(typed: str, meant: str) -> None:
    assert search.parse_query(typed).fts5() == search.parse_query(meant).fts5()
    assert search.parse_query(typed).tsquery() == search.parse_query(meant).tsquery()
    # In lower case they are words.
    assert search.parse_query("gas and not oil").fts5() == '"gas" AND "and" AND "not" AND "oil"'


def test_unquoted_chinese_is_split_into_words_that_must_all_occur() -> None:
    query = search.parse_query("能源合作")
    assert query.fts5() == '("能源" AND "合作")'
    # A quoted run is one substring; its last character may start the next bigram.
    assert search.parse_query('"天然气"').tsquery() == "('天然' <-> '然气' <-> '气':*)"
    # Characters the segmenter leaves alone side by side stay together (an abbreviation).
    assert search.parse_query("中俄").fts5() == '"中俄"'


@pytest.mark.parametrize(
    "hostile",
    [
        'a" OR "b',
        "NEAR(a b)",
        "title:gas",
        "^gas*",
        "gas AND NOT oil",
        "'; DROP TABLE articles; --",
        "gas\\' oil\\\\",
        "a\x00b",
        "(((gas",
        '"""gas',
    ],
)
def test_hostile_queries_only_quote_terms(hostile: str) -> None:
    query = search.parse_query(hostile)
    # Outside quoted strings only the operators this module writes appear.
    outside = "".join(query.fts5().split('"')[0::2])
    assert set(outside) <= set("()*ANDORT ")
    for phrase in [p for group in query.groups for unit in group for p in unit]:
        assert all('"' not in term and "'" not in term and "\x00" not in term for term in phrase.terms)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no words"),
        ("*** ((( ", "no words"),
        ("-gas", "only excludes"),
        ("x" * 10_000, "longer than"),
        (" ".join(f"w{i}" for i in range(40)), "more than"),
    ],
)
def test_queries_that_cannot_run_say_why(query: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        search.parse_query(query)


def test_the_snippet_window_is_the_one_with_the_most_distinct_terms_then_matches() -> None:
    def by_definition(spans: list[tuple[int, int, str]], width: int) -> int:
        best_start, best_score = spans[0][0], -1
        for index, (start, _, _) in enumerate(spans):
            inside = [term for _, end, term in spans[index:] if end <= start + width]
            score = len(set(inside)) * 100 + len(inside)
            if score > best_score:
                best_start, best_score = start, score
        return best_start

    rng = random.Random(4)
    for _ in range(2_000):
        spans, at = [], 0
        for _ in range(rng.randint(1, 40)):
            at += rng.randint(0, 60)
            length = rng.choice([2, 5, 9, 300])  # (a merged run of Chinese can outgrow the window)
            spans.append((at, at + length, rng.choice("abcd")))
            at += length
        width = rng.choice([20, 60, 240])
        assert search.best_window_start(spans, width) == by_definition(spans, width)


def test_snippet_marks_the_original_words_around_the_best_passage() -> None:
    body = "Filler words here. " * 30 + "The PIPELINE to China, Сибири. " + "More filler. " * 30
    snippet = search.snippet(body, search.parse_query("pipelines Сибирь"))
    assert [part for part, hit in snippet.parts if hit] == ["PIPELINE", "Сибири"]
    assert snippet.text.startswith("…") and snippet.text.endswith("…")
    assert len(snippet.text) < 300
    start, end = snippet.ranges()[0]
    assert snippet.text[start:end] == "PIPELINE"


@pytest.mark.parametrize(
    "characters",
    [
        ["\U0001f1f7\U0001f1fa", "\U0001f1e8\U0001f1f3"],  # flags of Russia and China: two letters each
        ["\u0e17\u0e34"],  # Thai: a consonant and its vowel sign
        ["\u0995\u09cd\u09b7"],  # Bengali: a conjunct, joined by a virama
        ["\U0001f44d\U0001f3fd"],  # a thumbs-up and its skin tone
    ],
)
def test_a_snippet_without_spaces_nearby_is_cut_between_characters(characters: list[str]) -> None:
    """Where no space is near, the passage is cut at a character's start, never inside what
    reads as one character (a flag's two letters, a vowel sign, a conjunct, a skin tone)."""
    query = search.parse_query("tailword")
    run = "".join(characters)
    whole = re.compile("(?:" + "|".join(map(re.escape, characters)) + ")+")
    for shift in range(8):  # the cut falls at every place within a character
        text = "x" * shift + run * 150 + " tailword " + run * 150 + "y" * shift
        shown = search.snippet(text, query).text
        before, after = shown.removeprefix("…").removesuffix("…").split(" tailword ")
        assert whole.fullmatch(before) and whole.fullmatch(after), (
            shift,
            ascii(shown[:6]),
            ascii(shown[-6:]),
        )


def test_a_phrase_is_marked_where_it_occurs_whole() -> None:
    """Each word of "power of siberia" was marked wherever it stood ("part of the talks",
    "western Siberia"), and the snippet could show a passage of scattered words."""
    body = (
        "The talks were part of a long day of meetings in western Siberia and Beijing. " * 4
        + "Gazprom said Power of Siberia 2 would carry 50 bcm of gas a year. "
        + "Analysts of the power sector doubt it. " * 4
    )
    marked = [
        part for part, hit in search.snippet(body, search.parse_query('"power of siberia"')).parts if hit
    ]
    assert marked == ["Power of Siberia"]
    both = search.highlight(body, search.parse_query('"power of siberia" gas'))
    assert [part for part, hit in both.parts if hit] == ["Power of Siberia", "gas"]
    hyphenated = search.highlight(
        "Power-of-Siberia talks; the power of Siberia.", search.parse_query("power-of-siberia")
    )
    assert [part for part, hit in hyphenated.parts if hit] == ["Power-of-Siberia", "power of Siberia"]
    # A single word of the query is still marked wherever it is.
    alone = search.highlight(body, search.parse_query("siberia"))
    assert [part for part, hit in alone.parts if hit] == ["Siberia"] * 5


def test_snippet_of_chinese_marks_the_matched_characters() -> None:
    snippet = search.snippet("双方将深化能源领域合作。", search.parse_query("能源合作"))
    assert [part for part, hit in snippet.parts if hit] == ["能源", "合作"]


@pytest.mark.parametrize(
    ("query", "marked"),
    [
        # One character marks that character, not the bigram it starts.
        ("俄", ["俄", "俄"]),
        # A phrase marks where it occurs whole: not the character after it, nor its last
        # character elsewhere (气 of 气能源).
        ('"天然气"', ["天然气", "天然气"]),
        ("天然气", ["天然气", "天然气"]),
        ("合作", ["合作", "合作"]),
    ],
)
def test_chinese_matches_are_marked_exactly(query: str, marked: list[str]) -> None:
    text = "中俄天然气和石油合作。俄罗斯总统。天然气集团与气能源合作伙伴。"
    assert [part for part, hit in search.highlight(text, search.parse_query(query)).parts if hit] == marked


def test_index_streams_are_capped_alike_for_both_databases() -> None:
    indexed = search.index_text("title " * 400, "word " * 20_000)
    assert len(indexed.title) == search.MAX_TITLE_TOKENS
    assert len(indexed.title) + 1 + len(indexed.body) == search.MAX_POSITION
    literal = search.index_text("Gas deal", "gas it's").tsvector_literal()
    assert literal == "'gas':1A,4 'deal':2A 'it':5"


# The index in the database -------------------------------------------------------------------


@pytest.fixture
def indexed(session: Session, settings: Settings) -> dict[int, str]:
    names = import_fixtures(session, settings)
    session.commit()
    return names


@pytest.mark.parametrize("case", fixture_queries(), ids=lambda case: case["q"])
def test_labelled_queries_find_exactly_their_articles(
    session: Session, indexed: dict[int, str], case: dict[str, Any]
) -> None:
    assert sorted(found(session, indexed, case["q"])) == sorted(case["expected"])


def test_pages_of_tied_matches_list_each_once_latest_stored_first(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More tied matches than the ranked cut keeps: the cut must take them in the list's
    order, or pages repeat some and never reach others (the top changed with the limit)."""
    monkeypatch.setattr(repo, "RANKED_FIRST", 8)
    rng = random.Random(7)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    lines = []
    for i in range(30):
        body = [rng.choice(words) for _ in range(60)]
        body[30] = "zzqtie"
        lines.append(
            json.dumps(
                {
                    "id": f"tie-{i}",
                    "url": f"https://ties.example/{i}",
                    "title": f"Item {rng.choice(words)}",
                    "text": " ".join(body) + ".",
                    "lang": "en",
                    # Stored newest first, as a back-fill export often is.
                    "published": f"2026-10-{30 - i:02d}T10:00:00+00:00",
                }
            )
        )
    results = list(import_lines(session, settings, lines, source="ties"))
    assert [r.result.status for r in results] == ["new"] * 30
    # Equal scores: the latest stored first, on every page and whatever its size.
    newest_first = [r.input_id for r in reversed(results)]
    names = {r.result.article_id: r.input_id for r in results}

    def page(limit: int, offset: int = 0) -> list[str]:
        wanted = repo.ArticleFilter(text="zzqtie", include_seeds=False, limit=limit, offset=offset)
        return [names[f.article.id] for f in repo.find_articles(session, wanted)]

    assert page(30) == newest_first
    assert [page(limit)[0] for limit in (1, 2, 5)] == [newest_first[0]] * 3
    paged = [name for offset in range(0, 30, 4) for name in page(4, offset)]
    assert paged == newest_first


def test_ranking_puts_title_matches_first(session: Session, indexed: dict[int, str]) -> None:
    # "pipeline" is in the title of one article and only the text of the other.
    assert found(session, indexed, "pipelines") == ["en-pipeline", "en-hockey"]


def test_search_combines_with_the_filters(session: Session, indexed: dict[int, str]) -> None:
    from datetime import UTC, datetime

    since = datetime(2026, 11, 5, tzinfo=UTC)
    assert found(session, indexed, "pipelines", since=since) == ["en-hockey"]
    assert found(session, indexed, "pipelines", until=since) == ["en-pipeline"]
    in_ru = set(found(session, indexed, "путин OR putin", lang="ru"))
    assert in_ru == {"ru-putin"}
    assert found(session, indexed, "pipelines", sort="newest") == ["en-hockey", "en-pipeline"]


def test_hostile_queries_reach_the_database_safely(session: Session, indexed: dict[int, str]) -> None:
    for hostile in ['a" OR "b', "NEAR(gas oil)", "gas:*", "'; DROP TABLE articles; --", "\\", "a\x00b", '"']:
        with contextlib.suppress(FilterError):
            found(session, indexed, hostile)
    # Quotes only delimit phrases: this is pipeline OR hockey.
    assert sorted(found(session, indexed, 'pipeline" OR "hockey')) == ["en-hockey", "en-pipeline"]


def test_the_index_follows_new_versions(
    session: Session, settings: Settings, indexed: dict[int, str]
) -> None:
    line = json.dumps(
        {
            "url": "https://news.example/en-drills",
            "title": "Navies end their exercise",
            "text": "The frigates returned to port after a week of manoeuvres in the Sea of Japan.",
            "lang": "en",
        }
    )
    [outcome] = import_lines(session, settings, [line], source="update")
    assert outcome.result.status == "duplicate"
    assert found(session, indexed, "frigates") == ["en-drills"]
    assert found(session, indexed, "warships") == []


def test_copies_are_found_through_their_original(session: Session, settings: Settings) -> None:
    names = import_fixtures(session, settings)
    [copy] = import_lines(
        session,
        settings,
        [
            json.dumps(
                {
                    "url": "https://mirror.example/drills",
                    "title": "Russian and Chinese warships hold joint drills",
                    "text": fixture_articles()[1]["text"],
                }
            )
        ],
        source="copy",
    )
    assert copy.result.status == "duplicate"
    names[copy.result.article_id] = "copy"
    assert found(session, names, "warships") == ["en-drills"]
    assert sorted(found(session, names, "warships", include_duplicates=True)) == ["copy", "en-drills"]


def test_the_same_queries_find_the_same_articles_on_both_databases(
    sqlite_url: str, postgres_url: str, tmp_path: Path
) -> None:
    from tests.conftest import make_settings

    results = []
    for url in (sqlite_url, postgres_url):
        settings = make_settings(url)
        engine = make_engine(url)
        upgrade_schema(engine)
        with session_factory(engine)() as session:
            names = import_fixtures(session, settings)
            results.append(
                {case["q"]: sorted(found(session, names, case["q"])) for case in fixture_queries()}
            )
        engine.dispose()
    assert results[0] == results[1]


def test_migration_back_fills_the_index(db_url: str, settings: Settings) -> None:
    from alembic import command

    engine = make_engine(db_url)
    try:
        command.upgrade(alembic_config(engine), "0005")
        # Raw SQL: the ORM model describes the newest schema, not the one at 0005.
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO articles (id, title, text, lang, content_hash, is_seed, word_count, first_seen_at)"
                    " VALUES (7, 'Old article', 'Pipelines stored before the index existed.', 'en', :hash, :seed, 5, :seen)"
                ).bindparams(bindparam("seen", type_=UtcDateTime()), bindparam("seed", type_=Boolean())),
                {"hash": "0" * 64, "seed": False, "seen": datetime.now(UTC)},
            )
        upgrade_schema(engine)
        with session_factory(engine)() as session:
            assert [
                f.article.id for f in repo.find_articles(session, repo.ArticleFilter(text="pipeline"))
            ] == [7]
            # A changed analyser version makes init rebuild it; until then a search is
            # refused (its terms are not the index's), a list without one is not.
            session.execute(text("UPDATE pipeline_state SET value = 'old' WHERE key = 'search_scheme'"))
            with pytest.raises(DatabaseError, match=r"made by another version of the analyser \(old; .*init"):
                repo.find_articles(session, repo.ArticleFilter(text="pipeline"))
            assert [f.article.id for f in repo.find_articles(session, repo.ArticleFilter())] == [7]
            assert fulltext.ensure_current(session) == 1
            assert [
                f.article.id for f in repo.find_articles(session, repo.ArticleFilter(text="pipeline"))
            ] == [7]
            assert fulltext.ensure_current(session) is None
            session.execute(text("DELETE FROM articles WHERE id = 7"))
            assert repo.find_articles(session, repo.ArticleFilter(text="pipeline")) == []
    finally:
        engine.dispose()


def test_russian_names_find_their_inflected_forms_and_ai_is_not_and(
    session: Session, settings: Settings
) -> None:
    lines = [
        {"id": "ru-gas", "title": "Переговоры России и Китая", "text": "Лавров обсудил поставки Газпрома."},
        {"id": "ru-ai", "title": "Нейросети", "text": "Китай и Россия развивают ИИ."},
    ]
    names = {
        r.result.article_id: r.input_id
        for r in import_lines(
            session,
            settings,
            [
                json.dumps({**line, "url": f"https://news.example/{line['id']}", "lang": "ru"})
                for line in lines
            ],
            source="ru",
        )
    }
    session.commit()
    assert sorted(found(session, names, "Китай")) == ["ru-ai", "ru-gas"]
    assert found(session, names, "Газпром Лаврова") == ["ru-gas"]
    assert found(session, names, "ИИ") == ["ru-ai"]
    assert found(session, names, "Газпром AND Лавров") == ["ru-gas"]
    assert found(session, names, "Китай NOT ИИ") == ["ru-gas"]


def test_list_rows_carry_snippets_and_untitled_articles_their_opening_words(
    session: Session, indexed: dict[int, str]
) -> None:
    page = list_articles(session, repo.ArticleFilter(text="lorries", include_seeds=False))
    [row] = page.rows
    assert row.untitled and row.title.startswith("Officials in Harbin said the cross-border bridge")
    assert row.title.endswith("…")
    assert row.snippet is not None
    assert [part for part, hit in row.snippet.parts if hit] == ["lorries"]
    zh = list_articles(session, repo.ArticleFilter(text="木材", include_seeds=False)).rows[0]
    assert zh.title.startswith("黑河口岸") and len(zh.title) <= 81


# Search by meaning ---------------------------------------------------------------------------


def test_cross_language_results_add_other_scripts_and_can_be_turned_off(
    session: Session, indexed: dict[int, str]
) -> None:
    from pipeline.browse import CrossLanguage

    wanted = repo.ArticleFilter(text="yuan payments", include_seeds=False)
    page = list_articles(session, wanted, cross_language=CrossLanguage())
    assert [indexed[row.article.id] for row in page.rows] == ["en-yuan"]
    extra = [indexed[row.article.id] for row in page.cross_language]
    assert "ru-yuan" in extra
    assert all(row.cross_language and row.article.lang != "en" for row in page.cross_language)
    assert all(row.score is not None and row.score >= 0.27 for row in page.cross_language)
    # The list's filters apply to them too, and the switch turns them off.
    only_zh = list_articles(session, replace_filter(wanted, lang="zh"), cross_language=CrossLanguage())
    assert all(row.article.lang == "zh" for row in only_zh.cross_language)
    assert list_articles(session, wanted).cross_language == []
    # A Russian query is completed by coverage in English and Chinese, never in Russian.
    russian = list_articles(
        session, replace_filter(wanted, text="газопровод"), cross_language=CrossLanguage()
    )
    assert {indexed[row.article.id] for row in russian.rows} == {"ru-siberia", "ru-siberia-record"}
    assert "en-pipeline" in {indexed[row.article.id] for row in russian.cross_language}
    assert all(row.article.lang != "ru" for row in russian.cross_language)


def replace_filter(wanted: repo.ArticleFilter, **changes: Any) -> repo.ArticleFilter:
    from dataclasses import replace

    return replace(wanted, **changes)


def test_related_coverage_is_other_stories_not_copies(session: Session, settings: Settings) -> None:
    from pipeline import nearby

    names = import_fixtures(session, settings)
    drills = fixture_articles()[1]
    [copy] = import_lines(
        session,
        settings,
        [
            json.dumps(
                {"url": "https://mirror.example/drills", "title": drills["title"], "text": drills["text"]}
            )
        ],
        source="copy",
    )
    assert copy.result.status == "duplicate"
    original = next(article_id for article_id, name in names.items() if name == "en-drills")
    related = nearby.related_to(session, session.get(Article, original))
    related_names = [names.get(n.root_id) for n in related]
    assert related_names, "the fixtures hold other military stories"
    assert copy.result.article_id not in {n.article_id for n in related} and original not in related_names
    assert {"ru-patrol", "zh-exercise"} & set(related_names)
    assert [n.similarity for n in related] == sorted((n.similarity for n in related), reverse=True)
    assert len({n.root_id for n in related}) == len(related), "one row per story"


def test_cli_search_table_csv_and_switches(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import cli
    from tests.conftest import make_settings

    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(REPO_ROOT / "config"))
    settings = make_settings(sqlite_url)
    engine = make_engine(sqlite_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        import_fixtures(session, settings)
        [formula] = import_lines(
            session,
            settings,
            [
                json.dumps(
                    {
                        "url": "https://sheet.example/1",
                        "title": '=HYPERLINK("http://evil.example","lorries")',
                        "text": "Lorries queued for two days at the Zabaikalsk crossing as customs checks slowed.",
                    }
                )
            ],
            source="formula",
        )
        assert formula.result.status == "new"
    engine.dispose()

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["--db", sqlite_url, "articles", *argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    status, out, _ = run("--q", "lorries", "--no-cross-language")
    assert status == 0
    # The untitled article is listed by its opening words, with the matching passage.
    assert "Officials in Harbin said the cross-border bridge carried a record number of…" in out
    assert "the cross-border bridge carried a record number of lorries in October" in out
    status, out, _ = run("--q", "lorries", "--no-cross-language", "--csv")
    rows = out.splitlines()
    assert rows[0].startswith("id,published_at,first_seen_at,lang,title,url")
    assert len(rows) == 3
    assert "'=HYPERLINK(" in out, "a formula stays text in a spreadsheet"
    status, out, err = run("--q", "yuan payments")
    assert "xlang 0." in out and "Расчеты в юанях растут" in out and "found by meaning" in err
    status, out, _ = run("--q", "yuan payments", "--no-cross-language")
    assert "xlang" not in out and "Yuan payments grow" in out
    status, _, err = run("--q", "x" * 10_000)
    assert status == 2 and "longer than 500 characters" in err and "Traceback" not in err
    status, _, err = run("--q", '"', "--json")
    assert status == 2 and "no words" in err


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"lang": "zh"},
        {"lang": "ru", "offset": 1},
        {"include_duplicates": True, "lang": "en"},
    ],
)
def test_ranking_inside_the_index_gives_the_page_a_full_ranking_would(
    session: Session, indexed: dict[int, str], monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any]
) -> None:
    # Rank only the best match or so first: the language filters then leave the page short
    # and the search must widen until it is exact.
    monkeypatch.setattr(repo, "RANKED_FIRST", 1)
    query = "the OR в OR 的"
    wanted = repo.ArticleFilter(text=query, include_seeds=False, limit=1, **filters)
    everything = repo.ArticleFilter(text=query, include_seeds=False, limit=1000)
    assert len(repo.find_articles(session, everything)) > 8  # more matches than the first ranking keeps
    quick = [(f.article.id, f.score) for f in repo.find_articles(session, wanted)]
    ranked_all = fulltext.matches(session, search.parse_query(query))
    full = [(f.article.id, f.score) for f in repo._found(session, wanted, ranked_all)]
    assert quick == full
    assert quick, "every filter here has matches"


def test_related_coverage_ranks_other_languages_with_the_stories_allowance(
    session: Session, settings: Settings
) -> None:
    from pipeline import nearby

    names = import_fixtures(session, settings)
    allowance = settings.stories.similarity - settings.stories.cross_language_similarity
    assert allowance > 0
    moved = []
    for article_id in names:
        article = session.get(Article, article_id)
        assert article is not None
        plain = nearby.related_to(session, article, limit=50)
        fair = nearby.related_to(session, article, limit=50, cross_language_allowance=allowance)

        def score(neighbour: nearby.Neighbour, lang: str = article.lang) -> float:
            return neighbour.similarity + (allowance if neighbour.lang != lang else 0.0)

        # Ranked by the cosine plus the allowance for other languages; the cosine is shown.
        assert [score(n) for n in fair] == sorted((score(n) for n in fair), reverse=True)
        assert [n.similarity for n in plain] == sorted((n.similarity for n in plain), reverse=True)
        # The same neighbours (the floor is on the cosine), in another order.
        assert {n.root_id for n in plain} == {n.root_id for n in fair}
        rank = {n.root_id: i for i, n in enumerate(fair)}
        moved += [
            (names[article_id], names.get(a.root_id), names.get(b.root_id))
            for i, a in enumerate(plain)
            for b in plain[:i]
            if a.lang != article.lang and b.lang == article.lang and rank[a.root_id] < rank[b.root_id]
        ]
    # Somewhere in the fixtures an article in another language comes before one in the
    # article's own language that it followed.
    assert moved, "the allowance changed no ranking"


def story_lines(published: dict[str, datetime | None]) -> list[str]:
    """Import lines of the translated story of the semantic fixtures, in these languages."""
    story = json.loads((REPO_ROOT / "tests" / "fixtures" / "semantic" / "story_yuan.json").read_text("utf-8"))
    return [
        json.dumps(
            {
                "id": key,
                "url": f"https://{key}.example/story",
                "title": story[key]["title"],
                "text": story[key]["text"],
                **({"published": moment.isoformat()} if moment else {}),
            },
            ensure_ascii=False,
        )
        for key, moment in published.items()
    ]


def test_a_story_found_through_its_translation_shows_that_passage_and_is_not_repeated(
    session: Session, settings: Settings
) -> None:
    """A translated story matches when any of its articles holds the query's words; its
    row then shows the passage of the copy that holds the most of them, and the search by
    meaning never repeats it (on another page) nor lists it by an article in the query's
    script."""
    from datetime import timedelta

    from pipeline.browse import CrossLanguage

    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    lines = story_lines(
        {"en": now - timedelta(hours=30), "ru": now - timedelta(hours=28), "zh": now - timedelta(hours=27)}
    )
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="story", now=now)}
    root, zh = results["en"].article_id, results["zh"].article_id
    assert results["zh"].duplicate_of == root
    # "95" is in every version, 人民币 only in the Chinese one.
    [row] = list_articles(session, repo.ArticleFilter(text="95 人民币", include_seeds=False)).rows
    assert row.article.id == root
    assert row.matched_in is not None and row.matched_in.id == zh
    assert row.snippet is not None and "人民币" in [part for part, hit in row.snippet.parts if hit]
    # A Latin query whose words the English original holds: the story is a text result, so
    # never a result by meaning, even when the page shows nothing of it (limit 0 rows + 1).
    for limit in (1, 20):
        page = list_articles(
            session,
            repo.ArticleFilter(text="Harbin yuan", include_seeds=False, limit=limit),
            cross_language=CrossLanguage(),
        )
        assert root not in {extra.article.id for extra in page.cross_language}
        assert all(extra.article.lang != "en" for extra in page.cross_language)


def test_a_story_is_in_the_languages_of_all_its_articles(
    session: Session,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--lang ru lists an English original once when its Russian translation is stored as
    its copy, alone or with a search or a label; its copies one by one only in their own."""
    from datetime import timedelta

    from starlette.testclient import TestClient

    from pipeline import cli
    from pipeline.web import create_app

    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    lines = story_lines({"en": now - timedelta(hours=30), "ru": now - timedelta(hours=28)})
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="story", now=now)}
    session.commit()
    root, ru = results["en"].article_id, results["ru"].article_id
    assert results["ru"].duplicate_of == root and results["ru"].copy_kind == "translation"
    watch = (results["en"].watch or results["ru"].watch)[0].item

    def ids(**filters: Any) -> list[int]:
        wanted = repo.ArticleFilter(include_seeds=False, **filters)
        return [f.article.id for f in repo.find_articles(session, wanted)]

    for lang in ("en", "ru"):
        assert ids(lang=lang) == [root]
        assert ids(lang=lang, text="Харбине") == [root]
        assert ids(lang=lang, text="Harbin") == [root]
        assert ids(lang=lang, watch=watch) == [root]
    assert ids(lang="zh") == []
    assert ids(lang="ru", include_duplicates=True) == [ru]
    assert ids(lang="en", include_duplicates=True) == [root]
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        listed = client.get("/api/articles", params={"lang": "ru", "q": "Харбин", "xlang": "0"}).json()
    assert [row["id"] for row in listed["articles"]] == [root]
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    assert cli.main(["--db", settings.db_url, "articles", "--lang", "ru", "--json"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [root]


def test_the_script_of_a_query_is_the_script_of_most_of_its_letters() -> None:
    from pipeline import nearby

    cases = {
        "Putin": "latin",
        "Путин": "cyrillic",
        "普京": "han",
        "プーチン": "han",
        "بوتين والصين": "arabic",
        "Πούτιν Κίνα": "greek",
        "2022": "latin",
    }
    assert {query: nearby.script_of_query(query) for query in cases} == cases
    assert nearby.script_of_lang("ar") == "arabic" and nearby.script_of_lang("en") == "latin"


def test_a_word_left_out_leaves_out_the_story_whatever_its_translations_say(
    session: Session, settings: Settings
) -> None:
    lines = story_lines({"en": None, "zh": None})
    results = {r.input_id: r.result for r in import_lines(session, settings, lines, source="left-out")}
    root = results["en"].article_id
    assert results["zh"].duplicate_of == root
    # "95" is in both versions, "Harbin" only in the English original, in Latin letters.
    assert [f.article.id for f in repo.find_articles(session, repo.ArticleFilter(text="95"))] == [root]
    assert repo.find_articles(session, repo.ArticleFilter(text="95 -harbin")) == []
    # Listed one by one, the Chinese translation has no "harbin" and is found.
    alone = repo.find_articles(session, repo.ArticleFilter(text="95 -harbin", include_duplicates=True))
    assert [f.article.id for f in alone] == [results["zh"].article_id]


def test_a_text_of_many_long_distinct_words_is_indexed_within_postgresqls_limit(
    session: Session, settings: Settings
) -> None:
    """PostgreSQL refuses a tsvector over 1 MB: 17,000 distinct 64-letter Cyrillic words
    made the page fail at every poll there, while SQLite stored it."""
    rng = random.Random(7)
    words = ["".join(rng.choice("абвгдежзийклмнопрстуфхцчшщэюя") for _ in range(64)) for _ in range(17_000)]
    text_ = "Президенты России и Китая провели переговоры в Пекине. " + " ".join(words)
    indexed = search.index_text("Переговоры", text_)
    distinct = {*indexed.title, *indexed.body}
    assert sum(len(term.encode()) + 8 for term in distinct) <= search.MAX_LEXEME_BYTES
    assert indexed.body[:3] == search.terms("Президенты России и")[:3]
    [result] = import_lines(
        session, settings, [json.dumps({"text": text_}, ensure_ascii=False)], source="long"
    )
    assert result.result.status == "new", result.result.error
    assert [f.article.id for f in repo.find_articles(session, repo.ArticleFilter(text="переговоры"))] == [
        result.result.article_id
    ]


# Scripts with combining marks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("हिन्दी भाषा में समाचार", 4),  # Hindi: vowel signs and a virama inside words
        ("বাংলা সংবাদ", 2),  # Bengali
        ("தமிழ் செய்தி", 2),  # Tamil
        ("مُحَمَّد وَالعَرَبِيَّة", 2),  # Arabic with its vowel marks
        ("שָׁלוֹם עוֹלָם", 2),  # Hebrew points
        ("Putin\u0301 café", 2),  # a combining accent on a Latin letter
    ],
)
def test_words_with_combining_marks_are_one_term_each(text: str, words: int) -> None:
    found = search.terms(text)
    assert len(found) == words, found
    assert all(len(term) > 1 for term in found)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("ข่าวไทย", ["ข่", "า", "ว", "ไ", "ท", "ย"]),  # Thai: a tone mark stays on its letter
        ("ພາສາລາວ", ["ພ", "າ", "ສ", "າ", "ລ", "າ", "ວ"]),  # Lao
        ("မြန်မာ", ["မြ", "န်", "မာ"]),  # Myanmar: medial and asat on their letters
        ("ខ្មែរ", ["ខ្", "មែ", "រ"]),  # Khmer: the coeng sign on its letter
    ],
)
def test_scripts_without_spaces_are_bigrams_of_letters_with_their_marks(text: str, units: list[str]) -> None:
    expected = [first + second for first, second in itertools.pairwise(units)] + [units[-1]]
    assert search.terms(text) == expected
    assert [token.term for token in search.tokens(text)] == expected
    # Offsets: each token covers its units in the original text.
    assert [text[token.start : token.end] for token in search.tokens(text)] == expected


def test_thai_punctuation_and_spaces_end_a_run() -> None:
    # A space and Khmer's full stop separate runs: no bigram spans them.
    assert "ยข" not in search.terms("ไทย ขอ")
    assert search.terms("ខ្មែរ។ ខ្មែរ") == search.terms("ខ្មែរ") * 2


@pytest.mark.parametrize(
    ("query", "marked"),
    [
        ("ไซบีเรีย", ["ไซบีเรีย"]),
        ('"ปักกิ่ง"', ["ปักกิ่ง"]),
        ("กิน", []),  # only a prefix of the cluster กินี: not a match
        ("ប៉េកាំង", ["ប៉េកាំង"]),
        # ำ is two characters in NFKC: the run is still matched whole, nothing else marked.
        ("ประเทศ", ["ประเทศ"]),
        ("เงินหยวน", ["เงินหยวน"]),
    ],
)
def test_thai_and_khmer_matches_are_marked_whole(query: str, marked: list[str]) -> None:
    text = "พลังแห่งไซบีเรีย 2 ที่กรุงปักกิ่ง กินี ទីក្រុងប៉េកាំង การประชุมสำคัญระหว่างประเทศ เกี่ยวกับเงินหยวนและการนำเข้า"
    highlighted = search.highlight(text, search.parse_query(query))
    assert [part for part, hit in highlighted.parts if hit] == marked


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("Le soutien à l'Ukraine et d’énergie", "Ukraine"),  # French elision
        ("Le soutien à l'Ukraine et d’énergie", "énergie"),
        ("Putin Pekin'de Xi ile görüştü", "Pekin"),  # a Turkish suffix after a name
        ("Il prezzo dell'energia", "energia"),
        ("Mo'g'uliston orqali", "Moʻgʻuliston"),  # Uzbek, typed with either apostrophe
        ("девʼяносто кілометрів", "дев'яносто"),  # Ukrainian, either apostrophe
        ("Си\u00adби\u00adри", "Сибири"),  # soft hyphens inside a word
        ("天然\u200b气", "天然气"),  # a zero-width space inside a Chinese run
        ("سال ۲۰۲۶ میلادی", "2026"),  # Persian digits
        ("वर्ष २०२६ में", "2026"),  # Devanagari digits
        ("وبدأت والتدريبات المشتركة", "التدريبات"),  # Arabic "and the" before the noun
        ("التسويات باليوان والروبل", "اليوان"),  # "in the yuan"
        ("두 정상은 베이징에서 만났다", "베이징"),  # a Korean particle after the noun
        ("몽골을 경유하는 가스관", "몽골"),
        ("한반도를 둘러싼 정세", "한반도"),
    ],
)
def test_words_are_found_through_apostrophes_prefixes_particles_invisible_characters_and_other_digits(
    text: str, query: str
) -> None:
    parsed = search.parse_query(query)
    wanted = [term for group in parsed.groups for unit in group for phrase in unit for term in phrase.terms]
    found = search.terms(text)
    assert any(found[i : i + len(wanted)] == wanted for i in range(len(found))), (found, wanted)
    # The snippet marks the word in the text as written.
    assert search.highlight(text, parsed).hits >= 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ໜ້າ", "ຫນ້າ"),  # Lao: the ligature letter and its two letters
        ("กำลัง", "กําลัง"),  # Thai: sara am and its NFKC form
        ("ก\u200bิน", "กิน"),  # a zero-width space between a letter and its vowel sign
        ("Пу\u0301тин и Си Цзинь\u0301пин", "Путин и Си Цзиньпин"),  # Russian stress accents
        ("שָׁלוֹם יְרוּשָׁלַיִם", "שלום ירושלים"),  # Hebrew vowel points
        ("ข\u0e38\u0e48", "ข\u0e48\u0e38"),  # a tone mark and a vowel sign typed in either order
        ("ปี ๒๐๒๖", "ปี 2026"),  # Thai digits are numbers
        ("واشنطن", "وواشنطن"),  # "Washington", "and Washington": a word that begins with و keeps it
        ("تسویه با یوان در کرملین", "تسويه با يوان در كرملين"),  # Persian yeh and keheh typed as Arabic's
    ],
)
def test_spellings_of_one_text_give_the_same_terms(one: str, other: str) -> None:
    assert search.terms(one) == search.terms(other)
    assert [token.term for token in search.tokens(one)] == search.terms(one)


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("การประชุมASEANประชุมที่กรุงเทพ", "ประชุม"),  # Thai glued to a Latin word
        ("ประชุมG20ที่กรุงเทพ", "กรุงเทพ"),  # ...and to a number
        ("中国人民", '"中国\u200b"'),  # a phrase ending in an invisible character still ends in Chinese
    ],
)
def test_runs_are_found_next_to_other_words_and_invisible_characters(text: str, query: str) -> None:
    parsed = search.parse_query(query)
    assert search.highlight(text, parsed).hits >= 1
    (phrase,) = parsed.groups[0][0]
    found = search.terms(text)
    head = list(phrase.terms[:-1]) if phrase.prefix else list(phrase.terms)
    assert any(found[i : i + len(head)] == head for i in range(len(found)))


def test_a_long_unbroken_word_is_one_capped_term() -> None:
    assert search.terms("a" * 40_000) == ["a" * search.MAX_TOKEN_CHARS]


def test_an_english_possessive_is_the_word() -> None:
    assert search.terms("Russia's gas") == search.terms("Russia gas")
    assert [t.term for t in search.tokens("l'Ukraine")] == ["l", search.normalise_word("Ukraine")]


def test_arabic_vowel_marks_do_not_change_the_term() -> None:
    assert search.terms("مُحَمَّد") == search.terms("محمد")


def test_the_marks_class_is_every_combining_mark_of_this_unicode() -> None:
    import re
    import unicodedata

    from pipeline.unicode_marks import MARKS, MARKS_ASTRAL, MARKS_BMP, UNICODE_VERSION

    assert unicodedata.unidata_version == UNICODE_VERSION, "regenerate pipeline/unicode_marks.py"
    pattern = re.compile(f"[{MARKS}]")
    marks = [cp for cp in range(0x110000) if unicodedata.category(chr(cp)).startswith("M")]
    assert len(marks) > 2000
    assert all(pattern.fullmatch(chr(cp)) for cp in marks)
    assert sum(1 for cp in range(0x110000) if pattern.fullmatch(chr(cp))) == len(marks)
    assert MARKS == MARKS_BMP + MARKS_ASTRAL
    assert all(ord(c) <= 0xFFFF for c in MARKS_BMP) and all(ord(c) > 0xFFFF for c in MARKS_ASTRAL if c != "-")
    bmp = re.compile(f"[{MARKS_BMP}]")
    assert [cp for cp in marks if cp <= 0xFFFF] == [cp for cp in range(0x10000) if bmp.fullmatch(chr(cp))]


def test_a_hindi_word_is_found_as_a_word(session: Session, settings: Settings) -> None:
    lines = [
        json.dumps(
            {
                "id": "hi-pipeline",
                "url": "https://news.example/hi-1",
                "lang": "hi",
                "title": "रूस और चीन",
                "text": "रूस और चीन के नेताओं ने नई पाइपलाइन पर बातचीत की।",
            },
            ensure_ascii=False,
        ),
        json.dumps(
            {
                "id": "hi-other",
                "url": "https://news.example/hi-2",
                "lang": "hi",
                "title": "खेल समाचार",
                "text": "पाइप की लाइन में पानी आया और पिता ने लाल पतंग उड़ाई।",
            },
            ensure_ascii=False,
        ),
    ]
    results = list(import_lines(session, settings, lines, source="hindi"))
    names = {r.result.article_id: r.input_id for r in results if r.result.article_id is not None}
    session.commit()
    assert found(session, names, "पाइपलाइन") == ["hi-pipeline"]
    assert found(session, names, "समाचार") == ["hi-other"]


def test_words_nfkc_spells_with_capitals_punctuation_or_spaces_are_plain_terms() -> None:
    # Mathematical letters have no lower case of their own: NFKC makes them capitals.
    assert search.terms("𝐆𝐚𝐬 𝗣𝗜𝗣𝗘𝗟𝗜𝗡𝗘𝗦 ᴳᴬˢ") == search.terms("gas pipelines gas")
    # "⑴" is "(1)" and "ﷺ" four words in NFKC: no term holds what a tokenizer splits at.
    assert search.terms("⑴ ⒈ 🄁 ㈠") == ["1", "1", "0", "一"]
    for term in search.terms("⑴ ⒈ ㈠ ﷺ ゛ ゜ 𝐆𝐚𝐬 ℍ"):
        assert term == term.casefold()
        assert not re.search(r"[\s!-&(-/:-@\[-`{-~]", term), term


def test_styled_letters_and_enclosed_numbers_are_found_alike_on_both_databases(
    session: Session, settings: Settings
) -> None:
    lines = [
        json.dumps(
            {"id": id_, "url": f"https://styled.example/{id_}", "title": title, "text": text, "lang": "en"},
            ensure_ascii=False,
        )
        for id_, title, text in [
            (
                "styled",
                "𝐆𝐚𝐬 𝐏𝐢𝐩𝐞𝐥𝐢𝐧𝐞𝐬 to China",
                "𝗣𝘂𝘁𝗶𝗻 said the Siberian project with Beijing is going ahead as planned this decade.",
            ),
            (
                "enumerated",
                "Agreement points on energy",
                "The agreement lists ⑴ coal supplies and ⒉ oil deliveries for the coming decade.",
            ),
            ("plain", "One more round of talks", "Negotiators met for 1 day and agreed on 2 points."),
        ]
    ]
    results = list(import_lines(session, settings, lines, source="styled"))
    assert [r.result.status for r in results] == ["new"] * 3
    names = {r.result.article_id: r.input_id for r in results}
    assert found(session, names, "gas pipelines") == ["styled"]
    assert found(session, names, "PUTIN") == ["styled"]
    assert found(session, names, "𝐏𝐮𝐭𝐢𝐧") == ["styled"]
    assert found(session, names, '"1 coal"') == ["enumerated"]
    assert sorted(found(session, names, "⑴")) == ["enumerated", "plain"]


@pytest.mark.postgres
def test_a_list_of_more_articles_than_one_statement_binds_is_listed_whole(postgres_url: str) -> None:
    """``articles --limit 100000`` (an export of everything): PostgreSQL binds at most
    65,535 values in one statement, and the page's articles, copies and labels were each
    read by one."""
    many = 66_000
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        session.execute(
            text(
                "INSERT INTO articles (title, text, lang, first_seen_at, published_at, content_hash, "
                "is_seed, word_count) SELECT 'Report ' || g, 'Gas report ' || g, 'en', "
                "TIMESTAMPTZ '2026-11-20 00:00Z', TIMESTAMPTZ '2026-11-01 00:00Z' + g * INTERVAL '1 second', "
                "md5(g::text), false, 3 FROM generate_series(1, :many) g"
            ),
            {"many": many},
        )
        first, last = session.execute(text("SELECT min(id), max(id) FROM articles")).one()
        session.execute(
            text("UPDATE articles SET duplicate_of_id = :first, copy_kind = 'exact' WHERE id = :copy"),
            {"first": first, "copy": first + 1},
        )
        session.execute(
            text(
                "INSERT INTO article_topics (article_id, topic, score, evidence) VALUES (:id, 'energy', 0.9, '[]')"
            ),
            {"id": first + 1},
        )
        session.commit()
        page = list_articles(session, repo.ArticleFilter(limit=100_000))
        assert len(page.rows) == many - 1 and not page.has_more
        assert page.rows[0].article.id == last
        [oldest] = [row for row in page.rows if row.article.id == first]
        assert [copy.id for copy in oldest.copies] == [first + 1]
        assert [label.topic for label in oldest.topics] == ["energy"]
    engine.dispose()
