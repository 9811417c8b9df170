"""daily runs: the day's daily run claimed by one process of the embedded default

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-10 10:00:00.000000

Without Redis each serving process runs the daily sweep itself; the first process to insert a
day's row runs that day's, the others skip it. A downgrade drops the table: the next run of a
day already run runs again, which the sweep's idempotence makes harmless.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "daily_runs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("name", "day", name=op.f("pk_daily_runs")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("daily_runs")
