"""Delivery jobs: push changed public records to the directory and to employers' webhooks, in order.

A delivery is chosen and queued by `gateway.usecases.deliveries` (one per target, numbered in the
target's own sequence). It sends the certification's *newest* public record at each attempt, so:

- deliveries of one target and certification never overlap (a lease taken before sending), and
- a delivery older than one already delivered is superseded instead of sent,

hence a receiver never sees a later status overtaken by an earlier one. That record may already
show changes queued after the delivery's own (or recorded, not yet synced); so that each change
reaches a receiver once:

- a delivered one supersedes the open deliveries of the changes it shows (those queued when it
  was claimed),
- a subscription is not sent the status its latest message delivered (superseded instead), and
- an attempt carrying another record than its delivery's previous attempt is a new message (a
  new id: a receiver that took the previous one unbeknown to us would drop a retry of it unread).

Advance notices of a scheduled status change (`gateway.usecases.notices`) travel the same way, with
the body fixed when they are queued; only a later message of the same family (status, or notice)
supersedes one. Transient failures are retried with back-off for up to
DELIVERY_RETRY_WINDOW_SECONDS (a day by default).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.errors import PermanentError, TransientError
from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.schemas.verifications import RECORD_FIELDS, VerificationSchema
from gateway.store.models import Delivery, Subscription, WatchedCertification
from gateway.usecases import lookup
from gateway.usecases.deliveries import DIRECTORY, EVENT_TYPE, new_message_id
from gateway.usecases.services import Services
from jobs.engine.claim import ClaimedItem
from jobs.engine.retry import Deferred, RetryPolicy, within

log = logging.getLogger("jobs.deliveries")

#: The longest wait between two attempts of a delivery.
CAP_SECONDS = 3 * 3600
#: States after which a delivery is never sent again ("failed" ones may be requeued).
SETTLED = ("delivered", "superseded", "cancelled")
#: States of deliveries a later delivered one makes pointless.
OPEN = ("pending", "retrying")

_public = VerificationSchema()
#: What a record shows; a change of any of these is pushed (the id and time of check are not).
PUBLIC_FIELDS = RECORD_FIELDS

Send = Callable[[Services, "Claim", dict[str, Any]], int]


class DeliveryBusy(Deferred):
    """Another delivery of the same target and certification goes first; try again soon (the
    attempt does not count)."""


def retry_policy(settings: Settings) -> RetryPolicy:
    """Back-off from DELIVERY_RETRY_BASE_SECONDS for as long as the retry window allows."""
    return within(
        settings.delivery_retry_window_seconds, settings.delivery_retry_base_seconds, CAP_SECONDS
    )


@dataclass(frozen=True)
class Claim:
    """A delivery its job may now send: nothing else sends to its target for its certification.

    `data`: an advance notice's body, or the record the last attempt of a status message carried.
    `covers`: the target's other open status messages of the certification, whose changes the
    record read after the claim shows. `held`: the record the subscription's latest message of the
    certification delivered, when that latest attempt was answered 2xx. `tried_at`: when the
    delivery was last tried before this claim.
    """

    delivery_id: int
    target: str
    certification_id: str
    sequence: int
    event_id: str
    created_at: datetime
    event_type: str = EVENT_TYPE
    data: dict[str, Any] | None = None
    url: str | None = None
    secret: str | None = None
    covers: tuple[int, ...] = ()
    held: dict[str, Any] | None = None
    tried_at: datetime | None = None


def deliver_webhook(svc: Services, item: ClaimedItem) -> None:
    """Outbox handler: POST the signed `certification.status_changed` event to a subscription."""
    _deliver(svc, item, _post_webhook)


def push_directory(svc: Services, item: ClaimedItem) -> None:
    """Outbox handler: PUT the public record to the verification directory."""
    _deliver(svc, item, _put_directory)


def _post_webhook(svc: Services, claim: Claim, record: dict[str, Any]) -> int:
    event = {
        "type": claim.event_type,
        "timestamp": claim.created_at.isoformat(),
        "subscription_id": claim.target,
        "sequence": claim.sequence,
        "data": record,
    }
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    return svc.webhooks.send(claim.url, claim.secret, claim.event_id, body)


def _put_directory(svc: Services, claim: Claim, record: dict[str, Any]) -> int:
    return svc.directory.put_record(claim.certification_id, record)


def _deliver(svc: Services, item: ClaimedItem, send: Send) -> None:
    claim = _claim(svc, item.payload["delivery_id"])
    if claim is None:
        return
    record = None
    try:
        if _family(claim.event_type):
            record = _record(svc, claim.certification_id)
            if claim.held is not None and claim.held["status"] == record["status"]:
                _settle(svc, claim, "superseded", None, item)  # its latest message says so
                return
            claim = _renew(svc, claim, record)
        else:
            record = claim.data
        status = send(svc, claim, record)
    except (TransientError, PermanentError) as exc:
        gave_up = isinstance(exc, PermanentError) or (
            item.attempts >= retry_policy(svc.settings).max_attempts
        )
        _settle(svc, claim, "failed" if gave_up else "retrying", exc, record=record)
        raise
    _settle(svc, claim, "delivered", status, item, record)


def _record(svc: Services, certification_id: str) -> dict[str, Any]:
    """The newest public record of a certification, as the lookup shows it."""
    [found] = lookup.records_today(svc.db, svc.policy, [certification_id])
    if found is None:
        raise PermanentError(f"no public record of {certification_id}")
    return _public.dump(found)


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    """What a record shows (not when it was checked)."""
    return {name: record.get(name) for name in PUBLIC_FIELDS}


def _renew(svc: Services, claim: Claim, record: dict[str, Any]) -> Claim:
    """The claim with a new message id when `record` is not what its last attempt carried: a
    receiver that took that attempt (answering late, say) would drop this one by its id."""
    if claim.data is None or _shown(claim.data) == _shown(record):
        return claim
    event_id = new_message_id()
    with svc.db.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == claim.delivery_id)
            .values(event_id=event_id, data=record)
        )
    log.info("delivery %s carries a new record as %s", claim.event_id, event_id)
    return replace(claim, event_id=event_id, data=record)


def _family(event_type: str) -> bool:
    """Whether messages of `event_type` carry the public record (else: advance notices)."""
    return event_type == EVENT_TYPE


def _lease(settings: Settings) -> timedelta:
    """Long enough for the slowest send: a token fetch and a request, twice, each timing out."""
    return timedelta(seconds=4 * (4 + settings.delivery_timeout_seconds))


def _lock_pair(session: Session, delivery_id: int) -> list[Delivery]:
    """Every delivery of the target and certification of `delivery_id` (none when it no longer
    exists), locked in id order.

    Every transaction that locks deliveries of a pair takes them in id order, so that none holds
    a row another waits for while it waits for one that other holds (a deadlock): a claim and a
    settling lock all of the pair's rows here, first, in one statement (the later one waits for
    the pair's first row, holding none); `_renew` changes only its own row; the housekeeping's
    deletes lock in id order too (`delete_in_chunks`); the fan-out only adds rows."""
    pair = (
        select(Delivery.target, Delivery.certification_id)
        .where(Delivery.id == delivery_id)
        .subquery()
    )
    return list(
        session.scalars(
            select(Delivery)
            .join(
                pair,
                (Delivery.target == pair.c.target)
                & (Delivery.certification_id == pair.c.certification_id),
            )
            .order_by(Delivery.id)
            .with_for_update(of=Delivery)
        )
    )


def _claim(svc: Services, delivery_id: int) -> Claim | None:
    """Take the lease of a delivery; None when it is no longer to be sent (and say why)."""
    now = clock.now()
    with svc.db.transaction() as session:
        rows = _lock_pair(session, delivery_id)
        mine = next((row for row in rows if row.id == delivery_id), None)
        if mine is None:  # the housekeeping pruned it (a failed job requeued since)
            log.info("delivery %s no longer exists", delivery_id)
            return None
        target, certification_id = mine.target, mine.certification_id
        if mine.state in SETTLED:
            return None
        subscription = None if target == DIRECTORY else session.get(Subscription, target)
        gone = (
            svc.directory is None
            if target == DIRECTORY
            else subscription is None or subscription.deleted_at is not None
        )
        if gone:
            _close(mine, "cancelled", now, f"{target} takes no deliveries any more")
            return None
        if subscription is not None and not session.get(
            WatchedCertification, (target, certification_id)
        ):
            _close(mine, "cancelled", now, f"{target} no longer watches {certification_id}")
            return None
        if any(
            row.state == "delivered"
            and row.sequence > mine.sequence
            and _family(row.event_type) == _family(mine.event_type)
            for row in rows
        ):
            _close(mine, "superseded", now, None)
            return None
        leases = [
            row.lease_until
            for row in rows
            if row is not mine and row.state == "sending" and (row.lease_until or now) > now
        ]
        if leases:  # a send ends within the sender's longest attempt, well before its lease
            wait = min((max(leases) - now).total_seconds(), svc.webhooks.longest_attempt)
            raise DeliveryBusy(f"another delivery to {target} is being sent", retry_after=wait)
        recent = now - _lease(svc.settings)  # an older one never tried holds nothing up
        if any(
            row.sequence < mine.sequence and row.state == "pending" and row.created_at > recent
            for row in rows
        ):
            # an earlier message not yet tried (queued with this one) goes first: in sequence
            raise DeliveryBusy(f"an earlier delivery to {target} goes first", retry_after=1)
        # Decided under the locks of the pair's rows, acted on under the lease taken below: no
        # other delivery of the pair is sent, so what the receiver holds stays as read, until
        # this one settles. The record is read once this commits: it shows the changes of the
        # open deliveries read here.
        covers, held = (), None
        if _family(mine.event_type):
            covers = tuple(
                row.id
                for row in rows
                if row is not mine and row.state in OPEN and _family(row.event_type)
            )
            tried = [row for row in rows if row.last_attempt_at and _family(row.event_type)]
            latest = max(tried, key=lambda row: row.last_attempt_at, default=None)
            if subscription is not None and latest is not None and latest.state == "delivered":
                held = latest.data  # what the receiver holds, as its latest attempt took it
        tried_at = mine.last_attempt_at
        mine.state, mine.lease_until = "sending", now + _lease(svc.settings)
        mine.attempts, mine.last_attempt_at = mine.attempts + 1, now
        return Claim(
            delivery_id=mine.id,
            target=target,
            certification_id=certification_id,
            sequence=mine.sequence,
            event_id=mine.event_id,
            created_at=mine.created_at,
            event_type=mine.event_type,
            data=mine.data,
            url=subscription.url if subscription else None,
            secret=subscription.secret if subscription else None,
            covers=covers,
            held=held,
            tried_at=tried_at,
        )


def _close(delivery: Delivery, state: str, now: datetime, reason: str | None) -> None:
    delivery.state, delivery.finished_at, delivery.lease_until = state, now, None
    if reason:
        delivery.last_error = reason
    log.info("delivery %s %s", delivery.event_id, state, extra={"reason": reason})


def _describe(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    return f"{exc}: {body}" if body else str(exc)


def _settle(
    svc: Services,
    claim: Claim,
    state: str,
    outcome: int | Exception | None,
    item: ClaimedItem | None = None,
    record: dict[str, Any] | None = None,
) -> None:
    """Record how an attempt ended and the status message's `record` it carried.

    Once the receiver holds the newest record (delivered, or superseded because its latest message
    carried that status), the open deliveries it makes pointless are superseded: the older ones
    of the family and those the claim covers. With `item`, the outbox item is recorded done in the
    same transaction. The pair's rows are locked as a claim locks them (`_lock_pair`), so that no
    claim, settling or housekeeping delete deadlocks with it: a settling that was a deadlock's
    victim after a 2xx would have its job's retry send the message again.
    """
    now = clock.now()
    with svc.db.transaction() as session:
        rows = _lock_pair(session, claim.delivery_id)
        [mine] = [row for row in rows if row.id == claim.delivery_id]
        mine.state, mine.lease_until = state, None
        if isinstance(outcome, Exception):
            mine.status_code, mine.last_error = getattr(outcome, "status", None), _describe(outcome)
        elif outcome is not None:
            mine.status_code, mine.last_error = outcome, None
        if record is not None and _family(mine.event_type):
            mine.data = record
        if state != "retrying":
            mine.finished_at = now
        if state == "superseded":  # nothing was sent: the claim was no attempt
            mine.attempts, mine.last_attempt_at = mine.attempts - 1, claim.tried_at
            log.info("delivery %s superseded: its receiver holds that status", mine.event_id)
        if state in ("delivered", "superseded"):
            for row in rows:
                if (
                    (row.sequence < mine.sequence or row.id in claim.covers)
                    and row.state in OPEN
                    and _family(row.event_type) == _family(mine.event_type)
                ):
                    row.state, row.finished_at = "superseded", now
        if item is not None:
            item.finish(svc.db, session.connection())
