"""Badge jobs: issue, replace and revoke a certification's Credly badge, idempotently.

What they rely on Credly doing is in docs/credly.md: an issue that fails (or times out) may still
have made the badge, so it is looked up the way Credly counts duplicates and adopted; a revoke
leaves no live badge of the certification, known here or not; a replaced badge is followed to its
successor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Insert,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.credly.errors import (
    AlreadyReplaced,
    CredlyError,
    NoConnection,
    NotFound,
    PermanentError,
)
from connectors.credly.service import holder_badges
from connectors.credly.wire import (
    ACCEPTED,
    PENDING,
    REJECTED,
    REPLACED,
    REVOKED,
    BadgeRequest,
    live_badge,
    of_another_earner,
)
from connectors.credly.wire import Badge as CredlyBadge
from connectors.errors import TransientError
from gateway.rules import BADGE_KEPT
from gateway.store.models import Badge, Certification, UTCDateTime, utcnow
from gateway.usecases import badge_wording
from gateway.usecases.services import Services
from jobs.engine.claim import ClaimedItem
from jobs.engine.retry import Deferred

log = logging.getLogger("jobs.badges")

LIVE = (PENDING, ACCEPTED)
#: How many replaced badges are followed to their successor before giving up (a loop guard).
MAX_SUCCESSORS = 20
#: The status of Credly's refusal to issue a duplicate (docs/credly.md, "Duplicates"), the one
#: 4xx after which Credly holds a badge of the recipient.
DUPLICATE_STATUS = 422
#: Our state of a badge its earner deleted in Credly (`badge.deleted`): not reissued by itself.
DELETED = "deleted"
#: Our states of a badge its earner deleted or rejected: the gateway does not issue the period's
#: badge again on its own (docs/credly.md, "Revoking and deleting").
EARNERS_CHOICE = (DELETED, REJECTED)

#: Recorded on an unclaimed badge the gateway revoked to issue it again to a new e-mail address
#: (with `badges.reissue_owed`, what the jobs read), until the new one is recorded (or Credly's
#: refusal of it, `_refused_note`): a later attempt issues it, whatever the address is by then.
REISSUE_NOTE = "revoked unclaimed, to be issued again to the member's new e-mail address"
#: Recorded on a badge whose member changed e-mail after accepting it.
OWN_EMAIL_NOTE = (
    "accepted in Credly: its e-mail address belongs to the earner's Credly account and is "
    "changed there by the earner, not by the gateway"
)
#: Recorded on an unclaimed badge whose member changed e-mail, with CREDLY_REVOKED_IS_DUPLICATE.
KEPT_ADDRESS_NOTE = (
    "unclaimed in Credly: kept at the e-mail address it was issued to, since Credly counts a "
    "revoked badge as a duplicate and would refuse to issue it again to the new address "
    "(CREDLY_REVOKED_IS_DUPLICATE)"
)
#: Recorded on an unclaimed, expired badge (BADGE_EXPIRES) whose member changed e-mail.
EXPIRED_ADDRESS_NOTE = (
    "unclaimed and expired in Credly: kept at the e-mail address it was issued to, since issued "
    "again to the new address it would be expired on arrival; it is issued there when a renewal "
    "makes it current again"
)
#: Why an issue fails when Credly refuses it as a duplicate of an ended badge of the certification.
ENDED_DUPLICATE = (
    "Credly refused to issue the badge as a duplicate of the certification's {state} badge {id}: "
    "it counts ended badges as duplicates. Allow duplicates on badge template {template} in "
    "Credly, then requeue the job (`gateway jobs requeue`); with CREDLY_REVOKED_IS_DUPLICATE=true "
    "an unclaimed badge whose member changes e-mail is kept instead of being revoked and issued "
    "again"
)
#: Recorded on a badge whose issue Credly refused for good (its duplicate refusal, a 422, with no
#: badge to adopt), with the request in `badges.refused_request` (`refused_request`): the same
#: request is refused again, so reconciliation does not queue it again until what it sends
#: changes (docs/credly.md, "Duplicates").
REFUSED_NOTE = (
    "Credly refused to issue this badge to {email} as {first_name} {last_name} (badge template "
    "{template}); it is not issued again until one of these changes, or the failed job is "
    "requeued (`gateway jobs requeue`)"
)
#: Why an issue fails when Credly refuses it as a duplicate of another certification's live badge
#: at the recipient's e-mail address (docs/credly.md, "Duplicates").
ANOTHER_HOLDER = (
    "Credly refused to issue the badge to {email}: that address holds certification {other}'s "
    "live badge {id} of badge template {template}, and Credly issues one badge of a template to "
    "an address"
)


def _recorded_by_others(
    svc: Services, certification_id: str, found: Sequence[CredlyBadge]
) -> dict[str, str]:
    """Of the badges `found` in Credly, those another certification's badge row records, with
    that certification: a badge with no earner id (issued in Credly's UI) found at a shared
    e-mail address may already be another member's."""
    ids = [badge.id for badge in found if not badge.issuer_earner_id]
    if not ids:
        return {}
    rows = svc.db.read(_RECORDED_BY_OTHERS, {"ids": ids, "certification_id": certification_id})
    return dict(rows)


_RECORDED_BY_OTHERS = select(Badge.credly_badge_id, Badge.certification_id).where(
    Badge.credly_badge_id.in_(bindparam("ids", expanding=True)),
    Badge.certification_id != bindparam("certification_id"),
)


def _midnight(svc: Services, day: date) -> datetime:
    """The start of `day` in the certifying body's time zone (TIME_ZONE); while that is still
    ahead (a day begun in UTC but not yet west of it: a grant dated today), the start of `day`
    in UTC, never after now. Credly may refuse an issue time in the future."""
    start = datetime.combine(day, time(0), ZoneInfo(svc.settings.time_zone))
    now = utcnow()
    if start <= now:
        return start
    return min(datetime.combine(day, time(0), UTC), now)


def template_for(svc: Services, credential: str) -> str:
    """The Credly badge template of a credential (a placeholder on the dry-run backend)."""
    template = svc.settings.credly_badge_templates.get(credential)
    if template:
        return template
    if svc.settings.credly_dry_run:
        return f"dry-run-{credential}"
    raise PermanentError(f"no Credly badge template configured for credential {credential}")


# Built once (building a statement costs about what running it does).
#: What a badge is issued from: the certification and its standing, whose `member` names the
#: member as the certification's own events do (another certification of the member may name
#: them otherwise until it is told too), with how many of its badges are recorded live.
_CERTIFICATION = select(
    Certification.certification_id,
    Certification.credential,
    Certification.status,
    Certification.standing,
    select(func.count(Badge.id))
    .where(
        Badge.certification_id == Certification.certification_id,
        Badge.credly_badge_id.is_not(None),
        or_(*(Badge.state == state for state in LIVE)),  # not IN: its list expands each time
    )
    .scalar_subquery(),
).where(Certification.certification_id == bindparam("certification_id"))


_now = bindparam("now", type_=UTCDateTime())


def _attempt(insert_of: Callable[[Table], Any]) -> Insert:
    """One more attempt at the badge of a period (created on the first), returning its id and
    attempts so far; nothing when the badge is already live in Credly, or its earner deleted or
    rejected it there (the gateway does not issue that again on its own)."""
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
        where=badges.credly_badge_id.is_(None)
        | and_(*(badges.state != state for state in (*LIVE, *EARNERS_CHOICE))),
    ).returning(badges.id, badges.attempts)


_ATTEMPTS = {"postgresql": _attempt(postgresql.insert), "sqlite": _attempt(sqlite.insert)}

#: Takes back an attempt counted on a badge.
_NOT_ATTEMPTED = (
    update(Badge).where(Badge.id == bindparam("badge_id")).values(attempts=Badge.attempts - 1)
)


@contextmanager
def _no_call_no_attempt(svc: Services, badge_id: int) -> Iterator[None]:
    """Its block's attempt at the badge is taken back when its job is given back before any
    Credly call (`NoConnection`): the next attempt is then the first, as far as Credly knows."""
    try:
        yield
    except NoConnection:
        svc.db.write(_NOT_ATTEMPTED, {"badge_id": badge_id})
        raise


_CREDLY_ID = select(Badge.credly_badge_id).where(
    Badge.certification_id == bindparam("certification_id"),
    Badge.period_start == bindparam("period_start"),
)


class _Recipient(NamedTuple):
    """A certification and the member its standing names."""

    certification_id: str
    credential: str
    status: str
    standing: dict[str, Any]
    live_badges: int  # recorded live, of any period
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
    member = row[3]["member"]  # the standing's
    return _Recipient(*row, member["email"], member["first_name"], member["last_name"])


def _recipient(svc: Services, cert: _Recipient) -> BadgeRequest:
    """The badge of the certification's current period, read before calling Credly."""
    standing = cert.standing
    return BadgeRequest(
        recipient_email=cert.email,
        first_name=cert.first_name,
        last_name=cert.last_name,
        badge_template_id=template_for(svc, cert.credential),
        issued_at=_midnight(svc, date.fromisoformat(standing["certified_on"])),
        issuer_earner_id=cert.certification_id,
        expires_at=expiry(svc, standing),
        evidence=badge_wording.evidence(svc, cert.certification_id),
    )


def _refused_note(recipient: BadgeRequest) -> str:
    """The note shown on a badge whose issue to `recipient` Credly refused for good."""
    return REFUSED_NOTE.format(
        email=recipient.recipient_email,
        first_name=recipient.first_name,
        last_name=recipient.last_name,
        template=recipient.badge_template_id,
    )


def refused_request(recipient: BadgeRequest) -> str:
    """What `badges.refused_request` records of an issue to `recipient` that Credly refused for
    good: the address, names and badge template it sent, in one canonical form (compared as it
    is, so the same request gives the same text)."""
    return json.dumps(
        {
            "email": recipient.recipient_email,
            "first_name": recipient.first_name,
            "last_name": recipient.last_name,
            "badge_template_id": recipient.badge_template_id,
        }
    )


def refused_again(
    svc: Services, certification_id: str, refused: str | None, connection: Connection
) -> bool:
    """Whether `refused`, a badge's `refused_request`, is the very issue the certification calls
    for now (read in `connection`'s transaction), so that issuing it again is refused again."""
    if refused is None:
        return False
    cert = _certification(svc, certification_id, connection)
    return refused == refused_request(_recipient(svc, cert))


#: Built once: Credly's refusal recorded on the badge `badge_id` (its note, and the request
#: refused), which ends a reissue owed (`RECORD`).
_REFUSED = (
    update(Badge)
    .where(Badge.id == bindparam("badge_id"))
    .values(
        note=bindparam("note"),
        reissue_owed=False,
        refused_request=bindparam("refused_request"),
        updated_at=_now,
    )
)


def expiry(svc: Services, standing: dict[str, Any]) -> datetime | None:
    """When the badge of `standing` expires: none, or with BADGE_EXPIRES at the end of its
    paid-through day (the last second, in TIME_ZONE: Credly shows that day)."""
    if not svc.settings.badge_expires:
        return None
    last_day = date.fromisoformat(standing["fees"]["paid_through"])
    return datetime.combine(last_day, time(23, 59, 59), ZoneInfo(svc.settings.time_zone))


def expired_on_arrival(expires_at: datetime | None) -> bool:
    """Whether a badge expiring at `expires_at` (BADGE_EXPIRES) would be expired when issued."""
    return expires_at is not None and expires_at <= utcnow()


def renews(badge: CredlyBadge, expires_at: datetime | None) -> bool:
    """Whether `badge`, pending or accepted but expired, would show again with `expires_at` (a
    renewal paid late): replacing it is what renews it."""
    return badge.state in LIVE and (expires_at is None or expires_at > utcnow())


def _period_badge(session: Session, certification_id: str, period_start: date) -> Badge | None:
    return session.scalar(
        select(Badge)
        .where(Badge.certification_id == certification_id, Badge.period_start == period_start)
        .with_for_update()
    )


_found_id, _found_state = bindparam("found_id"), bindparam("found_state")
_found_issued_at = bindparam("found_issued_at", type_=UTCDateTime())
_found_expires_at = bindparam("found_expires_at", type_=UTCDateTime())
#: Built once: record what Credly answered about the badge `badge_id`, its `issued_at` Credly's
#: (docs/api.md, "A standing's badge"; the time of recording if Credly's answer had none) and its
#: e-mail address (where the claim e-mail went; kept when the answer names none), with the note
#: for the standing and whether a reissue is owed; a refusal recorded before is over.
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
        issued_at=func.coalesce(_found_issued_at, Badge.issued_at, _now),
        expires_at=func.coalesce(_found_expires_at, Badge.expires_at),
        recipient_email=func.coalesce(bindparam("found_email"), Badge.recipient_email),
        note=bindparam("note"),
        reissue_owed=bindparam("reissue_owed"),
        refused_request=None,
        updated_at=_now,
    )
)


def _record(
    svc: Services,
    badge_id: int,
    found: CredlyBadge,
    item: ClaimedItem | None = None,
    note: str | None = None,
    others: Sequence[tuple[int, CredlyBadge]] = (),
    *,
    reissue_owed: bool = False,
) -> None:
    """Record what Credly answered, in one statement, and in the same transaction what it says
    of the badges of `others` (rows, badges); with `item`, record the item done too;
    `reissue_owed` for a badge revoked to be issued again (`REISSUE_NOTE`). The rows are written
    in id order, the order a notification job locks them in (no deadlock)."""
    writes = sorted(
        [(badge_id, found, note, reissue_owed), *((row, b, None, False) for row, b in others)],
        key=lambda write: write[0],
    )
    values = [
        {
            "badge_id": row,
            "found_id": badge.id,
            "found_state": badge.state,
            "found_issued_at": badge.issued_at,
            "found_expires_at": badge.expires_at,
            "found_email": badge.recipient_email,
            "note": said,
            "reissue_owed": owed,
            "now": utcnow(),
        }
        for row, badge, said, owed in writes
    ]
    if item is None and not others:
        svc.db.write(RECORD, values[0])
        return
    with svc.db.engine.begin() as connection:
        for each in values:
            svc.db.execute(connection, RECORD, each)
        if item is not None:
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
    """Issue the badge of the item's period, adopting one Credly already has for it (the live
    badge of another period is taken over and replaced to say this one's issue day); when the
    certification keeps no badge any more (revoked meanwhile), revoke whatever Credly holds."""
    period_start = date.fromisoformat(item.payload["period_start"])
    cert = _certification(svc, item.certification_id)
    if cert.status not in BADGE_KEPT:
        log.info("not issuing: certification is %s now; revoking what Credly holds", cert.status)
        revoke_everything(svc, cert)
        _settled(svc, item)
        return
    if cert.standing["certified_on"] != period_start.isoformat():
        log.info("not issuing: the certification's period began on another day since")
        _settled(svc, item)
        return
    recipient: BadgeRequest | PermanentError
    try:
        recipient = _recipient(svc, cert)
    except PermanentError as exc:  # no badge template: the attempt is recorded first
        recipient = exc
    else:
        if expired_on_arrival(recipient.expires_at):
            # BADGE_EXPIRES, paid through a day gone by (a grant recorded inactive): the payment
            # that makes it current issues it (docs/credly.md, "Issuing")
            log.info("not issuing: the badge would be expired on arrival")
            _settled(svc, item)
            return
    attempted = svc.db.write(
        _ATTEMPTS[svc.db.engine.dialect.name],
        {
            "certification_id": cert.certification_id,
            "period_start": period_start,
            "badge_template_id": getattr(recipient, "badge_template_id", None),
            "now": utcnow(),
        },
    )
    if not attempted:
        key = {"certification_id": cert.certification_id, "period_start": period_start}
        [(credly_badge_id,)] = svc.db.read(_CREDLY_ID, key)
        log.info("badge already issued", extra={"credly_badge_id": credly_badge_id})
        _settled(svc, item)
        return
    if isinstance(recipient, PermanentError):
        raise recipient  # the attempt is on the badge: `given_up` gives it the reason
    [(badge_id, attempts)] = attempted
    # Another period's live badge is this period's now: a late event moved the period while the
    # badge was kept (docs/rules.md, *Status, badge and verification*). It is taken over and
    # brought up to date, its issue day included, rather than a second badge issued.
    with _no_call_no_attempt(svc, badge_id):
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
            found, adopted = _issue_or_adopt(
                svc,
                badge_id,
                recipient,
                look_first=attempts > 1,
                made_nothing=lambda: svc.db.write(_NOT_ATTEMPTED, {"badge_id": badge_id}),
            )
    wanted = _recipient_now(svc, item.certification_id, period_start) or recipient
    note = None
    if (adopted and not _says(found, wanted)) or taken is not None or wanted != recipient:
        # made by a lost attempt before the member's details changed, issued by hand, another
        # period's, or the details changed while the call was in flight (their replace job found
        # no badge yet)
        found, note = _bring_up_to_date(svc, badge_id, found.id, wanted)
    # the other period's row (now replaced) in the same transaction as this one's: a notification
    # of the replace never finds only one of them recorded
    others = [(taken.row_id, _read(svc, taken.credly_id))] if taken is not None else []
    _record_unless_ended(svc, item, badge_id, found, note, others)


#: Built once: the badges recorded live for a certification's other periods than `period_start`.
_KEPT_ELSEWHERE = select(Badge.id, Badge.credly_badge_id).where(
    Badge.certification_id == bindparam("certification_id"),
    Badge.period_start != bindparam("period_start"),
    Badge.credly_badge_id.is_not(None),
    or_(*(Badge.state == state for state in LIVE)),  # not IN: its list expands at each execution
)


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
    for row_id, credly_id in svc.db.read(_KEPT_ELSEWHERE, key):
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


def _recipient_now(svc: Services, certification_id: str, period_start: date) -> BadgeRequest | None:
    """The badge the certification's period calls for now; None when it keeps none any more
    or another period began."""
    cert = _certification(svc, certification_id)
    if cert.status not in BADGE_KEPT or cert.standing["certified_on"] != period_start.isoformat():
        return None
    return _recipient(svc, cert)


def names_member(
    svc: Services, certification_id: str, badge: CredlyBadge, connection: Connection
) -> bool:
    """Whether `badge` names the certification's member as their details now say, e-mail and
    expiry included (read in `connection`'s transaction)."""
    return _says(badge, _recipient(svc, _certification(svc, certification_id, connection)))


def named_otherwise(
    svc: Services,
    certification_id: str,
    period_start: date,
    badge: CredlyBadge,
    connection: Connection,
) -> bool:
    """Whether `badge`, live for the certification's current period (`period_start`) while its
    status keeps a badge, names the member (or expires) otherwise than their details now say;
    its e-mail address aside, which an accepted badge's earner owns."""
    cert = _certification(svc, certification_id, connection)
    if cert.status not in BADGE_KEPT or cert.standing["certified_on"] != period_start.isoformat():
        return False
    try:
        return not _recipient(svc, cert).names_as(badge)
    except PermanentError:  # no badge template configured: no replace job could send one
        return False


def _says(badge: CredlyBadge, recipient: BadgeRequest) -> bool:
    """Whether `badge` names the member as `recipient` would, e-mail and expiry included (a
    badge issued by hand keeps its own issue day)."""
    same_email = (badge.recipient_email or "").casefold() == recipient.recipient_email.casefold()
    return same_email and recipient.names_as(badge)


def _record_unless_ended(
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
    now = _certification(svc, item.certification_id)
    if now.status in BADGE_KEPT:
        _record(svc, badge_id, found, item, note, others)
        return
    _record(svc, badge_id, found, note=note, others=others)
    revoke_everything(svc, now)
    _settled(svc, item)


def _issue_or_adopt(
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
    on the badge `badge_id` (`_REFUSED`). With whether it was adopted (found, not issued by
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
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != DUPLICATE_STATUS:
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
        others = _recorded_by_others(svc, earner, counted)
        found = live_badge(
            badge
            for badge in counted
            if not of_another_earner(badge, earner) and badge.id not in others
        )
        if found is None:
            if isinstance(exc, PermanentError):  # a 422: no other 4xx gets here
                refusal = {
                    "badge_id": badge_id,
                    "note": _refused_note(recipient),
                    "refused_request": refused_request(recipient),
                    "now": utcnow(),
                }
                svc.db.write(_REFUSED, refusal)
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
    if not isinstance(exc, PermanentError) or exc.status != DUPLICATE_STATUS:
        return
    now = utcnow()
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


def replace(svc: Services, item: ClaimedItem) -> None:
    """Bring the live badge of the current period up to the member's current details."""
    with svc.db.transaction() as session:
        cert = _certification(svc, item.certification_id, session.connection())
        period_start = date.fromisoformat(cert.standing["certified_on"])
        badge = _period_badge(session, cert.certification_id, period_start)
        live = badge is not None and badge.credly_badge_id and badge.state in LIVE
        # revoked by an e-mail change's step before its new issue succeeded (or Credly refused
        # an issue of it: a requeue or a later change tries it again): issued now
        reissue = (
            badge is not None
            and badge.state == REVOKED
            and (badge.reissue_owed or badge.refused_request is not None)
            and cert.status in BADGE_KEPT
        )
        lease = timedelta(seconds=svc.settings.job_timeout_seconds)
        issuing = (
            badge is not None
            and not badge.credly_badge_id
            and badge.last_error is None
            and badge.updated_at > utcnow() - lease
        )
        if live or reissue:
            recipient = _recipient(svc, cert)
            badge.attempts += 1
            session.flush()
            badge_id, credly_id = badge.id, badge.credly_badge_id
    if issuing:  # its issue call is in flight: the details it sent may be the old ones
        raise Deferred("the badge is being issued; it is brought up to date next", retry_after=5)
    if not (live or reissue):
        # An error the badge shows is another job's (an issue that failed for good, say): it
        # stays until a job of that badge ends well.
        log.info("no live badge to replace")
        return
    with _no_call_no_attempt(svc, badge_id):
        found, note = _bring_up_to_date(svc, badge_id, credly_id, recipient, reissue=reissue)
    wanted = _recipient_now(svc, item.certification_id, period_start)
    if wanted is not None and wanted != recipient:
        # the details changed again while Credly was called: the job of that change may have
        # ended already (with a badge it issued, say), before this answer is recorded
        found, note = _bring_up_to_date(svc, badge_id, found.id, wanted)
    _record_unless_ended(svc, item, badge_id, found, note)


def _bring_up_to_date(
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
        _record(svc, badge_id, ended, note=REISSUE_NOTE, reissue_owed=True)
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
        if _still(svc, current):
            raise
        raise TransientError(f"{exc}; the badge changed meanwhile, the retry reads it") from exc


def _issue_up_to_date(
    svc: Services, badge_id: int, recipient: BadgeRequest
) -> tuple[CredlyBadge, str | None]:
    """A badge issued to `recipient`, or the live one Credly holds for the certification adopted
    and, when it names the member otherwise (made for earlier details), brought up to date as
    the issue job brings an adopted badge; with a note for the standing."""
    found, adopted = _issue_or_adopt(svc, badge_id, recipient)
    if adopted and not _says(found, recipient):
        return _bring_up_to_date(svc, badge_id, found.id, recipient)
    return found, None


def _still(svc: Services, badge: CredlyBadge) -> bool:
    """Whether Credly's badge is still in the state `badge` was read in."""
    try:
        return svc.credly.get_badge(badge.id).state == badge.state
    except NotFound:
        return False


def deleted(credly_id: str) -> CredlyBadge:
    """What to record of a badge Credly no longer has: its earner deleted it."""
    return CredlyBadge(credly_id, DELETED, None, None, None, None, None)


def revoke(svc: Services, item: ClaimedItem) -> None:
    """Leave no live badge of the certification on Credly (unless it keeps one again by now)."""
    cert = _certification(svc, item.certification_id)
    if cert.status in BADGE_KEPT:
        log.info("not revoking: the certification keeps its badge again (%s)", cert.status)
    else:
        log.info("revoking", extra={"reason_rule": item.payload.get("reason_rule")})
        revoke_everything(svc, cert)
    _settled(svc, item)  # also when nothing was live


def revoke_duplicate(svc: Services, item: ClaimedItem) -> None:
    """Revoke the payload's `credly_badge_id`, a second live badge of a certification that keeps
    another (reconciliation found both), quietly; unless it is the badge recorded for the
    certification by now. A certification that keeps no badge any more has every live one
    revoked. The badge the certification keeps is not marked by this job's end, good or bad."""
    cert = _certification(svc, item.certification_id)
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


def revoke_everything(svc: Services, cert: _Recipient) -> int:
    """Revoke every live badge of the certification on Credly: the ones recorded here and every
    one a paged search finds on each template of its credential (by earner id or e-mail), a
    replaced one's successor in its place; not one another certification records (a badge with
    no earner id at an address two members share). Deleted or already revoked counts as done.
    The first badge found that no row records is recorded, revoked, in the row of the current
    period when that row records none (its issue call's answer was lost), so the standing shows
    it as it would a badge the gateway knew. Returns how many were revoked."""
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
    unrecorded = next(
        (row.id for row in rows if row.period_start == period_start and not row.credly_badge_id),
        None,
    )
    for template in sorted(templates):
        held = holder_badges(
            svc.credly,
            badge_template_id=template,
            issuer_earner_id=cert.certification_id,
            recipient_email=cert.email,
        )
        others = _recorded_by_others(svc, cert.certification_id, held)
        for found in held:
            if found.live() and found.id not in targets and found.id not in others:
                targets[found.id], unrecorded = unrecorded, None
    reason = badge_wording.member_reason(svc.policy, cert.standing)
    for credly_id, badge_id in targets.items():
        try:
            result = revoked(svc, credly_id, reason=reason)
        except NotFound:
            result = deleted(credly_id)
        log.info("revoked", extra={"credly_badge_id": result.id, "state": result.state})
        if badge_id is not None:
            _record(svc, badge_id, result)
    return len(targets)
