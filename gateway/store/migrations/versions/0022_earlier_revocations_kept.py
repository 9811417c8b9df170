"""a revocation dated on or before the recorded one is kept in the history

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-11 10:00:00.000000

Since this release a revocation refused CERT-REVOKED alone, dated on or before the revocation
recorded before it, is kept (docs/rules.md, *Arrival order*): the standing counts the first
revocation in date order, whichever arrived first. Every `rejected` event is judged again as 0017
judges them, with the rules installed; the certifications of those kept are due for
re-evaluation today.
"""

from collections.abc import Sequence

from alembic import context, op

from gateway.store.history import keep_refused

# revision identifiers, used by Alembic.
revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    keep_refused(op.get_bind(), context.config.attributes.get("policy"))


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0021's schema."""
