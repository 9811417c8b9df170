"""The worker process: RQ's SimpleWorker with its scheduler, the outbox relay, the daily cron."""

from __future__ import annotations

import logging
import threading

from redis import Redis
from rq import Queue, SimpleWorker

from gateway.credly_token import read_expiry
from gateway.services import Services
from jobs import context
from jobs.dispatch import relay
from jobs.sweep import make_cron

log = logging.getLogger("jobs.worker")


def _relay_forever(svc: Services, stop: threading.Event) -> None:
    while not stop.wait(svc.settings.relay_interval_seconds):
        try:
            relay(svc, svc.dispatcher)
        except Exception:  # the relay must outlive a database hiccup
            log.exception("relay pass failed")


def run_worker(
    svc: Services,
    *,
    burst: bool = False,
    with_scheduler: bool = True,
    maintenance_interval: int = 600,
    worker_ttl: int = 420,
    name: str | None = None,
    with_cron: bool = True,
) -> None:
    """Work the gateway queue until stopped (or until it is empty, with `burst`)."""
    if svc.redis is None:
        raise RuntimeError("a worker needs REDIS_URL; the embedded default runs jobs in-process")
    # Every commit of a worker may be done again: an item whose end was lost is claimed again
    # when its lease runs out, and handlers are idempotent (as after a worker killed mid-job).
    # So its commits need not wait for the disk (docs/architecture.md, docs/benchmarks.md).
    svc.db.commit_asynchronously()
    context.use(svc)
    stop = threading.Event()
    relay(svc, svc.dispatcher)
    relayer = threading.Thread(target=_relay_forever, args=(svc, stop), daemon=True)
    relayer.start()
    read_expiry(svc)  # the token's expiry as Credly reports it (warned of daily by the cron)
    if with_cron:
        threading.Thread(target=make_cron(svc).start, daemon=True, name="cron").start()
    # The worker's own connection pool: RQ sizes its socket timeout for blocking dequeues.
    connection = Redis.from_url(svc.settings.redis_url)
    queue = Queue(svc.settings.queue_name, connection=connection)
    worker = SimpleWorker(
        [queue],
        connection=connection,
        name=name,
        maintenance_interval=maintenance_interval,
        worker_ttl=worker_ttl,
    )
    try:
        worker.work(
            burst=burst, with_scheduler=with_scheduler, logging_level=svc.settings.log_level
        )
    finally:
        stop.set()
