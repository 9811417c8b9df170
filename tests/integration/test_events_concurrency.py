"""Concurrent twins on the real PostgreSQL, and a real OAuth2 client talking over a socket."""

from __future__ import annotations

import threading

import pytest
from authlib.integrations.requests_client import OAuth2Session
from werkzeug.serving import make_server

from gateway.store.models import Event, OutboxItem
from gateway.usecases import intake
from tests.support.clients import register_client
from tests.support.database import truncate
from tests.support.events import fee, granted


@pytest.fixture
def pg_app(make_app, postgres_url):
    truncate(postgres_url)
    yield make_app(database_url=postgres_url, jobs_synchronous=True)
    truncate(postgres_url)


def _race(svc, bodies):
    barrier = threading.Barrier(len(bodies))
    answers = [None] * len(bodies)

    def send(i):
        barrier.wait()
        answers[i] = intake.submit_event(svc, bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_identical_twins_make_one_event_and_one_set_of_side_effects(pg_app):
    svc = pg_app.extensions["gateway"]
    for n in range(10):
        body = granted("2026-03-01", cert=f"TWIN-{n}")
        answers = _race(svc, [body, body])
        assert sorted(a.status for a in answers) == [202, 202]
        assert answers[0].body == answers[1].body
        assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 1
    with svc.db.sessions() as session:
        assert session.query(Event).count() == 10
        assert session.query(OutboxItem).count() == 20


def test_two_grants_of_one_certification_at_once_accept_exactly_one(pg_app):
    svc = pg_app.extensions["gateway"]
    answers = _race(svc, [granted("2026-03-01", cert="DUP"), granted("2026-03-01", cert="DUP")])
    assert sorted(a.status for a in answers) == [202, 422]
    rejected = next(a for a in answers if a.status == 422)
    assert rejected.body["errors"][0]["rule"] == "CERT-EXISTS"


def test_concurrent_payments_of_one_certification_are_serialised(pg_app):
    svc = pg_app.extensions["gateway"]
    assert intake.submit_event(svc, granted("2020-01-10", cert="SER")).status == 202
    answers = _race(svc, [fee(2021, "2021-01-05", cert="SER"), fee(2021, "2021-01-06", cert="SER")])
    assert sorted(a.status for a in answers) == [202, 422]


def test_batches_naming_the_same_certifications_in_opposite_orders_neither_deadlock_nor_twin(
    pg_app,
):
    svc = pg_app.extensions["gateway"]
    certs = [f"ORDER-{n}" for n in range(20)]
    barrier = threading.Barrier(2)
    answers: list[list[intake.Answer]] = [[], []]

    def send(side: int, order: list[str]) -> None:
        bodies = [granted("2026-03-01", cert=cert, event_id=f"{cert}-{side}") for cert in order]
        barrier.wait()
        answers[side] = intake.submit_events(svc, bodies)

    threads = [
        threading.Thread(target=send, args=(0, certs)),
        threading.Thread(target=send, args=(1, certs[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_cert = {cert: [] for cert in certs}
    for side, order in ((0, certs), (1, certs[::-1])):
        for cert, answer in zip(order, answers[side], strict=True):
            by_cert[cert].append(answer.status)
    assert all(sorted(statuses) == [202, 422] for statuses in by_cert.values()), by_cert
    with svc.db.sessions() as session:
        assert session.query(Event).filter_by(status="accepted").count() == len(certs)


def test_a_real_oauth2_client_fetches_a_token_and_posts_over_a_socket(make_app, database_url):
    app = make_app(database_url=database_url, jobs_synchronous=True)
    client_id, secret = register_client(app, "events:write certifications:read")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for method in ("client_secret_basic", "client_secret_post"):
            session = OAuth2Session(
                client_id, secret, scope="events:write", token_endpoint_auth_method=method
            )
            token = session.fetch_token(f"{base}/oauth/token", grant_type="client_credentials")
            assert token["token_type"] == "Bearer" and token["scope"] == "events:write"
            assert token["expires_at"] > 0
        response = session.post(f"{base}/v1/events", json=granted("2026-03-01"), timeout=10)
        assert response.status_code == 202, response.text
        forbidden = session.get(f"{base}/v1/certifications/CERT-1", timeout=10)
        assert forbidden.status_code == 403
    finally:
        server.shutdown()
