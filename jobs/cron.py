"""The workers' daily cron: the sweep, one at a time across all workers (a Redis lock), then the
reconciliation with Credly, the pruning of old receipt records and the Credly token expiry check,
each once a day across all workers."""

from __future__ import annotations

import logging
from datetime import date

from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from rq import Queue, Retry
from rq.cron import CronScheduler

from gateway.store.models import utcnow
from gateway.usecases import housekeeping
from gateway.usecases.credly_token import check_token
from gateway.usecases.services import Services
from gateway.usecases.sweep import Scope, Summary, sweep
from jobs import notices
from jobs.engine import context
from jobs.reconcile import reconcile

log = logging.getLogger("jobs.cron")

LOCK_SECONDS = 3600
DAY_SECONDS = 24 * 3600
#: When RQ runs a failed daily reconciliation again (seconds after each failure).
RECONCILE_RETRY_SECONDS = [600, 1800, 3600]


class SweepRunning(RuntimeError):
    """Another sweep of the same range holds the lock."""


def sweep_lock(svc: Services, scope: Scope) -> Lock:
    """The Redis lock of a sweep of `scope`'s id range; it expires if its holder dies."""
    key = f"gateway:sweep:{scope.first_id or ''}:{scope.last_id or ''}"
    return svc.redis.lock(key, timeout=LOCK_SECONDS, blocking=False)


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
    try:
        return _sweep_and_notices(svc, scope, **kwargs)
    finally:
        try:
            lock.release()
        except LockNotOwnedError:  # what it recorded stands; the next sweep may find it busy
            log.warning(
                "the sweep outlived its lock (%d s): another sweep of its range may have run",
                LOCK_SECONDS,
            )


def _sweep_and_notices(svc: Services, scope: Scope, **kwargs: object) -> Summary:
    summary = sweep(svc, scope, **kwargs)
    if not scope.dry_run and scope.first_id is None and scope.last_id is None:
        summary.notices_queued = notices.review_due(svc, scope.as_of)
    return summary


def run_daily_sweep(as_of: str | None = None) -> dict[str, object]:
    """RQ job: sweep today's (or `as_of`'s) due certifications; skipped if one already runs or
    that day's is done."""
    svc = context.services()
    scope = Scope(as_of=date.fromisoformat(as_of) if as_of else utcnow().date())
    done = f"gateway:swept:{scope.as_of}"  # each worker's cron queues the day's sweep
    if svc.redis is not None and svc.redis.exists(done):
        log.info("sweep skipped: that day's is done")
        return {"skipped": True}
    try:
        summary = locked_sweep(svc, scope)
    except SweepRunning:
        log.info("sweep skipped: another one is running")
        return {"skipped": True}
    log.info("sweep done", extra={"summary": summary.as_dict()})
    if svc.redis is not None:
        svc.redis.set(done, 1, ex=2 * DAY_SECONDS)
    if svc.redis is not None:  # the workers' cron; without Redis `gateway badges reconcile`
        Queue(svc.settings.queue_name, connection=svc.redis).enqueue(
            run_daily_reconcile,
            job_timeout=LOCK_SECONDS,
            retry=Retry(max=len(RECONCILE_RETRY_SECONDS), interval=RECONCILE_RETRY_SECONDS),
        )
    pruned = housekeeping.prune(svc)  # after queueing: a failure here leaves the rest done
    log.info("records pruned", extra={"pruned": pruned})
    return {**summary.as_dict(), **{f"{kind}_pruned": count for kind, count in pruned.items()}}


def run_daily_reconcile() -> dict[str, object]:
    """RQ job queued by the daily sweep when it ends: reconcile with Credly, by the first worker
    to run it today. A run that fails (Credly still unavailable after its tries) leaves the day
    to a later one: RQ runs it again (RECONCILE_RETRY_SECONDS)."""
    svc = context.services()
    today = utcnow().date()
    if svc.settings.credly_dry_run:
        log.info("reconciliation skipped: Credly is the dry-run backend")
        return {"skipped": True}
    key = f"gateway:reconciled:{today}"
    if not svc.redis.set(key, 1, nx=True, ex=DAY_SECONDS):
        return {"skipped": True}
    try:
        return reconcile(svc).as_dict()
    except Exception as exc:
        svc.redis.delete(key)
        log.error("reconciliation failed; it is tried again later: %s", exc)
        raise


def check_credly_token() -> bool:
    """RQ job: read the Credly token's expiry from Credly and warn if it is within 14 days, by
    the first worker to run it today (each worker's cron queues it); True if it warned."""
    svc = context.services()
    today = utcnow().date()
    if not svc.redis.set(f"gateway:credly-token-checked:{today}", 1, nx=True, ex=DAY_SECONDS):
        return False
    return check_token(svc, today)


def cron_expression(time_of_day: str) -> str:
    """A valid `HH:MM` (UTC; see config) as a daily cron expression."""
    hours, minutes = time_of_day.split(":")
    return f"{int(minutes)} {int(hours)} * * *"


class WorkerCron(CronScheduler):
    """RQ's cron scheduler, run on a thread of the worker (signals stay with the worker)."""

    def _install_signal_handlers(self) -> None:
        """The worker's main thread owns SIGTERM/SIGINT."""


def make_cron(svc: Services) -> WorkerCron:
    """A cron scheduler that enqueues the daily sweep and the token check at SWEEP_TIME (UTC)."""
    cron = WorkerCron(connection=svc.redis)
    daily = cron_expression(svc.settings.sweep_time)
    queue = svc.settings.queue_name
    cron.register(
        run_daily_sweep, queue_name=queue, cron=daily, job_timeout=LOCK_SECONDS, name="daily-sweep"
    )
    cron.register(check_credly_token, queue_name=queue, cron=daily, name="credly-token-check")
    return cron
