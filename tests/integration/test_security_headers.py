"""Security headers on every answer, and client secrets checked without telling who exists."""

from __future__ import annotations

import pytest

from gateway.store.models import OAuthToken
from gateway.web import auth
from gateway.web.security import CONTENT_SECURITY_POLICY
from tests.support.clients import register_client

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/v1/credentials", "/nowhere", "/verify", "/docs", "/openapi.json"],
    ids=["json", "401-problem", "404-problem", "verify-page", "docs-page", "openapi"],
)
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, (path, name)
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP


def test_an_answer_to_a_request_with_credentials_is_not_stored_unless_it_says_so(client, token_for):
    """A webhook's secret or a member's e-mail address must not stay in a browser's or a
    client library's cache; an answer that sets its own caching keeps it, token or not."""
    token = token_for("verifications:read events:write")
    made = client.post(
        "/v1/subscriptions",
        json={"url": "https://93.184.216.34/hook", "certification_ids": ["CERT-1"]},
        headers=token,
    )
    assert made.status_code == 201 and "secret" in made.get_json()
    assert made.headers["Cache-Control"] == "no-store"
    assert client.get("/v1/events/nothing", headers=token).headers["Cache-Control"] == "no-store"
    plain = client.post("/v1/events", data="{}", headers=token, content_type="application/json")
    assert plain.status_code == 422 and plain.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/openapi.json").headers  # no credentials
    keys = client.get("/.well-known/jwks.json", headers=token)  # caching of its own
    assert keys.headers["Cache-Control"] == "public, max-age=300"


def test_csp_lets_the_pages_use_only_their_own_stylesheet_and_form():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"  # no scripts, frames, fonts, connections
    assert directives["style-src"] == "'self'" and directives["form-action"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_hsts_is_sent_over_https(client):
    response = client.get("/healthz", base_url="https://gateway.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_hsts_is_sent_behind_a_trusted_tls_proxy(database_url, make_app):
    app = make_app(database_url=database_url, trusted_proxies=1)
    response = app.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in response.headers
    untrusted = make_app(database_url=database_url).test_client()
    ignored = untrusted.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in ignored.headers


def _count_hash_checks(monkeypatch) -> list[str]:
    checked: list[str] = []
    real = auth.check_password_hash

    def spy(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(auth, "check_password_hash", spy)
    return checked


def test_an_unknown_client_costs_one_hash_check_like_a_wrong_secret(app, monkeypatch):
    client_id, _ = register_client(app, "events:write")
    checked = _count_hash_checks(monkeypatch)
    web = app.test_client()
    data = {"grant_type": "client_credentials"}
    wrong = web.post("/oauth/token", data=data, auth=(client_id, "wrong"))
    unknown = web.post("/oauth/token", data=data, auth=("nobody", "wrong"))
    assert wrong.status_code == unknown.status_code == 401
    assert len(checked) == 2  # one scrypt check each: the answer time tells nothing
    assert checked[0] != checked[1]  # the unknown client's check used the decoy hash


def test_tokens_are_looked_up_by_their_sha256_never_stored_as_given(app):
    client_id, secret = register_client(app, "events:write")
    response = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    token = response.get_json()["access_token"]
    with app.extensions["gateway"].db.sessions() as session:
        stored = [row.token_hash for row in session.query(OAuthToken)]
    assert stored == [auth.token_hash(token)] and token not in stored
