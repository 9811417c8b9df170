"""HEAD and OPTIONS on every route: a HEAD is answered with the headers a GET would be, its
`Content-Length` too, and no body (RFC 9110 9.3.2); an OPTIONS with `204 No Content` and `Allow`
naming the URL's methods, or the usual 404 problem for a URL no route serves."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support.events import granted
from tests.support.verification import record_every_status

pytestmark = pytest.mark.clock_sensitive

#: Headers that differ between two answers to the same request.
PER_ANSWER = {"X-Request-ID", "Receipt-Reference", "Date"}  # Date: the second each is made


@pytest.fixture
def app(database_url, make_app) -> Flask:
    made = make_app(database_url=database_url, jobs_synchronous=True)
    record_every_status(made)
    return made


def path_of(app: Flask, rule: str) -> str:
    """A URL the rule serves, naming things on record where there are some."""
    kid = app.extensions["gateway"].keys.signing_kid()
    values = {
        "<path:filename>": "verify.css",
        "<path:kid>": kid,
        "<path:event_id>": "no-such-event",
        "<certification_id>": "ACTIVE-1",
        "<subscription_id>": "sub_none",
        "<int:list_id>": "0",
        "<purpose>": "revocation",
        "<code>": "RMA",
    }
    for placeholder, value in values.items():
        rule = rule.replace(placeholder, value)
    assert "<" not in rule, rule
    return rule


def test_every_head_answers_the_headers_and_length_of_the_get(app, token_for):
    client = app.test_client()
    bearer = token_for("verifications:read certifications:read events:write")
    client.get("/v1/certifications/ACTIVE-1/credential", headers=bearer)  # a status list's entry
    number = "?certification_id=LAPSED-1"
    queries = {"/verify": number, "/verify/proof": number}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule == "/metrics":  # counts move with each request
            continue
        path = path_of(app, rule.rule) + queries.get(rule.rule, "")
        for headers in ({}, bearer):
            head, got = client.head(path, headers=headers), client.get(path, headers=headers)
            assert head.status_code == got.status_code, path
            assert head.get_data() == b"", path
            assert int(head.headers["Content-Length"]) == len(got.get_data()), path
            kept = {(k, v) for k, v in head.headers.items() if k not in PER_ANSWER}
            assert kept == {(k, v) for k, v in got.headers.items() if k not in PER_ANSWER}, path


def test_options_is_204_with_allow_and_no_body(app):
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        path = path_of(app, rule.rule)
        answer = client.options(path)
        assert answer.status_code == 204, path
        assert answer.get_data() == b"", path
        assert "Content-Type" not in answer.headers and "Content-Length" not in answer.headers
        allowed = set(app.url_map.bind("localhost").allowed_methods(path))  # every rule's
        assert rule.methods <= allowed, path
        assert set(answer.headers["Allow"].split(", ")) == allowed, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert not any(name.startswith("Access-Control-") for name, _ in answer.headers), path


def test_a_405_names_the_methods_in_the_order_options_does(app):
    """One URL's `Allow` is the same on a 405 and on OPTIONS, in alphabetical order."""
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        path = path_of(app, rule.rule)
        options = client.options(path).headers["Allow"]
        assert options.split(", ") == sorted(options.split(", ")), path
        refused = client.open(path, method="PUT" if "PUT" not in rule.methods else "PATCH")
        if refused.status_code == 405:
            assert refused.headers["Allow"] == options, path
    assert client.delete("/v1/events").headers["Allow"] == "OPTIONS, POST"


def test_options_of_a_url_no_route_serves_is_the_404_problem(app):
    client = app.test_client()
    assert client.options("/v1/events").headers["Allow"] == "OPTIONS, POST"
    answer = client.options("/no-such-path")
    assert answer.status_code == 404
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == 404


def test_every_json_answer_ends_with_a_newline(app, token_for):
    """JSON and problem bodies end as jsonify ends them, so a shell prompt starts on its own line:
    GETs, an accepted event and its replay, a rejected one, and the auth and token errors."""
    client = app.test_client()
    bearer = token_for("verifications:read certifications:read events:write")
    grant = granted("2026-01-05", cert="NEWLINE-1")
    answers = [
        client.post("/v1/events", json=grant, headers=bearer),
        client.post("/v1/events", json=grant, headers=bearer),  # the replay
        client.post("/v1/events", json={**grant, "event_id": "e-bad", "data": {}}, headers=bearer),
        client.post("/v1/events", data="{", content_type="application/json", headers=bearer),
        client.post("/v1/events", json=grant),  # no token
        client.post("/oauth/token", data={"grant_type": "client_credentials"}),
        client.post("/v1/events/batch", json={"events": [grant]}, headers=bearer),
        client.post("/v1/verifications/batch", json={"certification_ids": ["X"]}, headers=bearer),
    ]
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.rule != "/metrics":
            answers += [client.get(path_of(app, rule.rule), headers=bearer)]
    json_bodies = [a for a in answers if a.mimetype.endswith("json")]
    assert {a.status_code for a in json_bodies} >= {200, 202, 400, 401, 404, 422}
    for answer in json_bodies:
        assert answer.get_data().endswith(b"}\n"), (answer.status_code, answer.get_data()[-40:])
