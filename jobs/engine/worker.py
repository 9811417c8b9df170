"""The worker process: RQ's SimpleWorker with its scheduler, the outbox relay, the daily cron."""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.scheduler import RQScheduler
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform import metrics
from gateway.store.db import UNAVAILABLE, unavailable_reason
from gateway.usecases.credly_token import check_token_at_start
from gateway.usecases.services import Services
from jobs.cron import WorkerCron, catch_up, make_cron
from jobs.engine import context, outbox
from jobs.engine.dispatch import relay

log = logging.getLogger("jobs.engine.worker")

SCHEDULER_CHECK_SECONDS = 5  # how often a worker looks whether its RQ scheduler child still runs
CRON_RETRY_SECONDS = 5  # how long after the daily cron failed (Redis away) it starts again
CRON_STOP_SECONDS = 2  # how long a stopping worker waits for its cron to say in Redis it ended
COMMAND_READ_SECONDS = 1.0  # the longest read of RQ's command listener (RQ's own: 60 s)
REDIS_WAIT_SECONDS = (
    1.0,
    30.0,
)  # after a Redis outage, the first and the longest wait between looks
REDIS_PROBE_SECONDS = 3.0  # the longest a look whether Redis answers again waits for its answer
STOP_LOOK_SECONDS = 0.2  # how often a worker waiting for Redis looks whether it is asked to stop
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

#: The errors of a Redis that does not answer (a Redis error of a command Redis answered is not).
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError)

T = TypeVar("T")


class GatewayScheduler(RQScheduler):
    """RQ's scheduler, whose child process ends in one log line and exit status 1 when its loop
    fails (a Redis outage), where RQ's has multiprocessing print the traceback on stderr."""

    def work(self) -> None:
        """RQ's loop, in the child process."""
        try:
            super().work()
            return
        except REDIS_AWAY as exc:
            log.warning("RQ scheduler (pid %d) stopped, Redis unreachable: %s", os.getpid(), exc)
        except Exception:
            log.exception("RQ scheduler (pid %d) failed", os.getpid())
        # Not SystemExit, which RQ's child would log again as an error, with a traceback.
        os._exit(1)


def _noting_redis_away(method: Callable[..., T]) -> Callable[..., T]:
    """A step of RQ's work loop that records on the worker whether Redis answered it: None, or
    the error of a Redis that did not, which ends the loop (RQ logs it and quits)."""

    @functools.wraps(method)
    def step(worker: GatewayWorker, *args: Any, **kwargs: Any) -> T:
        try:
            done = method(worker, *args, **kwargs)
        except REDIS_AWAY as exc:
            worker.redis_lost = exc
            raise
        worker.redis_lost = None
        return done

    return step


#: The longest an idle worker waits between its looks for Redis during an outage (RQ's 60 s would
#: hold the wake-ups the relay queues once Redis is back for up to a minute).
REDIS_LOOK_SECONDS = 5.0


class RedisAwayIsAWarning(logging.Filter):
    """RQ's worker logs a Redis outage as errors: its work loop "found an unhandled exception,
    quitting" with a traceback (the worker does not quit: `run_worker` logs `lost Redis` and
    waits), and its idle wait "could not connect to Redis" at each look. Both are the outage, as
    the rest of the gateway logs it: the first is dropped, the second a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR:
            return True
        message = str(record.msg)
        if "found an unhandled exception" in message and record.exc_info:
            return not isinstance(record.exc_info[1], REDIS_AWAY)
        if "could not connect to Redis" in message:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_REDIS_AWAY_IS_A_WARNING = RedisAwayIsAWarning()


class GatewayWorker(SimpleWorker):
    """RQ's SimpleWorker whose scheduler child is restarted, one at a time, by RQ's maintenance
    pass and by `supervise_scheduler`, never after the worker stopped it; its work loop, ended
    by a Redis outage, says so in `redis_lost` (`run_worker` then registers another worker)."""

    max_connection_wait_time = REDIS_LOOK_SECONDS

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.scheduler_guard = threading.Lock()
        self.scheduler_stopped = False
        #: The error of the Redis outage that ended the work loop; None while Redis answers.
        self.redis_lost: RedisError | None = None

    # The steps of RQ's work loop, each of which may meet a Redis outage.
    check_for_suspension = _noting_redis_away(SimpleWorker.check_for_suspension)
    dequeue_job_and_maintain_ttl = _noting_redis_away(SimpleWorker.dequeue_job_and_maintain_ttl)
    execute_job = _noting_redis_away(SimpleWorker.execute_job)
    heartbeat = _noting_redis_away(SimpleWorker.heartbeat)

    def _install_signal_handlers(self) -> None:
        """RQ's; a worker asked to stop before them (while Redis was away) stops at once."""
        super()._install_signal_handlers()
        if outbox.STOPPING.is_set():
            self._stop_requested = True

    def request_stop(self, signum: int, frame: object) -> None:
        """A warm stop (SIGTERM, SIGINT): the job at hand ends after the items its threads are
        running, giving the rest of their claims back for another worker. With Redis away, the
        stop is not recorded there, but done all the same."""
        outbox.STOPPING.set()
        try:
            super().request_stop(signum, frame)
        except REDIS_AWAY as exc:
            self.log.warning("stop requested, not recorded in Redis: %s", exc)

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

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's, with a GatewayScheduler child (in a burst RQ's forks none: it queues the due
        jobs itself)."""
        if burst:
            super()._start_scheduler(burst, logging_level, date_format, log_format)
            return
        self.scheduler = GatewayScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks(auto_start=True)

    def stop_scheduler(self) -> None:
        with self.scheduler_guard:
            self.scheduler_stopped = True
            super().stop_scheduler()

    def teardown(self) -> None:
        """RQ's; with Redis away, the worker's entry is left to expire and its command listener
        is stopped (RQ's would raise, the listener left running)."""
        try:
            super().teardown()
        except REDIS_AWAY as exc:
            self.redis_lost = self.redis_lost or exc
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()
                self.pubsub.close()


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
        except UNAVAILABLE as exc:  # the database's state, not a fault: one line a pass
            log.warning("relay pass: database unavailable: %s", unavailable_reason(exc))
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
    logging.getLogger("rq.worker").addFilter(_REDIS_AWAY_IS_A_WARNING)  # once, however often run
    # The worker's own connection pool: RQ sizes its socket timeout for blocking dequeues.
    connection = Redis.from_url(svc.settings.redis_url)
    connection.ping()  # a Redis away at start stops the worker before any thread says so
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
    start_failure: SQLAlchemyError | None = None
    try:
        relay(svc, svc.dispatcher)  # side effects left behind by a process that died
        outbox.resume_held_at_start(svc)  # Credly jobs held back for a token no longer configured
    except SQLAlchemyError as exc:  # the database is down or hung: the relay tries again
        log.warning("outbox relay at start failed: %s", unavailable_reason(exc))
        start_failure = exc
    relayer = threading.Thread(target=_relay_forever, args=(svc, stop), daemon=True)
    relayer.start()
    check_token_at_start(svc)  # the token's expiry as Credly reports it (daily: the cron's)
    cron = make_cron(svc) if with_cron else None
    cron_thread: threading.Thread | None = None
    if cron is not None and not burst:
        try:
            catch_up(svc)  # a SWEEP_TIME passed while no worker ran
        except RedisError as exc:  # the cron queues the next day's; a later start catches up
            log.warning("daily sweep not caught up at start: %s", exc)
        cron_thread = threading.Thread(
            target=_cron_forever, args=(cron, stop), daemon=True, name="cron"
        )
        cron_thread.start()
    queue = Queue(svc.settings.queue_name, connection=connection)
    if with_scheduler and not burst:  # burst mode forks no scheduler: it queues due jobs itself
        _children_exit_with_this_process()
    register = functools.partial(
        _registered,
        [queue],
        connection=connection,
        name=name,
        maintenance_interval=maintenance_interval,
        worker_ttl=worker_ttl,
    )
    try:
        worker: GatewayWorker | None = register()
        while worker is not None:
            _work(worker, burst=burst, with_scheduler=with_scheduler, level=svc.settings.log_level)
            if worker.redis_lost is None or outbox.STOPPING.is_set():
                if burst and start_failure is not None:
                    # no later pass: the burst ended with its outbox not even looked at
                    raise start_failure
                return
            if burst:
                raise worker.redis_lost
            log.warning(
                "worker %s lost Redis (%s); it works again, registered afresh, once Redis answers",
                worker.name,
                worker.redis_lost,
            )
            worker = _await_redis(svc.settings.redis_url, worker, register)
        log.info("worker stopped while Redis was unreachable")
    finally:
        stop.set()
        if cron is not None:
            cron.stopping.set()  # it ends, and says so in Redis, while the children end
        _end_children()
        if cron_thread is not None:
            cron_thread.join(CRON_STOP_SECONDS)


def _end_children(grace: float = 5.0) -> None:
    """Stop the scheduler child that RQ started as the worker was asked to stop (its teardown
    did not know of it): the process would otherwise wait for it at exit, for good."""
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(grace)
        if child.is_alive():  # its SIGTERM handler did not end it
            child.kill()
            child.join()


def _registered(*args: Any, **kwargs: Any) -> GatewayWorker:
    """A new worker (RQ's arguments), taking the name of one killed on this machine."""
    worker = GatewayWorker(*args, **kwargs)
    _clear_dead_namesake(worker)
    return worker


def _work(worker: GatewayWorker, *, burst: bool, with_scheduler: bool, level: str) -> None:
    """Run RQ's work loop, its scheduler child watched by `supervise_scheduler`, until it ends (a
    Redis outage: `worker.redis_lost`)."""
    watched = threading.Event()
    if with_scheduler and not burst:
        threading.Thread(
            target=supervise_scheduler, args=(worker, watched), daemon=True, name="scheduler-watch"
        ).start()
    try:
        worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=level)
    except REDIS_AWAY as exc:  # at its registration, before RQ's loop began
        worker.redis_lost = exc
        worker.teardown()
    finally:
        watched.set()


def _stop_asked(_signum: int, _frame: object) -> None:
    """SIGTERM, SIGINT while no worker is registered with RQ: the process stops."""
    outbox.STOPPING.set()  # only ever read with is_set(), which takes no lock


def _await_redis(
    url: str, lost: GatewayWorker, register: Callable[[], GatewayWorker]
) -> GatewayWorker | None:
    """Look whether Redis answers again, less often as the outage lasts (REDIS_WAIT_SECONDS),
    until it does: then end the registration of `lost` and return a new worker from `register`.
    None when the process is asked to stop first (which it is at once)."""
    signal.signal(signal.SIGTERM, _stop_asked)  # RQ's, of `lost`, would talk to Redis
    signal.signal(signal.SIGINT, _stop_asked)
    probe = Redis.from_url(
        url, socket_timeout=REDIS_PROBE_SECONDS, socket_connect_timeout=REDIS_PROBE_SECONDS
    )
    wait, longest = REDIS_WAIT_SECONDS
    try:
        while not outbox.STOPPING.is_set():
            try:
                probe.ping()  # with a timeout: the worker's own connection has none
                lost.register_death()
                worker = register()
                log.info(
                    "Redis answers again: worker %s takes over from %s", worker.name, lost.name
                )
                return worker
            except RedisError as exc:
                log.debug("Redis still unreachable: %s", exc)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not outbox.STOPPING.is_set():
                time.sleep(STOP_LOOK_SECONDS)
            wait = min(2 * wait, longest)
        return None
    finally:
        probe.close()
