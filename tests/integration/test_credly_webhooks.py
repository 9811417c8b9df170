"""Credly webhooks end to end: `POST /webhooks/credly`, the job that fetches the event, the badge.

Every test runs on SQLite and PostgreSQL with the real Redis; Credly is stood in for by `responses`.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
import responses
from rq import Queue
from sqlalchemy import select

from gateway.platform import clock
from gateway.store.models import Badge, CredlyNotification, OutboxItem
from gateway.usecases import intake
from jobs.engine import dispatch
from jobs.engine.retry import MAX_ATTEMPTS
from tests.support.badge_jobs import (
    BADGES,
    CREDLY,
    EMPTY_LIST,
    LIVE_CREDLY,
    ORG,
    badge_json,
    badges,
    drain,
    ended,
    issue_done,
    items,
    submit,
)
from tests.support.clients import fetch_token
from tests.support.events import granted

EVENTS = f"{CREDLY}/organizations/{ORG}/events"
CLAIMED_AT = "2026-11-20T10:00:00.000Z"

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def app(database_url, make_app, redis_client, redis_url):
    """The gateway on each database, with RQ on the real Redis and a live Credly configuration."""
    return make_app(
        database_url=database_url, redis_url=redis_url, job_retry_base_seconds=1, **LIVE_CREDLY
    )


@pytest.fixture
def svc(app):
    return app.extensions["gateway"]


def envelope(event_id: str, *, org: str = ORG, event_type: str = "badge.state.changed") -> dict:
    """The thin notification Credly posts."""
    return {
        "id": event_id,
        "organization_id": org,
        "event_type": event_type,
        "occurred_at": CLAIMED_AT,
    }


def credly_event(
    event_id: str,
    *,
    state: str = "accepted",
    event_type: str = "badge.state.changed",
    occurred_at: str = CLAIMED_AT,
    badge_id: str = "b-1",
    earner: str = "CERT-1",
) -> dict:
    """Credly's answer to `GET /organizations/{org}/events/{id}`: the event with its badge."""
    badge = {**badge_json(badge_id, state)["data"], "issuer_earner_id": earner}
    return {
        "data": {
            "id": event_id,
            "organization_id": ORG,
            "event_type": event_type,
            "occurred_at": occurred_at,
            "badge": badge,
        }
    }


def notification(svc, event_id: str) -> CredlyNotification:
    with svc.db.sessions() as session:
        return session.scalars(
            select(CredlyNotification).where(CredlyNotification.notification_id == event_id)
        ).one()


def jobs_settled(svc) -> bool:
    return ended(svc, "credly_notification")


def issue_badge(svc) -> None:
    """Grant CERT-1 and let the issue job record Credly badge b-1 (pending)."""
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    submit(svc, granted("2026-03-01"))
    drain(svc, lambda: issue_done(svc))


def notify(app, svc, event_id: str, **event: object) -> CredlyNotification:
    """Credly answers the event; the gateway is notified and its job runs to the end."""
    return checked(app, svc, event_id, credly_event(event_id, **event))


def checked(app, svc, event_id: str, answer: dict, status: int = 200) -> CredlyNotification:
    """Credly answers the event's read so; the gateway is notified and its job runs to the end."""
    responses.get(f"{EVENTS}/{event_id}", status=status, json=answer)
    response = app.test_client().post("/webhooks/credly", json=envelope(event_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    drain(svc, lambda: jobs_settled(svc))
    return notification(svc, event_id)


def event_fetches(event_id: str) -> int:
    return sum(1 for c in responses.calls if c.request.url == f"{EVENTS}/{event_id}")


@responses.activate
def test_a_notification_answers_200_at_once_is_recorded_and_queued_without_calling_credly(app, svc):
    response = app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    assert response.status_code == 200
    assert response.get_json() == {"id": "ev-1", "status": "received", "duplicate": False}
    assert len(responses.calls) == 0, "nothing is fetched while Credly waits for the answer"
    row = notification(svc, "ev-1")
    assert (row.organization_id, row.event_type, row.status) == (
        ORG,
        "badge.state.changed",
        "received",
    )
    [item] = items(svc, "credly_notification")
    assert item.certification_id is None and item.payload == {"notification_id": "ev-1"}
    assert item.state == "pending" and item.due_at is not None
    assert Queue(svc.settings.queue_name, connection=svc.redis).count == 1  # a worker woken


@pytest.mark.parametrize(
    "claimed",
    [
        "2025-06-01 09:30:00 -0500",  # how Credly writes its times
        "2025-06-01T09:30:00+0000",
        "2025-06-01 09:30:00",  # no offset: read as UTC
        "2025-06-01T09:30Z",
        "2025-06-01T09:30:00.123456789+05:30",
    ],
)
def test_a_notification_claiming_a_time_in_credlys_own_forms_is_taken(app, svc, claimed):
    """What the envelope claims is not believed (the event is fetched from Credly): a time in a
    form other than RFC 3339 must not lose a notification Credly redelivers only on a 200."""
    response = app.test_client().post(
        "/webhooks/credly", json={**envelope("ev-1"), "occurred_at": claimed}
    )
    assert response.status_code == 200, response.get_json()
    assert notification(svc, "ev-1").status == "received"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in envelope("ev-1").items() if k != "id"}, "id"),
        ({**envelope("ev-1"), "occurred_at": "yesterday"}, "occurred_at"),
        ({**envelope("ev-1"), "occurred_at": "2026-W47-5T10:00:00Z"}, "occurred_at"),
        ({**envelope("ev-1"), "occurred_at": "2026-11-20"}, "occurred_at"),
        ({**envelope("ev-1"), "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        ({**envelope("ev-1"), "occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at"),
        ({**envelope("ev-1"), "id": ".."}, "id"),  # would name the organisation in Credly's URL
        ({**envelope("ev-1"), "id": "."}, "id"),
        ({**envelope("ev-1"), "organization_id": 42}, "organization_id"),
        ({**envelope("ev-1"), "event_type": ""}, "event_type"),
        ([envelope("ev-1")], "body"),
        ("not json", "body"),
    ],
)
def test_a_malformed_notification_is_a_400_problem_naming_the_field_and_records_nothing(
    app, svc, body, field
):
    client = app.test_client()
    if isinstance(body, str):
        response = client.post("/webhooks/credly", data=body, content_type="application/json")
    else:
        response = client.post("/webhooks/credly", json=body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.get_json()["errors"]]
    with svc.db.sessions() as session:
        assert session.scalar(select(CredlyNotification)) is None
        assert session.scalar(select(OutboxItem)) is None


@responses.activate
def test_another_organisations_notification_is_refused_recorded_and_answered_200(app, svc):
    response = app.test_client().post("/webhooks/credly", json=envelope("ev-1", org="org-2"))
    assert response.status_code == 200
    assert response.get_json()["status"] == "refused"
    row = notification(svc, "ev-1")
    assert row.status == "refused" and row.organization_id == "org-2"
    assert items(svc, "credly_notification") == []
    assert len(responses.calls) == 0


@responses.activate
@pytest.mark.parametrize("state", ["accepted", "rejected", "revoked"])
def test_badge_state_changed_moves_the_badge_and_the_standing_shows_it_with_the_time(
    app, svc, state
):
    issue_badge(svc)
    row = notify(app, svc, "ev-1", state=state)
    assert row.status == "processed" and row.credly_badge_id == "b-1"
    assert row.result == f"badge b-1: pending -> {state}"
    assert row.event["badge"]["state"] == state
    headers = {"Authorization": f"Bearer {fetch_token(app, 'certifications:read')}"}
    standing = app.test_client().get("/v1/certifications/CERT-1", headers=headers).get_json()
    assert standing["badge"]["state"] == state
    assert standing["badge"]["state_changed_at"] == "2026-11-20T10:00:00+00:00"
    fetch = next(c for c in responses.calls if c.request.url == f"{EVENTS}/ev-1")
    token = base64.b64encode(b"tok:").decode()
    assert fetch.request.headers["Authorization"] == f"Basic {token}"


@responses.activate
def test_a_redelivered_notification_is_recorded_once_and_acted_on_once(app, svc):
    issue_badge(svc)
    notify(app, svc, "ev-1", state="accepted")
    again = app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    assert again.status_code == 200
    assert again.get_json() == {"id": "ev-1", "status": "processed", "duplicate": True}
    drain(svc, lambda: jobs_settled(svc))
    assert len(items(svc, "credly_notification")) == 1
    assert event_fetches("ev-1") == 1


@responses.activate
def test_a_forged_notification_changes_nothing_and_is_recorded_forged(app, svc):
    issue_badge(svc)
    responses.get(f"{EVENTS}/ev-forged", status=404, json={"data": {"message": "Not found"}})
    app.test_client().post("/webhooks/credly", json=envelope("ev-forged"))
    drain(svc, lambda: jobs_settled(svc))
    assert notification(svc, "ev-forged").status == "forged"
    [badge] = badges(svc)
    assert badge.state == "pending"
    [item] = items(svc, "credly_notification")
    assert item.state == "done"


@responses.activate
def test_other_event_types_are_recorded_and_ignored(app, svc):
    issue_badge(svc)
    row = notify(app, svc, "ev-1", event_type="badge.created", state="pending")
    assert row.status == "ignored" and row.event_type == "badge.created"
    assert row.event["id"] == "ev-1"
    assert [b.state for b in badges(svc)] == ["pending"]


@responses.activate
def test_a_badge_becoming_replaced_adopts_the_successor_credly_names(app, svc):
    issue_badge(svc)
    named = {"data": {"message": "already replaced"}, "metadata": {"current_badge_id": "b-2"}}
    responses.post(f"{BADGES}/b-1/replace", status=422, json=named)
    responses.get(f"{BADGES}/b-2", json=badge_json("b-2", "accepted"))
    row = notify(app, svc, "ev-1", state="replaced")
    assert row.status == "processed" and "replaced by b-2" in row.result
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [("b-2", "accepted")]


@responses.activate
def test_a_replacement_this_gateway_made_is_processed_at_once_as_recorded(app, svc):
    issue_badge(svc)
    with svc.db.transaction() as session:  # the replace job recorded its successor b-2
        session.scalar(select(Badge)).credly_badge_id = "b-2"
    named = {"data": {"message": "already replaced"}, "metadata": {"current_badge_id": "b-2"}}
    responses.post(f"{BADGES}/b-1/replace", status=422, json=named)
    responses.get(f"{BADGES}/b-2", json=badge_json("b-2", "pending"))
    row = notify(app, svc, "ev-1", state="replaced")
    assert row.status == "processed" and row.result == "badge b-1 was replaced by b-2, as recorded"
    [item] = items(svc, "credly_notification")
    assert item.attempts == 1


@responses.activate
def test_a_replaced_badge_whose_successor_its_earner_deleted_is_deleted_not_forged(app, svc):
    issue_badge(svc)
    named = {"data": {"message": "already replaced"}, "metadata": {"current_badge_id": "b-2"}}
    responses.post(f"{BADGES}/b-1/replace", status=422, json=named)
    responses.get(f"{BADGES}/b-2", status=404, json={"data": {"message": "Not found"}})
    row = notify(app, svc, "ev-1", state="replaced")
    assert row.status == "processed" and "deleted by its earner" in row.result
    assert [b.state for b in badges(svc)] == ["deleted"]


@responses.activate
@pytest.mark.parametrize(
    "named",
    [
        {"badge": "b-1"},
        {"badge": {"id": "b-1"}},
        {"badge_id": "b-1"},
        {"badge": {"state": "accepted"}, "badge_id": "b-1"},
    ],
    ids=["badge-id", "badge-without-state", "badge_id", "badge-without-id"],
)
def test_an_event_that_names_its_badge_without_its_state_reads_the_badge(app, svc, named):
    issue_badge(svc)
    body = credly_event("ev-1")
    del body["data"]["badge"]
    body["data"].update(named)
    responses.get(f"{EVENTS}/ev-1", json=body)
    responses.get(f"{BADGES}/b-1", json=badge_json("b-1", "accepted"))
    app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    drain(svc, lambda: jobs_settled(svc))
    row = notification(svc, "ev-1")
    assert (row.status, row.result) == ("processed", "badge b-1: pending -> accepted")
    assert [b.state for b in badges(svc)] == ["accepted"]


@responses.activate
def test_a_badge_this_gateway_did_not_issue_is_ignored_without_retrying(app, svc):
    issue_badge(svc)
    row = notify(app, svc, "ev-1", badge_id="b-elsewhere", earner="CERT-ELSEWHERE")
    assert row.status == "ignored" and "not issued by this gateway" in row.result
    [item] = items(svc, "credly_notification")
    assert item.attempts == 1
    assert [b.state for b in badges(svc)] == ["pending"]


@responses.activate
def test_an_event_credly_answers_for_another_organisation_is_refused_and_changes_nothing(app, svc):
    issue_badge(svc)
    body = credly_event("ev-1", state="rejected")
    body["data"]["organization_id"] = "org-elsewhere"
    row = checked(app, svc, "ev-1", body)  # the envelope claims ours
    assert (row.status, row.result) == (
        "refused",
        "the event is another organisation's: org-elsewhere",
    )
    assert row.event is None and row.credly_badge_id is None  # nothing of it kept
    [item] = items(svc, "credly_notification")
    assert (item.state, item.attempts) == ("done", 1)
    assert [b.state for b in badges(svc)] == ["pending"]


@responses.activate
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"badge": {"id": "b" * 65, "state": "accepted", "issuer_earner_id": "CERT-1"}},
            "badge.id",
        ),
        ({"badge": "b" * 500}, "badge.id"),
        ({"badge": None, "badge_id": "b" * 500}, "badge.id"),
        ({"event_type": "badge." + "x" * 60}, "event_type"),
        ({"event_type": {"name": "badge.state.changed"}}, "event_type"),
        ({"note": "a\x00b"}, "event.note"),
        ({"score": [1.5, float("nan")]}, "event.score[1]"),
        (
            {"badge": {"id": "b-1", "state": "accepted", "nested": ["\ud800"]}},
            "event.badge.nested[0]",
        ),
    ],
    ids=[
        "badge-id",
        "bare-badge-id",
        "badge_id",
        "event-type",
        "event-type-object",
        "nul",
        "nan",
        "surrogate",
    ],
)
def test_an_event_holding_a_value_the_gateway_cannot_store_is_refused_naming_it(
    app, svc, change, field
):
    issue_badge(svc)
    body = credly_event("ev-1")
    body["data"].update(change)
    row = checked(app, svc, "ev-1", body)
    assert row.status == "refused" and row.result.startswith(
        f"the event cannot be stored: {field} "
    )
    [item] = items(svc, "credly_notification")
    assert (item.state, item.attempts) == ("done", 1)  # not retried
    assert [c.request.url for c in responses.calls if "/badges/" in c.request.url] == []
    assert [b.state for b in badges(svc)] == ["pending"]


@responses.activate
def test_a_successor_credly_names_with_an_id_too_long_to_store_refuses_the_event(app, svc):
    issue_badge(svc)
    successor = "s" * 65
    named = {"data": {"message": "already replaced"}, "metadata": {"current_badge_id": successor}}
    responses.post(f"{BADGES}/b-1/replace", status=422, json=named)
    responses.get(f"{BADGES}/{successor}", json=badge_json(successor, "pending"))
    row = notify(app, svc, "ev-1", state="replaced")
    assert row.status == "refused"
    assert row.result.startswith("the event cannot be stored: current badge.id is 65 characters")
    assert [(b.credly_badge_id, b.state) for b in badges(svc)] == [("b-1", "pending")]


@responses.activate
@pytest.mark.parametrize("status", [400, 410])
def test_an_event_credly_refuses_to_read_fails_its_job_and_finishes_the_notification(
    app, svc, status
):
    issue_badge(svc)
    row = checked(app, svc, "ev-1", {"data": {"message": "gone"}}, status)
    [item] = items(svc, "credly_notification")
    assert (item.state, item.attempts) == ("failed", 1)
    assert row.status == "failed" and f"answered {status}" in row.result
    assert row.processed_at is not None
    # Credly confirmed nothing: a new delivery of the id is checked again, and applied
    responses.get(f"{EVENTS}/ev-1", json=credly_event("ev-1", state="accepted"))
    again = app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    assert again.get_json() == {"id": "ev-1", "status": "received", "duplicate": False}
    drain(svc, lambda: jobs_settled(svc))
    assert notification(svc, "ev-1").status == "processed"
    assert [b.state for b in badges(svc)] == ["accepted"]


@responses.activate
@pytest.mark.parametrize("status", [400, 503])
def test_an_answer_of_credly_holding_a_nul_is_recorded_with_the_notification(app, svc, status):
    issue_badge(svc)
    responses.get(f"{EVENTS}/ev-1", status=status, body=b"no\x00pe", content_type="text/plain")
    app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    drain(svc, lambda: notification(svc, "ev-1").last_error is not None or jobs_settled(svc))
    [item] = items(svc, "credly_notification")
    assert item.attempts == 1 and (item.state == "failed") == (status == 400)
    row = notification(svc, "ev-1")
    assert f"answered {status} no\ufffdpe" in (row.result if status == 400 else row.last_error)


@responses.activate
def test_a_failed_notification_job_requeued_checks_the_event_again(app, svc):
    issue_badge(svc)
    assert checked(app, svc, "ev-1", {"data": {"message": "gone"}}, 410).status == "failed"
    [item] = items(svc, "credly_notification")
    responses.get(f"{EVENTS}/ev-1", json=credly_event("ev-1", state="accepted"))
    dispatch.requeue(svc, [item.id])
    drain(svc, lambda: jobs_settled(svc))
    assert notification(svc, "ev-1").status == "processed"
    assert [b.state for b in badges(svc)] == ["accepted"]


def postpone(svc, outbox_ids, delay: timedelta) -> None:
    """Make outbox items due `delay` from now."""
    with svc.db.transaction() as session:
        for outbox_id in outbox_ids:
            session.get(OutboxItem, outbox_id).due_at = clock.now() + delay


@responses.activate
def test_a_notification_before_the_issue_job_recorded_the_badge_is_retried_then_applied(app, svc):
    responses.get(re.compile(re.escape(BADGES) + r"\?.*"), json=EMPTY_LIST)
    responses.post(BADGES, status=201, json=badge_json())
    responses.get(f"{EVENTS}/ev-1", json=credly_event("ev-1", state="accepted"))
    granted_answer = intake.submit_event(svc, granted("2026-03-01"))
    postpone(svc, granted_answer.outbox_ids, timedelta(days=1))  # the issue job has not run yet
    app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    drain(svc, lambda: items(svc, "credly_notification")[0].state == "retrying")
    row = notification(svc, "ev-1")
    assert row.status == "received" and "not recorded yet" in row.last_error
    assert badges(svc) == []

    postpone(svc, granted_answer.outbox_ids, timedelta(0))
    svc.dispatcher.dispatch(granted_answer.outbox_ids)
    drain(svc, lambda: jobs_settled(svc) and issue_done(svc))
    row = notification(svc, "ev-1")
    assert row.status == "processed" and row.last_error is None
    [badge] = badges(svc)
    assert badge.state == "accepted"
    [item] = items(svc, "credly_notification")
    assert item.state == "done" and item.attempts >= 2


@responses.activate
def test_a_notification_about_a_badge_no_job_records_is_ignored_after_its_last_attempt(app, svc):
    responses.get(f"{EVENTS}/ev-1", json=credly_event("ev-1", state="accepted"))
    granted_answer = intake.submit_event(svc, granted("2026-03-01"))
    postpone(svc, granted_answer.outbox_ids, timedelta(days=1))  # no job records the badge
    app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    drain(svc, lambda: items(svc, "credly_notification")[0].state == "retrying")
    [item] = items(svc, "credly_notification")
    with svc.db.transaction() as session:  # as if every attempt but the last had been made
        session.get(OutboxItem, item.id).attempts = MAX_ATTEMPTS - 1
    postpone(svc, [item.id], timedelta(0))
    svc.dispatcher.dispatch([item.id])
    drain(svc, lambda: items(svc, "credly_notification")[0].state == "done")
    row = notification(svc, "ev-1")
    assert row.status == "ignored" and "no job recorded it" in row.result
    assert badges(svc) == []


@responses.activate
def test_a_credly_outage_while_fetching_the_event_is_retried(app, svc):
    issue_badge(svc)
    responses.get(f"{EVENTS}/ev-1", status=503, json={"message": "down"})
    responses.get(f"{EVENTS}/ev-1", json=credly_event("ev-1", state="accepted"))
    app.test_client().post("/webhooks/credly", json=envelope("ev-1"))
    drain(svc, lambda: jobs_settled(svc))
    assert notification(svc, "ev-1").status == "processed"
    assert [b.state for b in badges(svc)] == ["accepted"]
    assert event_fetches("ev-1") == 2


@responses.activate
def test_an_older_notification_delivered_late_does_not_undo_a_later_one(app, svc):
    issue_badge(svc)
    notify(app, svc, "ev-late", state="accepted", occurred_at="2026-11-20T10:00:00Z")
    row = notify(app, svc, "ev-early", state="rejected", occurred_at="2026-11-10T10:00:00Z")
    assert row.status == "ignored" and "later notification" in row.result
    [badge] = badges(svc)
    assert badge.state == "accepted"


@responses.activate
def test_a_badge_revoked_by_the_gateway_stays_revoked_whatever_a_notification_says(app, svc):
    issue_badge(svc)
    with svc.db.transaction() as session:
        session.scalars(select(Badge)).one().state = "revoked"
    row = notify(app, svc, "ev-1", state="accepted")
    assert row.status == "ignored" and "stays so" in row.result
    assert [b.state for b in badges(svc)] == ["revoked"]


def test_on_the_dry_run_only_dry_run_notifications_are_taken_and_none_is_believed(
    make_app, database_url
):
    app = make_app(database_url=database_url, jobs_synchronous=True)
    svc = app.extensions["gateway"]
    client = app.test_client()
    taken = client.post("/webhooks/credly", json=envelope("ev-1", org="dry-run"))
    refused = client.post("/webhooks/credly", json=envelope("ev-2", org=ORG))
    assert taken.status_code == refused.status_code == 200
    assert notification(svc, "ev-1").status == "forged"
    assert notification(svc, "ev-2").status == "refused"
