"""redacted display forms of URLs, and redacted stored error texts

Feeds, articles and failures keep their real URL (polled, looked up, exported) and gain
a display form with credentials redacted, which the web UI and the SQL views show. SQL
cannot apply the redaction rule portably (query parameters are matched by name, in
words), so the display form is computed in Python when a row is written; this migration
fills it for the rows already there, and redacts the stored error texts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.redaction import redact_text, redact_url

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 1000
# Only URLs with one of these characters can have userinfo, a query or a fragment; the
# rest are their own display form and are copied in SQL.
_MAY_CHANGE = "({column} LIKE '%@%' OR {column} LIKE '%?%' OR {column} LIKE '%#%')"


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_url", sa.Text(), nullable=True))
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_url", sa.Text(), nullable=True))
    with op.batch_alter_table("fetch_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_target", sa.Text(), nullable=True))
    _fill("feeds", "url", "display_url")
    _fill("articles", "url", "display_url")
    _fill("fetch_failures", "target", "display_target")
    for table, column in (("feeds", "last_error"), ("fetch_failures", "error"), ("digests", "last_error")):
        _redact_texts(table, column)


def downgrade() -> None:
    with op.batch_alter_table("fetch_failures", schema=None) as batch_op:
        batch_op.drop_column("display_target")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_column("display_url")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("display_url")


def _fill(table: str, source: str, target: str) -> None:
    connection = op.get_bind()
    may_change = _MAY_CHANGE.format(column=source)
    rows = connection.execute(
        sa.text(f"SELECT id, {source} FROM {table} WHERE {source} IS NOT NULL AND {may_change}")  # noqa: S608
    ).all()
    update = sa.text(f"UPDATE {table} SET {target} = :shown WHERE id = :id")  # noqa: S608
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        connection.execute(update, [{"id": row[0], "shown": redact_url(row[1])} for row in chunk])
    connection.execute(sa.text(f"UPDATE {table} SET {target} = {source} WHERE {target} IS NULL"))  # noqa: S608


def _redact_texts(table: str, column: str) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608
    ).all()
    changed = [{"id": row[0], "text": redact_text(row[1])} for row in rows if redact_text(row[1]) != row[1]]
    if changed:
        connection.execute(sa.text(f"UPDATE {table} SET {column} = :text WHERE id = :id"), changed)  # noqa: S608
