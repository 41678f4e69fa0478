"""Numbers, amounts, percentages and months as language-free keys.

The translation test (:mod:`pipeline.crosslingual`) asks whether two texts, and two
aligned sentences, carry the same figures. A translation renders "$50 billion" as
"50 млрд долларов", "500亿美元", "50 milliards de dollars", "50 مليار دولار" or "500억
달러", and "16 May" as "16 мая", "5月16日", "16 mai" or "16 مايو": each becomes one key
(``5e+10``, ``16``, ``month:5``) whatever the language, script or digits (Arabic-Indic,
Devanagari and other decimal digits are read as their values).

Pure and deterministic; the language of the text is not needed. Where a word means
different amounts in different languages ("billion" is 10⁹ in English and 10¹² in French
and German), the English reading is taken: the amounts of a French or German text are
normally written "milliard(s)" / "Milliarde(n)".
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

# Unit words after a number, by the multiplier they stand for (compared lower-cased).
# Spaced scripts: English, Russian, French, German, Spanish, Portuguese, Italian, Dutch,
# Polish, Turkish and Arabic (singular, plural and the usual abbreviations).
_UNIT_WORDS: Mapping[float, str] = {
    1e3: (
        "thousand k тыс тысяч тысячи тысяча mille mil mila tausend tsd duizend "
        "tys tysiąc tysiące tysięcy bin ألف آلاف الف"
    ),
    1e6: (
        "million millions mln mn m млн миллион миллиона миллионов millionen mio millón "
        "millon millones milhão milhões milione milioni miljoen miljoenen milion miliony "
        "milionów milyon مليون ملايين"
    ),
    1e9: (
        "billion billions bln bn b млрд миллиард миллиарда миллиардов milliard milliards "
        "md mds mrd mrds milliarde milliarden bilhão bilhões miliardo miliardi mld miljard "
        "miljarden miliard miliardy miliardów milyar مليار مليارات بليون"
    ),
    1e12: (
        "trillion trillions tn трлн триллион триллиона триллионов billón billones "
        "trilhão trilhões bilione bilioni billionen biljoen biljoenen bilion biliony "
        "bilionów trilyon تريليون تريليونات"
    ),
}
_MULTIPLIERS: Mapping[str, float] = {
    word: multiplier for multiplier, words in _UNIT_WORDS.items() for word in words.split()
} | {
    # Two-word units (whitespace inside is collapsed before the lookup).
    "mil millones": 1e9,
    "mil milhões": 1e9,
    # Unspaced scripts: the unit follows the digits directly (Chinese, Japanese, Korean, Thai).
    "千": 1e3,
    "万": 1e4,
    "萬": 1e4,
    "百万": 1e6,
    "百萬": 1e6,
    "千万": 1e7,
    "千萬": 1e7,
    "亿": 1e8,
    "億": 1e8,
    "百亿": 1e10,
    "百億": 1e10,
    "千亿": 1e11,
    "千億": 1e11,
    "万亿": 1e12,
    "萬億": 1e12,
    "兆": 1e12,
    "천": 1e3,
    "만": 1e4,
    "백만": 1e6,
    "천만": 1e7,
    "억": 1e8,
    "백억": 1e10,
    "천억": 1e11,
    "조": 1e12,
    "พัน": 1e3,
    "หมื่น": 1e4,
    "แสน": 1e5,
    "ล้าน": 1e6,
    "พันล้าน": 1e9,
    "หมื่นล้าน": 1e10,
    "แสนล้าน": 1e11,
    "ล้านล้าน": 1e12,
}
# Units of languages that group thousands with a dot: before them "1.500" is 1500, as in
# "1.500 millones" (1.5 billion), where English would write "1.5 billion".
_DOT_GROUPING_WORDS = (
    "mil millones millón millon milhão milhões milione milioni miliardo miliardi millionen "
    "mio milliarde milliarden mrd tausend tsd miljoen miljoenen miljard miljarden milyon "
    "milyar trilyon bin billionen biljoen bilione bilioni"
)
_DOT_GROUPING_UNITS = frozenset(_DOT_GROUPING_WORDS.split()) | {"mil millones", "mil milhões"}
# Arabic "per cent" after a number: "في المئة", "بالمائة" (spaces collapsed).
_ARABIC_PERCENT = frozenset(f"{before}الم{middle}ة" for before in ("في ", "ب") for middle in ("ئ", "ائ"))
# Words for "per cent" after a number (prefixes of the unit, lower-cased, spaces collapsed).
_PERCENT_UNITS = (
    "%",
    "٪",
    "процент",
    "percent",
    "per cent",
    "pour cent",
    "por ciento",
    "por cento",
    "per cento",
    "prozent",
    "procent",
    "퍼센트",
    "เปอร์เซ็นต์",
)


def _alternatives(words: list[str]) -> str:
    # Longest first, so that "千亿" wins over "千" and "พันล้าน" over "พัน".
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


_UNSPACED_UNITS = [
    word for word in _MULTIPLIERS if re.search(r"[\u0e00-\u0e7f\u3400-\u9fff\uac00-\ud7af]", word)
]
_NUMBER = re.compile(
    # A number not glued to a word or a digit before it ("G20" keeps its 20), with thousands
    # grouped by commas or spaces ("1,500,000", "1 500 000") or by dots when there are at
    # least two groups ("1.500.000"), then an optional fraction.
    r"(?<![\dA-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])(?<!\d[.,])"
    r"(\d{1,3}(?:[ \u00a0\u202f,]\d{3})+|\d{1,3}(?:\.\d{3}){2,}|\d+)"
    r"(?:([.,])(\d+))?"
    # The unit: per cent in several languages, two-word amounts, the unspaced scripts'
    # units (attached to the digits), or the word that follows.
    r"\s*(%|٪|per\s*cent|pour\s+cent|por\s+ciento|por\s+cento|per\s+cento"
    r"|(?:في\s+|ب)الم(?:ئ|ائ)ة|mil\s+millones|mil\s+milhões|"
    + _alternatives(_UNSPACED_UNITS)
    + r"|[^\W\d_]+)?",
    re.IGNORECASE,
)
# A per-cent sign or word *before* the number: Turkish "%50", "yüzde 50".
_PERCENT_BEFORE = re.compile(r"(?:%|yüzde\s+)$", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
# "5月" (Chinese, Japanese), "5월" (Korean).
_CJK_MONTH = re.compile(r"(\d{1,2})\s*[月월]")
# Arabic decimal and thousands separators, which NFKC leaves alone.
_ARABIC_SEPARATORS = str.maketrans({"\u066b": ".", "\u066c": ","})

# Month names by number: English and their usual abbreviations, then French, German,
# Spanish, Portuguese, Italian, Dutch, Polish (nominative and genitive), Turkish and
# Arabic. Left out where the word means something else in an English text as often:
# French "mars" (the planet), Dutch "mei" (a Chinese name). Russian names inflect and are
# compared by stem (below).
_MONTH_NAMES = [
    "january jan janvier januar jänner enero janeiro gennaio januari styczeń stycznia ocak يناير",
    "february feb février februar febrero fevereiro febbraio februari luty lutego şubat فبراير شباط",
    "march mar märz marzo março maart marzec marca mart مارس آذار",
    "april apr avril abril aprile kwiecień kwietnia nisan أبريل إبريل نيسان",
    "may mai mayo maio maggio maj maja mayıs مايو أيار",
    "june jun juin juni junio junho giugno czerwiec czerwca haziran يونيو حزيران",
    "july jul juillet juli julio julho luglio lipiec lipca temmuz يوليو تموز",
    "august aug août agosto augustus sierpień sierpnia ağustos أغسطس",
    "september sep sept septembre septiembre setiembre setembro settembre wrzesień września eylül "
    "سبتمبر أيلول",
    "october oct octobre oktober octubre outubro ottobre październik października ekim أكتوبر",
    "november nov novembre noviembre novembro listopad listopada kasım نوفمبر",
    "december dec décembre dezember diciembre dezembro dicembre grudzień grudnia aralık ديسمبر",
]
_MONTHS: Mapping[str, int] = {
    name: number for number, names in enumerate(_MONTH_NAMES, start=1) for name in names.split()
}
# Names that hold a month's name: "Rio de Janeiro" (a BRICS summit's city) is no January.
_NOT_MONTHS = re.compile(r"\brio de janeiro\b", re.IGNORECASE)
# Russian month names inflect ("мая", "июня", "сентября"): compared by stem.
_RUSSIAN_STEMS = (
    ("январ", 1),
    ("феврал", 2),
    ("март", 3),
    ("апрел", 4),
    ("июн", 6),
    ("июл", 7),
    ("август", 8),
    ("сентябр", 9),
    ("октябр", 10),
    ("ноябр", 11),
    ("декабр", 12),
)
# Thai writes words without spaces: month names are found as they are.
_THAI_MONTH_NAMES = "มกราคม กุมภาพันธ์ มีนาคม เมษายน พฤษภาคม มิถุนายน กรกฎาคม สิงหาคม กันยายน ตุลาคม พฤศจิกายน ธันวาคม"
_THAI_MONTHS = {name: number for number, name in enumerate(_THAI_MONTH_NAMES.split(), start=1)}
_THAI_MONTH = re.compile(_alternatives(list(_THAI_MONTHS)))


def extract_numbers(text: str) -> set[str]:
    """Numbers in ``text`` as language-free keys: values with their multiplier applied.

    "50 billion", "50 млрд", "500亿", "50 milliards" and "50,000,000,000" all become
    ``5e+10``; "3.5%", "3,5 процента" and "%3,5" become ``3.5%``; month names become
    ``month:5`` (as does "5月"). Single digits are dropped: they are spelled out as often
    as not, so they prove nothing.
    """
    normalised = unicodedata.normalize("NFKC", text).translate(_ARABIC_SEPARATORS)
    keys: set[str] = set()
    for match in _NUMBER.finditer(normalised):
        whole, separator, fraction = match.group(1), match.group(2), match.group(3)
        unit = " ".join((match.group(4) or "").lower().split())
        digits = re.sub(r"[ \u00a0\u202f,.]", "", whole)
        thousands_grouped = digits != whole
        if fraction is not None and thousands_grouped:
            continue  # "1,234.5" style mixing is rare in news; skip rather than misread
        if (
            fraction is not None
            and len(fraction) == 3
            and (not unit or (separator == "." and unit in _DOT_GROUPING_UNITS))
        ):
            # "1,500" or "1.500": a thousands separator, not a decimal fraction.
            value = float(digits + fraction)
        else:
            value = float(f"{digits}.{fraction}") if fraction is not None else float(digits)
        if (
            unit.startswith(_PERCENT_UNITS)
            or unit in _ARABIC_PERCENT
            or (
                unit not in _MULTIPLIERS
                and _PERCENT_BEFORE.search(normalised, max(0, match.start() - 7), match.start())
            )
        ):
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
    for match in _WORD.finditer(_NOT_MONTHS.sub(" ", normalised)):
        month = _month_of(match.group().lower())
        if month:
            keys.add(f"month:{month}")
    for match in _CJK_MONTH.finditer(normalised):
        month_number = int(match.group(1))
        if 1 <= month_number <= 12:
            keys.add(f"month:{month_number}")
    for match in _THAI_MONTH.finditer(normalised):
        keys.add(f"month:{_THAI_MONTHS[match.group()]}")
    return keys


@lru_cache(maxsize=8192)  # news repeats its words; a text has hundreds, a stream a few thousand
def _month_of(word: str) -> int | None:
    if len(word) < 3:
        return None
    month = _MONTHS.get(word)
    if month is not None:
        return month
    if "а" <= word[0] <= "я":
        if word in ("мая", "май", "маю", "мае"):
            return 5
        for stem, number in _RUSSIAN_STEMS:
            if word.startswith(stem):
                return number
    return None


def _round(value: float) -> str:
    """Three significant digits: translations round amounts the same way often enough."""
    if value == 0:
        return "0"
    digits = 3 - math.floor(math.log10(abs(value))) - 1
    return f"{round(value, digits):g}"
