#!/usr/bin/env python3
"""Cost of the near-duplicate lookup as the index grows, in the database and in memory.

For each index size (10k, 100k, 1M stored signatures by default) and each backend:

* ``sqlite`` / ``postgresql``: the project's own schema (Alembic migrations), the real
  ``article_signatures`` / ``article_bands`` tables, queried by
  :func:`pipeline.db.repo.band_candidates`;
* ``datasketch``: ``datasketch.MinHashLSH`` (in-memory, 42 bands x 3 rows, the same
  banding) over the same number of entries, built in a fresh subprocess per size so its
  RSS delta is clean.

What is stored: the 150 original stories of ``tests/fixtures/dedup/stories.jsonl`` with
their real signatures, then synthetic rows up to the size (random 64-bit band keys,
random 504-byte signatures, tiny placeholder article texts), bulk loaded (``COPY`` on
PostgreSQL, ``executemany`` on SQLite). Random keys never collide with real ones, so the
candidates a lookup finds are real stories: its true copies and any other stored story
that shares a band key.

What is timed (``time.perf_counter``, one warm-up pass, then every lookup):

* **lookup** = what :func:`pipeline.ingest.store_candidate` does before verification:
  ``neardup.profile`` + ``signature`` + ``band_keys`` of the new article (**compute**), then
  ``repo.band_candidates`` (**query**). Lookups are the 315 copies in the labelled set
  (real texts in English, Russian, Chinese), so their originals are among the candidates
  (``recall`` checks that).
* **verification**, separately: the loop of ``pipeline.ingest._closest_near_duplicate``
  (``session.get`` of each candidate, ``neardup.profile`` of its text,
  ``verify_profiles``) on a *realistic* candidate count. The count is projected from the
  labelled set: the share of different-story, same-language pairs that share a band key
  (the stored corpus of a topical monitor is one beat, so every stored article is a
  potential false candidate) times the index size, plus the true copies. The loop is
  timed over that many real stored stories.
* **storage**: PostgreSQL ``pg_total_relation_size`` per table (and its indexes);
  SQLite ``dbstat`` per table and index, and the file size. Indexes are built after the
  bulk load (compact); B-trees grown by random inserts in production run ~1.4x larger.
* **per-article overhead** on the extraction benchmark pages
  (``../shared/extraction-benchmark/html``): ``pipeline.extract.extract_page`` versus
  the dedupe compute on the extracted text and one ``band_candidates`` query on the
  largest index of each database.

Writes ``benchmarks/results/dedup_cost.json`` and prints Markdown tables.

Usage::

    python benchmarks/dedup_cost.py                       # 10k, 100k, 1M; all backends
    python benchmarks/dedup_cost.py --sizes 10000,100000 --backends sqlite,datasketch
    python benchmarks/dedup_cost.py --quick               # 1k + 10k, 60 lookups, 30 pages
    python benchmarks/dedup_cost.py --pg-url postgresql+psycopg://user@host/db  # existing server
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

import measure  # noqa: E402  (beside this script: latency summaries and RSS)
import numpy as np  # noqa: E402  (datasketch's dependency, in the dev group)
from sqlalchemy import Engine, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from pipeline import neardup  # noqa: E402
from pipeline.db import repo  # noqa: E402
from pipeline.db.engine import make_engine, session_factory, upgrade_schema  # noqa: E402
from pipeline.db.schema import Article, ArticleBand, ArticleSignature  # noqa: E402

STORIES = REPO_ROOT / "tests" / "fixtures" / "dedup" / "stories.jsonl"
PAGES_DIR = REPO_ROOT.parent / "shared" / "extraction-benchmark" / "html"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "dedup_cost.json"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
BACKENDS = ("sqlite", "postgresql", "datasketch")
PARAMS = neardup.NearDupParams()
SYNTHETIC_SEEN_AT = "2026-01-01 00:00:00.000000"
CHUNK = 100_000  # synthetic articles per bulk-load chunk


# Data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """One labelled story, with what the detector computes from it."""

    story_id: str
    lang: str
    text: str
    cluster: str
    event: str
    original: bool
    shingled: neardup.ShingleProfile
    keys: frozenset[int]
    signature: tuple[int, ...]


def load_stories(path: Path = STORIES) -> list[Story]:
    stories = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text_ = f"{row['title']}\n\n{row['text']}"  # what the detector sees (fixture README)
        shingled = neardup.profile(text_, row["lang"], PARAMS)
        sig = neardup.signature(shingled.shingles, PARAMS)
        stories.append(
            Story(
                row["id"],
                row["lang"],
                text_,
                row["cluster"],
                row["event"],
                row["variant"] == "original",
                shingled,
                frozenset(neardup.band_keys(sig, PARAMS)),
                tuple(sig),
            )
        )
    return stories


def candidate_rates(stories: Sequence[Story]) -> dict[str, Any]:
    """How often two labelled stories share a band key, by kind of pair."""
    kinds: dict[str, list[int]] = {}
    for a, b in itertools.combinations(stories, 2):
        if a.cluster == b.cluster:
            kind = "same_story"
        elif a.lang != b.lang:
            kind = "different_language"
        elif a.event == "template" and b.event == "template":
            kind = "shared_footer"
        elif a.event == b.event:
            kind = "same_event_different_story"
        else:
            kind = "other_story_same_language"
        counts = kinds.setdefault(kind, [0, 0])
        counts[0] += 1
        counts[1] += bool(a.keys & b.keys)
    rates: dict[str, Any] = {
        kind: {"pairs": n, "candidates": c, "rate": c / n} for kind, (n, c) in kinds.items()
    }
    # Every stored article of the same language and beat that is not a copy: same-event and
    # other-event stories together (shared-footer pairs are an adversarial set, reported apart).
    negatives = [kinds.get(k, [0, 0]) for k in ("same_event_different_story", "other_story_same_language")]
    pairs, hits = sum(n for n, _ in negatives), sum(c for _, c in negatives)
    rates["false_candidate_rate"] = {
        "pairs": pairs,
        "candidates": hits,
        "rate": hits / pairs,
        # One-sided 95 % upper bound of a Poisson count (exact for 0..5 hits).
        "rate_upper_95": {0: 3.0, 1: 4.74, 2: 6.30, 3: 7.75, 4: 9.15, 5: 10.51}.get(
            hits, hits + 2 * hits**0.5
        )
        / pairs,
    }
    rates["signature_prefilter"] = containment_prefilter(stories)
    return rates


def containment_prefilter(stories: Sequence[Story]) -> dict[str, Any]:
    """Could the stored signatures screen candidates before their texts are fetched?

    Estimated containment of a pair = estimated overlap / smaller shingle count, where the
    overlap comes from the signatures' estimated Jaccard J and both shingle counts:
    ``J / (1 + J) * (|A| + |B|)``. It needs only the 504-byte signature and a shingle count
    per stored article (the count is not stored today). Reported: its minimum over copy
    pairs and the share of different-story, same-language pairs (shared-footer set
    excluded) it lets through at a few thresholds.
    """
    copies, others = [], []
    for a, b in itertools.combinations(stories, 2):
        if a.lang != b.lang or (a.cluster != b.cluster and a.event == b.event == "template"):
            continue
        jaccard = neardup.estimate_jaccard(a.signature, b.signature)
        size_a, size_b = len(a.shingled.shingles), len(b.shingled.shingles)
        estimate = jaccard / (1 + jaccard) * (size_a + size_b) / min(size_a, size_b)
        (copies if a.cluster == b.cluster else others).append(estimate)
    return {
        "copy_pairs": len(copies),
        "copy_min_estimated_containment": round(min(copies), 4),
        "different_story_pairs": len(others),
        "different_story_max_estimated_containment": round(max(others), 4),
        "different_story_share_passing": {
            str(t): round(sum(e >= t for e in others) / len(others), 6) for t in (0.1, 0.15, 0.2, 0.3)
        },
        "copy_share_passing": {
            str(t): round(sum(e >= t for e in copies) / len(copies), 6) for t in (0.1, 0.15, 0.2, 0.3)
        },
    }


def page_files(limit: int | None) -> list[Path]:
    files = sorted(PAGES_DIR.glob("*.html.gz"))
    return files if limit is None else files[:limit]


# Statistics -------------------------------------------------------------------------------


summary = measure.summary
rss_bytes = measure.rss_bytes


# Database backends ------------------------------------------------------------------------


class DatabaseIndex:
    """The project's schema on one database, filled with real stories then synthetic rows."""

    def __init__(self, kind: str, url: str, sqlite_path: Path | None = None) -> None:
        self.kind, self.url, self.sqlite_path = kind, url, sqlite_path
        self.engine: Engine = make_engine(url)
        upgrade_schema(self.engine)
        self.stored = 0
        self.real_ids: dict[str, int] = {}
        self.rng = np.random.default_rng(20260101)

    def close(self) -> None:
        self.engine.dispose()

    def store_real(self, stories: Sequence[Story]) -> None:
        """The original stories, with their true signatures, as ids 1..n."""
        with session_factory(self.engine)() as session:
            for number, story in enumerate(stories, 1):
                session.add(
                    Article(
                        id=number,
                        text=story.text,
                        lang=story.lang,
                        content_hash=f"real-{story.story_id}",
                        word_count=len(story.text.split()),
                    )
                )
                session.flush()
                repo.store_signature(
                    session,
                    number,
                    PARAMS.scheme,
                    neardup.signature_to_bytes(story.signature),
                    sorted(story.keys),
                )
                self.real_ids[story.story_id] = number
            session.commit()
        self.stored = len(stories)

    def grow_to(self, size: int) -> float:
        """Bulk-load synthetic rows until ``size`` signatures are stored; returns seconds."""
        if size <= self.stored:
            return 0.0
        started = time.perf_counter()
        self.engine.dispose()
        if self.kind == "sqlite":
            self._grow_sqlite(size)
        else:
            self._grow_postgresql(size)
        self.stored = size
        return time.perf_counter() - started

    def _synthetic_chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, bytes]]:
        """(article ids, band keys [n x bands], packed signatures) per chunk."""
        for start in range(self.stored + 1, size + 1, CHUNK):
            ids = np.arange(start, min(start + CHUNK, size + 1), dtype=np.int64)
            keys = self.rng.integers(-(2**63), 2**63 - 1, size=(len(ids), PARAMS.bands), dtype=np.int64)
            signatures = self.rng.bytes(len(ids) * PARAMS.num_perm * 4)
            yield ids, keys, signatures

    def _grow_sqlite(self, size: int) -> None:
        assert self.sqlite_path is not None
        width = PARAMS.num_perm * 4
        connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute("PRAGMA cache_size=-1000000")  # 1 GB page cache while loading
            connection.execute("DROP INDEX ix_article_bands_article_id")
            connection.execute("BEGIN")
            band_ids, band_keys = [], []
            for ids, keys, signatures in self._synthetic_chunks(size):
                id_list = ids.tolist()
                connection.executemany(
                    "INSERT INTO articles (id, text, lang, first_seen_at, content_hash, is_seed, word_count)"
                    " VALUES (?, 'synthetic', 'en', ?, ?, 0, 0)",
                    ((i, SYNTHETIC_SEEN_AT, f"{i:064x}") for i in id_list),
                )
                connection.executemany(
                    "INSERT INTO article_signatures (article_id, scheme, signature) VALUES (?, ?, ?)",
                    (
                        (i, PARAMS.scheme, signatures[n * width : (n + 1) * width])
                        for n, i in enumerate(id_list)
                    ),
                )
                band_ids.append(np.repeat(ids, PARAMS.bands))
                band_keys.append(keys.reshape(-1))
            all_ids, all_keys = np.concatenate(band_ids), np.concatenate(band_keys)
            del band_ids, band_keys
            # In key order, the primary-key B-tree (band_key, article_id) is filled front to
            # back instead of at random places: the load stays fast at 42M rows.
            order = np.argsort(all_keys, kind="stable")
            all_ids, all_keys = all_ids[order], all_keys[order]
            del order
            for start in range(0, len(all_ids), 1_000_000):
                connection.executemany(
                    "INSERT INTO article_bands (band_key, article_id) VALUES (?, ?)",
                    zip(
                        all_keys[start : start + 1_000_000].tolist(),
                        all_ids[start : start + 1_000_000].tolist(),
                        strict=True,
                    ),
                )
            connection.execute("CREATE INDEX ix_article_bands_article_id ON article_bands (article_id)")
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _grow_postgresql(self, size: int) -> None:
        import psycopg

        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        band_row = np.dtype([("n", ">i2"), ("l1", ">i4"), ("key", ">i8"), ("l2", ">i4"), ("id", ">i4")])
        header, trailer = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0), struct.pack(">h", -1)
        with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
            # Loading, not ingesting: no per-row foreign-key triggers, indexes rebuilt after.
            cursor.execute("SET session_replication_role = replica")
            cursor.execute("SET maintenance_work_mem = '1GB'")
            cursor.execute("ALTER TABLE article_bands DROP CONSTRAINT pk_article_bands")
            cursor.execute("DROP INDEX ix_article_bands_article_id")
            for ids, keys, signatures in self._synthetic_chunks(size):
                id_list = ids.tolist()
                width = PARAMS.num_perm * 4
                with cursor.copy(
                    "COPY articles (id, text, lang, first_seen_at, content_hash, is_seed, word_count)"
                    " FROM STDIN"
                ) as copy:
                    for i in id_list:
                        copy.write_row(
                            (i, "synthetic", "en", SYNTHETIC_SEEN_AT + "+00", f"{i:064x}", False, 0)
                        )
                with cursor.copy(
                    "COPY article_signatures (article_id, scheme, signature) FROM STDIN"
                ) as copy:
                    for n, i in enumerate(id_list):
                        copy.write_row((i, PARAMS.scheme, signatures[n * width : (n + 1) * width]))
                rows = np.empty(keys.size, dtype=band_row)
                rows["n"], rows["l1"], rows["l2"] = 2, 8, 4
                rows["key"] = keys.reshape(-1)
                rows["id"] = np.repeat(ids, PARAMS.bands)
                with cursor.copy(
                    "COPY article_bands (band_key, article_id) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.write(header + rows.tobytes() + trailer)
            cursor.execute(
                "ALTER TABLE article_bands ADD CONSTRAINT pk_article_bands PRIMARY KEY (band_key, article_id)"
            )
            cursor.execute("CREATE INDEX ix_article_bands_article_id ON article_bands (article_id)")
            cursor.execute("SET session_replication_role = DEFAULT")
            connection.commit()
            connection.autocommit = True
            cursor.execute("VACUUM ANALYZE articles")
            cursor.execute("VACUUM ANALYZE article_signatures")
            cursor.execute("VACUUM ANALYZE article_bands")

    def storage(self) -> dict[str, Any]:
        tables = ("article_bands", "article_signatures", "articles")
        with self.engine.connect() as connection:
            if self.kind == "postgresql":
                sizes: dict[str, Any] = {}
                for table in tables:
                    total, heap = connection.execute(
                        text("SELECT pg_total_relation_size(:t), pg_relation_size(:t)"), {"t": table}
                    ).one()
                    indexes = dict(
                        connection.execute(
                            text(
                                "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
                                " WHERE relname = :t ORDER BY indexrelname"
                            ),
                            {"t": table},
                        ).all()
                    )
                    sizes[table] = {"total_bytes": int(total), "heap_bytes": int(heap), "indexes": indexes}
                database = connection.execute(
                    text("SELECT pg_database_size(current_database())")
                ).scalar_one()
                return {"tables": sizes, "database_bytes": int(database)}
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            rows = connection.exec_driver_sql(
                "SELECT d.name, m.tbl_name, SUM(d.pgsize) FROM dbstat AS d"
                " LEFT JOIN sqlite_schema AS m ON m.name = d.name GROUP BY d.name"
            ).all()
        sizes = {}
        for name, table, size in rows:
            owner = table or name
            if owner not in tables:
                continue
            entry = sizes.setdefault(owner, {"total_bytes": 0, "heap_bytes": 0, "indexes": {}})
            entry["total_bytes"] += int(size)
            if name == owner:
                entry["heap_bytes"] = int(size)
            else:
                entry["indexes"][name] = int(size)
        assert self.sqlite_path is not None
        return {"tables": sizes, "database_bytes": self.sqlite_path.stat().st_size}

    def plans(self) -> dict[str, list[str]]:
        """The query plans of the current and the proposed band lookup."""
        keys = [int(k) for k in self.rng.integers(-(2**63), 2**63 - 1, size=PARAMS.bands, dtype=np.int64)]
        prefix = "EXPLAIN QUERY PLAN " if self.kind == "sqlite" else "EXPLAIN "
        plans = {}
        with self.engine.connect() as connection:
            for name, query in (
                ("current", current_query(keys, PARAMS.scheme)),
                ("proposed", proposed_query(keys, PARAMS.scheme)),
            ):
                compiled = query.compile(self.engine, compile_kwargs={"literal_binds": True})
                rows = connection.execute(text(prefix + str(compiled))).all()
                # The 42 literal keys say nothing about the plan; keep the lines short.
                plans[name] = [re.sub(r"'\{[^}]*\}'", "'{...}'", str(row[-1])) for row in rows]
        return plans


def current_query(keys: Sequence[int], scheme: str) -> Any:
    """The statement of ``repo.band_candidates`` (for EXPLAIN)."""
    return (
        select(ArticleBand.article_id)
        .join(ArticleSignature, ArticleSignature.article_id == ArticleBand.article_id)
        .where(ArticleBand.band_key.in_(list(keys)), ArticleSignature.scheme == scheme)
        .distinct()
        .order_by(ArticleBand.article_id)
    )


def proposed_query(keys: Sequence[int], scheme: str) -> Any:
    """The statement proposed for ``repo.band_candidates`` (see band_candidates_proposed)."""
    sharing = select(ArticleBand.article_id).where(ArticleBand.band_key.in_(list(keys)))
    return (
        select(ArticleSignature.article_id)
        .where(ArticleSignature.article_id.in_(sharing), ArticleSignature.scheme == scheme)
        .order_by(ArticleSignature.article_id)
    )


def verify_candidates(
    session: Session, shingled: neardup.ShingleProfile, candidate_ids: Sequence[int]
) -> tuple[int, float] | None:
    """The verification loop of ``pipeline.ingest._closest_near_duplicate``, on given ids."""
    best: tuple[float, float, int] | None = None
    best_article: Article | None = None
    for candidate_id in candidate_ids:
        other = session.get(Article, candidate_id)
        if other is None:
            continue
        verdict = neardup.verify_profiles(shingled, neardup.profile(other.text, other.lang, PARAMS), PARAMS)
        if not verdict.is_duplicate:
            continue
        rank = (round(verdict.jaccard, 3), round(verdict.similarity, 3), -candidate_id)
        if best is None or rank > best:
            best, best_article = rank, other
    if best is None or best_article is None:
        return None
    return best_article.duplicate_of_id or best_article.id, round(best[1], 4)


def band_candidates_proposed(session: Session, keys: Sequence[int], scheme: str) -> list[int]:
    """The fix proposed for ``repo.band_candidates``: the same ids, driven by the band keys.

    ``repo.band_candidates`` joins ``article_bands`` to ``article_signatures`` and filters
    on ``scheme``; SQLite (no ``ANALYZE`` statistics) then scans every signature through
    ``ix_article_signatures_scheme`` and probes the bands for each: linear in the index
    size. Asking for the signatures whose id is *in* the band-key hits lets both databases
    start from the 42 primary-key probes.
    """
    if not keys:
        return []
    query = proposed_query(keys, scheme)
    return list(session.scalars(query))


def measure_database(
    index: DatabaseIndex,
    lookups: Sequence[Story],
    stored: Sequence[Story],
    expected_false: float,
    slow_budget_seconds: float,
) -> dict[str, Any]:
    """Lookups and verification against ``index`` at its current size.

    Both the current ``repo.band_candidates`` and the proposed query run on every lookup,
    except that the current one stops being timed once it has used ``slow_budget_seconds``
    (after at least 10 lookups): on SQLite it takes seconds per lookup at 1M.
    """
    originals = {story.cluster: index.real_ids[story.story_id] for story in stored}
    compute_ms, query_ms, proposed_ms, verify_ms, candidates = [], [], [], [], []
    lookup_ms, lookup_proposed_ms = [], []
    hits = mismatches = 0
    spent = 0.0
    with session_factory(index.engine)() as session:
        for story in lookups[:5]:  # warm-up: connection, statement cache, hot index pages
            band_candidates_proposed(session, sorted(story.keys), PARAMS.scheme)
            if slow_budget_seconds > 0:
                repo.band_candidates(session, sorted(story.keys), PARAMS.scheme)
        session.rollback()
        for story in lookups:
            session.rollback()
            session.expunge_all()
            started = time.perf_counter()
            shingled = neardup.profile(story.text, story.lang, PARAMS)
            sig = neardup.signature(shingled.shingles, PARAMS)
            keys = neardup.band_keys(sig, PARAMS)
            computed = time.perf_counter()
            found = band_candidates_proposed(session, keys, PARAMS.scheme)
            queried = time.perf_counter()
            verify_candidates(session, shingled, found)
            verified = time.perf_counter()
            compute_ms.append((computed - started) * 1000)
            proposed_ms.append((queried - computed) * 1000)
            lookup_proposed_ms.append((queried - started) * 1000)
            verify_ms.append((verified - queried) * 1000)
            candidates.append(len(found))
            hits += originals.get(story.cluster) in found
            if slow_budget_seconds > 0 and (len(query_ms) < 10 or spent < slow_budget_seconds):
                session.rollback()
                begun = time.perf_counter()
                current = repo.band_candidates(session, keys, PARAMS.scheme)
                elapsed = time.perf_counter() - begun
                spent += elapsed
                query_ms.append(elapsed * 1000)
                lookup_ms.append(compute_ms[-1] + elapsed * 1000)
                mismatches += current != found
        session.rollback()
        realistic = measure_realistic_verification(session, index, lookups, stored, expected_false)
    return {
        "stored_signatures": index.stored,
        "lookups": len(lookups),
        "lookup_ms": summary(lookup_ms),
        "lookup_proposed_ms": summary(lookup_proposed_ms),
        "compute_ms": summary(compute_ms),
        "query_ms": summary(query_ms),
        "query_proposed_ms": summary(proposed_ms),
        "proposed_differs_from_current": mismatches,
        "candidates": {
            "mean": round(statistics.fmean(candidates), 3),
            "p95": summary([float(c) for c in candidates]).get("p95"),
            "max": max(candidates),
        },
        "recall_of_original": round(hits / len(lookups), 4),
        "verification_of_found_candidates_ms": summary(verify_ms),
        "verification_realistic": realistic,
    }


def measure_realistic_verification(
    session: Session,
    index: DatabaseIndex,
    lookups: Sequence[Story],
    stored: Sequence[Story],
    expected_false: float,
) -> dict[str, Any]:
    """Verification of each lookup against its true copies plus the projected false candidates."""
    false_count = round(expected_false)
    timings, counts = [], []
    for story in lookups:
        true_ids = [index.real_ids[s.story_id] for s in stored if s.cluster == story.cluster]
        others = sorted(
            (s for s in stored if s.cluster != story.cluster and s.event != "template"),
            key=lambda s: (s.lang != story.lang, s.story_id),
        )
        false_ids = [index.real_ids[s.story_id] for s in others[:false_count]]
        ids = sorted(true_ids + false_ids)
        session.rollback()
        session.expunge_all()
        shingled = neardup.profile(story.text, story.lang, PARAMS)
        started = time.perf_counter()
        verify_candidates(session, shingled, ids)
        timings.append((time.perf_counter() - started) * 1000)
        counts.append(len(ids))
    session.rollback()
    per_candidate = sum(timings) / max(1, sum(counts))
    return {
        "projected_false_candidates": round(expected_false, 2),
        "false_candidates_used": false_count,
        "candidates_mean": round(statistics.fmean(counts), 2),
        "verification_ms": summary(timings),
        "per_candidate_ms": round(per_candidate, 4),
    }


# In-memory backend ------------------------------------------------------------------------


def datasketch_worker(size: int, lookup_limit: int | None) -> dict[str, Any]:
    """Build a MinHashLSH of ``size`` entries in this (fresh) process and measure it."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    stories = load_stories()
    stored = [s for s in stories if s.original]
    lookups = [s for s in stories if not s.original][:lookup_limit]

    def grams(story: Story) -> list[bytes]:
        # The pipeline's own shingling (the private helper behind neardup.profile).
        return [gram.encode("utf-8") for gram in neardup._grams(story.text, story.lang, PARAMS)]

    def minhash(story: Story) -> Any:
        sketch = MinHash(num_perm=PARAMS.num_perm, seed=PARAMS.seed)
        sketch.update_batch(grams(story))
        return sketch

    stored_sketches = [(s, minhash(s)) for s in stored]
    rng = np.random.default_rng(20260101)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=PARAMS.num_perm, params=(PARAMS.bands, PARAMS.rows))
    for story, sketch in stored_sketches:
        lsh.insert(f"real:{story.story_id}", sketch, check_duplication=False)
    remaining = size - len(stored_sketches)
    with lsh.insertion_session(buffer_size=50_000) as session:
        for start in range(0, remaining, CHUNK):
            values = rng.integers(0, 2**32 - 1, size=(min(CHUNK, remaining - start), PARAMS.num_perm))
            for offset, row in enumerate(values.astype(np.uint32)):
                sketch = LeanMinHash(seed=PARAMS.seed, hashvalues=row, scheme="affine32")
                session.insert(start + offset, sketch, check_duplication=False)
            del values
    build_seconds = time.perf_counter() - started
    gc.collect()
    delta = rss_bytes() - before
    original_of = {s.cluster: f"real:{s.story_id}" for s in stored}
    for story in lookups[:5]:
        lsh.query(minhash(story))
    compute_ms, query_ms, lookup_ms, candidates, hits = [], [], [], [], 0
    for story in lookups:
        begun = time.perf_counter()
        sketch = minhash(story)
        computed = time.perf_counter()
        found = lsh.query(sketch)
        done = time.perf_counter()
        compute_ms.append((computed - begun) * 1000)
        query_ms.append((done - computed) * 1000)
        lookup_ms.append((done - begun) * 1000)
        candidates.append(len(found))
        hits += original_of.get(story.cluster) in found
    return {
        "stored_signatures": size,
        "lookups": len(lookups),
        "lookup_ms": summary(lookup_ms),
        "compute_ms": summary(compute_ms),
        "query_ms": summary(query_ms),
        "candidates": {"mean": round(statistics.fmean(candidates), 3), "max": max(candidates)},
        "recall_of_original": round(hits / len(lookups), 4),
        "rss_delta_bytes": delta,
        "rss_bytes_per_entry": round(delta / size, 1),
        "build_seconds": round(build_seconds, 2),
    }


def run_datasketch(size: int, lookup_limit: int | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--datasketch-worker", str(size)]
    if lookup_limit:
        command += ["--lookups", str(lookup_limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"stored_signatures": size, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# Per-article overhead ---------------------------------------------------------------------


def measure_pages(files: Sequence[Path]) -> dict[str, Any]:
    """Extraction versus dedupe compute on the extraction benchmark pages, interleaved."""
    from datasketch import MinHash

    from pipeline.extract import extract_page

    pages = [gzip.decompress(path.read_bytes()) for path in files]
    extract_page(pages[0])  # warm-up
    extract_ms, dedupe_ms, datasketch_ms, shingle_counts, keys_per_page = [], [], [], [], []
    for html in pages:
        started = time.perf_counter()
        page = extract_page(html)
        extracted = time.perf_counter()
        shingled = neardup.profile(page.text, page.lang_hint, PARAMS)
        sig = neardup.signature(shingled.shingles, PARAMS) if shingled.shingles else []
        keys = neardup.band_keys(sig, PARAMS)
        signed = time.perf_counter()
        sketch = MinHash(num_perm=PARAMS.num_perm, seed=PARAMS.seed)
        sketch.update_batch([g.encode("utf-8") for g in neardup._grams(page.text, page.lang_hint, PARAMS)])
        sketched = time.perf_counter()
        extract_ms.append((extracted - started) * 1000)
        dedupe_ms.append((signed - extracted) * 1000)
        datasketch_ms.append((sketched - signed) * 1000)
        shingle_counts.append(len(shingled.shingles))
        keys_per_page.append(keys)
    return {
        "pages": len(pages),
        "extract_page_ms": summary(extract_ms),
        "dedupe_compute_ms": summary(dedupe_ms),
        "datasketch_minhash_ms": summary(datasketch_ms),
        "shingles": summary([float(n) for n in shingle_counts]),
        "dedupe_over_extract_mean": round(statistics.fmean(dedupe_ms) / statistics.fmean(extract_ms), 4),
        "_keys": keys_per_page,
    }


def measure_page_queries(
    index: DatabaseIndex, keys_per_page: Sequence[Sequence[int]], slow_budget_seconds: float
) -> dict[str, Any]:
    current, proposed = [], []
    spent = 0.0
    with session_factory(index.engine)() as session:
        for keys in keys_per_page:
            session.rollback()
            started = time.perf_counter()
            band_candidates_proposed(session, keys, PARAMS.scheme)
            proposed.append((time.perf_counter() - started) * 1000)
            if slow_budget_seconds > 0 and (len(current) < 10 or spent < slow_budget_seconds):
                session.rollback()
                started = time.perf_counter()
                repo.band_candidates(session, keys, PARAMS.scheme)
                elapsed = time.perf_counter() - started
                spent += elapsed
                current.append(elapsed * 1000)
        session.rollback()
    return {
        "stored_signatures": index.stored,
        "query_ms": summary(current),
        "query_proposed_ms": summary(proposed),
    }


# Running ----------------------------------------------------------------------------------


@contextmanager
def database_url(kind: str, workdir: Path, pg_url: str | None) -> Iterator[tuple[str, Path | None]]:
    if kind == "sqlite":
        path = workdir / "dedup_cost.db"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}", path
        return
    if pg_url:
        yield pg_url, None
        return
    from tests.postgres_server import temporary_cluster

    with temporary_cluster() as url:
        yield url, None


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    backends = [b.strip() for b in args.backends.split(",")]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backend(s): {', '.join(sorted(unknown))}")
    stories = load_stories()
    stored = [s for s in stories if s.original]
    lookups = [s for s in stories if not s.original][: args.lookups]
    if sizes[0] < len(stored):
        raise SystemExit(f"the smallest size must hold the {len(stored)} real stories")
    rates = candidate_rates(stories)
    false_rate = rates["false_candidate_rate"]["rate"]
    print(f"{len(stored)} stored stories, {len(lookups)} lookups; false-candidate rate {false_rate:.2e}")
    result: dict[str, Any] = {
        "benchmark": "dedup_cost",
        "environment": environment(),
        "params": {"scheme": PARAMS.scheme, "num_perm": PARAMS.num_perm, "bands": PARAMS.bands},
        "data": {
            "stored_real_stories": len(stored),
            "lookups": len(lookups),
            "synthetic_rows": "random band keys and signatures, placeholder article text",
            "stories": str(STORIES.relative_to(REPO_ROOT)),
        },
        "candidate_rates": rates,
        "timing": "time.perf_counter per lookup, in-process; 5 warm-up lookups; fresh transaction per lookup",
        "backends": {},
    }
    files = page_files(args.pages)
    overhead: dict[str, Any] = {}
    if files:
        print(f"extraction vs dedupe on {len(files)} pages...")
        overhead = measure_pages(files)
    keys_per_page = overhead.pop("_keys", [])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup-cost-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for backend in backends:
            rows: list[dict[str, Any]] = []
            result["backends"][backend] = rows
            if backend == "datasketch":
                projected_gb = 0.0
                for size in sizes:
                    if projected_gb > args.datasketch_max_gb:
                        rows.append(
                            {
                                "stored_signatures": size,
                                "skipped": f"projected RSS {projected_gb:.1f} GB > --datasketch-max-gb",
                                "projected_rss_bytes": int(projected_gb * 1e9),
                            }
                        )
                        continue
                    print(f"datasketch: {size} entries...")
                    row = run_datasketch(size, args.lookups)
                    rows.append(row)
                    per_entry = row.get("rss_bytes_per_entry", 0)
                    next_sizes = [s for s in sizes if s > size]
                    projected_gb = per_entry * next_sizes[0] / 1e9 if next_sizes else 0.0
                continue
            with database_url(backend, workdir, args.pg_url) as (url, path):
                index = DatabaseIndex(backend, url, path)
                try:
                    index.store_real(stored)
                    for size in sizes:
                        print(f"{backend}: loading to {size} signatures...")
                        load_seconds = index.grow_to(size)
                        print(f"{backend}: {size} loaded in {load_seconds:.0f} s; measuring...")
                        if path is not None and args.warm_cache:
                            with path.open("rb") as database_file:  # into the OS page cache
                                while database_file.read(1 << 24):
                                    pass
                        row = measure_database(
                            index, lookups, stored, false_rate * size, args.slow_query_budget
                        )
                        row["load_seconds"] = round(load_seconds, 1)
                        row["storage"] = index.storage()
                        row["query_plans"] = index.plans()
                        rows.append(row)
                    if keys_per_page:
                        overhead.setdefault("band_query_on_largest_index", {})[backend] = (
                            measure_page_queries(index, keys_per_page, args.slow_query_budget)
                        )
                finally:
                    index.close()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result["per_article_overhead"] = overhead
    return result


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("sqlalchemy", "psycopg", "datasketch", "numpy", "trafilatura"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **versions,
    }


# Reporting --------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f}" if value >= 1e7 else f"{value / 1e6:,.1f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "### Near-duplicate lookup: compute signature + band keys, then query the candidates",
        "",
        "| backend | stored | compute p50 ms | query p50 ms | query p95 ms | lookup p50 ms | lookup p95 ms "
        "| proposed query p50 ms | proposed query p95 ms | candidates mean | recall | index size MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in result["backends"].items():
        for row in rows:
            if "lookup_ms" not in row:
                reason = row.get("skipped") or row.get("error")
                lines.append(f"| {backend} | {row['stored_signatures']:,} | {reason} |||||||||||")
                continue
            if "storage" in row:
                tables = row["storage"]["tables"]
                size = sum(tables[t]["total_bytes"] for t in ("article_bands", "article_signatures"))
                proposed = row["query_proposed_ms"]
                proposed_cells = f"{proposed['p50']:.3f} | {proposed['p95']:.3f}"
                n_current = row["query_ms"]["n"]
                note = "" if n_current == row["lookups"] else f" (n={n_current})"
                if not n_current:
                    row = {**row, "query_ms": {"p50": math.nan, "p95": math.nan}}
                    row["lookup_ms"] = {"p50": math.nan, "p95": math.nan}
                    note = " (not timed)"
            else:
                size = row["rss_delta_bytes"]
                proposed_cells, note = "– | –", ""
            lines.append(
                f"| {backend} | {row['stored_signatures']:,} | {row['compute_ms']['p50']:.2f} "
                f"| {row['query_ms']['p50']:.3f}{note} | {row['query_ms']['p95']:.3f} "
                f"| {row['lookup_ms']['p50']:.2f} | {row['lookup_ms']['p95']:.2f} | {proposed_cells} "
                f"| {row['candidates']['mean']:.2f} | {row['recall_of_original']:.3f} | {_mb(size)} |"
            )
    lines += [
        "",
        "Index size: `pg_total_relation_size` / SQLite `dbstat` of `article_bands` + "
        "`article_signatures` (tables and their indexes); for datasketch the process RSS delta.",
        "",
        "### Verification on a realistic candidate count (true copies + projected false candidates)",
        "",
        "| backend | stored | projected false candidates | candidates verified | verify p50 ms "
        "| verify p95 ms | per candidate ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in result["backends"].items():
        for row in rows:
            real = row.get("verification_realistic")
            if not real:
                continue
            lines.append(
                f"| {backend} | {row['stored_signatures']:,} | {real['projected_false_candidates']:.1f} "
                f"| {real['candidates_mean']:.1f} | {real['verification_ms']['p50']:.1f} "
                f"| {real['verification_ms']['p95']:.1f} | {real['per_candidate_ms']:.2f} |"
            )
    rate = result["candidate_rates"]["false_candidate_rate"]
    lines += [
        "",
        f"False-candidate rate (different story, same language, labelled set): {rate['rate']:.2e} "
        f"({rate['candidates']}/{rate['pairs']} pairs; 95 % upper bound {rate['rate_upper_95']:.1e}).",
    ]
    overhead = result.get("per_article_overhead") or {}
    if overhead:
        lines += [
            "",
            f"### Per-article overhead on {overhead['pages']} extraction-benchmark pages",
            "",
            "| step | p50 ms | p95 ms | mean ms |",
            "|---|---:|---:|---:|",
        ]
        steps = [
            ("extract_page", overhead["extract_page_ms"]),
            ("neardup profile + signature + band_keys", overhead["dedupe_compute_ms"]),
            ("(datasketch MinHash of the same shingles)", overhead["datasketch_minhash_ms"]),
        ]
        for backend, entry in overhead.get("band_query_on_largest_index", {}).items():
            where = f"{backend}, {entry['stored_signatures']:,} stored"
            if entry["query_ms"].get("n"):
                steps.append((f"repo.band_candidates (current), {where}", entry["query_ms"]))
            steps.append((f"proposed band query, {where}", entry["query_proposed_ms"]))
        for name, stats in steps:
            lines.append(f"| {name} | {stats['p50']:.2f} | {stats['p95']:.2f} | {stats['mean']:.2f} |")
        lines.append("")
        lines.append(f"Dedupe compute / extraction (means): {overhead['dedupe_over_extract_mean']:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--quick", action="store_true", help="sizes 1000,10000; 60 lookups; 30 pages")
    parser.add_argument("--lookups", type=int, default=None, help="limit the lookups (default: all 315)")
    parser.add_argument("--pages", type=int, default=None, help="limit the extraction pages (0: skip)")
    parser.add_argument("--pg-url", default=None, help="use this PostgreSQL instead of a temporary one")
    parser.add_argument("--workdir", default=None, help="keep the SQLite file here")
    parser.add_argument("--datasketch-max-gb", type=float, default=8.0)
    parser.add_argument(
        "--warm-cache", action="store_true", help="read the SQLite file once before measuring"
    )
    parser.add_argument(
        "--slow-query-budget",
        type=float,
        default=60.0,
        help="seconds per size for timing the current repo.band_candidates (at least 10 lookups; 0: skip it)",
    )
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--datasketch-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rates-only", action="store_true", help="only recompute the labelled-set candidate analysis"
    )
    args = parser.parse_args()
    if args.rates_only:
        # Recompute the labelled-set analysis (no databases) into an existing result file.
        output = Path(args.output)
        result = json.loads(output.read_text(encoding="utf-8"))
        result["candidate_rates"] = candidate_rates(load_stories())
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(json.dumps(result["candidate_rates"], indent=2))
        return 0
    if args.datasketch_worker:
        print(json.dumps(datasketch_worker(args.datasketch_worker, args.lookups)))
        return 0
    if args.quick:
        args.sizes = ",".join(str(s) for s in QUICK_SIZES)
        args.lookups = args.lookups or 60
        args.pages = 30 if args.pages is None else args.pages
    result = run(args)
    result["command"] = " ".join(["python", "benchmarks/dedup_cost.py", *sys.argv[1:]])
    result["slow_query_budget_seconds"] = args.slow_query_budget
    result["warm_cache"] = args.warm_cache
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print(markdown(result))
    print(f"\nwritten {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
