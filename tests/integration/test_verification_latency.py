"""A change of standing reaches the lookup within 2 s, through a real `gateway worker` process."""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.support.clients import fetch_token
from tests.support.database import truncate
from tests.support.events import granted, revoked
from tests.support.serving import start_worker
from tests.support.verification import days_ago

LATENCY_SECONDS = 2.0


def wait_for_status(client, certification_id: str, status: str, timeout: float) -> None:
    """Poll the lookup until it shows `status`; AssertionError when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    shown = None
    while time.monotonic() < deadline:
        response = client.get(f"/v1/verifications/{certification_id}")
        shown = response.get_json().get("status") if response.status_code == 200 else None
        if shown == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"lookup still shows {shown!r}, not {status!r}, after {timeout} s")


def test_a_revocation_reaches_the_lookup_within_two_seconds_of_being_accepted(
    make_app, postgres_url, redis_client, redis_url, tmp_path
):
    truncate(postgres_url)
    queue = f"latency-{uuid.uuid4().hex[:8]}"  # no other test session's worker takes its jobs
    app = make_app(
        database_url=postgres_url,
        redis_url=redis_url,
        queue_name=queue,
        verify_rate_limit="100/second",
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {fetch_token(app, 'events:write')}"}
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "INSTANCE_PATH": str(tmp_path),
        "QUEUE_NAME": queue,
    }
    log = tmp_path / "worker.log"
    worker = start_worker(env, log, "--ttl", "20")
    try:
        grant = client.post(
            "/v1/events", json=granted(days_ago(30), cert="LIVE-1"), headers=headers
        )
        assert grant.status_code == 202
        try:  # the worker is up once it has synced the grant
            wait_for_status(client, "LIVE-1", "active", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        revocation = revoked(days_ago(1), cert="LIVE-1")
        assert client.post("/v1/events", json=revocation, headers=headers).status_code == 202
        wait_for_status(client, "LIVE-1", "revoked", timeout=LATENCY_SECONDS)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    truncate(postgres_url)
