"""job outcomes: how many outbox items of each kind ended done or failed, for /metrics

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00.000000

The workers count each end in the transaction that records it, in one of a few rows per kind
and outcome drawn at random (concurrent ends seldom wait for each other's row); the items that
ended before this release are counted once here, from the outbox.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "job_outcomes",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "outcome", "shard", name=op.f("pk_job_outcomes")),
    )
    op.execute(
        "INSERT INTO job_outcomes (kind, outcome, shard, total)"
        " SELECT kind, state, 0, count(*) FROM outbox WHERE state IN ('done', 'failed')"
        " GROUP BY kind, state"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("job_outcomes")
