"""Running the gateway's RQ queue inside a test."""

from __future__ import annotations

from rq import Queue, SimpleWorker

from gateway.usecases.services import Services


class QuietWorker(SimpleWorker):
    """RQ's SimpleWorker without its command channel, which no test sends to.

    The channel's listener thread reads with a 60 s timeout, and since redis-py 8.2 a worker's end
    waits for that read: a test that works the queue in short bursts would now and then stand still
    for a minute.
    """

    def subscribe(self) -> None:
        """Listen for no commands."""

    def unsubscribe(self) -> None:
        """No listener to stop."""


def work_queued(svc: Services) -> None:
    """Run the jobs queued now, in one burst of a worker (due retries stay scheduled)."""
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    QuietWorker([queue], connection=svc.redis).work(burst=True)
