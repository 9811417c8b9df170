"""POST /v1/events/batch: many events in one request, each answered as if sent alone, in order."""

from __future__ import annotations

import json

import pytest

from gateway.store.models import Event, OutboxItem
from tests.support.events import ccp, event, fee, granted, revoked

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def app(database_url, make_app):
    """Jobs run synchronously in-process so the tests see their results."""
    return make_app(database_url=database_url, jobs_synchronous=True)


@pytest.fixture
def headers(token_for):
    return token_for("events:write")


@pytest.fixture
def batch(client, headers):
    def send(events, **kw):
        return client.post("/v1/events/batch", json={"events": events}, headers=headers, **kw)

    return send


@pytest.fixture
def post(client, headers):
    return lambda body: client.post("/v1/events", json=body, headers=headers)


def _results(response) -> list[dict]:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def _comparable(body: dict) -> dict:
    """An answer without what differs between two certifications: ids, times, job ids."""
    standing = {
        k: v
        for k, v in body["standing"].items()
        if k not in ("certification_id", "member", "jobs", "badge", "verification")
    }
    return {"actions": body["actions"], "standing": standing}


HISTORY = [
    ("granted", "2019-05-10"),
    ("fee", 2020, "2020-05-02"),
    ("ccp", "A-1", "2020-06-01"),
    ("fee", 2021, "2021-05-20"),
    ("fee", 2019, "2019-05-10"),  # late and out of order
    ("ccp", "A-2", "2021-09-01"),
    ("fee", 2021, "2021-05-21"),  # the same year twice: a rule violation
    ("revoked", "2022-01-15"),
    ("fee", 2022, "2022-05-01"),  # after the revocation
]


def _history(cert: str) -> list[dict]:
    builders = {
        "granted": lambda d: granted(d, cert=cert),
        "fee": lambda y, d: fee(y, d, cert=cert),
        "ccp": lambda a, d: ccp(f"{cert}-{a}", d, cert=cert),
        "revoked": lambda d: revoked(d, cert=cert),
    }
    return [builders[kind](*args) for kind, *args in HISTORY]


def test_a_batch_answers_what_the_same_events_sent_one_by_one_answer(batch, post):
    alone = [post(body) for body in _history("ALONE")]
    together = _results(batch(_history("TOGETHER")))
    assert [r["status"] for r in together] == [a.status_code for a in alone]
    assert 422 in [r["status"] for r in together] and 202 in [r["status"] for r in together]
    for one, result in zip(alone, together, strict=True):
        if one.status_code == 202:
            assert _comparable(result["body"]) == _comparable(one.get_json())
        else:
            rules = [e["rule"] for e in result["body"]["errors"]]
            assert rules == [e["rule"] for e in one.get_json()["errors"]]


def test_later_events_see_earlier_ones_and_each_result_says_what_happened(app, batch):
    early = fee(2027, "2026-11-01", cert="NEW", event_id="early")
    events = [
        early,  # before its grant: unknown certification, so not recorded
        granted("2026-03-01", cert="NEW"),
        ccp("NEW-A", "2026-06-01", cert="NEW"),
        {"type": "renewal.fee_paid"},  # malformed
        granted("2026-03-01", cert="NEW"),  # a second grant breaks CERT-EXISTS
        early,  # judged again, now that the certification exists
    ]
    results = _results(batch(events))
    assert [r["status"] for r in results] == [404, 202, 202, 422, 422, 202]
    assert results[0]["body"]["errors"][0]["rule"] == "CERT-UNKNOWN"
    assert results[1]["body"]["actions"] == ["issue_badge", "sync_verification"]
    assert results[1]["location"] == f"/v1/events/{events[1]['event_id']}"
    assert results[2]["body"]["standing"]["ccp"]["points_earned"] == 10
    assert results[3]["location"] is None
    assert "event_id" in [e["field"] for e in results[3]["body"]["errors"]]
    assert results[4]["body"]["errors"][0]["rule"] == "CERT-EXISTS"
    assert results[5]["body"]["standing"]["fees"]["paid_through"] == "2028-03-31"
    assert not any(r["replayed"] for r in results)
    svc = app.extensions["gateway"]
    with svc.db.sessions() as session:
        stored = {e.event_id: e.status for e in session.query(Event)}
        jobs = session.query(OutboxItem).filter_by(certification_id="NEW").count()
    # The 404 and the malformed event are not recorded; the rejection is, for audit.
    assert stored == {
        "early": "accepted",
        events[1]["event_id"]: "accepted",
        events[2]["event_id"]: "accepted",
        events[4]["event_id"]: "rejected",
    }
    assert jobs == sum(len(r["body"]["actions"]) for r in results if r["status"] == 202)


def test_the_second_event_of_a_new_certification_shows_the_first_ones_jobs(batch):
    first, second = _results(
        batch([granted("2026-03-01", cert="JOBS"), fee(2027, "2026-11-01", cert="JOBS")])
    )
    first_jobs = [j["kind"] for j in first["body"]["standing"]["jobs"]]
    second_jobs = [j["kind"] for j in second["body"]["standing"]["jobs"]]
    assert first_jobs == ["sync_verification", "issue_badge"]  # most recent first
    assert second_jobs[len(second["body"]["actions"]) :] == first_jobs


def test_a_batch_sent_again_is_replayed_and_has_no_further_effect(app, batch):
    events = [granted("2026-03-01", cert="R"), fee(2027, "2026-11-01", cert="R"), {"bad": 1}]
    first = _results(batch(events))
    svc = app.extensions["gateway"]
    with svc.db.sessions() as session:
        jobs_before = session.query(OutboxItem).count()
    again = _results(batch(events))
    assert [r["status"] for r in again] == [r["status"] for r in first]
    assert [r["replayed"] for r in again] == [True, True, False]
    assert [r["body"] for r in again[:2]] == [r["body"] for r in first[:2]]
    with svc.db.sessions() as session:
        assert session.query(OutboxItem).count() == jobs_before
        assert session.query(Event).count() == 2


def test_an_event_twice_in_one_batch_is_replayed_or_a_conflict(batch):
    grant = granted("2026-03-01", cert="TWICE")
    changed = {**grant, "data": {**grant["data"], "certified_on": "2026-02-01"}}
    results = _results(batch([grant, grant, changed]))
    assert [r["status"] for r in results] == [202, 202, 409]
    assert [r["replayed"] for r in results] == [False, True, False]
    assert results[1]["body"] == results[0]["body"]
    assert results[2]["body"]["errors"][0]["field"] == "event_id"


def test_a_batch_replays_an_event_sent_alone_before(post, batch):
    alone = post(granted("2026-03-01", cert="SOLO", event_id="solo-1"))
    [result] = _results(batch([granted("2026-03-01", cert="SOLO", event_id="solo-1")]))
    assert result["replayed"] is True and result["body"] == alone.get_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": [granted("2026-03-01")] * 101}, "events"),
        ({"events": {"event_id": "x"}}, "events"),
        ({}, "events"),
        ({"events": [], "extra": 1}, "extra"),
        ([granted("2026-03-01")], "body"),
    ],
)
def test_a_malformed_batch_is_a_422_naming_the_field(client, headers, body, field):
    response = client.post("/v1/events/batch", json=body, headers=headers)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_a_batch_may_be_larger_than_one_event_may_be_but_not_over_1_mib(client, headers):
    names = {"first_name": "x" * 200, "last_name": "y" * 200, "email": "long@example.org"}
    many = [
        event("member.updated", names, cert=f"{n:03d}" + "C" * 125, event_id=f"{n:03d}" + "E" * 125)
        for n in range(100)
    ]
    body = json.dumps({"events": many})
    assert 64 * 1024 < len(body) < 1024 * 1024
    response = client.post(
        "/v1/events/batch", data=body, content_type="application/json", headers=headers
    )
    results = _results(response)
    assert [r["status"] for r in results] == [404] * 100  # answered: none was granted
    too_big = json.dumps({"events": [{"padding": "y" * 1024 * 1024}]})
    response = client.post(
        "/v1/events/batch", data=too_big, content_type="application/json", headers=headers
    )
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_a_batch_needs_an_events_write_token(client, token_for):
    body = {"events": [granted("2026-03-01")]}
    assert client.post("/v1/events/batch", json=body).status_code == 401
    reader = token_for("certifications:read")
    assert client.post("/v1/events/batch", json=body, headers=reader).status_code == 403
