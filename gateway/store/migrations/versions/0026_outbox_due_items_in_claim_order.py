"""the outbox's due items indexed in the order a claim takes them: due time, then id

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-15 10:00:00.000000

A claim takes the first due items by due time, then id (those due at the same moment in the
order they were queued). On the index of the due time alone, PostgreSQL read every item due at
the earliest moment, and sorted them, before it took the first few: items given back together,
put back by `gateway jobs requeue` or resumed after a Credly pause share one due time, so each
claim of a backlog of them read the whole backlog. On (due_at, id) a claim reads the items it
takes. The index replaces the one on the due time alone, whose every other reading it serves.

The index is built in the upgrade's one transaction, which holds the migration lock
(docs/operations.md), not concurrently: writes to the outbox wait while it is built, about 1 s
with 1,000,000 outbox items on the benchmark machine.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_outbox_due_at_id", "outbox", ["due_at", "id"])
    # last: dropping an index locks its table against reads too, until the upgrade commits
    op.drop_index("ix_outbox_due_at", table_name="outbox")


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index("ix_outbox_due_at", "outbox", ["due_at"])
    op.drop_index("ix_outbox_due_at_id", table_name="outbox")
