"""`gateway serve` on a Unix socket (`WEB_BIND=unix:PATH`, docs/configuration.md) answers there:
with a listening socket for each worker (SO_REUSEPORT, which Linux refuses on a Unix socket),
every worker failed to bind and was started again, for ever."""

from __future__ import annotations

import signal
import socket

from tests.support.serving import serve_env, start_serve


def test_gateway_serve_answers_on_a_unix_socket(tmp_path, postgres_url):
    path = tmp_path / "gw.sock"
    log = tmp_path / "serve.log"
    env = serve_env(tmp_path, postgres_url, 0, WEB_BIND=f"unix:{path}", WEB_WORKERS="2")
    proc = start_serve(env, log)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(path))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"Worker exiting" not in log.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
