"""Language detection with langdetect, made deterministic and cheap.

langdetect samples n-grams at random; with its module-level factory the answer for a
short or mixed text can change from run to run. Here the profiles are loaded in sorted
order into a private factory with a fixed seed, so the same text gives the same answer in
every process on every machine. Texts with too few letters to tell get ``und``.

Only a bounded sample of the text is read, and the languages the page and the feed
declare enter as priors (more starting weight), never as the answer.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.records import LanguageGuess

UNDETERMINED = "und"
SEED = 20240516
# langdetect reports Chinese as zh-cn / zh-tw; analysts filter on one code.
_CODE_MAP = {"zh-cn": "zh", "zh-tw": "zh"}
# Scripts that identify a language (family) on their own when langdetect is unsure.
_SCRIPT_LANG = {"HANGUL": "ko", "HIRAGANA": "ja", "KATAKANA": "ja", "THAI": "th", "HEBREW": "he"}
_lock = threading.Lock()
# Characters read by default: a few hundred words, enough for any language the profiles know.
DEFAULT_SAMPLE_CHARS = 1500
# A declared language starts with this much more weight than each of the ~55 others (about
# a quarter of the mass): it settles headline-length texts and yields to clear evidence.
# Chosen on the tuning excerpts (benchmarks/language_accuracy.py), where 4, 20 and 100
# cost nothing when the declaration is wrong.
PRIOR_WEIGHT = 20.0


@lru_cache(maxsize=1)
def _factory() -> Any:
    """Build the detector factory once per process, on first use (never at import)."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    from langdetect.utils.lang_profile import LangProfile

    factory = DetectorFactory()
    files = sorted(p for p in Path(PROFILES_DIRECTORY).iterdir() if not p.name.startswith("."))
    for index, profile_file in enumerate(files):
        data = json.loads(profile_file.read_text(encoding="utf-8"))
        factory.add_profile(LangProfile(**data), index, len(files))
    factory.set_seed(SEED)
    return factory


def count_letters(text: str) -> int:
    """Letters (any script) in ``text``; digits, punctuation and spaces don't count."""
    return sum(1 for char in text if char.isalpha())


def detect_language(
    text: str,
    *,
    hint: str | None = None,
    priors: Sequence[str | None] = (),
    min_letters: int = 20,
    min_confidence: float = 0.70,
    sample_chars: int = DEFAULT_SAMPLE_CHARS,
) -> LanguageGuess:
    """Detect the language of ``text`` from a bounded sample of it.

    Only the first ``sample_chars`` characters are read (cut at a space): a few hundred
    words tell a language as well as a whole article, at a fraction of the cost.

    ``priors`` are the languages the source declares, most trusted first (the page's own
    declaration as found by extraction, then the feed's); ``hint`` is one more, ahead of
    them. They are priors, not answers: a declared language starts with more weight than
    the others, which decides short or mixed texts, but clear evidence of another language
    wins. When the best guess is still below ``min_confidence``, the first declared
    language the detector ranked at all is taken; otherwise the script decides (Hangul,
    kana...) or the answer is ``und``.

    Returns ``und`` with confidence 0 when the sample has fewer than ``min_letters``
    letters. The same text and priors give the same answer in every process.
    """
    sample = _bounded(text, sample_chars)
    letters = count_letters(sample)
    if letters < min_letters:
        return LanguageGuess(UNDETERMINED, 0.0)
    if _mostly_chinese(sample):
        # langdetect's profiles are simplified Chinese: traditional text comes out as
        # Korean (with confidence 1.0). Han characters without Hangul or kana are Chinese.
        return LanguageGuess("zh", 0.99)
    declared = _declared(hint, priors)
    from langdetect.lang_detect_exception import LangDetectException

    try:
        with _lock:
            factory = _factory()
            detector = factory.create()
            if declared:
                detector.set_prior_map(_prior_map(tuple(factory.get_lang_list()), tuple(declared)))
            detector.append(sample)
            ranked = detector.get_probabilities()
    except LangDetectException:
        return LanguageGuess(UNDETERMINED, 0.0)
    if not ranked:
        return LanguageGuess(UNDETERMINED, 0.0)
    best = ranked[0]
    code = _CODE_MAP.get(best.lang, best.lang)
    if best.prob >= min_confidence:
        return LanguageGuess(code, round(best.prob, 4))
    for wanted in declared:
        for candidate in ranked:
            if _CODE_MAP.get(candidate.lang, candidate.lang) == wanted:
                return LanguageGuess(wanted, round(candidate.prob, 4))
    script = dominant_script_language(sample)
    if script:
        return LanguageGuess(script, round(best.prob, 4))
    return LanguageGuess(UNDETERMINED, round(best.prob, 4))


def _bounded(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, cut at a space when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit - 100, limit)
    return text[: cut if cut > 0 else limit]


def _declared(hint: str | None, priors: Sequence[str | None]) -> list[str]:
    """The declared languages as detector codes, in order of trust, without repeats."""
    codes: list[str] = []
    for raw in (hint, *priors):
        code = normalise_code(raw)
        if code and code not in codes:
            codes.append(code)
    return codes


@lru_cache(maxsize=256)
def _prior_map(languages: tuple[str, ...], declared: tuple[str, ...]) -> dict[str, float]:
    """Every language weight 1, a declared one ``1 + PRIOR_WEIGHT`` (less for later ones)."""
    weights = dict.fromkeys(languages, 1.0)
    for rank, code in enumerate(declared):
        for name in languages:
            if _CODE_MAP.get(name, name) == code:
                weights[name] += PRIOR_WEIGHT / (rank + 1)
    return weights


def _mostly_chinese(text: str) -> bool:
    han = kana_or_hangul = letters = 0
    for char in text[:5000]:
        if not char.isalpha():
            continue
        letters += 1
        if "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff":
            han += 1
        elif "\u3040" <= char <= "\u30ff" or "\uac00" <= char <= "\ud7af" or "\u1100" <= char <= "\u11ff":
            kana_or_hangul += 1
    return letters > 0 and han / letters > 0.5 and kana_or_hangul / letters < 0.02


def normalise_code(code: str | None) -> str | None:
    """``en-US`` → ``en``, ``zh-Hans`` → ``zh``; ``None`` for empty or malformed codes."""
    if not code:
        return None
    primary = code.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def dominant_script_language(text: str) -> str | None:
    """A language implied by the script of most letters (Hangul → ko, kana → ja...)."""
    counts: dict[str, int] = {}
    letters = 0
    for char in text[:5000]:
        if not char.isalpha():
            continue
        letters += 1
        name = unicodedata.name(char, "")
        for script, lang in _SCRIPT_LANG.items():
            if name.startswith(script):
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not counts or not letters:
        return None
    lang, count = max(counts.items(), key=lambda kv: kv[1])
    return lang if count / letters > 0.3 else None
