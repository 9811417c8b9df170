"""Shared fixtures: real PostgreSQL and Redis (failing loudly when absent), SQLite, apps."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sqlite3
import time as time_module
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from flask import Flask
from werkzeug.security import generate_password_hash

from gateway.bootstrap import create_app
from gateway.platform import clock, logs, signing
from gateway.platform.config import Settings
from gateway.store.db import Database
from gateway.usecases import clients
from jobs.engine.dispatch import InProcessDispatcher
from tests.support.clients import fetch_token
from tests.support.database import REDIS_CLAIM, REDIS_DATABASES, new_database, truncate
from tests.support.events import granted
from tests.support.openapi_answers import check_answers
from tests.support.verification import days_ago, record

PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_SERVER = "redis://127.0.0.1:6379"


#: Seconds before a minute turns in which a rate-limit test waits for the next one to start.
RATE_WINDOW_MARGIN = 5

#: How far --clock moves the gateway's clock ahead of the real time for the whole session.
CLOCK_OFFSET = timedelta(0)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock",
        metavar="YYYY-MM-DD",
        type=date.fromisoformat,
        help="run with the gateway's clock on this day (from noon UTC on), not the real one",
    )


def pytest_configure(config: pytest.Config) -> None:
    global CLOCK_OFFSET
    # The gateway's JSON log handler, set before any test: an app's first set-up replaces the
    # root logger's handlers, and with them a test's `caplog` when it ran first.
    logs.configure("INFO")
    day = config.getoption("--clock")
    if day is not None:
        CLOCK_OFFSET = datetime.combine(day, time(12), UTC) - datetime.now(UTC)


@pytest.fixture(autouse=True)
def gateway_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """The gateway's clock during a test: on the day of its `on_day` mark (from noon UTC on),
    else the session's (the real time, or --clock's day)."""
    day = request.node.get_closest_marker("on_day")
    if day is not None:
        clock.set_now(datetime.combine(date.fromisoformat(day.args[0]), time(12), UTC))
    else:
        clock.set_now(datetime.now(UTC) + CLOCK_OFFSET)
    yield
    clock.set_now(None)


@pytest.fixture(autouse=True)
def quick_secret_hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client secrets a test registers in-process are hashed with one PBKDF2 round, not scrypt's
    100 ms of CPU (as Django's test settings swap the password hasher). The check reads the method
    from the stored hash, so tokens are issued the same way. A test marked `scrypt_secrets`, and
    every `gateway` process a test starts, hash as the gateway does."""
    if request.node.get_closest_marker("scrypt_secrets") is None:
        quick = functools.partial(generate_password_hash, method="pbkdf2:sha256:1")
        monkeypatch.setattr(clients, "generate_password_hash", quick)


@pytest.fixture
def within_one_minute() -> None:
    """Start the test clear of a minute's last seconds, so its per-minute rate limits stay in one
    window: after the turn of a minute the sliding window's estimate drops, and one more passes."""
    left = 60 - time_module.time() % 60
    if left < RATE_WINDOW_MARGIN:
        time_module.sleep(left + 0.05)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(new_database(PG_ADMIN_URL, "gw_test"))
        except psycopg.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL is required at {PG_ADMIN_URL} (GATEWAY_TEST_DATABASE_URL): {exc}",
                pytrace=False,
            )
        Database(url).upgrade()
        yield url


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database without any schema, dropped after the test."""
    with new_database(PG_ADMIN_URL, "gw_empty") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The session's Redis database, which the tests empty at will: GATEWAY_TEST_REDIS_URL, or
    the first of REDIS_DATABASES that no other session holds (a claim in database 0), so that
    two test sessions on one machine never flush each other's."""
    given = os.environ.get("GATEWAY_TEST_REDIS_URL")
    url = given or REDIS_SERVER
    try:
        server = redis.Redis.from_url(url, socket_connect_timeout=3)
        server.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {url} (GATEWAY_TEST_REDIS_URL): {exc}", pytrace=False)
    if given:
        worker = getattr(request.config, "workerinput", None)  # set in pytest-xdist's processes
        if worker is not None and worker["workercount"] > 1:
            pytest.fail(
                "GATEWAY_TEST_REDIS_URL names one Redis database, which parallel pytest processes "
                "would flush under each other: run one process (-n 0)",
                pytrace=False,
            )
        yield given
        return
    claims = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    session = uuid.uuid4().hex
    for number in REDIS_DATABASES:
        claim = REDIS_CLAIM.format(number=number)
        if claims.set(claim, session, nx=True, ex=3600):
            break
    else:
        pytest.fail(f"Redis databases {REDIS_DATABASES} are all held by test sessions", False)
    url = f"{REDIS_SERVER}/{number}"
    redis.Redis.from_url(url).flushdb()  # ours now: whatever a killed session left goes
    try:
        yield url
    finally:
        if claims.get(claim) == session.encode():
            claims.delete(claim)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def sqlite_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file made once, which `database_url` copies for each test (Alembic reads
    and compiles every migration on each upgrade: ten times the copy's cost)."""
    path = tmp_path_factory.mktemp("sqlite") / "migrated.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """Each test using it runs once on SQLite and once on the real PostgreSQL, on empty tables."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.sqlite3"
        migrated = sqlite3.connect(request.getfixturevalue("sqlite_migrated"))
        with contextlib.closing(migrated), contextlib.closing(sqlite3.connect(path)) as copy:
            migrated.backup(copy)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    truncate(url)
    yield url
    truncate(url)


@pytest.fixture(scope="session")
def signing_keys_made(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A key set made once, as a first start makes one (an RSA key takes tens of ms to make)."""
    path = tmp_path_factory.mktemp("keys") / "signing-keys.json"
    signing.SigningKeys.load(path)
    return str(path)


@pytest.fixture
def make_app(tmp_path, signing_keys_made: str) -> Iterator[Callable[..., Flask]]:
    """Build apps from settings; their database connections are closed after the test.

    An app in the default instance folder starts with a copy of one key set made for the session
    (a test of a first start names its own folder or SIGNING_KEYS_FILE). Every answer they give
    is checked against the OpenAPI document (`check_answers`)."""
    apps: list[Flask] = []
    default_keys = tmp_path / "instance" / "signing-keys.json"

    def factory(jobs: str = "ON_DEMAND", **settings: object) -> Flask:
        own_folder = "instance_path" in settings or settings.get("signing_keys_file")
        if not own_folder and not default_keys.exists():
            default_keys.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(signing_keys_made, default_keys)
        settings.setdefault("instance_path", str(tmp_path / "instance"))
        app = create_app(Settings(**settings), jobs=jobs)
        app.testing = True
        check_answers(app)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if isinstance(app.extensions["gateway"].dispatcher, InProcessDispatcher):
            app.extensions["gateway"].dispatcher.close()  # a polling thread would outlive the test
        app.extensions["gateway"].db.engine.dispose()


@pytest.fixture
def app(database_url: str, make_app: Callable[..., Flask]) -> Flask:
    """The app on each database, without Redis (jobs in-process)."""
    return make_app(database_url=database_url)


@pytest.fixture
def served_certification(make_app: Callable[..., Flask], postgres_url: str) -> Iterator[str]:
    """An active certification of the RMA credential, on the PostgreSQL database the tests give
    `gateway serve`: its number. The database is emptied after the test: a receipt signed with
    the test's keys would stop a later start without a key file (as a lost one)."""
    app = make_app(database_url=postgres_url, jobs_synchronous=True)
    record(app, granted(days_ago(30), cert="SERVED-1", event_id="served-1-granted"))
    yield "SERVED-1"
    truncate(postgres_url)


@pytest.fixture
def client(app: Flask):
    """A test client of `app`."""
    return app.test_client()


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests Flask dispatched (the others were answered in front of it)."""
    seen: list[str] = []
    through_flask = Flask.full_dispatch_request

    def spy(self: Flask):
        from flask import request

        seen.append(request.path)
        return through_flask(self)

    monkeypatch.setattr(Flask, "full_dispatch_request", spy)
    return seen


@pytest.fixture
def token_for(app: Flask) -> Callable[[str], dict[str, str]]:
    """Authorization headers carrying a fresh token with the given scope."""
    return lambda scope: {"Authorization": f"Bearer {fetch_token(app, scope)}"}
