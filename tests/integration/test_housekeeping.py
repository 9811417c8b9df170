"""The daily sweep's housekeeping: expired tokens, old refused notifications, the ids deleted
subscriptions still watch and subscriptions deleted past their retention are deleted."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta

from sqlalchemy import func, insert, select, update

from gateway.platform import clock
from gateway.store.models import (
    AdvanceNotice,
    CredlyNotification,
    Delivery,
    DeliveryTarget,
    OAuthToken,
    OutboxItem,
    Subscription,
    WatchedCertification,
)
from gateway.usecases import clients, housekeeping, notices, subscriptions
from tests.support.clients import fetch_token, register_client
from tests.support.plans import plan_of, statements_on, whole_table_read


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
        session.execute(update(OAuthToken).values(issued_at=clock.now() - timedelta(days=3)))
    fresh = fetch_token(app, "verifications:read")
    assert housekeeping.prune(svc)["tokens"] == 2
    assert count(svc, OAuthToken) == 1
    lookup = client.get("/v1/verifications/NONE-1", headers={"Authorization": f"Bearer {fresh}"})
    assert lookup.status_code == 404  # the fresh token still works


def test_only_old_refused_forged_or_failed_notifications_are_deleted(app):
    svc = app.extensions["gateway"]
    now = clock.now()
    with svc.db.transaction() as session:
        for n, (status, days) in enumerate(
            [
                ("refused", 31),
                ("forged", 31),
                ("processed", 31),
                ("forged", 29),
                ("ignored", 90),
                ("failed", 31),
            ]
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
    assert housekeeping.prune(svc)["notifications"] == 3
    with svc.db.sessions() as session:
        kept = session.scalars(select(CredlyNotification.notification_id)).all()
    assert sorted(kept) == ["n-2", "n-3", "n-4"]


def test_a_backlog_is_deleted_a_chunk_to_a_transaction(app, monkeypatch):
    svc = app.extensions["gateway"]
    for _ in range(5):
        fetch_token(app, "events:write")
    with svc.db.transaction() as session:
        session.execute(update(OAuthToken).values(issued_at=clock.now() - timedelta(days=3)))
    statements = counted_transactions(svc, monkeypatch)
    assert housekeeping.prune_tokens(svc, clock.now()) == 5
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
            update(Subscription).where(Subscription.id == old).values(deleted_at=clock.now())
        )
    transactions = counted_transactions(svc, monkeypatch)
    assert housekeeping.prune_watched(svc) == 3
    assert len(transactions) == 2  # 2 + 1
    with svc.db.sessions() as session:
        left = session.scalars(select(WatchedCertification.subscription_id)).all()
    assert left == [live] * 3
    assert housekeeping.prune(svc)["watched"] == 0


def deleted(svc, subscription_id: str, days_ago: int) -> None:
    with svc.db.transaction() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id)
            .values(deleted_at=clock.now() - timedelta(days=days_ago))
        )


def delivered_and_told(session, subscription_id: str, job: str, notice: str) -> None:
    """A delivery to the subscription (its job in state `job`) and an advance notice (`notice`)."""
    session.add(DeliveryTarget(name=subscription_id, last_sequence=1))
    delivery = Delivery(
        target=subscription_id,
        certification_id="C-1",
        sequence=1,
        event_id=f"msg_{subscription_id}",
        state="delivered",
    )
    session.add(delivery)
    session.flush()
    session.add(  # an unfinished one is due far ahead: no job thread takes it meanwhile
        OutboxItem(
            certification_id="C-1",
            kind="deliver_webhook",
            payload={"delivery_id": delivery.id},
            state=job,
            due_at=None if job in ("done", "failed") else clock.now() + timedelta(days=1),
        )
    )
    session.add(
        AdvanceNotice(
            subscription_id=subscription_id,
            certification_id="C-1",
            change_on=date(2030, 1, 1),
            status="lapsed",
            state=notice,
        )
    )


def told(svc, states: list[tuple[str, str]]) -> list[str]:
    """Subscriptions of a new employer, one for each (job, notice) of `states`: each with a
    delivery whose job is in that state and an advance notice in that one."""
    with svc.db.transaction() as session:
        employer = clients.create_client(session, "employer", "verifications:read").client_id
        ids = []
        for job, notice in states:
            ids.append(subscriptions.create(session, employer, "https://hr.test/", ["C-1"]).id)
            delivered_and_told(session, ids[-1], job, notice)
    return ids


def left(svc, column) -> list[str]:
    with svc.db.sessions() as session:
        return sorted(session.scalars(select(column)))


def an_employer(app, client) -> tuple[str, dict[str, str]]:
    """A new `verifications:read` client's id and the headers of its requests."""
    client_id, secret = register_client(app, "verifications:read")
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).get_json()["access_token"]
    return client_id, {"Authorization": f"Bearer {token}"}


def test_subscriptions_deleted_past_their_retention_go_with_their_deliveries_and_notices(
    app, client
):
    svc = app.extensions["gateway"]
    retention = svc.settings.subscription_retention_days
    client_id, mine = an_employer(app, client)
    with svc.db.transaction() as session:
        old, recent, live = (
            subscriptions.create(session, client_id, "https://hr.test/", ["C-1"]).id
            for _ in range(3)
        )
        for subscription_id in (old, recent, live):
            notice = "scheduled" if subscription_id == live else "cancelled"
            delivered_and_told(session, subscription_id, "done", notice)
    deleted(svc, old, retention + 1)
    deleted(svc, recent, retention - 1)
    for path in (f"/v1/subscriptions/{old}", f"/v1/subscriptions/{old}/deliveries"):
        assert client.get(path, headers=mine).status_code == 404
    pruned = housekeeping.prune(svc)
    assert (pruned["deliveries"], pruned["advance_notices"], pruned["subscriptions"]) == (1, 1, 1)
    kept = sorted([recent, live])
    assert left(svc, Subscription.id) == kept
    assert left(svc, Delivery.target) == kept
    assert left(svc, AdvanceNotice.subscription_id) == kept
    assert left(svc, DeliveryTarget.name) == kept
    for path in (f"/v1/subscriptions/{old}", f"/v1/subscriptions/{old}/deliveries"):
        gone = client.get(path, headers=mine)
        assert gone.status_code == 404
        assert gone.get_json()["detail"] == f"You have no subscription {old}."
    assert client.delete(f"/v1/subscriptions/{old}", headers=mine).status_code == 404
    log = client.get(f"/v1/subscriptions/{live}/deliveries", headers=mine).get_json()
    assert [d["sequence"] for d in log["deliveries"]] == [1]
    again = housekeeping.prune(svc)
    assert (again["deliveries"], again["advance_notices"], again["subscriptions"]) == (0, 0, 0)


def test_a_deleted_subscription_waits_while_a_delivery_job_or_a_notice_is_in_flight(app):
    svc = app.extensions["gateway"]
    queued, announced = told(svc, [("retrying", "cancelled"), ("done", "scheduled")])
    for subscription_id in (queued, announced):
        deleted(svc, subscription_id, svc.settings.subscription_retention_days + 1)
    pruned = housekeeping.prune(svc)
    assert (pruned["deliveries"], pruned["advance_notices"], pruned["subscriptions"]) == (0, 0, 0)
    assert left(svc, Subscription.id) == sorted([queued, announced])
    with svc.db.transaction() as session:  # the job gave up; the daily review settled the notice
        session.execute(update(OutboxItem).values(state="failed", due_at=None))
        session.execute(update(AdvanceNotice).values(state="cancelled"))
    pruned = housekeeping.prune(svc)
    assert (pruned["deliveries"], pruned["advance_notices"], pruned["subscriptions"]) == (2, 2, 2)
    assert left(svc, Subscription.id) == []


def test_finished_deliveries_past_their_retention_go_but_those_the_delivery_jobs_read(app, client):
    svc = app.extensions["gateway"]
    retention = svc.settings.subscription_retention_days
    client_id, mine = an_employer(app, client)
    now = clock.now()
    old, recent = now - timedelta(days=retention + 100), now - timedelta(days=1)
    with svc.db.transaction() as session:
        live, gone = (
            subscriptions.create(session, client_id, "https://hr.test/", ["C-1"]).id
            for _ in range(2)
        )
        log = [  # certification, state, finished, tried: sequences 1 to 10
            ("C-1", "delivered", old, old - timedelta(days=1)),
            ("C-1", "superseded", old, None),
            ("C-1", "delivered", old, old),  # the last delivered of C-1, and the last tried
            ("C-2", "delivered", old, old),
            ("C-2", "delivered", recent, recent),
            ("C-3", "failed", old, old),  # its job is being retried
            ("C-3", "delivered", old, old),
            ("C-3", "delivered", recent, recent),
            ("C-4", "delivered", old, old - timedelta(days=1)),  # the last delivered
            ("C-4", "failed", old, old),  # the last tried: its receiver may hold none of them
        ]
        deliveries = [
            Delivery(
                target=target,
                certification_id=certification_id,
                sequence=sequence,
                event_id=f"msg_{target}_{sequence}",
                state=state,
                finished_at=finished_at,
                last_attempt_at=tried_at,
            )
            for target in (live, gone, "directory")
            for sequence, (certification_id, state, finished_at, tried_at) in enumerate(log, 1)
        ]
        session.add_all(deliveries)
        session.flush()
        retried = next(d for d in deliveries if d.target == live and d.sequence == 6)
        session.add(
            OutboxItem(
                certification_id="C-3",
                kind="deliver_webhook",
                payload={"delivery_id": retried.id},
                state="retrying",
                due_at=now + timedelta(days=1),
            )
        )
    deleted(svc, gone, 1)  # its log stays whole until the subscription goes
    assert housekeeping.prune(svc)["finished_deliveries"] == 4 + 5
    shown = client.get(f"/v1/subscriptions/{live}/deliveries", headers=mine).get_json()
    assert [d["sequence"] for d in shown["deliveries"]] == [10, 9, 8, 6, 5, 3]
    with svc.db.sessions() as session:
        directory = session.scalars(
            select(Delivery.sequence).where(Delivery.target == "directory")
        ).all()
    assert sorted(directory) == [3, 5, 8, 9, 10]  # no job of its own is in flight
    assert len(left(svc, Delivery.id)) == 6 + len(log) + 5
    assert housekeeping.prune(svc)["finished_deliveries"] == 0


def test_deliveries_pruned_in_chunks_keep_exactly_the_last_delivered_and_last_tried_of_each_group(
    app, monkeypatch
):
    """A random log of finished deliveries (ties and missing attempts included), pruned two rows
    to a transaction, keeps of each target, certification and type of message the one last
    delivered (the highest sequence of a group none of which was delivered) and the one last
    tried, as ranked in Python, and nothing else."""
    svc = app.extensions["gateway"]
    monkeypatch.setattr(housekeeping, "CHUNK", 2)
    rng = random.Random(29)
    old = clock.now() - timedelta(days=svc.settings.subscription_retention_days + 10)
    tried = [None, old, old - timedelta(hours=1), old - timedelta(hours=2)]  # ties, and none
    states = ["delivered", "delivered", "superseded", "failed", "cancelled"]
    undelivered = states[2:]  # a receiver that never took one
    rows = [
        Delivery(
            target=target,
            certification_id=rng.choice(["C-1", "C-2", "C-3"]),
            event_type=rng.choice(["certification.status_changed", "certification.notice"]),
            sequence=sequence,
            event_id=f"msg_{target}_{sequence}",
            state=rng.choice(undelivered if target == "sub_down" else states),
            finished_at=old,
            last_attempt_at=rng.choice(tried),
        )
        for target in ("directory", "sub_other", "sub_down")
        for sequence in range(1, 61)
    ]
    with svc.db.transaction() as session:
        session.add_all(rows)
        session.flush()
        expected = set()
        groups: dict[tuple, list[Delivery]] = {}
        for row in rows:
            groups.setdefault((row.target, row.certification_id, row.event_type), []).append(row)
        for group in groups.values():
            expected.add(min(group, key=lambda d: (d.state != "delivered", -d.sequence)).event_id)
            expected.add(
                min(
                    group,
                    key=lambda d: (
                        d.last_attempt_at is None,
                        -(d.last_attempt_at or old).timestamp(),
                        d.id,
                    ),
                ).event_id
            )
    pruned = housekeeping.prune(svc)["finished_deliveries"]
    assert sorted(left(svc, Delivery.event_id)) == sorted(expected)
    assert pruned == len(rows) - len(expected) > 0


def test_jobs_done_or_superseded_past_their_retention_go_but_failed_and_recent_ones_stay(app):
    svc = app.extensions["gateway"]
    now = clock.now()
    days = svc.settings.job_retention_days
    with svc.db.transaction() as session:
        for n, (state, ended_days_ago) in enumerate(
            [
                ("done", days + 1),
                ("done", days - 1),
                ("failed", days + 30),
                ("pending", None),
                ("superseded", days + 1),
            ]
        ):
            finished = None if ended_days_ago is None else now - timedelta(days=ended_days_ago)
            session.add(
                OutboxItem(
                    certification_id=f"JOB-{n}",
                    kind="sync_verification",
                    state=state,
                    created_at=now - timedelta(days=days + 60),
                    finished_at=finished,
                    due_at=now if state == "pending" else None,
                )
            )
    assert housekeeping.prune(svc)["jobs"] == 2
    with svc.db.sessions() as session:
        kept = session.scalars(select(OutboxItem.certification_id)).all()
    assert sorted(kept) == ["JOB-1", "JOB-2", "JOB-3"]


#: A plan that reads every advance notice for the scheduled ones (PostgreSQL's; SQLite's).
SCANNED_FOR_SCHEDULED = (
    r"Seq Scan on advance_notices .*\n *Filter: \(\(state\)|SCAN advance_notices\b"
)
#: Rows of a table the daily run reads: enough that reading them all costs more than an index.
MANY = 10_000


def filled(svc, model, rows: list[dict]) -> None:
    """`rows` added to `model`'s table in one statement, and the table's statistics taken."""
    with svc.db.transaction() as session:
        session.execute(insert(model), rows)
    if not svc.db.is_sqlite:  # as autovacuum does; SQLite, which nothing analyzes, guesses
        with svc.db.engine.begin() as connection:
            connection.exec_driver_sql(f"ANALYZE {model.__tablename__}")


def plans_of(svc, table: str, work) -> list[str]:
    """The plans of the statements on `table` that `work()` runs."""
    with statements_on(svc.db.engine, table) as seen:
        work()
    assert seen
    return [plan_of(svc.db.engine, statement, parameters) for statement, parameters in seen]


def test_the_prune_of_jobs_seeks_those_ended_long_ago_among_the_many_kept(app):
    """The outbox keeps every job JOB_RETENTION_DAYS: the prune finds the few older ones on the
    index of state and end, without reading every job kept."""
    svc = app.extensions["gateway"]
    now = clock.now()
    recent = now - timedelta(days=1)
    jobs = [
        {"kind": "sync_verification", "state": "done", "finished_at": recent, "due_at": None}
        for _ in range(MANY)
    ]
    old = now - timedelta(days=svc.settings.job_retention_days + 1)
    jobs.append({"kind": "sync_verification", "state": "done", "finished_at": old, "due_at": None})
    filled(svc, OutboxItem, jobs)
    pruned: list[int] = []
    plans = plans_of(svc, "outbox", lambda: pruned.append(housekeeping.prune_jobs(svc, now)))
    assert pruned == [1]
    for plan in plans:
        assert "ix_outbox_state_finished_at" in plan and not whole_table_read(plan, "outbox"), plan


def test_the_prune_of_notifications_seeks_the_old_unconfirmed_among_the_many_kept(app):
    """Credly's confirmed notifications are kept for good: the prune finds the old unconfirmed
    ones on the index of status and arrival, without reading every notification."""
    svc = app.extensions["gateway"]
    now = clock.now()
    old = now - housekeeping.NOTIFICATION_RETENTION - timedelta(days=1)
    notifications = [
        {
            "notification_id": f"n-{n}",
            "organization_id": "org",
            "event_type": "badge.state.changed",
            "occurred_at": old,
            "received_at": old,
            "status": "refused" if n == 0 else "processed",
        }
        for n in range(MANY)
    ]
    filled(svc, CredlyNotification, notifications)
    pruned: list[int] = []
    plans = plans_of(
        svc,
        "credly_notifications",
        lambda: pruned.append(housekeeping.prune_notifications(svc, now)),
    )
    assert pruned == [1]
    index = "ix_credly_notifications_status_received_at"
    for plan in plans:
        assert index in plan and not whole_table_read(plan, "credly_notifications"), plan


def test_the_daily_review_and_prune_find_the_scheduled_notices_among_the_many_told(app):
    """Advance notices stay while their subscription lives: the daily review and the prune of
    deleted subscriptions find the few still scheduled by their state, not by reading them all."""
    svc = app.extensions["gateway"]
    client_id, _ = register_client(app, "verifications:read")
    with svc.db.transaction() as session:
        session.add(Subscription(id="sub-1", client_id=client_id, url="https://e.test", secret="s"))
    notices_told = [
        {
            "subscription_id": "sub-1",
            "certification_id": f"C-{n}",
            "change_on": date(2020, 1, 1),
            "status": "inactive",
            "state": "scheduled" if n == 0 else "passed",
        }
        for n in range(MANY)
    ]
    filled(svc, AdvanceNotice, notices_told)
    now = clock.now()

    def daily() -> None:
        notices.review_due(svc, now.date())
        housekeeping.prune_subscriptions(svc, now)

    plans = plans_of(svc, "advance_notices", daily)
    assert any("ix_advance_notices_state" in plan for plan in plans), plans
    for plan in plans:  # the scheduled ones are never picked out of every notice read
        assert not re.search(SCANNED_FOR_SCHEDULED, plan), plan
    assert left(svc, AdvanceNotice.state).count("scheduled") == 0  # its day came: passed


def test_a_day_no_deleted_subscription_is_past_its_retention_reads_no_delivery_or_notice(app):
    """The prune of deleted subscriptions looks for one past its retention first: without one,
    its deletes, which would walk every delivery kept in id order, do not run."""
    svc = app.extensions["gateway"]
    live, recent = told(svc, [("done", "cancelled")] * 2)
    deleted(svc, recent, svc.settings.subscription_retention_days - 1)
    with statements_on(svc.db.engine, "subscriptions") as seen:
        pruned = housekeeping.prune_subscriptions(svc, clock.now())
    assert pruned == {"deliveries": 0, "advance_notices": 0, "subscriptions": 0}
    assert len(seen) == 1, seen  # the look for one past its retention
    assert left(svc, Delivery.target) == sorted([live, recent])
