"""A database that accepts connections and never answers: every request that needs it answers
503 with Retry-After within seconds, `/healthz` keeps answering, nothing waits forever."""

from __future__ import annotations

import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import literal, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.store import db as db_module
from gateway.store.db import RETRY_CONNECT_SECONDS, Database
from gateway.web.api.health import READINESS_TIMEOUT_SECONDS
from jobs.engine.worker import run_worker
from tests.support.events import granted
from tests.support.serving import (
    PausableProxy,
    free_port,
    serve_env,
    silent_server,
    start_serve,
)

ONE = select(literal(1))


def _timed(work) -> tuple[float, Exception | None]:
    started = time.monotonic()
    try:
        work()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def test_connecting_gives_up_after_the_timeout_then_fails_at_once_until_it_tries_again():
    with silent_server() as port:
        db = Database(f"postgresql://postgres@127.0.0.1:{port}/gateway", connect_timeout=2)
        try:
            waited, error = _timed(lambda: db.read(ONE))
            assert isinstance(error, OperationalError) and 1.5 < waited < 4, (waited, error)
            waited, error = _timed(lambda: db.read(ONE))  # the database is known unreachable
            assert isinstance(error, OperationalError) and waited < 1.5, (waited, error)  # < 2 s
            assert "not tried again for" in str(error)
            time.sleep(RETRY_CONNECT_SECONDS)
            waited, error = _timed(lambda: db.read(ONE))  # tried again: waits the timeout again
            assert isinstance(error, OperationalError) and 1.5 < waited < 4, (waited, error)
        finally:
            db.engine.dispose()


def test_a_database_that_answers_again_is_used_again(postgres_url):
    db = Database(postgres_url, connect_timeout=2)
    guard = db.connect_guard
    # A minute to fail fast in, however slow the machine (with 0.5 s, a slow one could let it
    # pass before the first read); then the minute is over.
    guard.failure, guard.retry_at = "connection timeout expired", time.monotonic() + 60
    try:
        with pytest.raises(OperationalError, match="not tried again"):
            db.read(ONE)
        guard.retry_at = time.monotonic()
        assert db.read(ONE) == [(1,)]
        assert guard.failure is None
    finally:
        db.engine.dispose()


def test_a_statement_longer_than_the_statement_timeout_is_cancelled(postgres_url):
    db = Database(postgres_url, statement_timeout_ms=300)
    try:
        waited, error = _timed(lambda: db.read(text("SELECT pg_sleep(30)")))
        assert isinstance(error, OperationalError) and waited < 10, (waited, error)
        assert "statement timeout" in str(error)
        db.upgrade()  # migrations are not limited
    finally:
        db.engine.dispose()


def test_waiting_for_a_pooled_connection_gives_up_after_the_pool_timeout(postgres_url):
    db = Database(postgres_url, pool_timeout=1)
    held = [db.engine.connect() for _ in range(20)]  # pool_size 10 and 10 overflow
    try:
        waited, error = _timed(db.engine.connect)
        assert isinstance(error, PoolTimeout) and waited < 10, (waited, error)  # not 30 s
    finally:
        for connection in held:
            connection.close()
        db.engine.dispose()


@pytest.fixture
def hung(make_app):
    with silent_server() as port:
        app = make_app(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/gateway",
            database_connect_timeout_seconds=2,
        )
        yield app.test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/verifications/CERT-1", None),
        ("post", "/v1/verifications/batch", {"certification_ids": ["CERT-1"]}),
        ("post", "/v1/events", granted("2026-03-01")),
        ("get", "/v1/certifications/CERT-1", None),
        ("get", "/readyz", None),
    ],
)
def test_with_the_database_hung_an_api_answer_is_a_503_within_seconds(hung, method, path, body):
    started = time.monotonic()
    response = getattr(hung, method)(
        path, json=body, headers={"Authorization": "Bearer some-token"}
    )
    assert time.monotonic() - started < 4
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"


def test_gateway_serve_answers_503s_and_healthz_while_the_database_hangs(
    tmp_path, signing_keys_made
):
    """A gunicorn worker with 2 threads and 16 lookups at once: none waits long, healthz answers.
    Its key file is there (no new one is made while the database cannot say what was signed)."""
    shutil.copy(signing_keys_made, tmp_path / "signing-keys.json")
    with silent_server() as db_port:
        port = free_port()
        env = serve_env(
            tmp_path,
            f"postgresql://postgres@127.0.0.1:{db_port}/gateway",
            port,
            WEB_WORKERS="1",
            WEB_THREADS="2",
            DATABASE_CONNECT_TIMEOUT_SECONDS="2",
        )
        proc = start_serve(env, tmp_path / "stderr.log")
        base = f"http://127.0.0.1:{port}"
        try:

            def get(path: str) -> tuple[float, requests.Response]:
                started = time.monotonic()
                response = requests.get(base + path, timeout=30)
                return time.monotonic() - started, response

            with ThreadPoolExecutor(17) as pool:
                lookups = [pool.submit(get, f"/v1/verifications/C-{n}") for n in range(16)]
                time.sleep(0.3)  # the lookups are in, holding or queued for the threads
                health_took, health = pool.submit(get, "/healthz").result()
                answers = [lookup.result() for lookup in lookups]
            assert health.status_code == 200 and health_took < 4, health_took
            for took, response in answers:
                assert response.status_code == 503, response.text
                assert response.headers["Content-Type"] == "application/problem+json"
                assert response.headers["Retry-After"] == str(RETRY_CONNECT_SECONDS)
                assert took < 6, took
            page_took, page = get("/verify?certification_id=C-1")
            assert page.status_code == 503 and page_took < 4
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_a_worker_with_the_database_hung_ends_its_job_within_seconds_and_goes_on(
    make_app, redis_url, redis_client, caplog
):
    """The drain job ends with one warning line, no traceback (the database's state is no fault
    of the job); the outbox items stay in the database, due, for the relay to wake a worker again
    once it answers. The burst itself, its outbox not looked at, ends in the database's error
    (`gateway worker --burst` exits 1)."""
    with silent_server() as port:
        svc = make_app(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/gateway",
            redis_url=redis_url,
            database_connect_timeout_seconds=2,
        ).extensions["gateway"]
        svc.dispatcher.wake()  # a drain job queued
        queue = Queue(svc.settings.queue_name, connection=redis_client)
        assert queue.count == 1
        waited, error = _timed(
            lambda: run_worker(svc, burst=True, with_scheduler=False, with_cron=False)
        )
        assert isinstance(error, OperationalError) and waited < 15, (waited, error)
        assert queue.count == 0 and len(FailedJobRegistry(queue=queue)) == 0
        [start] = [r for r in caplog.records if r.getMessage().startswith("outbox relay at start")]
        assert start.levelname == "WARNING" and "\n" not in start.getMessage()
        assert "Background on this error" not in start.getMessage()
        [said] = [r for r in caplog.records if r.name == "jobs.engine.dispatch"]
        assert said.levelname == "WARNING" and not said.exc_info
        assert said.getMessage().startswith("drain: database unavailable: ")
        assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_readiness_says_the_database_is_down_within_its_deadline_when_it_hangs(
    postgres_url, make_app
):
    """A pooled connection to a server that stopped answering: no statement timeout can end the
    wait, so readiness cuts the connection itself."""
    parts = urlsplit(postgres_url)
    with PausableProxy(parts.port or 5432) as proxy:
        through = postgres_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        client = make_app(database_url=through).test_client()
        assert client.get("/readyz").status_code == 200  # a pooled connection now
        proxy.hang()
        waited, answer = _timed_answer(lambda: client.get("/readyz"))
        assert answer.status_code == 503 and waited < READINESS_TIMEOUT_SECONDS + 1.5, waited
        assert [e["field"] for e in answer.get_json()["errors"]] == ["database"]
        proxy.resume()
        assert client.get("/readyz").status_code == 200


def test_readiness_gives_up_connecting_to_a_hung_database_within_its_deadline(
    make_app, monkeypatch
):
    """However long DATABASE_CONNECT_TIMEOUT_SECONDS lets requests wait for a connection (here
    every request tries to connect, as the first after the fail-fast window does)."""
    monkeypatch.setattr(db_module, "RETRY_CONNECT_SECONDS", 0)
    with silent_server() as port:
        client = make_app(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/gateway",
            database_connect_timeout_seconds=5,
        ).test_client()
        waited, answer = _timed_answer(lambda: client.get("/readyz"))
        assert answer.status_code == 503 and waited < READINESS_TIMEOUT_SECONDS + 1, waited
        assert answer.headers["Retry-After"] == "5"
        assert [e["field"] for e in answer.get_json()["errors"]] == ["database"]


def _timed_answer(call):
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


def test_readiness_with_redis_hung_waits_for_it_once(postgres_url, make_app):
    with silent_server() as port:
        client = make_app(database_url=postgres_url, redis_url=f"redis://127.0.0.1:{port}/0")
        waited, answer = _timed_answer(lambda: client.test_client().get("/readyz"))
    assert answer.status_code == 503 and waited < 3.5, waited  # one 2 s Redis timeout, not three
    assert [e["field"] for e in answer.get_json()["errors"]] == ["redis"]
