"""The translation test: sentence alignment, numbers and names across languages."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import crosslingual, encoder
from pipeline.crosslingual import Side, TranslationParams, verify_translation

REPO = Path(__file__).resolve().parent.parent
STORY = json.loads((Path(__file__).parent / "fixtures" / "semantic" / "story_yuan.json").read_text())
LANGS = {"en": "en", "ru": "ru", "zh": "zh", "ru_other": "ru"}
GAZETTEER = crosslingual.load_gazetteer(REPO / "config" / "gazetteer.yaml")


def side(key: str, *, text: str | None = None, title: str | None = None) -> Side:
    body = STORY[key]["text"] if text is None else text
    heading = STORY[key]["title"] if title is None else title
    vectors = encoder.embed_article(encoder.load_encoder(), heading, body)
    return Side(LANGS[key], body, vectors.sentences, vectors.has_title)


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(["en", "ru", "zh"], 2)))
def test_full_translations_are_recognised(a: str, b: str) -> None:
    verdict = verify_translation(side(a), side(b), TranslationParams(), GAZETTEER)
    assert verdict.is_translation, verdict.reason
    assert verdict.share >= 0.6 and verdict.blocks >= 3
    assert verdict.number_agreement == 1.0
    detail = verdict.as_detail()
    assert detail["aligned_sentences"] == verdict.aligned and "align in order" in detail["reason"]


@pytest.mark.parametrize("key", ["en", "ru", "zh"])
def test_another_outlets_report_of_the_same_talks_is_not_a_translation(key: str) -> None:
    verdict = verify_translation(side(key), side("ru_other"), TranslationParams(), GAZETTEER)
    assert not verdict.is_translation
    assert verdict.reason.startswith("not a translation")


def test_a_partial_translation_counts() -> None:
    first_paragraphs = "\n\n".join(STORY["ru"]["text"].split("\n\n")[:2])
    verdict = verify_translation(
        side("en"), side("ru", text=first_paragraphs), TranslationParams(), GAZETTEER
    )
    assert verdict.is_translation, verdict.reason


def test_the_same_sentences_out_of_order_are_not_a_translation() -> None:
    sentences = [s for paragraph in STORY["ru"]["text"].split("\n\n") for s in paragraph.split(". ")]
    shuffled = ". ".join(sentences[i] for i in (3, 0, 4, 1, 2) if i < len(sentences))
    english, reordered = side("en", title=""), side("ru", text=shuffled, title="")
    in_order = side("ru", text=". ".join(sentences[:5]), title="")
    # The chain runs forward in both texts, so moved sentences cannot all join it, even
    # with no margin asked of any match.
    no_margin = TranslationParams(min_margin=0.0)
    verdict = verify_translation(english, reordered, no_margin, GAZETTEER)
    assert not verdict.is_translation
    assert verdict.aligned < verify_translation(english, in_order, no_margin, GAZETTEER).aligned
    assert not verify_translation(english, reordered, TranslationParams(), GAZETTEER).is_translation


def test_conflicting_numbers_veto_a_close_match() -> None:
    altered = (
        STORY["ru"]["text"]
        .replace("95 процентов", "40 процентов")
        .replace("245 миллиардов", "120 миллиардов")
        .replace("в марте", "в 2031 году")
    )
    verdict = verify_translation(side("en"), side("ru", text=altered), TranslationParams(), GAZETTEER)
    assert verdict.number_agreement is not None and verdict.number_agreement < 0.5
    assert not verdict.is_translation


def test_the_chain_runs_forward_and_merges_a_split_sentence() -> None:
    a = np.eye(4, dtype=np.float32)
    b = np.eye(4, dtype=np.float32)[[1, 0, 2, 3]]
    chain = crosslingual.align_blocks(a, b, 0.5)
    # Two sentences swapped: only one of them can join a chain that runs forward.
    assert len(chain) == 3 and [block[2:4] for block in chain][-2:] == [(2, 3), (3, 4)]
    assert all(first[1] <= second[0] and first[3] <= second[2] for first, second in itertools.pairwise(chain))
    assert crosslingual.align_blocks(a, np.zeros((0, 4), dtype=np.float32), 0.5) == []
    # One sentence of b renders sentences 1 and 2 of a together: one 2-1 block.
    merged = np.vstack([a[0], _unit((a[1] + a[2])[None])[0], a[3]])
    blocks = crosslingual.align_blocks(a, merged, 0.5)
    assert [block[:4] for block in blocks] == [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]
    assert blocks[1][4] == pytest.approx(1.0)
    assert [block[:4] for block in crosslingual.align_blocks(merged, a, 0.5)] == [
        (0, 1, 0, 1),
        (1, 2, 1, 3),
        (2, 3, 3, 4),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Gazprom will ship 50 billion cubic metres", {"5e+10"}),
        ("«Газпром» поставит 50 млрд кубометров", {"5e+10"}),
        ("俄气将输送500亿立方米", {"5e+10"}),
        ("trade grew 3.5% to $245.1 bn", {"3.5%", "2.45e+11"}),
        ("товарооборот вырос на 3,5 процента", {"3.5%"}),
        ("on 16 May 2024", {"16", "2024", "month:5"}),
        ("16 мая 2024 года", {"16", "2024", "month:5"}),
        ("2024年5月16日", {"16", "2024", "month:5"}),
        ("1,500 tonnes and 1 500 000 roubles", {"1500", "1.5e+06"}),
        ("in 3 rounds, a small number", set()),
    ],
)
def test_numbers_become_language_free_keys(text: str, expected: set[str]) -> None:
    assert crosslingual.extract_numbers(text) == expected


def test_every_gazetteer_example_agrees_across_languages() -> None:
    raw = yaml.safe_load((REPO / "config" / "gazetteer.yaml").read_text(encoding="utf-8"))
    assert raw["examples"]
    for example in raw["examples"]:
        for lang in ("en", "ru", "zh"):
            found = GAZETTEER.entities(example[lang], lang)
            assert set(example["entities"]) <= found, (lang, example[lang], found)


def test_every_gazetteer_entity_has_the_three_languages() -> None:
    for entity, by_lang in GAZETTEER.patterns.items():
        assert {"en", "ru", "zh"} <= set(by_lang), entity


def test_a_broken_gazetteer_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "gazetteer.yaml"
    path.write_text("entities:\n  putin:\n    en: ['(unclosed']\n")
    with pytest.raises(crosslingual.ConfigError, match=r"entities.putin.en: bad pattern"):
        crosslingual.load_gazetteer(path)


@pytest.mark.slow
def test_quality_gate_on_the_tuning_half_of_the_real_pairs() -> None:
    """Regression floor on the ``dev`` half of tests/fixtures/xlingual (what the thresholds
    were chosen on, so this guards against regressions; it is not a quality estimate)."""
    import sys

    sys.path.insert(0, str(REPO))
    from benchmarks.translation_quality import load, pair_scores, pair_table
    from pipeline.settings import load_settings

    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(REPO / "config")})
    items, pairs = load("dev")
    table = pair_table(pair_scores(items, pairs, settings), raw_threshold=0.5)
    overall = table["summitwatch"]["all"]
    assert overall["precision"] is not None and overall["precision"] >= 0.95
    assert overall["recall"] >= 0.15
    assert table["minhash"]["all"]["tp"] == 0


def _reference_weight(a: np.ndarray, b: np.ndarray, threshold: float) -> float:
    """The heaviest chain's weight by its definition: at each sentence pair, the best of
    skipping a sentence of either text or ending a 1-1, 2-1 or 1-2 block there (a merged
    pair only when each half relates to the other side by itself and the pair matches
    nearly as well as its better half)."""
    similarity = (a @ b.T).astype(np.float64)
    rows, cols = similarity.shape

    def merged(first: np.ndarray, second: np.ndarray, other: np.ndarray) -> float:
        """A merged pair's cosine; -inf when one half is unrelated to ``other`` by itself."""
        halves = (float(first @ other), float(second @ other))
        total = first + second
        value = float(total @ other / np.linalg.norm(total))
        if (
            min(halves) < crosslingual._MERGE_PART_SIMILARITY
            or value < max(halves) - crosslingual._MERGE_SLACK
        ):
            return -np.inf
        return value

    best = [[0.0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            options = [best[i - 1][j], best[i][j - 1]]
            if similarity[i - 1, j - 1] >= threshold:
                options.append(best[i - 1][j - 1] + similarity[i - 1, j - 1] - threshold)
            if i >= 2 and (value := merged(a[i - 2], a[i - 1], b[j - 1])) >= threshold:
                options.append(best[i - 2][j - 1] + 2 * (value - threshold))
            if j >= 2 and (value := merged(b[j - 2], b[j - 1], a[i - 1])) >= threshold:
                options.append(best[i - 1][j - 2] + 2 * (value - threshold))
            best[i][j] = max(options)
    return best[rows][cols]


@pytest.mark.parametrize("seed", range(24))
def test_the_chain_is_the_heaviest_by_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    a = _unit(rng.normal(size=(rows, 6)))
    b = _unit(rng.normal(size=(cols, 6)))
    shared = min(rows, cols)
    b[:shared] = _unit(b[:shared] + 2 * a[:shared])  # partly translated: long chains exist
    for threshold in (0.3, 0.6):
        chain = crosslingual.align_blocks(a, b, threshold)
        weight = sum((value - threshold) * max(i1 - i0, j1 - j0) for i0, i1, j0, j1, value in chain)
        assert weight == pytest.approx(_reference_weight(a, b, threshold), abs=1e-5)
        assert all(value >= threshold for *_, value in chain)
        # The cheap bound the translation test checks first never undercounts.
        similarity = a @ b.T
        assert sum(i1 - i0 for i0, i1, *_ in chain) <= crosslingual.coverable_units(similarity, threshold)
        assert sum(j1 - j0 for _, _, j0, j1, _ in chain) <= crosslingual.coverable_units(
            similarity.T, threshold
        )
        assert all(
            first[1] <= second[0] and first[3] <= second[2] for first, second in itertools.pairwise(chain)
        )


def test_text_evidence_is_read_once_and_equals_a_fresh_reading() -> None:
    english, chinese = side("en"), side("zh")
    first = verify_translation(english, chinese, TranslationParams(), GAZETTEER)
    assert english.numbers == crosslingual.extract_numbers(english.text)
    assert english.weight == crosslingual.content_weight(english.text)
    fresh = crosslingual.load_gazetteer(REPO / "config" / "gazetteer.yaml")
    assert english.entities(GAZETTEER) == fresh.entities(english.text, "en")
    assert english.entities(GAZETTEER) and english.numbers
    # The same check again, on kept evidence, decides the same way with the same figures.
    again = verify_translation(english, chinese, TranslationParams(), GAZETTEER)
    assert again == first


def test_the_gazetteer_keeps_answers_for_recent_texts_only() -> None:
    gazetteer = crosslingual.load_gazetteer(REPO / "config" / "gazetteer.yaml")
    text = "Vladimir Putin met Xi Jinping in Beijing."
    found = gazetteer.entities(text, "en")
    assert {"putin", "xi_jinping"} <= found
    found.add("changed by the caller")
    assert "changed by the caller" not in gazetteer.entities(text, "en")
    for number in range(crosslingual._RECENT_TEXTS + 10):
        assert gazetteer.entities(f"Lavrov spoke {number} times.", "en") == {"lavrov"}
    assert len(gazetteer._recent) == crosslingual._RECENT_TEXTS
    gazetteer._recent.clear()  # what a benchmark does to read every text afresh
    assert len(gazetteer._recent) == 0
    assert gazetteer.entities(text, "en") >= {"putin", "xi_jinping"}


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _paired_sentences(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A text whose sentences come in close pairs (two on each point, half the text apart),
    and its translation.

    Each sentence's translation is its best match, but the other sentence on the same
    point is a near runner-up: the situation of a long article on one subject.
    """
    rng = np.random.default_rng(seed)
    half = (count + 1) // 2
    points = rng.normal(size=(half, 64))
    original = _unit(points[np.arange(count) % half] + 0.3 * rng.normal(size=(count, 64)))
    translation = _unit(original + 0.05 * rng.normal(size=(count, 64)))
    return original, translation


def test_the_margin_applies_in_full_to_short_texts_and_fades_out_for_long_ones() -> None:
    params = TranslationParams(min_margin=0.15, short_text_sentences=8, long_text_sentences=24)
    assert crosslingual.required_margin(3, params) == 0.15
    assert crosslingual.required_margin(8, params) == 0.15
    assert crosslingual.required_margin(16, params) == pytest.approx(0.075)
    assert crosslingual.required_margin(24, params) == 0.0
    assert crosslingual.required_margin(40, params) == 0.0
    step = TranslationParams(min_margin=0.15, short_text_sentences=5, long_text_sentences=5)
    assert crosslingual.required_margin(5, step) == 0.15 and crosslingual.required_margin(6, step) == 0.0


@pytest.mark.parametrize("swap", [False, True])
def test_a_long_translation_is_recognised_though_its_sentences_have_close_neighbours(swap: bool) -> None:
    original, translation = _paired_sentences(30, seed=3)
    translation = translation[:24]  # the translation stops early: the shorter side decides
    similarity = original[:24] @ translation.T
    best = similarity.max(axis=1)
    runner_up = np.sort(similarity, axis=1)[:, -2]
    assert (similarity.argmax(axis=1) == np.arange(24)).all()
    assert np.median(best - runner_up) < 0.15  # the full margin would reject most matches
    sides = [Side("en", "x", original), Side("ru", "x", translation)]
    if swap:
        sides.reverse()
    verdict = verify_translation(*sides, TranslationParams())
    assert verdict.is_translation, verdict.reason
    assert verdict.margin == 0.0 and verdict.share >= 0.75 and verdict.run_share >= 0.75
    full_margin = TranslationParams(short_text_sentences=1000, long_text_sentences=1000)
    assert not verify_translation(*sides, full_margin).is_translation


def test_a_short_text_still_needs_each_match_to_stand_out() -> None:
    original, translation = _paired_sentences(6, seed=3)
    verdict = verify_translation(Side("en", "x", original), Side("ru", "x", translation), TranslationParams())
    assert verdict.margin == 0.15
    assert not verdict.is_translation
    no_margin = TranslationParams(min_margin=0.0)
    assert verify_translation(
        Side("en", "x", original), Side("ru", "x", translation), no_margin
    ).is_translation
    # The shorter side sets the margin: six sentences against a long text are a short text.
    long_original, long_translation = _paired_sentences(30, seed=3)
    brief = verify_translation(
        Side("en", "x", long_original), Side("ru", "x", long_translation[:6]), TranslationParams()
    )
    assert brief.margin == 0.15 and not brief.is_translation


def test_matches_in_isolated_places_are_not_a_translation() -> None:
    rng = np.random.default_rng(5)
    first = _unit(rng.normal(size=(20, 64)))
    second = _unit(rng.normal(size=(20, 64)))
    # Every other sentence is shared (a quotation here, a fact there); those between differ.
    second[::2] = _unit(first[::2] + 0.1 * rng.normal(size=(10, 64)))
    chain = crosslingual.align_blocks(first, second, 0.55)
    assert len(chain) == 10  # one block per shared sentence, none touching the next
    assert crosslingual.chained_runs(chain, on_a=True) == 0
    verdict = verify_translation(Side("en", "x", first), Side("ru", "x", second), TranslationParams())
    assert verdict.share >= 0.5 and verdict.blocks == 10 and verdict.run_share == 0.0
    assert not verdict.is_translation
    assert "share in runs 0.00 < 0.5" in verdict.reason
    # The same sentences shared as one block make runs.
    second[:10] = _unit(first[:10] + 0.1 * rng.normal(size=(10, 64)))
    second[10:] = _unit(rng.normal(size=(10, 64)))
    assert verify_translation(
        Side("en", "x", first), Side("ru", "x", second), TranslationParams()
    ).is_translation


def test_runs_count_the_sentences_of_blocks_with_a_neighbouring_block() -> None:
    runs = crosslingual.chained_runs
    assert runs([], on_a=True) == 0
    touching = [(0, 1, 0, 1, 0.9), (1, 2, 1, 2, 0.9), (5, 6, 7, 8, 0.9)]
    assert runs(touching, on_a=True) == 2
    apart = [(0, 1, 0, 1, 0.9), (2, 3, 2, 3, 0.9), (4, 5, 3, 4, 0.9)]
    assert runs(apart, on_a=True) == 0
    # A 2-1 block next to a 1-1 block: three sentences of a, two of b in the run.
    merged = [(3, 5, 4, 5, 0.9), (5, 6, 5, 6, 0.9)]
    assert runs(merged, on_a=True) == 3 and runs(merged, on_a=False) == 2


@pytest.mark.slow
def test_joined_pairs_measure_what_the_length_aware_rule_gains() -> None:
    """Regression floor on the ``dev`` half's joined pairs (tuned on; not a quality estimate)."""
    import sys

    sys.path.insert(0, str(REPO))
    from benchmarks.translation_quality import load, long_scores
    from pipeline.settings import load_settings

    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(REPO / "config")})
    items, pairs = load("dev")
    scores = long_scores(items, pairs, settings, seed=7)
    assert scores["2"]["combinations"] == "all" and scores["2"]["negatives"] > 3000
    for entry in scores.values():
        assert entry["translations"] >= 10 and entry["negatives"] >= 100
        assert entry["summitwatch"]["precision"] >= 0.98
        assert entry["summitwatch"]["tp"] >= 2 * entry["first_rule"]["tp"] + 2


def test_runs_are_counted_over_the_shorter_text_not_over_the_aligned_pairs() -> None:
    rng = np.random.default_rng(11)
    first = _unit(rng.normal(size=(12, 64)))
    second = _unit(rng.normal(size=(12, 64)))
    shared = [0, 1, 3, 4, 6, 8, 10]  # 7 of 12 align; 4 of them in runs
    second[shared] = _unit(first[shared] + 0.1 * rng.normal(size=(len(shared), 64)))
    verdict = verify_translation(Side("en", "x", first), Side("ru", "x", second), TranslationParams())
    assert verdict.aligned == 7 and verdict.share == pytest.approx(7 / 12)
    assert verdict.run_share == pytest.approx(4 / 12)
    assert not verdict.is_translation and "share in runs 0.33 < 0.5" in verdict.reason


_CITIES = [
    "Amur",
    "Baikal",
    "Chita",
    "Dalian",
    "Erlian",
    "Fuyuan",
    "Gubkin",
    "Harbin",
    "Irkutsk",
    "Jilin",
    "Kazan",
    "Lhasa",
    "Mirny",
    "Nakhodka",
]


def _forecast(numbers: list[int]) -> str:
    return " ".join(
        f"{city} expects a high of {n} degrees today." for city, n in zip(_CITIES, numbers, strict=True)
    )


def test_aligned_sentences_must_carry_the_same_numbers() -> None:
    """Templated reports (a forecast, market closes) align on wording; their figures differ."""
    rng = np.random.default_rng(2)
    vectors = _unit(rng.normal(size=(14, 64)))
    echo = _unit(vectors + 0.05 * rng.normal(size=(14, 64)))
    figures = [11, 14, 17, 19, 22, 25, 28, 31, 12, 15, 18, 21, 24, 27]
    same = Side("ru", _forecast(figures), echo)
    # The same figures, each in another sentence: the texts' sets agree, no sentence does.
    shifted = Side("ru", _forecast(figures[1:] + figures[:1]), echo)
    english = Side("en", _forecast(figures), vectors)
    assert len(english.unit_numbers) == 14 and english.unit_numbers[2] == frozenset({"17"})
    assert verify_translation(english, same, TranslationParams()).is_translation
    verdict = verify_translation(english, shifted, TranslationParams())
    assert verdict.number_agreement == 1.0
    assert not verdict.is_translation
    assert "numbers agree in 0.00 of 14 aligned sentence pairs < 0.5" in verdict.reason
    assert crosslingual.block_number_agreement([], english, same) == (None, 0, None)


def test_aligned_sentences_that_name_other_years_are_another_text() -> None:
    """A message of another year (New Year greetings, an anniversary) follows the same
    template; a translation never changes a year."""
    rng = np.random.default_rng(4)
    vectors = _unit(rng.normal(size=(6, 64)))
    echo = _unit(vectors + 0.05 * rng.normal(size=(6, 64)))
    template = (
        "Xi and Putin exchanged New Year greetings. Xi said {0} was an extraordinary year. "
        "Trade grew 5% to 245 billion dollars. Gas deliveries reached 38 bcm. "
        "Both sides will deepen cooperation. Xi wished the Russian people happiness."
    )
    english = Side("en", template.format(2022), vectors)
    assert verify_translation(
        english, Side("ru", template.format(2022), echo), TranslationParams()
    ).is_translation
    other_year = verify_translation(english, Side("ru", template.format(2020), echo), TranslationParams())
    assert not other_year.is_translation and other_year.number_agreement == 0.75
    assert "aligned sentences name different years (2022 against 2020)" in other_year.reason


def test_unit_numbers_skip_the_title_and_follow_the_rows() -> None:
    text = "Trade reached 245 billion dollars.\n\nNo figure here. Gas: 38 bcm a year."
    side_with_title = Side("en", text, np.zeros((4, 8), dtype=np.float32), has_title=True)
    assert side_with_title.unit_numbers == (
        frozenset(),
        frozenset({"2.45e+11"}),
        frozenset(),
        frozenset({"38"}),
    )
    cut = Side("en", text, np.zeros((2, 8), dtype=np.float32))
    assert cut.unit_numbers == (frozenset({"2.45e+11"}), frozenset())
    # More rows than the text has sentences: rows of another cut, not compared.
    other_cut = Side("en", text, np.zeros((5, 8), dtype=np.float32), has_title=True)
    assert other_cut.unit_numbers == (frozenset(),) * 5


def test_the_detail_of_a_link_records_the_margin_and_the_runs() -> None:
    original, translation = _paired_sentences(24, seed=3)
    detail = verify_translation(
        Side("en", "x", original), Side("ru", "x", translation), TranslationParams()
    ).as_detail()
    assert detail["margin"] == 0.0
    assert detail["share_in_runs"] >= 0.75 and detail["share_in_runs"] <= detail["aligned_share"]


def test_margin_lengths_out_of_order_are_a_configuration_error() -> None:
    from pipeline.errors import ConfigError
    from pipeline.settings import load_settings

    environment = {
        "SUMMITWATCH_CONFIG_DIR": str(REPO / "config"),
        "SUMMITWATCH_TRANSLATIONS__SHORT_TEXT_SENTENCES": "30",
    }
    with pytest.raises(
        ConfigError, match=r"long_text_sentences \(24\) must be at least short_text_sentences \(30\)"
    ):
        load_settings(environment)
    environment["SUMMITWATCH_TRANSLATIONS__LONG_TEXT_SENTENCES"] = "36"
    assert load_settings(environment).translation_params().long_text_sentences == 36


_MINISTERS_EN = """The foreign ministers of China and Russia met in Moscow on Thursday.
They agreed to expand grain trade, extend the power line to Heilongjiang and open two new border crossings.
The Chinese minister said the two countries are good neighbours and partners.
Both sides will work together at the United Nations, in the SCO and in BRICS.
The Russian minister thanked his guest for the visit.
They will prepare the leaders' next meeting, draft a joint statement and review the trade plan.
The talks also covered Central Asia, the Arctic and shipping on the Northern Sea Route.
The ministers agreed to add flights, ease visas for students and hold a culture year.
The Chinese minister invited his counterpart to Beijing in the spring.
The foreign ministry said the talks were frank and friendly."""
_MINISTERS_ZH = """中俄两国外长星期四在莫斯科举行会晤。
双方同意扩大粮食贸易；将输电线路延伸至黑龙江；开通两个新的边境口岸。
中方外长表示，两国是好邻居、好伙伴。
双方将在联合国、上合组织和金砖国家框架内加强合作。
俄方外长感谢客人到访。
双方将筹备两国领导人下次会晤；起草联合声明；审议贸易规划。
会谈还涉及中亚局势；北极事务；以及北方海航道航运。
两国外长同意增加航班；为留学生简化签证；举办文化年。
中方外长邀请对方今年春天访问北京。
外交部表示，会谈坦诚友好。"""


def test_a_semicolon_ends_no_sentence_in_any_script() -> None:
    from pipeline.sentences import split_sentences

    assert split_sentences("双方同意扩大粮食贸易；开通新的口岸。会谈友好。") == [
        "双方同意扩大粮食贸易；开通新的口岸。",
        "会谈友好。",
    ]
    assert split_sentences("Trade grew; talks went well. Next.") == ["Trade grew; talks went well.", "Next."]


def test_an_abbreviated_month_before_a_date_ends_no_sentence() -> None:
    from pipeline.sentences import split_sentences

    # A wire dateline is one unit, as its Chinese rendering "新华社北京12月31日电" is.
    assert split_sentences("BEIJING, Dec. 31 (Xinhua) -- Xi sent greetings. Putin replied.") == [
        "BEIJING, Dec. 31 (Xinhua) -- Xi sent greetings.",
        "Putin replied.",
    ]
    assert split_sentences("Talks on Sept. 3, 2024 ended. МОСКВА, 7 дек. 2023 года прошла встреча.") == [
        "Talks on Sept. 3, 2024 ended.",
        "МОСКВА, 7 дек. 2023 года прошла встреча.",
    ]
    # Without a day or year after it, the month's period may end the sentence.
    assert split_sentences("The deal was signed in Dec. The talks went on.") == [
        "The deal was signed in Dec.",
        "The talks went on.",
    ]


_SUMMIT_EN = (
    "Chinese President Xi Jinping met Russian President Vladimir Putin in Moscow on Tuesday. "
    "The two leaders signed a joint statement on deepening their partnership. "
    "The statement covers cooperation in energy, trade and transport. "
    "They also exchanged views on the situation in Ukraine. "
    "Putin said relations between the two countries were at their best in history. "
    "Xi invited Putin to visit China next year, and Putin accepted the invitation."
)
# The translator joined the first two sentences into one.
_SUMMIT_ZH = (
    "国家主席习近平星期二在莫斯科会见俄罗斯总统普京，两国元首签署了关于深化伙伴关系的联合声明。"
    "声明涉及能源、贸易和交通领域的合作。"
    "双方还就乌克兰局势交换了意见。"
    "普京表示，两国关系处于历史最好水平。"
    "习近平邀请普京明年访华，普京接受了邀请。"
)


def test_two_sentences_rendered_as_one_align_as_one_block() -> None:
    model = encoder.load_encoder()
    english = encoder.embed_article(model, None, _SUMMIT_EN).sentences
    chinese = encoder.embed_article(model, None, _SUMMIT_ZH).sentences
    assert (len(english), len(chinese)) == (6, 5)
    chain = crosslingual.align_blocks(english, chinese, 0.55)
    assert chain[0][:4] == (0, 2, 0, 1)  # English sentences 0 and 1 with Chinese sentence 0
    assert chain[0][4] > float(english[0] @ chinese[0])  # closer together than either alone
    verdict = verify_translation(
        Side("en", _SUMMIT_EN, english), Side("zh", _SUMMIT_ZH, chinese), TranslationParams()
    )
    assert verdict.is_translation, verdict.reason


def test_a_chinese_translation_that_lists_with_semicolons_keeps_one_unit_per_sentence() -> None:
    model = encoder.load_encoder()
    english = encoder.embed_article(
        model, "Chinese and Russian foreign ministers meet in Moscow", _MINISTERS_EN
    )
    chinese = encoder.embed_article(model, "中俄外长在莫斯科会晤", _MINISTERS_ZH)
    assert len(english.units) == len(chinese.units) == 11
    verdict = verify_translation(
        Side("en", _MINISTERS_EN, english.sentences, True),
        Side("zh", _MINISTERS_ZH, chinese.sentences, True),
        TranslationParams(),
        GAZETTEER,
    )
    assert verdict.is_translation, verdict.reason
    assert verdict.run_share >= 0.8
