"""The embedded default's reads while another transaction writes: `gateway run` on SQLite answers
lookups, token checks, standings, events, lists, status lists and its readiness from the last
committed state at once, without waiting for the writer (a batch of events, a sweep, a command)
to commit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from tests.support.events import granted
from tests.support.serving import free_port, start_run

GATEWAY = os.path.join(os.path.dirname(sys.executable), "gateway")


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["INSTANCE_PATH"] = str(tmp_path / "instance")
    return env


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """`gateway run` on the embedded default in a fresh instance folder, and a bearer header of a
    client with every scope the reads take: its URL, its SQLite file and that header."""
    env = _embedded_env(tmp_path)
    port = free_port()
    proc = start_run(env, port, tmp_path / "stderr.log")
    try:
        scope = "events:write certifications:read verifications:read"
        created = subprocess.run(
            [GATEWAY, "clients", "create", "--name", "reader", "--scope", scope],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        client = json.loads(created.stdout)
        url = f"http://127.0.0.1:{port}"
        token = requests.post(
            f"{url}/oauth/token",
            auth=(client["client_id"], client["client_secret"]),
            data={"grant_type": "client_credentials"},
            timeout=10,
        ).json()["access_token"]
        yield url, tmp_path / "instance" / "gateway.sqlite3", {"Authorization": f"Bearer {token}"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_reads_do_not_wait_for_a_transaction_that_holds_the_write_lock(embedded):
    url, database, bearer = embedded
    grant = granted((date.today() - timedelta(days=30)).isoformat(), cert="READ-1")
    assert requests.post(f"{url}/v1/events", json=grant, headers=bearer, timeout=10).ok
    credential = f"{url}/v1/certifications/READ-1/credential"
    assert requests.get(credential, headers=bearer, timeout=10).ok  # its status lists exist
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # as a batch of events or a sweep holds it while it writes
    try:
        for path, headers in [
            ("/v1/verifications/READ-1", {}),
            ("/v1/verifications/READ-1", bearer),
            ("/v1/certifications/READ-1", bearer),
            (f"/v1/events/{grant['event_id']}", bearer),
            ("/v1/receipts", bearer),
            ("/v1/subscriptions", bearer),
            ("/credentials/status/0/suspension", {}),
            ("/readyz", {}),
        ]:
            answer = requests.get(f"{url}{path}", headers=headers, timeout=5)
            assert answer.status_code == 200, (path, answer.text)
        batch = {"certification_ids": ["READ-1", "READ-2"]}
        answer = requests.post(
            f"{url}/v1/verifications/batch", json=batch, headers=bearer, timeout=5
        )
        assert [r["status"] for r in answer.json()["results"]] == ["active", "not_found"]
    finally:
        writer.rollback()
        writer.close()


def test_commands_that_only_read_do_not_wait_for_a_transaction_that_holds_the_write_lock(
    embedded, tmp_path
):
    _, database, _ = embedded
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        for command in (["jobs", "status"], ["clients", "list"], ["badges", "unclaimed"]):
            ran = subprocess.run(
                [GATEWAY, *command],
                env=_embedded_env(tmp_path),
                capture_output=True,
                text=True,
                timeout=8,  # the write lock is waited for 10 s
            )
            assert ran.returncode == 0, (command, ran.stderr)
    finally:
        writer.rollback()
        writer.close()
