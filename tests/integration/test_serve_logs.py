"""`gateway serve` logs one JSON object a line: gunicorn's own log, the app's and the access log."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from urllib.parse import quote

import requests

from tests.support.serving import free_port, serve_env, start_serve

HOSTILE = 'a\\", "status": 200, "x": "\\'


def _json_lines(path: Path) -> list[dict[str, object]]:
    """Each line of a log file, which must be a JSON object."""
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in entries), lines
    return entries


def test_gateway_serve_writes_every_log_line_as_a_json_object(tmp_path, postgres_url):
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1", WEB_THREADS="1")
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    proc = start_serve(env, err, out)
    try:
        answer = requests.get(
            f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "serve-logs"}, timeout=30
        )
        assert answer.status_code == 200
        forged = requests.get(  # quotes and backslashes in the path and the request id
            f"http://127.0.0.1:{port}/v1/verifications/{quote(HOSTILE, safe='')}",
            headers={"X-Request-ID": HOSTILE},
            timeout=30,
        )
        assert forged.status_code == 404
        given_instead = forged.headers["X-Request-ID"]  # not an id: a new one is given
        assert given_instead != HOSTILE and len(given_instead) == 32
        with socket.create_connection(("127.0.0.1", port), timeout=30) as refused:
            refused.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n")
            assert refused.recv(65536).startswith(b"HTTP/1.1 400 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    assert out.read_text() == ""  # every line on stderr, the access log's too
    errors = _json_lines(err)
    gunicorn = [e["msg"] for e in errors if e["logger"] == "gunicorn.error"]
    assert gunicorn[0].startswith("Starting gunicorn")
    assert f"Listening at: http://127.0.0.1:{port} ({proc.pid})" in gunicorn
    assert any(str(msg).startswith("Worker ready (pid: ") for msg in gunicorn)
    assert gunicorn[-1] == "Shutting down: Master"
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in errors)  # the app's fields
    # A request gunicorn refuses itself is no earlier request's: its line carries no request id.
    [refusal] = [e for e in errors if str(e["msg"]).startswith("Invalid request from ip=")]
    assert "request_id" not in refusal, refusal

    # The access log: a JSON object a request, with ts and level, whatever the request held.
    healthz, hostile = [e for e in errors if e["logger"] == "gunicorn.access"]
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in (healthz, hostile))
    assert healthz["level"] == "INFO" and healthz["msg"] == "GET /healthz 200"
    assert healthz["path"] == "/healthz" and healthz["status"] == 200
    assert healthz["request_id"] == "serve-logs"
    assert hostile["path"] == f"/v1/verifications/{HOSTILE}" and hostile["status"] == 404
    assert hostile["request_id"] == given_instead
