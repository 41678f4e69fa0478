"""Sort an article into summit topics and watch items, with the sentences that decided.

A pure stage: text in, :class:`~pipeline.records.Classification` out. Everything the
classifier knows lives in ``config/topics.yaml``, loaded once by :func:`load_registry`
into an immutable :class:`TopicRegistry`:

1. **Relevance gate.** The article must be about Russia–China relations: sentences that
   name both sides (countries, leaders, capitals, state companies) or the partnership
   itself ("Sino-Russian", "российско-китайские", "中俄"), weighted by position (title,
   lead, body). Off-topic domains (sports) veto. An irrelevant article gets no labels.
2. **Weighted patterns.** Each topic and watch item has weighted regular expressions per
   language. A pattern counts once per sentence; its repeats in later sentences count
   less and less (``repeat_decay``), so one specific phrase outweighs a generic word
   repeated. Hits in the title and in sentences that name Russia or China count more.
3. **Exclusions and context.** Sentences matching an entry's ``exclude`` patterns do not
   count for it ("peaceful nuclear energy" in an Iran story is not energy); an entry with
   ``requires`` needs one of those patterns somewhere in the article (a peace plan must be
   about Ukraine).
4. **Thresholds.** An entry is assigned when its score reaches its threshold; a watch
   item also assigns the topic it ``implies``.

English and Russian patterns match whole words only (Unicode-aware, so Russian stems
carry their own ``\\w*`` endings); Chinese patterns match anywhere, as the script has no
word spaces.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from pipeline import yamlfile
from pipeline.errors import ConfigError
from pipeline.hanzi import simplified_characters
from pipeline.records import Classification, TopicHit, WatchHit
from pipeline.sentences import split_sentences, strip_invisible
from pipeline.unicode_marks import MARKS_BMP, joins_previous

__all__ = [
    "TOPIC_SLUGS",
    "WATCH_SLUGS",
    "Entry",
    "Examples",
    "Pattern",
    "RelevanceGate",
    "RuleScore",
    "RuleView",
    "Scoring",
    "TopicRegistry",
    "classify",
    "keyword_baseline",
    "load_registry",
    "relevance_score",
    "rule_view",
    "trim_evidence",
]

#: The topic slugs of DESIGN.md. Fixed: digests, coverage series and the database use them.
TOPIC_SLUGS: tuple[str, ...] = (
    "energy",
    "military",
    "ukraine",
    "trade_finance",
    "world_order",
    "taiwan_asia",
    "middle_east",
    "technology",
    "people_culture",
    "diplomacy",
)

#: The watch items every registry must define; users may add their own next to them.
WATCH_SLUGS: tuple[str, ...] = (
    "power_of_siberia_2",
    "joint_exercises",
    "peace_plan",
    "yuan_settlement",
    "arctic_route",
)

#: Languages the registry must cover (DESIGN.md: "English, Russian and Chinese at least").
REQUIRED_LANGUAGES: tuple[str, ...] = ("en", "ru", "zh")

# ISO 639-1 codes; a registry may declare any of them.
_ISO_639_1_CODES = """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs
    cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he
    hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr
    ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng
    nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk
    sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz
    ve vi vo wa wo xh yi yo za zh zu"""
_ISO_639_1 = frozenset(_ISO_639_1_CODES.split())

# Scripts written without spaces between words: their patterns match as substrings.
_NO_WORD_SPACES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})

_SLUG = re.compile(r"^[a-z][a-z0-9_]{1,63}$")

# Sentences are joined with NUL for matching: it is neither \w nor \s, so word
# boundaries hold at sentence edges and ``\s`` in a pattern cannot bridge two sentences.
_SEPARATOR = "\x00"

_CHAR_MAP = str.maketrans(
    {
        "ё": "е",
        "Ё": "Е",
        "«": '"',
        "»": '"',
        "“": '"',
        "”": '"',
        "„": '"',
        "‘": "'",
        "’": "'",
        "–": "-",
        "—": "-",
        "‐": "-",
        "‑": "-",
        "−": "-",
        _SEPARATOR: " ",
    }
)


# ---------------------------------------------------------------------------- records


# eq=False: patterns are dict keys on the hot path; identity hashing is enough and cheap.
@dataclass(frozen=True, eq=False)
class Pattern:
    """One compiled pattern of the registry, with the key path it was declared at.

    ``needles``: lower-case strings of which every match contains one (see
    :func:`pattern_needles`), or None when the pattern's syntax does not say. A text
    that contains none of them is not searched at all.
    """

    key: str
    lang: str
    weight: float
    source: str
    regex: re.Pattern[str]
    needles: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Examples:
    """Texts an entry must match (``match``) and must not match (``no_match``)."""

    match: tuple[str, ...]
    no_match: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """A topic or watch item: definition, patterns, exclusions, threshold, examples."""

    slug: str
    kind: Literal["topic", "watch"]
    description: str
    threshold: float
    label: str
    patterns: tuple[Pattern, ...]
    exclude: tuple[Pattern, ...]
    requires: tuple[Pattern, ...]
    implies: str | None
    examples: Mapping[str, Examples]

    def patterns_for(self, langs: Iterable[str]) -> tuple[Pattern, ...]:
        """The entry's patterns in any of ``langs``."""
        wanted = set(langs)
        return tuple(p for p in self.patterns if p.lang in wanted)


@dataclass(frozen=True)
class RelevanceGate:
    """Decides whether an article is about Russia–China relations at all."""

    threshold: float
    title_weight: float
    lead_sentences: int
    lead_weight: float
    russia: tuple[Pattern, ...]
    china: tuple[Pattern, ...]
    partnership: tuple[Pattern, ...]
    off_topic: tuple[Pattern, ...]
    off_topic_threshold: float
    off_topic_min_share: float
    examples: Mapping[str, Examples]


@dataclass(frozen=True)
class Scoring:
    """How pattern hits add up to an entry score, and how much evidence is kept."""

    title_boost: float
    actor_sentence_boost: float
    repeat_decay: float
    max_evidence: int
    evidence_chars: int


@dataclass(frozen=True)
class TopicRegistry:
    """The validated contents of ``config/topics.yaml``. Immutable; build it once."""

    source: str
    languages: tuple[str, ...]
    gate: RelevanceGate
    scoring: Scoring
    topics: tuple[Entry, ...]
    watch: tuple[Entry, ...]

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Topics first, then watch items, in declaration order."""
        return self.topics + self.watch

    def entry(self, slug: str) -> Entry:
        """The topic or watch item called ``slug`` (KeyError if there is none)."""
        for candidate in self.entries:
            if candidate.slug == slug:
                return candidate
        raise KeyError(slug)

    @cached_property
    def needle_search(self) -> NeedleSearch:
        """One search for the needles of all the registry's patterns (built once, used
        for every article's document)."""
        gate = self.gate
        patterns = [*gate.russia, *gate.china, *gate.partnership, *gate.off_topic]
        for entry in self.entries:
            patterns.extend((*entry.patterns, *entry.exclude, *entry.requires))
        return NeedleSearch(needle for pattern in patterns for needle in pattern.needles or ())

    def languages_for(self, lang: str | None) -> tuple[str, ...]:
        """Pattern languages to apply to an article detected as ``lang``.

        ``zh-Hans``/``zh_TW`` count as ``zh``; ``und``, ``None`` and languages the
        registry has no patterns for get every language's patterns.
        """
        base = _base_language(lang)
        if base in self.languages:
            return (base,)
        return self.languages

    def patterns_apply(self, lang: str | None) -> bool:
        """Whether the patterns can judge an article detected as ``lang``.

        True for the registry's languages and for ``und`` (text too short to tell, which
        every language's patterns read: a headline is judged by them like any article);
        false for a language the registry has no patterns for, where the encoder decides.
        """
        base = _base_language(lang)
        return base in self.languages or base == "und"


def _base_language(lang: str | None) -> str:
    return (lang or "und").strip().lower().replace("_", "-").split("-")[0] or "und"


# ---------------------------------------------------------------------------- loading


# Registries read, by file and its modification time and size: a command validates the
# file at start and its run loads it again (compiling the patterns takes about 0.1 s).
_LOADED: dict[tuple[str, int, int], TopicRegistry] = {}


def load_registry(path: Path) -> TopicRegistry:
    """Read, validate and compile the topic registry at ``path``.

    Raises :class:`~pipeline.errors.ConfigError` naming the offending key path and the
    allowed values: unknown keys, unknown language codes, topic slugs other than the
    fixed set, missing built-in watch items, bad weights or thresholds, and patterns
    that do not compile. A file read before and unchanged since (same modification time
    and size) gives the registry it gave then (registries are immutable).
    """
    try:
        status = os.stat(path)
    except OSError:
        key = None
    else:
        key = (str(Path(path).resolve()), status.st_mtime_ns, status.st_size)
        # One look-up, not a test and a read: the web app's threads may clear the cache
        # between the two.
        cached = _LOADED.get(key)
        if cached is not None:
            return cached
    registry = _read_registry(path)
    if key is not None:
        if len(_LOADED) >= 8:
            _LOADED.clear()
        _LOADED[key] = registry
    return registry


def _read_registry(path: Path) -> TopicRegistry:
    try:
        raw = yamlfile.read_file(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the topic registry ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return _RegistryParser(str(path)).parse(raw)
    except TypeError as exc:
        # A value of a shape no check expected (a list where a name goes): still a config
        # error, named as such, not a traceback.
        raise ConfigError(f"{path}: an entry has an unexpected shape ({exc})") from exc


class _RegistryParser:
    """Turns the YAML document into a :class:`TopicRegistry`, failing on the first error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.languages: tuple[str, ...] = ()

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    # -- generic shapes

    def mapping(
        self, value: Any, key: str, *, required: Sequence[str], optional: Sequence[str] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        allowed = [*required, *optional]
        for name in value:
            if name not in allowed:
                raise self.fail(f"{key}.{name}", f"unknown key (allowed: {', '.join(allowed)})")
        for name in required:
            if name not in value:
                raise self.fail(f"{key}.{name}", "missing")
        return value

    def number(self, value: Any, key: str, *, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number between {low:g} and {high:g}")
        if not low <= float(value) <= high or math.isnan(float(value)):
            raise self.fail(key, f"{value!r} is out of range ({low:g} to {high:g})")
        return float(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "expected a non-empty string")
        return value

    def texts(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list of strings")
        return tuple(self.text(item, f"{key}[{i}]") for i, item in enumerate(value))

    def language(self, value: Any, key: str) -> str:
        if value not in self.languages:
            raise self.fail(key, f"unknown language {value!r} (allowed: {', '.join(self.languages)})")
        return str(value)

    # -- patterns

    def compile(self, source: str, lang: str, key: str) -> re.Pattern[str]:
        body = _normalise(source)
        if lang not in _NO_WORD_SPACES:
            # Whole words only; \w is Unicode-aware for str patterns, so this holds for
            # Cyrillic too, and a combining mark (a Hindi vowel sign, which \w is not) is
            # part of its word as well. Stems carry their own endings (газопровод\w*).
            # (The marks apart from \w and case-sensitive: a class mixing \w with ranges,
            # or ranges under IGNORECASE, is tested range by range, 3x slower.)
            marks = rf"[{MARKS_BMP}]"
            body = rf"(?<!\w)(?-i:(?<!{marks}))(?:{body})(?!\w)(?-i:(?!{marks}))"
        try:
            return re.compile(body, re.IGNORECASE)
        except re.error as exc:
            raise self.fail(key, f"pattern {source!r} does not compile: {exc}") from exc

    def pattern_table(
        self, value: Any, key: str, *, weighted: bool, every_language: bool
    ) -> tuple[Pattern, ...]:
        """``{lang: [pattern | [weight, pattern], ...]}`` → compiled patterns."""
        if not isinstance(value, dict):
            raise self.fail(key, "expected a mapping of language code to pattern list")
        patterns: list[Pattern] = []
        for lang_key, items in value.items():
            lang = self.language(lang_key, f"{key}.{lang_key}")
            if not isinstance(items, list) or not items:
                raise self.fail(f"{key}.{lang}", "expected a non-empty list of patterns")
            for i, item in enumerate(items):
                item_key = f"{key}.{lang}[{i}]"
                weight = 1.0
                if isinstance(item, list):
                    if not weighted:
                        raise self.fail(item_key, "expected a pattern string (no weight here)")
                    if len(item) != 2:
                        raise self.fail(item_key, "expected [weight, pattern]")
                    weight = self.number(item[0], f"{item_key}[0]", low=0.1, high=10)
                    item = item[1]
                source = self.text(item, item_key)
                regex = self.compile(source, lang, item_key)
                needles = pattern_needles(_normalise(source))
                patterns.append(Pattern(item_key, lang, weight, source, regex, needles))
        if every_language:
            missing = [lang for lang in self.languages if lang not in value]
            if missing:
                raise self.fail(key, f"no patterns for {', '.join(missing)}")
        return tuple(patterns)

    def examples(self, value: Any, key: str, *, yes: str, no: str) -> Mapping[str, Examples]:
        if not isinstance(value, dict):
            raise self.fail(key, "expected a mapping of language code to examples")
        parsed: dict[str, Examples] = {}
        for lang_key, item in value.items():
            lang = self.language(lang_key, f"{key}.{lang_key}")
            body = self.mapping(item, f"{key}.{lang}", required=(yes, no))
            parsed[lang] = Examples(
                match=self.texts(body[yes], f"{key}.{lang}.{yes}"),
                no_match=self.texts(body[no], f"{key}.{lang}.{no}"),
            )
        missing = [lang for lang in self.languages if lang not in parsed]
        if missing:
            raise self.fail(key, f"no examples for {', '.join(missing)}")
        return MappingProxyType(parsed)

    # -- sections

    def parse(self, raw: Any) -> TopicRegistry:
        top = self.mapping(
            raw, "(top level)", required=("languages", "scoring", "relevance", "topics", "watch")
        )
        self.languages = self.parse_languages(top["languages"])
        scoring = self.parse_scoring(top["scoring"])
        gate = self.parse_gate(top["relevance"])
        topics = self.parse_entries(top["topics"], "topics", "topic")
        watch = self.parse_entries(top["watch"], "watch", "watch")
        topic_slugs = [e.slug for e in topics]
        if sorted(topic_slugs) != sorted(TOPIC_SLUGS):
            unknown = sorted(set(topic_slugs) - set(TOPIC_SLUGS))
            missing = sorted(set(TOPIC_SLUGS) - set(topic_slugs))
            detail = "; ".join(
                part
                for part in (
                    f"unknown {', '.join(unknown)}" if unknown else "",
                    f"missing {', '.join(missing)}" if missing else "",
                )
                if part
            )
            raise self.fail("topics", f"{detail} (the topic slugs are fixed: {', '.join(TOPIC_SLUGS)})")
        missing_watch = [slug for slug in WATCH_SLUGS if slug not in {e.slug for e in watch}]
        if missing_watch:
            raise self.fail(
                "watch",
                f"missing built-in watch items {', '.join(missing_watch)} "
                "(user-defined items are added next to them)",
            )
        clash = sorted(set(topic_slugs) & {e.slug for e in watch})
        if clash:
            raise self.fail("watch", f"{', '.join(clash)} is already a topic slug")
        for entry in watch:
            if entry.implies is not None and entry.implies not in TOPIC_SLUGS:
                raise self.fail(
                    f"watch.{entry.slug}.implies",
                    f"unknown topic {entry.implies!r} (allowed: {', '.join(TOPIC_SLUGS)})",
                )
        return TopicRegistry(self.source, self.languages, gate, scoring, topics, watch)

    def parse_languages(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("languages", "expected a list of ISO 639-1 codes")
        for i, code in enumerate(value):
            if not isinstance(code, str) or code not in _ISO_639_1:
                raise self.fail(f"languages[{i}]", f"{code!r} is not an ISO 639-1 code (e.g. en, ru, zh)")
        missing = [code for code in REQUIRED_LANGUAGES if code not in value]
        if missing:
            raise self.fail("languages", f"must include {', '.join(REQUIRED_LANGUAGES)}")
        if len(set(value)) != len(value):
            raise self.fail("languages", "duplicate language code")
        return tuple(value)

    def parse_scoring(self, value: Any) -> Scoring:
        body = self.mapping(
            value,
            "scoring",
            required=(
                "title_boost",
                "actor_sentence_boost",
                "repeat_decay",
                "max_evidence",
                "evidence_chars",
            ),
        )
        max_evidence = body["max_evidence"]
        if not isinstance(max_evidence, int) or isinstance(max_evidence, bool):
            raise self.fail("scoring.max_evidence", "expected an integer between 1 and 10")
        return Scoring(
            title_boost=self.number(body["title_boost"], "scoring.title_boost", low=1, high=10),
            actor_sentence_boost=self.number(
                body["actor_sentence_boost"], "scoring.actor_sentence_boost", low=1, high=10
            ),
            repeat_decay=self.number(body["repeat_decay"], "scoring.repeat_decay", low=0, high=1),
            max_evidence=int(self.number(max_evidence, "scoring.max_evidence", low=1, high=10)),
            evidence_chars=int(
                self.number(body["evidence_chars"], "scoring.evidence_chars", low=80, high=2000)
            ),
        )

    def parse_gate(self, value: Any) -> RelevanceGate:
        key = "relevance"
        body = self.mapping(
            value,
            key,
            required=(
                "threshold",
                "title_weight",
                "lead_sentences",
                "lead_weight",
                "russia",
                "china",
                "partnership",
                "off_topic",
                "examples",
            ),
            optional=("description",),
        )
        off = self.mapping(
            body["off_topic"], f"{key}.off_topic", required=("threshold", "min_share", "patterns")
        )
        lead = body["lead_sentences"]
        if not isinstance(lead, int) or isinstance(lead, bool) or not 0 <= lead <= 10:
            raise self.fail(f"{key}.lead_sentences", "expected an integer between 0 and 10")
        return RelevanceGate(
            threshold=self.number(body["threshold"], f"{key}.threshold", low=0.1, high=100),
            title_weight=self.number(body["title_weight"], f"{key}.title_weight", low=0, high=10),
            lead_sentences=lead,
            lead_weight=self.number(body["lead_weight"], f"{key}.lead_weight", low=0, high=10),
            russia=self.pattern_table(body["russia"], f"{key}.russia", weighted=True, every_language=True),
            china=self.pattern_table(body["china"], f"{key}.china", weighted=True, every_language=True),
            partnership=self.pattern_table(
                body["partnership"], f"{key}.partnership", weighted=True, every_language=True
            ),
            off_topic=self.pattern_table(
                off["patterns"], f"{key}.off_topic.patterns", weighted=True, every_language=True
            ),
            off_topic_threshold=self.number(
                off["threshold"], f"{key}.off_topic.threshold", low=0.1, high=100
            ),
            off_topic_min_share=self.number(off["min_share"], f"{key}.off_topic.min_share", low=0, high=10),
            examples=self.examples(body["examples"], f"{key}.examples", yes="relevant", no="irrelevant"),
        )

    def parse_entries(self, value: Any, section: str, kind: Literal["topic", "watch"]) -> tuple[Entry, ...]:
        if not isinstance(value, dict) or not value:
            raise self.fail(section, "expected a mapping of slug to definition")
        entries: list[Entry] = []
        for slug, definition in value.items():
            key = f"{section}.{slug}"
            if not isinstance(slug, str) or not _SLUG.match(slug):
                raise self.fail(key, "slugs are lower_snake_case ASCII, 2 to 64 characters")
            optional = ["label", "exclude", "requires"] + (["implies"] if kind == "watch" else [])
            body = self.mapping(
                definition,
                key,
                required=("description", "threshold", "patterns", "examples"),
                optional=optional,
            )
            implies = body.get("implies")
            if implies is not None and not isinstance(implies, str):
                raise self.fail(f"{key}.implies", "expected a topic slug")
            entries.append(
                Entry(
                    slug=slug,
                    kind=kind,
                    description=self.text(body["description"], f"{key}.description").strip(),
                    threshold=self.number(body["threshold"], f"{key}.threshold", low=0.1, high=100),
                    label=self.text(body["label"], f"{key}.label").strip()
                    if "label" in body
                    else slug.replace("_", " ").capitalize(),
                    patterns=self.pattern_table(
                        body["patterns"], f"{key}.patterns", weighted=True, every_language=True
                    ),
                    exclude=self.pattern_table(
                        body["exclude"], f"{key}.exclude", weighted=False, every_language=False
                    )
                    if "exclude" in body
                    else (),
                    requires=self.pattern_table(
                        body["requires"], f"{key}.requires", weighted=False, every_language=True
                    )
                    if "requires" in body
                    else (),
                    implies=implies,
                    examples=self.examples(body["examples"], f"{key}.examples", yes="match", no="no_match"),
                )
            )
        return tuple(entries)


# ---------------------------------------------------------------------------- documents


# ---------------------------------------------------------------------------- needles
#
# Most patterns match nothing in most articles, and a case-insensitive search of a long
# alternation tries every position of the text. A substring test on the lower-cased text
# is much cheaper, so each pattern carries the literal strings one of which any match must
# contain, read from its source: the literal start of each alternative. The test only
# skips searches that cannot succeed, so the hits are the same as without it.

# Characters with no meaning in a pattern outside a class (verbose mode is not used).
_PLAIN_RUN = re.compile(r"[^\\()\[\]{}|.^$?*+]*")
_QUANTIFIERS = frozenset("?*+{")
_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


def _structure(source: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, group depth before it) of the characters of ``source`` from
    ``start`` that are outside escapes and character classes, then ``(len, "", depth)``,
    with depth -1 if a class is left open."""
    depth, in_class, i = 0, False, start
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" first in a class ("[]a]", "[^]a]") is one of its characters.
            i += 2 if source.startswith("^", i + 1) else 1
            if source.startswith("]", i):
                i += 1
            continue
        else:
            yield i, char, depth
            depth += (char == "(") - (char == ")")
        i += 1
    yield len(source), "", -1 if in_class else depth


def _closing(source: str, start: int) -> int | None:
    """Index just past the group opened at ``source[start]``, or None if it is not closed."""
    for i, char, depth in _structure(source, start):
        if char == ")" and depth == 1:
            return i + 1
    return None


def _alternatives(source: str) -> list[str] | None:
    """The top-level ``|`` alternatives of ``source``, or None if its brackets do not balance."""
    parts: list[str] = []
    begin = 0
    for i, char, depth in _structure(source):
        if not char:
            if depth != 0:
                return None
        elif char == ")" and depth == 0:
            return None
        elif char == "|" and depth == 0:
            parts.append(source[begin:i])
            begin = i + 1
    parts.append(source[begin:])
    return parts


def _alternative_needles(alternative: str) -> set[str] | None:
    i = 0
    while alternative.startswith(_LOOKAROUNDS, i):  # zero-width: the match starts after it
        end = _closing(alternative, i)
        if end is None:
            return None
        i = end
    if alternative.startswith("(", i):
        end = _closing(alternative, i)
        if end is None or (end < len(alternative) and alternative[end] in _QUANTIFIERS):
            return None  # an optional or repeated group proves nothing
        inner = alternative[i + 1 : end - 1]
        if inner.startswith("?:"):
            inner = inner[2:]
        elif inner.startswith("?"):
            return None  # inline flags, named groups, conditionals: not read here
        return _needles(inner)
    run = _PLAIN_RUN.match(alternative, i)
    literal = run.group() if run else ""
    end = i + len(literal)
    if end < len(alternative) and alternative[end] in _QUANTIFIERS:
        literal = literal[:-1]  # "athletes?": the last character may be absent
    if not literal:
        return None
    return {literal}


def _needles(source: str) -> set[str] | None:
    alternatives = _alternatives(source)
    if alternatives is None:
        return None
    needles: set[str] = set()
    for alternative in alternatives:
        found = _alternative_needles(alternative)
        if not found:
            return None
        needles |= found
    return needles


def pattern_needles(source: str) -> tuple[str, ...] | None:
    """Lower-case strings of which every case-insensitive match of ``source`` contains one.

    None when the pattern does not say: an alternative that starts with a class, an
    escape, an optional group or anything else not read here, a comment group (whose
    text may hold any bracket), or a character whose case folding :func:`fold_lower`
    cannot follow.
    """
    if "(?#" in source:
        return None
    needles = _needles(source)
    if needles is None:
        return None
    lowered = {fold_lower(needle) for needle in needles}
    if None in lowered:
        return None
    return tuple(sorted(needle for needle in lowered if needle is not None))


@lru_cache(maxsize=4096)
def _folds_simply(char: str) -> bool:
    """True if ``char``'s case partners are exactly the characters with its lower case.

    ``re.IGNORECASE`` also pairs characters that share an upper case but not a lower
    case (``ſ`` and ``s``, ``ς`` and ``σ``, ``ı`` and ``i``); at least one of each such
    pair fails this test, as does any character whose case maps to several characters.
    """
    lower, upper = char.lower(), char.upper()
    return len(lower) == 1 and len(upper) == 1 and upper.lower() == lower


def fold_lower(text: str) -> str | None:
    """``text`` lower-cased character by character (no context rules, same length), or
    None if one of its characters does not fold simply (see :func:`_folds_simply`)."""
    if text.isascii():
        return text.lower()
    table: dict[int, str] = {}
    for char in set(text):
        if not _folds_simply(char):
            return None
        lower = char.lower()
        if lower != char:
            table[ord(char)] = lower
    return text.translate(table)


def _normalise(text: str) -> str:
    """NFKC, ё→е, straight quotes and hyphens, Traditional Chinese characters as Simplified
    ones (the patterns are written in Simplified): one spelling per character for matching."""
    return simplified_characters(unicodedata.normalize("NFKC", text).translate(_CHAR_MAP))


class NeedleSearch:
    """Where each of a fixed set of needles starts in a text, found in one pass over it.

    An Aho–Corasick automaton (``pyahocorasick``) over all the registry's needles, so that
    an article is read once for all of them instead of once per needle (which cost about
    1.5 ms an article on whole articles, against 0.2 ms). Built on first use in each
    process; it gives exactly the positions :func:`_needle_starts` finds, overlapping
    occurrences included (tested).
    """

    def __init__(self, needles: Iterable[str]) -> None:
        self.needles = frozenset(needles)
        self._automaton: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"needles": self.needles, "_automaton": None}  # (rebuilt where it is used)

    def positions(self, lowered: str) -> dict[str, list[int]]:
        """{needle: the positions where it starts in ``lowered``, in order} for the needles
        that occur at all."""
        found: dict[str, list[int]] = {}
        if not self.needles:
            return found
        automaton = self._automaton
        if automaton is None:
            import ahocorasick

            automaton = ahocorasick.Automaton()
            for needle in self.needles:
                automaton.add_word(needle, needle)
            automaton.make_automaton()
            self._automaton = automaton
        for end, needle in automaton.iter(lowered):
            found.setdefault(needle, []).append(end - len(needle) + 1)
        return found


@dataclass(frozen=True)
class _Document:
    """An article cut into sentences (title first), normalised and joined for matching."""

    sentences: tuple[str, ...]
    has_title: bool
    joined: str
    starts: tuple[int, ...]
    # ``joined`` lower-cased character by character, for the needle test; None when a
    # character of it folds in ways a plain lower-casing does not follow.
    lowered: str | None = None
    # What a NeedleSearch found in ``lowered`` (its needles, and where those that occur
    # start), or None without one.
    searched: frozenset[str] | None = field(default=None, compare=False)
    found: Mapping[str, list[int]] | None = field(default=None, compare=False)

    @classmethod
    def build(cls, title: str | None, text: str, search: NeedleSearch | None = None) -> _Document:
        sentences = split_sentences(text)
        heading = " ".join(strip_invisible(title).split()) if title else ""
        has_title = bool(heading)
        if has_title:
            sentences.insert(0, heading)
        normalised = [_normalise(s) for s in sentences]
        starts: list[int] = []
        offset = 0
        for sentence in normalised:
            starts.append(offset)
            offset += len(sentence) + 1
        joined = _SEPARATOR.join(normalised)
        lowered = fold_lower(joined)
        if search is None or lowered is None:
            return cls(tuple(sentences), has_title, joined, tuple(starts), lowered)
        found = search.positions(lowered)
        return cls(tuple(sentences), has_title, joined, tuple(starts), lowered, search.needles, found)

    def needle_starts(self, needles: Sequence[str]) -> list[int]:
        """:func:`_needle_starts` of :attr:`lowered` (which must exist), from the search
        made at build when it covered all of ``needles``."""
        lowered, searched, found = self.lowered, self.searched, self.found
        assert lowered is not None
        if searched is None or found is None or not searched.issuperset(needles):
            return _needle_starts(lowered, needles)
        lists = [found[needle] for needle in needles if needle in found]
        if len(lists) <= 1:
            return list(lists[0]) if lists else []
        return sorted({start for positions in lists for start in positions})

    def sentence_of(self, position: int) -> int:
        return bisect.bisect_right(self.starts, position) - 1

    def is_title(self, index: int) -> bool:
        return self.has_title and index == 0

    def hits(self, patterns: Iterable[Pattern]) -> dict[int, dict[Pattern, int]]:
        """{sentence index: {pattern: offset of its first match in that sentence}}."""
        found: dict[int, dict[Pattern, int]] = {}
        lowered = self.lowered
        for pattern in patterns:
            needles = pattern.needles
            matches: Iterable[re.Match[str]]
            if lowered is not None and needles is not None:
                starts = self.needle_starts(needles)
                if not starts:
                    continue  # no match can exist: most patterns, on most articles
                matches = _matches_from(pattern.regex, self.joined, starts)
            else:
                matches = pattern.regex.finditer(self.joined)
            for match in matches:
                index = self.sentence_of(match.start())
                found.setdefault(index, {}).setdefault(pattern, match.start() - self.starts[index])
        return found

    def sentences_matching(self, patterns: Iterable[Pattern]) -> set[int]:
        return set(self.hits(patterns))

    def evidence(self, index: int, offset: int, limit: int) -> str:
        """Sentence ``index`` trimmed to about ``limit`` characters around the match at
        ``offset``, an offset in its normalised form (:meth:`hits`)."""
        sentence = self.sentences[index]
        return _trim(sentence, _original_offset(sentence, offset), limit)


# ---------------------------------------------------------------------------- scoring


def _needle_starts(lowered: str, needles: Sequence[str]) -> list[int]:
    """Every position of ``lowered`` where one of ``needles`` starts, in order."""
    starts: set[int] = set()
    for needle in needles:
        at = lowered.find(needle)
        while at >= 0:
            starts.add(at)
            at = lowered.find(needle, at + 1)
    return sorted(starts)


def _matches_from(regex: re.Pattern[str], text: str, starts: Sequence[int]) -> Iterator[re.Match[str]]:
    """What ``regex.finditer(text)`` yields, when every match begins at one of ``starts``.

    A pattern's needles are the literal starts of its alternatives (after any lookaround),
    so its matches can only begin where a needle does: trying the pattern there alone,
    left to right and never inside the previous match, is the scan the regular expression
    engine would make, without its attempts at every other position of a long text. The
    lookbehind of a whole-word pattern still sees the character before a start.
    """
    resume = 0
    for start in starts:
        if start < resume:
            continue
        match = regex.match(text, start)
        if match is not None:
            yield match
            resume = max(match.end(), start + 1)


def _strongest(hits: Mapping[Pattern, int] | None) -> float:
    return max((p.weight for p in hits), default=0.0) if hits else 0.0


@dataclass(frozen=True)
class _Gate:
    score: float
    off_topic: float
    actor_sentences: frozenset[int]
    relevant: bool


def _apply_gate(gate: RelevanceGate, doc: _Document, langs: Sequence[str]) -> _Gate:
    russia = doc.hits(p for p in gate.russia if p.lang in langs)
    china = doc.hits(p for p in gate.china if p.lang in langs)
    partnership = doc.hits(p for p in gate.partnership if p.lang in langs)
    off_topic = doc.hits(p for p in gate.off_topic if p.lang in langs)

    score = 0.0
    body_index = 0
    for index in range(len(doc.sentences)):
        if doc.is_title(index):
            position = gate.title_weight
        else:
            position = gate.lead_weight if body_index < gate.lead_sentences else 1.0
            body_index += 1
        pair = min(_strongest(russia.get(index)), _strongest(china.get(index)))
        score += position * max(pair, _strongest(partnership.get(index)))

    off = 0.0
    for index, hits in off_topic.items():
        boost = gate.title_weight if doc.is_title(index) else 1.0
        off += boost * sum(p.weight for p in hits)

    actors = frozenset(russia) | frozenset(china) | frozenset(partnership)
    # Sport vetoes a story it dominates, not a long analysis with a line on sports exchanges.
    dominated = off >= gate.off_topic_threshold and off >= gate.off_topic_min_share * score
    relevant = score >= gate.threshold and not dominated
    return _Gate(score, off, actors, relevant)


@dataclass(frozen=True)
class _Scored:
    entry: Entry
    score: float
    evidence: list[str]
    sentences: frozenset[int] = frozenset()


def _score_entry(
    entry: Entry,
    doc: _Document,
    langs: Sequence[str],
    scoring: Scoring,
    actor_sentences: frozenset[int],
) -> _Scored:
    if entry.requires and not doc.sentences_matching(p for p in entry.requires if p.lang in langs):
        return _Scored(entry, 0.0, [])
    excluded = doc.sentences_matching(p for p in entry.exclude if p.lang in langs)
    hits = doc.hits(entry.patterns_for(langs))

    def position_weight(index: int) -> float:
        weight = scoring.title_boost if doc.is_title(index) else 1.0
        if index in actor_sentences:
            weight *= scoring.actor_sentence_boost
        return weight

    # Each pattern counts once per sentence; its later sentences decay geometrically,
    # best-placed first, so a repeated generic word cannot outweigh one specific phrase.
    occurrences: dict[Pattern, list[tuple[float, int]]] = {}
    for index, sentence_hits in hits.items():
        if index in excluded:
            continue
        for pattern in sentence_hits:
            occurrences.setdefault(pattern, []).append((position_weight(index), index))
    per_sentence: dict[int, float] = {}
    for pattern, places in occurrences.items():
        places.sort(key=lambda place: (-place[0], place[1]))
        for rank, (weight, index) in enumerate(places):
            gain = pattern.weight * weight * scoring.repeat_decay**rank
            per_sentence[index] = per_sentence.get(index, 0.0) + gain
    score = sum(per_sentence.values())
    if score < entry.threshold:
        return _Scored(entry, score, [], frozenset(per_sentence))

    ranked = sorted(per_sentence.items(), key=lambda item: (-item[1], item[0]))
    evidence = [
        doc.evidence(index, min(hits[index].values()), scoring.evidence_chars)
        for index, _ in ranked[: scoring.max_evidence]
    ]
    return _Scored(entry, score, evidence, frozenset(per_sentence))


def _original_offset(sentence: str, offset: int) -> int:
    """Where in ``sentence`` the character at ``offset`` of its normalised form comes from.

    Normalising changes lengths (decomposed accents and Hangul compose, "…" becomes three
    characters, ligatures split): the shortest prefix whose normalised form reaches past
    ``offset`` ends there. (Prefix lengths never shrink as the prefix grows.)
    """
    if len(_normalise(sentence)) == len(sentence):
        return offset
    low, high = 0, len(sentence)
    while low < high:
        middle = (low + high) // 2
        if len(_normalise(sentence[: middle + 1])) > offset:
            high = middle
        else:
            low = middle + 1
    return low


def _trim(sentence: str, offset: int, limit: int) -> str:
    """Cut ``sentence`` to about ``limit`` characters around the match at ``offset``,
    at spaces where there are some and never inside a character sequence (an accent, a
    flag, an emoji joined with its modifiers)."""
    if len(sentence) <= limit:
        return sentence
    start = max(0, min(offset - limit // 3, len(sentence) - limit))
    end = start + limit
    if start > 0:
        space = sentence.find(" ", start, start + 20)
        start = space + 1 if space != -1 else start
    if end < len(sentence):
        space = sentence.rfind(" ", end - 20, end)
        end = space if space != -1 else end
    while joins_previous(sentence, start):
        start += 1
    while end > start and joins_previous(sentence, end):
        end -= 1
    return ("…" if start > 0 else "") + sentence[start:end].strip() + ("…" if end < len(sentence) else "")


def trim_evidence(sentence: str, limit: int) -> str:
    """A sentence as evidence: cut to about ``limit`` characters from its start."""
    return _trim(sentence, 0, limit)


def _confidence(score: float, threshold: float) -> float:
    """Map a raw score onto (0, 1): 0.5 at the threshold, approaching 1 as it grows."""
    return round(score / (score + threshold), 3)


# ---------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class RuleScore:
    """What the rules found for one entry in one article (assigned or not)."""

    slug: str
    score: float
    threshold: float
    hit_sentences: frozenset[int]
    evidence: list[str]

    @property
    def assigned(self) -> bool:
        """The score reached the entry's threshold (before the relevance gate)."""
        return bool(self.evidence)


@dataclass(frozen=True)
class RuleView:
    """Everything the rules say about an article: the gate's verdict and every entry's score.

    ``sentences`` are the units the rules read (title first when there is one), the same
    cut as the encoder's (:func:`pipeline.sentences.split_sentences`).
    """

    relevant: bool
    gate_score: float
    off_topic: float
    sentences: tuple[str, ...]
    has_title: bool
    patterns_apply: bool
    entries: Mapping[str, RuleScore]


def rule_view(registry: TopicRegistry, *, title: str | None, text: str, lang: str) -> RuleView:
    """Run the rules on one article and keep every number, for explaining and for the hybrid.

    ``patterns_apply`` is false when ``lang`` is a language the registry has no patterns
    for (every language's patterns are tried, but they rarely match such a text); for
    ``und`` they apply: a text too short to tell its language is judged by every
    language's patterns, its relevance included.
    """
    langs = registry.languages_for(lang)
    doc = _Document.build(title, text, registry.needle_search)
    gate = _apply_gate(registry.gate, doc, langs)
    entries: dict[str, RuleScore] = {}
    for entry in registry.entries:
        scored = _score_entry(entry, doc, langs, registry.scoring, gate.actor_sentences)
        entries[entry.slug] = RuleScore(
            entry.slug, scored.score, entry.threshold, scored.sentences, scored.evidence
        )
    return RuleView(
        relevant=gate.relevant,
        gate_score=gate.score,
        off_topic=gate.off_topic,
        sentences=doc.sentences,
        has_title=doc.has_title,
        patterns_apply=registry.patterns_apply(lang),
        entries=MappingProxyType(entries),
    )


def classify(registry: TopicRegistry, *, title: str | None, text: str, lang: str) -> Classification:
    """Classify one article into topics and watch items, with evidence, by the rules alone.

    Pure and deterministic. ``lang`` is an ISO code; ``und`` or a language the registry
    has no patterns for applies every language's patterns. An article that does not pass
    the relevance gate comes back with ``relevant=False`` and no labels. Evidence is the
    deciding sentences (trimmed to ``scoring.evidence_chars``), most decisive first, at
    most ``scoring.max_evidence`` per label. Topics and watch items are ordered by score.
    The pipeline runs :func:`pipeline.topic_heads.classify_hybrid`, which starts from these.
    """
    view = rule_view(registry, title=title, text=text, lang=lang)
    if not view.relevant:
        return Classification(topics=[], watch=[], relevant=False)

    topics: dict[str, TopicHit] = {}
    for entry in registry.topics:
        scored = view.entries[entry.slug]
        if scored.assigned:
            topics[entry.slug] = TopicHit(
                entry.slug, _confidence(scored.score, entry.threshold), scored.evidence
            )

    watch: list[tuple[float, WatchHit]] = []
    for entry in registry.watch:
        scored = view.entries[entry.slug]
        if not scored.assigned:
            continue
        confidence = _confidence(scored.score, entry.threshold)
        watch.append((confidence, WatchHit(entry.slug, scored.evidence)))
        # A watch item is a narrower case of its topic: coverage of the topic includes it.
        if entry.implies and entry.implies not in topics:
            topics[entry.implies] = TopicHit(entry.implies, confidence, scored.evidence)

    order = {slug: i for i, slug in enumerate(TOPIC_SLUGS)}
    ranked_topics = sorted(topics.values(), key=lambda hit: (-hit.score, order[hit.topic]))
    ranked_watch = [hit for _, hit in sorted(watch, key=lambda item: -item[0])]
    return Classification(topics=ranked_topics, watch=ranked_watch, relevant=True)


def relevance_score(
    registry: TopicRegistry, *, title: str | None, text: str, lang: str
) -> tuple[float, float]:
    """The gate's two numbers for an article: (relevance score, off-topic score).

    For tuning and explaining decisions; :func:`classify` compares them with
    ``relevance.threshold`` and ``relevance.off_topic.threshold``.
    """
    gate = _apply_gate(
        registry.gate, _Document.build(title, text, registry.needle_search), registry.languages_for(lang)
    )
    return gate.score, gate.off_topic


def keyword_baseline(registry: TopicRegistry, *, title: str | None, text: str, lang: str) -> Classification:
    """The comparison baseline of the benchmark: any pattern hit assigns its entry.

    Same registry and languages as :func:`classify`, but no relevance gate, weights,
    exclusions, context requirements, implications or thresholds. Not meant for use in
    the pipeline.
    """
    langs = registry.languages_for(lang)
    doc = _Document.build(title, text, registry.needle_search)

    def first_hit(entry: Entry) -> list[str]:
        hits = doc.hits(entry.patterns_for(langs))
        if not hits:
            return []
        index = min(hits)
        return [doc.evidence(index, min(hits[index].values()), 300)]

    topics = [TopicHit(e.slug, 1.0, ev) for e in registry.topics if (ev := first_hit(e))]
    watch = [WatchHit(e.slug, ev) for e in registry.watch if (ev := first_hit(e))]
    return Classification(topics=topics, watch=watch, relevant=bool(topics or watch))
