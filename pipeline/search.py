"""Full-text search: one analyser for documents and queries, the query language, snippets.

The language processing happens here, in Python, so that SQLite (FTS5) and PostgreSQL
(tsvector) index exactly the same tokens and a query finds the same articles on both:

* words are NFKC-normalised and case-folded (``str.casefold``, so ``ПУТИН`` = ``путин``
  and ``STRASSE`` = ``straße``; the dot of Turkish ``İ`` is dropped so it folds to ``i``),
  ``ё`` is read as ``е``, and each word is stemmed with the Snowball stemmer of its
  *script* (Latin: English, Cyrillic: Russian, Greek, Arabic, Armenian, Devanagari:
  Hindi, Tamil). Queries carry no language, so the script is the only thing a query and
  a document agree on. Russian is stemmed again while that changes it (down to three
  letters), and no word is stemmed into a stop word or a single letter;
* Chinese (and Japanese kana) runs become one token per character: the bigram starting
  at that character, or the character itself at the end of a run. Every substring of a
  run is then a phrase of bigrams (``天然气`` = ``天然 然气``), and a single character a
  prefix (``气*``). A query's unquoted Chinese is split into words by a segmenter
  (jieba) and each word must occur, so ``能源合作`` (能源 + 合作) finds ``能源领域合作``
  while the index itself never depends on how a segmenter cut a document.
* Thai, Lao, Myanmar and Khmer, also written without spaces between words, are indexed
  the same way in units of a letter with its vowel signs and tone marks (``กิ``, ``น``):
  a query's run of them is one phrase of unit bigrams, found wherever it occurs in a
  word, since no segmenter for them ships with the product.

Query syntax (both databases)::

    pipelines siberia        every word (AND), inflected forms match
    "power of siberia"       a phrase: the words in this order
    -ukraine  -"joint drill" leave out articles with this word or phrase
    gas OR oil               either (binds tighter than AND: gas OR oil pipeline)
    gas AND oil              AND in capitals: the same as gas oil
    gas NOT oil              NOT in capitals: the same as gas -oil (a word or a phrase)

Anything else (``*``, ``(``, ``:``, ``^``, ``NEAR``, a lower-case ``and``) is just text: it
cannot reach the database's own query language.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.digits import ascii_digits
from pipeline.errors import FilterError
from pipeline.hanzi import simplified_characters
from pipeline.unicode_marks import MARKS_BMP, cluster_start

SCHEME = "fts8"  # bump when the tokens change: `summitwatch init` then rebuilds the index
MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 32
MAX_TOKEN_CHARS = 64  # PostgreSQL refuses lexemes over 2 KiB; nobody searches for longer words
# PostgreSQL stores positions up to 16383; both databases index the same leading tokens
# so that phrases match alike. The title comes first, then one gap, then the text.
MAX_TITLE_TOKENS = 256
MAX_POSITION = 16383
MAX_SNIPPET_SCAN = 50_000  # characters of a text searched for the snippet's passage

# Han ideographs (with extensions and compatibility forms) and Japanese kana: scripts
# written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"


def _letters_and_marks(*blocks: tuple[int, int]) -> str:
    """A character class body of the letters and marks of Unicode ``blocks`` (their
    punctuation, such as Khmer's full stop, still separates; their digits are numbers,
    read as ASCII ones like every script's)."""
    wanted = [
        code
        for first, last in blocks
        for code in range(first, last + 1)
        if unicodedata.category(chr(code))[0] in "LM"
    ]
    ranges: list[list[int]] = []
    for code in wanted:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


# Thai, Lao, Myanmar (with its extensions) and Khmer (with its symbols): scripts written
# without spaces between words whose letters carry vowel signs and tone marks.
_CLUSTERED = _letters_and_marks(
    (0x0E00, 0x0E7F),
    (0x0E80, 0x0EFF),
    (0x1000, 0x109F),
    (0xA9E0, 0xA9FF),
    (0xAA60, 0xAA7F),
    (0x1780, 0x17FF),
    (0x19E0, 0x19FF),
)
# A unit of such a run: a character with the marks that follow it.
_UNIT = re.compile(rf".[{MARKS_BMP}]*", re.S)
# A word: letters and digits with the combining marks among them (vowel signs, viramas,
# tone marks, Arabic vowel marks; ``\w`` has none of them), joined by apostrophes.
# Invisible characters that may sit inside a word or a run without splitting it (a soft
# hyphen, a zero-width space or word joiner, a stray byte-order mark): left out of terms.
_INVISIBLE = "\u00ad\u200b\u2060\ufeff"
_INVISIBLE_SET = frozenset(_INVISIBLE)
_OPTIONAL_MARKS_SCRIPT = re.compile("[\u0400-\u052f\u0590-\u05ff]")  # Cyrillic, Hebrew
# Persian's yeh and keheh, which Persian pages also type as Arabic's yeh and kaf (the
# keyboard decides): one word either way ("یوان" and "يوان", yuan), read as the Arabic
# letters the stemmer knows.
_PERSIAN_LETTERS = str.maketrans({"\u06cc": "\u064a", "\u06a9": "\u0643"})
_OPTIONAL_MARKS = re.compile(
    "(?<=[\u0400-\u052f])[\u0300\u0301]|[\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7]"
)
_WORD_CHAR = rf"(?:[^\W_{_CJK}{_CLUSTERED}]|[{MARKS_BMP}{_INVISIBLE}])"
_TOKEN = re.compile(
    rf"(?P<cjk>[{_CJK}](?:[{_CJK}]|[{_INVISIBLE}]+(?=[{_CJK}]))*)"
    rf"|(?P<clustered>[{_CLUSTERED}](?:[{_CLUSTERED}]|[{_INVISIBLE}]+(?=[{_CLUSTERED}]))*)"
    rf"|(?P<word>{_WORD_CHAR}+(?:['’]{_WORD_CHAR}+)*)"
)
# Apostrophes (and the modifier letters written for them) that split a Latin-script word
# into its parts: an elided article or preposition (French "l'Ukraine", Italian
# "dell'energia") and a suffix after a name (Turkish "Pekin'de") are words of their own.
_APOSTROPHES = "'’ʼʻ"
_FIRST_LETTER = re.compile(r"[^\W\d_]")
_LATIN_LETTER = re.compile("[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
_WORD_PART = re.compile(rf"[^{_APOSTROPHES}]+")
_RUNS = frozenset({"cjk", "clustered"})  # the groups indexed as bigrams of units
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_RUN_CHAR = re.compile(rf"[{_CJK}{_CLUSTERED}]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The Snowball stemmer for each script (first letter of a word decides).
_SCRIPT_STEMMERS: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "english"),
    (0x1E00, 0x1EFF, "english"),
    (0x0370, 0x03FF, "greek"),
    (0x1F00, 0x1FFF, "greek"),
    (0x0400, 0x052F, "russian"),
    (0x0530, 0x058F, "armenian"),
    (0x0600, 0x06FF, "arabic"),
    (0x0900, 0x097F, "hindi"),
    (0x0B80, 0x0BFF, "tamil"),
)


# Function words: indexed as they are, and no other word is stemmed into one (``ии`` "AI"
# is not ``и`` "and", ``событие`` "event" not ``собой`` "oneself"): such a word is indexed
# unstemmed. Written folded, with е for ё.
_ENGLISH_STOP_WORDS = """a about after against among am an and are as at be been before being between both
but by can could did do does doing during each either for from had has have having he her hers herself
him himself his i if in into is it its itself me mine my myself neither no nor not of off on onto or our
ours ourselves out over per she should than that the their theirs them themselves these they this those
through to under until up upon us via was we were what when where which while who whom whose why will
with within without would you your yours yourself yourselves"""
_RUSSIAN_STOP_WORDS = """а без бы был была были было быть в вам вами вас во вот все всего всей всем всеми
всех вы где да даже для до его ее ей ему если есть же за и из изо или им ими их к как какая какие каким
какой когда ко кого кому кто ли либо меж между меня мне мной мы на над надо нам нами нас не него нее ней
нем нему нет ни ним ними них но ну о об обо он она они оно от ото перед по под после при про с себе себя
со собой та так те тем то тобой того той том тот ты у чего чем чему что чтоб чтобы эта эти этим этих это
этого этой этом этот я"""
_STOP_WORDS = {
    "english": frozenset(_ENGLISH_STOP_WORDS.split()),
    "russian": frozenset(_RUSSIAN_STOP_WORDS.split()),
}
# Russian is stemmed again while that still changes the word: the Snowball stemmer takes a
# bare noun's last letters for an ending ("газпром" -> "газпр", "китай" -> "кита") but not
# its inflected forms' ("газпрома" -> "газпром", "китая" -> "кит"). Only down to three
# letters, so that "учения" stays "учен", not "уч" ("учить").
_STEMMED_AGAIN = frozenset({"russian"})
MIN_STEM_AGAIN_CHARS = 3


class QueryError(FilterError):
    """A search query that cannot be run; the message says why."""


@dataclass(frozen=True)
class Token:
    """One index token and where it came from in the original text."""

    term: str
    start: int
    end: int


# Analysis -----------------------------------------------------------------------------------


@functools.cache
def _stemmer(language: str) -> Any:
    import Stemmer  # PyStemmer: the Snowball stemmers in C, loaded on first use

    return Stemmer.Stemmer(language)


def _language_of(word: str) -> str | None:
    code = ord(word[0])
    for low, high, language in _SCRIPT_STEMMERS:
        if low <= code <= high:
            return language
    return None


# A word is read up to this many characters: its term keeps MAX_TOKEN_CHARS of them, and
# the cache below is keyed on what is read (keyed on whole words, a page of long "words"
# held megabytes in it until the process ended).
_WORD_CHARS_READ = 4 * MAX_TOKEN_CHARS


def normalise_word(word: str) -> str:
    """The index term of one word (not Chinese): folded, normalised and stemmed."""
    return _normalised_word(word[:_WORD_CHARS_READ])


# What NFKC spells a few word characters with and no term may hold: ASCII punctuation
# ("⑴" is "(1)", "⒈" "1.", "㈠" "(一)") and spaces ("ﷺ" is four Arabic words). SQLite's
# tokenizer splits a term there, PostgreSQL keeps it whole: the same word was found on one
# database and not the other. (The apostrophe is the word's own, dealt with below.)
_SPELLED_APART = re.compile(r"[\s!-&(-/:-@\[-`{-~]")


@functools.lru_cache(maxsize=262_144)
def _normalised_word(word: str) -> str:
    folded = unicodedata.normalize("NFKC", word.casefold()).replace("\u0307", "")
    if not word.isascii():
        # NFKC can give capitals that case folding did not see (mathematical and
        # superscript letters, "𝐆𝐚𝐬", "ᴳ", "ℍ"): folded again, so "𝐆𝐚𝐬" is "gas", as
        # SQLite's tokenizer already read it and PostgreSQL did not.
        if folded != folded.casefold():
            folded = unicodedata.normalize("NFKC", folded.casefold())
        folded = _SPELLED_APART.sub("", folded)
    if not folded.isascii():
        folded = "".join(char for char in folded if char not in _INVISIBLE_SET)
        folded = folded.replace("ё", "е").replace("’", "'").replace("ʼ", "'").replace("ʻ", "'")
        folded = folded.translate(_PERSIAN_LETTERS)
        # Marks a text may or may not carry: Russian stress accents (Пу́тин), Hebrew vowel
        # points and cantillation (שָׁלוֹם). (Other scripts' marks are spelling: kept.)
        if _OPTIONAL_MARKS_SCRIPT.search(folded):
            folded = _OPTIONAL_MARKS.sub("", folded)
        folded = ascii_digits(folded)  # "۲۰۲۶" is "2026"
    folded = folded[:MAX_TOKEN_CHARS]
    if not folded or folded.isdigit():
        return folded
    language = _language_of(folded)
    if language != "english":
        # An apostrophe inside a Ukrainian or Belarusian word is spelling ("дев'яносто").
        folded = folded.replace("'", "") or folded
    if language == "arabic":
        folded = _without_arabic_prefix(folded)
    elif _HANGUL.match(folded):
        return _without_korean_particles(folded)
    stem = _stem(language, folded) if language else folded
    # Apostrophes would split the token again in the database (and "russia's" is "russia").
    return str(stem).replace("'", "") or folded.replace("'", "")


# Arabic writes the article and the conjunctions and prepositions before it as one word
# with the noun ("والتدريبات" "and the exercises", "باليوان" "in yuan"), which the Snowball
# stemmer leaves: the longest of these prefixes is taken off when three letters remain,
# as light stemmers for Arabic retrieval do. (Not a lone "و" "and": too many words begin
# with the letter, "واشنطن", "ولاية".)
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_HANGUL = re.compile("[\uac00-\ud7a3]")
# Korean particles follow the noun in the same word ("베이징에서" "in Beijing", "몽골을"):
# taken off, one after another, while two syllables remain ("한반도를" and "한반도" both
# read "한반"; a noun that ends like a particle loses it on both sides alike).
_KOREAN_PARTICLES = tuple(
    sorted(
        [
            "에서",
            "에게",
            "으로",
            "부터",
            "까지",
            "처럼",
            "보다",
            "이라고",
            "라고",
            "하고",
            "이나",
            "이며",
            "께서",
            "은",
            "는",
            "이",
            "가",
            "을",
            "를",
            "의",
            "에",
            "와",
            "과",
            "도",
            "만",
            "로",
            "서",
        ],
        key=len,
        reverse=True,
    )
)


def _without_arabic_prefix(word: str) -> str:
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 3:
            return word[len(prefix) :]
    return word


def _without_korean_particles(word: str) -> str:
    while True:
        for particle in _KOREAN_PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= 2:
                word = word[: -len(particle)]
                break
        else:
            return word


def _stem(language: str, word: str) -> str:
    """``word`` stemmed, unless it is a stop word or that makes it a single letter or a stop word."""
    stemmer = _stemmer(language)
    stop_words = _STOP_WORDS.get(language, frozenset())
    if word in stop_words:
        return word
    stem = str(stemmer.stemWord(word))
    if len(stem) < 2 or (stem in stop_words and stem != word.partition("'")[0]):  # ("it's" is "it")
        return word
    if language not in _STEMMED_AGAIN:
        return stem
    while True:
        shorter = str(stemmer.stemWord(stem))
        if shorter == stem or len(shorter) < MIN_STEM_AGAIN_CHARS or shorter in stop_words:
            return stem
        stem = shorter


@functools.lru_cache(maxsize=65_536)
def _cjk_char(char: str) -> str:
    # Traditional Chinese is read as Simplified (pipeline/hanzi.py): 人民幣 is 人民币. (The
    # kana voicing marks "゛" and "゜" are a space and a mark in NFKC: the space left out.)
    return simplified_characters(_SPELLED_APART.sub("", unicodedata.normalize("NFKC", char)) or char)


def _units(run: str, group: str | None) -> list[tuple[str, int, int]]:
    """The units of a run without spaces (normalised, with their offsets in ``run``): its
    characters in Chinese and Japanese, a letter with its marks in Thai and its kin;
    invisible characters left out."""
    if group == "cjk":
        return [
            (_cjk_char(char), index, index + 1)
            for index, char in enumerate(run)
            if char not in _INVISIBLE_SET
        ]
    # Invisible characters out and each character normalised first, then cut into units
    # (a letter with the marks that follow it), each unit's marks in canonical order:
    # NFKC writes Thai "ำ" as "ํา" and Lao "ໜ" as "ຫນ", which changes where units end.
    chars: list[str] = []
    origin: list[int] = []  # the index in ``run`` of each normalised character
    for index, char in enumerate(run):
        if char not in _INVISIBLE_SET:
            folded = _cjk_char(char)
            chars.append(folded)
            origin.extend([index] * len(folded))
    normalised = "".join(chars)
    return [
        (unicodedata.normalize("NFC", unit.group()), origin[unit.start()], origin[unit.end() - 1] + 1)
        for unit in _UNIT.finditer(normalised)
    ]


def _split_at_apostrophes(word: str) -> bool:
    """Whether ``word`` is a Latin-script word with an apostrophe (linear in its length)."""
    if "'" not in word and "’" not in word and "ʼ" not in word and "ʻ" not in word:
        return False
    first = _FIRST_LETTER.search(word)
    return first is not None and bool(_LATIN_LETTER.match(first.group()))


def _word_tokens(word: str, offset: int) -> list[Token]:
    """The terms of one spaced word, with their offsets: a Latin-script word with
    apostrophes is its parts (a final English "'s" left out, as the stemmer would)."""
    if not _split_at_apostrophes(word):
        term = normalise_word(word)
        return [Token(term, offset, offset + len(word))] if term else []
    parts = list(_WORD_PART.finditer(word))
    if len(parts) > 1 and parts[-1].group().lower() == "s":
        parts.pop()
    found = []
    for part in parts:
        term = normalise_word(part.group())
        if term:
            found.append(Token(term, offset + part.start(), offset + part.end()))
    return found


def _run_tokens(units: list[tuple[str, int, int]], offset: int) -> list[Token]:
    """A run's tokens from its units: the bigram starting at each unit, the last unit alone."""
    found = []
    for (unit, start, end), following in zip(units, [*units[1:], None], strict=True):
        if following is None:
            found.append(Token(unit, offset + start, offset + end))
        else:
            found.append(Token(unit + following[0], offset + start, offset + following[2]))
    return found


def _match_tokens(match: re.Match[str]) -> list[Token]:
    """The tokens of one match of ``_TOKEN`` (a run, or a word), offsets in the text."""
    if match.lastgroup in _RUNS:
        return _run_tokens(_units(match.group(), match.lastgroup), match.start())
    return _word_tokens(match.group(), match.start())


def tokens(text: str) -> list[Token]:
    """The index tokens of ``text`` with their character offsets in ``text``."""
    return [token for match in _TOKEN.finditer(text) for token in _match_tokens(match)]


def terms(text: str) -> list[str]:
    """The index terms of ``text`` in order (what the database stores): :func:`tokens`
    without the offsets, which indexing does not need."""
    found: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.lastgroup in _RUNS:
            if match.lastgroup == "cjk":
                chars = [_cjk_char(c) for c in match.group() if c not in _INVISIBLE_SET]
            else:
                chars = [unit for unit, _, _ in _units(match.group(), match.lastgroup)]
            found.extend(chars[i] + chars[i + 1] for i in range(len(chars) - 1))
            found.append(chars[-1])
            continue
        word = match.group()
        if _split_at_apostrophes(word):
            found.extend(token.term for token in _word_tokens(word, 0))
            continue
        term = normalise_word(word)
        if term:
            found.append(term)
    return found


@dataclass(frozen=True)
class IndexedText:
    """The two token streams stored for one article (title, then text)."""

    title: list[str]
    body: list[str]

    def fts5_columns(self) -> tuple[str, str]:
        """The streams as FTS5 column values: terms separated by spaces (``ascii`` tokenizer)."""
        return " ".join(self.title), " ".join(self.body)

    def tsvector_literal(self) -> str:
        """The streams as a PostgreSQL ``tsvector`` literal with positions and weights.

        The title is weight A, the text weight D; one unused position separates them so
        that no phrase spans the two (as FTS5 matches phrases within one column).
        """
        positions: dict[str, list[str]] = {}
        for index, term in enumerate(self.title, 1):
            positions.setdefault(term, []).append(f"{index}A")
        offset = len(self.title) + 2
        for index, term in enumerate(self.body):
            positions.setdefault(term, []).append(str(offset + index))
        return " ".join(f"{_quote_lexeme(term)}:{','.join(places)}" for term, places in positions.items())


# PostgreSQL refuses a tsvector over 1 MB: its distinct lexemes (with a few bytes each of
# bookkeeping) are kept well under that, on both databases alike. Only a text of tens of
# thousands of distinct long words (a list of hashes, a hostile page) reaches it.
MAX_LEXEME_BYTES = 600_000
_LEXEME_OVERHEAD = 8


def index_text(title: str | None, text: str) -> IndexedText:
    """What to index for an article: its title and text terms, capped alike on both databases
    (positions, and the bytes of distinct terms)."""
    title_terms = terms(title or "")[:MAX_TITLE_TOKENS]
    room = MAX_POSITION - len(title_terms) - 1
    body = terms(text)[:room]
    seen: set[str] = set()
    size = 0
    for index, term in enumerate([*title_terms, *body]):
        if term in seen:
            continue
        seen.add(term)
        size += len(term.encode()) + _LEXEME_OVERHEAD
        if size > MAX_LEXEME_BYTES:
            cut = index - len(title_terms)
            return IndexedText(title_terms if cut >= 0 else title_terms[:index], body[: max(cut, 0)])
    return IndexedText(title_terms, body)


def _quote_lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


# Queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phrase:
    """Terms that must follow each other; ``prefix``: the last one is a prefix (a Chinese
    character, a Thai letter with its marks); ``run``: the characters a phrase of bigrams
    stands for, when it was made from one run without spaces (a snippet marks them)."""

    terms: tuple[str, ...]
    prefix: bool = False
    run: str = ""

    def fts5(self) -> str:
        return '"' + " ".join(self.terms) + '"' + ("*" if self.prefix else "")

    def tsquery(self) -> str:
        parts = [_quote_lexeme(term) for term in self.terms]
        if self.prefix:
            parts[-1] += ":*"
        return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"


# One query word: every phrase in it must match (a hyphenated word is one phrase; an
# unquoted Chinese run is a phrase per segmented word).
Unit = tuple[Phrase, ...]


@dataclass(frozen=True)
class SearchQuery:
    """A parsed query: every group must match (a group is alternatives joined by OR), no exclusion may."""

    text: str
    groups: tuple[tuple[Unit, ...], ...]
    excluded: tuple[Unit, ...]

    def fts5(self) -> str:
        """The FTS5 MATCH expression (only quoted strings, AND, OR, NOT and parentheses)."""
        positive = " AND ".join(
            _join((_join((p.fts5() for p in unit), "AND") for unit in group), "OR") for group in self.groups
        )
        if not self.excluded:
            return positive
        negative = _join((_join((p.fts5() for p in unit), "AND") for unit in self.excluded), "OR")
        return f"({positive}) NOT {negative}"

    def tsquery(self) -> str:
        """The PostgreSQL ``tsquery`` text (quoted lexemes, so no dictionary or parser is applied)."""
        parts = [
            _join((_join((p.tsquery() for p in unit), "&") for unit in group), "|") for group in self.groups
        ]
        parts += ["!" + _join((p.tsquery() for p in unit), "&") for unit in self.excluded]
        return " & ".join(parts)

    def exclusions(self) -> SearchQuery | None:
        """A query matching what this one leaves out (any of its ``-words``), or None."""
        if not self.excluded:
            return None
        return SearchQuery(self.text, (tuple(self.excluded),), ())

    def chinese_strings(self) -> frozenset[str]:
        """The Chinese phrases of the query as the characters they stand for ("天然气" for
        the bigrams 天然, 然气): a snippet marks where the whole phrase occurs, neither a
        bigram's next character nor the phrase's last character found elsewhere."""
        found: set[str] = set()
        for group in self.groups:
            for unit in group:
                for phrase in unit:
                    if phrase.run:
                        found.add(phrase.run)
                        continue
                    if not all(_CJK_CHAR.match(term[:1]) for term in phrase.terms):
                        continue
                    chars = phrase.terms[0] + "".join(term[1:] for term in phrase.terms[1:] if len(term) == 2)
                    found.add(chars)
        return frozenset(found)

    def highlight_terms(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """Terms to mark in a snippet: exact terms, and prefixes (single Chinese characters).
        The words of a phrase of words are not among them (:meth:`word_phrases`)."""
        exact: set[str] = set()
        prefixes: set[str] = set()
        phrases = self.word_phrases()
        for group in self.groups:
            for unit in group:
                for phrase in unit:
                    if phrase.terms in phrases:
                        continue
                    exact.update(phrase.terms[:-1] if phrase.prefix else phrase.terms)
                    if phrase.prefix:
                        prefixes.add(phrase.terms[-1])
        return frozenset(exact), tuple(sorted(prefixes))

    def word_phrases(self) -> frozenset[tuple[str, ...]]:
        """The phrases of two words or more (``"power of siberia"``, a hyphenated word): a
        snippet marks them where they occur whole, not each word wherever it is."""
        return frozenset(
            phrase.terms
            for group in self.groups
            for unit in group
            for phrase in unit
            if len(phrase.terms) > 1
            and not phrase.prefix
            and not phrase.run
            and not _RUN_CHAR.match(phrase.terms[0][:1])
        )


def _join(parts: Any, operator: str) -> str:
    items = list(parts)
    if len(items) == 1:
        return str(items[0])
    return "(" + f" {operator} ".join(items) + ")"


_QUERY_PART = re.compile(r'(?P<neg>-)?"(?P<phrase>[^"]*)"?|(?P<word>\S+)')


def parse_query(text: str) -> SearchQuery:
    """Parse a search box query; :class:`QueryError` says what is wrong with it."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    cleaned = _CONTROL.sub(" ", text).replace("“", '"').replace("”", '"').replace("„", '"')
    groups: list[list[Unit]] = []
    excluded: list[Unit] = []
    pending_or = pending_not = False
    count = 0
    for match in _QUERY_PART.finditer(cleaned):
        word = match.group("word")
        if word == "OR":
            pending_or = bool(groups)
            continue
        if word == "AND":  # what two words mean anyway
            continue
        if word == "NOT":  # the next word or phrase is left out, as "-"
            pending_not = True
            continue
        negative = bool(match.group("neg")) or pending_not
        pending_not = False
        if match.group("phrase") is not None:
            unit = _phrase_unit(match.group("phrase"))
        else:
            assert word is not None
            if word.startswith("-") and len(word) > 1:  # (-"a phrase" is the branch above)
                negative, word = True, word[1:]
            unit = _word_unit(word)
        if not unit:
            pending_or = False
            continue
        count += 1
        if count > MAX_QUERY_TERMS:
            raise QueryError(f"the query has more than {MAX_QUERY_TERMS} words or phrases")
        if negative:
            excluded.append(unit)
        elif pending_or:
            groups[-1].append(unit)
        else:
            groups.append([unit])
        pending_or = False
    if not groups:
        if excluded:
            raise QueryError("the query only excludes: add a word that must appear")
        raise QueryError("the query has no words to search for")
    return SearchQuery(text, tuple(tuple(group) for group in groups), tuple(excluded))


def _phrase_unit(text: str) -> Unit:
    """A quoted phrase: the document tokens of the text, in order.

    A phrase ending in Chinese (or Thai...) ends in that run's last unit, which in a
    document may start a bigram (the run goes on there): it is matched as a prefix.
    """
    # (Only the matches that gave terms: an invisible character alone gives none.)
    matched = [(match, own) for match in _TOKEN.finditer(text) if (own := _match_tokens(match))]
    if not matched:
        return ()
    found = [token.term for _, own in matched for token in own]
    matches = [match for match, _ in matched]
    run = ""
    if len(matches) == 1 and matches[0].lastgroup in _RUNS:
        run = "".join(unit for unit, _, _ in _units(matches[0].group(), matches[0].lastgroup))
    return (Phrase(tuple(found), prefix=matches[-1].lastgroup in _RUNS, run=run),)


def _word_unit(word: str) -> Unit:
    """An unquoted word: a phrase of its tokens (``power-of-siberia``); Chinese is split
    into words, each a phrase of its own; a Thai (Lao, Myanmar, Khmer) run is one phrase."""
    pieces: list[Phrase] = []
    run: list[str] = []  # the terms of the current stretch of spaced words
    for match in _TOKEN.finditer(word):
        if match.lastgroup in _RUNS:
            if run:
                pieces.append(Phrase(tuple(run)))
                run = []
            if match.lastgroup == "cjk":
                folded = "".join(_cjk_char(char) for char in match.group() if char not in _INVISIBLE_SET)
                pieces.extend(_run_phrase(segment, None, folded=True) for segment in _segment(folded))
            else:
                pieces.append(_run_phrase(match.group(), match.lastgroup))
            continue
        run.extend(token.term for token in _word_tokens(match.group(), 0))
    if run:
        pieces.append(Phrase(tuple(run)))
    return tuple(pieces)


def _run_phrase(word: str, group: str | None, *, folded: bool = False) -> Phrase:
    """A run without spaces as a phrase: its unit bigrams, or its one unit as a prefix.
    ``folded``: a Chinese word already normalised, character by character."""
    units = list(word) if folded else [unit for unit, _, _ in _units(word, group)]
    if len(units) == 1:
        return Phrase((units[0],), prefix=True, run=units[0])
    return Phrase(tuple(units[i] + units[i + 1] for i in range(len(units) - 1)), run="".join(units))


def _segment(run: str) -> list[str]:
    """A Chinese run of a query split into words (jieba's dictionary and HMM, via rjieba)."""
    import rjieba  # loaded on first use: the dictionary is built then

    words: list[str] = []
    single = False
    for word in rjieba.cut(run):
        # Characters the dictionary left on their own side by side are read together:
        # they are mostly abbreviations (中俄 "China-Russia", 俄乌), not separate words.
        if len(word) == 1 and single:
            words[-1] += word
            continue
        words.append(word)
        single = len(word) == 1
    return words


# Snippets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Highlighted:
    """Text cut into plain and matched parts; markup is added by the template, after escaping."""

    parts: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(part for part, _ in self.parts)

    @property
    def hits(self) -> int:
        return sum(1 for _, hit in self.parts if hit)

    def ranges(self) -> list[tuple[int, int]]:
        """Character ranges of the matched parts within :attr:`text`."""
        spans = []
        offset = 0
        for part, hit in self.parts:
            if hit:
                spans.append((offset, offset + len(part)))
            offset += len(part)
        return spans


def _matches(term: str, exact: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return term in exact or any(term.startswith(prefix) for prefix in prefixes)


def _hit_spans(text: str, query: SearchQuery) -> list[tuple[int, int, str]]:
    # The snippet of every listed article is cut here: only matches build anything.
    exact, prefixes = query.highlight_terms()
    phrases = query.word_phrases()
    ending: dict[str, list[tuple[str, ...]]] = {}
    for phrase in sorted(phrases, key=len, reverse=True):  # (the longest first)
        ending.setdefault(phrase[-1], []).append(phrase)
    recent: deque[Token] = deque(maxlen=max(map(len, phrases), default=1))
    chinese = bool(prefixes) or any(_RUN_CHAR.match(term[:1]) for term in exact)
    strings = query.chinese_strings() if chinese else frozenset()
    spans: list[tuple[int, int, str]] = []
    for match in _TOKEN.finditer(text, 0, MAX_SNIPPET_SCAN):
        if match.lastgroup in _RUNS:
            recent.clear()  # (a run's terms stand between: no phrase of words spans it)
            if not chinese:
                continue
            run, start = match.group(), match.start()
            units = _units(run, match.lastgroup)
            if strings:
                # Each phrase where it occurs whole, from a unit's start to a unit's end
                # (overlapping occurrences merge).
                spans.extend(_occurrences(units, start, strings, spans))
                continue
            for token in _run_tokens(units, start):
                if _matches(token.term, exact, prefixes):
                    if spans and token.start < spans[-1][1]:  # overlapping bigrams merge
                        spans[-1] = (spans[-1][0], max(token.end, spans[-1][1]), spans[-1][2])
                    else:
                        spans.append((token.start, token.end, token.term))
            continue
        for token in _word_tokens(match.group(), match.start()):
            if token.term in exact:
                spans.append((token.start, token.end, token.term))
            if not phrases:
                continue
            recent.append(token)
            for phrase in ending.get(token.term, ()):
                size = len(phrase)
                if len(recent) >= size and all(
                    recent[len(recent) - size + i].term == term for i, term in enumerate(phrase)
                ):
                    _add_phrase_span(spans, recent[len(recent) - size].start, token.end, " ".join(phrase))
                    break
    return spans


def _add_phrase_span(spans: list[tuple[int, int, str]], start: int, end: int, phrase: str) -> None:
    """Mark a phrase's occurrence: the single words marked inside it give way, and an
    occurrence overlapping the one before widens it (spans stay ordered and apart)."""
    while spans and spans[-1][0] >= start:
        spans.pop()
    if spans and spans[-1][1] > start:
        spans[-1] = (spans[-1][0], max(end, spans[-1][1]), spans[-1][2])
    else:
        spans.append((start, end, phrase))


def _occurrences(
    units: list[tuple[str, int, int]], offset: int, strings: frozenset[str], spans: list[tuple[int, int, str]]
) -> list[tuple[int, int, str]]:
    """Spans (from ``offset``) of every occurrence of ``strings`` in a run of ``units``
    (normalised, with their places in the original run), merged where they overlap each
    other or the last of ``spans``. An occurrence starts and ends with whole units: the
    normalised text of a unit may be longer than the original (Thai ``ำ`` is two
    characters in NFKC), and ``กิน`` is not found in ``กินี`` (the mark belongs to ``นี``)."""
    folded = "".join(unit for unit, _, _ in units)
    starts: dict[int, int] = {}  # folded index of a unit's start -> its offset in the run
    ends: dict[int, int] = {}  # folded index after a unit -> the offset after it in the run
    position = 0
    for unit, begin, end in units:
        starts[position] = begin
        position += len(unit)
        ends[position] = end
    found = sorted(
        (offset + starts[index], offset + ends[index + len(string)], string)
        for string in strings
        for index in (match.start() for match in re.finditer(f"(?={re.escape(string)})", folded))
        if index in starts and index + len(string) in ends
    )
    merged: list[tuple[int, int, str]] = []
    for start, end, string in found:
        previous = merged[-1] if merged else (spans[-1] if spans else None)
        if previous is not None and start < previous[1]:
            widened = (previous[0], max(end, previous[1]), previous[2])
            if merged:
                merged[-1] = widened
            else:
                spans[-1] = widened
            continue
        merged.append((start, end, string))
    return merged


def matched_terms(text: str, query: SearchQuery) -> frozenset[str]:
    """The distinct query terms (Chinese phrases whole) that ``text`` holds."""
    return frozenset(term for _, _, term in _hit_spans(text, query))


def highlight(text: str, query: SearchQuery) -> Highlighted:
    """All of ``text`` with the words that match ``query`` marked (the original words, not stems)."""
    return _cut(text, 0, len(text), _hit_spans(text, query))


def snippet(text: str, query: SearchQuery, *, width: int = 240) -> Highlighted:
    """The passage of ``text`` (about ``width`` characters) with the most distinct matched terms."""
    return _snippet(text, _hit_spans(text, query), width)


def snippet_and_terms(
    text: str, query: SearchQuery, *, width: int = 240
) -> tuple[Highlighted, frozenset[str]]:
    """:func:`snippet` and :func:`matched_terms` of ``text`` from one reading of it."""
    spans = _hit_spans(text, query)
    return _snippet(text, spans, width), frozenset(term for _, _, term in spans)


def _snippet(text: str, spans: list[tuple[int, int, str]], width: int) -> Highlighted:
    if not spans:
        end = _word_boundary(text, min(len(text), width))
        return _cut(text, 0, end, [], ellipsis_after=end < len(text))
    best_start = best_window_start(spans, width)
    # A little context before the first match; the whole window when the text ends sooner.
    start = max(0, min(best_start - width // 6, len(text) - width))
    start = _word_boundary(text, start, backwards=True) if start > 0 else 0
    end = _word_boundary(text, min(len(text), start + width))
    shown = [(s, e, t) for s, e, t in spans if s >= start and e <= end]
    return _cut(text, start, end, shown, ellipsis_before=start > 0, ellipsis_after=end < len(text))


def best_window_start(spans: Sequence[tuple[int, int, str]], width: int) -> int:
    """Where the passage of ``width`` characters with the most distinct matched terms (then
    the most matches) starts: at one of the matches, the first on ties.

    ``spans`` (start, end, term) are in text order and do not overlap, so the matches
    inside the window from a match on are a run of them, slid along once: linear in the
    number of matches (a common word can match thousands of times in a long text).
    """
    best_start, best_score = spans[0][0], -1
    inside: Counter[str] = Counter()  # the terms of spans[index:after]
    after = 0
    for index, (start, _, term) in enumerate(spans):
        after = max(after, index)
        while after < len(spans) and spans[after][1] <= start + width:
            inside[spans[after][2]] += 1
            after += 1
        score = len(inside) * 100 + (after - index)
        if score > best_score:
            best_start, best_score = start, score
        if after > index:  # (this match leaves the window before the next one's)
            inside[term] -= 1
            if not inside[term]:
                del inside[term]
    return best_start


def _word_boundary(text: str, index: int, *, backwards: bool = False) -> int:
    """Move ``index`` to a space nearby (at most 20 characters), so words are not cut."""
    step = -1 if backwards else 1
    for moved in range(20):
        at = index + step * moved
        if at <= 0 or at >= len(text):
            return max(0, min(len(text), at))
        if text[at].isspace():
            return at + 1 if backwards else at
    # No space nearby (a long run of one script, emoji): at least no character is split.
    return cluster_start(text, index)


def _cut(
    text: str,
    start: int,
    end: int,
    spans: list[tuple[int, int, str]],
    *,
    ellipsis_before: bool = False,
    ellipsis_after: bool = False,
) -> Highlighted:
    parts: list[tuple[str, bool]] = []
    if ellipsis_before:
        parts.append(("…", False))
    cursor = start
    for span_start, span_end, _ in spans:
        if span_start > cursor:
            parts.append((text[cursor:span_start], False))
        parts.append((text[span_start:span_end], True))
        cursor = span_end
    if end > cursor:
        parts.append((text[cursor:end], False))
    if ellipsis_after:
        parts.append(("…", False))
    return Highlighted(tuple(_tidy(parts)))


def _tidy(parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    # Line breaks inside a snippet read as spaces in a one-line result list.
    return [(re.sub(r"\s+", " ", part), hit) for part, hit in parts if part]
