"""A real `gateway worker` process: its metrics reach Prometheus; it supervises RQ's scheduler."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue

from gateway.cli.main import cli
from gateway.platform import clock, metrics
from jobs.cron import check_credly_token
from jobs.engine import worker as worker_process
from tests.support.badge_jobs import ended, items, submit
from tests.support.credly_standin import CredlyStandIn
from tests.support.events import granted
from tests.support.metrics import sample
from tests.support.serving import PrivateRedis, free_port, start_worker
from tests.support.verification import days_ago


def worker_env(tmp_path: Path, postgres_url: str, redis_url: str, **settings: str) -> dict:
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**env, "INSTANCE_PATH": str(tmp_path), **settings}


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_real_worker_serves_its_job_counts_and_writes_them_to_the_shared_folder(
    make_app, postgres_url, redis_url, tmp_path
):
    from tests.support.database import truncate

    truncate(postgres_url)
    web = make_app(database_url=postgres_url, redis_url=redis_url)
    svc = web.extensions["gateway"]
    port = free_port()
    shared = tmp_path / "metrics" / "of-this-host"  # missing: the worker makes it
    env = worker_env(
        tmp_path,
        postgres_url,
        redis_url,
        WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, log, "--no-cron")
    try:
        submit(svc, granted("2026-03-01"))
        deadline, done = time.monotonic() + 60, 0.0
        while done < 1:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
            with contextlib.suppress(requests.ConnectionError):
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
                done = sample(text, "gateway_jobs_total", kind="issue_badge", outcome="done")
        assert done == 1
        # What the web processes of the host report at /metrics: the worker's samples too.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(shared))
        host = generate_latest(registry).decode()
        assert sample(host, "gateway_jobs_total", kind="issue_badge", outcome="done") == 1
        assert sample(host, "gateway_jobs_total", kind="sync_verification", outcome="done") == 1
        # And what any web process reports, wherever the workers run: their outcomes, counted
        # in the database.
        text = web.test_client().get("/metrics").get_data(as_text=True)
        for kind in ("issue_badge", "sync_verification"):
            assert sample(text, "gateway_job_outcomes_total", kind=kind, outcome="done") == 1
    finally:
        stop(worker)
    truncate(postgres_url)


def test_a_multiprocess_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"), "INSTANCE_PATH": str(tmp_path)}
    result = CliRunner().invoke(cli, ["jobs", "failed"], env=env)
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if not line.startswith("{")] == [
        f"Error: PROMETHEUS_MULTIPROC_DIR '{blocker / 'metrics'}' is not a folder and cannot be "
        "made one: Not a directory"
    ]


@pytest.mark.parametrize("command", [["jobs", "failed"], ["serve"]])
def test_a_multiprocess_folder_of_spaces_alone_is_refused_in_one_line(
    command, tmp_path, monkeypatch
):
    """Not a folder named by spaces in the working directory."""

    def exec_gunicorn(*_: object) -> None:
        raise AssertionError("gunicorn started")

    monkeypatch.setattr(os, "execv", exec_gunicorn)
    monkeypatch.chdir(tmp_path)
    env = {"PROMETHEUS_MULTIPROC_DIR": "   ", "INSTANCE_PATH": str(tmp_path / "instance")}
    result = CliRunner().invoke(cli, command, env=env)
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if not line.startswith("{")] == [
        "Error: PROMETHEUS_MULTIPROC_DIR is blank (spaces only): leave it unset for its default"
    ]
    assert not (tmp_path / "   ").exists()


def test_gateway_serve_makes_a_folder_of_its_own_unless_one_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first, second = metrics.serve_folder(), metrics.serve_folder()
    try:
        assert first != second and os.path.isdir(first) and os.path.isdir(second)
    finally:
        os.rmdir(first)
        os.rmdir(second)
    chosen = tmp_path / "host-metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(chosen))
    assert metrics.serve_folder() == str(chosen) and chosen.is_dir()
    (chosen / "counter_123.db").write_bytes(b"")  # a worker's samples: kept
    assert metrics.serve_folder() == str(chosen)
    assert (chosen / "counter_123.db").exists()


def children_of(pid: int) -> list[int]:
    """The live (not zombie) child processes of `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, seconds: float = 40):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not in {seconds} s\n{log.read_text()[-3000:]}"
        assert proc.poll() is None, f"the worker exited\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return found


def kill_all(worker: subprocess.Popen, redis_server: PrivateRedis, postgres_url: str) -> None:
    """End a test's worker (its process group) and its redis-server; empty the database."""
    from tests.support.database import truncate

    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    if redis_server.proc.poll() is None:
        redis_server.stop()
    truncate(postgres_url)


LOCK = "rq:scheduler-lock:gateway"
WORKER = "rq:worker:drill"


@dataclass
class Drill:
    """A worker whose RQ scheduler child runs and holds the lock, on a redis-server of its own."""

    worker: subprocess.Popen
    scheduler: int
    redis_server: PrivateRedis
    redis: redis.Redis
    log: Path
    env: dict[str, str]

    def wait_for(self, what: str, check):
        return wait_for(what, check, self.worker, self.log)


@pytest.fixture
def drill(postgres_url, tmp_path) -> Iterator[Drill]:
    from tests.support.database import truncate

    truncate(postgres_url)
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    log = tmp_path / "worker.log"
    env = worker_env(tmp_path, postgres_url, redis_server.url)
    worker = start_worker(env, log, "--no-cron", "--name", "drill")
    try:
        client = redis.Redis.from_url(redis_server.url)
        [child] = wait_for("a scheduler child", lambda: children_of(worker.pid), worker, log)
        wait_for("the scheduler lock", lambda: client.exists(LOCK), worker, log)
        yield Drill(worker, child, redis_server, client, log, env)
    finally:
        kill_all(worker, redis_server, postgres_url)


def test_a_scheduler_killed_by_a_redis_outage_is_reaped_and_started_again(drill):
    first, worker = drill.scheduler, drill.worker
    # The outage comes while the worker waits for jobs, as it does most of its life (one that
    # comes while it runs a job: test_a_worker_busy_when_redis_goes_works_on_once_it_is_back).
    drill.wait_for("the worker waiting", lambda: drill.redis.hget(WORKER, "state") == b"idle")
    time.sleep(0.5)
    drill.redis_server.stop()
    drill.wait_for("the scheduler's death", lambda: not running(first))
    drill.redis_server.start()
    [second] = drill.wait_for("a new scheduler", lambda: children_of(worker.pid))
    assert second != first
    assert not Path(f"/proc/{first}").exists()  # reaped, not left a zombie
    drill.wait_for("the lock taken again", lambda: drill.redis.exists(LOCK))
    # started again by this worker's supervisor, or by RQ's own maintenance pass if it came first
    said = drill.log.read_text()
    assert "RQ scheduler (pid" in said or "Scheduler lock for gateway had expired" in said


def test_a_scheduler_ends_with_its_worker_killed_and_frees_the_lock(drill):
    assert drill.redis.ttl(LOCK) > 30  # left alone, it would outlive the test's wait
    os.kill(drill.worker.pid, signal.SIGKILL)  # the worker only: not its process group
    drill.worker.wait()
    deadline = time.monotonic() + 15
    while running(drill.scheduler) or drill.redis.exists(LOCK):
        assert time.monotonic() < deadline, (running(drill.scheduler), drill.redis.exists(LOCK))
        time.sleep(0.2)


def test_a_worker_takes_the_name_of_one_killed_here_but_not_of_one_alive(drill, tmp_path):
    env = drill.env
    twin_log = tmp_path / "twin.log"
    twin = start_worker(env, twin_log, "--no-cron", "--name", "drill")
    assert twin.wait(timeout=60) == 1  # the drill's worker is alive: refused in one line
    [line] = [ln for ln in twin_log.read_text().splitlines() if ln.startswith("Error:")]
    assert "a worker named drill is registered" in line and "Traceback" not in twin_log.read_text()
    os.killpg(drill.worker.pid, signal.SIGKILL)  # killed: its entry stays in Redis for minutes
    drill.worker.wait()
    after_log = tmp_path / "after.log"
    after = start_worker(env, after_log, "--no-cron", "--name", "drill")
    try:
        wait_for(
            "the new worker registered",
            lambda: drill.redis.hget(WORKER, "pid") == str(after.pid).encode(),
            after,
            after_log,
        )
    finally:
        stop(after)


def json_lines_only(log: Path) -> None:
    """Every line the worker wrote is one JSON object (no raw traceback)."""
    for line in log.read_text().splitlines():
        assert isinstance(json.loads(line), dict), line


def test_the_scheduler_killed_by_a_redis_outage_says_so_in_one_json_line(drill):
    drill.wait_for("the worker waiting", lambda: drill.redis.hget(WORKER, "state") == b"idle")
    drill.redis_server.stop()
    drill.wait_for("the scheduler's death", lambda: not running(drill.scheduler))
    drill.wait_for("its line", lambda: "RQ scheduler (pid" in drill.log.read_text())
    json_lines_only(drill.log)


def test_an_idle_worker_works_within_seconds_of_redis_coming_back_and_logs_no_error(drill):
    """RQ's idle wait looks for Redis at doubling intervals up to a minute: after an outage of
    20 s it would look again 16 s after the last look, holding every job queued meanwhile."""
    drill.wait_for("the worker waiting", lambda: drill.redis.hget(WORKER, "state") == b"idle")
    drill.redis_server.stop()
    time.sleep(20)
    drill.redis_server.start()
    back = time.monotonic()
    client = redis.Redis.from_url(drill.redis_server.url)
    Queue("gateway", connection=client).enqueue(check_credly_token)
    today = clock.now().date()
    drill.wait_for("the job run", lambda: client.exists(f"gateway:credly-token-checked:{today}"))
    assert time.monotonic() - back < worker_process.REDIS_LOOK_SECONDS + 3
    lines = [json.loads(line) for line in drill.log.read_text().splitlines()]
    looks = [line for line in lines if "could not connect to Redis" in line["msg"]]
    assert looks and {line["level"] for line in looks} == {"WARNING"}
    assert [line for line in lines if line["level"] == "ERROR"] == []


@pytest.fixture
def standin_worker(make_app, postgres_url, tmp_path):
    """A worker on a redis-server of its own, its Credly a stand-in; the app submitting to it."""
    from tests.support.database import truncate

    truncate(postgres_url)
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    with CredlyStandIn() as credly:
        settings = credly.settings
        app = make_app(
            database_url=postgres_url,
            redis_url=redis_server.url,
            credly_badge_templates={"RMA": "tmpl-rma"},
            **settings,
        )
        env = worker_env(
            tmp_path,
            postgres_url,
            redis_server.url,
            CREDLY_BADGE_TEMPLATES="RMA=tmpl-rma",
            **{key.upper(): value for key, value in settings.items()},
        )
        log = tmp_path / "worker.log"
        worker = start_worker(env, log, "--no-cron", "--name", "rider")
        try:
            yield worker, app.extensions["gateway"], credly, redis_server, log
        finally:
            kill_all(worker, redis_server, postgres_url)


def _busy_when_redis_goes(standin_worker) -> None:
    """Redis killed while the worker runs a drain job (its Credly call held until then), which
    then ends with Redis away: RQ's work loop quits; the worker says so and waits for Redis."""
    worker, svc, credly, redis_server, log = standin_worker
    client = redis.Redis.from_url(redis_server.url)
    wait_for("the worker", lambda: client.hget("rq:worker:rider", "state") == b"idle", worker, log)
    credly.queue_faults([{"hold": True}], operation="issue")
    submit(svc, granted(days_ago(30)))
    wait_for("the drain", lambda: client.hget("rq:worker:rider", "state") == b"busy", worker, log)
    wait_for("the issue call", credly.holding, worker, log)
    redis_server.stop()
    credly.release()
    wait_for("the loss said", lambda: "lost Redis" in log.read_text(), worker, log)


def test_a_worker_busy_when_redis_goes_works_on_once_it_is_back(standin_worker):
    worker, svc, _credly, redis_server, log = standin_worker
    _busy_when_redis_goes(standin_worker)
    # The drain job ran its items to their end in PostgreSQL: none is left running.
    assert ended(svc, "issue_badge", ("done",)), [i.state for i in items(svc, "issue_badge")]
    time.sleep(2)  # the worker looks for Redis again and again meanwhile
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    registered = lambda: client.hget("rq:worker:rider", "pid") == str(worker.pid).encode()  # noqa: E731
    wait_for("the worker registered again", registered, worker, log, seconds=15)
    second = granted(days_ago(30), cert="C-2")
    second["data"]["member"]["email"] = "grace@example.org"  # not a duplicate of the first
    submit(svc, second)
    wait_for("the next grant's jobs", lambda: len(items(svc, "issue_badge")) == 2, worker, log)
    wait_for("them done", lambda: ended(svc, "issue_badge", ("done",)), worker, log, seconds=15)
    assert worker.poll() is None
    json_lines_only(log)


def test_a_worker_waiting_for_redis_stops_at_once_when_asked(standin_worker):
    worker, _svc, _credly, _redis_server, log = standin_worker
    _busy_when_redis_goes(standin_worker)
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=5) == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 2
    assert "worker stopped while Redis was unreachable" in log.read_text()


def test_a_scheduler_child_left_running_is_stopped_as_the_worker_ends():
    # RQ may fork the scheduler as the worker is asked to stop, too late for its teardown to
    # stop it; the worker process, waiting for its children at exit, would then never end.
    child = multiprocessing.get_context("fork").Process(target=_deaf_to_sigterm)
    child.start()
    worker_process._end_children(grace=1)
    assert not child.is_alive() and child.exitcode is not None


def _deaf_to_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
