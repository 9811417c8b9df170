"""Through gunicorn, a body that cannot be read whole (bad chunked framing, or shorter than its
Content-Length) is the client's fault: a 400 problem on every endpoint that reads a body, never a
500 with a traceback in the log (docs/api.md, *Errors*)."""

from __future__ import annotations

import json
import signal
import socket
import threading
from typing import NamedTuple

import pytest
from werkzeug.serving import make_server

from gateway.store.db import Database
from gateway.usecases import clients
from gateway.web.security import ProblemRequestHandler
from tests.support.clients import served_token
from tests.support.database import truncate
from tests.support.serving import free_port, serve_env, start_serve

BAD_CHUNKS = {
    "chunk-size-not-hex": b"ZZ\r\nabc\r\n0\r\n\r\n",
    "chunk-missing-terminator": b"2\r\n{}XX0\r\n\r\n",
    "chunk-extension-malformed": b"2;=\r\n{}\r\n0\r\n\r\n",
    "last-chunk-cut-short": b"2\r\n{}\r\n0\r\n",  # no trailer section's CRLF: then EOF
    "chunk-cut-short": b"10\r\n{}",  # fewer bytes than the chunk's size: then EOF
}
ENDPOINTS = {
    "events": ("/v1/events", "application/json", False),
    "events-with-token": ("/v1/events", "application/json", True),
    "token": ("/oauth/token", "application/x-www-form-urlencoded", False),
    "credly": ("/webhooks/credly", "application/json", False),
    "batch": ("/v1/verifications/batch", "application/json", True),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory, postgres_url):
    """A `gateway serve` of one worker, its log, and a bearer token of every scope."""
    truncate(postgres_url)
    db = Database(postgres_url)
    with db.transaction() as session:
        new = clients.create_client(session, "bodies", "events:write verifications:read")
    db.engine.dispose()
    tmp_path = tmp_path_factory.mktemp("serve-bodies")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1"), log)
    try:
        token = served_token(f"http://127.0.0.1:{port}", new.client_id, new.client_secret)
        yield port, log, token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        truncate(postgres_url)


class Answer(NamedTuple):
    status: int
    problem: dict
    head: bytes
    logged: str  # what the server logged while it answered


def _answer(served: tuple, head: bytes, body: bytes) -> Answer:
    """The answer to `head` and `body` sent whole, the client's half of the connection then
    closed."""
    port, log, _ = served
    before = log.stat().st_size
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + b"\r\n" + body)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, data = answer.partition(b"\r\n\r\n")
    with log.open() as logged:
        logged.seek(before)
        return Answer(int(head.split(b" ")[1]), json.loads(data), head, logged.read())


def _head(served: tuple, endpoint: str, framing: str) -> bytes:
    path, content_type, with_token = ENDPOINTS[endpoint]
    authorization = f"Authorization: Bearer {served[2]}\r\n" if with_token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"{authorization}{framing}\r\n"
    ).encode()


def _is_bad_body(answer: Answer) -> None:
    assert answer.status == 400, answer.problem
    assert b"\r\nContent-Type: application/problem+json" in answer.head
    assert answer.problem["status"] == 400
    assert answer.problem["errors"][0]["field"] == "body", answer.problem
    assert "unhandled error" not in answer.logged and "Traceback" not in answer.logged


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=list(ENDPOINTS))
@pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=list(BAD_CHUNKS))
def test_a_bad_chunked_body_is_a_400_problem(served, endpoint, body):
    answer = _answer(served, _head(served, endpoint, "Transfer-Encoding: chunked"), body)
    _is_bad_body(answer)
    assert answer.problem["detail"] == "The chunked body is malformed or cut short."


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=list(ENDPOINTS))
def test_a_body_shorter_than_its_content_length_is_a_400_problem(served, endpoint):
    body = b"grant_type=client_credentials" if endpoint == "token" else b'{"a":1}'
    answer = _answer(served, _head(served, endpoint, "Content-Length: 100"), body)
    _is_bad_body(answer)
    assert answer.problem["detail"] == "The body ended before its Content-Length of 100 bytes."


WHOLE = {  # what a well-formed body that is not what the endpoint takes gets
    "events": 401,
    "events-with-token": 422,
    "token": 401,
    "credly": 400,
    "batch": 422,
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=list(ENDPOINTS))
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_whole_body_is_read_as_before(served, endpoint, framing):
    body = b"grant_type=client_credentials" if endpoint == "token" else b'{"a":1}'
    if framing == "chunked":
        head = _head(served, endpoint, "Transfer-Encoding: chunked")
        answer = _answer(served, head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    else:
        answer = _answer(served, _head(served, endpoint, f"Content-Length: {len(body)}"), body)
    assert answer.status == WHOLE[endpoint], answer.problem
    assert "Traceback" not in answer.logged


@pytest.mark.parametrize("end", [b"zz\r\n\r\n", b""], ids=["bad-last-chunk", "no-last-chunk"])
def test_a_chunked_body_of_exactly_the_limit_badly_ended_is_a_400_problem(served, end):
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"  # 16 chunks of 4 KiB: the 64 KiB limit exactly
    head = _head(served, "events-with-token", "Transfer-Encoding: chunked")
    answer = _answer(served, head, chunk * 16 + end)
    _is_bad_body(answer)


@pytest.fixture
def development_server(make_app, tmp_path):
    """`gateway run`'s server (Werkzeug's, with the gateway's request handler) on the embedded
    default; the app logs through the tests' handler, so its log file here stays empty."""
    server = make_server(
        "127.0.0.1", 0, make_app(), threaded=True, request_handler=ProblemRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log = tmp_path / "nothing.log"
    log.touch()
    try:
        yield server.server_port, log, None
    finally:
        server.shutdown()
        thread.join(timeout=10)


UNAUTHENTICATED = [name for name, (_, _, with_token) in ENDPOINTS.items() if not with_token]


@pytest.mark.parametrize("endpoint", UNAUTHENTICATED)
@pytest.mark.parametrize(
    "framing, body",
    [
        ("Content-Length: 100", b'{"a":1}'),
        *(("Transfer-Encoding: chunked", body) for body in BAD_CHUNKS.values()),
    ],
    ids=["short", *BAD_CHUNKS],
)
def test_gateway_runs_server_answers_a_body_it_cannot_read_whole_as_gunicorn_does(
    development_server, endpoint, framing, body
):
    answer = _answer(development_server, _head(development_server, endpoint, framing), body)
    _is_bad_body(answer)
    assert answer.problem["detail"] == (
        "The body ended before it was whole, or its chunked framing is broken."
    )
