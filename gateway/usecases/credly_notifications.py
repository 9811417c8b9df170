"""Credly webhooks in: record a notification and the job that checks it, in ONE transaction.

Nothing in a notification is believed here: Credly does not sign them. The job
(`jobs.credly_notifications.process`) fetches the event from Credly with the gateway's own
credentials first,
so a notification is a duplicate only of one Credly confirmed (or whose check is under way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.platform.config import Settings
from gateway.schemas.webhooks import CredlyEnvelope, load_credly_envelope
from gateway.store.db import wake_after_commit
from gateway.store.models import CredlyNotification, OutboxItem
from gateway.usecases.services import Services

log = logging.getLogger("gateway.webhooks")

KIND = "credly_notification"
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
#: delivery of the same id is checked again (a forged or refused one never blocks the genuine one).
UNCONFIRMED = ("refused", "forged")


def receive_notification(
    svc: Services,
    body: object,
    *,
    request_id: str | None = None,
    admit: Callable[[], int | None] = lambda: None,
) -> Receipt:
    """Record a notification and queue its check, once per Credly event id Credly confirmed;
    raise ShapeError when it is malformed, OverBound when `admit()` (None, or seconds to wait)
    refuses one more check."""
    envelope = load_credly_envelope(body)
    try:
        return _record(svc, envelope, request_id, admit)
    except IntegrityError:  # a concurrent delivery of the same id won the insert: answer as it
        return _record(svc, envelope, request_id, admit)


def _record(
    svc: Services,
    envelope: CredlyEnvelope,
    request_id: str | None,
    admit: Callable[[], int | None],
) -> Receipt:
    with svc.db.transaction() as session:
        row = session.scalar(
            select(CredlyNotification)
            .where(CredlyNotification.notification_id == envelope.id)
            .with_for_update()
        )
        if row is not None and row.status not in UNCONFIRMED:
            return Receipt(envelope.id, row.status, duplicate=True)
        refused = envelope.organization_id != expected_organization(svc.settings)
        if refused:
            log.warning(
                "Credly notification of another organisation refused",
                extra={"notification_id": envelope.id, "organization_id": envelope.organization_id},
            )
            if row is None:  # kept once, to show; it blocks nothing
                session.add(_row(envelope, "refused", "another organisation's notification"))
            return Receipt(envelope.id, "refused", duplicate=row is not None)
        wait = admit()
        if wait is not None:
            raise OverBound(wait)
        if row is None:
            row = _row(envelope, "received", None)
            session.add(row)
        else:  # unconfirmed so far: this delivery is checked with Credly afresh
            row.organization_id, row.event_type = envelope.organization_id, envelope.event_type
            row.occurred_at, row.status, row.result = envelope.occurred_at, "received", None
        item = OutboxItem(
            kind=KIND,
            certification_id=None,
            payload={"notification_id": envelope.id},
            request_id=request_id,
        )
        session.add(item)
        session.flush()
        wake_after_commit([item.id])
        return Receipt(envelope.id, row.status, duplicate=False)


def _row(envelope: CredlyEnvelope, status: str, result: str | None) -> CredlyNotification:
    return CredlyNotification(
        notification_id=envelope.id,
        organization_id=envelope.organization_id,
        event_type=envelope.event_type,
        occurred_at=envelope.occurred_at,
        status=status,
        result=result,
    )
