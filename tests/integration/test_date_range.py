"""Every date a client sends outside the range the rules compute in is a 422 naming its field.

Beyond it the rules' date arithmetic (cycle ends, lapses years later) leaves what dates can hold:
`as_of=9999-01-01` was a 500 ("year 10000 is out of range").
"""

from __future__ import annotations

import pytest

from gateway.rules.periods import EARLIEST_DAY, LATEST_DAY
from tests.support.events import event, granted

TOO_LATE, TOO_EARLY = "9999-12-31", "0001-01-01"
LAST, FIRST = LATEST_DAY.isoformat(), EARLIEST_DAY.isoformat()
BEFORE_FIRST = f"{EARLIEST_DAY.year - 1}-12-31"
AFTER_LAST = f"{LATEST_DAY.year + 1}-01-01"

MEMBER = {"member_id": "M-1", "first_name": "Ada", "last_name": "Lovelace", "email": "a@b.org"}
#: Each event type with every date it carries set to 2026-03-01.
EVENTS = {
    "certification.granted": {"member": MEMBER, "credential": "RMA", "certified_on": "2026-03-01"},
    "renewal.fee_paid": {"membership_year": 2026, "paid_on": "2026-03-01"},
    "ccp.activity_recorded": {
        "activity_id": "A-1",
        "category": "employment",
        "completed_on": "2026-03-01",
        "points": 5,
        "employment_start": "2026-03-01",
        "employment_end": "2026-03-01",
    },
    "audit.completed": {
        "result": "passed",
        "audited_on": "2026-03-01",
        "cycle_start": "2026-03-01",
    },
    "recertification.completed": {
        "method": "ccp",
        "completed_on": "2026-03-01",
        "application_id": "APP-1",
        "eligibility_criteria": "EC-1",
        "ccp_points": 60,
        "earliest_activity_on": "2026-03-01",
        "exam_passed_on": "2026-03-01",
    },
    "certification.revoked": {"reason": "misconduct", "revoked_on": "2026-03-01"},
}
DATE_FIELDS = [
    (kind, name)
    for kind, data in EVENTS.items()
    for name, value in data.items()
    if value == "2026-03-01"
]


@pytest.fixture
def headers(token_for):
    return token_for("events:write certifications:read")


def _event_with(kind: str, name: str, day: str) -> dict:
    return event(kind, {**EVENTS[kind], name: day}, occurred_at="2026-03-02T12:00:00Z")


def _names_only(response, field: str) -> None:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert [e["field"] for e in response.get_json()["errors"]] == [field]


@pytest.mark.parametrize("day", [TOO_LATE, AFTER_LAST, TOO_EARLY, BEFORE_FIRST])
def test_an_event_date_outside_the_range_is_a_422_naming_it_alone_or_in_a_batch(
    client, headers, day
):
    assert client.post("/v1/events", json=granted("2020-03-01"), headers=headers).status_code == 202
    for kind, name in DATE_FIELDS:
        body = _event_with(kind, name, day)
        _names_only(client.post("/v1/events", json=body, headers=headers), f"data.{name}")
        answer = client.post("/v1/events/batch", json={"events": [body]}, headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        [result] = answer.get_json()["results"]
        assert result["status"] == 422, (kind, name, result)
        assert [e["field"] for e in result["body"]["errors"]] == [f"data.{name}"]


@pytest.mark.parametrize(
    "moment",
    [f"{TOO_LATE}T23:59:59-05:00", f"{AFTER_LAST}T00:00:00Z", f"{BEFORE_FIRST}T23:59:59Z"],
)
def test_an_occurred_at_outside_the_range_is_a_422_naming_it(client, headers, moment):
    body = granted("2020-03-01", occurred_at=moment)
    _names_only(client.post("/v1/events", json=body, headers=headers), "occurred_at")


@pytest.mark.parametrize("as_of", [TOO_LATE, AFTER_LAST, TOO_EARLY, BEFORE_FIRST])
def test_an_as_of_outside_the_range_is_a_422_naming_it(client, headers, as_of):
    assert client.post("/v1/events", json=granted("2020-03-01"), headers=headers).status_code < 300
    response = client.get(f"/v1/certifications/CERT-1?as_of={as_of}", headers=headers)
    _names_only(response, "as_of")


def test_the_range_s_ends_are_computed_without_error(client, headers):
    """The first and last days are taken, and the rules compute the standing on them."""
    early = granted(FIRST, cert="EARLY", occurred_at=f"{FIRST}T00:00:00Z")
    assert client.post("/v1/events", json=early, headers=headers).status_code < 300
    for as_of in (FIRST, LAST):
        response = client.get(f"/v1/certifications/EARLY?as_of={as_of}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
    late = granted(LAST, cert="LATE", occurred_at=f"{LAST}T23:59:59Z")
    answer = client.post("/v1/events", json=late, headers=headers)  # the rules refuse the future
    assert answer.status_code == 422, answer.get_data(as_text=True)
