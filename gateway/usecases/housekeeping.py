"""What the daily run deletes after the sweep: records past their use (receipts' log, expired
tokens, refused notifications, old malformed attempts at events, jobs done long ago, ids still
watched by deleted subscriptions, deliveries finished long ago, subscriptions deleted long ago
with their delivery logs and advance notices), so that no table grows for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, aliased

from gateway.platform import clock
from gateway.store.models import (
    SUPERSEDED,
    UNFINISHED,
    AdvanceNotice,
    CredlyNotification,
    Delivery,
    DeliveryTarget,
    MalformedEvent,
    OAuthToken,
    OutboxItem,
    Receipt,
    Subscription,
    WatchedCertification,
)
from gateway.usecases.credly_notifications import UNCONFIRMED
from gateway.usecases.services import Services

#: How long a Credly notification refused, forged or failed is kept: past Credly's 25 days of
#: redelivery, so a notification delivered again is still known by its id.
NOTIFICATION_RETENTION = timedelta(days=30)
#: Kept past its expiry, so that a token just expired is still told apart from an unknown one.
TOKEN_GRACE = timedelta(days=1)


#: States of a delivery that is over (a failed one is sent again only if its job is requeued).
FINISHED = ("delivered", "superseded", "cancelled", "failed")

#: Rows deleted in one transaction: a backlog of millions goes in short statements.
CHUNK = 10_000


def prune(svc: Services, now: datetime | None = None) -> dict[str, int]:
    """Delete every kind of record past its use; how many of each went."""
    now = now or clock.now()
    return {
        "receipts": prune_receipts(svc, now),
        "tokens": prune_tokens(svc, now),
        "notifications": prune_notifications(svc, now),
        "malformed_events": prune_malformed_events(svc, now),
        "jobs": prune_jobs(svc, now),
        "watched": prune_watched(svc),
        "finished_deliveries": prune_deliveries(svc, now),
        **prune_subscriptions(svc, now),
    }


def prune_receipts(svc: Services, now: datetime) -> int:
    """Delete the records of receipts issued more than RECEIPT_RETENTION_DAYS ago."""
    cutoff = now - timedelta(days=svc.settings.receipt_retention_days)
    return delete_in_chunks(svc, Receipt.jti, Receipt.issued_at < cutoff)


def prune_tokens(svc: Services, now: datetime) -> int:
    """Delete the access tokens issued before the longest lifetime a stored token has (and a
    day) ago: every one of them has expired."""
    with svc.db.sessions() as session:
        longest = session.scalar(select(func.max(OAuthToken.expires_in)))
    if longest is None:
        return 0
    cutoff = now - timedelta(seconds=longest) - TOKEN_GRACE
    return delete_in_chunks(svc, OAuthToken.id, OAuthToken.issued_at < cutoff)


def prune_notifications(svc: Services, now: datetime) -> int:
    """Delete the Credly notifications refused, found forged or whose check failed for good
    (UNCONFIRMED) received more than NOTIFICATION_RETENTION ago; those Credly vouched for stay,
    the record of what it told."""
    return delete_in_chunks(
        svc,
        CredlyNotification.id,
        CredlyNotification.received_at < now - NOTIFICATION_RETENTION,
        CredlyNotification.status.in_(UNCONFIRMED),
    )


def prune_malformed_events(svc: Services, now: datetime) -> int:
    """Delete the malformed attempts at events received more than MALFORMED_EVENT_RETENTION_DAYS
    ago (and those whose id an event was recorded under since, as old)."""
    cutoff = now - timedelta(days=svc.settings.malformed_event_retention_days)
    return delete_in_chunks(svc, MalformedEvent.event_id, MalformedEvent.received_at < cutoff)


def prune_jobs(svc: Services, now: datetime) -> int:
    """Delete the jobs (outbox items) that ended `done`, or failed and were superseded, more than
    JOB_RETENTION_DAYS ago; failed ones stay for an operator to retry, and `/metrics` counts
    outcomes in a table of its own."""
    cutoff = now - timedelta(days=svc.settings.job_retention_days)
    return delete_in_chunks(
        svc,
        OutboxItem.id,
        OutboxItem.state.in_(("done", SUPERSEDED)),
        OutboxItem.finished_at < cutoff,
    )


def prune_watched(svc: Services) -> int:
    """Delete the ids still watched by deleted subscriptions: those deleted before a deletion
    took its watched ids along."""
    deleted = select(Subscription.id).where(Subscription.deleted_at.is_not(None))
    return delete_in_chunks(
        svc,
        (WatchedCertification.subscription_id, WatchedCertification.certification_id),
        WatchedCertification.subscription_id.in_(deleted),
    )


def prune_deliveries(svc: Services, now: datetime) -> int:
    """Delete the deliveries to the directory and to live subscriptions that finished more than
    SUBSCRIPTION_RETENTION_DAYS ago, but those the delivery jobs still read: any an unfinished job
    sends, and of each target, certification and type of message the one last delivered (a
    message queued before it is superseded) and the one last tried (a status message is not sent
    again the status its receiver's latest message delivered).

    A delivery goes when another of its group comes after it in both orders, which an index
    probe of its group answers (ranking the whole table instead took each chunk seconds a
    million rows)."""
    cutoff = now - timedelta(days=svc.settings.subscription_retention_days)
    other = aliased(Delivery)
    its_group = and_(
        other.target == Delivery.target,
        other.certification_id == Delivery.certification_id,
        other.event_type == Delivery.event_type,
    )
    delivered_later = or_(  # the delivered before the others, then the higher sequence
        and_(other.state == "delivered", Delivery.state != "delivered"),
        and_(
            other.sequence > Delivery.sequence,
            or_(other.state == "delivered", Delivery.state != "delivered"),
        ),
    )
    tried_later = or_(  # the latest attempt (none: last), then the lower id
        other.last_attempt_at > Delivery.last_attempt_at,
        and_(other.last_attempt_at.is_not(None), Delivery.last_attempt_at.is_(None)),
        and_(
            or_(
                other.last_attempt_at == Delivery.last_attempt_at,
                and_(other.last_attempt_at.is_(None), Delivery.last_attempt_at.is_(None)),
            ),
            other.id < Delivery.id,
        ),
    )
    deleted = select(Subscription.id).where(Subscription.deleted_at.is_not(None))
    return delete_in_chunks(
        svc,
        Delivery.id,
        Delivery.state.in_(FINISHED),
        Delivery.finished_at < cutoff,
        Delivery.target.not_in(deleted),
        Delivery.id.not_in(_queued(Delivery.id)),
        exists().where(its_group, delivered_later),
        exists().where(its_group, tried_later),
        locked_in_order=True,
    )


def prune_subscriptions(svc: Services, now: datetime) -> dict[str, int]:
    """Delete the subscriptions deleted more than SUBSCRIPTION_RETENTION_DAYS ago that nothing in
    flight refers to: their deliveries and advance notices first, then (once none is left) their
    rows and sequence counters; how many of each went.

    Most days none is: then no statement reads the deliveries and notices, whose statements
    would walk every delivery kept, in id order, to find none of them."""
    expired = _expired(now - timedelta(days=svc.settings.subscription_retention_days))
    with svc.db.sessions() as session:
        if session.scalar(select(exists(expired))) is False:
            return {"deliveries": 0, "advance_notices": 0, "subscriptions": 0}
    counts = {
        "deliveries": delete_in_chunks(
            svc, Delivery.id, Delivery.target.in_(expired), locked_in_order=True
        ),
        "advance_notices": delete_in_chunks(
            svc, AdvanceNotice.id, AdvanceNotice.subscription_id.in_(expired)
        ),
    }
    emptied = expired.where(
        ~exists().where(Delivery.target == Subscription.id),
        ~exists().where(AdvanceNotice.subscription_id == Subscription.id),
    )
    delete_in_chunks(svc, DeliveryTarget.name, DeliveryTarget.name.in_(emptied))
    counts["subscriptions"] = delete_in_chunks(svc, Subscription.id, Subscription.id.in_(emptied))
    return counts


def _expired(cutoff: datetime) -> Select:
    """The ids of the subscriptions deleted before `cutoff` that nothing in flight refers to: no
    unfinished job sends one of their deliveries (a failed one requeued later finds its delivery
    gone and does nothing), and no advance notice of theirs is still scheduled (the daily review
    settles those of a deleted subscription)."""
    scheduled = select(AdvanceNotice.subscription_id).where(AdvanceNotice.state == "scheduled")
    return select(Subscription.id).where(
        Subscription.deleted_at < cutoff,
        Subscription.id.not_in(_queued(Delivery.target)),
        Subscription.id.not_in(scheduled),
    )


def _queued(column: InstrumentedAttribute) -> Select:
    """`column` of the deliveries an unfinished job still sends (read on its own: not
    correlated to a query of deliveries it is part of)."""
    return (
        select(column)
        .join(OutboxItem, OutboxItem.payload["delivery_id"].as_integer() == Delivery.id)
        .where(OutboxItem.state.in_(UNFINISHED))
        .correlate(None)
    )


def delete_in_chunks(
    svc: Services,
    key: InstrumentedAttribute | tuple[InstrumentedAttribute, ...],
    *where: Any,
    locked_in_order: bool = False,
) -> int:
    """Delete the rows of `key`'s table (`key`: its primary key's column or columns) that match
    `where`, CHUNK to a transaction, in the order of `key`; how many.

    Each chunk starts after the last key of the one before, so rows that match `where` no longer
    when their turn comes (or stay, not matching it) are read once, not again by every chunk.
    With `locked_in_order`, a chunk's rows are locked in the order of `key` before they go, not
    in the order a scan finds them: the order other transactions lock several of them in
    (deliveries: `jobs.deliveries`), so that a chunk never deadlocks with those."""
    columns = key if isinstance(key, tuple) else (key,)
    table = columns[0].class_
    deleted = 0
    after: tuple | None = None
    while True:
        with svc.db.transaction() as session:
            range_ = [] if after is None else [tuple_(*columns) > tuple_(*after)]
            last = session.execute(
                select(*columns)
                .where(*where, *range_)
                .order_by(*columns)
                .offset(CHUNK - 1)
                .limit(1)
            ).first()
            if last is not None:
                range_.append(tuple_(*columns) <= tuple_(*last))
            chosen = [*where, *range_]
            if locked_in_order:
                locked = select(*columns).where(*chosen).order_by(*columns).with_for_update()
                chosen = [tuple_(*columns).in_(locked)]
            deleted += session.execute(
                delete(table).where(*chosen).execution_options(synchronize_session=False)
            ).rowcount
        if last is None:
            return deleted
        after = tuple(last)
