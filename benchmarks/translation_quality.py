#!/usr/bin/env python3
"""Cross-language linking quality on real articles: recall and precision per language pair.

Data: ``tests/fixtures/xlingual`` (real news excerpts in en, ru, zh and a few other
languages; labelled pairs: ``translation``, ``same_event`` — another outlet's own report
of the same occasion, the hard negative — and ``different``), split by event into a
``dev`` half (what the thresholds may be tuned on) and a ``heldout`` half (never tuned
on). See that folder's README.

Two measurements per split:

* **pairs**: every labelled pair judged on its own by
  - summitwatch: the candidate floor on document vectors, then
    :func:`pipeline.crosslingual.verify_translation` (sentence alignment, numbers, names);
  - raw embedding: document-vector cosine above a threshold chosen on ``dev`` for the
    best F1 (the same threshold is then applied to ``heldout``);
  - MinHash: the same-language near-duplicate test applied across languages (shingles
    of different scripts and words never match: 0 by construction, measured anyway).
* **long texts**: the excerpts are short (about 5 to 15 sentences), and full articles
  behave differently, so each split also builds longer pairs by joining ``k`` (2, 3, 4)
  labelled pairs of one language pair from different events, side by side: joined
  translation pairs are a translation, joined ``same_event``/``different`` pairs are not.
  Pairs joined two at a time are scored on every combination; three and four at a time,
  on combinations drawn with a fixed seed. Scored for summitwatch and for the
  previous rule (the full sentence margin at every length, aligned share 0.6, no run
  test, no sentence-level number check), which the excerpts alone could not tell apart
  from the current one.
* **restructured** (``--set full`` only): real translators merge and split sentences,
  where the whole articles' translations mostly keep their originals' sentences. Each
  translation is rewritten with a share (0.3, 0.5) of the adjacent sentences of a
  paragraph merged into one (a full stop becomes a comma; seeded), then scored pair by
  pair and with two articles of different events joined side by side (over 40 sentences
  a side, so the encoder's cut applies), against the same join of the two articles'
  same-event reports by the other outlet. Scored for summitwatch and for the rule
  without its step over a merged sentence (``split_similarity: 0``).
* **stream**: every article of the split imported in shuffled order through the real
  ingest path (``pipeline.ingest.import_lines`` on a fresh SQLite database: extraction
  of nothing, language detection, exact + near + cross-language dedupe). A labelled
  translation pair is *found* when both articles end up in one copy cluster. A link
  the pipeline made (``copy_kind = translation``) is *correct* when the two articles
  are translations by the labels (transitively: two renderings of one original are
  translations of each other); any other link is a false one.

Writes ``benchmarks/results/translation_quality.json`` and prints Markdown tables.

Usage::

    python benchmarks/translation_quality.py                 # both splits
    python benchmarks/translation_quality.py --split dev     # tuning half only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import numpy as np  # noqa: E402
from sqlalchemy import select  # noqa: E402

from pipeline import crosslingual, encoder, neardup, sentences  # noqa: E402
from pipeline.db.engine import make_engine, session_factory, upgrade_schema  # noqa: E402
from pipeline.db.schema import Article  # noqa: E402
from pipeline.ingest import import_lines  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

# The labelled sets: real excerpts (the default), and whole articles with their full and
# abridged translations (``--set full``; no joined pairs: its texts are long already).
SETS = {
    "excerpts": REPO_ROOT / "tests" / "fixtures" / "xlingual",
    "full": REPO_ROOT / "tests" / "fixtures" / "xlingual_full",
}
FIXTURES = SETS["excerpts"]
RESULTS = {
    "excerpts": REPO_ROOT / "benchmarks" / "results" / "translation_quality.json",
    "full": REPO_ROOT / "benchmarks" / "results" / "translation_quality_full.json",
}


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    title: str | None
    text: str
    published: str | None
    event: str
    split: str


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: str
    partial: bool
    split: str


def load(split: str, fixtures: Path = FIXTURES) -> tuple[dict[str, Item], list[Pair]]:
    items = {}
    for line in (fixtures / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["split"] == split:
            items[row["id"]] = Item(
                row["id"],
                row["lang"],
                row.get("title"),
                row["text"],
                row.get("published"),
                row["event"],
                split,
            )
    pairs = []
    for line in (fixtures / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["split"] == split:
            pairs.append(Pair(row["a"], row["b"], row["label"], bool(row.get("partial")), split))
    return items, pairs


def lang_pair(a: str, b: str) -> str:
    major = {"en", "ru", "zh"}
    if a in major and b in major:
        return "–".join(sorted((a, b)))
    return "other"


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


# Pair-level ---------------------------------------------------------------------------------


def pair_scores(items: dict[str, Item], pairs: Sequence[Pair], settings: Any) -> list[dict[str, Any]]:
    model = encoder.load_encoder(settings.encoder.model, threads=settings.encoder.threads)
    limits = settings.encoder
    vectors = {
        key: encoder.embed_configured(model, item.title, item.text, limits) for key, item in items.items()
    }
    gazetteer = crosslingual.load_gazetteer(settings.gazetteer_file)
    params = settings.translation_params()
    floor = settings.translations.candidate_similarity
    neardup_params = neardup.NearDupParams.from_mapping(settings.near_duplicates)
    rows = []
    for pair in pairs:
        a, b = items[pair.a], items[pair.b]
        va, vb = vectors[pair.a], vectors[pair.b]
        document = float(va.document @ vb.document)
        verdict = crosslingual.verify_translation(
            crosslingual.Side(a.lang, a.text, va.sentences, va.has_title),
            crosslingual.Side(b.lang, b.text, vb.sentences, vb.has_title),
            params,
            gazetteer,
        )
        minhash = neardup.verify_profiles(
            neardup.profile(f"{a.title or ''}\n{a.text}", a.lang, neardup_params),
            neardup.profile(f"{b.title or ''}\n{b.text}", b.lang, neardup_params),
            neardup_params,
        ).is_duplicate
        rows.append(
            {
                "a": pair.a,
                "b": pair.b,
                "label": pair.label,
                "partial": pair.partial,
                "langs": lang_pair(a.lang, b.lang),
                "document_similarity": round(document, 4),
                "summitwatch": document >= floor and verdict.is_translation,
                "minhash": minhash,
                "detail": verdict.as_detail(),
            }
        )
    return rows


def best_threshold(rows: Iterable[dict[str, Any]]) -> float:
    """The document-similarity threshold with the best F1 for ``translation`` (ties: higher)."""
    rows = list(rows)
    best = (-1.0, 1.0)
    for threshold in sorted({r["document_similarity"] for r in rows}):
        tp = sum(1 for r in rows if r["label"] == "translation" and r["document_similarity"] >= threshold)
        fp = sum(1 for r in rows if r["label"] != "translation" and r["document_similarity"] >= threshold)
        fn = sum(1 for r in rows if r["label"] == "translation" and r["document_similarity"] < threshold)
        f1 = prf(tp, fp, fn)["f1"] or 0.0
        if f1 >= best[0]:
            best = (f1, threshold)
    return best[1]


def pair_table(rows: Sequence[dict[str, Any]], raw_threshold: float) -> dict[str, dict[str, Any]]:
    systems = {
        "summitwatch": lambda r: r["summitwatch"],
        "raw_embedding": lambda r: r["document_similarity"] >= raw_threshold,
        "minhash": lambda r: r["minhash"],
    }
    table: dict[str, dict[str, Any]] = {}
    groups = [*sorted({r["langs"] for r in rows}), "all"]
    for name, decide in systems.items():
        table[name] = {}
        for group in groups:
            chosen = [r for r in rows if group == "all" or r["langs"] == group]
            tp = sum(1 for r in chosen if r["label"] == "translation" and decide(r))
            fp = sum(1 for r in chosen if r["label"] != "translation" and decide(r))
            fn = sum(1 for r in chosen if r["label"] == "translation" and not decide(r))
            table[name][group] = prf(tp, fp, fn)
            table[name][group]["negatives"] = sum(1 for r in chosen if r["label"] != "translation")
    return table


# Long texts ---------------------------------------------------------------------------------

LONG_SIZES = (2, 3, 4)
# Pairs joined two at a time are scored exhaustively (every combination from different
# events); three and four at a time, on this many combinations per language pair.
LONG_TRANSLATIONS_PER_LANGS = 12
LONG_NEGATIVES_PER_LANGS = 100


def _by_language_pair(
    items: dict[str, Item], pairs: Sequence[Pair], positive: bool
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Labelled cross-language pairs (translations, or the others), oriented by language."""
    by_langs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for pair in pairs:
        if (pair.label == "translation") != positive:
            continue
        a, b = pair.a, pair.b
        if items[a].lang == items[b].lang:
            continue
        if items[a].lang > items[b].lang:
            a, b = b, a
        by_langs[(items[a].lang, items[b].lang)].append((a, b))
    return by_langs


def _distinct_events(items: dict[str, Item], combination: Sequence[tuple[str, str]]) -> bool:
    events = [{items[a].event, items[b].event} for a, b in combination]
    return all(not (first & second) for first, second in combinations(events, 2))


def long_pairs(
    items: dict[str, Item], pairs: Sequence[Pair], size: int, seed: int
) -> list[tuple[bool, tuple[tuple[str, str], ...]]]:
    """Joined pairs: ``size`` labelled pairs of one language pair, each from another event.

    Returns (is_translation, ((a, b), ...)) with every ``a`` in the same language and every
    ``b`` in the other. Size 2: every such combination; larger sizes: at most a fixed
    number of distinct combinations per language pair, drawn with ``seed``.
    """
    rng = random.Random(f"{seed}-{size}")
    chosen: list[tuple[bool, tuple[tuple[str, str], ...]]] = []
    for positive, limit in ((True, LONG_TRANSLATIONS_PER_LANGS), (False, LONG_NEGATIVES_PER_LANGS)):
        by_langs = _by_language_pair(items, pairs, positive)
        for langs in sorted(by_langs):
            candidates = sorted(by_langs[langs])
            if size == 2:
                chosen += [
                    (positive, combination)
                    for combination in combinations(candidates, 2)
                    if _distinct_events(items, combination)
                ]
                continue
            seen: set[frozenset[tuple[str, str]]] = set()
            for _ in range(limit * 4):
                if len(seen) >= limit:
                    break
                rng.shuffle(candidates)
                combination: list[tuple[str, str]] = []
                for a, b in candidates:
                    if _distinct_events(items, [*combination, (a, b)]):
                        combination.append((a, b))
                        if len(combination) == size:
                            break
                key = frozenset(combination)
                if len(combination) == size and key not in seen:
                    seen.add(key)
                    chosen.append((positive, tuple(combination)))
    return chosen


def long_scores(items: dict[str, Item], pairs: Sequence[Pair], settings: Any, seed: int) -> dict[str, Any]:
    """Recall and wrong links on joined pairs, for summitwatch and the previous rule.

    A joined text's rows are its parts' rows one after another (what encoding the joined
    text gives, each part being at most ``max_sentences`` units), cut at ``max_sentences``;
    its document vector is the mean of its lead, as for any article, and a pair below the
    candidate floor is not verified (the ingest path would not shortlist it).
    """
    model = encoder.load_encoder(settings.encoder.model, threads=settings.encoder.threads)
    limits = settings.encoder
    gazetteer = crosslingual.load_gazetteer(settings.gazetteer_file)
    params = settings.translation_params()
    floor = settings.translations.candidate_similarity
    systems = {
        "summitwatch": params,
        "previous_rule": replace(
            params,
            short_text_sentences=1000,
            long_text_sentences=1000,
            min_aligned_share=0.6,
            min_run_share=0.0,
            min_sentence_number_agreement=0.0,
        ),
    }

    def page(key: str) -> str:
        """The article as one text: its title as the first paragraph."""
        return (f"{items[key].title}\n\n" if items[key].title else "") + items[key].text

    @cache
    def rows_of(key: str) -> Any:
        return encoder.embed_configured(model, None, page(key), limits).sentences

    @cache
    def side(keys: tuple[str, ...]) -> tuple[crosslingual.Side, Any]:
        text = "\n\n".join(page(key) for key in keys)
        rows = np.vstack([rows_of(key) for key in keys])[: limits.max_sentences]
        lead = rows[: limits.lead_sentences].mean(axis=0)
        return crosslingual.Side(items[keys[0]].lang, text, rows, False), lead / np.linalg.norm(lead)

    result: dict[str, Any] = {}
    for size in LONG_SIZES:
        joined = long_pairs(items, pairs, size, seed)
        entry: dict[str, Any] = {
            "combinations": "all" if size == 2 else "sampled",
            "translations": sum(1 for positive, _ in joined if positive),
            "negatives": sum(1 for positive, _ in joined if not positive),
        }
        units = []
        counts = {name: [0, 0, 0] for name in systems}  # tp, fp, fn
        for positive, combination in joined:
            a, lead_a = side(tuple(a for a, _ in combination))
            b, lead_b = side(tuple(b for _, b in combination))
            units.append(min(len(a.sentences), len(b.sentences)))
            shortlisted = float(lead_a @ lead_b) >= floor
            for name, system in systems.items():
                linked = (
                    shortlisted and crosslingual.verify_translation(a, b, system, gazetteer).is_translation
                )
                counts[name][0] += positive and linked
                counts[name][1] += linked and not positive
                counts[name][2] += positive and not linked
        for name, (tp, fp, fn) in counts.items():
            entry[name] = prf(tp, fp, fn)
        entry["shorter_side_units_median"] = sorted(units)[len(units) // 2] if units else None
        result[str(size)] = entry
    return result


# Restructured translations (whole articles) -------------------------------------------------

MERGE_RATES = (0.3, 0.5)
_MERGEABLE_END = ("。", ".")


def merge_sentences(text: str, lang: str, rate: float, rng: random.Random) -> str:
    """``text`` with a share ``rate`` of its paragraphs' adjacent sentences merged into one."""
    comma, space = ("，", "") if lang in ("zh", "ja") else (",", " ")
    paragraphs = []
    for paragraph in text.split("\n"):
        merged: list[str] = []
        for sentence in sentences.split_sentences(paragraph):
            if merged and merged[-1].endswith(_MERGEABLE_END) and rng.random() < rate:
                merged[-1] = merged[-1][:-1] + comma + space + sentence
            else:
                merged.append(sentence)
        paragraphs.append(space.join(merged))
    return "\n".join(paragraphs)


def restructured_scores(
    items: dict[str, Item], pairs: Sequence[Pair], settings: Any, seed: int
) -> dict[str, Any]:
    """Translations with merged sentences, pair by pair and two articles joined (see the
    module's notes). Every translation's original is the article of its group in English."""
    model = encoder.load_encoder(settings.encoder.model, threads=settings.encoder.threads)
    limits = settings.encoder
    gazetteer = crosslingual.load_gazetteer(settings.gazetteer_file)
    params = settings.translation_params()
    systems = {"summitwatch": params, "without_split_step": replace(params, split_similarity=0.0)}
    floor = settings.translations.candidate_similarity
    groups = translation_groups(items, pairs)
    members: dict[int, dict[str, str]] = defaultdict(dict)
    for key, group in groups.items():
        members[group][items[key].lang] = key
    partner: dict[int, int] = {}
    for pair in pairs:
        if pair.label == "same_event":
            partner[groups[pair.a]] = groups[pair.b]
            partner[groups[pair.b]] = groups[pair.a]
    originals = sorted(group for group, langs in members.items() if "en" in langs and group in partner)

    def text_of(key: str, rate: float) -> str:
        """The article's text; a translation's with its sentences merged (seeded by article)."""
        item = items[key]
        if item.lang == "en":
            return item.text
        return merge_sentences(item.text, item.lang, rate, random.Random(f"{seed}-{key}-{rate}"))

    @cache
    def side(keys: tuple[str, ...], rate: float) -> tuple[crosslingual.Side, Any]:
        """The articles ``keys`` joined in order, encoded once per merge rate."""
        text = "\n\n".join(text_of(key, rate) for key in keys)
        vectors = encoder.embed_configured(model, items[keys[0]].title, text, limits)
        return crosslingual.Side(items[keys[0]].lang, text, vectors.sentences, vectors.has_title), vectors

    result: dict[str, Any] = {}
    for rate in MERGE_RATES:
        cases: list[tuple[str, bool, crosslingual.Side, crosslingual.Side, bool]] = []
        for pair in pairs:
            if items[pair.a].lang == items[pair.b].lang:
                continue
            (a, va), (b, vb) = side((pair.a,), rate), side((pair.b,), rate)
            shortlisted = float(va.document @ vb.document) >= floor
            cases.append(("pairs", pair.label == "translation", a, b, shortlisted))
        for first, second in combinations(originals, 2):
            if partner[first] == second:
                continue  # the two halves must be different events
            a, va = side((members[first]["en"], members[second]["en"]), rate)
            for lang in ("ru", "zh"):
                if lang not in members[first] or lang not in members[second]:
                    continue
                for positive, (one, two) in (
                    (True, (first, second)),
                    (False, (partner[first], partner[second])),
                ):
                    if lang not in members[one] or lang not in members[two]:
                        continue
                    b, vb = side((members[one][lang], members[two][lang]), rate)
                    shortlisted = float(va.document @ vb.document) >= floor
                    cases.append(("joined_2", positive, a, b, shortlisted))
        entry: dict[str, Any] = {}
        for kind in ("pairs", "joined_2"):
            chosen = [case for case in cases if case[0] == kind]
            entry[kind] = {
                "translations": sum(1 for case in chosen if case[1]),
                "negatives": sum(1 for case in chosen if not case[1]),
            }
            for name, system in systems.items():
                tp = fp = fn = 0
                for _, positive, a, b, shortlisted in chosen:
                    linked = (
                        shortlisted
                        and crosslingual.verify_translation(a, b, system, gazetteer).is_translation
                    )
                    tp += positive and linked
                    fp += linked and not positive
                    fn += positive and not linked
                entry[kind][name] = prf(tp, fp, fn)
        result[str(rate)] = entry
    return result


# Stream -------------------------------------------------------------------------------------


def translation_groups(items: dict[str, Item], pairs: Sequence[Pair]) -> dict[str, int]:
    """Union-find over labelled translation pairs: article id -> group number."""
    parent = {key: key for key in items}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pair in pairs:
        if pair.label == "translation":
            parent[find(pair.a)] = find(pair.b)
    roots: dict[str, int] = {}
    return {key: roots.setdefault(find(key), len(roots)) for key in items}


def stream(items: dict[str, Item], pairs: Sequence[Pair], settings: Any, seed: int) -> dict[str, Any]:
    order = sorted(items)
    random.Random(seed).shuffle(order)
    lines = []
    for key in order:
        item = items[key]
        record: dict[str, Any] = {"id": key, "title": item.title, "text": item.text}
        # Articles without a date on the page are imported undated, as the product meets
        # them: the time window is not applied to them (translations.undated_scope).
        if item.published:
            record["published"] = item.published + ("T12:00:00+00:00" if len(item.published) == 10 else "")
        lines.append(json.dumps(record, ensure_ascii=False))
    with tempfile.TemporaryDirectory() as folder:
        local = settings.model_copy(update={"db_url": f"sqlite:///{folder}/stream.db"})
        engine = make_engine(local.db_url)
        upgrade_schema(engine)
        started = time.perf_counter()
        with session_factory(engine)() as session:
            results = list(import_lines(session, local, lines, source="benchmark", now=datetime.now(UTC)))
            elapsed = time.perf_counter() - started
            by_input = {r.input_id: r.result for r in results}
            article_of = {key: by_input[key].article_id for key in items if by_input[key].article_id}
            rows = session.execute(
                select(
                    Article.id, Article.duplicate_of_id, Article.copy_kind, Article.lang, Article.link_detail
                )
            ).all()
        engine.dispose()
    key_of = {article_id: key for key, article_id in article_of.items()}
    root_of = {row[0]: row[1] or row[0] for row in rows}
    groups = translation_groups(items, pairs)
    found = missed = 0
    missed_pairs = []
    per_langs: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    for pair in pairs:
        if pair.label != "translation":
            continue
        a, b = article_of.get(pair.a), article_of.get(pair.b)
        linked = a is not None and b is not None and root_of.get(a) == root_of.get(b)
        langs = lang_pair(items[pair.a].lang, items[pair.b].lang)
        if linked:
            found += 1
            per_langs[langs][0] += 1
        else:
            missed += 1
            per_langs[langs][2] += 1
            missed_pairs.append((pair.a, pair.b, pair.partial))
    correct = wrong = 0
    wrong_links = []
    for article_id, duplicate_of, copy_kind, _lang, detail in rows:
        if copy_kind != "translation":
            continue
        matched = (detail or {}).get("matched_article_id", duplicate_of)
        a, b = key_of.get(article_id), key_of.get(matched)
        if a is None or b is None:
            continue
        langs = lang_pair(items[a].lang, items[b].lang)
        if groups[a] == groups[b]:
            correct += 1
        else:
            wrong += 1
            per_langs[langs][1] += 1
            label = next(
                (p.label for p in pairs if {p.a, p.b} == {a, b}),
                "unlabelled, same event" if items[a].event == items[b].event else "unlabelled, other event",
            )
            wrong_links.append({"article": a, "linked_to": b, "label": label, "detail": detail})
    by_langs = {langs: prf(tp, fp, fn) for langs, (tp, fp, fn) in sorted(per_langs.items())}
    return {
        "articles": len(items),
        "seconds": round(elapsed, 1),
        "translation_pairs": found + missed,
        "pairs_found": found,
        "pair_recall": found / (found + missed) if found + missed else None,
        "links_made": correct + wrong,
        "links_correct": correct,
        "link_precision": correct / (correct + wrong) if correct + wrong else None,
        "by_language_pair": by_langs,
        "missed": missed_pairs,
        "false_links": wrong_links,
    }


# Output -------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def score_row(lead: str, system: str, entry: dict[str, Any]) -> str:
    """A Markdown row: ``lead`` cells, the system, precision, recall (found / all), wrong links."""
    scores = entry[system]
    return (
        f"| {lead} | {system} | {fmt(scores['precision'])} | "
        f"{fmt(scores['recall'])} ({scores['tp']}/{entry['translations']}) | "
        f"{scores['fp']} of {entry['negatives']} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    parser.add_argument(
        "--set",
        choices=tuple(SETS),
        default="excerpts",
        help="real excerpts (tests/fixtures/xlingual) or whole articles with their translations "
        "(tests/fixtures/xlingual_full)",
    )
    parser.add_argument("--seed", type=int, default=7, help="shuffle seed of the stream order")
    parser.add_argument(
        "--output", type=Path, help="default: benchmarks/results/translation_quality[_full].json"
    )
    args = parser.parse_args(argv)
    fixtures = SETS[args.set]
    output: Path = args.output or RESULTS[args.set]
    # SUMMITWATCH_* variables of the environment apply, to try other thresholds.
    settings = load_settings({**os.environ, "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")})
    splits = ["dev", "heldout"] if args.split == "both" else [args.split]

    dev_items, dev_pairs = load("dev", fixtures)
    dev_rows = pair_scores(dev_items, dev_pairs, settings)
    raw_threshold = best_threshold(dev_rows)
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/translation_quality.py", *(argv or sys.argv[1:])]),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "settings": {
            "translations": settings.translations.model_dump(),
            "encoder": settings.encoder.model_dump(),
        },
        "raw_embedding_threshold_from_dev": raw_threshold,
        "splits": {},
    }
    for split in splits:
        items, pairs = (dev_items, dev_pairs) if split == "dev" else load(split, fixtures)
        rows = dev_rows if split == "dev" else pair_scores(items, pairs, settings)
        table = pair_table(rows, raw_threshold)
        streamed = stream(items, pairs, settings, args.seed)
        joined = long_scores(items, pairs, settings, args.seed) if args.set == "excerpts" else {}
        merged = restructured_scores(items, pairs, settings, args.seed) if args.set == "full" else {}
        result["splits"][split] = {
            "pairs": table,
            "long": joined,
            "restructured": merged,
            "stream": streamed,
            "pair_rows": rows,
        }
        print(f"\n## {split}: {len(items)} articles, {len(pairs)} labelled pairs\n")
        print("| system | language pair | precision | recall | F1 | negatives |")
        print("|---|---|---:|---:|---:|---:|")
        for system, groups in table.items():
            for group, scores in groups.items():
                print(
                    f"| {system} | {group} | {fmt(scores['precision'])} | {fmt(scores['recall'])} | "
                    f"{fmt(scores['f1'])} | {scores['negatives']} |"
                )
        if joined:
            header = (
                "| joined pairs | shorter side, units (median) | system | precision | recall | wrong links |"
            )
            print(f"\n{header}")
            print("|---:|---:|---|---:|---:|---:|")
        for size, entry in joined.items():
            for system in ("summitwatch", "previous_rule"):
                lead = f"{size} ({entry['combinations']}) | {entry['shorter_side_units_median']}"
                print(score_row(lead, system, entry))
        if merged:
            print("\n| sentences merged | compared | system | precision | recall | wrong links |")
            print("|---:|---|---|---:|---:|---:|")
        for rate, entry in merged.items():
            for kind, scores in entry.items():
                for system in ("summitwatch", "without_split_step"):
                    print(score_row(f"{rate} | {kind}", system, scores))
        print(
            f"\nstream ({streamed['articles']} articles, shuffled, {streamed['seconds']} s): "
            f"pair recall {fmt(streamed['pair_recall'])} ({streamed['pairs_found']}/"
            f"{streamed['translation_pairs']}), link precision {fmt(streamed['link_precision'])} "
            f"({streamed['links_correct']}/{streamed['links_made']})"
        )
        for link in streamed["false_links"]:
            print(f"  false link: {link['article']} -> {link['linked_to']} ({link['label']})")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
