"""Metrics, structured logs with a request id, and the production server (gunicorn, 2 processes)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from gateway.platform import logs, metrics
from gateway.usecases import intake
from jobs.engine import outbox
from jobs.reconcile import REPAIRS
from tests.support.badge_jobs import items
from tests.support.clients import fetch_token, register_client
from tests.support.database import truncate
from tests.support.events import fee, granted
from tests.support.metrics import sample
from tests.support.serving import free_port, serve_env, start_serve
from tests.support.verification import days_ago

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@pytest.fixture
def app(database_url, make_app):
    return make_app(database_url=database_url, jobs_synchronous=True)


def test_metrics_count_requests_events_rejections_jobs_and_backlog(app, client, token_for):
    headers = token_for("events:write")
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/v1/events", json=granted("2020-01-10"), headers=headers)
    client.post("/v1/events", json=fee(2020, "2020-02-01"), headers=headers)  # FEE-YEAR-RANGE
    client.post("/v1/events", json={"type": "renewal.fee_paid"}, headers=headers)
    exposition = client.get("/metrics")
    text = exposition.get_data(as_text=True)
    assert "# HELP" in text
    # Prometheus's own content type, its parameters once each (a scraper refuses repeats)
    assert exposition.headers["Content-Type"] == CONTENT_TYPE_LATEST

    def grew(name, **labels):
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert (
        grew("gateway_http_requests_total", endpoint="/v1/events", method="POST", status="202") == 1
    )
    assert grew("gateway_http_request_duration_seconds_count", endpoint="/v1/events") == 3
    assert grew("gateway_events_total", type="certification.granted", outcome="accepted") == 1
    assert grew("gateway_events_total", type="renewal.fee_paid", outcome="rejected") == 1
    assert grew("gateway_events_total", type="renewal.fee_paid", outcome="invalid") == 1
    assert grew("gateway_rule_rejections_total", rule="FEE-YEAR-RANGE") == 1
    assert grew("gateway_jobs_total", kind="sync_verification", outcome="done") == 1
    for state in ("pending", "running", "retrying"):  # each shown, 0 when none is
        assert f'gateway_outbox_backlog{{state="{state}"}}' in text


def test_credly_calls_are_timed_and_failures_counted():
    before_errors = metrics.CREDLY_ERRORS.labels("POST /x")._value.get()
    metrics.observe_credly("POST", "/x", 503, 0.2)
    metrics.observe_credly("POST", "/x", 201, 0.1)
    assert metrics.CREDLY_ERRORS.labels("POST /x")._value.get() == before_errors + 1


def test_the_drift_counter_names_every_repair_the_reconciliation_makes_as_the_docs_do():
    listed = metrics.CREDLY_DRIFT._documentation.split("by repair: ", 1)[1].split(" (")[0]
    documented = OPERATIONS.read_text().split("repaired by kind (", 1)[1].split(";", 1)[0]
    assert [name.strip() for name in listed.split(",")] == list(REPAIRS)
    assert re.findall(r"`(\w+)`", documented) == list(REPAIRS)


def test_logs_are_json_lines_with_the_request_id_that_follows_into_jobs(app, client, token_for):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        response = client.post(
            "/v1/events",
            json=granted(days_ago(30)),
            headers={**token_for("events:write"), "X-Request-ID": "req-abc-123"},
        )
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.headers["X-Request-ID"] == "req-abc-123"
    lines = [json.loads(logs.JsonFormatter().format(r)) for r in records]
    job_lines = [line for line in lines if line["logger"].startswith(("connectors", "jobs"))]
    assert job_lines, "the jobs logged nothing"
    assert all(line.get("request_id") == "req-abc-123" for line in job_lines), job_lines
    done = {line["kind"] for line in job_lines if line["msg"] == "job done"}
    assert done == {"issue_badge", "sync_verification"}  # at the default level, INFO
    with app.extensions["gateway"].db.sessions() as session:
        from gateway.store.models import Event, OutboxItem

        assert session.query(Event).one().request_id == "req-abc-123"
        assert {o.request_id for o in session.query(OutboxItem)} == {"req-abc-123"}


def test_a_new_request_id_is_made_when_none_is_given(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "given", ['{"a": "b"}', "<script>x</script>", "a b", "'; DROP TABLE x;--", "x" * 65, "café"]
)
def test_a_request_id_unlike_an_id_or_too_long_is_replaced_not_kept_or_cut(client, given):
    answered = client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert answered != given and given[:64] != answered and len(answered) == 32


HTTP = "gateway_http_requests_total"


def test_a_method_outside_the_usual_ones_is_counted_as_other_adding_no_series(client):
    labels = {"endpoint": "unmatched", "method": "other", "status": "404"}
    before = sample(client.get("/metrics").get_data(as_text=True), HTTP, **labels)
    for method in ("QWERTYUIOPAS", "ZXCVBNMASDFG"):
        assert client.open("/no-such-path", method=method).status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert "QWERTYUIOPAS" not in text and "ZXCVBNMASDFG" not in text
    assert sample(text, HTTP, **labels) - before == 2


def test_debug_logs_carry_no_token_either(make_app, capfd):
    app = make_app(log_level="DEBUG")
    client_id, secret = register_client(app, "events:write")
    token = (
        app.test_client()
        .post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        .get_json()["access_token"]
    )
    out, err = capfd.readouterr()
    assert token not in out + err and secret not in out + err


def test_no_secret_or_token_reaches_the_logs(app, client, capfd):
    client_id, secret = register_client(app, "events:write")
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).get_json()["access_token"]
    client.post(
        "/v1/events", json=granted(days_ago(30)), headers={"Authorization": f"Bearer {token}"}
    )
    client.get("/v1/events/x", headers={"Authorization": "Bearer wrong-token-value"})
    out, err = capfd.readouterr()
    for secret_text in (secret, token, "wrong-token-value"):
        assert secret_text not in out + err


def _listening_sockets(port: int) -> int:
    """How many TCP sockets listen on `port` (Linux's /proc/net/tcp; state 0A is LISTEN)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for row in rows
        if (fields := row.split())[1].endswith(f":{port:04X}") and fields[3] == "0A"
    )


def test_gateway_serve_runs_gunicorn_processes_whose_metrics_add_up(tmp_path, postgres_url):
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="2", WEB_THREADS="2")
    gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([gateway, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=(1, 30))  # booting workers: wait
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)

        def hit(_: int) -> int:
            return requests.get(f"{base}/healthz", timeout=10).status_code

        def writers() -> set[str]:
            return {
                p.name for p in (tmp_path / "metrics").iterdir() if p.name.startswith("counter")
            }

        sent = 1
        with ThreadPoolExecutor(8) as pool:  # concurrent connections, until both processes served
            for _ in range(30):
                assert set(pool.map(hit, range(40))) == {200}
                sent += 40
                if len(writers()) >= 2:
                    break
        assert len(writers()) >= 2, writers()  # several processes wrote samples
        assert _listening_sockets(port) == 2  # one per worker: the kernel spreads connections
        text = requests.get(f"{base}/metrics", timeout=30).text
        served = sample(text, "gateway_http_requests_total", endpoint="/healthz", status="200")
        assert served == sent  # every process's count, summed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert access and access[0]["path"] == "/healthz"


def test_a_failed_statement_is_logged_without_the_values_it_carried(app, client, token_for, capfd):
    """A database error names its statement, not its values: those hold members' details and
    secrets, and the error of a request or job is logged with its traceback."""
    svc = app.extensions["gateway"]

    def failing(*args, **kwargs):
        svc.db.write(
            # a row without its `shard`: refused (NOT NULL), PostgreSQL quoting the row
            text("INSERT INTO job_outcomes (kind, outcome) VALUES (:email, :secret)"),
            {"email": "ada.failed@example.org", "secret": "hook-s3cr3t"},
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(intake, "submit_event", failing)
        patch.setattr(intake, "submit_events", failing)
        answer = client.post(
            "/v1/events", json=granted(days_ago(30)), headers=token_for("events:write")
        )
    assert answer.status_code == 500
    out, err = capfd.readouterr()

    assert "INSERT INTO job_outcomes" in err  # the statement is named
    assert "ada.failed@example.org" not in out + err
    assert "hook-s3cr3t" not in out + err


def test_a_database_errors_first_line_is_logged_and_recorded_without_the_value_it_quotes(
    make_app, postgres_url, capfd
):
    """PostgreSQL's first line may quote a value (`invalid input syntax for type integer:
    "..."`): a request's 500 and a job's error are logged, and the job's error recorded, with
    the names it quotes but not the values."""
    truncate(postgres_url)
    app = make_app("IN_SERVER", database_url=postgres_url)  # the jobs run here, once
    svc = app.extensions["gateway"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {fetch_token(app, 'events:write')}"}

    def failing(value: str):
        def run(*args, **kwargs):
            svc.db.write(text("SELECT CAST(:value AS integer)"), {"value": value})

        return run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(intake, "submit_event", failing("ada.request@example.org"))
        answer = client.post("/v1/events", json=granted(days_ago(30)), headers=headers)
    assert answer.status_code == 500
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(outbox.HANDLERS, "sync_verification", failing("ada.job@example.org"))
        answer = client.post("/v1/events", json=granted(days_ago(30)), headers=headers)
        outbox.work_due(svc)
    assert answer.status_code == 202
    _, err = capfd.readouterr()
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [item] = items(svc, "sync_verification")
    quoted = 'invalid input syntax for type integer: "…"'
    assert item.state == "retrying" and quoted in item.last_error
    [request_error] = [line["exc"] for line in logged if line["msg"] == "unhandled error"]
    [job_error] = [line["exc"] for line in logged if line["msg"] == "job error"]
    [retried] = [line["error"] for line in logged if line["msg"].startswith("transient failure")]
    for shown in (request_error, job_error, retried):
        assert quoted in shown
    for value in ("ada.request@example.org", "ada.job@example.org"):
        assert value not in err + item.last_error


def test_the_two_job_counters_say_what_each_counts_and_name_each_other(client):
    """`gateway_jobs_total` counts attempts (retries and pauses too) where they ran;
    `gateway_job_outcomes_total` every worker's ended jobs: the HELP lines and the docs say so."""
    text = client.get("/metrics").get_data(as_text=True)
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    attempts, ended = helps["gateway_jobs_total"], helps["gateway_job_outcomes_total"]
    for outcome in ("done", "retrying", "failed", "paused"):
        assert outcome in attempts
    assert "attempt" in attempts and "gateway_job_outcomes_total" in attempts
    assert "Every worker's" in ended and "gateway_jobs_total" in ended
    docs = " ".join(OPERATIONS.read_text().split())
    assert "`gateway_jobs_total{kind,outcome}`: the attempts at jobs" in docs
    assert "For how many jobs ended, read `gateway_job_outcomes_total`" in docs


def test_the_metrics_folder_gateway_serve_made_for_itself_goes_when_it_stops(
    tmp_path, postgres_url
):
    """Without PROMETHEUS_MULTIPROC_DIR, each `gateway serve` makes a folder of its own for its
    processes' samples: removed as it exits, not left behind by every restart."""
    temp = tmp_path / "temp"
    temp.mkdir()
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS="2", TMPDIR=str(temp))
    del env["PROMETHEUS_MULTIPROC_DIR"]
    proc = start_serve(env, tmp_path / "serve.log")
    try:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        [made] = temp.glob("gateway-metrics-*")  # the instance's own, its samples in it
        assert any(made.iterdir())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not list(temp.glob("gateway-metrics-*"))


def test_the_metrics_folder_set_is_kept_when_gateway_serve_stops(tmp_path, postgres_url):
    env = serve_env(tmp_path, postgres_url, free_port(), WEB_WORKERS="1")
    proc = start_serve(env, tmp_path / "serve.log")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert (tmp_path / "metrics").is_dir()  # the workers of the machine may write there too


UNCAUGHT = """
import threading, warnings
from gateway.platform import logs
logs.configure("INFO")
warnings.warn("a library's warning")
thread = threading.Thread(target=lambda: 1 / 0, name="helper")
thread.start()
thread.join()
raise RuntimeError("nothing caught this")
"""


def test_warnings_and_errors_nothing_caught_are_json_lines_too():
    """What Python itself prints on stderr (a warning, a thread's or the program's uncaught
    error) comes as JSON lines like every log line, the traceback in `exc`."""
    done = subprocess.run(
        [sys.executable, "-c", UNCAUGHT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line JSON
    assert [(line["level"], line["msg"]) for line in lines[-2:]] == [
        ("CRITICAL", "uncaught error in thread helper"),
        ("CRITICAL", "uncaught error"),
    ]
    assert "ZeroDivisionError" in lines[-2]["exc"]
    assert "RuntimeError: nothing caught this" in lines[-1]["exc"]
    assert lines[0]["level"] == "WARNING" and "a library's warning" in lines[0]["msg"]


def test_whether_credly_jobs_are_paused_is_left_out_of_metrics_while_redis_cannot_be_read(
    make_app, database_url, redis_url
):
    """0 would say the jobs are not paused while the gateway does not know: no sample then."""
    reading = make_app(database_url=database_url, redis_url=redis_url)
    known = reading.test_client().get("/metrics").get_data(as_text=True)
    assert re.search(r"^gateway_credly_paused 0\.0$", known, re.MULTILINE)

    unreadable = make_app(database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    unknown = unreadable.test_client().get("/metrics").get_data(as_text=True)
    assert "# TYPE gateway_credly_paused gauge" in unknown  # still described
    assert not re.search(r"^gateway_credly_paused ", unknown, re.MULTILINE)
    assert re.search(r"^gateway_queue_depth ", unknown, re.MULTILINE)  # the rest is shown
