"""Every route refuses every scope the OpenAPI document does not grant it, and asks for a token
wherever the document says one is needed: one table, built from the app's own url_map."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from werkzeug.routing import IntegerConverter, Rule

from gateway.usecases.clients import SCOPES
from gateway.web.openapi import UNDOCUMENTED_ENDPOINTS, openapi_path
from tests.support.clients import fetch_token


@dataclass(frozen=True)
class Operation:
    """One route and method of the app, with the scopes its OpenAPI operation accepts."""

    method: str
    path: str  # OpenAPI form, `/v1/certifications/{certification_id}`
    url: str  # a concrete URL for it
    scopes: frozenset[str]
    anonymous: bool  # the document lets a request without a bearer token in

    def call(self, app: Flask, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {} if self.method in {"POST", "PUT", "PATCH", "DELETE"} else None
        return app.test_client().open(self.url, method=self.method, json=body, headers=headers)


def _operations(app: Flask) -> list[Operation]:
    """Every (route, method) of `app`, each with what `/openapi.json` says it needs."""
    spec = app.test_client().get("/openapi.json").get_json()
    table = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = openapi_path(rule.rule)
            operation = spec["paths"].get(path, {}).get(method.lower())
            assert operation is not None, f"{method} {path} is served but not documented"
            security = operation["security"]
            scopes = frozenset(s for req in security for s in req.get("oauth2", []))
            table.append(Operation(method, path, _url(rule), scopes, {} in security))
    return table


def _url(rule: Rule) -> str:
    """The rule with each variable filled by a value no record has."""
    values = {
        name: 999999 if isinstance(rule._converters[name], IntegerConverter) else f"no-such-{name}"
        for name in rule.arguments
    }
    _, url = rule.build(values)
    return url


def _challenges_bearer(response) -> bool:
    return response.status_code == 401 and response.headers.get("WWW-Authenticate", "").startswith(
        "Bearer"
    )


def test_every_route_refuses_every_scope_its_openapi_operation_does_not_name(app):
    """Without a token, an operation the document closes to anonymous callers is 401 with a
    Bearer challenge (and an open one is not); with a token of a scope the document does not list
    for it, an operation is 403 problem+json; with one it lists, neither."""
    tokens = {scope: fetch_token(app, scope) for scope in SCOPES}
    table = _operations(app)
    assert {(op.method, op.path) for op in table if op.scopes} >= {
        ("POST", "/v1/events"),
        ("GET", "/v1/certifications/{certification_id}"),
        ("GET", "/v1/verifications/{certification_id}"),
        ("DELETE", "/v1/subscriptions/{subscription_id}"),
    }, "the table lost protected routes"
    wrong = []
    for op in table:
        if _challenges_bearer(op.call(app)) == op.anonymous:
            wrong.append(f"{op.method} {op.path} without a token disagrees with the document")
        if not op.scopes:
            continue
        for scope, token in tokens.items():
            response = op.call(app, token)
            if scope in op.scopes and response.status_code in {401, 403}:
                wrong.append(f"{op.method} {op.path} refused {scope}: {response.status_code}")
            if scope not in op.scopes and (
                response.status_code != 403 or response.mimetype != "application/problem+json"
            ):
                wrong.append(f"{op.method} {op.path} let {scope} in: {response.status_code}")
    assert wrong == [], "\n".join(wrong)


def test_operations_open_to_all_ask_for_no_scope(app):
    """What the document calls public takes no bearer token and asks for no scope, so a new
    route cannot slip out of the table above by being documented as public by mistake."""
    public = {(op.method, op.path) for op in _operations(app) if not op.scopes}
    assert public == {
        ("POST", "/oauth/token"),
        ("POST", "/webhooks/credly"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/verify"),
        ("GET", "/verify/proof"),
        ("GET", "/verify/receipt"),
        ("GET", "/verify/logo"),
        ("GET", "/verify/credential"),
        ("POST", "/verify/credential"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/issuer/keys/{kid}"),
        ("GET", "/issuer"),
        ("GET", "/issuer/achievements/{code}"),
        ("GET", "/credentials/status/{list_id}/{purpose}"),
    }
