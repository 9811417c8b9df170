"""The revoke jobs: leave no live badge of a certification on Credly, or revoke a duplicate; and the
end of an issue or replace call, recorded unless the certification's badge ended meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select

from connectors.credly.errors import NotFound
from connectors.credly.service import holder_badges
from connectors.credly.wire import Badge as CredlyBadge
from gateway.rules import BADGE_KEPT
from gateway.store.models import Badge
from gateway.usecases import badge_wording
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.badges.credly_calls import deleted, latest, revoked
from jobs.badges.recipient import Recipient, certification
from jobs.badges.rows import add_period_badge, record, recorded_by_others, settled
from jobs.badges.states import LIVE
from jobs.badges.turn import one_at_a_time
from jobs.engine.claim import ClaimedItem


@one_at_a_time
def revoke(svc: Services, item: ClaimedItem) -> None:
    """Leave no live badge of the certification on Credly (unless it keeps one again by now)."""
    cert = certification(svc, item.certification_id)
    if cert.status in BADGE_KEPT:
        log.info("not revoking: the certification keeps its badge again (%s)", cert.status)
    else:
        log.info("revoking", extra={"reason_rule": item.payload.get("reason_rule")})
        revoke_everything(svc, cert)
    settled(svc, item)  # also when nothing was live


@one_at_a_time
def revoke_duplicate(svc: Services, item: ClaimedItem) -> None:
    """Revoke the payload's `credly_badge_id`, a second live badge of a certification that keeps
    another (reconciliation found both), quietly; unless it is the badge recorded for the
    certification by now. A certification that keeps no badge any more has every live one
    revoked. The badge the certification keeps is not marked by this job's end, good or bad."""
    cert = certification(svc, item.certification_id)
    if cert.status in BADGE_KEPT:
        _revoke_duplicate(svc, cert.certification_id, item.payload["credly_badge_id"])
    else:
        revoke_everything(svc, cert)


def _revoke_duplicate(svc: Services, certification_id: str, credly_id: str) -> None:
    try:
        current = latest(svc, svc.credly.get_badge(credly_id))
    except NotFound:
        log.info("no duplicate to revoke: deleted", extra={"credly_badge_id": credly_id})
        return
    with svc.db.sessions() as session:
        recorded = session.scalar(
            select(Badge.id).where(
                Badge.certification_id == certification_id, Badge.credly_badge_id == current.id
            )
        )
    if recorded is not None or not current.live():
        log.info("no duplicate to revoke", extra={"credly_badge_id": current.id})
        return
    try:
        result = revoked(svc, current.id, reason=badge_wording.DUPLICATE_REASON, quietly=True)
    except NotFound:
        result = deleted(current.id)
    log.info("revoked a duplicate", extra={"credly_badge_id": result.id, "state": result.state})


def revoke_everything(svc: Services, cert: Recipient) -> int:
    """Revoke every live badge of the certification on Credly: the ones recorded here and every
    one a paged search finds on each template of its credential (by earner id or e-mail), a
    replaced one's successor in its place; not one another certification records (a badge with
    no earner id at an address two members share). Deleted or already revoked counts as done.
    The first badge found that no row records is recorded, revoked, in the row of the current
    period when that row records none (its issue call's answer was lost), or in a row added for
    it when the period has none (a badge issued by hand in Credly), so the standing shows it as
    it would a badge the gateway knew. Returns how many were revoked."""
    with svc.db.sessions() as session:
        of_certification = Badge.certification_id == cert.certification_id
        rows = list(session.scalars(select(Badge).where(of_certification)))
    templates = {row.badge_template_id for row in rows if row.badge_template_id}
    configured = svc.settings.credly_badge_templates.get(cert.credential)
    templates.update([configured] if configured else [])
    targets: dict[str, int | None] = {
        row.credly_badge_id: row.id for row in rows if row.credly_badge_id and row.state in LIVE
    }
    period_start = date.fromisoformat(cert.standing["certified_on"])
    of_period = [row for row in rows if row.period_start == period_start]
    unrecorded = next((row.id for row in of_period if not row.credly_badge_id), None)
    adding: CredlyBadge | None = None  # the badge found that a row added for the period records
    for template in sorted(templates):
        held = holder_badges(
            svc.credly,
            badge_template_id=template,
            issuer_earner_id=cert.certification_id,
            recipient_email=cert.email,
        )
        others = recorded_by_others(svc, cert.certification_id, held)
        for found in held:
            if found.live() and found.id not in targets and found.id not in others:
                if not of_period and adding is None:
                    adding = found
                targets[found.id], unrecorded = unrecorded, None
    reason = badge_wording.member_reason(svc.policy, cert.standing)
    for credly_id, badge_id in targets.items():
        try:
            result = revoked(svc, credly_id, reason=reason)
        except NotFound:
            result = deleted(credly_id)
        log.info("revoked", extra={"credly_badge_id": result.id, "state": result.state})
        if adding is not None and credly_id == adding.id:
            with svc.db.transaction() as session:
                row = add_period_badge(
                    session,
                    cert.certification_id,
                    period_start,
                    adding.badge_template_id,
                    result.state,
                )
                badge_id = None if row.credly_badge_id else row.id  # else a job's, meanwhile
        if badge_id is not None:
            record(svc, badge_id, result)
    return len(targets)


def record_unless_ended(
    svc: Services,
    item: ClaimedItem,
    badge_id: int,
    found: CredlyBadge,
    note: str | None = None,
    others: Sequence[tuple[int, CredlyBadge]] = (),
) -> None:
    """Record the badge a call to Credly made (and, in the same transaction, the badges of
    `others`) and the item done; when the certification keeps no badge any more (revoked while
    the call was in flight, so the revoke job's search may have missed it), revoke what Credly
    holds, that badge included."""
    now = certification(svc, item.certification_id)
    if now.status in BADGE_KEPT:
        record(svc, badge_id, found, item, note, others)
        return
    record(svc, badge_id, found, note=note, others=others)
    revoke_everything(svc, now)
    settled(svc, item)
