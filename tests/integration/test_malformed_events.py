"""A malformed event with a usable event id is kept for audit: `GET /v1/events/{event_id}` shows
its latest attempt, rejected with the field errors of its 422, until an event is recorded under
that id or the housekeeping prunes it."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

import psycopg
import pytest
from alembic import command
from sqlalchemy import false, func, inspect, select, text, update

from gateway.platform import clock
from gateway.store.db import Database, alembic_config
from gateway.store.models import Event, MalformedEvent
from gateway.usecases import housekeeping, intake
from tests.support.clients import fetch_token
from tests.support.database import truncate
from tests.support.events import fee, granted

pytestmark = pytest.mark.on_day("2026-12-04")  # the day the events' dates are written for

PATHS = ["/v1/events", "/v1/events?via=flask"]  # the plain path, and the view (a query)


@pytest.fixture
def post(client, token_for):
    headers = token_for("events:write")

    def send(body, path="/v1/events", request_id=None):
        """Post `body`, or JSON text as written when it is a str."""
        given = {"X-Request-ID": request_id} if request_id else {}
        if isinstance(body, str):
            sent = {"data": body, "content_type": "application/json"}
        else:
            sent = {"json": body}
        return client.post(path, **sent, headers={**headers, **given})

    return send


@pytest.fixture
def batch(client, token_for):
    headers = token_for("events:write")

    def send(events):
        response = client.post("/v1/events/batch", json={"events": events}, headers=headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"]

    return send


@pytest.fixture
def read(client, token_for):
    headers = token_for("certifications:read")
    return lambda event_id: client.get(f"/v1/events/{event_id}", headers=headers)


def kept(app) -> int:
    with app.extensions["gateway"].db.sessions() as session:
        return session.scalar(select(func.count()).select_from(MalformedEvent))


def malformed_fee(event_id: str, **data) -> dict:
    """A renewal.fee_paid of CERT-1 whose `paid_on` is no day (and with `data` besides)."""
    body = fee(2027, "2026-11-01", event_id=event_id)
    body["data"].update({"paid_on": "someday", **data})
    return body


@pytest.mark.parametrize("path", PATHS)
def test_a_malformed_event_is_read_back_rejected_with_the_field_errors_of_its_422(
    app, post, read, path
):
    body = malformed_fee("bad-1", extra=1)
    refused = post(body, path, request_id="req-bad-1")
    assert refused.status_code == 422
    errors = refused.get_json()["errors"]
    assert {e["field"] for e in errors} == {"data.paid_on", "data.extra"}
    recorded = read("bad-1")
    assert recorded.status_code == 200
    record = recorded.get_json()
    assert record.pop("received_at").startswith("2026-12-04T")
    assert record == {
        "event_id": "bad-1",
        "type": "renewal.fee_paid",
        "certification_id": "CERT-1",
        "occurred_at": "2026-11-01T12:00:00+00:00",
        "status": "rejected",
        "reasons": errors,
        "data": body["data"],
        "jobs": [],
    }
    with app.extensions["gateway"].db.sessions() as session:
        row = session.get(MalformedEvent, "bad-1")
        assert row.request_id == "req-bad-1" and row.client_id is not None
        assert row.body == body


def test_what_of_the_envelope_is_not_usable_is_read_back_as_null(post, read):
    body = {
        "event_id": "bad-2",
        "type": "x" * 65,
        "certification_id": 42,
        "occurred_at": "yesterday",
        "data": ["not", "an", "object"],
    }
    assert post(body).status_code == 422
    record = read("bad-2").get_json()
    assert [record[k] for k in ("type", "certification_id", "occurred_at", "data")] == [None] * 4
    assert {e["field"] for e in record["reasons"]} == {
        "type",
        "certification_id",
        "occurred_at",
        "data",
    }


@pytest.mark.parametrize("path", PATHS)
def test_a_corrected_body_under_the_same_id_is_judged_as_a_first_arrival(post, read, path):
    assert post(granted("2026-03-01")).status_code == 202
    assert post(malformed_fee("fee-1"), path).status_code == 422
    corrected = post(fee(2027, "2026-11-01", event_id="fee-1"), path)
    assert corrected.status_code == 202 and "Idempotent-Replayed" not in corrected.headers
    record = read("fee-1").get_json()
    assert record["status"] == "accepted" and record["reasons"] == []
    assert [job["kind"] for job in record["jobs"]] == ["sync_verification"]
    again = post(malformed_fee("fee-1"), path)  # now the id holds another event
    assert again.status_code == 409 and read("fee-1").get_json()["status"] == "accepted"
    assert [e["field"] for e in again.get_json()["errors"]] == ["event_id"]


def test_a_corrected_body_refused_by_the_rules_is_recorded_as_any_refusal(post, read):
    assert post(granted("2026-03-01")).status_code == 202
    assert post(malformed_fee("fee-2")).status_code == 422
    refused = fee(2020, "2020-02-01", event_id="fee-2")
    assert post(refused).status_code == 422
    assert post(refused).headers["Idempotent-Replayed"] == "true"
    record = read("fee-2").get_json()
    assert [r["rule"] for r in record["reasons"]] == ["FEE-YEAR-RANGE"]


@pytest.mark.parametrize("path", PATHS)
def test_the_same_malformed_body_twice_is_a_replay_and_the_latest_attempt_is_kept(
    app, post, read, path
):
    """Sent again as it was, the attempt kept is answered as it was, Idempotent-Replayed (as any
    event sent again); another body under its id is judged afresh and kept in its place."""
    body = malformed_fee("bad-3")
    first, second = post(body, path), post(body, path)
    assert first.status_code == second.status_code == 422
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.get_json() == second.get_json()
    other = malformed_fee("bad-3", extra=1)
    assert post(other, path).status_code == 422
    record = read("bad-3").get_json()
    assert record["data"] == other["data"] and "data.extra" in [
        e["field"] for e in record["reasons"]
    ]
    assert kept(app) == 1


@pytest.mark.parametrize("path", PATHS)
def test_a_malformed_body_sent_twice_at_once_is_answered_once_and_replayed_once(
    app, post, batch, path, monkeypatch
):
    """Twins sent at the same moment both read no attempt kept under their id: the one whose
    write finds its twin's body kept is answered as its replay."""
    body = malformed_fee("twin-1")
    assert "Idempotent-Replayed" not in post(body, path).headers
    # the second twin read the attempts before the first one's was written
    monkeypatch.setattr(intake, "_KEPT", intake._KEPT.where(false()))
    twin = post(body, path)
    assert twin.status_code == 422 and twin.headers["Idempotent-Replayed"] == "true"
    other = post(malformed_fee("twin-1", extra=1), path)  # another body: judged and kept afresh
    assert other.status_code == 422 and "Idempotent-Replayed" not in other.headers
    results = batch([malformed_fee("twin-1", extra=1), malformed_fee("twin-2")])
    assert [(r["status"], r["replayed"]) for r in results] == [(422, True), (422, False)]
    assert kept(app) == 2


def test_each_malformed_event_of_a_batch_is_kept(app, batch, read):
    events = [
        granted("2026-03-01"),
        malformed_fee("b-1"),
        fee(2027, "2026-11-01", event_id="b-2"),
        malformed_fee("b-3"),
        {"type": "renewal.fee_paid"},  # no event id: nothing to keep it under
        malformed_fee("b-3", extra=1),  # the same id again: its latest attempt is kept
    ]
    results = batch(events)
    assert [r["status"] for r in results] == [202, 422, 202, 422, 422, 422]
    assert read("b-1").get_json()["reasons"] == results[1]["body"]["errors"]
    assert read("b-2").get_json()["status"] == "accepted"
    assert read("b-3").get_json()["reasons"] == results[5]["body"]["errors"]
    assert kept(app) == 2


def test_in_a_batch_a_malformed_event_under_an_id_an_earlier_event_recorded_is_a_409(
    app, batch, read
):
    """As sent one after another: after the event recorded under its id, a 409, nothing kept;
    before it, a 422 while the id was free (not kept either once the event holds the id)."""
    recorded = fee(2027, "2026-11-01", event_id="twice-1")
    results = batch([granted("2026-03-01"), recorded, malformed_fee("twice-1")])
    assert [r["status"] for r in results] == [202, 202, 409]
    assert results[2]["body"]["errors"] == [
        {"field": "event_id", "message": "Already used for another event."}
    ]
    refused_first = fee(2026, "2026-11-01", event_id="twice-2")  # its year paid by the grant
    results = batch([malformed_fee("twice-2"), refused_first, malformed_fee("twice-2", extra=1)])
    assert [r["status"] for r in results] == [422, 422, 409]
    assert results[0]["body"]["errors"][0]["field"] == "data.paid_on"
    assert results[1]["body"]["errors"][0]["rule"]
    assert read("twice-2").get_json()["status"] == "rejected"
    assert read("twice-2").get_json()["reasons"] == results[1]["body"]["errors"]
    assert kept(app) == 0


def test_a_malformed_event_twice_in_a_batch_is_replayed_the_second_time(app, batch):
    results = batch([malformed_fee("twice-bad"), malformed_fee("twice-bad")])
    assert [(r["status"], r["replayed"]) for r in results] == [(422, False), (422, True)]
    assert results[0]["body"] == results[1]["body"]
    assert kept(app) == 1


def test_a_batch_of_malformed_events_is_kept_in_one_round_trip(app, batch, read, monkeypatch):
    """One read of the ids among the recorded events, one of the attempts kept under them, one
    write of every attempt (psycopg's executemany: its statements sent together)."""
    sent: list[str] = []
    for name in ("execute", "executemany"):
        run = getattr(psycopg.Cursor, name)
        monkeypatch.setattr(
            psycopg.Cursor,
            name,
            lambda self, sql, *a, _run=run, **k: sent.append(str(sql)) or _run(self, sql, *a, **k),
        )
    results = batch([malformed_fee(f"many-{n}") for n in range(100)])
    assert [r["status"] for r in results] == [422] * 100
    if app.extensions["gateway"].db.is_sqlite:
        assert len(sent) == 0  # SQLite: not psycopg
    else:
        assert sum("INSERT INTO malformed_events" in sql for sql in sent) == 1
        assert sum("FROM malformed_events" in sql for sql in sent) == 1
        assert sum("FROM events" in sql for sql in sent) == 1  # the ids looked up at once
    assert kept(app) == 100
    assert read("many-99").get_json()["status"] == "rejected"


@pytest.mark.parametrize(
    "event_id", ["", "   ", "x" * 129, "a//b", "tab\there", 42, None], ids=repr
)
def test_an_unusable_event_id_keeps_nothing(app, post, read, event_id):
    body = {**malformed_fee("placeholder"), "event_id": event_id}
    assert post(body).status_code == 422
    assert kept(app) == 0
    if isinstance(event_id, str):
        assert read(quote(event_id)).status_code == 404


def test_an_event_id_with_no_body_of_an_object_keeps_nothing(app, post):
    assert post([{"event_id": "in-a-list"}]).status_code == 422
    assert kept(app) == 0


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"reason\x00": "a\x00b"}, {"reason\ufffd": "a\ufffdb"}),
        (
            {"n": 2**70, "big": 1e400, "huge": int("9" * 400)},
            {"n": 2.0**70, "big": None, "huge": None},
        ),
        ({"deep": json.loads("[" * 150 + "]" * 150)}, None),
    ],
    ids=["nul", "numbers", "deep"],
)
def test_a_malformed_body_the_database_cannot_hold_as_is_is_still_a_422_and_kept(
    post, read, data, shown
):
    """PostgreSQL's JSONB refuses NUL, and the driver's JSON encoder numbers beyond 64 bits and
    deep nesting: they are kept as U+FFFD, a double or null, and nesting cut off as null."""
    body = {**malformed_fee("odd-1"), "certification_id": "CERT\x00-1"}
    body["data"] = data
    # 1e400 as written: json.dumps writes the float it reads as Infinity, which is no JSON
    written = json.dumps(body).replace("Infinity", "1e400")
    refused = post(written)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    record = read("odd-1")
    assert record.status_code == 200, record.get_data(as_text=True)
    record = record.get_json()
    assert record["certification_id"] is None  # no column holds NUL
    if shown is not None:
        assert record["data"] == shown
    else:
        depth, deep = 0, record["data"]["deep"]
        while isinstance(deep, list):
            depth, deep = depth + 1, deep[0] if deep else None
        assert 90 < depth < 150 and deep is None
    if "reason\x00" in data:
        assert "data.reason\ufffd" in [reason["field"] for reason in record["reasons"]]


def test_an_event_recorded_under_the_id_is_shown_not_the_malformed_attempt(app, post, read):
    assert post(granted("2026-03-01", event_id="grant-1")).status_code == 202
    malformed = {**granted("2026-03-01", event_id="grant-1"), "occurred_at": "now"}
    assert post(malformed).status_code == 409  # the id is another event's
    assert read("grant-1").get_json()["status"] == "accepted"
    assert kept(app) == 0


def test_housekeeping_prunes_the_attempts_older_than_their_retention(app, post, read):
    svc = app.extensions["gateway"]
    for event_id in ("old-1", "old-2", "new-1"):
        assert post(malformed_fee(event_id)).status_code == 422
    days = svc.settings.malformed_event_retention_days
    assert days == 90
    with svc.db.transaction() as session:
        session.execute(
            update(MalformedEvent)
            .where(MalformedEvent.event_id.in_(["old-1", "old-2"]))
            .values(received_at=clock.now() - timedelta(days=days, seconds=1))
        )
    assert housekeeping.prune(svc)["malformed_events"] == 2
    assert read("old-1").status_code == 404
    assert read("new-1").status_code == 200


def test_the_retention_is_a_setting(make_app, database_url):
    app = make_app(database_url=database_url, malformed_event_retention_days=7)
    svc = app.extensions["gateway"]
    with svc.db.transaction() as session:
        session.add(
            MalformedEvent(
                event_id="week-old",
                body={},
                reasons=[],
                received_at=clock.now() - timedelta(days=8),
            )
        )
    assert housekeeping.prune(svc)["malformed_events"] == 1


@pytest.fixture
def timing_out(make_app, postgres_url):
    """An app on PostgreSQL whose statements time out after two seconds (its other statements,
    a few milliseconds each, well within it on a busy machine too). Its jobs run in the request,
    so none is still writing when the tables are emptied after the test."""
    truncate(postgres_url)
    yield make_app(
        database_url=postgres_url, database_statement_timeout_ms=2000, jobs_synchronous=True
    )
    truncate(postgres_url)


def test_a_malformed_event_is_a_503_when_the_database_cannot_keep_it(timing_out, postgres_url):
    """The table locked past the statement timeout: the database cannot answer, as when it is
    down, while valid events, which never touch the table, are recorded."""
    client = timing_out.test_client()
    headers = {"Authorization": f"Bearer {fetch_token(timing_out, 'events:write')}"}
    with psycopg.connect(postgres_url) as locker:
        locker.execute("LOCK TABLE malformed_events IN ACCESS EXCLUSIVE MODE")
        refused = client.post("/v1/events", json=malformed_fee("locked-1"), headers=headers)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        accepted = client.post("/v1/events", json=granted("2026-03-01"), headers=headers)
        assert accepted.status_code == 202
    assert kept(timing_out) == 0
    again = client.post("/v1/events", json=malformed_fee("locked-1"), headers=headers)
    assert again.status_code == 422 and kept(timing_out) == 1
    with timing_out.extensions["gateway"].db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_adds_the_table_and_its_downgrade_drops_it(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'm.sqlite3'}"
        if backend == "sqlite"
        else request.getfixturevalue("empty_database")
    )
    db = Database(url)
    try:
        db.upgrade("0018")
        assert "malformed_events" not in inspect(db.engine).get_table_names()
        db.upgrade()
        assert "malformed_events" in inspect(db.engine).get_table_names()
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO malformed_events (event_id, body, reasons, received_at)"
                    " VALUES ('e-1', '{}', '[]', '2026-01-01T00:00:00Z')"
                )
            )
        with db.engine.begin() as connection:
            config = alembic_config(db.url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0018")
        assert "malformed_events" not in inspect(db.engine).get_table_names()
        db.upgrade()
        assert "malformed_events" in inspect(db.engine).get_table_names()
    finally:
        db.engine.dispose()
