"""Engines, sessions and schema migrations. Callers own the engine and its sessions."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import ConfigError, DatabaseError, DatabaseUnavailable
from pipeline.redaction import redact_url

if TYPE_CHECKING:
    # Alembic loads only to migrate: every other command checks the schema without it.
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(db_url: str, *, durable: bool = False, long_lived: bool = False, **kwargs: Any) -> Engine:
    """Create an engine for ``db_url`` with the per-dialect settings summitwatch relies on.

    ``durable``: on SQLite, every commit waits for the disk (the digest outbox's engines;
    see :func:`_sqlite_pragmas`). PostgreSQL commits durably whatever this says.
    ``long_lived``: the engine serves for hours (the web UI): a SQLite file it could only
    open as it stands (``immutable``, see :func:`_read_only_uri`) is refused, since its
    connections would not see what a writer adds, and could misread a file changed under them.
    """
    url = parse_db_url(db_url)  # a clear error for a URL that is not one, before SQLAlchemy's
    kwargs.setdefault("json_serializer", json_text)
    if db_url.startswith("sqlite"):
        engine = create_engine(db_url, connect_args={"timeout": 30}, **kwargs)
        read_only = _read_only_uri(url)
        if long_lived and read_only is not None and "immutable=1" in read_only:
            path = _sqlite_file(url)
            raise DatabaseError(
                f"cannot serve the database {path} from a read-only folder: SQLite must create "
                f"{Path(f'{path}-shm').name} there to see what is written after it is opened "
                "(make the folder writable for this user, or serve a copy)"
            )
        if read_only is not None:
            event.listen(engine, "do_connect", functools.partial(_connect_read_only, uri=read_only))
        event.listen(
            engine,
            "connect",
            functools.partial(_sqlite_pragmas, durable=durable, read_only=read_only is not None),
        )
        return engine
    # Text in UTF-8 whatever the database's encoding: a SQL_ASCII database would otherwise
    # hand the driver its text as bytes, and SQLAlchemy's first connection fail on them
    # with a TypeError, before the encoding check (:func:`init_lock`) could refuse it.
    if "client_encoding" not in url.query:
        kwargs["connect_args"] = {"client_encoding": "utf8", **kwargs.get("connect_args", {})}
    return create_engine(db_url, pool_pre_ping=True, **kwargs)


def json_text(value: Any) -> str:
    """A JSON column's value as stored: other scripts as themselves, not ``\\uXXXX`` escapes,
    so that the evidence in the SQL views reads as text."""
    return json.dumps(value, ensure_ascii=False)


def parse_db_url(db_url: str) -> URL:
    """``db_url`` parsed, or :class:`ConfigError` saying what is wrong with it (never
    echoing it: it may hold a password)."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise ConfigError(
            "the database URL cannot be parsed (expected e.g. sqlite:///summitwatch.db)"
        ) from None
    except ValueError:  # e.g. int() of a port that is not a number
        raise ConfigError(
            "the database URL is not valid: its port is not a number (a ':' in the password must "
            "be written %3A)"
        ) from None
    if url.host and "@" in url.host:
        # The part of a password after an unencoded "@" would be taken for the host, and
        # shown in every connection error.
        raise ConfigError("the database URL is not valid: an '@' in the password must be written %40")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ConfigError(f"the database URL is not valid: port {url.port} is not one (1 to 65535)")
    return url


def safe_db_url(db_url: str) -> str:
    """``db_url`` as shown: without its password, whether in the userinfo or a parameter."""
    try:
        shown = make_url(db_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        shown = db_url
    return redact_url(shown)


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for an in-memory database (or a ``file:`` URI)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_write_problem(db_url: str) -> str | None:
    """Why the SQLite database of ``db_url`` cannot be written, naming the file or folder
    that is not writable; ``None`` when it can (or is not SQLite, or does not exist yet).

    A WAL database is written through ``-wal`` and ``-shm`` files that SQLite creates
    beside it, so its folder must be writable as well as the file.
    """
    url = parse_db_url(db_url)
    path = _sqlite_file(url) if url.get_backend_name() == "sqlite" else None
    return _write_problem(path) if path is not None else None


def _write_problem(path: Path) -> str | None:
    if not path.exists():
        return None
    if not os.access(path, os.W_OK):
        return f"cannot write to the database {path}: the file is not writable"
    folder = path.absolute().parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"cannot write to the database {path}: its folder {folder} is not writable "
            "(SQLite writes its journal files beside the database)"
        )
    for journal in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        # A reader of a read-only file leaves them behind, read-only too.
        if journal.exists() and not os.access(journal, os.W_OK):
            return f"cannot write to the database {path}: its file {journal} is not writable"
    return None


def require_writable(db_url: str) -> None:
    """Stop with :func:`sqlite_write_problem`'s message before a command that writes
    does any work (a write would fail only at its first item)."""
    problem = sqlite_write_problem(db_url)
    if problem is not None:
        raise DatabaseError(problem)


def _read_only_uri(url: URL) -> str | None:
    """The URI that opens, read-only, a SQLite file this process may not write (so that
    reading commands work on it); ``None`` when it may (or the database is no file).

    A WAL database is read through its ``-shm`` file. When it is not there and the
    folder is read-only, SQLite could not create it and would refuse even to read, so the
    file is opened as it stands (``immutable``: no locks, no journal); that is only
    possible when no ``-wal`` file holds changes not yet in the database file.
    """
    path = _sqlite_file(url)
    if path is None or _write_problem(path) is None:
        return None
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    folder = path.absolute().parent
    shm, wal = Path(f"{path}-shm"), Path(f"{path}-wal")
    if not os.access(folder, os.W_OK | os.X_OK) and not shm.exists():
        if wal.exists() and wal.stat().st_size:
            raise DatabaseError(
                f"cannot read the database {path}: its folder {folder} is not writable and SQLite "
                f"must create {shm.name} there to read the changes in {wal.name}"
            )
        uri += "&immutable=1"
    return uri


def _connect_read_only(
    _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any], *, uri: str
) -> None:
    cargs[:] = [uri]
    cparams["uri"] = True


def _sqlite_pragmas(
    dbapi_connection: Any, _record: Any, *, durable: bool = False, read_only: bool = False
) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web UI read while a poll writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA foreign_keys=ON")
    if not read_only:
        # (A read-only connection cannot switch; a database made by `init` is in WAL already.)
        cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL syncs the log at checkpoints rather than at every commit: a
    # process that dies loses nothing committed, and the file is never corrupted; only a
    # power cut or an OS crash may roll back the last commits (items that are then polled
    # again). FULL waits for the disk at each commit: the digest outbox needs that, since
    # a part recorded as posted and then rolled back by a power cut would be posted again.
    cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


# pg_advisory_lock key of `summitwatch init` (any fixed number no other lock uses).
INIT_LOCK_KEY = 0x5357_1217


def lock_file_path(engine: Engine, name: str) -> str | None:
    """The lock file ``name`` beside a SQLite database file (``<file>.<name>``); None for a
    database that is no plain file (in memory, or given as a ``file:`` URI)."""
    database = engine.url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return f"{database}.{name}"


@contextmanager
def flocked(handle: IO[bytes], *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on the open file ``handle`` for the block, released after it.
    ``wait=False``: not waited for; the block is told whether it got it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def init_lock(engine: Engine) -> Iterator[None]:
    """One ``init`` at a time per database, the others waiting for it.

    Two at once on a new database both found no schema and both created it: the second
    failed with "table feeds already exists". On PostgreSQL an advisory lock on a
    connection of its own; on SQLite an exclusive lock on a file beside the database.
    """
    if engine.dialect.name == "sqlite":
        path = lock_file_path(engine, "init-lock")
        if path is None:
            yield
            return
        try:
            handle = open(path, "a+b")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the database at {engine.url.database}: {exc.strerror}"
            ) from None
        with handle, flocked(handle):
            yield
        return
    with engine.connect() as connection:
        # Before anything is made: a database in another encoding stores none of the
        # seed corpus's text (init stopped after the schema, with a traceback).
        encoding = connection.scalar(text("SHOW server_encoding"))
        if str(encoding).upper() not in ("UTF8", "UTF-8"):
            raise DatabaseError(
                f"the database's encoding is {encoding}; summitwatch needs UTF8: create it with "
                "CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0"
            )
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
            connection.commit()


def upgrade_schema(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest migration; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    _refuse_unknown_revision(before)
    # (An in-memory database is the engine's own: another engine would open another one.)
    in_file = engine.dialect.name == "sqlite" and _sqlite_file(engine.url) is not None
    migrating = _transactional_ddl(engine) if in_file else engine
    try:
        command.upgrade(alembic_config(migrating), "head")
    except OperationalError as exc:
        if is_busy(exc):
            raise DatabaseError(
                f"cannot migrate the database: it stayed locked by another writer ({driver_reason(exc)}); "
                "nothing was changed: run init again once that writer is done"
            ) from None
        raise DatabaseError(f"cannot migrate the database: {exc.orig}") from None
    finally:
        if migrating is not engine:
            migrating.dispose()
    return before, current_revision(engine)


def _transactional_ddl(engine: Engine) -> Engine:
    """An engine for ``engine``'s SQLite file whose transactions hold schema changes too.

    Python's sqlite3 driver opens a transaction only before a data change, so each CREATE
    and ALTER of a migration commits on its own, and the revision is recorded last: a
    process stopped halfway (killed, the machine down) left tables without a revision,
    which no later ``init`` could complete ("table feeds already exists"). Here the driver
    leaves transactions alone and every one begins explicitly (taking the write lock at
    once), so the migrations to head are one transaction, whole or not at all.
    """
    migrating = make_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(migrating, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(migrating, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for an empty database).

    Read from Alembic's ``alembic_version`` table directly (importing Alembic costs more
    than a short command does).
    """
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return None
            versions = list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    except OperationalError as exc:
        # (One line: the driver's message may go on with a tab-indented hint.)
        reason = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
        fault = configuration_fault(exc)
        raise DatabaseError(
            f"cannot connect to the database: {reason}" + (f" ({fault})" if fault else "")
        ) from None
    if len(versions) > 1:
        raise DatabaseError(f"the database records several schema revisions: {', '.join(sorted(versions))}")
    return versions[0] if versions else None


VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=\s*(?:[\"']([^\"']+)[\"']|None)", re.MULTILINE)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration shipped with this version: the one no other migration follows.

    Read from the ``revision``/``down_revision`` lines of the migration files; if they do
    not form one chain, Alembic decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return _alembic_head()
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else _alembic_head()


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every migration shipped with this version."""
    found = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        revision = _REVISION.search(path.read_text(encoding="utf-8"))
        if revision is not None:
            found.add(revision.group(1))
    return frozenset(found)


def _refuse_unknown_revision(current: str | None) -> None:
    """A schema revision no migration of this version names: a newer summitwatch wrote it.
    Nothing here can read it, and ``init`` cannot take it back."""
    if current is not None and current not in known_revisions():
        raise DatabaseError(
            f"database schema is at {current}, which this version of summitwatch does not know "
            f"(its newest is {head_revision()}): the database was made by a newer version; "
            "upgrade summitwatch"
        )


def _alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://")))
    return script.get_current_head()


def require_current_schema(engine: Engine) -> None:
    """Stop with a clear message when the database is missing or behind the code."""
    current = current_revision(engine)
    _refuse_unknown_revision(current)
    if current != head_revision():
        raise DatabaseError(
            f"database schema is at {current or 'nothing'}, expected {head_revision()}: "
            "run `summitwatch init` first"
        )


_VIEW = re.compile(r"CREATE VIEW (\w+) AS", re.IGNORECASE)


def views_file(config_dir: Path | None = None) -> Path:
    """``sql/views.sql``: beside the config directory (an installed image), else the repository's."""
    if config_dir is not None:
        beside_config = config_dir.resolve().parent / "sql" / "views.sql"
        if beside_config.is_file():
            return beside_config
    return Path(__file__).resolve().parent.parent.parent / "sql" / "views.sql"


def apply_views(engine: Engine, path: Path | None = None) -> list[str]:
    """(Re-)create the analyst views of ``sql/views.sql``; returns their names."""
    path = path or views_file()
    if not path.is_file():
        raise DatabaseError(f"the view definitions {path} are missing")
    sqlite = engine.dialect.name == "sqlite"
    source = path.read_text(encoding="utf-8")
    source = re.sub(
        r"\{day\((.*?)\)\}(?= AS day)", r"date(\1)" if sqlite else r"((\1) AT TIME ZONE 'UTC')::date", source
    )
    source = source.replace("{false}", "0" if sqlite else "false")
    statements = [
        statement.strip()
        for statement in re.split(
            r";\s*\n", "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("--"))
        )
        if statement.strip()
    ]
    names = [match.group(1) for statement in statements if (match := _VIEW.search(statement))]
    # On SQLite the driver commits each DROP and CREATE on its own: while `init` ran, an
    # analyst's query (or a dashboard's) found the views gone ("no such table: v_news"),
    # and an `init` killed between the two left them gone. Replaced in one transaction, as
    # the migrations are (:func:`_transactional_ddl`): readers see the old views or the new.
    in_file = sqlite and _sqlite_file(engine.url) is not None
    replacing = _transactional_ddl(engine) if in_file else engine
    try:
        with replacing.begin() as connection:
            for name in reversed(names):
                connection.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        if replacing is not engine:
            replacing.dispose()
    return names


@contextmanager
def open_session(
    db_url: str, *, migrate: bool = False, durable: bool = False, read_only: bool = False
) -> Iterator[Session]:
    """A session on ``db_url`` after checking (or, with ``migrate``, upgrading) the schema.

    The engine lives as long as the block: callers (a CLI command, a task) own it.
    ``durable``: see :func:`make_engine`. ``read_only``: the caller only reads, so a
    SQLite file (or folder) that cannot be written will do; otherwise that stops here.
    """
    if not migrate:
        _require_sqlite_file(db_url)
    if not read_only:
        require_writable(db_url)
    engine = make_engine(db_url, durable=durable)
    try:
        if migrate:
            upgrade_schema(engine)
        else:
            require_current_schema(engine)
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _require_sqlite_file(db_url: str) -> None:
    """A SQLite URL naming a file that does not exist: say so, before SQLite creates an
    empty one there (a mistyped path would leave a stray database behind)."""
    url = parse_db_url(db_url)
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if not in_memory and not Path(database).exists():
        raise DatabaseError(f"no database at {database}: run `summitwatch init` first to create it")


def require_database(session: Session) -> None:
    """Raise :class:`DatabaseError` unless the database answers now.

    Called after a statement failed: if the database itself is gone (stopped, restarting,
    network cut), the item is not at fault, and the run must stop rather than mark every
    remaining item as failed. The session is rolled back first (its transaction is lost).
    """
    try:
        session.rollback()
        session.execute(text("SELECT 1"))
        session.rollback()
    except DBAPIError as exc:
        reason = driver_reason(exc)
        raise DatabaseUnavailable(
            f"the database is unavailable ({reason}); what was committed is kept, run again once it is back",
            reason=reason,
        ) from None


# SQLite's result code for a write it may not make (a read-only file, folder or mount),
# also the low byte of its extended codes (SQLITE_READONLY_DIRECTORY, ...).
SQLITE_READONLY = 8


def refuses_writes(exc: DBAPIError) -> bool:
    """SQLite refused to write the database file: running again changes nothing."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == SQLITE_READONLY


# SQLite's result codes for a lock another connection held past the busy timeout.
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
# PostgreSQL's SQLSTATE for a lock not obtained within ``lock_timeout``.
PG_LOCK_NOT_AVAILABLE = "55P03"


def is_busy(exc: DBAPIError) -> bool:
    """Another writer held the database's lock for longer than this one would wait (SQLite's
    busy timeout, PostgreSQL's ``lock_timeout``): nothing is wrong with the item or the
    database, and the same work can go on once that writer is done."""
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state == PG_LOCK_NOT_AVAILABLE


# What a PostgreSQL server says when the URL or the server's settings are wrong, not when
# it is away: running again changes nothing. (psycopg gives no SQLSTATE for a refused
# connection, only the server's message.)
_CONFIGURATION_FAULTS = (
    (
        re.compile(r"password authentication failed|no pg_hba\.conf entry|role \S+ does not exist"),
        "check the user and password in the database URL",
    ),
    (re.compile(r"database \S+ does not exist"), "create it, or fix the database name in the URL"),
    (
        re.compile(r"\bSSL\b|certificate", re.IGNORECASE),
        "check sslmode in the URL and the server's SSL settings",
    ),
)
_PG_QUERY_CANCELED = "57014"
_PG_AUTHENTICATION = ("28000", "28P01")


def configuration_fault(exc: DBAPIError) -> str | None:
    """What to fix when ``exc`` is the database URL's or the server settings' fault (a wrong
    password, a missing database, SSL, a statement timeout too short for summitwatch's
    statements), or None when the database may simply be away for now."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state == _PG_QUERY_CANCELED:
        return "the server cancelled a statement: raise statement_timeout for summitwatch's user or URL"
    if state in _PG_AUTHENTICATION:
        return _CONFIGURATION_FAULTS[0][1]
    if getattr(orig, "sqlite_errorcode", None) is not None:
        return None
    message = str(orig)
    return next((hint for pattern, hint in _CONFIGURATION_FAULTS if pattern.search(message)), None)


def driver_reason(exc: DBAPIError) -> str:
    """The first line of the driver's message: no SQL, no parameters."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__
