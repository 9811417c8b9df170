"""Running the gateway's RQ queue inside a test, and a job killed at a step of its own
(`killed_while_running`)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

from rq import Queue

from gateway.usecases.services import Services
from jobs.engine.worker import GatewayWorker


def work_queued(svc: Services) -> None:
    """Run the jobs queued now in one burst of the gateway's worker (due retries stay scheduled)."""
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    GatewayWorker([queue], connection=svc.redis).work(burst=True)


def killed_while_running(job: Callable[[], object], module: object, step: str) -> None:
    """Run `job` in a forked process, as a worker would, and SIGKILL that process once it has
    reached `module.step` (a module's function or an object's method, which then waits instead
    of running)."""
    fork = multiprocessing.get_context("fork")
    reached = fork.Event()

    def waiting(*_args: object, **_kwargs: object) -> None:
        reached.set()
        time.sleep(60)

    def run() -> None:
        setattr(module, step, waiting)
        job()

    process = fork.Process(target=run, daemon=True)
    process.start()
    assert reached.wait(10), f"the job did not reach {step}"
    process.kill()
    process.join(10)
