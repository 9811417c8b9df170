"""The daily sweep's housekeeping: expired tokens, old refused notifications and the ids deleted
subscriptions still watch are deleted."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from gateway.store.models import (
    CredlyNotification,
    OAuthToken,
    Subscription,
    WatchedCertification,
    utcnow,
)
from gateway.usecases import clients, housekeeping, subscriptions
from tests.support.clients import fetch_token


def count(svc, model) -> int:
    with svc.db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def counted_transactions(svc, monkeypatch) -> list[int]:
    """Chunks of 2 rows; one item appended to the list returned for each transaction begun."""
    monkeypatch.setattr(housekeeping, "CHUNK", 2)
    transactions: list[int] = []
    real_transaction = svc.db.transaction

    def counted_transaction():
        transactions.append(1)
        return real_transaction()

    monkeypatch.setattr(svc.db, "transaction", counted_transaction)
    return transactions


def test_tokens_are_deleted_once_every_token_as_old_has_expired(app, client):
    svc = app.extensions["gateway"]
    for _ in range(2):
        fetch_token(app, "events:write")
    with svc.db.transaction() as session:  # issued long ago: past the longest lifetime, an hour
        session.execute(update(OAuthToken).values(issued_at=utcnow() - timedelta(days=3)))
    fresh = fetch_token(app, "verifications:read")
    assert housekeeping.prune(svc)["tokens"] == 2
    assert count(svc, OAuthToken) == 1
    lookup = client.get("/v1/verifications/NONE-1", headers={"Authorization": f"Bearer {fresh}"})
    assert lookup.status_code == 404  # the fresh token still works


def test_only_old_refused_or_forged_notifications_are_deleted(app):
    svc = app.extensions["gateway"]
    now = utcnow()
    with svc.db.transaction() as session:
        for n, (status, days) in enumerate(
            [("refused", 31), ("forged", 31), ("processed", 31), ("forged", 29), ("ignored", 90)]
        ):
            session.add(
                CredlyNotification(
                    notification_id=f"n-{n}",
                    organization_id="org",
                    event_type="badge.state.changed",
                    occurred_at=now,
                    received_at=now - timedelta(days=days),
                    status=status,
                )
            )
    assert housekeeping.prune(svc)["notifications"] == 2
    with svc.db.sessions() as session:
        kept = session.scalars(select(CredlyNotification.notification_id)).all()
    assert sorted(kept) == ["n-2", "n-3", "n-4"]


def test_a_backlog_is_deleted_a_chunk_to_a_transaction(app, monkeypatch):
    svc = app.extensions["gateway"]
    for _ in range(5):
        fetch_token(app, "events:write")
    with svc.db.transaction() as session:
        session.execute(update(OAuthToken).values(issued_at=utcnow() - timedelta(days=3)))
    statements = counted_transactions(svc, monkeypatch)
    assert housekeeping.prune_tokens(svc, utcnow()) == 5
    assert len(statements) == 3  # 2 + 2 + 1
    assert count(svc, OAuthToken) == 0


def test_ids_still_watched_by_deleted_subscriptions_are_deleted_a_chunk_at_a_time(app, monkeypatch):
    svc = app.extensions["gateway"]
    with svc.db.transaction() as session:
        employer = clients.create_client(session, "employer", "verifications:read").client_id
        old, live = (
            subscriptions.create(session, employer, "https://hr.test/", ["C-1", "C-2", "C-3"]).id
            for _ in range(2)
        )
    with svc.db.transaction() as session:  # deleted by a release that left its watched ids
        session.execute(
            update(Subscription).where(Subscription.id == old).values(deleted_at=utcnow())
        )
    transactions = counted_transactions(svc, monkeypatch)
    assert housekeeping.prune_watched(svc) == 3
    assert len(transactions) == 2  # 2 + 1
    with svc.db.sessions() as session:
        left = session.scalars(select(WatchedCertification.subscription_id)).all()
    assert left == [live] * 3
    assert housekeeping.prune(svc)["watched"] == 0
