"""malformed events: the latest malformed attempt at each event id, for audit

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-09 10:00:00.000000

An event refused for its shape was recorded nowhere; `GET /v1/events/{event_id}` shows it from
here when no event is recorded under its id. The housekeeping prunes rows older than
MALFORMED_EVENT_RETENTION_DAYS. A downgrade drops the table and what it held.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "malformed_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=True),
        sa.Column("certification_id", sa.String(length=128), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", JSON, nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_malformed_events")),
    )
    with op.batch_alter_table("malformed_events") as batch:
        batch.create_index(
            batch.f("ix_malformed_events_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("malformed_events")
