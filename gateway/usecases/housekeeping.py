"""What the daily sweep deletes: records past their use (receipts' log, expired tokens, refused
notifications, ids still watched by deleted subscriptions), so that no table grows for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from gateway.store.models import (
    CredlyNotification,
    OAuthToken,
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
        "watched": prune_watched(svc),
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


def prune_watched(svc: Services) -> int:
    """Delete the ids still watched by deleted subscriptions: those deleted before a deletion
    took its watched ids along."""
    deleted = select(Subscription.id).where(Subscription.deleted_at.is_not(None))
    return delete_in_chunks(
        svc,
        (WatchedCertification.subscription_id, WatchedCertification.certification_id),
        WatchedCertification.subscription_id.in_(deleted),
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
