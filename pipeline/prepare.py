"""The CPU-bound stages of a feed item, done ahead in worker processes.

Extraction, language detection, the encoder's vectors and the classifier's verdict depend on
the page alone, not on the database: they can run in another process while this one
deduplicates and stores the item before. When the workers fall behind, this process takes
back a job none of them has started and does it itself, so neither side waits while the
other has work. On two cores that is the difference between one core working and
two (``benchmarks/cycle_speed.py``). Threads would not do: the stages hold the interpreter
lock for most of their time, and an encoder thread next to a busy main thread runs many
times slower than alone.

:class:`PreparePool` owns the workers (``poll.workers``, started on first use and kept for
the run). Items still go into the database one after another in feed order, so the
outcome never depends on which worker finished first; a page a worker could not handle
comes back as an error value, exactly the error the same stages raise in this process.

Workers are started by ``fork`` when the process has no other thread (the CLI between two
feeds): it is instant and shares the libraries already imported. Forking a process whose
other threads may hold locks is unsafe, so anywhere else they are started by ``spawn``
(about a second, once per run). A worker that dies (a parser crash, the kernel's
out-of-memory killer) breaks the pool: each item it held is tried again in a worker
started for it alone (so that no other page can fail it again), and one whose worker dies
again is recorded as failed, permanently, so a page that kills its parser is never tried
in the main process. The pool itself starts afresh for the items after.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline import encoder, language
from pipeline.collector import use_batch_threshold
from pipeline.crosslingual import Gazetteer, TextEvidence, load_gazetteer, text_evidence
from pipeline.errors import ExtractionError, ItemError
from pipeline.neardup import TextIndex, index_of
from pipeline.records import ArticleCandidate, Classification, FeedItem
from pipeline.search import IndexedText, index_text
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.classify import TopicRegistry
    from pipeline.topic_heads import LabelHeads

log = logging.getLogger(__name__)

# A feed with fewer items than this is prepared in the process, unless the workers are
# already running: starting them and loading the encoder there costs more than it saves
# on a handful of items.
MIN_PAGES_FOR_WORKERS = 8

# Jobs in the executor's hands beyond one per worker. A job handed to a
# ProcessPoolExecutor is queued for its workers at once and can no longer be withdrawn, so
# the pool holds the rest itself: one waiting job per pool keeps a worker busy from one
# job to the next, and every later one can still be done by this process instead.
QUEUED_PER_POOL = 1

# How often a worker checks that the process that started it is still there.
PARENT_CHECK_SECONDS = 0.5
WARM_UP_TEXT = "Text that makes the language detector load its profiles before the first page."
WORKER_DIED = "the worker reading this page stopped (a parser crash or out of memory)"


@dataclass(frozen=True)
class PageJob:
    """What a worker needs to prepare one feed item: the item, its page and the moment."""

    item: FeedItem
    body: bytes
    content_type: str | None
    lang_hint: str | None
    now: datetime


@dataclass(frozen=True)
class TextWork:
    """What deduplication and the search index read of a candidate's text, computed ahead."""

    near: TextIndex  # shingles, MinHash signature, band keys
    evidence: TextEvidence  # numbers, length, gazetteer names (the translation test)
    indexed: IndexedText  # full-text search terms


@dataclass(frozen=True)
class Prepared:
    """A prepared item: its candidate and vectors, or the error that stopped it."""

    candidate: ArticleCandidate | None = None
    vectors: encoder.ArticleVectors | None = None
    classification: Classification | None = None
    error: str | None = None
    permanent: bool = True
    text: TextWork | None = None

    def unwrap(self) -> ArticleCandidate:
        """The candidate; raises the :class:`ExtractionError` when there is none."""
        if self.candidate is None:
            raise ExtractionError(self.error or "no text", permanent=self.permanent)
        return self.candidate


def page_candidate(
    settings: Settings,
    item: FeedItem,
    body: bytes,
    content_type: str | None,
    lang_hint: str | None,
    now: datetime,
) -> ArticleCandidate:
    """A feed item's candidate from its page: extraction and language (raises :class:`ItemError`)."""
    from pipeline.ingest import build_candidate  # the ingest layer imports this module

    return build_candidate(
        settings,
        url=item.url,
        title=item.title,
        html=body,
        published_at=item.published_at,
        content_type=content_type,
        lang_hint=lang_hint,
        feed_url=item.feed_url,
        now=now,
    )


def text_work(settings: Settings, candidate: ArticleCandidate, gazetteer: Gazetteer) -> TextWork:
    """The text stages of ``candidate`` that need no database (in any process)."""
    return TextWork(
        index_of(candidate.text, candidate.lang, settings.neardup_params()),
        text_evidence(candidate.text, candidate.lang, gazetteer),
        index_text(candidate.title, candidate.text),
    )


def prepare_page(settings: Settings, job: PageJob, gazetteer: Gazetteer) -> Prepared:
    """Extract, detect the language and compute the vectors of one page (in any process)."""
    try:
        candidate = page_candidate(settings, job.item, job.body, job.content_type, job.lang_hint, job.now)
    except ItemError as exc:
        return Prepared(error=str(exc), permanent=exc.permanent)
    limits = settings.encoder
    vectors = encoder.embed_configured(
        encoder.load_configured(limits), candidate.title, candidate.text, limits
    )
    return Prepared(candidate, vectors, text=text_work(settings, candidate, gazetteer))


# In a worker: the settings it was started with, then the classifier and gazetteer it loaded.
_WORKER_SETTINGS: list[Settings] = []
_WORKER_CLASSIFIER: list[tuple[TopicRegistry, LabelHeads]] = []
_WORKER_GAZETTEER: list[Gazetteer] = []


def _start_worker(settings: Settings, parent: int) -> None:
    # (A forked worker keeps the classifier its parent loaded; a spawned one loads its own.)
    _WORKER_SETTINGS[:] = [settings]
    # Ctrl+C reaches the whole process group: the command stops its pool and says so in
    # one line; a worker printing its own KeyboardInterrupt traceback would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    language.use_cache(settings.encoder.cache_path)
    # A worker does batch work only (a spawned one does not inherit its parent's setting).
    use_batch_threshold()
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when its parent is gone (killed, say, before it could stop its pool).

    A worker waits for jobs on a pipe whose other end it holds too, so it would otherwise
    wait for ever once the parent died without closing the pool.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _classifier() -> tuple[TopicRegistry, LabelHeads]:
    if not _WORKER_CLASSIFIER:
        from pipeline.classify import load_registry
        from pipeline.topic_heads import load_heads

        settings = _WORKER_SETTINGS[0]
        registry = load_registry(settings.topics_file)
        model = encoder.load_configured(settings.encoder)
        heads = load_heads(registry, encoder=model, cache_dir=settings.encoder.cache_path)
        _WORKER_CLASSIFIER.append((registry, heads))
    return _WORKER_CLASSIFIER[0]


def _gazetteer() -> Gazetteer:
    if not _WORKER_GAZETTEER:
        _WORKER_GAZETTEER.append(load_gazetteer(_WORKER_SETTINGS[0].gazetteer_file))
    return _WORKER_GAZETTEER[0]


def classified(prepared: Prepared, registry: TopicRegistry, heads: LabelHeads) -> Prepared:
    """``prepared`` with the hybrid classifier's verdict on its candidate (pure, like the rest)."""
    from pipeline.topic_heads import classify_hybrid

    candidate, vectors = prepared.candidate, prepared.vectors
    if candidate is None or vectors is None:
        return prepared
    verdict = classify_hybrid(
        registry, heads, title=candidate.title, text=candidate.text, lang=candidate.lang, vectors=vectors
    )
    return Prepared(candidate, vectors, verdict, text=prepared.text)


def _forward(future: Future[Prepared], sent: Future[Prepared]) -> None:
    """Give ``future`` the outcome of ``sent``, the executor's future of its job."""
    if future.done():
        return
    if sent.cancelled():
        future.cancel()
    elif (error := sent.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(sent.result())


def _prepare_in_worker(job: PageJob) -> Prepared:
    return classified(prepare_page(_WORKER_SETTINGS[0], job, _gazetteer()), *_classifier())


def _warm_up() -> bool:
    """Load what the first page needs (encoder, classifier, language profiles) before it arrives."""
    _classifier()
    _gazetteer()
    language.detect_language(WARM_UP_TEXT)
    return True


class PreparePool:
    """Worker processes that prepare pages ahead; see the module's notes."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        # Called before the workers are forked, to end this process's other threads (a
        # feed fetched ahead): a process is forked only while it has no other thread.
        self.before_fork: list[Callable[[], None]] = []
        # Jobs submitted but not yet given to the executor, with the order they go in (see
        # QUEUED_PER_POOL; the count of jobs submitted breaks ties), and the executor's
        # futures of those given to it and not done.
        self._held: dict[Future[Prepared], tuple[tuple[int, ...], PageJob]] = {}
        self._submitted = 0
        self._sent: list[Future[Prepared]] = []
        # The executor each job given out went to (until it is collected).
        self._sent_to: dict[Future[Prepared], ProcessPoolExecutor] = {}
        # Guards the jobs' state: a worker that finishes a job is given the next one held
        # from the executor's own thread (see _next), while this process may be doing a
        # long item itself.
        self._lock = threading.RLock()

    def start_for(
        self,
        pages: int,
        classifier: Callable[[], tuple[TopicRegistry, LabelHeads]],
        gazetteer: Gazetteer | None = None,
    ) -> bool:
        """Whether a feed with ``pages`` items to prepare (not stored yet) is prepared in
        workers; starts them if so.

        Called before the feed's pages are fetched, while the process may have no other
        thread, so that the workers can be forked. Before a fork, this process loads what
        a worker needs (the ``classifier`` with its encoder, the language profiles): it
        needs them too, to do the jobs it takes back, and forked workers share them
        instead of loading their own.
        """
        if self.workers < 1 or (self._executor is None and pages < MIN_PAGES_FOR_WORKERS):
            return False
        if self._executor is None:
            encoder.finish_preload()  # with its thread running, the workers would start afresh
            for settle in self.before_fork:
                settle()
            if threading.active_count() == 1:
                _WORKER_CLASSIFIER[:] = [classifier()]
                _WORKER_GAZETTEER[:] = [gazetteer] if gazetteer is not None else []
                language.detect_language(WARM_UP_TEXT)
        self._ensure()
        return True

    @property
    def running(self) -> bool:
        """Whether the workers are started (they are kept until :meth:`close`)."""
        return self._executor is not None

    def submit(self, job: PageJob, order: tuple[int, ...] = ()) -> Future[Prepared]:
        """Queue ``job`` for the workers; its future gives the :class:`Prepared`.

        Jobs go to the workers lowest ``order`` first (a feed's position in the cycle and
        the item's in the feed), then in the order submitted: a later feed's pages handed
        out early wait while the current feed has any. Calls come from one thread (the
        one that collects), as do :meth:`take_back` and :meth:`collect`; the executor's
        thread hands out the next job whenever a worker finishes one.
        """
        future: Future[Prepared] = Future()
        with self._lock:
            self._submitted += 1
            self._held[future] = ((*order, self._submitted), job)
            self._dispatch()
        return future

    def take_back(self, future: Future[Prepared]) -> bool:
        """Withdraw a job not yet given to a worker (True), to do it in this process instead."""
        with self._lock:
            if future not in self._held:
                return False
            del self._held[future]
        future.cancel()
        return True

    def waiting(self) -> list[PageJob]:
        """The jobs not yet given to a worker, in the order they will go."""
        with self._lock:
            return [job for _, job in sorted(self._held.values(), key=lambda held: held[0])]

    def _dispatch(self) -> None:
        """Give held jobs to the executor while it has fewer than one per worker and
        :data:`QUEUED_PER_POOL` more."""
        with self._lock:
            self._sent = [sent for sent in self._sent if not sent.done()]
            while self._held and len(self._sent) < self.workers + QUEUED_PER_POOL:
                future = min(self._held, key=lambda held: self._held[held][0])
                _, job = self._held.pop(future)
                self._send(future, job)

    def _next(self, executor: ProcessPoolExecutor, sent: Future[Prepared]) -> None:
        """A job of ``executor`` is done: give its worker the next job held, at once.

        Runs in the executor's thread, which delivers results. Without it, a worker that
        finishes while this process does a long item itself would wait for the next
        submit or collect. A cancelled job (a shutdown) or one whose pool broke hands out
        nothing: ``collect`` deals with a broken pool, and a new one is started there.
        """
        if sent.cancelled() or isinstance(sent.exception(), BrokenExecutor):
            return
        with self._lock:
            if executor is not self._executor:
                return  # (closed, or replaced after a break)
            try:
                self._dispatch()
            except Exception as exc:  # (the job's future has the error; its collector reports it)
                log.debug("handing out the next prepare job failed: %s", exc)

    def _send(self, future: Future[Prepared], job: PageJob) -> None:
        try:
            try:
                executor = self._ensure()
                sent = executor.submit(_prepare_in_worker, job)
            except BrokenProcessPool:  # (the workers died since: a fresh pool)
                self._discard()
                executor = self._ensure()
                sent = executor.submit(_prepare_in_worker, job)
        except BaseException as exc:
            future.set_exception(exc)  # (its collector learns of it; nobody waits for ever)
            raise
        self._sent_to[future] = executor
        sent.add_done_callback(functools.partial(_forward, future))
        sent.add_done_callback(functools.partial(self._next, executor))
        self._sent.append(sent)

    def collect(self, job: PageJob, future: Future[Prepared]) -> Prepared:
        """The result of ``future``; a job whose worker died is tried once more, alone."""
        with self._lock:
            if future in self._held:  # (waited for before its turn: given to a worker now)
                self._send(future, self._held.pop(future)[1])
            executor = self._sent_to.pop(future, None)
        try:
            prepared = future.result()
        except BrokenProcessPool:
            # The pool it was sent to broke. Every job it held fails the same way: only the
            # first of them to be collected replaces the pool, not the new one each time.
            if executor is None or executor is self._executor:
                self._discard()
        else:
            self._dispatch()
            return prepared
        log.warning("a prepare worker stopped; trying %s again alone", job.item.url)
        # In a worker of its own: in the pool, another page that kills its worker (or the
        # jobs handed out meanwhile) would fail this one again, and mark it for good.
        alone, _ = self._new_executor(1)
        try:
            return alone.submit(_prepare_in_worker, job).result()
        except BrokenProcessPool:
            pass
        finally:
            alone.shutdown(wait=True, cancel_futures=True)
            self._dispatch()  # (the jobs held meanwhile, after it)
        return Prepared(error=WORKER_DIED, permanent=True)

    def close(self) -> None:
        """Stop the workers (they are started again if the pool is used again); jobs not
        given to them are cancelled."""
        with self._lock:
            for future in self._held:
                future.cancel()
            self._held.clear()
            self._sent.clear()
            self._sent_to.clear()
            executor, self._executor = self._executor, None
        if executor is not None:  # (outside the lock: its thread may be waiting for it)
            executor.shutdown(wait=True, cancel_futures=True)

    def _discard(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def _new_executor(self, workers: int) -> tuple[ProcessPoolExecutor, str]:
        """Worker processes, and how they were started."""
        # fork is instant and shares what is imported, but copying a process whose other
        # threads may hold locks is unsafe: then the workers start afresh.
        method = "fork" if threading.active_count() == 1 else "spawn"
        if method == "fork":
            # What exists now (libraries, models) is kept for good: the collector stops
            # walking it, in this process and in the workers, which would otherwise copy
            # the pages it touches (Python's gc module documentation).
            gc.freeze()
        executor = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_start_worker,
            initargs=(self.settings, os.getpid()),
        )
        return executor, method

    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor, method = self._new_executor(self.workers)
            for _ in range(self.workers):
                self._executor.submit(_warm_up)
            log.info("started %d prepare worker(s) by %s", self.workers, method)
        return self._executor
