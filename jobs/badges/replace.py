"""The replace job: bring the live badge of a certification's current period up to its member's
current details."""

from __future__ import annotations

from datetime import date

from connectors.credly.errors import AlreadyReplaced, NotFound, PermanentError
from connectors.credly.wire import PENDING, REVOKED, BadgeRequest
from connectors.credly.wire import Badge as CredlyBadge
from connectors.errors import TransientError
from gateway.rules import BADGE_KEPT
from gateway.usecases import badge_wording
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.badges.credly_calls import deleted, issue_or_adopt, latest, revoked, still
from jobs.badges.notes import EXPIRED_ADDRESS_NOTE, KEPT_ADDRESS_NOTE, OWN_EMAIL_NOTE, REISSUE_NOTE
from jobs.badges.recipient import (
    certification,
    expired_on_arrival,
    recipient_now,
    recipient_of,
    says,
)
from jobs.badges.revoke import record_unless_ended
from jobs.badges.rows import no_call_no_attempt, period_badge, record
from jobs.badges.states import LIVE
from jobs.badges.turn import one_at_a_time
from jobs.engine.claim import ClaimedItem


@one_at_a_time
def replace(svc: Services, item: ClaimedItem) -> None:
    """Bring the live badge of the current period up to the member's current details."""
    with svc.db.transaction() as session:
        cert = certification(svc, item.certification_id, session.connection())
        period_start = date.fromisoformat(cert.standing["certified_on"])
        badge = period_badge(session, cert.certification_id, period_start)
        live = badge is not None and badge.credly_badge_id and badge.state in LIVE
        # revoked by an e-mail change's step before its new issue succeeded (or Credly refused
        # an issue of it: a requeue or a later change tries it again): issued now
        reissue = (
            badge is not None
            and badge.state == REVOKED
            and (badge.reissue_owed or badge.refused_request is not None)
            and cert.status in BADGE_KEPT
        )
        if live or reissue:
            recipient = recipient_of(svc, cert)
            badge.attempts += 1
            session.flush()
            badge_id, credly_id = badge.id, badge.credly_badge_id
    if not (live or reissue):
        # An error the badge shows is another job's (an issue that failed for good, say): it
        # stays until a job of that badge ends well.
        log.info("no live badge to replace")
        return
    with no_call_no_attempt(svc, badge_id):
        found, note = bring_up_to_date(svc, badge_id, credly_id, recipient, reissue=reissue)
    wanted = recipient_now(svc, item.certification_id, period_start)
    if wanted is not None and wanted != recipient:
        # the details changed again while Credly was called: the job of that change may have
        # ended already (with a badge it issued, say), before this answer is recorded
        found, note = bring_up_to_date(svc, badge_id, found.id, wanted)
    record_unless_ended(svc, item, badge_id, found, note)


def bring_up_to_date(
    svc: Services,
    badge_id: int,
    credly_id: str,
    recipient: BadgeRequest,
    *,
    reissue: bool = False,
) -> tuple[CredlyBadge, str | None]:
    """Credly's current badge (a replaced one followed to its successor) made to say what
    `recipient` says, and a note for the standing. Only Credly's replace fields are sent; a new
    e-mail reaches a pending badge by issuing it again to that address (the unclaimed one
    revoked quietly, and recorded on the badge `badge_id` as soon as Credly confirms it), while
    an accepted badge's e-mail is the earner's own; so is a pending one's with
    CREDLY_REVOKED_IS_DUPLICATE. With `reissue` (the badge recorded as revoked for that), a
    revoked badge is issued again whatever the e-mail. A badge that expired (BADGE_EXPIRES) is
    pending or accepted still, and is brought up to date as a current one, except that a new
    e-mail does not reach it while it would be issued again expired (it stays at its address
    until a renewal). A replacement an earlier attempt made (the successor already says it all)
    is adopted."""
    try:
        current = latest(svc, svc.credly.get_badge(credly_id))
    except NotFound:
        return deleted(credly_id), None
    new_email = (current.recipient_email or "").casefold() != recipient.recipient_email.casefold()
    if current.state == REVOKED and (new_email or reissue):
        # An earlier attempt revoked it to issue it again to the new address, then failed (or
        # its answer was lost): issue it now, or adopt the one that attempt (or a job of an
        # earlier change, its call still in flight) made.
        return _issue_up_to_date(svc, badge_id, recipient)
    if current.state not in LIVE:
        return current, None  # revoked, rejected
    stays = expired_on_arrival(recipient.expires_at)  # issued again, it would be expired
    kept_address = svc.settings.credly_revoked_is_duplicate or stays
    if new_email and current.state == PENDING and not kept_address:
        ended = revoked(svc, current.id, reason=badge_wording.NEW_ADDRESS_REASON, quietly=True)
        record(svc, badge_id, ended, note=REISSUE_NOTE, reissue_owed=True)
        return _issue_up_to_date(svc, badge_id, recipient)
    note = None
    if new_email and current.state != PENDING:
        note = OWN_EMAIL_NOTE
    elif new_email:  # an unclaimed badge kept at its address
        revoked_counts = svc.settings.credly_revoked_is_duplicate
        note = KEPT_ADDRESS_NOTE if revoked_counts else EXPIRED_ADDRESS_NOTE
    if recipient.shows_as(current):
        log.info("the badge says it all already", extra={"credly_badge_id": current.id})
        return current, note
    try:
        return svc.credly.replace_badge(current.id, recipient), note
    except AlreadyReplaced as exc:  # replaced since it was read (another job, or out of band)
        raise TransientError(f"{exc}; the retry follows it to its successor") from exc
    except PermanentError as exc:  # revoked since it was read (a revoke job, or out of band)?
        if still(svc, current):
            raise
        raise TransientError(f"{exc}; the badge changed meanwhile, the retry reads it") from exc


def _issue_up_to_date(
    svc: Services, badge_id: int, recipient: BadgeRequest
) -> tuple[CredlyBadge, str | None]:
    """A badge issued to `recipient`, or the live one Credly holds for the certification adopted
    and, when it names the member otherwise (made for earlier details), brought up to date as
    the issue job brings an adopted badge; with a note for the standing."""
    found, adopted = issue_or_adopt(svc, badge_id, recipient)
    if adopted and not says(found, recipient):
        return bring_up_to_date(svc, badge_id, found.id, recipient)
    return found, None
