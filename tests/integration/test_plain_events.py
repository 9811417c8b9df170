"""One event posted with a valid token is answered before Flask's request handling, exactly as the
view answers it: every outcome's body and headers, the token checks, metrics, ids and errors."""

from __future__ import annotations

import signal
import socket
from datetime import timedelta

import pytest
import requests
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError

from gateway.store.db import Database
from gateway.store.models import Event, MalformedEvent, OAuthToken
from gateway.usecases import clients, intake
from gateway.web import auth
from tests.support.clients import fetch_token, register_client, served_token
from tests.support.database import truncate
from tests.support.events import fee, granted
from tests.support.metrics import sample
from tests.support.serving import free_port, serve_env, start_serve

pytestmark = pytest.mark.on_day("2026-12-04")  # the day the events' dates are written for

PLAIN = "/v1/events"
VIA_FLASK = "/v1/events?via=flask"  # a query: not plain, so the view answers
SAME_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Location",
    "Idempotent-Replayed",
    "Content-Security-Policy",
    "WWW-Authenticate",
)


@pytest.fixture
def app(database_url, make_app):
    return make_app(database_url=database_url, jobs_synchronous=True)


@pytest.fixture
def headers(token_for) -> dict[str, str]:
    return token_for("events:write")


def assert_same(plain, viewed) -> None:
    assert plain.status == viewed.status
    assert plain.get_json() == viewed.get_json()
    for name in SAME_HEADERS:
        assert plain.headers.get(name) == viewed.headers.get(name), name


def truncate_kept(app) -> None:
    """Forget the malformed attempts kept so far."""
    with app.extensions["gateway"].db.transaction() as session:
        session.execute(delete(MalformedEvent))


def recorded_events(app) -> int:
    with app.extensions["gateway"].db.sessions() as session:
        return session.scalar(select(func.count()).select_from(Event))


def test_each_outcome_is_answered_before_flask_as_the_view_answers_it(client, headers, dispatched):
    def both(body: dict) -> tuple:
        return client.post(PLAIN, json=body, headers=headers), client.post(
            VIA_FLASK, json=body, headers=headers
        )

    grant = granted("2020-01-10", event_id="crm/2020/a?b#c%d")
    accepted = client.post(PLAIN, json=grant, headers=headers)
    assert accepted.status_code == 202 and dispatched == []
    replayed_by_view = client.post(VIA_FLASK, json=grant, headers=headers)
    assert replayed_by_view.headers["Idempotent-Replayed"] == "true"
    assert accepted.get_json() == replayed_by_view.get_json()
    assert accepted.headers["Location"] == replayed_by_view.headers["Location"]
    assert accepted.headers["Location"] == "/v1/events/crm/2020/a%3Fb%23c%25d"
    assert_same(client.post(PLAIN, json=grant, headers=headers), replayed_by_view)

    conflict = both({**grant, "data": {**grant["data"], "credential": "RPT"}})
    unknown = both(fee(2021, "2021-01-05", cert="NOBODY", event_id="fee-unknown"))
    malformed = both({**grant, "event_id": "bad-1", "occurred_at": "yesterday"})
    plain_rejected = client.post(PLAIN, json=fee(2020, "2020-02-01"), headers=headers)
    viewed_rejected = client.post(VIA_FLASK, json=fee(2020, "2020-02-01"), headers=headers)
    assert [conflict[0].status_code, unknown[0].status_code, malformed[0].status_code] == [
        409,
        404,
        422,
    ]
    for plain, viewed in (conflict, unknown, (plain_rejected, viewed_rejected)):
        assert_same(plain, viewed)
    assert malformed[0].get_json() == malformed[1].get_json()  # sent again as it was: a replay
    assert malformed[1].headers["Idempotent-Replayed"] == "true"
    assert plain_rejected.get_json()["errors"][0]["rule"] == "FEE-YEAR-RANGE"
    assert plain_rejected.mimetype == "application/problem+json"
    assert dispatched == ["/v1/events"] * 5  # only the requests with a query


def test_the_answer_carries_the_request_id_and_the_event_its_client(app, client, dispatched):
    client_id, secret = register_client(app, "events:write")
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).get_json()["access_token"]
    answer = client.post(
        PLAIN,
        json=granted("2020-01-10", event_id="ids-1"),
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-plain-1"},
    )
    assert answer.status_code == 202 and dispatched == ["/oauth/token"]
    assert answer.headers["X-Request-ID"] == "req-plain-1"
    with app.extensions["gateway"].db.sessions() as session:
        row = session.scalar(select(Event).where(Event.event_id == "ids-1"))
    assert (row.client_id, row.request_id) == (client_id, "req-plain-1")


def test_the_location_keeps_the_script_root(client, headers, dispatched):
    body = granted("2020-01-10", event_id="rooted/1")
    plain = client.post(PLAIN, json=body, headers=headers, base_url="http://localhost/gw")
    viewed = client.post(VIA_FLASK, json=body, headers=headers, base_url="http://localhost/gw")
    assert plain.headers["Location"] == viewed.headers["Location"] == "/gw/v1/events/rooted/1"
    assert dispatched == ["/v1/events"]


def _expired(app, token: str) -> dict[str, str]:
    with app.extensions["gateway"].db.transaction() as session:
        row = session.scalar(
            select(OAuthToken).where(OAuthToken.token_hash == auth.token_hash(token))
        )
        row.issued_at -= timedelta(seconds=row.expires_in + 1)
    return {"Authorization": f"Bearer {token}"}


def _revoked(app) -> dict[str, str]:
    client_id, secret = register_client(app, "events:write")
    token = (
        app.test_client()
        .post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        .get_json()["access_token"]
    )
    with app.extensions["gateway"].db.transaction() as session:
        assert clients.revoke(session, client_id)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        ("no token", 401),
        ("unknown token", 401),
        ("basic credentials", 401),
        ("two spaces", 200),  # Authlib reads it; only the plain path leaves it
        ("another scope", 403),
        ("expired token", 401),
        ("revoked client", 401),
        ("text body", 415),
        ("malformed JSON", 400),
        ("body over the limit", 413),
    ],
)
def test_what_the_plain_path_does_not_take_is_answered_by_flask(
    app, client, headers, dispatched, refusal, status
):
    body = granted("2020-01-10", event_id=f"refused-{refusal.replace(' ', '-')}")
    token = headers["Authorization"].removeprefix("Bearer ")
    sent: dict = {"json": body, "headers": headers}
    if refusal == "no token":
        sent["headers"] = {}
    elif refusal == "unknown token":
        sent["headers"] = {"Authorization": "Bearer not-a-token"}
    elif refusal == "basic credentials":
        sent["headers"] = {"Authorization": "Basic dXNlcjpwYXNz"}
    elif refusal == "two spaces":
        sent["headers"] = {"Authorization": f"Bearer  {token}"}
    elif refusal == "another scope":
        sent["headers"] = {"Authorization": f"Bearer {fetch_token(app, 'certifications:read')}"}
    elif refusal == "expired token":
        sent["headers"] = _expired(app, token)
    elif refusal == "revoked client":
        sent["headers"] = _revoked(app)
    elif refusal == "text body":
        sent = {"data": "{}", "content_type": "text/plain", "headers": headers}
    elif refusal == "malformed JSON":
        sent = {"data": '{"event_id": ', "content_type": "application/json", "headers": headers}
    elif refusal == "body over the limit":
        sent = {"json": {**body, "pad": "x" * 70_000}, "headers": headers}
    dispatched.clear()
    answer = client.post(PLAIN, **sent)
    if status == 200:  # the view records it as the plain path would have
        assert answer.status_code == 202 and recorded_events(app) == 1
    else:
        assert answer.status_code == status, answer.get_json()
        assert answer.mimetype == "application/problem+json"
        assert recorded_events(app) == 0
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert dispatched == ["/v1/events"]


@pytest.mark.parametrize(
    ("error", "status"),
    [(OperationalError("COMMIT", {}, Exception("server closed the connection")), 503),
     (RuntimeError("a fault"), 500)],
)  # fmt: skip
def test_a_failed_submission_is_answered_by_flask_without_submitting_again(
    app, client, headers, dispatched, monkeypatch, error, status
):
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise error

    monkeypatch.setattr(intake, "submit_event", failing)
    answer = client.post(PLAIN, json=granted("2020-01-10"), headers=headers)
    assert answer.status_code == status and answer.mimetype == "application/problem+json"
    assert ("Retry-After" in answer.headers) == (status == 503)
    assert len(calls) == 1 and dispatched == ["/v1/events"]


def test_plain_events_are_counted_in_the_request_and_event_metrics(client, headers, dispatched):
    def counts() -> tuple[float, float]:
        text = client.get("/metrics").get_data(as_text=True)
        return (
            sample(text, "gateway_http_requests_total",
                   endpoint="/v1/events", method="POST", status="202"),
            sample(text, "gateway_events_total", type="certification.granted", outcome="accepted"),
        )  # fmt: skip

    before = counts()
    assert client.post(PLAIN, json=granted("2020-01-10"), headers=headers).status_code == 202
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert dispatched == ["/metrics", "/metrics"]


def test_through_gunicorn_an_event_is_answered_and_a_body_cut_short_is_a_400(
    tmp_path, postgres_url
):
    truncate(postgres_url)
    db = Database(postgres_url)
    with db.transaction() as session:
        new = clients.create_client(session, "plain", "events:write")
    port = free_port()
    server = start_serve(serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1"), tmp_path / "log")
    try:
        base = f"http://127.0.0.1:{port}"
        token = served_token(base, new.client_id, new.client_secret)
        bearer = f"Bearer {token}"
        answer = requests.post(
            f"{base}/v1/events",
            json=granted("2020-01-10", event_id="served-1"),
            headers={"Authorization": bearer, "X-Request-ID": "served-1"},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        assert answer.headers["Location"] == "/v1/events/served-1"
        assert answer.headers["X-Request-ID"] == "served-1"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"  # the wrapping still holds

        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {bearer}\r\nContent-Length: 100\r\n\r\n".encode()
                + b'{"event_id"'
            )
            connection.shutdown(socket.SHUT_WR)  # the rest never comes
            head = connection.makefile("rb").readline()
        assert head.startswith(b"HTTP/1.1 400"), head
        assert db.read(select(func.count()).select_from(Event)) == [(1,)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        db.engine.dispose()
        truncate(postgres_url)


@pytest.mark.parametrize(
    "data",
    [
        b"null",
        b"[]",
        b'"an event"',
        b"42",
        b"{}",
        b'{"event_id": null, "type": 7}',
        b"[" * 5000 + b"]" * 5000,
        b'{"event_id": "\\ud800"}',
        b'\xef\xbb\xbf{"event_id": "bom"}',
        b'{"event_id": "nan", "data": {"points": NaN}}',
        b'{"event_id": "big", "data": {"points": 1e400}}',
        b'{"event_id": "a", "event_id": "b"}',
        b"\xff\xfe\x00",
        b'{"event_id": "x"}   trailing',
    ],
    ids=lambda data: data[:24].decode("utf-8", "replace"),
)
def test_a_hostile_body_is_answered_as_the_view_answers_it(client, headers, data):
    """Each path answers it first (a malformed event kept under its id is a replay when sent
    again: the second of the same body would differ by that header alone)."""
    sent = {"data": data, "content_type": "application/json", "headers": headers}
    plain = client.post(PLAIN, **sent)
    truncate_kept(client.application)
    viewed = client.post(VIA_FLASK, **sent)
    assert plain.status_code in (400, 422), plain.get_json()
    assert plain.mimetype == "application/problem+json"
    assert_same(plain, viewed)
