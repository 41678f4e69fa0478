#!/usr/bin/env python3
"""Digest stories across languages: are one event's reports grouped, and two events kept apart?

Data: ``tests/fixtures/xlingual`` (real news excerpts, each labelled with its event, split
by event into ``dev``, what the thresholds may be chosen on, and ``heldout``). Translations
are left out: the pipeline folds them into their originals, so a digest never lists both.
Each article's document vector comes from the packaged encoder, as ingest computes it.

Two measurements per split, for the rule in ``config/semantic.yaml`` (``stories``) and for
the same rule with one threshold for every pair (``cross_language_similarity`` equal to
``similarity``, as before it existed):

* **pairs**: every two articles, by whether they share a language and an event: the share
  of same-event pairs at or above their threshold (grouped, as far as a pair decides it)
  and of other-event pairs at or above it (merged wrongly). Time is not used: the set has
  almost no two events within a digest's window, so every pair is treated as concurrent,
  which is harder than a digest is.
* **two events in one digest**: for every two events of the split, their articles grouped
  by :func:`pipeline.stories.group_stories` as if published at one moment (average linkage,
  so a group is judged on all its pairs): the share of same-event pairs left in different
  stories (split) and of the two events' pairs put in one story (merged), over all pairs
  of all such digests, within a language and across languages.

On ``dev`` it also prints the cross-language threshold sweep from which the configured
value was chosen: the threshold at which same-event pairs in two languages are grouped as
often as same-event pairs in one language are at ``similarity``, over pairs of every
article of the half (translated ones too, translation pairs left out: what the value was
chosen on) and with the translated articles left out as above.

Writes ``benchmarks/results/story_grouping.json`` and prints Markdown tables.

Usage::

    python benchmarks/story_grouping.py                 # both splits
    python benchmarks/story_grouping.py --split dev     # the tuning half only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import numpy as np  # noqa: E402

from pipeline import encoder  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.stories import StoryItem, group_stories  # noqa: E402

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "xlingual"
RESULT = REPO_ROOT / "benchmarks" / "results" / "story_grouping.json"
MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


def translation_pairs() -> list[tuple[str, str]]:
    lines = (FIXTURES / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return [(row["a"], row["b"]) for row in rows if row["label"] == "translation"]


def load(split: str, *, keep_translated: bool = False) -> list[dict[str, Any]]:
    """The split's articles, without the later side of each labelled translation pair
    (with ``keep_translated``, all of them)."""
    lines = (FIXTURES / "articles.jsonl").read_text(encoding="utf-8").splitlines()
    articles = [article for article in map(json.loads, lines) if article["split"] == split]
    dropped: set[str] = set()
    for first, second in translation_pairs():
        if first not in dropped and not keep_translated:
            dropped.add(second)  # folded into its original in the pipeline
    return [article for article in articles if article["id"] not in dropped]


def rate(values: Sequence[bool]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def pair_rates(
    articles: list[dict[str, Any]], similarity: np.ndarray, same: float, cross: float
) -> dict[str, dict[str, Any]]:
    """Grouped and merged shares of every pair, within a language and across languages
    (labelled translation pairs left out)."""
    found: dict[tuple[bool, bool], list[bool]] = {}
    cosines: dict[tuple[bool, bool], list[float]] = {}
    translations = {frozenset(pair) for pair in translation_pairs()}
    for i, j in itertools.combinations(range(len(articles)), 2):
        if frozenset((articles[i]["id"], articles[j]["id"])) in translations:
            continue
        one_language = articles[i]["lang"] == articles[j]["lang"]
        threshold = same if one_language else cross
        key = (one_language, articles[i]["event"] == articles[j]["event"])
        found.setdefault(key, []).append(bool(similarity[i, j] >= threshold))
        cosines.setdefault(key, []).append(float(similarity[i, j]))

    def median(key: tuple[bool, bool]) -> float | None:
        return round(float(np.median(cosines[key])), 3) if cosines.get(key) else None

    return {
        name: {
            "same_event_grouped": rate(found.get((one_language, True), [])),
            "same_event_pairs": len(found.get((one_language, True), [])),
            "same_event_median_cosine": median((one_language, True)),
            "other_event_merged": rate(found.get((one_language, False), [])),
            "other_event_pairs": len(found.get((one_language, False), [])),
            "other_event_median_cosine": median((one_language, False)),
        }
        for name, one_language in (("one_language", True), ("two_languages", False))
    }


def two_event_digests(
    articles: list[dict[str, Any]], vectors: np.ndarray, same: float, cross: float
) -> dict[str, dict[str, Any]]:
    """Every two events grouped together as one digest's articles; split and merged shares."""
    by_event: dict[str, list[int]] = {}
    for index, article in enumerate(articles):
        by_event.setdefault(article["event"], []).append(index)
    split: dict[bool, list[bool]] = {True: [], False: []}
    merged: dict[bool, list[bool]] = {True: [], False: []}
    for first, second in itertools.combinations(sorted(by_event), 2):
        indices = by_event[first] + by_event[second]
        items = [StoryItem(index, vectors[index], MOMENT, articles[index]["lang"]) for index in indices]
        stories = group_stories(items, similarity=same, window_hours=72, cross_language_similarity=cross)
        story_of = {index: number for number, story in enumerate(stories) for index in story}
        for i, j in itertools.combinations(indices, 2):
            one_language = articles[i]["lang"] == articles[j]["lang"]
            together = story_of[i] == story_of[j]
            if articles[i]["event"] == articles[j]["event"]:
                split[one_language].append(not together)
            else:
                merged[one_language].append(together)
    return {
        name: {
            "same_event_split": rate(split[one_language]),
            "same_event_pairs": len(split[one_language]),
            "other_event_merged": rate(merged[one_language]),
            "other_event_pairs": len(merged[one_language]),
        }
        for name, one_language in (("one_language", True), ("two_languages", False))
    }


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    # SUMMITWATCH_* variables of the environment apply, to try other thresholds.
    settings = load_settings({**os.environ, "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")})
    same, cross = settings.stories.similarity, settings.stories.cross_language_similarity
    rules = {"summitwatch": (same, cross), "one_threshold": (same, same)}
    model = encoder.load_encoder(settings.encoder.model, threads=settings.encoder.threads)
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/story_grouping.py", *(argv or sys.argv[1:])]),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "settings": settings.stories.model_dump(),
        "splits": {},
    }
    for split in ["dev", "heldout"] if args.split == "both" else [args.split]:
        articles = load(split)
        print(f"{split}: encoding {len(articles)} articles", file=sys.stderr)
        vectors = np.stack(
            [
                encoder.embed_configured(
                    model, article.get("title"), article["text"], settings.encoder
                ).document
                for article in articles
            ]
        )
        similarity = vectors @ vectors.T
        entry: dict[str, Any] = {
            "articles": len(articles),
            "events": len({article["event"] for article in articles}),
            "pairs": {name: pair_rates(articles, similarity, *rule) for name, rule in rules.items()},
            "two_event_digests": {
                name: two_event_digests(articles, vectors, *rule) for name, rule in rules.items()
            },
        }
        if split == "dev":
            # The sweep the threshold was chosen from: pairs of every article of the half,
            # translated ones too, with the translation pairs left out.
            everything = load(split, keep_translated=True)
            kept = {article["id"]: index for index, article in enumerate(articles)}
            all_vectors = np.stack(
                [
                    vectors[kept[article["id"]]]
                    if article["id"] in kept
                    else encoder.embed_configured(
                        model, article.get("title"), article["text"], settings.encoder
                    ).document
                    for article in everything
                ]
            )
            all_similarity = all_vectors @ all_vectors.T
            entry["one_language_all_articles"] = pair_rates(everything, all_similarity, same, same)[
                "one_language"
            ]
            entry["cross_language_sweep"] = {
                f"{threshold:.2f}": {
                    "all_articles": pair_rates(everything, all_similarity, same, float(threshold))[
                        "two_languages"
                    ],
                    "translated_left_out": pair_rates(articles, similarity, same, float(threshold))[
                        "two_languages"
                    ],
                }
                for threshold in np.round(np.arange(0.45, 0.605, 0.01), 2)
            }
        result["splits"][split] = entry
        print(
            f"\n## {split}: {entry['articles']} articles, {entry['events']} events (translations left out)\n"
        )
        print(
            "| rule | pairs | same event: grouped | other event: merged | median cosine: same / other event |"
        )
        print("|---|---|---:|---:|---:|")
        for name, groups in entry["pairs"].items():
            for group, scores in groups.items():
                grouped = f"{fmt(scores['same_event_grouped'])} of {scores['same_event_pairs']}"
                merged = f"{fmt(scores['other_event_merged'])} of {scores['other_event_pairs']}"
                medians = (
                    f"{fmt(scores['same_event_median_cosine'])} / {fmt(scores['other_event_median_cosine'])}"
                )
                print(f"| {name} | {group} | {grouped} | {merged} | {medians} |")
        print("\n| rule (two events in one digest) | pairs | same event: split | other event: merged |")
        print("|---|---|---:|---:|")
        for name, groups in entry["two_event_digests"].items():
            for group, scores in groups.items():
                print(
                    f"| {name} | {group} | {fmt(scores['same_event_split'])} of {scores['same_event_pairs']} "
                    f"| {fmt(scores['other_event_merged'])} of {scores['other_event_pairs']} |"
                )
        if "cross_language_sweep" in entry:
            within = entry["one_language_all_articles"]
            grouped, merged = fmt(within["same_event_grouped"]), fmt(within["other_event_merged"])
            print(
                f"\nOne language at {same}, every article: "
                f"same event grouped {grouped}, other event merged {merged}\n"
            )
            print(
                "| cross-language threshold (dev) | every article: same event grouped / other event merged "
                "| translated left out: grouped / merged |"
            )
            print("|---:|---:|---:|")
            for threshold, both in entry["cross_language_sweep"].items():
                every, left = both["all_articles"], both["translated_left_out"]
                first = f"{fmt(every['same_event_grouped'])} / {fmt(every['other_event_merged'])}"
                second = f"{fmt(left['same_event_grouped'])} / {fmt(left['other_event_merged'])}"
                print(f"| {threshold} | {first} | {second} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shown = args.output.relative_to(REPO_ROOT) if args.output.is_relative_to(REPO_ROOT) else args.output
    print(f"\nwritten to {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
