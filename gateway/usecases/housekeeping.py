"""What the daily sweep deletes: records past their use (receipts' log, expired tokens, refused
notifications), so that no table grows for ever."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from gateway.store.models import CredlyNotification, OAuthToken, utcnow
from gateway.usecases import receipts
from gateway.usecases.services import Services

#: How long a refused or forged Credly notification is kept: past Credly's 25 days of
#: redelivery, so a notification delivered again is still known by its id.
NOTIFICATION_RETENTION = timedelta(days=30)
#: Kept past its expiry, so that a token just expired is still told apart from an unknown one.
TOKEN_GRACE = timedelta(days=1)


def prune(svc: Services, now: datetime | None = None) -> dict[str, int]:
    """Delete every kind of record past its use; how many of each went."""
    now = now or utcnow()
    return {
        "receipts": receipts.prune(svc, now),
        "tokens": prune_tokens(svc, now),
        "notifications": prune_notifications(svc, now),
    }


def prune_tokens(svc: Services, now: datetime) -> int:
    """Delete the access tokens issued before the longest lifetime a stored token has (and a
    day) ago: every one of them has expired."""
    with svc.db.transaction() as session:
        longest = session.scalar(select(func.max(OAuthToken.expires_in)))
        if longest is None:
            return 0
        cutoff = now - timedelta(seconds=longest) - TOKEN_GRACE
        return session.execute(delete(OAuthToken).where(OAuthToken.issued_at < cutoff)).rowcount


def prune_notifications(svc: Services, now: datetime) -> int:
    """Delete the Credly notifications refused (another organisation) or found forged more than
    NOTIFICATION_RETENTION ago; those Credly vouched for stay, the record of what it told."""
    old = CredlyNotification.received_at < now - NOTIFICATION_RETENTION
    kind = CredlyNotification.status.in_(("refused", "forged"))
    with svc.db.transaction() as session:
        return session.execute(delete(CredlyNotification).where(old, kind)).rowcount
