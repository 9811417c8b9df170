"""Rate limits of the verification lookups: per address, per API client, in memory or in Redis."""

from __future__ import annotations

import pytest
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from gateway.web.ratelimit import PREFIX, address_key
from tests.support.clients import fetch_token, register_client
from tests.support.serving import PrivateRedis

pytestmark = pytest.mark.usefixtures("within_one_minute")

LIMITS = {"verify_rate_limit": "2/minute", "verify_rate_limit_authenticated": "5/minute"}


@pytest.fixture
def app(make_app):
    """The embedded default (SQLite, no Redis) with small limits."""
    return make_app(**LIMITS)


def lookup(client, address: str = "192.0.2.1", **kw):
    """Look up an unknown number (a 404 counts like any lookup) from `address`."""
    return client.get("/v1/verifications/ANY-1", environ_base={"REMOTE_ADDR": address}, **kw)


def statuses(client, times: int, **kw) -> list[int]:
    return [lookup(client, **kw).status_code for _ in range(times)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fetch_token_of(app, client_id: str, secret: str) -> str:
    """Another token of an existing client."""
    response = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.get_json()["access_token"]


def test_anonymous_lookups_over_the_limit_get_a_429_problem_with_retry_after(client):
    assert statuses(client, 2) == [404, 404]
    response = lookup(client)
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 429
    assert problem["detail"] == "Too many lookups from this address: the limit is 2/minute."
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_anonymous_limit_counts_each_client_address_apart(client):
    assert statuses(client, 3, address="192.0.2.1") == [404, 404, 429]
    assert statuses(client, 2, address="192.0.2.2") == [404, 404]


def page_lookup(client, address: str = "192.0.2.1"):
    """Look up an unknown number on the `/verify` page from `address`."""
    return client.get("/verify?certification_id=ANY-1", environ_base={"REMOTE_ADDR": address})


def test_the_page_and_the_api_share_one_allowance_per_address(client):
    assert page_lookup(client).status_code == 404
    assert lookup(client).status_code == 404
    assert lookup(client).status_code == 429  # 2/minute: the page's lookup counted
    assert page_lookup(client).status_code == 429
    assert page_lookup(client, address="192.0.2.2").status_code == 404
    assert lookup(client, address="192.0.2.2").status_code == 404
    assert page_lookup(client, address="192.0.2.2").status_code == 429


def test_a_verifications_token_gets_the_higher_limit_counted_per_client(app, client):
    client_id, secret = register_client(app, "verifications:read")
    token = fetch_token_of(app, client_id, secret)
    assert statuses(client, 5, headers=bearer(token)) == [404] * 5
    over = lookup(client, headers=bearer(token))
    assert over.status_code == 429
    assert "this API client" in over.get_json()["detail"]
    another_token_same_client = fetch_token_of(app, client_id, secret)
    assert lookup(client, headers=bearer(another_token_same_client)).status_code == 429
    assert lookup(client, headers=bearer(fetch_token(app, "verifications:read"))).status_code == 404
    assert statuses(client, 2) == [404, 404]  # the address's anonymous count is its own


def test_a_batch_counts_each_id_and_shares_the_client_limit_with_single_lookups(app, client):
    headers = bearer(fetch_token(app, "verifications:read"))

    def batch(size: int) -> int:
        body = {"certification_ids": [f"X-{n}" for n in range(size)]}
        return client.post("/v1/verifications/batch", json=body, headers=headers).status_code

    assert batch(3) == 200
    assert batch(3) == 429  # 3 + 3 > 5
    assert statuses(client, 3, headers=headers) == [404, 404, 429]


def test_a_batch_larger_than_the_limit_itself_is_422_not_a_429_to_wait_out(app, client):
    headers = bearer(fetch_token(app, "verifications:read"))
    body = {"certification_ids": [f"X-{n}" for n in range(6)]}  # the client's limit is 5
    refused = client.post("/v1/verifications/batch", json=body, headers=headers)
    assert refused.status_code == 422 and "Retry-After" not in refused.headers
    [error] = refused.get_json()["errors"]
    assert error["field"] == "certification_ids" and "at most 5" in error["message"]
    assert statuses(client, 6, headers=headers) == [404] * 5 + [429]  # none of it was used


def test_requests_that_look_nothing_up_use_none_of_the_allowance(app, client):
    headers = bearer(fetch_token(app, "verifications:read"))
    ids = ["X-1", 2, "X-3", "X-4", "X-5", "X-6"]  # one id is not a string
    address = {"REMOTE_ADDR": "192.0.2.1"}
    batch = "/v1/verifications/batch"
    assert (
        client.post(batch, json={"certification_ids": ids[:1]}, environ_base=address).status_code
        == 401
    )
    assert client.post(batch, json={"certification_ids": ids}, headers=headers).status_code == 422
    assert client.options("/v1/verifications/ANY-1", environ_base=address).status_code == 204
    assert client.get("/v1/receipts", headers=headers).status_code == 200
    assert statuses(client, 3) == [404, 404, 429]  # the address's 2 a minute, whole
    assert statuses(client, 6, headers=headers) == [404] * 5 + [429]  # the client's 5, whole


def test_a_bad_token_is_refused_and_counted_against_the_address(client):
    bad = bearer("not-a-token")
    assert statuses(client, 2, headers=bad) == [401, 401]
    assert lookup(client).status_code == 429


def test_an_address_behind_trusted_proxies_is_taken_from_x_forwarded_for(make_app):
    client = make_app(trusted_proxies=1, **LIMITS).test_client()

    def via(address: str) -> int:
        return lookup(client, address="10.0.0.1", headers={"X-Forwarded-For": address}).status_code

    assert [via("198.51.100.7") for _ in range(3)] == [404, 404, 429]
    assert via("198.51.100.8") == 404


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client):
    spoofed = [
        lookup(client, headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(3)
    ]
    assert spoofed == [404, 404, 429]


def test_the_embedded_default_counts_in_each_process_memory(make_app):
    first, second = make_app(**LIMITS).test_client(), make_app(**LIMITS).test_client()
    assert statuses(first, 2) == [404, 404]
    assert statuses(second, 2) == [404, 404]


def test_with_redis_every_web_process_shares_the_counts(make_app, redis_client, redis_url):
    first = make_app(redis_url=redis_url, **LIMITS).test_client()
    second = make_app(redis_url=redis_url, **LIMITS).test_client()
    assert statuses(first, 2) == [404, 404]
    assert lookup(second).status_code == 429
    assert redis_client.keys("*gateway-ratelimit*")


def test_lookups_still_answer_and_stay_limited_while_redis_is_down(make_app, tmp_path):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    try:
        client = make_app(redis_url=redis_server.url, **LIMITS).test_client()
        assert lookup(client).status_code == 404
    finally:
        redis_server.stop()
    assert statuses(client, 3) == [404, 404, 429]  # counted in memory meanwhile


def test_every_limit_of_a_list_counts_and_the_tightest_refuses(make_app):
    client = make_app(verify_rate_limit="5/minute;2/hour").test_client()
    assert statuses(client, 3) == [404, 404, 429]
    # the hour's window (its wait can be under a minute in the hour's last minute)
    assert 0 < int(lookup(client).headers["Retry-After"]) <= 3600


def test_a_lookup_refused_by_one_limit_of_a_list_is_counted_by_none(
    make_app, redis_client, redis_url
):
    app = make_app(
        redis_url=redis_url,
        verify_rate_limit="3/hour;2/minute",
        verify_rate_limit_authenticated="7/hour;5/minute",
    )
    client = app.test_client()
    refused = [lookup(client) for _ in range(4)]
    assert [r.status_code for r in refused] == [404, 404, 429, 429]
    # both refused by the minute's window: the hour's holds the two lookups answered, not four
    assert all(int(r.headers["Retry-After"]) <= 60 for r in refused[2:])
    windows = SlidingWindowCounterRateLimiter(RedisStorage(redis_url, key_prefix=PREFIX))
    hour = parse("3/hour")
    assert windows.get_window_stats(hour, address_key("192.0.2.1")).remaining == 1

    headers = bearer(fetch_token(app, "verifications:read"))
    body = {"certification_ids": ["X-1", "X-2", "X-3"]}
    batches = [client.post("/v1/verifications/batch", json=body, headers=headers) for _ in "ab"]
    assert [r.status_code for r in batches] == [200, 429]  # 3 + 3 > 5 a minute
    assert statuses(client, 3, headers=headers) == [404, 404, 429]  # the refused batch took none
