"""Delivery jobs on real Redis and PostgreSQL: retries, ordering, leases, superseding, refusals,
the directory's token.

Receivers and the directory are small HTTP servers on 127.0.0.1 (`tests.support.http_stubs`); RQ
jobs run in this process through `drain`, which also moves due retries back onto the queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select, text, update
from standardwebhooks import Webhook

from gateway.platform import clock
from gateway.schemas.verifications import RECORD_FIELDS
from gateway.store.db import Database
from gateway.store.models import Delivery, OutboxItem, VerificationRecord
from gateway.usecases import clients, housekeeping, subscriptions
from gateway.usecases.deliveries import EVENT_TYPE, queue
from gateway.usecases.notices import CANCELLED, SCHEDULED
from jobs import verification_sync
from jobs.deliveries import retry_policy
from jobs.engine.claim import ClaimedItem
from jobs.engine.dispatch import requeue
from jobs.engine.outbox import run_claimed
from tests.support.badge_jobs import drain, ended, items, retries_due, submit
from tests.support.database import truncate
from tests.support.events import event, granted, revoked
from tests.support.http_stubs import (
    DirectoryStub,
    Received,
    Respond,
    dripping,
    scripted,
    serve,
)
from tests.support.queue import work_queued
from tests.support.verification import days_ago


@pytest.fixture
def make_svc(make_app, postgres_url, redis_client, redis_url):
    """Services of an app on PostgreSQL and Redis with 1 s retries; settings may be overridden."""
    truncate(postgres_url)

    def factory(**settings):
        settings = {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "delivery_retry_base_seconds": 1,
            "job_retry_base_seconds": 1,
            "webhook_allow_private_targets": True,
            "webhook_allow_plain_http": True,  # the receivers are plain http
            **settings,
        }
        return make_app(**settings).extensions["gateway"]

    yield factory
    truncate(postgres_url)


def watch(svc, url: str, *certification_ids: str):
    """A subscription of a new employer client to `url`, made as the API would make it."""
    with svc.db.transaction() as session:
        employer = clients.create_client(session, "employer", "verifications:read")
        return subscriptions.create(
            session, employer.client_id, url, list(certification_ids) or ["CERT-1"]
        )


def deliveries(svc, target: str) -> list[Delivery]:
    with svc.db.sessions() as session:
        return list(
            session.scalars(
                select(Delivery).where(Delivery.target == target).order_by(Delivery.sequence)
            )
        )


def settled(svc, target: str) -> bool:
    found = deliveries(svc, target)
    return bool(found) and all(d.state in ("delivered", "superseded", "failed") for d in found)


def test_a_receiver_answering_500_then_200_gets_the_same_signed_event_twice(make_svc):
    svc = make_svc()
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url + "/hook")
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
    [delivery] = deliveries(svc, subscription.id)
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("delivered", 2, 200)
    assert len(received) == 2
    assert {r.headers["webhook-id"] for r in received} == {delivery.event_id}
    for request in received:
        event_body = Webhook(subscription.secret).verify(request.body, request.headers)
        assert event_body["sequence"] == 1 and event_body["data"]["status"] == "active"


def test_a_later_status_is_never_overtaken_by_the_retry_of_an_earlier_one(make_svc):
    # The retry waits a minute, so that it comes after sequence 2 however slow the machine (with
    # 1 s, a slow machine ran it first, and it sent the revocation itself); it is then made due and
    # the workers woken, as the minute passing would.
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) fails; its retry waits
        [first] = deliveries(svc, subscription.id)
        assert first.state == "retrying" and first.status_code == 500
        submit(svc, revoked(days_ago(1)))
        work_queued(svc)  # sequence 2 (revoked) is delivered
        assert [d.state for d in deliveries(svc, subscription.id)] == ["superseded", "delivered"]
        assert not ended(svc, "deliver_webhook")  # the retry of sequence 1 is still to run
        retries_due(svc)
        drain(svc, lambda: ended(svc, "deliver_webhook"))
    first, second = deliveries(svc, subscription.id)
    assert (first.sequence, first.state, first.attempts) == (1, "superseded", 1)
    assert (second.sequence, second.state) == (2, "delivered")
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["status"]) for e in seen] == [(1, "active"), (2, "revoked")]


def _run(svc, item: OutboxItem, attempt: int = 1) -> None:
    """Run one outbox item's job now, as a worker that claimed it for its `attempt`th try would."""
    claimed = ClaimedItem(
        item.id, item.kind, item.certification_id, item.payload, None, attempt, clock.now()
    )
    run_claimed(svc, claimed)


@pytest.mark.parametrize("synced", [True, False], ids=["change-queued", "change-not-yet-synced"])
def test_a_retry_carrying_a_later_status_leaves_that_change_no_second_message(make_svc, synced):
    """The retry of sequence 1 runs late and sends the newest record (revoked): the message of
    the revocation, queued by its sync before the retry ran or after it, is not sent again."""
    # The retry waits a minute, so that only this test runs it, after the revocation (with 1 s, a
    # slow machine ran it in the burst's next drain job, sending active: the revocation was then
    # rightly sent too).
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) fails; its retry waits in the scheduler
        [retry] = items(svc, "deliver_webhook")
        [first] = deliveries(svc, subscription.id)
        assert (first.state, first.attempts, first.status_code) == ("retrying", 1, 500)
        submit(svc, revoked(days_ago(1)))  # recorded: the lookup answers revoked from now on
        if synced:
            [sync] = [i for i in items(svc, "sync_verification") if i.state != "done"]
            _run(svc, sync)  # queues sequence 2 (revoked)
        _run(svc, retry, attempt=2)  # sequence 1 sends what the lookup answers: revoked
        drain(svc, lambda: len(deliveries(svc, subscription.id)) == 2)
        drain(svc, lambda: settled(svc, subscription.id))
    first, second = deliveries(svc, subscription.id)
    assert (first.sequence, first.state, first.attempts) == (1, "delivered", 2)
    assert (second.sequence, second.state, second.attempts) == (2, "superseded", 0)
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["status"]) for e in seen] == [(1, "active"), (1, "revoked")]
    # the retry carries another record: another message, which a receiver that took the first
    # (answering too late, say) does not drop as a duplicate
    tried, sent = (r.headers["webhook-id"] for r in received)
    assert tried != sent and sent == first.event_id


def test_a_subscription_is_not_sent_again_the_status_its_latest_message_delivered(make_svc):
    """A message whose status the subscription's latest message delivered is not sent; after an
    attempt answered otherwise (the receiver may have taken it, or not) the status is sent."""
    # The retry of sequence 3 waits a minute, so that sequence 4 comes first however slow the
    # machine (with 1 s, a slow machine ran the retry during the backfill's drain).
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(200, 500)) as (url, received):
        subscription = watch(svc, url)

        def push_again() -> None:  # a message of the record as it stands, as a backfill queues
            with svc.db.transaction() as session:
                queue(session, subscription.id, ["CERT-1"])
            drain(svc, lambda: settled(svc, subscription.id))

        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))  # 1: active, answered 200
        push_again()  # 2: active again
        submit(svc, revoked(days_ago(1)))
        drain(svc, lambda: deliveries(svc, subscription.id)[-1].status_code == 500)  # 3: revoked
        push_again()  # 4: revoked, after the 500
    assert [(d.sequence, d.state, d.attempts) for d in deliveries(svc, subscription.id)] == [
        (1, "delivered", 1),
        (2, "superseded", 0),
        (3, "superseded", 1),
        (4, "delivered", 1),
    ]
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["status"]) for e in seen] == [
        (1, "active"),
        (3, "revoked"),
        (4, "revoked"),
    ]
    # superseded when first claimed: that claim was no attempt
    assert deliveries(svc, subscription.id)[1].last_attempt_at is None


def test_a_failed_message_requeued_once_its_status_was_delivered_keeps_its_attempt(make_svc):
    """Requeued, it is superseded (the receiver's latest message carried that status): its claim
    was no attempt, so the log still shows the attempt that failed."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500, 500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) is answered 500; its retry waits a minute
        [retry] = items(svc, "deliver_webhook")
        with svc.db.transaction() as session:  # as a backfill queues it
            [again] = queue(session, subscription.id, ["CERT-1"])
        _run(svc, again, attempt=retry_policy(svc.settings).max_attempts)  # 500 at last: failed
        tried_at = deliveries(svc, subscription.id)[1].last_attempt_at
        _run(svc, retry, attempt=2)  # sequence 1 is delivered
        assert requeue(svc, [again.id]) == [again.id]
        drain(svc, lambda: ended(svc, "deliver_webhook"))
    first, second = deliveries(svc, subscription.id)
    assert (first.state, first.attempts) == ("delivered", 2)
    assert (second.state, second.attempts, second.last_attempt_at) == ("superseded", 1, tried_at)
    assert len(received) == 3


def _delete(session, subscription) -> None:
    mine = subscriptions.owned(session, subscription.client_id, subscription.id)
    subscriptions.remove(session, mine)


def _unwatch(session, subscription) -> None:
    subscriptions.unwatch(session, subscription, ["CERT-1"])


@pytest.mark.parametrize(
    ("stop", "reason"),
    [(_delete, "takes no deliveries any more"), (_unwatch, "no longer watches CERT-1")],
    ids=["subscription-deleted", "certification-unwatched"],
)
def test_a_delivery_waiting_when_its_subscription_stops_gets_no_retry(make_svc, stop, reason):
    # The retry waits a minute, so that it comes after the stop however slow the machine (with
    # 1 s, a slow machine ran it in the burst's next drain job, before the stop); it is then made
    # due and the workers woken, as the minute passing would.
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # the first attempt fails; the retry waits
        with svc.db.transaction() as session:
            stop(session, subscription)
        retries_due(svc)
        drain(svc, lambda: deliveries(svc, subscription.id)[0].state == "cancelled")
    assert len(received) == 1
    [delivery] = deliveries(svc, subscription.id)
    assert delivery.attempts == 1 and reason in delivery.last_error


def test_a_delivery_waiting_when_its_certification_is_unwatched_is_cancelled_at_once(make_svc):
    """The delivery log shows the waiting message cancelled as soon as its certification is
    unwatched, and watching it again before the retry's time does not bring the message back."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # the first attempt fails; the retry waits a minute
        [item] = items(svc, "deliver_webhook")
        with svc.db.transaction() as session:
            _unwatch(session, subscription)
        [delivery] = deliveries(svc, subscription.id)
        assert (delivery.state, delivery.attempts) == ("cancelled", 1)
        assert "no longer watches CERT-1" in delivery.last_error
        with svc.db.transaction() as session:
            subscriptions.watch(session, subscription, ["CERT-1"])
        _run(svc, item, attempt=2)
    assert len(received) == 1
    assert deliveries(svc, subscription.id)[0].state == "cancelled"


def test_a_job_run_again_once_its_delivery_settled_sends_nothing(make_svc):
    """A job claimed again (its first worker's lease ran out while it sent, say) finds its
    delivery delivered, or cancelled, and sends nothing: not even once the certification is
    watched again."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(200, 500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) is delivered
        submit(svc, revoked(days_ago(1)))
        work_queued(svc)  # sequence 2 (revoked) is answered 500; its retry waits a minute
        first, second = sorted(items(svc, "deliver_webhook"), key=lambda item: item.id)
        with svc.db.transaction() as session:
            _unwatch(session, subscription)
        _run(svc, second, attempt=2)  # cancelled
        with svc.db.transaction() as session:
            subscriptions.watch(session, subscription, ["CERT-1"])
        _run(svc, first, attempt=2)
        _run(svc, second, attempt=3)
    assert [(d.sequence, d.state, d.attempts) for d in deliveries(svc, subscription.id)] == [
        (1, "delivered", 1),
        (2, "cancelled", 1),
    ]
    assert len(received) == 2


def test_a_delivery_of_another_certification_to_the_target_supersedes_nothing(make_svc):
    """Sequence 2 (CERT-2) is delivered while sequence 1 (CERT-1) waits for its retry: the retry
    is still sent, as nothing about CERT-1 reached the receiver."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url, "CERT-1", "CERT-2")
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (CERT-1) is answered 500; its retry waits a minute
        [retry] = items(svc, "deliver_webhook")
        submit(svc, granted(days_ago(30), cert="CERT-2"))
        work_queued(svc)  # sequence 2 (CERT-2) is delivered
        _run(svc, retry, attempt=2)
    assert [(d.sequence, d.state) for d in deliveries(svc, subscription.id)] == [
        (1, "delivered"),
        (2, "delivered"),
    ]
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["certification_id"]) for e in seen] == [
        (1, "CERT-1"),
        (2, "CERT-2"),
        (1, "CERT-1"),
    ]


def test_a_target_that_resolves_to_a_private_address_is_refused_at_delivery(make_svc):
    svc = make_svc(webhook_allow_private_targets=False)
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)  # registered while it resolved elsewhere, say
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
    assert received == []
    [delivery] = deliveries(svc, subscription.id)
    assert delivery.state == "failed" and delivery.attempts == 1
    assert "not allowed" in delivery.last_error
    with svc.db.sessions() as session:
        [item] = session.scalars(select(OutboxItem).where(OutboxItem.kind == "deliver_webhook"))
    assert item.state == "failed"


def test_a_subscription_stored_with_a_plain_http_url_fails_each_delivery_saying_why(make_svc):
    """Registered before plain http was refused: nothing is sent over plain http, and the
    delivery fails for good, saying why, where its client and the operator look; requeued once
    the operator allows plain http, it is sent."""
    svc = make_svc(webhook_allow_plain_http=False)
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url + "/hook")
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
        assert received == []
        [delivery] = deliveries(svc, subscription.id)
        assert delivery.state == "failed" and delivery.attempts == 1
        assert delivery.last_error == (
            f"{url}/hook is a plain http URL, which anyone on the way could read and replay: "
            "webhooks go to https URLs only"
        )
        [failed] = items(svc, "deliver_webhook")
        assert failed.state == "failed" and "plain http URL" in failed.last_error
        allowing = make_svc(webhook_allow_plain_http=True)
        assert requeue(allowing, [failed.id]) == [failed.id]
        drain(allowing, lambda: ended(allowing, "deliver_webhook"))
    assert len(received) == 1
    assert Webhook(subscription.secret).verify(received[0].body, received[0].headers)
    [delivery] = deliveries(svc, subscription.id)
    assert (delivery.state, delivery.status_code) == ("delivered", 200)


def test_a_failed_delivery_requeued_once_its_subscription_was_pruned_ends_sending_nothing(
    make_svc,
):
    svc = make_svc(webhook_allow_private_targets=False)
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))  # refused at delivery: failed
        with svc.db.transaction() as session:
            _delete(session, subscription)
        later = clock.now() + timedelta(days=svc.settings.subscription_retention_days + 1)
        assert housekeeping.prune(svc, later)["deliveries"] == 1
        [failed] = items(svc, "deliver_webhook")
        assert requeue(svc, [failed.id]) == [failed.id]
        drain(svc, lambda: ended(svc, "deliver_webhook", ("done", "retrying", "failed")))
    assert received == []
    [item] = items(svc, "deliver_webhook")
    assert (item.state, item.last_error) == ("done", None)


def test_pruning_a_live_subscriptions_old_deliveries_leaves_what_its_next_ones_are_decided_by(
    make_svc,
):
    svc = make_svc()
    retention = timedelta(days=svc.settings.subscription_retention_days + 1)

    def again() -> None:  # a status message with no change of status since the last one
        with svc.db.transaction() as session:
            queue(session, subscription.id, ["CERT-1"])

    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
        assert housekeeping.prune(svc, clock.now() + retention)["finished_deliveries"] == 0
        again()  # the receiver's latest message, kept, carried that status
        drain(svc, lambda: settled(svc, subscription.id))
        submit(svc, revoked(days_ago(1)))
        drain(svc, lambda: settled(svc, subscription.id))
        assert housekeeping.prune(svc, clock.now() + retention)["finished_deliveries"] == 2
        again()
        drain(svc, lambda: settled(svc, subscription.id))
    assert [(d.sequence, d.state) for d in deliveries(svc, subscription.id)] == [
        (3, "delivered"),
        (4, "superseded"),
    ]
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["status"]) for e in seen] == [(1, "active"), (3, "revoked")]


def test_a_delivery_gives_up_when_its_retry_window_is_used_up(make_svc):
    svc = make_svc(delivery_retry_window_seconds=2)  # waits of 1 s fit, then 2 s would not
    with serve(scripted(then=503)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
    [delivery] = deliveries(svc, subscription.id)
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("failed", 2, 503)
    assert len(received) == 2


def test_a_receiver_answering_with_a_nul_in_its_body_has_its_failure_recorded(make_svc):
    svc = make_svc(delivery_retry_window_seconds=2)
    answer = b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 6\r\n\r\nab\x00cd\n"
    with dripping(answer, every=60) as url:  # the answer is whole: nothing more is dripped
        subscription = watch(svc, url + "/hook")
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))
    [delivery] = deliveries(svc, subscription.id)
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("failed", 2, 500)
    assert delivery.last_error.endswith("answered 500: ab\ufffdcd\n")


@contextmanager
def directory_svc(make_svc, stub: Respond, **settings) -> Iterator[tuple]:
    with serve(stub) as (url, received):
        yield (
            make_svc(
                directory_base_url=url,
                directory_token_url=f"{url}/token",
                directory_client_id="gateway",
                directory_client_secret="s3cret",
                **settings,
            ),
            received,
        )


def test_the_directory_gets_each_public_record_and_a_new_token_after_a_401(make_svc):
    stub = DirectoryStub()
    with directory_svc(make_svc, stub) as (svc, received):
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, "directory"))
        assert stub.records["CERT-1"]["name"] == "Ada Lovelace"
        stub.stale.add("tok-1")  # the directory revokes the token before it expires
        renamed = event(
            "member.updated", {"last_name": "King"}, occurred_at=f"{days_ago(1)}T12:00:00Z"
        )
        submit(svc, renamed)
        drain(svc, lambda: len(deliveries(svc, "directory")) == 2 and settled(svc, "directory"))
    assert stub.issued == ["tok-1", "tok-2"]
    assert [r.headers.get("Authorization") for r in received if r.method == "PUT"] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    pushed = stub.records["CERT-1"]
    assert pushed["name"] == "Ada King" and pushed["status"] == "active"
    # the lookup's record, no others (not who vouches: the directory knows the certifying body)
    assert set(pushed) == {"certification_id", "verified_at", *RECORD_FIELDS}
    assert [(d.sequence, d.state) for d in deliveries(svc, "directory")] == [
        (1, "delivered"),
        (2, "delivered"),
    ]


def _failing_first_put(stub: DirectoryStub) -> Respond:
    """The directory `stub`, answering 500 to its first PUT."""
    failed: list[Received] = []

    def respond(request: Received) -> tuple:
        if request.method == "PUT" and not failed:
            failed.append(request)
            return 500, None
        return stub(request)

    return respond


def test_a_directory_retry_carrying_a_later_record_leaves_that_change_no_second_push(make_svc):
    """The retry of sequence 1 runs after the revocation queued sequence 2 and pushes the newest
    record (revoked): sequence 2, whose change it carried, is superseded, not pushed again."""
    stub = DirectoryStub()
    with directory_svc(make_svc, _failing_first_put(stub), delivery_retry_base_seconds=60) as (
        svc,
        received,
    ):
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) is answered 500; its retry waits a minute
        [retry] = items(svc, "push_directory")
        submit(svc, revoked(days_ago(1)))
        [sync] = [i for i in items(svc, "sync_verification") if i.state != "done"]
        _run(svc, sync)  # queues sequence 2 (revoked)
        _run(svc, retry, attempt=2)  # sequence 1 pushes what the lookup answers: revoked
        drain(svc, lambda: settled(svc, "directory"))
    assert [(d.sequence, d.state, d.attempts) for d in deliveries(svc, "directory")] == [
        (1, "delivered", 2),
        (2, "superseded", 0),
    ]
    puts = [r.json()["status"] for r in received if r.method == "PUT"]
    assert puts == ["active", "revoked"] and stub.records["CERT-1"]["status"] == "revoked"


def test_a_directory_delivery_is_leased_for_its_slowest_push(make_svc):
    """The lease a push takes outlasts its slowest send: a token fetch and a PUT, then both again
    after a 401, each taking its connect and read timeouts (those of a webhook's attempt)."""
    stub, leased = DirectoryStub(), []

    def respond(request: Received) -> tuple:
        if request.method == "PUT":  # while the push is sent, as its claim left it
            [delivery] = deliveries(svc, "directory")
            leased.append((delivery.state, delivery.lease_until - delivery.last_attempt_at))
        return stub(request)

    with directory_svc(make_svc, respond) as (svc, _received):
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, "directory"))
    [(state, lease)] = leased
    assert state == "sending"
    assert lease.total_seconds() >= 4 * svc.webhooks.longest_attempt


@pytest.mark.parametrize("status", [400, 500])
def test_a_directory_answer_with_a_nul_in_its_body_is_recorded_with_the_push(make_svc, status):
    answer = (
        b"HTTP/1.1 %d Oops\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 6\r\n\r\nab\x00cd\n"
    )
    with dripping(answer % status, every=60) as url:
        svc = make_svc(
            directory_base_url=url,
            directory_token_url=f"{url}/token",
            directory_client_id="gateway",
            directory_client_secret="s3cret",
            delivery_retry_window_seconds=2,
        )
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, "directory"))
    [push] = deliveries(svc, "directory")
    assert (push.state, push.status_code) == ("failed", status)
    assert push.last_error.endswith(f"answered {status}: ab\ufffdcd\n")


def test_without_a_directory_nothing_is_pushed(make_svc):
    svc = make_svc()
    submit(svc, granted(days_ago(30)))
    drain(svc, lambda: bool(deliveries(svc, "directory")) or _synced(svc))
    assert deliveries(svc, "directory") == []
    with svc.db.sessions() as session:
        kinds = set(session.scalars(select(OutboxItem.kind)))
    assert "push_directory" not in kinds and "sync_verification" in kinds


def _synced(svc) -> bool:
    with svc.db.sessions() as session:
        return (
            session.scalar(select(OutboxItem.state).where(OutboxItem.kind == "sync_verification"))
            == "done"
        )


def test_a_push_waiting_when_the_directory_is_no_longer_configured_is_cancelled(make_svc):
    stub = DirectoryStub()
    with directory_svc(make_svc, _failing_first_put(stub), delivery_retry_base_seconds=60) as (
        svc,
        _received,
    ):
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # answered 500; its retry waits a minute
        [retry] = items(svc, "push_directory")
    _run(make_svc(), retry, attempt=2)  # the gateway restarted without a directory
    [delivery] = deliveries(svc, "directory")
    assert (delivery.state, delivery.attempts) == ("cancelled", 1)
    assert "takes no deliveries any more" in delivery.last_error
    [item] = items(svc, "push_directory")
    assert (item.state, item.last_error) == ("done", None)


def test_a_sync_that_changes_nothing_shown_pushes_nothing(make_svc):
    stub = DirectoryStub()
    with directory_svc(make_svc, stub) as (svc, _received):
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, "directory"))
        with svc.db.sessions() as session:
            [sync] = session.scalars(
                select(OutboxItem).where(OutboxItem.kind == "sync_verification")
            )
            before = session.get(VerificationRecord, "CERT-1")
        again = ClaimedItem(
            sync.id, sync.kind, sync.certification_id, sync.payload, None, 2, clock.now()
        )
        verification_sync.sync(svc, again)  # the same standing synced once more
        with svc.db.sessions() as session:
            after = session.get(VerificationRecord, "CERT-1")
    assert [d.sequence for d in deliveries(svc, "directory")] == [1]
    assert after.synced_at > before.synced_at
    assert (after.name, after.status, after.valid_through) == (
        before.name,
        before.status,
        before.valid_through,
    )


def test_two_syncs_waiting_on_one_certification_write_its_record_once(make_svc, postgres_url):
    svc = make_svc()
    subscription = watch(svc, "https://127.0.0.1:9/hook")
    submit(svc, granted(days_ago(30)))
    submit(svc, revoked(days_ago(1)))
    syncs = [
        ClaimedItem(item.id, item.kind, item.certification_id, item.payload, None, 1, clock.now())
        for item in items(svc, "sync_verification")
    ]
    assert len(syncs) == 2
    errors: list[BaseException] = []

    def run(item: ClaimedItem) -> None:
        try:
            verification_sync.sync(svc, item)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    holder = Database(postgres_url)
    with holder.engine.begin() as lock:
        lock.execute(
            text("SELECT 1 FROM certifications WHERE certification_id = 'CERT-1' FOR UPDATE")
        )
        threads = [threading.Thread(target=run, args=(item,)) for item in syncs]
        for thread in threads:
            thread.start()
        waiting = (  # the activity of this database, read afresh (not the transaction's snapshot)
            "SELECT count(*) FROM pg_stat_activity, pg_stat_clear_snapshot()"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 10
        while lock.execute(text(waiting)).scalar() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.execute(text(waiting)).scalar() == 2
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert [d.sequence for d in deliveries(svc, subscription.id)] == [1]
    with svc.db.sessions() as session:
        assert session.get(VerificationRecord, "CERT-1").status == "revoked"


def test_a_message_waits_for_an_earlier_one_queued_with_it(make_svc):
    """Queued together (a status change and its advance notice, say; two notices here), they are
    sent in sequence even when the later one's job runs first; its wait is a second and uses none
    of its attempts."""
    svc = make_svc()
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url, "CERT-1")
        notice = {"status": "active", "scheduled_status": "lapsed"}
        with svc.db.transaction() as session:
            first, second = queue(
                session, subscription.id, ["CERT-1"] * 2, event_type=SCHEDULED, data=notice
            )
        with svc.db.transaction() as session:  # as a worker's claim leaves it
            session.execute(update(OutboxItem).where(OutboxItem.id == second.id).values(attempts=1))
        claimed = {
            item.id: ClaimedItem(item.id, item.kind, "CERT-1", item.payload, None, 1, clock.now())
            for item in (first, second)
        }
        due_at = run_claimed(svc, claimed[second.id])
        assert due_at is not None and (due_at - clock.now()).total_seconds() <= 1
        [put_off] = [i for i in items(svc, second.kind) if i.id == second.id]
        assert (put_off.state, put_off.attempts) == ("retrying", 0)
        assert "goes first" in put_off.last_error
        run_claimed(svc, claimed[first.id])
        run_claimed(svc, claimed[second.id])
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    assert [e["sequence"] for e in seen] == [1, 2]


def test_a_delivery_waits_while_another_of_its_pair_holds_a_lease(make_svc):
    """Sequence 2 is being sent (its lease runs a minute more): sequence 3's job sends nothing
    and is put off, no longer than an attempt may last, its attempt uncounted; once that lease
    has run out (its worker gone), sequence 3 is sent."""
    svc = make_svc()
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        drain(svc, lambda: settled(svc, subscription.id))  # sequence 1
        with svc.db.transaction() as session:
            sending, waiting = queue(session, subscription.id, ["CERT-1"] * 2)

        def lease(until: timedelta) -> None:  # sequence 2, as its claim left it
            with svc.db.transaction() as session:
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == sending.payload["delivery_id"])
                    .values(
                        state="sending",
                        lease_until=clock.now() + until,
                        attempts=1,
                        last_attempt_at=clock.now(),
                    )
                )

        lease(timedelta(minutes=1))
        due_at = _run_waiting(svc, waiting)
        assert 0 < (due_at - clock.now()).total_seconds() <= svc.webhooks.longest_attempt
        [put_off] = [i for i in items(svc, waiting.kind) if i.id == waiting.id]
        assert (put_off.state, put_off.attempts) == ("retrying", 0)
        assert "is being sent" in put_off.last_error
        assert len(received) == 1
        lease(timedelta(seconds=-1))
        assert _run_waiting(svc, waiting) is None
    assert [(d.sequence, d.state) for d in deliveries(svc, subscription.id)] == [
        (1, "delivered"),
        (2, "sending"),
        (3, "delivered"),
    ]
    assert [
        Webhook(subscription.secret).verify(r.body, r.headers)["sequence"] for r in received
    ] == [1, 3]


def test_a_delivery_its_killed_worker_left_sending_is_sent_at_once_when_run_again(make_svc):
    """Its own lease (taken by the worker killed mid-send) holds up no other run of its job."""
    svc = make_svc()
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        [sync] = items(svc, "sync_verification")
        _run(svc, sync)  # the record, and its delivery queued
        [item] = items(svc, "deliver_webhook")
        with svc.db.transaction() as session:  # as the killed worker's claim left it
            session.execute(
                update(Delivery).values(
                    state="sending",
                    lease_until=clock.now() + timedelta(minutes=1),
                    attempts=1,
                    last_attempt_at=clock.now(),
                )
            )
        assert _run_waiting(svc, item) is None
    [delivery] = deliveries(svc, subscription.id)
    assert (delivery.state, delivery.attempts) == ("delivered", 2)
    assert len(received) == 1


def _run_waiting(svc, item: OutboxItem) -> datetime | None:
    """Run `item`'s job as a worker that claimed it would; when it is put off, when it is due."""
    with svc.db.transaction() as session:  # as a worker's claim leaves it
        session.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(attempts=1))
    claimed = ClaimedItem(item.id, item.kind, "CERT-1", item.payload, None, 1, clock.now())
    return run_claimed(svc, claimed)


NOTICE = {"certification_id": "CERT-1", "status": "active", "scheduled_status": "lapsed"}


def _told(svc, subscription, received) -> tuple[list, list]:
    """A subscription's deliveries (sequence, state) and the messages it took (sequence, type)."""
    logged = [(d.sequence, d.state) for d in deliveries(svc, subscription.id)]
    seen = [Webhook(subscription.secret).verify(r.body, r.headers) for r in received]
    return logged, [(e["sequence"], e["type"]) for e in seen]


def _notice(svc, subscription, event_type: str = SCHEDULED) -> OutboxItem:
    """Queue an advance notice, as `gateway.usecases.notices` does."""
    with svc.db.transaction() as session:
        [item] = queue(session, subscription.id, ["CERT-1"], event_type=event_type, data=NOTICE)
    return item


def _a_notice_waiting(svc, url: str) -> tuple:
    """A subscription to `url` told the first record (sequence 1), and its advance notice
    (sequence 2), answered 500, waiting for its retry: the receiver's answers, 200 then 500."""
    subscription = watch(svc, url)
    submit(svc, granted(days_ago(30)))
    work_queued(svc)
    notice = _notice(svc, subscription)
    work_queued(svc)
    return subscription, notice


def test_a_notice_waiting_for_its_retry_is_not_superseded_by_a_later_status_message(make_svc):
    """Only a later message of its own family supersedes a message: the notice's retry is sent
    after the revocation delivered meanwhile, and the revocation superseded no notice."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(200, 500)) as (url, received):
        subscription, notice = _a_notice_waiting(svc, url)
        submit(svc, revoked(days_ago(1)))
        work_queued(svc)  # sequence 3 (revoked) is delivered
        _run(svc, notice, attempt=2)
    delivered = [(1, "delivered"), (2, "delivered"), (3, "delivered")]
    sent = [(1, EVENT_TYPE), (2, SCHEDULED), (3, EVENT_TYPE), (2, SCHEDULED)]
    assert _told(svc, subscription, received) == (delivered, sent)


def test_a_notice_delivered_meanwhile_does_not_stand_for_a_status_message(make_svc):
    """The notice carries the status too, but the receiver's latest status message is the one
    answered 500: its retry is sent."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) is answered 500; its retry waits a minute
        [retry] = items(svc, "deliver_webhook")
        _notice(svc, subscription)
        work_queued(svc)  # sequence 2 (the notice, saying active) is delivered
        _run(svc, retry, attempt=2)
    delivered = [(1, "delivered"), (2, "delivered")]
    sent = [(1, EVENT_TYPE), (2, SCHEDULED), (1, EVENT_TYPE)]
    assert _told(svc, subscription, received) == (delivered, sent)


def test_a_message_settling_supersedes_the_earlier_and_covered_ones_of_its_family_at_once(
    make_svc,
):
    """The log shows them superseded as soon as it settles, not once their own jobs run: the
    notice waiting for its retry when a later notice is delivered, and the status message queued
    with one superseded (its status delivered already)."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(200, 500)) as (url, received):
        subscription, waiting = _a_notice_waiting(svc, url)
        _run(svc, _notice(svc, subscription, CANCELLED))  # sequence 3 is delivered
        with svc.db.transaction() as session:  # status messages, as a backfill queues them
            pushed, covered = queue(session, subscription.id, ["CERT-1"] * 2)
        _run(svc, pushed)  # sequence 4: active, delivered already
        logged = [(1, "delivered"), (2, "superseded"), (3, "delivered")]
        logged += [(4, "superseded"), (5, "superseded")]
        sent = [(1, EVENT_TYPE), (2, SCHEDULED), (3, CANCELLED)]
        assert _told(svc, subscription, received) == (logged, sent)
        _run(svc, waiting, attempt=2)
        _run(svc, covered)
    assert _told(svc, subscription, received) == (logged, sent)


def test_a_failed_notice_requeued_after_a_later_notice_was_delivered_is_superseded(make_svc):
    """The later notice reached the receiver first: the earlier one is not sent after it."""
    svc = make_svc()
    with serve(scripted(200, 500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 (active) is delivered
        failed = _notice(svc, subscription)
        _run(svc, failed, attempt=retry_policy(svc.settings).max_attempts)  # 500 at last: failed
        _notice(svc, subscription, CANCELLED)
        work_queued(svc)  # sequence 3 is delivered
        assert requeue(svc, [failed.id]) == [failed.id]
        drain(svc, lambda: ended(svc, "deliver_webhook"))
    logged = [(1, "delivered"), (2, "superseded"), (3, "delivered")]
    sent = [(1, EVENT_TYPE), (2, SCHEDULED), (3, CANCELLED)]
    assert _told(svc, subscription, received) == (logged, sent)


def test_a_message_is_not_held_up_by_an_earlier_one_never_tried_for_longer_than_a_lease(
    make_svc,
):
    """An earlier message queued with it but never tried since (its job lost, say) goes first
    only while a send of it could still be under way."""
    svc = make_svc()
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        with svc.db.transaction() as session:
            first, second = queue(
                session, subscription.id, ["CERT-1"] * 2, event_type=SCHEDULED, data=NOTICE
            )
            session.execute(
                update(Delivery)
                .where(Delivery.id == first.payload["delivery_id"])
                .values(created_at=clock.now() - timedelta(hours=1))
            )
        assert _run_waiting(svc, second) is None
    assert [
        Webhook(subscription.secret).verify(r.body, r.headers)["sequence"] for r in received
    ] == [2]


def _waiting_on_a_lock(postgres_url: str, count: int = 1) -> None:
    """Wait until `count` sessions of this database wait for a lock (10 s at most)."""
    waiting = (  # the activity of this database, read afresh (not the transaction's snapshot)
        "SELECT count(*) FROM pg_stat_activity, pg_stat_clear_snapshot()"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    watcher = Database(postgres_url)
    try:
        with watcher.engine.connect() as connection:
            deadline = time.monotonic() + 10
            while connection.execute(text(waiting)).scalar() < count:
                assert time.monotonic() < deadline, "nothing waits for a lock"
                time.sleep(0.02)
    finally:
        watcher.engine.dispose()


@contextmanager
def paused_at_first_update(svc, thread_name: str, when: Callable[[], bool]) -> Iterator[tuple]:
    """Hold the thread `thread_name` at its first UPDATE of deliveries once `when()` holds, with
    the locks its transaction took by then, until the `resume` event yielded is set (`paused`
    is set while it waits)."""
    paused, resume = threading.Event(), threading.Event()

    def hold(_connection, _cursor, statement, *_args) -> None:
        if (
            threading.current_thread().name == thread_name
            and not paused.is_set()
            and statement.lstrip().upper().startswith("UPDATE DELIVERIES")
            and when()
        ):
            paused.set()
            resume.wait(10)

    sqlalchemy_event.listen(svc.db.engine, "before_cursor_execute", hold)
    try:
        yield paused, resume
    finally:
        resume.set()
        sqlalchemy_event.remove(svc.db.engine, "before_cursor_execute", hold)


def test_a_claim_while_a_delivery_of_its_pair_settles_waits_for_it_and_never_deadlocks(
    make_svc, postgres_url
):
    """Sequence 2 was answered 2xx and settles (superseding sequence 1, open); sequence 1's retry
    claims meanwhile. Both lock the pair's rows in one order: the claim waits for the settling,
    then finds its delivery superseded; neither is a deadlock's victim (the claim's job retried
    with an error, or the settling's: then the message delivered would be sent again)."""
    svc = make_svc(delivery_retry_base_seconds=60)
    with serve(scripted(500)) as (url, received):
        subscription = watch(svc, url)
        submit(svc, granted(days_ago(30)))
        work_queued(svc)  # sequence 1 fails; its retry waits
        [retry] = items(svc, "deliver_webhook")
        with svc.db.transaction() as session:  # sequence 2, as a backfill queues it
            [second] = queue(session, subscription.id, ["CERT-1"])
        with paused_at_first_update(svc, "settle", lambda: len(received) == 2) as (paused, resume):
            settling = threading.Thread(target=_run, args=(svc, second), name="settle")
            settling.start()  # answered 200, then held while it settles, its locks taken
            assert paused.wait(10)
            claiming = threading.Thread(target=_run, args=(svc, retry, 2), name="claim")
            claiming.start()
            _waiting_on_a_lock(postgres_url)  # the claim waits for a row the settling holds
            resume.set()
            settling.join(10)
            claiming.join(10)
    assert [(i.state, i.last_error) for i in items(svc, "deliver_webhook")] == [("done", None)] * 2
    assert [(d.sequence, d.state) for d in deliveries(svc, subscription.id)] == [
        (1, "superseded"),
        (2, "delivered"),
    ]
    assert len(received) == 2  # sequence 1's 500, sequence 2 once


def test_pruning_while_a_delivery_of_the_pair_is_claimed_never_deadlocks(make_svc, postgres_url):
    """The housekeeping deletes a pair's old deliveries while a new one of the pair is claimed:
    both lock the rows in id order, whatever order a scan finds them in (here the oldest last,
    as a late write of it leaves it), so one waits for the other and neither fails."""
    svc = make_svc()
    submit(svc, granted(days_ago(30)))
    work_queued(svc)  # its public record
    with serve(scripted()) as (url, received):
        subscription = watch(svc, url)
        with svc.db.transaction() as session:
            old = queue(session, subscription.id, ["CERT-1"] * 5)
        long_ago = clock.now() - timedelta(days=svc.settings.subscription_retention_days + 1)
        with svc.db.transaction() as session:  # delivered long ago, their jobs done
            for n, item in enumerate(old):
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == item.payload["delivery_id"])
                    .values(
                        state="delivered",
                        attempts=1,
                        last_attempt_at=long_ago + timedelta(seconds=n),
                        finished_at=long_ago + timedelta(seconds=n),
                    )
                )
            session.execute(update(OutboxItem).values(state="done"))
        with svc.db.transaction() as session:
            [new] = queue(session, subscription.id, ["CERT-1"])
            first, second = (item.payload["delivery_id"] for item in old[:2])
            for attempts in range(1, 11):  # a row's new version may take a slot freed earlier
                written = update(Delivery).where(Delivery.id == first).values(attempts=attempts)
                session.execute(written)
                scanned = session.scalars(text("SELECT id FROM deliveries ORDER BY ctid")).all()
                if scanned.index(first) > scanned.index(second):
                    break
        assert scanned.index(first) > scanned.index(second)  # a scan finds it after the second
        pruned: list[int] = []
        holder = Database(postgres_url)
        with holder.engine.begin() as lock:  # holds the second, where the scan waits
            lock.execute(text(f"SELECT 1 FROM deliveries WHERE id = {second} FOR UPDATE"))
            pruning = threading.Thread(
                target=lambda: pruned.append(housekeeping.prune_deliveries(svc, clock.now()))
            )
            pruning.start()
            _waiting_on_a_lock(postgres_url)
            claiming = threading.Thread(target=_run, args=(svc, new))
            claiming.start()
            _waiting_on_a_lock(postgres_url, 2)
        holder.engine.dispose()
        pruning.join(10)
        claiming.join(10)
    assert pruned == [4]  # all but the last delivered and tried
    [item] = [i for i in items(svc, "deliver_webhook") if i.id == new.id]
    assert (item.state, item.last_error) == ("done", None)
    assert [(d.sequence, d.state) for d in deliveries(svc, subscription.id)] == [
        (5, "delivered"),
        (6, "delivered"),
    ]
    assert len(received) == 1
