"""an event dated before the revocation it arrives after is kept in the history

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-14 10:00:00.000000

Since this release an event refused CERT-REVOKED (and for nothing but provisional rules), dated
before the revocation recorded before it, is kept (docs/rules.md, *Arrival order*): the standing
of the days before the revocation counts it as if it had arrived first. Every `rejected` event is
judged again as 0017 judges them, with the rules installed; the certifications of those kept are
due for re-evaluation today.
"""

from collections.abc import Sequence

from alembic import context, op

from gateway.store.history import keep_refused

# revision identifiers, used by Alembic.
revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    keep_refused(op.get_bind(), context.config.attributes.get("policy"))


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0024's schema."""
