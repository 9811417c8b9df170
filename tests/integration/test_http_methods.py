"""HEAD and OPTIONS on every route: a HEAD is answered with the headers a GET would be, its
`Content-Length` too, and no body (RFC 9110 9.3.2); an OPTIONS with `204 No Content` and `Allow`
naming the URL's methods, or the usual 404 problem for a URL no route serves."""

from __future__ import annotations

import pytest
from flask import Flask

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


def test_options_of_a_url_no_route_serves_is_the_404_problem(app):
    client = app.test_client()
    assert client.options("/v1/events").headers["Allow"] == "OPTIONS, POST"
    answer = client.options("/no-such-path")
    assert answer.status_code == 404
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == 404
