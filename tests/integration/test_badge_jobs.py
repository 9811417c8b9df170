"""Badge jobs on real Redis and PostgreSQL, with Credly's HTTP stood in for by `responses`."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
import requests
import responses
from click.testing import CliRunner
from redis.client import PubSubWorkerThread
from rq import Queue
from sqlalchemy import event as sa_event
from sqlalchemy import select

from connectors.credly.wire import Badge as CredlyBadge
from connectors.errors import TransientError
from gateway.cli.main import cli
from gateway.platform import clock, metrics
from gateway.store.models import Badge, OutboxItem
from gateway.usecases import intake, queries
from gateway.usecases.queries import badge_view
from jobs.badges import issue as issue_job
from jobs.badges import rows as badge_rows
from jobs.engine import context, dispatch, outbox
from jobs.engine.claim import CLAIM_DUE, ClaimedItem
from jobs.engine.dispatch import RELAY_GRACE, relay
from jobs.engine.outbox import claim_due
from jobs.engine.retry import MAX_ATTEMPTS
from jobs.reconcile import reconcile
from tests.support.badge_jobs import (
    BADGES,
    CREDLY,
    EMPTY_LIST,
    ORG,
    badge_json,
    badges,
    drain,
    ended,
    issue_done,
    items,
    retries_due,
    submit,
)
from tests.support.database import truncate
from tests.support.events import event, fee, granted
from tests.support.metrics import sample
from tests.support.queue import work_queued

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def svc(make_app, postgres_url, redis_client, redis_url):
    truncate(postgres_url)
    app = make_app(
        database_url=postgres_url,
        redis_url=redis_url,
        credly_api_base=CREDLY,
        credly_organization_id=ORG,
        credly_auth_token="tok",
        credly_badge_templates={"RMA": "tmpl-rma"},
        job_retry_base_seconds=1,
    )
    yield app.extensions["gateway"]
    truncate(postgres_url)


def issue_posts(rsps) -> int:
    return sum(1 for c in rsps.calls if c.request.method == "POST" and c.request.url == BADGES)


def test_the_helpers_that_wait_for_jobs_to_end_need_jobs_to_have_ended(svc):
    assert not issue_done(svc) and not _revoke_settled(svc)  # nothing queued has not ended
    submit(svc, granted("2026-03-01"))
    assert not issue_done(svc)
    with svc.db.transaction() as session:
        session.query(OutboxItem).update({"state": "failed"})
    assert issue_done(svc) and not ended(svc, "issue_badge", ("done",))


def test_a_worker_ends_without_waiting_on_rqs_command_listener(svc, monkeypatch):
    """With redis-py 8.2, a worker's end waits for its command listener's read (RQ's is 60 s)
    when the listener went back to reading before it was told to stop."""
    stop = PubSubWorkerThread.stop

    def late_stop(thread: PubSubWorkerThread, timeout: float | None = None) -> None:
        time.sleep(0.5)  # the listener has read the unsubscribe reply and waits again
        stop(thread, timeout)

    monkeypatch.setattr(PubSubWorkerThread, "stop", late_stop)
    start = time.monotonic()
    drain(svc, lambda: True)
    work_queued(svc)
    assert time.monotonic() - start < 10


@responses.activate
def test_500_500_then_201_issues_exactly_one_badge(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=500, json={"message": "oops"})
    responses.post(BADGES, status=500, json={"message": "oops"})
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert item.state == "done" and item.attempts == 3
    [badge] = badges(svc)
    assert badge.credly_badge_id == "b-1" and badge.state == "pending"
    assert issue_posts(responses) == 3


@responses.activate
def test_429_retry_after_is_honoured_without_a_search_credly_made_nothing(svc):
    # Credly asks for a minute, so that the retry comes after the checks however slow the machine
    # (with 3 s, a drain still busy with the grant's other item could run it first); it is then
    # made due and the workers woken, as the minute passing would.
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=429, headers={"Retry-After": "60"}, json={})
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    before = clock.now()
    work_queued(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "retrying" and "429" in item.last_error
    assert [c.request.method for c in responses.calls] == ["POST"]  # no search at once
    assert (item.due_at - before).total_seconds() >= 60
    # a worker is woken for it through RQ's scheduler, on the next whole second
    [wake_up] = queue.scheduled_job_registry.get_job_ids()
    assert queue.scheduled_job_registry.get_scheduled_time(wake_up) >= item.due_at
    retries_due(svc)
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-1"]
    assert [c.request.method for c in responses.calls] == ["POST", "POST"]  # nor before its retry


@responses.activate
def test_a_retry_after_a_429_still_looks_first_when_an_earlier_attempt_may_have_issued(svc):
    """A timeout may have made the badge; a 429 after it takes back only its own attempt."""
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, body=requests.exceptions.ReadTimeout("slow"))
    responses.post(BADGES, status=429, json={})
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-1"]
    calls = [(c.request.method, "filter=" in c.request.url) for c in responses.calls]
    look_up = ("GET", True)
    assert calls[0] == ("POST", False) and calls[-1] == ("POST", False)
    assert calls.count(("POST", False)) == 3
    # after the timeout each attempt looks first (the timeout's look-up for duplicates too)
    assert calls[1:].count(look_up) >= 2 and calls[-2] == look_up


@responses.activate
def test_a_timeout_is_retried(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, body=requests.exceptions.ReadTimeout("slow"))
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-1"]


@responses.activate
def test_a_first_issue_is_one_call_to_credly(svc):
    responses.post(BADGES, status=201, json=badge_json("b-new"))
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-new"]
    assert [c.request.method for c in responses.calls] == ["POST"]


@responses.activate
def test_a_badge_credly_already_has_is_adopted_from_its_duplicate_refusal(svc):
    listed = {"data": [badge_json("b-old")["data"]], "metadata": {"next_page_url": None}}
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=listed)
    responses.post(BADGES, status=422, json={"message": "User already has this badge"})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-old"]
    assert issue_posts(responses) == 1


@responses.activate
def test_a_retry_looks_for_the_badge_a_lost_answer_made_before_issuing(svc):
    listed = {"data": [badge_json("b-made")["data"]], "metadata": {"next_page_url": None}}
    search = re.compile(re.escape(BADGES) + r"\?.*")
    for _ in ("earner id", "e-mail"):  # the look after the failed call: nothing yet
        responses.get(search, json=EMPTY_LIST)
    responses.get(search, json=listed)  # the retry's look: the lost call's badge
    responses.post(BADGES, status=504, json={"message": "gateway timeout"})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-made"]
    assert issue_posts(responses) == 1
    [item] = items(svc, "issue_badge")
    assert item.state == "done" and item.attempts == 2


@responses.activate
def test_a_permanent_error_fails_at_once_is_listed_and_requeued(svc, monkeypatch, tmp_path):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=422, json={"message": "recipient_email is invalid"})
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert item.state == "failed" and item.attempts == 1
    assert "recipient_email is invalid" in item.last_error
    assert item.due_at is None  # never claimed again unless requeued
    [badge] = badges(svc)
    assert badge.state == "queued"  # Credly has none; the standing shows the failure:
    assert badge_view(badge)["state"] == "error"
    assert "recipient_email is invalid" in badge_view(badge)["error"]
    assert badge.state_changed_at is None  # Credly's state never changed: the failure's time
    assert badge_view(badge)["state_changed_at"] == badge.updated_at.isoformat()
    assert badge.updated_at >= item.finished_at - timedelta(seconds=1)

    env = {
        "DATABASE_URL": svc.settings.database_url,
        "REDIS_URL": svc.settings.redis_url,
        "INSTANCE_PATH": str(tmp_path),
        "CREDLY_API_BASE": CREDLY,
        "CREDLY_ORGANIZATION_ID": ORG,
        "CREDLY_AUTH_TOKEN": "tok",
        "CREDLY_BADGE_TEMPLATES": "RMA=tmpl-rma",
    }
    runner = CliRunner()
    listed = runner.invoke(cli, ["jobs", "failed", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["job_id"] == f"outbox-{item.id}" and "recipient_email" in row["error"]
    requeued = runner.invoke(cli, ["jobs", "requeue", "--all"], env=env)
    assert requeued.exit_code == 0, requeued.output
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert badge.state == "pending" and badge.credly_badge_id == "b-1"
    assert badge.last_error is None and "error" not in badge_view(badge)
    assert json.loads(runner.invoke(cli, ["jobs", "failed", "--json"], env=env).stdout) == []


@responses.activate
def test_the_webs_metrics_show_every_workers_job_outcomes_from_the_database(
    svc, make_app, monkeypatch, tmp_path
):
    # A web process of `gateway serve` whose workers run elsewhere: its folder holds no job run.
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path / "web-metrics"))
    web = make_app(database_url=svc.settings.database_url, redis_url=svc.settings.redis_url)
    context.use(svc)  # the jobs run as a worker's, with its Credly
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=422, json={"message": "recipient_email is invalid"})
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc) and ended(svc, "sync_verification"))
    [item] = items(svc, "issue_badge")
    assert item.state == "failed"
    dispatch.requeue(svc, [item.id])
    drain(svc, lambda: issue_done(svc))

    text = web.test_client().get("/metrics").get_data(as_text=True)
    outcomes = {
        (kind, outcome): sample(text, "gateway_job_outcomes_total", kind=kind, outcome=outcome)
        for kind in ("issue_badge", "sync_verification")
        for outcome in ("done", "failed")
    }
    assert outcomes == {  # the failure, then the requeued item's success
        ("issue_badge", "done"): 1,
        ("issue_badge", "failed"): 1,
        ("sync_verification", "done"): 1,
        ("sync_verification", "failed"): 0,
    }
    assert 'gateway_job_outcomes_total{kind="sync_verification",outcome="failed"} 0.0' in text
    # The per-process job runs: described, though this web process ran none.
    assert "# TYPE gateway_jobs_total counter" in text
    assert "gateway_jobs_total{" not in text


@responses.activate
def test_an_issue_refused_as_invalid_fails_at_once_with_credlys_answer_and_no_search(svc):
    answer = {"data": {"message": "Invalid recipient_email"}}
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), status=503, json={})
    responses.post(BADGES, status=400, json=answer)
    submit(svc, granted("2026-03-01"))
    work_queued(svc)
    [item] = items(svc, "issue_badge")
    assert (item.state, item.attempts) == ("failed", 1)
    assert json.loads(item.last_error.partition(" 400 ")[2]) == answer
    assert [c.request.method for c in responses.calls] == ["POST"]


@responses.activate
def test_a_duplicate_refusal_whose_search_fails_is_retried_and_adopts_the_badge(svc):
    search = re.compile(re.escape(BADGES) + r"\?.*")
    responses.get(search, status=503, json={})  # the search after the refusal
    listed = {"data": [badge_json("b-held")["data"]], "metadata": {"next_page_url": None}}
    responses.get(search, json=listed)  # the retry's look
    responses.post(BADGES, status=422, json={"message": "User already has this badge"})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert (item.state, item.attempts) == ("done", 2)
    assert [b.credly_badge_id for b in badges(svc)] == ["b-held"]


def _logged(caplog) -> str:
    """Every log line captured, with its fields."""
    return "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)


@responses.activate
def test_a_retried_jobs_error_and_log_line_name_no_email_its_search_url_held(svc, caplog):
    """A search by e-mail that got no answer names its URL, whose query holds the address."""
    caplog.set_level("INFO")
    unreachable = requests.ConnectionError(
        "HTTPSConnectionPool(host='api.credly.test', port=443): Max retries exceeded with url: "
        "/v1/organizations/org-1/badges?filter=recipient_email%3A%3Aada%40example.org"
        "%7Cbadge_template_id%3A%3Atmpl-rma (Caused by NewConnectionError('Failed to establish "
        "a new connection: [Errno 111] Connection refused'))"
    )
    by_email = re.compile(re.escape(BADGES) + r"\?.*recipient_email.*")
    responses.get(by_email, body=unreachable)
    listed = {"data": [badge_json("b-held")["data"]], "metadata": {"next_page_url": None}}
    responses.get(by_email, json=listed)  # the retry's search
    responses.get(re.compile(re.escape(BADGES) + r"\?.*issuer_earner_id.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=422, json={"message": "User already has this badge"})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert (item.state, item.attempts) == ("done", 2)
    [retried] = [r for r in caplog.records if r.getMessage().startswith("transient failure")]
    assert "filter=recipient_email%3A%3A<email>%7Cbadge_template_id" in retried.error
    assert "ada@example.org" not in _logged(caplog) and "ada%40example.org" not in _logged(caplog)


@responses.activate
def test_a_permanent_errors_reason_and_log_line_hold_credlys_answer_as_json_without_emails(
    svc, caplog
):
    """Credly's refusal may echo the member's address from the request: the job's error (shown by
    `gateway jobs failed` and the badge's standing) and its log line keep the rest of it."""
    caplog.set_level("INFO")
    answer = {"data": {"message": "Recipient ada@example.org is invalid", "errors": ["é"]}}
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=422, json=answer)
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    [badge] = badges(svc)
    shown = {"data": {"message": "Recipient <email> is invalid", "errors": ["é"]}}
    for reason in (item.last_error, badge_view(badge)["error"]):
        assert reason.startswith("Credly POST /organizations/{org}/badges answered 422 {")
        assert json.loads(reason.partition(" 422 ")[2]) == shown
    [failed] = [r for r in caplog.records if r.getMessage() == "job failed"]
    assert failed.error == item.last_error
    assert "ada@example.org" not in _logged(caplog)


@responses.activate
def test_a_credential_without_a_badge_template_fails_and_the_badge_says_why(svc):
    svc.settings = replace(svc.settings, credly_badge_templates={})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert item.state == "failed" and item.attempts == 1
    assert "no Credly badge template configured for credential RMA" in item.last_error
    [badge] = badges(svc)
    assert badge.attempts == 1 and badge.badge_template_id is None
    assert badge_view(badge)["state"] == "error"
    assert "no Credly badge template" in badge_view(badge)["error"]
    assert len(responses.calls) == 0  # Credly is never asked

    svc.settings = replace(svc.settings, credly_badge_templates={"RMA": "tmpl-rma"})
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    dispatch.requeue(svc, [item.id])
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert (badge.state, badge.attempts, badge.badge_template_id) == ("pending", 2, "tmpl-rma")
    assert badge.credly_badge_id == "b-1" and badge.last_error is None


@responses.activate
def test_reconciliation_issues_no_badge_of_a_credential_without_a_template(svc):
    """Each run would queue another issue job, failing as the first did: it counts them."""
    svc.settings = replace(svc.settings, credly_badge_templates={})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    for _ in range(2):
        summary = reconcile(svc)
        assert summary.no_template == 1 and summary.repaired["issued"] == 0
    assert [item.state for item in items(svc, "issue_badge")] == ["failed"]
    assert len(responses.calls) == 0


@responses.activate
def test_a_job_out_of_retries_shows_the_badge_as_error_with_the_reason(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=503, json={"message": "maintenance"})
    submit(svc, granted("2026-03-01"))
    with svc.db.transaction() as session:  # its retries used up but the last
        for item in session.query(OutboxItem).filter_by(kind="issue_badge"):
            item.attempts = MAX_ATTEMPTS - 1
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert item.state == "failed" and item.attempts == MAX_ATTEMPTS
    [badge] = badges(svc)
    view = badge_view(badge)
    assert view["state"] == "error" and "gave up after 8 attempts" in view["error"]
    assert "503" in view["error"]


@responses.activate
def test_a_retry_under_way_does_not_show_the_badge_as_error(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=503, json={"message": "maintenance"})
    submit(svc, granted("2026-03-01"))
    work_queued(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "retrying"
    [badge] = badges(svc)
    assert badge.last_error is None and badge_view(badge)["state"] == "none"


@responses.activate
def test_a_grant_recorded_when_already_inactive_issues_the_kept_badge(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    answer = submit(svc, granted("2024-01-10"))  # the fee for 2025 is overdue: inactive
    assert answer.body["standing"]["status"] == "inactive"
    assert "issue_badge" in answer.body["actions"]
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert (badge.credly_badge_id, badge.state) == ("b-1", "pending")


@responses.activate
def test_fees_that_make_an_inactive_certification_active_keep_its_badge(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    assert submit(svc, granted("2024-01-10")).body["standing"]["status"] == "inactive"
    drain(svc, lambda: issue_done(svc))
    fees = [fee(year, "2026-12-01", event_id=f"fee-{year}") for year in (2025, 2026)]
    answers = [submit(svc, body) for body in fees]
    assert answers[-1].body["standing"]["status"] == "active"
    assert answers[-1].body["actions"] == ["sync_verification"]
    assert not any("issue_badge" in answer.body["actions"] for answer in answers)
    drain(svc, lambda: ended(svc, "sync_verification"))
    assert issue_posts(responses) == 1
    assert [b.credly_badge_id for b in badges(svc)] == ["b-1"]
    assert [item.kind for item in items(svc, "issue_badge")] == ["issue_badge"]


@responses.activate
def test_the_same_event_twice_and_relaying_twice_make_one_badge(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    body = granted("2026-03-01")
    first, second = submit(svc, body), submit(svc, body)
    assert second.outbox_ids == ()
    svc.dispatcher.dispatch(first.outbox_ids)  # relayed again while still queued
    drain(svc, lambda: issue_done(svc))
    assert issue_posts(responses) == 1
    assert len(badges(svc)) == 1


@responses.activate
def test_an_issue_run_again_after_its_badge_went_out_calls_credly_no_more(svc, caplog):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json("b-7"))
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    calls = len(responses.calls)
    caplog.set_level("INFO", logger="jobs.badges")
    claimed = ClaimedItem(
        item.id, item.kind, item.certification_id, item.payload, None, 2, clock.now()
    )
    issue_job.issue(svc, claimed)  # e.g. a worker that ran past its lease
    assert len(responses.calls) == calls
    [said] = [r for r in caplog.records if r.getMessage() == "badge already issued"]
    assert said.credly_badge_id == "b-7"
    [badge] = badges(svc)
    assert (badge.credly_badge_id, badge.attempts) == ("b-7", 1)


@responses.activate
def test_revoke_after_audit_failure_and_revoking_twice_succeeds(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    responses.put(f"{BADGES}/b-1/revoke", status=200, json=badge_json(state="revoked"))
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    audit = {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2026-03-01"}
    submit(svc, event("audit.completed", audit))
    drain(svc, lambda: ended(svc, "revoke_badge", ("done",)))
    [badge] = badges(svc)
    assert badge.state == "revoked"
    revoke_call = next(c for c in responses.calls if c.request.method == "PUT")
    sent = json.loads(revoke_call.request.body)  # Credly e-mails it: the member's words
    assert "because the CCP audit was not passed (AUDIT-FAILED)" in sent["reason"]


def _revoke_settled(svc) -> bool:
    return ended(svc, "revoke_badge")


def _failed_revoke(svc, *, then_revoked: bool = False) -> OutboxItem:
    """Badge b-1 issued, then a failed audit whose revoke Credly refuses with a 422 (and, with
    `then_revoked`, accepts when asked again); the revoke's failed item."""
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    responses.put(f"{BADGES}/b-1/revoke", status=422, json={"message": "not allowed"})
    responses.get(f"{BADGES}/b-1", json=badge_json())  # not revoked already: the 422 stands
    if then_revoked:
        responses.put(f"{BADGES}/b-1/revoke", status=200, json=badge_json(state="revoked"))
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    audit = {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2026-03-01"}
    submit(svc, event("audit.completed", audit))
    drain(svc, lambda: _revoke_settled(svc))
    [item] = items(svc, "revoke_badge")
    return item


@responses.activate
def test_a_failed_revoke_keeps_the_badge_live_and_a_requeue_revokes_it(svc):
    item = _failed_revoke(svc, then_revoked=True)
    assert item.state == "failed"
    [badge] = badges(svc)
    assert badge.state == "pending"  # still live in Credly, as far as the gateway knows
    assert badge_view(badge)["state"] == "error" and "not allowed" in badge_view(badge)["error"]
    dispatch.requeue(svc, [item.id])
    drain(svc, lambda: _revoke_settled(svc))
    [badge] = badges(svc)
    assert badge.state == "revoked" and badge_view(badge)["state"] == "revoked"
    assert [c.request.method for c in responses.calls].count("PUT") == 2


@responses.activate
def test_a_requeued_job_with_nothing_left_to_do_clears_the_badges_error(svc):
    item = _failed_revoke(svc)
    with svc.db.transaction() as session:  # then revoked in Credly, as a notification says
        session.query(Badge).update({"state": "revoked"})
    assert badge_view(badges(svc)[0])["state"] == "error"
    dispatch.requeue(svc, [item.id])
    drain(svc, lambda: _revoke_settled(svc))
    [badge] = badges(svc)
    assert [i.state for i in items(svc, "revoke_badge")] == ["done"]
    assert badge.last_error is None and badge_view(badge)["state"] == "revoked"


@responses.activate
def test_a_badges_error_and_its_items_failure_are_recorded_in_one_transaction(svc, monkeypatch):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=422, json={"message": "recipient_email is invalid"})
    submit(svc, granted("2026-03-01"))
    run = svc.db.execute_all

    def lost_before_the_items_end(connection, statements):
        if any(statement is outbox.ENDED for statement, _ in statements):
            raise RuntimeError("database went away")
        return run(connection, statements)

    monkeypatch.setattr(svc.db, "execute_all", lost_before_the_items_end)
    [item] = claim_due(svc, 1)
    assert item.kind == "issue_badge"
    with pytest.raises(RuntimeError):
        outbox.run_claimed(svc, item)
    [badge] = badges(svc)
    assert badge.last_error is None  # rolled back with the item's end
    assert items(svc, "issue_badge")[0].state == "running"  # claimed again once its lease ends
    assert queries.job_outcomes(svc.db) == {}  # nor counted


@responses.activate
def test_the_badge_and_the_item_done_are_recorded_in_one_transaction(svc, monkeypatch):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))

    def crash(item, db, connection):
        raise RuntimeError("worker lost between the badge and the item")

    monkeypatch.setattr(ClaimedItem, "finish", crash)
    work_queued(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "retrying" and "RuntimeError" in item.last_error
    [badge] = badges(svc)
    assert badge.credly_badge_id is None and badge.state == "queued"
    assert badge_view(badge)["state"] == "none"  # not in Credly yet, and no failure


@responses.activate
def test_recording_the_same_credly_answer_again_keeps_the_badge_timestamps(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert badge.credly_badge_id == "b-1" and badge.last_error is None
    assert badge.issued_at is not None and badge.state_changed_at is not None
    stamped = badge.state_changed_at
    badge_rows.record(svc, badge.id, CredlyBadge.from_json(badge_json()["data"]))
    [again] = badges(svc)
    assert again.state_changed_at == stamped and again.issued_at == badge.issued_at


@responses.activate
def test_the_relay_wakes_a_worker_for_items_whose_wake_up_redis_lost(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    submit(svc, granted("2026-03-01"))
    svc.redis.flushdb()  # as a Redis restart without persistence would
    assert queue.count == 0
    assert relay(svc, svc.dispatcher) == 0  # younger than the grace: a wake-up may be on its way
    with svc.db.transaction() as session:
        for item in session.query(OutboxItem):
            item.due_at = clock.now() - 2 * RELAY_GRACE
    assert relay(svc, svc.dispatcher) == 2
    assert relay(svc, svc.dispatcher) == 2  # still due, but one wake-up is pending already
    assert queue.count == 1
    drain(svc, lambda: issue_done(svc))
    assert [b.credly_badge_id for b in badges(svc)] == ["b-1"]
    assert relay(svc, svc.dispatcher) == 0


def test_the_relay_drops_a_wake_flag_left_without_its_drain_job(svc):
    """A wake-up whose SET Redis did after the caller gave up on it: the flag, and no job."""
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    submit(svc, granted("2026-03-01"))
    queue.empty()
    svc.redis.set(svc.dispatcher.flag, 1, ex=30)
    with svc.db.transaction() as session:
        for item in session.query(OutboxItem):
            item.due_at = clock.now() - 2 * RELAY_GRACE
    assert relay(svc, svc.dispatcher) == 2
    assert queue.count == 1  # woken now, not once the flag expires


@responses.activate
def test_an_attempt_whose_worker_stopped_is_claimed_again_when_its_lease_ends(svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    claimed = claim_due(svc, 2)  # and then the worker was killed
    assert [c.kind for c in claimed] == ["issue_badge", "sync_verification"] and not claim_due(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "running" and item.attempts == 1
    lease = (item.due_at - clock.now()).total_seconds()
    assert svc.settings.job_timeout_seconds - 5 < lease <= svc.settings.job_timeout_seconds
    with svc.db.transaction() as session:  # the lease has run out
        session.get(OutboxItem, item.id).due_at = clock.now()
    assert [c.id for c in claim_due(svc, 2)] == [item.id]


@responses.activate
def test_an_item_whose_every_attempt_ended_with_its_worker_fails_without_running(svc):
    submit(svc, granted("2026-03-01"))
    with svc.db.transaction() as session:
        for item in session.query(OutboxItem):
            item.state, item.attempts = "running", MAX_ATTEMPTS
    drain(svc, lambda: issue_done(svc))
    [item] = items(svc, "issue_badge")
    assert item.state == "failed" and item.attempts == MAX_ATTEMPTS + 1
    assert "ended with its worker" in item.last_error
    assert len(responses.calls) == 0


@responses.activate
def test_one_wake_up_waits_at_a_time_and_a_drain_with_a_backlog_wakes_another_worker(
    svc, monkeypatch
):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    submit(svc, granted("2026-03-01"))
    svc.dispatcher.dispatch([1, 2])  # more commits while the first wake-up waits
    assert queue.count == 1
    collector = metrics.BacklogCollector(lambda: queries.queue_gauges(svc.db), lambda: False)
    depth = {m.name: m.samples[0].value for m in collector.collect()}
    assert depth["gateway_queue_depth"] == 2  # both items of the grant are due

    monkeypatch.setattr(svc, "settings", replace(svc.settings, job_concurrency=1))
    dispatch.drain()  # as a worker runs it: 2 items due, more than its one thread takes at once
    assert queue.count == 2  # the waiting wake-up, and one for another worker
    assert ended(svc, "issue_badge", ("done",)) and ended(svc, "sync_verification", ("done",))
    dispatch.drain()  # the second worker finds nothing left and wakes nobody
    assert queue.count == 2


@pytest.mark.parametrize("batch", [1, 3])
def test_concurrent_claims_take_every_due_item_exactly_once(svc, batch):
    for n in range(10):
        intake.submit_event(svc, granted("2026-03-01", cert=f"C-{n}"))  # 20 items due
    barrier = threading.Barrier(8)

    def claim_all() -> list[int]:
        barrier.wait()
        taken = []
        while items := claim_due(svc, batch):
            assert len(items) <= batch
            taken += [item.id for item in items]
        return taken

    with ThreadPoolExecutor(8) as pool:
        claimed = [oid for taken in pool.map(lambda _: claim_all(), range(8)) for oid in taken]
    with svc.db.sessions() as session:
        every = sorted(session.scalars(select(OutboxItem.id)))
    assert len(every) == 20 and sorted(claimed) == every


def without_hashes_or_sorts(dbapi_connection, _record) -> None:
    """Planner settings under which PostgreSQL runs a subquery of an UPDATE again for each row
    it scans (a nested loop)."""
    for plan in ("hashjoin", "hashagg", "mergejoin", "material", "sort"):
        dbapi_connection.execute(f"SET enable_{plan} = off")
    dbapi_connection.commit()


def test_a_claim_takes_at_most_its_batch_whatever_plan_the_database_picks(svc, postgres_url):
    for n in range(10):
        intake.submit_event(svc, granted("2026-03-01", cert=f"C-{n}"))  # 20 items due
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("ANALYZE outbox")
    svc.db.engine.dispose()  # new connections, under those settings
    sa_event.listen(svc.db.engine, "connect", without_hashes_or_sorts)
    try:
        assert [len(claim_due(svc, batch)) for batch in (1, 3)] == [1, 3]
    finally:
        sa_event.remove(svc.db.engine, "connect", without_hashes_or_sorts)
        svc.db.engine.dispose()


def due_grants(svc, count: int) -> list[int]:
    """`count` grants recorded: two items due for each, their ids in the order they were queued."""
    for n in range(count):
        intake.submit_event(svc, granted("2026-03-01", cert=f"C-{n}"))
    with svc.db.sessions() as session:
        return sorted(session.scalars(select(OutboxItem.id)))


def test_a_claim_takes_up_to_its_batch_in_queue_order_each_under_its_lease(svc):
    queued = due_grants(svc, 3)
    before = clock.now()
    first = claim_due(svc, 4)
    assert [i.id for i in first] == queued[:4]
    lease = svc.settings.job_timeout_seconds
    with svc.db.sessions() as session:
        for item in first:
            row = session.get(OutboxItem, item.id)
            assert (row.state, row.attempts, item.attempts) == ("running", 1, 1)
            assert row.due_at == item.lease_end
            assert 0 <= (item.lease_end - before).total_seconds() - lease < 5
    assert [i.id for i in claim_due(svc, 4)] == queued[4:]
    assert claim_due(svc, 4) == []


def test_items_due_at_the_same_moment_are_claimed_in_queue_order(svc):
    """As items given back together are: their rows written last first (the order the database
    would find them in), still claimed first queued, first."""
    queued = due_grants(svc, 2)
    moment = clock.now()
    with svc.db.transaction() as session:
        for oid in reversed(queued):
            session.get(OutboxItem, oid).due_at = moment
            session.flush()
    assert [item.id for _ in queued for item in claim_due(svc, 1)] == queued


def plan_nodes(node: dict) -> list[dict]:
    """A node of a JSON plan and every node under it."""
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]


def test_a_claim_reads_only_the_items_it_takes_of_many_due_at_the_same_moment(svc, postgres_url):
    """Items given back, requeued or resumed together share one due time: a claim finds the
    first of them in queue order on its index, without reading and sorting all of them."""
    moment = clock.now() - timedelta(minutes=1)
    compiled = CLAIM_DUE.compile(dialect=svc.db.engine.dialect)
    params = compiled.construct_params(
        {"now": clock.now(), "lease_end": clock.now() + timedelta(minutes=2), "batch": 8}
    )
    with psycopg.connect(postgres_url) as connection:
        connection.execute(
            "INSERT INTO outbox (kind, payload, state, attempts, created_at, due_at)"
            " SELECT 'sync_verification', '{}', 'pending', 0, %(at)s, %(at)s"
            " FROM generate_series(1, 5000)",
            {"at": moment},
        )
        connection.execute("ANALYZE outbox")
        [[[plan]]] = connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", params)
        connection.rollback()
    nodes = plan_nodes(plan["Plan"])
    read = [n for n in nodes if n.get("Relation Name") == "outbox" and "Scan" in n["Node Type"]]
    assert read and max(n["Actual Rows"] for n in read) <= 8, read
    assert not [n for n in nodes if "Sort" in n["Node Type"]], nodes


def test_items_given_back_are_due_again_as_they_were_claimed_unless_claimed_since(svc):
    queued = due_grants(svc, 2)
    with svc.db.transaction() as session:  # one item failed an attempt already
        row = session.get(OutboxItem, queued[1])
        row.state, row.attempts, row.last_error = "retrying", 1, "attempt 1: 503"
    claimed = claim_due(svc, 4)
    with svc.db.transaction() as session:  # the last one's lease ended and another worker took it
        taken = session.get(OutboxItem, queued[3])
        taken.due_at, taken.attempts = claimed[3].lease_end + timedelta(seconds=60), 2
    outbox.give_back(svc, claimed[1:])
    with svc.db.sessions() as session:
        rows = [session.get(OutboxItem, oid) for oid in queued]
    now = clock.now()
    assert [(r.state, r.attempts) for r in rows] == [
        ("running", 1),
        ("retrying", 1),
        ("pending", 0),
        ("running", 2),
    ]
    assert rows[1].due_at <= now and rows[2].due_at <= now and rows[3].due_at > now
    assert [i.id for i in claim_due(svc, 4)] == queued[1:3]


def test_claims_grow_while_they_come_back_full_and_shrink_when_one_does_not(svc, monkeypatch):
    queued = due_grants(svc, 10)
    asked, ran = [], []
    claim = outbox.claim_due
    monkeypatch.setattr(
        outbox, "claim_due", lambda s, batch: asked.append(batch) or claim(s, batch)
    )
    for kind in ("issue_badge", "sync_verification"):
        monkeypatch.setitem(outbox.HANDLERS, kind, lambda s, item: ran.append(item.id))
    outbox.work_due(svc)
    assert asked == [1, 2, 4, 8, 8, 1]  # 1 + 2 + 4 + 8 + the last 5 of the 20
    assert ran == queued
    assert {
        (i.state, i.attempts) for k in ("issue_badge", "sync_verification") for i in items(svc, k)
    } == {("done", 1)}


def test_an_item_claimed_with_others_starts_only_with_half_its_lease_ahead(svc, monkeypatch):
    queued = due_grants(svc, 3)
    monkeypatch.setattr(svc, "settings", replace(svc.settings, job_timeout_seconds=1))
    given_back, ran = [], []
    give_back = outbox.give_back
    monkeypatch.setattr(
        outbox,
        "give_back",
        lambda s, rest: given_back.append([i.id for i in rest]) or give_back(s, rest),
    )

    def slow(s, item):  # each run takes more than half the lease
        ran.append(item.id)
        time.sleep(0.6)

    for kind in ("issue_badge", "sync_verification"):
        monkeypatch.setitem(outbox.HANDLERS, kind, slow)
    outbox.work_due(svc)
    # Claims of 1, 2 (the second given back), 4 (the last three given back), 8 (got 3; the last
    # two given back), 1, 2 (got 1) and 1 (none left).
    assert given_back == [queued[2:3], queued[3:], queued[4:]]
    assert ran == queued  # each run once, in the order queued
    assert {
        (i.state, i.attempts) for k in ("issue_badge", "sync_verification") for i in items(svc, k)
    } == {("done", 1)}


def _sync_run_by(svc, monkeypatch, handler) -> OutboxItem:
    """A grant's sync item once `handler` ran it (its issue item doing nothing). A retry waits a
    minute: the pass's next claim must not find it due, as it would with 1 s on a slow machine."""
    monkeypatch.setattr(svc, "settings", replace(svc.settings, job_retry_base_seconds=60))
    due_grants(svc, 1)
    monkeypatch.setitem(outbox.HANDLERS, "sync_verification", handler)
    monkeypatch.setitem(outbox.HANDLERS, "issue_badge", lambda s, item: None)
    outbox.work_due(svc)
    [item] = items(svc, "sync_verification")
    return item


def test_an_unexpected_error_keeps_only_its_first_line_as_the_last_error(svc, monkeypatch):
    def fails(s, item):
        raise RuntimeError("the job went wrong\n[SQL: INSERT ...]\n[parameters: {'name': 'Ada'}]")

    item = _sync_run_by(svc, monkeypatch, fails)
    assert item.state == "retrying"
    assert item.last_error.startswith("attempt 1: RuntimeError: the job went wrong; retry in ")
    assert "SQL" not in item.last_error and "Ada" not in item.last_error


@pytest.mark.parametrize("error", [RuntimeError("gone"), TransientError("gone")])
def test_an_error_after_the_handlers_done_record_committed_leaves_the_item_done(
    svc, monkeypatch, error
):
    """The handler recorded the item done with its outcome, then failed (its commit's answer
    lost, say): the item stays done, never retried to run its outcome again."""

    def done_then_fails(s, item):
        with s.db.engine.begin() as connection:
            item.finish(s.db, connection)
        raise error

    done = metrics.JOBS.labels("sync_verification", "done")
    before = done._value.get()
    item = _sync_run_by(svc, monkeypatch, done_then_fails)
    assert (item.state, item.attempts, item.last_error) == ("done", 1, None)
    assert item.finished_at is not None
    assert done._value.get() == before + 1


def test_an_error_before_the_handlers_done_record_committed_retries_the_item(svc, monkeypatch):
    """The done record rolled back with the rest of the handler's transaction: the item is
    retried as after any other unexpected error."""

    def done_then_rolled_back(s, item):
        with s.db.engine.begin() as connection:
            item.finish(s.db, connection)
            raise RuntimeError("the commit failed")

    item = _sync_run_by(svc, monkeypatch, done_then_rolled_back)
    assert item.state == "retrying"
    assert item.last_error.startswith("attempt 1: RuntimeError: the commit failed; retry in ")


@responses.activate
def test_a_stopping_worker_ends_after_the_item_at_hand_and_leaves_the_rest_due(svc, monkeypatch):
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))  # an issue and a sync, due now
    stopping = threading.Event()
    monkeypatch.setattr(outbox, "STOPPING", stopping)
    real_run = outbox.run_claimed

    def run_then_stop(svc_, item):
        stopping.set()  # SIGTERM while the first item runs
        return real_run(svc_, item)

    monkeypatch.setattr(outbox, "run_claimed", run_then_stop)
    left = outbox.work_due(svc)
    assert left.more  # the drain wakes another worker for the rest
    ran = [
        (i.state, i.attempts)
        for kind in ("issue_badge", "sync_verification")
        for i in items(svc, kind)
    ]
    assert sorted(ran) == [("done", 1), ("pending", 0)]
