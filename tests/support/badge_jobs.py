"""Badge jobs against a Credly stood in for by `responses`: its URLs and answers, and running the
jobs on the real Redis until they settle."""

from __future__ import annotations

import time
from collections.abc import Callable

from rq import Queue
from rq.scheduler import RQScheduler
from sqlalchemy import update

from gateway.platform import clock
from gateway.store.models import Badge, OutboxItem
from gateway.usecases import intake
from tests.support.queue import work_queued

CREDLY = "https://api.credly.test/v1"
ORG = "org-1"
BADGES = f"{CREDLY}/organizations/{ORG}/badges"
#: The settings of an app whose Credly calls go to CREDLY (answered by `responses`).
LIVE_CREDLY = {
    "credly_api_base": CREDLY,
    "credly_organization_id": ORG,
    "credly_auth_token": "tok",
    "credly_badge_templates": {"RMA": "tmpl-rma"},
}
EMPTY_LIST = {"data": [], "metadata": {"next_page_url": None}}


def badge_json(badge_id: str = "b-1", state: str = "pending") -> dict:
    """Credly's answer about one badge of CERT-1."""
    return {
        "data": {
            "id": badge_id,
            "state": state,
            "issuer_earner_id": "CERT-1",
            "badge_template": {"id": "tmpl-rma"},
            "recipient_email": "ada@example.org",
            "issued_to_first_name": "Ada",
            "issued_to_last_name": "Lovelace",
            "issued_at": "2026-03-01T00:00:00.000Z",
            "expires_at": None,
        }
    }


def drain(svc, until: Callable[[], bool], timeout: float = 30) -> None:
    """Work the queue (moving due retries back onto it) until `until()` holds."""
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    scheduler = RQScheduler([queue], connection=svc.redis)
    scheduler.acquire_locks()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            work_queued(svc)
            if until():
                return
            scheduler.enqueue_scheduled_jobs()
            time.sleep(0.2)
    finally:
        scheduler.release_locks()
    raise AssertionError("jobs did not settle in time")


def retries_due(svc) -> None:
    """Make every item waiting for its retry due now and wake the workers, as the wait ending
    would: for a test that holds a retry back a minute, so that no drain runs it before the
    test's next step however slow the machine."""
    with svc.db.transaction() as session:
        session.execute(
            update(OutboxItem).where(OutboxItem.state == "retrying").values(due_at=clock.now())
        )
    svc.dispatcher.wake()


def submit(svc, body):
    """Record an event through the intake (its commit wakes the workers for its outbox items)."""
    return intake.submit_event(svc, body)


def items(svc, kind: str) -> list[OutboxItem]:
    """Every outbox item of that kind."""
    with svc.db.sessions() as session:
        return session.query(OutboxItem).filter_by(kind=kind).all()


def badges(svc) -> list[Badge]:
    """Every badge row."""
    with svc.db.sessions() as session:
        return session.query(Badge).all()


#: The states of an item that has ended (a failed one a later job made good is superseded).
ENDED = ("done", "failed", "superseded")


def ended(svc, kind: str, states: tuple[str, ...] = ENDED) -> bool:
    """Whether the outbox holds `kind` items and every one of them is in one of `states`."""
    found = items(svc, kind)
    return bool(found) and all(i.state in states for i in found)


def issue_done(svc) -> bool:
    """Whether issue items exist and every one has ended."""
    return ended(svc, "issue_badge")
