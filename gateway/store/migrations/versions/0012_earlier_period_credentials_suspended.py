"""earlier-period credentials suspended: a recertification no longer lifts them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 15:30:00.000000

The credential of a period before a certification's current one vouches for a period that ended in
a lapse. Releases before this one cleared its suspension bit on recertification; this sets it
again, as the sync job now keeps it.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The first day of a certification's current period, from its stored standing.
_CURRENT_PERIOD = {
    "postgresql": "(c.standing ->> 'certified_on')::date",
    "sqlite": "json_extract(c.standing, '$.certified_on')",
}


def upgrade() -> None:
    """Suspend every credential of a period before its certification's current one."""
    current = _CURRENT_PERIOD[op.get_bind().dialect.name]
    op.execute(
        "UPDATE credential_status_entries SET suspended = true"
        " WHERE NOT suspended AND period_start < ("
        f"SELECT {current} FROM certifications c"
        " WHERE c.certification_id = credential_status_entries.certification_id)"
    )


def downgrade() -> None:
    """Nothing to undo: the bits are what the sync job keeps from now on."""
