"""a certification's badge jobs call Credly one at a time

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-22 10:00:00.000000

`certifications.badge_job`: the outbox item of the badge job whose Credly calls for the
certification are in flight; `badge_job_until`: the end of its lease. Until then (or until it
ends) another badge job of the certification waits. Both are empty for every certification at
upgrade: no job of the release before holds a turn.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0028"
down_revision: str | Sequence[str] | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the columns, empty."""
    op.add_column("certifications", sa.Column("badge_job", sa.Integer(), nullable=True))
    op.add_column(
        "certifications", sa.Column("badge_job_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    """Drop the columns in place: SQLite's batch copy of the table would drop the table that
    other tables' rows refer to, which their foreign keys refuse."""
    op.drop_column("certifications", "badge_job_until")
    op.drop_column("certifications", "badge_job")
