"""The Credly connector against `responses`: request shapes, answers, errors, dry run, factory."""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from responses import matchers

from connectors.credly.backend import make_credly
from connectors.credly.client import CredlyClient, settled_session
from connectors.credly.dry_run import DryRunCredly, credly_badge_object
from connectors.credly.errors import (
    AlreadyReplaced,
    CredlyError,
    NotFound,
    PermanentError,
    TransientError,
    Unauthorized,
    UnknownOrganization,
)
from connectors.credly.service import BadgeService, holder_badges
from connectors.credly.wire import REPLACE_FIELDS, Badge, BadgeRequest, pick_badge
from connectors.errors import parse_retry_after

BASE = "https://sandbox-api.credly.com/v1"
ORG = "org-1"
TOKEN = "s3cr3t-credly-token"
BADGES_URL = f"{BASE}/organizations/{ORG}/badges"
ISSUED_AT = datetime(2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
EXPIRES_AT = datetime(2027, 3, 1, tzinfo=UTC)


def held(service: object, earner: str, template: str = "tmpl-1") -> Badge | None:
    """The badge Credly holds for the earner on the template: a live one first."""
    return pick_badge(holder_badges(service, badge_template_id=template, issuer_earner_id=earner))


def credly_badge(**overrides: Any) -> dict[str, Any]:
    """A badge object shaped like Credly's answers."""
    data: dict[str, Any] = {
        "id": "badge-1",
        "state": "pending",
        "issuer_earner_id": "CERT-1",
        "recipient_email": "ada@example.org",
        "issued_to_first_name": "Ada",
        "issued_to_last_name": "Lovelace",
        "issued_at": "2024-03-01T12:30:00.000Z",
        "expires_at": "2027-03-01T00:00:00.000Z",
        "locale": "en",
        "badge_template": {"id": "tmpl-1", "name": "Registered Manager"},
    }
    data.update(overrides)
    return data


def issue(service: BadgeService, **overrides: Any) -> Badge:
    """Issue with sensible defaults."""
    fields: dict[str, Any] = {
        "recipient_email": "ada@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "badge_template_id": "tmpl-1",
        "issued_at": ISSUED_AT,
        "issuer_earner_id": "CERT-1",
        "expires_at": EXPIRES_AT,
    }
    locale = overrides.pop("locale", "en")
    fields.update(overrides)
    return service.issue_badge(BadgeRequest(**fields), locale=locale)


@pytest.fixture
def http():
    """Credly's HTTP, stood in by `responses`; every registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def calls() -> list[tuple[str, str, int | None, float]]:
    return []


@pytest.fixture
def client(calls) -> CredlyClient:
    return CredlyClient(BASE, ORG, TOKEN, on_request=lambda *args: calls.append(args))


def sent_json(call: responses.Call) -> dict[str, Any]:
    return json.loads(call.request.body)


# --------------------------------------------------------------------------- request shape


def test_issue_posts_documented_fields_with_basic_auth_json_and_timeout(http, client):
    http.post(BADGES_URL, status=201, json={"data": credly_badge(), "metadata": {}})

    badge = issue(client)

    request = http.calls[0].request
    assert request.url == BADGES_URL
    expected_auth = base64.b64encode(f"{TOKEN}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.req_kwargs["timeout"] == (3.05, 10.0)
    assert sent_json(http.calls[0]) == {
        "recipient_email": "ada@example.org",
        "issued_to_first_name": "Ada",
        "issued_to_last_name": "Lovelace",
        "badge_template_id": "tmpl-1",
        "issued_at": "2024-03-01 14:30:00 +0200",
        "issuer_earner_id": "CERT-1",
        "expires_at": "2027-03-01 00:00:00 +0000",
        "locale": "en",
    }
    assert badge == Badge.from_json(credly_badge())


def test_issue_without_expiry_sends_false_not_null_which_is_the_template_default(http, client):
    http.post(BADGES_URL, status=201, json={"data": credly_badge(expires_at=None)})

    badge = issue(client, expires_at=None, issued_at=datetime(2024, 3, 1, 12, 30), locale="fr")

    body = sent_json(http.calls[0])
    assert body["expires_at"] is False
    assert body["issued_at"] == "2024-03-01 12:30:00 +0000"  # naive is taken as UTC
    assert body["locale"] == "fr"
    assert badge.expires_at is None


@pytest.mark.parametrize(
    ("zone", "sent"),
    [
        ("America/Chicago", "2024-03-01 00:00:00 -0600"),  # the day's midnight in its own offset
        ("Africa/Monrovia", "1970-03-02 00:44:30 +0000"),  # -00:44:30 then: the instant in UTC
        ("America/St_Johns", "1910-06-01 03:30:52 +0000"),
    ],
)
def test_issued_at_is_sent_in_credlys_form_even_where_the_zone_kept_seconds(
    http, client, zone, sent
):
    http.post(BADGES_URL, status=201, json={"data": credly_badge()})
    midnight = datetime.fromisoformat(sent[:10]).replace(tzinfo=ZoneInfo(zone))
    issue(client, issued_at=midnight)
    assert sent_json(http.calls[0])["issued_at"] == sent


def test_created_badge_is_parsed_from_credlys_data_object(http, client):
    http.post(BADGES_URL, status=201, json={"data": credly_badge(), "metadata": {}})

    badge = issue(client)

    assert badge.id == "badge-1"
    assert badge.state == "pending"
    assert badge.issuer_earner_id == "CERT-1"
    assert badge.badge_template_id == "tmpl-1"
    assert badge.recipient_email == "ada@example.org"
    assert badge.issued_at == datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    assert badge.expires_at == datetime(2027, 3, 1, tzinfo=UTC)
    assert badge.raw["badge_template"]["name"] == "Registered Manager"


def test_badge_from_json_accepts_a_flat_template_id_and_odd_dates():
    badge = Badge.from_json(
        {"id": 42, "state": "accepted", "badge_template_id": "t", "issued_at": "yesterday"}
    )

    assert (badge.id, badge.badge_template_id, badge.issued_at) == ("42", "t", None)
    assert badge.issuer_earner_id is None
    with pytest.raises(ValueError):
        Badge.from_json({"state": "pending"})


def test_custom_session_and_timeout_are_used_and_the_session_is_left_untouched(http):
    class RecordingSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[str, Any]] = []

        def request(self, method, url, **kwargs):  # type: ignore[override]
            self.seen.append(kwargs)
            return super().request(method, url, **kwargs)

    session = RecordingSession()
    client = CredlyClient(BASE + "/", ORG, TOKEN, timeout=(1.0, 2.0), session=session)
    http.get(f"{BADGES_URL}/b%2F1", json={"data": credly_badge(id="b/1")})

    assert client.get_badge("b/1").id == "b/1"  # ids are quoted into one path segment
    assert session.seen[0]["timeout"] == (1.0, 2.0)
    assert session.seen[0]["auth"] == (TOKEN, "")
    assert session.auth is None


def test_replace_posts_to_replace_and_returns_the_new_badge(http, client):
    http.post(
        f"{BADGES_URL}/badge-1/replace",
        status=201,
        json={"data": credly_badge(id="badge-2", badge_template={"id": "tmpl-2"})},
    )

    badge = client.replace_badge(
        "badge-1",
        BadgeRequest(
            recipient_email="ada@example.org",
            first_name="Ada",
            last_name="King",
            badge_template_id="tmpl-2",
            issued_at=ISSUED_AT,
            issuer_earner_id="CERT-1",
            expires_at=EXPIRES_AT,
        ),
    )

    assert (badge.id, badge.badge_template_id) == ("badge-2", "tmpl-2")
    body = sent_json(http.calls[0])
    assert body["issued_to_last_name"] == "King"
    assert body["badge_template_id"] == "tmpl-2"
    assert body["issued_at"] == "2024-03-01 14:30:00 +0200"
    assert set(body) <= set(REPLACE_FIELDS)  # never recipient_email nor issuer_earner_id
    assert http.calls[0].request.req_kwargs["timeout"] == (3.05, 10.0)


def test_revoke_puts_reason_and_notification_flag(http, client):
    http.put(
        f"{BADGES_URL}/badge-1/revoke",
        json={"data": credly_badge(state="revoked")},
        match=[
            matchers.json_params_matcher(
                {"reason": "lapsed", "suppress_revoke_notification_email": True}
            )
        ],
    )

    badge = client.revoke_badge("badge-1", reason="lapsed", suppress_revoke_notification_email=True)

    assert badge.state == "revoked"


def test_revoking_an_already_revoked_badge_is_a_success(http, client):
    http.put(f"{BADGES_URL}/badge-1/revoke", status=422, json={"data": {"message": "revoked"}})
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="revoked")})

    badge = client.revoke_badge("badge-1", reason="lapsed")

    assert badge.state == "revoked"
    assert [c.request.method for c in http.calls] == ["PUT", "GET"]


def test_a_refused_revoke_of_a_live_badge_keeps_credlys_error(http, client):
    error = {"data": {"message": "A replaced badge cannot be revoked"}}
    http.put(f"{BADGES_URL}/badge-1/revoke", status=422, json=error)
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="accepted")})

    with pytest.raises(PermanentError) as caught:
        client.revoke_badge("badge-1", reason="lapsed")

    assert caught.value.status == 422
    assert caught.value.body == error


def test_a_refused_revoke_of_a_replaced_badge_answers_it_replaced_for_the_job_to_follow(
    http, client
):
    http.put(f"{BADGES_URL}/badge-1/revoke", status=422, json={"data": {"message": "replaced"}})
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="replaced")})

    answered = client.revoke_badge("badge-1", reason="lapsed")

    assert (answered.id, answered.state) == ("badge-1", "replaced")
    assert [c.request.method for c in http.calls] == ["PUT", "GET"]  # no successor looked up


@pytest.mark.parametrize("status", [401, 403])
def test_an_unauthorized_answer_is_transient_so_the_jobs_wait_for_a_working_token(
    http, client, status
):
    http.post(BADGES_URL, status=status, json={"data": {"message": "token expired"}})

    with pytest.raises(Unauthorized) as caught:
        issue(client)

    assert isinstance(caught.value, TransientError) and caught.value.status == status


def test_revoking_an_unknown_badge_raises_not_found_without_a_second_call(http, client):
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="accepted")})
    client.get_badge("badge-1")  # Credly knows the organisation
    http.put(f"{BADGES_URL}/nope/revoke", status=404, json={"data": {"message": "Not found"}})

    with pytest.raises(NotFound):
        client.revoke_badge("nope", reason="lapsed")

    assert len(http.calls) == 2  # the read, then the revoke alone


def test_get_badge_reads_one_badge(http, client):
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="accepted")})

    assert client.get_badge("badge-1").state == "accepted"


# --------------------------------------------------------------------------- pages and search


def page(items: list[dict[str, Any]], number: int, last: bool) -> dict[str, Any]:
    # A next_page_url on another host proves the client never sends its token there.
    next_url = None if last else f"https://elsewhere.example/badges?page={number + 1}"
    return {
        "data": items,
        "metadata": {"current_page": number, "per": 2, "next_page_url": next_url},
    }


def test_list_badges_follows_pages_with_the_filter_until_next_page_url_is_null(http, client):
    wanted = "issuer_earner_id::X|badge_template_id::Y"
    for number, items, last in [
        (1, [credly_badge(id="a"), credly_badge(id="b")], False),
        (2, [credly_badge(id="c"), credly_badge(id="d")], False),
        (3, [credly_badge(id="e")], True),
    ]:
        http.get(
            BADGES_URL,
            json=page(items, number, last),
            match=[matchers.query_param_matcher({"filter": wanted, "page": str(number)})],
        )

    found = list(client.list_badges({"issuer_earner_id": "X", "badge_template_id": "Y"}))

    assert [b.id for b in found] == ["a", "b", "c", "d", "e"]
    assert all(c.request.url.startswith(BADGES_URL) for c in http.calls)


def test_list_badges_reads_a_page_again_once_on_transient_lets_it_and_stops_when_it_raises(
    http, client
):
    http.get(BADGES_URL, json=page([credly_badge(id="a")], 1, last=False))
    http.get(BADGES_URL, status=429, headers={"Retry-After": "30"})
    http.get(BADGES_URL, json=page([credly_badge(id="b")], 2, last=True))
    seen: list[tuple[float | None, int]] = []

    found = client.list_badges(
        {}, on_transient=lambda exc, tries: seen.append((exc.retry_after, tries))
    )

    assert [b.id for b in found] == ["a", "b"] and seen == [(30.0, 1)]
    assert [c.request.params["page"] for c in http.calls] == ["1", "2", "2"]

    def give_up(exc: TransientError, tries: int) -> None:
        raise exc

    http.get(BADGES_URL, status=503)
    with pytest.raises(TransientError):
        list(client.list_badges({}, on_transient=give_up))
    with pytest.raises(TransientError):  # without on_transient, the first failure ends it
        list(client.list_badges({}))


def counted(items: list[dict[str, Any]], number: int, last: bool, total: int) -> dict[str, Any]:
    """A page of a list of `total` badges."""
    answer = page(items, number, last)
    answer["metadata"]["total_count"] = total
    return answer


def test_a_list_that_shrinks_between_reads_is_read_again_from_a_page_back_each_badge_once(
    http, client
):
    """a..e on pages of two; "a" is deleted once page 2 is read, so "e" moves up onto page 2:
    page 3, now empty and the list one badge shorter, sends the listing back a page."""
    badge = credly_badge
    http.get(BADGES_URL, json=counted([badge(id="a"), badge(id="b")], 1, False, 5))
    http.get(BADGES_URL, json=counted([badge(id="c"), badge(id="d")], 2, False, 5))
    http.get(BADGES_URL, json=counted([], 3, True, 4))
    http.get(BADGES_URL, json=counted([badge(id="d"), badge(id="e")], 2, True, 4))
    totals: list[int] = []

    found = client.list_badges({}, on_total=totals.append)

    assert [b.id for b in found] == ["a", "b", "c", "d", "e"] and totals == [5]
    assert [c.request.params["page"] for c in http.calls] == ["1", "2", "3", "2"]


def test_a_list_that_grows_between_reads_yields_a_badge_moved_onto_the_next_page_once(http, client):
    badge = credly_badge
    http.get(BADGES_URL, json=counted([badge(id="b"), badge(id="c")], 1, False, 3))
    http.get(BADGES_URL, json=counted([badge(id="c"), badge(id="d")], 2, True, 4))  # "a" new

    assert [b.id for b in client.list_badges({})] == ["b", "c", "d"]


def test_list_badges_stops_on_an_empty_page(http, client):
    http.get(BADGES_URL, json=page([], 1, last=False))

    assert list(client.list_badges({"state": "pending"})) == []


def test_filter_values_with_credlys_separators_are_refused(client):
    with pytest.raises(ValueError):
        list(client.list_badges({"issuer_earner_id": "A|B"}))


def _find(http, client, items: list[dict[str, Any]]) -> Badge | None:
    http.get(BADGES_URL, json=page(items, 1, last=True))
    return held(client, "CERT-1")


def test_find_badge_prefers_a_live_badge_then_the_newest(http, client):
    found = _find(
        http,
        client,
        [
            credly_badge(id="old", state="accepted", issued_at="2020-01-01T00:00:00.000Z"),
            credly_badge(id="new", state="pending", issued_at="2023-01-01T00:00:00.000Z"),
            credly_badge(id="gone", state="revoked", issued_at="2024-01-01T00:00:00.000Z"),
            credly_badge(id="other", issuer_earner_id="CERT-10"),
        ],
    )

    assert found is not None and found.id == "new"


def test_find_badge_returns_the_newest_ended_badge_when_none_is_live(http, client):
    found = _find(
        http,
        client,
        [
            credly_badge(id="older", state="replaced", issued_at="2020-01-01T00:00:00.000Z"),
            credly_badge(id="newer", state="revoked", issued_at="2022-01-01T00:00:00.000Z"),
        ],
    )

    assert found is not None and found.id == "newer"


def test_find_badge_returns_none_without_a_match(http, client):
    assert _find(http, client, [credly_badge(badge_template={"id": "tmpl-9"})]) is None


# --------------------------------------------------------------------------- events and ping


def test_get_event_returns_the_events_data_object(http, client):
    event = {
        "id": "ev-1",
        "organization_id": ORG,
        "event_type": "badge.state.changed",
        "occurred_at": "2024-03-02T10:00:00.000Z",
        "badge": credly_badge(state="accepted"),
    }
    http.get(f"{BASE}/organizations/{ORG}/events/ev-1", json={"data": event, "metadata": {}})

    assert client.get_event("ev-1") == event


def test_get_event_of_an_unknown_id_raises_not_found(http, client):
    http.get(f"{BASE}/organizations/{ORG}/events/forged", status=404, json={"data": {}})
    http.get(BADGES_URL, json=page([], 1, last=True))

    with pytest.raises(NotFound) as caught:
        client.get_event("forged")

    assert caught.value.status == 404


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(http, client, status):
    http.post(BADGES_URL, status=status, json={"data": {"message": "down"}})

    with pytest.raises(TransientError) as caught:
        issue(client)

    assert caught.value.status == status
    assert caught.value.body == {"data": {"message": "down"}}
    assert caught.value.retry_after is None


def test_429_is_transient_with_retry_after_in_seconds(http, client):
    http.get(f"{BADGES_URL}/b", status=429, headers={"Retry-After": "7"}, json={})

    with pytest.raises(TransientError) as caught:
        client.get_badge("b")

    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)


def test_429_with_an_http_date_retry_after(http, client):
    later = datetime.now(UTC) + timedelta(seconds=30)
    http.get(f"{BADGES_URL}/b", status=429, headers={"Retry-After": format_datetime(later, True)})

    with pytest.raises(TransientError) as caught:
        client.get_badge("b")

    assert caught.value.retry_after is not None and 20 < caught.value.retry_after <= 30


def test_retry_after_in_seconds_or_as_a_date_is_seconds_to_wait_never_negative():
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:10 GMT", now) == 10.0
    assert parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


def test_a_retry_after_too_large_for_a_time_is_read_without_error():
    assert parse_retry_after("1000000000000") == 1e12
    assert parse_retry_after("9" * 400) == float("inf")  # the jobs wait a day at most
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") > 0


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_badge_time_outside_the_years_a_datetime_holds_in_utc_reads_as_none(http, client, when):
    http.get(f"{BADGES_URL}/b", json={"data": {"id": "b", "state": "pending", "issued_at": when}})

    badge = client.get_badge("b")

    assert badge.issued_at is None and badge.raw["issued_at"] == when


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError("reset")],
)
def test_timeouts_and_connection_errors_are_transient(http, client, calls, failure):
    http.post(BADGES_URL, body=failure)

    with pytest.raises(TransientError) as caught:
        issue(client)

    assert caught.value.status is None
    assert caught.value.__cause__ is failure
    assert calls[0][:3] == ("POST", "/organizations/{org}/badges", None)


@pytest.mark.parametrize("status", [400, 409, 422])
def test_other_client_errors_are_permanent_and_keep_credlys_body(http, client, status):
    error = {"data": {"message": "Validation failed: User already has this badge"}}
    http.post(BADGES_URL, status=status, json=error)

    with pytest.raises(PermanentError) as caught:
        issue(client)

    assert not isinstance(caught.value, (TransientError, NotFound))
    assert (caught.value.status, caught.value.body) == (status, error)


@pytest.mark.parametrize(
    ("status", "made_nothing", "duplicate_refusal"),
    [(400, True, False), (401, True, False), (404, True, False), (409, True, False),
     (422, False, True), (429, True, False), (500, False, False), (503, False, False)],
)  # fmt: skip
def test_a_failed_issue_says_whether_credly_made_nothing_or_refused_a_duplicate(
    http, client, status, made_nothing, duplicate_refusal
):
    http.post(BADGES_URL, status=status, json={"data": {"message": "no"}})

    with pytest.raises(CredlyError) as caught:
        issue(client)

    assert (caught.value.made_nothing, caught.value.duplicate_refusal) == (
        made_nothing,
        duplicate_refusal,
    )


def test_a_call_without_an_answer_says_neither(http, client):
    http.post(BADGES_URL, body=requests.ConnectionError("reset"))

    with pytest.raises(CredlyError) as caught:
        issue(client)

    assert caught.value.status is None
    assert not caught.value.made_nothing and not caught.value.duplicate_refusal


def test_a_non_json_error_body_is_kept_as_text(http, client):
    http.post(BADGES_URL, status=400, body="<html>Bad Request</html>")

    with pytest.raises(PermanentError) as caught:
        issue(client)

    assert caught.value.body == "<html>Bad Request</html>"


def test_404_is_not_found_a_permanent_error(http, client):
    http.get(f"{BADGES_URL}/nope", status=404, json={"data": {"message": "Not found"}})
    http.get(BADGES_URL, json=page([], 1, last=True))

    with pytest.raises(NotFound) as caught:
        client.get_badge("nope")

    assert isinstance(caught.value, PermanentError)
    assert not isinstance(caught.value, UnknownOrganization)


def test_a_404_reads_the_badge_list_until_credly_has_answered_under_the_organisation(
    http, client, calls
):
    """A 404 for a badge says it is gone only where the organisation exists: the first one a
    client meets before any answer under the organisation is checked with a read of the
    organisation's badge list (its first page); then no more."""
    http.get(f"{BADGES_URL}/gone", status=404, json={"data": {"message": "Not found"}})
    listed = http.get(BADGES_URL, json=page([], 1, last=True))

    for _ in range(2):
        with pytest.raises(NotFound):
            client.get_badge("gone")

    assert [template for _, template, _, _ in calls] == [
        "/organizations/{org}/badges/{badge_id}",
        "/organizations/{org}/badges",
        "/organizations/{org}/badges/{badge_id}",
    ]
    assert listed.calls[0].request.params == {"page": "1"}


def test_a_404_after_an_answer_under_the_organisation_is_not_checked(http, client):
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="accepted")})
    http.get(f"{BADGES_URL}/gone", status=404, json={"data": {"message": "Not found"}})

    client.get_badge("badge-1")
    with pytest.raises(NotFound):
        client.get_badge("gone")

    assert len(http.calls) == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_badge("badge-1"),
        lambda c: c.revoke_badge("badge-1", reason="lapsed"),
        lambda c: issue(c),
        lambda c: c.get_event("event-1"),
        lambda c: list(c.list_badges({"issuer_earner_id": "CERT-1"})),
        lambda c: c.token_expiry(),
    ],
    ids=["read", "revoke", "issue", "event", "list", "tokens"],
)
def test_a_404_for_the_badge_list_too_is_an_unknown_organisation_not_a_deletion(http, client, call):
    """A wrong organisation id: Credly answers 404 under it for everything, its badge list too.
    That is no badge's deletion: `UnknownOrganization`, an `Unauthorized`, on which the jobs
    wait."""
    for method in (responses.GET, responses.PUT, responses.POST):
        http.add(method, re.compile(f"{re.escape(BASE)}/organizations/{ORG}/.+"), status=404)
    http.assert_all_requests_are_fired = False

    with pytest.raises(UnknownOrganization) as caught:
        call(client)

    assert isinstance(caught.value, Unauthorized)
    assert ORG in str(caught.value) and "CREDLY_ORGANIZATION_ID" in str(caught.value)
    assert caught.value.status == 404


def test_an_issue_answered_404_where_the_badge_list_answers_is_not_found(http, client):
    """A 404 for an issue (a template Credly does not know, say) where the organisation exists."""
    http.post(BADGES_URL, status=404, json={"data": {"message": "Not found"}})
    http.get(BADGES_URL, json=page([], 1, last=True))

    with pytest.raises(NotFound) as caught:
        issue(client)

    assert not isinstance(caught.value, UnknownOrganization)


@pytest.mark.parametrize("answer", [503, 422, "no answer"])
def test_a_badge_list_that_does_not_answer_404_leaves_the_404_as_it_came(http, client, answer):
    """Only the list's own 404 says the organisation is unknown: a list that fails otherwise
    (a stand-in of Credly without it too) leaves the badge's 404 what it was."""
    http.get(f"{BADGES_URL}/gone", status=404, json={"data": {"message": "Not found"}})
    if answer != "no answer":
        http.get(BADGES_URL, status=answer)

    with pytest.raises(NotFound) as caught:
        client.get_badge("gone")

    assert not isinstance(caught.value, UnknownOrganization)


def test_a_success_without_a_json_object_is_transient(http, client):
    http.post(BADGES_URL, status=201, body="<html>maintenance</html>")

    with pytest.raises(TransientError):
        issue(client)


def test_a_success_without_a_badge_is_permanent(http, client):
    http.post(BADGES_URL, status=201, json={"data": None})

    with pytest.raises(PermanentError) as caught:
        issue(client)

    assert caught.value.body == {"data": None}


def test_a_badge_object_without_an_id_is_refused_without_quoting_the_earner(http, client):
    answer = {"data": credly_badge(id=None)}
    http.post(BADGES_URL, status=201, json=answer)

    with pytest.raises(PermanentError) as caught:
        issue(client)

    assert str(caught.value) == "Credly answered not a Credly badge object: an object without an id"
    assert caught.value.body == answer  # kept for the job's record, which leaves addresses out
    with pytest.raises(ValueError, match=r"^not a Credly badge object: list$"):
        Badge.from_json(["ada@example.org"])  # type: ignore[arg-type]


def test_on_request_hook_gets_method_path_template_status_and_duration(http, client, calls):
    http.post(BADGES_URL, status=201, json={"data": credly_badge()})
    http.put(f"{BADGES_URL}/badge-1/revoke", status=503, json={})

    issue(client)
    with pytest.raises(TransientError):
        client.revoke_badge("badge-1", reason="lapsed")

    assert [c[:3] for c in calls] == [
        ("POST", "/organizations/{org}/badges", 201),
        ("PUT", "/organizations/{org}/badges/{badge_id}/revoke", 503),
    ]
    assert all(isinstance(c[3], float) and c[3] >= 0 for c in calls)


def test_the_token_never_shows_in_logs_errors_or_repr(http, client, caplog):
    caplog.set_level(logging.DEBUG)
    http.post(BADGES_URL, status=201, json={"data": credly_badge()})
    http.put(f"{BADGES_URL}/badge-1/revoke", status=422, json={"data": {"message": "no"}})
    http.get(f"{BADGES_URL}/badge-1", json={"data": credly_badge(state="revoked")})
    http.get(f"{BADGES_URL}/x", body=requests.ConnectionError("refused"))

    issue(client)
    client.revoke_badge("badge-1", reason="lapsed")
    with pytest.raises(CredlyError) as caught:
        client.get_badge("x")

    assert caplog.records, "the client logs its calls"
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value) and TOKEN not in repr(client)


# --------------------------------------------------------------------------- dry run


@pytest.fixture
def dry(caplog) -> DryRunCredly:
    caplog.set_level(logging.INFO, logger="connectors.credly.dry_run")
    return DryRunCredly(organization_id="dry-org")


def test_dry_run_logs_each_request_it_would_send_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="connectors.credly.dry_run")
    dry = DryRunCredly(organization_id="dry-org")

    badge = issue(dry)

    messages = [r.getMessage() for r in caplog.records if r.name == "connectors.credly.dry_run"]
    assert "Credly DRY RUN backend" in messages[0]
    sent = [m for m in messages if "would send POST /organizations/dry-org/badges" in m]
    assert len(sent) == 1
    body = json.loads(sent[0].split("/badges ", 1)[1])
    assert body["issuer_earner_id"] == "CERT-1"
    assert body["issued_at"] == "2024-03-01 14:30:00 +0200"
    assert badge.state == "pending" and badge.badge_template_id == "tmpl-1"


def test_dry_run_finds_what_it_issued(dry):
    badge = issue(dry)
    issue(dry, issuer_earner_id="CERT-2", recipient_email="bob@example.org")

    assert held(dry, "CERT-1") == badge
    assert held(dry, "CERT-3") is None
    assert [b.issuer_earner_id for b in dry.list_badges({"badge_template_id": "tmpl-1"})] == [
        "CERT-1",
        "CERT-2",
    ]
    assert dry.get_badge(badge.id) == badge


def test_dry_run_refuses_a_duplicate_live_badge_as_credly_does(dry):
    issue(dry)

    with pytest.raises(PermanentError) as caught:
        issue(dry, recipient_email="other@example.org")

    assert caught.value.status == 422
    assert caught.value.duplicate_refusal and not caught.value.made_nothing


def test_dry_run_revoke_twice_succeeds_and_allows_a_new_issue(dry):
    badge = issue(dry)

    first = dry.revoke_badge(badge.id, reason="lapsed")
    second = dry.revoke_badge(badge.id, reason="again")

    assert first.state == second.state == "revoked"
    assert second.raw["revocation_reason"] == "lapsed"
    assert issue(dry).state == "pending"


def test_dry_run_replace_ends_the_old_badge_and_issues_a_pending_one(dry):
    old = issue(dry)
    king = BadgeRequest(
        recipient_email="ada@example.org",
        first_name="Ada",
        last_name="King",
        badge_template_id="tmpl-1",
        issued_at=ISSUED_AT,
        issuer_earner_id="CERT-1",
    )

    new = dry.replace_badge(old.id, king)

    assert new.id != old.id and new.state == "pending"
    assert dry.get_badge(old.id).state == "replaced"
    assert held(dry, "CERT-1") == new
    with pytest.raises(AlreadyReplaced) as caught:
        dry.replace_badge(old.id, king)
    assert caught.value.successor == new.id
    assert dry.revoke_badge(old.id, reason="lapsed").state == "replaced"  # the job follows it
    assert dry.get_badge(new.id).state == "pending"


def test_dry_run_unknown_badges_and_events_are_not_found(dry):
    with pytest.raises(NotFound):
        dry.get_badge("nope")
    with pytest.raises(NotFound):
        dry.revoke_badge("nope", reason="lapsed")
    with pytest.raises(NotFound):
        dry.get_event("ev-1")


# --------------------------------------------------------------------------- the factory


def test_make_credly_returns_the_real_client_when_fully_configured():
    service = make_credly(base_url=BASE, organization_id=ORG, auth_token=TOKEN, timeout=(1.0, 5.0))

    assert isinstance(service, CredlyClient)
    assert isinstance(service, BadgeService)
    assert (service.base_url, service.organization_id, service.timeout) == (BASE, ORG, (1.0, 5.0))


@pytest.mark.parametrize(
    ("base_url", "organization_id", "auth_token"),
    [(None, None, None), (BASE, ORG, None), (BASE, None, TOKEN), ("", ORG, TOKEN)],
)
def test_make_credly_falls_back_to_the_dry_run(base_url, organization_id, auth_token):
    service = make_credly(base_url=base_url, organization_id=organization_id, auth_token=auth_token)

    assert isinstance(service, DryRunCredly)
    assert isinstance(service, BadgeService)


def test_make_credly_warns_about_a_partial_configuration(caplog):
    caplog.set_level(logging.WARNING, logger="connectors.credly")

    make_credly(base_url=BASE, organization_id=ORG, auth_token=None)

    assert "CREDLY_AUTH_TOKEN" in caplog.text


def test_proxy_and_ca_settings_are_read_from_the_environment_once(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = settled_session("https://api.credly.com/v1")
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == str(bundle)
    assert session.trust_env is False  # not scanned again at every call

    monkeypatch.setenv("NO_PROXY", "credly.com")
    assert "https" not in settled_session("https://api.credly.com/v1").proxies


def test_calls_at_once_are_bounded_and_their_connections_kept_alive():
    """Eight threads share two connections: never more than two calls in flight, on two sockets."""
    state = {"in_flight": 0, "most": 0, "peers": set()}
    lock = threading.Lock()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self) -> None:
            with lock:
                state["in_flight"] += 1
                state["most"] = max(state["most"], state["in_flight"])
                state["peers"].add(self.client_address)
            time.sleep(0.05)
            with lock:
                state["in_flight"] -= 1
            body = json.dumps({"data": {"id": "b-1", "state": "pending"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = CredlyClient(
            f"http://127.0.0.1:{server.server_port}/v1", ORG, TOKEN, max_connections=2
        )
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: client.get_badge("b-1").id, range(24)))
    finally:
        server.shutdown()
        server.server_close()
    assert found == ["b-1"] * 24
    assert state["most"] == 2
    assert len(state["peers"]) == 2


def test_a_dry_run_with_a_state_file_keeps_its_badges_across_restarts_and_processes(tmp_path):
    state = tmp_path / "instance" / "credly-dry-run.sqlite3"
    first = DryRunCredly(organization_id="dry-org", state_file=state)
    badge = issue(first)
    restarted = DryRunCredly(organization_id="dry-org", state_file=state)
    assert restarted.get_badge(badge.id) == badge
    with pytest.raises(PermanentError):  # still a duplicate of the live badge
        issue(restarted, recipient_email="other@example.org")
    revoked = first.revoke_badge(badge.id, reason="lapsed")  # seen by the other at once
    assert restarted.get_badge(badge.id) == revoked and revoked.state == "revoked"
    assert state.stat().st_size > 0


def test_a_process_forked_during_a_dry_run_call_does_not_keep_the_store_locked(tmp_path):
    # A worker forks its scheduler while a job thread is inside a call: the child inherits the
    # connection in its transaction; the call's end must still free the store for every other
    # process.
    state = tmp_path / "credly-dry-run.sqlite3"
    dry = DryRunCredly(organization_id="dry-org", state_file=state)
    with dry._state():
        child = os.fork()
        if child == 0:  # the child keeps its copy of the connection until it is killed
            time.sleep(60)
            os._exit(0)
    try:
        other = sqlite3.connect(state, timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's turn, at once ("locked" if kept)
        other.execute("ROLLBACK")
        other.close()
        assert issue(dry).state == "pending"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def _issue_many_in_a_process(state: str, process: int, count: int) -> None:
    dry = DryRunCredly(organization_id="dry-org", state_file=Path(state))
    for n in range(count):
        earner = f"C-{process}-{n}"
        issue(dry, recipient_email=f"{earner}@example.org", issuer_earner_id=earner)


def test_processes_issuing_at_once_through_one_dry_run_state_file_lose_no_badge(tmp_path):
    state = tmp_path / "credly-dry-run.sqlite3"
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_issue_many_in_a_process, args=(str(state), p, 25)) for p in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    badges = list(DryRunCredly(organization_id="dry-org", state_file=state).list_badges({}))
    assert len(badges) == 75 and len({b.issuer_earner_id for b in badges}) == 75


class _Steps:
    """Counts the SQLite steps (virtual machine instructions) and the JSON bytes that calls cost."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        self.json_bytes = 0
        connect, loads, dumps = sqlite3.connect, json.loads, json.dumps

        def counted_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
            connection = connect(*args, **kwargs)
            connection.set_progress_handler(self._step, 1)
            return connection

        def counted_loads(text: str | bytes, **kwargs: object) -> object:
            self.json_bytes += len(text)
            return loads(text, **kwargs)

        def counted_dumps(value: object, **kwargs: object) -> str:
            text = dumps(value, **kwargs)
            self.json_bytes += len(text)
            return text

        monkeypatch.setattr(sqlite3, "connect", counted_connect)
        monkeypatch.setattr(json, "loads", counted_loads)
        monkeypatch.setattr(json, "dumps", counted_dumps)

    def _step(self) -> int:
        self.steps += 1
        return 0

    def of(self, call: Callable[[], object]) -> tuple[int, int]:
        self.steps = self.json_bytes = 0
        call()
        return self.steps, self.json_bytes


def test_a_dry_run_call_costs_the_same_however_many_badges_are_kept(tmp_path, monkeypatch):
    dry = DryRunCredly(organization_id="dry-org", state_file=tmp_path / "credly-dry-run.sqlite3")
    counted = _Steps(monkeypatch)

    def calls(n: int) -> list[tuple[int, int]]:
        earner = f"C-{n}"
        badge = counted.of(
            lambda: issue(dry, recipient_email=f"{earner}@x.org", issuer_earner_id=earner)
        )
        found = next(b for b in dry.list_badges({"issuer_earner_id": earner}))
        return [
            badge,
            counted.of(lambda: dry.get_badge(found.id)),
            counted.of(lambda: held(dry, earner)),
            counted.of(lambda: dry.revoke_badge(found.id, reason="lapsed")),
        ]

    few = calls(0)
    for n in range(1, 1000):
        issue(dry, recipient_email=f"C-{n}@x.org", issuer_earner_id=f"C-{n}")
    many = calls(1000)
    assert all(steps > 0 for steps, _ in few)  # the store is SQLite
    for (steps_few, bytes_few), (steps_many, bytes_many) in zip(few, many, strict=True):
        assert steps_many <= steps_few + 10  # no search over every badge
        assert bytes_many <= bytes_few + 50  # no JSON of every badge (longer ids here)


def test_the_json_file_of_earlier_releases_is_moved_into_the_dry_run_store_once(tmp_path):
    old_file = tmp_path / "credly-dry-run.json"
    earlier = {}
    for n, state in enumerate(["pending", "revoked", "accepted"]):
        raw = credly_badge_object(
            {
                "issuer_earner_id": f"C-{n}",
                "recipient_email": f"c{n}@x.org",
                "badge_template_id": "tmpl-1",
            },
            badge_id=f"b-{n}",
        )
        earlier[raw["id"]] = {**raw, "state": state}
    old_file.write_text(json.dumps(earlier))
    (tmp_path / "credly-dry-run.lock").write_text("")
    state = tmp_path / "credly-dry-run.sqlite3"

    dry = DryRunCredly(organization_id="dry-org", state_file=state)
    badges = list(dry.list_badges({}))

    assert [(b.id, b.state) for b in badges] == [
        ("b-0", "pending"),
        ("b-1", "revoked"),
        ("b-2", "accepted"),
    ]
    assert not old_file.exists() and not (tmp_path / "credly-dry-run.lock").exists()
    assert json.loads((tmp_path / "credly-dry-run.json.migrated").read_text()) == earlier
    with pytest.raises(PermanentError):  # still a duplicate of the live badge
        issue(dry, recipient_email="C2@X.org", issuer_earner_id="other")
    assert issue(dry, recipient_email="c1@x.org", issuer_earner_id="C-1").state == "pending"
    restarted = DryRunCredly(organization_id="dry-org", state_file=state)
    assert len(list(restarted.list_badges({}))) == 4  # moved once
