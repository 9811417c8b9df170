"""The daily cron: the sweep and the review of advance notices, then the reconciliation with
Credly, the housekeeping's pruning (`gateway.usecases.housekeeping`) and the Credly token expiry
check, each once a day.

With Redis, the workers' cron queues them as RQ jobs: the sweep one at a time across all workers
(a Redis lock), the rest once a day across them; a worker starting queues the sweep of the day due
if it is not done (`catch_up`). A daily job's Redis lock expires LOCK_SECONDS
after it was last renewed, and its holder renews it while it runs: a holder killed (SIGKILL, a
lost machine) frees it within LOCK_SECONDS. A day's mark of done is set only when its run has
finished, so a run that did not finish leaves the day open for another.

Without Redis (the embedded default), each process whose jobs run in it for its life runs them
on a thread of its own (`InProcessCron`), the day claimed in the database by one of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock
from rq import Queue, Retry
from rq.cron import CronScheduler
from rq.exceptions import StopRequested
from sqlalchemy.dialects import postgresql, sqlite

from connectors.errors import PermanentError, TransientError, describe
from gateway.platform import clock
from gateway.store.db import UNAVAILABLE, unavailable_reason
from gateway.store.models import DailyRun
from gateway.usecases import housekeeping
from gateway.usecases.credly_token import check_token
from gateway.usecases.services import Services
from gateway.usecases.sweep import Scope, Summary, sweep
from jobs import notices
from jobs.engine import context, outbox
from jobs.reconcile import Stopped, reconcile

log = logging.getLogger("jobs.cron")

#: How long a daily job's lock outlives its last renewal (renewed every third of it).
LOCK_SECONDS = 60
#: The longest run of the daily sweep and of the daily reconciliation (RQ's job timeout).
JOB_TIMEOUT_SECONDS = 3600
DAY_SECONDS = 24 * 3600
#: When RQ runs a failed daily reconciliation again (seconds after each failure).
RECONCILE_RETRY_SECONDS = [600, 1800, 3600]
#: How long after finding another worker's sweep of the day running a sweep job looks again.
SWEEP_RECHECK_SECONDS = 300
#: The reconciliation's lock: one runs at a time across all workers.
RECONCILE_LOCK = "gateway:reconciling"


class SweepRunning(RuntimeError):
    """Another sweep of the same range holds the lock."""


def sweep_lock(svc: Services, scope: Scope) -> Lock:
    """The Redis lock of a sweep of `scope`'s id range."""
    return _lock(svc, f"gateway:sweep:{scope.first_id or ''}:{scope.last_id or ''}")


def _lock(svc: Services, key: str) -> Lock:
    """A Redis lock taken without waiting, expiring LOCK_SECONDS after its last renewal (its
    token shared by the threads of this process: `renewed` renews it from one of its own)."""
    return svc.redis.lock(key, timeout=LOCK_SECONDS, blocking=False, thread_local=False)


@contextmanager
def renewed(lock: Lock, what: str) -> Iterator[None]:
    """Hold the acquired `lock` while the block runs, renewed every third of LOCK_SECONDS on a
    thread of its own; release it after, warning if it was lost meanwhile (not renewed for
    LOCK_SECONDS, Redis away) and `what` may have run twice."""
    done = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(lock, done), daemon=True, name=f"lock-renewal {lock.name}"
    )
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        try:
            lock.release()
        except LockNotOwnedError:  # what it recorded stands
            log.warning(
                "%s lost its lock (not renewed for %d s): another may have run meanwhile",
                what,
                LOCK_SECONDS,
            )


def _renew(lock: Lock, done: threading.Event) -> None:
    while not done.wait(LOCK_SECONDS / 3):
        try:
            lock.reacquire()
        except LockError:  # lost (its time ran out): `renewed` warns at the end
            return
        except RedisError as exc:  # tried again at the next renewal
            log.warning("lock %s not renewed: %s", lock.name, exc)


def locked_sweep(svc: Services, scope: Scope, **kwargs: object) -> Summary:
    """Sweep while holding the lock (no lock needed without Redis, one process doing it all, nor
    for a dry run, which records nothing); then, unless it is a dry run or one id range of
    several, review the advance notices of the day.
    """
    if svc.redis is None or scope.dry_run:
        return _sweep_and_notices(svc, scope, **kwargs)
    lock = sweep_lock(svc, scope)
    if not lock.acquire():
        raise SweepRunning("another sweep of this range is running")
    with renewed(lock, "the sweep"):
        return _sweep_and_notices(svc, scope, **kwargs)


def _sweep_and_notices(svc: Services, scope: Scope, **kwargs: object) -> Summary:
    summary = sweep(svc, scope, **kwargs)
    if not scope.dry_run and scope.first_id is None and scope.last_id is None:
        summary.notices_queued = notices.review_due(svc, scope.as_of)
    return summary


def run_daily_sweep(as_of: str | None = None) -> dict[str, object]:
    """RQ job: `daily_run` of today (or `as_of`) with this process's services. Queued jobs and
    the cron store this name, so it stays."""
    return daily_run(context.services(), date.fromisoformat(as_of) if as_of else clock.now().date())


def daily_run(
    svc: Services, day: date, on_batch: Callable[[int], None] | None = None
) -> dict[str, object]:
    """The daily run of `day`: sweep its due certifications and review the advance notices,
    unless that day's sweep is done; while another worker's sweep of it runs, look again later
    (that sweep may not finish). Then queue the reconciliation (with Redis), and prune. Without
    Redis, `on_batch` is called after each batch the sweep records (raising ends
    the sweep there)."""
    scope = Scope(as_of=day)
    if svc.redis is None:  # one process does it all: see InProcessCron
        summary = _sweep_and_notices(svc, scope, on_batch=on_batch)
    else:
        summary = _sweep_once(svc, scope)
    if summary is None:
        return {"skipped": True}
    log.info("sweep done", extra={"summary": summary.as_dict()})
    if svc.redis is not None:
        Queue(svc.settings.queue_name, connection=svc.redis).enqueue(
            run_daily_reconcile,
            job_timeout=JOB_TIMEOUT_SECONDS,
            retry=Retry(max=len(RECONCILE_RETRY_SECONDS), interval=RECONCILE_RETRY_SECONDS),
        )
    pruned = housekeeping.prune(svc)  # after queueing: a failure here leaves the rest done
    log.info("records pruned", extra={"pruned": pruned})
    return {**summary.as_dict(), **{f"{kind}_pruned": count for kind, count in pruned.items()}}


def _sweep_once(svc: Services, scope: Scope) -> Summary | None:
    """Sweep `scope`'s day under the lock and mark it done then; None if it is done, or if
    another sweep holds the lock: then this job looks again in SWEEP_RECHECK_SECONDS, as long as
    that day is today (a later day's sweep catches up)."""
    done = _swept(scope.as_of)  # each worker's cron queues the day's sweep
    lock = sweep_lock(svc, scope)
    if not lock.acquire():
        if scope.as_of >= clock.now().date():
            log.info("sweep put off: another one is running; looked at again later")
            Queue(svc.settings.queue_name, connection=svc.redis).enqueue_in(
                timedelta(seconds=SWEEP_RECHECK_SECONDS),
                run_daily_sweep,
                scope.as_of.isoformat(),
                job_timeout=JOB_TIMEOUT_SECONDS,
            )
        else:
            log.info("sweep skipped: another one is running")
        return None
    with renewed(lock, "the sweep"):
        if svc.redis.exists(done):
            log.info("sweep skipped: that day's is done")
            return None
        summary = _sweep_and_notices(svc, scope)
        svc.redis.set(done, 1, ex=2 * DAY_SECONDS)  # before the lock is free: swept once
    return summary


def _swept(day: date) -> str:
    """The Redis key marking `day`'s daily sweep done."""
    return f"gateway:swept:{day}"


def catch_up(svc: Services) -> date | None:
    """Queue the daily sweep of the latest day due (today once SWEEP_TIME has passed, else
    yesterday) unless it is done: a worker starting after a SWEEP_TIME that found no worker
    running (a deploy at that minute) sweeps that day now, not a day late. The day queued, if
    any (several workers starting at once queue it each; the lock and the mark sweep it once)."""
    day = due_day(svc.settings.sweep_time, clock.now())
    if svc.redis.exists(_swept(day)):
        return None
    Queue(svc.settings.queue_name, connection=svc.redis).enqueue(
        run_daily_sweep, day.isoformat(), job_timeout=JOB_TIMEOUT_SECONDS
    )
    log.info("daily sweep of %s queued: not done yet", day)
    return day


def run_daily_reconcile() -> dict[str, object]:
    """RQ job queued by the daily sweep when it ends: reconcile with Credly, unless today's
    reconciliation is done or another runs. A run that does not finish (Credly still unavailable
    after its tries, the worker stopping or killed) leaves the day open: RQ runs it again
    (RECONCILE_RETRY_SECONDS)."""
    svc = context.services()
    today = clock.now().date()
    if svc.settings.credly_dry_run:
        log.info("reconciliation skipped: Credly is the dry-run backend")
        return {"skipped": True}
    lock = _lock(svc, RECONCILE_LOCK)
    if not lock.acquire():
        log.info("reconciliation skipped: another one is running")
        return {"skipped": True}
    with renewed(lock, "the reconciliation"):
        done = f"gateway:reconciled:{today}"
        if svc.redis.exists(done):
            return {"skipped": True}
        try:
            summary = reconcile(svc, stop=outbox.STOPPING)
        except Exception as exc:
            log.error("reconciliation failed; it is tried again later: %s", exc)
            raise
        svc.redis.set(done, 1, ex=DAY_SECONDS)
    return summary.as_dict()


def check_credly_token() -> bool:
    """RQ job: read the Credly token's expiry from Credly and warn if it is within 14 days, by
    the first worker to run it today (each worker's cron queues it); True if it warned."""
    svc = context.services()
    today = clock.now().date()
    if not svc.redis.set(f"gateway:credly-token-checked:{today}", 1, nx=True, ex=DAY_SECONDS):
        return False
    return check_token(svc, today)


def cron_expression(time_of_day: str) -> str:
    """A valid `HH:MM` (UTC; see config) as a daily cron expression."""
    hours, minutes = time_of_day.split(":")
    return f"{int(minutes)} {int(hours)} * * *"


class WorkerCron(CronScheduler):
    """RQ's cron scheduler, run on a thread of the worker (signals stay with the worker). It ends
    within a moment of `stopping` being set, its end registered as a stopped scheduler's is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()

    def _install_signal_handlers(self) -> None:
        """The worker's main thread owns SIGTERM/SIGINT."""

    def calculate_sleep_interval(self) -> float:
        """Wait here, on `stopping`, as long as RQ's loop would sleep; then StopRequested, which
        ends that loop, when it is set (RQ's own sleep cannot be woken)."""
        self.stopping.wait(super().calculate_sleep_interval())
        if self.stopping.is_set():
            raise StopRequested()
        return 0


def make_cron(svc: Services) -> WorkerCron:
    """A cron scheduler that enqueues the daily sweep and the token check at SWEEP_TIME (UTC)."""
    cron = WorkerCron(connection=svc.redis)
    daily = cron_expression(svc.settings.sweep_time)
    queue = svc.settings.queue_name
    cron.register(
        run_daily_sweep,
        queue_name=queue,
        cron=daily,
        job_timeout=JOB_TIMEOUT_SECONDS,
        name="daily-sweep",
    )
    cron.register(check_credly_token, queue_name=queue, cron=daily, name="credly-token-check")
    return cron


#: How long after its start a process without Redis runs the daily run it finds due and not yet
#: claimed (today's once SWEEP_TIME has passed, else yesterday's): start-up is not held up.
CATCH_UP_SECONDS = 10.0
#: How long after its daily run failed (the database unavailable, Credly's errors) a process
#: without Redis runs it again, as long as it is the run due.
RETRY_SECONDS = 600.0
#: The longest a process without Redis waits before it reads the clock again: a machine that
#: slept past SWEEP_TIME runs the day's run within this much of waking.
CLOCK_CHECK_SECONDS = 60.0
#: The name of the daily run's claims in `daily_runs`.
DAILY_RUN = "daily"

#: Claim a day's run: the row inserted and returned, or nothing where another process inserted it
#: (by dialect).
_CLAIM = {
    name: dialect.insert(DailyRun).on_conflict_do_nothing().returning(DailyRun.day)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def claim_day(svc: Services, name: str, day: date) -> bool:
    """Claim the run `name` of `day` for this process; False if another process claimed it."""
    claim = _CLAIM[svc.db.engine.dialect.name]
    return bool(svc.db.write(claim, {"name": name, "day": day}))


def _time_of_day(sweep_time: str) -> time:
    """A valid `HH:MM` (UTC; see config) as a time of day."""
    hours, minutes = sweep_time.split(":")
    return time(int(hours), int(minutes), tzinfo=UTC)


def due_day(sweep_time: str, now: datetime) -> date:
    """The day of the latest daily run due by `now`: today once `sweep_time` has passed, else
    yesterday."""
    if now.timetz() >= _time_of_day(sweep_time):
        return now.date()
    return now.date() - timedelta(days=1)


def seconds_to_next(sweep_time: str, now: datetime) -> float:
    """How long from `now` until the next `sweep_time`."""
    next_run = datetime.combine(
        due_day(sweep_time, now) + timedelta(days=1), _time_of_day(sweep_time)
    )
    return (next_run - now).total_seconds()


class Stopping(Exception):
    """The daily run ended early: its process is stopping."""


class InProcessCron(threading.Thread):
    """The daily run of a process without Redis whose jobs run in it for its life (`gateway run`,
    each process of `gateway serve`), on this thread: at SWEEP_TIME (UTC) every day, and
    CATCH_UP_SECONDS after start when the latest run due is not claimed yet.

    A run claims its day in the database (`claim_day`): of the processes sharing the database,
    the first to claim it runs it, the others skip it. It is `daily_run` (the sweep of its day,
    the advance notices, the pruning), then with a real Credly (not the dry-run backend) the
    token expiry check and the reconciliation. One that fails logs a line and runs again
    RETRY_SECONDS later, on its claim, while it is the run due; one whose process dies leaves its
    day claimed, which the next day's sweep catches up. `stop` ends it after the sweep's batch,
    or the reconciliation's step, under way.
    """

    def __init__(self, svc: Services) -> None:
        super().__init__(name="daily-run", daemon=True)
        self.svc = svc
        self.stopping = threading.Event()
        self.claimed: date | None = None  # the day this process claimed, done or not
        self.settled: date | None = None  # the day this process ran, or found claimed

    def stop(self) -> None:
        """End the loop, and the run under way at its next step."""
        self.stopping.set()

    def run(self) -> None:
        """The thread: the run due CATCH_UP_SECONDS after start, then each as it falls due."""
        wait = CATCH_UP_SECONDS
        while not self.stopping.wait(wait):
            wait = self._run_due()

    def _run_due(self) -> float:
        """Run the run due unless this process has settled it; how long to wait for the next."""
        sweep_time = self.svc.settings.sweep_time
        day = due_day(sweep_time, clock.now())
        if self.settled is None or day > self.settled:
            try:
                self._run_day(day)
            except (Stopping, Stopped):
                return 0
            except UNAVAILABLE as exc:  # the database's state (locked, away): one line
                log.warning(
                    "daily run of %s: database unavailable: %s; tried again in %g s",
                    day,
                    unavailable_reason(exc),
                    RETRY_SECONDS,
                )
                return RETRY_SECONDS
            except (TransientError, PermanentError) as exc:  # Credly's, for the reconciliation
                log.warning(
                    "daily run of %s failed: %s; tried again in %g s",
                    day,
                    describe(exc),
                    RETRY_SECONDS,
                )
                return RETRY_SECONDS
            except Exception:  # the thread must outlive any other failure
                log.exception("daily run of %s failed; tried again in %g s", day, RETRY_SECONDS)
                return RETRY_SECONDS
            self.settled = day
        return min(seconds_to_next(sweep_time, clock.now()), CLOCK_CHECK_SECONDS)

    def _run_day(self, day: date) -> None:
        if self.claimed != day:
            if not claim_day(self.svc, DAILY_RUN, day):
                log.info("daily run of %s skipped: another process claimed it", day)
                return
            self.claimed = day
        daily_run(self.svc, day, on_batch=self._check_stop)
        if not self.svc.settings.credly_dry_run:
            check_token(self.svc)
            reconcile(self.svc, stop=self.stopping)

    def _check_stop(self, _batch: int) -> None:
        if self.stopping.is_set():
            raise Stopping("the process is stopping")
