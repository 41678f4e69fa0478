"""The ``summitwatch`` command: a thin shell over the pipeline.

Settings are built once here and passed down; this is the only place that configures
logging. Machine-readable output goes to stdout, progress and messages to stderr.

Each command imports what it uses when it runs: ``summitwatch --help`` and the short
commands must not pay for the database layer, the HTTP client, the extraction cascade or
the encoder (``benchmarks/cycle_speed.py`` times the start-up).
"""

from __future__ import annotations

import argparse
import codecs
import gc
import io
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pipeline.collector import batch_collection
from pipeline.coverage import MAX_HISTORY_DAYS
from pipeline.errors import SummitwatchError
from pipeline.formatting import json_line, one_direction
from pipeline.records import to_json
from pipeline.redaction import install_log_redaction, redact_text, redact_url
from pipeline.unicode_marks import cluster_start

if TYPE_CHECKING:
    import socket

    from sqlalchemy.orm import Session

    from pipeline.browse import ResultPage
    from pipeline.db.schema import Feed
    from pipeline.settings import Settings

log = logging.getLogger("pipeline")
MAX_ID = 2**31 - 1  # the largest id a row has (pipeline.db.schema.MAX_ROW_ID; not imported: start-up)
SPARK_WIDTH = 60  # characters of a series' bars in `summitwatch coverage`


def console() -> int:
    """The ``summitwatch`` command: :func:`main`, with the collector set for a batch job.

    Collections are rarer (:func:`pipeline.collector.batch_collection`). And a polling
    cycle leaves a few hundred thousand objects behind (libraries, models, caches), which
    the interpreter's last garbage collection walks on the way out: 0.3-0.4 s after
    ``run --once`` (``benchmarks/cycle_speed.py``). Freezing them first skips that
    walk and nothing else: files, connections and every exit handler are closed and run as
    before. (Only here, never in :func:`main`, which tests call in-process.)
    """
    with batch_collection():
        status = main()
    gc.freeze()
    return status


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a service manager stopping the command) or SIGHUP (the terminal
    or SSH session it ran in closed) ends it as Ctrl+C does."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` in it: its transaction is
    rolled back by the code it unwinds, and it exits with one line and status 143, rather
    than at once and silently. A process forked from it (a prepare worker) keeps the
    default action; the handler before is put back afterwards."""
    command = os.getpid()

    def terminated(signum: int, _frame: Any) -> None:
        if os.getpid() != command:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    try:
        before = {signal.SIGTERM: signal.signal(signal.SIGTERM, terminated)}
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:  # (under nohup it is ignored: left so)
        before[signal.SIGHUP] = signal.signal(signal.SIGHUP, terminated)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the command line; returns the process exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    for argument in arguments:
        # Bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape): no
        # database, URL or search can use them.
        if any("\ud800" <= char <= "\udfff" for char in argument):
            shown = argument.encode("utf-8", "backslashreplace").decode("utf-8")
            parser.error(f"argument {shown!r} is not valid UTF-8")
    args = parser.parse_args(arguments)
    if args.db is not None and not args.db.strip():
        # (Else it fell back to SUMMITWATCH_DB_URL or ./summitwatch.db: another database.)
        parser.error("argument --db: an empty database URL (give one, or leave --db out)")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Every record that reaches a handler, ours or a library's (httpx request lines,
    # SQLAlchemy statements at -v), has the credentials in its URLs redacted.
    install_log_redaction(logging.getLogger().handlers)
    _write_any_character()
    settings: Settings | None = None
    try:
        from pipeline.settings import load_settings

        overrides: dict[str, Any] = {}
        if args.db is not None:
            overrides["db_url"] = args.db
        settings = load_settings(overrides=overrides)
        _check_config_files(settings)
        if not args.verbose and settings.log_level != "WARNING":
            # (The default is what basicConfig set above: left alone, so that a caller that
            # configured logging itself, a test capturing every record, keeps its level.)
            logging.getLogger().setLevel(settings.log_level)
        handler: Callable[[argparse.Namespace, Settings], int] = args.handler
        with _stopped_by_sigterm():
            return handler(args, settings)
    except SummitwatchError as exc:
        print(f"summitwatch: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as stop:
        hung_up = " (its terminal or session closed: SIGHUP)" if stop.signum == signal.SIGHUP else ""
        print(f"summitwatch: terminated{hung_up}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("summitwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `summitwatch articles | head` closes stdout early; that is not an error.
        sys.stderr.close()
        return 0
    except Exception as exc:
        message = _database_error(exc, settings.db_url if settings is not None else None)
        if message is None:
            raise
        print(f"summitwatch: error: {message}", file=sys.stderr)
        return 2


def _write_any_character() -> None:
    """Standard output in an encoding that cannot hold every character (a legacy locale,
    ``PYTHONIOENCODING=latin-1``): what it cannot hold is written as a backslash escape,
    said once, rather than the command ending in a traceback at the first Cyrillic or
    Chinese headline."""
    stream = sys.stdout
    encoding = getattr(stream, "encoding", None) or ""
    try:
        unicode = codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        unicode = False
    if unicode or not isinstance(stream, io.TextIOWrapper) or stream.errors != "strict":
        return
    said = False

    def escape(error: UnicodeError) -> tuple[str, int]:
        nonlocal said
        if not said:
            said = True
            _stderr(
                f"summitwatch: standard output is {encoding}, which cannot hold every character: "
                "those it cannot are written as backslash escapes (set PYTHONIOENCODING=utf-8 for "
                "the text as stored)"
            )
        replacement, end = codecs.backslashreplace_errors(error)
        return str(replacement), end

    codecs.register_error("summitwatch-escape", escape)
    stream.reconfigure(errors="summitwatch-escape")


def _check_config_files(settings: Settings) -> None:
    """Validate ``topics.yaml`` and ``digest.yaml`` as the settings are, once at start.

    Each command read them only where it used them: `serve` started, loaded the encoder
    and then failed with a traceback on a bad ``coverage_days``, while `import` and `run`
    went on and only `digest` stopped. (The patterns compile here: about 0.15 s.)
    """
    from pipeline.classify import load_registry
    from pipeline.coverage import load_detector_config, series_name

    registry = load_registry(settings.topics_file)
    config = load_detector_config(settings.config_dir / "digest.yaml")
    config.check_series(
        [series_name("topic", entry.slug) for entry in registry.topics]
        + [series_name("watch", entry.slug) for entry in registry.watch]
    )


_DATABASE_RETRY_SECONDS = 30
# The longest `run` sleeps between cycles: feeds added meanwhile and pages due for a
# retry are seen within it.
IDLE_WAKE_SECONDS = 30.0


def _unavailable_database(exc: BaseException, session: Any) -> str | None:
    """The driver's reason when ``exc`` means the database cannot be reached for now
    (stopped, restarting, cut off: it does not answer a probe either); None for any other
    error, which ends the command as usual (a missing table, a refused password, a
    read-only file: waiting changes nothing)."""
    from pipeline.errors import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return exc.reason
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, errors.OperationalError):
        return None
    from pipeline.db.engine import driver_reason, refuses_writes, require_database

    reason = driver_reason(exc)
    if refuses_writes(exc) or "authentication failed" in reason:
        return None
    try:
        require_database(session)
    except DatabaseUnavailable:
        return reason
    return None  # it answers: the error was not the connection's


def _rolled_back(session: Any) -> None:
    """End the session's transaction; a connection already gone is given up with it."""
    errors = sys.modules.get("sqlalchemy.exc")
    try:
        session.rollback()
    except Exception as exc:
        if errors is None or not isinstance(exc, errors.SQLAlchemyError):
            raise
        session.close()


def _database_error(exc: Exception, db_url: str | None) -> str | None:
    """The message for a database error, or ``None`` for anything else.

    SQLAlchemy is imported only by the commands that use the database, so an error can
    only be one of its own when it is loaded.
    """
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None:
        return None
    if isinstance(exc, errors.ArgumentError):
        return f"invalid database URL: {exc}"
    from pipeline.db.engine import (
        configuration_fault,
        driver_reason,
        is_busy,
        refuses_writes,
        sqlite_write_problem,
    )

    if isinstance(exc, errors.OperationalError) and refuses_writes(exc):
        # (Made read-only during the command: commands that write check before they start.)
        problem = sqlite_write_problem(db_url) if db_url else None
        return problem or f"cannot write to the database: {driver_reason(exc)}"
    if isinstance(exc, errors.OperationalError) and (fault := configuration_fault(exc)):
        # A wrong password, a missing database, SSL, a statement timeout: running again
        # changes nothing until it is fixed.
        return f"cannot use the database: {driver_reason(exc)} ({fault})"
    if isinstance(exc, errors.OperationalError) and is_busy(exc):
        # Not gone at all: another writer (a run, an import, a sqlite3 shell with a transaction
        # open) held its lock past the busy timeout. ("database unavailable ... once it is
        # back" sent the analyst looking for an outage.)
        return (
            f"the database stayed locked by another writer ({driver_reason(exc)}); what was committed "
            "is kept: run again once that writer is done"
        )
    if isinstance(exc, errors.OperationalError):
        # The database went away mid-command; every item is committed on its own, so a
        # re-run carries on where this one stopped.
        return f"database unavailable: {driver_reason(exc)}; run again once it is back"
    if isinstance(exc, errors.DatabaseError):
        # Not a database of ours at all (a file that is not SQLite, a damaged one).
        return f"cannot use the database: {driver_reason(exc)}"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="summitwatch",
        description="Monitor news coverage of Russia-China summitry.",
    )
    parser.add_argument("--db", metavar="URL", help="database URL (overrides SUMMITWATCH_DB_URL)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create or upgrade the schema, load seeds and feeds")
    init.set_defaults(handler=cmd_init)

    run = commands.add_parser("run", help="poll all due feeds and process new items")
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument(
        "--all",
        action="store_true",
        help="poll every enabled feed now, due or not (then, without --once, each as it is due)",
    )
    run.set_defaults(handler=cmd_run)

    imp = commands.add_parser(
        "import", help="ingest pre-fetched items (JSON Lines, news-please JSON or a JSON Feed 1.1)"
    )
    imp.add_argument("file", help="the file, or - for stdin")
    imp.add_argument("--json", action="store_true", help="one JSON result per input line")
    imp.set_defaults(handler=cmd_import)

    ext = commands.add_parser("extract", help="print the article text of HTML files")
    ext.add_argument("files", nargs="+", help="HTML files, or - for stdin")
    ext.add_argument("--json", action="store_true", help="one JSON line per file")
    ext.set_defaults(handler=cmd_extract)

    cls = commands.add_parser("classify", help="classify JSON lines {id, title, text}; stores nothing")
    cls.add_argument("file", nargs="?", default="-", help="JSON Lines file, or - for stdin (default)")
    cls.set_defaults(handler=cmd_classify)

    recls = commands.add_parser(
        "reclassify", help="re-apply config/topics.yaml and the classifier to every stored article"
    )
    recls.set_defaults(handler=cmd_reclassify)

    train = commands.add_parser(
        "train-classifier", help="rebuild the classifier's learned layer (pipeline/data/topic_heads.npz)"
    )
    train.add_argument(
        "--train",
        type=Path,
        action="append",
        help="labelled JSON Lines file (repeatable; default: tests/fixtures/classify/real_train.jsonl "
        "and dev.jsonl)",
    )
    train.add_argument("--output", type=Path, help="where to write (default: the packaged artefact)")
    train.set_defaults(handler=cmd_train_classifier)

    reindex = commands.add_parser(
        "reindex", help="compute the multilingual vectors of stored articles that lack them"
    )
    reindex.add_argument(
        "--all", action="store_true", help="recompute every article's vectors, not only missing ones"
    )
    reindex.add_argument(
        "--batch-size", type=_whole_number(1, 100_000), default=200, help="articles per commit (default 200)"
    )
    reindex.set_defaults(handler=cmd_reindex)

    unlink = commands.add_parser(
        "unlink", help="separate a wrongly linked copy from its original: it counts as coverage again"
    )
    unlink.add_argument(
        "article_id",
        type=_whole_number(1, MAX_ID),
        help="the copy's article id (as `articles --duplicates` shows)",
    )
    unlink.add_argument("--reason", help="why, kept with the record of the link")
    unlink.add_argument("--json", action="store_true", help="print what changed as JSON")
    unlink.set_defaults(handler=cmd_unlink)

    arts = commands.add_parser("articles", help="browse and search stored articles")
    arts.add_argument("--topic", help="a topic slug, e.g. energy")
    arts.add_argument("--watch", help="a watch item slug, e.g. power_of_siberia_2")
    arts.add_argument("--lang", help="ISO 639-1 code, e.g. en, ru, zh")
    arts.add_argument("--feed", help="a feed id, or a feed's name or outlet")
    arts.add_argument("--since", type=_parse_since, help="published on or after (YYYY-MM-DD)")
    arts.add_argument("--until", type=_parse_until, help="published on or before (YYYY-MM-DD)")
    arts.add_argument("--q", help='full-text search: words, "phrases", -exclusions (NOT), OR (see README)')
    arts.add_argument(
        "--sort", choices=["relevance", "newest"], default="relevance", help="order of search results"
    )
    arts.add_argument(
        "--no-cross-language",
        action="store_true",
        help="with --q: do not add articles in other languages found by meaning",
    )
    arts.add_argument("--duplicates", action="store_true", help="list copies and translations separately")
    arts.add_argument("--seeds", action="store_true", help="also list the seed corpus")
    arts.add_argument("--limit", type=_whole_number(1, 1_000_000), default=20, help="how many (default 20)")
    output = arts.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON line per article")
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    arts.set_defaults(handler=cmd_articles)

    cov = commands.add_parser("coverage", help="coverage per topic and watch item, with detected changes")
    cov.add_argument(
        "--days",
        type=_whole_number(1, MAX_HISTORY_DAYS),
        help=f"how many days to show, at most {MAX_HISTORY_DAYS} (default from config/digest.yaml)",
    )
    cov.add_argument("--json", action="store_true", help="one JSON line per series")
    cov.set_defaults(handler=cmd_coverage)

    dig = commands.add_parser("digest", help="build and send the digest for changes not yet reported")
    dig.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send and store nothing"
    )
    dig.add_argument("--json", action="store_true", help="with --dry-run: the Slack payloads as JSON")
    dig.set_defaults(handler=cmd_digest)

    feeds = commands.add_parser("feeds", help="manage feeds")
    feed_commands = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    add = feed_commands.add_parser("add", help="add (or re-enable) a feed")
    add.add_argument("url")
    add.add_argument("--name")
    add.add_argument("--outlet")
    add.add_argument("--lang")
    add.set_defaults(handler=cmd_feeds_add)
    lst = feed_commands.add_parser("list", help="list feeds with their polling state")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_feeds_list)
    for action, verb in (("enable", "poll again"), ("disable", "stop polling")):
        toggle = feed_commands.add_parser(
            action, help=f"{verb} feeds, named by id or URL (see `summitwatch feeds list`)"
        )
        toggle.add_argument("feeds", nargs="+", metavar="FEED", help="a feed's id or URL")
        toggle.set_defaults(handler=cmd_feeds_toggle, enabled=action == "enable")
    reset = feed_commands.add_parser(
        "reset",
        help="forget that feeds are gone (410), moved (301, 308) or failing: polled at their URL next run",
    )
    reset.add_argument("feeds", nargs="+", metavar="FEED", help="a feed's id or URL")
    reset.set_defaults(handler=cmd_feeds_reset)
    opml_in = feed_commands.add_parser("import-opml", help="add the feeds of an OPML file")
    opml_in.add_argument("file")
    opml_in.set_defaults(handler=cmd_feeds_import_opml)
    opml_out = feed_commands.add_parser("export-opml", help="print the feed list as OPML")
    opml_out.set_defaults(handler=cmd_feeds_export_opml)

    serve = commands.add_parser("serve", help="the read-only web UI")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_whole_number(1, 65_535), default=8000, help="port to listen on (default 8000)"
    )
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="the full pipeline offline on the bundled site")
    demo.add_argument("--port", type=_whole_number(1, 65_535), default=8765, help="port for the fixture site")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # (as the database stores it)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"out of range: {value!r} is not between 0001-01-01 and 9999-12-31 in UTC"
        ) from None
    return moment


def _parse_until(value: str) -> datetime:
    """The exclusive bound after ``value``: a date (2025-11-01 or 20251101) includes that
    whole day, a time (2025-11-01T10:00) that moment itself."""
    from pipeline import browse

    moment = _parse_since(value)
    try:
        when: date | datetime = date.fromisoformat(value.strip())
    except ValueError:
        when = moment
    return browse.upper_bound(when) or datetime.max.replace(tzinfo=UTC)


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, with a clear message."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, not {number:,}")
        return number

    return parse


# Shared plumbing ---------------------------------------------------------------------------


@contextmanager
def open_session(
    settings: Settings, *, migrate: bool = False, durable: bool = False, read_only: bool = False
) -> Iterator[Session]:
    """A session on the configured database; checks (or upgrades) the schema first
    (``durable``: every commit waits for the disk, for the digest outbox; ``read_only``:
    the command only reads, so a database file it may not write will do)."""
    from pipeline.db.engine import open_session as open_database

    with open_database(settings.db_url, migrate=migrate, durable=durable, read_only=read_only) as session:
        yield session


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _preload_encoder(settings: Settings) -> None:
    """Load the sentence encoder on the second core while this command imports the rest:
    a polling cycle or an import with anything new needs it (a cycle where every feed
    answers 304 loads it for nothing, in the background)."""
    from pipeline import encoder

    encoder.preload(settings.encoder)


def _progress(message: str) -> None:
    """Progress lines quote feed and page URLs and errors: shown redacted."""
    _stderr(redact_text(message))


def _http_client(settings: Settings) -> Any:
    from pipeline.http import HttpClient

    return HttpClient(settings.http, allow_private_networks=settings.allow_private_networks)


# Commands ----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.bootstrap import initialise

    report = initialise(settings, progress=_stderr)
    _stderr(f"database: {_safe_url(settings.db_url)}")
    _stderr(f"schema: {report.revision_before or 'empty'} -> {report.revision_after}")
    _stderr(f"seed corpus: {report.seeds_added} added, {report.seeds_present} already present")
    if report.search_reindexed is not None:
        _stderr(f"search index: rebuilt for {report.search_reindexed} articles")
    if report.resigned:
        _stderr(f"near-duplicate index: {report.resigned} articles signed again under the current scheme")
    if report.recanonicalised:
        _stderr(f"canonical URLs: {report.recanonicalised} stored again in the current form")
    if report.rehashed:
        _stderr(f"text hashes: {report.rehashed} stored again under the current folding")
    _stderr(f"feeds from {settings.feeds_file}: {report.feeds_added} added, {report.feeds_updated} updated")
    if report.vectors_missing:
        _stderr(
            f"{report.vectors_missing} stored articles have no multilingual vectors yet: run "
            "`summitwatch reindex` to back-fill them (until then a new translation of one of them is "
            "not linked to it; translations already stored among them stay separate articles)"
        )
    if report.labels_stale:
        _stderr(
            f"{report.labels_stale} stored articles were labelled by an earlier classifier "
            "(config/topics.yaml, its learned layer or summitwatch changed since): run "
            "`summitwatch reclassify` to label them as new articles are (coverage and digests count "
            "the labels stored)"
        )
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    _preload_encoder(settings)
    from pipeline.bootstrap import require_current_derived_data
    from pipeline.db import repo
    from pipeline.db.schema import utcnow
    from pipeline.http import HostBreaker
    from pipeline.ingest import run_cycle, seen_before

    poll_all = bool(args.all)
    # A host given up on in one cycle (it timed out, or asked to wait) is left alone in the
    # next ones too, for the backoff a failing feed gets: not asked again every 30 s.
    hosts = HostBreaker(settings.http.host_timeout_limit, hold=settings.poll.backoff_base_minutes * 60.0)
    with open_session(settings) as session, _http_client(settings) as client:
        require_current_derived_data(session, settings.neardup_params())
        waited_out = False  # (the last cycle found the database away)
        while True:
            started = time.monotonic()
            try:
                feed_ids = (
                    [f.id for f in repo.list_feeds(session) if f.enabled and f.gone_at is None]
                    if poll_all
                    else None
                )
                # --all is for the first cycle: the ones after it poll what is due, so that the
                # poll interval and a failing feed's backoff hold.
                summary = run_cycle(
                    session, client, settings, feed_ids=feed_ids, progress=_progress, hosts=hosts
                )
            except Exception as exc:
                # Running for good, a database gone for a while (restarted, failed over) is
                # waited for: every item is committed on its own, so the next cycle goes on
                # where this one stopped. Once, the error ends the command as usual.
                reason = None if args.once else _unavailable_database(exc, session)
                if reason is None:
                    raise
                _rolled_back(session)
                from pipeline.errors import DatabaseBusy

                what = (
                    "the database stayed locked by another writer" if isinstance(exc, DatabaseBusy) else None
                )
                _stderr(
                    f"{what or 'database unavailable'}: {reason}; trying again in {_DATABASE_RETRY_SECONDS} s"
                )
                time.sleep(_DATABASE_RETRY_SECONDS)
                waited_out = True
                continue
            poll_all = False
            counts = summary.counts()
            # An idle wake-up says nothing; the first cycle after an outage says it ran.
            if args.once or summary.polls or summary.retried or waited_out:
                _stderr(
                    f"cycle done in {time.monotonic() - started:.1f}s: {len(summary.polls)} feeds polled "
                    f"({counts['feeds_not_modified']} not modified, {counts['feeds_unchanged']} unchanged, "
                    f"{counts['feeds_error']} failed"
                    + (
                        f", {counts['feeds_gone']} gone (HTTP 410, no longer polled)"
                        if counts["feeds_gone"]
                        else ""
                    )
                    + f"); {counts['new']} new, {counts['duplicate']} duplicate, "
                    f"{counts['error']} failed items"
                    + seen_before(counts)
                    + (f"; {counts['feeds_moved']} feeds moved permanently" if counts["feeds_moved"] else "")
                )
            waited_out = False
            if args.once:
                failed = counts["feeds_error"] + counts["feeds_gone"]
                return 1 if failed and failed == len(summary.polls) else 0
            # Wake up when the next feed is due, and at least every 30 s (new feeds, pages
            # to retry). (It woke every second for the half minute before a feed was due,
            # each time running an empty cycle.) No transaction is left open while asleep:
            # an idle one holds back the server's clean-up, a server's idle-in-transaction
            # timeout ends the connection, and a connection returned to the pool is
            # checked (and opened again after a restart) before the next cycle uses it.
            try:
                due = repo.next_poll_at(session)
            except Exception as exc:
                if _unavailable_database(exc, session) is None:
                    raise
                due = None
            _rolled_back(session)
            wait = IDLE_WAKE_SECONDS if due is None else (due - utcnow()).total_seconds()
            if wait <= 0 and not summary.polls:
                wait = IDLE_WAKE_SECONDS  # (due, yet this cycle polled nothing: not a busy loop)
            time.sleep(min(IDLE_WAKE_SECONDS, max(1.0, wait)))


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.importers import Utf8Lines

    name = "standard input" if args.file == "-" else args.file
    # (Opened first: a missing file or a folder is said at once, before any model loads.)
    stream = Utf8Lines(sys.stdin.buffer if args.file == "-" else _open_binary(args.file), name)
    _preload_encoder(settings)
    from pipeline.bootstrap import require_current_derived_data
    from pipeline.ingest import import_lines

    counts: dict[str, int] = {"new": 0, "duplicate": 0, "error": 0}
    printing = args.json
    with open_session(settings) as session, stream:
        require_current_derived_data(session, settings.neardup_params())
        for done, outcome in enumerate(import_lines(session, settings, stream, source=args.file), 1):
            result = outcome.result
            counts[result.status] += 1
            if printing:
                printing = _print_line(
                    json.dumps(
                        {
                            "id": outcome.input_id,
                            "article_id": result.article_id,
                            "status": result.status,
                            "duplicate_of": result.duplicate_of,
                            "copy_kind": result.copy_kind,
                            "similarity": result.similarity,
                            "lang": result.lang,
                            "topics": [to_json(hit) for hit in result.topics],
                            "watch": [to_json(hit) for hit in result.watch],
                            "error": result.error,
                        },
                        ensure_ascii=False,
                    )
                )
            elif result.status == "error" and not args.json:
                _stderr(f"  ! {result.error}")
            if done % 100 == 0:
                _stderr(f"... {done} lines: {_tally(counts)}")
    _stderr(f"imported {args.file}: {_tally(counts)}")
    if stream.replaced:
        _stderr(f"  {stream.replaced} line(s) were not UTF-8: their undecodable bytes became U+FFFD")
    if args.json and not printing:
        _stderr("  (the reader of the --json output went away; every line was still imported)")
    # Every line failed (a file of another format, a wrong encoding): say so in the status,
    # as `run --once` does when every feed fails.
    return 1 if counts["error"] and not counts["new"] and not counts["duplicate"] else 0


def _print_line(line: str) -> bool:
    """Print one line of machine-readable output; False once its reader has gone away.

    An import piped into `head` must not stop when `head` exits: the rest of the input is
    still imported (and counted on stderr), only its per-line output is dropped.
    """
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail too
        os.close(devnull)
        return False
    return True


def _tally(counts: dict[str, int]) -> str:
    return f"{counts['new']} new, {counts['duplicate']} duplicate, {counts['error']} failed"


def _open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise SummitwatchError(f"cannot read {path}: {exc.strerror}") from None


def cmd_extract(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.extract import extract_page
    from pipeline.language import detect_language

    failures = 0
    for name in args.files:
        try:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            page_error: str | None = f"cannot read file: {exc.strerror}"
            text, title, date, lang = "", None, None, None
        else:
            page = extract_page(body, max_bytes=settings.http.max_bytes)
            text, title, date, page_error = page.text, page.title, page.date, page.error
            lang = detect_language(text, hint=page.lang_hint).lang if text else None
        failures += bool(page_error)
        if args.json:
            print(
                json.dumps(
                    {
                        "file": name,
                        "text": text,
                        "title": title,
                        "date": date,
                        "lang": lang,
                        "error": page_error,
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
        elif page_error:
            _stderr(f"{name}: {page_error}")
        else:
            if len(args.files) > 1:
                print(f"==> {name} <==")
            print(text)
    return 1 if failures == len(args.files) else 0


def cmd_articles(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import browse
    from pipeline.classify import load_registry
    from pipeline.db import repo

    # (An empty value is no slug either: `--topic "$TOPIC"` with TOPIC unset listed every article.)
    if args.topic is not None or args.watch is not None:
        registry = load_registry(settings.topics_file)
        topic_slugs = sorted(entry.slug for entry in registry.topics)
        watch_slugs = sorted(entry.slug for entry in registry.watch)
        if args.topic is not None and args.topic not in topic_slugs:
            raise SummitwatchError(f"unknown topic {args.topic!r}; topics: {', '.join(topic_slugs)}")
        if args.watch is not None and args.watch not in watch_slugs:
            raise SummitwatchError(
                f"unknown watch item {args.watch!r}; watch items: {', '.join(watch_slugs)}"
            )

    wanted = repo.ArticleFilter(
        topic=args.topic,
        watch=args.watch,
        lang=browse.language_filter(args.lang, option="--lang"),
        feed=args.feed,
        since=args.since,
        until=args.until,
        text=args.q,
        include_duplicates=args.duplicates,
        include_seeds=args.seeds,
        sort=args.sort,
        limit=max(1, args.limit),
    )
    cross_language = (
        None
        if args.no_cross_language or args.q is None
        else browse.CrossLanguage(
            model=settings.encoder.model,
            threads=settings.encoder.threads,
            cache_dir=settings.encoder.cache_path,
        )
    )
    with open_session(settings, read_only=True) as session:
        page = browse.list_articles(session, wanted, cross_language=cross_language)
        if args.csv:
            sys.stdout.write(browse.csv_text([*page.rows, *page.cross_language]))
            _more_note(page)
            return 0
        for row in [*page.rows, *page.cross_language]:
            if args.json:
                print(json_line(browse.row_json(row)))
                continue
            article = row.article
            marker = "seed" if article.is_seed else ""
            if article.duplicate_of_id:
                marker = f"{article.copy_kind or 'copy'} of {article.duplicate_of_id}"
            if row.cross_language:
                marker = f"xlang {row.score:.2f}"
            extra = _copies_note(row.copies)
            head = f"{article.id:>6}  {row.moment:%Y-%m-%d}  {article.lang:<3} {marker:<18}"
            title = one_direction(row.title)
            # (Cut where no character is split: a flag, a vowel sign, a conjunct, a skin tone.)
            title = title if len(title) <= 80 else title[: cluster_start(title, 79)] + "…"
            print(f"{head} {title}{extra}")
            if row.topics or row.watch:
                tags = [t.topic for t in row.topics] + [f"watch:{w.item}" for w in row.watch]
                print(f"{'':>8}[{', '.join(tags)}]")
            if row.snippet is not None and row.snippet.text:
                via = f"(in copy {row.matched_in.id}, {row.matched_in.lang}) " if row.matched_in else ""
                print(f"{'':>8}{via}{one_direction(_marked(row.snippet))}")
            if article.url:
                print(f"{'':>8}{redact_url(article.url)}")
        if not page.rows and not page.cross_language and not args.json:
            _stderr("no articles match")
        elif page.cross_language and not args.json:
            _stderr(
                f"{len(page.cross_language)} of these (xlang) are in other languages, found by meaning "
                "(--no-cross-language leaves them out)"
            )
        _more_note(page)
    return 0


def _copies_note(copies: Sequence[Any]) -> str:
    """ " (+2 copies, also in: ru, zh)": a story's folded copies as the digest counts them,
    its translations by language."""
    same = sum(1 for copy in copies if copy.copy_kind != "translation")
    langs = sorted({copy.lang for copy in copies if copy.copy_kind == "translation"})
    parts = [f"+{same} {'copy' if same == 1 else 'copies'}"] if same else []
    if langs:
        parts.append(f"also in: {', '.join(langs)}")
    return f" ({', '.join(parts)})" if parts else ""


def _more_note(page: ResultPage) -> None:
    """Say on stderr (never in the listing itself) that the list was cut at ``--limit``."""
    if page.has_more:
        _stderr(f"{len(page.rows)} shown, more match: --limit N or narrow the filters")


def _marked(text: Any) -> str:
    """A snippet for the terminal: matched words in bold on a terminal, plain in a pipe."""
    if not sys.stdout.isatty():
        return str(text.text)
    return "".join(f"\033[1m{part}\033[0m" if hit else part for part, hit in text.parts)


def _lenient_id(raw: str) -> Any:
    """The ``id`` of a line refused for a value (a number out of range, NaN), so that its
    error can be matched to its input; None when the line is no JSON object at all."""
    try:
        # (a float, the refused ones too, is never taken for an id: read as a mark)
        record = json.loads(raw, parse_constant=str, parse_float=lambda _text: ...)
    except (ValueError, RecursionError):
        return None
    value = record.get("id") if isinstance(record, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.importers import Utf8Lines, loads_strict, without_surrogates
    from pipeline.ingest import IngestContext
    from pipeline.language import detect_language, filter_language
    from pipeline.topic_heads import classify_hybrid

    context = IngestContext.from_settings(settings)
    registry = context.registry
    name = "standard input" if args.file == "-" else args.file
    stream = Utf8Lines(sys.stdin.buffer if args.file == "-" else _open_binary(args.file), name)
    failures = classified = 0
    with stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            record: Any = None
            try:
                record = without_surrogates(loads_strict(raw))
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise ValueError("expected an object with a string 'text'")
            except (ValueError, RecursionError) as exc:
                failures += 1
                input_id = record.get("id") if isinstance(record, dict) else _lenient_id(raw)
                print(json.dumps({"id": input_id, "line": number, "error": str(exc)}), flush=True)
                continue
            title = record.get("title") if isinstance(record.get("title"), str) else None
            given = record.get("lang")
            # A code the detector could give ("EN", "en-GB": en); another ("xx", "Russian")
            # is no language to judge by: the text's own is detected.
            lang = filter_language(given) if isinstance(given, str) else None
            lang = lang or detect_language(f"{title or ''}\n{record['text']}").lang
            verdict = classify_hybrid(
                registry,
                context.classifier_heads,
                title=title,
                text=record["text"],
                lang=lang,
                vectors=context.embed(title, record["text"]),
            )
            classified += 1
            print(
                json.dumps(
                    {
                        "id": record.get("id"),
                        "lang": lang,
                        "relevant": verdict.relevant,
                        "topics": [to_json(hit) for hit in verdict.topics],
                        "watch": [to_json(hit) for hit in verdict.watch],
                        "abstained": verdict.abstained,
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
    if failures:
        _stderr(f"{failures} lines could not be read")
    if stream.replaced:
        _stderr(f"{stream.replaced} line(s) were not UTF-8: their undecodable bytes became U+FFFD")
    # Every line failed (a file of another format): say so in the status, as import does.
    return 1 if failures and not classified else 0


def cmd_reclassify(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import func, select

    from pipeline.db import repo
    from pipeline.db.schema import Article, utcnow
    from pipeline.ingest import IngestContext, reclassify_articles
    from pipeline.topic_heads import classifier_identity

    context = IngestContext.from_settings(settings)
    identity = classifier_identity(settings.topics_file)  # (what the labels are given by)
    _stderr(f"loading the encoder ({settings.encoder.model}) and the classifier's learned layer")
    context.classifier_heads  # noqa: B018 (loaded before the first batch, as the message says)
    done = relevant = 0
    now = utcnow()
    started = time.monotonic()
    with open_session(settings) as session:
        total = session.scalar(select(func.count()).select_from(Article)) or 0
        for batch in repo.article_ids_in_batches(session):
            verdicts = reclassify_articles(session, context, batch, now)
            done += len(verdicts)
            relevant += sum(verdict.relevant for verdict in verdicts)
            session.commit()
            # (Articles stored meanwhile, by a poll or an import, are classified too.)
            total = max(total, done)
            _stderr(f"... {done}/{total} articles re-classified ({time.monotonic() - started:.0f}s)")
    with open_session(settings) as session:
        # Every stored label is this classifier's now (what `init` compares with).
        repo.record_labels_classifier(session, identity)
        session.commit()
    _stderr(f"re-classified {done} articles ({relevant} about Russia-China relations)")
    return 0


def cmd_train_classifier(args: argparse.Namespace, settings: Settings) -> int:
    from threadpoolctl import threadpool_limits

    from pipeline.classify import load_registry
    from pipeline.encoder import load_configured
    from pipeline.errors import ConfigError
    from pipeline.topic_heads import (
        DEFAULT_HEADS,
        check_training_labels,
        read_training_articles,
        save_heads,
        train_heads,
    )

    fixtures = Path("tests") / "fixtures" / "classify"
    paths = args.train or [fixtures / "real_train.jsonl", fixtures / "dev.jsonl"]
    for path in paths:
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such training file (run from the repository root, or pass --train)"
            )
    output: Path = args.output or DEFAULT_HEADS
    if output.is_dir():
        raise ConfigError(f"--output {output}: a directory; name the file to write")
    registry = load_registry(settings.topics_file)
    articles = read_training_articles(paths)
    check_training_labels(registry, articles)
    try:
        # Before the training, not after it: a folder that cannot be made fails at once.
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot create its folder ({exc.strerror or exc})") from None
    encoder = load_configured(settings.encoder)
    started = time.monotonic()
    # One BLAS thread: sums in a fixed order, so the same inputs give the same file.
    with threadpool_limits(limits=1):
        heads, report = train_heads(
            registry,
            encoder,
            articles,
            progress=lambda m: _stderr(f"{m} ({time.monotonic() - started:.0f}s)"),
        )
    try:
        save_heads(heads, output)
    except OSError as exc:
        raise ConfigError(
            f"--output {output}: cannot write the classifier heads ({exc.strerror or exc})"
        ) from None
    for name, row in report.rows.items():
        _stderr(f"cross-validation by outlet, {report.folds} folds, {name}: {json.dumps(row)}")
    summary = {
        "output": str(output),
        "fingerprint": heads.fingerprint,
        "articles": len(articles),
        "cross_validation": {"folds": report.folds, "by": "outlet", **report.rows},
    }
    print(json.dumps(summary))
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest import IngestContext, reindex_vectors

    context = IngestContext.from_settings(settings)
    _stderr(f"encoder: {settings.encoder.model} (loading)")
    started = time.monotonic()
    with open_session(settings) as session:
        total = reindex_vectors(
            session,
            context,
            recompute=args.all,
            batch_size=max(1, args.batch_size),
            progress=lambda done: _stderr(f"... {done} articles indexed ({time.monotonic() - started:.0f}s)"),
        )
    _stderr(
        f"indexed {total} articles with {context.sentence_encoder.name} in {time.monotonic() - started:.1f}s"
    )
    return 0


def cmd_unlink(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import repo
    from pipeline.db.schema import utcnow

    with open_session(settings) as session:
        try:
            # A writer of articles like any other: it takes its turn with polls and imports,
            # which may be linking a copy to this very cluster.
            repo.begin_write(session)
            done = repo.unlink_copy(session, args.article_id, utcnow(), reason=args.reason)
        except repo.NotACopy as exc:
            session.rollback()
            _stderr(f"summitwatch: error: {exc}")
            return 1
        session.commit()
    if args.json:
        print(
            json.dumps(
                {
                    "article_id": done.article_id,
                    "was_copy_of": done.was_copy_of,
                    "copy_kind": done.copy_kind,
                    "restored_copy_ids": done.restored_copy_ids,
                }
            )
        )
    else:
        restored = (
            f"; {len(done.restored_copy_ids)} of its former copies point at it again: "
            + ", ".join(map(str, done.restored_copy_ids))
            if done.restored_copy_ids
            else ""
        )
        print(
            f"article {done.article_id} is an original again (it was a {done.copy_kind or 'copy'} "
            f"copy of {done.was_copy_of}){restored}. Coverage counts it from the next report; "
            "no fold joins it to another cluster again."
        )
    return 0


def cmd_coverage(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.coverage import coverage_json
    from pipeline.db.schema import utcnow
    from pipeline.digest import sparkline
    from pipeline.reporting import bins_since, compute_coverage, coverage_window, load_reporting_config

    loaded = load_reporting_config(settings)
    config = loaded[0]
    days = args.days or config.coverage_days
    now = utcnow()
    with open_session(settings, read_only=True) as session:
        report = compute_coverage(session, settings, now=now, loaded=loaded)
    # The same whole UTC days as the web UI's /coverage?days=N, today the last of them.
    first_day, _, since = coverage_window(now, days)
    step = 1  # bins per bar: the bars span the days shown, in at most SPARK_WIDTH characters
    for name, bins in report.bins.items():
        shown = bins_since(bins, since, config.bin_size)
        step = _bins_per_bar(len(shown), config.bin_size)
        changes = [c for c in report.changes[name] if c.at >= since]
        if args.json:
            print(json.dumps(coverage_json(name, shown, changes, report.reported), ensure_ascii=False))
            continue
        total = sum(count for _, count in shown)
        heading = f"{report.labels.get(name, name)} ({name})"
        counts = [count for _, count in shown]
        bars = [sum(counts[index : index + step]) for index in range(0, len(counts), step)]
        print(f"{heading:<52} {total:>5}  {sparkline(bars)}")
        for change in changes:
            arrow = "up" if change.direction == "up" else "down"
            digest = report.reported.get(change.key)
            told = f" (reported in digest {digest})" if digest is not None else ""
            print(
                f"{'':>4}{change.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC {arrow}: {change.explanation}{told}"
            )
    if not args.json:
        hours = config.bin_size / timedelta(hours=1)
        _stderr(
            f"last {days} day{'' if days == 1 else 's'}, since {first_day:%Y-%m-%d} 00:00 UTC "
            "(totals and bars alike; "
            f"a bar per {hours * step:g} hours), "
            f"{hours:g}-hour bins; history since {report.history_start.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            + (
                f", counted from {report.first_bin:%Y-%m-%d %H:%M} UTC (at most {MAX_HISTORY_DAYS} days back)"
                if report.first_bin > report.history_start
                else ""
            )
        )
    return 0


def _bins_per_bar(bins: int, bin_size: timedelta) -> int:
    """How many bins one bar of `coverage` sums: the fewest that keep the bars within
    SPARK_WIDTH and on day boundaries (a whole number of them a day, or of days a bar). The
    bars start at midnight; three 6-hour bins a bar would cut the days in a pattern that
    shows a rhythm the coverage does not have."""
    per_day = max(1, round(timedelta(days=1) / bin_size))
    step = max(1, -(-bins // SPARK_WIDTH))
    while per_day % step and step % per_day:
        step += 1
    return step


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.digest import render_plain
    from pipeline.reporting import deliver_pending, destination_name, pending_digests, prepare_digests
    from pipeline.slack import slack_target

    if args.json and not args.dry_run:
        # (Without it the digests would be delivered for real, and nothing printed as JSON.)
        raise SummitwatchError("--json prints the payloads of a dry run: use it with --dry-run")
    target = slack_target(settings.slack)
    destination = destination_name(target)
    with open_session(settings, durable=True, read_only=args.dry_run) as session:
        if args.dry_run:
            # What a real run would send: the digests still pending from earlier runs (their
            # parts not yet delivered), in order, then the ones it would build now.
            waiting = pending_digests(session, destination)
            digests = prepare_digests(session, settings, destination, dry_run=True)
            session.rollback()
            if not digests and not waiting:
                _stderr("nothing to send: no unreported changes, no summary due, nothing pending")
            for digest, first_part, status in [
                *((digest, sent, "pending") for digest, sent in waiting),
                *((digest, 0, "new") for digest in digests),
            ]:
                if args.json:
                    print(
                        json.dumps(
                            {
                                "digest_key": digest.digest_key,
                                "kind": digest.kind,
                                "status": status,
                                "messages": [m.to_json() for m in digest.messages[first_part:]],
                            },
                            ensure_ascii=False,
                        )
                    )
                else:
                    if status == "pending":
                        print(
                            f"(pending from an earlier run; parts {first_part + 1} to {len(digest.messages)})"
                        )
                    print(render_plain(digest))
                    print()
            return 0
        digests = prepare_digests(session, settings, destination)
        report = deliver_pending(session, target, destination, digest_dir=settings.digest_dir, out=print)
    _stderr(
        f"{len(digests)} digests built; delivered to {destination}: {len(report.sent)} sent, "
        f"{len(report.pending)} still pending, {len(report.failed)} failed"
    )
    for error in report.errors:
        _stderr(f"  ! {error}")
    return 1 if report.pending or report.failed else 0


def cmd_feeds_add(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import repo
    from pipeline.feed_urls import FEED_LANG_PATTERN, clean_name, normalise_feed_url

    try:
        url = normalise_feed_url(args.url)
    except ValueError as exc:
        shown = redact_url(args.url).encode("unicode_escape").decode("ascii")
        raise SummitwatchError(f"feed URL {shown!r} {exc}") from None
    if args.lang is not None and not re.fullmatch(FEED_LANG_PATTERN, args.lang):
        raise SummitwatchError(f"--lang {args.lang!r}: expected an ISO 639 code such as en, ru, zh or pt-BR")
    with open_session(settings) as session:
        feed, created = repo.upsert_feed(
            session, url, name=clean_name(args.name), outlet=clean_name(args.outlet), lang=args.lang
        )
        session.commit()
        _stderr(f"{'added' if created else 'updated'} feed {feed.id}: {redact_url(feed.url)}")
    return 0


def cmd_feeds_list(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import repo

    with open_session(settings, read_only=True) as session:
        for feed in repo.list_feeds(session):
            if args.json:
                print(
                    json.dumps(
                        {
                            "id": feed.id,
                            "url": redact_url(feed.url),
                            "moved_to": feed.display_moved_url,
                            "name": feed.name,
                            "outlet": feed.outlet,
                            "lang": feed.lang,
                            "enabled": feed.enabled,
                            "gone_since": feed.gone_at.isoformat() if feed.gone_at else None,
                            "failures": feed.failure_count,
                            "last_error": feed.last_error,
                            "last_polled_at": feed.last_polled_at.isoformat()
                            if feed.last_polled_at
                            else None,
                            "next_poll_at": feed.next_poll_at.isoformat() if feed.next_poll_at else None,
                        },
                        ensure_ascii=False,
                    )
                )
                continue
            if feed.gone_at is not None:
                state = "gone (410)"  # (not polled, enabled or not, until `feeds reset`)
            elif not feed.enabled:
                state = "disabled"
            else:
                state = f"{feed.failure_count} failures" if feed.failure_count else "ok"
            polled = f"{feed.last_polled_at:%Y-%m-%d %H:%M}" if feed.last_polled_at else "never polled"
            due = f"next {feed.next_poll_at:%Y-%m-%d %H:%M}" if feed.enabled and feed.next_poll_at else ""
            print(
                f"{feed.id:>4}  {feed.lang or '?':<3} {state:<12} {polled:<17} {due:<21} "
                f"{feed.name or ''} <{redact_url(feed.url)}>"
            )
            if feed.moved_url:
                # (A 301 or 308: polled at its new address, still named by its own.)
                print(f"{'':>10}moved permanently to <{feed.display_moved_url}>")
            if feed.failure_count and feed.last_error:
                # A failing feed backs off (next poll) and says why.
                print(f"{'':>10}last error: {feed.last_error}")
    return 0


def cmd_feeds_toggle(args: argparse.Namespace, settings: Settings) -> int:
    """``feeds enable`` / ``feeds disable``: all the named feeds or, if one is unknown, none."""
    from pipeline.db import repo

    state = "enabled" if args.enabled else "disabled"
    with open_session(settings) as session:
        changed: dict[int, tuple[Feed, bool]] = {
            feed.id: (feed, repo.set_feed_enabled(session, feed, args.enabled))
            for feed in _named_feeds(session, args.feeds)
        }
        session.commit()
        for feed, did in changed.values():
            gone = (
                f" (gone since {feed.gone_at:%Y-%m-%d}: `feeds reset` polls it again)" if feed.gone_at else ""
            )
            _stderr(f"{state if did else 'already ' + state} feed {feed.id}: {redact_url(feed.url)}{gone}")
    return 0


def _named_feeds(session: Session, references: Sequence[str]) -> list[Feed]:
    """The feeds ``references`` name (an id or a URL in any spelling), each once, in order;
    or, when one names no feed, a one-line error and none."""
    from pipeline.db import repo

    found = {reference: repo.feed_by_reference(session, reference) for reference in references}
    unknown = [reference for reference, feed in found.items() if feed is None]
    if unknown:
        shown = ", ".join(repr(redact_url(reference)[:200]) for reference in unknown)
        raise SummitwatchError(
            f"no feed has the id or URL {shown} (see `summitwatch feeds list`); nothing changed"
        )
    # (One feed named twice, by its id and its URL, is one.)
    return list({feed.id: feed for feed in found.values() if feed is not None}.values())


def cmd_feeds_reset(args: argparse.Namespace, settings: Settings) -> int:
    """``feeds reset``: the named feeds (all, or none if one is unknown) forget what polling
    learned of them (gone, moved, failing) and are polled at their own URL at the next run."""
    from pipeline.db import repo

    with open_session(settings) as session:
        feeds = _named_feeds(session, args.feeds)
        for feed in feeds:
            repo.reset_feed(session, feed)
        session.commit()
        for feed in feeds:
            polled = "polled at the next run" if feed.enabled else "disabled: `feeds enable` to poll it"
            _stderr(f"reset feed {feed.id}: {redact_url(feed.url)} ({polled})")
    return 0


def cmd_feeds_import_opml(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import repo
    from pipeline.feed_urls import FEED_LANG_PATTERN, normalise_feed_url
    from pipeline.feeds import parse_opml

    try:
        body = Path(args.file).read_bytes()
    except OSError as exc:
        raise SummitwatchError(f"cannot read {args.file}: {exc.strerror}") from None
    entries = parse_opml(body)
    added = skipped = 0
    with open_session(settings) as session:
        for entry in entries:
            try:
                url = normalise_feed_url(entry["url"])
            except ValueError as exc:
                shown = redact_url(entry["url"]).encode("unicode_escape").decode("ascii")
                _stderr(f"  skipped {shown[:200]!r}: the URL {exc}")
                skipped += 1
                continue
            lang = entry.get("lang")
            if lang is not None and not re.fullmatch(FEED_LANG_PATTERN, lang):
                lang = None  # (an OPML "language" is free text: "English", "ru_RU.UTF-8")
            # A feed already listed keeps its state: importing a backup re-enables nothing;
            # a new one takes the state the backup gives it.
            _, created = repo.upsert_feed(
                session, url, name=entry.get("name"), outlet=entry.get("outlet"), lang=lang, enabled=None
            )
            if created and entry.get("disabled"):
                repo.upsert_feed(session, url, enabled=False)
            added += created
        session.commit()
    _stderr(f"{args.file}: {len(entries)} feeds, {added} new" + (f", {skipped} skipped" if skipped else ""))
    return 0


def cmd_feeds_export_opml(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.db import repo
    from pipeline.feeds import to_opml

    with open_session(settings, read_only=True) as session:
        feeds = [
            {"url": f.url, "name": f.name, "lang": f.lang, "outlet": f.outlet, "enabled": f.enabled}
            for f in repo.list_feeds(session)
        ]
    sys.stdout.write(to_opml(feeds).decode("utf-8"))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 < args.port < 65536:
        raise SummitwatchError(f"--port must be between 1 and 65535, not {args.port}")
    # Before anything is loaded: a port in use or a host that does not resolve stopped only
    # after the encoder had loaded, with uvicorn's log lines and exit status 3.
    sockets = _listening_sockets(args.host, args.port)
    try:
        import uvicorn

        from pipeline.web import create_app

        with open_session(settings, read_only=True):
            pass  # stops here, saying why, when the database is unreachable or not initialised
        from pipeline.browse import CrossLanguage, warm_up

        # Loaded now, not by the first search (the encoder's table takes seconds to read).
        _stderr("loading the search segmenter and the multilingual encoder ...")
        limits = settings.encoder
        warm_up(CrossLanguage(model=limits.model, threads=limits.threads, cache_dir=limits.cache_path))
        host = f"[{args.host}]" if ":" in args.host else args.host
        _stderr(f"summitwatch web UI (read-only) on {_safe_url(settings.db_url)}: http://{host}:{args.port}/")
        config = uvicorn.Config(
            create_app(settings, hosts=[args.host]),
            host=args.host,
            port=args.port,
            lifespan="on",
            ws="none",
            log_level="debug" if args.verbose else "info",
        )
        # (As uvicorn.run: Ctrl+C is how the server is stopped, not an error.)
        with suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on ``host``:``port``, one per address the host resolves to (as
    uvicorn would open them), handed to uvicorn once the app is loaded; or a one-line error
    naming the address."""
    import socket

    if not host.strip():
        # getaddrinfo reads no host as every interface: an unset variable ("--host
        # $HOST") must not open the login-less UI to the network.
        raise SummitwatchError(
            "no address to listen on: give --host 127.0.0.1, or 0.0.0.0 for every interface"
        )
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def refused(exc: Exception) -> SummitwatchError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return SummitwatchError(f"cannot listen on {shown}: {reason[:1].lower()}{reason[1:]}")

    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError, ValueError) as exc:  # (a name that is not one: too long, a NUL)
        raise refused(exc) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            # As asyncio's create_server: a restart reuses the port at once, and "::" does
            # not also take the IPv4 addresses that "0.0.0.0" binds.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # Listening now holds the port while the encoder loads; connections wait for it.
            sock.listen(2048)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise refused(exc) from None
    return sockets


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.demo import run_demo

    # Progress on standard error; the report and the digest, the demo's result, on standard output.
    return run_demo(settings, port=args.port, out=_stderr, result=_stdout_line)


def _stdout_line(line: str) -> None:
    print(line, flush=True)


def _safe_url(url: str) -> str:
    from pipeline.db.engine import safe_db_url

    return safe_db_url(url)


if __name__ == "__main__":
    raise SystemExit(console())
