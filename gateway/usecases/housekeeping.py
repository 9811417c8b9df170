"""What the daily sweep deletes: records past their use (receipts' log, expired tokens, refused
notifications, old malformed attempts at events, ids still watched by deleted subscriptions,
subscriptions deleted long ago with their delivery logs and advance notices), so that no table
grows for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from gateway.store.models import (
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
    utcnow,
)
from gateway.usecases.services import Services

#: How long a refused or forged Credly notification is kept: past Credly's 25 days of
#: redelivery, so a notification delivered again is still known by its id.
NOTIFICATION_RETENTION = timedelta(days=30)
#: Kept past its expiry, so that a token just expired is still told apart from an unknown one.
TOKEN_GRACE = timedelta(days=1)


#: Rows deleted in one transaction: a backlog of millions goes in short statements.
CHUNK = 10_000


def prune(svc: Services, now: datetime | None = None) -> dict[str, int]:
    """Delete every kind of record past its use; how many of each went."""
    now = now or utcnow()
    return {
        "receipts": prune_receipts(svc, now),
        "tokens": prune_tokens(svc, now),
        "notifications": prune_notifications(svc, now),
        "malformed_events": prune_malformed_events(svc, now),
        "watched": prune_watched(svc),
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
    """Delete the Credly notifications refused (another organisation) or found forged more than
    NOTIFICATION_RETENTION ago; those Credly vouched for stay, the record of what it told."""
    return delete_in_chunks(
        svc,
        CredlyNotification.id,
        CredlyNotification.received_at < now - NOTIFICATION_RETENTION,
        CredlyNotification.status.in_(("refused", "forged")),
    )


def prune_malformed_events(svc: Services, now: datetime) -> int:
    """Delete the malformed attempts at events received more than MALFORMED_EVENT_RETENTION_DAYS
    ago (and those whose id an event was recorded under since, as old)."""
    cutoff = now - timedelta(days=svc.settings.malformed_event_retention_days)
    return delete_in_chunks(svc, MalformedEvent.event_id, MalformedEvent.received_at < cutoff)


def prune_watched(svc: Services) -> int:
    """Delete the ids still watched by deleted subscriptions: those deleted before a deletion
    took its watched ids along."""
    deleted = select(Subscription.id).where(Subscription.deleted_at.is_not(None))
    return delete_in_chunks(
        svc,
        (WatchedCertification.subscription_id, WatchedCertification.certification_id),
        WatchedCertification.subscription_id.in_(deleted),
    )


def prune_subscriptions(svc: Services, now: datetime) -> dict[str, int]:
    """Delete the subscriptions deleted more than SUBSCRIPTION_RETENTION_DAYS ago that nothing in
    flight refers to: their deliveries and advance notices first, then (once none is left) their
    rows and sequence counters; how many of each went."""
    expired = _expired(now - timedelta(days=svc.settings.subscription_retention_days))
    counts = {
        "deliveries": delete_in_chunks(svc, Delivery.id, Delivery.target.in_(expired)),
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
    queued = (
        select(Delivery.target)
        .join(OutboxItem, OutboxItem.payload["delivery_id"].as_integer() == Delivery.id)
        .where(OutboxItem.state.in_(UNFINISHED))
    )
    scheduled = select(AdvanceNotice.subscription_id).where(AdvanceNotice.state == "scheduled")
    return select(Subscription.id).where(
        Subscription.deleted_at < cutoff,
        Subscription.id.not_in(queued),
        Subscription.id.not_in(scheduled),
    )


def delete_in_chunks(
    svc: Services, key: InstrumentedAttribute | tuple[InstrumentedAttribute, ...], *where: Any
) -> int:
    """Delete the rows of `key`'s table (`key`: its primary key's column or columns) that match
    `where`, CHUNK to a transaction; how many."""
    columns = key if isinstance(key, tuple) else (key,)
    table = columns[0].class_
    deleted = 0
    while True:
        with svc.db.transaction() as session:
            chunk = select(*columns).where(*where).limit(CHUNK)
            count = session.execute(
                delete(table)
                .where(tuple_(*columns).in_(chunk))
                .execution_options(synchronize_session=False)
            ).rowcount
        deleted += count
        if count < CHUNK:
            return deleted
