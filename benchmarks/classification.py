"""Classification quality and speed on a held-out set.

Scores classifiers on a labelled fixture set and prints a Markdown report:

* ``rules`` — :func:`pipeline.classify.classify` (relevance gate, weighted patterns,
  exclusions, thresholds);
* ``keyword`` — any pattern of the same registry assigns its label (no gate, weights,
  exclusions or thresholds);
* ``encoder`` — the learned heads of :mod:`pipeline.topic_heads` alone, on the
  multilingual encoder's vectors (no patterns);
* ``hybrid`` — what the pipeline runs: the rules for evidence and control, the heads to
  veto passing mentions, recover paraphrased watch items and label languages without
  patterns.

Fixture sets (``--fixtures``):

* ``eval`` — ``tests/fixtures/classify/eval.jsonl``, the team-written held-out set;
* ``real_heldout`` — ``tests/fixtures/classify/real_heldout.jsonl``, real articles
  labelled twice. Only agreed (article, label) pairs count: a pair listed in the
  article's ``disputed`` is left out of true positives, false positives and false
  negatives alike;
* ``real_train`` — the real training set (figures on it are in-sample);
* or a path to any file of the same shape.

    .venv/bin/python benchmarks/classification.py [--fixtures eval|real_heldout|FILE]
        [--classifiers rules,keyword,encoder,hybrid] [--seconds N] [--output FILE]

Throughput is articles per second in this single process, pinned to one CPU where the
OS allows it, after a warm-up pass; the registry (and heads) are loaded once, as in the
pipeline. For ``encoder`` and ``hybrid`` it includes computing the article's vectors,
which ingest computes anyway for translation linking; ``classify with vectors`` gives
the cost of classification alone when the vectors are already there.
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

Article = dict[str, Any]
Predictor = Callable[[Article], Classification]

FIXTURE_DIR = ROOT / "tests" / "fixtures" / "classify"
NAMED_FIXTURES = {
    "eval": FIXTURE_DIR / "eval.jsonl",
    "real_heldout": FIXTURE_DIR / "real_heldout.jsonl",
    "real_train": FIXTURE_DIR / "real_train.jsonl",
}
DEFAULT_REGISTRY = ROOT / "config" / "topics.yaml"
RESULTS = ROOT / "benchmarks" / "results"
CORE_LANGUAGES = ("en", "ru", "zh")


def read_articles(path: Path) -> list[Article]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def labels_of(result: Classification) -> set[str]:
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


def gold_pairs(article: Article, slug: str) -> bool | None:
    """The agreed gold value of (article, slug), or None when the two passes disagree.

    Sets with a single labelling pass (no ``labels_b``) are scored on that pass.
    """
    first = slug in article["topics"] or slug in article["watch"]
    if "labels_b" not in article:
        return first
    disputed = set(article["disputed"]["topics"]) | set(article["disputed"]["watch"])
    if slug in disputed:
        return None
    second = slug in article["labels_b"]["topics"] or slug in article["labels_b"]["watch"]
    return first if first == second else None


def score(
    articles: Sequence[Article],
    predictions: Sequence[set[str]],
    topic_slugs: Sequence[str],
    watch_slugs: Sequence[str],
) -> dict[str, Any]:
    """Per-label P/R/F1 on agreed pairs, macro and micro F1, relevance, negatives given a topic."""

    def per_label(slugs: Sequence[str]) -> dict[str, dict[str, float | int]]:
        table = {}
        for slug in slugs:
            tp = fp = fn = 0
            for article, predicted in zip(articles, predictions, strict=True):
                gold = gold_pairs(article, slug)
                if gold is None:
                    continue
                tp += gold and slug in predicted
                fp += not gold and slug in predicted
                fn += gold and slug not in predicted
            table[slug] = prf(tp, fp, fn)
        return table

    topics, watch = per_label(topic_slugs), per_label(watch_slugs)

    def micro(*tables: dict[str, dict[str, float | int]]) -> float:
        rows = [row for table in tables for row in table.values()]
        tp = sum(int(row["tp"]) for row in rows)
        fp = sum(int(row["fp"]) for row in rows)
        fn = sum(int(row["fn"]) for row in rows)
        return float(prf(tp, fp, fn)["f1"])

    def macro(table: dict[str, dict[str, float | int]]) -> float | None:
        # A label with no gold positives and no predictions says nothing about this subset.
        rows = [row for row in table.values() if int(row["tp"]) + int(row["fp"]) + int(row["fn"])]
        return round(sum(float(r["f1"]) for r in rows) / len(rows), 3) if rows else None

    relevant_tp = relevant_fp = relevant_fn = 0
    negatives = negatives_labelled = 0
    for article, predicted in zip(articles, predictions, strict=True):
        gold, said = bool(article["topics"]), bool(predicted & set(topic_slugs))
        relevant_tp += gold and said
        relevant_fp += not gold and said
        relevant_fn += gold and not said
        if not gold:
            negatives += 1
            negatives_labelled += said
    return {
        "macro_f1_topics": macro(topics),
        "macro_f1_watch": macro(watch),
        "micro_f1_topics": micro(topics),
        "micro_f1_watch": micro(watch),
        "micro_f1_all": micro(topics, watch),
        "relevance": prf(relevant_tp, relevant_fp, relevant_fn),
        "negatives": negatives,
        "negatives_given_a_topic": negatives_labelled,
        "topics": topics,
        "watch": watch,
    }


def throughput(predictor: Predictor, articles: Sequence[Article], seconds: float) -> float:
    """Articles per second, whole passes over the set until ``seconds`` have elapsed."""
    done = 0
    start = time.perf_counter()
    while True:
        for article in articles:
            predictor(article)
        done += len(articles)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def language_group(lang: str) -> str:
    return lang if lang in CORE_LANGUAGES else "other"


def evaluate(
    predictor: Predictor,
    articles: Sequence[Article],
    watch_slugs: Sequence[str],
    seconds: float,
) -> tuple[dict[str, Any], list[set[str]]]:
    topic_slugs = list(TOPIC_SLUGS)
    predictions = [labels_of(predictor(article)) for article in articles]
    report = score(articles, predictions, topic_slugs, watch_slugs)
    report["by_lang"] = {}
    groups = sorted({a["lang"] for a in articles} | {language_group(a["lang"]) for a in articles})
    for group in groups:
        subset = [
            (a, p)
            for a, p in zip(articles, predictions, strict=True)
            if a["lang"] == group or (group == "other" and language_group(a["lang"]) == "other")
        ]
        part = score([a for a, _ in subset], [p for _, p in subset], topic_slugs, watch_slugs)
        report["by_lang"][group] = {
            "articles": len(subset),
            "macro_f1_topics": part["macro_f1_topics"],
            "macro_f1_watch": part["macro_f1_watch"],
            "micro_f1_topics": part["micro_f1_topics"],
            "micro_f1_watch": part["micro_f1_watch"],
            "micro_f1_all": part["micro_f1_all"],
            "negatives_given_a_topic": f"{part['negatives_given_a_topic']}/{part['negatives']}",
        }
    report["articles_per_second"] = round(throughput(predictor, articles, seconds), 1) if seconds else None
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


def build_predictors(
    names: Sequence[str], registry: TopicRegistry, registry_path: Path
) -> dict[str, tuple[Predictor, Predictor | None]]:
    """name → (predictor from text, predictor from precomputed vectors or None)."""
    built: dict[str, tuple[Predictor, Predictor | None]] = {}
    needs_heads = any(name in {"encoder", "hybrid"} for name in names)
    if needs_heads:
        from pipeline.encoder import embed_article, load_encoder
        from pipeline.topic_heads import classify_hybrid, classify_with_heads, load_heads

        encoder = load_encoder()
        heads = load_heads(registry, encoder=encoder)
        vector_cache: dict[str, Any] = {}

        def vectors(article: Article, *, cached: bool) -> Any:
            if cached and article["id"] in vector_cache:
                return vector_cache[article["id"]]
            computed = embed_article(encoder, article["title"] or None, article["text"])
            vector_cache[article["id"]] = computed
            return computed

        def with_and_without_stored_vectors(
            decide: Callable[[Article, Any], Classification],
        ) -> tuple[Predictor, Predictor]:
            """The classifier as ``summitwatch classify`` runs it (encoding), and as ingest does."""
            return (
                lambda a: decide(a, vectors(a, cached=False)),
                lambda a: decide(a, vectors(a, cached=True)),
            )

    for name in names:
        if name == "rules":
            built[name] = (
                lambda a: classify(registry, title=a["title"], text=a["text"], lang=a["lang"]),
                None,
            )
        elif name == "keyword":
            built[name] = (
                lambda a: keyword_baseline(registry, title=a["title"], text=a["text"], lang=a["lang"]),
                None,
            )
        elif name == "encoder":
            built[name] = with_and_without_stored_vectors(
                lambda a, found: classify_with_heads(heads, title=a["title"], text=a["text"], vectors=found)
            )
        elif name == "hybrid":
            built[name] = with_and_without_stored_vectors(
                lambda a, found: classify_hybrid(
                    registry, heads, title=a["title"], text=a["text"], lang=a["lang"], vectors=found
                )
            )
        else:
            raise SystemExit(f"unknown classifier {name!r} (rules, keyword, encoder, hybrid)")
    return built


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(reports: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    names = list(reports)
    lines = [
        f"## Classification on {meta['fixtures']} ({meta['articles']} articles: "
        + ", ".join(f"{n} {lang}" for lang, n in meta["by_lang"].items())
        + f"; {meta['negatives']} negatives)"
        + ("; agreed pairs only" if meta["agreed_pairs_only"] else ""),
        "",
        "| label | support | " + " | ".join(f"{n} P / R / F1" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    first = reports[names[0]]
    for group in ("topics", "watch"):
        for slug, row in first[group].items():
            prefix = "watch: " if group == "watch" else ""
            cells = [
                f"{r[group][slug]['precision']:.2f} / {r[group][slug]['recall']:.2f} / "
                f"{r[group][slug]['f1']:.2f}"
                for r in reports.values()
            ]
            lines.append(f"| {prefix}{slug} | {row['support']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| topics macro-F1 | " + " | ".join(fmt(r["macro_f1_topics"]) for r in reports.values()) + " |",
        "| watch items macro-F1 | " + " | ".join(fmt(r["macro_f1_watch"]) for r in reports.values()) + " |",
        "| topics micro-F1 | " + " | ".join(fmt(r["micro_f1_topics"]) for r in reports.values()) + " |",
        "| watch items micro-F1 | " + " | ".join(fmt(r["micro_f1_watch"]) for r in reports.values()) + " |",
        "| relevance P / R | "
        + " | ".join(
            f"{r['relevance']['precision']:.2f} / {r['relevance']['recall']:.2f}" for r in reports.values()
        )
        + " |",
        "| negatives given a topic | "
        + " | ".join(f"{r['negatives_given_a_topic']} of {r['negatives']}" for r in reports.values())
        + " |",
    ]
    for lang in first["by_lang"]:
        lines.append(
            f"| {lang} ({first['by_lang'][lang]['articles']}): topics macro / watch macro / all micro | "
            + " | ".join(
                f"{fmt(r['by_lang'][lang]['macro_f1_topics'])} / {fmt(r['by_lang'][lang]['macro_f1_watch'])}"
                f" / {fmt(r['by_lang'][lang]['micro_f1_all'])}"
                for r in reports.values()
            )
            + " |"
        )
    lines.append(
        "| articles/s (one process, one core) | "
        + " | ".join(
            "–" if r["articles_per_second"] is None else f"{r['articles_per_second']:,.1f}"
            for r in reports.values()
        )
        + " |"
    )
    with_vectors = {
        n: r["articles_per_second_with_vectors"]
        for n, r in reports.items()
        if r.get("articles_per_second_with_vectors")
    }
    if with_vectors:
        lines.append(
            "| articles/s, vectors already computed (as in ingest) | "
            + " | ".join(f"{with_vectors[n]:,.1f}" if n in with_vectors else "–" for n in names)
            + " |"
        )
    lines += ["", f"Registry load: {meta['registry_load_ms']:.0f} ms. {meta['machine']}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", default="eval", help="eval, real_heldout, real_train or a path")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--classifiers", default="rules,keyword", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per classifier (0: skip)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--run", default=None, help="a name for this run, stored in the results")
    args = parser.parse_args(argv)

    fixtures = NAMED_FIXTURES.get(args.fixtures, Path(args.fixtures))
    output = args.output or RESULTS / (
        "classification.json" if args.fixtures == "eval" else f"classification_{fixtures.stem}.json"
    )
    names = [name.strip() for name in args.classifiers.split(",") if name.strip()]

    if hasattr(os, "sched_setaffinity"):
        # One core, as the figure claims; the first one this process may use.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    started = time.perf_counter()
    registry = load_registry(args.registry)
    load_ms = (time.perf_counter() - started) * 1000
    articles = read_articles(fixtures)
    watch_slugs = [entry.slug for entry in registry.watch]

    predictors = build_predictors(names, registry, args.registry)
    reports: dict[str, dict[str, Any]] = {}
    all_mistakes: dict[str, list[dict[str, Any]]] = {}
    for name, (predictor, with_vectors) in predictors.items():
        report, predictions = evaluate(predictor, articles, watch_slugs, args.seconds)
        if with_vectors is not None and args.seconds:
            report["articles_per_second_with_vectors"] = round(
                throughput(with_vectors, articles, args.seconds), 1
            )
        reports[name] = report
        all_mistakes[name] = mistakes(articles, predictions)

    langs: dict[str, int] = {}
    for article in articles:
        langs[article["lang"]] = langs.get(article["lang"], 0) + 1
    meta = {
        "fixtures": fixtures.resolve().relative_to(ROOT).as_posix()
        if fixtures.resolve().is_relative_to(ROOT)
        else fixtures.name,
        "run": args.run,
        "command": "python benchmarks/classification.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "articles": len(articles),
        "by_lang": langs,
        "negatives": sum(not a["topics"] for a in articles),
        "agreed_pairs_only": any("labels_b" in a for a in articles),
        "disputed_pairs": sum(
            len(a["disputed"]["topics"]) + len(a["disputed"]["watch"]) for a in articles if "disputed" in a
        ),
        "registry_load_ms": round(load_ms, 1),
        "machine": f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}, "
        f"{os.cpu_count()} CPUs shared with other work",
    }
    result: dict[str, Any] = {"dataset": meta, **reports}
    # Mistakes are listed for the team-written set only: the real held-out set's errors
    # must not be read while tuning, so they are not written where anyone would read them.
    if not meta["agreed_pairs_only"]:
        result["mistakes"] = all_mistakes
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(reports, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
