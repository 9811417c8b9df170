"""indexes of the daily prune: jobs ended long ago, old unconfirmed notifications, scheduled notices

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-12 10:00:00.000000

The daily housekeeping read whole tables that grow for as long as the gateway runs: the outbox
(every job is kept JOB_RETENTION_DAYS) for the jobs done long ago, the Credly notifications
(those Credly vouched for are kept for good) for the old unconfirmed ones, and the advance
notices (kept while their subscription lives) for the few still scheduled, which the daily review
reads too. The outbox's index on its state becomes one on its state and end, which serves every
reading of the old one; the two others are new.

The indexes are built in the upgrade's one transaction, which holds the migration lock
(docs/operations.md), not concurrently (PostgreSQL builds an index concurrently only outside a
transaction): writes to these tables wait while they are built, 4 s with 1,000,000 outbox items
on the benchmark machine.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_outbox_state_finished_at", "outbox", ["state", "finished_at"])
    op.create_index(
        "ix_credly_notifications_status_received_at",
        "credly_notifications",
        ["status", "received_at"],
    )
    op.create_index("ix_advance_notices_state", "advance_notices", ["state"])
    # last: dropping an index locks its table against reads too, until the upgrade commits
    op.drop_index("ix_outbox_state", table_name="outbox")


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_advance_notices_state", table_name="advance_notices")
    op.drop_index("ix_credly_notifications_status_received_at", table_name="credly_notifications")
    op.drop_index("ix_outbox_state_finished_at", table_name="outbox")
    op.create_index("ix_outbox_state", "outbox", ["state"])
