"""Numbers, amounts, percentages and months as language-free keys.

The translation test (:mod:`pipeline.crosslingual`) asks whether two texts, and two
aligned sentences, carry the same figures. A translation renders "$50 billion" as
"50 млрд долларов", "500亿美元", "50 milliards de dollars", "50 مليار دولار" or "500억
달러", and "16 May" as "16 мая", "5月16日", "16 mai" or "16 مايو": each becomes one key
(``5e+10``, ``16``, ``month:5``) whatever the language, script or digits (Arabic-Indic,
Devanagari and other decimal digits are read as their values).

Which words are read depends on the text's language. English, Russian and Chinese words
are read in every text (they are the stream's languages, and quoted in the others);
another language's words only in a text of that language, so that "bin Salman" in an
English text is no Turkish "thousand" and "Avril Haines" no French April. The language
also settles the words whose meaning differs: "billion" is 10¹² in a French or German
text, and "1.500" is 1500 in a language that groups thousands with dots. Pure and
deterministic.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

from pipeline.digits import ARABIC_SEPARATORS
from pipeline.language import normalise_code

# Unit words after a number, by language, by the multiplier they stand for (compared
# lower-cased): singular, plural and the usual abbreviations.
_UNIT_WORDS: Mapping[str, Mapping[float, str]] = {
    "en": {
        1e3: "thousand k",
        1e6: "million millions mln mn m",
        1e9: "billion billions bln bn b",
        1e12: "trillion trillions tn",
    },
    "ru": {
        1e3: "тыс тысяч тысячи тысяча",
        1e6: "млн миллион миллиона миллионов",
        1e9: "млрд миллиард миллиарда миллиардов",
        1e12: "трлн триллион триллиона триллионов",
    },
    "fr": {
        1e3: "mille",
        1e6: "million millions",
        1e9: "milliard milliards md mds mrd mrds",
        1e12: "billion billions",
    },
    "de": {
        1e3: "tausend tsd",
        1e6: "million millionen mio",
        1e9: "milliarde milliarden mrd",
        1e12: "billion billionen",
    },
    "es": {1e3: "mil", 1e6: "millón millon millones", 1e12: "billón billon billones"},
    "pt": {1e3: "mil", 1e6: "milhão milhões", 1e9: "bilhão bilhões", 1e12: "trilhão trilhões"},
    "it": {1e3: "mila", 1e6: "milione milioni mln", 1e9: "miliardo miliardi mld", 1e12: "bilione bilioni"},
    "nl": {
        1e3: "duizend",
        1e6: "miljoen miljoenen mln",
        1e9: "miljard miljarden mld",
        1e12: "biljoen biljoenen",
    },
    "pl": {
        1e3: "tys tysiąc tysiące tysięcy",
        1e6: "mln milion miliony milionów",
        1e9: "mld miliard miliardy miliardów",
        1e12: "bln bilion biliony bilionów",
    },
    "tr": {1e3: "bin", 1e6: "milyon", 1e9: "milyar", 1e12: "trilyon"},
    "ar": {1e3: "ألف آلاف الف", 1e6: "مليون ملايين", 1e9: "مليار مليارات بليون", 1e12: "تريليون تريليونات"},
    # Languages the encoder does not cover: a wider model (encoder.model) would link their
    # translations, and "50 мільярдів" must then be the 5e10 of "50 billion".
    "uk": {
        1e3: "тис тисяч тисячі тисяча",
        1e6: "млн мільйон мільйона мільйонів мільйони",
        1e9: "млрд мільярд мільярда мільярдів мільярди",
        1e12: "трлн трильйон трильйона трильйонів трильйони",
    },
    "be": {
        1e3: "тыс тысяч тысячы тысяча",
        1e6: "млн мільён мільёна мільёнаў мільёны",
        1e9: "млрд мільярд мільярда мільярдаў мільярды",
        1e12: "трлн трыльён трыльёна трыльёнаў трыльёны",
    },
    "bg": {
        1e3: "хил хиляди хиляда",
        1e6: "млн милион милиона милиони",
        1e9: "млрд милиард милиарда милиарди",
        1e12: "трлн трилион трилиона трилиони",
    },
    "kk": {1e3: "мың", 1e6: "млн миллион", 1e9: "млрд миллиард", 1e12: "трлн триллион"},
    "sr": {1e3: "хиљада хиљаде hiljada hiljade", 1e6: "милион милиона милиони milion miliona milioni"}
    | {1e9: "милијарда милијарди милијарде млрд milijarda milijardi milijarde mlrd"},
    "hr": {1e3: "tisuća tisuće", 1e6: "milijun milijuna", 1e9: "milijarda milijardi milijarde mlrd"},
    "cs": {
        1e3: "tis tisíc tisíce",
        1e6: "mil milion miliony milionů",
        1e9: "mld miliarda miliardy miliard",
        1e12: "bilion biliony bilionů",
    },
    "sk": {
        1e3: "tis tisíc",
        1e6: "mil milión milióny miliónov",
        1e9: "mld miliarda miliardy miliárd",
        1e12: "bilión bilióny biliónov",
    },
    "ro": {1e3: "mii mie", 1e6: "mil milion milioane", 1e9: "mld miliard miliarde", 1e12: "bilion bilioane"},
    "hu": {1e3: "ezer", 1e6: "millió", 1e9: "milliárd mrd", 1e12: "billió"},
    "el": {
        1e3: "χιλιάδες χιλιάδων",
        1e6: "εκατ εκατομμύριο εκατομμύρια εκατομμυρίων",
        1e9: "δισ δισεκατομμύριο δισεκατομμύρια δισεκατομμυρίων",
        1e12: "τρισ τρισεκατομμύριο τρισεκατομμύρια τρισεκατομμυρίων",
    },
    "vi": {1e3: "nghìn ngàn", 1e6: "triệu", 1e9: "tỷ tỉ"},
    "id": {1e3: "ribu", 1e6: "juta", 1e9: "miliar", 1e12: "triliun"},
    "ms": {1e3: "ribu", 1e6: "juta", 1e9: "bilion", 1e12: "trilion"},
    "sv": {1e3: "tusen", 1e6: "miljon miljoner", 1e9: "miljard miljarder mdr", 1e12: "biljon biljoner"},
    "da": {
        1e3: "tusind",
        1e6: "million millioner mio",
        1e9: "milliard milliarder mia",
        1e12: "billion billioner",
    },
    "no": {
        1e3: "tusen",
        1e6: "million millioner mill",
        1e9: "milliard milliarder mrd",
        1e12: "billion billioner",
    },
    "fi": {
        1e3: "tuhat tuhatta",
        1e6: "miljoona miljoonaa milj",
        1e9: "miljardi miljardia mrd",
        1e12: "biljoona",
    },
    "he": {1e3: "אלף אלפים", 1e6: "מיליון מיליונים", 1e9: "מיליארד מיליארדים", 1e12: "טריליון"},
    "fa": {1e3: "هزار", 1e6: "میلیون", 1e9: "میلیارد", 1e12: "تریلیون"},
}
# Two-word units (whitespace inside is collapsed before the lookup).
_PHRASE_UNITS: Mapping[str, Mapping[str, float]] = {
    "es": {"mil millones": 1e9},
    "pt": {"mil milhões": 1e9},
}
# Units the unspaced scripts write right after the digits (Chinese and Japanese share
# theirs; "第10" and "제10" are ordinals, whose number takes no unit).
_ATTACHED_UNITS: Mapping[str, Mapping[str, float]] = {
    "zh": {
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
    },
    "ko": {"천": 1e3, "만": 1e4, "백만": 1e6, "천만": 1e7, "억": 1e8, "백억": 1e10, "천억": 1e11, "조": 1e12},
    # Thai may put a space between the digits and the unit; the bare "พัน" (thousand)
    # starts other words ("พันธมิตร", allies), so only the units built on ล้าน are read.
    "th": {"หมื่น": 1e4, "แสน": 1e5, "ล้าน": 1e6, "พันล้าน": 1e9, "หมื่นล้าน": 1e10, "แสนล้าน": 1e11, "ล้านล้าน": 1e12},
}
# Languages that write a decimal comma and group thousands with dots: "1.500" is 1500
# there, before a word or not ("1.500 millones", "1.500 niños").
_DOT_GROUPING = frozenset(
    {"de", "es", "pt", "it", "nl", "tr", "id", "da", "ro", "el", "vi", "hr", "sr", "sl"}
)
# Words for "per cent" after a number, by language (prefixes of the unit, lower-cased,
# spaces collapsed); "%" and the Arabic "٪" are read in every text.
_PERCENT_WORDS: Mapping[str, tuple[str, ...]] = {
    "en": ("percent", "per cent"),
    "ru": ("процент",),
    "fr": ("pour cent",),
    "es": ("por ciento",),
    "pt": ("por cento",),
    "it": ("per cento",),
    "de": ("prozent",),
    "nl": ("procent",),
    "pl": ("procent",),
    "ko": ("퍼센트",),
    "th": ("เปอร์เซ็นต์",),
    "ar": tuple(f"{before}الم{middle}ة" for before in ("في ", "ب") for middle in ("ئ", "ائ")),
}
# Month names by number: English (with its abbreviations) in every text, the others in
# texts of their language. Russian names inflect and are compared by stem (below).
_MONTH_NAMES: Mapping[str, str] = {
    "en": "january february march april may june july august september october november december",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "de": "januar februar märz april mai juni juli august september oktober november dezember",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    # Polish: the genitive, as dates are written ("16 maja"), then the nominative.
    "pl": (
        "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada grudnia "
        "styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień październik listopad grudzień"
    ),
    "tr": "ocak şubat mart nisan mayıs haziran temmuz ağustos eylül ekim kasım aralık",
    "ar": "يناير فبراير مارس أبريل مايو يونيو يوليو أغسطس سبتمبر أكتوبر نوفمبر ديسمبر",
    "th": "มกราคม กุมภาพันธ์ มีนาคม เมษายน พฤษภาคม มิถุนายน กรกฎาคม สิงหาคม กันยายน ตุลาคม พฤศจิกายน ธันวาคม",
}
_MONTH_EXTRA: Mapping[str, Mapping[str, int]] = {
    "en": {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9}
    | {"oct": 10, "nov": 11, "dec": 12},
    "de": {"jänner": 1},
    "es": {"setiembre": 9},
    # The Levantine names, one word each (the two-word ones are left out).
    "ar": {"إبريل": 4, "شباط": 2, "آذار": 3, "نيسان": 4, "أيار": 5, "حزيران": 6, "تموز": 7, "أيلول": 9},
}
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
_RUSSIAN_MAY = ("мая", "май", "маю", "мае")
# A month's name as a whole word (not inside a longer run of letters).
_LETTER_BEFORE, _LETTER_AFTER = r"(?<![^\W\d_])", r"(?![^\W\d_])"
# Russian: a word that starts with a month's stem ("сентября", "мартовский"), or May.
_RUSSIAN_MONTH = re.compile(
    _LETTER_BEFORE
    + r"(?:("
    + "|".join(stem for stem, _ in _RUSSIAN_STEMS)
    + r")[^\W\d_]*|"
    + "|".join(_RUSSIAN_MAY)
    + ")"
    + _LETTER_AFTER,
    re.IGNORECASE,
)
_RUSSIAN_NUMBERS = dict(_RUSSIAN_STEMS)
# Names that hold a month's name: "Rio de Janeiro" (a BRICS summit's city) is no January.
_NOT_MONTHS = re.compile(r"\brio de janeiro\b", re.IGNORECASE)
# The languages read in every text.
_ALWAYS = ("en", "ru", "zh")


def _alternatives(words: list[str]) -> str:
    # Longest first, so that "千亿" wins over "千" and "พันล้าน" over "ล้าน".
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


# A number not glued to a word or a digit before it ("G20" keeps its 20; no number starts
# inside another), with thousands grouped by commas or spaces ("1,500,000", "1 500 000")
# or by dots ("1.500.000"), then an optional fraction. (The text is NFKC-normalised
# first: a no-break or thin space between groups is a space by then.)
_NUMBER_BODY = (
    r"(?<![\dA-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])(?<!\d[.,])"
    r"(\d{1,3}(?:[{groups}]\d{3})+(?!\d)|\d{1,3}(?: \d{3}){2,}(?!\d)|\d{1,3}(?:\.\d{3}){2,}(?!\d)|\d+)"
    r"(?:([.,])(\d+))?"
)
_ATTACHED_ALL = [unit for units in _ATTACHED_UNITS.values() for unit in units]
_NUMBER_UNIT = (
    # The unit: a unit the unspaced scripts attach to the digits (Thai may space it),
    # "%", two-word units, or the whole word that follows ("M1" gives no unit "M").
    r"(?:(" + _alternatives(_ATTACHED_ALL) + r")|\s*(%|٪|(?:في\s+|ب)الم(?:ئ|ائ)ة"
    r"|(?:per|pour|por)\s+c(?:ent|iento|ento)|mil\s+mill\w*|mil\s+milh\w*|"
    + _alternatives(list(_ATTACHED_UNITS["th"]))
    + r"|[^\W\d_]+(?!\w)))?"
)
_NUMBER = re.compile(_NUMBER_BODY.replace("{groups}", " ,") + _NUMBER_UNIT, re.IGNORECASE)
# Languages that group thousands with commas, where two numbers a space apart are two
# (a group of digits is never cut short either: "800 555 1234" is three numbers)
# numbers ("on May 15 300 troops arrived" holds 15 and 300, not 15,300), unless there are
# three groups or more ("1 500 000", as English copy from Russian or French desks has it).
_NO_SPACE_GROUPING = frozenset({"en", "zh", "ja", "ko", "th", "ms", "tl", "he", "hi"})
# There, a space still groups thousands when what follows cannot be a number of its own:
# a group of three digits starting with 0 ("15 000", "2 050"; nobody writes 000 troops).
_NUMBER_WITHOUT_SPACES = re.compile(
    _NUMBER_BODY.replace("{groups}", ",").replace(r"|\d+)", r"|\d{1,3}(?: 0\d{2})+(?!\d)|\d+)", 1)
    + _NUMBER_UNIT,
    re.IGNORECASE,
)
# ...and so does a no-break or thin space between digits, which nobody types between two
# numbers: read before NFKC turns it into a plain space.
_GROUPING_SPACE = re.compile(r"(?<=\d)[\u00a0\u202f\u2009](?=\d{3}(?!\d))")
# A per-cent sign or word *before* the number: Turkish "%50", "yüzde 50".
_PERCENT_BEFORE = re.compile(r"(?:%|yüzde\s+)$", re.IGNORECASE)
# A date written with dots: "20.03.2023" (day, month, year).
_DOTTED_DATE = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.((?:19|20)\d{2})(?![\d.]\d)")
# "5月" (Chinese, Japanese), "5월" (Korean).
_CJK_MONTH = re.compile(r"(\d{1,2})\s*[月월]")
# Arabic decimal and thousands separators, which NFKC leaves alone.
_THAI_MONTHS = {name: index + 1 for index, name in enumerate(_MONTH_NAMES["th"].split())}
_THAI_MONTH = re.compile(_alternatives(list(_THAI_MONTHS)))
# Longer digit strings are identifiers, not figures (and beyond a float's range).
_MAX_DIGITS = 18


class _Vocabulary:
    """What is read in a text of one language: its own words and those of ``_ALWAYS``."""

    def __init__(self, lang: str) -> None:
        langs = dict.fromkeys((*_ALWAYS, lang))
        multipliers: dict[str, float] = {}
        for code in langs:
            for multiplier, words in _UNIT_WORDS.get(code, {}).items():
                multipliers.update(dict.fromkeys(words.split(), multiplier))
            multipliers.update(_PHRASE_UNITS.get(code, {}))
            multipliers.update(_ATTACHED_UNITS.get(code, {}))
        if lang in ("fr", "de", "da", "no"):  # the long scale: "billion" is 10¹²
            multipliers["billion"] = multipliers["billions"] = 1e12
        self.multipliers: Mapping[str, float] = multipliers
        self.attached = frozenset(unit for code in langs for unit in _ATTACHED_UNITS.get(code, {}))
        self.percent = ("%", "٪", *(word for code in langs for word in _PERCENT_WORDS.get(code, ())))
        self.percent_before = lang == "tr"
        self.dot_grouping = lang in _DOT_GROUPING
        self.numbers = _NUMBER_WITHOUT_SPACES if lang in _NO_SPACE_GROUPING else _NUMBER
        months: dict[str, int] = {}
        for code in langs:
            if code != "th":  # Thai is written without spaces: its names are searched for
                names = _MONTH_NAMES.get(code, "").split()
                months.update({name: index % 12 + 1 for index, name in enumerate(names)})
            months.update(_MONTH_EXTRA.get(code, {}))
        # Also as upper-cased text lower-cases: "MAYIS" gives "mayis", not "mayıs".
        months.update({name.upper().lower(): number for name, number in list(months.items())})
        self.months: Mapping[str, int] = months
        self.month_names = re.compile(
            _LETTER_BEFORE + "(?:" + _alternatives(list(months)) + ")" + _LETTER_AFTER, re.IGNORECASE
        )
        self.rio = lang == "pt"  # the only language that reads "janeiro"
        self.thai = lang == "th"


@lru_cache(maxsize=64)
def _vocabulary(lang: str | None) -> _Vocabulary:
    return _Vocabulary(normalise_code(lang) or "")


def extract_numbers(text: str, lang: str | None = None) -> set[str]:
    """Numbers in ``text`` (of language ``lang``) as language-free keys.

    Values with their multiplier applied: "50 billion", "50 млрд", "500亿", "50 milliards"
    (French) and "50,000,000,000" all become ``5e+10``; "3.5%", "3,5 процента" and "%3,5"
    (Turkish) become ``3.5%``; month names become ``month:5`` (as do "5月" and the month of
    "16.05.2024"). Single digits are dropped: they are spelled out as often as not, so
    they prove nothing.
    """
    vocabulary = _vocabulary(lang)
    if vocabulary.numbers is _NUMBER_WITHOUT_SPACES and (
        "\u00a0" in text or "\u202f" in text or "\u2009" in text
    ):
        text = _GROUPING_SPACE.sub(",", text)
    normalised = unicodedata.normalize("NFKC", text)
    if "\u066b" in normalised or "\u066c" in normalised:
        normalised = normalised.translate(ARABIC_SEPARATORS)
    keys: set[str] = set()
    if "." in normalised:
        normalised = _DOTTED_DATE.sub(lambda match: _date_keys(match, keys), normalised)
    for match in vocabulary.numbers.finditer(normalised):
        key = _number_key(match, normalised, vocabulary)
        if key is not None:
            keys.add(key)
    words = _NOT_MONTHS.sub(" ", normalised) if vocabulary.rio else normalised
    for match in vocabulary.month_names.finditer(words):
        month = vocabulary.months.get(match.group().lower())
        if month is not None:
            keys.add(f"month:{month}")
    for match in _RUSSIAN_MONTH.finditer(words):
        stem = match.group(1)
        keys.add(f"month:{_RUSSIAN_NUMBERS[stem.lower()] if stem else 5}")
    for match in _CJK_MONTH.finditer(normalised):
        month_number = int(match.group(1))
        if 1 <= month_number <= 12:
            keys.add(f"month:{month_number}")
    if vocabulary.thai:
        for match in _THAI_MONTH.finditer(normalised):
            keys.add(f"month:{_THAI_MONTHS[match.group()]}")
    return keys


def _date_keys(match: re.Match[str], keys: set[str]) -> str:
    """Add the keys of a dotted date (its day, month and year); blank it out of the text."""
    day, month, year = (int(group) for group in match.groups())
    if 1 <= day <= 31 and 1 <= month <= 12:
        keys.update({str(year), f"month:{month}"} | ({str(day)} if day >= 10 else set()))
        return " " * len(match.group())
    return match.group()


def _number_key(match: re.Match[str], text: str, vocabulary: _Vocabulary) -> str | None:
    whole, separator, fraction = match.group(1), match.group(2), match.group(3)
    attached = match.group(4)
    if attached is not None and attached not in vocabulary.attached:
        attached = None  # another language's unit: this text does not read it
    unit = attached or " ".join((match.group(5) or "").lower().split())
    digits = re.sub(r"[ \u00a0\u202f,.]", "", whole)
    if len(digits) + len(fraction or "") > _MAX_DIGITS:
        return None
    thousands_grouped = digits != whole
    if fraction is not None and thousands_grouped:
        return None  # "1,234.5" style mixing is rare in news; skip rather than misread
    dot_grouped = separator == "." and vocabulary.dot_grouping
    if fraction is not None and len(fraction) == 3 and (not unit or dot_grouped):
        # "1,500" or "1.500", or "1.500 millones": a thousands separator, not a fraction.
        value = float(digits + fraction)
    else:
        value = float(f"{digits}.{fraction}") if fraction is not None else float(digits)
    start = match.start()
    if unit.startswith(vocabulary.percent) or (
        vocabulary.percent_before
        and unit not in vocabulary.multipliers
        and _PERCENT_BEFORE.search(text, max(0, start - 7), start)
    ):
        return f"{_round(value)}%"
    ordinal = start > 0 and text[start - 1] in "第제"
    multiplier = 1.0 if ordinal else vocabulary.multipliers.get(unit, 1.0)
    if multiplier == 1.0:
        if value < 10:
            return None
        # Plain numbers (years, counts, days) are kept exactly.
        return f"{value:g}" if value < 1e6 else _round(value)
    return _round(value * multiplier)


def _round(value: float) -> str:
    """Three significant digits: translations round amounts the same way often enough."""
    if value == 0:
        return "0"
    digits = 3 - math.floor(math.log10(abs(value))) - 1
    return f"{round(value, digits):g}"
