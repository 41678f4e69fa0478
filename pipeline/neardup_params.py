"""The near-duplicate parameters (``config/dedup.yaml``), apart from :mod:`pipeline.neardup`.

The settings check them when they load; keeping them here lets every command do that
without importing numpy, which only the commands that read texts need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class NearDupParams:
    """Every knob of near-duplicate detection; overridden from ``config/dedup.yaml``.

    Defaults and why (J = Jaccard similarity of two shingle sets; the figures quoted
    are from the labelled set in ``tests/fixtures/dedup``):

    * ``num_perm=126``, ``bands=42``, ``rows=3``: the LSH S-curve
      ``P(candidate) = 1 - (1 - J**3)**42`` is 0.04 at J=0.1, 0.29 at J=0.2, 0.68 at
      J=0.3, 0.94 at J=0.4, 0.996 at J=0.5 and 1.0 from J=0.6 (midpoint near
      ``(1/42)**(1/3) = 0.29``). The curve sits that low because verification accepts
      pairs by *containment*: a syndicated copy cut to 60 % with a new headline and a
      credit line has containment ~0.7 but J ~0.4, and copies of one story measured
      J >= 0.29. Different stories measured J <= 0.12 (P <= 0.07), so
      the candidates to fetch and verify stay few. 126 values of 32 bits are 504 bytes
      per article; 42 band keys are 42 index rows.
    * ``word_k=3``: word 3-grams. A copy edit or a swapped word costs only three
      shingles, so edited copies keep a high similarity, while three-word runs are
      specific enough that different stories about one summit share few of them
      (the names "president vladimir putin" are one or two shingles, not the story).
    * ``cjk_n=3``: Chinese/Japanese character 3-grams (about one to two words).
    * ``brahmic_n=5``: Thai/Lao/Khmer/Burmese letter 5-grams (about one to two syllables).
    * ``min_words=40`` / ``min_chars=80``: shorter texts (a headline, a caption, a
      teaser) get no signature; two teasers sharing a sentence are not the same story,
      and exact hashing still catches identical ones.
    * ``containment_threshold=0.6``: at least 60 % of the *smaller* text's shingles are
      in the larger. Copies measured >= 0.67 against their original (truncated and
      syndicated copies are the lowest); different stories on one summit <= 0.23, even
      when they quote the same joint statement. Only a shared boilerplate block gets
      higher (up to 0.69 for short stories under a footer about 1.5 times their length),
      which is what the next rule is for.
    * ``opening_fraction=0.5`` / ``opening_threshold=0.4``: at least 40 % of the first
      half (by position) of one text's shingles must be in the other. Copies keep the
      story's opening: truncation keeps it, updates and corrections are appended after
      it, syndication only adds a dateline, and even a rewritten first paragraph leaves
      the rest of the first half (copies measured >= 0.51). Boilerplate left by
      extraction (disclaimers, "about the author", newsletter pitches) sits at the end,
      so stories sharing only a footer measured <= 0.34: it protects them while each
      story is more than about 30 % of its text.
    * ``size_ratio=1.5`` / ``smaller_opening_threshold=0.6``: when the larger text has
      more than 1.5 times the shingles of the smaller, either the larger's opening is
      in the smaller (``opening_threshold``: truncated copies and appended updates keep
      it) or 60 % of the smaller's opening is in the larger (an excerpt of a long
      document begins inside it). A brief of ~40 words over an outlet's ~100-word author
      box reaches 0.43-0.45 on the box alone, and was the "copy" every longer story of
      the outlet matched; copies of the labelled set that far apart measured >= 0.78
      when the larger's opening was not in the smaller, and excerpts of the seed
      documents >= 0.85. A brief's own lead of more than about a quarter of the box
      keeps it apart. ``smaller_opening_threshold`` equal to ``opening_threshold`` turns
      the rule off.
    * ``min_overlap=30``: the shared part must itself be a passage (about 30 words or
      30 CJK characters), so that a short text cannot ride on a few shared phrases.
    * ``min_figures=4`` / ``figures_containment=0.5``: a copy gives the same figures.
      Numbers are one placeholder in the shingles (a copy edit that rewrites "5 billion"
      as "5bn" must not cost shingles), so two texts of one template (market closes,
      results tables, statistics releases) share every shingle and measured containment
      0.85-0.89. When the text with fewer distinct numbers has at least four, at least
      half of them must be in the other. A copy keeps its figures: a dateline adds a day,
      an update appends new ones after the old, truncation keeps a subset (copies of the
      labelled set measured >= 0.75 when they had four or more). Names are in the
      shingles already: template texts that differ only in names are the names rule's.
    * ``name_swaps=2``: a copy keeps its names. Two agency flashes on one frame ("X met Y
      in Z. The sides discussed…") share nearly every shingle and number, and differ in
      the names put into the frame: when in this many places of the lead (distinct pairs
      of neighbouring words in the first 40 words) one text has a short run of words with
      a capital that the other lacks, and the other has a different such run between the
      same two words, they are two stories. One place is allowed: a correction of one wrong
      name, a byline, a copy desk's edit. A name spelled two ways (Tokaev, Tokayev) is no
      swap; a sentence's first word is no name, and German text (every noun capitalised)
      is not read. Scripts without capital letters (Chinese, Arabic, the Indic scripts)
      are not read by it. 0 turns the rule off.
    * ``seed=1``: derives the MinHash permutations. Changing it, or any shingling or
      banding parameter, invalidates stored signatures; see :attr:`scheme`.
    * ``max_candidates=200``: at most this many stored articles sharing a band key are
      verified, those sharing the most band keys first (then the earliest). A copy shares
      many bands; what shares one or two is mostly a site's boilerplate, which on a large
      site could make thousands of candidates for every new page (the labelled set's
      lookups have 14 at most: the cap binds only on such sites).
    """

    num_perm: int = 126
    bands: int = 42
    rows: int = 3
    word_k: int = 3
    cjk_n: int = 3
    brahmic_n: int = 5
    min_words: int = 40
    min_chars: int = 80
    containment_threshold: float = 0.6
    opening_fraction: float = 0.5
    opening_threshold: float = 0.4
    size_ratio: float = 1.5
    smaller_opening_threshold: float = 0.6
    min_overlap: int = 30
    min_figures: int = 4
    figures_containment: float = 0.5
    name_swaps: int = 2
    seed: int = 1
    max_candidates: int = 200

    def __post_init__(self) -> None:
        for name in (
            "num_perm",
            "bands",
            "rows",
            "word_k",
            "cjk_n",
            "brahmic_n",
            "min_overlap",
            "max_candidates",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("min_words", "min_chars", "seed", "min_figures", "name_swaps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in (
            "containment_threshold",
            "opening_fraction",
            "opening_threshold",
            "smaller_opening_threshold",
            "figures_containment",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if isinstance(self.size_ratio, bool) or not isinstance(self.size_ratio, int | float):
            raise ValueError(f"size_ratio must be a number, got {self.size_ratio!r}")
        if not 1.0 <= float(self.size_ratio) < float("inf"):
            raise ValueError(f"size_ratio must be at least 1, got {self.size_ratio!r}")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands * rows ({self.bands} * {self.rows}) must not exceed num_perm ({self.num_perm})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> NearDupParams:
        """Defaults overridden by ``values`` (e.g. parsed YAML); unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown near-duplicate parameter(s): {', '.join(unknown)}")
        return dataclasses.replace(cls(), **values)  # type: ignore[arg-type]

    @property
    def scheme(self) -> str:
        """A short name of everything that makes signatures and band keys comparable.

        Store it next to the signatures: rows signed under another scheme must be
        re-signed before their band keys are compared with new ones. Thresholds are not
        part of it, since they only affect verification.
        """
        return (
            f"mh2-p{self.num_perm}-b{self.bands}x{self.rows}-w{self.word_k}"
            f"-c{self.cjk_n}-t{self.brahmic_n}-m{self.min_words}.{self.min_chars}-s{self.seed}"
        )
