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
