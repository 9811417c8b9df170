"""How the badge jobs call Credly: issue a badge or adopt the one Credly holds, say why Credly
refused one as a duplicate, revoke a badge, follow a replaced one to its successor."""

from __future__ import annotations

from collections.abc import Callable

from connectors.credly.errors import CredlyError, NotFound, PermanentError
from connectors.credly.service import holder_badges
from connectors.credly.wire import REPLACED, REVOKED, BadgeRequest, live_badge, of_another_earner
from connectors.credly.wire import Badge as CredlyBadge
from gateway.platform import clock
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.badges.notes import ANOTHER_HOLDER, ENDED_DUPLICATE, refused_note, refused_request
from jobs.badges.rows import REFUSED, recorded_by_others
from jobs.badges.states import DELETED, LIVE

#: How many replaced badges are followed to their successor before giving up (a loop guard).
MAX_SUCCESSORS = 20


def issue_or_adopt(
    svc: Services,
    badge_id: int,
    recipient: BadgeRequest,
    *,
    look_first: bool = True,
    made_nothing: Callable[[], object] | None = None,
) -> tuple[CredlyBadge, bool]:
    """A new badge for the recipient, or (`look_first`) the live one Credly holds for them by
    earner id; when the issue call fails in a way after which Credly may hold the badge anyway
    (a timeout, a 5xx, its duplicate refusal), the badge looked up as Credly counts duplicates.
    Any other 4xx (a 429, a refused token, a request refused as invalid) says Credly made
    nothing: it is raised as it is, without a look-up, once `made_nothing` is called (the
    issue job then takes its attempt back, so that its retry issues at once too). A duplicate
    refusal after which no badge is to be adopted is raised as a PermanentError once recorded
    on the badge `badge_id` (`REFUSED`). With whether it was adopted (found, not issued by
    this call)."""
    template = recipient.badge_template_id
    earner = recipient.issuer_earner_id
    if look_first:
        found = live_badge(
            holder_badges(svc.credly, badge_template_id=template, issuer_earner_id=earner)
        )
        if found is not None:
            log.info("adopting the badge Credly already has", extra={"credly_badge_id": found.id})
            return found, True
    try:
        return svc.credly.issue_badge(recipient), False
    except CredlyError as exc:
        if exc.made_nothing:
            if made_nothing is not None:
                made_nothing()
            raise
        counted = holder_badges(
            svc.credly,
            badge_template_id=template,
            issuer_earner_id=earner,
            recipient_email=recipient.recipient_email,
            others=True,
        )
        others = recorded_by_others(svc, earner, counted)
        found = live_badge(
            badge
            for badge in counted
            if not of_another_earner(badge, earner) and badge.id not in others
        )
        if found is None:
            if isinstance(exc, PermanentError):  # a 422: no other 4xx gets here
                refusal = {
                    "badge_id": badge_id,
                    "note": refused_note(recipient),
                    "refused_request": refused_request(recipient),
                    "now": clock.now(),
                }
                svc.db.write(REFUSED, refusal)
            _explain_duplicate(exc, counted, recipient, others)
            raise
        log.info(
            "adopting the badge Credly holds after the failed issue call",
            extra={"credly_badge_id": found.id},
        )
        return found, True


def _explain_duplicate(
    exc: CredlyError, counted: list[CredlyBadge], recipient: BadgeRequest, others: dict[str, str]
) -> None:
    """Raise a PermanentError that says why Credly refused the issue as a duplicate (a 422) while
    it holds no live badge of the certification (docs/credly.md, "Duplicates"): another
    certification's live badge at the recipient's e-mail address (by its earner id, or by the
    badge row that records it, `others`); or, when no badge of another certification is found,
    the certification's ended (revoked or expired) one, Credly then counting ended badges as
    duplicates. No retry gets past either; otherwise Credly's refusal is raised as it is."""
    if not exc.duplicate_refusal:
        return
    now = clock.now()
    earner = recipient.issuer_earner_id
    theirs = [
        b
        for b in counted
        if (of_another_earner(b, earner) or b.id in others) and b.state != REPLACED
    ]
    held = live_badge(theirs)
    if held is not None:
        message = ANOTHER_HOLDER.format(
            email=recipient.recipient_email,
            other=held.issuer_earner_id or others[held.id],
            id=held.id,
            template=recipient.badge_template_id,
        )
        raise PermanentError(message, status=exc.status, body=exc.body) from exc
    ended = [
        badge
        for badge in counted
        if badge.issuer_earner_id == earner
        and (badge.state == REVOKED or (badge.state in LIVE and not badge.live(now)))
    ]
    if ended and not theirs:
        badge = ended[-1]
        state = "revoked" if badge.state == REVOKED else "expired"
        message = ENDED_DUPLICATE.format(
            state=state, id=badge.id, template=recipient.badge_template_id
        )
        raise PermanentError(message, status=exc.status, body=exc.body) from exc


def revoked(svc: Services, credly_id: str, *, reason: str, quietly: bool = False) -> CredlyBadge:
    """Revoke Credly's badge `credly_id` or, when it was replaced, its last successor (each
    replaced since is followed); `quietly` suppresses Credly's e-mail. NotFound when deleted."""
    for _ in range(MAX_SUCCESSORS):
        result = svc.credly.revoke_badge(
            credly_id, reason=reason, suppress_revoke_notification_email=quietly
        )
        if result.state != REPLACED:
            return result
        credly_id = latest(svc, result).id
        log.info("badge replaced: revoking its successor", extra={"credly_badge_id": credly_id})
    raise PermanentError(f"more than {MAX_SUCCESSORS} replacements of badge {credly_id}")


def latest(svc: Services, badge: CredlyBadge) -> CredlyBadge:
    """`badge`, or the last of the badges that replaced it (docs/credly.md, "Replacing")."""
    for _ in range(MAX_SUCCESSORS):
        if badge.state != REPLACED:
            return badge
        badge = svc.credly.successor_by_replacing(badge)
    raise PermanentError(f"more than {MAX_SUCCESSORS} replacements of badge {badge.id}")


def still(svc: Services, badge: CredlyBadge) -> bool:
    """Whether Credly's badge is still in the state `badge` was read in."""
    try:
        return svc.credly.get_badge(badge.id).state == badge.state
    except NotFound:
        return False


def deleted(credly_id: str) -> CredlyBadge:
    """What to record of a badge Credly no longer has: its earner deleted it."""
    return CredlyBadge(credly_id, DELETED, None, None, None, None, None)
