"""OAuth 2.0 client credentials: token endpoint, scopes, expiry, revocation, the clients CLI."""

import base64
import gzip
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask import jsonify
from sqlalchemy import func, select

from gateway.cli.main import cli
from gateway.store.models import Event, OAuthClient, OAuthToken, Subscription
from gateway.usecases import clients
from gateway.web import auth
from tests.support.clients import register_client
from tests.support.events import granted


@pytest.fixture
def protected(app):
    @app.get("/test-protected")
    @auth.require_scope("events:write")
    def view():
        return jsonify(client=auth.current_client_id())

    return app


def _token(client, data, **kw):
    return client.post("/oauth/token", data={"grant_type": "client_credentials", **data}, **kw)


def test_client_secret_basic_gets_a_bearer_token_of_the_clients_scopes_never_cached(app, client):
    cid, secret = register_client(app, "events:write certifications:read")
    response = _token(client, {}, auth=(cid, secret))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "events:write certifications:read"
    assert response.headers["Cache-Control"] == "no-store"


def test_token_with_client_secret_post_and_narrowed_scope(app, client):
    cid, secret = register_client(app, "events:write certifications:read")
    response = _token(
        client, {"client_id": cid, "client_secret": secret, "scope": "certifications:read"}
    )
    assert response.status_code == 200
    assert response.get_json()["scope"] == "certifications:read"


def test_wrong_secret_is_401_problem(app, client):
    cid, _ = register_client(app, "events:write")
    response = _token(client, {}, auth=(cid, "wrong"))
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 401 and body["error"] == "invalid_client"


def _answer(response) -> tuple[int, dict, dict]:
    """Status, body and headers of an answer, less what differs between any two requests."""
    headers = {k: v for k, v in response.headers.items() if k not in ("X-Request-ID", "Date")}
    return response.status_code, response.get_json(), headers


@pytest.mark.parametrize("way", ["basic", "post"])
def test_an_unknown_client_and_a_wrong_secret_get_the_same_invalid_client_answer(app, client, way):
    cid, _ = register_client(app, "events:write")

    def attempt(client_id):
        if way == "basic":
            return _token(client, {}, auth=(client_id, "wrong"))
        return _token(client, {"client_id": client_id, "client_secret": "wrong"})

    wrong_secret, unknown = _answer(attempt(cid)), _answer(attempt("no-such-client"))
    assert wrong_secret == unknown
    status, body, headers = unknown
    assert status == 401 and body["error"] == "invalid_client"
    assert headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("credentials", [b"\xff\xfe:secret", b"client:\xff", b"\xc3("])
def test_basic_credentials_that_are_not_utf8_get_the_same_invalid_client_answer(
    app, client, credentials
):
    cid, _ = register_client(app, "events:write")
    wrong_secret = _answer(_token(client, {}, auth=(cid, "wrong")))
    basic = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    undecodable = _answer(_token(client, {}, headers=basic))
    assert undecodable == wrong_secret


def test_unsupported_scope_is_400_problem(app, client):
    cid, secret = register_client(app, "events:write")
    response = _token(client, {"scope": "root"}, auth=(cid, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"
    assert [e["field"] for e in response.get_json()["errors"]] == ["scope"]


@pytest.mark.parametrize(
    ("grant_type", "error", "detail"),
    [
        (None, "invalid_request", "grant_type is required: client_credentials"),
        ("password", "unsupported_grant_type", "grant_type must be client_credentials"),
    ],
)
def test_a_missing_or_other_grant_type_is_a_problem_naming_it(
    app, client, grant_type, error, detail
):
    cid, secret = register_client(app, "events:write")
    form = {} if grant_type is None else {"grant_type": grant_type}
    response = client.post("/oauth/token", data=form, auth=(cid, secret))
    assert response.status_code == 400
    body = response.get_json()
    assert (body["error"], body["error_description"], body["detail"]) == (error, detail, detail)
    assert body["errors"] == [{"field": "grant_type", "message": detail}]


def _stored_scopes(app):
    with app.extensions["gateway"].db.sessions() as session:
        return [row.scope for row in session.query(OAuthToken)]


@pytest.mark.parametrize("scope", ["admin", "events:write admin"])
def test_unheld_scope_is_400_invalid_scope_and_no_token(app, client, scope):
    cid, secret = register_client(app, "events:write")
    response = _token(client, {"scope": scope}, auth=(cid, secret))
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["error"] == "invalid_scope" and "access_token" not in body
    assert _stored_scopes(app) == []


def test_requested_subset_is_granted_and_echoed(app, client):
    cid, secret = register_client(app, "events:write certifications:read verifications:read")
    scope = "verifications:read events:write verifications:read"
    response = _token(client, {"scope": scope}, auth=(cid, secret))
    assert response.status_code == 200
    assert response.get_json()["scope"] == "events:write verifications:read"
    assert _stored_scopes(app) == ["events:write verifications:read"]


@pytest.mark.parametrize("data", [{}, {"scope": ""}, {"scope": " "}])
def test_no_scope_grants_all_the_clients_scopes(app, client, data):
    cid, secret = register_client(app, "events:write admin")
    response = _token(client, data, auth=(cid, secret))
    assert response.status_code == 200
    assert response.get_json()["scope"] == "events:write admin"
    assert _stored_scopes(app) == ["events:write admin"]


@pytest.mark.scrypt_secrets
def test_secret_and_token_are_stored_only_as_hashes(app, client):
    cid, secret = register_client(app, "events:write")
    token = _token(client, {}, auth=(cid, secret)).get_json()["access_token"]
    with app.extensions["gateway"].db.sessions() as session:
        row = session.query(OAuthClient).filter_by(client_id=cid).one()
        stored = session.query(OAuthToken).one()
    assert secret not in row.client_secret_hash and row.client_secret_hash.startswith("scrypt:")
    assert stored.token_hash == auth.token_hash(token) and token != stored.token_hash


@pytest.mark.parametrize("sent", [None, "Basic YTpi"], ids=["none", "another-scheme"])
def test_no_bearer_token_is_401_with_a_challenge_naming_no_error(protected, sent):
    headers = {"Authorization": sent} if sent else {}
    response = protected.test_client().get("/test-protected", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="credential-gateway"'
    assert response.mimetype == "application/problem+json"


def test_bad_token_is_401(protected):
    response = protected.test_client().get(
        "/test-protected", headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(
        'Bearer realm="credential-gateway", error="invalid_token"'
    )


@pytest.mark.parametrize("sent", ["Bearer", "Bearer ", "Bearer   ", "bearer \t "])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/test-protected"),
        ("POST", "/v1/events"),  # offered to its plain path first
        ("GET", "/v1/verifications/no-such-id"),  # open to all, but a token sent must be good
        ("GET", "/v1/verifications/no-such-id/receipt"),
        ("GET", "/v1/subscriptions"),
    ],
)
def test_an_empty_bearer_token_is_401_invalid_token_as_a_bad_one_is(protected, method, path, sent):
    response = protected.test_client().open(
        path, method=method, json={} if method == "POST" else None, headers={"Authorization": sent}
    )
    bad = protected.test_client().open(
        path,
        method=method,
        json={} if method == "POST" else None,
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert response.status_code == bad.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == bad.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json() == bad.get_json()


def test_a_token_request_without_grant_type_is_invalid_request(app, client):
    cid, secret = register_client(app, "events:write")
    response = client.post("/oauth/token", data={}, auth=(cid, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "grant_type" in response.get_json()["detail"]


def test_token_without_the_scope_is_403(protected, token_for):
    response = protected.test_client().get(
        "/test-protected", headers=token_for("certifications:read")
    )
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="credential-gateway", error="insufficient_scope", scope="events:write"'
    )


def test_a_403_where_any_of_two_scopes_will_do_names_them_as_alternatives(client, token_for):
    # RFC 6750's `scope` attribute lists scopes all needed: it cannot say "either"
    response = client.get("/v1/events/some-event", headers=token_for("verifications:read"))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="credential-gateway", error="insufficient_scope", error_description='
        '"needs a token with any one of the scopes events:write or certifications:read"'
    )
    assert response.get_json()["detail"] == (
        "This endpoint needs a token with any one of the scopes events:write or "
        "certifications:read."
    )
    for scope in ("events:write", "certifications:read"):
        response = client.get("/v1/events/some-event", headers=token_for(scope))
        assert response.status_code == 404, scope


def test_a_403_names_the_one_scope_needed_in_its_detail(protected, token_for):
    response = protected.test_client().get(
        "/test-protected", headers=token_for("verifications:read")
    )
    assert (
        response.get_json()["detail"] == "This endpoint needs a token with the scope events:write."
    )


def test_token_with_the_scope_passes_and_names_its_client(protected, token_for):
    response = protected.test_client().get("/test-protected", headers=token_for("events:write"))
    assert response.status_code == 200
    assert response.get_json()["client"]


def test_expired_token_is_401(protected, token_for):
    headers = token_for("events:write")
    with protected.extensions["gateway"].db.transaction() as session:
        row = session.query(OAuthToken).one()
        row.issued_at = row.issued_at - timedelta(seconds=3601)
    assert protected.test_client().get("/test-protected", headers=headers).status_code == 401


def test_revoked_client_tokens_stop_at_once(protected):
    cid, secret = register_client(protected, "events:write")
    client = protected.test_client()
    token = _token(client, {}, auth=(cid, secret)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/test-protected", headers=headers).status_code == 200
    with protected.extensions["gateway"].db.transaction() as session:
        assert clients.revoke(session, cid)
    assert client.get("/test-protected", headers=headers).status_code == 401
    assert _token(client, {}, auth=(cid, secret)).status_code == 401


def test_a_new_secret_stops_the_old_one_and_every_token_and_keeps_the_subscriptions(protected):
    cid, secret = register_client(protected, "events:write verifications:read")
    client = protected.test_client()
    token = _token(client, {}, auth=(cid, secret)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    hook = {"url": "https://93.184.216.34/h", "certification_ids": ["C-1"]}
    assert client.post("/v1/subscriptions", json=hook, headers=headers).status_code == 201
    with protected.extensions["gateway"].db.transaction() as session:
        new = clients.new_secret(session, cid)
    assert new is not None and new.client_id == cid and new.client_secret != secret
    assert client.get("/test-protected", headers=headers).status_code == 401
    assert _token(client, {}, auth=(cid, secret)).status_code == 401
    fresh = _token(client, {}, auth=(cid, new.client_secret)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {fresh}"}
    assert client.get("/test-protected", headers=headers).get_json() == {"client": cid}
    assert len(client.get("/v1/subscriptions", headers=headers).get_json()["subscriptions"]) == 1


def test_a_token_checked_against_the_old_secret_as_it_changes_is_not_issued(app, monkeypatch):
    cid, secret = register_client(app, "events:write")
    db = app.extensions["gateway"].db
    checked = auth.Client.check_client_secret

    def changed_meanwhile(self, client_secret):
        right = checked(self, client_secret)
        with db.transaction() as session:
            clients.new_secret(session, cid)
        return right

    monkeypatch.setattr(auth.Client, "check_client_secret", changed_meanwhile)
    response = _token(app.test_client(), {}, auth=(cid, secret))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OAuthToken)) == 0


def test_clients_cli_new_secret(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    made = json.loads(
        runner.invoke(cli, ["clients", "create", "--name", "hr", "--scope", "admin"]).stdout
    )
    changed = runner.invoke(cli, ["clients", "new-secret", made["client_id"]])
    assert changed.exit_code == 0, changed.output
    new = json.loads(changed.stdout)
    assert new["client_id"] == made["client_id"] and new["client_secret"] != made["client_secret"]
    unknown = runner.invoke(cli, ["clients", "new-secret", "nobody"])
    assert unknown.exit_code == 1 and "no client 'nobody'" in unknown.output
    runner.invoke(cli, ["clients", "revoke", made["client_id"]])
    revoked = runner.invoke(cli, ["clients", "new-secret", made["client_id"]])
    assert revoked.exit_code == 1 and "is revoked" in revoked.output


class RevokingBody(io.BytesIO):
    """A request body during whose arrival the client is revoked (a slow sender)."""

    def __init__(self, app, client_id: str, data: bytes) -> None:
        super().__init__(data)
        self.app, self.client_id = app, client_id

    def _revoke(self) -> None:
        if self.client_id:
            with self.app.extensions["gateway"].db.transaction() as session:
                assert clients.revoke(session, self.client_id)
            self.client_id = ""

    def read(self, size: int | None = -1) -> bytes:
        self._revoke()
        return super().read(size)

    def readinto(self, buffer) -> int:
        self._revoke()
        return super().readinto(buffer)


@pytest.mark.parametrize(
    ("path", "scope", "body"),
    [
        ("/v1/events", "events:write", granted("2025-01-01", cert="SLOW-1", event_id="slow-1")),
        (
            "/v1/subscriptions",
            "verifications:read",
            {"url": "https://192.0.2.1/h", "certification_ids": ["SLOW-1"]},
        ),
    ],
)
def test_a_client_revoked_while_its_body_arrives_is_refused_and_nothing_is_kept(
    app, path, scope, body
):
    cid, secret = register_client(app, scope)
    client = app.test_client()
    token = _token(client, {}, auth=(cid, secret)).get_json()["access_token"]
    data = json.dumps(body).encode()
    answer = client.post(
        path,
        input_stream=RevokingBody(app, cid, data),
        content_length=len(data),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    with app.extensions["gateway"].db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_a_subscription_of_a_client_revoked_meanwhile_is_refused(app):
    from gateway.usecases import subscriptions

    cid, _ = register_client(app, "verifications:read")
    db = app.extensions["gateway"].db
    with db.transaction() as session:
        clients.revoke(session, cid)
    with pytest.raises(subscriptions.ClientRevoked), db.transaction() as session:
        subscriptions.create(session, cid, "https://192.0.2.1/h", ["C-1"])


def test_clients_cli_create_list_revoke(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    created = runner.invoke(cli, ["clients", "create", "--name", "hr", "--scope", "admin admin"])
    assert created.exit_code == 0, created.output
    new = json.loads(created.stdout)
    assert set(new) == {"client_id", "client_secret"}
    listed = runner.invoke(cli, ["clients", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["client_id"], r["scope"], r["revoked_at"]) for r in rows] == [
        (new["client_id"], "admin", None)
    ]
    assert new["client_secret"] not in listed.stdout
    wide = "events:write certifications:read verifications:read admin"
    runner.invoke(cli, ["clients", "create", "--name", "a long client name" * 3, "--scope", wide])
    table = runner.invoke(cli, ["clients", "list"]).stdout.splitlines()
    assert table[0].split() == ["CLIENT", "ID", "NAME", "SCOPE", "STATE"]
    assert (
        new["client_id"] in table[1] and wide in table[2] and "a long client name" * 3 in table[2]
    )
    assert table[0].index("SCOPE") == table[2].index(wide)  # columns as wide as their cells
    assert runner.invoke(cli, ["clients", "revoke", new["client_id"]]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["clients", "list", "--json"]).stdout)[0]["revoked_at"]
    assert runner.invoke(cli, ["clients", "revoke", "nobody"]).exit_code != 0
    bad = runner.invoke(cli, ["clients", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code != 0 and "unknown scope" in bad.output


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 201, "a\x00b", "ok\nforged row", "tab\there", "ok\u2028row", "a\u202egnp"],
)
def test_clients_cli_refuses_a_name_it_cannot_store_naming_the_option(
    database_url, tmp_path, monkeypatch, name
):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    bad = runner.invoke(cli, ["clients", "create", "--name", name, "--scope", "admin"])
    assert bad.exit_code == 2 and "--name" in bad.output and bad.exception is not None
    assert "Traceback" not in bad.output
    assert json.loads(runner.invoke(cli, ["clients", "list", "--json"]).stdout) == []
    longest = runner.invoke(cli, ["clients", "create", "--name", "x" * 200, "--scope", "admin"])
    assert longest.exit_code == 0, longest.output


@pytest.mark.usefixtures("within_one_minute")
def test_failed_client_authentications_are_limited_per_address_before_any_secret_is_checked(
    make_app, monkeypatch
):
    app = make_app(token_failure_rate_limit="2/minute")
    checked = []
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda *a: checked.append(1) or real_check(*a))
    cid, secret = register_client(app, "events:write")
    client = app.test_client()
    attacker, member = {"REMOTE_ADDR": "192.0.2.66"}, {"REMOTE_ADDR": "192.0.2.7"}
    for _ in range(2):
        assert _token(client, {}, auth=(cid, "wrong"), environ_base=attacker).status_code == 401
    checks_before = len(checked)
    refused = _token(client, {}, auth=(cid, secret), environ_base=attacker)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert len(checked) == checks_before
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "failed client authentications" in refused.get_json()["detail"]
    granted = [_token(client, {}, auth=(cid, secret), environ_base=member) for _ in range(4)]
    assert [answer.status_code for answer in granted] == [200] * 4  # successes are not counted


@pytest.mark.usefixtures("within_one_minute")
@pytest.mark.parametrize("shared", [False, True], ids=["in memory", "in redis"])
def test_concurrent_wrong_secrets_from_one_address_get_no_more_than_the_limit_of_401s(
    make_app, monkeypatch, request, shared
):
    if shared:
        request.getfixturevalue("redis_client")  # emptied before and after
    settings = {"redis_url": request.getfixturevalue("redis_url")} if shared else {}
    app = make_app(token_failure_rate_limit="3/minute", **settings)
    cid, _ = register_client(app, "events:write")
    attempts, held = 8, threading.Condition()
    checking, answered = [], []
    real_check = auth.check_password_hash

    def check_once_all_are_in(*args):
        # Each secret is checked once every request is either here or answered: all are in
        # flight together, none counted as a failure yet. (At least: a request checked and
        # answered meanwhile counts twice, before a waiter woken at the count looks again.)
        with held:
            checking.append(1)
            held.notify_all()
            held.wait_for(lambda: len(checking) + len(answered) >= attempts, timeout=10)
        return real_check(*args)

    def attempt(_: int) -> int:
        answer = _token(
            app.test_client(), {}, auth=(cid, "wrong"), environ_base={"REMOTE_ADDR": "192.0.2.66"}
        )
        with held:
            answered.append(1)
            held.notify_all()
        return answer.status_code

    monkeypatch.setattr(auth, "check_password_hash", check_once_all_are_in)
    with ThreadPoolExecutor(attempts) as pool:
        statuses = sorted(pool.map(attempt, range(attempts)))
    assert statuses == [401] * 3 + [429] * 5


@pytest.mark.usefixtures("within_one_minute")
def test_a_token_request_stops_counting_in_flight_once_answered_whatever_the_answer(
    make_app, monkeypatch, redis_client, redis_url
):
    app = make_app(redis_url=redis_url, token_failure_rate_limit="2/minute")
    cid, secret = register_client(app, "events:write")
    client = app.test_client()
    assert _token(client, {}, auth=(cid, secret)).status_code == 200
    assert _token(client, {}, auth=(cid, secret), query_string="x=1").status_code == 400
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda *a: 1 / 0)
    assert _token(client, {}, auth=(cid, secret)).status_code == 500
    monkeypatch.setattr(auth, "check_password_hash", real_check)
    in_flight = redis_client.keys("*oauth-attempts*")
    # a request that is never answered (its process killed) stops counting by itself
    assert in_flight and all(0 < redis_client.ttl(key) <= 600 for key in in_flight)
    assert sum(int(redis_client.get(key)) for key in in_flight) == 0
    wrong = [_token(client, {}, auth=(cid, "wrong")).status_code for _ in range(3)]
    assert wrong == [401, 401, 429]


@pytest.mark.parametrize(
    ("form", "basic", "query", "said", "fields"),
    [
        (
            {"client_secret": "{secret}", "client_id": "{cid}"},
            True,
            "",
            "one way",
            ["client_secret"],
        ),
        ({"scope": ["admin", "events:write"]}, True, "", "scope was repeated", ["scope"]),
        (
            {"grant_type": ["client_credentials", "password"]},
            True,
            "",
            "grant_type",
            ["grant_type"],
        ),
        ({}, True, "grant_type=client_credentials", "not in the URL's query", ["query"]),
    ],
    ids=["two ways of authenticating", "repeated scope", "repeated grant", "query string"],
)
def test_a_token_request_breaking_the_parameter_rules_is_invalid_request(
    app, client, form, basic, query, said, fields
):
    cid, secret = register_client(app, "events:write admin")
    data = {"grant_type": "client_credentials"} if "grant_type" not in form else {}
    for name, value in form.items():
        data[name] = value.format(cid=cid, secret=secret) if isinstance(value, str) else value
    answer = client.post(
        f"/oauth/token?{query}" if query else "/oauth/token",
        data=data if not query else {},
        auth=(cid, secret) if basic else None,
    )
    assert answer.status_code == 400, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["error"] == "invalid_request" and said in body["detail"]
    assert [e["field"] for e in body["errors"]] == fields


@pytest.mark.parametrize(
    "form",
    [b"grant_type=client_credentials&scope=caf\xe9", b"grant_type=client_credentials&scope=caf%E9"],
    ids=["a byte", "an escape"],
)
def test_a_token_request_whose_form_is_not_utf_8_is_invalid_request_naming_the_body(
    app, client, form
):
    cid, secret = register_client(app, "events:write")
    answer = client.post(
        "/oauth/token",
        data=form,
        content_type="application/x-www-form-urlencoded",
        auth=(cid, secret),
    )
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["error"] == "invalid_request" and "not UTF-8" in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["body"]
    good = client.post(
        "/oauth/token",
        data=b"grant_type=client_credentials&scope=events%3Awrite",
        content_type="application/x-www-form-urlencoded",
        auth=(cid, secret),
    )
    assert good.status_code == 200 and good.get_json()["scope"] == "events:write"


@pytest.mark.parametrize(
    ("sent", "content_type"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (
            b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            b"client_credentials\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        (b"grant_type=client_credentials", None),
    ],
    ids=["json", "multipart", "no content type"],
)
def test_a_token_request_whose_body_is_not_a_form_is_invalid_request_naming_the_type(
    app, client, sent, content_type
):
    """The token request's parameters come as application/x-www-form-urlencoded (RFC 6749
    §4.4.2); a JSON or multipart body was answered as if it had no grant_type, or taken."""
    cid, secret = register_client(app, "events:write")
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/oauth/token", data=sent, headers=headers, auth=(cid, secret))
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in body["detail"]
    assert (content_type or "no Content-Type").split(";")[0] in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert "access_token" not in body


@pytest.mark.parametrize("coding", ["gzip", "deflate", " GZIP "])
def test_a_token_request_with_a_content_coding_is_invalid_request_naming_it(app, client, coding):
    """A form said to be compressed is not read as if it were not: the answer names the coding,
    whether the body was compressed or not."""
    cid, secret = register_client(app, "events:write")
    for sent in (b"grant_type=client_credentials", gzip.compress(b"grant_type=client_credentials")):
        answer = client.post(
            "/oauth/token",
            data=sent,
            headers={"Content-Encoding": coding},
            content_type="application/x-www-form-urlencoded",
            auth=(cid, secret),
        )
        assert answer.status_code == 400
        body = answer.get_json()
        assert body["error"] == "invalid_request" and "content coding" in body["detail"]
        assert [e["field"] for e in body["errors"]] == ["Content-Encoding"]
        assert "access_token" not in body
    plain = client.post(
        "/oauth/token",
        data=b"grant_type=client_credentials",
        headers={"Content-Encoding": "identity"},
        content_type="application/x-www-form-urlencoded",
        auth=(cid, secret),
    )
    assert plain.status_code == 200


def test_a_token_request_over_plain_http_to_a_public_name_is_400_insecure_transport(app, client):
    """OAuth 2.0 needs TLS for the token endpoint (RFC 6749 §3.2): over plain HTTP to a name that
    is not loopback (a TLS proxy in front without TRUSTED_PROXIES) the answer says so."""
    cid, secret = register_client(app, "events:write")
    response = _token(client, {}, auth=(cid, secret), base_url="http://gateway.example.org")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["error"] == "insecure_transport"
    assert "TRUSTED_PROXIES" in body["detail"]
    secure = _token(client, {}, auth=(cid, secret), base_url="https://gateway.example.org")
    assert secure.status_code == 200
