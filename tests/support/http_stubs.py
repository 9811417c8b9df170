"""Small HTTP(S) servers on 127.0.0.1 in a thread: a webhook receiver, a verification directory."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Received:
    """One request a stub got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


Answer = tuple[int, dict[str, Any] | None]
Respond = Callable[[Received], Answer]


@contextmanager
def serve(
    respond: Respond, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[Received]]]:
    """Run a server answering each request with `respond(request)` -> (status, JSON body or None),
    over TLS with the `tls` server context if given.

    Yields its base URL and the list of requests received so far.
    """
    received: list[Received] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
            with lock:
                received.append(request)
                status, body = respond(request)
            payload = json.dumps(body if body is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:  # a refused handshake fails that accept only (an OSError to socketserver)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        scheme = "https" if tls else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def self_signed(host: str, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a new self-signed certificate for `host`, and the certificate's
    PEM file (for a client to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{host}.pem", directory / f"{host}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@contextmanager
def dripping(head: bytes, every: float) -> Iterator[str]:
    """A receiver that reads a request, then sends `head` and one byte more every `every`
    seconds for as long as the connection stays open (each byte within a read timeout longer
    than `every`). Yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            with contextlib.suppress(OSError):
                connection.sendall(head)
                while not stop.wait(every):
                    connection.sendall(b"x")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                threading.Thread(target=drip, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def scripted(*statuses: int, then: int = 200) -> Respond:
    """A webhook receiver answering `statuses` in turn, then `then` to everything."""
    pending = list(statuses)
    return lambda _request: (pending.pop(0) if pending else then, None)


class DirectoryStub:
    """A verification directory and its token endpoint (`/token`).

    Tokens are `tok-1`, `tok-2`, ... with `expires_in` seconds; the directory answers 401 to a
    token in `stale` (revoked early) or unknown, else stores the record and answers 200.
    """

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.stale: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}

    def __call__(self, request: Received) -> Answer:
        if request.path == "/token":
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
            answer = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
            return 200, answer
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.stale:
            return 401, {"error": "invalid_token"}
        if request.method == "PUT" and request.path.startswith("/records/"):
            self.records[request.path.removeprefix("/records/")] = request.json()
            return 200, None
        return 404, None
