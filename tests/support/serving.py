"""Running the gateway's servers as real processes in tests: free ports, `gateway serve`'s env,
a server that never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env(tmp_path: Path, database_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a `gateway serve` on `port` with this database and no Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEB_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "INSTANCE_PATH": str(tmp_path),
        **settings,
    }
    env.pop("REDIS_URL", None)
    return env


@contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections and never answers on them (a hung
    database); the connections are closed when the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def start_serve(env: dict[str, str], stderr: Path, stdout: Path | None = None) -> subprocess.Popen:
    """`gateway serve` with `env`, logging to `stderr` (and `stdout`), once a worker is ready."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    with stderr.open("wb") as err, (stdout or Path(os.devnull)).open("wb") as out:
        proc = subprocess.Popen([gateway, "serve"], env=env, stdout=out, stderr=err)
    deadline = time.monotonic() + 30
    while b"Worker ready" not in stderr.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"gateway serve did not start:\n{stderr.read_text()}")
        time.sleep(0.2)
    return proc
