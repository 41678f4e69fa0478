"""multilingual article vectors; how each copy relates to its original

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pipeline.db.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "article_vectors",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=120), nullable=False),
        sa.Column("lang", sa.String(length=16), nullable=False),
        sa.Column("moment", pipeline.db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("sentences", sa.LargeBinary(), nullable=False),
        sa.Column("sentence_count", sa.Integer(), nullable=False),
        sa.Column("has_title", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_vectors_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", name=op.f("pk_article_vectors")),
    )
    with op.batch_alter_table("article_vectors", schema=None) as batch_op:
        batch_op.create_index("ix_article_vectors_model_moment", ["model", "moment"], unique=False)

    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("copy_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("link_detail", sa.JSON(), nullable=True))
        # Seeds are translation candidates whatever their date: found through this index.
        batch_op.create_index(batch_op.f("ix_articles_is_seed"), ["is_seed"], unique=False)
    # Copies stored before this revision were found by text: the same text is "exact",
    # anything else a MinHash "near" duplicate.
    op.execute(
        "UPDATE articles SET copy_kind = CASE WHEN similarity >= 1.0 THEN 'exact' ELSE 'near' END "
        "WHERE duplicate_of_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_is_seed"))
        batch_op.drop_column("link_detail")
        batch_op.drop_column("copy_kind")
    with op.batch_alter_table("article_vectors", schema=None) as batch_op:
        batch_op.drop_index("ix_article_vectors_model_moment")
    op.drop_table("article_vectors")
