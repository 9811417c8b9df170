"""From outbox to running jobs: enqueue on RQ (or run in-process), the relay, and requeueing."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol

from redis.exceptions import RedisError
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job
from sqlalchemy import select, update

from gateway.services import Services
from gateway.store.models import OutboxItem, utcnow
from jobs.claim import TERMINAL
from jobs.outbox import JobFailed, mark_failed_when_exhausted, run_outbox_item
from jobs.retry import MAX_ATTEMPTS, backoff, schedule

log = logging.getLogger("jobs.dispatch")

RELAY_GRACE = timedelta(seconds=2)
DAY = 24 * 3600


class Dispatcher(Protocol):
    """Turns committed outbox items into jobs."""

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        """Start (or queue) the jobs of these outbox items; never raises for a broker outage."""

    def unqueued(self, outbox_ids: list[int]) -> list[int]:
        """Those of these items whose job the broker does not hold."""


class RQDispatcher:
    """Enqueue outbox items on RQ with the deterministic job id `outbox-<id>`."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.queue = Queue(svc.settings.queue_name, connection=svc.redis)
        self.intervals = schedule(svc.settings.job_retry_base_seconds)

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        # An item stays `pending` until a worker claims it; the relay finds one whose enqueue
        # did not happen. The queue's registration waits in `pipe` and is sent once at the end.
        pipe = self.svc.redis.pipeline()
        for outbox_id in outbox_ids:
            try:
                self.queue.enqueue(
                    run_outbox_item,
                    outbox_id,
                    job_id=f"outbox-{outbox_id}",
                    unique=True,
                    job_timeout=self.svc.settings.job_timeout_seconds,
                    retry=Retry(max=MAX_ATTEMPTS, interval=self.intervals),
                    on_failure=Callback(mark_failed_when_exhausted),
                    result_ttl=DAY,
                    failure_ttl=30 * DAY,
                    pipeline=pipe,
                )
            except DuplicateJobError:
                pass  # already queued: relaying twice enqueues once
            except RedisError as exc:
                log.warning(
                    "Redis unavailable; the relay will enqueue later", extra={"error": str(exc)}
                )
                return
        try:
            pipe.execute()
        except RedisError as exc:  # the jobs are queued; only the queue's registration missed
            log.warning("Redis unavailable after enqueueing", extra={"error": str(exc)})

    def unqueued(self, outbox_ids: list[int]) -> list[int]:
        pipe = self.svc.redis.pipeline(transaction=False)  # one round trip for all of them
        for outbox_id in outbox_ids:
            pipe.exists(Job.key_for(f"outbox-{outbox_id}"))
        held = pipe.execute() if outbox_ids else []
        return [oid for oid, exists in zip(outbox_ids, held, strict=True) if not exists]

    def forget(self, outbox_id: int) -> None:
        """Delete the job of an item from Redis, so it can be enqueued afresh."""
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(f"outbox-{outbox_id}", connection=self.svc.redis).delete()


class InProcessDispatcher:
    """The embedded default: run jobs on a background thread of this process, with retries."""

    def __init__(self, svc: Services, *, synchronous: bool = False) -> None:
        self.svc = svc
        self.synchronous = synchronous
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self._running: set[int] = set()
        self._lock = threading.Lock()

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        for outbox_id in outbox_ids:
            with self._lock:
                if outbox_id in self._running:
                    continue
                self._running.add(outbox_id)
            if self.synchronous:
                self._run(outbox_id)
            else:
                self.executor.submit(self._run, outbox_id)

    def unqueued(self, outbox_ids: list[int]) -> list[int]:
        with self._lock:
            return [oid for oid in outbox_ids if oid not in self._running]

    def _run(self, outbox_id: int, attempt: int = 1) -> None:
        """One attempt; a retry waits on a timer, so the job thread serves other items meanwhile."""
        try:
            retry = run_outbox_item(outbox_id)
        except JobFailed as exc:
            log.error("job failed", extra={"outbox_id": outbox_id, "error": str(exc)})
            retry = None
        except Exception:
            log.exception("job error", extra={"outbox_id": outbox_id})
            retry = (
                Retry(max=MAX_ATTEMPTS, interval=backoff(attempt, self._base))
                if attempt < MAX_ATTEMPTS
                else None  # left `retrying`: the relay at the next start picks it up
            )
        if retry is None:
            with self._lock:
                self._running.discard(outbox_id)
        elif self.synchronous:
            time.sleep(retry.intervals[0])
            self._run(outbox_id, attempt + 1)
        else:
            timer = threading.Timer(
                retry.intervals[0], self.executor.submit, args=(self._run, outbox_id, attempt + 1)
            )
            timer.daemon = True
            timer.start()

    @property
    def _base(self) -> int:
        return self.svc.settings.job_retry_base_seconds


def make_dispatcher(svc: Services, *, synchronous: bool = False) -> Dispatcher:
    """RQ when Redis is configured, else in-process."""
    if svc.redis is None:
        return InProcessDispatcher(svc, synchronous=synchronous)
    return RQDispatcher(svc)


def relay(svc: Services, dispatcher: Dispatcher) -> int:
    """Enqueue every unfinished item whose job the broker does not hold; returns how many.

    Only items older than RELAY_GRACE: a younger one may be between its commit and its enqueue.
    """
    cutoff = utcnow() - RELAY_GRACE
    with svc.db.sessions() as session:
        rows = list(
            session.scalars(
                select(OutboxItem.id)
                .where(OutboxItem.state.not_in(TERMINAL), OutboxItem.created_at <= cutoff)
                .order_by(OutboxItem.id)
            )
        )
    try:
        lost = dispatcher.unqueued(rows)
    except RedisError as exc:
        log.warning("relay: Redis unavailable", extra={"error": str(exc)})
        return 0
    if lost:
        with svc.db.transaction() as session:
            session.execute(
                update(OutboxItem).where(OutboxItem.id.in_(lost)).values(state="pending")
            )
        dispatcher.dispatch(lost)
        log.info("relayed %d outbox items", len(lost))
    return len(lost)


def requeue(svc: Services, dispatcher: Dispatcher, outbox_ids: list[int]) -> list[int]:
    """Put failed items back: reset their attempts and enqueue them afresh."""
    with svc.db.transaction() as session:
        ids = list(
            session.scalars(
                select(OutboxItem.id).where(
                    OutboxItem.id.in_(outbox_ids), OutboxItem.state == "failed"
                )
            )
        )
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(ids))
            .values(state="pending", attempts=0, last_error=None, finished_at=None)
        )
    if isinstance(dispatcher, RQDispatcher):
        for outbox_id in ids:
            dispatcher.forget(outbox_id)
    dispatcher.dispatch(ids)
    return ids
