"""Real processes in tests: free ports, `gateway serve`'s env, `gateway run`, `gateway worker`, a
private Redis, a server that never answers."""

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

import redis


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


class PausableProxy:
    """A TCP proxy on 127.0.0.1 to `target_port` that can stop passing bytes, as a server that
    hangs with its connections open does (`hang`, `resume`)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]

    def __enter__(self) -> PausableProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.flowing.set()
        for sock in self.sockets:
            with suppress(OSError):
                sock.close()

    def hang(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port))
                self.sockets += [client, server]
                for source, sink in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


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


def start_run(env: dict[str, str], port: int, stderr: Path) -> subprocess.Popen:
    """`gateway run` (the development server) on `port` with `env`, logging to `stderr`, once it
    takes connections."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [gateway, "run", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"gateway run did not start:\n{stderr.read_text()}") from None
            time.sleep(0.2)


def start_worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """`gateway worker` with that environment, in a process group of its own, logging to `log`."""
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    with log.open("ab") as sink:
        return subprocess.Popen(
            [gateway, "worker", *extra],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killing it takes its scheduler too
        )


class PrivateRedis:
    """A redis-server of this test's own, so it can be stopped and started."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp, self.proc = free_port(), tmp, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
