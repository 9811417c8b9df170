"""A worker's drain: its threads stay while items are due, and no item runs twice at once."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import func, select

from gateway.store.models import Badge, JobOutcome, OutboxItem
from gateway.usecases import intake
from jobs.engine import dispatch, outbox
from tests.support.credly_standin import CredlyStandIn
from tests.support.database import truncate
from tests.support.events import granted

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def make_svc(make_app, postgres_url, redis_client, redis_url):
    truncate(postgres_url)

    def factory(**settings: object):
        app = make_app(database_url=postgres_url, redis_url=redis_url, **settings)
        return app.extensions["gateway"]

    yield factory
    truncate(postgres_url)


def add_items(svc, count: int, **payload: object) -> None:
    """`count` sync_verification items due now, committed without waking a worker."""
    with svc.db.transaction() as session:
        session.add_all(
            OutboxItem(kind="sync_verification", certification_id=f"C-{n}", payload=payload)
            for n in range(count)
        )


def test_items_committed_while_a_drain_runs_are_worked_on_its_other_threads(make_svc, monkeypatch):
    svc = make_svc(job_concurrency=4)
    first_started, release, all_three = threading.Event(), threading.Event(), threading.Event()
    together = threading.Barrier(3, action=all_three.set)

    def handler(s, item):
        if item.payload.get("first"):  # holds its thread until the later items ran at once
            first_started.set()
            release.wait(30)
        else:
            together.wait(30)

    monkeypatch.setitem(outbox.HANDLERS, "sync_verification", handler)
    empty_claims = threading.Semaphore(0)
    claim = outbox.claim_due

    def counted_claim(s, batch):
        items = claim(s, batch)
        if not items:
            empty_claims.release()
        return items

    monkeypatch.setattr(outbox, "claim_due", counted_claim)
    add_items(svc, 1, first=True)
    drain = threading.Thread(target=dispatch.drain)
    drain.start()
    ran_at_once = False
    try:
        assert first_started.wait(20)
        assert all(empty_claims.acquire(timeout=20) for _ in range(3))  # the others found none
        add_items(svc, 3)  # a burst reaching the running drain
        ran_at_once = all_three.wait(20)
    finally:
        release.set()
        if not ran_at_once:
            together.abort()  # the drain ends
        drain.join(15)
    assert ran_at_once and not drain.is_alive()
    with svc.db.sessions() as session:
        ends = session.execute(select(OutboxItem.state, OutboxItem.attempts)).all()
    assert sorted(ends) == [("done", 1)] * 4


def test_an_idle_drain_ends_once_every_thread_found_nothing_due(make_svc, monkeypatch):
    svc = make_svc(job_concurrency=4)
    claims = []
    claim = outbox.claim_due
    monkeypatch.setattr(outbox, "claim_due", lambda s, batch: claims.append(1) or claim(s, batch))
    add_items(svc, 2)
    ended = threading.Event()
    started = time.monotonic()
    threading.Thread(target=lambda: (dispatch.drain(), ended.set())).start()
    assert ended.wait(20)  # not DRAIN_SECONDS (60 s)
    # No thread claims again with none of them busy: 4 first claims, 2 after the items ran, and
    # the lookout's, one every IDLE_POLL_SECONDS while the drain lasted (a slow machine's items
    # run longer, and it polls more).
    polls = (time.monotonic() - started) / outbox.IDLE_POLL_SECONDS
    assert len(claims) <= 4 + 2 + 4 + polls, (len(claims), polls)


def test_a_job_waiting_past_its_lease_for_a_credly_connection_gives_its_attempt_back(
    make_svc, caplog
):
    # One connection, a Credly answering in 0.2 s, 12 threads and leases of 3 s: the issues
    # queued last behind the others would wait for a connection past half their lease (1.5 s),
    # while one that gets it in time has 1.5 s left for its call, even on a busy machine.
    with CredlyStandIn(latency=0.2) as standin:
        svc = make_svc(
            credly_api_base=standin.url,
            credly_organization_id=standin.organization_id,
            credly_auth_token=standin.token,
            credly_badge_templates={"RMA": "tmpl-rma"},
            credly_max_connections=1,
            job_concurrency=12,
            job_timeout_seconds=3,
        )
        for n in range(16):
            body = granted("2026-03-01", cert=f"C-{n}")
            body["data"]["member"]["email"] = f"ada{n}@example.org"
            intake.submit_event(svc, body)
        with caplog.at_level(logging.INFO, logger="jobs.engine.outbox"):
            dispatch.drain()
        operations = [r["operation"] for r in standin.requests_seen()]
    with svc.db.sessions() as session:
        ends = session.execute(select(OutboxItem.kind, OutboxItem.state, OutboxItem.attempts))
        ends = sorted(ends.all())
        done = session.scalar(
            select(func.sum(JobOutcome.total)).where(JobOutcome.outcome == "done")
        )
        badge_attempts = session.scalars(select(Badge.attempts)).all()
    assert any(m.startswith("attempt given back") for m in caplog.messages)
    assert ends == [("issue_badge", "done", 1)] * 16 + [("sync_verification", "done", 1)] * 16
    # A job given back called no Credly: its badge's next attempt is a first one, an issue alone.
    assert done == 32 and operations == ["issue"] * 16
    assert badge_attempts == [1] * 16
