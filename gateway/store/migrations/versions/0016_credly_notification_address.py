"""credly notifications record the client address they were delivered from

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 10:00:00.000000

An address whose notification a check found forged then checks new ones against an allowance of
its own, not the shared one (docs/credly.md). Notifications recorded before this release have
none: they catch no address.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("credly_notifications") as batch:
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch.create_index(
            "ix_credly_notifications_address", ["address", "status", "processed_at"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("credly_notifications") as batch:
        batch.drop_index("ix_credly_notifications_address")
        batch.drop_column("address")
