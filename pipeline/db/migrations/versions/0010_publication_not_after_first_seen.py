"""articles: a publication time after the article was first seen becomes the first-seen time

An article's moment (when it counts in coverage, the SQL views, ``articles --since``/
``--until`` and the web UI) is ``coalesce(published_at, first_seen_at)``. Ingest accepts
dates up to 6 hours ahead (a clock or time-zone slip) and now stores such a date as the
moment the article was first seen, since it cannot have been published later. This brings
the rows stored before to the same form (and the moment copied into their vectors), so
that every reader places them on the same day.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE article_vectors SET moment = "
        "(SELECT a.first_seen_at FROM articles a WHERE a.id = article_vectors.article_id) "
        "WHERE article_id IN (SELECT id FROM articles WHERE published_at > first_seen_at)"
    )
    op.execute("UPDATE articles SET published_at = first_seen_at WHERE published_at > first_seen_at")


def downgrade() -> None:
    # The dates that were ahead are not kept: nothing to restore.
    pass
