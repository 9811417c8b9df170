"""Advance notice: a subscription that opted in is told ahead of a status change due without any
event (fees overdue -> inactive), once, and told again when a payment calls it off."""

from __future__ import annotations

from datetime import date
from functools import partial

import pytest
from sqlalchemy import event
from standardwebhooks import Webhook

from gateway import rules
from gateway.platform import clock
from gateway.store.history import decode_event
from gateway.store.models import Subscription, WatchedCertification
from gateway.usecases import notices
from gateway.usecases.notices import CANCELLED, SCHEDULED
from gateway.usecases.sweep import Scope
from jobs.cron import locked_sweep
from tests.support.clients import register_client
from tests.support.events import fee, granted
from tests.support.http_stubs import scripted, serve
from tests.support.verification import days_ago, record

#: Granted 355 days ago: its first renewal fee falls due within the next six weeks.
GRANT = granted(days_ago(355), cert="SOON-1")
NOTICE_DAYS = 60
STATUS_CHANGED = "certification.status_changed"


@pytest.fixture
def app(database_url, make_app):
    return make_app(
        database_url=database_url,
        jobs_synchronous=True,
        webhook_allow_private_targets=True,
        webhook_allow_plain_http=True,  # the receivers are plain http
    )


@pytest.fixture
def employer(token_for):
    return token_for("verifications:read")


def subscribe(client, headers, url: str, **notice: object) -> dict:
    body = {"url": url, "certification_ids": ["SOON-1"], **notice}
    response = client.post("/v1/subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def inactive_on(app) -> date:
    """The day SOON-1 turns inactive with no further event, by the rules."""
    policy = app.extensions["gateway"].policy
    today = clock.now().date()
    change = rules.scheduled_change([decode_event(GRANT)], today, date(9999, 1, 1), policy)
    assert change is not None and change.status == "inactive"
    return change.on


def messages(received, secret: str, *types: str) -> list[dict]:
    events = [Webhook(secret).verify(r.body, r.headers) for r in received]
    return [e for e in events if e["type"] in types]


def daily(app) -> None:
    locked_sweep(app.extensions["gateway"], Scope(as_of=clock.now().date()))


def test_a_scheduled_change_is_announced_once_and_called_off_by_a_payment(app, client, employer):
    with serve(scripted()) as (url, received):
        created = subscribe(
            client, employer, url + "/hook", advance_notice=True, notice_days=NOTICE_DAYS
        )
        assert created["notice_days"] == NOTICE_DAYS
        [answer] = record(app, GRANT)  # the intake reviews it at once
        daily(app)
        daily(app)  # the daily review, twice: nothing more to say
        notice = {
            "certification_id": "SOON-1",
            "status": "active",
            "scheduled_status": "inactive",
            "scheduled_on": inactive_on(app).isoformat(),
        }
        scheduled = messages(received, created["secret"], SCHEDULED)
        assert [m["data"] for m in scheduled] == [notice]
        assert scheduled[0]["subscription_id"] == created["id"]
        due_year = int(answer.body["standing"]["fees"]["next_due"][:4])
        record(app, fee(due_year, days_ago(0), cert="SOON-1"))
        daily(app)
        cancelled = messages(received, created["secret"], CANCELLED)
        assert [m["data"] for m in cancelled] == [notice]
        assert len(messages(received, created["secret"], SCHEDULED)) == 1
        types = [e["type"] for e in messages(received, created["secret"], SCHEDULED, CANCELLED)]
        assert types == [SCHEDULED, CANCELLED]  # in order
        log = client.get(f"/v1/subscriptions/{created['id']}/deliveries", headers=employer)
        logged = [d["type"] for d in log.get_json()["deliveries"]]  # newest first
        # the grant's status_changed is numbered by its sync job, before or after the notice
        assert [kind for kind in logged if kind != STATUS_CHANGED] == [CANCELLED, SCHEDULED]
        assert logged[0] == CANCELLED


def test_an_event_lists_the_notices_its_change_queued(app, client, employer, token_for):
    events, reader = token_for("events:write"), token_for("certifications:read")

    def jobs_of(answer) -> list[tuple[str, str]]:
        jobs = client.get(answer.headers["Location"], headers=reader).get_json()["jobs"]
        return sorted((job["kind"], job["state"]) for job in jobs)

    with serve(scripted()) as (url, received):
        created = subscribe(
            client, employer, url + "/hook", advance_notice=True, notice_days=NOTICE_DAYS
        )
        grant = client.post("/v1/events", json=GRANT, headers=events)
        assert grant.status_code == 202, grant.get_json()
        due_year = int(grant.get_json()["standing"]["fees"]["next_due"][:4])
        paid = client.post(
            "/v1/events", json=fee(due_year, days_ago(0), cert="SOON-1"), headers=events
        )
        assert paid.status_code == 202, paid.get_json()
        sent = messages(received, created["secret"], STATUS_CHANGED, SCHEDULED, CANCELLED)
    assert sorted(m["type"] for m in sent) == sorted([STATUS_CHANGED, SCHEDULED, CANCELLED])
    assert jobs_of(grant) == [
        ("deliver_webhook", "done"),  # its first record
        ("deliver_webhook", "done"),  # the change it scheduled
        ("issue_badge", "done"),
        ("review_notices", "done"),
        ("sync_verification", "done"),
    ]
    assert jobs_of(paid) == [
        ("deliver_webhook", "done"),  # the change it called off; its status is unchanged
        ("review_notices", "done"),
        ("sync_verification", "done"),
    ]


def test_subscribing_to_a_change_already_within_the_notice_announces_it_at_once(
    app, client, employer
):
    record(app, GRANT)
    with serve(scripted()) as (url, received):
        created = subscribe(
            client, employer, url + "/hook", advance_notice=True, notice_days=NOTICE_DAYS
        )
        assert len(messages(received, created["secret"], SCHEDULED)) == 1  # not at the next sweep
        daily(app)
        daily(app)
        assert len(messages(received, created["secret"], SCHEDULED)) == 1


def test_subscribing_to_a_change_on_the_notices_last_day_announces_it_at_once(
    app, client, employer
):
    record(app, GRANT)
    with serve(scripted()) as (url, received):
        days = (inactive_on(app) - clock.now().date()).days  # the change is on its last day
        created = subscribe(client, employer, url + "/hook", advance_notice=True, notice_days=days)
        assert len(messages(received, created["secret"], SCHEDULED)) == 1  # not at the next sweep


def test_a_change_beyond_the_notice_is_not_announced_yet(app, client, employer):
    with serve(scripted()) as (url, received):
        days = (inactive_on(app) - clock.now().date()).days - 1
        created = subscribe(client, employer, url + "/hook", advance_notice=True, notice_days=days)
        record(app, GRANT)
        daily(app)
        assert messages(received, created["secret"], SCHEDULED) == []


def test_without_advance_notice_only_status_changes_are_sent(app, client, employer):
    with serve(scripted()) as (url, received):
        created = subscribe(client, employer, url + "/hook")
        assert created["notice_days"] is None
        record(app, GRANT)
        daily(app)
        sent = [Webhook(created["secret"]).verify(r.body, r.headers)["type"] for r in received]
        assert sent == ["certification.status_changed"]  # its first record


@pytest.mark.parametrize(
    ("notice", "field"),
    [
        ({"notice_days": 0}, "notice_days"),
        ({"advance_notice": "soon"}, "advance_notice"),
        ({"notice_days": 30}, "notice_days"),  # days without the notice they measure
        ({"advance_notice": False, "notice_days": 30}, "notice_days"),
    ],
)
def test_bad_notice_settings_are_refused_naming_the_field(client, employer, notice, field):
    body = {"url": "https://127.0.0.1:9/hook", "certification_ids": ["SOON-1"], **notice}
    response = client.post("/v1/subscriptions", json=body, headers=employer)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == [field]


# On PostgreSQL, where each statement is a round trip (SQLite, in-process, gets the ORM's rows
# one statement each).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_review_writes_its_messages_in_as_many_statements_however_many_there_are(
    app, monkeypatch
):
    """Each subscription's messages are numbered and written together: a review that announces
    ten changes runs no more statements than one that announces two."""
    svc = app.extensions["gateway"]
    client_id, _ = register_client(app, "verifications:read")
    certifications = [f"SOON-{n}" for n in range(12)]
    record(app, *(granted(days_ago(355), cert=c, event_id=f"{c}-granted") for c in certifications))
    monkeypatch.setattr(svc, "dispatcher", None)  # the messages' jobs are not run here

    def reviewed(subscription_id: str, watched: list[str]) -> tuple[int, int]:
        """How many messages a review of `watched`, newly watched, queued, in how many
        statements."""
        with svc.db.transaction() as session:
            session.add(
                Subscription(
                    id=subscription_id,
                    client_id=client_id,
                    url="https://receiver.test/hook",
                    secret="whsec_x",
                    notice_days=NOTICE_DAYS,
                )
            )
            session.flush()
            session.add_all(
                WatchedCertification(subscription_id=subscription_id, certification_id=c)
                for c in watched
            )
        run: list[str] = []
        listen = partial(event.listen, svc.db.engine, "before_cursor_execute")
        listen(counted := lambda *call: run.append(call[2]))
        try:
            with svc.db.transaction() as session:
                items = notices.review(svc, session, watched, clock.now().date())
        finally:
            event.remove(svc.db.engine, "before_cursor_execute", counted)
        return len(items), len(run)

    two, ten = reviewed("sub-two", certifications[:2]), reviewed("sub-ten", certifications[2:])
    assert (two[0], ten[0]) == (2, 10)
    assert ten[1] == two[1], (two, ten)
