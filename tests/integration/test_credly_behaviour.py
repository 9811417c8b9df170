"""Badge jobs over real HTTP against the Credly stand-in, which models what docs/credly.md says
Credly does; on SQLite (the embedded default) and PostgreSQL, with the real Redis."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from rq import Queue
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from connectors.errors import PermanentError, TransientError
from gateway.cli.group import SHOWN_ANSWER
from gateway.cli.main import cli
from gateway.platform import clock, metrics
from gateway.store.models import Badge, BadgeTurn, CredlyNotification, OutboxItem
from gateway.usecases import badge_wording, intake
from gateway.usecases.credly_token import check_token, token_state
from gateway.usecases.queries import badge_view
from gateway.usecases.sweep import Scope, sweep
from gateway.usecases.unclaimed import unclaimed_badges
from jobs import credly_notifications, cron
from jobs import reconcile as reconcile_module
from jobs.badges import issue as issue_job
from jobs.badges import notes, turn
from jobs.badges import replace as replace_job
from jobs.badges import revoke as revoke_job
from jobs.cron import run_daily_reconcile, run_daily_sweep
from jobs.engine import context, outbox
from jobs.engine.claim import ClaimedItem
from jobs.engine.retry import Deferred
from jobs.engine.worker import run_worker
from jobs.reconcile import REPAIRS, reconcile
from tests.support.badge_jobs import (
    ENDED,
    badges,
    drain,
    issue_done,
    items,
    retries_due,
    submit,
)
from tests.support.credly_standin import DEFAULT_ORGANIZATION_ID, REPLACE_FIELDS, CredlyStandIn
from tests.support.database import pg_conninfo
from tests.support.events import event, fee, granted, recert, revoked
from tests.support.queue import killed_while_running, work_queued
from tests.support.serving import free_port

TEMPLATE = "tmpl-rma"
PUBLIC = "https://gateway.example.org"
FAILED_AUDIT = {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2026-03-01"}


@pytest.fixture
def standin():
    with CredlyStandIn(per_page=2) as server:  # small pages: every search pages
        yield server


@pytest.fixture
def make_gateway(database_url, make_app, redis_client, redis_url, standin):
    def factory(**settings: object):
        defaults = {
            "database_url": database_url,
            "redis_url": redis_url,
            "credly_api_base": standin.url,
            "credly_organization_id": standin.organization_id,
            "credly_auth_token": standin.token,
            "credly_badge_templates": {"RMA": TEMPLATE},
            "credly_timeout_seconds": 1,
            "job_retry_base_seconds": 1,
        }
        return make_app(**{**defaults, **settings})

    return factory


@pytest.fixture
def app(make_gateway):
    return make_gateway(public_base_url=PUBLIC, time_zone="America/Chicago")


@pytest.fixture
def svc(app):
    return app.extensions["gateway"]


@pytest.fixture
def patient_svc(make_gateway):
    """A gateway waiting 10 s for Credly's answers: for tests that hold a call in flight."""
    app = make_gateway(
        public_base_url=PUBLIC, time_zone="America/Chicago", credly_timeout_seconds=10
    )
    return app.extensions["gateway"]


def calls(standin: CredlyStandIn, operation: str) -> list[dict]:
    return [r for r in standin.requests_seen() if r["operation"] == operation]


def live(standin: CredlyStandIn) -> list[dict]:
    return [b for b in standin.badges() if b["state"] in ("pending", "accepted")]


def settled(svc, kind: str) -> bool:
    return all(i.state in ENDED for i in items(svc, kind))


def grant(svc) -> Badge:
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    return badge


def revoke_by_audit(svc) -> None:
    submit(svc, event("audit.completed", FAILED_AUDIT))
    drain(svc, lambda: settled(svc, "revoke_badge"))


def hand_issued(standin: CredlyStandIn, **fields: object) -> dict:
    """A badge issued in Credly's UI (no issuer_earner_id unless given)."""
    body = {
        "recipient_email": "ada@example.org",
        "issued_to_first_name": "Ada",
        "issued_to_last_name": "Lovelace",
        "badge_template_id": TEMPLATE,
        "issued_at": "2026-03-01 00:00:00 +0000",
        **fields,
    }
    _, answer = standin.issue(body)
    return answer["data"]


# --------------------------------------------------------------------------- 1. issue


def test_issue_sends_no_expiry_as_false_evidence_and_the_day_in_the_time_zone(svc, standin):
    standin.template_expiry = {TEMPLATE: "2026-12-31 00:00:00 +0000"}  # a template default
    badge = grant(svc)
    [sent] = [c["body"] for c in calls(standin, "issue")]
    assert sent["expires_at"] is False
    assert sent["issued_at"] == "2026-03-01 00:00:00 -0600"  # the day in America/Chicago
    assert sent["evidence"] == [
        {"type": "IdEvidence", "title": "Certification number", "description": "CERT-1"},
        {
            "type": "UrlEvidence",
            "title": "Verify this certification",
            "url": f"{PUBLIC}/verify?certification_id=CERT-1",
        },
    ]
    [held] = standin.badges()
    assert held["expires_at"] is None  # not the template's default
    assert (badge.credly_badge_id, badge.state) == (held["id"], "pending")


#: 2026-03-01 in America/Chicago: the issue time the gateway sends for a grant of that day.
ISSUE_DAY = datetime(2026, 3, 1, 6, tzinfo=UTC)


def test_a_grant_dated_today_in_utc_not_yet_begun_in_the_time_zone_is_not_issued_in_the_future(
    svc, standin
):
    clock.set_now(datetime(2026, 3, 1, 3, tzinfo=UTC))  # 2026-02-28 21:00 in America/Chicago
    badge = grant(svc)
    [sent] = [c["body"] for c in calls(standin, "issue")]
    assert sent["issued_at"] == "2026-03-01 00:00:00 +0000"  # the day, begun in UTC: not ahead
    assert badge.issued_at == datetime(2026, 3, 1, tzinfo=UTC)
    clock.set_now(datetime(2026, 3, 1, 7, tzinfo=UTC))  # the day has begun there too
    submit(svc, event("member.updated", {"last_name": "King"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [replaced] = [c["body"] for c in calls(standin, "replace")]
    assert replaced["issued_at"] == "2026-03-01 00:00:00 -0600"


def test_the_standing_shows_the_issue_time_credly_holds(svc, standin):
    badge = grant(svc)
    [issued] = standin.badges()
    assert badge.issued_at == ISSUE_DAY and issued["issued_at"].startswith("2026-03-01T06:00:00")
    assert badge_view(badge)["issued_at"] == ISSUE_DAY.isoformat()


def test_a_badge_issued_again_shows_its_own_issue_time(svc, standin):
    refusal = {"status": 422, "body": {"data": {"message": "invalid recipient"}}}
    standin.queue_faults([refusal])  # the issue job fails for good: a badge is issued by hand
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    hand_issued(standin, issuer_earner_id="CERT-1", issued_at="2026-03-05 00:00:00 +0000")
    reconcile(svc)  # adopted as it is, its issue day included
    [row] = badges(svc)
    assert row.issued_at == datetime(2026, 3, 5, tzinfo=UTC)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))  # unclaimed: revoked and issued again
    [new] = live(standin)
    [row] = badges(svc)
    assert (row.credly_badge_id, row.issued_at) == (new["id"], ISSUE_DAY)


def test_with_badge_expires_the_paid_through_day_and_without_a_public_url_id_evidence_only(
    make_gateway, standin
):
    svc = make_gateway(badge_expires=True).extensions["gateway"]
    grant(svc)
    [sent] = [c["body"] for c in calls(standin, "issue")]
    assert sent["expires_at"] == "2027-03-31 23:59:59 +0000"  # the end of the paid-through day
    assert [e["type"] for e in sent["evidence"]] == ["IdEvidence"]


def test_with_badge_expires_a_renewal_paid_late_replaces_the_expired_badge(make_gateway, standin):
    svc = make_gateway(badge_expires=True).extensions["gateway"]
    clock.set_now(datetime(2025, 3, 20, 12, tzinfo=UTC))
    submit(svc, granted("2024-03-01"))  # paid through 2025-03-31: expired by now
    drain(svc, lambda: issue_done(svc))
    clock.set_now(None)
    submit(svc, fee(2025, "2026-06-01"))
    submit(svc, fee(2026, "2026-06-02"))
    drain(svc, lambda: bool(items(svc, "replace_badge")) and settled(svc, "replace_badge"))
    [shown] = [b for b in standin.badges() if b["state"] in ("pending", "accepted")]
    assert shown["expires_at"].startswith("2027-03-31")
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]


def test_with_badge_expires_an_expired_badge_is_replaced_for_a_new_name_keeping_its_address(
    make_gateway, standin
):
    svc = make_gateway(badge_expires=True).extensions["gateway"]
    clock.set_now(datetime(2026, 3, 20, 12, tzinfo=UTC))
    submit(svc, granted("2025-03-01"))  # paid through 2026-03-31
    drain(svc, lambda: issue_done(svc))
    [issued] = standin.badges()
    assert issued["expires_at"].startswith("2026-03-31")
    clock.set_now(None)  # expired since, unclaimed: the certification is inactive, kept
    submit(svc, event("member.updated", {"last_name": "King", "email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    assert [i.state for i in items(svc, "replace_badge")] == ["done"]
    assert calls(standin, "revoke") == []  # issued again, it would be expired on arrival
    [shown] = [b for b in standin.badges() if b["state"] == "pending"]
    assert (shown["issued_to_last_name"], shown["recipient_email"]) == ("King", "ada@example.org")
    assert shown["expires_at"].startswith("2026-03-31") and shown["id"] != issued["id"]
    [row] = badges(svc)
    assert (row.credly_badge_id, row.note) == (shown["id"], notes.EXPIRED_ADDRESS_NOTE)


def test_with_badge_expires_a_grant_past_its_paid_through_day_is_issued_once_paid(
    make_gateway, standin
):
    svc = make_gateway(badge_expires=True).extensions["gateway"]
    answer = submit(svc, granted("2024-03-01"))  # paid through 2025-03-31: inactive on arrival
    assert answer.body["standing"]["status"] == "inactive"
    drain(svc, lambda: issue_done(svc))
    assert calls(standin, "issue") == [] and standin.badges() == []  # not expired on arrival
    summary = reconcile(svc)  # nor issued by reconciliation, daily
    assert (summary.in_step, summary.repaired["issued"]) == (1, 0)
    assert len(items(svc, "issue_badge")) == 1
    submit(svc, fee(2025, "2026-06-01"))  # paid through 2026-03-31: still past
    submit(svc, fee(2026, "2026-06-02"))  # paid through 2027-03-31: current again
    drain(
        svc,
        lambda: (
            len(items(svc, "issue_badge")) == 2
            and issue_done(svc)
            and settled(svc, "replace_badge")
        ),
    )
    [shown] = live(standin)
    assert shown["expires_at"].startswith("2027-03-31")
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]


@pytest.mark.parametrize("retry_after", ["1000000000000", "99999999999999999999", "9" * 400])
def test_a_429_with_a_huge_retry_after_retries_the_issue_a_day_later(svc, standin, retry_after):
    standin.queue_faults([{"status": 429, "retry_after": retry_after}])
    before = clock.now()
    submit(svc, granted("2026-03-01"))
    work_queued(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "retrying" and "429" in item.last_error
    assert timedelta(days=1) <= item.due_at - before < timedelta(days=1, minutes=1)
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    assert queue.failed_job_registry.count == 0  # the worker's drain job ended well


# --------------------------------------------------------------------------- 2. adoption


def test_timeout_then_duplicate_drill_one_badge_adopted_and_revoked_later(svc, standin):
    standin.queue_faults([{"hold": True}])  # past the 1 s timeout, yet Credly issues it
    submit(svc, granted("2026-03-01"))
    _answer_lost(svc, standin)
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    [item] = items(svc, "issue_badge")
    assert item.state == "done" and item.attempts >= 2
    [held] = standin.badges()
    assert badge.credly_badge_id == held["id"] and badge_view(badge)["state"] == "pending"
    revoke_by_audit(svc)
    assert live(standin) == []
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_a_duplicate_refusal_adopts_the_badge_credly_counts_as_the_same(svc, standin):
    by_hand = hand_issued(standin, recipient_email="ADA@example.org")  # no earner id
    badge = grant(svc)
    assert [c["status"] for c in calls(standin, "issue")] == [422]
    assert badge.credly_badge_id == by_hand["id"] and badge.last_error is None
    assert [i.state for i in items(svc, "issue_badge")] == ["done"]
    assert len(standin.badges()) == 1


def test_a_badge_of_another_certification_at_the_same_address_is_never_adopted(svc, standin):
    theirs = hand_issued(standin, issuer_earner_id="CERT-OTHER")  # same e-mail and template
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert badge.credly_badge_id is None and badge_view(badge)["state"] == "error"
    assert "already has this badge" in badge.last_error
    assert f"certification CERT-OTHER's live badge {theirs['id']}" in badge.last_error
    revoke_by_audit(svc)
    assert [b["id"] for b in live(standin)] == [theirs["id"]]
    assert calls(standin, "revoke") == []


def test_an_issue_credly_refuses_as_a_duplicate_is_reported_not_queued_again_daily(
    svc, standin, tmp_path
):
    hand_issued(standin, issuer_earner_id="CERT-OTHER")  # same e-mail and template
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [row] = badges(svc)
    view = badge_view(row)
    assert view["state"] == "error" and "CERT-OTHER" in view["error"]
    assert view["note"] == (
        "Credly refused to issue this badge to ada@example.org as Ada Lovelace (badge template "
        f"{TEMPLATE}); it is not issued again until one of these changes, or the failed job is "
        "requeued (`gateway jobs requeue`)"
    )
    for _ in range(2):  # daily: not queued again, reported
        summary = reconcile(svc)
        assert summary.refused == 1 and summary.repaired["issued"] == 0
    shown = CliRunner().invoke(cli, ["badges", "reconcile"], env=_cli_env(svc, standin, tmp_path))
    assert "REFUSED BY CREDLY (NOT ISSUED)     1" in shown.stdout
    assert len(items(svc, "issue_badge")) == 1 and len(calls(standin, "issue")) == 1

    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))  # no live badge to replace
    summary = reconcile(svc)  # what it would send changed: tried again
    assert summary.refused == 0 and summary.repaired["issued"] == 1
    drain(svc, lambda: issue_done(svc))
    [row] = badges(svc)
    [mine] = [b for b in live(standin) if b["issuer_earner_id"] == "CERT-1"]
    assert (row.credly_badge_id, row.note, row.refused_request) == (mine["id"], None, None)
    assert mine["recipient_email"] == "ada@new.example.org"


def test_a_recertification_refused_as_a_duplicate_of_the_revoked_badge_is_not_queued_again(
    svc, standin
):
    standin.revoked_is_duplicate = True
    grant(svc)
    revoke_by_audit(svc)
    submit(svc, recert("exam", "2026-10-01", exam_passed_on="2026-09-15"))
    drain(svc, lambda: issue_done(svc))
    summary = reconcile(svc)
    assert summary.refused == 1 and summary.repaired["issued"] == 0
    assert len(calls(standin, "issue")) == 2


def test_a_badge_without_earner_id_another_certification_adopted_is_theirs(svc, standin):
    """A badge issued in Credly's UI at an address two members share: the first certification
    granted adopts it (and brings it up to its member's name); the second's issue, refused as
    its duplicate, neither adopts (and renames) it nor revokes it when the second certification
    is revoked."""
    hand_issued(standin, recipient_email="shared@example.org")  # no earner id
    for cert, first_name in (("ANA-1", "Ana"), ("LUIS-2", "Luis")):
        grant_event = granted("2026-03-01", cert=cert)
        grant_event["data"]["member"].update(email="shared@example.org", first_name=first_name)
        submit(svc, grant_event)
        drain(svc, lambda: settled(svc, "issue_badge") and settled(svc, "replace_badge"))
    rows = {b.certification_id: b for b in badges(svc)}
    anas = rows["ANA-1"].credly_badge_id
    assert [(b["id"], b["issued_to_first_name"]) for b in live(standin)] == [(anas, "Ana")]
    assert rows["LUIS-2"].credly_badge_id is None
    assert badge_view(rows["LUIS-2"])["state"] == "error"
    assert f"certification ANA-1's live badge {anas}" in rows["LUIS-2"].last_error
    revocation = {"reason": "withdrawn", "revoked_on": "2026-04-01"}
    submit(svc, event("certification.revoked", revocation, cert="LUIS-2"))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    assert calls(standin, "revoke") == []
    assert [(b["id"], b["issued_to_first_name"]) for b in live(standin)] == [(anas, "Ana")]


@pytest.mark.parametrize("then", ["new-email", "new-name", "requeued"])
def test_an_email_change_credly_refuses_to_issue_again_is_remembered_as_refused(
    svc, standin, post, standing, tmp_path, then
):
    """The unclaimed badge is revoked and issued again to the member's new e-mail address,
    where another certification's live badge makes Credly refuse it (a 422, nothing to adopt):
    the replace job fails once with Credly's answer, the standing shows `error` with it and the
    note of what was refused, as after an issue job's refusal, and reconciliation sends that
    request no more. A later change of e-mail address or name, or the failed job requeued once
    the other badge is revoked, has it tried once more, by the replace job."""
    theirs = granted("2026-03-01", cert="DUPA")
    theirs["data"]["member"]["email"] = "shared@example.org"
    for body in (theirs, granted("2026-03-01")):
        assert post(body).status_code == 202
    drain(svc, lambda: all_settled(svc))
    assert post(event("member.updated", {"email": "shared@example.org"})).status_code == 202
    drain(svc, lambda: all_settled(svc))
    [failed] = items(svc, "replace_badge")
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert "already has this badge" in failed.last_error  # Credly's answer, kept
    block = standing()["badge"]
    assert (block["state"], block["error"]) == ("error", failed.last_error)
    refused = "Credly refused to issue this badge to shared@example.org as Ada Lovelace ("
    assert block["note"].startswith(refused)
    issued = len(calls(standin, "issue"))
    for _ in range(2):  # daily: reported, not queued again
        summary = reconciled(svc, standin, tmp_path)
        assert (summary["refused"], summary["repaired"]["issued"]) == (1, 0)
    assert len(items(svc, "issue_badge")) == 2 and len(calls(standin, "issue")) == issued

    if then == "requeued":  # the cause dealt with in Credly
        [dupa] = holdings(standin, "DUPA")
        standin.revoke(dupa["id"], {"reason": "issued in error"})
        env = _cli_env(svc, standin, tmp_path)
        assert CliRunner().invoke(cli, ["jobs", "requeue", failed.job_id], env=env).exit_code == 0
    else:
        change = {"email": "ada@new.example.org"} if then == "new-email" else {"last_name": "King"}
        assert post(event("member.updated", change)).status_code == 202
    drain(svc, lambda: all_settled(svc))
    assert len(calls(standin, "issue")) == issued + 1 and len(items(svc, "issue_badge")) == 2
    if then == "new-name":  # still the other certification's address: refused again
        block = standing()["badge"]
        assert block["state"] == "error" and "already has this badge" in block["error"]
        refused = "Credly refused to issue this badge to shared@example.org as Ada King ("
        assert block["note"].startswith(refused)
        assert reconciled(svc, standin, tmp_path)["refused"] == 1
        return
    block = agrees(svc, standin, standing())
    assert block["state"] == "pending" and "note" not in block
    [mine] = holdings(standin)
    email = "ada@new.example.org" if then == "new-email" else "shared@example.org"
    assert mine["recipient_email"] == email
    assert reconciled(svc, standin, tmp_path)["refused"] == 0


def test_an_issue_brought_to_a_new_email_credly_refuses_is_remembered_as_refused(
    svc, standin, monkeypatch
):
    """The member's e-mail changes while the issue call is in flight, to an address where
    another certification's live badge is: the issue job revokes the badge it made and issues it
    again there, Credly refuses that (nothing to adopt), and the refusal is recorded as the
    issue job's own would be."""
    hand_issued(standin, recipient_email="shared@example.org", issuer_earner_id="DUPA")
    submit(svc, granted("2026-03-01"))
    [item] = items(svc, "issue_badge")
    issue_badge = svc.credly.issue_badge

    def changed_meanwhile(request, **kwargs):
        badge = issue_badge(request, **kwargs)
        if request.recipient_email == "ada@example.org":
            submit(svc, event("member.updated", {"email": "shared@example.org"}))
        return badge

    monkeypatch.setattr(svc.credly, "issue_badge", changed_meanwhile)
    with pytest.raises(PermanentError, match="certification DUPA's live badge"):
        issue_job.issue(svc, _claimed(item))
    assert [c["status"] for c in calls(standin, "issue")] == [201, 422]
    [row] = badges(svc)
    assert row.state == "revoked"
    assert row.note.startswith("Credly refused to issue this badge to shared@example.org as Ada")
    summary = reconcile(svc)
    assert summary.refused == 1 and summary.repaired["issued"] == 0


@pytest.mark.parametrize("counted", [False, True], ids=["ended-not-duplicate", "ended-duplicate"])
def test_an_email_change_to_an_address_another_certifications_badge_holds_names_it(
    svc, standin, counted
):
    """The e-mail change revokes the unclaimed badge and issues it again to the new address,
    where the live badge of another certification makes Credly refuse it: the standing names
    that certification, not the revoked badge, whether Credly counts that one or not."""
    standin.revoked_is_duplicate = counted  # docs/credly.md: no source says which
    for cert, email in (("DUPA", "shared@example.org"), ("DUPB", "dupb@example.org")):
        grant_event = granted("2026-03-01", cert=cert)
        grant_event["data"]["member"]["email"] = email
        submit(svc, grant_event)
    drain(svc, lambda: issue_done(svc))
    [theirs] = [b for b in live(standin) if b["issuer_earner_id"] == "DUPA"]
    submit(svc, event("member.updated", {"email": "shared@example.org"}, cert="DUPB"))
    drain(svc, lambda: settled(svc, "replace_badge"))
    assert [i.state for i in items(svc, "replace_badge")] == ["failed"]
    [row] = [b for b in badges(svc) if b.certification_id == "DUPB"]
    view = badge_view(row)
    assert (row.state, view["state"]) == ("revoked", "error")
    assert f"certification DUPA's live badge {theirs['id']}" in view["error"]
    assert "already has this badge" in view["error"]  # Credly's message
    assert "Allow duplicates" not in view["error"] and "ended badges" not in view["error"]
    assert [b["id"] for b in live(standin)] == [theirs["id"]]


@pytest.mark.parametrize("counted", [False, True], ids=["ended-not-duplicate", "ended-duplicate"])
@pytest.mark.parametrize("ended", ["revoked", "expired"])
def test_only_a_revoked_or_expired_badge_on_credly_is_never_adopted(svc, standin, ended, counted):
    standin.revoked_is_duplicate = counted  # docs/credly.md: no source says which
    if ended == "expired":
        old = hand_issued(
            standin, issuer_earner_id="CERT-1", expires_at="2026-04-01 00:00:00 +0000"
        )
    else:
        old = hand_issued(standin, issuer_earner_id="CERT-1")
        standin.revoke(old["id"], {"reason": "test"})
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert badge.credly_badge_id != old["id"]
    if counted:  # Credly refuses a new one: the standing says why, nothing ended is adopted
        assert badge.credly_badge_id is None and badge_view(badge)["state"] == "error"
        assert "already has this badge" in badge.last_error
        assert f"duplicate of the certification's {ended} badge" in badge.last_error
    else:
        [new] = [b for b in standin.badges() if b["id"] != old["id"]]
        assert badge.credly_badge_id == new["id"] and new["state"] == "pending"


# --------------------------------------------------------------------------- 3. revoke


def test_revoke_leaves_no_live_badge_on_any_template_known_or_not(svc, standin):
    grant(svc)
    for n in range(3):  # other members' badges: the searches page past them
        hand_issued(standin, recipient_email=f"m{n}@example.org", issuer_earner_id=f"C-{n}")
    unknown = hand_issued(standin, badge_template_id="tmpl-rma-2027")
    svc.settings = replace(svc.settings, credly_badge_templates={"RMA": "tmpl-rma-2027"})
    revoke_by_audit(svc)
    mine = [b for b in standin.badges() if b["recipient_email"] == "ada@example.org"]
    assert {b["state"] for b in mine} == {"revoked"} and len(mine) == 2
    assert unknown["id"] in {b["id"] for b in mine}
    [reason] = {c["body"]["reason"] for c in calls(standin, "revoke")}
    assert "(AUDIT-FAILED)" in reason
    assert len(live(standin)) == 3  # the others' stay


def test_a_grant_already_lapsed_on_arrival_costs_no_credly_call(svc, standin):
    answer = submit(svc, granted("2010-05-05"))  # a historical member who paid no fees since
    assert answer.status == 202 and answer.body["standing"]["status"] == "lapsed"
    assert answer.body["actions"] == ["sync_verification"]
    drain(svc, lambda: settled(svc, "sync_verification"))
    assert items(svc, "revoke_badge") == [] and standin.requests_seen() == []


def test_a_badge_issued_by_hand_for_a_certification_lapsed_on_arrival_is_shown_revoked(
    svc, standin, post, standing
):
    """The certification never had a badge row; the one reconciliation's revoke job revokes is
    recorded in a row of its period, so the standing shows the badge Credly holds."""
    assert post(granted("2010-05-05")).get_json()["standing"]["status"] == "lapsed"
    by_hand = hand_issued(standin, issuer_earner_id="CERT-1")
    assert reconcile(svc).repaired["revoked"] == 1
    drain(svc, lambda: settled(svc, "revoke_badge") and settled(svc, "sync_verification"))
    assert [(b["id"], b["state"]) for b in standin.badges()] == [(by_hand["id"], "revoked")]
    block = agrees(svc, standin, standing(), kept=False)
    assert (block["credly_badge_id"], block["state"]) == (by_hand["id"], "revoked")
    again = reconcile(svc)
    assert sum(again.repaired.values()) == 0 and again.in_step == 1


LAPSED_SO = (
    "so this badge no longer shows a current certification. It will be issued again when your "
    "certification is restored."
)
REVOKE_REASONS = {
    "fees": "Your certification has lapsed because annual renewal fees went unpaid for more than "
    f"3 years (FEE-LAPSED), {LAPSED_SO}",
    "audit": "Your certification has lapsed because the CCP audit was not passed (AUDIT-FAILED), "
    f"{LAPSED_SO}",
    "revocation": "Your certification has been revoked (CERT-REVOKED), so this badge no longer "
    "shows a current certification. Please contact the certifying body with any questions.",
}


@pytest.mark.parametrize("cause", sorted(REVOKE_REASONS))
def test_the_revoke_reason_names_the_rule_in_the_members_words(svc, standin, cause):
    grant(svc)
    if cause == "fees":  # no event: the sweep finds the lapse
        sweep(svc, Scope(as_of=date(2030, 4, 1)))
        drain(svc, lambda: settled(svc, "revoke_badge"))
    elif cause == "audit":
        revoke_by_audit(svc)
    else:
        submit(svc, revoked("2026-06-01"))
        drain(svc, lambda: settled(svc, "revoke_badge"))
    [reason] = [c["body"]["reason"] for c in calls(standin, "revoke")]
    assert reason == REVOKE_REASONS[cause]


def test_an_address_a_credly_filter_cannot_hold_is_issued_and_revoked(svc, standin):
    grant_event = granted("2026-03-01")
    grant_event["data"]["member"]["email"] = "ada|lovelace@example.org"  # valid, though rare
    submit(svc, grant_event)
    drain(svc, lambda: issue_done(svc))
    revoke_by_audit(svc)
    assert [b["state"] for b in standin.badges()] == ["revoked"]
    assert [i.state for i in items(svc, "revoke_badge")] == ["done"]


@pytest.mark.parametrize("again", [422, 200], ids=["revoked-again-422", "revoked-again-200"])
def test_replaced_out_of_band_drill_the_successor_is_revoked(svc, standin, again):
    standin.revoke_revoked_status = again  # docs/credly.md: no source says which
    badge = grant(svc)
    standin.replace_out_of_band(badge.credly_badge_id, {"issued_to_last_name": "Byron"})
    submit(svc, revoked("2026-06-01"))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    assert live(standin) == []
    [row] = badges(svc)
    assert row.state == "revoked" and row.credly_badge_id != badge.credly_badge_id
    assert [i.state for i in items(svc, "revoke_badge")] == ["done"]
    # run again (a requeue): already revoked counts as done
    [item] = items(svc, "revoke_badge")
    revoke_job.revoke(svc, _claimed(item))
    assert live(standin) == []


def test_a_badge_whose_revoke_failed_for_good_is_not_listed_as_unclaimed(svc, standin):
    grant(svc)
    refusal = {"status": 400, "body": {"data": {"message": "Reason too long"}}}
    standin.queue_faults([refusal], operation="revoke")
    submit(svc, revoked("2026-06-01"))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    assert [i.state for i in items(svc, "revoke_badge")] == ["failed"]
    [row] = badges(svc)
    assert row.state == "pending" and badge_view(row)["state"] == "error"
    with svc.db.sessions() as session:
        assert unclaimed_badges(session, days=0) == []


def test_a_badge_deleted_by_its_earner_counts_as_revoked(svc, standin):
    badge = grant(svc)
    standin.delete_badge(badge.credly_badge_id)
    revoke_by_audit(svc)
    assert [i.state for i in items(svc, "revoke_badge")] == ["done"]
    assert [b.state for b in badges(svc)] == ["deleted"]


def _claimed(item, lease: timedelta = timedelta(minutes=2)) -> ClaimedItem:
    """The item as a worker claims it, under a lease of two minutes (or `lease`: none left, for
    a job still calling Credly when its lease ends, which no longer holds the certification's
    other badge jobs back)."""
    lease_end = clock.now() + lease
    return ClaimedItem(item.id, item.kind, item.certification_id, item.payload, None, 1, lease_end)


#: No lease left (`_claimed`).
LEASE_ENDED = timedelta(0)


def _issue_in_flight(svc, standin, lease: timedelta = timedelta(minutes=2)) -> threading.Thread:
    """A grant's issue job run by hand on a thread (under `lease`), its call to Credly held until
    `standin.release()`."""
    answer = intake.submit_event(svc, granted("2026-03-01"))
    [issue_item] = [i for i in items(svc, "issue_badge") if i.id in answer.outbox_ids]
    standin.queue_faults([{"hold": True}])
    flight = threading.Thread(target=issue_job.issue, args=(svc, _claimed(issue_item, lease)))
    flight.start()
    standin.wait_holding()
    return flight


def test_a_revocation_while_the_issue_call_is_in_flight_waits_for_it(patient_svc, standin):
    svc = patient_svc
    flight = _issue_in_flight(svc, standin)
    intake.submit_event(svc, revoked("2026-06-01"))
    [revoke_item] = items(svc, "revoke_badge")
    with pytest.raises(Deferred):  # the issue job holds the certification's turn
        revoke_job.revoke(svc, _claimed(revoke_item))
    standin.release()
    flight.join()
    revoke_job.revoke(svc, _claimed(revoke_item))  # revokes the badge the issue job recorded
    assert len(standin.badges()) == 1 and live(standin) == []
    assert len(calls(standin, "revoke")) == 1
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_a_revocation_beside_an_issue_call_whose_lease_ended_leaves_no_live_badge(
    patient_svc, standin
):
    svc = patient_svc
    flight = _issue_in_flight(svc, standin, LEASE_ENDED)
    intake.submit_event(svc, revoked("2026-06-01"))
    [revoke_item] = items(svc, "revoke_badge")
    revoke_job.revoke(svc, _claimed(revoke_item))  # finds nothing yet
    standin.release()
    flight.join()
    assert len(standin.badges()) == 1 and live(standin) == []
    assert [b.state for b in badges(svc)] == ["revoked"]


def _issued_late(standin) -> None:
    """Let the held issue call go on and wait until Credly has made its badge."""
    standin.release()
    deadline = time.monotonic() + 10
    while not standin.badges():
        assert time.monotonic() < deadline, "Credly made no badge"
        standin.wait(0.02)


def _answer_lost(svc, standin) -> None:
    """Work the queue until the issue call held in Credly has timed out (its item waiting to be
    tried again), then let Credly issue the badge: the call's answer was lost. The retry then
    comes due, for the test's next drain.

    Meanwhile the retry waits a minute, so that no drain runs it while the call is still held
    however slow the machine (with 1 s, a drain still busy with the grant's other item could,
    and the retry found no badge yet)."""
    with pytest.MonkeyPatch.context() as patient:
        patient.setattr(svc, "settings", replace(svc.settings, job_retry_base_seconds=60))
        drain(
            svc,
            lambda: (
                standin.holding() == 1
                and [i.state for i in items(svc, "issue_badge")] == ["retrying"]
            ),
        )
    _issued_late(standin)
    retries_due(svc)


def test_a_badge_a_lost_attempt_made_after_a_revocation_shows_revoked(svc, standin):
    intake.submit_event(svc, granted("2026-03-01"))  # jobs not run: run them by hand
    [issue_item] = items(svc, "issue_badge")
    standin.queue_faults([{"hold": True}])  # Credly issues it, but after the 1 s timeout
    with pytest.raises(TransientError):
        issue_job.issue(svc, _claimed(issue_item))
    intake.submit_event(svc, revoked("2026-06-01"))
    [revoke_item] = items(svc, "revoke_badge")
    revoke_job.revoke(svc, _claimed(revoke_item))  # finds nothing yet
    _issued_late(standin)
    issue_job.issue(svc, _claimed(issue_item))  # the retry revokes what Credly made
    [held] = standin.badges()
    assert held["state"] == "revoked"
    [row] = badges(svc)
    view = badge_view(row)
    assert (view["state"], view["credly_badge_id"]) == ("revoked", held["id"])


@pytest.mark.parametrize(
    "change", [{"last_name": "King"}, {"email": "ada.king@example.org"}], ids=["name", "email"]
)
def test_details_changed_while_the_issue_call_is_in_flight_reach_the_badge(
    patient_svc, standin, change
):
    svc = patient_svc
    flight = _issue_in_flight(svc, standin)
    intake.submit_event(svc, event("member.updated", change))
    [replace_item] = items(svc, "replace_badge")
    with pytest.raises(Deferred):  # the badge is being issued: its replace waits for it
        replace_job.replace(svc, _claimed(replace_item))
    standin.release()
    flight.join()
    replace_job.replace(svc, _claimed(replace_item))
    [shown] = live(standin)
    field, value = next(iter(change.items()))
    assert shown["issued_to_last_name" if field == "last_name" else "recipient_email"] == value
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]


def test_a_badge_a_lost_attempt_made_is_brought_up_to_date_when_adopted(svc, standin):
    intake.submit_event(svc, granted("2026-03-01"))  # jobs not run: run them by hand
    [issue_item] = items(svc, "issue_badge")
    standin.queue_faults([{"hold": True}])  # Credly issues it, but after the 1 s timeout
    with pytest.raises(TransientError):
        issue_job.issue(svc, _claimed(issue_item))
    _issued_late(standin)
    intake.submit_event(svc, event("member.updated", {"last_name": "King"}))
    [replace_item] = items(svc, "replace_badge")
    before = len(standin.requests_seen())
    replace_job.replace(svc, _claimed(replace_item))  # no badge recorded yet: left to the issue
    assert len(standin.requests_seen()) == before
    issue_job.issue(svc, _claimed(issue_item))  # the retry adopts the lost attempt's badge
    [shown] = live(standin)
    assert shown["issued_to_last_name"] == "King"
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]


# --------------------------------------------------------------------------- 4. replace


def _claim(svc, item, lease: timedelta = timedelta(minutes=2)) -> ClaimedItem:
    """The item claimed as a worker claims it: running, one more attempt, under `lease`."""
    claimed = _claimed(item, lease)
    with svc.db.transaction() as session:
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item.id)
            .values(state="running", attempts=OutboxItem.attempts + 1, due_at=claimed.lease_end)
        )
    return claimed


def _replace_in_flight(svc, standin) -> tuple[OutboxItem, threading.Thread]:
    """The replace job of a change of last name, claimed and run on a thread as a worker's
    thread runs it, its replace call held in Credly until `standin.release()`."""
    submit(svc, event("member.updated", {"last_name": "King"}))  # jobs not run: run them by hand
    [first] = items(svc, "replace_badge")
    standin.queue_faults([{"hold": True}], operation="replace")
    flight = threading.Thread(target=outbox.run_claimed, args=(svc, _claim(svc, first)))
    flight.start()
    standin.wait_holding()
    return first, flight


@pytest.mark.parametrize(
    "second, kind",
    [
        (lambda: event("member.updated", {"last_name": "Queen"}), "replace_badge"),
        (lambda: revoked("2026-06-01"), "revoke_badge"),
    ],
    ids=["replace", "revoke"],
)
def test_a_certifications_badge_jobs_call_credly_one_at_a_time(patient_svc, standin, second, kind):
    svc = patient_svc
    grant(svc)
    before = len(standin.requests_seen())
    first, flight = _replace_in_flight(svc, standin)
    submit(svc, second())
    [waiting] = [i for i in items(svc, kind) if i.id != first.id]
    outbox.run_claimed(svc, _claim(svc, waiting))  # while the first job's call is in flight
    [put_off] = [i for i in items(svc, kind) if i.id == waiting.id]
    standin.release()
    flight.join()
    outbox.run_claimed(svc, _claim(svc, waiting))  # its turn now: it reads what the first recorded
    seen = standin.requests_seen()[before:]
    assert [call for call in seen if call["status"] >= 400] == []  # nothing refused, nor retried
    assert (put_off.state, put_off.attempts) == ("retrying", 0)  # the attempt not counted
    assert f"badge job {first.id} of the certification is calling Credly" in put_off.last_error
    jobs = items(svc, "replace_badge") + items(svc, "revoke_badge")
    assert [i.state for i in jobs] == ["done", "done"]
    replaced = [c for c in seen if c["operation"] == "replace"]
    [row] = badges(svc)
    if kind == "replace_badge":  # the first job brings the badge up to the second change too
        assert [c["body"]["issued_to_last_name"] for c in replaced] == ["King", "Queen"]
        [shown] = live(standin)
        assert shown["issued_to_last_name"] == "Queen"
        assert (row.credly_badge_id, row.state) == (shown["id"], "pending")
    else:
        assert len(replaced) == 1 and live(standin) == []
        [revoke_call] = [c for c in seen if c["operation"] == "revoke"]
        assert revoke_call["path"].endswith(f"/badges/{row.credly_badge_id}/revoke")
        assert row.state == "revoked"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_badge_job_whose_worker_died_mid_call_holds_the_next_back_until_its_lease_ends(
    patient_svc, standin
):
    svc = patient_svc
    badge = grant(svc)
    submit(svc, event("member.updated", {"last_name": "King"}))  # jobs not run: run them by hand
    [first] = items(svc, "replace_badge")
    claimed = _claim(svc, first)

    def worker() -> None:
        svc.db.dispose()  # the forked worker's own connections
        outbox.run_claimed(svc, claimed)

    killed_while_running(worker, svc.credly, "replace_badge")  # it dies calling Credly
    submit(svc, event("member.updated", {"last_name": "Queen"}))
    [second] = [i for i in items(svc, "replace_badge") if i.id != first.id]
    with pytest.raises(Deferred):  # the dead worker's lease has not ended yet
        replace_job.replace(svc, _claimed(second))
    clock.set_now(claimed.lease_end)  # it has now
    replace_job.replace(svc, _claimed(second))
    [shown] = live(standin)
    assert shown["issued_to_last_name"] == "Queen" and shown["id"] != badge.credly_badge_id
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]


def test_a_turn_the_database_did_not_take_back_leaves_the_job_done_until_its_lease_ends(
    svc, standin, monkeypatch
):
    grant(svc)
    submit(svc, event("member.updated", {"last_name": "King"}))  # jobs not run: run them by hand
    [item] = items(svc, "replace_badge")
    write = svc.db.write

    def failing(statement, params=None):
        if statement is turn.END_TURN:
            raise OperationalError("DELETE FROM badge_turns", {}, Exception("connection lost"))
        return write(statement, params)

    monkeypatch.setattr(svc.db, "write", failing)
    claimed = _claim(svc, item)
    outbox.run_claimed(svc, claimed)
    assert [i.state for i in items(svc, "replace_badge")] == ["done"]  # not undone for it
    with svc.db.sessions() as session:
        held = session.get(BadgeTurn, "CERT-1")
        assert (held.outbox_id, held.until) == (item.id, claimed.lease_end)


def test_a_badge_revoked_while_its_replace_call_is_in_flight_is_no_error(patient_svc, standin):
    svc = patient_svc
    badge = grant(svc)
    intake.submit_event(svc, event("member.updated", {"last_name": "King"}))  # not run yet
    [replace_item] = items(svc, "replace_badge")
    standin.queue_faults([{"hold": True}], operation="replace")  # answered after the revoke
    failed: list[Exception] = []

    def replacing() -> None:
        try:
            replace_job.replace(svc, _claimed(replace_item))
        except Exception as exc:
            failed.append(exc)

    flight = threading.Thread(target=replacing)
    flight.start()
    standin.wait_holding()
    standin.set_badge_state(badge.credly_badge_id, "revoked")  # revoked meanwhile
    standin.release()
    flight.join()
    assert [type(exc) for exc in failed] == [TransientError]  # read again, not given up
    replace_job.replace(svc, _claimed(replace_item))  # the retry finds it revoked: done
    [row] = badges(svc)
    assert (row.state, row.last_error) == ("revoked", None)


def test_replace_sends_only_credlys_replace_fields(svc, standin):
    badge = grant(svc)
    submit(svc, event("member.updated", {"last_name": "King"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [sent] = [c["body"] for c in calls(standin, "replace")]
    assert set(sent) <= set(REPLACE_FIELDS) and sent["issued_to_last_name"] == "King"
    [row] = badges(svc)
    [new] = live(standin)
    assert row.credly_badge_id == new["id"] != badge.credly_badge_id


def test_replace_adopts_the_replacement_an_earlier_attempt_made(svc, standin):
    badge = grant(svc)
    submit(svc, event("member.updated", {"last_name": "King"}))
    [item] = items(svc, "replace_badge")
    # an earlier attempt replaced it but its answer was lost: same details the job sends
    standin.replace(badge.credly_badge_id, {"issued_to_last_name": "King"})
    before = len(calls(standin, "replace"))
    replace_job.replace(svc, _claimed(item))
    [new] = live(standin)
    assert len(calls(standin, "replace")) == before + 1  # only the follow-up asking for it
    assert [b.credly_badge_id for b in badges(svc)] == [new["id"]]
    assert len(standin.badges()) == 2


def test_an_email_change_on_a_pending_badge_issues_it_again_to_the_new_address(svc, standin):
    badge = grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [old] = [b for b in standin.badges() if b["id"] == badge.credly_badge_id]
    assert old["state"] == "revoked"
    [revoke_call] = calls(standin, "revoke")
    assert revoke_call["body"]["suppress_revoke_notification_email"] is True
    [new] = live(standin)
    assert new["recipient_email"] == "ada@new.example.org"
    assert [(b.credly_badge_id, b.recipient_email) for b in badges(svc)] == [
        (new["id"], "ada@new.example.org")
    ]
    with svc.db.sessions() as session:
        [listed] = unclaimed_badges(session, days=0)
    assert listed.email == "ada@new.example.org"  # where the new claim e-mail went


def test_each_badge_names_the_member_as_its_own_certification_does(svc, standin):
    """Two certifications of one member, granted with different details: each badge, and the
    unclaimed list, carries its own certification's, whichever grant was recorded last."""
    first = granted("2026-03-01")
    second = granted("2026-04-01", cert="CERT-2")
    second["data"]["member"] = {
        **first["data"]["member"],
        "last_name": "King",
        "email": "ada.king@example.org",
    }
    submit(svc, first)
    submit(svc, second)  # the member's latest details, recorded before the first badge's job
    drain(svc, lambda: len(items(svc, "issue_badge")) == 2 and issue_done(svc))
    held = {b["issuer_earner_id"]: b for b in live(standin)}
    assert (held["CERT-1"]["issued_to_last_name"], held["CERT-1"]["recipient_email"]) == (
        "Lovelace",
        "ada@example.org",
    )
    assert held["CERT-2"]["issued_to_last_name"] == "King"
    with svc.db.sessions() as session:
        listed = {u.certification_id: u for u in unclaimed_badges(session, days=0)}
    assert (listed["CERT-1"].name, listed["CERT-1"].email) == ("Ada Lovelace", "ada@example.org")
    assert (listed["CERT-2"].name, listed["CERT-2"].email) == ("Ada King", "ada.king@example.org")
    submit(svc, event("member.updated", {"first_name": "Augusta"}, cert="CERT-2"))
    drain(svc, lambda: settled(svc, "replace_badge"))
    names = {b["issuer_earner_id"]: b["issued_to_first_name"] for b in live(standin)}
    assert names == {"CERT-1": "Ada", "CERT-2": "Augusta"}  # the event names CERT-2 only


def test_a_details_change_after_a_failed_issue_leaves_the_badge_in_error(svc, standin):
    refusal = {"status": 422, "body": {"data": {"message": "invalid recipient"}}}
    standin.queue_faults([refusal])  # the issue fails for good
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    submit(svc, event("member.updated", {"last_name": "King"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [row] = badges(svc)
    assert row.credly_badge_id is None and "invalid recipient" in row.last_error
    assert badge_view(row)["state"] == "error"
    assert live(standin) == []


def reword_notes(svc, note: str) -> None:
    """Give every badge row another note, as a release that rewords the sentences would."""
    with svc.db.transaction() as session:
        session.execute(update(Badge).values(note=note))


@pytest.mark.parametrize("reworded", [None, "revoked; it goes to the new address next"])
def test_an_email_change_whose_new_issue_failed_issues_it_on_the_next_attempt(
    svc, standin, reworded
):
    """The note only shows that the badge is owed: reworded, it is issued all the same."""
    grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    [item] = items(svc, "replace_badge")
    standin.queue_faults([{"status": 500}])  # the old badge is revoked, the new issue fails
    with pytest.raises(TransientError):
        replace_job.replace(svc, _claimed(item))
    assert live(standin) == []
    [row] = badges(svc)
    assert (row.state, row.note, row.reissue_owed) == ("revoked", notes.REISSUE_NOTE, True)
    if reworded:
        reword_notes(svc, reworded)
    replace_job.replace(svc, _claimed(item))
    [new] = live(standin)
    assert new["recipient_email"] == "ada@new.example.org"
    [row] = badges(svc)
    assert (row.credly_badge_id, row.note, row.reissue_owed) == (new["id"], None, False)


def test_a_reworded_note_still_keeps_a_refused_issue_from_being_sent_again(svc, standin):
    hand_issued(standin, issuer_earner_id="CERT-OTHER")  # same e-mail and template
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [row] = badges(svc)
    assert json.loads(row.refused_request) == {
        "email": "ada@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "badge_template_id": TEMPLATE,
    }
    reword_notes(svc, "Credly said no to this one")
    summary = reconcile(svc)
    assert summary.refused == 1 and summary.repaired["issued"] == 0
    submit(svc, event("member.updated", {"last_name": "King"}))  # another request: sent
    drain(svc, lambda: settled(svc, "replace_badge"))
    summary = reconcile(svc)
    assert summary.refused == 0 and summary.repaired["issued"] == 1


def test_an_email_corrected_back_while_the_new_address_issue_is_retried_issues_the_badge(
    svc, standin
):
    badge = grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    [first] = items(svc, "replace_badge")
    standin.queue_faults([{"status": 429, "retry_after": 10}])  # the old badge is revoked
    with pytest.raises(TransientError):
        replace_job.replace(svc, _claimed(first))
    submit(svc, event("member.updated", {"email": "ada@example.org"}))  # corrected back
    [second] = [i for i in items(svc, "replace_badge") if i.id != first.id]
    replace_job.replace(svc, _claimed(second))
    replace_job.replace(svc, _claimed(first))  # its retry: the badge is issued already
    [shown] = live(standin)
    assert shown["recipient_email"] == "ada@example.org" and shown["id"] != badge.credly_badge_id
    assert [(b.credly_badge_id, b.state, b.note) for b in badges(svc)] == [
        (shown["id"], "pending", None)
    ]
    assert len(calls(standin, "revoke")) == 1


def test_two_quick_email_changes_leave_the_only_live_badge_at_the_last_address(
    svc, standin, monkeypatch
):
    grant(svc)
    submit(svc, event("member.updated", {"email": "ada@one.example.org"}))
    [first] = items(svc, "replace_badge")
    made, answered = threading.Event(), threading.Event()
    issue_badge = svc.credly.issue_badge

    def slow_answer(request, **kwargs):  # Credly makes the badge; its answer comes late
        badge = issue_badge(request, **kwargs)
        if not made.is_set():
            made.set()
            answered.wait(10)
        return badge

    monkeypatch.setattr(svc.credly, "issue_badge", slow_answer)
    # its lease ends while Credly's answer is late: the second job does not wait for it
    flight = threading.Thread(target=replace_job.replace, args=(svc, _claimed(first, LEASE_ENDED)))
    flight.start()  # revokes the old badge, then issues it to the first new address
    assert made.wait(10)
    submit(svc, event("member.updated", {"email": "ada@two.example.org"}))
    [second] = [i for i in items(svc, "replace_badge") if i.id != first.id]
    replace_job.replace(svc, _claimed(second))  # finds the first job's badge, not yet recorded
    [shown] = live(standin)
    assert shown["recipient_email"] == "ada@two.example.org"
    answered.set()
    flight.join()  # the first job's answer, the badge at the first new address, comes last
    assert live(standin) == [shown]
    [row] = badges(svc)
    assert (row.credly_badge_id, row.state, row.note) == (shown["id"], "pending", None)


def test_when_credly_counts_a_revoked_badge_as_a_duplicate_an_email_change_says_why_it_fails(
    svc, standin
):
    standin.revoked_is_duplicate = True  # docs/credly.md: no source says which
    grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    assert [i.state for i in items(svc, "replace_badge")] == ["failed"]
    [held] = standin.badges()
    assert held["state"] == "revoked"
    [row] = badges(svc)  # the revoke is recorded: the badge is not listed as unclaimed
    assert (row.credly_badge_id, row.state) == (held["id"], "revoked")
    view = badge_view(row)  # the refusal is remembered, as an issue job's is
    assert view["state"] == "error" and view["note"].startswith("Credly refused to issue this")
    assert "counts ended badges as duplicates" in view["error"] and TEMPLATE in view["error"]
    with svc.db.sessions() as session:
        assert unclaimed_badges(session, days=0) == []


def test_with_credly_revoked_is_duplicate_an_unclaimed_badge_keeps_its_address(
    make_gateway, standin
):
    standin.revoked_is_duplicate = True
    svc = make_gateway(credly_revoked_is_duplicate=True).extensions["gateway"]
    badge = grant(svc)
    change = {"email": "ada@new.example.org", "last_name": "King"}
    submit(svc, event("member.updated", change))
    drain(svc, lambda: settled(svc, "replace_badge"))
    assert [i.state for i in items(svc, "replace_badge")] == ["done"]
    assert calls(standin, "revoke") == []
    [shown] = live(standin)  # brought up to date by a replace, at its first address
    assert (shown["recipient_email"], shown["issued_to_last_name"]) == ("ada@example.org", "King")
    assert shown["id"] != badge.credly_badge_id
    [row] = badges(svc)
    view = badge_view(row)
    assert (row.credly_badge_id, view["state"]) == (shown["id"], "pending")
    assert view["note"] == notes.KEPT_ADDRESS_NOTE
    with svc.db.sessions() as session:
        [listed] = unclaimed_badges(session, days=0)
    assert (listed.name, listed.email) == ("Ada King", "ada@example.org")  # claimed there


def test_when_credly_counts_a_revoked_badge_as_a_duplicate_a_recertification_says_why_it_fails(
    svc, standin
):
    standin.revoked_is_duplicate = True
    grant(svc)
    revoke_by_audit(svc)  # lapsed: the badge is revoked
    submit(svc, recert("exam", "2026-10-01", exam_passed_on="2026-09-15"))
    drain(svc, lambda: issue_done(svc))
    new = next(b for b in badges(svc) if b.period_start == date(2026, 10, 1))
    assert badge_view(new)["state"] == "error" and new.credly_badge_id is None
    assert "counts ended badges as duplicates" in new.last_error


def test_a_revocation_beside_a_new_address_issue_whose_lease_ended_leaves_no_live_badge(
    patient_svc, standin
):
    svc = patient_svc
    grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    [item] = items(svc, "replace_badge")
    standin.queue_faults([{"hold": True}])  # the new address's issue waits in flight
    flight = threading.Thread(target=replace_job.replace, args=(svc, _claimed(item, LEASE_ENDED)))
    flight.start()
    standin.wait_holding()  # the old badge is revoked, the new one being issued
    intake.submit_event(svc, revoked("2026-06-01"))
    [revoke_item] = items(svc, "revoke_badge")
    revoke_job.revoke(svc, _claimed(revoke_item))  # finds nothing live yet
    standin.release()
    flight.join()
    assert len(standin.badges()) == 2 and live(standin) == []


def test_an_email_change_on_an_accepted_badge_is_the_earners_own_and_ends_done(svc, standin):
    badge = grant(svc)
    standin.set_badge_state(badge.credly_badge_id, "accepted")
    with svc.db.transaction() as session:
        session.query(Badge).update({"state": "accepted"})
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    assert [i.state for i in items(svc, "replace_badge")] == ["done"]
    assert calls(standin, "replace") == [] and calls(standin, "revoke") == []
    [row] = badges(svc)
    view = badge_view(row)
    assert view["state"] == "accepted" and "earner's Credly account" in view["note"]


@pytest.fixture
def post(client, token_for):
    """POST /v1/events."""
    headers = token_for("events:write")
    return lambda body: client.post("/v1/events", json=body, headers=headers)


@pytest.fixture
def standing(client, token_for):
    """GET /v1/certifications/CERT-1."""
    headers = token_for("certifications:read")
    return lambda: client.get("/v1/certifications/CERT-1", headers=headers).get_json()


def badge_jobs_settled(svc) -> bool:
    return all(settled(svc, kind) for kind in ("issue_badge", "replace_badge", "revoke_badge"))


def recertified_while_kept(svc, standin, post) -> dict:
    """Granted 2026-03-01 (its badge issued), recertified on 2026-09-01 while it looked active
    (kept, RECERT-NOT-LAPSED), then the audit failed on 2026-06-01 arrives: the standing goes
    from active to active in a new period. The grant's badge, as Credly holds it now."""
    assert post(granted("2026-03-01")).status_code == 202
    drain(svc, lambda: issue_done(svc))
    [first] = live(standin)
    kept = post(recert("exam", "2026-09-01", exam_passed_on="2026-08-20"))
    assert kept.status_code == 422 and kept.get_json()["errors"][0]["rule"] == "RECERT-NOT-LAPSED"
    answer = post(event("audit.completed", FAILED_AUDIT)).get_json()
    assert (answer["standing"]["status"], answer["standing"]["certified_on"]) == (
        "active",
        "2026-09-01",
    )
    drain(svc, lambda: badge_jobs_settled(svc))
    return next(b for b in standin.badges() if b["id"] == first["id"])


@pytest.mark.on_day("2026-12-04")
@pytest.mark.parametrize("allowed", [False, True], ids=["duplicates-refused", "duplicates-allowed"])
def test_a_kept_recertification_that_comes_to_count_gives_the_badge_its_new_period(
    svc, standin, post, standing, allowed
):
    """The member holds one badge, the new period's, as in date order (revoked at the lapse,
    issued again on recertification): the first one, replaced, not a second one issued."""
    standin.duplicates_allowed = {TEMPLATE} if allowed else set()
    first = recertified_while_kept(svc, standin, post)
    assert len(calls(standin, "issue")) == 1
    [shown] = live(standin)
    assert shown["issued_at"] == "2026-09-01T05:00:00.000Z"  # midnight in Chicago, in UTC
    assert first["state"] == "replaced" and shown["replaces_badge_id"] == first["id"]
    assert {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)} == {
        (date(2026, 3, 1), first["id"], "replaced"),
        (date(2026, 9, 1), shown["id"], "pending"),
    }
    badge = standing()["badge"]
    assert (badge["credly_badge_id"], badge["state"]) == (shown["id"], "pending")
    assert badge["issued_at"] == "2026-09-01T05:00:00+00:00"


@pytest.mark.on_day("2026-12-04")
def test_payments_that_stop_a_recertification_counting_give_the_badge_back_its_first_period(
    svc, standin, post, standing
):
    """Granted 2021-06-03 and lapsed for unpaid fees (no badge), recertified 2026-03-01 (the
    badge issued); then the payments of 2023 and 2022 arrive, kept (a closed period): with the
    second one it had not lapsed by 2026-03-01, the recertification stops counting and the
    standing goes from active to inactive in the first period. The member holds one badge, the
    first period's, as in date order (issued on the grant and kept since)."""
    assert post(granted("2021-06-03")).get_json()["standing"]["status"] == "lapsed"
    assert post(recert("exam", "2026-03-01", exam_passed_on="2026-02-15")).status_code == 202
    drain(svc, lambda: issue_done(svc))
    [recertified] = live(standin)
    assert recertified["issued_at"] == "2026-03-01T06:00:00.000Z"
    for year in (2023, 2022):
        assert post(fee(year, f"{year}-05-01")).status_code == 422  # a closed period: kept
    assert (standing()["status"], standing()["certified_on"]) == ("inactive", "2021-06-03")
    drain(svc, lambda: badge_jobs_settled(svc))
    [shown] = live(standin)
    assert shown["issued_at"] == "2021-06-03T05:00:00.000Z"
    badge = standing()["badge"]
    assert (badge["credly_badge_id"], badge["state"]) == (shown["id"], "pending")
    assert badge["issued_at"] == "2021-06-03T05:00:00+00:00"


@pytest.mark.on_day("2026-12-04")
def test_a_reconciliation_before_the_take_over_leaves_it_to_the_issue_job(svc, standin, post):
    """The take-over's replace fails for good (its issue job failed), then the daily
    reconciliation runs: it does not adopt the other period's badge into the new period's row
    (where its old issue day would stay), but queues the issue job that takes it over."""
    assert post(granted("2026-03-01")).status_code == 202
    drain(svc, lambda: issue_done(svc))
    [first] = live(standin)
    assert post(recert("exam", "2026-09-01", exam_passed_on="2026-08-20")).status_code == 422
    standin.queue_faults([{"status": 422, "body": {"data": {"message": "no"}}}], "replace")
    post(event("audit.completed", FAILED_AUDIT))
    drain(svc, lambda: badge_jobs_settled(svc))
    assert [i.state for i in items(svc, "issue_badge")] == ["done", "failed"]
    summary = reconcile(svc)
    assert summary.repaired["issued"] == 1 and summary.repaired["taken_from_credly"] == 0
    drain(svc, lambda: badge_jobs_settled(svc))
    [shown] = live(standin)
    assert shown["issued_at"] == "2026-09-01T05:00:00.000Z" and shown["id"] != first["id"]
    assert {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)} == {
        (date(2026, 3, 1), first["id"], "replaced"),
        (date(2026, 9, 1), shown["id"], "pending"),
    }


@pytest.mark.on_day("2026-12-04")
def test_a_notification_of_the_take_over_read_before_it_is_recorded_leaves_both_rows_right(
    app, svc, standin, post, monkeypatch
):
    """Credly's notice that the other period's badge was replaced, processed after the replace
    and before the issue job records it: the rows end as if it came after."""
    read = issue_job._read

    def notified_first(svc_, credly_id):
        found = read(svc_, credly_id)
        notice = standin.add_event("badge.state.changed", {"badge": found.raw})
        assert deliver(app, notice).status_code == 200
        with svc.db.sessions() as session:
            row = session.query(OutboxItem).filter_by(kind="credly_notification").one()
        process_notification(svc_, row)
        return found

    monkeypatch.setattr(issue_job, "_read", notified_first)
    first = recertified_while_kept(svc, standin, post)
    [shown] = live(standin)
    assert {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)} == {
        (date(2026, 3, 1), first["id"], "replaced"),
        (date(2026, 9, 1), shown["id"], "pending"),
    }


@dataclass
class _RecordingHeld(ClaimedItem):
    """A claimed item whose job, at its last transaction's end (its writes made, their row
    locks held), sets `reached` and waits for `resume` before recording it done and committing."""

    def __post_init__(self) -> None:
        self.reached, self.resume = threading.Event(), threading.Event()

    def finish(self, db, connection) -> None:
        self.reached.set()
        assert self.resume.wait(10), "the recording was not resumed"
        super().finish(db, connection)


@pytest.mark.on_day("2026-12-04")
def test_a_notification_of_the_take_over_during_its_recording_leaves_both_rows_right(
    app, svc, standin, post
):
    """Credly's notice that the other period's badge was replaced, processed while the issue job
    records the take-over (both rows written, not committed): it waits for that transaction and
    finds the successor on the new period's row, rather than the first row alone, which it would
    move to the successor."""
    if svc.db.is_sqlite:
        pytest.skip("row locks are PostgreSQL's (SQLite's writers queue at BEGIN)")
    assert post(granted("2026-03-01")).status_code == 202
    drain(svc, lambda: issue_done(svc))
    [first] = live(standin)
    assert post(recert("exam", "2026-09-01", exam_passed_on="2026-08-20")).status_code == 422
    post(event("audit.completed", FAILED_AUDIT))  # its jobs run by hand, not by the queue
    [queued] = [i for i in items(svc, "issue_badge") if i.state != "done"]
    held = _RecordingHeld(**vars(_claimed(queued)))
    recording = threading.Thread(target=issue_job.issue, args=(svc, held))
    recording.start()
    assert held.reached.wait(10), "the issue job did not record the take-over"
    replaced = next(b for b in standin.badges() if b["id"] == first["id"])
    notice = standin.add_event("badge.state.changed", {"badge": replaced})
    assert deliver(app, notice).status_code == 200
    [row] = items(svc, "credly_notification")
    notified = threading.Thread(target=process_notification, args=(svc, row))
    notified.start()
    _waiting_on_a_lock(svc)
    held.resume.set()
    recording.join(10)
    notified.join(10)
    [shown] = live(standin)
    assert {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)} == {
        (date(2026, 3, 1), first["id"], "replaced"),
        (date(2026, 9, 1), shown["id"], "pending"),
    }


def _waiting_on_a_lock(svc) -> None:
    """Wait until a session of this PostgreSQL database waits for a lock (10 s at most)."""
    waiting = (  # the activity of this database, read afresh (not the transaction's snapshot)
        "SELECT count(*) FROM pg_stat_activity, pg_stat_clear_snapshot()"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with svc.db.engine.connect() as connection:
        deadline = time.monotonic() + 10
        while not connection.exec_driver_sql(waiting).scalar():
            assert time.monotonic() < deadline, "nothing waits for a lock"
            time.sleep(0.02)


def process_notification(svc, row: OutboxItem) -> None:
    """Run the Credly notification job of outbox item `row` at once."""
    lease = datetime.now(UTC) + timedelta(minutes=5)
    claimed = ClaimedItem(row.id, row.kind, row.certification_id, row.payload, None, 1, lease)
    credly_notifications.process(svc, claimed)


def test_a_details_change_after_a_failed_reissue_leaves_the_badge_in_error(svc, standin):
    """A lapse cured in the same period, Credly counting the revoked badge as a duplicate: the
    issue fails for good, and a later change of details (its replace job tries the issue once
    more, refused again) keeps the error shown."""
    standin.revoked_is_duplicate = True
    clock.set_now(datetime(2026, 3, 20, 12, tzinfo=UTC))
    submit(svc, granted("2022-03-01"))
    drain(svc, lambda: issue_done(svc))
    clock.set_now(datetime(2026, 4, 10, 12, tzinfo=UTC))
    sweep(svc, Scope(as_of=date(2026, 4, 10)))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    submit(svc, fee(2023, "2026-03-15"))  # paid before the lapse, recorded late: no lapse
    drain(svc, lambda: len(items(svc, "issue_badge")) == 2 and settled(svc, "issue_badge"))
    [row] = badges(svc)
    assert badge_view(row)["state"] == "error"
    submit(svc, event("member.updated", {"last_name": "King"}, occurred_at="2026-04-10T12:00:00Z"))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [row] = badges(svc)
    assert badge_view(row)["state"] == "error" and "duplicate" in row.last_error
    assert [c["status"] for c in calls(standin, "issue")] == [201, 422, 422]
    assert row.note.startswith("Credly refused to issue this badge to ada@example.org as Ada King")


# --------------------------------------------------------------------------- 5. notifications


def deliver(app, event: dict, *, org: str | None = None, address: str = "203.0.113.7"):
    """Credly's thin envelope of `event`, posted to the gateway from `address`."""
    envelope = {
        "id": event["id"],
        "organization_id": org or event["organization_id"],
        "event_type": event["event_type"],
        "occurred_at": event["occurred_at"],
    }
    return app.test_client().post(
        "/webhooks/credly", json=envelope, environ_base={"REMOTE_ADDR": address}
    )


def notified(svc) -> bool:
    return settled(svc, "credly_notification")


def test_a_badge_replaced_in_credlys_ui_is_followed_to_its_successor(app, svc, standin):
    """Followed to its successor; one that names the member otherwise is replaced again, with
    the member's details (a successor that names them as they are is left as it is)."""
    badge = grant(svc)
    event = standin.replace_out_of_band(badge.credly_badge_id, {"issued_to_last_name": "Byron"})
    assert deliver(app, event).status_code == 200
    drain(svc, lambda: notified(svc) and settled(svc, "replace_badge"))
    [successor] = live(standin)
    assert successor["issued_to_last_name"] == "Lovelace"
    assert [(b.credly_badge_id, b.state, b.recipient_email) for b in badges(svc)] == [
        (successor["id"], "pending", "ada@example.org")  # the successor's address, as Credly says
    ]
    assert len(items(svc, "replace_badge")) == 1
    same_name = standin.replace_out_of_band(successor["id"], {"issued_to_first_name": "Ada"})
    assert deliver(app, same_name).status_code == 200
    drain(svc, lambda: notified(svc))
    assert len(items(svc, "replace_badge")) == 1
    [latest_one] = live(standin)
    assert [b.credly_badge_id for b in badges(svc)] == [latest_one["id"]]


@pytest.mark.on_day("2026-12-04")
def test_the_replace_that_moved_a_badge_to_a_new_period_changes_no_row_when_notified(
    app, svc, standin, post
):
    first = recertified_while_kept(svc, standin, post)
    before = {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)}
    notice = standin.add_event("badge.state.changed", {"badge": first})  # replaced, by the job
    assert deliver(app, notice).status_code == 200
    drain(svc, lambda: notified(svc))
    with svc.db.sessions() as session:
        [row] = session.query(CredlyNotification).all()
    assert row.status == "processed" and row.result.endswith("as recorded")
    assert {(b.period_start, b.credly_badge_id, b.state) for b in badges(svc)} == before


def test_a_late_notification_about_a_badge_replaced_since_is_closed_at_once(app, svc, standin):
    badge = grant(svc)
    accepted = standin.set_badge_state(badge.credly_badge_id, "accepted")  # not delivered yet
    submit(svc, event("member.updated", {"last_name": "Byron"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [successor] = badges(svc)
    assert successor.credly_badge_id != badge.credly_badge_id
    fetched = len(calls(standin, "event"))
    assert deliver(app, accepted).status_code == 200
    drain(svc, lambda: notified(svc))
    with svc.db.sessions() as session:
        [row] = session.query(CredlyNotification).all()
    assert (row.status, row.result) == (
        "ignored",
        f"superseded: badge {badge.credly_badge_id} was replaced by "
        f"{successor.credly_badge_id} since",
    )
    [item] = items(svc, "credly_notification")
    assert (item.state, item.attempts) == ("done", 1)
    assert len(calls(standin, "event")) == fetched + 1
    [now] = badges(svc)  # nothing of the predecessor's acceptance carried over
    assert (now.credly_badge_id, now.state) == (successor.credly_badge_id, successor.state)


def test_a_badge_deleted_by_its_earner_shows_deleted_is_not_reissued_and_revoke_is_done(
    app, svc, standin
):
    badge = grant(svc)
    assert deliver(app, standin.delete_badge(badge.credly_badge_id)).status_code == 200
    drain(svc, lambda: notified(svc))
    [row] = badges(svc)
    assert badge_view(row)["state"] == "deleted"
    [issue_item] = items(svc, "issue_badge")
    issue_job.issue(svc, _claimed(issue_item))  # the issue job run again: nothing issued
    assert standin.badges() == [] and len(calls(standin, "issue")) == 1
    revoke_by_audit(svc)
    assert [i.state for i in items(svc, "revoke_badge")] == ["done"]
    assert [b.state for b in badges(svc)] == ["deleted"]


def test_a_refused_or_forged_notification_never_blocks_the_genuine_one(app, svc, standin):
    badge = grant(svc)
    accepted = standin.set_badge_state(badge.credly_badge_id, "accepted")  # Credly's own event
    assert deliver(app, accepted, org="someone-else").get_json()["status"] == "refused"
    early = {**accepted, "id": "ev-later"}  # an id Credly does not know (yet): forged
    assert deliver(app, early).get_json()["status"] == "received"
    drain(svc, lambda: notified(svc))
    assert [b.state for b in badges(svc)] == ["pending"]  # neither changed anything
    standin.add_event("badge.state.changed", {"badge": accepted["badge"]}, event_id="ev-later")
    for genuine in (accepted, early):
        answer = deliver(app, genuine)
        assert answer.status_code == 200 and answer.get_json()["duplicate"] is False
    drain(svc, lambda: notified(svc))
    assert [b.state for b in badges(svc)] == ["accepted"]
    with svc.db.sessions() as session:
        assert {n.status for n in session.query(CredlyNotification)} == {"processed"}


def test_an_event_of_another_organisation_is_not_served_under_ours_and_changes_nothing(
    app, svc, standin
):
    badge = grant(svc)
    theirs = standin.add_event(
        "badge.state.changed",
        {"badge": {**standin.badges()[0], "state": "rejected"}},
        organization_id="00000000-0000-0000-0000-000000000009",
    )
    assert deliver(app, theirs, org=standin.organization_id).get_json()["status"] == "received"
    drain(svc, lambda: notified(svc))
    with svc.db.sessions() as session:
        [row] = session.query(CredlyNotification).all()
    assert row.status == "forged"  # Credly does not know it in our organisation
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [
        (badge.credly_badge_id, "pending")
    ]


def test_an_event_of_another_organisation_credly_answers_under_ours_is_refused(app, svc, standin):
    badge = grant(svc)
    other = "00000000-0000-0000-0000-000000000009"
    theirs = standin.add_event(
        "badge.state.changed",
        {"badge": {**standin.badges()[0], "state": "rejected"}},
        organization_id=other,
    )
    standin.queue_faults([{"status": 200, "body": {"data": theirs, "metadata": {}}}], "event")
    assert deliver(app, theirs, org=standin.organization_id).get_json()["status"] == "received"
    drain(svc, lambda: notified(svc))
    with svc.db.sessions() as session:
        [row] = session.query(CredlyNotification).all()
    assert (row.status, row.result) == ("refused", f"the event is another organisation's: {other}")
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [
        (badge.credly_badge_id, "pending")
    ]
    [item] = items(svc, "credly_notification")
    assert (item.state, item.attempts) == ("done", 1)


def _count(outcome: str) -> float:
    return metrics.CREDLY_NOTIFICATIONS.labels(outcome)._value.get()


def forged(n: int) -> dict:
    return {
        "id": f"ev-forged-{n}",
        "organization_id": DEFAULT_ORGANIZATION_ID,
        "event_type": "badge.state.changed",
        "occurred_at": "2026-12-01T00:00:00.000Z",
    }


@pytest.mark.usefixtures("within_one_minute")
def test_webhooks_are_rate_limited_per_address_and_the_flood_is_counted(make_gateway):
    app = make_gateway(credly_webhook_rate_limit="3/minute")
    before = _count("rate_limited")
    answers = [deliver(app, forged(n)).status_code for n in range(5)]
    assert answers == [200, 200, 200, 429, 429]
    assert deliver(app, forged(9), address="198.51.100.2").status_code == 200  # another address
    assert _count("rate_limited") - before == 2


@pytest.mark.usefixtures("within_one_minute")
def test_a_flood_costs_credly_no_more_checks_than_the_bound(make_gateway, standin):
    app = make_gateway(credly_webhook_checks="2/minute")
    svc = app.extensions["gateway"]
    before = _count("over_bound")
    answers = [deliver(app, forged(n), address=f"198.51.100.{n}") for n in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 503, 503, 503]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert _count("over_bound") - before == 3
    drain(svc, lambda: notified(svc))
    assert len(calls(standin, "event")) == 2
    assert deliver(app, forged(0)).status_code == 503  # found forged; checked again only
    assert len(calls(standin, "event")) == 2  # within the bound


@pytest.mark.usefixtures("within_one_minute")
def test_an_address_caught_sending_forged_notifications_cannot_starve_the_genuine_ones(
    make_gateway, standin
):
    app = make_gateway(credly_webhook_checks="5/minute", credly_webhook_forged_checks="1/hour")
    svc = app.extensions["gateway"]
    badge = grant(svc)
    forger = "198.51.100.66"
    assert deliver(app, forged(0), address=forger).status_code == 200  # a shared check
    drain(svc, lambda: notified(svc))  # found forged: the address is caught
    flood = [deliver(app, forged(n), address=forger) for n in range(1, 8)]
    accepted = standin.set_badge_state(badge.credly_badge_id, "accepted")
    answer = deliver(app, accepted)  # from Credly's address: the shared checks are still there
    assert (answer.status_code, answer.get_json()["status"]) == (200, "received")
    assert [a.status_code for a in flood] == [200] + [503] * 6  # its own allowance, then none
    assert int(flood[-1].headers["Retry-After"]) > 60  # the hour's window, not the minute's
    drain(svc, lambda: notified(svc))
    assert [b.state for b in badges(svc)] == ["accepted"]
    for again in (forged(0), forged(1)):  # an id it sent before is no way round its allowance
        assert deliver(app, again, address=forger).status_code == 503
    standin.add_event("badge.state.changed", {"badge": accepted["badge"]}, event_id="ev-forged-1")
    assert deliver(app, forged(1)).get_json()["status"] == "received"  # now Credly's own event
    drain(svc, lambda: notified(svc))
    with svc.db.sessions() as session:
        rows = {n.notification_id: n for n in session.query(CredlyNotification)}
    assert [rows[n].status for n in (accepted["id"], "ev-forged-1")] == ["processed"] * 2
    assert rows["ev-forged-1"].address == "203.0.113.7"  # the delivery checked last
    assert {n.address for n in rows.values() if n.status == "forged"} == {forger}
    clock.set_now(clock.now() + timedelta(hours=1, minutes=1))  # its forged ones grow old:
    assert deliver(app, forged(7), address=forger).status_code == 200  # a shared check again


@pytest.mark.usefixtures("within_one_minute")
def test_the_checks_of_caught_addresses_are_bounded_together_apart_from_the_shared_ones(
    make_gateway, standin
):
    app = make_gateway(credly_webhook_checks="3/minute", credly_webhook_forged_checks="5/hour")
    svc = app.extensions["gateway"]
    forgers = ("198.51.100.1", "198.51.100.2")
    for n, forger in enumerate(forgers):
        assert deliver(app, forged(n), address=forger).status_code == 200  # shared: 2 of 3
    drain(svc, lambda: notified(svc))  # both caught
    flood = [deliver(app, forged(n), address=forgers[n % 2]) for n in range(2, 6)]
    assert [a.status_code for a in flood] == [200, 200, 200, 503]  # 3 for the caught together
    assert deliver(app, forged(9)).get_json()["status"] == "received"  # the shared one left
    drain(svc, lambda: notified(svc))
    assert len(calls(standin, "event")) == 6  # twice CREDLY_WEBHOOK_CHECKS at most


@pytest.mark.usefixtures("within_one_minute")
def test_another_organisations_notifications_are_recorded_and_logged_within_an_allowance(
    make_gateway, caplog
):
    app = make_gateway(credly_webhook_refused="2/hour")
    svc = app.extensions["gateway"]
    caplog.set_level("WARNING", logger="gateway.webhooks")
    answers = [deliver(app, forged(n), org="someone-else").get_json() for n in range(6)]
    assert [a["status"] for a in answers] == ["refused"] * 6  # answered alike: 200, refused
    again = deliver(app, forged(5), org="someone-else", address="198.51.100.2")  # another address
    assert again.get_json() == {"id": "ev-forged-5", "status": "refused", "duplicate": False}
    with svc.db.sessions() as session:
        kept = {(n.notification_id, n.address) for n in session.query(CredlyNotification)}
    assert kept == {
        ("ev-forged-0", "203.0.113.7"),
        ("ev-forged-1", "203.0.113.7"),
        ("ev-forged-5", "198.51.100.2"),
    }
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Credly notification of another organisation refused") == 3
    assert sum("over CREDLY_WEBHOOK_REFUSED" in m for m in messages) == 1  # once for the address


# --------------------------------------------------------------------------- 6. reconcile


def _cli_env(svc, standin, tmp_path) -> dict[str, str]:
    return {
        "DATABASE_URL": svc.settings.database_url,
        "REDIS_URL": svc.settings.redis_url,
        "INSTANCE_PATH": str(tmp_path),
        "CREDLY_API_BASE": standin.url,
        "CREDLY_ORGANIZATION_ID": standin.organization_id,
        "CREDLY_AUTH_TOKEN": standin.token,
        "CREDLY_BADGE_TEMPLATES": f"RMA={TEMPLATE}",
    }


def _by_cert(svc) -> dict[str, Badge]:
    return {b.certification_id: b for b in badges(svc)}


def grant_many(svc, count: int) -> None:
    """Grant C-0, C-1, ... to members of their own addresses, and issue their badges in turn."""
    for n in range(count):
        body = granted("2026-03-01", cert=f"C-{n}")
        body["data"]["member"]["email"] = f"member-{n}@example.org"
        submit(svc, body)
        drain(svc, lambda: issue_done(svc))


def test_reconcile_drill_reports_then_repairs_drift_through_the_jobs(svc, standin, tmp_path):
    grant_many(svc, 4)
    held = {cert: row.credly_badge_id for cert, row in _by_cert(svc).items()}
    # C-1 lapses but its revoke is lost; C-2's badge is revoked in Credly unnoticed;
    # C-3's is replaced in Credly's UI and the notification is lost
    intake.submit_event(svc, event("audit.completed", FAILED_AUDIT, cert="C-1"))
    with svc.db.transaction() as session:
        session.query(OutboxItem).filter_by(kind="revoke_badge").update({"state": "done"})
    standin.revoke(held["C-2"], {"reason": "by hand"})
    standin.replace_out_of_band(held["C-3"], {"issued_to_last_name": "Byron"})

    runner = CliRunner()
    env = _cli_env(svc, standin, tmp_path)
    drift = metrics.CREDLY_DRIFT.labels("revoked")
    counted = drift._value.get()
    dry = runner.invoke(cli, ["badges", "reconcile", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    assert drift._value.get() == counted  # a dry run repairs nothing: /metrics counts no drift
    report = json.loads(dry.stdout)
    assert report["repaired"] == {
        "revoked": 1,
        "issued": 1,
        "renewed": 0,
        "taken_from_credly": 2,
        "duplicates_revoked": 0,
        "updated": 1,  # C-3's successor named Byron: replaced again, as its notification would
    }
    assert report["in_step"] == 1 and report["certifications_checked"] == 4
    assert len(live(standin)) == 3  # C-0, C-1 and C-3's successor: nothing changed

    real = runner.invoke(cli, ["badges", "reconcile"], env=env)
    assert real.exit_code == 0, real.output
    assert drift._value.get() == counted + 1
    assert "REPAIRED (REVOKED)" in real.stdout and "IN STEP" in real.stdout
    assert "certifications: 4 of 4" in real.stderr  # progress lines off a terminal
    drain(svc, lambda: all(settled(svc, kind) for kind in badges_jobs_kinds()))
    live_by_cert = {b["issuer_earner_id"]: b["id"] for b in live(standin)}
    assert {b["issued_to_last_name"] for b in live(standin)} == {"Lovelace"}
    assert set(live_by_cert) == {"C-0", "C-2", "C-3"}  # C-1 revoked, C-2 issued again
    rows = _by_cert(svc)
    assert rows["C-3"].credly_badge_id == live_by_cert["C-3"] != held["C-3"]
    assert rows["C-2"].credly_badge_id == live_by_cert["C-2"] != held["C-2"]

    again = runner.invoke(cli, ["badges", "reconcile", "--json"], env=env)
    summary = json.loads(again.stdout)
    assert summary["repaired"] == dict.fromkeys(REPAIRS, 0)
    assert summary["in_step"] == 4


def _failed_listed(svc, standin, tmp_path) -> list[str]:
    """The job ids `gateway jobs failed` lists."""
    env = _cli_env(svc, standin, tmp_path)
    listed = CliRunner().invoke(cli, ["jobs", "failed", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    return [row["job_id"] for row in json.loads(listed.stdout)]


def test_a_failed_issue_that_reconciliations_repair_issued_is_listed_no_more(
    svc, standin, tmp_path
):
    standin.queue_faults([{"status": 400, "body": {"data": {"message": "try later"}}}])
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [failed] = items(svc, "issue_badge")
    assert _failed_listed(svc, standin, tmp_path) == [failed.job_id]

    summary = reconcile(svc)
    assert summary.repaired["issued"] == 1 and summary.superseded == 0
    drain(svc, lambda: issue_done(svc))
    states = {i.id: i.state for i in items(svc, "issue_badge")}
    assert [states[i] for i in sorted(states)] == ["superseded", "done"]
    assert _failed_listed(svc, standin, tmp_path) == []
    [row] = badges(svc)
    assert row.credly_badge_id == live(standin)[0]["id"] and "error" not in badge_view(row)
    env = _cli_env(svc, standin, tmp_path)
    requeued = CliRunner().invoke(cli, ["jobs", "requeue", failed.job_id], env=env)
    assert requeued.exit_code == 1  # not a failed job any more: nothing to requeue
    assert len(calls(standin, "issue")) == 2


def test_a_failed_revoke_of_a_badge_found_in_step_is_listed_no_more(svc, standin, tmp_path):
    grant(svc)
    standin.queue_faults([{"status": 400, "body": {"data": {"message": "no"}}}], "revoke")
    submit(svc, revoked("2026-06-01"))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    [failed] = items(svc, "revoke_badge")
    assert _failed_listed(svc, standin, tmp_path) == [failed.job_id]
    [held] = live(standin)
    standin.revoke(held["id"], {"reason": "revoked by hand"})  # an operator did it in Credly

    assert reconcile(svc, dry_run=True).superseded == 1
    assert _failed_listed(svc, standin, tmp_path) == [failed.job_id]  # a dry run changes nothing
    summary = reconcile(svc)
    assert summary.superseded == 1 and summary.repaired["revoked"] == 0
    assert [i.state for i in items(svc, "revoke_badge")] == ["superseded"]
    assert _failed_listed(svc, standin, tmp_path) == []
    [row] = badges(svc)
    assert row.state == "revoked" and badge_view(row)["state"] == "revoked"


@pytest.mark.parametrize("state", ["pending", "accepted"])
def test_a_failed_issue_whose_badge_reconcile_adopts_naming_the_member_is_listed_no_more(
    svc, standin, tmp_path, state
):
    standin.queue_faults([{"status": 400, "body": {"data": {"message": "no"}}}])
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    [failed] = items(svc, "issue_badge")
    assert _failed_listed(svc, standin, tmp_path) == [failed.job_id]
    by_hand = hand_issued(standin, issuer_earner_id="CERT-1")  # names the member as they are
    if state == "accepted":
        standin.set_badge_state(by_hand["id"], "accepted")  # no notification reaches the gateway

    assert reconcile(svc, dry_run=True).superseded == 1
    summary = reconcile(svc)
    assert summary.repaired["taken_from_credly"] == 1 and summary.superseded == 1
    assert sum(summary.repaired.values()) == 1
    assert [i.state for i in items(svc, "issue_badge")] == ["superseded"]
    assert _failed_listed(svc, standin, tmp_path) == []
    [row] = badges(svc)
    assert (row.credly_badge_id, badge_view(row)["state"]) == (by_hand["id"], state)
    again = reconcile(svc)  # the first run left nothing to do
    assert sum(again.repaired.values()) == 0 and again.superseded == 0 and again.in_step == 1


def test_a_failed_replace_stays_listed_while_the_badge_names_the_member_otherwise(
    svc, standin, tmp_path
):
    grant(svc)
    standin.queue_faults([{"status": 400, "body": {"data": {"message": "no"}}}], "replace")
    submit(svc, event("member.updated", {"last_name": "King"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    [failed] = items(svc, "replace_badge")
    assert failed.state == "failed"

    summary = reconcile(svc)
    assert summary.in_step == 1 and summary.superseded == 0
    assert _failed_listed(svc, standin, tmp_path) == [failed.job_id]
    [row] = badges(svc)
    assert badge_view(row)["state"] == "error"


@pytest.mark.parametrize("allowed", [False, True], ids=["duplicates-refused", "duplicates-allowed"])
def test_reconcile_adopts_the_live_badge_of_a_certification_whose_badge_row_is_missing(
    svc, standin, allowed
):
    standin.duplicates_allowed = {TEMPLATE} if allowed else set()
    badge = grant(svc)
    with svc.db.transaction() as session:  # the row is lost (a restored backup, say)
        session.query(Badge).delete()
    issued = len(calls(standin, "issue"))
    for dry_run in (True, False):
        summary = reconcile(svc, dry_run=dry_run)
        assert (summary.repaired["taken_from_credly"], summary.repaired["issued"]) == (1, 0)
        assert sum(summary.repaired.values()) == 1
    assert [i.kind for i in items(svc, "issue_badge")] == ["issue_badge"]  # the grant's only
    [row] = badges(svc)
    assert (row.credly_badge_id, row.state) == (badge.credly_badge_id, "pending")
    assert row.issued_at is not None and row.period_start == date(2026, 3, 1)
    again = reconcile(svc)
    assert sum(again.repaired.values()) == 0 and again.in_step == 1
    assert len(calls(standin, "issue")) == issued and len(live(standin)) == 1


def test_reconcile_brings_a_badge_issued_by_hand_with_another_name_up_to_date(svc, standin):
    refusal = {"status": 422, "body": {"data": {"message": "invalid recipient"}}}
    standin.queue_faults([refusal])  # the issue job fails for good
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))
    by_hand = hand_issued(standin, issuer_earner_id="CERT-1", issued_to_last_name="Wrong Name")
    summary = reconcile(svc)
    assert (summary.repaired["taken_from_credly"], summary.repaired["updated"]) == (1, 1)
    [row] = badges(svc)
    assert row.credly_badge_id == by_hand["id"] and row.last_error is None
    assert row.issued_at == datetime(2026, 3, 1, tzinfo=UTC)  # Credly's
    drain(svc, lambda: settled(svc, "replace_badge"))
    [shown] = live(standin)
    assert shown["issued_to_last_name"] == "Lovelace" and shown["id"] != by_hand["id"]
    assert [b.credly_badge_id for b in badges(svc)] == [shown["id"]]
    assert sum(reconcile(svc).repaired.values()) == 0


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits of reconciliations between the tries of a Credly read (recorded, not slept)."""
    recorded: list[float] = []
    monkeypatch.setattr(reconcile_module, "sleep", recorded.append)
    return recorded


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_reconcile_reads_a_page_again_after_a_429_honouring_retry_after(
    svc, standin, tmp_path, waits, dry_run
):
    badge = grant(svc)
    standin.revoke(badge.credly_badge_id, {"reason": "by hand"})  # drift, unnoticed
    for n in range(3):  # more pages: the 429 comes while paging
        hand_issued(standin, recipient_email=f"m{n}@example.org", issuer_earner_id=f"C-{n}")
    first_page_as_usual = {"delay": 0}
    standin.queue_faults([first_page_as_usual, {"status": 429, "retry_after": 30}], "list")
    args = ["badges", "reconcile", "--json"] + (["--dry-run"] if dry_run else [])
    answer = CliRunner().invoke(cli, args, env=_cli_env(svc, standin, tmp_path))
    assert answer.exit_code == 0, answer.output
    report = json.loads(answer.stdout)
    assert report["badges_checked"] == 4 and report["repaired"]["taken_from_credly"] == 1
    assert len(waits) == 1 and waits[0] >= 30
    assert [c["status"] for c in calls(standin, "list")] == [200, 429, 200]  # two pages


def test_reconcile_still_failing_after_its_tries_stops_with_one_line(svc, standin, tmp_path, waits):
    standin.queue_faults([{"status": 503}] * reconcile_module.READ_TRIES, operation="list")
    answer = CliRunner().invoke(cli, ["badges", "reconcile"], env=_cli_env(svc, standin, tmp_path))
    assert answer.exit_code == 1
    assert answer.output.startswith("Error: reconciliation stopped: Credly GET")
    assert len(answer.output.strip().splitlines()) == 1 and "Traceback" not in answer.output
    assert len(waits) == reconcile_module.READ_TRIES - 1


@pytest.mark.parametrize("message", ["no such filter", "a long\nanswer " * 100])
def test_reconcile_stopped_by_credly_shows_its_answer_in_one_bounded_line(
    svc, standin, tmp_path, message
):
    """Credly's error body says why (the badge jobs keep it too); a long one is cut."""
    refusal = {"data": {"message": message}}
    standin.queue_faults([{"status": 400, "body": refusal}], operation="list")
    answer = CliRunner().invoke(cli, ["badges", "reconcile"], env=_cli_env(svc, standin, tmp_path))
    assert answer.exit_code == 1
    [line] = answer.output.splitlines()
    assert line.startswith("Error: reconciliation stopped: Credly GET")
    shown = line.split(" answered 400 ", 1)[1]
    if len(message) < 100:
        assert shown == json.dumps(refusal)
    else:
        assert shown.startswith('{"data": {"message": "a long\\nanswer a long')
        assert len(line) == len("Error: reconciliation stopped: ") + SHOWN_ANSWER
        assert line.endswith("…")


def test_reconcile_with_credly_unreachable_stops_with_one_line(svc, standin, tmp_path, waits):
    env = {
        **_cli_env(svc, standin, tmp_path),
        "CREDLY_API_BASE": f"http://127.0.0.1:{free_port()}/v1",
    }
    answer = CliRunner().invoke(cli, ["badges", "reconcile", "--dry-run"], env=env)
    assert answer.exit_code == 1
    assert answer.output.startswith("Error: reconciliation stopped: Credly GET")
    assert len(answer.output.strip().splitlines()) == 1
    assert len(waits) == reconcile_module.READ_TRIES - 1


def test_a_daily_reconciliation_that_fails_leaves_the_day_to_a_later_run(
    svc, standin, waits, caplog
):
    badge = grant(svc)
    standin.revoke(badge.credly_badge_id, {"reason": "by hand"})  # drift, unnoticed
    standin.queue_faults([{"status": 429}] * reconcile_module.READ_TRIES, operation="list")
    run_daily_sweep()
    work_queued(svc)  # the reconciliation fails: RQ runs it again later
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    [job_id] = queue.scheduled_job_registry.get_job_ids()
    assert queue.fetch_job(job_id).func is run_daily_reconcile
    assert "reconciliation failed; it is tried again later" in caplog.text
    later = run_daily_reconcile()  # the day is not taken
    assert later["repaired"]["taken_from_credly"] == 1
    assert run_daily_reconcile() == {"skipped": True}


def drift_unnoticed(svc, standin) -> None:
    """A certification's badge revoked in Credly by hand: the reconciliation takes that state."""
    badge = grant(svc)
    standin.revoke(badge.credly_badge_id, {"reason": "by hand"})


def test_a_daily_reconciliation_ended_by_the_worker_leaves_the_day_open(svc, standin, monkeypatch):
    """A worker's second SIGTERM ends the job at hand with SystemExit; RQ runs it again later."""
    drift_unnoticed(svc, standin)

    def ended(*_args, **_kwargs):
        raise SystemExit(1)

    with monkeypatch.context() as ending:
        ending.setattr(cron, "reconcile", ended)
        with pytest.raises(SystemExit):
            run_daily_reconcile()
    assert run_daily_reconcile()["repaired"]["taken_from_credly"] == 1
    assert run_daily_reconcile() == {"skipped": True}


def test_a_daily_reconciliation_killed_leaves_the_day_open_once_its_lock_expires(
    svc, standin, monkeypatch
):
    drift_unnoticed(svc, standin)
    monkeypatch.setattr(cron, "LOCK_SECONDS", 0.3)
    killed_while_running(run_daily_reconcile, cron, "reconcile")
    time.sleep(0.4)  # no longer renewed, its lock expires
    assert run_daily_reconcile()["repaired"]["taken_from_credly"] == 1
    assert run_daily_reconcile() == {"skipped": True}


def test_one_daily_reconciliation_runs_at_a_time_and_its_lock_outlasts_its_expiry(
    svc, standin, monkeypatch
):
    drift_unnoticed(svc, standin)
    monkeypatch.setattr(cron, "LOCK_SECONDS", 1.5)  # renewed every 0.5 s
    reconcile_itself, others = cron.reconcile, []

    def slow(*args, **kwargs):
        time.sleep(2)  # longer than the lock's expiry: renewed meanwhile
        others.append(run_daily_reconcile())
        return reconcile_itself(*args, **kwargs)

    monkeypatch.setattr(cron, "reconcile", slow)
    assert run_daily_reconcile()["repaired"]["taken_from_credly"] == 1
    assert others == [{"skipped": True}]


def test_a_daily_reconciliation_ends_early_when_the_worker_stops_and_leaves_the_day_open(
    svc, standin, monkeypatch
):
    drift_unnoticed(svc, standin)
    stopping = threading.Event()
    monkeypatch.setattr(outbox, "STOPPING", stopping)
    first_pass = reconcile_module._Run.credly_pass

    def then_stopping(run):
        first_pass(run)
        stopping.set()  # a warm stop (SIGTERM) during the first pass

    with monkeypatch.context() as stopped:
        stopped.setattr(reconcile_module._Run, "credly_pass", then_stopping)
        with pytest.raises(reconcile_module.Stopped):
            run_daily_reconcile()
    assert [b.state for b in badges(svc)] != ["revoked"]  # the second pass did not run
    stopping.clear()  # the worker that runs it again
    assert run_daily_reconcile()["repaired"]["taken_from_credly"] == 1
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_reconcile_renews_an_expired_badge_whose_renewal_was_missed_and_leaves_one_due_to_expire(
    make_gateway, standin
):
    svc = make_gateway(badge_expires=True).extensions["gateway"]
    clock.set_now(datetime(2025, 3, 20, 12, tzinfo=UTC))
    for cert in ("PAID", "UNPAID"):  # granted 2024-03-01: their badges expired 2025-03-31
        submit(svc, granted("2024-03-01", cert=cert))
    drain(svc, lambda: issue_done(svc))
    clock.set_now(None)
    for year, paid_on in ((2025, "2026-06-01"), (2026, "2026-06-02")):
        intake.submit_event(svc, event("renewal.fee_paid", fee(year, paid_on)["data"], cert="PAID"))
    with svc.db.transaction() as session:  # the renewal's replace job is lost
        session.query(OutboxItem).filter_by(kind="replace_badge").update({"state": "done"})
    summary = reconcile(svc)
    assert (summary.repaired["renewed"], summary.repaired["issued"]) == (1, 0)
    drain(svc, lambda: settled(svc, "replace_badge"))
    shown = {b["issuer_earner_id"]: b["expires_at"] for b in live(standin)}
    assert shown["PAID"].startswith("2027-03-31")
    assert shown["UNPAID"].startswith("2025-03-31")  # inactive: its badge stays expired
    assert reconcile(svc).repaired == Counter()


@pytest.mark.parametrize("successor_deleted", [False, True], ids=["successor-live", "deleted"])
def test_a_dry_run_reconciliation_sends_only_reads_leaving_a_successor_unknown(
    svc, standin, successor_deleted
):
    """Credly names a replaced badge's successor only when asked to replace it again (a write):
    a dry run reports it unknown; the real run follows it."""
    badge = grant(svc)
    standin.replace_out_of_band(badge.credly_badge_id, {"issued_to_last_name": "Byron"})
    [successor] = live(standin)
    if successor_deleted:
        standin.delete_badge(successor["id"])
    before = len(standin.requests_seen())
    dry = reconcile(svc, dry_run=True)
    assert {r["method"] for r in standin.requests_seen()[before:]} == {"GET"}
    assert dry.as_dict()["successors_unknown"] == 1
    taken = 0 if successor_deleted else 1  # a live successor is adopted from Credly's list
    # and, naming the member otherwise, replaced again
    assert dry.repaired == Counter({"taken_from_credly": taken, "updated": taken}) - Counter()
    assert [b.credly_badge_id for b in badges(svc)] == [badge.credly_badge_id]
    real = reconcile(svc)
    assert real.as_dict()["successors_unknown"] == 0 and real.repaired["issued"] == 0
    [row] = badges(svc)
    if successor_deleted:
        assert (row.credly_badge_id, row.state) == (badge.credly_badge_id, "deleted")
    else:
        assert (row.credly_badge_id, row.state) == (successor["id"], "pending")
        assert row.recipient_email == successor["recipient_email"]


def test_reconcile_records_the_address_of_a_badge_recorded_before_addresses_were_kept(
    make_gateway, standin
):
    """The unclaimed list then gives the address the claim e-mail went to: with
    CREDLY_REVOKED_IS_DUPLICATE, the badge's first one after the member changed e-mail."""
    standin.revoked_is_duplicate = True
    svc = make_gateway(credly_revoked_is_duplicate=True).extensions["gateway"]
    grant(svc)
    submit(svc, event("member.updated", {"email": "ada@new.example.org"}))
    drain(svc, lambda: settled(svc, "replace_badge"))
    with svc.db.transaction() as session:  # as a badge recorded before addresses were kept
        session.query(Badge).update({"recipient_email": None})
    reconcile(svc)
    [row] = badges(svc)
    assert row.recipient_email == "ada@example.org"
    with svc.db.sessions() as session:
        [listed] = unclaimed_badges(session, days=0)
    assert listed.email == "ada@example.org"


def test_reconcile_leaves_a_badge_its_earner_deleted_and_can_check_one_certification(svc, standin):
    badge = grant(svc)
    standin.delete_badge(badge.credly_badge_id)
    summary = reconcile(svc, certification_id="CERT-1")
    assert summary.repaired["taken_from_credly"] == 1 and summary.repaired["issued"] == 0
    assert summary.in_step == 0  # repaired, so not counted in step as well
    assert [b.state for b in badges(svc)] == ["deleted"]
    assert reconcile(svc, certification_id="CERT-1").in_step == 1


def test_reconcile_opens_no_transaction_for_certifications_in_step_as_their_batch_read_them(
    svc, standin, monkeypatch
):
    """Nothing live on Credly, none called for: a revoked badge, one its earner deleted, a grant
    lapsed on arrival (no badge). Each is counted in step from its batch's read alone."""
    revoked_badge = grant(svc)
    revoke_by_audit(svc)
    other = granted("2026-03-01", cert="CERT-2")
    other["data"]["member"]["email"] = "grace@example.org"
    submit(svc, other)
    drain(svc, lambda: issue_done(svc))
    [deleted_badge] = [b for b in badges(svc) if b.certification_id == "CERT-2"]
    standin.delete_badge(deleted_badge.credly_badge_id)
    reconcile(svc, certification_id="CERT-2")  # takes the deletion from Credly
    submit(svc, granted("2010-03-01", cert="CERT-3"))  # lapsed long ago: no badge
    assert {b.credly_badge_id: b.state for b in badges(svc)} == {
        revoked_badge.credly_badge_id: "revoked",
        deleted_badge.credly_badge_id: "deleted",
    }
    transactions = []
    real_transaction = svc.db.transaction
    monkeypatch.setattr(svc.db, "transaction", lambda: transactions.append(1) or real_transaction())
    summary = reconcile(svc)
    assert (summary.certifications_checked, summary.in_step, transactions) == (3, 3, [])
    assert not any(summary.repaired.values())


@pytest.mark.parametrize("batch", [reconcile_module.BATCH, 1], ids=["one-batch", "apart"])
def test_reconcile_revokes_a_duplicate_a_template_that_allows_them_let_through(
    svc, standin, monkeypatch, batch
):
    # "apart": each Credly badge in a batch of its own, so the kept one is read from Credly
    monkeypatch.setattr(reconcile_module, "BATCH", batch)
    standin.duplicates_allowed = {TEMPLATE}  # docs/credly.md, "Duplicates"
    by_hand = hand_issued(standin, issuer_earner_id="CERT-1")
    badge = grant(svc)  # no refusal: Credly now holds two live badges of CERT-1
    assert badge.credly_badge_id != by_hand["id"]
    assert {b["id"] for b in live(standin)} == {badge.credly_badge_id, by_hand["id"]}

    summary = reconcile(svc)
    assert summary.repaired["duplicates_revoked"] == 1
    assert summary.repaired["taken_from_credly"] == summary.repaired["revoked"] == 0
    drain(svc, lambda: settled(svc, "revoke_duplicate"))
    assert [b["id"] for b in live(standin)] == [badge.credly_badge_id]
    [revoke_call] = calls(standin, "revoke")
    assert by_hand["id"] in revoke_call["path"]
    assert revoke_call["body"]["suppress_revoke_notification_email"] is True
    assert revoke_call["body"]["reason"] == badge_wording.DUPLICATE_REASON
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [
        (badge.credly_badge_id, "pending")
    ]
    again = reconcile(svc)
    assert sum(again.repaired.values()) == 0 and again.in_step == 1


def test_a_duplicate_revoke_that_fails_for_good_leaves_the_kept_badge_unmarked(svc, standin):
    standin.duplicates_allowed = {TEMPLATE}
    by_hand = hand_issued(standin, issuer_earner_id="CERT-1")
    badge = grant(svc)
    refusal = {"status": 422, "body": {"data": {"message": "cannot revoke"}}}
    standin.queue_faults([refusal], operation="revoke")  # refused for good
    reconcile(svc)
    drain(svc, lambda: settled(svc, "revoke_duplicate"))
    [item] = items(svc, "revoke_duplicate")
    assert item.state == "failed" and "cannot revoke" in item.last_error
    assert {b["id"] for b in live(standin)} == {badge.credly_badge_id, by_hand["id"]}
    [row] = badges(svc)
    assert row.last_error is None and badge_view(row)["state"] == "pending"


@pytest.mark.parametrize("recorded", ["deleted-unnoticed", "live-unclaimed"])
def test_reconcile_keeps_the_badge_the_member_accepted(svc, standin, recorded):
    """The badge the member claimed (and may have shared) stays, recorded; the other live one is
    revoked as a duplicate: one made by hand while the recorded badge is gone (deleted, its
    notification lost), or the recorded badge itself, never claimed."""
    standin.duplicates_allowed = {TEMPLATE}
    badge = grant(svc)
    if recorded == "deleted-unnoticed":
        standin.delete_badge(badge.credly_badge_id)
        duplicate = hand_issued(standin, issuer_earner_id="CERT-1")["id"]
    else:
        duplicate = badge.credly_badge_id
    accepted = hand_issued(standin, issuer_earner_id="CERT-1")
    standin.set_badge_state(accepted["id"], "accepted")
    summary = reconcile(svc)
    assert summary.repaired["duplicates_revoked"] == summary.repaired["taken_from_credly"] == 1
    drain(svc, lambda: settled(svc, "revoke_duplicate"))
    assert [b["id"] for b in live(standin)] == [accepted["id"]]
    [revoke_call] = calls(standin, "revoke")
    assert duplicate in revoke_call["path"]
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [(accepted["id"], "accepted")]
    again = reconcile(svc)
    assert sum(again.repaired.values()) == 0 and again.in_step == 1


def test_a_duplicate_revoke_leaves_the_badge_that_became_the_recorded_one(svc, standin):
    badge = grant(svc)
    with svc.db.transaction() as session:
        session.add(
            OutboxItem(
                certification_id="CERT-1",
                kind="revoke_duplicate",
                payload={"credly_badge_id": badge.credly_badge_id, "period_start": "2026-03-01"},
            )
        )
    [item] = items(svc, "revoke_duplicate")
    revoke_job.revoke_duplicate(svc, _claimed(item))
    assert calls(standin, "revoke") == []
    assert [b["id"] for b in live(standin)] == [badge.credly_badge_id]


# --------------------------------------------------------------------------- 7. token


def test_a_refused_token_pauses_credly_jobs_until_a_working_one_is_configured(
    app, make_gateway, svc, standin, monkeypatch
):
    standin.token = "rotated"  # the configured token no longer works: 401
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: all(i.state == "retrying" for i in items(svc, "issue_badge")))
    [item] = items(svc, "issue_badge")
    assert item.attempts == 0 and "waiting for a working Credly token" in item.last_error
    assert item.due_at > datetime.now(UTC)
    ready = app.test_client().get("/readyz").get_json()
    assert "401" in ready["credly"]["paused"]
    scraped = app.test_client().get("/metrics").get_data(as_text=True)
    assert "gateway_credly_paused 1.0" in scraped
    seen = len(standin.requests_seen())
    with svc.db.transaction() as session:  # due again: still paused, Credly is not asked
        session.query(OutboxItem).update({"due_at": datetime.now(UTC)})
    outbox.work_due(svc)
    [item] = items(svc, "issue_badge")
    assert (item.state, item.attempts) == ("retrying", 0)
    assert len(standin.requests_seen()) == seen

    working = make_gateway(credly_auth_token="rotated").extensions["gateway"]
    monkeypatch.setattr(context, "_services", context._services)  # run_worker sets it
    run_worker(working, burst=True, with_scheduler=False, with_cron=False)  # started with it
    [item] = items(working, "issue_badge")
    assert item.state == "done" and len(live(standin)) == 1
    assert (
        make_gateway(credly_auth_token="rotated")
        .test_client()
        .get("/readyz")
        .get_json()["credly"]["paused"]
        is None
    )


def test_a_wrong_organisation_id_pauses_the_credly_jobs_and_takes_no_badge_for_deleted(
    app, make_gateway, svc, standin, monkeypatch
):
    """Credly answers 404 under an organisation it does not know, for the badge and for the
    organisation itself: the revoke waits, the badge is not recorded deleted, and a worker
    started with the right id revokes it at once."""
    badge = grant(svc)
    wrong_app = make_gateway(credly_organization_id="0f0f0f0f-wrong")
    wrong = wrong_app.extensions["gateway"]
    submit(wrong, event("audit.completed", FAILED_AUDIT))
    drain(wrong, lambda: all(i.state == "retrying" for i in items(wrong, "revoke_badge")))
    [item] = items(wrong, "revoke_badge")
    assert item.attempts == 0 and item.last_error.startswith(outbox.WAITING)
    assert "0f0f0f0f-wrong" in item.last_error and "CREDLY_ORGANIZATION_ID" in item.last_error
    assert [b.state for b in badges(svc)] == [badge.state]
    assert [b["id"] for b in live(standin)] == [badge.credly_badge_id]
    paused = wrong_app.test_client().get("/readyz").get_json()["credly"]["paused"]
    assert "CREDLY_ORGANIZATION_ID" in paused
    assert app.test_client().get("/readyz").get_json()["credly"]["paused"] is None

    monkeypatch.setattr(context, "_services", context._services)  # run_worker sets it
    run_worker(svc, burst=True, with_scheduler=False, with_cron=False)  # the right id
    [item] = items(svc, "revoke_badge")
    assert item.state == "done" and live(standin) == []
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_when_credly_takes_the_token_again_the_jobs_held_back_are_due_at_once(app, svc, standin):
    configured, standin.token = standin.token, "rotated"  # Credly refuses the token a while
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: all(i.state == "retrying" for i in items(svc, "issue_badge")))
    other = granted("2026-03-01", cert="CERT-2")  # queued during the pause: held back
    other["data"]["member"]["email"] = "grace@example.org"
    submit(svc, other)
    drain(svc, lambda: [i.state for i in items(svc, "issue_badge")] == ["retrying"] * 2)
    [probe, held] = sorted(items(svc, "issue_badge"), key=lambda i: i.id)
    assert held.last_error.startswith(outbox.WAITING) and held.due_at > probe.due_at
    standin.token = configured
    svc.redis.delete(f"{token_state(svc).prefix}:paused")  # the pause lapses: one tries again
    with svc.db.transaction() as session:
        session.get(OutboxItem, probe.id).due_at = datetime.now(UTC)
    outbox.work_due(svc)
    assert [(i.state, i.attempts) for i in items(svc, "issue_badge")] == [("done", 1)] * 2
    assert len(live(standin)) == 2
    assert app.test_client().get("/readyz").get_json()["credly"]["paused"] is None


def test_an_app_started_with_another_token_works_the_credly_jobs_held_back_at_once(
    database_url, make_app, standin
):
    """Without Redis the jobs run in the app's process: its start resumes them."""
    settings = {
        "database_url": database_url,
        "credly_api_base": standin.url,
        "credly_organization_id": standin.organization_id,
        "credly_badge_templates": {"RMA": TEMPLATE},
    }
    refused = make_app(credly_auth_token="refused-in-process", **settings).extensions["gateway"]
    submit(refused, granted("2026-03-01"))
    deadline = time.monotonic() + 20
    while not (found := items(refused, "issue_badge")) or found[0].state != "retrying":
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    assert found[0].last_error.startswith(outbox.WAITING)
    working = make_app(credly_auth_token=standin.token, **settings).extensions["gateway"]
    while (found := items(working, "issue_badge"))[0].state != "done":
        assert time.monotonic() < deadline, found[0].last_error
        time.sleep(0.1)
    assert len(live(standin)) == 1


def test_the_token_expiry_is_read_from_credly_and_shown_by_readyz(make_gateway, standin):
    app = make_gateway(credly_token_expires_on=date(2027, 6, 1))
    standin.token_expires_at = "2026-12-10T00:00:00.000Z"
    svc = app.extensions["gateway"]
    assert check_token(svc, date(2026, 12, 1)) is True  # 9 days left: warned
    ready = app.test_client().get("/readyz").get_json()
    assert ready["credly"]["token_expires_on"] == "2026-12-10"
    assert [c["operation"] for c in standin.requests_seen()] == ["tokens"]


def test_an_expiry_credly_cannot_tie_to_the_token_is_unknown_and_said_so(
    make_gateway, standin, caplog
):
    """Two tokens listed (a rotation under way), neither named as this one: no guess, but a
    WARNING asking for CREDLY_TOKEN_EXPIRES_ON; set, it is the one reported."""
    standin.token_expires_at = "2026-12-10T00:00:00.000Z"
    standin.other_tokens = [{"id": "t-2", "name": "next", "expires_at": "2027-05-30T00:00:00Z"}]
    app = make_gateway()
    with caplog.at_level(logging.WARNING, logger="gateway.credly"):
        assert check_token(app.extensions["gateway"], date(2026, 12, 1)) is False
    [warned] = [r.getMessage() for r in caplog.records if "expiry is unknown" in r.getMessage()]
    assert "CREDLY_TOKEN_EXPIRES_ON is not set" in warned
    assert app.test_client().get("/readyz").get_json()["credly"]["token_expires_on"] is None
    caplog.clear()
    configured = make_gateway(credly_token_expires_on=date(2026, 12, 12))
    with caplog.at_level(logging.WARNING, logger="gateway.credly"):
        assert check_token(configured.extensions["gateway"], date(2026, 12, 1)) is True
    assert not [r for r in caplog.records if "expiry is unknown" in r.getMessage()]


def test_the_daily_sweep_queues_the_reconciliation_which_runs_once_a_day(svc, standin):
    badge = grant(svc)
    standin.revoke(badge.credly_badge_id, {"reason": "by hand"})  # drift, unnoticed
    run_daily_sweep()
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    queued = [job for job in queue.get_jobs() if job.func is run_daily_reconcile]
    assert len(queued) == 1
    first, second = run_daily_reconcile(), run_daily_reconcile()
    assert first["repaired"]["taken_from_credly"] == 1 and second == {"skipped": True}
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_a_replace_that_meets_a_badge_replaced_since_it_was_read_is_retried(svc, standin):
    badge = grant(svc)
    submit(svc, event("member.updated", {"last_name": "King"}))
    [item] = items(svc, "replace_badge")
    read = svc.credly.get_badge(badge.credly_badge_id)  # as the job reads it, before the race
    standin.replace(badge.credly_badge_id, {"issued_to_last_name": "Hamilton"})  # another job
    svc.credly.get_badge = lambda _id: read
    with pytest.raises(TransientError, match="successor"):
        replace_job.replace(svc, _claimed(item))


def test_reconcile_reads_credly_with_no_badge_row_locked(svc, standin, monkeypatch):
    """Credly's answers (and the waits of its retries) must not hold the rows the badge jobs
    and notifications lock: every read finds every badge row free."""
    if svc.db.is_sqlite:
        pytest.skip("row locks are PostgreSQL's")
    revoked_by_hand = grant(svc)
    other = granted("2026-03-01", cert="CERT-2")
    other["data"]["member"]["email"] = "grace@example.org"
    submit(svc, other)
    drain(svc, lambda: issue_done(svc))
    [replaced_by_hand] = [b for b in badges(svc) if b.certification_id == "CERT-2"]
    standin.revoke(revoked_by_hand.credly_badge_id, {"reason": "by hand"})  # read in pass 2
    standin.replace_out_of_band(replaced_by_hand.credly_badge_id, {})  # read in pass 1
    real_get_badge, reads = svc.credly.get_badge, []

    def get_badge_finding_rows_free(badge_id: str):
        with psycopg.connect(pg_conninfo(svc.settings.database_url), autocommit=True) as other:
            other.execute("SELECT 1 FROM badges FOR UPDATE NOWAIT")  # raises if one is locked
        reads.append(badge_id)
        return real_get_badge(badge_id)

    monkeypatch.setattr(svc.credly, "get_badge", get_badge_finding_rows_free)
    summary = reconcile(svc)
    assert {revoked_by_hand.credly_badge_id, replaced_by_hand.credly_badge_id} <= set(reads)
    assert summary.repaired["taken_from_credly"] == 2


def test_reconcile_waits_at_most_a_minute_between_tries_whatever_retry_after_says(
    svc, standin, waits
):
    standin.queue_faults([{"status": 429, "retry_after": 3600}], "list")
    reconcile(svc, dry_run=True)
    assert waits == [reconcile_module.MAX_WAIT_SECONDS]


def test_the_reconciliation_is_queued_even_when_the_housekeeping_after_the_sweep_fails(
    svc, standin, monkeypatch
):
    from gateway.usecases import housekeeping

    def failing(_svc):
        raise RuntimeError("the housekeeping met a statement timeout")

    monkeypatch.setattr(housekeeping, "prune", failing)
    with pytest.raises(RuntimeError):
        run_daily_sweep()
    queue = Queue(svc.settings.queue_name, connection=svc.redis)
    assert [job.func for job in queue.get_jobs()] == [run_daily_reconcile]


@pytest.mark.parametrize(("lease", "warned"), [(20, True), (120, False)])
def test_a_lease_shorter_than_a_few_credly_timeouts_is_warned_of_at_start(
    make_app, standin, caplog, lease, warned
):
    """Credly answering in 25 s of a 30 s timeout, a 20 s lease: another worker ran the issue
    job again beside the first (a second badge where the template allows duplicates)."""
    make_app(
        credly_api_base=standin.url,
        credly_organization_id=standin.organization_id,
        credly_auth_token=standin.token,
        credly_badge_templates={"RMA": TEMPLATE},
        credly_timeout_seconds=30,
        job_timeout_seconds=lease,
    )
    said = "JOB_TIMEOUT_SECONDS (20) is under 4 times CREDLY_TIMEOUT_SECONDS (30)"
    assert (said in caplog.text) is warned


# --------------------------------------------------------------------------- 8. Credly's truth
#: What the gateway says of CERT-1's badge, end to end: its badge row, the standing's `badge`
#: block and what Credly (the stand-in) holds must agree once the jobs have settled.


def holdings(standin: CredlyStandIn, cert: str = "CERT-1") -> list[dict]:
    """The live badges Credly holds of `cert`."""
    return [b for b in live(standin) if b["issuer_earner_id"] == cert]


def agrees(svc, standin: CredlyStandIn, shown: dict, *, kept: bool = True) -> dict:
    """Assert that CERT-1's badge row of its current period, the standing `shown` and the
    stand-in agree: the same Credly id and state (`deleted` once Credly has no such badge), and,
    where the certification keeps a badge (`kept`) that its earner neither deleted nor
    rejected, exactly that one live badge on Credly (else none). The standing's badge block."""
    block = shown["badge"]
    [row] = [
        b
        for b in badges(svc)
        if b.certification_id == "CERT-1" and b.period_start.isoformat() == shown["certified_on"]
    ]
    assert block == badge_view(row) and "error" not in block, block
    held = {b["id"]: b for b in standin.badges()}
    if row.state == "deleted":
        assert row.credly_badge_id not in held
    elif row.credly_badge_id is not None:
        assert held[row.credly_badge_id]["state"] == row.state
    keeps = kept and row.state not in ("deleted", "rejected")
    assert [b["id"] for b in holdings(standin)] == ([row.credly_badge_id] if keeps else [])
    return block


def reconciled(svc, standin: CredlyStandIn, tmp_path) -> dict:
    """`gateway badges reconcile --json`, then its repairs worked until they settle; its summary."""
    done = CliRunner().invoke(
        cli, ["badges", "reconcile", "--json"], env=_cli_env(svc, standin, tmp_path)
    )
    assert done.exit_code == 0, done.output
    drain(svc, lambda: all(settled(svc, kind) for kind in badges_jobs_kinds()))
    return json.loads(done.stdout)


def badges_jobs_kinds() -> tuple[str, ...]:
    return ("issue_badge", "replace_badge", "revoke_badge", "revoke_duplicate")


def _out_of_band(standin: CredlyStandIn, badge_id: str, change: str) -> dict | None:
    """Change Credly's badge `badge_id` as someone other than the gateway would; the event
    Credly records of it, if any (not delivered)."""
    if change == "revoked":
        standin.revoke(badge_id, {"reason": "by hand in Credly"})
        return None
    if change == "replaced":
        return standin.replace_out_of_band(badge_id, {"issued_to_last_name": "Byron"})
    if change == "deleted":
        return standin.delete_badge(badge_id)
    return standin.set_badge_state(badge_id, change)


@pytest.mark.parametrize("change", ["revoked", "replaced", "deleted", "accepted", "rejected"])
def test_a_badge_changed_in_credly_unnotified_agrees_with_credly_after_reconcile(
    svc, standin, standing, tmp_path, change
):
    """Revoked: issued again. Replaced (by hand, naming the member otherwise): its successor
    taken, and brought back to the member's details. Deleted or rejected by its earner: taken,
    and not issued again. Accepted: taken. In each, one run brings it in step."""
    badge = grant(svc)
    _out_of_band(standin, badge.credly_badge_id, change)
    reconciled(svc, standin, tmp_path)
    block = agrees(svc, standin, standing())
    if change in ("revoked", "replaced"):
        [now] = holdings(standin)
        assert now["id"] != badge.credly_badge_id and block["state"] == "pending"
        assert (now["issued_to_first_name"], now["issued_to_last_name"]) == ("Ada", "Lovelace")
    else:
        assert (block["credly_badge_id"], block["state"]) == (badge.credly_badge_id, change)
    assert reconciled(svc, standin, tmp_path)["repaired"] == dict.fromkeys(REPAIRS, 0)
    agrees(svc, standin, standing())


def all_settled(svc) -> bool:
    """Whether every badge job and notification job has ended."""
    return all(settled(svc, kind) for kind in (*badges_jobs_kinds(), "credly_notification"))


def test_an_acceptance_notified_before_the_issue_job_recorded_the_badge_is_applied(
    app, svc, standin, post, standing
):
    """The issue call's answer is lost (Credly made the badge), its earner accepts it and the
    notification comes while the issue job waits to try again: both end with it accepted."""
    standin.queue_faults([{"hold": True}])  # answered after the 1 s timeout, yet issued
    assert post(granted("2026-03-01")).status_code == 202
    _answer_lost(svc, standin)
    [made] = standin.badges()
    assert badges(svc)[0].credly_badge_id is None  # not recorded yet
    assert deliver(app, standin.set_badge_state(made["id"], "accepted")).status_code == 200
    drain(svc, lambda: all_settled(svc))
    block = agrees(svc, standin, standing())
    assert (block["credly_badge_id"], block["state"]) == (made["id"], "accepted")
    [notice] = items(svc, "credly_notification")
    assert notice.state == "done"


def test_a_late_acceptance_after_its_badge_was_deleted_leaves_it_deleted(
    app, svc, standin, standing, tmp_path
):
    badge = grant(svc)
    accepted = standin.set_badge_state(badge.credly_badge_id, "accepted")  # delivered late
    assert deliver(app, standin.delete_badge(badge.credly_badge_id)).status_code == 200
    drain(svc, lambda: all_settled(svc))
    assert deliver(app, accepted).status_code == 200
    drain(svc, lambda: all_settled(svc))
    block = agrees(svc, standin, standing())
    assert (block["credly_badge_id"], block["state"]) == (badge.credly_badge_id, "deleted")
    reconciled(svc, standin, tmp_path)  # not issued again
    agrees(svc, standin, standing())
    assert len(calls(standin, "issue")) == 1


@pytest.mark.parametrize("by", ["gateway", "credly-ui"])
def test_a_replaced_notification_after_the_successors_own_leaves_the_successor(
    app, svc, standin, standing, by
):
    """The successor's acceptance is delivered before its predecessor's `replaced`: by a
    replace of the gateway's (a new name), or one made in Credly's UI (the same name)."""
    badge = grant(svc)
    if by == "gateway":
        submit(svc, event("member.updated", {"last_name": "King"}))
        drain(svc, lambda: settled(svc, "replace_badge"))
        old = next(b for b in standin.badges() if b["id"] == badge.credly_badge_id)
        replaced = standin.add_event("badge.state.changed", {"badge": old})
    else:
        replaced = standin.replace_out_of_band(badge.credly_badge_id, {"issued_at": None})
    [successor] = live(standin)
    assert deliver(app, standin.set_badge_state(successor["id"], "accepted")).status_code == 200
    if by == "credly-ui":  # not recorded yet: retried, in case an issue job records it
        drain(svc, lambda: items(svc, "credly_notification")[0].state == "retrying")
    assert deliver(app, replaced).status_code == 200
    drain(svc, lambda: all_settled(svc))
    block = agrees(svc, standin, standing())
    assert (block["credly_badge_id"], block["state"]) == (successor["id"], "accepted")


@pytest.mark.parametrize(
    "change",
    [{"email": "ada@new.example.org"}, {"last_name": "King"}, {"email": "ADA@example.org"}],
    ids=["email", "name", "email-case"],
)
def test_an_issue_whose_answer_was_lost_then_a_details_change_leaves_one_live_badge(
    svc, standin, post, standing, change
):
    """The issue call times out after Credly made the badge; the member's details change before
    the retry: the retry adopts that badge and brings it up to date (an unclaimed badge at a new
    address: revoked and issued again there), never leaving two live."""
    standin.queue_faults([{"hold": True}])  # answered after the 1 s timeout, yet issued
    assert post(granted("2026-03-01")).status_code == 202
    _answer_lost(svc, standin)
    assert post(event("member.updated", change)).status_code == 202
    drain(svc, lambda: all_settled(svc))
    agrees(svc, standin, standing())
    [shown] = holdings(standin)
    email = change.get("email", "ada@example.org")
    assert shown["recipient_email"].casefold() == email.casefold()  # addresses compare so
    assert shown["issued_to_last_name"] == change.get("last_name", "Lovelace")


@pytest.mark.on_day("2026-12-04")
@pytest.mark.parametrize("issue", ["issued", "failed"])
def test_a_lapse_revokes_whatever_the_issue_came_to_and_a_recertification_issues_again(
    svc, standin, post, standing, tmp_path, issue
):
    """The issue succeeded, or failed for good (Credly refused it as invalid); the
    certification lapses (a failed audit) and its revoke leaves no badge live nor any error;
    recertified, its new period's badge is issued. Reconciliation then finds all in step."""
    if issue == "failed":
        standin.queue_faults([{"status": 400, "body": {"data": {"message": "Invalid"}}}])
    assert post(granted("2026-03-01")).status_code == 202
    drain(svc, lambda: all_settled(svc))
    assert post(event("audit.completed", FAILED_AUDIT)).status_code == 202
    drain(svc, lambda: all_settled(svc))
    shown = standing()
    assert shown["status"] == "lapsed"
    agrees(svc, standin, shown, kept=False)
    assert post(recert("exam", "2026-09-01", exam_passed_on="2026-08-20")).status_code == 202
    drain(svc, lambda: all_settled(svc))
    shown = standing()
    assert (shown["status"], shown["certified_on"]) == ("active", "2026-09-01")
    assert agrees(svc, standin, shown)["state"] == "pending"
    assert reconciled(svc, standin, tmp_path)["repaired"] == dict.fromkeys(REPAIRS, 0)
    agrees(svc, standin, standing())


def test_a_revoked_certification_is_not_recertified_and_keeps_no_badge(
    svc, standin, post, standing
):
    grant(svc)
    assert post(revoked("2026-06-01")).status_code == 202
    drain(svc, lambda: all_settled(svc))
    refused = post(recert("exam", "2026-09-01", exam_passed_on="2026-08-20"))
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["rule"] == "CERT-REVOKED"
    drain(svc, lambda: all_settled(svc))
    agrees(svc, standin, standing(), kept=False)
    assert len(calls(standin, "issue")) == 1


def test_reconcile_pages_through_credly_and_misses_no_badge_when_a_page_shifts(
    svc, standin, tmp_path, monkeypatch
):
    """Five badges on three pages of two. Once the second page is read, an earner deletes the
    first badge: the last badge, a live one issued by hand for a lapsed certification, moves
    up onto the page read already. The reconciliation still finds and revokes it."""
    grant_many(svc, 4)
    submit(svc, event("audit.completed", FAILED_AUDIT, cert="C-2"))
    drain(svc, lambda: settled(svc, "revoke_badge"))
    first, *_ = standin.badges()
    by_hand = hand_issued(standin, issuer_earner_id="C-2", recipient_email="member-2@example.org")
    listing = standin.list_badges

    def shifting(path: str, query: dict) -> tuple[int, object]:
        answer = listing(path, query)
        if query.get("page") == ["2"] and any(b["id"] == first["id"] for b in standin.badges()):
            standin.delete_badge(first["id"])  # once the second page is read
        return answer

    monkeypatch.setattr(standin, "list_badges", shifting)
    summary = reconciled(svc, standin, tmp_path)
    assert summary["repaired"]["revoked"] == 1
    assert [b["issuer_earner_id"] for b in live(standin)] == ["C-1", "C-3"]
    assert next(b for b in standin.badges() if b["id"] == by_hand["id"])["state"] == "revoked"


def test_reconcile_follows_several_pages_each_badge_once(svc, standin, tmp_path):
    grant_many(svc, 5)
    summary = reconciled(svc, standin, tmp_path)
    assert (summary["badges_checked"], summary["in_step"]) == (5, 5)
    lists = [c for c in calls(standin, "list") if c["path"].endswith("/badges")]
    assert len(lists) >= 3  # pages of two


def test_a_bare_422_with_nothing_to_adopt_is_recorded_as_refused_and_not_sent_again(
    svc, standin, post, standing, tmp_path
):
    """Credly refuses the issue with a 422 naming no duplicate, and the look-up finds no badge
    of the member: the same request would be refused again, so it is recorded as refused (its
    note), showing Credly's answer as it came, and reconciliation does not send it again until
    the member's details change."""
    standin.queue_faults([{"status": 422, "body": {"data": {"message": "Unprocessable"}}}])
    assert post(granted("2026-03-01")).status_code == 202
    drain(svc, lambda: all_settled(svc))
    block = standing()["badge"]
    assert block["state"] == "error" and "Unprocessable" in block["error"]
    assert "duplicate" not in block["error"] and block["note"].startswith("Credly refused")
    assert reconciled(svc, standin, tmp_path)["refused"] == 1
    assert len(calls(standin, "issue")) == 1
    assert post(event("member.updated", {"last_name": "King"})).status_code == 202
    drain(svc, lambda: all_settled(svc))
    assert reconciled(svc, standin, tmp_path)["repaired"]["issued"] == 1
    agrees(svc, standin, standing())


@pytest.mark.parametrize("choice", ["rejected", "deleted"])
def test_a_badge_its_earner_rejected_or_deleted_is_not_issued_again_when_a_lapse_is_cured(
    app, svc, standin, standing, tmp_path, choice
):
    """The earner's choice stands in the period: a lapse cured by a payment recorded late (its
    issue job) and reconciliations issue no badge; the row, the standing and Credly agree."""
    clock.set_now(datetime(2026, 3, 20, 12, tzinfo=UTC))
    submit(svc, granted("2022-03-01"))
    drain(svc, lambda: issue_done(svc))
    [badge] = badges(svc)
    assert deliver(app, _out_of_band(standin, badge.credly_badge_id, choice)).status_code == 200
    drain(svc, lambda: all_settled(svc))
    clock.set_now(datetime(2026, 4, 10, 12, tzinfo=UTC))
    sweep(svc, Scope(as_of=date(2026, 4, 10)))  # lapsed: nothing live to revoke
    drain(svc, lambda: all_settled(svc))
    submit(svc, fee(2023, "2026-03-15"))  # paid before the lapse, recorded late: no lapse
    drain(svc, lambda: len(items(svc, "issue_badge")) == 2 and all_settled(svc))
    block = agrees(svc, standin, standing())
    assert (block["credly_badge_id"], block["state"]) == (badge.credly_badge_id, choice)
    reconciled(svc, standin, tmp_path)
    agrees(svc, standin, standing())
    assert len(calls(standin, "issue")) == 1
