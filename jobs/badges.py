"""Badge jobs: issue, replace and revoke a certification's Credly badge, idempotently."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.credly import Badge as CredlyBadge
from connectors.credly import BadgeRequest, CredlyError, PermanentError
from gateway.services import Services
from gateway.store.models import Badge, Certification, Member, OutboxItem, utcnow

log = logging.getLogger("jobs.badges")

LIVE = ("pending", "accepted")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def template_for(svc: Services, credential: str) -> str:
    """The Credly badge template of a credential (a placeholder on the dry-run backend)."""
    template = svc.settings.credly_badge_templates.get(credential)
    if template:
        return template
    if svc.settings.credly_dry_run:
        return f"dry-run-{credential}"
    raise PermanentError(f"no Credly badge template configured for credential {credential}")


def _recipient(svc: Services, session: Session, cert: Certification) -> BadgeRequest:
    """The badge of the certification's current period, read before calling Credly."""
    member = session.get(Member, cert.member_id)
    standing = cert.standing
    paid_through = date.fromisoformat(standing["fees"]["paid_through"])
    return BadgeRequest(
        recipient_email=member.email,
        first_name=member.first_name,
        last_name=member.last_name,
        badge_template_id=template_for(svc, cert.credential),
        issued_at=_midnight(date.fromisoformat(standing["certified_on"])),
        issuer_earner_id=cert.certification_id,
        expires_at=_midnight(paid_through) if svc.settings.badge_expires else None,
    )


def _period_badge(session: Session, certification_id: str, period_start: date) -> Badge:
    badge = session.scalar(
        select(Badge)
        .where(Badge.certification_id == certification_id, Badge.period_start == period_start)
        .with_for_update()
    )
    if badge is None:
        badge = Badge(certification_id=certification_id, period_start=period_start, attempts=0)
        session.add(badge)
    return badge


def _record(svc: Services, badge_id: int, found: CredlyBadge) -> None:
    with svc.db.transaction() as session:
        badge = session.get(Badge, badge_id)
        if badge.credly_badge_id != found.id or badge.state != found.state:
            badge.state_changed_at = utcnow()
        badge.credly_badge_id, badge.state, badge.last_error = found.id, found.state, None
        badge.issued_at = badge.issued_at or utcnow()
        badge.expires_at = found.expires_at or badge.expires_at


def _record_error(svc: Services, badge_id: int, exc: CredlyError) -> None:
    with svc.db.transaction() as session:
        badge = session.get(Badge, badge_id)
        badge.last_error = f"{exc} {exc.body}" if exc.body else str(exc)
        if isinstance(exc, PermanentError):
            badge.state, badge.state_changed_at = "error", utcnow()


def issue(svc: Services, item: OutboxItem) -> None:
    """Issue the badge of the item's period, adopting one Credly already has for it."""
    period_start = date.fromisoformat(item.payload["period_start"])
    with svc.db.transaction() as session:
        cert = session.get(Certification, item.certification_id)
        if cert.status != "active" or cert.standing["certified_on"] != period_start.isoformat():
            log.info("not issuing: certification is %s now", cert.status)
            return
        badge = _period_badge(session, cert.certification_id, period_start)
        if badge.credly_badge_id and badge.state in LIVE:
            log.info("badge already issued", extra={"credly_badge_id": badge.credly_badge_id})
            return
        try:
            recipient = _recipient(svc, session, cert)
        except PermanentError as exc:
            badge.state, badge.last_error, badge.state_changed_at = "error", str(exc), utcnow()
            raise
        badge.attempts += 1
        badge.badge_template_id = recipient.badge_template_id
        session.flush()
        badge_id = badge.id
    try:
        found = svc.credly.find_badge(
            issuer_earner_id=recipient.issuer_earner_id,
            badge_template_id=recipient.badge_template_id,
        )
        if found is None or found.state not in LIVE:
            found = svc.credly.issue_badge(recipient)
        else:
            log.info("adopting the badge Credly already has", extra={"credly_badge_id": found.id})
    except CredlyError as exc:
        _record_error(svc, badge_id, exc)
        raise
    _record(svc, badge_id, found)


def replace(svc: Services, item: OutboxItem) -> None:
    """Replace the live badge of the current period with the member's current details."""
    with svc.db.transaction() as session:
        cert = session.get(Certification, item.certification_id)
        period_start = date.fromisoformat(cert.standing["certified_on"])
        badge = _period_badge(session, cert.certification_id, period_start)
        if not (badge.credly_badge_id and badge.state in LIVE):
            log.info("no live badge to replace")
            return
        recipient = _recipient(svc, session, cert)
        badge.attempts += 1
        session.flush()
        badge_id, credly_id = badge.id, badge.credly_badge_id
    try:
        found = _replace_once(svc, credly_id, recipient)
    except CredlyError as exc:
        _record_error(svc, badge_id, exc)
        raise
    _record(svc, badge_id, found)


def _replace_once(svc: Services, credly_id: str, recipient: BadgeRequest) -> CredlyBadge:
    """Replace a badge; when an earlier attempt already did (Credly refuses), adopt the new one."""
    try:
        return svc.credly.replace_badge(credly_id, recipient)
    except PermanentError:
        if svc.credly.get_badge(credly_id).state != "replaced":
            raise
        found = svc.credly.find_badge(
            issuer_earner_id=recipient.issuer_earner_id,
            badge_template_id=recipient.badge_template_id,
        )
        if found is None or found.state not in LIVE:
            raise
        log.info("adopting the replacement made by an earlier attempt")
        return found


def revoke(svc: Services, item: OutboxItem) -> None:
    """Revoke every live badge of the certification, with the deciding rule as the reason."""
    reason = f"{item.payload['reason_rule']}: {item.payload['reason']}"
    with svc.db.transaction() as session:
        targets = [
            (badge.id, badge.credly_badge_id)
            for badge in session.scalars(
                select(Badge).where(
                    Badge.certification_id == item.certification_id,
                    Badge.credly_badge_id.is_not(None),
                    Badge.state.in_(LIVE),
                )
            )
        ]
    for badge_id, credly_id in targets:
        try:
            found = svc.credly.revoke_badge(credly_id, reason=reason)
        except CredlyError as exc:
            _record_error(svc, badge_id, exc)
            raise
        _record(svc, badge_id, found)
