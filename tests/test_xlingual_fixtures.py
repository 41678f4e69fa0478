"""The cross-language fixture set is well formed and its split is clean."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent / "fixtures" / "xlingual"
LANGS = {"en", "ru", "zh", "ja", "ar", "bg", "de", "es", "it", "pt", "ro", "tl"}
LABELS = {"translation", "same_event", "different"}
SPLITS = {"dev", "heldout"}
# Letters of the script each non-Latin language is written in.
SCRIPTS = {
    "zh": r"[\u4e00-\u9fff]",
    "ja": r"[\u3040-\u30ff\u4e00-\u9fff]",
    "ru": r"[\u0400-\u04ff]",
    "bg": r"[\u0400-\u04ff]",
    "ar": r"[\u0600-\u06ff]",
}
LATIN = r"[A-Za-z\u00c0-\u024f]"


def _load(name: str) -> list[dict[str, Any]]:
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


ARTICLES = _load("articles.jsonl")
PAIRS = _load("pairs.jsonl")
BY_ID = {article["id"]: article for article in ARTICLES}


def _script_share(text: str, pattern: str) -> float:
    letters = [char for char in text if char.isalpha()]
    return sum(1 for char in letters if re.match(pattern, char)) / max(1, len(letters))


def test_articles_have_the_documented_fields() -> None:
    keys = {"id", "lang", "url", "title", "text", "published", "event", "source", "split"}
    for article in ARTICLES:
        assert set(article) == keys, article["id"]
        assert re.fullmatch(r"xl-\d{4}", article["id"])
        assert article["lang"] in LANGS, article["id"]
        assert article["split"] in SPLITS, article["id"]
        assert article["url"].startswith(("http://", "https://")), article["id"]
        assert article["text"].strip() and len(article["text"]) <= 1600, article["id"]
        assert article["title"] is None or article["title"].strip(), article["id"]
        assert article["published"] is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", article["published"])
        assert re.match(r"\d{4}-\d{2}-\d{2} \S", article["event"]), article["id"]
        assert article["source"].strip(), article["id"]


def test_ids_and_urls_are_unique() -> None:
    assert len(BY_ID) == len(ARTICLES)
    urls = Counter(article["url"] for article in ARTICLES)
    assert [url for url, count in urls.items() if count > 1] == []


@pytest.mark.parametrize("article", ARTICLES, ids=lambda article: article["id"])
def test_text_is_written_in_the_declared_language(article: dict[str, Any]) -> None:
    text = f"{article['title'] or ''}\n{article['text']}"
    lang = article["lang"]
    if lang in SCRIPTS:
        assert _script_share(text, SCRIPTS[lang]) >= 0.6
    else:
        assert _script_share(text, LATIN) >= 0.9
    if lang == "ja":
        assert re.search(r"[\u3040-\u30ff]", text), "Japanese text without kana"


def test_pairs_are_well_formed() -> None:
    seen: set[frozenset[str]] = set()
    for pair in PAIRS:
        assert set(pair) == {"a", "b", "label", "partial", "note", "split"}
        assert pair["a"] in BY_ID and pair["b"] in BY_ID, pair
        assert pair["a"] != pair["b"]
        key = frozenset((pair["a"], pair["b"]))
        assert key not in seen, pair
        seen.add(key)
        assert pair["label"] in LABELS
        assert isinstance(pair["partial"], bool)
        assert not pair["partial"] or pair["label"] == "translation", "only translations can be partial"
        assert pair["note"].strip()


def test_labels_agree_with_events_and_languages() -> None:
    for pair in PAIRS:
        a, b = BY_ID[pair["a"]], BY_ID[pair["b"]]
        if pair["label"] == "different":
            assert a["event"] != b["event"], pair
        else:
            assert a["event"] == b["event"], pair
            assert a["lang"] != b["lang"], pair


def test_every_article_is_in_a_pair() -> None:
    used = {pair[side] for pair in PAIRS for side in ("a", "b")}
    assert set(BY_ID) - used == set()


def test_split_is_by_whole_event() -> None:
    splits_of_event: dict[str, set[str]] = defaultdict(set)
    for article in ARTICLES:
        splits_of_event[article["event"]].add(article["split"])
    assert {event: s for event, s in splits_of_event.items() if len(s) > 1} == {}
    for pair in PAIRS:
        assert BY_ID[pair["a"]]["split"] == BY_ID[pair["b"]]["split"] == pair["split"], pair


def test_both_halves_have_every_label_and_similar_translation_counts() -> None:
    counts = Counter((pair["split"], pair["label"]) for pair in PAIRS)
    for split in SPLITS:
        for label in LABELS:
            assert counts[(split, label)] > 0, (split, label)
    dev, heldout = counts[("dev", "translation")], counts[("heldout", "translation")]
    assert abs(dev - heldout) <= 0.1 * (dev + heldout)


def test_readme_counts_match_the_files() -> None:
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    assert f"| `articles.jsonl` | {len(ARTICLES)} excerpts" in readme
    labels = Counter(pair["label"] for pair in PAIRS)
    assert f"| `pairs.jsonl` | {len(PAIRS)} labelled pairs" in readme
    counts = Counter((pair["split"], pair["label"]) for pair in PAIRS)
    for label in ("translation", "same_event", "different"):
        row = f"| {label} | {counts[('dev', label)]} | {counts[('heldout', label)]} | {labels[label]} |"
        assert row in readme, row


FULL = Path(__file__).resolve().parent / "fixtures" / "xlingual_full"


def _load_full(name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in (FULL / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def test_the_whole_article_set_is_well_formed_and_split_by_event() -> None:
    articles = _load_full("articles.jsonl")
    pairs = _load_full("pairs.jsonl")
    by_id = {article["id"]: article for article in articles}
    assert len(by_id) == len(articles) == 60
    assert Counter(article["lang"] for article in articles) == {"en": 20, "ru": 20, "zh": 20}
    for article in articles:
        assert article["split"] in SPLITS and len(article["text"]) >= 500, article["id"]
        if article["lang"] != "en":
            assert _script_share(article["text"], SCRIPTS[article["lang"]]) > 0.5, article["id"]
    events: dict[str, set[str]] = defaultdict(set)
    for article in articles:
        events[article["event"]].add(article["split"])
    assert all(len(splits) == 1 for splits in events.values())  # no event straddles the halves
    for split in SPLITS:
        chosen = [pair for pair in pairs if pair["split"] == split]
        assert Counter(pair["label"] for pair in chosen) == {"translation": 30, "same_event": 30}
        assert sum(pair["partial"] for pair in chosen) == 10
    for pair in pairs:
        a, b = by_id[pair["a"]], by_id[pair["b"]]
        assert (
            a["lang"] != b["lang"] and a["event"] == b["event"] and a["split"] == b["split"] == pair["split"]
        )
        # A translation's two sides render one original: its number; a same-event pair, two.
        same_original = a["id"][:5] == b["id"][:5]
        assert same_original == (pair["label"] == "translation"), pair
        assert not pair["partial"] or "abridged" in by_id[pair["a" if a["lang"] == "ru" else "b"]]["source"]
