"""Stories: articles about one event, from any outlet and in any language, grouped for reading.

A pure stage over document vectors and publication times. A *story* is not a *copy*:
copies are the same text and count once; a story's articles are different texts and
each still counts. Stories only decide how articles are shown together (the digest, the
web UI), so that one event that moved two series is read once.

Grouping is average-linkage agglomerative clustering on cosine similarity, restricted
to articles published within ``window_hours`` of each other: two groups merge while the
mean similarity between their articles reaches ``similarity``. Average linkage keeps a
chain of loosely related articles (summit → pipeline → payments) from collapsing into
one story, which single linkage would do. The result does not depend on input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class StoryItem:
    """One article to group: its id, document vector (None if it has none) and moment."""

    article_id: int
    vector: NDArray[np.float32] | None
    moment: datetime


def group_stories(items: Sequence[StoryItem], *, similarity: float, window_hours: float) -> list[list[int]]:
    """Article ids grouped into stories.

    Each story lists its ids by moment (then id); stories are ordered by their earliest
    article. An article without a vector is a story of its own.
    """
    ordered = sorted(items, key=lambda item: (item.moment, item.article_id))
    n = len(ordered)
    if n == 0:
        return []
    dim = next((item.vector.shape[0] for item in ordered if item.vector is not None), 1)
    vectors = np.zeros((n, dim), dtype=np.float32)
    has_vector = np.zeros(n, dtype=bool)
    for index, item in enumerate(ordered):
        if item.vector is not None and item.vector.shape[0] == dim:
            vectors[index] = item.vector
            has_vector[index] = True
    pair = vectors @ vectors.T
    hours = np.array([item.moment.timestamp() / 3600.0 for item in ordered])
    close_in_time = np.abs(hours[:, None] - hours[None, :]) <= window_hours
    allowed = close_in_time & has_vector[:, None] & has_vector[None, :]

    groups: list[list[int]] = [[i] for i in range(n)]
    while True:
        best: tuple[float, int, int] | None = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                rows, cols = groups[a], groups[b]
                if not allowed[np.ix_(rows, cols)].all():
                    continue
                score = float(pair[np.ix_(rows, cols)].mean())
                if score >= similarity and (best is None or score > best[0]):
                    best = (score, a, b)
        if best is None:
            break
        _, a, b = best
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    # Each group's indices are ascending, i.e. by moment; stories by their first article.
    return [[ordered[i].article_id for i in group] for group in sorted(groups)]
