"""Near-duplicate detection: shingles, MinHash signatures, LSH band keys, verification.

A pure stage: texts in, integers and verdicts out. The database stores each article's
signature and band keys; the repository asks "which stored articles share a band key
with this one?" and hands the candidates' texts back to :func:`verify`.

How a new article is judged
---------------------------
1. :func:`shingles` folds the text (NFKC, case-folded, punctuation removed, every run of
   digits replaced by one placeholder) and cuts it into overlapping n-grams: of *words*
   for scripts written with spaces, of *characters* for Chinese and Japanese (and of
   characters for Thai, Lao, Khmer and Burmese, with a longer n because their letters
   are alphabetic). The script is read from the characters, not from the language tag.
2. :func:`signature` reduces the shingle set to ``num_perm`` MinHash values; two
   signatures agree in a position with probability equal to the Jaccard similarity of
   the two shingle sets (:func:`estimate_jaccard`).
3. :func:`band_keys` cuts the signature into ``bands`` bands of ``rows`` values and hashes
   each band (with its index) to one signed 64-bit key. Two articles become candidates
   when they share at least one key: probability ``1 - (1 - J**rows)**bands``
   (:func:`candidate_probability`).
4. :func:`verify` decides a candidate pair exactly, on the shingles (see there): most of
   the smaller text must be in the larger one, *and* the opening of one text must be in
   the other (most of the smaller's opening when one text is much the larger), so that
   a shared footer or disclaimer alone never makes two stories one; and the figures and
   the names in the text must agree, so that two texts of one template are two stories.

Everything is deterministic across processes, machines and Python versions: shingles
and bands are hashed with personalised BLAKE2b, and the MinHash permutations are
derived from ``seed`` with BLAKE2b, never with Python's salted ``hash()``.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from pipeline.dedup import INVISIBLE_IN_WORDS, SPELLING_FOLD

# (defined apart, so that the settings can check them without importing numpy)
from pipeline.digits import ARABIC_SEPARATORS, ascii_digits
from pipeline.hanzi import simplified_characters
from pipeline.neardup_params import NearDupParams as NearDupParams
from pipeline.unicode_marks import MARKS_BMP

ShingleMode = Literal["words", "cjk_chars", "brahmic_chars"]

# Digit runs become one placeholder: a story updated in place changes its figures
# ("12 killed" -> "15 killed") and timestamps, and should stay the same story.
NUMBER_PLACEHOLDER = "#"

_MERSENNE_61 = (1 << 61) - 1
_MASK_32 = 0xFFFFFFFF
_SHINGLE_PERSON = b"sw-shingle"
_BAND_PERSON = b"sw-band"
_PERM_PERSON = b"sw-minhash"

# Scripts written without spaces between words. Han, kana, bopomofo: one character is
# roughly a morpheme, so short character n-grams work. Thai, Lao, Khmer and Burmese are
# alphabetic (a syllable is 2-4 letters), so they get longer n-grams. Tibetan is not
# here: its tsheg mark separates syllables, which then behave like words.
_CJK_RANGES = (
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # kana repeat marks
    (0x3038, 0x303C),
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3100, 0x312F),  # bopomofo
    (0x31A0, 0x31BF),  # bopomofo extended
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)
_BRAHMIC_UNSPACED_RANGES = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x1A20, 0x1AAF),  # Tai Tham
    (0xA9E0, 0xA9FF),  # Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
)
# A language tag counts as a hint only: it doubles the weight of its script's letters.
_CJK_LANGS = frozenset({"zh", "ja", "yue", "wuu", "lzh", "zh-cn", "zh-tw", "zh-hans", "zh-hant"})
_BRAHMIC_LANGS = frozenset({"th", "lo", "km", "my"})

_SEPARATOR, _WORD_CHAR, _CJK_CHAR, _BRAHMIC_CHAR = 0, 1, 2, 3
# Each class as one marker letter: a text's classes become a string of its length, whose
# words (runs of "w") and single unspaced characters regular expressions find in C.
_MARKS = "swcb"
_TOKEN_RUNS = re.compile("w+|[cb]")
_WORD_RUNS = re.compile("w+")


@dataclass(frozen=True)
class Verification:
    """The exact verdict on a candidate pair.

    ``similarity`` is the containment: the share of the smaller text's shingles found
    in the larger (1.0 for a truncated copy). ``jaccard``, ``opening`` (the larger of
    the two shares of a text's opening half found in the other) and ``overlap``
    (shared shingles) explain it. ``reason`` is ``duplicate`` or why not:
    ``too_short``, ``small_overlap``, ``low_containment``, ``different_opening``,
    ``different_figures``, ``different_names``.
    """

    similarity: float
    is_duplicate: bool
    reason: str
    jaccard: float = 0.0
    opening: float = 0.0
    overlap: int = 0


@lru_cache(maxsize=16384)
def _char_class(char: str) -> int:
    code = ord(char)
    for low, high in _CJK_RANGES:
        if low <= code <= high:
            return _CJK_CHAR
    for low, high in _BRAHMIC_UNSPACED_RANGES:
        if low <= code <= high:
            if char.isdecimal():
                return _WORD_CHAR  # (Thai, Lao, Myanmar, Khmer digits: a number like any other)
            # Thai/Khmer vowel signs are combining marks; they are letters here.
            return _BRAHMIC_CHAR
    category = unicodedata.category(char)
    # Letters, combining marks (Devanagari vowel signs, Arabic harakat) and digits
    # belong to words; punctuation, symbols, spaces and "_" separate them.
    if category[0] in "LMN":
        return _WORD_CHAR
    return _SEPARATOR


def _marks(text: str) -> str:
    """The class of each character of ``text`` as its marker letter (``_MARKS``)."""
    return text.translate({ord(char): _MARKS[_char_class(char)] for char in set(text)})


# The invisible characters of SPELLING_FOLD (spelling that copies of one text vary in
# without changing a word, which the text hash folds too), left out of a word.
_INVISIBLE = str.maketrans(dict.fromkeys(INVISIBLE_IN_WORDS, None))


def _tokenise(text: str) -> tuple[list[str], list[bool]]:
    """Split folded text into words and single unspaced-script characters.

    Returns the tokens and, for each, whether it is a single unspaced character. A word
    is a run of word characters (letters, marks, digits); an all-digit word becomes
    :data:`NUMBER_PLACEHOLDER`; anything else separates. Spelling variants that copies
    differ in are folded first (``SPELLING_FOLD``).
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if not folded.isascii():
        folded = simplified_characters(folded.translate(SPELLING_FOLD))
    marks = _marks(folded)
    tokens: list[str] = []
    unspaced: list[bool] = []
    for run in _TOKEN_RUNS.finditer(marks):
        start, end = run.span()
        token = folded[start:end]
        single = marks[start] != "w"
        tokens.append(NUMBER_PLACEHOLDER if not single and token.isdecimal() else token)
        unspaced.append(single)
    return tokens, unspaced


def _mode_of(text: str, lang: str | None) -> ShingleMode:
    marks = _marks(unicodedata.normalize("NFKC", text))
    words = len(_WORD_RUNS.findall(marks))
    cjk = marks.count("c")
    brahmic = marks.count("b")
    hint = (lang or "").lower()
    cjk_weight = 2.0 if hint in _CJK_LANGS or hint.startswith("zh-") else 1.0
    brahmic_weight = 2.0 if hint in _BRAHMIC_LANGS else 1.0
    # A CJK character carries about as much as a word; a Thai letter about a quarter.
    cjk_score = cjk * cjk_weight
    brahmic_score = brahmic / 4 * brahmic_weight
    if cjk_score > words and cjk_score >= brahmic_score:
        return "cjk_chars"
    if brahmic_score > words:
        return "brahmic_chars"
    return "words"


def shingle_mode(text: str, lang: str | None = None) -> ShingleMode:
    """How ``text`` is cut into shingles, read from its characters.

    ``words`` for scripts with spaces, ``cjk_chars`` for Chinese/Japanese,
    ``brahmic_chars`` for Thai, Lao, Khmer and Burmese. ``lang`` is only a hint: an
    English article quoting a Chinese sentence stays ``words`` whatever its tag says.
    """
    return _mode_of(text, lang)


def _shingle_hash(gram: str) -> int:
    """A shingle's stored hash, by definition (what :func:`_shingle_hashes` gives faster)."""
    digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8, person=_SHINGLE_PERSON).digest()
    return int.from_bytes(digest, "big")


# A hash object with the shingle parameters set, copied for each gram: the same values as
# _shingle_hash (tested), at half its cost on an article's few hundred shingles.
_SHINGLE_HASHER = hashlib.blake2b(digest_size=8, person=_SHINGLE_PERSON)


def _shingle_hashes(grams: list[str]) -> list[int]:
    """:func:`_shingle_hash` of each gram, in order."""
    base, from_bytes = _SHINGLE_HASHER, int.from_bytes
    hashes = []
    for gram in grams:
        hasher = base.copy()
        hasher.update(gram.encode("utf-8"))
        hashes.append(from_bytes(hasher.digest(), "big"))
    return hashes


def _grams(text: str, lang: str | None, params: NearDupParams) -> list[str]:
    mode = _mode_of(text, lang)
    tokens, unspaced = _tokenise(text)
    if mode == "words":
        size, minimum = params.word_k, params.min_words
    else:
        size = params.cjk_n if mode == "cjk_chars" else params.brahmic_n
        minimum = params.min_chars
        # Length in characters: unspaced characters count one, other words their length.
        length = sum(1 if single else len(tok) for tok, single in zip(tokens, unspaced, strict=True))
        if length < minimum:
            return []
        minimum = 0
    if len(tokens) < max(minimum, 1):
        return []
    if len(tokens) <= size:
        return ["\x1f".join(tokens)]
    return ["\x1f".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]


def shingles(text: str, lang: str | None, params: NearDupParams) -> set[int]:
    """The set of 64-bit hashed shingles of ``text`` (empty if too short to judge).

    Word k-grams (``word_k``) for spaced scripts; character n-grams for Chinese and
    Japanese (``cjk_n``) and Thai, Lao, Khmer, Burmese (``brahmic_n``), over which
    spaces are ignored and Latin words or numbers inside count as one token. A text of
    fewer than ``min_words`` words (``min_chars`` characters for unspaced scripts)
    returns an empty set: it gets no signature.
    """
    return set(_shingle_hashes(_grams(text, lang, params)))


@dataclass(frozen=True)
class ShingleProfile:
    """What verification needs of one text: all its shingles and its opening's.

    Build it once per text with :func:`profile` when one text is verified against many
    candidates; ``shingles`` is also the input of :func:`signature`.
    """

    shingles: frozenset[int]
    opening: frozenset[int]
    # The distinct numbers as written (see NearDupParams.min_figures).
    figures: frozenset[str] = frozenset()
    # The words in order, as written, in a script with capital letters (empty in others,
    # and for a text too short to judge): for the names rule (NearDupParams.name_swaps).
    words: tuple[str, ...] = ()


def profile(text: str, lang: str | None, params: NearDupParams) -> ShingleProfile:
    """The shingle profile of ``text`` (empty sets if too short to judge)."""
    sequence = _shingle_hashes(_grams(text, lang, params))
    head = max(1, math.ceil(len(sequence) * params.opening_fraction)) if sequence else 0
    figures = text_figures(text) if sequence else frozenset()
    reads_names = params.name_swaps and (lang or "").lower()[:2] not in _NOUNS_CAPITALISED
    words = text_words(text) if sequence and reads_names else ()
    return ShingleProfile(frozenset(sequence), frozenset(sequence[:head]), figures, words)


# A word for the names rule: letters (with their marks) and digits, hyphens and apostrophes
# inside ("Kassym-Jomart", "O'Neill").
_NAME_WORD = re.compile(rf"[\w{MARKS_BMP}]+(?:['’\-][\w{MARKS_BMP}]+)*")


# Languages that write every noun with a capital: a capital says nothing of a name there.
_NOUNS_CAPITALISED = frozenset({"de", "lb"})
# What a sentence's first word follows (spaces, quotes and brackets aside).
_SENTENCE_END = frozenset(".!?…:;\n")
_BEFORE_A_WORD = frozenset(" \t\"'«»“”„‘’([")


def text_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` in order (NFKC), a sentence's first word in lower case (its
    capital says nothing of a name), or none when it has no capital letter: the names rule
    reads names by their capitals, which Chinese, Japanese, Arabic, Hebrew, the Indic
    scripts and Thai do not have."""
    text = unicodedata.normalize("NFKC", text)
    if text == text.lower():
        return ()
    if not text.isascii():
        text = text.translate(_INVISIBLE)
    words = []
    for match in _NAME_WORD.finditer(text):
        word = match.group()
        if word[:1].isupper():
            before = match.start() - 1
            while before >= 0 and text[before] in _BEFORE_A_WORD:
                before -= 1
            if before < 0 or text[before] in _SENTENCE_END:
                word = word.lower()
        words.append(word)
    return tuple(words)


# A slot holds at most this many words: a name ("President of Kazakhstan Kassym-Jomart
# Tokayev" is three words in a slot after "President of"), not a rewritten sentence.
_SLOT_WORDS = 4
# ...and at most this many characters: a longer run is no name, and comparing two fillers
# takes time that grows with the product of their lengths.
_SLOT_CHARS = 80
# Two slot fillers this alike are one name spelled two ways (Tokaev, Tokayev).
_SAME_NAME = 0.75
# A template's subject is named in its headline and first sentence: the swapped slots
# counted begin within a text's first this many words (a copy edit or a credit line
# elsewhere, a byline at the top, is one place at most there).
_LEAD_WORDS = 40
# An abbreviation (РФ for России, КНР for Китая, US for America): a copy edit of style.
_ABBREVIATION = re.compile(r"[^\W\d_]{1,5}")


def swapped_names(a: Sequence[str], b: Sequence[str]) -> int:
    """In how many places one text has a name where the other has a different one, the
    words on both sides of it the same: the slots of one frame ("X met Y in Z") that two
    template texts fill differently; only those in the lead (the first ``_LEAD_WORDS``
    words, where a template names its subject) count.

    A slot is a run of at most ``_SLOT_WORDS`` words of one text that are nowhere in the
    other (case-folded), with a capitalised word among them and no digit (dates and
    figures are the figures rule's); it is swapped when the other text has such a run
    between the same two words (its frame) and the two are neither one name spelled two
    ways nor a name and its abbreviation. Distinct frames are counted once: a copy whose
    rewritten lead happens to put a new name between the same two common words counts one.
    """
    if not a or not b:
        return 0
    folded_a = [_folded_word(word) for word in a]
    folded_b = [_folded_word(word) for word in b]
    slots_b = _name_slots(b, folded_b, set(folded_a))
    if not slots_b:
        return 0
    slots_a = _name_slots(a, folded_a, set(folded_b))
    swapped = [
        min(start, slots_b[frame][0])
        for frame, (start, filler) in slots_a.items()
        if frame in slots_b and not _one_name(filler, slots_b[frame][1])
    ]
    return sum(1 for where in swapped if where < _LEAD_WORDS)


def _name_slots(
    words: Sequence[str], folded: Sequence[str], other: set[str]
) -> dict[tuple[str, str], tuple[int, str]]:
    """The name slots of one text against the other's words: frame -> (where, filler)."""
    slots: dict[tuple[str, str], tuple[int, str]] = {}
    index, count = 0, len(words)
    while index < count:
        if folded[index] in other:
            index += 1
            continue
        end = index
        while end < count and folded[end] not in other:
            end += 1
        run = words[index:end]
        if (
            index > 0
            and end < count  # (a slot at either end of the text has no frame)
            and end - index <= _SLOT_WORDS
            and sum(map(len, run)) <= _SLOT_CHARS
            and any(word[:1].isupper() for word in run)
            and not any(char.isdigit() for word in run for char in word)
            and not (len(run) == 1 and run[0].isupper() and _ABBREVIATION.fullmatch(run[0]))
        ):
            slots.setdefault((folded[index - 1], folded[end]), (index, " ".join(folded[index:end])))
        index = end
    return slots


def _folded_word(word: str) -> str:
    """A word as the shingles read it: case-folded, its spelling variants folded (ё, е)."""
    folded = word.casefold()
    return folded if folded.isascii() else folded.translate(SPELLING_FOLD)


def _one_name(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= _SAME_NAME


# A number as written: a text compared with a copy in its own language needs no reading
# of it, only its digits in ASCII (full-width ones are folded by NFKC; Arabic-Indic,
# Persian, Devanagari, Thai... here) and the Arabic decimal and thousands separators as
# "." and ",": "۲۰۲۶" is "2026", "۳۱٫۲" is "31.2".
_NUMBER_TOKEN = re.compile(r"\d+(?:[.,:/\u066b\u066c]\d+)*")


def text_figures(text: str) -> frozenset[str]:
    """The distinct numbers of ``text``, as written (in ASCII digits)."""
    return frozenset(map(_ascii_number, _NUMBER_TOKEN.findall(unicodedata.normalize("NFKC", text))))


def _ascii_number(number: str) -> str:
    return number if number.isascii() else ascii_digits(number).translate(ARABIC_SEPARATORS)


@lru_cache(maxsize=8)
def _permutations(seed: int, num_perm: int) -> tuple[tuple[int, int], ...]:
    perms = []
    for index in range(num_perm):
        digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=16, person=_PERM_PERSON).digest()
        a = int.from_bytes(digest[:8], "big") % (_MERSENNE_61 - 1) + 1
        b = int.from_bytes(digest[8:], "big") % _MERSENNE_61
        perms.append((a, b))
    return tuple(perms)


@dataclass(frozen=True)
class TextIndex:
    """A text's shingle profile, MinHash signature and band keys (empty when too short)."""

    profile: ShingleProfile
    signature: list[int]
    keys: list[int]


def index_of(text: str, lang: str | None, params: NearDupParams) -> TextIndex:
    """What near-duplicate lookup and storage need of ``text``, computed once."""
    shingled = profile(text, lang, params)
    sig = signature(shingled.shingles, params) if shingled.shingles else []
    return TextIndex(shingled, sig, band_keys(sig, params) if sig else [])


def signature(shingle_set: Iterable[int], params: NearDupParams) -> list[int]:
    """MinHash signature: ``num_perm`` unsigned 32-bit ints, or ``[]`` for no shingles.

    Position i is the minimum of ``(a_i * x + b_i) mod (2**61 - 1)`` over the shingles
    x, truncated to 32 bits (4 bytes per value as :func:`signature_to_bytes`). Computed
    with numpy in exact modular arithmetic: identical to the pure-Python definition
    (:func:`signature_reference`, checked by the tests), several times faster.
    """
    values = np.fromiter((x % _MERSENNE_61 for x in shingle_set), dtype=np.uint64)
    if values.size == 0:
        return []
    a_high, a_low, b = _permutation_arrays(params.seed, params.num_perm)
    best = np.full(params.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    # Chunks bound the temporaries (num_perm x chunk) whatever the text's length.
    for start in range(0, values.size, _CHUNK):
        chunk = values[None, start : start + _CHUNK]
        np.minimum(best, _hashed_chunk(a_high, a_low, b, chunk).min(axis=1), out=best)
    return [int(value) & _MASK_32 for value in best]


def _hashed_chunk(
    a_high: NDArray[np.uint64], a_low: NDArray[np.uint64], b: NDArray[np.uint64], x: NDArray[np.uint64]
) -> NDArray[np.uint64]:
    """``(a * x + b) mod (2**61 - 1)`` for every permutation (rows) and shingle (columns),
    for a, x < 2**61 (``a`` given as its high and low 32 bits), without 128-bit integers.

    With a = ah*2**32 + al and x = xh*2**32 + xl the partial products fit in 64 bits, and
    2**64 = 8, 2**61 = 1 modulo the prime: a value's bits above 61 are added back in
    ("folded"). The sum stays below 2**63 + 2**34 until ``b`` is added; two folds and one
    conditional subtraction reduce it. Three arrays are reused in place, step after step
    (a fifth faster than a new array per step)."""
    x_high, x_low = x >> np.uint64(32), x & _LOW_32
    scratch = a_low * x_low
    total = scratch & _P  # (al*xl folded: < 2**61 + 8)
    scratch >>= np.uint64(61)
    total += scratch
    middle = a_high * x_low
    np.multiply(a_low, x_high, out=scratch)
    middle += scratch  # < 2**62; times 2**32 splits at bit 29
    np.right_shift(middle, np.uint64(29), out=scratch)
    total += scratch
    middle &= _LOW_29
    middle <<= np.uint64(32)
    total += middle  # < 2**62 + 2**34
    np.multiply(a_high, x_high, out=scratch)  # < 2**58; times 2**64 is times 8
    scratch <<= np.uint64(3)
    total += scratch
    total += b  # < 2**63 + 2**34: no overflow
    for _ in range(2):  # (folded twice, as _mod_mersenne)
        np.bitwise_and(total, _P, out=scratch)
        total >>= np.uint64(61)
        total += scratch
    np.subtract(total, _P, out=total, where=total >= _P)
    return total


def signature_reference(shingle_set: Iterable[int], params: NearDupParams) -> list[int]:
    """The definition of :func:`signature` in plain Python integers (the test oracle)."""
    values = [x % _MERSENNE_61 for x in shingle_set]
    if not values:
        return []
    return [
        min((a * x + b) % _MERSENNE_61 for x in values) & _MASK_32
        for a, b in _permutations(params.seed, params.num_perm)
    ]


_CHUNK = 2048
_P = np.uint64(_MERSENNE_61)
_LOW_32 = np.uint64(_MASK_32)
_LOW_29 = np.uint64((1 << 29) - 1)


@lru_cache(maxsize=8)
def _permutation_arrays(
    seed: int, num_perm: int
) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.uint64]]:
    """The permutations' ``a`` split in its high and low 32 bits, and ``b``, as columns."""
    perms = _permutations(seed, num_perm)
    a = np.array([p[0] for p in perms], dtype=np.uint64)[:, None]
    b = np.array([p[1] for p in perms], dtype=np.uint64)[:, None]
    return a >> np.uint64(32), a & _LOW_32, b


def signature_to_bytes(sig: Sequence[int]) -> bytes:
    """Pack a signature for a BLOB/BYTEA column (4 bytes per value, big-endian)."""
    return b"".join(value.to_bytes(4, "big") for value in sig)


def signature_from_bytes(data: bytes) -> list[int]:
    """Inverse of :func:`signature_to_bytes`."""
    if len(data) % 4:
        raise ValueError("a packed signature has a multiple of 4 bytes")
    return [int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data), 4)]


def band_keys(sig: Sequence[int], params: NearDupParams) -> list[int]:
    """One signed 64-bit key per band (fits BIGINT), or ``[]`` for an empty signature.

    The band's index is hashed with its values, so equal values in different bands
    never give equal keys and one indexed column holds all bands.
    """
    if not sig:
        return []
    if len(sig) != params.num_perm:
        raise ValueError(f"signature has {len(sig)} values, expected {params.num_perm}")
    keys = []
    for band in range(params.bands):
        chunk = sig[band * params.rows : (band + 1) * params.rows]
        payload = band.to_bytes(2, "big") + b"".join(v.to_bytes(4, "big") for v in chunk)
        digest = hashlib.blake2b(payload, digest_size=8, person=_BAND_PERSON).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    return keys


def estimate_jaccard(sig_a: Sequence[int], sig_b: Sequence[int]) -> float:
    """Share of positions where two signatures agree: an estimate of their Jaccard."""
    if not sig_a or not sig_b:
        return 0.0
    if len(sig_a) != len(sig_b):
        raise ValueError("signatures of different lengths are not comparable")
    return sum(1 for a, b in zip(sig_a, sig_b, strict=True) if a == b) / len(sig_a)


def candidate_probability(jaccard: float, params: NearDupParams) -> float:
    """Probability that two texts of this Jaccard similarity share a band key."""
    return 1.0 - (1.0 - jaccard**params.rows) ** params.bands


def verify_profiles(a: ShingleProfile, b: ShingleProfile, params: NearDupParams) -> Verification:
    """The decision of :func:`verify` on precomputed profiles."""
    if not a.shingles or not b.shingles:
        return Verification(0.0, False, "too_short")
    overlap = len(a.shingles & b.shingles)
    jaccard = overlap / (len(a.shingles) + len(b.shingles) - overlap)
    containment = overlap / min(len(a.shingles), len(b.shingles))
    smaller, larger = (a, b) if len(a.shingles) <= len(b.shingles) else (b, a)
    smaller_opening = len(smaller.opening & larger.shingles) / len(smaller.opening)
    larger_opening = len(larger.opening & smaller.shingles) / len(larger.opening)
    opening = max(smaller_opening, larger_opening)
    if overlap < params.min_overlap:
        reason = "small_overlap"
    elif containment < params.containment_threshold:
        reason = "low_containment"
    elif opening < params.opening_threshold or not _opening_holds_across_sizes(
        len(smaller.shingles), len(larger.shingles), smaller_opening, larger_opening, params
    ):
        reason = "different_opening"
    elif not _figures_agree(a.figures, b.figures, params):
        reason = "different_figures"
    elif params.name_swaps and swapped_names(a.words, b.words) >= params.name_swaps:
        reason = "different_names"
    else:
        return Verification(containment, True, "duplicate", jaccard, opening, overlap)
    return Verification(containment, False, reason, jaccard, opening, overlap)


def _opening_holds_across_sizes(
    smaller_size: int, larger_size: int, smaller_opening: float, larger_opening: float, params: NearDupParams
) -> bool:
    """Whether a pair of very unequal texts keeps a story's opening (see :func:`verify`).

    When the larger text has more than ``size_ratio`` times the shingles of the smaller,
    either the larger's opening is in the smaller (a truncated copy, or an original with
    an update or correction appended) or the smaller's opening is *mostly* in the larger,
    ``smaller_opening_threshold`` of it (an excerpt, which begins inside the larger text).
    """
    if larger_size <= params.size_ratio * smaller_size:
        return True
    return larger_opening >= params.opening_threshold or smaller_opening >= params.smaller_opening_threshold


def _figures_agree(a: frozenset[str], b: frozenset[str], params: NearDupParams) -> bool:
    """Whether the smaller of two sets of numbers is mostly in the larger (or too small
    to tell)."""
    smaller, larger = (a, b) if len(a) <= len(b) else (b, a)
    if len(smaller) < params.min_figures:
        return True
    return len(smaller & larger) / len(smaller) >= params.figures_containment


def verify(
    text_a: str,
    text_b: str,
    lang_a: str | None,
    lang_b: str | None,
    params: NearDupParams,
) -> Verification:
    """Decide exactly whether two texts are copies of one story.

    Duplicate when all five hold:

    * ``overlap >= min_overlap``: the shared shingles form at least a passage;
    * containment ``|A∩B| / min(|A|, |B|) >= containment_threshold``: most of the
      smaller text is in the larger. Unlike Jaccard this stays high for a truncated
      copy, a copy with an appended update or correction, or an excerpt of a seed
      document republished whole;
    * opening ``>= opening_threshold``: for at least one of the texts, that share of
      the shingles of its first ``opening_fraction`` (by position) is in the other. A
      copy keeps the story's opening, or at least most of it when the first paragraph
      is rewritten; re-ordered paragraphs are still found because the test is
      membership, not position, in the other text. When the larger text has more than
      ``size_ratio`` times the shingles of the smaller, the smaller one's opening counts
      only when ``smaller_opening_threshold`` of it is in the larger: a truncated copy
      or an original with an update appended keeps the larger text's opening, and an
      excerpt begins inside the larger text, while a short brief whose shared part is
      only its tail (an outlet's author box) no longer passes on its own;
    * the figures agree: numbers are one placeholder in the shingles, so when the text
      with fewer distinct numbers has ``min_figures`` of them, ``figures_containment``
      of them must be in the other (two market closes of one template share every
      shingle, not their figures);
    * the names agree: fewer than ``name_swaps`` places of the lead where the two texts
      put different names between the same two words (:func:`swapped_names`; two
      flashes of one frame, "X met Y in Z", share nearly every shingle and no figure).

    The opening rule is the guard against a long common block deciding alone: two
    short, distinct stories under one heavy site footer (disclaimer, "about the
    author") share a large part of their shingles, but none of their openings. It
    fails if a shared block sits at the *start* of both texts, or if the block is
    more than about twice the length of the stories, so boilerplate must still be
    removed upstream.

    The size rule is for a brief under such a footer: a 40-word brief over a 100-word
    author box is mostly the box (containment 0.71) and the first half of its shingles
    runs into it (opening 0.43-0.45), so every longer story of the outlet, under the
    same box, was taken for a copy of the brief. Measured (``benchmarks/dedup_quality.py``,
    ``README.md``): on the labelled set the rule was chosen on, copies more than 1.5
    times apart whose larger opening is not in the smaller have a smaller opening of
    0.78 or more, and its figures are unchanged; checked once afterwards, briefs of the
    template set under their footer against longer stories under it were merged in 120,
    2 and 51 of 400 pairs (en, ru, zh), now in none, while all 300 copies under the
    footer and 25 of 25 excerpts of the seed documents stay copies. Briefs of about the
    same length under one footer are not told apart by it (a brief's own lead then looks
    like a rewritten first paragraph).
    """
    return verify_profiles(profile(text_a, lang_a, params), profile(text_b, lang_b, params), params)


class CandidateIndex(Protocol):
    """What :func:`find_duplicate` needs of an index: the database repository's too."""

    def candidates(self, sig: Sequence[int]) -> set[int]:
        """Ids of stored articles sharing at least one band key with ``sig``."""
        ...


class MemoryIndex:
    """An in-memory LSH index over band keys: the reference for the database index.

    Semantics the database table must reproduce: an article is stored under each of its
    band keys; ``candidates(sig)`` is every stored article sharing at least one key;
    an article without a signature (too short) is never stored; adding an id again
    replaces its keys.
    """

    def __init__(self, params: NearDupParams) -> None:
        self.params = params
        self._buckets: dict[int, set[int]] = {}
        self._keys_by_id: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._keys_by_id)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._keys_by_id

    def add(self, article_id: int, sig: Sequence[int]) -> None:
        """Store ``article_id`` under the band keys of ``sig`` (nothing if empty)."""
        self.remove(article_id)
        keys = band_keys(sig, self.params)
        if not keys:
            return
        self._keys_by_id[article_id] = keys
        for key in keys:
            self._buckets.setdefault(key, set()).add(article_id)

    def remove(self, article_id: int) -> None:
        """Forget ``article_id`` (no error if absent)."""
        for key in self._keys_by_id.pop(article_id, []):
            bucket = self._buckets[key]
            bucket.discard(article_id)
            if not bucket:
                del self._buckets[key]

    def candidates(self, sig: Sequence[int]) -> set[int]:
        """Ids of stored articles sharing at least one band key with ``sig``."""
        found: set[int] = set()
        for key in band_keys(sig, self.params):
            found |= self._buckets.get(key, set())
        return found


def find_duplicate(
    text: str,
    lang: str | None,
    index: CandidateIndex,
    texts_by_id: Mapping[int, str],
    params: NearDupParams,
    *,
    langs_by_id: Mapping[int, str | None] | None = None,
    sig: Sequence[int] | None = None,
) -> tuple[int, float] | None:
    """The stored article ``text`` near-duplicates, as ``(id, similarity)``, or None.

    Every LSH candidate is verified. Among the verified ones the most alike wins
    (highest Jaccard, then highest containment, both rounded to 3 decimals) and ties go
    to the smallest id, i.e. the earliest copy. The similarity returned is the
    containment (:attr:`Verification.similarity`). Candidates missing from
    ``texts_by_id`` are skipped; ``langs_by_id`` gives their language hints. Pass ``sig``
    when the caller has already computed the signature of ``text`` (to store it).
    """
    own = profile(text, lang, params)
    if sig is None:
        sig = signature(own.shingles, params)
    if not sig or not own.shingles:
        return None
    best: tuple[float, float, int] | None = None
    for candidate_id in sorted(index.candidates(sig)):
        other_text = texts_by_id.get(candidate_id)
        if other_text is None:
            continue
        other_lang = langs_by_id.get(candidate_id) if langs_by_id is not None else None
        verdict = verify_profiles(own, profile(other_text, other_lang, params), params)
        if not verdict.is_duplicate:
            continue
        rank = (round(verdict.jaccard, 3), round(verdict.similarity, 3))
        if best is None or rank > best[:2]:
            best = (*rank, candidate_id)
    return None if best is None else (best[2], best[1])
