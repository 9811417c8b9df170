"""The database down: 503 problems (or the page) with Retry-After, never a 500."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from jobs.engine import worker
from tests.support.events import granted
from tests.support.verification import days_ago

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today

DOWN = "postgresql://postgres@127.0.0.1:1/none"


@pytest.fixture
def down(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    return make_app(database_url=DOWN).test_client()


def _only_warnings(caplog) -> list[str]:
    """The gateway's records after start-up: warnings of one line each, no traceback."""
    records = [r for r in caplog.records if "outbox relay at start" not in r.getMessage()]
    assert records and all(r.levelno == logging.WARNING and not r.exc_info for r in records)
    return [r.getMessage() for r in records]


def test_a_process_starts_with_the_database_down_and_warns_where_and_why(make_app, caplog):
    """Not an INFO line naming only OperationalError: the operator sees the address and the
    reason, never the password. The process starts: the database may come up later."""
    caplog.set_level(logging.INFO, logger="gateway")
    make_app(database_url="postgresql://gateway:s3cret@127.0.0.1:1/none")
    [line] = [r for r in caplog.records if "schema" in r.getMessage()]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith("DATABASE_URL: the schema of the database at 127.0.0.1:1 is not")
    assert "Connection refused" in message and "s3cret" not in message


@pytest.mark.parametrize(
    ("method", "path", "body", "token"),
    [
        ("get", "/v1/verifications/CERT-1", None, False),
        ("get", "/v1/verifications/CERT-1", None, True),
        ("post", "/v1/verifications/batch", {"certification_ids": ["CERT-1"]}, True),
        ("post", "/v1/events", granted(days_ago(30), cert="CERT-1"), True),
        ("get", "/v1/certifications/CERT-1", None, True),
    ],
)
def test_with_the_database_down_an_api_answer_is_a_503_problem_with_retry_after(
    down, caplog, method, path, body, token
):
    headers = {"Authorization": "Bearer some-token"} if token else {}
    response = getattr(down, method)(path, json=body, headers=headers)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    problem = response.get_json()
    assert problem["status"] == 503 and "database" in problem["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    [warning] = _only_warnings(caplog)
    assert warning.startswith("database unavailable: connection failed")


def test_with_the_database_down_the_token_endpoint_answers_503(down, caplog):
    response = down.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("client", "secret")
    )
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    _only_warnings(caplog)


def test_with_the_database_down_the_verify_page_says_so_in_html_with_status_503(down, caplog):
    response = down.get("/verify?certification_id=CERT-1")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "5"
    page = response.get_data(as_text=True)
    assert "The register cannot be reached right now." in page
    assert 'value="CERT-1"' in page  # the number stays in the form, to try again
    assert "<title>Please wait a moment · Verify a certification" in page
    assert "Not found" not in page
    _only_warnings(caplog)


def test_a_workers_relay_says_the_database_is_down_in_one_warning_a_pass(make_app, caplog):
    """Not an ERROR with a traceback every RELAY_INTERVAL_SECONDS: an outage is the database's
    state, which the relay outlives."""
    caplog.set_level(logging.INFO, logger="jobs")
    svc = make_app(database_url=DOWN, relay_interval_seconds=1).extensions["gateway"]
    stop = threading.Event()
    relay = threading.Thread(target=worker._relay_forever, args=(svc, stop))
    relay.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _relay_records(caplog):
        time.sleep(0.05)
    stop.set()
    relay.join()
    records = _relay_records(caplog)
    assert records and all(r.levelname == "WARNING" and not r.exc_info for r in records)
    assert records[0].getMessage().startswith("relay pass: database unavailable: ")


def _relay_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "jobs.engine.worker"]
