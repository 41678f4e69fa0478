"""feeds: where a feed moved for good (a 301 or 308), polled there from then on

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moved_url", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("display_moved_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("display_moved_url")
        batch_op.drop_column("moved_url")
