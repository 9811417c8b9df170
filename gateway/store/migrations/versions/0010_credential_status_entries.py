"""credential status entries: each Open Badges credential's place in the status lists

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 18:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "credential_status_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("certification_id", sa.String(length=128), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certification_id"],
            ["certifications.certification_id"],
            name=op.f("fk_credential_status_entries_certification_id_certifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_status_entries")),
        sa.UniqueConstraint(
            "certification_id",
            "period_start",
            name=op.f("uq_credential_status_entries_certification_id"),
        ),
        sa.UniqueConstraint(
            "credential_id", name=op.f("uq_credential_status_entries_credential_id")
        ),
        sa.UniqueConstraint(
            "list_id", "status_index", name=op.f("uq_credential_status_entries_list_id")
        ),
    )
    with op.batch_alter_table("credential_status_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_status_entries_certification_id"),
            ["certification_id"],
            unique=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("credential_status_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_status_entries_certification_id"))
    op.drop_table("credential_status_entries")
