"""The plain public lookup (no token, query or conditional header) is answered before Flask's
request handling, and answers exactly as the view does: body, headers, limit, metrics, errors."""

from __future__ import annotations

import pytest

from gateway.web import plain_lookup
from tests.support.metrics import sample
from tests.support.verification import record_every_status

pytestmark = [pytest.mark.clock_sensitive, pytest.mark.usefixtures("within_one_minute")]

RULE = "/v1/verifications/<certification_id>"


@pytest.fixture
def app(database_url, make_app):
    return make_app(database_url=database_url, jobs_synchronous=True, verify_rate_limit="4/minute")


def test_a_plain_lookup_is_answered_before_flask_as_the_view_answers_it(app, client, dispatched):
    record_every_status(app)
    plain = client.get("/v1/verifications/ACTIVE-1", headers={"X-Request-ID": "plain-1"})
    assert dispatched == []
    # a conditional header that matches nothing: the view answers the same lookup with a 200
    viewed = client.get("/v1/verifications/ACTIVE-1", headers={"If-None-Match": '"other"'})
    assert dispatched == ["/v1/verifications/ACTIVE-1"]

    assert plain.status_code == viewed.status_code == 200
    body, expected = plain.get_json(), viewed.get_json()
    assert body.pop("verified_at") and expected.pop("verified_at")
    assert body == expected
    assert plain.get_data().endswith(b"\n") and b", " not in plain.get_data()  # compact, as jsonify
    for header in ("Content-Type", "ETag", "Cache-Control", "Content-Security-Policy"):
        assert plain.headers[header] == viewed.headers[header], header
    assert plain.headers["ETag"].startswith('W/"')
    assert plain.headers["Cache-Control"] == "public, no-cache"
    assert plain.headers["X-Request-ID"] == "plain-1"
    assert int(plain.headers["Content-Length"]) == len(plain.get_data())


def test_requests_that_are_not_plain_go_through_flask(app, client, dispatched, token_for):
    record_every_status(app)
    token = token_for("verifications:read")
    dispatched.clear()  # the token's request
    client.get("/v1/verifications/ACTIVE-1?on=2020-01-01")
    client.get("/v1/verifications/ACTIVE-1", headers=token)
    client.head("/v1/verifications/ACTIVE-1")
    client.get("/v1/verifications/ACTIVE-1", headers={"Range": "bytes=0-10"})
    assert dispatched == ["/v1/verifications/ACTIVE-1"] * 4


def test_unknown_numbers_and_refusals_are_answered_by_the_view_counted_once(client, dispatched):
    address = {"REMOTE_ADDR": "192.0.2.9"}
    answers = [client.get("/v1/verifications/NONE-1", environ_base=address) for _ in range(5)]
    assert [a.status_code for a in answers] == [404, 404, 404, 404, 429]
    assert answers[0].mimetype == "application/problem+json"
    assert answers[0].get_json()["detail"] == "No certification NONE-1 is on record."
    assert int(answers[4].headers["Retry-After"]) > 0
    assert len(dispatched) == 5  # Flask answered each, without counting it again


def test_plain_and_viewed_lookups_share_one_allowance(app, client):
    record_every_status(app)
    address = {"REMOTE_ADDR": "192.0.2.10"}
    statuses = [
        client.get("/v1/verifications/ACTIVE-1", environ_base=address).status_code,
        client.get("/v1/verifications/NONE-1", environ_base=address).status_code,
        client.get("/verify?certification_id=ACTIVE-1", environ_base=address).status_code,
        client.get("/v1/verifications/LAPSED-1", environ_base=address).status_code,
        client.get("/v1/verifications/ACTIVE-1", environ_base=address).status_code,
    ]
    assert statuses == [200, 404, 200, 200, 429]


def test_plain_lookups_are_counted_in_the_request_metrics(app, client):
    record_every_status(app)
    before = sample(client.get("/metrics").get_data(as_text=True), "gateway_http_requests_total",
                    endpoint=RULE, method="GET", status="200")  # fmt: skip
    assert client.get("/v1/verifications/ACTIVE-1").status_code == 200
    after = client.get("/metrics").get_data(as_text=True)
    counted = sample(
        after, "gateway_http_requests_total", endpoint=RULE, method="GET", status="200"
    )
    assert counted == before + 1
    assert sample(after, "gateway_http_request_duration_seconds_count", endpoint=RULE) >= 1


def test_a_failed_read_is_answered_by_the_view(app, client, dispatched, monkeypatch):
    record_every_status(app)
    calls = []

    def failing(db, policy, ids, **kwargs):
        calls.append(ids)
        if len(calls) == 1:
            raise RuntimeError("the read failed")
        return original(db, policy, ids, **kwargs)

    original = plain_lookup.lookup.records_today
    monkeypatch.setattr(plain_lookup.lookup, "records_today", failing)
    answer = client.get("/v1/verifications/ACTIVE-1")
    assert answer.status_code == 200  # the view read it again
    assert len(calls) == 2 and len(dispatched) == 1


def test_the_suite_checks_plain_answers_against_the_openapi_document(app, client, monkeypatch):
    record_every_status(app)
    monkeypatch.setattr(plain_lookup, "record_answer", lambda *args: {"status": "active"})
    with pytest.raises(AssertionError, match="does not match its documented schema"):
        client.get("/v1/verifications/ACTIVE-1")
