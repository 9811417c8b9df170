"""The fields of an event as `POST /v1/events` checks them (docs/api.md): names, e-mail
addresses, times, ids, nulls and points, each refused as a field error naming the field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from gateway.store.models import Event
from gateway.usecases import intake
from gateway.usecases.sweep import Scope, sweep
from tests.support.events import ccp, event, fee, granted, recert

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for

#: `POST /v1/events` with a bearer token is answered in front of Flask; a query leaves it to the
#: view (gateway.web.plain_events).
PLAIN, VIA_FLASK = "/v1/events", "/v1/events?via=flask"


@pytest.fixture
def headers(token_for) -> dict[str, str]:
    return token_for("events:write")


@pytest.fixture
def post(client, headers):
    return lambda body: client.post(PLAIN, json=body, headers=headers)


def errors(response) -> list[dict[str, str]]:
    assert response.status_code == 422, response.get_json()
    return response.get_json()["errors"]


def fields_of(response) -> list[str]:
    return [e["field"] for e in errors(response)]


def member_updated(**data) -> dict:
    return event("member.updated", data, occurred_at="2026-06-01T12:00:00Z")


def test_null_in_a_member_update_is_an_error_of_its_field(post):
    assert post(granted("2026-03-01")).status_code == 202
    assert fields_of(post(member_updated(first_name=None, last_name="Ng"))) == ["data.first_name"]
    [error] = errors(post(member_updated(first_name=None)))
    assert error == {"field": "data.first_name", "message": "Field may not be null."}
    assert fields_of(post(member_updated(email=None))) == ["data.email"]
    assert fields_of(post(member_updated())) == ["data"]  # nothing to change
    assert post(member_updated(last_name="Ng")).status_code == 202


@pytest.mark.parametrize("name", ["employment_start", "employment_end"])
def test_employment_dates_are_only_for_the_employment_category(post, name):
    body = ccp("A1", "2021-06-01", category="formal_education", extra={name: "2021-01-01"})
    [error] = errors(post(body))
    assert error == {"field": f"data.{name}", "message": "Only for category employment."}


def test_an_employment_period_ending_before_it_starts_is_an_error_of_its_start(post):
    """Malformed, as an audit of a cycle not yet begun: named as a field, with its rule."""
    assert post(granted("2019-03-01")).status_code == 202
    period = {"employment_start": "2020-06-01", "employment_end": "2020-03-01"}
    body = ccp("A1", "2020-07-01", category="employment", extra=period)
    response = post(body)
    assert response.status_code == 422
    assert errors(response) == [
        {
            "field": "data.employment_start",
            "rule": "CCP-EMPLOYMENT-2021",
            "message": "Must not be after employment_end (2020-03-01).",
        }
    ]
    period["employment_end"] = "2020-06-01"  # a period of one day is one
    assert post(ccp("A2", "2020-07-01", category="employment", extra=period)).status_code == 202


@pytest.mark.parametrize(
    ("method", "given", "other"),
    [
        ("exam", {"exam_passed_on": "2026-05-01"}, {"ccp_points": 30}),
        ("exam", {"exam_passed_on": "2026-05-01"}, {"earliest_activity_on": "2024-01-01"}),
        (
            "ccp",
            {"ccp_points": 30, "earliest_activity_on": "2024-01-01"},
            {"exam_passed_on": "2026-05-01"},
        ),
    ],
)
def test_the_other_methods_fields_are_refused(post, method, given, other):
    """A recertification carrying the other method's evidence is ambiguous: refused, not ignored."""
    [(name, _)] = other.items()
    body = recert(method, "2026-06-01", **given, **other)
    [error] = errors(post(body))
    assert error == {
        "field": f"data.{name}",
        "message": f"Only for method {'ccp' if method == 'exam' else 'exam'}.",
    }


@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_an_audit_of_a_cycle_not_yet_begun_is_refused(client, headers, post, path):
    """A cycle_start after audited_on is malformed: the audit would lapse the certification."""
    assert post(granted("2026-03-01")).status_code == 202
    audit = {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2026-06-02"}
    response = client.post(path, json=event("audit.completed", audit), headers=headers)
    assert errors(response) == [
        {"field": "data.cycle_start", "message": "Must not be after audited_on (2026-06-01)."}
    ]
    audit["cycle_start"] = "2026-06-01"  # a cycle that begins on the audit's day has begun
    response = client.post(path, json=event("audit.completed", audit), headers=headers)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["standing"]["status"] == "lapsed"


@pytest.mark.parametrize(
    "name",
    ["Ada\tMary", "Ada\nMary", "Ada\x07", "\u202eadA", "Ada\u2028Mary", "A\u200bda", "Ada\ue000"],
)
def test_a_name_with_control_format_or_separator_characters_is_refused(post, name):
    body = granted("2026-03-01")
    body["data"]["member"]["first_name"] = name
    [error] = errors(post(body))
    assert error["field"] == "data.member.first_name"
    assert post(granted("2026-03-01", event_id="grant")).status_code == 202
    assert fields_of(post(member_updated(last_name=name))) == ["data.last_name"]


@pytest.mark.parametrize("name", ["\u0301", "-", "' -", "42", "\u0301\u0302 "])
def test_a_name_without_a_letter_is_refused(post, name):
    """A name of marks, digits or punctuation alone prints as nothing a badge can show."""
    body = granted("2026-03-01")
    body["data"]["member"]["first_name"] = name
    assert errors(post(body)) == [
        {"field": "data.member.first_name", "message": "Must contain a letter."}
    ]
    assert post(granted("2026-03-01", event_id="grant")).status_code == 202
    assert fields_of(post(member_updated(last_name=name))) == ["data.last_name"]


@pytest.mark.parametrize(
    "name", ["Zoë", "O'Brien-Ng", "José María", "李", "हिंदी", "Ngũgĩ wa Thiong'o"]
)
def test_names_of_letters_spaces_apostrophes_and_hyphens_are_taken(post, name):
    body = granted("2026-03-01")
    body["data"]["member"]["last_name"] = name
    response = post(body)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["standing"]["member"]["last_name"] == name


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("a" * 65 + "@example.org", "The part before @ is at most 64 octets."),
        ("é" * 33 + "@example.org", "The part before @ is at most 64 octets."),
        ("a" * 250 + "@example.org", "The part before @ is at most 64 octets."),
        (f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 58}.org", "An address is at most 254 octets."),
    ],
)
def test_an_address_past_smtps_lengths_is_refused(post, email, message):
    body = granted("2026-03-01")
    body["data"]["member"]["email"] = email
    assert errors(post(body)) == [{"field": "data.member.email", "message": message}]


def test_an_address_at_smtps_lengths_is_taken(post):
    body = granted("2026-03-01")
    body["data"]["member"]["email"] = f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 57}.org"
    assert post(body).status_code == 202, post(body).get_json()


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-W10-1T12:00:00Z",  # an ISO 8601 week date
        "2026-03-02 12:00:00Z",  # a space for T
        "2026-03-02T12:00Z",  # no seconds
        "2026-03-02T12:00:00",  # no offset
        "2026-03-02T12:00:00+0100",  # an offset without its colon
        "2026-061T12:00:00Z",  # an ordinal date
        "20260302T120000Z",  # the basic format
        "2026-03-02T12:00:60Z",  # a leap second, which Python's times cannot hold
    ],
)
def test_occurred_at_other_than_rfc_3339_is_refused(post, occurred_at):
    body = granted("2026-03-01", occurred_at=occurred_at)
    [error] = errors(post(body))
    assert error["field"] == "occurred_at" and "RFC 3339" in error["message"]


@pytest.mark.parametrize(
    ("occurred_at", "moment"),
    [
        ("2026-03-02T12:00:00Z", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02t12:00:00z", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02T13:00:00.1234567+01:00", datetime(2026, 3, 2, 12, 0, 0, 123456, UTC)),
        ("2026-03-02T10:30:00-01:30", datetime(2026, 3, 2, 12, tzinfo=UTC)),
    ],
)
def test_occurred_at_in_rfc_3339_is_taken(client, headers, occurred_at, moment):
    response = client.post(
        PLAIN, json=granted("2026-03-01", occurred_at=occurred_at), headers=headers
    )
    assert response.status_code == 202, response.get_json()
    recorded = client.get(response.headers["Location"], headers=headers).get_json()
    assert datetime.fromisoformat(recorded["occurred_at"]) == moment


def test_a_history_with_lower_case_t_and_z_is_read_again_by_every_later_request(
    app, client, post, token_for
):
    """Stored as sent, such an occurred_at is read back with the history of every later event,
    standing, lookup on a day and sweep of its certification."""
    assert post(granted("2026-03-01", occurred_at="2026-03-02t12:00:00z")).status_code == 202
    assert post(fee(2027, "2026-11-30")).status_code == 202
    reader = token_for("certifications:read verifications:read")
    assert client.get("/v1/certifications/CERT-1", headers=reader).status_code == 200
    on_day = client.get("/v1/verifications/CERT-1?on=2026-06-01", headers=reader)
    assert on_day.status_code == 200 and on_day.get_json()["status"] == "active"
    summary = sweep(app.extensions["gateway"], Scope(as_of=date(2028, 4, 1)))
    assert summary.evaluated == 1


def test_a_certification_id_of_other_letters_is_refused_as_not_ascii(post):
    [error] = errors(post(granted("2026-03-01", cert="CÉRT-1")))
    assert error["field"] == "certification_id" and "ASCII letters" in error["message"]


@pytest.mark.parametrize("name", ["event_id", "certification_id"])
def test_an_empty_id_is_one_error(post, name):
    body = granted("2026-03-01")
    body[name] = ""
    assert errors(post(body)) == [{"field": name, "message": "Length must be between 1 and 128."}]


# 1.999999999999999999999 reads as the float 2.0; 0.1000000000000000000001 as 0.1.
TOO_PRECISE = ["1.999999999999999999999", "0.1000000000000000000001", "2.675", "1e-400"]


def raw_ccp(points: str, event_id: str = "ccp-1") -> str:
    body = ccp("A1", "2026-06-01", event_id=event_id, points=0)
    return json.dumps(body).replace('"points": 0', f'"points": {points}')


@pytest.mark.parametrize("points", TOO_PRECISE)
@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_points_past_two_decimals_are_refused_as_written(client, headers, post, path, points):
    assert post(granted("2026-03-01")).status_code == 202
    response = client.post(
        path, data=raw_ccp(points), content_type="application/json", headers=headers
    )
    assert errors(response) == [
        {"field": "data.points", "message": "Use at most 2 decimal places."}
    ]


def test_points_past_two_decimals_are_refused_in_a_batch(client, headers, post):
    assert post(granted("2026-03-01")).status_code == 202
    events = ", ".join(raw_ccp(points, f"ccp-{n}") for n, points in enumerate(TOO_PRECISE))
    response = client.post(
        "/v1/events/batch",
        data=f'{{"events": [{events}]}}',
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200
    for result in response.get_json()["results"]:
        assert result["status"] == 422
        assert [e["field"] for e in result["body"]["errors"]] == ["data.points"]


@pytest.mark.parametrize("points", ["12.5", "12.50", "1250e-2", "7"])
@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_points_as_written_are_stored_and_replayed_as_before(
    app, client, headers, post, path, points
):
    """The body is hashed and stored as before points kept their text: an event recorded then is
    replayed (its hash is that of the body read with plain floats)."""
    assert post(granted("2026-03-01")).status_code == 202
    raw = raw_ccp(points)
    first = client.post(path, data=raw, content_type="application/json", headers=headers)
    assert first.status_code == 202, first.get_json()
    again = client.post(path, data=raw, content_type="application/json", headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    with app.extensions["gateway"].db.sessions() as session:
        row = session.scalars(select(Event).where(Event.event_id == "ccp-1")).one()
        assert row.body == json.loads(raw)
        assert row.body_hash == intake.body_hash(json.loads(raw))


@pytest.mark.parametrize("member_id", ["   ", "\t"])
def test_a_member_id_of_only_spaces_is_refused(post, member_id):
    body = granted("2026-03-01")
    body["data"]["member"]["member_id"] = member_id
    assert errors(post(body)) == [
        {"field": "data.member.member_id", "message": "Must not be blank."}
    ]


@pytest.mark.parametrize(
    "email",
    [
        '"\x01"@example.org',
        '"a\x7fb"@example.org',
        "jane@exa\u00admple.org",
        "jane@example.org\u200b",
    ],
    ids=["quoted-control", "quoted-delete", "soft-hyphen", "zero-width-space"],
)
@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_an_address_with_control_or_format_characters_is_refused(
    client, headers, post, path, email
):
    def send(body: dict) -> list[dict[str, str]]:
        return errors(client.post(path, json=body, headers=headers))

    body = granted("2026-03-01")
    body["data"]["member"]["email"] = email
    message = "No control, formatting or line-separator characters."
    assert send(body) == [{"field": "data.member.email", "message": message}]
    assert post(granted("2026-03-01", event_id="grant")).status_code == 202
    assert send(member_updated(email=email)) == [{"field": "data.email", "message": message}]


def send_raw(client, headers, path: str, raw: str):
    return client.post(path, data=raw, content_type="application/json", headers=headers)


@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_a_number_written_otherwise_is_the_same_body_and_replays(client, headers, post, path):
    """10, 10.0 and 1e1 are one number in canonical JSON (RFC 8785), as 12.5 and 12.50 are."""
    assert post(granted("2026-03-01")).status_code == 202
    first = send_raw(client, headers, path, raw_ccp("10"))
    assert first.status_code == 202, first.get_json()
    for written in ("10.0", "1e1", "1.0E+1", "10"):
        again = send_raw(client, headers, path, raw_ccp(written))
        assert again.status_code == 202, (written, again.get_json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()
    assert send_raw(client, headers, path, raw_ccp("10.5")).status_code == 409
    events = f'{{"events": [{raw_ccp("10.0")}, {raw_ccp("1e1")}]}}'
    results = send_raw(client, headers, "/v1/events/batch", events).get_json()["results"]
    assert [(r["status"], r["replayed"]) for r in results] == [(202, True), (202, True)]


@pytest.mark.parametrize("path", [PLAIN, VIA_FLASK])
def test_an_event_recorded_with_the_legacy_hash_still_replays(app, client, headers, post, path):
    """Events recorded before integral numbers were hashed as integers keep that hash: sent again
    as written then, they are replays, not conflicts."""
    assert post(granted("2026-03-01")).status_code == 202
    raw = raw_ccp("10.0")
    first = send_raw(client, headers, path, raw)
    assert first.status_code == 202, first.get_json()
    legacy = intake.legacy_body_hash(json.loads(raw))
    assert legacy != intake.body_hash(json.loads(raw))
    with app.extensions["gateway"].db.transaction() as session:
        row = session.scalars(select(Event).where(Event.event_id == "ccp-1")).one()
        row.body_hash = legacy
    again = send_raw(client, headers, path, raw)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert send_raw(client, headers, path, raw_ccp("10.5")).status_code == 409


LONG = "9" * 4301  # more digits than Python reads as an int


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            fee(2026, "2026-06-01", event_id="fee-long"),
            "data.membership_year",
            "Must be greater than or equal to 1900 and less than or equal to 2999.",
        ),
        (
            ccp("A1", "2026-06-01", event_id="ccp-long", points=7),
            "data.points",
            "Must be greater than 0 and less than or equal to 1000.",
        ),
    ],
    ids=["membership_year", "points"],
)
@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_of_thousands_of_digits_is_refused_by_its_field(
    client, headers, post, body, field, message, sign
):
    assert post(granted("2026-03-01")).status_code == 202
    number = f"{sign}{LONG}"
    raw = json.dumps(body).replace(": 2026,", f": {number},").replace(": 7}", f": {number}}}")
    assert LONG in raw
    for path in (PLAIN, VIA_FLASK):
        assert errors(send_raw(client, headers, path, raw)) == [
            {"field": field, "message": message}
        ]
    batch = send_raw(client, headers, "/v1/events/batch", f'{{"events": [{raw}]}}')
    [result] = batch.get_json()["results"]
    assert result["status"] == 422
    assert result["body"]["errors"] == [{"field": field, "message": message}]
