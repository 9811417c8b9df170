"""Long URLs and headers are refused by the app (problem+json, security headers), not gunicorn;
what gunicorn still answers itself (beyond its own maximum, or not HTTP at all) is a problem too."""

from __future__ import annotations

import json
import signal
import socket

import pytest
import requests

from gateway.web.security import MAX_HEADER_LINE, MAX_URL
from tests.support.serving import free_port, serve_env, start_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory, postgres_url):
    tmp_path = tmp_path_factory.mktemp("serve-limits")
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1")
    proc = start_serve(env, tmp_path / "stderr.log")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _is_the_apps_problem(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers


def test_a_url_over_the_limit_gets_the_apps_414_problem(served):
    path = "/v1/verifications/" + "A" * MAX_URL
    response = requests.get(f"http://127.0.0.1:{served}{path}", timeout=5)
    _is_the_apps_problem(response, 414)
    fits = "/v1/verifications/" + "A" * (MAX_URL - len("/v1/verifications/"))
    assert requests.get(f"http://127.0.0.1:{served}{fits}", timeout=5).status_code == 404


def test_a_header_over_the_limit_gets_the_apps_431_problem(served):
    headers = {"X-Padding": "p" * MAX_HEADER_LINE}
    response = requests.get(f"http://127.0.0.1:{served}/healthz", headers=headers, timeout=5)
    _is_the_apps_problem(response, 431)
    assert "X-Padding" in response.json()["detail"]


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),  # over gunicorn's max
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    ],
)
def test_what_gunicorn_still_answers_itself_is_a_problem_too(served, request_bytes, status):
    """gunicorn's own answer (docs/api.md, *Security*): problem+json with the security headers,
    never an HTML page, and nothing of the request written back."""
    answer = _raw(served, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == status, answer[:200]
    assert b"\r\nContent-Type: application/problem+json\r\n" in head
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head
    problem = json.loads(body)
    assert problem["status"] == int(status) and problem["errors"] == []
    assert b"AAAA" not in body and b"NOT HTTP" not in body
