"""Near-duplicate detection quality on the labelled set, beside the bare datasketch library.

Usage: ``python benchmarks/dedup_quality.py [--no-write]``. Prints a Markdown table and
writes ``benchmarks/results/dedup_quality.json``.

The labelled set is ``tests/fixtures/dedup/stories.jsonl`` (built by
``tests/fixtures/dedup/make_variants.py``): articles in the same ``cluster`` are copies
of one story. The file is streamed in its order, as if the articles arrived one by one,
through one index shared by all languages (as in production). Each article's text is
its title, a blank line and its body.

Decision metrics, per language of the arriving article:

* an article is an *expected duplicate* when an earlier article of its cluster exists;
* it is *flagged* when the detector returns a match (an earlier article);
* a flagged article is a true positive when the match is in its own cluster, and a
  false positive otherwise (a wrong merge, whether or not the article had a copy);
* precision = TP / flagged, recall = TP / expected duplicates.

Pair metrics (no LSH, every pair of the same language): verification precision and
recall, the share of copy pairs that the LSH bands make candidates, and how many
hard-negative pairs (different stories on one event; short stories under one heavy
template) verification merged.

Footer sinks (pairs, no LSH): each template story cut to a brief (its title and first two
sentences) under the heavy site footer, against each longer base story of its language
with the same footer appended: a different story, which must not be taken for a copy of
the brief; and each copy of a base story against its original, both under the footer,
which must stay copies.

Seed republications (pairs, and a lookup with the seeds indexed): five excerpts of each
shipped seed document (``pipeline/data/seeds``), taken from its beginning to its last
quarter, some with a line of introduction or a source line of their own; each must be
found a copy of its seed.

Systems: ``summitwatch`` (MemoryIndex + find_duplicate); ``datasketch LSH + verify``
(datasketch's MinHashLSH with the same bands and rows for candidates, then the same
verification), which checks that the index behaves like the library's; and
``datasketch LSH @t`` (the bare library: MinHashLSH at threshold t with its own band
choice, the candidate with the highest estimated Jaccard accepted, no verification).
All systems see the same shingles.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.neardup import (  # noqa: E402
    MemoryIndex,
    NearDupParams,
    ShingleProfile,
    band_keys,
    candidate_probability,
    find_duplicate,
    profile,
    shingles,
    signature,
    verify_profiles,
)

STORIES = ROOT / "tests" / "fixtures" / "dedup" / "stories.jsonl"
NAME_TEMPLATES = ROOT / "tests" / "fixtures" / "dedup" / "name_templates_heldout.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "dedup_quality.json"
LANGS = ("en", "ru", "zh")
TARGET_PRECISION = 0.98
TARGET_RECALL = 0.95

Row = dict[str, str]
# A detector takes the arriving article's position and returns (matched position,
# similarity) or None; it is also told to remember the article afterwards.
Detector = tuple[Callable[[int], tuple[int, float] | None], Callable[[int], None]]


def load_rows(path: Path = STORIES) -> list[Row]:
    """The labelled articles in arrival order."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def article_text(row: Row) -> str:
    """What the detector sees: the title, a blank line, the body."""
    return f"{row['title']}\n\n{row['text']}"


def summitwatch_detector(rows: list[Row], params: NearDupParams) -> Detector:
    """MemoryIndex + find_duplicate, ids being arrival positions."""
    index = MemoryIndex(params)
    texts: dict[int, str] = {}
    langs: dict[int, str | None] = {}
    sigs: dict[int, list[int]] = {}

    def detect(position: int) -> tuple[int, float] | None:
        row = rows[position]
        text = article_text(row)
        # Computed once, as the pipeline does: the signature is stored after the check.
        sigs[position] = signature(shingles(text, row["lang"], params), params)
        return find_duplicate(text, row["lang"], index, texts, params, langs_by_id=langs, sig=sigs[position])

    def remember(position: int) -> None:
        row = rows[position]
        texts[position] = article_text(row)
        langs[position] = row["lang"]
        index.add(position, sigs.pop(position))

    return detect, remember


def _profiles(rows: list[Row], params: NearDupParams) -> list[ShingleProfile]:
    return [profile(article_text(row), row["lang"], params) for row in rows]


def _datasketch_minhash(shingle_set: Iterable[int], num_perm: int) -> Any:
    from datasketch import MinHash

    minhash = MinHash(num_perm=num_perm, seed=1)
    minhash.update_batch([value.to_bytes(8, "big") for value in shingle_set])
    return minhash


def datasketch_verify_detector(rows: list[Row], params: NearDupParams) -> Detector:
    """datasketch MinHashLSH with our bands/rows for candidates, our verification."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(num_perm=params.num_perm, params=(params.bands, params.rows))
    profiles = _profiles(rows, params)
    minhashes: dict[int, Any] = {}

    def minhash_of(position: int) -> Any:
        if position not in minhashes:
            minhashes[position] = _datasketch_minhash(profiles[position].shingles, params.num_perm)
        return minhashes[position]

    def detect(position: int) -> tuple[int, float] | None:
        if not profiles[position].shingles:
            return None
        best: tuple[float, float, int] | None = None
        for other in sorted(lsh.query(minhash_of(position))):
            verdict = verify_profiles(profiles[position], profiles[other], params)
            if not verdict.is_duplicate:
                continue
            rank = (round(verdict.jaccard, 3), round(verdict.similarity, 3))
            if best is None or rank > best[:2]:
                best = (*rank, other)
        return None if best is None else (best[2], best[1])

    def remember(position: int) -> None:
        if profiles[position].shingles:
            lsh.insert(position, minhash_of(position))

    return detect, remember


def datasketch_bare_detector(rows: list[Row], params: NearDupParams, threshold: float) -> Detector:
    """The bare library: MinHashLSH(threshold), best estimated Jaccard wins, no verify."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=params.num_perm)
    profiles = _profiles(rows, params)
    minhashes: dict[int, Any] = {}

    def minhash_of(position: int) -> Any:
        if position not in minhashes:
            minhashes[position] = _datasketch_minhash(profiles[position].shingles, params.num_perm)
        return minhashes[position]

    def detect(position: int) -> tuple[int, float] | None:
        if not profiles[position].shingles:
            return None
        query = minhash_of(position)
        scored = [(query.jaccard(minhash_of(other)), -other) for other in lsh.query(query)]
        if not scored:
            return None
        similarity, negative_id = max(scored)
        return -negative_id, similarity

    def remember(position: int) -> None:
        if profiles[position].shingles:
            lsh.insert(position, minhash_of(position))

    return detect, remember


def evaluate_stream(rows: list[Row], detector: Detector) -> dict[str, Any]:
    """Decision precision/recall per language (and overall) for one detector."""
    detect, remember = detector
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    missed_variants: dict[str, Counter[str]] = defaultdict(Counter)
    expected_variants: dict[str, Counter[str]] = defaultdict(Counter)
    wrong_merges: list[dict[str, str]] = []
    seen_clusters: set[str] = set()
    for position, row in enumerate(rows):
        lang = row["lang"]
        expected = row["cluster"] in seen_clusters
        match = detect(position)
        bucket = counts[lang]
        bucket["articles"] += 1
        bucket["expected_duplicates"] += expected
        if expected:
            expected_variants[lang][row["variant"]] += 1
        correct = False
        if match is not None:
            bucket["flagged"] += 1
            matched = rows[match[0]]
            if matched["cluster"] == row["cluster"]:
                correct = True
                bucket["true_positives"] += 1
            else:
                bucket["false_positives"] += 1
                wrong_merges.append({"article": row["id"], "matched": matched["id"]})
        if expected and not correct:
            bucket["false_negatives"] += 1
            missed_variants[lang][row["variant"]] += 1
        seen_clusters.add(row["cluster"])
        remember(position)
    result: dict[str, Any] = {}
    for lang in (*LANGS, "all"):
        bucket = sum(counts.values(), Counter()) if lang == "all" else counts[lang]
        flagged, expected_total = bucket["flagged"], bucket["expected_duplicates"]
        result[lang] = {
            "articles": bucket["articles"],
            "expected_duplicates": expected_total,
            "flagged": flagged,
            "true_positives": bucket["true_positives"],
            "false_positives": bucket["false_positives"],
            "false_negatives": bucket["false_negatives"],
            "precision": round(bucket["true_positives"] / flagged, 4) if flagged else 1.0,
            "recall": (round(bucket["true_positives"] / expected_total, 4) if expected_total else 1.0),
        }
        if lang != "all":
            result[lang]["missed_by_variant"] = dict(sorted(missed_variants[lang].items()))
            result[lang]["expected_by_variant"] = dict(sorted(expected_variants[lang].items()))
    result["wrong_merges"] = wrong_merges
    return result


def evaluate_pairs(rows: list[Row], params: NearDupParams) -> dict[str, Any]:
    """Verification and LSH-candidate figures over every same-language pair."""
    result: dict[str, Any] = {}
    for lang in LANGS:
        items = [row for row in rows if row["lang"] == lang]
        profiles = {row["id"]: profile(article_text(row), lang, params) for row in items}
        keys = {
            key: set(band_keys(signature(value.shingles, params), params)) for key, value in profiles.items()
        }
        tally: Counter[str] = Counter()
        for a, b in itertools.combinations(items, 2):
            same = a["cluster"] == b["cluster"]
            verdict = verify_profiles(profiles[a["id"]], profiles[b["id"]], params)
            if same:
                tally["positive_pairs"] += 1
                tally["verified_positive"] += verdict.is_duplicate
                tally["lsh_candidate_positive"] += bool(keys[a["id"]] & keys[b["id"]])
            else:
                tally["negative_pairs"] += 1
                tally["verified_negative"] += verdict.is_duplicate
                tally["lsh_candidate_negative"] += bool(keys[a["id"]] & keys[b["id"]])
                if a["event"] == b["event"]:
                    kind = "same_template" if a["event"] == "template" else "same_event"
                    tally[f"{kind}_pairs"] += 1
                    tally[f"{kind}_merged"] += verdict.is_duplicate
        flagged = tally["verified_positive"] + tally["verified_negative"]
        result[lang] = {
            "positive_pairs": tally["positive_pairs"],
            "negative_pairs": tally["negative_pairs"],
            "verify_precision": (round(tally["verified_positive"] / flagged, 4) if flagged else 1.0),
            "verify_recall": round(tally["verified_positive"] / tally["positive_pairs"], 4),
            "lsh_candidate_recall": round(tally["lsh_candidate_positive"] / tally["positive_pairs"], 4),
            "lsh_candidates_among_negatives": tally["lsh_candidate_negative"],
            "same_event_pairs": tally["same_event_pairs"],
            "same_event_merged": tally["same_event_merged"],
            "same_template_pairs": tally["same_template_pairs"],
            "same_template_merged": tally["same_template_merged"],
        }
    return result


def _footer(texts: list[str]) -> str:
    """The paragraphs every one of ``texts`` ends with (the site footer of the template set)."""
    split = [text.split("\n\n") for text in texts]
    count = 0
    while all(len(paragraphs) > count + 1 for paragraphs in split) and (
        len({paragraphs[-1 - count] for paragraphs in split}) == 1
    ):
        count += 1
    return "\n\n".join(split[0][len(split[0]) - count :]) if count else ""


# A sentence ends at a full stop, question or exclamation mark (Latin or CJK) or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")


def _first_sentences(text: str, count: int) -> str:
    return " ".join([piece for piece in _SENTENCE_END.split(text) if piece.strip()][:count])


def evaluate_footer_sinks(rows: list[Row], params: NearDupParams) -> dict[str, Any]:
    """Short briefs under a site footer vs longer stories under the same footer, per language."""
    result: dict[str, Any] = {}
    for lang in LANGS:
        templated = [row for row in rows if row["lang"] == lang and row["event"] == "template"]
        footer = _footer([row["text"] for row in templated])
        briefs = [
            profile(f"{row['title']}\n\n{_first_sentences(row['text'], 2)}\n\n{footer}", lang, params)
            for row in templated
            if row["variant"] == "original"
        ]
        stories = [row for row in rows if row["lang"] == lang and row["event"] != "template"]
        originals = {row["cluster"]: row for row in stories if row["variant"] == "original"}
        long_profiles = {
            row["id"]: profile(f"{row['title']}\n\n{row['text']}\n\n{footer}", lang, params)
            for row in stories
        }
        merged = sum(
            verify_profiles(brief, long_profiles[original["id"]], params).is_duplicate
            for brief in briefs
            for original in originals.values()
        )
        copies = [row for row in stories if row["variant"] != "original"]
        kept = sum(
            verify_profiles(
                long_profiles[row["id"]], long_profiles[originals[row["cluster"]]["id"]], params
            ).is_duplicate
            for row in copies
        )
        result[lang] = {
            "footer_words": len(footer.split()) if lang != "zh" else len(footer),
            "brief_vs_longer_story_pairs": len(briefs) * len(originals),
            "brief_vs_longer_story_merged": merged,
            "copies_under_footer": len(copies),
            "copies_under_footer_verified": kept,
        }
    return result


# Where the excerpts of a seed start (share of its words), their length in words, and the
# line of their own they open or close with.
_SEED_EXCERPTS = (
    (0.1, 260, "The following is an excerpt from the report.", ""),
    (0.3, 180, "", ""),
    (
        0.45,
        200,
        "Below we republish a passage of the analysis, which was published on its author's site.",
        "",
    ),
    (0.6, 150, "", "The full text is available on the publisher's website."),
    (0.75, 120, "Excerpt:", "Source: the publisher."),
)


def seed_excerpts(text: str) -> list[str]:
    """Excerpts of a seed document as a site would republish them (``_SEED_EXCERPTS``)."""
    sentences = [piece for piece in _SENTENCE_END.split(text) if piece.strip()]
    starts = list(itertools.accumulate((len(sentence.split()) for sentence in sentences), initial=0))
    excerpts = []
    for share, length, intro, closing in _SEED_EXCERPTS:
        first = next(i for i, start in enumerate(starts) if start >= share * starts[-1])
        last = next(
            (i for i in range(first, len(sentences)) if starts[i + 1] - starts[first] >= length), None
        )
        body = " ".join(sentences[first : (len(sentences) if last is None else last + 1)])
        excerpts.append("\n\n".join(part for part in (intro, body, closing) if part))
    return excerpts


def evaluate_seed_republications(params: NearDupParams) -> dict[str, Any]:
    """Excerpts of the seed documents: verified as copies of their seed, and found by lookup."""
    from pipeline.seeds import load_seed_documents

    seeds = load_seed_documents()
    index = MemoryIndex(params)
    texts = {}
    for position, seed in enumerate(seeds):
        texts[position] = seed.text
        index.add(position, signature(shingles(seed.text, None, params), params))
    verified = found = total = 0
    for position, seed in enumerate(seeds):
        own = profile(seed.text, None, params)
        for excerpt in seed_excerpts(seed.text):
            total += 1
            verified += verify_profiles(profile(excerpt, None, params), own, params).is_duplicate
            match = find_duplicate(excerpt, None, index, texts, params)
            found += match is not None and match[0] == position
    return {"excerpts": total, "verified_against_seed": verified, "found_by_lookup": found}


def evaluate_name_templates(params: NearDupParams, path: Path = NAME_TEMPLATES) -> dict[str, Any]:
    """The held-out pairs of the names rule: texts of one template with other names (two
    stories) and copies with the edits syndication makes to names, verified with the rule
    (``params``) and without it (``name_swaps`` 0)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    systems = {"with the names rule": params, "without it": replace(params, name_swaps=0)}
    result: dict[str, Any] = {"file": str(path.relative_to(ROOT)), "pairs": len(rows)}
    for name, system in systems.items():
        tally: Counter[str] = Counter()
        wrong: list[str] = []
        for row in rows:
            a, b = (f"{row[side]['title']}\n\n{row[side]['text']}" for side in ("a", "b"))
            verdict = verify_profiles(
                profile(a, row["lang"], system), profile(b, row["lang"], system), system
            )
            right = verdict.is_duplicate == (row["label"] == "copy")
            group = row["lang"] if row["lang"] in ("en", "ru") else "other"
            for key in (group, "all"):
                tally[f"{row['label']} {key}"] += 1
                tally[f"{row['label']} {key} right"] += right
            if not right:
                wrong.append(f"{row['pair']} ({row['kind']}, {row['lang']}): {verdict.reason}")
        result[name] = {
            "templates_kept_apart": {
                key: f"{tally[f'distinct {key} right']}/{tally[f'distinct {key}']}"
                for key in ("en", "ru", "other", "all")
            },
            "copies_verified": {
                key: f"{tally[f'copy {key} right']}/{tally[f'copy {key}']}"
                for key in ("en", "ru", "other", "all")
            },
            "wrong": wrong,
        }
    return result


def time_signatures(rows: list[Row], params: NearDupParams) -> dict[str, float]:
    """Milliseconds per article: shingling, our signature, datasketch's MinHash."""
    texts = [(article_text(row), row["lang"]) for row in rows]
    start = time.perf_counter()
    sets = [shingles(text, lang, params) for text, lang in texts]
    shingling = time.perf_counter() - start
    start = time.perf_counter()
    for shingle_set in sets:
        signature(shingle_set, params)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for shingle_set in sets:
        _datasketch_minhash(shingle_set, params.num_perm)
    library = time.perf_counter() - start
    count = len(rows)
    return {
        "articles": count,
        "mean_shingles": round(sum(len(s) for s in sets) / count, 1),
        "shingling_ms_per_article": round(1000 * shingling / count, 3),
        "signature_ms_per_article": round(1000 * ours / count, 3),
        "datasketch_minhash_ms_per_article": round(1000 * library / count, 3),
        "signature_time_ratio_vs_datasketch": round(ours / library, 2),
    }


def run(write: bool = True) -> dict[str, Any]:
    """Run every measurement; write the JSON unless ``write`` is false."""
    import datasketch

    params = NearDupParams()
    rows = load_rows()
    systems = {
        "summitwatch": evaluate_stream(rows, summitwatch_detector(rows, params)),
        "datasketch LSH + verify": evaluate_stream(rows, datasketch_verify_detector(rows, params)),
    }
    for threshold in (0.5, 0.3):
        systems[f"datasketch LSH @{threshold}"] = evaluate_stream(
            rows, datasketch_bare_detector(rows, params, threshold)
        )
    results: dict[str, Any] = {
        "dataset": {
            "file": str(STORIES.relative_to(ROOT)),
            "articles": len(rows),
            "clusters": len({row["cluster"] for row in rows}),
            "per_language": dict(sorted(Counter(row["lang"] for row in rows).items())),
            "variants": dict(sorted(Counter(row["variant"] for row in rows).items())),
        },
        "definition": (
            "streamed in file order; expected duplicate = an earlier article of the same "
            "cluster exists; TP = match in own cluster; FP = match in another cluster; "
            "precision = TP/flagged; recall = TP/expected duplicates"
        ),
        "targets": {"precision": TARGET_PRECISION, "recall": TARGET_RECALL},
        "params": asdict(params),
        "scheme": params.scheme,
        "s_curve": {
            f"{j:.1f}": round(candidate_probability(j, params), 4)
            for j in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        },
        "systems": systems,
        "pairs": evaluate_pairs(rows, params),
        "footer_sinks": evaluate_footer_sinks(rows, params),
        "seed_republications": evaluate_seed_republications(params),
        "name_templates": evaluate_name_templates(params),
        "timing": time_signatures(rows, params),
        "environment": {
            "python": platform.python_version(),
            "datasketch": datasketch.__version__,
        },
    }
    if write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def markdown(results: dict[str, Any]) -> str:
    """The decision table, one row per system and language."""
    lines = [
        "| system | lang | articles | expected dups | flagged | TP | FP | FN | precision | recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, metrics in results["systems"].items():
        for lang in (*LANGS, "all"):
            m = metrics[lang]
            lines.append(
                f"| {name} | {lang} | {m['articles']} | {m['expected_duplicates']} | "
                f"{m['flagged']} | {m['true_positives']} | {m['false_positives']} | "
                f"{m['false_negatives']} | {m['precision']:.3f} | {m['recall']:.3f} |"
            )
    lines += [
        "",
        "| lang | verify precision (pairs) | verify recall (pairs) | LSH candidate recall "
        "| same-event pairs merged | same-template pairs merged |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lang in LANGS:
        p = results["pairs"][lang]
        lines.append(
            f"| {lang} | {p['verify_precision']:.3f} | {p['verify_recall']:.3f} | "
            f"{p['lsh_candidate_recall']:.3f} | {p['same_event_merged']}/{p['same_event_pairs']} "
            f"| {p['same_template_merged']}/{p['same_template_pairs']} |"
        )
    lines += [
        "",
        "| lang | footer (words; zh characters) | brief vs longer story under the footer: merged "
        "| copies under the footer verified |",
        "|---|---:|---:|---:|",
    ]
    for lang in LANGS:
        f = results["footer_sinks"][lang]
        lines.append(
            f"| {lang} | {f['footer_words']} | {f['brief_vs_longer_story_merged']}/"
            f"{f['brief_vs_longer_story_pairs']} | {f['copies_under_footer_verified']}/"
            f"{f['copies_under_footer']} |"
        )
    seeds = results["seed_republications"]
    lines += [
        "",
        f"Seed republications: {seeds['verified_against_seed']}/{seeds['excerpts']} excerpts verified "
        f"as copies of their seed, {seeds['found_by_lookup']}/{seeds['excerpts']} found by lookup.",
    ]
    names = results["name_templates"]
    lines += [
        "",
        "| held-out name templates | templates kept apart (en, ru, other, all) "
        "| copies verified (en, ru, other, all) |",
        "|---|---:|---:|",
    ]
    for system in ("without it", "with the names rule"):
        kept, copies = names[system]["templates_kept_apart"], names[system]["copies_verified"]
        lines.append(f"| {system} | {', '.join(kept.values())} | {', '.join(copies.values())} |")
    t = results["timing"]
    lines += [
        "",
        f"Signature: {t['signature_ms_per_article']} ms/article (pure Python) vs "
        f"{t['datasketch_minhash_ms_per_article']} ms with datasketch (numpy), ratio "
        f"{t['signature_time_ratio_vs_datasketch']}; shingling "
        f"{t['shingling_ms_per_article']} ms/article; {t['mean_shingles']} shingles on average.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    args = parser.parse_args()
    results = run(write=not args.no_write)
    print(markdown(results))
    ours = results["systems"]["summitwatch"]
    failed = [
        lang
        for lang in LANGS
        if ours[lang]["precision"] < TARGET_PRECISION or ours[lang]["recall"] < TARGET_RECALL
    ]
    if failed:
        print(f"\nBelow target in: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
