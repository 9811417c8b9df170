"""From outbox to running jobs: waking workers (RQ, or a thread in-process), the relay, requeueing.

The outbox table is the work queue: a worker claims the next due item itself (`jobs.engine.outbox`).
What travels through RQ is a wake-up, the `drain` job, which works due items on
JOB_CONCURRENCY threads until none is left (a thread that finds none waits while another still
runs items, and claims again: `outbox.Crew`). A worker so pays RQ's cost per wake-up, not per
item, and a slow Credly answer holds up one thread, not the worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import reduce

from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import bindparam, func, select, update

from gateway.platform import clock
from gateway.store.db import UNAVAILABLE, unavailable_reason, wake_after_commit
from gateway.store.models import OutboxItem, UTCDateTime
from gateway.usecases.services import Services
from jobs.cron import InProcessCron
from jobs.engine import context
from jobs.engine.outbox import Crew, Drained, stop_working, work_due

log = logging.getLogger("jobs.engine.dispatch")

RELAY_GRACE = timedelta(seconds=2)
DAY = 24 * 3600
#: How long one drain job claims items before it hands over to a follow-up.
DRAIN_SECONDS = 60
#: How long a wake-up stays pending: a drain job queued, not yet started.
WAKE_SECONDS = 30
#: How long the embedded server, asked to stop, waits for the item its jobs thread is running.
STOP_GRACE_SECONDS = 5.0
#: After Redis failed a wake-up, how long a process sends none for newly committed items (its
#: relay wakes the workers later): a Redis that hangs would otherwise hold every request.
BROKER_RETRY_SECONDS = 5.0

DUE = (
    select(func.count())
    .select_from(OutboxItem)
    .where(OutboxItem.due_at <= bindparam("cutoff", type_=UTCDateTime()))
)


#: An item due beyond the first `threads` ones.
BEYOND = (
    select(OutboxItem.id)
    .where(OutboxItem.due_at <= bindparam("now", type_=UTCDateTime()))
    .order_by(OutboxItem.due_at)
    .offset(bindparam("threads"))
    .limit(1)
)
#: When the next item is due (a retry, a lease running out); None when none is unsettled.
NEXT_DUE = select(func.min(OutboxItem.due_at))


class Dispatcher(ABC):
    """Has committed outbox items worked."""

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        """Have these newly committed items worked soon; never raises for a broker outage."""
        if any(True for _ in outbox_ids):
            self.wake()

    @abstractmethod
    def wake(self) -> None:
        """Have the due items worked soon; never raises for a broker outage."""

    def wake_overdue(self) -> None:
        """Have items worked that have been due a while (the relay): as `wake`."""
        self.wake()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:  # noqa: B027 (not abstract)
        """The serving process is stopping (SIGINT, SIGTERM): nothing to do unless it works
        items on a thread of its own (`InProcessDispatcher`)."""


def _seconds_until(when: datetime) -> float:
    return max(0.0, (when - clock.now()).total_seconds())


class RQDispatcher(Dispatcher):
    """Wake the workers of the RQ queue: one pending `drain` job at a time."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.queue = Queue(svc.settings.queue_name, connection=svc.redis)
        self.flag = f"{svc.settings.queue_name}:outbox-wake"
        self.timeout = DRAIN_SECONDS + svc.settings.job_timeout_seconds + 30
        self._down_until = 0.0  # no wake-up is sent before (time.monotonic())

    def dispatch(self, outbox_ids: Iterable[int]) -> None:
        """As any dispatcher, but for BROKER_RETRY_SECONDS after Redis failed: the relay wakes
        the workers for these items then (a request does not wait on a Redis that hangs)."""
        if time.monotonic() >= self._down_until:
            super().dispatch(outbox_ids)

    def wake(self) -> None:
        # The flag says a drain job is queued and not yet started (it clears the flag before
        # claiming anything), so that job will see every item committed before this call.
        try:
            if self.svc.redis.set(self.flag, 1, nx=True, ex=WAKE_SECONDS):
                try:
                    self.queue.enqueue(
                        drain, job_timeout=self.timeout, result_ttl=0, failure_ttl=DAY
                    )
                except RedisError:
                    with contextlib.suppress(RedisError):  # no job behind it: wake again later
                        self.svc.redis.delete(self.flag)
                    raise
        except RedisError as exc:
            self._broker_down(exc)

    def wake_overdue(self) -> None:
        """As `wake`, but first drop a wake flag that no queued drain job stands behind: one set
        by a call whose answer was lost (a Redis that hung, then did it), which would hold off
        every wake-up until it expires. At worst one drain job too many is queued."""
        try:
            if self.svc.redis.exists(self.flag) and self.queue.count == 0:
                self.svc.redis.delete(self.flag)
        except RedisError as exc:
            self._broker_down(exc)
            return
        self.wake()

    def wake_at(self, when: datetime) -> None:
        """Wake a worker at `when` (one job a second at most), through RQ's scheduler, which
        keeps the real time: `when` is on the gateway's clock, so it goes by how far off it is."""
        second = int(time.time() + _seconds_until(when)) + 1
        try:
            self.queue.enqueue_at(
                datetime.fromtimestamp(second, UTC),
                drain,
                job_id=f"outbox-drain-at-{second}",
                job_timeout=self.timeout,
                result_ttl=0,
                failure_ttl=DAY,
            )
        except RedisError as exc:
            self._broker_down(exc)

    def _broker_down(self, exc: RedisError) -> None:
        self._down_until = time.monotonic() + BROKER_RETRY_SECONDS
        log.warning(
            "Redis unavailable; the relay will wake a worker later", extra={"error": str(exc)}
        )


def drain() -> None:
    """The RQ job: work the due items on JOB_CONCURRENCY threads for up to DRAIN_SECONDS, then
    wake the workers again for what is left and for the earliest retry. With the database
    unavailable it ends in one warning line: the relay wakes the workers again for what is due
    (items claimed meanwhile are claimed again once their lease ends)."""
    try:
        _drain()
    except UNAVAILABLE as exc:
        log.warning("drain: database unavailable: %s", unavailable_reason(exc))


def _drain() -> None:
    svc = context.services()
    if svc.dispatcher is None:  # a plain `rq worker` built the services from the environment
        svc.dispatcher = RQDispatcher(svc)
    dispatcher = svc.dispatcher
    if not isinstance(dispatcher, RQDispatcher):
        raise RuntimeError("the drain job runs in a worker with REDIS_URL set")
    svc.redis.delete(dispatcher.flag)
    threads = svc.settings.job_concurrency
    with svc.db.engine.connect() as connection:
        backlog = connection.scalar(BEYOND, {"now": clock.now(), "threads": threads})
    if backlog is not None:  # more than this worker's threads take at once: wake another one
        dispatcher.wake()
    crew = Crew(threads)  # a thread finding nothing due waits while another still runs items
    with ThreadPoolExecutor(threads, thread_name_prefix="drain") as pool:
        passes = pool.map(lambda _: work_due(svc, seconds=DRAIN_SECONDS, crew=crew), range(threads))
        left = reduce(Drained.merge, passes, Drained())
    if left.more:
        dispatcher.wake()
    if left.retry_at is not None:
        dispatcher.wake_at(left.retry_at)


class InProcessDispatcher(Dispatcher):
    """The embedded default: due items worked on a background thread of this process.

    `synchronous` works them in the caller's thread instead (tests, one-off commands), waiting
    out retries until every due item has settled. `polling` (the serving process) keeps the
    thread for the process's life, looking for due items every RELAY_INTERVAL_SECONDS too: those
    that commands in other processes queue; and runs the daily cron on another (`InProcessCron`),
    so that a long sweep or reconciliation holds up no item.
    """

    def __init__(self, svc: Services, *, synchronous: bool = False, polling: bool = False) -> None:
        self.svc = svc
        self.synchronous = synchronous
        self.polling = polling and not synchronous
        self._woken = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._closed = False
        self._cron = InProcessCron(svc) if self.polling else None
        if self._cron is not None:
            self.wake()
            self._cron.start()

    def close(self) -> None:
        """Stop working items in this process, once the pass under way has ended, and the daily
        cron, once the step of its run under way has."""
        with self._lock:
            self._closed, thread = True, self._thread
        self._woken.set()
        if self._cron is not None:
            self._cron.stop()
        for ending in (thread, self._cron):
            if ending is not None:
                ending.join()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """The server is stopping (SIGINT, SIGTERM): take no more items, give back at once the
        claimed ones not started, wait for the one under way up to STOP_GRACE_SECONDS (or
        `grace`, if less: the time the server has left); log it. The daily cron stops too, its
        run under way ending after its step under way (within that time, or left to end with
        the process: a sweep left mid-way is done by the next)."""
        given_back = stop_working(self.svc)
        with self._lock:
            self._closed, thread = True, self._thread
        self._woken.set()
        if self._cron is not None:
            self._cron.stop()
        deadline = time.monotonic() + min(grace, STOP_GRACE_SECONDS)
        for ending in (thread, self._cron):
            if ending is not None:
                ending.join(max(0.0, deadline - time.monotonic()))
        left = thread is not None and thread.is_alive()
        log.info(
            "jobs stopped: %d claimed items given back unstarted; %s",
            given_back,
            "an item under way is left to its lease" if left else "none left running",
        )

    def wake(self) -> None:
        if self.synchronous:
            self._work_here()
            return
        with self._lock:  # the thread decides to stop under the lock too: no wake-up is lost
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
                self._thread.start()
            self._woken.set()

    def _work_here(self) -> None:
        if getattr(self._local, "working", False):
            return  # a handler's own new items: the pass under way takes them
        self._local.working = True
        try:
            while (retry_at := work_due(self.svc).retry_at) is not None:
                time.sleep(_seconds_until(retry_at))
        finally:
            self._local.working = False

    def _loop(self) -> None:
        wait: float | None = None
        interval = self.svc.settings.relay_interval_seconds
        while True:
            self._woken.wait(wait)
            self._woken.clear()
            if self._closed:
                return
            try:
                work_due(self.svc)
                with self.svc.db.engine.connect() as connection:
                    next_due = connection.scalar(NEXT_DUE)
            except UNAVAILABLE as exc:  # the database's state (locked, away): one line a pass
                log.warning(
                    "in-process jobs pass: database unavailable: %s", unavailable_reason(exc)
                )
                next_due = clock.now() + timedelta(seconds=interval)
            except Exception:  # the thread must outlive any other failure of a pass
                log.exception("in-process jobs pass failed")
                next_due = clock.now() + timedelta(seconds=interval)
            with self._lock:
                if next_due is None and not self._woken.is_set() and not self.polling:
                    self._thread = None  # nothing unsettled: the next wake-up starts another
                    return
            wait = None if next_due is None else _seconds_until(next_due)
            if self.polling:
                wait = min(wait, interval) if wait is not None else interval


class LeftToServer(Dispatcher):
    """The embedded default in a command other than the server (`gateway sweep`, `gateway jobs
    requeue`, ...): its items are left to the serving process, which looks for due items every
    RELAY_INTERVAL_SECONDS. Worked here, they would stop half-done when the command ends."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def wake(self) -> None:
        log.info("jobs left to the serving process (`gateway run`)")


class JobThread(Enum):
    """Where a process without Redis (the embedded default) has its jobs worked."""

    ON_DEMAND = "a thread of this process, while items are unsettled"
    POLLING = "a thread of this process for its life, also polling (the server)"
    IN_SERVER = "the serving process (any other command)"


def make_dispatcher(
    svc: Services, *, synchronous: bool = False, jobs: JobThread = JobThread.ON_DEMAND
) -> Dispatcher:
    """RQ when Redis is configured; else in-process as `jobs` says, or in the caller's thread
    (`synchronous`)."""
    if svc.redis is not None:
        return RQDispatcher(svc)
    if jobs is JobThread.IN_SERVER and not synchronous:
        return LeftToServer(svc)
    return InProcessDispatcher(svc, synchronous=synchronous, polling=jobs is JobThread.POLLING)


def relay(svc: Services, dispatcher: Dispatcher) -> int:
    """Wake the workers when items have been due for RELAY_GRACE (a wake-up lost with Redis, a
    worker stopped mid-attempt, a retry whose time came); returns how many are due.

    Younger items are left alone: their own wake-up may be on its way.
    """
    [(due,)] = svc.db.read(DUE, {"cutoff": clock.now() - RELAY_GRACE})
    if due:
        dispatcher.wake_overdue()
        log.info("relay: %d outbox items due", due)
    return due


#: How many failed items one transaction of a requeue puts back, so that any number can be: on
#: SQLite each id is a variable of its statement (32,766 at most, unless SQLite was built with
#: another limit); on PostgreSQL, which gets them as one array, no transaction grows with them.
REQUEUE_CHUNK = 5000

#: The next REQUEUE_CHUNK failed items after `after`, in id order.
_FAILED_AFTER = (
    select(OutboxItem.id)
    .where(OutboxItem.state == "failed", OutboxItem.id > bindparam("after"))
    .order_by(OutboxItem.id)
    .limit(bindparam("chunk"))
)
#: The failed items among `ids` put back: attempts reset, due at once.
_REQUEUE = (
    update(OutboxItem)
    .where(OutboxItem.id.in_(bindparam("ids", expanding=True)), OutboxItem.state == "failed")
    .values(
        state="pending",
        attempts=0,
        last_error=None,
        finished_at=None,
        due_at=bindparam("now", type_=UTCDateTime()),
    )
    .returning(OutboxItem.id)
)


def requeue(
    svc: Services,
    outbox_ids: Iterable[int] | None = None,
    requeued: Callable[[list[int]], object] | None = None,
) -> list[int]:
    """Put failed items back, those of `outbox_ids` or (None) every one: reset their attempts
    and have them worked afresh; returns their ids in order.

    Any number is put back REQUEUE_CHUNK at a time, each chunk in a transaction of its own that
    wakes the workers for its items; `requeued` is given the ids of each chunk once it has
    committed (those stay put back should a later chunk fail)."""
    done: list[int] = []
    for chunk in _requeue_chunks(svc, outbox_ids):
        with svc.db.begin() as connection:
            params = {"ids": chunk, "now": clock.now()}
            ids = sorted(i for (i,) in svc.db.execute(connection, _REQUEUE, params))
            wake_after_commit(ids)
        done += ids
        if requeued is not None and ids:
            requeued(ids)
    return done


def _requeue_chunks(svc: Services, outbox_ids: Iterable[int] | None) -> Iterator[list[int]]:
    """The ids to requeue, REQUEUE_CHUNK at a time in id order: those given, or every failed
    item's, read a chunk at a time."""
    if outbox_ids is not None:
        given = sorted(set(outbox_ids))
        for start in range(0, len(given), REQUEUE_CHUNK):
            yield given[start : start + REQUEUE_CHUNK]
        return
    after = 0
    while chunk := [
        i for (i,) in svc.db.read(_FAILED_AFTER, {"after": after, "chunk": REQUEUE_CHUNK})
    ]:
        yield chunk
        after = chunk[-1]
