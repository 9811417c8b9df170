"""The backfill: queue a delivery of every current public record to one target, resumably.

The target is `directory` (every record) or a subscription id (the records it watches). Batches go
in certification-id order; each batch's deliveries and the last id queued are committed together in
the target's row, so an interrupted run resumes right after the last batch it committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gateway.platform import clock
from gateway.store.models import Subscription, VerificationRecord, WatchedCertification
from gateway.usecases.deliveries import DIRECTORY, lock_target, queue
from gateway.usecases.services import Services


class UnknownTarget(ValueError):
    """Not `directory` (when configured) nor the id of a live subscription."""


@dataclass(frozen=True)
class Plan:
    """Where a backfill of `target` starts and how many records it has left to queue."""

    target: str
    resumes_after: str | None
    remaining: int


def _ids(target: str, after: str | None) -> Select:
    """The certification ids of `target`'s records after `after`, in order."""
    if target == DIRECTORY:
        query = select(VerificationRecord.certification_id)
    else:
        query = (
            select(WatchedCertification.certification_id)
            .join(
                VerificationRecord,
                VerificationRecord.certification_id == WatchedCertification.certification_id,
            )
            .where(WatchedCertification.subscription_id == target)
        )
    if after is not None:
        query = query.where(VerificationRecord.certification_id > after)
    return query.order_by(VerificationRecord.certification_id)


def _check(svc: Services, session: Session, target: str) -> None:
    if target == DIRECTORY:
        if svc.directory is None:
            raise UnknownTarget("the verification directory is not configured (DIRECTORY_*)")
        return
    subscription = session.get(Subscription, target)
    if subscription is None or subscription.deleted_at is not None:
        raise UnknownTarget(f"no target {target!r}: give `directory` or a live subscription id")


def prepare(svc: Services, target: str, *, restart: bool = False) -> Plan:
    """Check `target`, forget its progress when `restart`, and count the records left to queue."""
    with svc.db.transaction() as session:
        _check(svc, session, target)
        row = lock_target(session, target)
        if restart:
            row.backfill_after, row.backfill_finished_at = None, None
        left = select(func.count()).select_from(_ids(target, row.backfill_after).subquery())
        return Plan(target, row.backfill_after, session.scalar(left))


def run(
    svc: Services,
    target: str,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], object] | None = None,
) -> int:
    """Queue deliveries from the stored progress on, batch by batch; how many were queued."""
    queued = 0
    while True:
        with svc.db.transaction() as session:
            row = lock_target(session, target)
            ids = list(session.scalars(_ids(target, row.backfill_after).limit(batch_size)))
            if not ids:
                row.backfill_finished_at = clock.now()
                return queued
            queue(session, target, ids)
            row.backfill_after = ids[-1]
        queued += len(ids)
        if on_batch:
            on_batch(len(ids))
