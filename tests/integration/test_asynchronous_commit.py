"""A worker's commits do not wait for the disk (`synchronous_commit = off`); the web's do."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.store.db import ASYNCHRONOUS_COMMIT, Database, _add_option
from jobs.engine import context
from jobs.engine.worker import run_worker
from tests.support.database import truncate

SHOW = text("SHOW synchronous_commit")


def _setting(db: Database, name: str = "synchronous_commit") -> tuple[str, str]:
    """The setting on a connection through SQLAlchemy and on one statement's own connection."""
    with db.engine.connect() as connection:
        through_sqlalchemy = connection.scalar(text(f"SHOW {name}"))
    [(single,)] = db.read(text(f"SHOW {name}"))
    return through_sqlalchemy, single


def test_a_database_commits_synchronously_until_told_otherwise(postgres_url):
    db = Database(postgres_url)
    try:
        assert _setting(db) == ("on", "on")
        db.commit_asynchronously()
        assert _setting(db) == ("off", "off")
    finally:
        db.engine.dispose()


def test_connections_pooled_before_are_not_handed_out_again(postgres_url):
    db = Database(postgres_url)
    try:
        with db.engine.connect() as connection:
            before = connection.connection.driver_connection
        db.commit_asynchronously()
        with db.engine.connect() as connection:
            assert connection.connection.driver_connection is not before
            assert connection.scalar(SHOW) == "off"
        assert before.closed
    finally:
        db.engine.dispose()


def test_options_of_the_url_are_kept_and_the_setting_added_once(postgres_url):
    db = Database(f"{postgres_url}?options=-c%20statement_timeout%3D4321")
    try:
        db.commit_asynchronously()
        db.commit_asynchronously()
        assert _setting(db) == ("off", "off")
        assert _setting(db, "statement_timeout") == ("4321ms", "4321ms")
    finally:
        db.engine.dispose()


def test_the_setting_is_added_to_the_connect_options_once_when_they_are_handed_over_again():
    params = {"options": "-c statement_timeout=4321"}  # SQLAlchemy 2.0 reuses one dict
    for _ in range(3):
        _add_option(params, ASYNCHRONOUS_COMMIT)
    assert params == {"options": f"-c statement_timeout=4321 {ASYNCHRONOUS_COMMIT}"}


def test_a_committed_write_is_read_back_at_once(postgres_url):
    truncate(postgres_url)
    db = Database(postgres_url)
    db.commit_asynchronously()
    other = Database(postgres_url)
    try:
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO members (member_id, first_name, last_name, email, updated_at)"
                    " VALUES ('M1', 'Pat', 'Lee', 'pat@example.org', now())"
                )
            )
        assert other.read(text("SELECT member_id FROM members")) == [("M1",)]
    finally:
        db.engine.dispose()
        other.engine.dispose()
        truncate(postgres_url)


def test_a_worker_commits_asynchronously_and_the_web_app_does_not(
    make_app, postgres_url, redis_url, redis_client
):
    web = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    worker = make_app(database_url=postgres_url, redis_url=redis_url).extensions["gateway"]
    run_worker(worker, burst=True, with_scheduler=False, with_cron=False)
    assert _setting(worker.db) == ("off", "off")
    assert _setting(web.db) == ("on", "on")


def test_a_plain_rq_worker_builds_services_that_commit_asynchronously(
    postgres_url, monkeypatch, tmp_path
):
    monkeypatch.setattr(context, "_services", None)
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    svc = context.services()
    try:
        assert _setting(svc.db) == ("off", "off")
    finally:
        svc.db.engine.dispose()


@pytest.fixture(autouse=True)
def _jobs_context_restored():
    """`run_worker` sets the process's jobs context: put back what was there."""
    saved = context._services
    yield
    context._services = saved
