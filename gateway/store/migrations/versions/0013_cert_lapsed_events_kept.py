"""events refused for CERT-LAPSED alone are kept in their certification's history

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 23:00:00.000000

Such an event now counts once later events show no lapse by its date (docs/rules.md). Those
refused before this release become kept too, and their certifications are due for
re-evaluation today: the daily sweep records what they change, and lookups compute them from
the history until then.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.platform import clock

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 1000


def upgrade() -> None:
    """Mark the events refused for CERT-LAPSED alone as kept; make their certifications due."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, certification_id, reasons FROM events WHERE status = 'rejected'"
            " AND type IN ('renewal.fee_paid', 'ccp.activity_recorded')"
        )
    )
    kept, certifications = [], set()
    for pk, certification_id, reasons in rows:
        rules = [
            r.get("rule") for r in (json.loads(reasons) if isinstance(reasons, str) else reasons)
        ]
        if rules and all(rule == "CERT-LAPSED" for rule in rules):
            kept.append(pk)
            certifications.add(certification_id)
    today = clock.now().date()
    mark = sa.text("UPDATE events SET status = 'kept' WHERE id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True)
    )
    due = sa.text(
        "UPDATE certifications SET next_change_on = :today WHERE certification_id IN :ids"
        " AND (next_change_on IS NULL OR next_change_on > :today)"
    ).bindparams(sa.bindparam("ids", expanding=True))
    for n in range(0, len(kept), _CHUNK):
        bind.execute(mark, {"ids": kept[n : n + _CHUNK]})
    ordered = sorted(certifications)
    for n in range(0, len(ordered), _CHUNK):
        bind.execute(due, {"ids": ordered[n : n + _CHUNK], "today": today})


def downgrade() -> None:
    """Kept events are rejected ones again (and no longer count)."""
    op.execute("UPDATE events SET status = 'rejected' WHERE status = 'kept'")
