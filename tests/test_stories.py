"""Grouping articles into stories: by document vectors and time, independent of order."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from pipeline import encoder
from pipeline.stories import StoryItem, group_stories

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STORY = json.loads((Path(__file__).parent / "fixtures" / "semantic" / "story_yuan.json").read_text())
OTHER_EVENTS = [
    (
        "Russian and Chinese warships begin joint patrol in the Pacific",
        "Ships of the Russian Pacific Fleet and the Chinese navy started a joint patrol near Japan. "
        "The exercise includes artillery firing and anti-submarine drills, the defence ministry said.",
    ),
    (
        "Хоккей: «Ак Барс» обыграл «Металлург» в овертайме",
        "Казанский «Ак Барс» победил магнитогорский «Металлург» со счетом 3:2 в овертайме. "
        "Победную шайбу забросил нападающий хозяев на 64-й минуте.",
    ),
]


def unit(vector: list[float]) -> np.ndarray:
    array = np.array(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


def test_close_vectors_in_time_group_and_far_ones_do_not() -> None:
    items = [
        StoryItem(1, unit([1, 0.1, 0]), NOW),
        StoryItem(2, unit([1, 0, 0.1]), NOW + timedelta(hours=5)),
        StoryItem(3, unit([0, 1, 0]), NOW + timedelta(hours=1)),
        StoryItem(4, unit([1, 0.05, 0.05]), NOW + timedelta(days=10)),  # same subject, much later
        StoryItem(5, None, NOW),  # no vector: a story of its own
    ]
    stories = group_stories(items, similarity=0.8, window_hours=72)
    assert sorted(map(sorted, stories)) == [[1, 2], [3], [4], [5]]
    # Stories come in order of their first article; ids inside by time.
    assert stories[0] == [1, 2] or stories[0] == [5]
    assert stories == group_stories(list(reversed(items)), similarity=0.8, window_hours=72)


def test_average_linkage_does_not_chain_loose_neighbours() -> None:
    # a~b and b~c are close, a and c are not: average linkage keeps c out of {a, b}.
    a, b, c = unit([1, 0, 0]), unit([1, 0.75, 0]), unit([0.2, 1, 0])
    items = [StoryItem(i, v, NOW) for i, v in enumerate((a, b, c), 1)]
    assert float(b @ c) > 0.7 and float(a @ c) < 0.3
    for order in itertools.permutations(items):
        assert sorted(map(sorted, group_stories(list(order), similarity=0.7, window_hours=72))) == [
            [1, 2],
            [3],
        ]


def test_reports_of_one_event_in_three_languages_form_one_story() -> None:
    model = encoder.load_encoder()
    items = []
    for number, key in enumerate(("en", "ru", "zh", "ru_other"), 1):
        vectors = encoder.embed_article(model, STORY[key]["title"], STORY[key]["text"])
        items.append(StoryItem(number, vectors.document, NOW + timedelta(hours=number)))
    for number, (title, text) in enumerate(OTHER_EVENTS, 10):
        items.append(StoryItem(number, encoder.embed_article(model, title, text).document, NOW))
    stories = group_stories(items, similarity=0.5, window_hours=72)
    assert sorted(map(sorted, stories)) == [[1, 2, 3, 4], [10], [11]]
    assert group_stories([], similarity=0.5, window_hours=72) == []


def _reference_grouping(
    items: list[StoryItem], similarity: float, window_hours: float, cross_language: float | None = None
) -> list[list[int]]:
    """Average linkage by its definition: every group pair's mean similarity recomputed at
    each merge, the best pair (the first in list order on ties) merged while it reaches
    ``similarity`` and all its articles are within ``window_hours`` of each other. Two
    articles in different known languages count ``similarity - cross_language`` more."""
    offset = 0.0 if cross_language is None else similarity - cross_language
    ordered = sorted(items, key=lambda item: (item.moment, item.article_id))
    groups = [[item] for item in ordered]

    def mean_similarity(first: list[StoryItem], second: list[StoryItem]) -> float | None:
        values = []
        for x in first:
            for y in second:
                if x.vector is None or y.vector is None:
                    return None
                if abs((x.moment - y.moment).total_seconds()) > window_hours * 3600:
                    return None
                known = x.lang not in (None, "", "und") and y.lang not in (None, "", "und")
                across = known and x.lang.split("-")[0].lower() != y.lang.split("-")[0].lower()
                values.append(float(x.vector @ y.vector) + (offset if across else 0.0))
        return sum(values) / len(values)

    while True:
        best: tuple[float, int, int] | None = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                score = mean_similarity(groups[a], groups[b])
                if score is not None and score >= similarity and (best is None or score > best[0] + 1e-9):
                    best = (score, a, b)
        if best is None:
            break
        _, a, b = best
        groups[a] = groups[a] + groups[b]
        del groups[b]
    keyed = [sorted(group, key=lambda item: (item.moment, item.article_id)) for group in groups]
    keyed.sort(key=lambda group: (group[0].moment, group[0].article_id))
    return [[item.article_id for item in group] for group in keyed]


def test_grouping_matches_average_linkage_by_its_definition() -> None:
    rng = np.random.default_rng(7)
    merged = 0
    for trial in range(60):
        # A third of the trials hold articles in other languages to another threshold.
        cross = None if trial % 3 else float(rng.choice([0.1, 0.25, 0.45]))
        count = int(rng.integers(2, 40))
        centres = rng.standard_normal((max(1, count // 4), 16))
        items = []
        for article_id in range(count):
            if rng.random() < 0.1:
                vector = None
            else:
                vector = unit(list(centres[article_id % len(centres)] + rng.normal(0, 0.8, 16)))
            moment = NOW + timedelta(hours=float(rng.integers(0, 120)))
            lang = ["en", "ru", "zh", "und", None, "", "zh-CN", "EN"][int(rng.integers(0, 8))]
            items.append(StoryItem(int(rng.integers(0, 10_000)) * 100 + article_id, vector, moment, lang))
        threshold = float(rng.choice([0.3, 0.5, 0.7]))
        expected = _reference_grouping(items, threshold, 72, cross)
        got = group_stories(items, similarity=threshold, window_hours=72, cross_language_similarity=cross)
        assert got == expected, trial
        merged += any(len(story) > 1 for story in expected)
    assert merged >= 20  # (the trials do merge groups, not only leave singletons)
    # Identical vectors tie everywhere: the first pair in time order merges first, and all end as one.
    same = [StoryItem(i, unit([1, 1, 0]), NOW + timedelta(hours=i)) for i in range(6)]
    assert group_stories(same, similarity=0.9, window_hours=72) == [[0, 1, 2, 3, 4, 5]]


def test_a_large_digest_is_grouped_whole() -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((100, 64))
    items = [
        StoryItem(i, unit(list(centres[i % 100] + rng.normal(0, 0.5, 64))), NOW + timedelta(hours=i % 48))
        for i in range(600)
    ]
    stories = group_stories(items, similarity=0.6, window_hours=72)
    assert sorted(i for story in stories for i in story) == list(range(600))
    assert 90 <= len(stories) <= 200


def test_articles_in_other_languages_are_held_to_their_own_threshold() -> None:
    # Two pairs at the same cosine (0.56): one across languages, one within a language.
    base = unit([1, 0, 0])
    near = unit([0.56, float(np.sqrt(1 - 0.56**2)), 0])
    assert abs(float(base @ near) - 0.56) < 1e-6

    def grouped(first: str | None, second: str | None, cross: float | None) -> list[list[int]]:
        items = [StoryItem(1, base, NOW, first), StoryItem(2, near, NOW + timedelta(hours=1), second)]
        return group_stories(items, similarity=0.6, window_hours=72, cross_language_similarity=cross)

    assert grouped("en", "zh", 0.53) == [[1, 2]]
    assert grouped("en", "zh", 0.58) == [[1], [2]]  # 0.56 is below that too
    assert grouped("en", "zh", None) == [[1], [2]]  # without it, the one threshold
    assert grouped("en", "en", 0.53) == [[1], [2]]  # the same language: `similarity`
    # An unknown language is held to `similarity`: "und" says nothing about the encoder's bias.
    assert grouped("en", "und", 0.53) == [[1], [2]]
    assert grouped(None, "zh", 0.53) == [[1], [2]]
    # Codes are compared as languages: "zh-CN" is Chinese, "EN" English.
    assert grouped("zh", "zh-CN", 0.53) == [[1], [2]]
    assert grouped("EN", "en", 0.53) == [[1], [2]]
    assert grouped("en", "zh-CN", 0.53) == [[1, 2]]


def test_a_mixed_group_averages_the_adjusted_similarities() -> None:
    # en-1 and en-2 are one story; zh-3 is 0.56 from each. Across languages that counts as
    # 0.63 (0.56 + 0.6 - 0.53): the mean reaches 0.6 and the three are one story.
    a = unit([1, 0, 0])
    b = unit([0.9, float(np.sqrt(1 - 0.81)), 0])
    # c is 0.56 from both a and b.
    c_x = 0.56
    c_y = (0.56 - c_x * float(b[0])) / float(b[1])
    c = np.array([c_x, c_y, float(np.sqrt(max(0.0, 1 - c_x**2 - c_y**2)))], dtype=np.float32)
    assert abs(float(a @ c) - 0.56) < 1e-3 and abs(float(b @ c) - 0.56) < 1e-3
    items = [StoryItem(1, a, NOW, "en"), StoryItem(2, b, NOW, "en"), StoryItem(3, c, NOW, "zh")]
    assert group_stories(items, similarity=0.6, window_hours=72, cross_language_similarity=0.53) == [
        [1, 2, 3]
    ]
    # With one English article's vector unknown-language, the mean of its pairs is lower:
    # (0.56 + 0.63) / 2 = 0.595 < 0.6, and the Chinese report stays apart.
    items[1] = StoryItem(2, b, NOW, None)
    assert group_stories(items, similarity=0.6, window_hours=72, cross_language_similarity=0.53) == [
        [1, 2],
        [3],
    ]
