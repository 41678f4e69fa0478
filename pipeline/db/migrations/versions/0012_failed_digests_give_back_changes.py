"""digests: the changes of a digest quarantined before any of it reached Slack are
unreported again, for the next digest to report.

Earlier versions quarantined a digest (status `failed`) on any answer they did not
expect, an HTML page from a proxy or a wrong SLACK_API_URL, a refused `auth.test`, an
unknown error code, and its changes stayed marked as reported though nothing reached the
channel. Now a failed digest with no part sent and none in doubt gives its changes back;
one superseded by its twin for another destination (the same digest) hands them to the
twin. A failed digest begun in the channel keeps them: its first part named them there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    quarantined = connection.execute(
        sa.text(
            "SELECT id, digest_key FROM digests "
            "WHERE status = 'failed' AND parts_sent = 0 AND unconfirmed_since IS NULL ORDER BY id"
        )
    ).all()
    for digest_id, key in quarantined:
        twin = connection.execute(
            sa.text("SELECT id FROM digests WHERE digest_key = :key AND status <> 'failed' ORDER BY id"),
            {"key": key},
        ).first()
        connection.execute(
            sa.text("UPDATE coverage_changes SET digest_id = :twin WHERE digest_id = :id"),
            {"twin": twin[0] if twin else None, "id": digest_id},
        )


def downgrade() -> None:
    pass  # (which changes a failed digest had held is not kept; reporting them again is the fix)
