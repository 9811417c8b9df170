"""Long URLs and headers are refused by the app (problem+json, security headers), not gunicorn;
what gunicorn still answers itself (beyond its own maximum, or not HTTP at all) is a problem too,
with its status code's own reason phrase, and so is what the development server answers itself. A
server leaves no control socket that another server of the same user would share."""

from __future__ import annotations

import json
import os
import signal
import socket
from http import HTTPStatus

import pytest
import requests

from gateway.web.security import MAX_HEADER_LINE, MAX_URL
from tests.support.serving import free_port, serve_env, start_run, start_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory, postgres_url):
    tmp_path = tmp_path_factory.mktemp("serve-limits")
    port = free_port()
    home = tmp_path / "home"  # where gunicorn would put its control socket
    home.mkdir()
    env = serve_env(
        tmp_path, postgres_url, port, WEB_WORKERS="1", HOME=str(home), XDG_RUNTIME_DIR=str(home)
    )
    proc = start_serve(env, tmp_path / "stderr.log")
    try:
        yield port, home
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


#: The titles the app gives these statuses too, RFC 9110's, where Python's phrase is an older one.
TITLES = {414: "URI Too Long"}


def _is_the_apps_problem(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers


def test_a_url_over_the_limit_gets_the_apps_414_problem(served):
    served, _ = served
    path = "/v1/verifications/" + "A" * MAX_URL
    response = requests.get(f"http://127.0.0.1:{served}{path}", timeout=30)
    _is_the_apps_problem(response, 414)
    assert response.json()["title"] == TITLES[414]  # as gunicorn's own 414 is titled
    fits = "/v1/verifications/" + "A" * (MAX_URL - len("/v1/verifications/"))
    assert requests.get(f"http://127.0.0.1:{served}{fits}", timeout=30).status_code == 404


def test_a_header_over_the_limit_gets_the_apps_431_problem(served):
    served, _ = served
    headers = {"X-Padding": "p" * MAX_HEADER_LINE}
    response = requests.get(f"http://127.0.0.1:{served}/healthz", headers=headers, timeout=30)
    _is_the_apps_problem(response, 431)
    assert "X-Padding" in response.json()["detail"]


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _posted_with(transfer_encoding: bytes) -> bytes:
    return b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n" % (
        transfer_encoding
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # over gunicorn's max
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (_posted_with(b"foo"), 501),  # a transfer coding gunicorn does not know
        (_posted_with(b"gzip"), 400),  # a known one not ending in chunked: no length to read
        (_posted_with(b"identity"), 400),
        (_posted_with(b"chunked, gzip"), 400),
    ],
    ids=["line-too-long", "not-http", "te-foo", "te-gzip", "te-identity", "te-chunked-gzip"],
)
def test_what_gunicorn_still_answers_itself_is_a_problem_with_its_codes_reason(
    served, request_bytes, status
):
    """gunicorn's own answer (docs/api.md, *Security*): problem+json with the security headers,
    never an HTML page, its reason phrase and title the status code's own, and nothing of the
    request written back."""
    served, _ = served
    _is_the_servers_problem(_raw(served, request_bytes), status)


def _is_the_servers_problem(answer: bytes, status: int) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    phrase = TITLES.get(status, HTTPStatus(status).phrase)
    assert head.split(b"\r\n")[0] == f"HTTP/1.1 {status} {phrase}".encode(), answer[:200]
    assert b"\r\nContent-Type: application/problem+json\r\n" in head
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head
    problem = json.loads(body)
    assert problem == {
        "type": "about:blank",
        "title": phrase,
        "status": status,
        "detail": f"The request was refused before it could be read: {phrase}.",
        "errors": [],
    }


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """`gateway run` on the embedded default."""
    tmp_path = tmp_path_factory.mktemp("run-limits")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["INSTANCE_PATH"] = str(tmp_path / "instance")
    port = free_port()
    proc = start_run(env, port, tmp_path / "stderr.log")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),  # werkzeug wrote an HTML page without a status line
        (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),  # gunicorn: 400
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"A" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ],
    ids=["garbage", "bad-version", "four-words", "http-2", "too-many-headers", "line-too-long"],
)
def test_what_the_development_server_answers_itself_is_a_problem_too(ran, request_bytes, status):
    """`gateway run` answers what it cannot hand to the app as `gateway serve` does, not with
    werkzeug's HTML page."""
    _is_the_servers_problem(_raw(ran, request_bytes), status)


def test_a_server_leaves_no_control_socket_another_server_would_share(served):
    """gunicorn's control socket has one path per user: a second server took it over, and
    stopping either deleted it."""
    _, home = served
    assert not list(home.rglob("gunicorn.ctl"))


def test_gunicorn_believes_no_forwarded_header_of_a_loopback_peer(served):
    """With TRUSTED_PROXIES 0 a client on the machine cannot claim TLS or move the script root."""
    served, _ = served
    base = f"http://127.0.0.1:{served}"
    for header in ({"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}):
        answer = requests.get(f"{base}/healthz", headers=header, timeout=30)
        assert answer.status_code == 200
        assert "Strict-Transport-Security" not in answer.headers
    token = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("someone", "secret"),
        headers={"Host": "example.org", "X-Forwarded-Proto": "https"},
        timeout=30,
    )
    assert token.status_code == 400 and token.json()["error"] == "insecure_transport"
    moved = requests.get(f"{base}/healthz", headers={"SCRIPT_NAME": "/x"}, timeout=30)
    assert moved.status_code == 200


@pytest.mark.parametrize(
    "request_line",
    [b"GET /issuer", b"GET /v1/verifications/CERT-1", b"POST /oauth/token"],
)
@pytest.mark.parametrize(
    ("host", "message"),
    [
        (b"Host: xn--zz\r\n", "Not a valid host name."),
        (b"", "Missing."),
        (b"Host: \r\n", "Missing."),
    ],
    ids=["not-idna", "no-host", "empty-host"],
)
def test_a_host_the_app_cannot_use_gets_its_400_naming_it(served, request_line, host, message):
    """`Host: xn--zz` (a label that is not IDNA) made Werkzeug raise building the request's URL:
    a 500 and a traceback in the log for any client that sent it. An HTTP/1.1 request without a
    Host (RFC 9112 3.2: a 400) was answered for the server's own name: gunicorn lets it through."""
    served, _ = served
    answer = _raw(
        served,
        request_line + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"\r\nContent-Type: application/problem+json\r\n" in head
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head
    assert json.loads(body)["errors"] == [{"field": "Host", "message": message}]


def test_gunicorn_refuses_a_host_given_twice_and_http_1_0_needs_none(served):
    served, _ = served
    twice = _raw(served, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    _is_the_servers_problem(twice, 400)
    old = _raw(served, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert old.startswith(b"HTTP/1.0 200 "), old[:300]


def test_head_and_options_over_gunicorn_keep_their_framing(served):
    """A HEAD's Content-Length is the GET's, with no body after it; a 204 to OPTIONS has neither
    a length nor a chunked body, so the connection's next answer is read where it starts."""
    served, _ = served
    got = requests.get(f"http://127.0.0.1:{served}/openapi.json", timeout=30)
    head = _raw(served, b"HEAD /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head_lines, _, body = head.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 200 ") and body == b""
    assert f"\r\nContent-Length: {len(got.content)}\r\n".encode() in head_lines
    options = _raw(
        served,
        b"OPTIONS /v1/events HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, _, rest = options.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 "), options[:300]
    assert b"\r\nAllow: OPTIONS, POST\r\n" in first
    assert b"Content-Length" not in first and b"Transfer-Encoding" not in first
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:300]


def test_the_development_server_refuses_an_http_1_1_request_without_a_host(ran):
    answer = _raw(ran, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert json.loads(body)["errors"] == [{"field": "Host", "message": "Missing."}]
