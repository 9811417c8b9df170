"""The workers' daily cron outlives a Redis outage and queues what fell due while Redis was away."""

from __future__ import annotations

import threading
import time

from redis import Redis
from rq import Queue
from rq.cron import CronScheduler

from jobs.cron import WorkerCron, check_credly_token
from jobs.engine import worker
from tests.support.database import truncate
from tests.support.serving import PrivateRedis


def _queued(url: str) -> int:
    with Redis.from_url(url, socket_timeout=1) as connection:
        return Queue("cron-test", connection=connection).count


def _wait_for_a_job(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if _queued(url):
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_the_cron_starts_again_after_redis_went_away(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(worker, "CRON_RETRY_SECONDS", 0.2)
    redis = PrivateRedis(tmp_path)
    redis.start()
    cron = WorkerCron(connection=Redis.from_url(redis.url, socket_timeout=1))
    cron.register(check_credly_token, queue_name="cron-test", interval=1)
    stop = threading.Event()
    thread = threading.Thread(target=worker._cron_forever, args=(cron, stop), daemon=True)
    thread.start()
    try:
        assert _wait_for_a_job(redis.url, 30)
        redis.stop()
        deadline = time.monotonic() + 30
        while "daily cron stopped" not in caplog.text:  # the cron's loop fails on Redis
            assert time.monotonic() < deadline, "the cron did not stop on Redis's absence"
            time.sleep(0.1)
        redis.start()  # empty: only a cron that runs again queues a job in it
        assert _wait_for_a_job(redis.url, 30)
    finally:
        stop.set()
        redis.stop()
    thread.join(20)  # it ends at its cron loop's next look at Redis
    assert not thread.is_alive()


def test_a_worker_that_ends_ends_its_cron_which_says_so_in_redis(
    make_app, postgres_url, redis_url, redis_client
):
    truncate(postgres_url)
    svc = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    worker.run_worker(svc, burst=True, with_scheduler=False)
    assert [thread for thread in threading.enumerate() if thread.name == "cron"] == []
    assert CronScheduler.all(redis_client) == []  # it registered its end, not left to expire
