"""Hostile input: schemathesis fuzzes every operation of /openapi.json; the refusals it relies on.

The fuzzing is bounded (a few dozen examples per operation, derandomized: the same cases every run)
and runs on both databases, with a token carrying every scope.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    negative_data_rejection,
    positive_data_acceptance,
)

from gateway.schemas.events import EXAMPLE_EVENT
from gateway.schemas.responses import MAX_ERRORS
from gateway.usecases import intake
from gateway.usecases.clients import SCOPES
from gateway.web.openapi import build_spec
from gateway.web.security import MAX_HEADER_LINE, MAX_URL
from tests.support.clients import fetch_token, register_client
from tests.support.openapi_answers import routes_only

SCHEMA = schemathesis.openapi.from_dict(build_spec(routes_only()))


@schemathesis.deserializer("application/jose")
def _compact_jws(_context: object, response: object) -> str:
    """A receipt (a compact JWS) is text: checked against its documented string schema."""
    return response.content.decode()


CERT = EXAMPLE_EVENT["certification_id"]
NOTIFICATION = {
    "id": "n-1",
    "organization_id": "dry-run",
    "event_type": "badge.state.changed",
    "occurred_at": "2026-01-01T00:00:00Z",
}

# Checks that cannot hold for an operation by design, with the reason.
NOT_APPLICABLE = {
    # a well-shaped event may still break a certification rule: 422 with rule ids
    "POST /v1/events": [positive_data_acceptance],
    # `as_of` before the certification was granted: 422
    "GET /v1/certifications/{certification_id}": [positive_data_acceptance],
    # a well-formed URL may resolve to no public address: 422
    "POST /v1/subscriptions": [positive_data_acceptance],
    # `on` after today (no schema can say "not in the future"): 422
    "GET /v1/verifications/{certification_id}": [positive_data_acceptance],
    "GET /v1/verifications/{certification_id}/receipt": [positive_data_acceptance],
    # `since` whose offset moves it off the calendar (e.g. year 1 at +01:00): 422
    "GET /v1/receipts": [positive_data_acceptance],
    # `occurred_at` outside 1900 to 2999 (no schema keyword bounds a date-time): 400
    "POST /webhooks/credly": [positive_data_acceptance],
    # a string that is not a genuine receipt: the page says so with 422
    "GET /verify/receipt": [positive_data_acceptance],
    # `GET /v1/verifications/batch` is the lookup of certification "batch": Allow lists GET;
    # `on` after today: 422
    "POST /v1/verifications/batch": [allow_header_conformance, positive_data_acceptance],
    # `GET /v1/events/batch` is the read of event "batch": Allow lists GET; a malformed event in
    # a well-formed batch is answered in its own result (422), the batch with 200
    "POST /v1/events/batch": [allow_header_conformance, negative_data_rejection],
    # a credential far over its length limit may be over the 64 KiB body limit too: 413, not one
    # of the refusals this check expects
    "POST /v1/credentials/verify": [negative_data_rejection],
    "POST /verify/credential": [negative_data_rejection],
}


def _seeded_app(make_app: Callable[..., Flask], database_url: str, **settings: object) -> Flask:
    """An app whose database holds the document's example event (so its examples are found)."""
    app = make_app(database_url=database_url, jobs_synchronous=True, **settings)
    svc = app.extensions["gateway"]
    answer = intake.submit_event(svc, EXAMPLE_EVENT)
    assert answer.status == 202, answer.body
    svc.dispatcher.dispatch(answer.outbox_ids)
    return app


def _bearer(app: Flask) -> dict[str, str]:
    return {"Authorization": f"Bearer {fetch_token(app, ' '.join(SCOPES))}"}


@pytest.fixture
def fuzzed(database_url, make_app) -> tuple[Flask, dict[str, str]]:
    """The seeded app and headers with a token of every scope."""
    app = _seeded_app(make_app, database_url)
    return app, _bearer(app)


@SCHEMA.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_get_no_5xx_and_answers_match_the_document(case, fuzzed):
    app, headers = fuzzed
    case.call_and_validate(
        app=app, headers=headers, excluded_checks=NOT_APPLICABLE.get(case.operation.label, [])
    )


def test_successful_answers_match_their_documented_schemas(database_url, make_app):
    app = _seeded_app(make_app, database_url, webhook_allow_private_targets=True)
    bearer = _bearer(app)
    client_id, secret = register_client(app, "verifications:read")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    def call(method: str, path: str, status: int, headers: dict | None = None, **kw: object):
        case = SCHEMA[path][method].Case(**kw)
        response = case.call_and_validate(app=app, headers=headers or bearer)
        assert response.status_code == status, (method, path, response.text)
        return response

    call("POST", "/v1/events", 202, body=EXAMPLE_EVENT)  # a replay: the first answer again
    new = {**EXAMPLE_EVENT, "event_id": "evt-0002", "certification_id": "CERT-456"}
    batch = call("POST", "/v1/events/batch", 200, body={"events": [EXAMPLE_EVENT, new, {}]})
    assert [r["status"] for r in batch.json()["results"]] == [202, 202, 422]
    call("GET", "/v1/events/{event_id}", 200, path_parameters={"event_id": "evt-0001"})
    call(
        "GET",
        "/v1/certifications/{certification_id}",
        200,
        path_parameters={"certification_id": CERT},
    )
    call("GET", "/v1/credentials", 200)
    call(
        "GET",
        "/v1/verifications/{certification_id}",
        200,
        path_parameters={"certification_id": CERT},
    )
    call("POST", "/v1/verifications/batch", 200, body={"certification_ids": [CERT, "NOPE-1"]})
    call("POST", "/webhooks/credly", 200, body=NOTIFICATION)
    call(
        "POST",
        "/oauth/token",
        200,
        headers={"Authorization": f"Basic {basic}"},
        body={"grant_type": "client_credentials"},
        media_type="application/x-www-form-urlencoded",
    )
    created = call(
        "POST",
        "/v1/subscriptions",
        201,
        body={"url": "https://127.0.0.1:9/hook", "certification_ids": [CERT]},
    ).json()
    sub = {"subscription_id": created["id"]}
    call("GET", "/v1/subscriptions", 200)
    call("GET", "/v1/subscriptions/{subscription_id}", 200, path_parameters=sub)
    for method in ("POST", "DELETE"):
        path = "/v1/subscriptions/{subscription_id}/certifications"
        call(method, path, 200, path_parameters=sub, body={"certification_ids": ["X-1"]})
    call("GET", "/v1/subscriptions/{subscription_id}/deliveries", 200, path_parameters=sub)
    call("DELETE", "/v1/subscriptions/{subscription_id}", 204, path_parameters=sub)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/verify"):
        call("GET", path, 200)
    cert = {"certification_id": CERT}
    issued = call(
        "GET", "/v1/certifications/{certification_id}/credential", 200, path_parameters=cert
    )
    checked = call("POST", "/v1/credentials/verify", 200, body={"credential": issued.text}).json()
    assert checked["verified"] is True, checked
    status_list = {"list_id": 0, "purpose": "suspension"}
    call("GET", "/credentials/status/{list_id}/{purpose}", 200, path_parameters=status_list)
    call("GET", "/issuer", 200)
    call("GET", "/issuer/achievements/{code}", 200, path_parameters={"code": "RMA"})
    call("GET", "/verify/credential", 200)
    page = {"credential": issued.text}
    call(
        "POST", "/verify/credential", 200, body=page, media_type="application/x-www-form-urlencoded"
    )


# --- what the fuzzing relies on, one by one -----------------------------------------------

OVER_LIMIT = b'{"certification_ids": ["' + b"x" * (64 * 1024) + b'"]}'
BODY_ENDPOINTS = [
    ("/v1/events", "application/json"),
    ("/v1/verifications/batch", "application/json"),
    ("/webhooks/credly", "application/json"),
    ("/oauth/token", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("path", "content_type"), BODY_ENDPOINTS)
def test_a_body_over_64_kib_is_413_problem_json(client, token_for, path, content_type):
    headers = {**token_for(" ".join(SCOPES)), "Content-Type": content_type}
    response = client.post(path, data=OVER_LIMIT, headers=headers)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 413


@pytest.mark.parametrize(("path", "content_type"), BODY_ENDPOINTS)
def test_a_chunked_body_over_64_kib_is_413_not_cut_short(client, token_for, path, content_type):
    headers = {
        **token_for(" ".join(SCOPES)),
        "Content-Type": content_type,
        "Transfer-Encoding": "chunked",  # no Content-Length: the server ends the stream
    }
    response = client.post(
        path,
        input_stream=io.BytesIO(OVER_LIMIT),
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_a_chunked_body_under_the_limit_is_read_whole(client):
    response = client.post(
        "/webhooks/credly",
        input_stream=io.BytesIO(json.dumps(NOTIFICATION).encode()),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200, response.get_json()


def test_nul_in_a_path_value_is_404_problem_not_a_database_error(client, token_for):
    headers = token_for("certifications:read")
    for path in ("/v1/certifications/A%00B", "/v1/events/A%00B", "/v1/verifications/A%00B"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1//verifications/CERT-123"),
        ("POST", "//v1/events"),
        ("GET", "/v1/events//CERT-123"),
        ("GET", "/verify//proof?certification_id=CERT-123"),
    ],
)
def test_a_path_with_an_empty_segment_is_a_404_problem_not_a_redirect(
    client, token_for, method, path
):
    """Werkzeug redirected such a path (308, an HTML page) to the path without the empty segment,
    another resource (`/v1/events//X` to the event X) than the one named."""
    response = client.open(path, method=method, headers=token_for("events:write"), json={})
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert "Location" not in response.headers


@pytest.mark.parametrize("path", ["/verify", "/verify/proof"])
def test_a_control_character_in_the_verify_page_number_is_not_found_nor_written_back(client, path):
    response = client.get(f"{path}?certification_id=A%00B%07")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "\x00" not in page and "\x07" not in page and "A\ufffdB\ufffd" in page


def test_nul_in_event_text_is_422_naming_the_field(client, token_for):
    event = {**EXAMPLE_EVENT, "data": {**EXAMPLE_EVENT["data"], "credential": "R\x00MA"}}
    response = client.post("/v1/events", json=event, headers=token_for("events:write"))
    assert response.status_code == 422
    assert {"field": "data.credential", "message": "Must not contain NUL characters."} in (
        response.get_json()["errors"]
    )


def test_nul_in_a_batch_id_is_422_naming_it(client, token_for):
    response = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["OK-1", "A\x00B"]},
        headers=token_for("verifications:read"),
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "certification_ids.1"


def test_nul_in_a_subscription_is_422_naming_the_field(client, token_for):
    response = client.post(
        "/v1/subscriptions",
        json={"url": "https://hooks.example.org/a\x00b", "certification_ids": ["C\x00D"]},
        headers=token_for("verifications:read"),
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert {"url", "certification_ids.0"} <= fields


def test_nul_in_a_client_id_is_invalid_client_not_a_database_error(client):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "x"},
    )
    assert response.status_code == 401  # as every failed client authentication
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "body",
    [b'{"event_id": "\\ud800"}', b"[" * 50_000 + b"]" * 50_000],
    ids=["lone-surrogate", "nested-too-deep"],
)
def test_json_python_cannot_use_is_400_problem(client, token_for, body):
    headers = {**token_for("events:write"), "Content-Type": "application/json"}
    response = client.post("/v1/events", data=body[: 60 * 1024], headers=headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    hook = client.post("/webhooks/credly", data=body[: 60 * 1024], headers=headers)
    assert hook.status_code == 400 and hook.mimetype == "application/problem+json"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le"])
@pytest.mark.parametrize("path", ["/v1/events", "/v1/events?via=flask", "/v1/verifications/batch"])
def test_json_in_another_encoding_than_utf_8_is_400_naming_the_body(
    client, token_for, path, encoding
):
    """JSON is UTF-8 (RFC 8259, 8.1): Python's parser would read UTF-16 and UTF-32 too, so such a
    body was taken where its `charset` would have been refused. A UTF-8 byte order mark is
    ignored, as RFC 8259 allows."""
    headers = {**token_for("events:write verifications:read"), "Content-Type": "application/json"}
    text = json.dumps(EXAMPLE_EVENT if path.startswith("/v1/events") else {"certification_ids": []})
    response = client.post(path, data=text.encode(encoding), headers=headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.get_json()["errors"] == [{"field": "body", "message": "Malformed JSON."}]
    utf8 = client.post(path, data=text.encode("utf-8-sig"), headers=headers)
    assert utf8.status_code != 400, utf8.get_json()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", '{"event_id": "nan-1", "data": {"points": %s}}'),
        ("/v1/events?via=flask", '{"event_id": "nan-1", "data": {"points": %s}}'),
        ("/v1/events/batch", '{"events": [{"event_id": "nan-1", "data": {"x": %s}}]}'),
        ("/v1/verifications/batch", '{"certification_ids": ["CERT-1"], "on": %s}'),
        ("/v1/credentials/verify", '{"credential": %s}'),
        ("/v1/subscriptions", '{"url": "https://example.org/h", "notice_days": %s}'),
    ],
)
def test_a_number_json_has_not_is_400_naming_the_body(client, token_for, path, body, constant):
    """NaN and the infinities are not JSON numbers (RFC 8259, 6): Python's parser reads them,
    other parsers refuse them."""
    headers = {**token_for("events:write verifications:read"), "Content-Type": "application/json"}
    response = client.post(path, data=body % constant, headers=headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert [error["field"] for error in response.get_json()["errors"]] == ["body"]
    if path == "/v1/events":  # nothing kept under its id, as for any body that is not JSON
        assert client.get("/v1/events/nan-1", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/events", b'{"event_id": "\\ud800"}', "event_id"),
        (
            "/v1/events?via=flask",
            b'{"data": {"member": {"first_name": "A\\udc00"}}}',
            "data.member.first_name",
        ),
        (
            "/v1/events/batch",
            b'{"events": [{"event_id": "a"}, {"event_id": "b\\ud800"}]}',
            "events.1.event_id",
        ),
        ("/v1/events/batch", b'{"events": [{"event_id": "a", "\\ud800": 1}]}', "events.0"),
        ("/v1/events", b'"\\ud800"', "body"),
    ],
)
def test_a_lone_surrogate_is_400_naming_where(client, token_for, path, body, field):
    """A batch's item, or an event's field, with text that is not Unicode is named as a field is."""
    headers = {**token_for("events:write"), "Content-Type": "application/json"}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error["field"] == field and "lone surrogate" in error["message"], error


REPEATED = '"certification_id": "NOT-THIS-ONE", "certification_id": "CERT-123"'


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        (
            "/v1/events",
            f'{{"event_id": "e-1", {REPEATED}}}',
            "certification_id",
            'Key "certification_id"',
        ),
        (
            "/v1/events?via=flask",
            f'{{"event_id": "e-1", {REPEATED}}}',
            "certification_id",
            'Key "certification_id"',
        ),
        (
            "/v1/events",
            '{"event_id": "e-1", "data": {"membership_year": 2099, "membership_year": 2025}}',
            "data.membership_year",
            'Key "membership_year" appears more than once in data.',
        ),
        (
            "/v1/events/batch",
            f'{{"events": [{{"event_id": "e-1"}}, {{"event_id": "e-2", {REPEATED}}}]}}',
            "events.1.certification_id",
            'Key "certification_id" appears more than once in events.1.',
        ),
        (
            "/v1/verifications/batch",
            '{"certification_ids": ["A"], "certification_ids": ["B"]}',
            "certification_ids",
            'Key "certification_ids" appears more than once.',
        ),
        (
            "/v1/subscriptions",
            '{"url": "https://a.example.org/h", "url": "https://b.example.org/h"}',
            "url",
            'Key "url" appears more than once.',
        ),
        (
            "/v1/credentials/verify",
            '{"credential": "a", "credential": "b"}',
            "credential",
            'Key "credential" appears more than once.',
        ),
    ],
)
def test_a_key_twice_in_an_object_is_400_naming_it(client, token_for, path, body, field, message):
    """A proxy or a log reading the first of two keys would see another request than the gateway,
    which would read the last: such a body is refused as one that is not JSON is."""
    headers = {**token_for(" ".join(SCOPES)), "Content-Type": "application/json"}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error["field"] == field and error["message"].startswith(message), error
    hook = {**NOTIFICATION, "id": "n-2"}
    twice = json.dumps(hook).replace('"id": "n-2"', '"id": "n-1", "id": "n-2"')
    assert client.post("/webhooks/credly", data=twice, headers=headers).status_code == 400


def test_an_event_type_that_is_not_a_string_is_422_not_500(client, token_for):
    event = {**EXAMPLE_EVENT, "type": {"nested": True}}
    response = client.post("/v1/events", json=event, headers=token_for("events:write"))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "type"


@pytest.mark.parametrize(
    "points",
    [
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "1e-400",
        "1e400",
        '"12.5"',  # a number in a string
        "true",
    ],
)
def test_points_not_a_json_number_in_precision_are_422_naming_the_field(client, token_for, points):
    event = {
        **EXAMPLE_EVENT,
        "event_id": f"ccp-{points}",
        "type": "ccp.activity_recorded",
        "data": {
            "activity_id": "A-1",
            "category": "formal_education",
            "completed_on": "2026-01-10",
            "points": "POINTS",
        },
    }
    body = json.dumps(event).replace('"POINTS"', points)
    headers = {**token_for("events:write"), "Content-Type": "application/json"}
    for path in ("/v1/events", "/v1/events?via=flask"):  # answered before Flask, and by the view
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["errors"][0]["field"] == "data.points"
    batch = client.post("/v1/events/batch", data=f'{{"events": [{body}]}}', headers=headers)
    [result] = batch.get_json()["results"]
    assert result["status"] == 422 and result["body"]["errors"][0]["field"] == "data.points"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/certifications/{}"),
        ("GET", "/v1/events/{}"),
        ("DELETE", "/v1/subscriptions/{}"),
        ("GET", "/verify?number={}"),
        ("GET", "/v1/verifications/{}"),
    ],
)
def test_a_url_or_header_over_the_limit_is_answered_as_every_operation_documents(
    client, token_for, method, path
):
    headers = token_for(" ".join(SCOPES))
    long_url = client.open(path.format("A" * MAX_URL), method=method, headers=headers)
    assert long_url.status_code == 414 and long_url.mimetype == "application/problem+json"
    assert long_url.get_json()["title"] == "URI Too Long"  # RFC 9110's, as the server's own 414
    padded = {**headers, "X-Padding": "p" * MAX_HEADER_LINE}
    long_header = client.open(path.format("CERT-1"), method=method, headers=padded)
    assert long_header.status_code == 431 and long_header.mimetype == "application/problem+json"
    for operations in client.get("/openapi.json").get_json()["paths"].values():
        for operation in operations.values():
            assert {"414", "431"} <= operation["responses"].keys(), operation["summary"]


def _event(**changes: object) -> dict:
    return {**EXAMPLE_EVENT, **changes}


@pytest.mark.parametrize("field", ["event_id", "certification_id"])
def test_an_id_ending_in_a_newline_is_422_naming_it(client, token_for, field):
    event = _event(**{field: f"{EXAMPLE_EVENT[field]}\n"})
    for path in ("/v1/events", "/v1/events?via=flask"):
        response = client.post(path, json=event, headers=token_for("events:write"))
        assert response.status_code == 422, response.get_json()
        assert [e["field"] for e in response.get_json()["errors"]] == [field]


def test_an_event_id_may_hold_any_characters_but_control_ones(client, token_for):
    headers = token_for("events:write certifications:read")
    response = client.post("/v1/events", json=_event(event_id="évt 1/ü"), headers=headers)
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == "/v1/events/%C3%A9vt%201/%C3%BC"
    assert client.get(response.headers["Location"], headers=headers).status_code == 200
    for refused_id in ("evt\t1", "   "):
        refused = client.post("/v1/events", json=_event(event_id=refused_id), headers=headers)
        assert [e["field"] for e in refused.get_json()["errors"]] == ["event_id"]


@pytest.mark.parametrize("day", ["20250301", "2025-W09-6", "2025-060"])
def test_a_day_written_otherwise_than_yyyy_mm_dd_is_refused_naming_it(client, token_for, day):
    data = {**EXAMPLE_EVENT["data"], "certified_on": day}
    headers = token_for("events:write certifications:read")
    response = client.post("/v1/events", json=_event(data=data), headers=headers)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["data.certified_on"]
    assert client.post("/v1/events", json=EXAMPLE_EVENT, headers=headers).status_code == 202
    as_of = client.get(f"/v1/certifications/{CERT}?as_of={day}", headers=headers)
    assert as_of.status_code == 400
    assert [e["field"] for e in as_of.get_json()["errors"]] == ["as_of"]


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_a_blank_name_is_422_naming_it(client, token_for, name):
    member = {**EXAMPLE_EVENT["data"]["member"], "last_name": name}
    event = _event(data={**EXAMPLE_EVENT["data"], "member": member})
    response = client.post("/v1/events", json=event, headers=token_for("events:write"))
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["data.member.last_name"]


def test_a_null_in_a_batch_is_that_item_refused_not_the_batch(client, token_for):
    body = {"events": [EXAMPLE_EVENT, None]}
    response = client.post("/v1/events/batch", json=body, headers=token_for("events:write"))
    assert response.status_code == 200, response.get_json()
    first, second = response.get_json()["results"]
    assert first["status"] == 202
    assert second["status"] == 422 and second["body"]["errors"][0]["field"] == "body"


def _unknown_keys(count: int) -> dict[str, int]:
    return {f"k{n}": 0 for n in range(count)}


def test_a_problem_lists_its_first_errors_and_says_how_many_more_there_were(client, token_for):
    """A body of a few KiB can name thousands of bad fields: each listed, the answer was megabytes
    (9 MB for 180,000 unknown keys in 2 MiB), built and sent at the cost of the server's CPU."""
    headers = token_for("events:write verifications:read")
    subscription = {"url": "https://hooks.example.org/x", "certification_ids": ["CERT-1"]}
    batch = {"events": [EXAMPLE_EVENT]}
    event = {**EXAMPLE_EVENT, "data": {**EXAMPLE_EVENT["data"], **_unknown_keys(600)}}
    sent = [
        ("/v1/subscriptions", {**subscription, **_unknown_keys(1000)}),
        ("/v1/events/batch", {**batch, **_unknown_keys(1000)}),
        ("/v1/events", event),  # answered before Flask
        ("/v1/events?via=flask", event),
    ]
    as_json = {**headers, "Content-Type": "application/json"}
    refused = [client.post(path, data=json.dumps(body), headers=as_json) for path, body in sent]
    problems = [answer.get_json() for answer in refused]
    assert [answer.status_code for answer in refused] == [422] * 4, problems
    in_batch = client.post("/v1/events/batch", json={"events": [event]}, headers=headers)
    problems.append(in_batch.get_json()["results"][0]["body"])
    for problem, errors in zip(problems, [1000, 1000, 600, 600, 600], strict=True):
        assert len(problem["errors"]) == MAX_ERRORS
        assert problem["detail"].endswith(f" {errors - MAX_ERRORS} more errors are not listed.")
        assert all(error["message"] == "Unknown field." for error in problem["errors"])
    for problem in problems[:2]:  # whole bodies: their first unknown keys, read no further
        assert [error["field"] for error in problem["errors"]] == [f"k{n}" for n in range(100)]
    few = {**subscription, **_unknown_keys(MAX_ERRORS)}
    listed = client.post("/v1/subscriptions", json=few, headers=headers).get_json()
    assert len(listed["errors"]) == MAX_ERRORS
    assert listed["detail"] == "The subscription is malformed."


@pytest.mark.parametrize(
    ("path", "fields", "count", "most"),
    [
        ("/v1/subscriptions", b'"url": "https://hooks.example.org/x", ', 20_000, 10_000),
        ("/v1/verifications/batch", b"", 5_000, 100),
    ],
)
def test_a_list_over_its_length_is_one_error_its_items_unread(
    client, token_for, path, fields, count, most
):
    """180,000 numbers where 1 to 10,000 ids go were as many errors, each item read to say so."""
    ids = b",".join([b"1e9999999"] * count)
    body = b'{%s"certification_ids": [%s]}' % (fields, ids)
    headers = {**token_for("verifications:read"), "Content-Type": "application/json"}
    problem = client.post(path, data=body, headers=headers).get_json()
    assert problem["status"] == 422, problem
    message = f"Give 1 to {most} certification ids."
    assert problem["errors"] == [{"field": "certification_ids", "message": message}]
