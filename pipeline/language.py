"""Language detection with langdetect, made deterministic and cheap.

langdetect samples n-grams at random; with its module-level factory the answer for a
short or mixed text can change from run to run. Here the profiles are loaded in sorted
order into a private factory with a fixed seed, so the same text gives the same answer in
every process on every machine. Texts with too few letters to tell get ``und``.

Only a bounded sample of the text is read, and the languages the page and the feed
declare enter as priors (more starting weight), never as the answer.

The detector is langdetect's algorithm on langdetect's profiles, run over structures of
our own: the profiles load into a sparse numpy table, the n-grams are listed in one loop,
and each draw multiplies one numpy row. Every probability equals the stock detector's (a
test compares them on hundreds of real texts); a detection costs about half as much.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar, cast

from pipeline.records import LanguageGuess

UNDETERMINED = "und"
SEED = 20240516
# langdetect reports Chinese as zh-cn / zh-tw; analysts filter on one code.
_CODE_MAP = {"zh-cn": "zh", "zh-tw": "zh"}
# Scripts that identify a language (family) on their own when langdetect is unsure.
_SCRIPT_LANG = {"HANGUL": "ko", "HIRAGANA": "ja", "KATAKANA": "ja", "THAI": "th", "HEBREW": "he"}
# Kana that make a Han text Japanese (a share of its letters): Japanese headlines written
# mostly in Han still have a particle or a loanword in every line or two.
KANA_FLOOR = 0.05
_lock = threading.Lock()
log = logging.getLogger(__name__)
# Characters read by default: a few hundred words, enough for any language the profiles know.
DEFAULT_SAMPLE_CHARS = 1500
# A declared language starts with this much more weight than each of the ~55 others (about
# a quarter of the mass): it settles headline-length texts and yields to clear evidence.
# Chosen on the tuning excerpts (benchmarks/language_accuracy.py), where 4, 20 and 100
# cost nothing when the declaration is wrong.
PRIOR_WEIGHT = 20.0


# Where the n-gram table is kept between runs (:func:`use_cache`); empty: built every time.
_CACHE_FOLDER: list[Path] = []
# Bumped whenever the cached table's layout changes: older files are then rebuilt.
TABLE_FORMAT = 1
_SEPARATOR = "\x00"  # between the n-grams of the cached table (no n-gram contains it)
KEPT_TABLES = 4  # cached tables kept in the folder (one per install sharing it)


def use_cache(folder: Path | None) -> None:
    """Keep the detector's n-gram table in ``folder`` between runs (None: build it each time).

    Takes effect for the first detection of the process (the table is built once). Set by
    the commands and tasks from ``encoder.cache_dir``, which holds the encoder's unpacked
    weights for the same reason.
    """
    _CACHE_FOLDER[:] = [folder] if folder is not None else []


@lru_cache(maxsize=1)
def _factory() -> Any:
    """Build the detector factory once per process, on first use (never at import).

    langdetect's own loader fills a Python list of ~55 probabilities for each of ~88,000
    n-grams, one profile at a time. Here the same probabilities are computed with numpy,
    one pass per profile, into a sparse table (:class:`NgramTable`): the same numbers in
    about a third of the time (0.10 s against 0.28 s of CPU, before the first page) and
    two thirds of the memory. With a cache folder (:func:`use_cache`) the table is read
    back from there in a fifth of that, until langdetect's profiles change.
    """
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    files = sorted(p for p in Path(PROFILES_DIRECTORY).iterdir() if not p.name.startswith("."))
    target = _table_file(files, _CACHE_FOLDER[0]) if _CACHE_FOLDER else None
    cached = _read_table(target) if target is not None else None
    if cached is not None:
        langlist, table = cached
    else:
        profiles = [json.loads(profile_file.read_text(encoding="utf-8")) for profile_file in files]
        langlist = [profile["name"] for profile in profiles]
        table = NgramTable.from_profiles(profiles)
        if target is not None:
            _write_table(target, langlist, table)
    factory = DetectorFactory()
    factory.langlist = langlist
    factory.word_lang_prob_map = table
    factory.set_seed(SEED)
    return factory


def _table_file(files: Sequence[Path], folder: Path) -> Path | None:
    """The cache file of the table that this code builds from these exact profile files.

    The key is the profiles' content (8 ms to read and hash; sizes and times could stay
    the same across langdetect releases), this module's source (which builds the table)
    and the Python version.
    """
    import hashlib

    digest = hashlib.sha256(f"{TABLE_FORMAT}|{sys.version}".encode())
    try:
        digest.update(Path(__file__).read_bytes())
        for profile_file in files:
            digest.update(f"|{profile_file.name}|".encode())
            digest.update(profile_file.read_bytes())
    except OSError:
        return None
    return folder / f"langdetect-{digest.hexdigest()[:16]}.npz"


def _read_table(path: Path) -> tuple[list[str], NgramTable] | None:
    """The languages and table kept at ``path``; None when missing or not whole."""
    import numpy as np

    try:
        # (Opened here: numpy leaves its own handle open when the archive is damaged.)
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            languages = stored["languages"].tobytes().decode("utf-8").split(_SEPARATOR)
            grams = stored["grams"].tobytes().decode("utf-8").split(_SEPARATOR)
            starts, columns, values = stored["starts"], stored["columns"], stored["values"]
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged: whatever numpy or zipfile raise
        log.info("language table cache %s unreadable (%s); building it again", path, exc)
        return None
    whole = (
        starts.shape == (len(grams) + 1,)
        and starts.dtype == np.int64
        and columns.shape == values.shape == (int(starts[-1]),)
        and values.dtype == np.float64
        and (columns.size == 0 or 0 <= int(columns.min()) <= int(columns.max()) < len(languages))
    )
    if not whole:
        log.info("language table cache %s does not fit its profiles; building it again", path)
        return None
    rows = dict(zip(grams, range(len(grams)), strict=True))
    return languages, NgramTable(rows, len(languages), starts, columns, values)


def _utf8(text: str) -> Any:
    import numpy as np

    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _write_table(path: Path, languages: Sequence[str], table: NgramTable) -> None:
    """Keep ``table`` at ``path`` (written whole, then renamed; errors only logged).

    The few most recent tables stay (installs with other profiles or another Python may
    share the folder); older ones are removed.
    """
    import os
    import tempfile

    import numpy as np

    if any(_SEPARATOR in text for text in chain(languages, table.rows)):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        log.info("language table cache %s not writable (%s)", path.parent, exc)
        return
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **table.arrays(), languages=_utf8(_SEPARATOR.join(languages)))
        os.chmod(staging, 0o644)  # public data (mkstemp makes the file private to this user)
        os.replace(staging, path)
    except Exception as exc:  # a full disk, a folder gone: the table is built next time
        log.info("language table cache %s not written (%s)", path, exc)
        Path(staging).unlink(missing_ok=True)
        return
    try:
        kept = sorted(path.parent.glob("langdetect-*.npz"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:  # another process pruning at the same time
        return
    for old in kept[KEPT_TABLES:]:
        try:
            old.unlink(missing_ok=True)
        except OSError:  # another user's file, or not a file
            continue


class NgramTable(Mapping[str, list[float]]):
    """langdetect's n-gram table: each known n-gram's probability in every language.

    The values are the ones langdetect's loader computes (an n-gram's count over the
    profile's number of n-grams of that length, in IEEE double precision). Most n-grams
    occur in a few languages only, so the table is kept sparse (one row per n-gram, the
    languages it occurs in and their probabilities: about 2 MB, where langdetect's lists
    take about 60 MB); :meth:`dense` expands just the rows one text needs.
    """

    def __init__(self, rows: dict[str, int], languages: int, starts: Any, columns: Any, values: Any) -> None:
        self._rows = rows
        self._languages = languages
        self._starts = starts  # row r's entries are [starts[r], starts[r + 1])
        self._columns = columns
        self._values = values

    @classmethod
    def from_profiles(cls, profiles: Sequence[dict[str, Any]]) -> NgramTable:
        import numpy as np

        grams = dict.fromkeys(chain.from_iterable(profile["freq"] for profile in profiles))
        rows = {gram: row for row, gram in enumerate(grams)}
        where, columns, values = [], [], []
        for language, profile in enumerate(profiles):
            freq: dict[str, int] = profile["freq"]
            lengths = np.fromiter(map(len, freq), dtype=np.int64, count=len(freq))
            counts = np.fromiter(freq.values(), dtype=np.float64, count=len(freq))
            totals = np.asarray(profile["n_words"], dtype=np.float64)
            usable = (lengths >= 1) & (lengths <= len(totals))
            where.append(np.fromiter(map(rows.__getitem__, freq), dtype=np.int64, count=len(freq))[usable])
            columns.append(np.full(int(usable.sum()), language, dtype=np.int64))
            values.append(counts[usable] / totals[lengths[usable] - 1])
        row_of = np.concatenate(where)
        order = np.argsort(row_of, kind="stable")
        starts = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=len(rows)), out=starts[1:])
        return cls(rows, len(profiles), starts, np.concatenate(columns)[order], np.concatenate(values)[order])

    @property
    def rows(self) -> dict[str, int]:
        """Each known n-gram's row."""
        return self._rows

    def arrays(self) -> dict[str, Any]:
        """The table as arrays (n-grams in row order, joined as UTF-8), for ``np.savez``."""
        return {
            "grams": _utf8(_SEPARATOR.join(self._rows)),
            "starts": self._starts,
            "columns": self._columns,
            "values": self._values,
        }

    def dense(self, rows: Any) -> Any:
        """The probabilities of ``rows`` (an int array), one dense row of languages each."""
        import numpy as np

        starts, ends = self._starts[rows], self._starts[rows + 1]
        sizes = ends - starts
        entries = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        out = np.zeros((len(rows), self._languages), dtype=np.float64)
        out[np.repeat(np.arange(len(rows)), sizes), self._columns[entries]] = self._values[entries]
        return out

    def __getitem__(self, gram: str) -> list[float]:
        import numpy as np

        row = self.dense(np.array([self._rows[gram]]))[0]
        return cast(list[float], row.tolist())

    def __contains__(self, gram: object) -> bool:
        return gram in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class _NormalisedChars(dict[str, str]):
    """langdetect's per-character normalisation (punctuation to space, kana to one
    representative, Han to its class...), computed once per distinct character."""

    def __missing__(self, char: str) -> str:
        from langdetect.utils.ngram import NGram

        normalised: str = NGram.normalize(char)
        self[char] = normalised
        return normalised


_NORMALISED = _NormalisedChars()


class _OtherScript(dict[str, bool]):
    """Whether langdetect counts a character (U+0300 or above) as non-Latin, per character."""

    def __missing__(self, char: str) -> bool:
        from langdetect.utils.unicode_block import unicode_block

        answer = bool(unicode_block(char) != "Latin Extended Additional")
        self[char] = answer
        return answer


_OTHER_SCRIPT = _OtherScript()


@lru_cache(maxsize=1)
def _detector_class() -> Any:
    """langdetect's detector with its sampling loop over numpy rows.

    The algorithm, the random draws and the arithmetic are langdetect's, operation for
    operation (a test compares every probability with the stock detector's): seven trials,
    each drawing n-grams at random and multiplying the languages' probabilities by the
    n-gram's, normalised every fifth draw until one language passes 0.99999. Only the
    representation changes: the n-grams are extracted in one loop, and the 55
    probabilities are multiplied as one numpy row instead of a Python list.
    """
    import numpy as np
    from langdetect.detector import Detector
    from langdetect.lang_detect_exception import ErrorCode, LangDetectException

    class FastDetector(Detector):  # type: ignore[misc]
        text: str

        def cleaning_text(self) -> None:
            # Drops Latin letters from a text that is mostly in another script, as
            # langdetect does; characters are counted once per distinct character.
            text = self.text
            counts = Counter(text)
            latin = sum(n for char, n in counts.items() if "A" <= char <= "z")
            other = sum(n for char, n in counts.items() if char >= "\u0300" and _OTHER_SCRIPT[char])
            if latin * 2 < other:
                self.text = "".join(char for char in text if char < "A" or char > "z")

        def _detect_block(self) -> None:
            self.cleaning_text()
            table: NgramTable = self.word_lang_prob_map
            rows = extract_ngrams(self.text, table.rows)
            if not rows:
                raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
            # The text's distinct n-grams as dense rows; a draw picks a position in the
            # n-gram list exactly as langdetect does, then reads that n-gram's row.
            distinct, position = np.unique(np.asarray(rows), return_inverse=True)
            values = table.dense(distinct)
            picks = position.tolist()
            draw = self.random
            draw.seed(self.seed)
            total = np.zeros(len(self.langlist), dtype=np.float64)
            for _ in range(self.n_trial):
                prob = np.array(self._init_probability(), dtype=np.float64)
                weight = (self.alpha + draw.gauss(0.0, 1.0) * self.ALPHA_WIDTH) / self.BASE_FREQ
                step = 0
                while True:
                    prob *= weight + values[draw.choice(picks)]
                    if step % 5 == 0:
                        # Python's own sum, in list order: the same rounding as langdetect's.
                        prob /= sum(prob.tolist())
                        if prob.max() > self.CONV_THRESHOLD or step >= self.ITERATION_LIMIT:
                            break
                    step += 1
                total += prob / self.n_trial
            self.langprob = total.tolist()

    return FastDetector


Known = TypeVar("Known")


def extract_ngrams(text: str, known: dict[str, Known]) -> list[Known]:
    """``known[gram]`` for each known 1-, 2- and 3-gram of ``text``, in langdetect's order.

    langdetect keeps a three-character window over the normalised characters, restarts it
    at each space, and skips positions inside words of two or more capitals (acronyms).
    Its version calls two methods and a block lookup per character; this one is a single
    loop over the text normalised in one pass, and lists the same n-grams.
    """
    lookup = known.get
    result: list[Known] = []
    grams = " "
    capital = False
    for char in "".join(map(_NORMALISED.__getitem__, text)):
        last = grams[-1]
        if last == " ":
            grams = " "
            capital = False
            if char == " ":
                continue
        elif len(grams) >= 3:
            grams = grams[1:]
        grams += char
        if char.isupper():
            if last.isupper():
                capital = True
        else:
            capital = False
        if capital:
            continue
        if char != " ":
            value = lookup(char)
            if value is not None:
                result.append(value)
        size = len(grams)
        if size >= 2:
            value = lookup(grams[-2:])
            if value is not None:
                result.append(value)
            if size >= 3:
                value = lookup(grams)
                if value is not None:
                    result.append(value)
    return result


def count_letters(text: str) -> int:
    """Letters (any script) in ``text``; digits, punctuation and spaces don't count."""
    return sum(map(str.isalpha, text))  # counted in C


# Characters that stand for a syllable or a word: a Han character carries about as much as
# a short word of an alphabetic script (a Chinese text is about a third as long as its
# English translation), a kana or a Hangul syllable block about half that.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_SYLLABLES = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\uac00-\ud7af]")
HAN_WEIGHT = 3
SYLLABLE_WEIGHT = 2


# Full-width ASCII (``Ｐｕｔｉｎ``, ``２０２６``), the ideographic space and half-width
# katakana: the profiles hold the ordinary forms (langdetect took a text in full-width
# Latin letters for Japanese).
_WIDTH_FORMS = re.compile("[\u3000\uff01-\uffee]+")
# Latin letters, as the Latin names and words quoted in a Chinese, Japanese or Korean text.
_LATIN_LETTERS = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]+")


def _ordinary_forms(text: str) -> str:
    """``text`` with its full-width and half-width forms as the ordinary characters."""
    if text.isascii():
        return text
    return _WIDTH_FORMS.sub(lambda match: unicodedata.normalize("NFKC", match[0]), text)


def _east_asian_without_latin(text: str) -> str:
    """``text`` without its Latin letters when its Han, kana and Hangul outweigh them.

    A Chinese, Japanese or Korean report quotes names and words in Latin letters
    ("Gazprom", "CNPC", "Power of Siberia 2"). Counted one letter each against the Han
    characters and syllables (each as much as a word or half of one), a sentence with a
    few of them was taken for English, or Afrikaans. langdetect drops Latin letters only
    when the other letters are twice as many, counting characters; here a character
    counts as in :func:`text_length`, and the Latin letters go once they weigh less than
    the rest. An English text under a Chinese headline keeps its letters.
    """
    if text.isascii():
        return text
    sample = text[:5000]
    han = len(_HAN.findall(sample))
    syllables = len(_SYLLABLES.findall(sample))
    if not han and not syllables:
        return text
    latin = sum(len(run) for run in _LATIN_LETTERS.findall(sample))
    if not latin or HAN_WEIGHT * han + SYLLABLE_WEIGHT * syllables <= latin:
        return text
    return _LATIN_LETTERS.sub(" ", text)


def text_length(text: str) -> int:
    """The length of ``text`` in characters of an alphabetic script: a Han character counts
    as :data:`HAN_WEIGHT`, a kana or Hangul syllable as :data:`SYLLABLE_WEIGHT`, any other
    character as one. Used against length thresholds set in characters (``poll.min_text_chars``)."""
    if text.isascii():
        return len(text)
    han = len(text) - len(_HAN.sub("", text))  # (counted in C: a match object per character is not)
    syllables = len(text) - len(_SYLLABLES.sub("", text))
    return len(text) + (HAN_WEIGHT - 1) * han + (SYLLABLE_WEIGHT - 1) * syllables


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
    wins. A declared language the detector has no profile for (Serbian, Kazakh, Tatar and
    the others of :data:`_CYRILLIC_ALPHABETS`) is taken when the text is written in its
    alphabet, shows a letter of its own where its alphabet holds Russian's, and the
    detector named no language declared ahead of it (nor, for Serbian, did Macedonian's
    words outnumber its own). When the best guess is still below ``min_confidence``, the
    first declared language the detector ranked at all is taken; otherwise the script
    decides (Hangul, kana...) or the answer is ``und``. Korean needs Hangul: for a text without any, a
    Korean guess gives way to what the script says (kana among Han: Japanese).

    Returns ``und`` with confidence 0 when the sample has fewer than ``min_letters``
    letters. The same text and priors give the same answer in every process.
    """
    sample = _bounded(text, sample_chars)
    if not unicodedata.is_normalized("NFC", sample):
        # Decomposed text (Korean as jamo, Vietnamese with combining accents) reads as the
        # composed text it is: the profiles hold composed letters.
        sample = unicodedata.normalize("NFC", sample)
    sample = _ordinary_forms(sample)
    letters = count_letters(sample)
    if letters < min_letters:
        return LanguageGuess(UNDETERMINED, 0.0)
    sample = _east_asian_without_latin(sample)
    if _mostly_chinese(sample):
        # langdetect's profiles are simplified Chinese: traditional text comes out as
        # Korean (with confidence 1.0). Han characters without Hangul or kana are Chinese.
        return LanguageGuess("zh", 0.99)
    own = language_by_letters(sample)
    if own is not None:
        return own
    declared = _declared(hint, priors)
    from langdetect.lang_detect_exception import LangDetectException

    try:
        with _lock:
            factory = _factory()
            detector = _detector_class()(factory)
            if declared:
                detector.set_prior_map(_prior_map(tuple(factory.get_lang_list()), tuple(declared)))
            detector.append(sample)
            ranked = detector.get_probabilities()
    except LangDetectException:
        ranked = []
    if not ranked:
        fitting = _declared_without_profile(sample, declared, None)
        return (
            LanguageGuess(fitting, DECLARED_FIT_CONFIDENCE) if fitting else LanguageGuess(UNDETERMINED, 0.0)
        )
    best = ranked[0]
    code = sibling_language(_CODE_MAP.get(best.lang, best.lang), sample, declared)
    fitting = _declared_without_profile(sample, declared, code)
    if fitting:
        return LanguageGuess(fitting, DECLARED_FIT_CONFIDENCE)
    if code == "ko" and not _has_hangul(sample):
        # Korean is written in Hangul: Han characters with kana and none (a Japanese
        # headline) came out as Korean, even with Japanese declared.
        return LanguageGuess(dominant_script_language(sample) or UNDETERMINED, round(best.prob, 4))
    if best.prob >= min_confidence:
        return LanguageGuess(code, round(best.prob, 4))
    for wanted in declared:
        profiles = _PROFILES_OF.get(wanted, (wanted,))
        for candidate in ranked:
            lang = _CODE_MAP.get(candidate.lang, candidate.lang)
            if lang in profiles and (lang != "ko" or _has_hangul(sample)):
                return LanguageGuess(sibling_language(lang, sample, declared), round(candidate.prob, 4))
    script = dominant_script_language(sample)
    if script:
        return LanguageGuess(script, round(best.prob, 4))
    return LanguageGuess(UNDETERMINED, round(best.prob, 4))


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Languages langdetect has no profile for, written like one it has, so that their texts
# come out as that one: (its code, the sibling's code, words of the sibling, words of the
# language itself). Each list holds common news words whose counterpart in the other
# language is spelled differently: Malaysian "bahawa", "kerana", "antarabangsa" against
# Indonesian "bahwa", "karena", "internasional"; Serbian's ekavian forms ("vreme",
# "posle", "dve", "predsednik") against the ijekavian ones Croatian and Bosnian write
# ("vrijeme", "poslije", "dvije", "predsjednik"), and Croatian's own words ("tisuća",
# "suradnja", its month names); Serbian in Cyrillic against Macedonian by their function
# words.
# Words both languages use in the news (a surname like "Wang", Indonesian "cukai",
# "boleh" and "kerajaan", Croatian "sveta" for holy, the month names Serbian shares with
# Bosnian) are not listed, and each word counts once, however often it comes back.
_SIBLINGS = {
    "id": (
        "ms",
        _word_set(
            "bahawa kerana iaitu sahaja selepas antarabangsa baharu tentera ketenteraan polis "
            "mahu ogos julai disember syarikat pelancongan"
        ),
        _word_set(
            "bahwa karena yaitu internasional bisa pernyataan pemerintah tentara militer mau "
            "agustus juli juni desember maret uang perusahaan pajak pariwisata tiongkok"
        ),
    ),
    "hr": (
        "sr",
        _word_set(
            "vreme svetski svetske svetskog svetskom svetskoj pre posle uvek mesto mesta mestu "
            "deo dve reč reči cena cene cenu ceni sever severa severu severni nedelja nedelje "
            "primena promena promene takođe takodje bezbednost bezbednosti bezbednosni "
            "bezbednosnih spoljnih spoljne spoljni spoljna spoljnu spoljnim spoljnog spoljnom "
            "spoljnoj predsednik predsednika predsedniku predsednikom predsednici predsednica "
            "predsednice predsedništvo predsedništva sledeći sledeće sledećeg sledećoj sledeća "
            "sledeću poseta posete posetu poseti posetio posetila vest vesti ceo celog celu celoj "
            "cela celom mere meru merama rešenje rešenja rešenju pobeda pobede pobedu vek veka "
            "deca dece sednica sednice sednici savet saveta savetu"
        ),
        _word_set(
            "vrijeme svjetski svjetske svjetskog svjetskom svjetskoj prije poslije uvijek mjesto "
            "mjesta mjestu dio dvije riječ riječi cijena cijene cijenu cijeni sjever sjevera "
            "sjeveru sjeverni nedjelja nedjelje primjena promjena promjene također suradnja "
            "suradnje suradnju suradnji vanjskih vanjske vanjski vanjska vanjsku vanjskim "
            "vanjskog vanjskom vanjskoj tisuća tisuće tisuću povijest povijesti veleposlanik "
            "veleposlanstvo općina općine siječnja veljače ožujka travnja svibnja lipnja srpnja "
            "kolovoza rujna listopada studenoga studenog prosinca tko gospodarski gospodarstvo "
            "predsjednik predsjednika predsjedniku predsjednikom predsjednici predsjednica "
            "predsjednice predsjedništvo predsjedništva sljedeći sljedeće sljedećeg sljedećoj "
            "sljedeća sljedeću posjet posjeta posjete posjetu posjeti posjetio posjetila vijest "
            "vijesti cijeli cijelog cijelu cijeloj cijela cijelom mjere mjeru mjerama rješenje "
            "rješenja rješenju pobjeda pobjede pobjedu vijek vijeka djeca djece sjednica sjednice "
            "sjednici savjet savjeta savjetu"
        ),
    ),
    # Serbian in the Cyrillic script without ђ or ћ reads as Macedonian: Serbian's cases and
    # its "је", "су", "у", "са", "данас" against Macedonian's "е", "во", "со", "дека", "денес".
    "mk": (
        "sr",
        _word_set(
            "је су у са који које којег којој када због након године није нису још као где данас сада били"
        ),
        _word_set("е во со дека уште кога кон тоа беше ги го денес сега каде оваа овој годинава"),
    ),
}
# The profiles langdetect reads a sibling's text with: where a page declares Malay, the
# declaration gives Indonesian its weight, and the words then tell the two apart (Serbian:
# Croatian's for the Latin script, Macedonian's for the Cyrillic).
_PROFILES_OF: dict[str, tuple[str, ...]] = {}
for _code, (_sibling, _, _) in _SIBLINGS.items():
    _PROFILES_OF[_sibling] = (*_PROFILES_OF.get(_sibling, ()), _code)
# Distinct sibling words a text needs, and how many times its own language's distinct
# words they must outnumber, before the text is taken for the sibling.
_SIBLING_WORDS = 3
_SIBLING_RATIO = 2


def sibling_language(code: str, text: str, declared: Sequence[str] = ()) -> str:
    """``code``, or the language without a profile that the text's words show it to be
    (:data:`_SIBLINGS`). A sibling declared ahead of ``code`` decides when the words do
    not go against it; ``code`` declared ahead of it counts as one more of its own words."""
    sibling = _SIBLINGS.get(code)
    if sibling is None:
        return code
    other, its_words, own_words = sibling
    text = unicodedata.normalize("NFC", text)
    if _letters_against(other, text):
        return code  # (Macedonian's ѓ ќ ѕ: not Serbian, whatever its words)
    words = {word.lower() for word in _WORDS.findall(text)}
    theirs = len(words & its_words)
    own = len(words & own_words)
    ahead = other in declared and (code not in declared or declared.index(other) < declared.index(code))
    if code in declared and not ahead:
        own += 1  # (the page's declaration counts as one more word of its language)
    if theirs >= _SIBLING_WORDS and theirs > _SIBLING_RATIO * own:
        return other
    if ahead:
        return other if theirs >= own else code
    return code


_WORDS = re.compile(r"[^\W\d_]+")

_RUSSIAN_LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
# Languages without a profile written in Cyrillic: (the letters they write, letters of their
# own a text must show). A page or feed declaring one of them is believed for a text mostly
# in Cyrillic that writes only its letters and shows one of its own (Serbian needs none of
# its own: it writes none of the я, ю, й, ы, э, щ, ь, ъ, ё that Russian, Bulgarian,
# Ukrainian and Belarusian write, nor Ukrainian's і ї є ґ or Macedonian's ѓ ќ ѕ). Those whose
# alphabet holds Russian's need letters Russian lacks, as a real share of the text (a Russian
# article naming "Қасым-Жомарт Тоқаев" is Russian): Kazakh's ә ғ қ ң ө ұ ү һ і.
_CYRILLIC_ALPHABETS = {
    "sr": ("абвгдђежзијклљмнњопрстћуфхцчџш", ""),
    "kk": (_RUSSIAN_LETTERS + "әғқңөұүһі", "әғқңөұүһі"),
    "tt": (_RUSSIAN_LETTERS + "әөүҗңһ", "әөүҗңһ"),
    "ba": (_RUSSIAN_LETTERS + "әғҙҡңөҫүһ", "әғҙҡңөҫүһ"),
    "ky": (_RUSSIAN_LETTERS + "ңөү", "ңөү"),
    "mn": (_RUSSIAN_LETTERS + "өү", "өү"),
    "tg": ("абвгғдеёжзиӣйкқлмнопрстуӯфхҳчҷшъэюя", "ғӣқӯҳҷ"),
    "uz": ("абвгдеёжзийклмнопрстуфхцчшъьэюяўқғҳ", "ўқғҳ"),
    "be": ("абвгдеёжзійклмнопрстуўфхцчшыьэюя", "ў"),
}
# Of a text's Cyrillic letters, the share its declared language's own letters must make up.
OWN_LETTER_SHARE = 0.03
# The confidence given to a declared language the letters bear out (the detector's own
# figure is for another language).
DECLARED_FIT_CONFIDENCE = 0.9


def _cyrillic_letters(text: str) -> set[str] | None:
    """The distinct Cyrillic letters (lower case) of a text mostly in Cyrillic; else None."""
    letters = [char.lower() for char in unicodedata.normalize("NFC", text[:5000]) if char.isalpha()]
    cyrillic = {char for char in letters if "\u0400" <= char <= "\u04ff"}
    if not cyrillic or sum(char in cyrillic for char in letters) * 2 <= len(letters):
        return None
    return cyrillic


def _own_share(text: str, own: str) -> float:
    """The share of ``text``'s Cyrillic letters that are among ``own``."""
    sample = unicodedata.normalize("NFC", text[:5000]).lower()
    cyrillic = sum(1 for char in sample if "\u0400" <= char <= "\u04ff" and char.isalpha())
    return sum(1 for char in sample if char in own) / cyrillic if cyrillic else 0.0


def _letters_against(lang: str, text: str) -> bool:
    """Whether ``text``, mostly in Cyrillic, writes a letter ``lang``'s alphabet lacks."""
    entry = _CYRILLIC_ALPHABETS.get(lang)
    letters = _cyrillic_letters(text) if entry else None
    return entry is not None and letters is not None and not letters <= set(entry[0])


def _declared_without_profile(text: str, declared: Sequence[str], detected: str | None) -> str | None:
    """The first declared language without a profile that ``text``'s letters bear out
    (:data:`_CYRILLIC_ALPHABETS`), unless the detector named a language declared ahead of
    it, or the words already spoke against it (a sibling of the detected language)."""
    for wanted in declared:
        if wanted == detected:
            return None
        entry = _CYRILLIC_ALPHABETS.get(wanted)
        if entry is None or (detected in _SIBLINGS and _SIBLINGS[detected][0] == wanted):
            continue
        letters = _cyrillic_letters(text)
        alphabet, own = entry
        if (
            letters is not None
            and letters <= set(alphabet)
            and (not own or _own_share(text, own) >= OWN_LETTER_SHARE)
        ):
            return wanted
    return None


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
        profiles = _PROFILES_OF.get(code, (code,))
        for name in languages:
            if _CODE_MAP.get(name, name) in profiles:
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


@lru_cache(maxsize=1)
def detectable_languages() -> frozenset[str]:
    """Every code :func:`detect_language` can give, ``und`` included: the languages an
    article can be stored in, so the only values a language filter can match."""
    from langdetect.detector_factory import PROFILES_DIRECTORY

    profiles = (path.name for path in Path(PROFILES_DIRECTORY).iterdir() if not path.name.startswith("."))
    marked = (rule[0] for rule in (*_MARKED_CYRILLIC, *_MARKED_ARABIC, *_MARKED_LATIN))
    return frozenset(
        {
            UNDETERMINED,
            *(_CODE_MAP.get(name, name) for name in profiles),
            *_SCRIPT_LANG.values(),
            *(lang for _, _, lang in _SCRIPTS_OF_THEIR_OWN),
            *marked,
            *_CYRILLIC_ALPHABETS,
            *(sibling for sibling, _, _ in _SIBLINGS.values()),
        }
    )


# A few of them, for messages that refuse another value.
LANGUAGE_EXAMPLES = "en, ru, zh, uk, kk, de, fr, ja, ko; und: undetermined"


def filter_language(value: str) -> str | None:
    """``value`` as the code a language filter matches (``EN``, ``en-GB``: ``en``), or None
    when it is no code :func:`detect_language` gives (``Russian``, ``xx``)."""
    code = normalise_code(value)
    return code if code in detectable_languages() else None


# Scripts langdetect has no profile for, each written (in the news) in one language: a
# text mostly in one of them is that language. langdetect would name a language from the
# few n-grams it knows: Armenian and Georgian came out as Estonian, with confidence 1.0.
_SCRIPTS_OF_THEIR_OWN = (
    (0x0530, 0x058F, "hy"),  # Armenian
    (0x10A0, 0x10FF, "ka"),  # Georgian
    (0x1C90, 0x1CBF, "ka"),  # Georgian capitals (Mtavruli)
    (0x1200, 0x139F, "am"),  # Ethiopic: Amharic (Tigrinya shares it)
    (0x1000, 0x109F, "my"),  # Myanmar: Burmese
    (0x1780, 0x17FF, "km"),  # Khmer
    (0x0E80, 0x0EFF, "lo"),  # Lao
    (0x0F00, 0x0FFF, "bo"),  # Tibetan
    (0x0D80, 0x0DFF, "si"),  # Sinhala
    (0x1800, 0x18AF, "mn"),  # Mongolian (the traditional script)
    (0x0780, 0x07BF, "dv"),  # Thaana: Dhivehi
    (0x0B00, 0x0B7F, "or"),  # Odia
)
# Languages told by letters of their own within a script langdetect knows, checked in
# order: (language, deciding letters, own letters, letters it never writes). A text is
# taken for the language when at least 2 of its deciding letters are there, its own
# letters make at least the given share of the script's letters in the text, and none of
# the letters it never writes is. The shares sit well below these languages' own (their
# letters are 5-12% of a text) and above a text that quotes a few names: a Russian report
# naming "Тоқаев" and "Ақорда", or an English one naming "İlham Əliyev", stays as it is.
_MARKED_CYRILLIC = (
    # Kazakh (its і is Ukrainian's too, so not counted: a Ukrainian report listing Қазақстан,
    # Ақтөбе and Қарағанды in one sentence stays Ukrainian). Decided by қ and ұ, which Tatar
    # never writes: its ә is Tatar's and Bashkir's too.
    ("kk", "ұқ", "әңғқүұөһ", 0.05, ""),
    ("tt", "җ", "әөүҗңһ", 0.04, ""),  # Tatar
    ("ba", "ҙҫҡ", "ҙҫҡғәөүңһ", 0.04, ""),  # Bashkir
    # Tatar without a җ: ә with none of the letters only Kazakh, Bashkir, Uzbek or Tajik write.
    ("tt", "ә", "әөүҗңһ", 0.04, "қғұіҡҙҫўӣӯҷ"),
    ("tg", "ӣӯҷ", "ӣӯҷҳқғ", 0.03, ""),  # Tajik
    ("uz", "қғҳ", "ўқғҳ", 0.03, "ұәӣӯҷ"),  # Uzbek (with ў, below)
    # Belarusian writes і with ы and ў, never и, щ, ъ (Ukrainian: і without ы; Russian: ы
    # without і).
    ("be", "ўы", "іў", 0.03, "иїєщъ"),
    # Kyrgyz writes ң with ө ү; Mongolian ө ү without ң. Neither writes ә қ ғ і.
    ("ky", "ң", "өүң", 0.03, "әқғіһ"),
    ("mn", "өү", "өү", 0.03, "әқғіңһ"),
    # Serbian writes ђ ћ and ј, never the letters Russian has and it has not (я, ю, й, ы,
    # э, щ, ь, ъ, ё), nor Macedonian's ѓ ќ ѕ.
    ("sr", "ђћ", "ђћј", 0.01, "яюйыэщьъёѓќѕ"),
)
_MARKED_ARABIC = (
    ("ug", "ۇۈۋ", "ۇۈۋېەۆ", 0.03, ""),  # Uyghur's vowels
    ("ps", "ټډړږښګڼ", "ټډړږښګڼ", 0.02, ""),  # Pashto's retroflex and ږ ښ ګ ڼ
    ("ckb", "ڕڵێ", "ڕڵێەۆ", 0.03, ""),  # Sorani Kurdish
)
_MARKED_LATIN = (("az", "əƏ", "əƏ", 0.03, ""),)  # Azerbaijani schwa
_DECIDING = 2
# Uzbek in the Latin script: "oʻ" and "gʻ" (turned comma or left quote), with the q and x
# that Uzbek writes often and English hardly ever (Hawaiian "Oʻahu" has the same mark).
_UZBEK_MARKS = ("oʻ", "gʻ", "Oʻ", "Gʻ", "o‘", "g‘", "O‘", "G‘")
# Typed without the proper mark, "o'" and "g'" (ASCII apostrophe, right quote or grave)
# inside a word: a lower-case letter follows, and not the "s" of a possessive ("Beijing's",
# "Tokyo's"), which English news about China writes often beside its q and x (Xi,
# Xinhua, Xinjiang, Qingdao).
_UZBEK_TYPED_MARKS = re.compile("[oOgG]['’`](?=[a-z])(?!s\\b)")
_UZBEK_QX_SHARE = 0.015


def language_by_letters(text: str) -> LanguageGuess | None:
    """The language of ``text`` when its letters name it and langdetect cannot.

    A script of its own (Armenian, Georgian, Ethiopic, Burmese, Khmer, Lao, Tibetan,
    Sinhala...) for most letters; or Cyrillic with letters of Kazakh, Tatar, Bashkir,
    Tajik, Uzbek, Belarusian, Kyrgyz, Mongolian or Serbian; or the Arabic script with
    letters of Uyghur, Pashto or Sorani Kurdish; or Latin with Azerbaijani "ə" or Uzbek
    "oʻ", "gʻ". None otherwise: langdetect decides. (A Kyrgyz text without a ң is taken
    for Mongolian.)
    """
    letters = [char for char in text[:5000] if char.isalpha()]
    if not letters:
        return None
    by_script: dict[str, Counter[str]] = {"cyrillic": Counter(), "arabic": Counter(), "latin": Counter()}
    own: Counter[str] = Counter()
    for char in letters:
        code = ord(char)
        if 0x0400 <= code <= 0x04FF:
            by_script["cyrillic"][char.lower()] += 1
        elif 0x0600 <= code <= 0x06FF:
            by_script["arabic"][char] += 1
        elif code < 0x0300 or 0x1E00 <= code <= 0x1EFF:  # (with IPA's ə and Vietnamese)
            by_script["latin"][char] += 1
        elif code >= 0x0530:
            for low, high, lang in _SCRIPTS_OF_THEIR_OWN:
                if low <= code <= high:
                    own[lang] += 1
                    break
    if own:
        lang, count = own.most_common(1)[0]
        if count * 2 > len(letters):
            return LanguageGuess(lang, 0.99)
    for script, rules in (
        ("cyrillic", _MARKED_CYRILLIC),
        ("arabic", _MARKED_ARABIC),
        ("latin", _MARKED_LATIN),
    ):
        counts = by_script[script]
        total = sum(counts.values())
        if total * 2 <= len(letters):
            continue
        found = _marked(counts, total, rules)
        if found is None and script == "latin" and _uzbek_latin(text, counts, total):
            found = "uz"
        return LanguageGuess(found, 0.95) if found else None
    return None


def _marked(
    counts: Counter[str], total: int, rules: tuple[tuple[str, str, str, float, str], ...]
) -> str | None:
    """The first language of ``rules`` whose letters the counted ones show (see above)."""

    def count(letters: str) -> int:
        return sum(counts[char] for char in letters)

    for lang, deciding, letters, share, never in rules:
        if count(deciding) < _DECIDING or count(letters) < share * total or count(never):
            continue
        if lang == "uz" and not counts["ў"]:
            continue  # Uzbek in Cyrillic writes ў with its қ ғ ҳ (Kazakh and Tajik do not)
        return lang
    return None


def _uzbek_latin(text: str, counts: Counter[str], total: int) -> bool:
    marks = sum(text.count(pair) for pair in _UZBEK_MARKS) + len(_UZBEK_TYPED_MARKS.findall(text))
    qx = counts["q"] + counts["x"] + counts["Q"] + counts["X"]
    return marks >= 3 and qx >= _UZBEK_QX_SHARE * total


def dominant_script_language(text: str) -> str | None:
    """A language implied by the script of most letters (Hangul → ko, kana → ja...).

    Japanese mixes kana with Han characters, often more Han than kana in a news text: kana
    (at least :data:`KANA_FLOOR` of the letters) among letters that are mostly Han or
    kana, with no Hangul, is Japanese.
    """
    counts: dict[str, int] = {}
    letters = han = 0
    for char in text[:5000]:
        if not char.isalpha():
            continue
        letters += 1
        name = unicodedata.name(char, "")
        if name.startswith("CJK UNIFIED"):
            han += 1
            continue
        for script, lang in _SCRIPT_LANG.items():
            if name.startswith(script):
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not counts or not letters:
        return None
    kana = counts.get("ja", 0)
    if "ko" not in counts and kana >= KANA_FLOOR * letters and (kana + han) * 2 > letters:
        return "ja"
    lang, count = max(counts.items(), key=lambda kv: kv[1])
    return lang if count / letters > 0.3 else None


def _has_hangul(text: str) -> bool:
    return any(
        "\uac00" <= char <= "\ud7af" or "\u1100" <= char <= "\u11ff" or "\u3130" <= char <= "\u318f"
        for char in text[:5000]
    )
