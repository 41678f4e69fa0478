"""feeds: stored URLs in their one spelling (scheme and host lower-cased, the host in
IDNA 2008 punycode, no default port, empty path or fragment), as `feeds add`,
`import-opml` and the feed list now write them. Rows that were one feed under several
spellings (each polled at every cycle) become one: the oldest row is kept, the others'
articles and failures move to it, and they are removed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.feed_urls import normalise_feed_url
from pipeline.redaction import redact_url

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    groups: dict[str, list[tuple[int, str]]] = {}
    for feed_id, url in connection.execute(sa.text("SELECT id, url FROM feeds ORDER BY id")).all():
        try:
            normal = normalise_feed_url(url)
        except ValueError:
            continue  # (a URL that could never be fetched: left for its errors to show)
        groups.setdefault(normal, []).append((feed_id, url))
    for normal, rows in groups.items():
        keep = rows[0][0]
        for other, _ in rows[1:]:
            for table in ("articles", "fetch_failures"):
                connection.execute(
                    sa.text(f"UPDATE {table} SET feed_id = :keep WHERE feed_id = :other"),  # noqa: S608
                    {"keep": keep, "other": other},
                )
            # Where articles were seen ("via feed:N") moves too, a sighting the kept feed
            # has already (same article and URL) given up: they named a deleted feed.
            names = {"keep": f"feed:{keep}", "other": f"feed:{other}"}
            connection.execute(
                sa.text(
                    "DELETE FROM sightings WHERE via = :other AND EXISTS (SELECT 1 FROM sightings kept "
                    "WHERE kept.via = :keep AND kept.article_id = sightings.article_id "
                    "AND kept.url = sightings.url)"
                ),
                names,
            )
            connection.execute(sa.text("UPDATE sightings SET via = :keep WHERE via = :other"), names)
            connection.execute(sa.text("DELETE FROM feeds WHERE id = :other"), {"other": other})
        if rows[0][1] != normal or len(rows) > 1:
            connection.execute(
                sa.text("UPDATE feeds SET url = :url, display_url = :shown WHERE id = :id"),
                {"url": normal, "shown": redact_url(normal), "id": keep},
            )


def downgrade() -> None:
    pass  # (neither the other spellings nor the merged rows are kept; the one spelling works)
