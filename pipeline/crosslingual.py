"""Is one article a translation of another? Sentence alignment plus language-free evidence.

A pure stage over vectors and texts. Whole-document similarity cannot separate a
translation from another outlet's report of the same event in another language: both
are about the same people, place and day. What a translation has, and a separate report
has not, is *the same sentences in the same order*: the heaviest chain of sentence
blocks that runs forward in both texts (:func:`align_blocks`; a block is a sentence with
its rendering, or two sentences a translator merged or split) covers most of the shorter
text, in runs of consecutive blocks, where two reports quoting one statement match in
isolated places. In a short text each block must also stand out from its rivals; in a
long one that margin fades out (see :func:`required_margin`).
Numbers and amounts (whatever the script and unit words: "50 billion", "50 млрд",
"500亿") and named entities (through a small trilingual gazetteer) must agree too.

:func:`verify_translation` measures all of it and decides with explicit thresholds
(``translations`` in ``config/semantic.yaml``); the measurements are returned so the
decision can be stored and shown.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from pipeline import yamlfile
from pipeline.errors import ConfigError
from pipeline.sentences import content_sentences

Matrix = NDArray[np.float32]
Block = tuple[int, int, int, int, float]  # rows i0:i1 of one text with rows j0:j1 of the other, cosine


@dataclass(frozen=True)
class TranslationParams:
    """Thresholds of the translation test (``translations`` in ``config/semantic.yaml``)."""

    sentence_similarity: float = 0.55
    min_margin: float = 0.15
    short_text_sentences: int = 8
    long_text_sentences: int = 24
    min_aligned_share: float = 0.5
    min_aligned_sentences: int = 3
    min_run_share: float = 0.5
    min_number_agreement: float = 0.5
    min_sentence_number_agreement: float = 0.5
    max_length_ratio: float = 3.0


@dataclass(frozen=True)
class Side:
    """One article as the translation test sees it.

    The language-free evidence of its text (numbers, length, gazetteer names) is computed
    on first use and kept: the new article of an ingest is one ``Side`` checked against
    every candidate, so its text is read once, not once per candidate.
    """

    lang: str
    text: str
    sentences: Matrix  # one L2-normalised row per unit (title first when has_title)
    has_title: bool = False
    _entities: dict[int, tuple[Gazetteer, frozenset[str]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @cached_property
    def numbers(self) -> frozenset[str]:
        """:func:`extract_numbers` of the text."""
        return _numbers_of(self.text)

    @cached_property
    def unit_numbers(self) -> tuple[frozenset[str], ...]:
        """The numbers of each row's unit (none for the title), in row order.

        The units are the text's sentences as the encoder cut them
        (:func:`pipeline.sentences.content_sentences`), so row i's numbers are those of the
        sentence whose vector row i is.
        """
        rows = len(self.sentences)
        title = 1 if self.has_title and rows else 0
        body = content_sentences(self.text)[: rows - title]
        if title + len(body) < rows:
            # Rows stored when sentences were cut differently (before `reindex`): which
            # sentence a row is cannot be told, so no sentence's numbers are compared.
            return (frozenset(),) * rows
        return (frozenset(),) * title + tuple(frozenset(extract_numbers(sentence)) for sentence in body)

    @cached_property
    def weight(self) -> float:
        """:func:`content_weight` of the text."""
        return _weight_of(self.text)

    def entities(self, gazetteer: Gazetteer) -> frozenset[str]:
        """The ``gazetteer`` entries named in the text."""
        cached = self._entities.get(id(gazetteer))
        if cached is None or cached[0] is not gazetteer:
            cached = (gazetteer, frozenset(gazetteer.entities(self.text, self.lang)))
            self._entities[id(gazetteer)] = cached
        return cached[1]


@dataclass(frozen=True)
class TranslationVerdict:
    """The measurements behind a translation decision, and the decision."""

    is_translation: bool
    reason: str
    aligned: int
    share: float
    mean_similarity: float
    blocks: int
    number_agreement: float | None
    numbers_compared: int
    entity_agreement: float | None
    length_ratio: float
    best_blocks: tuple[Block, ...] = field(default=())
    margin: float = 0.0
    run_share: float = 0.0

    def as_detail(self) -> dict[str, Any]:
        """A JSON-ready record of the decision, stored with the copy."""
        return {
            "method": "sentence-alignment",
            "reason": self.reason,
            "aligned_sentences": self.aligned,
            "aligned_share": round(self.share, 3),
            "mean_similarity": round(self.mean_similarity, 3),
            "aligned_blocks": self.blocks,
            "number_agreement": None if self.number_agreement is None else round(self.number_agreement, 3),
            "numbers_compared": self.numbers_compared,
            "entity_agreement": None if self.entity_agreement is None else round(self.entity_agreement, 3),
            "length_ratio": round(self.length_ratio, 2),
            "margin": round(self.margin, 3),
            "share_in_runs": round(self.run_share, 3),
        }


# A merged pair (a 2-1 or 1-2 block) stands for one sentence split in two only when each
# half relates to the other side's sentence by itself (cosine >= _MERGE_PART_SIMILARITY;
# unrelated sentences on one subject sit near 0.1 with this encoder) and the pair matches
# nearly as well as its better half alone (within _MERGE_SLACK). Otherwise a good match
# padded with a neighbour would count as two aligned sentences.
_MERGE_PART_SIMILARITY = 0.2
_MERGE_SLACK = 0.1


def _merge_weights(
    merged: NDArray[np.float64], first: NDArray[np.float64], second: NDArray[np.float64], threshold: float
) -> NDArray[np.float64]:
    """Chain weights of merged pairs (-inf where a merge is not allowed), given the merged
    cosines and those of each half alone."""
    usable = (
        (merged >= threshold)
        & (np.minimum(first, second) >= _MERGE_PART_SIMILARITY)
        & (merged >= np.maximum(first, second) - _MERGE_SLACK)
    )
    return np.where(usable, 2 * (merged - threshold), -np.inf)


def align_blocks(a: Matrix, b: Matrix, threshold: float, similarity: Matrix | None = None) -> list[Block]:
    """The heaviest chain of sentence blocks that runs forward in both texts.

    A block is one sentence with one (1-1), or two consecutive sentences of one text with
    one of the other (2-1, 1-2: a translator merges or splits sentences), at cosine
    ``threshold`` or more; a merged pair is compared as the normalised sum of its two
    vectors, and only when each half relates to the other side by itself and the pair
    matches nearly as well as its better half (see ``_MERGE_SLACK``). A block weighs
    (cosine - ``threshold``) per sentence it covers, and the chain
    maximises the total weight, each block starting after the previous one ends in both
    texts, skipping what it likes at no cost (partial translations, a lead added or
    dropped). Order is part of the definition, not a check: one quoted sentence out of
    place cannot join the chain of a translation's other sentences.

    Dynamic programming over the similarity matrix (``a @ b.T``, computed unless given),
    one vectorised row at a time (the best chain of the first ``i`` and ``j`` sentences is
    a running maximum along the row).
    """
    rows, cols = len(a), len(b)
    if rows == 0 or cols == 0:
        return []
    if rows > cols:  # the loop runs over rows: fewer iterations the other way round
        flipped = align_blocks(b, a, threshold, None if similarity is None else similarity.T)
        return [(i0, i1, j0, j1, value) for j0, j1, i0, i1, value in flipped]
    cosine: NDArray[np.float64] = np.asarray(a @ b.T if similarity is None else similarity, dtype=np.float64)
    single = np.where(cosine >= threshold, cosine - threshold, -np.inf)
    merged_a = merged_b = None
    if rows > 1:  # rows i, i+1 of ``a`` with row j of ``b``
        norm = np.sqrt(np.maximum(2.0 + 2.0 * np.einsum("ij,ij->i", a[:-1], a[1:]), 1e-12))
        merged_a = (cosine[:-1] + cosine[1:]) / norm[:, None]
    if cols > 1:  # row i of ``a`` with rows j, j+1 of ``b``
        norm = np.sqrt(np.maximum(2.0 + 2.0 * np.einsum("ij,ij->i", b[:-1], b[1:]), 1e-12))
        merged_b = (cosine[:, :-1] + cosine[:, 1:]) / norm[None, :]
    weight_a = None if merged_a is None else _merge_weights(merged_a, cosine[:-1], cosine[1:], threshold)
    weight_b = (
        None if merged_b is None else _merge_weights(merged_b, cosine[:, :-1], cosine[:, 1:], threshold)
    )

    # best[i, j]: the heaviest chain within a's first i and b's first j sentences. Row i is
    # the best of skipping a's sentence i - 1 and of ending a block there, then a running
    # maximum along the row (skipping b's sentences).
    best = np.zeros((rows + 1, cols + 1))
    for i in range(1, rows + 1):
        row = best[i - 1].copy()
        np.maximum(row[1:], best[i - 1, :-1] + single[i - 1], out=row[1:])
        if weight_a is not None and i >= 2:
            np.maximum(row[1:], best[i - 2, :-1] + weight_a[i - 2], out=row[1:])
        if weight_b is not None:
            np.maximum(row[2:], best[i - 1, :-2] + weight_b[i - 1], out=row[2:])
        best[i] = np.maximum.accumulate(row)
    # Walk back from the end, taking at each cell a step whose value it holds (the same
    # floating-point sums as above, so equality is exact).
    blocks: list[Block] = []
    i, j = rows, cols
    while i > 0 and j > 0 and best[i, j] > 0:
        value = best[i, j]
        if value == best[i, j - 1]:
            j -= 1
        elif value == best[i - 1, j]:
            i -= 1
        elif value == best[i - 1, j - 1] + single[i - 1, j - 1]:
            blocks.append((i - 1, i, j - 1, j, float(cosine[i - 1, j - 1])))
            i, j = i - 1, j - 1
        elif i >= 2 and weight_a is not None and value == best[i - 2, j - 1] + weight_a[i - 2, j - 1]:
            blocks.append((i - 2, i, j - 1, j, float(merged_a[i - 2, j - 1])))  # type: ignore[index]
            i, j = i - 2, j - 1
        else:
            blocks.append((i - 1, i, j - 2, j, float(merged_b[i - 1, j - 2])))  # type: ignore[index]
            i, j = i - 1, j - 2
    blocks.reverse()
    return blocks


def coverable_units(similarity: Matrix, threshold: float) -> int:
    """How many sentences of the text on the rows of ``similarity`` any block could cover: an
    upper bound on what :func:`align_blocks` aligns, found without running it.

    A sentence joins a block with its best cosine at ``threshold - _MERGE_SLACK`` or more
    (a merged pair matches at most that much better than its better half), or as the
    weaker half of a merged pair (at ``_MERGE_PART_SIMILARITY`` or more) beside such a
    sentence.
    """
    if similarity.size == 0:
        return 0
    best = similarity.max(axis=1)
    close = best >= threshold - _MERGE_SLACK
    beside = np.zeros_like(close)
    beside[1:] |= close[:-1]
    beside[:-1] |= close[1:]
    return int((close | (beside & (best >= _MERGE_PART_SIMILARITY))).sum())


def block_margins(similarity: Matrix, blocks: Sequence[Block]) -> list[float]:
    """How far each block's cosine stands above its best rival: any other sentence of
    either text compared with one of the block's sentences."""
    margins = []
    rows, cols = similarity.shape
    for i0, i1, j0, j1, value in blocks:
        rival = -1.0
        band = similarity[i0:i1]
        if cols > j1 - j0:
            rival = max(rival, float(np.max(np.delete(band, np.s_[j0:j1], axis=1))))
        column = similarity[:, j0:j1]
        if rows > i1 - i0:
            rival = max(rival, float(np.max(np.delete(column, np.s_[i0:i1], axis=0))))
        margins.append(value - rival)
    return margins


def required_margin(shorter: int, params: TranslationParams) -> float:
    """The margin an aligned block needs when the shorter text has ``shorter`` units.

    ``min_margin`` up to ``short_text_sentences`` units (the title counts), none from
    ``long_text_sentences`` on, linear in between. In a short text a few sentences on the
    same subject as the other text's (a shared quotation, the same names and date) can
    align by themselves, so each block must stand out from its rivals.
    In a long text the evidence is the number of sentences that align in order and in
    runs, and the full margin would do harm: a long article on one subject has many
    sentences about as close to a given sentence as its translation is. Measured on the
    tuning set's pairs joined two at a time (every combination: 261 translations, 3,494
    non-translations) with the first alignment (mutual best matches), the full margin at
    every length found 23 translations; no margin from 12 units on found 82 with 11 wrong
    links; this schedule found 62 with none (108 with the chain of blocks).
    """
    low, high = params.short_text_sentences, params.long_text_sentences
    if shorter <= low:
        return params.min_margin
    if shorter >= high:
        return 0.0
    return params.min_margin * (high - shorter) / (high - low)


def chained_runs(blocks: Sequence[Block], on_a: bool) -> int:
    """Sentences (of ``a`` when ``on_a``, else of ``b``) in blocks that touch a neighbouring
    block in both texts: a translation aligns in runs, two reports that share a quotation
    or a few facts in isolated places."""
    ends = {(i1, j1) for _, i1, _, j1, _ in blocks}
    starts = {(i0, j0) for i0, _, j0, _, _ in blocks}
    return sum(
        (i1 - i0) if on_a else (j1 - j0)
        for i0, i1, j0, j1, _ in blocks
        if (i0, j0) in ends or (i1, j1) in starts
    )


def block_number_agreement(blocks: Sequence[Block], a: Side, b: Side) -> tuple[float | None, int, str | None]:
    """Share of aligned blocks, among those with numbers on both sides, whose numbers agree
    (half of the smaller set at least); how many were compared; and the first block whose
    *years* contradict each other, if any ("2022 / 2020").

    A translated sentence carries its figures; two templated texts (New Year messages of
    different years, a forecast, market closes) align sentence by sentence on their
    wording while their figures differ. Years are the sharpest case: a translation never
    changes one, so a block with years on both sides and none in common is a different
    text, whatever the rest says.
    """
    left, right = a.unit_numbers, b.unit_numbers
    compared = agreeing = 0
    contradiction = None
    for i0, i1, j0, j1, _ in blocks:
        first = frozenset().union(*left[i0:i1])
        second = frozenset().union(*right[j0:j1])
        if not first or not second:
            continue
        compared += 1
        agreeing += 2 * len(first & second) >= min(len(first), len(second))
        years_a, years_b = _years(first), _years(second)
        if contradiction is None and years_a and years_b and not years_a & years_b:
            contradiction = f"{'/'.join(sorted(years_a))} against {'/'.join(sorted(years_b))}"
    return (agreeing / compared if compared else None), compared, contradiction


def _years(numbers: Set[str]) -> set[str]:
    return {n for n in numbers if len(n) == 4 and n.isdigit() and n[:2] in ("19", "20")}


def verify_translation(
    a: Side, b: Side, params: TranslationParams, gazetteer: Gazetteer | None = None
) -> TranslationVerdict:
    """Decide whether ``a`` and ``b`` (in different languages) are translations of each other.

    Partial and abridged translations count: shares are taken over the shorter side.
    """
    shorter = min(len(a.sentences), len(b.sentences))
    on_a = len(a.sentences) <= len(b.sentences)
    margin = required_margin(shorter, params)
    similarity = a.sentences @ b.sentences.T
    reachable = coverable_units(similarity if on_a else similarity.T, params.sentence_similarity)
    if reachable < params.min_aligned_share * shorter or reachable < min(
        params.min_aligned_sentences, shorter
    ):
        blocks = []  # not enough of the shorter text is close to anything: no chain can do
    else:
        chain = align_blocks(a.sentences, b.sentences, params.sentence_similarity, similarity)
        margins = block_margins(similarity, chain)
        blocks = [block for block, m in zip(chain, margins, strict=True) if m >= margin]
    aligned = sum((i1 - i0) if on_a else (j1 - j0) for i0, i1, j0, j1, _ in blocks)
    share = aligned / shorter if shorter else 0.0
    mean_similarity = sum(block[4] for block in blocks) / len(blocks) if blocks else 0.0
    runs = chained_runs(blocks, on_a)
    run_share = runs / shorter if shorter else 0.0
    number_agreement, compared = _agreement(a.numbers, b.numbers)
    entity_agreement = None
    if gazetteer is not None:
        entity_agreement, _ = _agreement(a.entities(gazetteer), b.entities(gazetteer))
    weight_a, weight_b = a.weight, b.weight
    length_ratio = max(weight_a, weight_b) / max(min(weight_a, weight_b), 1.0)

    failures = []
    if len(blocks) < min(params.min_aligned_sentences, shorter) or not blocks:
        failures.append(f"{len(blocks)} aligned blocks")
    if share < params.min_aligned_share:
        failures.append(f"aligned share {share:.2f} < {params.min_aligned_share:g}")
    if run_share < params.min_run_share:
        failures.append(f"share in runs {run_share:.2f} < {params.min_run_share:g}")
    if number_agreement is not None and number_agreement < params.min_number_agreement:
        failures.append(f"numbers agree {number_agreement:.2f} < {params.min_number_agreement:g}")
    # A long text is never a translation of a much shorter one *in full*; as an abridged
    # translation it must still align most of the shorter side, checked above. What the
    # ratio guards is a short text (a brief) that happens to echo a few sentences of a
    # long one: then at least three blocks must align.
    if length_ratio > params.max_length_ratio and len(blocks) < 3:
        failures.append(f"length ratio {length_ratio:.1f} with only {len(blocks)} aligned blocks")
    if not failures:
        # Read sentence by sentence, so only for a pair that passed everything else.
        block_numbers, block_pairs, years = block_number_agreement(blocks, a, b)
        if block_numbers is not None and block_numbers < params.min_sentence_number_agreement:
            failures.append(
                f"numbers agree in {block_numbers:.2f} of {block_pairs} aligned sentence "
                f"pairs < {params.min_sentence_number_agreement:g}"
            )
        if years is not None:
            failures.append(f"aligned sentences name different years ({years})")
    is_translation = not failures
    reason = (
        f"{aligned} of {shorter} sentences align in order, {runs} of them in runs "
        f"(mean similarity {mean_similarity:.2f})"
        + (f", {compared} numbers agree {number_agreement:.0%}" if number_agreement is not None else "")
        if is_translation
        else "not a translation: " + "; ".join(failures)
    )
    return TranslationVerdict(
        is_translation,
        reason,
        aligned,
        share,
        mean_similarity,
        len(blocks),
        number_agreement,
        compared,
        entity_agreement,
        length_ratio,
        tuple(sorted(blocks, key=lambda block: -block[4])[:5]),
        margin,
        run_share,
    )


# A stored article is a candidate for every new article of its story that arrives within the
# window, so the evidence of recent texts is kept (a few hundred texts, a few MB at most).
_RECENT_TEXTS = 512


class _Recent:
    """A bounded, thread-safe map of recent texts to what was computed from them."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_NUMBERS = _Recent(_RECENT_TEXTS)
_WEIGHTS = _Recent(_RECENT_TEXTS)


def _numbers_of(text: str) -> frozenset[str]:
    found: frozenset[str] | None = _NUMBERS.get(text)
    if found is None:
        found = frozenset(extract_numbers(text))
        _NUMBERS.put(text, found)
    return found


def _weight_of(text: str) -> float:
    weight: float | None = _WEIGHTS.get(text)
    if weight is None:
        weight = content_weight(text)
        _WEIGHTS.put(text, weight)
    return weight


@dataclass(frozen=True)
class TextEvidence:
    """The language-free evidence of one text: its numbers, length weight and gazetteer names."""

    numbers: frozenset[str]
    weight: float
    entities: frozenset[str]


def text_evidence(text: str, lang: str, gazetteer: Gazetteer) -> TextEvidence:
    """What the translation test reads of ``text`` (computed once per text, then kept)."""
    return TextEvidence(_numbers_of(text), _weight_of(text), frozenset(gazetteer.entities(text, lang)))


def remember_evidence(text: str, lang: str, evidence: TextEvidence, gazetteer: Gazetteer) -> None:
    """Keep ``evidence`` computed in another process as if :func:`text_evidence` had run here."""
    _NUMBERS.put(text, evidence.numbers)
    _WEIGHTS.put(text, evidence.weight)
    gazetteer.remember(text, lang, evidence.entities)


def _agreement(left: Set[str], right: Set[str]) -> tuple[float | None, int]:
    """Share of the smaller set found in the other; ``None`` when it has fewer than two items."""
    small, large = (left, right) if len(left) <= len(right) else (right, left)
    if len(small) < 2:
        return None, len(small)
    return len(small & large) / len(small), len(small)


# Length -----------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def content_weight(text: str) -> float:
    """Text length comparable across scripts: letters, with a CJK character worth about three."""
    cjk = len(_CJK.findall(text))
    letters = sum(1 for char in text if char.isalpha()) - cjk
    return letters + 3.0 * cjk


# Numbers ----------------------------------------------------------------------------------

_MULTIPLIERS: Mapping[str, float] = {
    # English
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mln": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bln": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "tn": 1e12,
    # Russian (stems: тысяча, тысячи, тысяч; миллион, миллиона, ...)
    "тыс": 1e3,
    "тысяч": 1e3,
    "тысячи": 1e3,
    "тысяча": 1e3,
    "млн": 1e6,
    "миллион": 1e6,
    "миллиона": 1e6,
    "миллионов": 1e6,
    "млрд": 1e9,
    "миллиард": 1e9,
    "миллиарда": 1e9,
    "миллиардов": 1e9,
    "трлн": 1e12,
    "триллион": 1e12,
    "триллиона": 1e12,
    "триллионов": 1e12,
    # Chinese (no spaces: the unit follows the digits directly)
    "千": 1e3,
    "万": 1e4,
    "萬": 1e4,
    "亿": 1e8,
    "億": 1e8,
    "万亿": 1e12,
    "兆": 1e12,
}
_MONTHS: Mapping[str, int] = {
    **{
        name: number
        for number, names in enumerate(
            [
                "january jan январ",
                "february feb феврал",
                "march mar март",
                "april apr апрел",
                "may ма",
                "june jun июн",
                "july jul июл",
                "august aug август",
                "september sep sept сентябр",
                "october oct октябр",
                "november nov ноябр",
                "december dec декабр",
            ],
            start=1,
        )
        for name in names.split()
    }
}
_NUMBER = re.compile(
    r"(?<![0-9A-Za-zА-Яа-яЁё])(?<!\d[.,])(\d{1,3}(?:[ \u00a0\u202f,]\d{3})+|\d+)(?:[.,](\d+))?"
    r"\s*(%|процент\w*|percent|per cent|万亿|[千万萬亿億兆]|[a-zа-я]+\b)?",
    re.IGNORECASE,
)
_MONTH_WORD = re.compile(r"\b([a-zа-я]+)\b", re.IGNORECASE)
_CJK_DATE = re.compile(r"(\d{1,2})月")


def extract_numbers(text: str) -> set[str]:
    """Numbers in ``text`` as language-free keys: values with their multiplier applied.

    "50 billion", "50 млрд", "500亿" and "50,000,000,000" all become ``5e+10``; "3.5%" and
    "3,5 процента" become ``3.5%``; month names become ``month:5`` (as does "5月"). Single
    digits are dropped: they are spelled out as often as not, so they prove nothing.
    """
    normalised = unicodedata.normalize("NFKC", text)
    keys: set[str] = set()
    for match in _NUMBER.finditer(normalised):
        whole, fraction, unit = match.group(1), match.group(2), (match.group(3) or "").lower()
        digits = re.sub(r"[ \u00a0\u202f,]", "", whole)
        thousands_grouped = digits != whole
        if fraction is not None and thousands_grouped:
            continue  # "1,234.5" style mixing is rare in news; skip rather than misread
        if fraction is not None and len(fraction) == 3 and not unit and not thousands_grouped:
            # "1,500" or "1.500": a thousands separator, not a decimal fraction.
            value = float(digits + fraction)
        else:
            value = float(f"{digits}.{fraction}") if fraction is not None else float(digits)
        if unit.startswith(("%", "процент", "percent", "per cent")):
            keys.add(f"{_round(value)}%")
            continue
        multiplier = _MULTIPLIERS.get(unit, 1.0)
        if multiplier == 1.0:
            if value < 10:
                continue
            # Plain numbers (years, counts, days) are kept exactly.
            keys.add(f"{value:g}" if value < 1e6 else _round(value))
        else:
            keys.add(_round(value * multiplier))
    for match in _MONTH_WORD.finditer(normalised):
        month = _month_of(match.group(1).lower())
        if month:
            keys.add(f"month:{month}")
    for match in _CJK_DATE.finditer(normalised):
        month_number = int(match.group(1))
        if 1 <= month_number <= 12:
            keys.add(f"month:{month_number}")
    return keys


# Russian month names inflect ("мая", "июня", "сентября"): they are compared by stem. "ма"
# needs the exact genitive/nominative forms, or "мало"/"масштаб" would count as May.
_RUSSIAN_STEMS = tuple(
    (stem, number)
    for stem, number in _MONTHS.items()
    if len(stem) >= 4 and stem[0] in "абвгдежзийклмнопрстуфхцчшщъыьэюя"
)


@lru_cache(maxsize=8192)  # news repeats its words; a text has hundreds, a stream a few thousand
def _month_of(word: str) -> int | None:
    if len(word) < 3:
        return None
    if word in _MONTHS:
        return _MONTHS[word]
    for stem, number in _RUSSIAN_STEMS:
        if word.startswith(stem):
            return number
    if word in ("мая", "май", "маю"):
        return 5
    return None


def _round(value: float) -> str:
    """Three significant digits: translations round amounts the same way often enough."""
    if value == 0:
        return "0"
    digits = 3 - math.floor(math.log10(abs(value))) - 1
    return f"{round(value, digits):g}"


# Named entities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Gazetteer:
    """Names that mean the same thing in every language, each with patterns per language."""

    patterns: Mapping[str, Mapping[str, re.Pattern[str]]]  # entity -> lang -> one compiled pattern
    _recent: _Recent = field(
        default_factory=lambda: _Recent(_RECENT_TEXTS), init=False, repr=False, compare=False
    )

    def entities(self, text: str, lang: str) -> set[str]:
        """The gazetteer entries named in ``text`` (patterns of ``lang``, else of every language).

        Answers for recent texts are kept: a stored article is checked against each new
        article of its story, and a text scan runs every pattern.
        """
        known: frozenset[str] | None = self._recent.get((lang, text))
        if known is not None:
            return set(known)
        found = self._scan(text, lang)
        self._recent.put((lang, text), frozenset(found))
        return found

    def remember(self, text: str, lang: str, entities: frozenset[str]) -> None:
        """Keep the answer for ``text`` found elsewhere (a prepare worker's scan)."""
        self._recent.put((lang, text), entities)

    def _scan(self, text: str, lang: str) -> set[str]:
        folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
        found = set()
        for entity, by_lang in self.patterns.items():
            chosen = [by_lang[lang]] if lang in by_lang else list(by_lang.values())
            if any(pattern.search(folded) for pattern in chosen):
                found.add(entity)
        return found


def load_gazetteer(path: Path) -> Gazetteer:
    """Read ``gazetteer.yaml``: ``{entity: {lang: [pattern, ...]}}``; every pattern is checked."""
    try:
        raw = yamlfile.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("entities"), dict):
        raise ConfigError(f"{path}: expected a mapping with an 'entities' section")
    compiled: dict[str, dict[str, re.Pattern[str]]] = {}
    for entity, by_lang in raw["entities"].items():
        if not isinstance(by_lang, dict) or not by_lang:
            raise ConfigError(f"{path}: entities.{entity}: expected {{lang: [patterns]}}")
        compiled[str(entity)] = {}
        for lang, patterns in by_lang.items():
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise ConfigError(f"{path}: entities.{entity}.{lang}: expected a list of patterns")
            body = "|".join(f"(?:{p})" for p in patterns)
            # Spaced scripts match whole words; Chinese and Japanese have no word spaces.
            source = body if lang in ("zh", "ja") else rf"(?<!\w)(?:{body})"
            try:
                compiled[str(entity)][str(lang)] = re.compile(source.casefold())
            except re.error as exc:
                raise ConfigError(f"{path}: entities.{entity}.{lang}: bad pattern: {exc}") from None
    return Gazetteer(compiled)
