"""an employment activity dated in a period a recertification closed is kept in the history

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-21 10:00:00.000000

Since this release an employment activity refused CCP-BEFORE-CYCLE alone, dated in a period that a
recertification recorded before it closed, with its employment inside that period's cycle, is
kept like the period's other activities (docs/rules.md, *Arrival order*). Every `rejected` event
is judged again as 0017 judges them, with the rules installed; the certifications of those kept
are due for re-evaluation today.
"""

from collections.abc import Sequence

from alembic import context, op

from gateway.store.history import keep_refused

# revision identifiers, used by Alembic.
revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    keep_refused(op.get_bind(), context.config.attributes.get("policy"))


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0026's schema."""
