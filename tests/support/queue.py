"""Running the gateway's RQ queue inside a test."""

from __future__ import annotations

from rq import Queue

from gateway.usecases.services import Services
from jobs.engine.worker import GatewayWorker


def work_queued(svc: Services) -> None:
    """Run the jobs queued now in one burst of the gateway's worker (due retries stay scheduled)."""
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    GatewayWorker([queue], connection=svc.redis).work(burst=True)
