"""coverage changes and the digest outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pipeline.db.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest_key", sa.String(length=200), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parts_total", sa.Integer(), nullable=False),
        sa.Column("parts_sent", sa.Integer(), nullable=False),
        sa.Column("thread_ts", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", pipeline.db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", pipeline.db.schema.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
        sa.UniqueConstraint("digest_key", "destination", name=op.f("uq_digests_digest_key_destination")),
    )
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_digests_status"), ["status"], unique=False)

    op.create_table(
        "pipeline_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_pipeline_state")),
    )
    op.create_table(
        "coverage_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series", sa.String(length=128), nullable=False),
        sa.Column("at", pipeline.db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("detected_at", pipeline.db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_coverage_changes_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coverage_changes")),
        sa.UniqueConstraint(
            "series", "at", "direction", name=op.f("uq_coverage_changes_series_at_direction")
        ),
    )
    with op.batch_alter_table("coverage_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coverage_changes_digest_id"), ["digest_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_coverage_changes_series"), ["series"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("coverage_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coverage_changes_series"))
        batch_op.drop_index(batch_op.f("ix_coverage_changes_digest_id"))

    op.drop_table("coverage_changes")
    op.drop_table("pipeline_state")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_digests_status"))

    op.drop_table("digests")
