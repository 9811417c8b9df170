"""GET /v1/verifications/{id} and POST /v1/verifications/batch, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import update

from gateway.platform import clock
from gateway.store.models import Certification, Receipt, VerificationRecord
from gateway.usecases import lookup
from gateway.usecases.sweep import Scope
from jobs.cron import locked_sweep
from jobs.engine import outbox
from tests.support.clients import fetch_token
from tests.support.events import event
from tests.support.events import granted as event_granted
from tests.support.verification import ANSWER_KEYS, days_ago, record, record_every_status

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today

PUBLIC_KEYS = ANSWER_KEYS
ISSUER = {
    "name": "Certifying body (ISSUER_NAME not set)",
    "url": None,
    "contact": None,
    "logo": None,
}


@pytest.fixture
def app(database_url, make_app):
    """Jobs run synchronously in-process, so the sync job has written the record on return."""
    return make_app(database_url=database_url, jobs_synchronous=True)


@pytest.fixture
def answers(app):
    return record_every_status(app)


def test_lookup_answers_exactly_the_public_fields_and_nothing_private(client, answers):
    response = client.get("/v1/verifications/ACTIVE-1")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == PUBLIC_KEYS
    text = response.get_data(as_text=True)
    for private in ("ada@example.org", "M-ACTIVE-1", "points", "reasons", "fees", "member"):
        assert private not in text


def test_an_active_certification_is_valid_through_its_paid_through_date(client, answers):
    standing = answers["active"].body["standing"]
    body = client.get("/v1/verifications/ACTIVE-1").get_json()
    assert body == {
        "certification_id": "ACTIVE-1",
        "name": "Ada Lovelace",
        "credential": "RMA",
        "credential_name": "Registered Medical Assistant",
        "status": "active",
        "certified_since": standing["certified_on"],
        "valid_through": standing["fees"]["paid_through"],
        "verified_at": body["verified_at"],
        "issuer": ISSUER,
    }


@pytest.mark.parametrize("status", ["inactive", "lapsed", "revoked"])
def test_a_certification_not_in_good_standing_shows_its_status_and_no_valid_through(
    client, answers, status
):
    body = client.get(f"/v1/verifications/{status.upper()}-1").get_json()
    assert body["status"] == status
    assert body["valid_through"] is None
    assert body["certified_since"] == answers[status].body["standing"]["certified_on"]


def test_verified_at_is_the_utc_time_of_the_check(client, answers):
    before = clock.now().replace(microsecond=0)
    verified_at = datetime.fromisoformat(
        client.get("/v1/verifications/ACTIVE-1").json["verified_at"]
    )
    assert verified_at.utcoffset() == timedelta(0)
    assert before <= verified_at <= clock.now()


def test_unknown_certification_is_a_404_problem(client, answers):
    response = client.get("/v1/verifications/NO-SUCH-1")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 404 and "NO-SUCH-1" in problem["detail"]


#: A number pasted with white space around it: a space, a tab, a no-break space, a line end.
PADDED = [" ACTIVE-1 ", "ACTIVE-1 ", "\tACTIVE-1", "\u00a0ACTIVE-1", "ACTIVE-1\n"]
PADDED_ERROR = {
    "field": "certification_id",
    "message": "Remove the white space around the certification number.",
}


@pytest.mark.parametrize("number", PADDED)
def test_a_number_in_the_path_with_white_space_around_it_is_a_400_naming_it(
    client, answers, token_for, number
):
    """No number holds white space: a 404 would say the certification is not on record, where
    the client sent its number with what it was pasted with. The lookup (answered in front of
    Flask or not), a past day's and a receipt all say what is wrong."""
    bearer = token_for("verifications:read")
    path = f"/v1/verifications/{quote(number)}"
    for url, headers in [
        (path, {}),
        (path, bearer),
        (f"{path}?on={days_ago(1)}", bearer),
        (f"{path}/receipt", {}),
    ]:
        response = client.get(url, headers=headers)
        assert response.status_code == 400, url
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["errors"] == [PADDED_ERROR]
    assert client.get(f"/v1/verifications/{quote(number.strip())}").status_code == 200
    assert client.get("/v1/verifications/ACTIVE%201").status_code == 404  # a space within


def test_lookup_sends_cache_control_and_answers_304_to_its_etag(client, answers):
    first = client.get("/v1/verifications/ACTIVE-1")
    assert first.headers["Cache-Control"] == "public, no-cache"
    etag = first.headers["ETag"]
    again = client.get("/v1/verifications/ACTIVE-1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag


def test_an_if_match_the_record_fails_is_a_412_problem_and_star_matches(client, answers):
    etag = client.get("/v1/verifications/ACTIVE-1").headers["ETag"]
    # the ETag is weak: If-Match compares strongly, so no tag matches it, not even its own
    for sent in ('"x"', etag, etag.removeprefix("W/")):
        refused = client.get("/v1/verifications/ACTIVE-1", headers={"If-Match": sent})
        assert refused.status_code == 412
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["status"] == 412
    matched = client.get("/v1/verifications/ACTIVE-1", headers={"If-Match": "*"})
    assert matched.status_code == 200 and matched.get_json()["certification_id"] == "ACTIVE-1"
    both = {"If-Match": "*", "If-None-Match": etag}
    assert client.get("/v1/verifications/ACTIVE-1", headers=both).status_code == 304


def test_etag_does_not_depend_on_the_time_of_the_check(client, answers):
    first = client.get("/v1/verifications/ACTIVE-1")
    later = clock.now() + timedelta(hours=1)
    clock.set_now(later)  # the test's clock is put back after it
    second = client.get("/v1/verifications/ACTIVE-1")
    assert first.json["verified_at"] != second.json["verified_at"]
    assert first.headers["ETag"] == second.headers["ETag"]


def test_etag_changes_when_the_record_changes(app, client, answers):
    etag = client.get("/v1/verifications/ACTIVE-1").headers["ETag"]
    with app.extensions["gateway"].db.transaction() as session:
        session.execute(
            update(VerificationRecord)
            .where(VerificationRecord.certification_id == "ACTIVE-1")
            .values(name="Ada King")  # a change of name, synced
        )
    response = client.get("/v1/verifications/ACTIVE-1", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag


def test_a_record_behind_its_certifications_status_is_answered_from_the_history(
    app, client, answers
):
    with app.extensions["gateway"].db.transaction() as session:  # a stored status, not synced
        session.execute(
            update(Certification)
            .where(Certification.certification_id == "ACTIVE-1")
            .values(status="revoked")
        )
    assert client.get("/v1/verifications/ACTIVE-1").json["status"] == "active"  # the history's


def test_a_member_name_change_reaches_the_lookup(app, client, answers):
    update_name = event(
        "member.updated",
        {"last_name": "King"},
        cert="ACTIVE-1",
        occurred_at=f"{days_ago(1)}T12:00:00Z",
    )
    record(app, update_name)
    assert client.get("/v1/verifications/ACTIVE-1").json["name"] == "Ada King"


def test_lookup_with_a_verifications_token_answers_the_same_record(client, answers, token_for):
    anonymous = client.get("/v1/verifications/ACTIVE-1").json
    with_token = client.get(
        "/v1/verifications/ACTIVE-1", headers=token_for("verifications:read")
    ).json
    assert with_token == anonymous | {"verified_at": with_token["verified_at"]}


def test_lookup_refuses_a_bad_token_with_401(client, answers):
    response = client.get(
        "/v1/verifications/ACTIVE-1", headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/problem+json"


def test_a_lookup_with_credentials_other_than_a_bearer_token_is_anonymous(client, answers):
    anonymous = client.get("/v1/verifications/ACTIVE-1").json
    proxied = client.get(
        "/v1/verifications/ACTIVE-1", headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert proxied.status_code == 200
    assert proxied.json == anonymous | {"verified_at": proxied.json["verified_at"]}


def test_lookup_refuses_a_token_without_the_verifications_scope_with_403(
    client, answers, token_for
):
    response = client.get("/v1/verifications/ACTIVE-1", headers=token_for("events:write"))
    assert response.status_code == 403


# --- batch ------------------------------------------------------------------------------------


@pytest.fixture
def batch(client, token_for):
    headers = token_for("verifications:read")
    return lambda body: client.post("/v1/verifications/batch", json=body, headers=headers)


def test_batch_answers_in_order_with_unknown_ids_not_found(batch, answers):
    ids = ["LAPSED-1", "NOPE-1", "ACTIVE-1", "ACTIVE-1", "REVOKED-1"]
    response = batch({"certification_ids": ids})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["certification_id"] for r in results] == ids
    assert [r["status"] for r in results] == ["lapsed", "not_found", "active", "active", "revoked"]
    assert results[1] == {"certification_id": "NOPE-1", "status": "not_found"}
    assert all(set(r) == PUBLIC_KEYS for r in results if r["status"] != "not_found")


def test_batch_takes_one_hundred_ids(batch, answers):
    response = batch({"certification_ids": [f"X-{n}" for n in range(99)] + ["ACTIVE-1"]})
    assert response.status_code == 200
    assert response.json["results"][-1]["status"] == "active"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"certification_ids": [f"X-{n}" for n in range(101)]}, "certification_ids"),
        ({"certification_ids": []}, "certification_ids"),
        ({}, "certification_ids"),
        ({"certification_ids": ["A", 7]}, "certification_ids.1"),
        ({"certification_ids": ["A"], "extra": True}, "extra"),
        (["A"], "body"),
    ],
)
def test_batch_with_a_malformed_body_is_a_422_problem_naming_the_field(batch, body, field):
    response = batch(body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_a_batch_id_with_white_space_around_it_is_a_422_naming_it(batch, answers):
    """As every malformed field of a body is; an id that merely matches nothing is not_found."""
    response = batch({"certification_ids": ["ACTIVE-1", *PADDED, "ACTIVE 1"]})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    named = [f"certification_ids.{n}" for n in range(1, len(PADDED) + 1)]
    assert errors == [{**PADDED_ERROR, "field": field} for field in named]


def test_more_than_one_hundred_ids_says_the_limit(batch):
    response = batch({"certification_ids": [f"X-{n}" for n in range(101)]})
    assert response.get_json()["errors"] == [
        {"field": "certification_ids", "message": "Give 1 to 100 certification ids."}
    ]


def test_batch_needs_a_token(client):
    response = client.post("/v1/verifications/batch", json={"certification_ids": ["A"]})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_batch_needs_the_verifications_scope(client, token_for):
    response = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["A"]},
        headers=token_for("certifications:read"),
    )
    assert response.status_code == 403


def test_past_the_day_a_standing_changes_the_answer_is_todays_before_the_sweep(
    app, client, token_for
):
    """At 00:30 UTC the day after the paid-through day, the sweep has not run: the lookup must
    not say active, valid through yesterday."""
    [granted_answer] = record(app, event_granted(days_ago(30), cert="DUE-1"))
    paid_through = date.fromisoformat(granted_answer.body["standing"]["fees"]["paid_through"])
    assert client.get("/v1/verifications/DUE-1").get_json()["status"] == "active"
    clock.set_now(datetime.combine(paid_through + timedelta(days=1), time(0, 30), UTC))
    plain = client.get("/v1/verifications/DUE-1").get_json()
    assert (plain["status"], plain["valid_through"]) == ("inactive", None)
    [batched] = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["DUE-1"]},
        headers=token_for("verifications:read"),
    ).get_json()["results"]
    assert (batched["status"], batched["valid_through"]) == ("inactive", None)
    page = client.get("/verify?certification_id=DUE-1").get_data(as_text=True)
    assert "Inactive — not in good standing" in page and "Active" not in page


def test_after_the_sweep_and_before_its_sync_the_answer_is_the_recorded_status(
    app, database_url, make_app
):
    [granted_answer] = record(app, event_granted(days_ago(30), cert="DUE-2"))
    paid_through = date.fromisoformat(granted_answer.body["standing"]["fees"]["paid_through"])
    clock.set_now(datetime.combine(paid_through + timedelta(days=1), time(0, 30), UTC))
    idle = make_app(database_url=database_url, jobs="IN_SERVER")  # its jobs wait in the outbox
    summary = locked_sweep(idle.extensions["gateway"], Scope(as_of=clock.now().date()))
    assert summary.as_dict()["transitions"] == {"active->inactive": 1}
    body = idle.test_client().get("/v1/verifications/DUE-2").get_json()
    assert (body["status"], body["valid_through"]) == ("inactive", None)


def test_the_etag_changes_with_who_vouches(database_url, make_app, answers, client):
    first = client.get("/v1/verifications/ACTIVE-1")
    other = make_app(database_url=database_url, issuer_name="Another Body").test_client()
    headers = {"If-None-Match": first.headers["ETag"]}
    second = other.get("/v1/verifications/ACTIVE-1", headers=headers)
    assert second.status_code == 200 and second.get_json()["issuer"]["name"] == "Another Body"
    assert second.headers["ETag"] != first.headers["ETag"]


# --- a certification granted, its record not yet written --------------------------------------


@pytest.fixture
def idle(database_url, make_app):
    """An app whose jobs wait in the outbox: a grant is answered 202, its record not written."""
    return make_app(database_url=database_url, jobs="IN_SERVER")


def grant_unsynced(app, cert: str, certified_on: str) -> None:
    """Post a grant over HTTP; its sync job is left waiting."""
    headers = {"Authorization": f"Bearer {fetch_token(app, 'events:write')}"}
    response = app.test_client().post(
        "/v1/events", json=event_granted(certified_on, cert=cert), headers=headers
    )
    assert response.status_code == 202
    with app.extensions["gateway"].db.sessions() as session:
        assert session.get(VerificationRecord, cert) is None  # the sync job has not run


def test_a_certification_granted_is_found_before_its_record_is_written(idle):
    grant_unsynced(idle, "NEW-1", days_ago(30))
    client = idle.test_client()
    first = client.get("/v1/verifications/NEW-1")
    assert first.status_code == 200
    body = first.get_json()
    assert set(body) == PUBLIC_KEYS
    assert (body["certification_id"], body["name"], body["status"]) == (
        "NEW-1",
        "Ada Lovelace",
        "active",
    )
    assert body["certified_since"] == days_ago(30) and body["valid_through"] is not None
    assert first.headers["Cache-Control"] == "public, no-cache"
    etag = first.headers["ETag"]
    again = client.get("/v1/verifications/NEW-1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert client.get("/v1/verifications/NO-SUCH-1").status_code == 404

    svc = idle.extensions["gateway"]
    outbox.work_due(svc)  # the sync job writes the record: the same answer, the same ETag
    with svc.db.sessions() as session:
        assert session.get(VerificationRecord, "NEW-1") is not None
    synced = client.get("/v1/verifications/NEW-1")
    assert synced.headers["ETag"] == etag
    assert {**synced.get_json(), "verified_at": None} == {**body, "verified_at": None}


def test_a_batch_answers_a_certification_granted_before_its_record_is_written(idle):
    grant_unsynced(idle, "NEW-2", days_ago(30))
    headers = {"Authorization": f"Bearer {fetch_token(idle, 'verifications:read')}"}
    ids = ["NOPE-1", "NEW-2", "NEW-2"]
    response = idle.test_client().post(
        "/v1/verifications/batch", json={"certification_ids": ids}, headers=headers
    )
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == ["not_found", "active", "active"]
    assert results[0] == {"certification_id": "NOPE-1", "status": "not_found"}
    assert set(results[1]) == PUBLIC_KEYS and results[1]["name"] == "Ada Lovelace"


def test_the_verify_page_and_a_receipt_show_a_record_not_yet_written(idle):
    grant_unsynced(idle, "NEW-3", days_ago(30))
    client = idle.test_client()
    page = client.get("/verify?certification_id=NEW-3")
    assert page.status_code == 200
    assert "Active" in page.get_data(as_text=True)
    assert client.get("/verify?certification_id=NOPE-3").status_code == 404
    receipt = client.get("/v1/verifications/NEW-3/receipt")
    assert receipt.status_code == 200
    with idle.extensions["gateway"].db.sessions() as session:
        [kept] = session.query(Receipt).all()
    assert (kept.certification_id, kept.status) == ("NEW-3", "active")
    assert client.get("/v1/verifications/NOPE-3/receipt").status_code == 404


def test_a_certification_not_yet_certified_on_the_gateways_today_is_still_not_found(idle):
    today = clock.now().date()
    grant_unsynced(idle, "NEW-4", today.isoformat())
    clock.set_now(datetime.combine(today - timedelta(days=1), time(12), UTC))  # clock set back
    assert idle.test_client().get("/v1/verifications/NEW-4").status_code == 404


def test_a_lookup_of_an_unknown_number_reads_certifications_once_a_plain_hit_never(
    idle, monkeypatch
):
    grant_unsynced(idle, "NEW-5", days_ago(30))
    svc = idle.extensions["gateway"]
    outbox.work_due(svc)  # its record written
    statements = []
    read = svc.db.read

    def spy(statement, *args, **kwargs):
        statements.append(statement)
        return read(statement, *args, **kwargs)

    monkeypatch.setattr(svc.db, "read", spy)
    client = idle.test_client()
    assert client.get("/v1/verifications/NEW-5").status_code == 200
    assert statements == [lookup._RECORDS_OF]  # the plain path: the record's read alone
    statements.clear()
    assert client.get("/v1/verifications/NOPE-5").status_code == 404
    assert statements.count(lookup._UNRECORDED) == 1  # the view's, on the miss
