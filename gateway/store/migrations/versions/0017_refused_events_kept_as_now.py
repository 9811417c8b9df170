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

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from gateway import rules
from gateway.platform import clock
from gateway.store.history import EVENTS, decode_event
from gateway.store.models import EVENT_KEPT

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Certifications judged at a time: their events are read together.
_CHUNK = 500

_REFUSED = (
    sa.select(EVENTS.c.certification_id)
    .where(EVENTS.c.status == "rejected", EVENTS.c.certification_id > sa.bindparam("after"))
    .group_by(EVENTS.c.certification_id)
    .order_by(EVENTS.c.certification_id)
    .limit(_CHUNK)
)
_EVENTS = (
    sa.select(
        EVENTS.c.certification_id,
        EVENTS.c.id,
        EVENTS.c.body,
        EVENTS.c.status,
        EVENTS.c.reasons,
        EVENTS.c.received_at,
    )
    .where(EVENTS.c.certification_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(EVENTS.c.id)
)
_KEEP = (
    sa.update(EVENTS)
    .where(EVENTS.c.id.in_(sa.bindparam("pks", expanding=True)))
    .values(status=EVENT_KEPT)
)
_DUE = sa.text(
    "UPDATE certifications SET next_change_on = :today WHERE certification_id IN :ids"
    " AND (next_change_on IS NULL OR next_change_on > :today)"
).bindparams(sa.bindparam("ids", expanding=True))


def upgrade() -> None:
    """Keep the rejected events that this release keeps; make their certifications due."""
    bind = op.get_bind()
    policy = context.config.attributes.get("policy") or rules.load_policy()
    today = clock.now().date()
    after = ""
    while ids := bind.scalars(_REFUSED, {"after": after}).all():
        events: dict[str, list[Any]] = {}
        for certification_id, *row in bind.execute(_EVENTS, {"ids": ids}):
            events.setdefault(certification_id, []).append(row)
        kept = {cid: _kept(rows, policy) for cid, rows in events.items()}
        pks = [pk for pks in kept.values() for pk in pks]
        if pks:
            bind.execute(_KEEP, {"pks": pks})
            bind.execute(_DUE, {"ids": [cid for cid, pks in kept.items() if pks], "today": today})
        after = ids[-1]


def _kept(
    rows: Iterable[tuple[int, Any, str, list[Any], datetime]], policy: rules.Policy
) -> list[int]:
    """The ids of the rejected events among one certification's `rows` (in arrival order) that
    intake keeps now, each judged on the history before it as intake builds it."""
    history: list[rules.Event] = []
    kept_ids: set[str] = set()
    found = []
    for pk, body, status, reasons, received_at in rows:
        if status == "rejected":
            try:
                event = decode_event(body)
            except (KeyError, TypeError, ValueError):  # a body this release takes as malformed
                continue
            violations = rules.validate(
                history, event, policy=policy, received_at=received_at, kept_ids=kept_ids
            )
            refused_for = sorted(reason.get("rule") for reason in reasons)
            if not rules.kept(violations) or sorted(v.rule for v in violations) != refused_for:
                continue
            found.append(pk)
            status = EVENT_KEPT
        else:
            event = decode_event(body)
        history.append(event)
        if status == EVENT_KEPT:
            kept_ids.add(event.event_id)
    return found


def downgrade() -> None:
    """Nothing to undo: a kept event is valid under 0016's schema, and this migration's cannot
    be told from those intake kept (0013's downgrade rejects every kept event)."""
