"""A Host header naming no host Werkzeug can build URLs with is a 400 problem naming `Host`, on
every path (the plain lookup and the plain event path too), never a 500 and a traceback; a host
Werkzeug can use is never refused. An HTTP/1.1 request without a Host header is a 400 naming it
too; an HTTP/1.0 one needs none."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, Response
from sqlalchemy import func, select
from werkzeug.test import EnvironBuilder, run_wsgi_app

from gateway.store.models import Event
from gateway.web.security import is_usable_host
from tests.support.clients import fetch_token, register_client
from tests.support.events import granted
from tests.support.verification import days_ago, record_every_status

pytestmark = pytest.mark.clock_sensitive

#: Werkzeug lets UnicodeError out of decoding the first five (a label that is not IDNA, in any
#: case, with a port or not), ValueError out of parsing `[a:b]` (brackets around no IPv6 address);
#: it refuses to route an empty label and one over 63 characters; of characters that are not a
#: host's (the last ones) it makes no host at all, and URLs such as `http:/issuer`.
UNUSABLE = [
    "xn--zz",
    "xn--a",
    "xn--.example",
    "XN--ZZ",
    "xn--zz.example:8125",
    "[a:b]",
    "foo..bar",
    "a" * 64 + ".example",
    "example.org/evil",
    "user@example.org",
    "example org",
    "example.org:http",
    "example.org:65536",
    "exämple.org",
    "gateway_web:8000",
]
USABLE = [
    "localhost",
    "localhost:8125",
    "EXAMPLE.org",
    "example.org.",
    "xn--ls8h.example",  # a label that is IDNA
    "127.0.0.1:8125",
    "[::1]:8125",
]


@pytest.fixture(params=[None, "https://verify.example.org"], ids=["host-url", "public-base-url"])
def app(request, database_url, make_app) -> Flask:
    """An app with a certification on record, with and without PUBLIC_BASE_URL (without it, the
    answers name the Host header's address)."""
    made = make_app(database_url=database_url, jobs_synchronous=True, public_base_url=request.param)
    record_every_status(made)
    return made


def answer(
    app: Flask,
    method: str,
    path: str,
    host: str | None,
    headers: dict | None = None,
    protocol: str = "HTTP/1.1",
    **kwargs: object,
) -> Response:
    """`app`'s answer to a request sent with this Host header (None: without one) in `protocol`,
    through the test client's own machinery but its cookie jar, which builds the request's URL
    (and fails on such a host)."""
    headers = {**(headers or {}), "Host": host or ""}
    builder = EnvironBuilder(path, method=method, headers=headers, **kwargs)
    environ = {**builder.get_environ(), "SERVER_PROTOCOL": protocol}
    if host is None:
        del environ["HTTP_HOST"]
    body, status, answered = run_wsgi_app(app, environ, buffered=True)
    return Response(b"".join(body), status, answered)


def requests_of_every_kind(app: Flask) -> list[tuple[str, str, dict]]:
    """(method, path, builder arguments): the plain lookup and event, a lookup, page and receipt
    Flask answers, the issuer, the token endpoint, a path that matches no route."""
    bearer = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read events:write')}"}
    client_id, secret = register_client(app, "verifications:read")
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return [
        ("GET", "/v1/verifications/ACTIVE-1", {}),
        ("POST", "/v1/events", {"json": granted(days_ago(30), cert="NEW-1"), "headers": bearer}),
        ("GET", "/v1/verifications/ACTIVE-1", {"headers": bearer}),
        ("GET", "/v1/verifications/ACTIVE-1/receipt", {}),
        ("GET", "/verify?certification_id=ACTIVE-1", {}),
        ("GET", "/verify/proof?certification_id=ACTIVE-1", {}),
        ("GET", "/issuer", {}),
        ("POST", "/oauth/token", {"data": form}),
        ("GET", "/healthz", {}),
        ("GET", "/no-such-path", {}),
    ]


def recorded_events(app: Flask) -> int:
    with app.extensions["gateway"].db.sessions() as session:
        return session.scalar(select(func.count()).select_from(Event))


def test_a_host_werkzeug_cannot_use_is_a_400_naming_it_on_every_path(app, dispatched, caplog):
    caplog.set_level(logging.ERROR)
    every_kind = requests_of_every_kind(app)
    events = recorded_events(app)
    dispatched.clear()
    for host in UNUSABLE:
        for method, path, kwargs in every_kind:
            refused = answer(app, method, path, host, **kwargs)
            assert refused.status_code == 400, (host, path, refused.get_data(as_text=True))
            assert refused.mimetype == "application/problem+json"
            problem = refused.get_json()
            assert problem["errors"] == [{"field": "Host", "message": "Not a valid host name."}]
            assert host not in refused.get_data(as_text=True)
            assert refused.headers["X-Content-Type-Options"] == "nosniff"
            assert refused.headers["X-Request-ID"]
    assert recorded_events(app) == events
    assert len(dispatched) == len(UNUSABLE) * len(every_kind)  # Flask refused each, plain or not
    assert not caplog.records  # no traceback, no error line


def test_a_host_werkzeug_can_use_is_never_refused(app, dispatched):
    for host in USABLE:
        assert is_usable_host(host, host), host
        dispatched.clear()
        plain = answer(app, "GET", "/v1/verifications/ACTIVE-1", host)
        assert plain.status_code == 200 and dispatched == [], host  # answered before Flask
        for path in ("/issuer", "/verify?certification_id=ACTIVE-1", "/healthz"):
            assert answer(app, "GET", path, host).status_code == 200, (host, path)


@pytest.mark.parametrize("host", [None, ""], ids=["no-host", "empty-host"])
def test_an_http_1_1_request_without_a_host_is_a_400_naming_it_on_every_path(app, dispatched, host):
    """RFC 9112 3.2: a server must answer 400 to an HTTP/1.1 request that names no host; neither
    gunicorn nor Werkzeug's server does, and the app answered it for the server's own name."""
    every_kind = requests_of_every_kind(app)
    events = recorded_events(app)
    dispatched.clear()
    for method, path, kwargs in every_kind:
        refused = answer(app, method, path, host, **kwargs)
        assert refused.status_code == 400, (path, refused.get_data(as_text=True))
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["errors"] == [{"field": "Host", "message": "Missing."}]
        assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert recorded_events(app) == events
    assert len(dispatched) == len(every_kind)  # Flask refused each, plain or not


def test_an_http_1_0_request_needs_no_host(app):
    for path in ("/v1/verifications/ACTIVE-1", "/issuer", "/verify?certification_id=ACTIVE-1"):
        assert answer(app, "GET", path, None, protocol="HTTP/1.0").status_code == 200, path
