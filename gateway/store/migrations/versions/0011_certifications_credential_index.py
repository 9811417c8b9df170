"""certifications by credential: the start check of the policy table reads the codes in use

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 14:40:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_certifications_credential", "certifications", ["credential"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_certifications_credential", table_name="certifications")
