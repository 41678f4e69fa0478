"""article_watch: the calibrated score of each watch item, as topics have

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows classified before stay NULL until `summitwatch reclassify` scores them again.
    with op.batch_alter_table("article_watch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("article_watch", schema=None) as batch_op:
        batch_op.drop_column("score")
