"""verification receipts, advance notices

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04 18:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table(
        "receipts",
        sa.Column("jti", sa.String(length=40), nullable=False),
        sa.Column("certification_id", sa.String(length=128), nullable=False),
        sa.Column("on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_receipts")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_receipts_client_issued", ["client_id", "issued_at", "jti"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_receipts_issued_at"), ["issued_at"], unique=False)

    op.create_table(
        "advance_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("certification_id", sa.String(length=128), nullable=False),
        sa.Column("change_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_advance_notices_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advance_notices")),
        sa.UniqueConstraint(
            "subscription_id",
            "certification_id",
            "change_on",
            "status",
            name=op.f("uq_advance_notices_subscription_id"),
        ),
    )
    with op.batch_alter_table("advance_notices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_advance_notices_certification_id"), ["certification_id"], unique=False
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "event_type",
                sa.String(length=64),
                server_default="certification.status_changed",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
            )
        )

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notice_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("notice_days")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("data")
        batch_op.drop_column("event_type")

    with op.batch_alter_table("advance_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_advance_notices_certification_id"))

    op.drop_table("advance_notices")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipts_issued_at"))
        batch_op.drop_index("ix_receipts_client_issued")

    op.drop_table("receipts")
