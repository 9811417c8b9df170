"""The worker process: RQ's SimpleWorker with its scheduler, the outbox relay, the daily cron."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading

from redis import Redis, RedisError
from rq import Queue, SimpleWorker
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform import metrics
from gateway.usecases.credly_token import check_token_at_start
from gateway.usecases.services import Services
from jobs.cron import WorkerCron, make_cron
from jobs.engine import context, outbox
from jobs.engine.dispatch import relay

log = logging.getLogger("jobs.engine.worker")

SCHEDULER_CHECK_SECONDS = 5  # how often a worker looks whether its RQ scheduler child still runs
CRON_RETRY_SECONDS = 5  # how long after the daily cron failed (Redis away) it starts again
COMMAND_READ_SECONDS = 1.0  # the longest read of RQ's command listener (RQ's own: 60 s)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class GatewayWorker(SimpleWorker):
    """RQ's SimpleWorker whose scheduler child is restarted, one at a time, by RQ's maintenance
    pass and by `supervise_scheduler`, never after the worker stopped it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.scheduler_guard = threading.Lock()
        self.scheduler_stopped = False

    def request_stop(self, signum: int, frame: object) -> None:
        """A warm stop (SIGTERM, SIGINT): the job at hand ends after the items its threads are
        running, giving the rest of their claims back for another worker."""
        outbox.STOPPING.set()
        super().request_stop(signum, frame)

    def subscribe(self) -> None:
        """RQ's command channel (`rq.command.send_shutdown_command` and the like), read in short
        reads: since redis-py 8.2 the worker's end waits for the listener's read under way."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=COMMAND_READ_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )

    def run_maintenance_tasks(self) -> None:
        """RQ's pass (registries, the scheduler); with Redis away it is put off, not fatal."""
        with self.scheduler_guard:
            try:
                super().run_maintenance_tasks()
            except RedisError as exc:
                self.log.warning("maintenance pass put off, Redis unreachable: %s", exc)

    def stop_scheduler(self) -> None:
        with self.scheduler_guard:
            self.scheduler_stopped = True
            super().stop_scheduler()


def supervise_scheduler(worker: GatewayWorker, stop: threading.Event) -> None:
    """Every SCHEDULER_CHECK_SECONDS: reap RQ's scheduler child if it died (a Redis outage kills
    it) and start another once this worker can take the scheduler lock (also when another
    worker's scheduler, which held it, is gone)."""
    reported = None
    while not stop.wait(SCHEDULER_CHECK_SECONDS):
        scheduler = worker.scheduler
        if scheduler is None:
            continue
        with worker.scheduler_guard:
            process = scheduler._process  # RQ's own worker reads it so too
            if worker.scheduler_stopped or (process is not None and process.is_alive()):
                continue  # is_alive() reaps a child that has exited
            if process is not None and process.pid != reported:
                reported = process.pid
                log.warning(
                    "RQ scheduler (pid %s) exited with code %s; starting another",
                    process.pid,
                    process.exitcode,
                )
            try:
                scheduler.acquire_locks(auto_start=True)
            except RedisError as exc:  # Redis still away: the next look tries again
                log.debug("scheduler lock not taken: %s", exc)


def _clear_dead_namesake(worker: GatewayWorker) -> None:
    """Let a worker take the name of one killed on this machine (its entry in Redis lasts
    `worker_ttl` more seconds, and RQ refuses a name in use); RuntimeError when the name is held
    by a worker that may be alive."""
    held = worker.connection.hgetall(worker.key)
    if not held or b"death" in held:
        return
    host, pid = held.get(b"hostname", b"").decode(), int(held.get(b"pid", 0) or 0)
    if host == worker.hostname and pid and not _alive(pid):
        log.warning("worker %s (pid %d) died unregistered; its name is taken", worker.name, pid)
        SimpleWorker.find_by_key(worker.key, connection=worker.connection).register_death()
        return
    raise RuntimeError(
        f"a worker named {worker.name} is registered (pid {pid} on {host or 'another machine'}); "
        f"give this one another --name, or wait up to {worker.worker_ttl} s for that entry to end"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _exit_with_parent(parent: int) -> None:
    """In a child forked by the worker (RQ's scheduler): be sent SIGTERM, which makes RQ's
    scheduler release its lock and stop, when the worker dies, even by SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the worker's handler, until RQ sets its own
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the worker died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        threading.Event().wait(1)
    os.kill(os.getpid(), signal.SIGTERM)


def _children_exit_with_this_process() -> None:
    """Make every child this process forks from now on end when it ends."""
    parent = os.getpid()
    os.register_at_fork(after_in_child=lambda: _exit_with_parent(parent))


def _relay_forever(svc: Services, stop: threading.Event) -> None:
    while not stop.wait(svc.settings.relay_interval_seconds):
        try:
            relay(svc, svc.dispatcher)
        except Exception:  # the relay must outlive a database hiccup
            log.exception("relay pass failed")


def _cron_forever(cron: WorkerCron, stop: threading.Event) -> None:
    """Run the daily cron, and again after it fails (Redis away ends RQ's loop): the same one,
    so a run that fell due meanwhile is queued as soon as Redis answers."""
    while not stop.is_set():
        try:
            cron.start()
            return  # stopped on purpose
        except Exception as exc:  # the cron must outlive any outage
            log.warning("daily cron stopped (%s); it starts again in %d s", exc, CRON_RETRY_SECONDS)
            stop.wait(CRON_RETRY_SECONDS)


def run_worker(
    svc: Services,
    *,
    burst: bool = False,
    with_scheduler: bool = True,
    maintenance_interval: int = 600,
    worker_ttl: int = 420,
    name: str | None = None,
    with_cron: bool = True,
    metrics_port: int = 0,
) -> None:
    """Work the gateway queue until stopped (or until it is empty, with `burst`); serve its
    metrics on `metrics_port` unless 0."""
    if svc.redis is None:
        raise RuntimeError("a worker needs REDIS_URL; the embedded default runs jobs in-process")
    if metrics_port:
        try:
            metrics.serve_process_metrics(metrics_port)
        except OSError as exc:
            raise RuntimeError(f"worker metrics port {metrics_port}: {exc.strerror}") from exc
        log.info("worker metrics at :%d/metrics", metrics_port)
    # Every commit of a worker may be done again: an item whose end was lost is claimed again
    # when its lease runs out, and handlers are idempotent (as after a worker killed mid-job).
    # So its commits need not wait for the disk (docs/architecture.md, docs/benchmarks.md).
    svc.db.commit_asynchronously()
    context.use(svc)
    stop = threading.Event()
    try:
        relay(svc, svc.dispatcher)  # side effects left behind by a process that died
        outbox.resume_held_at_start(svc)  # Credly jobs held back for a token no longer configured
    except SQLAlchemyError as exc:  # the database is down or hung: the relay tries again
        log.warning("outbox relay at start failed: %s", exc)
    relayer = threading.Thread(target=_relay_forever, args=(svc, stop), daemon=True)
    relayer.start()
    check_token_at_start(svc)  # the token's expiry as Credly reports it (daily: the cron's)
    if with_cron:
        cron = threading.Thread(target=_cron_forever, args=(make_cron(svc), stop), daemon=True)
        cron.name = "cron"
        cron.start()
    # The worker's own connection pool: RQ sizes its socket timeout for blocking dequeues.
    connection = Redis.from_url(svc.settings.redis_url)
    queue = Queue(svc.settings.queue_name, connection=connection)
    worker = GatewayWorker(
        [queue],
        connection=connection,
        name=name,
        maintenance_interval=maintenance_interval,
        worker_ttl=worker_ttl,
    )
    _clear_dead_namesake(worker)
    if with_scheduler and not burst:  # burst mode forks no scheduler: it queues due jobs itself
        _children_exit_with_this_process()
        supervisor = threading.Thread(
            target=supervise_scheduler, args=(worker, stop), daemon=True, name="scheduler-watch"
        )
        supervisor.start()
    try:
        worker.work(
            burst=burst, with_scheduler=with_scheduler, logging_level=svc.settings.log_level
        )
    finally:
        stop.set()
