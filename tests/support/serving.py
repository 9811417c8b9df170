"""Real processes in tests: free ports, `gateway serve`'s env, its log and web processes, `gateway
run`, `gateway worker`, a private Redis, a server that never answers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


@contextmanager
def serving(env: dict[str, str], stderr: Path) -> Iterator[subprocess.Popen]:
    """`gateway serve` with `env` (`start_serve`), stopped with SIGTERM when the block ends."""
    proc = start_serve(env, stderr)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def wait_for(done: Callable[[], object], log: Path, seconds: float = 30) -> None:
    """Wait until `done()` holds; past `seconds`, fail with the end of `log`."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def ready_pids(log: Path) -> list[int]:
    """The process ids of the web processes that said they are ready, in the order they did, from
    the log of `gateway serve`."""
    return [int(pid) for pid in re.findall(rb"Worker ready \(pid: (\d+)\)", log.read_bytes())]


def kill_web_process(proc: subprocess.Popen, log: Path) -> int:
    """SIGKILL the last web process of `gateway serve` `proc` that said it is ready (as the kernel's
    out-of-memory killer would), then wait until gunicorn has started another in its place and it
    is ready, or the server has stopped. The killed process's id."""
    *_, pid = ready_pids(log)
    before = len(ready_pids(log))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(ready_pids(log)) > before or proc.poll() is not None, log)
    return pid


def hang_up_refused(proc: subprocess.Popen, log: Path) -> None:
    """Send `gateway serve` `proc` SIGHUP and wait until it says it did not reload; fail unless it
    still runs a second later, when a reload would have stopped its old web processes."""
    before = log.read_text().count("not reloaded")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log.read_text().count("not reloaded") > before or proc.poll() is not None, log)
    time.sleep(1)
    assert proc.poll() is None, log.read_text()[-3000:]


def logged_errors(log: Path) -> list[str]:
    """The messages of the ERROR lines of a JSON log."""
    entries = map(json.loads, log.read_text().splitlines())
    return [entry["msg"] for entry in entries if entry["level"] == "ERROR"]


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
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
