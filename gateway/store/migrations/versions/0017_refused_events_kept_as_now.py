"""refused events that this release keeps are kept in their certification's history

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 18:00:00.000000

Releases since 0013 keep more refusals in the history (docs/rules.md, *Arrival order*): a
recertification refused RECERT-NOT-LAPSED, RECERT-EXAM-ONLY or for an exam passed before the
lapse, a payment or activity of a period a recertification closed. This judges every `rejected`
event again as intake would have judged it when it arrived: against its certification's
accepted and kept events before it, in arrival order, under the policy table the upgrade is
given. It judges with the rules of the release that added it (`gateway.rules` as installed: a
later release's when a database skips releases). An event is kept when each of the rules it
breaks is provisional and they are the rules it was refused for; one whose refusal now names
other rules stays rejected. The certifications of the events it keeps are due for
re-evaluation today, as after 0013. Run after a downgrade past 0013 (which rejects every kept
event), it keeps them again.
"""

from collections.abc import Sequence

from alembic import context, op

from gateway.store.history import keep_refused

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    keep_refused(op.get_bind(), context.config.attributes.get("policy"))


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0016's schema, and this migration's cannot
    be told from those intake kept (0013's downgrade rejects every kept event)."""
