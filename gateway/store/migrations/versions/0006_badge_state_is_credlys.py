"""a badge's state is Credly's; a job's failure shows through its last_error

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 10:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Badges set to `error` by a failed job: not yet in Credly (queued), or in Credly in a state
    # not recorded (taken as pending, so a revoke or replace still reaches them; the next answer
    # or notification from Credly says which). Their last_error keeps showing the failure.
    op.execute(
        "UPDATE badges SET state = CASE WHEN credly_badge_id IS NULL THEN 'queued' "
        "ELSE 'pending' END, last_error = COALESCE(last_error, 'failed') WHERE state = 'error'"
    )


def downgrade() -> None:
    """Downgrade schema: nothing to undo (the earlier code shows these badges by their state)."""
