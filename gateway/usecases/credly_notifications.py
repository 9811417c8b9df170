"""Credly webhooks in: record a notification and the job that checks it, in ONE transaction.

Nothing in a notification is believed here: Credly does not sign them. The job
(`jobs.credly_notifications.process`) fetches the event from Credly with the gateway's own
credentials first,
so a notification is a duplicate only of one Credly confirmed (or whose check is under way).
Each new check draws on an allowance the web layer keeps: the shared CREDLY_WEBHOOK_CHECKS, or,
for an address whose notification a check found forged within CAUGHT_FOR, an allowance of its own
(CREDLY_WEBHOOK_FORGED_CHECKS), so that one source cannot use up the genuine notifications' checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.rules import kinds
from gateway.schemas.webhooks import CredlyEnvelope, load_credly_envelope
from gateway.store.db import wake_after_commit
from gateway.store.models import CredlyNotification, OutboxItem
from gateway.usecases.services import Services

log = logging.getLogger("gateway.webhooks")

DRY_RUN_ORGANIZATION = "dry-run"


@dataclass(frozen=True)
class Receipt:
    """What became of one delivery: the notification's status."""

    notification_id: str
    status: str
    duplicate: bool


def expected_organization(settings: Settings) -> str:
    """The organisation whose notifications the gateway accepts ("dry-run" on the dry run)."""
    return settings.credly_organization_id or DRY_RUN_ORGANIZATION


class OverBound(Exception):
    """More notifications than CREDLY_WEBHOOK_CHECKS may be checked with Credly now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


#: What a delivery of a notification in these states does: nothing Credly confirmed, so a new
#: delivery of the same id is checked again (a forged, refused or failed one never blocks the
#: genuine one).
UNCONFIRMED = ("refused", "forged", "failed")
#: How long an address stays caught after a check found one of its notifications forged.
CAUGHT_FOR = timedelta(hours=1)


class Refusal(Enum):
    """What an address's allowance of refused notifications (CREDLY_WEBHOOK_REFUSED) says of one
    more: keep it (recorded once, logged), or drop it (neither), noting the first dropped one of
    its window in the log."""

    KEEP = "keep"
    DROP = "drop"
    DROP_NOTED = "drop_noted"


@dataclass(frozen=True)
class Sender:
    """The client address a delivery came from and the allowances the web layer keeps for it.

    `checks(caught)` counts one more check with Credly, None when it may be made, else the
    seconds until one may: against the shared allowance, or the address's own once `caught`.
    `refused()` counts one more notification of another organisation from the address."""

    address: str | None = None
    checks: Callable[[bool], int | None] = lambda caught: None
    refused: Callable[[], Refusal] = lambda: Refusal.KEEP


def receive_notification(
    svc: Services,
    body: object,
    *,
    request_id: str | None = None,
    sender: Sender = Sender(),
) -> Receipt:
    """Record a notification and queue its check, once per Credly event id Credly confirmed;
    raise ShapeError when it is malformed, OverBound when the sender's allowance of checks
    refuses one more."""
    envelope = load_credly_envelope(body)
    try:
        return _record(svc, envelope, request_id, sender)
    except IntegrityError:  # a concurrent delivery of the same id won the insert: answer as it
        return _record(svc, envelope, request_id, sender)


def _record(
    svc: Services, envelope: CredlyEnvelope, request_id: str | None, sender: Sender
) -> Receipt:
    with svc.db.transaction() as session:
        row = session.scalar(
            select(CredlyNotification)
            .where(CredlyNotification.notification_id == envelope.id)
            .with_for_update()
        )
        if row is not None and row.status not in UNCONFIRMED:
            return Receipt(envelope.id, row.status, duplicate=True)
        if envelope.organization_id != expected_organization(svc.settings):
            return _refuse(session, envelope, row, sender)
        wait = sender.checks(_caught(session, sender.address))
        if wait is not None:
            raise OverBound(wait)
        if row is None:
            row = _row(envelope, "received", None, sender.address)
            session.add(row)
        else:  # unconfirmed so far: this delivery is checked with Credly afresh
            row.organization_id, row.event_type = envelope.organization_id, envelope.event_type
            row.occurred_at, row.status, row.result = envelope.occurred_at, "received", None
            row.address = sender.address
        item = OutboxItem(
            kind=kinds.CREDLY_NOTIFICATION,
            certification_id=None,
            payload={"notification_id": envelope.id},
            request_id=request_id,
        )
        session.add(item)
        session.flush()
        wake_after_commit([item.id])
        return Receipt(envelope.id, row.status, duplicate=False)


def _refuse(
    session: Session, envelope: CredlyEnvelope, row: CredlyNotification | None, sender: Sender
) -> Receipt:
    """Another organisation's notification: answered alike, recorded once (to show; it blocks
    nothing) and logged while its address has allowance of refused ones left."""
    refusal = sender.refused()
    if refusal is Refusal.KEEP:
        log.warning(
            "Credly notification of another organisation refused",
            extra={"notification_id": envelope.id, "organization_id": envelope.organization_id},
        )
        if row is None:
            session.add(
                _row(envelope, "refused", "another organisation's notification", sender.address)
            )
    elif refusal is Refusal.DROP_NOTED:
        log.warning(
            "Credly notifications of another organisation from this address are over "
            "CREDLY_WEBHOOK_REFUSED: no longer recorded nor logged in this window",
            extra={"address": sender.address},
        )
    return Receipt(envelope.id, "refused", duplicate=row is not None)


def _caught(session: Session, address: str | None) -> bool:
    """Whether a check found a notification from `address` forged within CAUGHT_FOR."""
    if address is None:
        return False
    return bool(
        session.scalar(
            select(
                exists().where(
                    CredlyNotification.address == address,
                    CredlyNotification.status == "forged",
                    CredlyNotification.processed_at >= clock.now() - CAUGHT_FOR,
                )
            )
        )
    )


def _row(
    envelope: CredlyEnvelope, status: str, result: str | None, address: str | None
) -> CredlyNotification:
    return CredlyNotification(
        notification_id=envelope.id,
        organization_id=envelope.organization_id,
        event_type=envelope.event_type,
        occurred_at=envelope.occurred_at,
        status=status,
        result=result,
        address=address,
    )
