"""feed_state: last_slot (exactly-once polls in cluster mode), feed_ttl

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:27:24.729429
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # Only what is missing: development databases made by create_all while these columns were being
    # added may have them already.
    have = _columns("feed_state")
    with op.batch_alter_table("feed_state", schema=None) as batch_op:
        if "feed_ttl" not in have:
            batch_op.add_column(sa.Column("feed_ttl", sa.Float(), nullable=True))
        if "last_slot" not in have:
            batch_op.add_column(sa.Column("last_slot", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feed_state", schema=None) as batch_op:
        batch_op.drop_column("last_slot")
        batch_op.drop_column("feed_ttl")
