"""Search by meaning: cross-language search results and "related coverage".

Both compare stored document vectors (``article_vectors``, one per article: the title and
lead, see :mod:`pipeline.encoder`) with a vector by cosine similarity:

* **cross-language search**: the query is encoded with the same multilingual encoder and
  the nearest articles *written in another script* than the query (Cyrillic, Chinese,
  Latin) are added to the full-text results, marked as such. Full text already finds
  the query's own script, with stems; a vector is what links ``pipeline`` to
  ``газопровод`` and ``管道``;
* **related coverage**: the nearest other stories to an article (its own copies and
  translations excluded), in any outlet and language. The encoder puts two texts in one
  language closer than two in different languages, whatever they say, so articles in
  another language than the article's are ranked with the stories' allowance
  (``stories.similarity - stories.cross_language_similarity``) added to their cosine.

The cost is bounded: only the newest ``max_candidates`` vectors inside the date range
(served by the ``(model, moment)`` index) are read and scored with one matrix product,
and the encoder runs once per query (about 15 ms on one core once loaded).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline import encoder
from pipeline.db.schema import Article, ArticleVector
from pipeline.stories import known_language

# Chosen on the search fixtures (tests/fixtures/search, i.e. tuning data): a one- or
# two-word query meets a relevant article's title-and-lead vector at about 0.28-0.45 in
# another language, and unrelated ones below 0.25.
MIN_QUERY_SIMILARITY = 0.27
MIN_RELATED_SIMILARITY = 0.35
MAX_CANDIDATES = 20_000
RELATED_WINDOW = timedelta(days=30)

_SCRIPT_OF_LANG = {
    **dict.fromkeys(("zh", "ja", "zh-cn", "zh-tw"), "han"),
    **dict.fromkeys(("ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "mn", "tg", "tt", "ba"), "cyrillic"),
    **dict.fromkeys(("ar", "fa", "ur", "ps", "ug", "ckb", "sd"), "arabic"),
    **dict.fromkeys(("hi", "mr", "ne"), "devanagari"),
    "el": "greek",
    "he": "hebrew",
    "yi": "hebrew",
    "ko": "hangul",
    "th": "thai",
    "hy": "armenian",
    "ka": "georgian",
}
# The script named by the first word of a letter's Unicode name, where it differs.
_SCRIPT_OF_NAME = {"CJK": "han", "HIRAGANA": "han", "KATAKANA": "han"}
_KNOWN_SCRIPTS = frozenset(_SCRIPT_OF_LANG.values()) | {"latin"}


def script_of_query(text: str) -> str:
    """The script most of a query's letters are written in (``han`` for Chinese and
    Japanese, ``cyrillic``, ``arabic``, ``greek``...; ``latin`` otherwise)."""
    counts: dict[str, int] = {}
    for char in text:
        if not char.isalpha():
            continue
        first = unicodedata.name(char, "").split(" ", 1)[0]
        script = _SCRIPT_OF_NAME.get(first, first.lower())
        counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "latin"
    script = max(sorted(counts), key=counts.__getitem__)
    return script if script in _KNOWN_SCRIPTS else "latin"


def script_of_lang(lang: str) -> str:
    """The script articles in ``lang`` are written in (``latin`` unless listed)."""
    return _SCRIPT_OF_LANG.get(lang.lower(), "latin")


@dataclass(frozen=True)
class Neighbour:
    """A stored article near a vector: its id, its story (original) id, language and cosine."""

    article_id: int
    root_id: int
    lang: str
    similarity: float


@dataclass(frozen=True)
class Candidates:
    """The document vectors searched: ids, story (original) ids, languages, float32 matrix."""

    ids: list[int]
    roots: list[int]
    langs: list[str]
    matrix: np.ndarray


def load_candidates(
    session: Session,
    *,
    model: str,
    start: datetime | None,
    end: datetime | None,
    max_candidates: int = MAX_CANDIDATES,
) -> Candidates:
    """The newest ``max_candidates`` document vectors of ``model`` in [start, end)."""
    root = func.coalesce(Article.duplicate_of_id, Article.id)
    query = (
        select(ArticleVector.article_id, root, ArticleVector.lang, ArticleVector.document)
        .join(Article, Article.id == ArticleVector.article_id)
        .where(ArticleVector.model == model)
    )
    if start is not None:
        query = query.where(ArticleVector.moment >= start)
    if end is not None:
        query = query.where(ArticleVector.moment < end)
    rows = session.execute(query.order_by(ArticleVector.moment.desc()).limit(max_candidates)).all()
    if not rows:
        return Candidates([], [], [], np.zeros((0, 0), dtype=np.float32))
    matrix = np.frombuffer(b"".join(row[3] for row in rows), dtype="<f2").reshape(len(rows), -1)
    return Candidates(
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        matrix.astype(np.float32),
    )


class VectorCache:
    """Candidate vectors kept between searches for ``ttl`` seconds (the web app holds one).

    Reading 20,000 vectors costs far more than scoring them; a search then sees articles
    stored up to ``ttl`` seconds ago. At most ``entries`` date ranges are kept (about
    40 MB each at 20,000 vectors of 512 dimensions).
    """

    def __init__(self, *, ttl: float = 60.0, entries: int = 4) -> None:
        self.ttl = ttl
        self.entries = entries
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[Any, ...], tuple[float, Candidates]] = OrderedDict()

    def get(
        self,
        session: Session,
        *,
        model: str,
        start: datetime | None,
        end: datetime | None,
        max_candidates: int = MAX_CANDIDATES,
    ) -> Candidates:
        key = (str(session.get_bind().engine.url), model, start, end, max_candidates)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and now - kept[0] < self.ttl:
                self._kept.move_to_end(key)
                return kept[1]
        loaded = load_candidates(session, model=model, start=start, end=end, max_candidates=max_candidates)
        with self._lock:
            self._kept[key] = (now, loaded)
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)
        return loaded


def nearest(
    session: Session,
    vector: np.ndarray,
    *,
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    max_candidates: int = MAX_CANDIDATES,
    min_similarity: float = 0.0,
    exclude_roots: Sequence[int] = (),
    langs_excluded_by_script: str | None = None,
    limit: int = 20,
    cache: VectorCache | None = None,
    language: str | None = None,
    cross_language_allowance: float = 0.0,
) -> list[Neighbour]:
    """The stories nearest ``vector`` (the best member of each), most similar first.

    Scores at most ``max_candidates`` vectors, the newest in [start, end), those whose
    cosine reaches ``min_similarity``. With ``language``, a candidate in another known
    language is ranked with ``cross_language_allowance`` added to its cosine; the
    neighbours' ``similarity`` stays the cosine.
    """
    if cache is not None:
        found = cache.get(session, model=model, start=start, end=end, max_candidates=max_candidates)
    else:
        found = load_candidates(session, model=model, start=start, end=end, max_candidates=max_candidates)
    if not found.ids:
        return []
    cosines = found.matrix @ np.asarray(vector, dtype=np.float32)
    scores = cosines.astype(np.float64)
    own = known_language(language)
    if cross_language_allowance and own is not None:
        codes = [known_language(lang) for lang in found.langs]
        other = np.array([code is not None and code != own for code in codes])
        scores[other] += cross_language_allowance
    excluded = set(exclude_roots)
    best: dict[int, Neighbour] = {}
    # The floor is on the cosine: the allowance reorders what is close enough, it does
    # not bring in what is not.
    above = np.flatnonzero(cosines >= min_similarity)
    for index in above[np.argsort(-scores[above], kind="stable")]:
        if len(best) >= limit:
            break
        root_id, lang = found.roots[index], found.langs[index]
        if root_id in excluded or root_id in best:
            continue
        if langs_excluded_by_script is not None and script_of_lang(lang) == langs_excluded_by_script:
            continue
        best[root_id] = Neighbour(found.ids[index], root_id, lang, round(float(cosines[index]), 4))
    return list(best.values())


def encode_query(
    text: str, model: str, threads: int = 1, cache_dir: Path | None = None
) -> tuple[str, np.ndarray]:
    """The query's vector under the configured encoder, with the encoder's name."""
    loaded = encoder.load_encoder(model, threads=threads, cache_dir=cache_dir)
    return loaded.name, loaded.encode([text])[0]


def related_to(
    session: Session, article: Article, *, limit: int = 8, cross_language_allowance: float = 0.0
) -> list[Neighbour]:
    """The nearest other stories to ``article`` published within a month of it; those in
    other languages ranked with ``cross_language_allowance`` (see the module's notes)."""
    stored = session.get(ArticleVector, article.id)
    if stored is None:
        return []
    moment = article.published_at or article.first_seen_at
    root = article.duplicate_of_id or article.id
    return nearest(
        session,
        encoder.document_from_bytes(stored.document),
        model=stored.model,
        start=moment - RELATED_WINDOW,
        end=moment + RELATED_WINDOW,
        min_similarity=MIN_RELATED_SIMILARITY,
        exclude_roots=[root],
        limit=limit,
        language=article.lang,
        cross_language_allowance=cross_language_allowance,
    )
