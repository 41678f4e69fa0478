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

The encoder puts two texts in one language closer than two in different languages,
whatever they say: reports of one event in two languages are about as alike as reports
of two events in one. So two articles in different languages are held to
``cross_language_similarity`` instead: their cosine counts as if it were higher by the
difference between the two thresholds (in a mixed group's mean too). An article whose
language is unknown is held to ``similarity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from pipeline.language import normalise_code


@dataclass(frozen=True)
class StoryItem:
    """One article to group: its id, document vector (None if it has none) and moment."""

    article_id: int
    vector: NDArray[np.float32] | None
    moment: datetime
    lang: str | None = None  # None or "und": unknown


def known_language(code: str | None) -> str | None:
    """``code`` as one language (``en-US`` and ``EN`` are ``en``), or None when it says
    nothing: none, malformed or ``und``."""
    language = normalise_code(code)
    return None if language == "und" else language


def group_stories(
    items: Sequence[StoryItem],
    *,
    similarity: float,
    window_hours: float,
    cross_language_similarity: float | None = None,
) -> list[list[int]]:
    """Article ids grouped into stories.

    Each story lists its ids by moment (then id); stories are ordered by their earliest
    article. An article without a vector is a story of its own. ``cross_language_similarity``
    (default: ``similarity``) is the threshold for two articles in different languages.
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

    # Average linkage kept incrementally: the sum of the similarities between every two
    # groups (a merged group's row is the sum of its parts' rows) and whether every pair
    # of their articles is close enough in time. Each merge costs O(n) updates and one
    # O(n^2) search for the best pair, instead of recomputing every group pair's mean.
    sums = pair.astype(np.float64)
    if cross_language_similarity is not None and cross_language_similarity != similarity:
        languages = [known_language(item.lang) for item in ordered]
        known = np.array([lang is not None for lang in languages])
        codes = np.unique(np.array([str(lang) for lang in languages]), return_inverse=True)[1]
        across = known[:, None] & known[None, :] & (codes[:, None] != codes[None, :])
        sums[across] += similarity - cross_language_similarity
    mergeable = np.triu(allowed, k=1)  # (a, b) with a < b: each pair once, never a group with itself
    sizes = np.ones(n, dtype=np.float64)
    scores = sums.copy()
    members: list[list[int]] = [[i] for i in range(n)]
    while True:
        candidates = np.where(mergeable & (scores >= similarity), scores, -np.inf)
        flat = int(np.argmax(candidates))  # (the first best pair in (a, b) order on ties)
        if candidates.flat[flat] == -np.inf:
            break
        a, b = divmod(flat, n)
        members[a] = sorted(members[a] + members[b])
        members[b] = []
        sums[a, :] += sums[b, :]
        sums[:, a] += sums[:, b]
        allowed[a, :] &= allowed[b, :]
        allowed[:, a] &= allowed[:, b]
        allowed[b, :] = allowed[:, b] = False
        sizes[a] += sizes[b]
        # Group b is gone; group a is merged with nothing before it (rows above a) or after.
        mergeable[b, :] = mergeable[:, b] = False
        mergeable[a, a + 1 :] = allowed[a, a + 1 :]
        mergeable[:a, a] = allowed[:a, a]
        scores[a, :] = sums[a, :] / (sizes[a] * sizes)
        scores[:, a] = scores[a, :]
    groups = [group for group in members if group]
    # Each group's indices are ascending, i.e. by moment; stories by their first article.
    return [[ordered[i].article_id for i in group] for group in sorted(groups)]
