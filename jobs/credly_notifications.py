"""The job behind a Credly notification: fetch the event from Credly, and only then act on it.

`badge.state.changed` moves the badge with the event's Credly badge id to accepted, rejected or
revoked, or, when it was replaced, to its successor (adopted: its id and state); `badge.deleted`
marks it deleted by its earner once Credly no longer has it; other event types are recorded and
ignored; an event Credly does not know (404) is forged and changes nothing (docs/credly.md).
An event that names its badge without its state has the badge read from Credly.
When the event is about a badge of one of our certifications (its `issuer_earner_id`) whose issue
job has not recorded the Credly id yet, the job is retried; after its last attempt the
notification is ignored (no job recorded that badge: its issue was retried into another one).
A change of a badge replaced since by the badge recorded (a late notification about its
predecessor) is ignored at once as superseded: nothing of it is carried over to the successor.
A fetched event that names another organisation, or holds a value the gateway cannot store (a
badge id longer than a badge row holds, say), is refused, naming why, and changes nothing. A
check that fails for good (Credly refuses the read, or it is out of retries) records the
notification `failed`, with the job's error, in the transaction that fails the job (`given_up`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.orm import Session

from connectors.credly.errors import CredlyError, NotFound, TransientError
from connectors.credly.wire import (
    ACCEPTED,
    PENDING,
    REJECTED,
    REPLACED,
    REVOKED,
    parse_credly_datetime,
)
from connectors.credly.wire import Badge as CredlyBadge
from connectors.errors import describe
from gateway.platform import clock
from gateway.rules import kinds
from gateway.store.db import wake_after_commit
from gateway.store.models import Badge, Certification, CredlyNotification, OutboxItem, UTCDateTime
from gateway.usecases.credly_notifications import expected_organization
from gateway.usecases.services import Services
from jobs.badges.credly_calls import deleted, latest
from jobs.badges.recipient import named_otherwise
from jobs.badges.states import DELETED
from jobs.engine.claim import ClaimedItem
from jobs.engine.retry import MAX_ATTEMPTS

log = logging.getLogger("jobs.credly_notifications")

BADGE_STATE_CHANGED = "badge.state.changed"
BADGE_DELETED = "badge.deleted"
#: The Credly states a notification may move one of our badges to (replaced: to its successor).
NOTIFIED_STATES = (ACCEPTED, REJECTED, REVOKED, REPLACED)
#: Our badge states a notification may move a badge from (revoked, error, ... stay as they are).
MOVABLE_STATES = (PENDING, ACCEPTED, REJECTED)

#: The most characters the gateway stores of each field of a badge an event names (its column's).
BADGE_LIMITS = {
    "id": Badge.credly_badge_id.type.length,
    "state": Badge.state.type.length,
    "recipient_email": Badge.recipient_email.type.length,
}
#: The most characters of an event type the gateway stores.
EVENT_TYPE_LIMIT = CredlyNotification.event_type.type.length

#: The statuses of a notification its job checks: not yet, or found `failed` (the job requeued).
UNCHECKED = ("received", "failed")

#: A notification not yet checked whose check failed for good (`given_up`).
CHECK_FAILED = (
    update(CredlyNotification)
    .where(  # bind names unlike the columns': SQLAlchemy keeps those for UPDATE's SET values
        CredlyNotification.notification_id == bindparam("of_notification"),
        CredlyNotification.status.in_(UNCHECKED),
    )
    .values(
        status="failed",
        result=bindparam("reason"),
        processed_at=bindparam("now", type_=UTCDateTime()),
    )
)

Outcome = tuple[str, str]


class BadgeNotRecordedYet(TransientError):
    """The event is about a badge of ours whose Credly id no issue job has recorded yet."""


class Unusable(Exception):
    """The fetched event holds a value the gateway cannot store; the message names its field."""


def process(svc: Services, item: ClaimedItem) -> None:
    """Fetch the notified event from Credly with our own credentials and apply it."""
    notification_id = item.payload["notification_id"]
    with svc.db.sessions() as session:
        status = session.scalar(
            select(CredlyNotification.status).where(
                CredlyNotification.notification_id == notification_id
            )
        )
    if status not in UNCHECKED:
        log.info("notification already %s", status, extra={"notification_id": notification_id})
        return
    try:
        try:
            event = svc.credly.get_event(notification_id)
        except NotFound as exc:
            _close(svc, item, "forged", f"Credly does not know this event: {exc}")
            log.warning("forged Credly notification", extra={"notification_id": notification_id})
            return
        organization = event.get("organization_id")
        if organization is not None and str(organization) != expected_organization(svc.settings):
            _close(svc, item, "refused", f"the event is another organisation's: {organization}")
            log.warning(
                "Credly event of another organisation refused",
                extra={"notification_id": notification_id, "organization_id": organization},
            )
            return
        _check_event(event)
        reported = _usable("badge", _reported(svc, event))
        now = _now_in_credly(svc, event, reported) or _superseding(svc, event, reported)
        _apply(svc, item, event, reported, _usable("current badge", now))
    except Unusable as exc:
        _close(svc, item, "refused", f"the event cannot be stored: {exc}")
        log.warning("unusable Credly event refused: %s", exc)
    except BadgeNotRecordedYet as exc:
        if item.attempts < MAX_ATTEMPTS:  # this kind's retries: the default policy
            _note_error(svc, notification_id, exc)
            raise
        # e.g. a badge made by an attempt whose answer was lost, then replaced or deleted: the
        # job that retried the issue recorded another badge, or none
        _close(svc, item, "ignored", f"{exc} after {item.attempts} attempts: no job recorded it")
    except CredlyError as exc:
        _note_error(svc, notification_id, exc)
        raise


def _reported(svc: Services, event: dict[str, Any]) -> CredlyBadge | None:
    """The event's badge. Credly publishes no example of an event's body, so it is read
    defensively: a badge object with its state as given; a badge named by its id alone (`badge`
    as an id or an object without a state, or `badge_id`) is read from Credly for its state
    now (a 404: deleted)."""
    given = event.get("badge")
    if isinstance(given, dict) and given.get("id") and given.get("state"):
        return CredlyBadge.from_json(given)
    badge_id = (given.get("id") if isinstance(given, dict) else given) or event.get("badge_id")
    if not isinstance(badge_id, str | int) or isinstance(badge_id, bool) or not str(badge_id):
        return None
    _check_length("badge.id", str(badge_id), BADGE_LIMITS["id"])  # not looked up in Credly
    try:
        return svc.credly.get_badge(str(badge_id))
    except NotFound:
        return deleted(str(badge_id))


def _check_event(event: dict[str, Any]) -> None:
    """Raise Unusable when the event holds a value the database cannot store (anywhere, as it is
    kept whole) or an event type that is not a string it stores."""
    where = _unstorable_text(event, "event")
    if where is not None:
        raise Unusable(f"{where} holds a value the database cannot store")
    event_type = event.get("event_type")
    if event_type is not None and not isinstance(event_type, str):
        raise Unusable("event_type is not a string")
    _check_length("event_type", event_type or "", EVENT_TYPE_LIMIT)


def _usable(label: str, badge: CredlyBadge | None) -> CredlyBadge | None:
    """`badge`: the event's ("badge") or what Credly holds in its place now ("current badge");
    Unusable, naming the field, when a value the gateway stores of it is longer than its column
    or holds a character the database cannot store."""
    if badge is not None:
        for name, limit in BADGE_LIMITS.items():
            value = getattr(badge, name)
            if isinstance(value, str):
                _check_length(f"{label}.{name}", value, limit)
                if not _storable(value):
                    raise Unusable(f"{label}.{name} holds a character the database cannot store")
    return badge


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise Unusable(f"{field} is {len(value)} characters long; at most {limit} are stored")


def _unstorable_text(value: object, path: str) -> str | None:
    """Where in the JSON `value` (at `path`) a string, key or value at any depth, holds a
    character the database cannot store (NUL, a lone surrogate), or a number is not finite (JSON
    has no NaN); None when nothing is."""
    stack: list[tuple[str, object]] = [(path, value)]
    while stack:
        at, current = stack.pop()
        if isinstance(current, str) and not _storable(current):
            return at
        if isinstance(current, float) and not math.isfinite(current):
            return at
        if isinstance(current, dict):
            stack.extend((at, key) for key in current)
            stack.extend((f"{at}.{key}", inner) for key, inner in current.items())
        elif isinstance(current, list):
            stack.extend((f"{at}[{n}]", inner) for n, inner in enumerate(current))
    return None


def _storable(text: str) -> bool:
    """Whether the database can store `text`: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _now_in_credly(
    svc: Services, event: dict[str, Any], reported: CredlyBadge | None
) -> CredlyBadge | None:
    """What Credly holds now in place of the event's badge, when the event ended it: a replaced
    badge's latest successor (one deleted since: `deleted`); for `badge.deleted`, the badge read
    again (None: it is gone)."""
    if reported is None:
        return None
    if event.get("event_type") == BADGE_DELETED:
        if reported.state == DELETED:
            return None
        try:
            return svc.credly.get_badge(reported.id)
        except NotFound:
            return None
    if reported.state != REPLACED:
        return None
    try:
        return latest(svc, reported)
    except NotFound:
        return deleted(reported.id)


def _superseding(
    svc: Services, event: dict[str, Any], reported: CredlyBadge | None
) -> CredlyBadge | None:
    """For a state change of a badge that no row records while its certification's row records
    another (a late notification about a predecessor, say): the badge that replaced it, when
    Credly says it was replaced (docs/credly.md, "Replacing"), followed to the last one; else
    None. A badge whose issue job has not recorded it yet costs Credly no call."""
    if event.get("event_type") != BADGE_STATE_CHANGED or reported is None:
        return None
    if reported.state not in NOTIFIED_STATES or not reported.issuer_earner_id:
        return None
    with svc.db.sessions() as session:
        recorded = set(
            session.scalars(
                select(Badge.credly_badge_id).where(
                    Badge.certification_id == reported.issuer_earner_id,
                    Badge.credly_badge_id.is_not(None),
                )
            )
        )
    if not recorded or reported.id in recorded:
        return None
    try:
        current = svc.credly.get_badge(reported.id)
        return latest(svc, current) if current.state == REPLACED else None
    except NotFound:
        return None


def _apply(
    svc: Services,
    item: ClaimedItem,
    event: dict[str, Any],
    reported: CredlyBadge | None,
    now: CredlyBadge | None,
) -> None:
    """Record the fetched event, Credly's own type and time, what it changed, and the item done."""
    with svc.db.transaction() as session:
        row = _notification(session, item.payload["notification_id"])
        row.event = event
        row.event_type = str(event.get("event_type") or row.event_type)
        row.occurred_at = parse_credly_datetime(event.get("occurred_at")) or row.occurred_at
        if row.event_type not in (BADGE_DELETED, BADGE_STATE_CHANGED):
            status, result = "ignored", f"{row.event_type} events are not acted on"
        elif reported is None:
            status, result = "ignored", "the event names no badge"
        else:
            row.credly_badge_id = reported.id
            status, result = _badge_event(svc, session, row, reported, now)
        row.status, row.result, row.last_error, row.processed_at = status, result, None, clock.now()
        item.finish(svc.db, session.connection())
    log.info("Credly notification %s: %s", status, result)


def _ours(session: Session, reported: CredlyBadge, now: CredlyBadge | None) -> Badge | None:
    """Our badge with the reported Credly id, or with that of its successor `now` (a replace
    this gateway made), locked; the successor's first (a badge moved to another period by its
    replace leaves the first period's row recording it replaced). BadgeNotRecordedYet when it is
    one of our certifications' whose issue job has not recorded it yet.

    Every badge row of the certifications recording either id is locked, in id order, and read
    as it is once locked: an issue job recording a take-over (the successor on the new period's
    row, the first row replaced) in a transaction under way is waited for and seen whole. Rows
    chosen by their Credly ids alone would be those the statement's snapshot shows, the first
    row without the new period's, which it would move to the successor."""
    ids = [reported.id] + ([now.id] if now is not None and now.id != reported.id else [])
    certifications = session.scalars(
        select(Badge.certification_id).where(Badge.credly_badge_id.in_(ids)).distinct()
    ).all()
    rows = session.scalars(
        select(Badge)
        .where(Badge.certification_id.in_(certifications))
        .order_by(Badge.id)
        .with_for_update()
    ).all()
    found = [row for row in rows if row.credly_badge_id in ids]
    badge = min(found, key=lambda row: row.credly_badge_id != ids[-1], default=None)
    earner = reported.issuer_earner_id
    if badge is None and earner and session.get(Certification, earner) is not None:
        raise BadgeNotRecordedYet(f"badge {reported.id} of {earner} is not recorded yet")
    return badge


def _badge_event(
    svc: Services,
    session: Session,
    row: CredlyNotification,
    reported: CredlyBadge,
    now: CredlyBadge | None,
) -> Outcome:
    """Apply a badge event to our badge: `now` is what Credly holds in its place (a replaced
    badge's successor; for `badge.deleted`, the badge if Credly still has it). A successor that
    names the member otherwise (replaced by hand in Credly's UI) gets a replace job, which
    brings it up to the member's details."""
    earner_deleted = row.event_type == BADGE_DELETED
    if earner_deleted and now is not None:
        return "ignored", f"badge {reported.id} is still in Credly ({now.state})"
    if not earner_deleted and reported.state not in NOTIFIED_STATES:
        return "ignored", f"badge {reported.id} became {reported.state}: nothing to show"
    badge = _ours(session, reported, now)
    if badge is None:
        return "ignored", f"badge {reported.id} was not issued by this gateway"
    if not earner_deleted and reported.state != REPLACED and now is not None:
        return "ignored", f"superseded: badge {reported.id} was replaced by {now.id} since"
    if earner_deleted or (now is not None and now.state == DELETED):
        before = badge.state
        badge.state, badge.state_changed_at = DELETED, row.occurred_at
        gone = "" if earner_deleted else ", and its successor"
        return "processed", f"badge {reported.id}{gone}: {before} -> deleted by its earner"
    if now is not None:  # replaced (in Credly's UI, or by us): its successor is the badge now
        if (badge.credly_badge_id, badge.state) == (now.id, now.state):
            return "processed", f"badge {reported.id} was replaced by {now.id}, as recorded"
        badge.credly_badge_id, badge.state = now.id, now.state
        badge.recipient_email = now.recipient_email or badge.recipient_email
        badge.issued_at = now.issued_at or badge.issued_at
        badge.state_changed_at = row.occurred_at
        result = f"badge {reported.id} replaced by {now.id} ({now.state})"
        connection = session.connection()
        if now.live() and named_otherwise(
            svc, badge.certification_id, badge.period_start, now, connection
        ):
            item = OutboxItem(
                certification_id=badge.certification_id,
                kind=kinds.REPLACE_BADGE,
                payload={"period_start": badge.period_start.isoformat()},
            )
            session.add(item)
            session.flush()
            wake_after_commit([item.id])
            result += ", which names the member otherwise: replaced again"
        return "processed", result
    if badge.state == reported.state:
        return "processed", f"badge {reported.id} was already {reported.state}"
    if badge.state not in MOVABLE_STATES:
        return "ignored", f"badge {reported.id} is {badge.state} here and stays so"
    if _later_one_applied(session, row):
        return "ignored", f"a later notification about badge {reported.id} was applied"
    before = badge.state
    badge.state, badge.state_changed_at = reported.state, row.occurred_at
    return "processed", f"badge {reported.id}: {before} -> {reported.state}"


def _later_one_applied(session: Session, row: CredlyNotification) -> bool:
    """True when a notification that happened later moved the same badge already."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    CredlyNotification.credly_badge_id == row.credly_badge_id,
                    CredlyNotification.status == "processed",
                    CredlyNotification.occurred_at > row.occurred_at,
                )
            )
        )
    )


def _notification(session: Session, notification_id: str) -> CredlyNotification:
    return session.scalars(
        select(CredlyNotification)
        .where(CredlyNotification.notification_id == notification_id)
        .with_for_update()
    ).one()


def _close(svc: Services, item: ClaimedItem, status: str, result: str) -> None:
    with svc.db.transaction() as session:
        row = _notification(session, item.payload["notification_id"])
        row.status, row.result, row.last_error, row.processed_at = status, result, None, clock.now()
        item.finish(svc.db, session.connection())


def given_up(svc: Services, connection: Connection, item: ClaimedItem, reason: str) -> None:
    """Record the notification whose check failed for good (Credly refused to read the event,
    or the job is out of retries) `failed`, with why, in the transaction that fails the job: it
    is finished, and a new delivery of its id, or the job requeued, checks it again."""
    params = {
        "of_notification": item.payload["notification_id"],
        "reason": reason,
        "now": clock.now(),
    }
    svc.db.execute(connection, CHECK_FAILED, params)


def _note_error(svc: Services, notification_id: str, exc: CredlyError) -> None:
    with svc.db.transaction() as session:
        row = _notification(session, notification_id)
        row.last_error = describe(exc)
