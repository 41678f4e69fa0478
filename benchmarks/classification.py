"""Classification quality and speed on the held-out evaluation set.

Scores ``pipeline.classify.classify`` and a keyword-only baseline (any pattern of the
same registry assigns its label: no relevance gate, weights, exclusions or thresholds)
on ``tests/fixtures/classify/eval.jsonl``, which nothing was tuned on. Prints a Markdown
report and writes ``benchmarks/results/classification.json``.

    .venv/bin/python benchmarks/classification.py [--fixtures FILE] [--seconds N]

Throughput is articles per second in this single process, pinned to one CPU where the
OS allows it, after a warm-up pass; the registry is loaded once, as in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.classify import (  # noqa: E402  (the path line above makes it importable)
    TOPIC_SLUGS,
    TopicRegistry,
    classify,
    keyword_baseline,
    load_registry,
)
from pipeline.records import Classification  # noqa: E402

Classifier = Callable[..., Classification]
Article = dict[str, Any]

DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "classify" / "eval.jsonl"
DEFAULT_REGISTRY = ROOT / "config" / "topics.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "classification.json"


def read_articles(path: Path) -> list[Article]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def predict(registry: TopicRegistry, classifier: Classifier, article: Article) -> set[str]:
    result = classifier(registry, title=article["title"], text=article["text"], lang=article["lang"])
    return {hit.topic for hit in result.topics} | {hit.item for hit in result.watch}


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
        "support": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def score(
    articles: Sequence[Article],
    predictions: Sequence[set[str]],
    topic_slugs: Sequence[str],
    watch_slugs: Sequence[str],
) -> dict[str, Any]:
    """Per-label precision/recall/F1, macro and micro F1, and the relevance decision."""

    def per_label(slugs: Sequence[str]) -> dict[str, dict[str, float | int]]:
        table = {}
        for slug in slugs:
            tp = fp = fn = 0
            for article, predicted in zip(articles, predictions, strict=True):
                gold = slug in article["topics"] or slug in article["watch"]
                tp += gold and slug in predicted
                fp += not gold and slug in predicted
                fn += gold and slug not in predicted
            table[slug] = prf(tp, fp, fn)
        return table

    topics, watch = per_label(topic_slugs), per_label(watch_slugs)

    def micro(table: dict[str, dict[str, float | int]]) -> float:
        tp = sum(int(row["tp"]) for row in table.values())
        fp = sum(int(row["fp"]) for row in table.values())
        fn = sum(int(row["fn"]) for row in table.values())
        return float(prf(tp, fp, fn)["f1"])

    relevant_tp = relevant_fp = relevant_fn = 0
    for article, predicted in zip(articles, predictions, strict=True):
        gold, said = bool(article["topics"]), bool(predicted & set(topic_slugs))
        relevant_tp += gold and said
        relevant_fp += not gold and said
        relevant_fn += gold and not said
    return {
        "macro_f1_topics": round(sum(float(r["f1"]) for r in topics.values()) / len(topics), 3),
        "macro_f1_watch": round(sum(float(r["f1"]) for r in watch.values()) / len(watch), 3),
        "micro_f1_topics": micro(topics),
        "micro_f1_watch": micro(watch),
        "relevance": prf(relevant_tp, relevant_fp, relevant_fn),
        "topics": topics,
        "watch": watch,
    }


def throughput(
    registry: TopicRegistry, classifier: Classifier, articles: Sequence[Article], seconds: float
) -> float:
    """Articles per second, whole passes over the set until ``seconds`` have elapsed."""
    for article in articles:  # warm-up: regex caches, allocator
        predict(registry, classifier, article)
    done = 0
    start = time.perf_counter()
    while True:
        for article in articles:
            classifier(registry, title=article["title"], text=article["text"], lang=article["lang"])
        done += len(articles)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def evaluate(
    registry: TopicRegistry, classifier: Classifier, articles: Sequence[Article], seconds: float
) -> tuple[dict[str, Any], list[set[str]]]:
    topic_slugs = list(TOPIC_SLUGS)
    watch_slugs = [entry.slug for entry in registry.watch]
    predictions = [predict(registry, classifier, article) for article in articles]
    report = score(articles, predictions, topic_slugs, watch_slugs)
    report["by_lang"] = {}
    for lang in sorted({a["lang"] for a in articles}):
        subset = [(a, p) for a, p in zip(articles, predictions, strict=True) if a["lang"] == lang]
        part = score([a for a, _ in subset], [p for _, p in subset], topic_slugs, watch_slugs)
        report["by_lang"][lang] = {
            "articles": len(subset),
            "micro_f1_topics": part["micro_f1_topics"],
            "micro_f1_watch": part["micro_f1_watch"],
        }
    report["articles_per_second"] = round(throughput(registry, classifier, articles, seconds), 1)
    return report, predictions


def mistakes(articles: Sequence[Article], predictions: Sequence[set[str]]) -> list[dict[str, Any]]:
    rows = []
    for article, predicted in zip(articles, predictions, strict=True):
        gold = set(article["topics"]) | set(article["watch"])
        if predicted != gold:
            rows.append(
                {
                    "id": article["id"],
                    "extra": sorted(predicted - gold),
                    "missing": sorted(gold - predicted),
                    "note": article["note"],
                }
            )
    return rows


def markdown(ours: dict[str, Any], base: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"## Classification on {meta['fixtures']} ({meta['articles']} articles: "
        + ", ".join(f"{n} {lang}" for lang, n in meta["by_lang"].items())
        + f"; {meta['negatives']} negatives)",
        "",
        "| label | support | ours P | ours R | ours F1 | keyword P | keyword R | keyword F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in ("topics", "watch"):
        for slug, row in ours[group].items():
            other = base[group][slug]
            prefix = "watch: " if group == "watch" else ""
            lines.append(
                f"| {prefix}{slug} | {row['support']} | {row['precision']:.2f} | "
                f"{row['recall']:.2f} | {row['f1']:.2f} | {other['precision']:.2f} | "
                f"{other['recall']:.2f} | {other['f1']:.2f} |"
            )
    lines += [
        "",
        "| figure | ours | keyword baseline |",
        "|---|---:|---:|",
        f"| topics macro-F1 | **{ours['macro_f1_topics']:.3f}** | {base['macro_f1_topics']:.3f} |",
        f"| watch items macro-F1 | **{ours['macro_f1_watch']:.3f}** | {base['macro_f1_watch']:.3f} |",
        f"| topics micro-F1 | {ours['micro_f1_topics']:.3f} | {base['micro_f1_topics']:.3f} |",
        f"| watch items micro-F1 | {ours['micro_f1_watch']:.3f} | {base['micro_f1_watch']:.3f} |",
        f"| relevance P / R | {ours['relevance']['precision']:.2f} / "
        f"{ours['relevance']['recall']:.2f} | {base['relevance']['precision']:.2f} / "
        f"{base['relevance']['recall']:.2f} |",
    ]
    for lang in ours["by_lang"]:
        lines.append(
            f"| topics micro-F1, {lang} | {ours['by_lang'][lang]['micro_f1_topics']:.3f} | "
            f"{base['by_lang'][lang]['micro_f1_topics']:.3f} |"
        )
    lines += [
        f"| articles/s (one process, one core) | {ours['articles_per_second']:,.0f} | "
        f"{base['articles_per_second']:,.0f} |",
        "",
        f"Registry load: {meta['registry_load_ms']:.0f} ms. {meta['machine']}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per classifier")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        # One core, as the figure claims; the first one this process may use.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    started = time.perf_counter()
    registry = load_registry(args.registry)
    load_ms = (time.perf_counter() - started) * 1000
    articles = read_articles(args.fixtures)

    ours, predictions = evaluate(registry, classify, articles, args.seconds)
    base, _ = evaluate(registry, keyword_baseline, articles, args.seconds)
    langs: dict[str, int] = {}
    for article in articles:
        langs[article["lang"]] = langs.get(article["lang"], 0) + 1
    meta = {
        "fixtures": args.fixtures.resolve().relative_to(ROOT).as_posix()
        if args.fixtures.resolve().is_relative_to(ROOT)
        else args.fixtures.name,
        "articles": len(articles),
        "by_lang": langs,
        "negatives": sum(not a["topics"] for a in articles),
        "registry_load_ms": round(load_ms, 1),
        "machine": f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}",
    }
    report = {
        "dataset": meta,
        "ours": ours,
        "keyword_baseline": base,
        "mistakes": mistakes(articles, predictions),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(ours, base, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
