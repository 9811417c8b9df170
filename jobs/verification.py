"""The sync job: write a certification's public verification record from its stored standing.

A change of what the record shows fans out to the delivery targets (`jobs.deliveries`) in the same
transaction; their jobs are dispatched after the commit.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, select

from gateway.services import Services
from gateway.store.models import Certification, VerificationRecord, utcnow
from jobs import deliveries
from jobs.claim import ClaimedItem

#: Built once: the certification locked, its record in the same query.
_CERTIFICATION_AND_RECORD = (
    select(Certification, VerificationRecord)
    .outerjoin(
        VerificationRecord,
        VerificationRecord.certification_id == Certification.certification_id,
    )
    .where(Certification.certification_id == bindparam("certification_id"))
    .with_for_update(of=Certification)
)


def sync(svc: Services, item: ClaimedItem) -> None:
    """Bring the public record in step with the certification's current stored standing."""
    with svc.db.transaction() as session:
        cert, record = session.execute(
            _CERTIFICATION_AND_RECORD, {"certification_id": item.certification_id}
        ).one()
        standing = cert.standing
        member = standing["member"]
        credential = svc.policy.credentials.get(cert.credential)
        before = deliveries.public_content(record)
        if record is None:
            record = VerificationRecord(certification_id=cert.certification_id)
            session.add(record)
        record.name = f"{member['first_name']} {member['last_name']}"
        record.credential = cert.credential
        record.credential_name = credential.name if credential else cert.credential
        record.status = cert.status
        record.certified_since = date.fromisoformat(standing["certified_on"])
        paid_through = standing["fees"]["paid_through"]
        record.valid_through = (
            date.fromisoformat(paid_through) if cert.status == "active" and paid_through else None
        )
        record.synced_at = utcnow()
        fanned = deliveries.fan_out(svc, session, record, before, request_id=item.request_id)
        outbox_ids = [queued.id for queued in fanned]
        item.finish(session.connection())
    if outbox_ids and svc.dispatcher is not None:  # else the relay wakes a worker for them
        svc.dispatcher.dispatch(outbox_ids)
