"""The encoder with and without kept per-piece rows (``encoder.piece_cache``), in one process.

Encodes the polling-speed benchmark's articles (``cycle_speed.py``: whole articles with
``--texts full``, else excerpts) one article after another, as a prepare worker does
(title and up to ``encoder.max_sentences`` sentences), with a fresh encoder pass per
configuration and repetition, so every repetition starts with nothing kept, as a new
process does. Configurations run in alternating order (this machine is shared and moves
by ±20% from one run to the next); the figures are CPU milliseconds per article, best and
median of the repetitions, the share of an article's distinct pieces whose rows were
kept, and the store's size at the end. ``--every N`` encodes every Nth article only, as one
of N processes sharing a cycle would. ``--baseline-src`` adds the forward pass of another
checkout (its ``pipeline/usem3_forward.py``) on the same weights.

``--warm`` measures a long-running process instead: one pass per configuration, each
first run over every article (so its store is as full as it gets), then ``--repeat``
rounds of 10 articles each, the configurations alternating within a round; the figure is
the median of each round's difference to the first configuration (paired, which cancels
the machine's slower and faster minutes).

    python benchmarks/piece_rows.py [--texts full|excerpts] [--caches 0,4096,8192]
        [--repeat 6] [--every 1] [--warm] [--baseline-src DIR --baseline-label NAME]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import measure  # noqa: E402
import stage_split  # noqa: E402  (the benchmark's articles, rendered as pages)

RESULTS = HERE / "results" / "piece_rows.json"


def article_texts(texts: str, every: int) -> list[list[str]]:
    """Each article's encoder input (title, then its sentences), as ingest cuts it."""
    from pipeline import encoder, ingest
    from pipeline.extract import extract_page
    from pipeline.settings import load_settings

    settings = load_settings()
    limits = settings.encoder
    articles: list[list[str]] = []
    for article, page in stage_split.pages(texts)[::every]:
        extracted = extract_page(page, content_type="text/html", max_bytes=settings.http.max_bytes)
        if extracted.error or not extracted.text:
            continue
        text = ingest._tidy_text(ingest.clean_string(extracted.text))
        units, _ = encoder.article_units(
            extracted.title or article["title"],
            text,
            max_sentences=limits.max_sentences,
            max_chars=limits.max_sentence_chars,
        )
        articles.append([encoder.encoder_text(unit) for unit in units])
    return articles


def baseline_pass(source: Path) -> Any:
    """Another checkout's ``PieceForward`` class (its module loaded under its own name)."""
    spec = importlib.util.spec_from_file_location(
        "baseline_usem3_forward", source / "pipeline" / "usem3_forward.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no pipeline/usem3_forward.py in {source}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PieceForward


def timed(make: Callable[[], Any], articles: Sequence[list[str]]) -> tuple[float, Any]:
    forward = make()
    began = time.process_time()
    for units in articles:
        forward.encode(units)
    return 1000 * (time.process_time() - began) / len(articles), forward


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", choices=("full", "excerpts"), default="full")
    parser.add_argument("--caches", default="0,4096,8192", help="piece_cache values to compare")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--every", type=int, default=1, help="encode every Nth article only")
    parser.add_argument("--warm", action="store_true", help="a long-running process: paired rounds")
    parser.add_argument("--baseline-src", type=Path, help="a checkout of other code to compare")
    parser.add_argument("--baseline-label", default="baseline")
    parser.add_argument("--label", default="latest")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from pipeline.encoder import load_encoder
    from pipeline.usem3_forward import ROW_WIDTH, PieceForward

    backend = load_encoder(piece_cache=0)._model  # type: ignore[attr-defined]
    articles = article_texts(args.texts, max(1, args.every))
    print(f"{len(articles)} articles ({args.texts}, every {args.every})", file=sys.stderr)
    configs: dict[str, Callable[[], Any]] = {}
    if args.baseline_src:
        baseline = baseline_pass(args.baseline_src)
        configs[args.baseline_label] = lambda: baseline(backend, int8=True)
    for cache in (int(value) for value in args.caches.split(",")):
        configs[f"piece_cache {cache}"] = lambda cache=cache: PieceForward(
            backend, int8=True, piece_cache=cache
        )
    if args.warm:
        return warm_rounds(args, configs, articles)
    timed(next(iter(configs.values())), articles[:5])  # the table's pages and the sessions warm
    runs: dict[str, list[float]] = {name: [] for name in configs}
    kept: dict[str, dict[str, Any]] = {}
    for number in range(args.repeat):
        order = list(configs) if number % 2 == 0 else list(configs)[::-1]
        for name in order:
            ms, forward = timed(configs[name], articles)
            runs[name].append(round(ms, 2))
            rows = getattr(forward, "piece_rows", None)
            if rows is not None:
                looked_up = rows.hits + rows.misses
                kept[name] = {
                    "kept_share": round(rows.hits / looked_up, 3) if looked_up else 0.0,
                    "rows_at_end": len(rows),
                    "store_mb_at_end": round(len(rows) * ROW_WIDTH * 4 / 1e6, 1),
                }
        print(
            f"repetition {number + 1}/{args.repeat}: " + ", ".join(f"{n} {runs[n][-1]:.2f}" for n in order),
            file=sys.stderr,
        )
    result: dict[str, Any] = {
        "benchmark": "piece_rows",
        "label": args.label,
        "texts": args.texts,
        "every": args.every,
        "articles": len(articles),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "note": "CPU milliseconds per article of the encoder's pass, each repetition from nothing kept",
        "configs": {
            name: {
                "best_ms": min(values),
                "median_ms": round(statistics.median(values), 2),
                "runs_ms": values,
            }
            | kept.get(name, {})
            for name, values in runs.items()
        },
    }
    heading = f"encoder pass ({args.texts}, {len(articles)} articles)"
    print(f"\n| {heading} | best ms | median ms | rows kept: share of lookups | store at end |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in result["configs"].items():
        share = figures.get("kept_share")
        store = (
            f"{figures['rows_at_end']} rows, {figures['store_mb_at_end']} MB" if share is not None else "–"
        )
        shown = "–" if share is None else share
        print(f"| {name} | {figures['best_ms']} | {figures['median_ms']} | {shown} | {store} |")
    write(args, result)
    return 0


def warm_rounds(
    args: argparse.Namespace, configs: dict[str, Callable[[], Any]], articles: list[list[str]]
) -> int:
    """``--warm``: each configuration's pass filled by a first run over every article, then
    paired rounds of 10 articles."""
    passes = {name: make() for name, make in configs.items()}
    for forward in passes.values():
        for units in articles:
            forward.encode(units)
    first = next(iter(configs))
    rounds: dict[str, list[float]] = {name: [] for name in configs}
    for number in range(args.repeat):
        start = (number * 10) % max(1, len(articles) - 9)
        chunk = articles[start : start + 10]
        order = list(configs) if number % 2 == 0 else list(configs)[::-1]
        for name in order:
            began = time.process_time()
            for units in chunk:
                passes[name].encode(units)
            rounds[name].append(1000 * (time.process_time() - began) / len(chunk))
    result: dict[str, Any] = {
        "benchmark": "piece_rows",
        "label": args.label,
        "texts": args.texts,
        "mode": "warm",
        "articles": len(articles),
        "rounds": args.repeat,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "note": f"CPU ms per article after a full pass; median of paired differences to {first!r}",
        "configs": {
            name: {
                "median_ms": round(statistics.median(values), 2),
                "median_difference_ms": round(
                    statistics.median(a - b for a, b in zip(values, rounds[first], strict=True)), 2
                ),
            }
            for name, values in rounds.items()
        },
    }
    print(
        f"\n| encoder pass, warm ({args.texts}, rounds of 10 articles) | median ms | paired difference ms |"
    )
    print("|---|---:|---:|")
    for name, figures in result["configs"].items():
        print(f"| {name} | {figures['median_ms']} | {figures['median_difference_ms']:+.2f} |")
    write(args, result)
    return 0


def write(args: argparse.Namespace, result: dict[str, Any]) -> None:
    measure.record_run(args.output, f"{args.texts} {args.label}", result)


if __name__ == "__main__":
    raise SystemExit(main())
