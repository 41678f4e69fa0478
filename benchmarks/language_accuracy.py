#!/usr/bin/env python3
"""Language detection: accuracy and cost of ``pipeline.language.detect_language`` on real excerpts.

Texts: the real excerpts of the repository that carry a ``lang`` label, in two sets:

* **tuning**: ``tests/fixtures/classify/real_train.jsonl`` and the ``dev`` half of
  ``tests/fixtures/xlingual/articles.jsonl`` (what the detector's defaults were chosen on);
* **held out**: ``tests/fixtures/classify/real_heldout.jsonl`` and the ``heldout`` half of
  ``tests/fixtures/xlingual/articles.jsonl`` (never looked at while tuning).

Each text (title + body, and again only its first 80 characters,) is detected three ways: with no
declared language; with the **right** one declared (a page or feed that tells the truth);
and with a **wrong** one declared — English for non-English texts, Russian for English
ones — as a mixed feed that declares one language for everything does: the declared
language is a prior, so it must not win over clear evidence. Accuracy is reported for
en/ru/zh, for pt/es/fr/ar/de and over every language, with the mean time per text.

Writes ``benchmarks/results/language_accuracy.json`` under ``--label`` and prints a table.

Usage::

    python benchmarks/language_accuracy.py --label current
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FIXTURES = REPO_ROOT / "tests" / "fixtures"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "language_accuracy.json"
GROUPS = {"en/ru/zh": ("en", "ru", "zh"), "pt/es/fr/ar/de": ("pt", "es", "fr", "ar", "de")}


def _rows(path: Path, split: str | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if split is None or row.get("split") == split]


def texts() -> dict[str, list[tuple[str, str]]]:
    """(lang, title + text) per set."""
    sets = {
        "tuning": _rows(FIXTURES / "classify" / "real_train.jsonl")
        + _rows(FIXTURES / "xlingual" / "articles.jsonl", "dev"),
        "held_out": _rows(FIXTURES / "classify" / "real_heldout.jsonl")
        + _rows(FIXTURES / "xlingual" / "articles.jsonl", "heldout"),
    }
    full = {
        name: [(row["lang"], f"{row.get('title') or ''}\n{row['text']}".strip()) for row in rows]
        for name, rows in sets.items()
    }
    # The first 80 characters: a headline or a teaser, where a declared language helps most.
    short = {
        f"{name}_first_80_chars": [(lang, text[:80]) for lang, text in rows] for name, rows in full.items()
    }
    return {**full, **short}


def evaluate(samples: list[tuple[str, str]]) -> dict[str, Any]:
    from pipeline.language import detect_language

    accepts_priors = "priors" in inspect.signature(detect_language).parameters
    detect_language("warm-up text for the detector profiles, long enough to be detected")
    result: dict[str, Any] = {"texts": len(samples)}
    for mode in ("no_hint", "right_hint", "wrong_hint"):
        right: defaultdict[str, int] = defaultdict(int)
        total: defaultdict[str, int] = defaultdict(int)
        mistakes: list[str] = []
        began = time.perf_counter()
        for lang, text in samples:
            hint = {"no_hint": None, "right_hint": lang, "wrong_hint": "ru" if lang == "en" else "en"}[mode]
            if accepts_priors:
                guess = detect_language(text, priors=[hint] if hint else [])
            else:
                guess = detect_language(text, hint=hint)
            total[lang] += 1
            if guess.lang == lang:
                right[lang] += 1
            elif len(mistakes) < 40:
                mistakes.append(f"{lang}->{guess.lang}: {text[:60]!r}")
        elapsed = time.perf_counter() - began
        groups = {
            name: _share(sum(right[c] for c in codes), sum(total[c] for c in codes))
            for name, codes in GROUPS.items()
        }
        result[mode] = {
            **groups,
            "all": _share(sum(right.values()), sum(total.values())),
            "ms_per_text": round(elapsed / len(samples) * 1000, 2),
            "by_language": {c: f"{right[c]}/{total[c]}" for c in sorted(total)},
            "mistakes": mistakes,
        }
    return result


def _share(right: int, total: int) -> float | None:
    return round(right / total, 4) if total else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--label", default="current")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    run = {
        "label": args.label,
        "environment": {
            "python": platform.python_version(),
            "note": "timings on a shared 2-core machine with other jobs running",
        },
        "sets": {name: evaluate(samples) for name, samples in texts().items()},
    }
    stored = json.loads(args.output.read_text(encoding="utf-8")) if args.output.exists() else {}
    runs = stored.get("runs", {})
    runs[args.label] = run
    args.output.write_text(
        json.dumps({"benchmark": "language_accuracy", "runs": runs}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print(f"| set | declared | en/ru/zh | pt/es/fr/ar/de | all | ms/text |  ({args.label})")
    print("|---|---|---:|---:|---:|---:|")
    for name, measured in run["sets"].items():
        for mode in ("no_hint", "right_hint", "wrong_hint"):
            row = measured[mode]
            print(
                f"| {name} | {mode} | {row['en/ru/zh']} | {row['pt/es/fr/ar/de']} | {row['all']} "
                f"| {row['ms_per_text']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
