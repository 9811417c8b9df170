"""/v1/subscriptions: registration, watched ids, scopes, refusals, in-process deliveries.

On SQLite and PostgreSQL, jobs run synchronously in-process; a plain http receiver on 127.0.0.1
stands in for the employer (so private and plain http targets are allowed, but where the refusals
themselves are tested).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from gateway.schemas.subscriptions import MAX_WATCHED
from gateway.store.models import WatchedCertification
from gateway.usecases import subscriptions
from gateway.usecases.subscriptions import MAX_SUBSCRIPTIONS
from tests.support.clients import fetch_token, register_client
from tests.support.database import truncate
from tests.support.events import granted, revoked
from tests.support.http_stubs import scripted, serve
from tests.support.verification import days_ago, record

HOOK = "https://127.0.0.1:9/hook"


@pytest.fixture
def app(database_url, make_app):
    return make_app(
        database_url=database_url,
        jobs_synchronous=True,
        webhook_allow_private_targets=True,
        webhook_allow_plain_http=True,
    )


@pytest.fixture
def employer(app, token_for):
    return token_for("verifications:read")


def subscribe(client, headers, url=HOOK, ids=("CERT-1",)):
    response = client.post(
        "/v1/subscriptions", json={"url": url, "certification_ids": list(ids)}, headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def employer_app(make_app, database_url: str, **settings: object):
    """An app allowing private targets, with `settings`; its test client, and the headers of a
    `verifications:read` client of it."""
    app = make_app(database_url=database_url, webhook_allow_private_targets=True, **settings)
    headers = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    return app, app.test_client(), headers


def fields_of(response) -> set[str]:
    return {error["field"] for error in response.get_json()["errors"]}


def watched_rows(app, subscription_id: str) -> int:
    """The watched-id rows the database holds for a subscription, deleted or not."""
    with app.extensions["gateway"].db.sessions() as session:
        return session.scalar(
            select(func.count()).where(WatchedCertification.subscription_id == subscription_id)
        )


def test_creating_shows_the_secret_once_and_the_owner_sees_its_subscriptions(client, employer):
    created = subscribe(client, employer, ids=["CERT-2", "CERT-1", "CERT-2"])
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["certification_count"] == 2
    assert created.headers["Location"].endswith(f"/v1/subscriptions/{body['id']}")
    later = subscribe(client, employer, ids=["CERT-3"]).get_json()["id"]
    listed = client.get("/v1/subscriptions", headers=employer).get_json()["subscriptions"]
    assert {s["id"]: s["certification_count"] for s in listed} == {body["id"]: 2, later: 1}
    assert not [s for s in listed if "secret" in s]
    one = client.get(f"/v1/subscriptions/{body['id']}", headers=employer).get_json()
    assert one["certification_ids"] == ["CERT-1", "CERT-2"] and "secret" not in one
    assert one["url"] == HOOK


def test_another_client_can_neither_see_nor_change_a_subscription(app, client, employer):
    sub_id = subscribe(client, employer).get_json()["id"]
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    assert client.get("/v1/subscriptions", headers=other).get_json() == {"subscriptions": []}
    for method, path in [
        ("get", ""),
        ("delete", ""),
        ("get", "/deliveries"),
        ("post", "/certifications"),
        ("delete", "/certifications"),
    ]:
        response = getattr(client, method)(
            f"/v1/subscriptions/{sub_id}{path}", headers=other, json={"certification_ids": ["X"]}
        )
        assert response.status_code == 404, (method, path)
        assert response.content_type == "application/problem+json"
    assert client.get(f"/v1/subscriptions/{sub_id}", headers=employer).status_code == 200


@pytest.mark.parametrize("scope", ["events:write", "certifications:read", "admin"])
def test_every_subscription_endpoint_needs_verifications_read(client, token_for, scope):
    headers = token_for(scope)
    for method, path in [
        ("post", "/v1/subscriptions"),
        ("get", "/v1/subscriptions"),
        ("get", "/v1/subscriptions/sub_x"),
        ("delete", "/v1/subscriptions/sub_x"),
        ("post", "/v1/subscriptions/sub_x/certifications"),
        ("delete", "/v1/subscriptions/sub_x/certifications"),
        ("get", "/v1/subscriptions/sub_x/deliveries"),
    ]:
        response = getattr(client, method)(path, headers=headers, json={})
        assert response.status_code == 403, (method, path)
        assert response.get_json()["status"] == 403


def test_without_a_token_the_answer_is_401_with_a_bearer_challenge(client):
    response = client.get("/v1/subscriptions")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_malformed_subscription_is_422_naming_each_field(client, employer):
    response = client.post("/v1/subscriptions", json={"extra": 1}, headers=employer)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert fields_of(response) == {"url", "certification_ids", "extra"}
    bad_url = client.post(
        "/v1/subscriptions",
        json={"url": "ftp://example.org/x", "certification_ids": ["C"]},
        headers=employer,
    )
    assert fields_of(bad_url) == {"url"}
    too_many = client.post(
        "/v1/subscriptions",
        json={"url": HOOK, "certification_ids": [f"C-{i}" for i in range(MAX_WATCHED + 1)]},
        headers=employer,
    )
    assert too_many.status_code == 422 and fields_of(too_many) == {"certification_ids"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "http://127.0.0.1:99999/hook"}, "url"),
        ({"url": "http://127.0.0.1:0/hook"}, "url"),
        ({"advance_notice": "yes"}, "advance_notice"),
        ({"advance_notice": 1}, "advance_notice"),
        ({"advance_notice": True, "notice_days": 5.5}, "notice_days"),
        ({"advance_notice": True, "notice_days": "7"}, "notice_days"),
    ],
)
def test_a_value_json_would_spell_otherwise_is_422_naming_it(client, employer, change, field):
    body = {"url": HOOK, "certification_ids": ["C"], **change}
    response = client.post("/v1/subscriptions", json=body, headers=employer)
    assert response.status_code == 422, response.get_json()
    assert fields_of(response) == {field}


@pytest.mark.parametrize("odd", [" CERT-1", "CÉRT-1", "../x", "-CERT", "CERT 1"])
def test_an_id_no_certification_can_have_is_not_watched(client, employer, odd):
    """A number pasted with a space, say, is refused where it would be watched in vain; one
    watched before (an earlier release took any text) can still be removed."""
    body = {"url": HOOK, "certification_ids": ["CERT-2", odd]}
    response = client.post("/v1/subscriptions", json=body, headers=employer)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["certification_ids.1"]
    sub_id = subscribe(client, employer, ids=["CERT-2"]).get_json()["id"]
    path = f"/v1/subscriptions/{sub_id}/certifications"
    added = client.post(path, json={"certification_ids": [odd]}, headers=employer)
    assert added.status_code == 422
    assert [e["field"] for e in added.get_json()["errors"]] == ["certification_ids.0"]
    removed = client.delete(path, json={"certification_ids": [odd]}, headers=employer)
    assert removed.status_code == 200 and removed.get_json()["removed"] == 0


def test_watched_ids_are_added_and_removed_up_to_10000(client, employer):
    sub_id = subscribe(client, employer, ids=["CERT-1"]).get_json()["id"]
    path = f"/v1/subscriptions/{sub_id}/certifications"
    added = client.post(path, json={"certification_ids": ["CERT-1", "CERT-2"]}, headers=employer)
    assert added.status_code == 200
    assert added.get_json()["added"] == 1 and added.get_json()["certification_count"] == 2
    removed = client.delete(path, json={"certification_ids": ["CERT-1", "NOPE"]}, headers=employer)
    assert removed.get_json()["removed"] == 1 and removed.get_json()["certification_count"] == 1
    fill = [f"C-{i:05d}" for i in range(MAX_WATCHED - 1)]
    assert client.post(path, json={"certification_ids": fill}, headers=employer).status_code == 200
    over = client.post(path, json={"certification_ids": ["ONE-MORE"]}, headers=employer)
    assert over.status_code == 422 and fields_of(over) == {"certification_ids"}
    count = client.get(f"/v1/subscriptions/{sub_id}", headers=employer).get_json()
    assert count["certification_count"] == MAX_WATCHED


def test_a_client_holds_at_most_100_subscriptions_at_once(app, client, employer):
    held = [subscribe(client, employer).get_json()["id"] for _ in range(MAX_SUBSCRIPTIONS)]
    over = client.post(
        "/v1/subscriptions", json={"url": HOOK, "certification_ids": ["C"]}, headers=employer
    )
    assert over.status_code == 409 and over.mimetype == "application/problem+json"
    assert "100 subscriptions" in over.get_json()["detail"]
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    subscribe(client, other)  # each client has its own
    assert client.delete(f"/v1/subscriptions/{held[0]}", headers=employer).status_code == 204
    subscribe(client, employer)


def test_the_subscriptions_a_client_creates_are_rate_limited(database_url, make_app):
    app, client, mine = employer_app(make_app, database_url, subscription_rate_limit="2/day")
    refused = client.post("/v1/subscriptions", json={"url": HOOK}, headers=mine)
    assert refused.status_code == 422  # uses none of the allowance
    first = subscribe(client, mine).get_json()["id"]
    subscribe(client, mine)
    assert client.delete(f"/v1/subscriptions/{first}", headers=mine).status_code == 204
    over = client.post(
        "/v1/subscriptions", json={"url": HOOK, "certification_ids": ["C"]}, headers=mine
    )
    assert over.status_code == 429 and over.mimetype == "application/problem+json"
    assert over.get_json()["detail"] == (
        "Too many subscriptions created by this API client: the limit is 2/day."
    )
    assert 0 < int(over.headers["Retry-After"]) <= 24 * 3600
    assert len(client.get("/v1/subscriptions", headers=mine).get_json()["subscriptions"]) == 1
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    subscribe(client, other)  # each client has its own allowance
    anonymous = client.post("/v1/subscriptions", json={"url": HOOK, "certification_ids": ["C"]})
    assert anonymous.status_code == 401


def test_the_changes_a_client_makes_to_watched_ids_are_rate_limited(database_url, make_app):
    app, client, mine = employer_app(make_app, database_url, subscription_watch_rate_limit="3/hour")
    first, second = (subscribe(client, mine).get_json()["id"] for _ in range(2))

    def change(method: str, sub_id: str, ids: list[str], headers=mine):
        path = f"/v1/subscriptions/{sub_id}/certifications"
        return getattr(client, method)(path, json={"certification_ids": ids}, headers=headers)

    assert change("post", first, ["bad id"]).status_code == 422  # uses none of the allowance
    assert change("post", "sub_none", ["C-2"]).status_code == 404  # nor does this
    assert change("post", first, ["C-2", "C-3"]).status_code == 200
    assert change("delete", first, ["C-2"]).status_code == 200
    assert change("post", second, ["C-4"]).status_code == 200  # one allowance for all of them
    for method in ("post", "delete"):
        over = change(method, first, ["C-3"])
        assert over.status_code == 429 and over.mimetype == "application/problem+json"
        assert over.get_json()["detail"] == (
            "Too many changes to watched certifications from this API client: the limit is 3/hour."
        )
        assert 0 < int(over.headers["Retry-After"]) <= 3600
    one = client.get(f"/v1/subscriptions/{first}", headers=mine).get_json()
    assert one["certification_ids"] == ["C-3", "CERT-1"]  # the refused changes changed nothing
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    theirs = subscribe(client, other).get_json()["id"]
    assert change("post", theirs, ["C-5"], headers=other).status_code == 200  # its own allowance
    assert change("post", first, ["C-5"], headers={}).status_code == 401


@pytest.mark.parametrize(
    ("setting", "use_case", "path", "success"),
    [
        ("subscription_rate_limit", "register", "/v1/subscriptions", 201),
        (
            "subscription_watch_rate_limit",
            "watch_more",
            "/v1/subscriptions/{id}/certifications",
            200,
        ),
    ],
)
def test_concurrent_requests_of_a_client_never_pass_its_limit_in_redis(
    make_app, postgres_url, redis_client, redis_url, monkeypatch, setting, use_case, path, success
):
    """A request is counted once it succeeded: concurrent ones, each slowed in its use case so
    that all of them are in flight at once, succeed only as many times as the allowance has room
    for, the others answered 429 with Retry-After."""
    truncate(postgres_url)
    app, client, mine = employer_app(
        make_app, postgres_url, redis_url=redis_url, **{setting: "3/hour"}
    )
    watched = subscribe(client, mine).get_json()["id"]  # counts against the subscriptions' limit
    allowance = 2 if setting == "subscription_rate_limit" else 3
    run = getattr(subscriptions, use_case)

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return run(*args, **kwargs)

    monkeypatch.setattr(subscriptions, use_case, slow)
    start = threading.Barrier(8)

    def body(certification_id: str) -> dict:
        ids = {"certification_ids": [certification_id]}
        return {"url": HOOK, **ids} if use_case == "register" else ids

    def send(n: int):
        start.wait()
        return app.test_client().post(path.format(id=watched), json=body(f"C-{n}"), headers=mine)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [success] * allowance + [429] * (8 - allowance)
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert 0 < int(refused.headers["Retry-After"]) <= 3600
    later = client.post(path.format(id=watched), json=body("D"), headers=mine)
    assert later.status_code == 429  # the successful ones used the allowance up
    truncate(postgres_url)


def test_a_deleted_subscription_is_gone(client, employer):
    sub_id = subscribe(client, employer).get_json()["id"]
    assert client.delete(f"/v1/subscriptions/{sub_id}", headers=employer).status_code == 204
    assert client.get(f"/v1/subscriptions/{sub_id}", headers=employer).status_code == 404
    assert client.delete(f"/v1/subscriptions/{sub_id}", headers=employer).status_code == 404
    assert client.get("/v1/subscriptions", headers=employer).get_json() == {"subscriptions": []}


def test_deleting_a_subscription_answers_204_with_no_body_and_no_media_type(client, employer):
    sub_id = subscribe(client, employer).get_json()["id"]
    deleted = client.delete(f"/v1/subscriptions/{sub_id}", headers=employer)
    assert deleted.status_code == 204 and deleted.data == b""
    assert "Content-Type" not in deleted.headers


def test_deleting_a_subscription_deletes_the_ids_it_watched(app, client, employer):
    ids = [f"CHURN-{i:05d}" for i in range(MAX_WATCHED)]
    deleted, kept = (subscribe(client, employer, ids=ids).get_json()["id"] for _ in range(2))
    assert watched_rows(app, deleted) == MAX_WATCHED
    assert client.delete(f"/v1/subscriptions/{deleted}", headers=employer).status_code == 204
    assert watched_rows(app, deleted) == 0
    assert watched_rows(app, kept) == MAX_WATCHED  # another subscription's stay
    log = client.get(f"/v1/subscriptions/{deleted}/deliveries", headers=employer)
    assert log.status_code == 404


def test_revoking_a_client_deletes_the_ids_its_subscriptions_watched(app, client):
    client_id, secret = register_client(app, "verifications:read", "Gone HR")
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).get_json()["access_token"]
    mine = {"Authorization": f"Bearer {token}"}
    held = [subscribe(client, mine, ids=["CERT-1", "CERT-2"]).get_json()["id"] for _ in range(2)]
    other = subscribe(client, {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"})
    revoked_client = app.test_cli_runner().invoke(args=["clients", "revoke", client_id])
    assert "2 webhook subscriptions deleted" in revoked_client.output
    assert [watched_rows(app, sub_id) for sub_id in held] == [0, 0]
    assert watched_rows(app, other.get_json()["id"]) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8080/hook",
        "https://localhost/hook",
        "https://169.254.169.254/",
        "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 to 169.254.169.254
        "https://[64:ff9b:1::a00:1]/",  # NAT64 for local use
        "https://[2002:7f00:1::]:8080/hook",  # 6to4 of 127.0.0.1
    ],
)
def test_a_private_target_is_refused_at_registration_by_default(database_url, make_app, url):
    strict = make_app(database_url=database_url)
    headers = {"Authorization": f"Bearer {fetch_token(strict, 'verifications:read')}"}
    response = strict.test_client().post(
        "/v1/subscriptions", json={"url": url, "certification_ids": ["C"]}, headers=headers
    )
    assert response.status_code == 422
    [error] = response.get_json()["errors"]
    assert error["field"] == "url" and "not allowed" in error["message"]


def test_an_ipv4_mapped_ipv6_host_is_judged_as_the_ipv4_address_it_maps_to(database_url, make_app):
    strict = make_app(database_url=database_url)
    headers = {"Authorization": f"Bearer {fetch_token(strict, 'verifications:read')}"}
    client = strict.test_client()

    def registered(url: str):
        body = {"url": url, "certification_ids": ["C"]}
        return client.post("/v1/subscriptions", json=body, headers=headers)

    public = registered("https://[::ffff:93.184.216.34]/hook")
    assert public.status_code == 201 and public.get_json()["url"] == (
        "https://[::ffff:93.184.216.34]/hook"
    )
    mapped, plain = (
        registered("https://[::ffff:127.0.0.1]/hook"),
        registered("https://127.0.0.1/hook"),
    )
    assert mapped.status_code == plain.status_code == 422
    [mapped_error], [plain_error] = mapped.get_json()["errors"], plain.get_json()["errors"]
    assert mapped_error["field"] == plain_error["field"] == "url"
    assert (
        mapped_error["message"].replace("::ffff:127.0.0.1", "127.0.0.1") == plain_error["message"]
    )


def test_a_delivery_reaches_an_ipv4_mapped_ipv6_host(app, client, employer):
    with serve(scripted()) as (url, received):
        mapped = url.replace("127.0.0.1", "[::ffff:127.0.0.1]") + "/hook"
        subscribe(client, employer, url=mapped, ids=["CERT-1"])
        record(app, granted(days_ago(30)))
    assert [r.path for r in received] == ["/hook"]


@pytest.mark.parametrize("url", ["http://93.184.216.34/hook", "http://127.0.0.1:8080/hook"])
def test_a_plain_http_target_is_refused_at_registration_unless_allowed(database_url, make_app, url):
    """A delivery carries a member's name and status, signed: over plain http anyone on the way
    could read it and replay it. Allowing private targets does not allow plain http."""
    body = {"url": url, "certification_ids": ["C"]}
    _, strict, headers = employer_app(make_app, database_url)
    response = strict.post("/v1/subscriptions", json=body, headers=headers)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    [error] = response.get_json()["errors"]
    assert error["field"] == "url" and "plain http URL" in error["message"]
    assert strict.get("/v1/subscriptions", headers=headers).get_json() == {"subscriptions": []}
    _, allowing, headers = employer_app(make_app, database_url, webhook_allow_plain_http=True)
    created = allowing.post("/v1/subscriptions", json=body, headers=headers)
    assert created.status_code == 201 and created.get_json()["url"] == url


def test_subscriptions_stored_with_a_plain_http_url_are_counted_in_a_warning_at_start(
    database_url, make_app, caplog
):
    _, client, headers = employer_app(make_app, database_url, webhook_allow_plain_http=True)
    for url in ("http://127.0.0.1:9/a", "HTTP://127.0.0.1:9/b", HOOK, "http://127.0.0.1:9/c"):
        subscribe(client, headers, url=url)
    deleted = client.get("/v1/subscriptions", headers=headers).get_json()["subscriptions"][-1]
    assert client.delete(f"/v1/subscriptions/{deleted['id']}", headers=headers).status_code == 204
    caplog.set_level(logging.INFO)
    make_app(database_url=database_url, webhook_allow_plain_http=True)
    assert "plain http" not in caplog.text  # allowed: nothing to warn of
    make_app(database_url=database_url)
    [warning] = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith(
        "2 webhook subscriptions deliver to a plain http URL, which WEBHOOK_ALLOW_PLAIN_HTTP "
        "does not allow: every delivery to them fails"
    )


def test_status_changes_of_watched_certifications_are_delivered_signed(app, client, employer):
    with serve(scripted()) as (url, received):
        created = subscribe(client, employer, url=url + "/hook", ids=["CERT-1"]).get_json()
        record(app, granted(days_ago(30)), granted(days_ago(30), cert="OTHER-1"))
        record(app, revoked(days_ago(1)))
    assert [r.path for r in received] == ["/hook", "/hook"]  # OTHER-1 is not watched
    events = [Webhook(created["secret"]).verify(r.body, r.headers) for r in received]
    assert [(e["sequence"], e["data"]["status"]) for e in events] == [(1, "active"), (2, "revoked")]
    lookup = client.get("/v1/verifications/CERT-1").get_json()
    assert {k: v for k, v in events[1]["data"].items() if k != "verified_at"} == {
        k: v for k, v in lookup.items() if k not in ("verified_at", "issuer")
    }
    assert events[0]["type"] == "certification.status_changed"
    log = client.get(f"/v1/subscriptions/{created['id']}/deliveries", headers=employer)
    entries = log.get_json()["deliveries"]
    assert [(d["sequence"], d["state"], d["status_code"], d["attempts"]) for d in entries] == [
        (2, "delivered", 200, 1),
        (1, "delivered", 200, 1),
    ]
    assert entries[0]["event_id"] == received[1].headers["webhook-id"]
    page = client.get(
        f"/v1/subscriptions/{created['id']}/deliveries?limit=1&before=2", headers=employer
    ).get_json()["deliveries"]
    assert [d["sequence"] for d in page] == [1]


def test_an_event_lists_the_webhook_deliveries_its_change_caused(client, employer, token_for):
    events, reader = token_for("events:write"), token_for("certifications:read")
    with serve(scripted()) as (url, received):
        subscribe(client, employer, url=url, ids=["CERT-1"])
        watched = client.post("/v1/events", json=granted(days_ago(30)), headers=events)
        other = granted(days_ago(30), credential="RPT", cert="OTHER-1")  # another badge
        unwatched = client.post("/v1/events", json=other, headers=events)
        again = client.post("/v1/events", json=revoked(days_ago(1)), headers=events)
    assert [a.status_code for a in (watched, unwatched, again)] == [202] * 3
    assert len(received) == 2  # CERT-1's grant, then its revocation
    assert watched.get_json()["actions"] == ["issue_badge", "sync_verification"]  # at the 202
    jobs = {
        answer.get_json()["event_id"]: [
            (job["kind"], job["state"])
            for job in client.get(answer.headers["Location"], headers=reader).get_json()["jobs"]
        ]
        for answer in (watched, unwatched, again)
    }
    assert list(jobs.values()) == [
        [("issue_badge", "done"), ("sync_verification", "done"), ("deliver_webhook", "done")],
        [("issue_badge", "done"), ("sync_verification", "done")],  # no one watches OTHER-1
        [("revoke_badge", "done"), ("sync_verification", "done"), ("deliver_webhook", "done")],
    ]


def test_a_malformed_delivery_log_query_is_422(client, employer):
    sub_id = subscribe(client, employer).get_json()["id"]
    response = client.get(f"/v1/subscriptions/{sub_id}/deliveries?limit=0&x=1", headers=employer)
    assert response.status_code == 422 and fields_of(response) == {"limit"}  # x: not ours, ignored
    ignored = client.get(f"/v1/subscriptions/{sub_id}/deliveries?x=1", headers=employer)
    assert ignored.status_code == 200
    past_integers = client.get(
        f"/v1/subscriptions/{sub_id}/deliveries?before={2**31}", headers=employer
    )
    assert past_integers.status_code == 422 and fields_of(past_integers) == {"before"}


@pytest.mark.parametrize("query", ["?limit=0", "?before=x", "?limit=1&limit=2", ""])
def test_the_delivery_log_of_a_subscription_not_yours_is_404_whatever_the_query(
    app, client, employer, query
):
    theirs = subscribe(client, employer).get_json()["id"]
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    answers = [
        client.get(f"/v1/subscriptions/{sub_id}/deliveries{query}", headers=other)
        for sub_id in (theirs, "sub_none")
    ]
    assert [answer.status_code for answer in answers] == [404, 404]
    assert answers[0].mimetype == "application/problem+json"
    detail = answers[0].get_json()["detail"]
    assert detail == answers[1].get_json()["detail"].replace("sub_none", theirs)


@pytest.mark.parametrize("method", ["post", "delete"])
@pytest.mark.parametrize("body", [{"certification_ids": "CERT-1"}, {}, None])
def test_a_change_to_the_watched_ids_of_a_subscription_not_yours_is_404_whatever_the_body(
    app, client, employer, method, body
):
    theirs = subscribe(client, employer).get_json()["id"]
    other = {"Authorization": f"Bearer {fetch_token(app, 'verifications:read')}"}
    send = getattr(client, method)
    answers = [
        send(f"/v1/subscriptions/{sub_id}/certifications", json=body, headers=other)
        if body is not None
        else send(f"/v1/subscriptions/{sub_id}/certifications", data="{", headers=other)
        for sub_id in (theirs, "sub_none")
    ]
    assert [answer.status_code for answer in answers] == [404, 404]
    detail = answers[0].get_json()["detail"]
    assert detail == answers[1].get_json()["detail"].replace("sub_none", theirs)
    own = send(f"/v1/subscriptions/{theirs}/certifications", json=body or {}, headers=employer)
    assert own.status_code == 422  # the same body on the client's own subscription


def test_a_number_of_the_delivery_log_query_is_written_in_ascii_digits(client, employer):
    sub_id = subscribe(client, employer).get_json()["id"]
    log = f"/v1/subscriptions/{sub_id}/deliveries"
    # Python's int() reads each of these as a number; none is one as a URL writes it
    for written in ("%D9%A3", "1_0", "%2B5", "%205", "5%20", "%EF%BC%95"):
        for name in ("limit", "before"):
            response = client.get(f"{log}?{name}={written}", headers=employer)
            assert response.status_code == 422, (name, written)
            assert fields_of(response) == {name}
    assert client.get(f"{log}?limit=10&before=7", headers=employer).status_code == 200


def test_nothing_is_delivered_to_a_deleted_subscription(app, client, employer):
    with serve(scripted()) as (url, received):
        sub_id = subscribe(client, employer, url=url).get_json()["id"]
        client.delete(f"/v1/subscriptions/{sub_id}", headers=employer)
        record(app, granted(days_ago(30)))
    assert received == []


def test_nothing_is_delivered_to_a_revoked_clients_subscriptions(app, client):
    client_id, secret = register_client(app, "verifications:read", "Gone HR")
    token = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).get_json()["access_token"]
    with serve(scripted()) as (url, received):
        subscribe(client, {"Authorization": f"Bearer {token}"}, url=url)
        revoked_client = app.test_cli_runner().invoke(args=["clients", "revoke", client_id])
        assert revoked_client.exit_code == 0, revoked_client.output
        assert "1 webhook subscription deleted" in revoked_client.output
        record(app, granted(days_ago(30)))
    assert received == []
