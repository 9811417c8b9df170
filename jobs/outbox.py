"""The job behind every outbox item: run its handler, record the outcome, ask RQ to retry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

from redis import Redis
from rq import Retry, get_current_job
from rq.job import Job
from sqlalchemy import select

from connectors.errors import PermanentError, TransientError
from gateway import logs, metrics
from gateway.config import Settings
from gateway.services import Services
from gateway.store.db import retry_disconnect
from gateway.store.models import OutboxItem
from jobs import badges, context, deliveries, verification, webhooks
from jobs.claim import UNSETTLED_BY_ID, ClaimedItem, record
from jobs.retry import MAX_ATTEMPTS, RetryPolicy

log = logging.getLogger("jobs.outbox")

Handler = Callable[[Services, ClaimedItem], None]

HANDLERS: dict[str, Handler] = {
    "issue_badge": badges.issue,
    "replace_badge": badges.replace,
    "revoke_badge": badges.revoke,
    "sync_verification": verification.sync,
    "credly_notification": webhooks.process,
    "deliver_webhook": deliveries.deliver_webhook,
    "push_directory": deliveries.push_directory,
}

#: Kinds retried on their own policy; the others get MAX_ATTEMPTS on JOB_RETRY_BASE_SECONDS.
POLICIES: dict[str, Callable[[Settings], RetryPolicy]] = {
    "deliver_webhook": deliveries.retry_policy,
    "push_directory": deliveries.retry_policy,
}

#: Built once: an item not done or failed marked running, one more attempt.
CLAIM = UNSETTLED_BY_ID.values(state="running", attempts=OutboxItem.attempts + 1).returning(
    OutboxItem.kind,
    OutboxItem.certification_id,
    OutboxItem.payload,
    OutboxItem.request_id,
    OutboxItem.attempts,
)


class JobFailed(Exception):
    """A side effect that will not be retried: permanent error or attempts used up."""


def run_outbox_item(outbox_id: int) -> Retry | None:
    """Run one outbox item; return RQ's Retry on a transient failure, raise when it has failed."""
    svc = context.services()
    item = retry_disconnect(lambda: _claim(svc, outbox_id))
    if item is None:
        return None
    logs.bind(request_id=item.request_id, outbox_id=outbox_id, kind=item.kind)
    try:
        return _run(svc, item)
    finally:
        logs.clear()


def _claim(svc: Services, outbox_id: int) -> ClaimedItem | None:
    """Record the item `running`, one more attempt, in one statement; None when it is settled.

    Safe to repeat after a dropped connection: at worst one attempt is counted twice.
    """
    with svc.db.engine.begin() as connection:
        row = connection.execute(CLAIM, {"outbox_id": outbox_id}).one_or_none()
        if row is not None:
            return ClaimedItem(id=outbox_id, **row._mapping)
        state = connection.scalar(select(OutboxItem.state).where(OutboxItem.id == outbox_id))
    if state is None:
        raise JobFailed(f"outbox item {outbox_id} does not exist")
    log.info("outbox item already %s", state, extra={"outbox_id": outbox_id})
    return None


def _run(svc: Services, item: ClaimedItem) -> Retry | None:
    attempt = item.attempts
    try:
        HANDLERS[item.kind](svc, item)
    except TransientError as exc:
        policy = retry_policy(svc.settings, item.kind)
        if attempt >= policy.max_attempts:
            _fail(svc, item, f"gave up after {attempt} attempts: {exc}", exc)
        delay = policy.delay(attempt, exc.retry_after)
        _finish(svc, item, "retrying", f"attempt {attempt}: {exc}; retry in {delay}s")
        log.warning("transient failure, retry in %ss", delay, extra={"error": str(exc)})
        return Retry(max=policy.max_attempts, interval=delay)
    except PermanentError as exc:
        _fail(svc, item, f"{exc} {exc.body}" if exc.body else str(exc), exc)
    except Exception as exc:
        # Unexpected (e.g. the database went away): RQ retries on the enqueue schedule.
        _finish(svc, item, "retrying", f"attempt {attempt}: {type(exc).__name__}: {exc}")
        raise
    _finish(svc, item, "done", None)
    return None


def retry_policy(settings: Settings, kind: str) -> RetryPolicy:
    """How transient failures of the outbox items of `kind` are retried."""
    own = POLICIES.get(kind)
    return own(settings) if own else RetryPolicy(MAX_ATTEMPTS, settings.job_retry_base_seconds)


def _fail(svc: Services, item: ClaimedItem, reason: str, cause: Exception) -> None:
    """Record a final failure and make sure RQ does not retry it."""
    _finish(svc, item, "failed", reason)
    job = get_current_job()
    if job is not None:
        job.retries_left = 0
    raise JobFailed(reason) from cause


def mark_failed_when_exhausted(
    job: Job, connection: Redis, exc_type: type, exc_value: BaseException, tb: TracebackType
) -> None:
    """RQ on_failure callback: an item whose retries are used up is failed, with the reason."""
    if job.retries_left:
        return
    outbox_id = int(job.id.removeprefix("outbox-"))
    reason = f"{exc_type.__name__}: {exc_value}"
    with context.services().db.engine.begin() as connection:
        record(connection, outbox_id, "failed", reason, unless_settled=True)


def _finish(svc: Services, item: ClaimedItem, state: str, error: str | None) -> None:
    """Record how the attempt ended, unless the handler recorded it done with its outcome."""
    if not (state == "done" and item.done):
        with svc.db.engine.begin() as connection:
            record(connection, item.id, state, error)
    metrics.JOBS.labels(item.kind, state).inc()
