"""feeds: stored URLs in their one spelling (scheme and host lower-cased, punycode host,
no default port, empty path or fragment), as `feeds add`, `import-opml` and the feed list
now write them, so that adding a feed again finds its row instead of making a second one.
A URL whose one spelling another row already holds is left as it is (both rows were
there before; look-ups try both spellings).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.feed_urls import normalise_feed_url

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, url FROM feeds ORDER BY id")).all()
    taken = {url for _, url in rows}
    for feed_id, url in rows:
        try:
            normal = normalise_feed_url(url)
        except ValueError:
            continue  # (a URL that could never be fetched: left for its errors to show)
        if normal != url and normal not in taken:
            connection.execute(
                sa.text("UPDATE feeds SET url = :url WHERE id = :id"), {"url": normal, "id": feed_id}
            )
            taken.discard(url)
            taken.add(normal)


def downgrade() -> None:
    pass  # (the spelling each URL was given is not kept; either spelling works)
