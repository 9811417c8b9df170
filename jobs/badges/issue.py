"""The issue job: issue the badge of a certification's period, or adopt (or take over) the one
Credly holds."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from connectors.credly.errors import NotFound, PermanentError
from connectors.credly.wire import Badge as CredlyBadge
from connectors.credly.wire import BadgeRequest
from gateway.platform import clock
from gateway.rules import BADGE_KEPT
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.badges.credly_calls import deleted, issue_or_adopt, latest
from jobs.badges.recipient import (
    certification,
    expired_on_arrival,
    recipient_now,
    recipient_of,
    renews,
    says,
)
from jobs.badges.replace import bring_up_to_date
from jobs.badges.revoke import record_unless_ended, revoke_everything
from jobs.badges.rows import (
    ATTEMPTS,
    CREDLY_ID,
    KEPT_ELSEWHERE,
    NOT_ATTEMPTED,
    no_call_no_attempt,
    settled,
)
from jobs.badges.turn import one_at_a_time
from jobs.engine.claim import ClaimedItem


@one_at_a_time
def issue(svc: Services, item: ClaimedItem) -> None:
    """Issue the badge of the item's period, adopting one Credly already has for it (the live
    badge of another period is taken over and replaced to say this one's issue day); when the
    certification keeps no badge any more (revoked meanwhile), revoke whatever Credly holds."""
    period_start = date.fromisoformat(item.payload["period_start"])
    cert = certification(svc, item.certification_id)
    if cert.status not in BADGE_KEPT:
        log.info("not issuing: certification is %s now; revoking what Credly holds", cert.status)
        revoke_everything(svc, cert)
        settled(svc, item)
        return
    if cert.standing["certified_on"] != period_start.isoformat():
        log.info("not issuing: the certification's period began on another day since")
        settled(svc, item)
        return
    recipient: BadgeRequest | PermanentError
    try:
        recipient = recipient_of(svc, cert)
    except PermanentError as exc:  # no badge template: the attempt is recorded first
        recipient = exc
    else:
        if expired_on_arrival(recipient.expires_at):
            # BADGE_EXPIRES, paid through a day gone by (a grant recorded inactive): the payment
            # that makes it current issues it (docs/credly.md, "Issuing")
            log.info("not issuing: the badge would be expired on arrival")
            settled(svc, item)
            return
    attempted = svc.db.write(
        ATTEMPTS[svc.db.engine.dialect.name],
        {
            "certification_id": cert.certification_id,
            "period_start": period_start,
            "badge_template_id": getattr(recipient, "badge_template_id", None),
            "now": clock.now(),
        },
    )
    if not attempted:
        key = {"certification_id": cert.certification_id, "period_start": period_start}
        [(credly_badge_id,)] = svc.db.read(CREDLY_ID, key)
        log.info("badge already issued", extra={"credly_badge_id": credly_badge_id})
        settled(svc, item)
        return
    if isinstance(recipient, PermanentError):
        raise recipient  # the attempt is on the badge: `given_up` gives it the reason
    [(badge_id, attempts)] = attempted
    # Another period's live badge is this period's now: a late event moved the period while the
    # badge was kept (docs/rules.md, *Status, badge and verification*). It is taken over and
    # brought up to date, its issue day included, rather than a second badge issued.
    with no_call_no_attempt(svc, badge_id):
        taken = (  # only then another period's badge can be live
            _take_over(svc, cert.certification_id, period_start, recipient)
            if cert.live_badges
            else None
        )
        if taken is not None:
            found, adopted = taken.badge, True
        else:
            # Only an earlier attempt can have made this badge in Credly unseen (its answer
            # lost): the first one issues at once, and Credly's duplicate refusal names any
            # badge it holds.
            found, adopted = issue_or_adopt(
                svc,
                badge_id,
                recipient,
                look_first=attempts > 1,
                made_nothing=lambda: svc.db.write(NOT_ATTEMPTED, {"badge_id": badge_id}),
            )
    wanted = recipient_now(svc, item.certification_id, period_start) or recipient
    note = None
    if (adopted and not says(found, wanted)) or taken is not None or wanted != recipient:
        # made by a lost attempt before the member's details changed, issued by hand, another
        # period's, or the details changed while the call was in flight (their replace job found
        # no badge yet)
        found, note = bring_up_to_date(svc, badge_id, found.id, wanted)
    # the other period's row (now replaced) in the same transaction as this one's: a notification
    # of the replace never finds only one of them recorded
    others = [(taken.row_id, _read(svc, taken.credly_id))] if taken is not None else []
    record_unless_ended(svc, item, badge_id, found, note, others)


class _Taken(NamedTuple):
    """Another period's badge taken over: its row, the Credly id recorded there, and the badge
    Credly holds now (that one, or its last successor)."""

    row_id: int
    credly_id: str
    badge: CredlyBadge


def _take_over(
    svc: Services, certification_id: str, period_start: date, recipient: BadgeRequest
) -> _Taken | None:
    """The badge of another period of the certification that is recorded live and that Credly
    still holds live (or the recipient's expiry renews); None when there is none."""
    key = {"certification_id": certification_id, "period_start": period_start}
    for row_id, credly_id in svc.db.read(KEPT_ELSEWHERE, key):
        try:
            current = latest(svc, svc.credly.get_badge(credly_id))
        except NotFound:
            continue
        if renews(current, recipient.expires_at):
            log.info("taking over another period's badge", extra={"credly_badge_id": current.id})
            return _Taken(row_id, credly_id, current)
    return None


def _read(svc: Services, credly_id: str) -> CredlyBadge:
    """Credly's badge `credly_id` as it is now (deleted on a 404)."""
    try:
        return svc.credly.get_badge(credly_id)
    except NotFound:
        return deleted(credly_id)
