"""Where an article's CPU goes: each stage of preparing one page, summitwatch against the
bare libraries, in one process.

The pages are the polling-speed benchmark's (``cycle_speed.py``): its whole articles
(``--texts full``) or excerpts, rendered in the same news-site template. Every stage runs
on every page, one page after another, in passes that alternate the two sides; the figure
is the best pass's milliseconds per article (this machine is shared). What a cycle adds on
top, storing and the database look-ups in feed order, is in ``cycle_speed.py``'s profile.

summitwatch's stages are what a prepare worker does for a page (``pipeline/prepare.py``):
the extraction cascade, language (a bounded sample, the page's and feed's languages as
priors), the encoder (title and up to ``encoder.max_sentences`` sentences), the
near-duplicate index, the translation check's evidence (numbers, names), the search
terms and the hybrid classifier. The bare side's are ``cycle_speed.bare_cycle``'s:
``trafilatura.extract``, ``langdetect.detect``, one encoder call on title + lead.

    python benchmarks/stage_split.py [--texts full|excerpts] [--passes 3]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import cycle_speed  # noqa: E402  (the benchmark's pages and texts)
import measure  # noqa: E402

RESULTS = HERE / "results" / "stage_split.json"
OUTLET = "wire"
PUBLISHED = "2026-05-16T08:00:00+00:00"


def pages(texts: str) -> list[tuple[dict[str, Any], bytes]]:
    """The benchmark's articles and their rendered pages."""
    chosen = cycle_speed.select_full_articles(150) if texts == "full" else cycle_speed.select_articles(150)
    return [(article, cycle_speed.article_page(article, OUTLET, PUBLISHED, [])) for article in chosen]


def summitwatch_pass(rendered: Sequence[tuple[dict[str, Any], bytes]], clock: Callable[..., Any]) -> int:
    """One pass of summitwatch's per-page stages; returns how many pages gave an article."""
    from pipeline import crosslingual, encoder, ingest, neardup, search
    from pipeline.classify import load_registry
    from pipeline.extract import extract_page
    from pipeline.language import detect_language
    from pipeline.settings import load_settings
    from pipeline.topic_heads import classify_hybrid, load_heads

    settings = load_settings()
    limits = settings.encoder
    model = encoder.load_configured(limits)
    registry = load_registry(settings.topics_file)
    heads = load_heads(registry, encoder=model, cache_dir=limits.cache_path)
    gazetteer = crosslingual.load_gazetteer(settings.gazetteer_file)
    neardup_params = settings.neardup_params()
    done = 0
    for article, page in rendered:
        # The extraction cascade and the language, as build_candidate runs them.
        extracted = clock(
            "extract", extract_page, page, content_type="text/html", max_bytes=settings.http.max_bytes
        )
        if extracted.error or not extracted.text:
            continue
        text = ingest._tidy_text(ingest.clean_string(extracted.text))
        title = extracted.title or article["title"]
        guess = clock(
            "language",
            detect_language,
            f"{title}\n{text}",
            priors=[extracted.lang_hint, article["lang"]],
            min_letters=settings.language.min_letters,
            min_confidence=settings.language.min_confidence,
            sample_chars=settings.language.sample_chars,
        )
        vectors = clock("encoder", encoder.embed_configured, model, title, text, limits)
        clock("near-duplicate index", neardup.index_of, text, guess.lang, neardup_params)
        forget_evidence(gazetteer)  # kept per text for the run's lookups: each pass reads afresh
        clock("translation evidence", crosslingual.text_evidence, text, guess.lang, gazetteer)
        clock("search terms", search.index_text, title, text)
        clock(
            "classifier",
            classify_hybrid,
            registry,
            heads,
            title=title,
            text=text,
            lang=guess.lang,
            vectors=vectors,
        )
        done += 1
    return done


def forget_evidence(gazetteer: Any) -> None:
    """Empty the caches that keep the translation evidence of recent texts."""
    from pipeline import crosslingual

    crosslingual._NUMBERS.clear()
    crosslingual._WEIGHTS.clear()
    gazetteer._recent.clear()


def bare_pass(rendered: Sequence[tuple[dict[str, Any], bytes]], clock: Callable[..., Any]) -> int:
    """One pass of the bare libraries' per-page work (``cycle_speed.bare_cycle``'s)."""
    import langdetect
    import trafilatura

    from pipeline.encoder import load_encoder

    model = load_encoder()
    done = 0
    for article, page in rendered:
        text = clock("extract", trafilatura.extract, page)
        if not text:
            continue
        with contextlib.suppress(langdetect.LangDetectException):
            clock("language", langdetect.detect, text)
        lead = text.split("\n", 1)[0]
        clock("encoder", model.encode, [article["title"], lead])
        done += 1
    return done


def timed_pass(run: Callable[..., int], rendered: Sequence[tuple[dict[str, Any], bytes]]) -> dict[str, Any]:
    """CPU seconds per stage of one pass (this process's CPU time: the machine is shared)."""
    stages: defaultdict[str, float] = defaultdict(float)

    def clock(stage: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            stages[stage] += time.process_time() - began

    articles = run(rendered, clock)
    return {"articles": articles, "stages": dict(stages), "total": sum(stages.values())}


def best(passes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pass with the least CPU in all, per article in milliseconds."""
    chosen = min(passes, key=lambda entry: entry["total"])
    count = max(chosen["articles"], 1)
    return {
        "articles": chosen["articles"],
        "ms_per_article": {
            stage: round(1000 * seconds / count, 2) for stage, seconds in chosen["stages"].items()
        },
        "total_ms_per_article": round(1000 * chosen["total"] / count, 2),
        "passes_total_seconds": [round(entry["total"], 3) for entry in passes],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", choices=("full", "excerpts"), default="full")
    parser.add_argument("--passes", type=int, default=3, help="passes per side, alternating (default 3)")
    parser.add_argument("--label", default="latest")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rendered = pages(args.texts)
    print(f"{len(rendered)} pages ({args.texts}); warming both sides up", file=sys.stderr)
    timed_pass(summitwatch_pass, rendered[:5])  # models, tables and caches loaded outside the figure
    timed_pass(bare_pass, rendered[:5])
    runs: dict[str, list[dict[str, Any]]] = {"summitwatch": [], "bare": []}
    for number in range(args.passes):
        order = ("summitwatch", "bare") if number % 2 == 0 else ("bare", "summitwatch")
        for side in order:
            runs[side].append(timed_pass(summitwatch_pass if side == "summitwatch" else bare_pass, rendered))
            print(f"pass {number + 1}/{args.passes} {side}: {runs[side][-1]['total']:.2f} s", file=sys.stderr)
    result = {
        "benchmark": "stage_split",
        "label": args.label,
        "texts": args.texts,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "note": "CPU milliseconds per article, best of the passes; one process, warm",
        "summitwatch": best(runs["summitwatch"]),
        "bare": best(runs["bare"]),
    }
    result["ratio"] = round(
        result["summitwatch"]["total_ms_per_article"] / result["bare"]["total_ms_per_article"], 2
    )
    print(f"\n| stage | summitwatch ms/article | bare ms/article |  ({args.texts})")
    print("|---|---:|---:|")
    stages = [*result["summitwatch"]["ms_per_article"]]
    for stage in stages:
        print(
            f"| {stage} | {result['summitwatch']['ms_per_article'][stage]} | "
            f"{result['bare']['ms_per_article'].get(stage, '–')} |"
        )
    ours, bare = result["summitwatch"]["total_ms_per_article"], result["bare"]["total_ms_per_article"]
    print(f"| all | {ours} | {bare} |  ratio {result['ratio']}×")
    measure.record_run(args.output, f"{args.texts} {args.label}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
