"""a certification's badge jobs call Credly one at a time

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-22 10:00:00.000000

`badge_turns`: for a certification whose badge job is calling Credly, that job's outbox item and
the end of its lease; until then (or until it ends) another badge job of the certification
waits. Empty at upgrade: no job of the release before holds a turn.
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
    """Add the table, empty."""
    op.create_table(
        "badge_turns",
        sa.Column("certification_id", sa.String(length=128), primary_key=True),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("badge_turns")
