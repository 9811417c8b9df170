"""The work behind outbox items: the handler and retry policy of each kind (`HANDLERS`,
`POLICIES`), a process's threads claiming due items and running them (`Crew`, `work_due`), how
each attempt ends (done, retried, failed, put off, or paused while Credly refuses the token)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, bindparam, select, update

from connectors.credly.client import holding_a_connection
from connectors.credly.errors import NoConnection, Unauthorized
from connectors.errors import PermanentError, TransientError, describe, without_emails
from gateway.platform import clock, logs, metrics
from gateway.platform.config import Settings
from gateway.rules import kinds
from gateway.store.db import retry_disconnect
from gateway.store.models import FINISHED, OutboxItem, UTCDateTime
from gateway.usecases.credly_token import token_state
from gateway.usecases.services import Services
from jobs import credly_notifications, deliveries, notices, verification_sync
from jobs.badges import issue, replace, revoke
from jobs.badges import rows as badge_rows
from jobs.engine.claim import (
    CLAIM_BATCH,
    CLAIM_DUE,
    ENDED,
    GIVE_BACK,
    ClaimedItem,
    Handler,
    ended,
    record_end,
)
from jobs.engine.retry import MAX_ATTEMPTS, Deferred, RetryPolicy

log = logging.getLogger("jobs.engine.outbox")

HANDLERS: dict[str, Handler] = {
    kinds.ISSUE_BADGE: issue.issue,
    kinds.REPLACE_BADGE: replace.replace,
    kinds.REVOKE_BADGE: revoke.revoke,
    kinds.REVOKE_DUPLICATE: revoke.revoke_duplicate,
    kinds.SYNC_VERIFICATION: verification_sync.sync,
    kinds.CREDLY_NOTIFICATION: credly_notifications.process,
    kinds.DELIVER_WEBHOOK: deliveries.deliver_webhook,
    kinds.PUSH_DIRECTORY: deliveries.push_directory,
    kinds.REVIEW_NOTICES: notices.review_job,
}

#: What else a final failure of an item of the kind records, in the transaction of its end.
GIVEN_UP: dict[str, Callable[[Services, Connection, ClaimedItem, str], None]] = {
    kinds.ISSUE_BADGE: badge_rows.given_up,
    kinds.REPLACE_BADGE: badge_rows.given_up,
    kinds.REVOKE_BADGE: badge_rows.given_up,
    kinds.CREDLY_NOTIFICATION: credly_notifications.given_up,
}

#: Kinds that call Credly: they wait while Credly refuses the token
# (gateway/usecases/credly_token.py).
CREDLY_KINDS = frozenset(
    {
        kinds.ISSUE_BADGE,
        kinds.REPLACE_BADGE,
        kinds.REVOKE_BADGE,
        kinds.REVOKE_DUPLICATE,
        kinds.CREDLY_NOTIFICATION,
    }
)

#: The last error of a Credly job the pause holds back (`_pause`).
WAITING = "waiting for a working Credly token"

#: The Credly jobs the pause holds back, due now instead.
RESUME_HELD = (
    update(OutboxItem)
    .where(
        OutboxItem.state == "retrying",
        OutboxItem.kind.in_(sorted(CREDLY_KINDS)),
        OutboxItem.last_error.like(f"{WAITING}:%"),
        OutboxItem.due_at > bindparam("now", type_=UTCDateTime()),
    )
    .values(due_at=bindparam("now", type_=UTCDateTime()))
    .returning(OutboxItem.id)
)

#: A paused attempt: due again later, the attempt its claim counted given back.
PAUSED = (
    update(OutboxItem)
    .where(OutboxItem.id == bindparam("outbox_id"))
    .values(
        state="retrying",
        attempts=OutboxItem.attempts - 1,
        last_error=bindparam("last_error"),
        due_at=bindparam("due_at", type_=UTCDateTime()),
    )
)

#: Built once: an item's recorded state.
STATE = select(OutboxItem.state).where(OutboxItem.id == bindparam("outbox_id"))

#: Kinds retried on their own policy; the others get MAX_ATTEMPTS on JOB_RETRY_BASE_SECONDS.
POLICIES: dict[str, Callable[[Settings], RetryPolicy]] = {
    kinds.DELIVER_WEBHOOK: deliveries.retry_policy,
    kinds.PUSH_DIRECTORY: deliveries.retry_policy,
}


@dataclass
class Drained:
    """What a pass over the due items left behind."""

    #: The earliest retry the pass scheduled.
    retry_at: datetime | None = None
    #: Whether it stopped for time with items perhaps still due.
    more: bool = False

    def merge(self, other: Drained) -> Drained:
        """What two passes together left behind."""
        retries = [t for t in (self.retry_at, other.retry_at) if t is not None]
        return Drained(min(retries, default=None), self.more or other.more)


#: Set when this process is asked to stop: a pass of due items ends after the item at hand,
#: giving back the rest of its claim, and claims nothing more.
STOPPING = threading.Event()

#: How often the threads of a drain that found nothing due claim again (one of them at a time)
#: while a sibling still runs items.
IDLE_POLL_SECONDS = 0.2


class _Unstarted:
    """This process's claimed items not yet started, which a stop gives back at once even while
    an item is under way (`stop_working`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, ClaimedItem] = {}

    def hold(self, items: list[ClaimedItem]) -> None:
        with self._lock:
            self._items.update((item.id, item) for item in items)

    def start(self, item: ClaimedItem) -> bool:
        """Whether the item may start (the process is not STOPPING); it is then no longer held."""
        with self._lock:
            return not STOPPING.is_set() and self._items.pop(item.id, None) is not None

    def release(self, items: list[ClaimedItem]) -> list[ClaimedItem]:
        """Those of `items` still held, held no longer."""
        with self._lock:
            return [item for item in items if self._items.pop(item.id, None) is not None]

    def take_all(self) -> list[ClaimedItem]:
        """Every item held, held no longer."""
        with self._lock:
            items, self._items = list(self._items.values()), {}
            return items


UNSTARTED = _Unstarted()


def stop_working(svc: Services) -> int:
    """Stop working items in this process: STOPPING set (a pass ends after the item at hand),
    the claimed items not yet started given back; how many."""
    STOPPING.set()
    items = UNSTARTED.take_all()
    give_back(svc, items)
    return len(items)


class Crew:
    """The threads of one drain, ending together (`Hand`, one for each).

    A thread whose claim finds nothing due does not end while a sibling still runs items (their
    handlers, and commits elsewhere, make more due): it waits and claims again. One waiting thread
    at a time, the lookout, claims every IDLE_POLL_SECONDS; each claim that finds items has one
    more waiting thread claim at once. The crew is over when every thread found nothing due.
    """

    def __init__(self, threads: int) -> None:
        self._changed = threading.Condition()
        self._busy = threads  # threads that have not found nothing due since they last ran items
        self._lookout = False
        self.over = False

    def hand(self) -> Hand:
        """The share of one of its threads (as many as the crew was made for)."""
        return Hand(self)

    def _end_when_idle(self) -> None:
        """Under the lock: end the crew once no thread is busy, waking the waiting ones."""
        if not self._busy:
            self.over = True
            self._changed.notify_all()


class Hand:
    """One thread of a `Crew`."""

    def __init__(self, crew: Crew) -> None:
        self.crew = crew
        self._idle = False

    def found(self) -> None:
        """This thread's claim found items: it is busy, and another waiting thread claims too."""
        crew = self.crew
        with crew._changed:
            if self._idle:
                self._idle = False
                crew._busy += 1
            crew._changed.notify()

    def wait(self) -> bool:
        """This thread's claim found nothing due: whether to claim again, after waiting while a
        sibling is busy; False once the crew is over."""
        crew = self.crew
        with crew._changed:
            self._become_idle()
            while not crew.over:
                if crew._lookout:  # another claims next: wait for a sibling's claim that finds
                    if crew._changed.wait(IDLE_POLL_SECONDS) and not crew.over:
                        return True
                else:
                    crew._lookout = True
                    crew._changed.wait(IDLE_POLL_SECONDS)
                    crew._lookout = False
                    return not crew.over
            return False

    def leave(self) -> None:
        """This thread ends (time is up, the process is stopping, an error)."""
        with self.crew._changed:
            self._become_idle()

    def _become_idle(self) -> None:
        if not self._idle:
            self._idle = True
            self.crew._busy -= 1
            self.crew._end_when_idle()


def work_due(svc: Services, *, seconds: float | None = None, crew: Crew | None = None) -> Drained:
    """Claim and run due items one after another until none is due (or `seconds` have passed,
    or the process is STOPPING); as one thread of `crew`, until none is due for any of them.

    A claim takes one item; while claims come back full (a backlog), the next takes twice as
    many, up to CLAIM_BATCH: a backlog costs one claim per several items, and a few items due
    at once still go one to each of a worker's threads.
    """
    hand = (crew or Crew(1)).hand()
    try:
        return _work_due(svc, hand, seconds)
    finally:
        hand.leave()


def _work_due(svc: Services, hand: Hand, seconds: float | None) -> Drained:
    drained = Drained()
    deadline = None if seconds is None else time.monotonic() + seconds
    batch = 1
    while (
        (deadline is None or time.monotonic() < deadline)
        and not STOPPING.is_set()
        and not hand.crew.over  # a claim found items as its siblings ended: others take the rest
    ):
        items = retry_disconnect(partial(claim_due, svc, batch))
        if not items:
            if not hand.wait():
                return drained
            batch = 1
            continue
        hand.found()
        UNSTARTED.hold(items)
        for n, item in enumerate(items):
            if (n and clock.now() > safe_end(svc, item)) or not UNSTARTED.start(item):
                # Less than half its lease ahead (another worker may take it while it runs), or
                # stopping: the rest go back unstarted (unless a stop gave them back already).
                give_back(svc, UNSTARTED.release(items[n:]))
                break
            drained = drained.merge(Drained(run_claimed(svc, item)))
        batch = min(2 * batch, CLAIM_BATCH) if len(items) == batch else 1
    drained.more = True
    return drained


def safe_end(svc: Services, item: ClaimedItem) -> datetime:
    """Until when the item may start, or wait for a connection to start a call: half its lease
    ahead, so that it ends before another worker may take it."""
    return item.lease_end - timedelta(seconds=svc.settings.job_timeout_seconds / 2)


def claim_due(svc: Services, batch: int = 1) -> list[ClaimedItem]:
    """Up to `batch` of the earliest due items (in the order they were queued),
    recorded `running` with one more attempt, under a lease of JOB_TIMEOUT_SECONDS (after which
    another worker may claim them); none when none is due.

    Safe to repeat after a dropped connection: at worst one attempt is counted twice.
    """
    now = clock.now()
    lease_end = now + timedelta(seconds=svc.settings.job_timeout_seconds)
    rows = svc.db.write(CLAIM_DUE, {"now": now, "lease_end": lease_end, "batch": batch})
    return sorted((ClaimedItem(*row) for row in rows), key=lambda item: item.id)


def give_back(svc: Services, items: list[ClaimedItem]) -> None:
    """Make claimed items due again unstarted (those still under the lease of their claim)."""
    now = clock.now()
    for lease_end in {item.lease_end for item in items}:  # one per claim
        ids = [item.id for item in items if item.lease_end == lease_end]
        svc.db.write(GIVE_BACK, {"outbox_ids": ids, "lease_end": lease_end, "now": now})


def run_claimed(svc: Services, item: ClaimedItem) -> datetime | None:
    """Run a claimed item's handler and record the outcome; when it is retried, the time."""
    logs.bind(request_id=item.request_id, outbox_id=item.id, kind=item.kind)
    try:
        return _run(svc, item)
    finally:
        logs.clear()


def _run(svc: Services, item: ClaimedItem) -> datetime | None:
    policy = retry_policy(svc.settings, item.kind)
    if item.attempts > policy.max_attempts:  # only a lease that ran out counts past the last
        return _fail(svc, item, f"gave up: attempt {item.attempts - 1} ended with its worker")
    held = False
    if item.kind in CREDLY_KINDS:
        reason, held = token_state(svc).holding()
        if reason:
            return _pause(svc, item, reason)
    # A connection to Credly is waited for until the item could no longer start (a lease
    # running out meanwhile would let another worker run it too), then held to the end.
    wait_until = time.monotonic() + (safe_end(svc, item) - clock.now()).total_seconds()
    try:
        with holding_a_connection(wait_until):
            HANDLERS[item.kind](svc, item)
    except Exception as exc:
        if not _recorded_done(svc, item, exc):
            return _ended_by(svc, item, policy, exc)
    _finish(svc, item, "done", None)
    log.info("job done", extra={"attempt": item.attempts})
    if held and token_state(svc).end_pause():  # Credly took the token again: the pause ends
        resume_held(svc)
    return None


def _recorded_done(svc: Services, item: ClaimedItem, exc: Exception) -> bool:
    """Whether the handler's done record committed before `exc` (its commit's answer lost, or a
    step after it failed): the item then stays done, its outcome recorded."""
    if not item.done or svc.db.read(STATE, {"outbox_id": item.id}) != [("done",)]:
        return False
    log.warning("job done; what followed its record failed: %s", exc)
    return True


def _ended_by(
    svc: Services, item: ClaimedItem, policy: RetryPolicy, exc: Exception
) -> datetime | None:
    """Record the attempt that `exc` ended; when the item is due again, the time."""
    if isinstance(exc, NoConnection):
        give_back(svc, [item])
        log.info("attempt given back: %s", exc)
        return None
    if isinstance(exc, Deferred):
        return _put_off(svc, item, str(exc), exc.retry_after)
    if isinstance(exc, Unauthorized):
        reason = describe(exc)
        token_state(svc).pause(reason, svc.settings.credly_pause_seconds)
        return _pause(svc, item, reason)
    if isinstance(exc, TransientError):
        return _retry(svc, item, policy, without_emails(str(exc)), exc.retry_after)
    if isinstance(exc, PermanentError):
        return _fail(svc, item, describe(exc))
    # Unexpected (e.g. the database went away): retried on the policy.
    log.error("job error", exc_info=exc)
    # Its first line only: the rest (a statement and its parameters) is for the log, not for the
    # API answers that show the job's last error; without the values a database error's first
    # line quotes, as the log has them.
    first_line = logs.without_quoted_values(next(iter(str(exc).splitlines()), ""))
    return _retry(svc, item, policy, f"{type(exc).__name__}: {first_line}", None)


def resume_held(svc: Services) -> int:
    """Make the Credly jobs the pause holds back due at once and wake the workers for them (the
    pause ended, or another token is configured); how many."""
    resumed = len(svc.db.write(RESUME_HELD, {"now": clock.now()}))
    if resumed:
        log.info("%d Credly jobs held back by the token's pause are due again", resumed)
        if svc.dispatcher is not None:
            svc.dispatcher.wake()
    return resumed


def resume_held_at_start(svc: Services) -> int:
    """At the start of a process that works jobs: resume the Credly jobs held back, unless for
    the configured token (then one of them tries it again, `_run`); how many."""
    reason, held = token_state(svc).holding()
    return 0 if reason or held else resume_held(svc)


def retry_policy(settings: Settings, kind: str) -> RetryPolicy:
    """How transient failures of the outbox items of `kind` are retried."""
    own = POLICIES.get(kind)
    return own(settings) if own else RetryPolicy(MAX_ATTEMPTS, settings.job_retry_base_seconds)


def _retry(
    svc: Services, item: ClaimedItem, policy: RetryPolicy, error: str, retry_after: float | None
) -> datetime | None:
    attempt = item.attempts
    if attempt >= policy.max_attempts:
        return _fail(svc, item, f"gave up after {attempt} attempts: {error}")
    delay = policy.delay(attempt, retry_after)
    due_at = clock.now() + timedelta(seconds=delay)
    _finish(svc, item, "retrying", f"attempt {attempt}: {error}; retry in {delay}s", due_at)
    log.warning("transient failure, retry in %ss", delay, extra={"error": error})
    return due_at


def _pause(svc: Services, item: ClaimedItem, reason: str) -> datetime:
    """Put a Credly job off while Credly refuses the token, without using an attempt."""
    error = f"{WAITING}: {reason}"
    metrics.JOBS.labels(item.kind, "paused").inc()
    return _put_off(svc, item, error, svc.settings.credly_pause_seconds)


def _put_off(svc: Services, item: ClaimedItem, reason: str, seconds: float) -> datetime:
    """Make the item due again in `seconds`, without using an attempt."""
    due_at = clock.now() + timedelta(seconds=seconds)
    svc.db.write(PAUSED, {"outbox_id": item.id, "last_error": reason, "due_at": due_at})
    log.info("put off %ss: %s", seconds, reason)
    return due_at


def _fail(svc: Services, item: ClaimedItem, reason: str) -> None:
    """Record a final failure: listed by `gateway jobs failed` until requeued; with what the
    kind records of it (`GIVEN_UP`), in the same transaction."""
    _finish(svc, item, "failed", reason, also=GIVEN_UP.get(item.kind))
    log.error("job failed", extra={"error": reason})


def _finish(
    svc: Services,
    item: ClaimedItem,
    state: str,
    error: str | None,
    due_at: datetime | None = None,
    also: Callable[[Services, Connection, ClaimedItem, str], None] | None = None,
) -> None:
    """Record how the attempt ended, unless the handler recorded it done with its outcome; a
    done or failed end is counted in the same transaction (`record_end`)."""
    values = ended(item.id, state, error, due_at=due_at)
    if state not in FINISHED:
        svc.db.write(ENDED, values)
    elif not (state == "done" and item.done):
        with svc.db.engine.begin() as connection:
            if also is not None and error is not None:
                also(svc, connection, item, error)
            record_end(svc.db, connection, item.kind, values, item.payload.get("supersedes", ()))
    metrics.JOBS.labels(item.kind, state).inc()
