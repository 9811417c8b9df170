"""Shared fixtures: real PostgreSQL and Redis (failing loudly when absent), SQLite, apps."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest
import redis
from flask import Flask
from sqlalchemy import text

from gateway import clock, create_app
from gateway.config import Settings
from gateway.store.db import Database
from gateway.store.models import Base
from jobs.dispatch import InProcessDispatcher

PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_SERVER = "redis://127.0.0.1:6379"
#: Redis databases a test session may take when GATEWAY_TEST_REDIS_URL names none (13: benches').
REDIS_DATABASES = (15, 14, 12, 11, 10, 9)
#: The key in database 0 under which a test session (or a bench run) holds a Redis database.
REDIS_CLAIM = "gateway-tests:redis-db:{number}"


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


def _pg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"gw_test_{uuid.uuid4().hex[:10]}"
    admin = _pg_conninfo(PG_ADMIN_URL)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required at {PG_ADMIN_URL} (GATEWAY_TEST_DATABASE_URL): {exc}",
            pytrace=False,
        )
    base, _, _ = admin.rpartition("/")
    url = f"{base}/{name}"
    Database(url).upgrade()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
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


def _truncate(url: str) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        else:
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """Each test using it runs once on SQLite and once on the real PostgreSQL, on empty tables."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
        Database(url).upgrade()
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    yield url
    _truncate(url)


@pytest.fixture
def make_app(tmp_path) -> Iterator[Callable[..., Flask]]:
    """Build apps from settings; their database connections are closed after the test."""
    apps: list[Flask] = []

    def factory(jobs: str = "ON_DEMAND", **settings: object) -> Flask:
        settings.setdefault("instance_path", str(tmp_path / "instance"))
        app = create_app(Settings(**settings), jobs=jobs)
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if isinstance(app.extensions["gateway"].dispatcher, InProcessDispatcher):
            app.extensions["gateway"].dispatcher.close()  # a polling thread would outlive the test
        app.extensions["gateway"].db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask], database_url: str) -> Flask:
    """The app on each database, without Redis (jobs in-process)."""
    return make_app(database_url=database_url)


@pytest.fixture
def client(app: Flask):
    """A test client of `app`."""
    return app.test_client()


def register_client(app: Flask, scope: str, name: str = "test client") -> tuple[str, str]:
    """Create an API client directly in the app's database; returns (client_id, secret)."""
    from gateway import auth

    with app.extensions["gateway"].db.transaction() as session:
        new = auth.create_client(session, name, scope)
    return new.client_id, new.client_secret


def fetch_token(app: Flask, scope: str) -> str:
    """A bearer token for a new client with `scope`, through the token endpoint."""
    client_id, secret = register_client(app, scope)
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


@pytest.fixture
def token_for(app: Flask) -> Callable[[str], dict[str, str]]:
    """Authorization headers carrying a fresh token with the given scope."""
    return lambda scope: {"Authorization": f"Bearer {fetch_token(app, scope)}"}
