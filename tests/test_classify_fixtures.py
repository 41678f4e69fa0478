"""Validity of the real-article classifier sets (tests/fixtures/classify/real_*.jsonl).

These check the data, not the classifier: well-formed lines, known slugs, watch items
with their parent topics, the two labelling passes of the held-out set, languages that
match the text, and a clean separation between the training and held-out files (and
between the held-out file and the team-written sets and registry examples).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline.classify import TOPIC_SLUGS, load_registry
from pipeline.language import detect_language

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "classify"
REGISTRY = load_registry(ROOT / "config" / "topics.yaml")
PARENT = {entry.slug: entry.implies for entry in REGISTRY.watch}

LANGUAGES = {"en", "ru", "zh", "pt", "es", "fr", "de", "ar", "ja", "ko", "tr", "it", "pl", "nl", "th"}
KINDS = {"wire", "analysis", "readout", "oped", "interview", "feature", "passing", "paraphrase", "negative"}
BASE_KEYS = {"id", "lang", "url", "title", "text", "kind", "topics", "watch", "note"}
SPLITS = {"real_train.jsonl": "rt", "real_heldout.jsonl": "rh"}
# Two-label public suffixes: the outlet is the label in front of them ("aa.com.tr").
TWO_LEVEL_SUFFIXES = {
    "com.cn",
    "net.cn",
    "org.cn",
    "gov.cn",
    "edu.cn",
    "co.uk",
    "org.uk",
    "ac.uk",
    "com.br",
    "co.jp",
    "or.jp",
    "ne.jp",
    "co.kr",
    "or.kr",
    "com.tr",
    "com.au",
    "org.au",
    "com.hk",
    "co.th",
    "in.th",
    "go.th",
    "com.ar",
    "com.mx",
    "co.za",
    "com.tw",
    "com.sg",
    "co.in",
    "com.pl",
    "com.ua",
    "org.ru",
    "com.ru",
    "msk.ru",
    "spb.ru",
    "gov.ru",
    "com.my",
    "co.id",
    "com.vn",
    "com.pk",
    "com.eg",
    "com.sa",
    "com.lb",
}
# Scripts that must carry most letters of a text in these languages.
SCRIPT = {"ru": "CYRILLIC", "ar": "ARABIC", "th": "THAI", "ko": "HANGUL", "zh": "CJK"}


def read(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


TRAIN = read("real_train.jsonl")
HELDOUT = read("real_heldout.jsonl")


def all_items() -> Iterator[Any]:
    for name, items in (("real_train.jsonl", TRAIN), ("real_heldout.jsonl", HELDOUT)):
        for item in items:
            yield pytest.param(name, item, id=item["id"])


def outlet(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower().removeprefix("www.").rstrip(".")
    labels = host.split(".")
    if all(label.isdigit() for label in labels):  # a bare IP address: its /16 network
        return ".".join(labels[:2])
    keep = 3 if ".".join(labels[-2:]) in TWO_LEVEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def check_labels(topics: list[str], watch: list[str], where: str) -> None:
    assert set(topics) <= set(TOPIC_SLUGS), where
    assert set(watch) <= set(PARENT), where
    assert len(set(topics)) == len(topics) and len(set(watch)) == len(watch), where
    for item in watch:
        assert PARENT[item] in topics, f"{where}: {item} without {PARENT[item]}"


@pytest.mark.parametrize(("name", "item"), list(all_items()))
def test_items_are_well_formed(name: str, item: dict[str, Any]) -> None:
    keys = BASE_KEYS | ({"labels_b", "disputed"} if name == "real_heldout.jsonl" else set())
    assert set(item) == keys
    prefix, lang, number = item["id"].split("-")
    assert prefix == SPLITS[name] and lang == item["lang"] and number.isdigit()
    assert item["lang"] in LANGUAGES
    assert item["kind"] in KINDS
    assert urlsplit(item["url"]).scheme in {"http", "https"}
    assert 80 <= len(item["text"]) <= 1600
    assert item["note"]
    check_labels(item["topics"], item["watch"], item["id"])
    # Negatives carry no labels; every relevant article has at least one topic.
    assert (item["kind"] == "negative") == (not item["topics"])
    if item["kind"] == "negative":
        assert not item["watch"]


@pytest.mark.parametrize("item", HELDOUT, ids=lambda item: item["id"])
def test_second_pass_is_stored_with_its_disagreements(item: dict[str, Any]) -> None:
    second = item["labels_b"]
    assert set(second) == {"topics", "watch"}
    check_labels(second["topics"], second["watch"], f"{item['id']} labels_b")
    for field in ("topics", "watch"):
        assert set(item["disputed"][field]) == set(item[field]) ^ set(second[field]), item["id"]


@pytest.mark.parametrize(("name", "item"), list(all_items()))
def test_declared_language_matches_the_text(name: str, item: dict[str, Any]) -> None:
    text = f"{item['title']}\n{item['text']}"
    letters = [char for char in text if char.isalpha()]
    if item["lang"] in SCRIPT:
        script = SCRIPT[item["lang"]]
        share = sum(unicodedata.name(char, "").startswith(script) for char in letters) / len(letters)
        assert share > 0.5, f"{item['id']}: {share:.2f} of letters in {script}"
    elif item["lang"] == "ja":
        kana = sum(unicodedata.name(char, "").startswith(("HIRAGANA", "KATAKANA")) for char in letters)
        assert kana / len(letters) > 0.1
    else:
        # Latin-script languages: the product's detector must agree with the label.
        assert detect_language(text).lang == item["lang"], item["id"]


def test_sizes_and_shares() -> None:
    assert len(HELDOUT) >= 150 and len(TRAIN) >= 250
    for items in (HELDOUT, TRAIN):
        negatives = sum(item["kind"] == "negative" for item in items)
        assert 0.15 * len(items) <= negatives <= 0.3 * len(items)
        other = sum(item["lang"] not in {"en", "ru", "zh"} for item in items)
        assert other >= 0.1 * len(items)
        for lang in ("en", "ru", "zh"):
            assert sum(item["lang"] == lang for item in items) >= 0.2 * len(items), lang


def test_no_page_or_outlet_is_in_both_splits() -> None:
    for key in ("id", "url", "text"):
        assert not {item[key] for item in TRAIN} & {item[key] for item in HELDOUT}, key
    assert not {outlet(item["url"]) for item in TRAIN} & {outlet(item["url"]) for item in HELDOUT}
    for items in (TRAIN, HELDOUT):
        assert len({item["id"] for item in items}) == len(items)
        assert len({item["url"] for item in items}) == len(items)


def normalise(text: str) -> str:
    return " ".join(
        "".join(c if c.isalnum() else " " for c in unicodedata.normalize("NFKC", text).lower()).split()
    )


def test_held_out_headlines_are_not_in_the_older_sets_or_registry_examples() -> None:
    older = {normalise(a["title"]) for name in ("eval.jsonl", "dev.jsonl") for a in read(name)}
    examples = set()
    for source in (REGISTRY.gate, *REGISTRY.entries):
        for per_language in source.examples.values():
            examples |= {normalise(text) for text in (*per_language.match, *per_language.no_match)}
    for item in HELDOUT:
        for line in (item["title"], item["text"].splitlines()[0]):
            if line:
                assert normalise(line) not in older | examples, item["id"]


def trigrams(text: str) -> set[str]:
    squeezed = normalise(text).replace(" ", "")
    return {squeezed[i : i + 3] for i in range(max(1, len(squeezed) - 2))}


def test_registry_examples_are_not_rewordings_of_held_out_sentences() -> None:
    """Fuzzy as well as exact: an example sharing most of its character trigrams with a
    held-out headline or sentence, in much the same order, is a rewording of it."""
    from difflib import SequenceMatcher

    from pipeline.sentences import split_sentences

    held_out = [
        unit
        for name in ("real_heldout.jsonl", "eval.jsonl")
        for item in read(name)
        for unit in ([item["title"]] if item["title"] else []) + split_sentences(item["text"])
    ]
    indexed = [(unit, trigrams(unit)) for unit in held_out]
    close = []
    for source in (REGISTRY.gate, *REGISTRY.entries):
        for per_language in source.examples.values():
            for example in (*per_language.match, *per_language.no_match):
                for sentence in split_sentences(example):
                    grams = trigrams(sentence)
                    if len(grams) < 8:
                        continue
                    for unit, unit_grams in indexed:
                        if len(grams & unit_grams) >= 0.75 * len(grams):
                            ratio = SequenceMatcher(None, normalise(sentence), normalise(unit)).ratio()
                            if ratio >= 0.6:
                                close.append((sentence, round(ratio, 2)))
    assert not close, close
