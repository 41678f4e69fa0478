#!/usr/bin/env python3
"""Benchmark the article-extraction stage against the bare trafilatura library.

Runs three extractors over the pages of ``../shared/extraction-benchmark`` (relative to
the repository root) in this one process, page by page and interleaved, so that they
see the same machine load:

* ``summitwatch``: :func:`pipeline.extract.extract_page` on the raw bytes;
* ``trafilatura-defaults``: ``trafilatura.extract(html)``;
* ``trafilatura-no-comments``: ``trafilatura.extract(html, include_comments=False)``
  (the benchmark's upstream setting).

The bare library gets the page decoded as UTF-8 (the benchmark's pages all are), like
the benchmark's reference runs. Each extractor's predictions are written to a JSON file
and scored by the benchmark's own ``evaluate.py --predictions FILE --json``. Extraction
time is measured in-process around each call (no process start-up); one untimed warm-up
call per extractor comes first.

Writes ``benchmarks/results/extraction.json`` and prints a Markdown table.

Usage: python benchmarks/extraction.py [--limit N] [--data-dir DIR] [--keep-predictions DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "extraction-benchmark"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "extraction.json"
OURS = "summitwatch"
BASELINES = ("trafilatura-defaults", "trafilatura-no-comments")

Extractor = Callable[[bytes], str]


def build_extractors() -> dict[str, tuple[str, Extractor]]:
    """name -> (description, function from page bytes to text)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it
    import trafilatura

    from pipeline.extract import extract_page

    def ours(html: bytes) -> str:
        return extract_page(html).text

    def bare_defaults(html: bytes) -> str:
        return trafilatura.extract(html.decode("utf-8")) or ""

    def bare_no_comments(html: bytes) -> str:
        return trafilatura.extract(html.decode("utf-8"), include_comments=False) or ""

    return {
        OURS: ("pipeline.extract.extract_page(body)", ours),
        BASELINES[0]: ("trafilatura.extract(html)", bare_defaults),
        BASELINES[1]: ("trafilatura.extract(html, include_comments=False)", bare_no_comments),
    }


def load_ids(data_dir: Path, limit: int) -> list[str]:
    """Document ids in the order evaluate.py uses (sorted), cut to ``limit`` if given."""
    truth = json.loads((data_dir / "ground-truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)
    return ids[:limit] if limit else ids


def run_extractors(
    data_dir: Path, ids: list[str], extractors: dict[str, tuple[str, Extractor]]
) -> tuple[dict[str, dict[str, str]], dict[str, list[float]]]:
    """Predictions and per-page seconds of every extractor, pages interleaved."""
    preds: dict[str, dict[str, str]] = {name: {} for name in extractors}
    times: dict[str, list[float]] = {name: [] for name in extractors}
    pages = (
        (doc_id, gzip.decompress((data_dir / "html" / f"{doc_id}.html.gz").read_bytes())) for doc_id in ids
    )
    for i, (doc_id, html) in enumerate(pages):
        if i == 0:
            for _, fn in extractors.values():
                fn(html)  # warm-up: lazy imports, regex and XPath compilation, caches
        for name, (_, fn) in extractors.items():
            start = time.perf_counter()
            preds[name][doc_id] = fn(html)
            times[name].append(time.perf_counter() - start)
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(ids)} pages", file=sys.stderr)
    return preds, times


def evaluate(data_dir: Path, predictions: Path, name: str, limit: int) -> dict[str, Any]:
    """Score a predictions file with the benchmark's evaluate.py; its JSON summary."""
    cmd = [
        sys.executable,
        str(data_dir / "evaluate.py"),
        "--predictions",
        str(predictions),
        "--data-dir",
        str(data_dir),
        "--name",
        name,
        "--json",
    ]
    if limit:
        cmd += ["--limit", str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"evaluate.py failed for {name} (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def timing_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median": statistics.median(ordered) * 1000,
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1000,
        "mean": statistics.mean(ordered) * 1000,
        "max": ordered[-1] * 1000,
    }


def markdown_table(results: dict[str, Any]) -> str:
    rows = [
        "| extractor | F1 | precision | recall | accuracy | median ms/page | p90 ms/page | time vs bare |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base_median = results["extractors"][BASELINES[0]]["time_ms"]["median"]
    for name, r in results["extractors"].items():
        t = r["time_ms"]
        rows.append(
            f"| {name} | {r['f1']:.3f} ± {r['f1_std']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['accuracy']:.3f} | {t['median']:.1f} | {t['p90']:.1f} | {t['median'] / base_median:.2f}× |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="only the first N documents (sorted by id)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the benchmark folder")
    ap.add_argument("--keep-predictions", type=Path, help="also keep the predictions files in this folder")
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS})")
    args = ap.parse_args(argv)
    if args.limit < 0:
        ap.error("--limit must be >= 0")
    if not (args.data_dir / "evaluate.py").is_file():
        ap.error(f"no benchmark at {args.data_dir} (expected evaluate.py, ground-truth.json, html/)")

    ids = load_ids(args.data_dir, args.limit)
    extractors = build_extractors()
    print(f"extracting {len(ids)} pages with {', '.join(extractors)}", file=sys.stderr)
    preds, times = run_extractors(args.data_dir, ids, extractors)

    with tempfile.TemporaryDirectory() as tmp:
        pred_dir = args.keep_predictions or Path(tmp)
        pred_dir.mkdir(parents=True, exist_ok=True)
        scores = {}
        for name in extractors:
            path = pred_dir / f"{name}.json"
            path.write_text(
                json.dumps(preds[name], ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8"
            )
            scores[name] = evaluate(args.data_dir, path, name, args.limit)

    results: dict[str, Any] = {
        "benchmark": {
            # Relative to the repository, so the results name no machine's paths.
            "data_dir": os.path.relpath(args.data_dir.resolve(), REPO_ROOT),
            "n_documents": len(ids),
            "limit": args.limit or None,
            "scored_by": "evaluate.py --predictions FILE --json",
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "trafilatura": metadata.version("trafilatura"),
            "lxml": metadata.version("lxml"),
            "charset-normalizer": metadata.version("charset-normalizer"),
        },
        "timing": "in-process wall time per page (time.perf_counter), one warm-up call, pages interleaved",
        "extractors": {},
        "time_ratio_ours_to_bare": {},
    }
    for name, (description, _) in extractors.items():
        s = scores[name]
        results["extractors"][name] = {
            "call": description,
            **{k: s[k] for k in ("f1", "f1_std", "precision", "precision_std", "recall", "recall_std")},
            "accuracy": s["accuracy"],
            "accuracy_std": s["accuracy_std"],
            "n_empty_predictions": s["n_empty_predictions"],
            "time_ms": timing_ms(times[name]),
        }
    ours_t = results["extractors"][OURS]["time_ms"]
    for name in BASELINES:
        base_t = results["extractors"][name]["time_ms"]
        results["time_ratio_ours_to_bare"][name] = {
            stat: ours_t[stat] / base_t[stat] for stat in ("median", "p90", "mean")
        }

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(results))
    print(f"\nresults written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
