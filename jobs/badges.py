"""Badge jobs: issue, replace and revoke a certification's Credly badge, idempotently."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple

from sqlalchemy import Connection, Insert, Table, and_, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.credly import Badge as CredlyBadge
from connectors.credly import BadgeRequest, PermanentError
from gateway.rules import BADGE_KEPT
from gateway.services import Services
from gateway.store.models import Badge, Certification, Member, UTCDateTime, utcnow
from jobs.claim import ClaimedItem

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


# Built once (building a statement costs about what running it does).
#: What a badge is issued from: the certification with its member.
_CERTIFICATION = (
    select(
        Certification.certification_id,
        Certification.credential,
        Certification.status,
        Certification.standing,
        Member.email,
        Member.first_name,
        Member.last_name,
    )
    .join(Member, Member.member_id == Certification.member_id)
    .where(Certification.certification_id == bindparam("certification_id"))
)


_now = bindparam("now", type_=UTCDateTime())


def _attempt(insert_of: Callable[[Table], Any]) -> Insert:
    """One more attempt at the badge of a period (created on the first), returning its id;
    nothing when the badge is already live in Credly."""
    statement = insert_of(Badge.__table__).values(
        certification_id=bindparam("certification_id"),
        period_start=bindparam("period_start"),
        badge_template_id=bindparam("badge_template_id"),
        state="queued",
        attempts=1,
        created_at=_now,
        updated_at=_now,
    )
    badges, excluded = Badge.__table__.c, statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[badges.certification_id, badges.period_start],
        set_={
            "attempts": badges.attempts + 1,
            "badge_template_id": func.coalesce(
                excluded.badge_template_id, badges.badge_template_id
            ),
            "updated_at": excluded.updated_at,
        },
        # Spelled out rather than NOT IN, whose list SQLAlchemy expands at every execution.
        where=badges.credly_badge_id.is_(None) | and_(*(badges.state != state for state in LIVE)),
    ).returning(badges.id)


_ATTEMPTS = {"postgresql": _attempt(postgresql.insert), "sqlite": _attempt(sqlite.insert)}


_CREDLY_ID = select(Badge.credly_badge_id).where(
    Badge.certification_id == bindparam("certification_id"),
    Badge.period_start == bindparam("period_start"),
)


class _Recipient(NamedTuple):
    """A row of _CERTIFICATION."""

    certification_id: str
    credential: str
    status: str
    standing: dict[str, Any]
    email: str
    first_name: str
    last_name: str


def _certification(
    svc: Services, certification_id: str, connection: Connection | None = None
) -> _Recipient:
    """A certification with its member's details, in one query (in `connection`'s transaction)."""
    key = {"certification_id": certification_id}
    if connection is None:
        [row] = svc.db.read(_CERTIFICATION, key)
    else:
        [row] = svc.db.execute(connection, _CERTIFICATION, key)
    return _Recipient(*row)


def _recipient(svc: Services, cert: _Recipient) -> BadgeRequest:
    """The badge of the certification's current period, read before calling Credly."""
    standing = cert.standing
    paid_through = date.fromisoformat(standing["fees"]["paid_through"])
    return BadgeRequest(
        recipient_email=cert.email,
        first_name=cert.first_name,
        last_name=cert.last_name,
        badge_template_id=template_for(svc, cert.credential),
        issued_at=_midnight(date.fromisoformat(standing["certified_on"])),
        issuer_earner_id=cert.certification_id,
        expires_at=_midnight(paid_through) if svc.settings.badge_expires else None,
    )


def _period_badge(session: Session, certification_id: str, period_start: date) -> Badge | None:
    return session.scalar(
        select(Badge)
        .where(Badge.certification_id == certification_id, Badge.period_start == period_start)
        .with_for_update()
    )


_found_id, _found_state = bindparam("found_id"), bindparam("found_state")
_found_expires_at = bindparam("found_expires_at", type_=UTCDateTime())
#: Built once: record what Credly answered about the badge `badge_id`.
RECORD = (
    update(Badge)
    .where(Badge.id == bindparam("badge_id"))
    .values(
        credly_badge_id=_found_id,
        state=_found_state,
        last_error=None,
        state_changed_at=case(
            (
                Badge.credly_badge_id.is_distinct_from(_found_id)
                | Badge.state.is_distinct_from(_found_state),
                _now,
            ),
            else_=Badge.state_changed_at,
        ),
        issued_at=func.coalesce(Badge.issued_at, _now),
        expires_at=func.coalesce(_found_expires_at, Badge.expires_at),
        updated_at=_now,
    )
)


def _record(
    svc: Services, badge_id: int, found: CredlyBadge, item: ClaimedItem | None = None
) -> None:
    """Record what Credly answered, in one statement; with `item`, record the item done too."""
    values = {
        "badge_id": badge_id,
        "found_id": found.id,
        "found_state": found.state,
        "found_expires_at": found.expires_at,
        "now": utcnow(),
    }
    if item is None:
        svc.db.write(RECORD, values)
        return
    with svc.db.engine.begin() as connection:
        svc.db.execute(connection, RECORD, values)
        item.finish(svc.db, connection)


#: Why a period's badge job failed for good (None: its last job ended well).
MARK = (
    update(Badge)
    .where(  # bind names unlike the columns': SQLAlchemy keeps those for UPDATE's SET values
        Badge.certification_id == bindparam("of_certification"),
        Badge.period_start == bindparam("of_period"),
        Badge.last_error.is_distinct_from(bindparam("reason")),
    )
    .values(last_error=bindparam("reason"), updated_at=_now)
)


def _marked(item: ClaimedItem, reason: str | None) -> dict[str, Any]:
    return {
        "of_certification": item.certification_id,
        "of_period": date.fromisoformat(item.payload["period_start"]),
        "reason": reason,
        "now": utcnow(),
    }


def given_up(svc: Services, connection: Connection, item: ClaimedItem, reason: str) -> None:
    """Keep on the badge of the item's period why its job failed for good (a permanent error, or
    out of retries), in the transaction that fails the item, so the standing shows it as
    `error`; its state stays what Credly last said, so a requeued revoke or replace still finds
    it live. The job's next good end clears it (`_settled`, or recording Credly's answer)."""
    svc.db.execute(connection, MARK, _marked(item, reason))


def _settled(svc: Services, item: ClaimedItem) -> None:
    """The job ended well without Credly's answer to record (nothing left to do): an error a
    failed attempt left on the badge is over."""
    svc.db.write(MARK, _marked(item, None))


def issue(svc: Services, item: ClaimedItem) -> None:
    """Issue the badge of the item's period, adopting one Credly already has for it."""
    period_start = date.fromisoformat(item.payload["period_start"])
    cert = _certification(svc, item.certification_id)
    if cert.status not in BADGE_KEPT or cert.standing["certified_on"] != period_start.isoformat():
        log.info("not issuing: certification is %s now", cert.status)
        _settled(svc, item)
        return
    recipient: BadgeRequest | PermanentError
    try:
        recipient = _recipient(svc, cert)
    except PermanentError as exc:  # no badge template: the attempt is recorded first
        recipient = exc
    attempted = svc.db.write(
        _ATTEMPTS[svc.db.engine.dialect.name],
        {
            "certification_id": cert.certification_id,
            "period_start": period_start,
            "badge_template_id": getattr(recipient, "badge_template_id", None),
            "now": utcnow(),
        },
    )
    badge_id = attempted[0][0] if attempted else None
    if badge_id is None:
        key = {"certification_id": cert.certification_id, "period_start": period_start}
        [(credly_badge_id,)] = svc.db.read(_CREDLY_ID, key)
        log.info("badge already issued", extra={"credly_badge_id": credly_badge_id})
        _settled(svc, item)
        return
    if isinstance(recipient, PermanentError):
        raise recipient  # the attempt is on the badge: `given_up` gives it the reason
    found = svc.credly.find_badge(
        issuer_earner_id=recipient.issuer_earner_id,
        badge_template_id=recipient.badge_template_id,
    )
    if found is None or found.state not in LIVE:
        found = svc.credly.issue_badge(recipient)
    else:
        log.info("adopting the badge Credly already has", extra={"credly_badge_id": found.id})
    _record(svc, badge_id, found, item)


def replace(svc: Services, item: ClaimedItem) -> None:
    """Replace the live badge of the current period with the member's current details."""
    with svc.db.transaction() as session:
        cert = _certification(svc, item.certification_id, session.connection())
        period_start = date.fromisoformat(cert.standing["certified_on"])
        badge = _period_badge(session, cert.certification_id, period_start)
        live = badge is not None and badge.credly_badge_id and badge.state in LIVE
        if live:
            recipient = _recipient(svc, cert)
            badge.attempts += 1
            session.flush()
            badge_id, credly_id = badge.id, badge.credly_badge_id
    if not live:  # settled once the transaction has let the badge's row go
        log.info("no live badge to replace")
        _settled(svc, item)
        return
    _record(svc, badge_id, _replace_once(svc, credly_id, recipient), item)


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


def revoke(svc: Services, item: ClaimedItem) -> None:
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
        _record(svc, badge_id, svc.credly.revoke_badge(credly_id, reason=reason))
    _settled(svc, item)  # also when the period's badge was not live (nothing to revoke there)
