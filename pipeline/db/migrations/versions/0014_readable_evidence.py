"""article_topics, article_watch: evidence stored as readable JSON text. The engine wrote
JSON with every non-ASCII character as a ``\\uXXXX`` escape, so the evidence column of the
SQL views showed Russian and Chinese sentences as escapes; it now writes them as they are
(``pipeline.db.engine.json_text``), and the rows stored before are rewritten so. Only rows
holding an escape are read; running it again changes nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Each table with evidence and the column that, with article_id, is its key.
TABLES = (("article_topics", "topic"), ("article_watch", "item"))


def upgrade() -> None:
    connection = op.get_bind()
    value = "CAST(:evidence AS json)" if connection.dialect.name == "postgresql" else ":evidence"
    for table, label in TABLES:
        rows = connection.execute(
            sa.text(
                f"SELECT article_id, {label}, CAST(evidence AS TEXT) FROM {table} "  # noqa: S608
                "WHERE CAST(evidence AS TEXT) LIKE :escape ESCAPE '!'"
            ),
            {"escape": "%\\u%"},
        ).all()
        changed = []
        for article_id, key, stored in rows:
            readable = json.dumps(json.loads(stored), ensure_ascii=False)
            if readable != stored:
                changed.append({"article_id": article_id, "key": key, "evidence": readable})
        if changed:
            connection.execute(
                sa.text(
                    f"UPDATE {table} SET evidence = {value} "  # noqa: S608
                    f"WHERE article_id = :article_id AND {label} = :key"
                ),
                changed,
            )


def downgrade() -> None:
    pass  # (escaped or not, the JSON reads the same)
