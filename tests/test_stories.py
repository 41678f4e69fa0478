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


def _reference_grouping(items: list[StoryItem], similarity: float, window_hours: float) -> list[list[int]]:
    """Average linkage by its definition: every group pair's mean similarity recomputed at
    each merge, the best pair (the first in list order on ties) merged while it reaches
    ``similarity`` and all its articles are within ``window_hours`` of each other."""
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
                values.append(float(x.vector @ y.vector))
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
    for trial in range(40):
        count = int(rng.integers(2, 40))
        centres = rng.standard_normal((max(1, count // 4), 16))
        items = []
        for article_id in range(count):
            if rng.random() < 0.1:
                vector = None
            else:
                vector = unit(list(centres[article_id % len(centres)] + rng.normal(0, 0.8, 16)))
            moment = NOW + timedelta(hours=float(rng.integers(0, 120)))
            items.append(StoryItem(int(rng.integers(0, 10_000)) * 100 + article_id, vector, moment))
        threshold = float(rng.choice([0.3, 0.5, 0.7]))
        expected = _reference_grouping(items, threshold, 72)
        assert group_stories(items, similarity=threshold, window_hours=72) == expected, trial
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
