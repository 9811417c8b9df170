"""The Credly stand-in driven by the real `CredlyClient` over a socket, and by its control API."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.credly.client import CredlyClient
from connectors.credly.errors import (
    AlreadyReplaced,
    NotFound,
    PermanentError,
    TransientError,
    Unauthorized,
)
from connectors.credly.service import holder_badges
from connectors.credly.wire import Badge, BadgeRequest, pick_badge
from tests.support.credly_standin import Answer, CredlyStandIn

REPO = Path(__file__).resolve().parents[2]


def held(service: object, earner: str, template: str = "tmpl-1") -> Badge | None:
    """The badge Credly holds for the earner on the template: a live one first."""
    return pick_badge(holder_badges(service, badge_template_id=template, issuer_earner_id=earner))


@pytest.fixture
def standin():
    with CredlyStandIn(per_page=2) as server:
        yield server


@pytest.fixture
def client(standin: CredlyStandIn) -> CredlyClient:
    return CredlyClient(standin.url, standin.organization_id, standin.token)


def issue(client: CredlyClient, earner: str = "CERT-1", **overrides: Any) -> Badge:
    fields: dict[str, Any] = {
        "recipient_email": f"{earner.lower()}@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "badge_template_id": "tmpl-1",
        "issued_at": datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        "issuer_earner_id": earner,
        "expires_at": datetime(2027, 3, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return client.issue_badge(BadgeRequest(**fields))


def control(standin: CredlyStandIn, method: str, path: str, body: object = None) -> Any:
    """Drive the stand-in the way a test in another process would."""
    response = requests.request(method, f"{standin.root}/_control/{path}", json=body, timeout=5)
    response.raise_for_status()
    return response.json() if response.content else None


def test_issue_find_and_revoke_through_the_real_client(standin, client):
    badge = issue(client)

    assert badge.state == "pending"
    assert badge.issued_at == datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    assert held(client, "CERT-1") == badge
    assert client.revoke_badge(badge.id, reason="lapsed").state == "revoked"
    assert client.revoke_badge(badge.id, reason="lapsed").state == "revoked"  # again: success
    stored = control(standin, "GET", "badges")["data"]
    assert [(b["id"], b["state"]) for b in stored] == [(badge.id, "revoked")]


def test_a_duplicate_issue_is_refused_with_credlys_error(client):
    issue(client)

    with pytest.raises(PermanentError) as caught:
        issue(client)

    assert caught.value.status == 422
    assert caught.value.body["data"]["message"]


def test_listing_follows_pages_and_filters(client):
    for n in range(5):
        issue(client, earner=f"CERT-{n}")
    issue(client, earner="CERT-0", badge_template_id="tmpl-2")

    assert len(list(client.list_badges({"badge_template_id": "tmpl-1"}))) == 5
    found = held(client, "CERT-0", "tmpl-2")
    assert found is not None and found.badge_template_id == "tmpl-2"


def test_replace_ends_the_old_badge(client):
    old = issue(client)

    new = client.replace_badge(
        old.id,
        BadgeRequest(
            recipient_email="cert-1@example.org",
            first_name="Ada",
            last_name="King",
            badge_template_id="tmpl-1",
            issued_at=datetime(2024, 3, 1, tzinfo=UTC),
            issuer_earner_id="CERT-1",
        ),
    )

    assert new.state == "pending" and new.raw["issued_to_last_name"] == "King"
    assert client.get_badge(old.id).state == "replaced"
    assert held(client, "CERT-1") == new


def test_a_queued_500_is_transient_and_the_next_issue_succeeds(standin, client):
    control(standin, "POST", "faults", {"responses": [{"status": 500}]})

    with pytest.raises(TransientError) as caught:
        issue(client)
    badge = issue(client)

    assert caught.value.status == 500
    assert badge.state == "pending"
    seen = [(r["operation"], r["status"]) for r in control(standin, "GET", "requests")["data"]]
    assert seen == [("issue", 500), ("issue", 201)]


def test_a_queued_429_carries_retry_after(standin, client):
    control(standin, "POST", "faults", {"responses": [{"status": 429, "retry_after": 1}]})

    with pytest.raises(TransientError) as caught:
        issue(client)

    assert (caught.value.status, caught.value.retry_after) == (429, 1.0)


def test_a_delay_provokes_a_client_timeout_while_credly_still_issues(standin):
    slow = CredlyClient(standin.url, standin.organization_id, standin.token, timeout=(1, 0.2))
    standin.queue_faults([{"delay": 0.6}])

    with pytest.raises(TransientError):
        issue(slow)

    # The lost answer is why a job looks before it issues again.
    deadline = time.monotonic() + 10
    while not standin.badges() and time.monotonic() < deadline:
        standin.wait(0.05)
    assert held(slow, "CERT-1") is not None


def test_a_held_call_is_answered_only_once_released(standin, client):
    control(standin, "POST", "faults", {"responses": [{"hold": True}]})
    answers: list[object] = []
    flight = threading.Thread(target=lambda: answers.append(issue(client)))
    flight.start()
    standin.wait_holding()
    standin.wait(0.2)
    assert (answers, standin.badges()) == ([], [])  # still waiting, nothing issued yet
    control(standin, "POST", "release")
    flight.join(timeout=5)
    assert len(answers) == 1 and [b["id"] for b in standin.badges()] == [answers[0].id]
    assert standin.holding() == 0


def test_a_latency_delays_every_api_answer_but_not_the_control_api():
    with CredlyStandIn(latency=1) as slow:
        client = CredlyClient(slow.url, slow.organization_id, slow.token)
        started = time.monotonic()
        issue(client)
        assert pick_badge(
            holder_badges(client, badge_template_id="tmpl-1", issuer_earner_id="CERT-1")
        )
        assert time.monotonic() - started >= 2
        started = time.monotonic()
        assert len(control(slow, "GET", "badges")) == 1
        assert time.monotonic() - started < 1


def test_faults_can_target_other_operations(standin, client):
    badge = issue(client)
    standin.queue_faults([{"status": 503}], operation="revoke")

    with pytest.raises(TransientError):
        client.revoke_badge(badge.id, reason="lapsed")
    assert client.revoke_badge(badge.id, reason="lapsed").state == "revoked"


def test_a_bad_token_is_refused_with_401(standin):
    intruder = CredlyClient(standin.url, standin.organization_id, "wrong-token")

    with pytest.raises(Unauthorized) as caught:
        intruder.get_badge("badge-1")
    anonymous = requests.get(
        f"{standin.url}/organizations/{standin.organization_id}/badges", timeout=5
    )

    assert caught.value.status == 401
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")


def test_events_are_served_to_the_client_and_unknown_ones_are_not_found(standin, client):
    badge = issue(client)
    registered = control(
        standin, "POST", "events", {"id": "ev-1", "type": "badge.updated", "data": {"x": 1}}
    )["data"]
    accepted = control(standin, "POST", f"badges/{badge.id}/state", {"state": "accepted"})["data"]

    assert client.get_event("ev-1") == registered
    assert registered["organization_id"] == standin.organization_id and registered["x"] == 1
    event = client.get_event(accepted["id"])
    assert event["event_type"] == "badge.state.changed"
    assert event["badge"]["id"] == badge.id and event["badge"]["state"] == "accepted"
    assert client.get_badge(badge.id).state == "accepted"
    with pytest.raises(NotFound):
        client.get_event("forged")


def test_an_event_is_served_only_under_its_own_organisations_path(standin, client):
    other = "00000000-0000-0000-0000-000000000009"
    body = {"id": "ev-other", "type": "badge.state.changed", "organization_id": other}
    control(standin, "POST", "events", body)

    with pytest.raises(NotFound) as caught:
        client.get_event("ev-other")  # under the client's own organisation
    elsewhere = requests.get(
        f"{standin.url}/organizations/{other}/events/ev-other",
        auth=(standin.token, ""),
        timeout=5,
    )

    assert caught.value.body == {"data": {"message": "Not found"}, "metadata": {}}
    assert elsewhere.status_code == 404  # this Credly serves its own organisation alone
    assert elsewhere.json() == {"data": {"message": "Not found"}, "metadata": {}}


def test_reset_forgets_everything(standin, client):
    issue(client)
    standin.queue_faults([{"status": 500}])

    control(standin, "POST", "reset")

    assert control(standin, "GET", "badges")["data"] == []
    assert issue(client).state == "pending"


def test_runs_as_a_module_for_benchmarks():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.credly_standin", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        client = CredlyClient(started["url"], started["organization_id"], started["token"])
        assert issue(client).state == "pending"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_a_null_expiry_takes_the_templates_default_and_false_none(standin):
    standin.template_expiry = {"tmpl-1": "2026-12-31 00:00:00 +0000"}
    body = {
        "recipient_email": "a@example.org",
        "issued_to_first_name": "Ada",
        "issued_to_last_name": "Lovelace",
        "badge_template_id": "tmpl-1",
        "issued_at": "2024-03-01 00:00:00 +0000",
    }
    _, defaulted = standin.issue({**body, "expires_at": None})
    _, endless = standin.issue({**body, "recipient_email": "b@example.org", "expires_at": False})
    assert defaulted["data"]["expires_at"] == "2026-12-31T00:00:00.000Z"
    assert endless["data"]["expires_at"] is None


def test_duplicates_are_the_same_template_with_the_same_email_or_earner_id(standin, client):
    issue(client, "CERT-1")
    for same in ({"recipient_email": "CERT-1@example.org", "issuer_earner_id": "X"}, {}):
        with pytest.raises(PermanentError) as refused:
            issue(client, "CERT-1", **same)
        assert refused.value.status == 422
    assert issue(client, "CERT-1", badge_template_id="tmpl-2").state == "pending"


def test_a_replaced_badge_names_its_successor_and_cannot_be_revoked(standin, client):
    old = issue(client)
    new = client.replace_badge(
        old.id,
        BadgeRequest(
            "x@example.org", "Ada", "King", "tmpl-1", datetime(2024, 3, 1, tzinfo=UTC), "CERT-1"
        ),
    )
    assert new.recipient_email == old.recipient_email  # a replace keeps the recipient
    with pytest.raises(AlreadyReplaced) as again:
        client.replace_badge(
            old.id,
            BadgeRequest(
                "x@example.org", "Ada", "King", "tmpl-1", datetime(2024, 3, 1, tzinfo=UTC), "CERT-1"
            ),
        )
    assert again.value.successor == new.id
    assert client.successor_by_replacing(client.get_badge(old.id)) == new
    with pytest.raises(Answer):
        standin.revoke(old.id, {"reason": "lapsed"})


def test_the_token_listing_gives_its_expiry(standin, client):
    standin.token_expires_at = "2027-05-01T00:00:00.000Z"
    assert client.token_expiry() == datetime(2027, 5, 1, tzinfo=UTC)
