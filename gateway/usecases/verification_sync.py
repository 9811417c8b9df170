"""Syncing a certification's public verification record with its stored standing, and its Open
Badges credentials' status bits (`gateway.usecases.status_lists`) with the same status.

A change of what the record shows fans out to the delivery targets in the same transaction
(`gateway.usecases.deliveries`); the workers are woken for their jobs after the commit.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, bindparam, insert, select, update

from gateway.platform import clock
from gateway.schemas.verifications import RECORD_FIELDS
from gateway.store.models import Certification, UTCDateTime, VerificationRecord
from gateway.usecases import deliveries, lookup, status_lists
from gateway.usecases.services import Services

# Built once (building a statement costs about what running it does).
_RECORD_COLUMNS = [getattr(VerificationRecord, name) for name in RECORD_FIELDS]

#: The certification, locked: a sync waits for another sync of it to commit.
_CERTIFICATION = (
    select(Certification.credential, Certification.status, Certification.standing)
    .where(Certification.certification_id == bindparam("certification_id"))
    .with_for_update()
)
#: What its record shows, read once the lock is held, by a statement of its own: in PostgreSQL's
#: READ COMMITTED, a joined row read by the locking statement would be the one from before the
#: wait, not what the sync that held the lock wrote.
_RECORD = select(VerificationRecord.certification_id, *_RECORD_COLUMNS).where(
    VerificationRecord.certification_id == bindparam("certification_id")
)

_VALUES = {name: bindparam(name) for name in RECORD_FIELDS}
_VALUES["synced_at"] = bindparam("synced_at", type_=UTCDateTime())
_CREATE = insert(VerificationRecord).values(
    certification_id=bindparam("certification_id"), **_VALUES
)
_UPDATE = (
    update(VerificationRecord)
    .where(VerificationRecord.certification_id == bindparam("record_of"))
    .values(**_VALUES)
)


def sync(
    svc: Services,
    certification_id: str,
    finish: Callable[[Connection], None],
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
) -> None:
    """Bring the public record in step with the certification's current stored standing;
    `finish` records the job done, last, in the same transaction. The deliveries it queues are
    jobs of the event `event_pk`, the one whose sync this is (None: no one event's)."""
    key = {"certification_id": certification_id}
    with svc.db.begin() as connection:
        [(credential, status, standing)] = svc.db.execute(connection, _CERTIFICATION, key)
        record = svc.db.execute(connection, _RECORD, key)
        recorded = bool(record)
        before = dict(zip(RECORD_FIELDS, record[0][1:], strict=True)) if recorded else None
        after = lookup.public_record(svc.policy, credential, status, standing)
        values = {**after, "synced_at": clock.now()}
        if recorded:
            svc.db.execute(connection, _UPDATE, {**values, "record_of": certification_id})
        else:
            svc.db.execute(connection, _CREATE, {**values, **key})
        # The Open Badges credentials' status bits change with the record, in one transaction.
        status_lists.follow_standing(connection, certification_id, standing)
        deliveries.fan_out(
            svc,
            connection,
            certification_id,
            before,
            after,
            request_id=request_id,
            event_pk=event_pk,
        )
        finish(connection)
