"""sightings: an index by where an article was seen, for the articles a feed carried

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sightings_via", "sightings", ["via"])


def downgrade() -> None:
    op.drop_index("ix_sightings_via", table_name="sightings")
