"""Is one article a translation of another? Sentence alignment plus language-free evidence.

A pure stage over vectors and texts. Whole-document similarity cannot separate a
translation from another outlet's report of the same event in another language: both
are about the same people, place and day. What a translation has, and a separate report
has not, is *the same sentences in the same order*: most sentences of the shorter text
have a mutual best match in the other text, and the matches run in order and in runs
(consecutive sentences matching consecutive sentences), where two reports quoting one
statement match in isolated places. In a short text each match must also stand out from
its runners-up; in a long one that margin fades out (see :func:`required_margin`).
Numbers and amounts (whatever the script and unit words: "50 billion", "50 млрд",
"500亿") and named entities (through a small trilingual gazetteer) must agree too.

:func:`verify_translation` measures all of it and decides with explicit thresholds
(``translations`` in ``config/semantic.yaml``); the measurements are returned so the
decision can be stored and shown.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml
from numpy.typing import NDArray

from pipeline import yamlfile
from pipeline.errors import ConfigError
from pipeline.hanzi import simplified_characters
from pipeline.numbers import extract_numbers
from pipeline.sentences import THAI_LAO_CHAR, content_sentences

Matrix = NDArray[np.float32]


@dataclass(frozen=True)
class TranslationParams:
    """Thresholds of the translation test (``translations`` in ``config/semantic.yaml``)."""

    sentence_similarity: float = 0.5
    min_margin: float = 0.15
    short_text_sentences: int = 8
    long_text_sentences: int = 24
    max_position_shift: float = 0.3
    min_aligned_share: float = 0.5
    min_aligned_sentences: int = 3
    min_order: float = 0.8
    min_run_share: float = 0.5
    split_similarity: float = 0.0
    min_number_agreement: float = 0.5
    min_entity_agreement: float = 0.6
    min_opening_share: float = 0.4
    min_sentence_number_agreement: float = 0.5
    max_length_ratio: float = 3.0


class Extent(NamedTuple):
    """Where a side's rows stop in its text: the encoder reads the first ``max_sentences``."""

    cut: bool  # the text goes on after the last row's sentence
    covered: float  # the share of the text's characters the rows' sentences hold
    starts: tuple[float, ...]  # where each row's sentence starts, as a share of them


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

    @property
    def title_rows(self) -> int:
        """1 when the first row is the title's vector, else 0."""
        return 1 if self.has_title and len(self.sentences) else 0

    @cached_property
    def text_sentences(self) -> list[str]:
        """The text's sentences as the encoder cuts them (:func:`content_sentences`):
        row i after the title is the vector of the i-th."""
        return content_sentences(self.text)

    @cached_property
    def extent(self) -> Extent:
        """How much of the text the rows cover (see :class:`Extent`)."""
        rows, title = len(self.sentences), self.title_rows
        sentences = self.text_sentences
        total = sum(len(sentence) for sentence in sentences) or 1
        starts: list[float] = []
        offset = 0
        for sentence in sentences[: rows - title]:
            starts.append(offset / total)
            offset += len(sentence)
        return Extent(len(sentences) > rows - title, offset / total, tuple(starts))

    def units_within(self, share: float) -> int:
        """Rows whose sentence starts within the first ``share`` of the text's characters
        (the title counts)."""
        return self.title_rows + sum(1 for start in self.extent.starts if start < share)

    @cached_property
    def list_rows(self) -> frozenset[int]:
        """Rows whose units are items of a list or a table (:func:`list_items`)."""
        if not may_hold_a_list(self.text):
            return frozenset()  # nearly every text: its sentences need not be cut here
        rows, title = len(self.sentences), self.title_rows
        body = self.text_sentences[: rows - title]
        if title + len(body) < rows:
            return frozenset()  # rows of another cut (before `reindex`): unknown, none
        return frozenset(title + index for index in list_items(body))

    @cached_property
    def numbers(self) -> frozenset[str]:
        """:func:`extract_numbers` of the text."""
        return _numbers_of(self.text, self.lang)

    @cached_property
    def unit_numbers(self) -> tuple[frozenset[str], ...]:
        """The numbers of each row's unit (none for the title), in row order.

        The units are the text's sentences as the encoder cut them
        (:func:`pipeline.sentences.content_sentences`), so row i's numbers are those of the
        sentence whose vector row i is.
        """
        rows, title = len(self.sentences), self.title_rows
        body = self.text_sentences[: rows - title]
        if title + len(body) < rows:
            # Rows stored when sentences were cut differently (before `reindex`): which
            # sentence a row is cannot be told, so no sentence's numbers are compared.
            return (frozenset(),) * rows
        return (frozenset(),) * title + tuple(
            frozenset(extract_numbers(sentence, self.lang)) for sentence in body
        )

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
    order: float
    number_agreement: float | None
    numbers_compared: int
    entity_agreement: float | None
    length_ratio: float
    pairs: tuple[tuple[int, int, float], ...] = field(default=())
    margin: float = 0.0
    run_share: float = 0.0
    list_units: int = 0  # the shorter side's list items left out of the shares
    opening_share: float = 0.0  # of the shorter side's first half (see opening_share())

    def as_detail(self) -> dict[str, Any]:
        """A JSON-ready record of the decision, stored with the copy."""
        return {
            "method": "sentence-alignment",
            "reason": self.reason,
            "aligned_sentences": self.aligned,
            "aligned_share": round(self.share, 3),
            "mean_similarity": round(self.mean_similarity, 3),
            "order": round(self.order, 3),
            "number_agreement": None if self.number_agreement is None else round(self.number_agreement, 3),
            "numbers_compared": self.numbers_compared,
            "entity_agreement": None if self.entity_agreement is None else round(self.entity_agreement, 3),
            "length_ratio": round(self.length_ratio, 2),
            "margin": round(self.margin, 3),
            "share_in_runs": round(self.run_share, 3),
            "list_items_left_out": self.list_units,
            "opening_share": round(self.opening_share, 3),
        }


# A sentence of prose ends in terminal punctuation (closing quotes and brackets aside), in
# any script that has it; a colon or semicolon counts (a sentence introducing a list).
# Thai and Lao have none: their sentences end in a letter, and are taken for prose.
_CLOSERS = "\"'»”’)]」』）"
_TERMINAL = frozenset(".!?…:;。！？：；؟۔।॥։።፧។៕။｡")
# This many lines in a row without it are a list or a table: tour dates, signed documents,
# results, a block of related headlines.
LIST_MIN_ITEMS = 3


def _unpunctuated(text: str) -> bool:
    """Whether ``text`` ends without terminal punctuation (closing quotes aside)."""
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] not in _TERMINAL and not THAI_LAO_CHAR.match(stripped[-1])


def list_items(sentences: Sequence[str]) -> set[int]:
    """Indices of the ``sentences`` that are items of a list or a table.

    An item is a unit without terminal punctuation in a block of at least
    :data:`LIST_MIN_ITEMS` such units in a row. Two reports of one event often print the
    same list (a tour's dates, the documents signed, a results table) under prose each
    wrote itself; item by item the lists align like a translation, so they are left out
    of the shares that decide one (a translation's prose aligns as well as its lists).
    A single unpunctuated line (a heading, a byline) is not a list.
    """
    items: set[int] = set()
    block: list[int] = []
    for index, sentence in enumerate([*sentences, "."]):
        if _unpunctuated(sentence):
            block.append(index)
            continue
        if len(block) >= LIST_MIN_ITEMS:
            items.update(block)
        block = []
    return items


def may_hold_a_list(text: str) -> bool:
    """Whether ``text`` has :data:`LIST_MIN_ITEMS` lines in a row without terminal
    punctuation: a list item is always a whole line (a sentence that ends within a line
    ends in punctuation), so a text without such lines has no list. A cheap test on the
    raw text, before cutting it into sentences."""
    block = 0
    for line in text.splitlines():
        if not any(char.isalnum() for char in line):
            continue  # blank lines and rules between items (units need a letter or digit)
        if not _unpunctuated(line):
            block = 0
            continue
        block += 1
        if block >= LIST_MIN_ITEMS:
            return True
    return False


def mutual_best_matches(
    a: Matrix,
    b: Matrix,
    threshold: float,
    *,
    margin: float = 0.0,
    max_shift: float = 1.0,
    similarity: Matrix | None = None,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) where row i of ``a`` and row j of ``b`` are each other's best match.

    ``margin``: the pair must beat every other candidate of either sentence by this much
    (a translated sentence stands out from its neighbours; a sentence that is merely on
    the same subject is about as close to several). ``max_shift``: the two sentences'
    relative positions (index / length) differ by at most this much, since a translation
    keeps its order. ``similarity``: ``a @ b.T`` when the caller has it already.
    """
    if a.size == 0 or b.size == 0:
        return []
    if similarity is None:
        similarity = a @ b.T
    best_in_b = similarity.argmax(axis=1)
    best_in_a = similarity.argmax(axis=0)
    rows, cols = similarity.shape
    # A pair is each side's best match, so the best other candidate of either sentence is
    # the second-largest value of its row or column (ties included).
    second_in_row = np.partition(similarity, cols - 2, axis=1)[:, cols - 2] if cols > 1 else None
    second_in_col = np.partition(similarity, rows - 2, axis=0)[rows - 2] if rows > 1 else None
    pairs = []
    for i, j in enumerate(best_in_b):
        value = float(similarity[i, j])
        if best_in_a[j] != i or value < threshold:
            continue
        runner_up = max(
            float(second_in_row[i]) if second_in_row is not None else -1.0,
            float(second_in_col[j]) if second_in_col is not None else -1.0,
        )
        if value - runner_up < margin or abs(i / rows - j / cols) > max_shift:
            continue
        pairs.append((i, int(j), value))
    return pairs


def order_consistency(pairs: Sequence[tuple[int, int, float]]) -> float:
    """Share of aligned pairs on one increasing path (longest increasing subsequence of j by i)."""
    if not pairs:
        return 0.0
    tails: list[int] = []
    for _, j, _ in sorted(pairs):
        position = bisect.bisect_left(tails, j)
        if position == len(tails):
            tails.append(j)
        else:
            tails[position] = j
    return len(tails) / len(pairs)


def required_margin(shorter: int, params: TranslationParams) -> float:
    """The margin a sentence pair needs when the shorter text has ``shorter`` units.

    ``min_margin`` up to ``short_text_sentences`` units (the title counts), none from
    ``long_text_sentences`` on, linear in between. In a short text a few sentences on the
    same subject as the other text's (a shared quotation, the same names and date) can be
    mutual best matches by themselves, so each match must stand out from its runners-up.
    In a long text the evidence is the number of sentences that align in order and in
    runs, and the full margin would do harm: a long article on one subject has many
    sentences about as close to a given sentence as its translation is. Measured on the
    tuning set's pairs joined two at a time (every combination: 261 translations, 3,494
    non-translations), the full margin at every length found 23 translations; no margin
    from 12 units on found 82 with 11 wrong links; this schedule finds 62 with none.
    """
    low, high = params.short_text_sentences, params.long_text_sentences
    if shorter <= low:
        return params.min_margin
    if shorter >= high:
        return 0.0
    return params.min_margin * (high - shorter) / (high - low)


def in_runs(
    pairs: Sequence[tuple[int, int, float]],
    similarity: Matrix | None = None,
    split_similarity: float = 0.0,
) -> int:
    """How many aligned pairs have a neighbour: the next sentence of both texts aligned too.

    A translation aligns in runs (sentence i with j, i + 1 with j + 1, ...). Two reports
    that share a quotation or paraphrase one press release align in isolated places:
    the same fact, each in its own surroundings.

    With ``similarity`` (the texts' sentence cosines) and ``split_similarity`` > 0, a run
    also steps over one sentence a translator split off or merged: (i, j) and (i + 1,
    j + 2) are neighbours when sentence j + 1 aligned with nothing and its closest
    sentence of the other text is i or i + 1, at cosine >= ``split_similarity`` (the
    second half of a sentence rendered as two), and the same with the texts swapped. A
    gap alone is not enough: that is what two reports sharing a few facts look like.
    """
    aligned = {(i, j) for i, j, _ in pairs}
    members = {pair for i, j in aligned for pair in ((i, j), (i + 1, j + 1)) if (i + 1, j + 1) in aligned}
    if similarity is not None and split_similarity > 0 and similarity.size:
        members |= _split_steps(aligned, similarity, split_similarity)
        swapped = {(j, i) for i, j in aligned}
        members |= {(i, j) for j, i in _split_steps(swapped, similarity.T, split_similarity)}
    return len(members)


def _split_steps(aligned: Set[tuple[int, int]], similarity: Matrix, threshold: float) -> set[tuple[int, int]]:
    """Aligned pairs (i, j) and (i + 1, j + 2) with sentence j + 1 of the second text
    aligned with nothing and closest to i or i + 1 at cosine >= ``threshold``."""
    cols = similarity.shape[1]
    taken = {j for _, j in aligned}
    closest_in_first = similarity.argmax(axis=0)  # for each sentence of the second text
    steps: set[tuple[int, int]] = set()
    for i, j in aligned:
        skipped = j + 1
        if (i + 1, j + 2) not in aligned or skipped >= cols or skipped in taken:
            continue
        closest = int(closest_in_first[skipped])
        if closest in (i, i + 1) and similarity[closest, skipped] >= threshold:
            steps.update({(i, j), (i + 1, j + 2)})
    return steps


def sentence_number_agreement(
    pairs: Sequence[tuple[int, int, float]], a: Side, b: Side
) -> tuple[float | None, int]:
    """Share of aligned sentence pairs, among those with numbers on both sides, whose
    numbers agree (half of the smaller set at least), and how many pairs were compared.

    A translated sentence carries its numbers; two templated reports (a forecast, market
    closes, a daily tally) align sentence by sentence on their wording while their figures
    differ. Comparing the whole texts' number sets would miss that: with many figures in
    one range, some coincide by chance.
    """
    if not pairs:
        return None, 0
    left, right = a.unit_numbers, b.unit_numbers
    compared = agreeing = 0
    for i, j, _ in pairs:
        first, second = left[i], right[j]
        if not first or not second:
            continue
        compared += 1
        agreeing += 2 * len(first & second) >= min(len(first), len(second))
    return (agreeing / compared if compared else None), compared


def _judged_on_common_stretch(a: Side, b: Side, params: TranslationParams) -> bool:
    """Whether the shares are taken over the stretch of the story both sides' rows cover.

    When both sides are cut, always. When only one is, only if the whole side is long (at
    least ``long_text_sentences`` units): a translation that merges or leaves out sentences
    can be whole in fewer units than its original's cut, and its units after the cut
    side's stretch cannot have a counterpart. A short whole side is left to the shares
    over all its units, so that a brief is never judged on its first lines alone.
    """
    cut_a, cut_b = a.extent.cut, b.extent.cut
    if cut_a and cut_b:
        return True
    if cut_a != cut_b:
        whole = b if cut_a else a
        return len(whole.sentences) >= params.long_text_sentences
    return False


def verify_translation(
    a: Side, b: Side, params: TranslationParams, gazetteer: Gazetteer | None = None
) -> TranslationVerdict:
    """Decide whether ``a`` and ``b`` (in different languages) are translations of each other.

    Partial and abridged translations count: shares are taken over the shorter side, or,
    when a side's rows stop before its text does, over the units within the stretch of
    the story both sides' rows cover.
    """
    shorter = min(len(a.sentences), len(b.sentences))
    margin = required_margin(shorter, params)
    similarity = a.sentences @ b.sentences.T
    pairs = mutual_best_matches(
        a.sentences,
        b.sentences,
        params.sentence_similarity,
        margin=margin,
        max_shift=params.max_position_shift,
        similarity=similarity,
    )
    aligned = len(pairs)
    mean_similarity = sum(p[2] for p in pairs) / aligned if aligned else 0.0
    order = order_consistency(pairs)
    # Sentences split or merged in translation are stepped over in long texts only (see
    # :func:`in_runs`): in a short one the runs are the main evidence left once a few
    # shared facts have aligned.
    split = params.split_similarity if shorter >= params.long_text_sentences else 0.0
    runs = in_runs(pairs, similarity, split)
    covered = shorter
    limit_a, limit_b = len(a.sentences), len(b.sentences)
    # Too few aligned pairs, or pairs out of order, fail whatever the stretch and the lists
    # leave to count: most candidates end here, without reading their texts' sentences.
    # A text of fewer units than that (a headline and a sentence or two: a feed's summary,
    # a brief) is never judged a translation: a title and a lead say what the event was,
    # which another outlet's report says too, and aligned as often for one as for a
    # translation when the labelled excerpts were cut so short.
    needed = max(1, params.min_aligned_sentences)
    hopeless = aligned < needed or order < params.min_order
    if (
        not hopeless
        and (aligned < params.min_aligned_share * shorter or runs < params.min_run_share * shorter)
        and _judged_on_common_stretch(a, b, params)
    ):
        # Both cut at the same number of sentences, two translations cover different
        # stretches of the story when one language uses more sentences: only the units
        # within the shorter stretch can have a counterpart, and the shares count those.
        # (Not when one side is whole and short: a brief would be judged on its first lines.)
        stretch = min(a.extent.covered, b.extent.covered)
        limit_a, limit_b = a.units_within(stretch), b.units_within(stretch)
        covered = max(1, min(shorter, limit_a, limit_b))
    counted, counted_runs, list_units = aligned, runs, 0
    if not hopeless and (a.list_rows or b.list_rows):
        # Lists and tables are left out of the shares (see :func:`list_items`), when the
        # shorter side keeps enough prose to be judged on.
        prose = min(
            limit_a - sum(1 for row in a.list_rows if row < limit_a),
            limit_b - sum(1 for row in b.list_rows if row < limit_b),
        )
        if prose >= params.min_aligned_sentences:
            prose_pairs = [p for p in pairs if p[0] not in a.list_rows and p[1] not in b.list_rows]
            list_units = covered - min(covered, prose)
            counted, counted_runs, covered = (
                len(prose_pairs),
                in_runs(prose_pairs, similarity, split),
                min(covered, prose),
            )
    share = min(1.0, counted / covered) if shorter else 0.0
    run_share = min(1.0, counted_runs / covered) if shorter else 0.0
    opening = opening_share(pairs, len(a.sentences), len(b.sentences))
    number_agreement, compared = _agreement(a.numbers, b.numbers)
    entity_agreement, names = None, 0
    if gazetteer is not None:
        entity_agreement, names = _agreement(a.entities(gazetteer), b.entities(gazetteer))
    weight_a, weight_b = a.weight, b.weight
    length_ratio = max(weight_a, weight_b) / max(min(weight_a, weight_b), 1.0)

    failures = []
    if shorter < needed:
        failures.append(f"too short to judge: {shorter} units, {needed} aligned sentences needed")
    elif counted < needed:
        failures.append(f"{counted} aligned sentences" + (" outside lists" if list_units else ""))
    if share < params.min_aligned_share:
        failures.append(f"aligned share {share:.2f} < {params.min_aligned_share:g}")
    if order < params.min_order:
        failures.append(f"order {order:.2f} < {params.min_order:g}")
    if run_share < params.min_run_share:
        failures.append(f"share in runs {run_share:.2f} < {params.min_run_share:g}")
    if number_agreement is not None and number_agreement < params.min_number_agreement:
        failures.append(f"numbers agree {number_agreement:.2f} < {params.min_number_agreement:g}")
    if opening < params.min_opening_share and shared_ending_only(pairs, len(a.sentences), len(b.sentences)):
        # Both texts end with the same run of sentences and nothing before it aligned: an
        # outlet's footer (a disclaimer, "about the author"), translated, under two stories.
        failures.append(
            f"only the ending aligns, little of the opening ({opening:.2f} < {params.min_opening_share:g}): "
            "a shared footer"
        )
    if entity_agreement is not None and entity_agreement < params.min_entity_agreement:
        # One frame, other people: a readout of Lavrov's talks with Wang Yi and one of his
        # talks with another minister in the same words align sentence by sentence.
        failures.append(f"names agree {entity_agreement:.2f} < {params.min_entity_agreement:g}")
    # A long text is never a translation of a much shorter one *in full*; as an abridged
    # translation it must still align most of the shorter side, checked above. What the
    # ratio guards is a short text (a brief) that happens to echo a few sentences of a
    # long one: then at least a third of the longer text's lead must align too.
    if length_ratio > params.max_length_ratio and aligned < 3:
        failures.append(f"length ratio {length_ratio:.1f} with only {aligned} aligned sentences")
    if not failures:
        # Read sentence by sentence, so only for a pair that passed everything else.
        sentence_numbers, sentence_pairs = sentence_number_agreement(pairs, a, b)
        if sentence_numbers is not None and sentence_numbers < params.min_sentence_number_agreement:
            failures.append(
                f"numbers agree in {sentence_numbers:.2f} of {sentence_pairs} aligned sentence "
                f"pairs < {params.min_sentence_number_agreement:g}"
            )
    is_translation = not failures
    reason = (
        f"{counted} of {covered} sentences align in order, {counted_runs} of them in runs "
        f"(mean similarity {mean_similarity:.2f})"
        + (f", {list_units} list items left out" if list_units else "")
        + (f", {compared} numbers agree {number_agreement:.0%}" if number_agreement is not None else "")
        + (f", {names} names agree {entity_agreement:.0%}" if entity_agreement is not None else "")
        if is_translation
        else "not a translation: " + "; ".join(failures)
    )
    return TranslationVerdict(
        is_translation,
        reason,
        aligned,
        share,
        mean_similarity,
        order,
        number_agreement,
        compared,
        entity_agreement,
        length_ratio,
        tuple(sorted(pairs, key=lambda p: -p[2])[:5]),
        margin,
        run_share,
        list_units,
        opening,
    )


def opening_share(pairs: Sequence[tuple[int, int, float]], rows_a: int, rows_b: int) -> float:
    """The share of the shorter side's first half (its title and opening sentences) that
    aligned: a translation is aligned from its start; two stories that share only an
    outlet's translated footer (a disclaimer, "about the author") align at their ends."""
    first_side = rows_a <= rows_b
    shorter = rows_a if first_side else rows_b
    if not shorter:
        return 0.0
    half = math.ceil(shorter / 2)
    aligned = {pair[0] if first_side else pair[1] for pair in pairs}
    return sum(1 for row in aligned if row < half) / half


def shared_ending_only(pairs: Sequence[tuple[int, int, float]], rows_a: int, rows_b: int) -> bool:
    """Whether the aligned pairs are one unbroken run of sentences that ends both texts,
    after at least a title and a sentence of each that align with nothing."""
    if not pairs:
        return False
    ordered = sorted((i, j) for i, j, _ in pairs)
    first_i, first_j = ordered[0]
    unbroken = all(i == first_i + k and j == first_j + k for k, (i, j) in enumerate(ordered))
    return unbroken and ordered[-1] == (rows_a - 1, rows_b - 1) and min(first_i, first_j) >= 2


# A stored article is a candidate for every new article of its story that arrives within the
# window, so the evidence of recent texts is kept (a few hundred texts, a few MB at most).
_RECENT_TEXTS = 512


# A text longer than this is kept in a cache's key as its digest: whole articles as keys
# held every recent article's text (a hostile page's megabytes among them) for as long as
# the process ran.
_KEY_TEXT_CHARS = 128


def _compact_key(key: Any) -> Any:
    """``key`` with each long text in it replaced by a 128-bit digest of the text."""
    if isinstance(key, str) and len(key) > _KEY_TEXT_CHARS:
        return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if isinstance(key, tuple):
        return tuple(map(_compact_key, key))
    return key


class _Recent:
    """A bounded, thread-safe map of recent texts to what was computed from them (long
    texts in a key are kept as their digests)."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        key = _compact_key(key)
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        key = _compact_key(key)
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


def _numbers_of(text: str, lang: str | None) -> frozenset[str]:
    found: frozenset[str] | None = _NUMBERS.get((text, lang))
    if found is None:
        found = frozenset(extract_numbers(text, lang))
        _NUMBERS.put((text, lang), found)
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
    return TextEvidence(_numbers_of(text, lang), _weight_of(text), frozenset(gazetteer.entities(text, lang)))


def remember_evidence(text: str, lang: str, evidence: TextEvidence, gazetteer: Gazetteer) -> None:
    """Keep ``evidence`` computed in another process as if :func:`text_evidence` had run here."""
    _NUMBERS.put((text, lang), evidence.numbers)
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
    letters = sum(map(str.isalpha, text)) - cjk  # counted in C: a third of a Python loop's time
    return letters + 3.0 * cjk


# Named entities ---------------------------------------------------------------------------


class _Names(NamedTuple):
    """One entity's patterns in one language, as one compiled alternation."""

    pattern: re.Pattern[str]
    word_start: bool  # (spaced scripts) a match must not follow a word character

    def found_in(self, folded: str) -> bool:
        # The same answer as a search for the pattern behind (?<!\w), several times faster:
        # a leading lookbehind keeps the regex engine from skipping ahead to the characters
        # a match can start with, so it would try every position of the text.
        position = 0
        while (match := self.pattern.search(folded, position)) is not None:
            start = match.start()
            if not self.word_start or start == 0 or not _word_character(folded[start - 1]):
                return True
            # Nothing later in this word starts one either: go on after it. (From the next
            # character, a text that names nothing at a word start, one long glued word,
            # made every search run to the word's end again: quadratic.)
            word = _WORD_RUN.match(folded, start)  # (always matches)
            position = max(start + 1, word.end() if word else 0)
        return False


_WORD_RUN = re.compile(r"\w*")


def _word_character(char: str) -> bool:
    """Whether ``char`` is a word character, as the regular expressions of ``str`` patterns read one."""
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class Gazetteer:
    """Names that mean the same thing in every language, each with patterns per language."""

    patterns: Mapping[str, Mapping[str, _Names]]  # entity -> lang -> its patterns
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
        # (Traditional Chinese characters read as Simplified ones, as the patterns are
        # compiled: a Taiwanese or Hong Kong text names 烏克蘭 and 西伯利亞力量.)
        folded = simplified_characters(unicodedata.normalize("NFKC", text).casefold().replace("ё", "е"))
        found = set()
        for entity, by_lang in self.patterns.items():
            chosen = [by_lang[lang]] if lang in by_lang else list(by_lang.values())
            if any(names.found_in(folded) for names in chosen):
                found.add(entity)
        return found


def load_gazetteer(path: Path) -> Gazetteer:
    """Read ``gazetteer.yaml``: ``{entity: {lang: [pattern, ...]}}``; every pattern is checked."""
    try:
        raw = yamlfile.read_file(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("entities"), dict):
        raise ConfigError(f"{path}: expected a mapping with an 'entities' section")
    compiled: dict[str, dict[str, _Names]] = {}
    for entity, by_lang in raw["entities"].items():
        if not isinstance(by_lang, dict) or not by_lang:
            raise ConfigError(f"{path}: entities.{entity}: expected {{lang: [patterns]}}")
        compiled[str(entity)] = {}
        for lang, patterns in by_lang.items():
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
                raise ConfigError(f"{path}: entities.{entity}.{lang}: expected a list of patterns")
            body = "|".join(f"(?:{p})" for p in patterns)
            # Spaced scripts match from a word start; Chinese and Japanese have no word spaces.
            try:
                compiled[str(entity)][str(lang)] = _Names(
                    re.compile(simplified_characters(body.casefold())), word_start=lang not in ("zh", "ja")
                )
            except re.error as exc:
                raise ConfigError(f"{path}: entities.{entity}.{lang}: bad pattern: {exc}") from None
    return Gazetteer(compiled)
