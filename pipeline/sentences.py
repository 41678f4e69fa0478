"""Cutting article text into sentences, the unit of evidence and of cross-language alignment.

Shared by the classifier (evidence sentences) and the semantic layer (sentence vectors),
so both see the same sentences. Pure and deterministic: paragraphs are split on line
breaks, then sentences at terminal punctuation when the next word starts a new sentence
(Latin, Cyrillic and other cased scripts, and Arabic) and always at the full stops of
scripts that have their own (CJK, Devanagari, Armenian, Ethiopic, Burmese, Khmer, Tibetan
and Urdu). Thai and Lao have no full stop: a space between two of their letters ends a sentence or a
clause there, and such pieces are joined up to a sentence's length.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … and the Arabic ؟ (then closing quotes/brackets) when the next
# word starts a new sentence (a capital, a digit, a letter of an uncased script, or Spanish
# ¿ ¡ opening it), and always at the full stops of scripts that have their own: CJK 。！？
# (and the half-width ｡; not the full-width ．, which also joins the parts of a foreign
# name, "唐纳德．特朗普"), Devanagari । ॥, Urdu ۔, Armenian ։, Ethiopic ። ፧, Burmese ။,
# Khmer ។ ៕ and Tibetan's shad ། and double shad ༎ (with the shad that may follow one
# after a space, "། །", which opens the next line of verse rather than a sentence).
# Semicolons end no sentence in any script: a Chinese list joined by "；" is one sentence,
# as its English rendering joined by ";" or "," is, so a translation keeps one unit for one.
# (A match starts only where a run of stops starts: started inside a run of ten thousand
# dots that no sentence follows, each try swallowed the rest of the run and gave it back
# one dot at a time, and the cut took seconds, quadratic in the run. The earliest start
# was always the one found, so nothing is cut differently.)
_SENTENCE_END = re.compile(
    r"(?<![.!?…؟])[.!?…؟]+[\"'»”’)\]]*(?=\s+[\"'«“(\[¿¡]?[^\W_a-zа-я])"
    r"|[。！？｡।॥۔։።፧။។៕]+[»”’」』)）]*"
    r"|[\u0f0d\u0f0e](?: ?[\u0f0d\u0f0e])*"
)
_NEXT_WORD = re.compile(r"\s*(\S*)")
# Thai and Lao separate sentences and clauses with a space and words with none: a space
# between two Thai or Lao characters is where a sentence may end. The pieces are joined
# until each has SPACED_SCRIPT_UNIT characters, so that a clause, a name set off by
# spaces or a figure does not become a unit of its own.
# Only text mostly in these scripts is cut so: an English sentence naming a Thai minister
# in Thai script stays whole. A space before a mark that belongs to the word before it
# (the repetition mark ๆ, the abbreviation mark ฯ, a vowel or tone sign) is no break.
_THAI_LAO = "\u0e01-\u0e5b\u0e81-\u0edf"
_ATTACHED_MARKS = "\u0e2f\u0e31\u0e34-\u0e3a\u0e46-\u0e4e\u0eaf\u0eb1\u0eb4-\u0ebc\u0ec6-\u0ecd"
_THAI_LAO_BREAK = re.compile(f"(?<=[{_THAI_LAO}]) (?=(?![{_ATTACHED_MARKS}])[{_THAI_LAO}])")
# A Thai or Lao character (the scripts without a full stop; the list test reads it too).
THAI_LAO_CHAR = re.compile(f"[{_THAI_LAO}]")
SPACED_SCRIPT_UNIT = 60
# Words whose final period does not end a sentence (compared lower-cased).
_ABBREVIATION_WORDS = (
    "mr mrs ms dr st gen lt col capt no vs jr sr prof gov sen rep u.s e.g i.e etc "
    "г гг т.е им ул тыс млн млрд руб долл см "
    # German, French, Spanish, Italian: amounts, which a capitalised noun follows ("240
    # Mrd. Dollar"), "number", "or", "e.g.", titles ("Sra. López"). Not the ones that end
    # English sentences as words ("CA", "ING", "mln").
    "mrd mio tsd nr bzw z.b u.a d.h mme mlle sra srta dña dott"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# Abbreviated months end no sentence when a day or year follows: "BEIJING, Dec. 31
# (Xinhua) --" is one dateline (its Chinese rendering "新华社北京12月31日电" is one unit
# too), while "... signed in Dec. The talks ..." still ends a sentence.
_MONTH_WORDS = "jan feb mar apr jun jul aug sep sept oct nov dec янв февр сент окт нояб дек"
_MONTHS = frozenset(_MONTH_WORDS.split())
# A person's initials in Cyrillic, "В.В. Путин", "С.В. Лавров": capitals each followed by a
# period (the last period is the stop being judged). Russian writes no acronym so ("США",
# "РФ"), while "т.д." and "т.п." in lower case end sentences.
_CYRILLIC_INITIALS = re.compile(r"(?:[\u0400-\u042f\u0460-\u052f]\.)+[\u0400-\u042f\u0460-\u052f]")
# Japanese quotes a sentence with its stop inside the brackets and goes on with the
# quotative particle: 「協力を続ける。」と述べた is one sentence ("... he said").
_QUOTE_GOES_ON = re.compile("[」』](?=と|って)")
# German writes a day as an ordinal with a period, before a capitalised month: "am 15.
# Juli", "bis zum 3. Oktober" end no sentence.
_ORDINAL_MONTHS = frozenset(
    [
        "januar",
        "jänner",
        "februar",
        "märz",
        "april",
        "mai",
        "juni",
        "juli",
        "august",
        "september",
        "oktober",
        "november",
        "dezember",
    ]
)


# Invisible formatting that carries no text: soft hyphens (a word hyphenated for layout
# still is one word), zero-width spaces, the word joiner, byte-order marks, and the
# direction marks and embeddings of bidirectional text (which would otherwise hide a
# sentence end: "Beijing.\u200f Gazprom"). The zero-width (non-)joiners are kept: in
# Persian or the Indic scripts they are spelling.
_INVISIBLE = str.maketrans(
    dict.fromkeys(
        [
            0x00AD,
            0x061C,
            0x180E,
            0x200B,
            0x200E,
            0x200F,
            0x2060,
            0xFEFF,
            *range(0x202A, 0x202F),
            *range(0x2066, 0x206A),
        ],
        None,
    )
)


def strip_invisible(text: str) -> str:
    """``text`` without the invisible formatting characters that carry no text."""
    return text.translate(_INVISIBLE)


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, whitespace collapsed, invisible formatting
    (:func:`strip_invisible`) removed; empty pieces dropped."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", strip_invisible(text)):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            end = match.end()
            if _QUOTE_GOES_ON.match(paragraph, end - 1):
                continue
            if paragraph[match.start()] == ".":
                # "Mr. Xi", "U.S. officials", "V. Putin", "в 2014 г. Китай", "В.В. Путин": no
                # new sentence. (The word is found from the period back to the space before
                # it, never from the sentence's start: a long run of initials stays linear.)
                space = paragraph.rfind(" ", start, match.start())
                written = paragraph[space + 1 if space >= 0 else start : match.start()]
                word = written.lower()
                if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                    continue
                if _CYRILLIC_INITIALS.fullmatch(written):
                    continue
                # (whitespace is collapsed: the next word starts within two characters)
                if word in _MONTHS and paragraph[end : end + 2].lstrip()[:1].isdigit():
                    continue
                if len(word) <= 2 and word.isdigit():
                    # (the next word read in place: copying the rest of the paragraph for
                    # each of a long paragraph's "1. " made the cut quadratic)
                    word_after = _NEXT_WORD.match(paragraph, end)  # (always matches)
                    following = word_after[1].rstrip(",.;:").lower() if word_after else ""
                    if following in _ORDINAL_MONTHS:
                        continue
            piece = paragraph[start:end].strip()
            if piece:
                sentences.extend(_spaced_script_sentences(piece))
            start = end
        rest = paragraph[start:].strip()
        if rest:
            sentences.extend(_spaced_script_sentences(rest))
    return sentences


def _spaced_script_sentences(piece: str) -> list[str]:
    """``piece`` cut where Thai or Lao text breaks with a space, joined to sentence length."""
    parts = _THAI_LAO_BREAK.split(piece)
    if len(parts) == 1:
        return [piece]
    letters = sum(1 for char in piece if char.isalpha())
    if len(THAI_LAO_CHAR.findall(piece)) * 2 < letters:
        return [piece]  # (mostly another script: its own punctuation cut it)
    joined: list[str] = []
    current = ""
    for part in parts:
        current = f"{current} {part}" if current else part
        if len(current) >= SPACED_SCRIPT_UNIT:
            joined.append(current)
            current = ""
    if current:
        if joined and len(current) < SPACED_SCRIPT_UNIT:
            joined[-1] = f"{joined[-1]} {current}"  # (a short tail joins the sentence before)
        else:
            joined.append(current)
    return joined


def content_sentences(text: str) -> list[str]:
    """The sentences of ``text`` with a letter or digit: the units an article is encoded in.

    Shared by the encoder (one vector per unit) and the translation test (the numbers of
    the unit behind each vector row), so that row i means the same sentence to both.
    """
    return [sentence for sentence in split_sentences(text) if any(char.isalnum() for char in sentence)]
