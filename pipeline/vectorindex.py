"""The candidate lookup for translations: stored document vectors near a moment in time.

The database is the shared index (``article_vectors``, every worker sees the same rows);
each process keeps, for the run it serves, the days it has read, so a cycle of hundreds
of items reads each day's vectors once instead of once per item. What this process
stores is added as it is stored (:meth:`VectorIndex.add`). What others stored in the
meantime is picked up by one primary-key range query (rows with an id above the largest
this reader has seen), run by a lookup at most every ``refresh_seconds`` (default 1 s), so
a translation another worker committed a second ago is a candidate too. (Its rows were
invisible for as long as its batch was open anyway: up to 2 s.)

Ids are not committed in the order they are handed out: on PostgreSQL a batch that took id
100 can commit after one that took 101, so "above the largest id seen" alone would skip
100 for the rest of the run. So each refresh reads the committed article ids above that
largest id first (the primary key only), and an id below the largest that is missing
there — taken by a transaction still open, or by one rolled back, which leaves it unused
for good — is looked for again by every refresh for ``GAP_SECONDS`` (longer than any
batch stays open), and its vectors read when it appears. The first read does the same
for the latest ``RECENT_IDS`` ids below the largest.

Scoring is a matrix product per day (float32), so a lookup over a window of tens of
thousands of vectors costs milliseconds once the days are loaded.

The window assumes both articles' moments are publication times. An article whose page
gave none has only the moment it was first seen, which for an archive imported today says
nothing about when it was written. So the window is not applied to it, on either side:

* a stored undated article is a candidate for every lookup (like a seed), among the
  ``undated_scope`` latest undated articles;
* an undated query is compared with the ``undated_scope`` latest stored articles, whatever
  their moment, as well as with its window.

Both pools are read once per process, at the first lookup that needs them, and kept up to
date like the days.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from pipeline.db import repo
from pipeline.encoder import document_from_bytes

# How long an article id that was skipped by a refresh (below the largest id read, not
# committed) is looked for: far longer than a batch's transaction stays open (a few
# seconds). An id still missing then was rolled back (or its batch is stuck), and is
# dropped from the look-ups.
GAP_SECONDS = 300.0
# At most this many skipped ids are looked for (the oldest dropped first): a rolled-back
# import of thousands of articles leaves as many unused ids, all of them skipped. Each
# refresh looks them up 500 at a time; batches open at once hold far fewer (25 items a
# batch by default).
MAX_GAPS = 2_000
# The first read looks for skipped ids among this many ids below the largest (the batches
# still open when a reader starts hold the latest ids).
RECENT_IDS = 1_000


_Array = TypeVar("_Array", NDArray[np.float32], NDArray[np.float64], NDArray[np.str_])


@dataclass(frozen=True)
class Candidate:
    """A stored article close to the query: its id, the root of its copy cluster, its score.

    ``root_id`` is the root when the row was read: a later fold can have changed it, so
    linking reads roots from the database (:func:`pipeline.db.repo.current_roots`).
    """

    article_id: int
    root_id: int
    lang: str
    score: float


@dataclass
class _Day:
    """The vectors of one day, appended to as rows arrive, stacked into arrays on use.

    The arrays grow in place (their capacity doubles): a row added to a busy day is
    decoded into the next free slot, not the whole day stacked again. A dropped row (a
    replaced version) restacks the day.
    """

    rows: list[repo.VectorRow] = field(default_factory=list)
    # (vectors, moments, languages) with room to grow; rows[:_stacked] are in them
    _arrays: tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.str_]] | None = None
    _stacked: int = 0

    @property
    def ids(self) -> list[int]:
        return [row.article_id for row in self.rows]

    def add(self, row: repo.VectorRow) -> None:
        self.rows.append(row)

    def drop(self, article_id: int) -> repo.VectorRow | None:
        """Remove the row of ``article_id``; returns it (``None`` when there was none)."""
        for position, row in enumerate(self.rows):
            if row.article_id == article_id:
                del self.rows[position]
                self._arrays, self._stacked = None, 0
                return row
        return None

    def arrays(self, dim: int) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.str_]]:
        """(vectors, moments as POSIX seconds, languages), one entry per row."""
        count = len(self.rows)
        if self._arrays is None:
            capacity = max(16, count)
            self._arrays = (
                np.zeros((capacity, dim), dtype=np.float32),
                np.zeros(capacity, dtype=np.float64),
                np.zeros(capacity, dtype=LANG_DTYPE),
            )
        vectors, moments, langs = self._arrays
        if self._stacked < count:
            if count > len(vectors):
                capacity = max(count, 2 * len(vectors))
                vectors, moments, langs = (
                    _grown(vectors, capacity),
                    _grown(moments, capacity),
                    _grown(langs, capacity),
                )
                self._arrays = (vectors, moments, langs)
            new = self.rows[self._stacked :]
            # One decode of the new rows' bytes, not one small array per row.
            vectors[self._stacked : count] = document_from_bytes(
                b"".join(row.document for row in new)
            ).reshape(len(new), -1)
            moments[self._stacked : count] = [_aware(row.moment).timestamp() for row in new]
            langs[self._stacked : count] = [row.lang for row in new]
            self._stacked = count
        return vectors[:count], moments[:count], langs[:count]


# Language codes as stored (``articles.lang`` is 16 characters at most).
LANG_DTYPE = np.dtype("<U16")


def _grown(array: _Array, capacity: int) -> _Array:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class _Pool:
    """Rows looked up whatever their moment, in blocks, so that a row added to a large pool
    restacks one block, not the pool."""

    BLOCK = 4096

    def __init__(self, rows: Iterable[repo.VectorRow] = (), *, floor: int = 0) -> None:
        self.blocks: list[_Day] = []
        self.members: set[int] = set()
        self.floor = floor  # rows with a higher id were stored after the pool was read
        for row in rows:
            self.add(row)

    def add(self, row: repo.VectorRow) -> None:
        if row.article_id in self.members:
            return
        self.members.add(row.article_id)
        if not self.blocks or len(self.blocks[-1].rows) >= self.BLOCK:
            self.blocks.append(_Day())
        self.blocks[-1].add(row)

    def drop(self, article_id: int) -> repo.VectorRow | None:
        if article_id not in self.members:
            return None
        self.members.discard(article_id)
        for block in self.blocks:
            row = block.drop(article_id)
            if row is not None:
                return row
        return None


class VectorIndex:
    """Document vectors of one model, read from the database by day as lookups need them."""

    def __init__(
        self, model: str, *, max_days: int = 62, refresh_seconds: float = 1.0, undated_scope: int = 50_000
    ) -> None:
        self.model = model
        self.max_days = max_days
        self.refresh_seconds = refresh_seconds
        self.undated_scope = undated_scope
        self._days: OrderedDict[date, _Day] = OrderedDict()
        self._seeds: _Pool | None = None
        self._undated: _Pool | None = None  # stored articles with no publication time
        self._latest: _Pool | None = None  # the latest stored articles, for undated queries
        self._seen: set[int] = set()
        self._max_id = -1  # the largest committed article id read
        # Ids below it not committed when read (see the module): id -> when first missed.
        self._gaps: dict[int, float] = {}
        self._refreshed = -float("inf")  # (monotonic clock) when rows of others were last read

    def add(self, rows: Iterable[repo.VectorRow]) -> None:
        """Rows this process has just stored (of days not read yet: read with their day)."""
        self._add(row for row in rows if row.model == self.model)

    def replace(self, article_id: int, row: repo.VectorRow | None) -> bool:
        """The vectors of ``article_id`` were replaced (a new version of its page, a re-index):
        the rows this reader holds of it are dropped and ``row`` (its new vectors, if under
        this index's model) takes their place, so that nothing has to be read again.

        ``False`` when this reader has read rows but held none of ``article_id``: where its
        new row belongs cannot be told from here (a seed, or one of the latest, whose
        vectors were under another model), so the caller drops this reader instead.
        """
        if self._seeds is None:
            return True  # nothing read yet
        held: list[repo.VectorRow] = []
        if article_id in self._seen:
            self._seen.discard(article_id)
            for day in self._days.values():
                old = day.drop(article_id)
                if old is not None:
                    held.append(old)
        holders: list[_Pool] = []
        for pool in (self._seeds, self._undated, self._latest):
            old = pool.drop(article_id) if pool is not None else None
            if pool is not None and old is not None:
                holders.append(pool)
                held.append(old)
        if row is None or row.model != self.model:
            return True
        if not held:
            return False
        row = dataclasses.replace(row, root_id=held[0].root_id)
        for pool in holders:
            pool.add(row)
        if any(pool is self._seeds for pool in holders):
            self._seen.add(article_id)  # a seed is looked up with the seeds, never by day
        else:
            self._add([row])  # into its day, if this reader holds that day
        return True

    def nearest(
        self,
        session: Session,
        query: NDArray[np.float32],
        *,
        start: datetime,
        end: datetime,
        not_lang: str,
        min_score: float,
        limit: int,
        undated: bool = False,
    ) -> list[Candidate]:
        """The ``limit`` stored articles closest to ``query`` with a moment in [start, end]
        (and every seed), in another language than ``not_lang``, scoring at least ``min_score``.

        Undated stored articles are candidates whatever their moment, and an ``undated``
        query (its moment is when it was first seen) is also compared with the latest
        stored articles whatever theirs (both within ``undated_scope``; see the module).
        """
        self._load(session, start, end, undated=undated)
        low, high = _aware(start).timestamp(), _aware(end).timestamp()
        days = [self._days[day] for day in _days(start, end)]
        pools = [pool for pool in (self._seeds, self._undated) if pool is not None]
        if undated and self._latest is not None:
            pools.append(self._latest)
        timeless = [block for pool in pools for block in pool.blocks]
        found: dict[int, Candidate] = {}
        for day, bounded in [*((day, True) for day in days), *((block, False) for block in timeless)]:
            if not day.rows:
                continue
            vectors, moments, langs = day.arrays(query.shape[0])
            scores = vectors @ query
            keep = (scores >= min_score) & (langs != not_lang)
            if bounded:
                keep &= (moments >= low) & (moments <= high)
            positions = np.flatnonzero(keep)
            if len(positions) > limit:
                # The best ``limit`` by (score, lower id first), whatever order the rows came in.
                ids = np.array([day.rows[position].article_id for position in positions])
                positions = positions[np.lexsort((ids, -scores[positions]))[:limit]]
            for position in positions:
                row = day.rows[position]
                found[row.article_id] = Candidate(
                    row.article_id, row.root_id, row.lang, float(scores[position])
                )
        ranked = sorted(found.values(), key=lambda c: (-c.score, c.article_id))
        return ranked[:limit]

    def _load(self, session: Session, start: datetime, end: datetime, *, undated: bool = False) -> None:
        if self._seeds is None:
            # The committed ids first: a row committed after this read is then found by the
            # refresh (above the largest) or by the gap look-up (below it).
            recent = repo.latest_article_ids(session, RECENT_IDS)
            floor = min(recent) if len(recent) == RECENT_IDS else 0
            self._note_gaps(recent, floor, _time.monotonic())
            self._seeds = _Pool(repo.seed_vectors(session, self.model))
            self._seen.update(self._seeds.members)
            # Read after the largest id: a row stored in between is read by the refresh too
            # (and added once).
            if self.undated_scope > 0:
                self._undated = _Pool(
                    repo.undated_vectors(session, self.model, self.undated_scope), floor=self._max_id
                )
        if undated and self._latest is None and self.undated_scope > 0:
            self._latest = _Pool(
                repo.latest_vectors(session, self.model, self.undated_scope), floor=self._max_id
            )
        wanted = _days(start, end)
        for day in wanted:
            if day in self._days:
                self._days.move_to_end(day)
        missing = [day for day in wanted if day not in self._days]
        for first, last in _runs(missing):
            for day in range_of_days(first, last):
                self._days[day] = _Day()
            lower = datetime.combine(first, time(), UTC)
            upper = datetime.combine(last + timedelta(days=1), time(), UTC)
            # (Not moving the refresh's start: rows of others below the largest id read here
            # are still to be read by it, for the days and the pools.)
            self._add(repo.vectors_between(session, self.model, lower, upper))
        # Rows stored since this reader last looked, by another process (or by this one,
        # already added), at most every refresh_seconds.
        now = _time.monotonic()
        if now - self._refreshed >= self.refresh_seconds:
            self._refresh(session, now)
            self._refreshed = now
        # A back-fill over months would otherwise keep every day it touched in memory.
        while len(self._days) > max(self.max_days, len(wanted)):
            _, evicted = self._days.popitem(last=False)
            self._seen.difference_update(evicted.ids)

    def _refresh(self, session: Session, now: float) -> None:
        """Read the rows committed since the last refresh: above the largest id read, and
        those of ids it skipped (see the module)."""
        # The ids before the rows: a batch committing in between leaves its ids missing
        # from the first read, so they are looked for again, never skipped for good.
        after = self._max_id
        committed = repo.article_ids_after(session, after)
        rows = repo.vectors_after(session, self.model, after)
        arrived = repo.existing_article_ids(session, list(self._gaps)) if self._gaps else []
        for gap, since in list(self._gaps.items()):
            if now - since > GAP_SECONDS:
                del self._gaps[gap]  # rolled back (or stuck for minutes): no longer looked for
        self._note_gaps(committed, after, now)
        self._add(rows)
        if arrived:
            for gap in arrived:
                self._gaps.pop(gap, None)
            self._add(repo.vectors_of(session, self.model, arrived), late=True)

    def _note_gaps(self, committed: list[int], after: int, now: float) -> None:
        """``committed``: the committed article ids above ``after``. Those between the two
        that are missing are skipped ids, to be looked for; the largest is the new start."""
        if not committed:
            return
        present = set(committed)
        top = max(present)
        # (Only the latest MAX_GAPS can be kept: a jump of a million ids is not walked.)
        for missing in range(max(after, top - MAX_GAPS - 1, 0) + 1, top):
            if missing not in present:
                self._gaps.setdefault(missing, now)
        if len(self._gaps) > MAX_GAPS:
            for gap in sorted(self._gaps)[: len(self._gaps) - MAX_GAPS]:
                del self._gaps[gap]
        self._max_id = max(self._max_id, top)

    def _add(self, rows: Iterable[repo.VectorRow], *, late: bool = False) -> None:
        """``late``: rows of ids an earlier read skipped (committed after it), which are new
        to the pools whatever their id."""
        for row in rows:
            # Rows stored since the pools were read join them (past undated_scope, for the
            # rest of the run); older rows read with their day do not.
            if not row.dated and self._undated is not None and (late or row.article_id > self._undated.floor):
                self._undated.add(row)
            if self._latest is not None and (late or row.article_id > self._latest.floor):
                self._latest.add(row)
            if row.article_id in self._seen:
                continue
            day = self._days.get(_aware(row.moment).date())
            if day is not None:
                day.add(row)
                self._seen.add(row.article_id)
            # Rows of days not loaded yet are read with their day when a lookup needs it.


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _days(start: datetime, end: datetime) -> list[date]:
    return range_of_days(_aware(start).astimezone(UTC).date(), _aware(end).astimezone(UTC).date())


def range_of_days(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs, so each run is one range query."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
