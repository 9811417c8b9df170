"""badges record the e-mail address Credly holds for them: where the claim e-mail went

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 10:00:00.000000

Badges recorded before this release have none until reconciliation sees them on Credly;
`gateway badges unclaimed` gives the member's current address for those.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("badges") as batch:
        batch.add_column(sa.Column("recipient_email", sa.String(length=320), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("badges") as batch:
        batch.drop_column("recipient_email")
