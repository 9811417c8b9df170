"""`gateway serve` logs one JSON object a line: gunicorn's own log, the app's and the access log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.serving import free_port, serve_env


def _json_lines(path: Path) -> list[dict[str, object]]:
    """Each line of a log file, which must be a JSON object."""
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in entries), lines
    return entries


def test_gateway_serve_writes_every_log_line_as_a_json_object(tmp_path, postgres_url):
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="1")
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([gateway, "serve"], env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while b"Worker ready" not in err.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        answer = requests.get(
            f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "serve-logs"}, timeout=5
        )
        assert answer.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    errors = _json_lines(err)
    gunicorn = [e["msg"] for e in errors if e["logger"] == "gunicorn.error"]
    assert gunicorn[0].startswith("Starting gunicorn")
    assert f"Listening at: http://127.0.0.1:{port} ({proc.pid})" in gunicorn
    assert any(str(msg).startswith("Worker ready (pid: ") for msg in gunicorn)
    assert gunicorn[-1] == "Shutting down: Master"
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in errors)  # the app's fields

    # The access log's line is access_log_format's JSON object as it is, not wrapped again.
    [access] = _json_lines(out)
    assert access["logger"] == "gunicorn.access" and "ts" not in access
    assert access["path"] == "/healthz" and access["status"] == 200
    assert access["request_id"] == "serve-logs"
