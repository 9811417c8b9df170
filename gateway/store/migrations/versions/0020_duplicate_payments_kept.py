"""a payment refused as a duplicate of a payment of another day is kept in the history

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 19:00:00.000000

Since this release a payment refused FEE-DUPLICATE alone, paid on another day than the payment
of its year recorded before it, is kept (docs/rules.md, *Arrival order*): it counts where a
recertification that arrives later puts the two in two periods, or where it is the earlier of
the two. Every `rejected` event is judged again as 0017 judges them, with the rules installed;
the certifications of those kept are due for re-evaluation today.
"""

from collections.abc import Sequence

from alembic import context, op

from gateway.store.history import keep_refused

# revision identifiers, used by Alembic.
revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    keep_refused(op.get_bind(), context.config.attributes.get("policy"))


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0019's schema."""
