"""Running the gateway's servers as real processes in tests: free ports, `gateway serve`'s env."""

from __future__ import annotations

import os
import socket
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
