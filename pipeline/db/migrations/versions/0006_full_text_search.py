"""full-text search index (FTS5 / tsvector) and the article list order index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.db import fulltext

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        # The terms come from pipeline.search, separated by spaces; the 'ascii' tokenizer
        # splits on ASCII separators only and keeps every other character, so FTS5 stores
        # exactly those terms.
        op.execute(
            "CREATE VIRTUAL TABLE article_fts USING fts5(title, body, tokenize = 'ascii', detail = full)"
        )
        op.execute(
            "CREATE TRIGGER article_fts_delete AFTER DELETE ON articles "
            "BEGIN DELETE FROM article_fts WHERE rowid = old.id; END"
        )
    else:
        op.execute(
            "CREATE TABLE article_search ("
            " article_id INTEGER NOT NULL,"
            " vector TSVECTOR NOT NULL,"
            " CONSTRAINT pk_article_search PRIMARY KEY (article_id),"
            " CONSTRAINT fk_article_search_article_id_articles FOREIGN KEY (article_id)"
            " REFERENCES articles (id) ON DELETE CASCADE)"
        )
        op.execute("CREATE INDEX ix_article_search_vector ON article_search USING gin (vector)")
    # The article list is ordered by this expression, newest first.
    op.execute("CREATE INDEX ix_articles_moment ON articles (coalesce(published_at, first_seen_at), id)")
    fulltext.rebuild(connection)


def downgrade() -> None:
    connection = op.get_bind()
    op.execute("DROP INDEX ix_articles_moment")
    if connection.dialect.name == "sqlite":
        op.execute("DROP TRIGGER article_fts_delete")
        op.execute("DROP TABLE article_fts")
    else:
        op.execute("DROP TABLE article_search")
    op.execute(sa.text("DELETE FROM pipeline_state WHERE key = :key").bindparams(key=fulltext.SCHEME_KEY))
