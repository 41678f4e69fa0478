"""The full-text index in the database: FTS5 on SQLite, ``tsvector`` + GIN on PostgreSQL.

Both hold the token streams of :mod:`pipeline.search` (title and text of every stored
article), so the analysis is the same everywhere and only matching and ranking are the
database's: BM25 on SQLite (``bm25``), ``ts_rank`` on PostgreSQL. The tables are created
by migration ``0006`` (not by the ORM: they are dialect-specific) and written here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Float, Integer, delete, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from pipeline import search
from pipeline.db.schema import Article, PipelineState
from pipeline.errors import DatabaseError

SCHEME_KEY = "search_scheme"
# BM25 weights of the FTS5 columns (title, text) and the matching ts_rank weights {D, C, B, A}:
# a match in the title counts more. ts_rank divides by 1 + log(length) (normalisation 1),
# as BM25 normalises by length: a long article repeating a word does not outrank a short
# one about it.
TITLE_WEIGHT = 3.0
BATCH = 500


def _is_sqlite(bind: Session | Connection) -> bool:
    return (
        bind.get_bind().dialect.name == "sqlite"
        if isinstance(bind, Session)
        else bind.dialect.name == "sqlite"
    )


def index_article(
    session: Session,
    article_id: int,
    title: str | None,
    body: str,
    *,
    indexed: search.IndexedText | None = None,
) -> None:
    """Index (or re-index) one article's title and text (``indexed``: their terms, if known)."""
    _write_indexed(session.connection(), [(article_id, indexed or search.index_text(title, body))])


def write_rows(connection: Connection, rows: list[tuple[int, str | None, str]]) -> None:
    """Replace the index entries of ``rows`` (article id, title, text)."""
    _write_indexed(
        connection, [(article_id, search.index_text(title, body)) for article_id, title, body in rows]
    )


def _write_indexed(connection: Connection, rows: list[tuple[int, search.IndexedText]]) -> None:
    if not rows:
        return
    ids = [{"id": article_id} for article_id, _ in rows]
    if connection.dialect.name == "sqlite":
        connection.execute(text("DELETE FROM article_fts WHERE rowid = :id"), ids)
        values = []
        for article_id, indexed in rows:
            title_terms, body_terms = indexed.fts5_columns()
            values.append({"id": article_id, "title": title_terms, "body": body_terms})
        connection.execute(
            text("INSERT INTO article_fts (rowid, title, body) VALUES (:id, :title, :body)"), values
        )
        return
    connection.execute(text("DELETE FROM article_search WHERE article_id = :id"), ids)
    connection.execute(
        text("INSERT INTO article_search (article_id, vector) VALUES (:id, CAST(:vector AS tsvector))"),
        [{"id": article_id, "vector": indexed.tsvector_literal()} for article_id, indexed in rows],
    )


def rebuild(connection: Connection, progress: Callable[[int], None] | None = None) -> int:
    """Index every stored article afresh (a new database, or a new analyser); returns how many."""
    if connection.dialect.name == "sqlite":
        connection.execute(text("DELETE FROM article_fts"))
    else:
        connection.execute(text("DELETE FROM article_search"))
    done = 0
    last = 0
    while True:
        batch = connection.execute(
            select(Article.id, Article.title, Article.text)
            .where(Article.id > last)
            .order_by(Article.id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        write_rows(connection, [(row[0], row[1], row[2]) for row in batch])
        done += len(batch)
        last = batch[-1][0]
        if progress is not None:
            progress(done)
    _set_scheme(connection)
    return done


def _set_scheme(connection: Connection) -> None:
    connection.execute(delete(PipelineState).where(PipelineState.key == SCHEME_KEY))
    connection.execute(insert(PipelineState).values(key=SCHEME_KEY, value=search.SCHEME))


def ensure_current(session: Session) -> int | None:
    """Rebuild the index when it was made by another analyser version; returns how many, or None."""
    stored = session.get(PipelineState, SCHEME_KEY)
    if stored is not None and stored.value == search.SCHEME:
        return None
    count = rebuild(session.connection())
    session.expire_all()
    return count


def require_current(session: Session) -> None:
    """Stop a search on an index another analyser made: its terms are not the ones this
    version makes of a query, so the answers would be silently wrong (a word found on one
    spelling only) until `summitwatch init` rebuilds it, as it does after an upgrade."""
    stored = session.get(PipelineState, SCHEME_KEY)
    if stored is None or stored.value != search.SCHEME:
        made_by = stored.value if stored is not None else "none"
        raise DatabaseError(
            f"the search index was made by another version of the analyser ({made_by}; this "
            f"version reads {search.SCHEME}): run `summitwatch init` to rebuild it"
        )


def matches(
    session: Session, query: search.SearchQuery, *, best: int | None = None, name: str = "matches"
) -> Subquery:
    """The articles matching ``query`` as a subquery of (``article_id``, ``score``), higher is better.

    ``name``: the subquery's name, and of its parameter (two in one statement need two).
    ``best``: only the ``best`` highest-scoring matches. A common word matches half the
    archive; ranking inside the index and keeping a few hundred spares the join, the
    folding of copies and the sort every one of those rows would otherwise go through.
    """
    limit = -1 if best is None else int(best)
    parameter = f"{name}_query"  # (bound by name: two subqueries in one statement need two)
    if not parameter.isidentifier():
        raise ValueError(f"not a subquery name: {name!r}")
    if _is_sqlite(session):
        # bm25() is negative, lower is better; the title column weighs TITLE_WEIGHT. The
        # LIMIT also keeps SQLite from flattening the subquery into the join, where bm25()
        # cannot run.
        # Ties broken as the list breaks them (the latest stored first): the best N are the
        # same N whatever N is, so pages of one search never repeat or skip a tied match.
        order = f"ORDER BY bm25(article_fts, {TITLE_WEIGHT}, 1.0), rowid DESC " if best is not None else ""
        statement: Any = text(
            f"SELECT rowid AS article_id, -bm25(article_fts, {TITLE_WEIGHT}, 1.0) AS score "  # noqa: S608
            f"FROM article_fts WHERE article_fts MATCH :{parameter} {order}LIMIT {limit}"
        ).bindparams(**{parameter: query.fts5()})
    else:
        tail = f" ORDER BY score DESC, article_id DESC LIMIT {limit}" if best is not None else ""
        statement = text(
            f"SELECT article_id, ts_rank('{{0.1, 0.2, 0.4, 1.0}}', vector, CAST(:{parameter} AS tsquery), 1) "  # noqa: S608
            f"AS score FROM article_search WHERE vector @@ CAST(:{parameter} AS tsquery){tail}"
        ).bindparams(**{parameter: query.tsquery()})
    subquery: Subquery = statement.columns(article_id=Integer, score=Float).subquery(name)
    return subquery


def index_size(connection: Connection) -> dict[str, int]:
    """Bytes used by the index (tables and their indexes), for the benchmark figures."""
    if connection.dialect.name == "sqlite":
        try:
            rows = connection.execute(
                text("SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'article_fts%' GROUP BY name")
            ).all()
        except Exception:  # dbstat is a compile-time option of SQLite
            return {}
        return {str(name): int(size) for name, size in rows}
    rows = connection.execute(
        text(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
            "WHERE relname IN ('article_search', 'ix_article_search_vector')"
        )
    ).all()
    return {str(name): int(size) for name, size in rows}
