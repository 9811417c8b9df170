"""Pooled PostgreSQL connections the server closed (a restart, a failover) cost no request;
a job's transaction on one fails (and is retried), the next one gets a new connection."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import literal, select
from sqlalchemy.exc import OperationalError

from gateway.store.db import Database
from gateway.web import auth
from tests.support.clients import fetch_token, register_client
from tests.support.database import pg_conninfo, truncate
from tests.support.events import granted
from tests.support.verification import days_ago

pytestmark = pytest.mark.clock_sensitive


@pytest.fixture
def app(make_app, postgres_url):
    truncate(postgres_url)
    app = make_app(database_url=postgres_url, jobs_synchronous=True)
    yield app
    truncate(postgres_url)


def close_every_pooled_connection(postgres_url: str) -> int:
    """What a database restart does to the app's pool: every other session is ended."""
    with psycopg.connect(pg_conninfo(postgres_url), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    return ended


def test_events_tokens_and_lookups_answer_after_the_database_closed_the_pool(app, postgres_url):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {fetch_token(app, 'events:write')}"}
    first = client.post("/v1/events", json=granted(days_ago(30), cert="CERT-1"), headers=headers)
    assert first.status_code == 202
    assert client.get("/v1/verifications/CERT-1").status_code == 200
    assert close_every_pooled_connection(postgres_url) >= 1

    second = client.post("/v1/events", json=granted(days_ago(30), cert="CERT-2"), headers=headers)
    assert second.status_code == 202, second.get_json()
    assert "Idempotent-Replayed" not in second.headers

    assert close_every_pooled_connection(postgres_url) >= 1
    lookup = client.get("/v1/verifications/CERT-2")
    assert lookup.status_code == 200 and lookup.get_json()["status"] == "active"


def test_a_token_is_issued_after_the_database_closed_the_pool(app, postgres_url):
    client_id, secret = register_client(app, "verifications:read")
    client = app.test_client()

    def token_request():
        data = {"grant_type": "client_credentials"}
        return client.post("/oauth/token", data=data, auth=(client_id, secret))

    assert token_request().status_code == 200
    assert close_every_pooled_connection(postgres_url) >= 1
    answer = token_request()
    assert answer.status_code == 200, answer.get_json()


def test_a_token_is_issued_when_the_database_closes_the_pool_while_the_secret_is_checked(
    app, postgres_url, monkeypatch
):
    """The token's write comes after the secret's check, a third of a second of scrypt: the
    connection the read gave back may have been closed meanwhile."""
    client_id, secret = register_client(app, "verifications:read")
    checked = auth.Client.check_client_secret

    def closed_meanwhile(self, client_secret):
        right = checked(self, client_secret)
        assert close_every_pooled_connection(postgres_url) >= 1
        return right

    monkeypatch.setattr(auth.Client, "check_client_secret", closed_meanwhile)
    data = {"grant_type": "client_credentials"}
    answer = app.test_client().post("/oauth/token", data=data, auth=(client_id, secret))
    assert answer.status_code == 200, answer.get_json()


def test_a_transaction_whose_connection_the_database_closed_fails_and_the_next_one_works(
    postgres_url,
):
    db = Database(postgres_url)
    one = select(literal(1))
    try:
        with pytest.raises(OperationalError) as failed, db.engine.begin() as connection:
            assert db.execute(connection, one) == [(1,)]
            assert close_every_pooled_connection(postgres_url) >= 1
            db.execute(connection, one)
        assert failed.value.connection_invalidated
        with db.engine.begin() as connection:  # a new connection: the pool was started afresh
            assert db.execute(connection, one) == [(1,)]
    finally:
        db.engine.dispose()
