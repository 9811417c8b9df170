"""Credly webhooks in: record a notification and the job that checks it, in ONE transaction.

Nothing in a notification is believed here: Credly does not sign them. The job
(`jobs.webhooks.process`) fetches the event from Credly with the gateway's own credentials first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.config import Settings
from gateway.schemas.webhooks import CredlyEnvelope, load_credly_envelope
from gateway.services import Services
from gateway.store.db import wake_after_commit
from gateway.store.models import CredlyNotification, OutboxItem

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


def receive_notification(svc: Services, body: object, *, request_id: str | None = None) -> Receipt:
    """Record a notification once per Credly event id; raise ShapeError when it is malformed."""
    envelope = load_credly_envelope(body)
    try:
        return _record(svc, envelope, request_id)
    except IntegrityError:  # a concurrent delivery of the same id won the insert: answer as it
        return _record(svc, envelope, request_id)


def _record(svc: Services, envelope: CredlyEnvelope, request_id: str | None) -> Receipt:
    with svc.db.transaction() as session:
        known = session.scalar(
            select(CredlyNotification).where(CredlyNotification.notification_id == envelope.id)
        )
        if known is not None:
            return Receipt(envelope.id, known.status, duplicate=True)
        refused = envelope.organization_id != expected_organization(svc.settings)
        row = CredlyNotification(
            notification_id=envelope.id,
            organization_id=envelope.organization_id,
            event_type=envelope.event_type,
            occurred_at=envelope.occurred_at,
            status="refused" if refused else "received",
            result="another organisation's notification" if refused else None,
        )
        session.add(row)
        if refused:
            log.warning(
                "Credly notification of another organisation refused",
                extra={"notification_id": envelope.id, "organization_id": envelope.organization_id},
            )
            return Receipt(envelope.id, row.status, duplicate=False)
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
