"""outbox items carry when they are due: workers claim them from the table

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    # Every unfinished item is due at once: the workers of this version claim it.
    op.execute("UPDATE outbox SET due_at = created_at WHERE state NOT IN ('done', 'failed')")
    op.create_index("ix_outbox_due_at", "outbox", ["due_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_outbox_due_at", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("due_at")
