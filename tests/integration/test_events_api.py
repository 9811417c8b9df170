"""POST /v1/events and the reads, through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from gateway.cli.main import cli
from gateway.platform import clock
from gateway.rules.policy import DEFAULT_POLICY_FILE
from gateway.store.models import Certification, Event, OutboxItem
from gateway.usecases import intake
from tests.support.events import ccp, event, fee, granted, recert, revoked

pytestmark = pytest.mark.on_day("2026-12-04")  # the day its fixed dates are written for


@pytest.fixture
def app(database_url, make_app):
    """Jobs run synchronously in-process so the tests see their results."""
    return make_app(database_url=database_url, jobs_synchronous=True)


@pytest.fixture
def post(client, token_for):
    headers = token_for("events:write")

    def send(body, **kw):
        return client.post("/v1/events", json=body, headers=headers, **kw)

    return send


@pytest.fixture
def reader(client, token_for):
    headers = token_for("certifications:read")
    return lambda url: client.get(url, headers=headers)


def rules_of(response) -> list[str]:
    return [e["rule"] for e in response.get_json()["errors"]]


def test_grant_is_accepted_with_standing_actions_and_location(post, reader):
    response = post(granted("2026-03-01"))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "accepted"
    assert body["actions"] == ["issue_badge", "sync_verification"]
    standing = body["standing"]
    assert standing["certification_id"] == "CERT-1"
    assert standing["status"] == "active"
    assert standing["fees"]["paid_through"] == "2027-03-31"
    assert standing["member"]["email"] == "ada@example.org"
    assert response.headers["Location"] == f"/v1/events/{body['event_id']}"
    recorded = reader(response.headers["Location"]).get_json()
    assert recorded["status"] == "accepted" and recorded["reasons"] == []
    assert [(j["kind"], j["state"]) for j in recorded["jobs"]] == [
        ("issue_badge", "done"),
        ("sync_verification", "done"),
    ]


def test_occurred_at_is_read_back_as_sent_its_offset_kept(post, reader):
    """Its offset decides its day (docs/rules.md, CCP-FUTURE); in UTC it would read as another."""
    sent = granted("2026-03-01", occurred_at="2026-03-01T20:30:00-08:00")
    response = post(sent)
    assert response.status_code == 202, response.get_json()
    recorded = reader(response.headers["Location"]).get_json()
    assert recorded["occurred_at"] == "2026-03-01T20:30:00-08:00"
    malformed = {**sent, "event_id": "bad-offset", "data": {**sent["data"], "credential": 5}}
    assert post(malformed).status_code == 422
    assert reader("/v1/events/bad-offset").get_json()["occurred_at"] == sent["occurred_at"]


@pytest.mark.parametrize("event_id", ["crm/2026/42", "a?b#c%d", "x%2Fy", "v1.2/..x/a.", "..."])
def test_an_event_id_with_url_characters_is_read_back_at_its_location(post, reader, event_id):
    response = post(granted("2026-03-01", event_id=event_id))
    assert response.status_code == 202, response.get_json()
    recorded = reader(response.headers["Location"])
    assert recorded.status_code == 200, response.headers["Location"]
    assert recorded.get_json()["event_id"] == event_id


@pytest.mark.parametrize("event_id", ["/x", "x/", "a//b", "a/../x", "./x", "a/.", ".."])
def test_an_event_id_a_url_would_rewrite_is_refused(post, event_id):
    response = post(granted("2026-03-01", event_id=event_id))
    assert response.status_code == 422
    [error] = response.get_json()["errors"]
    assert error["field"] == "event_id" and "between slashes" in error["message"]


def test_standing_read_shows_badge_issued_by_the_job(post, reader):
    post(granted("2026-03-01"))
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["badge"]["state"] == "pending"
    assert standing["badge"]["credly_badge_id"]
    assert standing["verification"]["status"] == "active"


def test_as_of_evaluates_another_day(post, reader):
    post(granted("2020-01-10"))
    then = reader("/v1/certifications/CERT-1?as_of=2021-01-31").get_json()
    assert then["status"] == "active" and then["as_of"] == "2021-01-31"
    later = reader("/v1/certifications/CERT-1?as_of=2021-02-01").get_json()
    assert later["status"] == "inactive"
    assert "FEE-OVERDUE" in [r["rule"] for r in later["reasons"]]


def test_as_of_bad_or_before_the_grant(post, reader):
    post(granted("2020-01-10"))
    bad = reader("/v1/certifications/CERT-1?as_of=yesterday")
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "as_of"
    early = reader("/v1/certifications/CERT-1?as_of=2019-01-01")
    assert early.status_code == 422 and early.get_json()["errors"][0]["field"] == "as_of"


def test_unknown_certification_reads_404(reader):
    response = reader("/v1/certifications/NOPE")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_credentials_lists_the_policy_table(reader):
    credentials = reader("/v1/credentials").get_json()["credentials"]
    by_code = {c["code"]: c for c in credentials}
    assert len(by_code) == 10
    assert by_code["RPT"]["points_per_cycle"] == 24
    assert by_code["MT"]["points_per_cycle"] == 45
    assert by_code["RMA"]["name"] == "Registered Medical Assistant"
    assert by_code["RMA"]["eligibility_criteria"] == "EC-2026"


def test_unknown_certification_is_404_cert_unknown_and_not_recorded(app, post):
    response = post(fee(2021, "2021-01-05"))
    assert response.status_code == 404
    assert rules_of(response) == ["CERT-UNKNOWN"]
    with app.extensions["gateway"].db.sessions() as session:
        assert session.query(Event).count() == 0


def test_same_event_twice_replays_the_first_answer_and_causes_nothing(app, post):
    body = granted("2026-03-01")
    first = post(body)
    again = post(json.loads(json.dumps(body, sort_keys=True)))  # same body, other key order
    assert again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    with app.extensions["gateway"].db.sessions() as session:
        assert session.query(Event).count() == 1
        assert session.query(OutboxItem).count() == 2


def test_same_event_id_with_another_body_is_409(post):
    body = granted("2026-03-01")
    post(body)
    other = dict(body, data={**body["data"], "certified_on": "2026-03-02"})
    response = post(other)
    assert response.status_code == 409
    assert response.get_json()["errors"][0]["field"] == "event_id"


def test_rejected_event_is_recorded_and_replayed(app, post, reader):
    post(granted("2020-01-10"))
    body = fee(2020, "2020-02-01")
    first = post(body)
    assert first.status_code == 422 and rules_of(first) == ["FEE-YEAR-RANGE"]
    assert post(body).headers["Idempotent-Replayed"] == "true"
    recorded = reader(f"/v1/events/{body['event_id']}").get_json()
    assert recorded["status"] == "rejected"
    assert recorded["reasons"][0]["rule"] == "FEE-YEAR-RANGE"
    assert recorded["jobs"] == []


def test_events_read_unknown_is_404(reader):
    assert reader("/v1/events/nope").status_code == 404


@pytest.mark.parametrize(
    ("setup", "bad", "rule"),
    [
        ([granted("2020-01-10")], fee(2020, "2020-02-01"), "FEE-YEAR-RANGE"),
        ([granted("2020-01-10")], fee(2023, "2021-01-05"), "FEE-YEAR-RANGE"),
        (
            [granted("2020-01-10"), fee(2021, "2021-01-05")],
            fee(2021, "2021-01-06"),
            "FEE-DUPLICATE",
        ),
        (
            [granted("2020-01-10")],
            ccp("A1", "2019-12-31", occurred_at="2020-02-01T00:00:00Z"),
            "CCP-BEFORE-CYCLE",
        ),
        (
            [granted("2020-01-10")],
            ccp("A1", "2021-05-02", occurred_at="2021-05-01T00:00:00Z"),
            "CCP-FUTURE",
        ),
        (
            [granted("2020-01-10")],
            ccp(
                "A1",
                "2021-01-31",
                category="employment",
                extra={"employment_start": "2020-02-01", "employment_end": "2021-01-01"},
            ),
            "CCP-EMPLOYMENT-2021",
        ),
        (
            [granted("2020-01-10"), ccp("A1", "2020-05-01")],
            ccp("A1", "2020-05-01"),
            "CCP-DUPLICATE",
        ),
        ([granted("2010-06-15")], fee(2015, "2015-01-01"), "CERT-LAPSED"),
        ([granted("2020-01-10"), revoked("2021-01-01")], fee(2021, "2021-01-05"), "CERT-REVOKED"),
        ([granted("2020-01-10")], granted("2020-01-10"), "CERT-EXISTS"),
        ([], granted("2020-01-10", credential="XYZ"), "CREDENTIAL-UNKNOWN"),
        (
            [granted("2026-03-01")],
            recert("exam", "2026-04-01", exam_passed_on="2026-03-20"),
            "RECERT-NOT-LAPSED",
        ),
        (
            [granted("2010-06-15")],
            recert("ccp", "2025-01-01", ccp_points=30, earliest_activity_on="2023-01-01"),
            "RECERT-EXAM-ONLY",
        ),
        (
            [granted("2010-06-15")],
            recert("exam", "2020-01-01", exam_passed_on="2014-01-01"),
            "RECERT-EXAM-RESULT",
        ),
        (
            [granted("2010-06-15")],
            recert("ccp", "2020-01-01", ccp_points=10, earliest_activity_on="2018-01-01"),
            "RECERT-CCP-POINTS",
        ),
        (
            [granted("2010-06-15")],
            recert("exam", "2020-01-01", exam_passed_on="2019-12-01", eligibility_criteria="OLD"),
            "RECERT-ELIGIBILITY",
        ),
        (
            [granted("2020-01-10")],
            fee(2021, "2021-01-05", occurred_at="2026-12-04T13:00:00Z"),  # an hour ahead
            "EVENT-FUTURE",
        ),
    ],
)
def test_each_rejection_rule_reaches_the_api(post, setup, bad, rule):
    for body in setup:
        assert post(body).status_code == 202, post(body).get_json()
    response = post(bad)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert rule in rules_of(response)
    assert all(e["message"] for e in response.get_json()["errors"])


def test_an_event_refused_on_a_revoked_certification_names_its_own_rules_too(post, reader):
    """CERT-REVOKED first, then what the event's own checks find; recorded as rejected."""
    for body in (granted("2020-01-10"), revoked("2021-01-01")):
        assert post(body).status_code == 202, post(body).get_json()
    second_grant = granted("2020-01-10", credential="XYZ")
    response = post(second_grant)
    assert response.status_code == 422, response.get_json()
    assert rules_of(response) == ["CERT-REVOKED", "CERT-EXISTS", "CREDENTIAL-UNKNOWN"]
    far_year = fee(2030, "2021-01-05")
    assert rules_of(post(far_year)) == ["CERT-REVOKED", "FEE-YEAR-RANGE"]
    for body in (second_grant, far_year):
        assert reader(f"/v1/events/{body['event_id']}").get_json()["status"] == "rejected"
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["status"] == "revoked"
    assert [r["rule"] for r in standing["reasons"]] == ["CERT-REVOKED"]
    assert post(event("member.updated", {"last_name": "King"})).status_code == 202


def test_events_dated_before_the_revocation_count_whichever_arrives_first(
    post, reader, client, token_for
):
    """A payment and a CCP activity dated before the revocation, sent after it, are refused
    CERT-REVOKED and kept (docs/rules.md, *Arrival order*): the standings and verifications of
    the days before the revocation are those of date order."""
    employer = token_for("verifications:read")
    answers = {}
    for order, cert in (("date order", "IN-ORDER"), ("revocation first", "LATE")):
        assert post(granted("2025-06-10", cert=cert)).status_code == 202
        revocation = revoked("2026-01-01", cert=cert)
        earlier = [fee(2026, "2025-12-01", cert=cert), ccp("A-1", "2025-11-15", cert=cert)]
        bodies = [*earlier, revocation] if order == "date order" else [revocation, *earlier]
        statuses = [post(body).status_code for body in bodies]
        assert statuses == ([202, 202, 202] if order == "date order" else [202, 422, 422])
        for day in ("2025-12-31", "2026-01-01", "2026-12-07"):
            standing = reader(f"/v1/certifications/{cert}?as_of={day}").get_json()
            verified = client.get(f"/v1/verifications/{cert}?on={day}", headers=employer)
            answers[order, day] = (
                standing["status"],
                standing["fees"],
                standing["ccp"]["points_earned"],
                {
                    k: v
                    for k, v in verified.get_json().items()
                    if k not in ("certification_id", "verified_at")
                },
            )
    for day in ("2025-12-31", "2026-01-01", "2026-12-07"):
        assert answers["date order", day] == answers["revocation first", day], day
    status, fees, points, _ = answers["revocation first", "2025-12-31"]
    assert (status, fees["paid_through"], points) == ("active", "2027-06-30", 10)


def test_events_dated_on_the_revocation_day_give_one_standing_whichever_arrives_first(post, reader):
    """A revocation comes first on its day (docs/rules.md, *One day's events*): a payment, a
    failed audit or a recertification dated that day counts in neither order, and of two
    revocations of one day the one that occurred first names the reason."""
    day = "2026-03-10"
    same_day = {
        "fee": lambda cert: fee(2024, day, cert=cert),
        "audit": lambda cert: event(
            "audit.completed",
            {"result": "failed", "audited_on": day, "cycle_start": "2023-03-01"},
            cert=cert,
        ),
        "recert": lambda cert: recert("exam", day, exam_passed_on="2026-03-01", cert=cert),
        "revocation": lambda cert: event(
            "certification.revoked",
            {"reason": "fraud", "revoked_on": day},
            cert=cert,
            occurred_at=f"{day}T09:00:00Z",
        ),
    }
    standings = {}
    for kind, make in same_day.items():
        for order, cert in (("first", f"{kind}-FIRST"), ("after", f"{kind}-AFTER")):
            assert post(granted("2023-03-01", cert=cert)).status_code == 202
            if kind == "recert":  # lapsed on 2026-03-01 by a failed audit, so that it counts
                audit = {
                    "result": "failed",
                    "audited_on": "2026-03-01",
                    "cycle_start": "2023-03-01",
                }
                assert post(event("audit.completed", audit, cert=cert)).status_code == 202
            revocation = revoked(day, cert=cert, occurred_at=f"{day}T10:00:00Z")
            for body in (make(cert), revocation) if order == "first" else (revocation, make(cert)):
                post(body)
            standing = reader(f"/v1/certifications/{cert}").get_json()
            standings[kind, order] = {k: standing[k] for k in ("certified_on", "reasons", "fees")}
            standings[kind, order]["ccp"] = standing["ccp"]["cycle_start"]
        assert standings[kind, "first"] == standings[kind, "after"], kind
    assert standings["fee", "first"]["fees"]["paid_through"] == "2024-03-31"
    assert standings["audit", "first"]["ccp"] == "2026-04-01"  # no picture frozen by the audit
    assert standings["recert", "first"]["certified_on"] == "2023-03-01"
    [reason] = standings["revocation", "first"]["reasons"]
    assert reason["message"] == "the certification was revoked on 2026-03-10: fraud"


def test_a_grandfathered_certification_shows_no_cycle_and_no_points(post, reader):
    """CCP-GRANDFATHERED: no requirement, so no cycle and no points to count (null, not 0), even
    with activities recorded."""
    post(granted("2005-06-03"))
    for year in range(2006, 2028):
        post(fee(year, f"{year}-06-01" if year < 2026 else "2026-06-01"))
    assert post(ccp("A-1", "2026-06-01", points=12)).status_code == 202
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["status"] == "active"
    assert standing["ccp"] == {
        "required": False,
        "cycle_start": None,
        "cycle_end": None,
        "points_required": None,
        "points_earned": None,
        "points_by_category": {},
    }


def test_a_revocation_dated_before_the_recorded_one_is_kept_and_counts_from_its_day(post, reader):
    assert post(granted("2023-03-01")).status_code == 202
    assert post(revoked("2026-03-10")).status_code == 202
    earlier = event("certification.revoked", {"reason": "fraud", "revoked_on": "2026-02-01"})
    refused = post(earlier)
    assert (refused.status_code, rules_of(refused)) == (422, ["CERT-REVOKED"])
    assert reader(f"/v1/events/{earlier['event_id']}").get_json()["status"] == "rejected"
    between = reader("/v1/certifications/CERT-1?as_of=2026-02-15").get_json()
    assert between["status"] == "revoked"
    [reason] = between["reasons"]
    assert reason["message"] == "the certification was revoked on 2026-02-01: fraud"
    assert post(event("member.updated", {"last_name": "King"})).status_code == 202


def test_recertification_starts_a_new_period_and_issues_a_badge(post, reader):
    assert post(granted("2010-06-15")).get_json()["standing"]["status"] == "lapsed"
    response = post(recert("exam", "2026-10-01", exam_passed_on="2026-09-15"))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["standing"]["status"] == "active"
    assert body["standing"]["certified_on"] == "2026-10-01"
    assert "issue_badge" in body["actions"]


def test_lapse_by_audit_revokes_the_badge(post, reader):
    post(granted("2026-03-01"))
    response = post(
        event(
            "audit.completed",
            {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2026-03-01"},
        )
    )
    body = response.get_json()
    assert body["standing"]["status"] == "lapsed"
    assert body["actions"] == ["revoke_badge", "sync_verification"]
    assert reader("/v1/certifications/CERT-1").get_json()["badge"]["state"] == "revoked"


def test_member_update_replaces_the_badge(post, reader):
    post(granted("2026-03-01"))
    first_id = reader("/v1/certifications/CERT-1").get_json()["badge"]["credly_badge_id"]
    response = post(event("member.updated", {"last_name": "King"}))
    assert response.get_json()["actions"] == ["replace_badge", "sync_verification"]
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["member"]["last_name"] == "King"
    assert standing["badge"]["credly_badge_id"] != first_id


def test_a_late_member_update_older_than_the_grant_changes_nothing(client, post, reader):
    """The grant's member block (sent 2026-11-01) is newer than a member.updated of 2019 that
    arrives after it: recorded, with no badge job, and the grant's name and e-mail stay."""
    post(granted("2026-11-01"))
    badge_id = reader("/v1/certifications/CERT-1").get_json()["badge"]["credly_badge_id"]
    old = {"last_name": "Byron", "email": "old@example.org"}
    response = post(event("member.updated", old, occurred_at="2019-05-01T12:00:00Z"))
    assert response.status_code == 202
    assert response.get_json()["actions"] == []
    assert reader(response.headers["Location"]).get_json()["jobs"] == []
    for url in ("/v1/certifications/CERT-1", "/v1/certifications/CERT-1?as_of=2026-11-01"):
        member = reader(url).get_json()["member"]
        assert (member["last_name"], member["email"]) == ("Lovelace", "ada@example.org")
    assert reader("/v1/certifications/CERT-1").get_json()["badge"]["credly_badge_id"] == badge_id
    assert client.get("/v1/verifications/CERT-1").get_json()["name"] == "Ada Lovelace"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_id": "x"}, "type"),
        (dict(granted("2026-03-01"), extra=1), "extra"),
        (
            event("renewal.fee_paid", {"membership_year": "2021", "paid_on": "2021-01-01"}),
            "data.membership_year",
        ),
        (
            event("renewal.fee_paid", {"membership_year": 2021, "paid_on": "2021-01-01", "x": 1}),
            "data.x",
        ),
        (dict(granted("2026-03-01"), occurred_at="2026-03-01T12:00:00"), "occurred_at"),
        (granted("2026-03-01", cert="bad id!"), "certification_id"),
        (ccp("A1", "2021-01-01", category="karaoke"), "data.category"),
        (ccp("A1", "2021-01-01", points=0), "data.points"),
        (ccp("A1", "2021-01-01", category="employment"), "data.employment_start"),
        (recert("exam", "2021-01-01"), "data.exam_passed_on"),
        (event("member.updated", {}), "data"),
        (
            event(
                "certification.granted",
                {"member": {"member_id": "m"}, "credential": "RMA", "certified_on": "2026-01-01"},
            ),
            "data.member.email",
        ),
    ],
)
def test_malformed_events_are_422_naming_the_field(post, body, field):
    response = post(body)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.get_json()["errors"]]


@pytest.mark.parametrize(
    ("body", "fields", "rule"),
    [
        (recert("exam", "2021-01-01"), ["data.exam_passed_on"], "RECERT-EXAM-RESULT"),
        (
            recert("ccp", "2021-01-01"),
            ["data.ccp_points", "data.earliest_activity_on"],
            "RECERT-CCP-POINTS",
        ),
        (
            ccp("A1", "2021-01-01", category="employment"),
            ["data.employment_start", "data.employment_end"],
            "CCP-EMPLOYMENT-2021",
        ),
    ],
)
def test_a_field_a_rule_requires_is_422_naming_the_field_and_the_rule(post, body, fields, rule):
    response = post(body)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert [(e["field"], e.get("rule")) for e in errors] == [(f, rule) for f in fields]


def test_malformed_json_is_400(client, token_for):
    response = client.post(
        "/v1/events",
        data="{not json",
        content_type="application/json",
        headers=token_for("events:write"),
    )
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/merge-patch+json",
        "application/problem+json",
        "application/json; charset=latin-1",
        'application/json; charset="UTF-16"',
    ],
)
@pytest.mark.parametrize("path", ["/v1/events", "/v1/events?via=flask", "/v1/events/batch"])
def test_wrong_content_type_is_415(client, token_for, path, content_type):
    """Only application/json: another JSON type means another thing than an event (a merge
    patch, a problem); JSON is UTF-8, whatever charset it is said to be in."""
    body = json.dumps(granted("2026-03-01"))
    if path.endswith("batch"):
        body = f'{{"events": [{body}]}}'
    headers = token_for("events:write")
    response = client.post(path, data=body, content_type=content_type, headers=headers)
    assert response.status_code == 415 and response.mimetype == "application/problem+json"
    assert response.get_json()["errors"][0]["field"] == "Content-Type"
    for with_charset in ("application/json; charset=utf-8", "Application/JSON; charset=UTF8"):
        taken = client.post(path, data=body, content_type=with_charset, headers=headers)
        assert taken.status_code in (200, 202), taken.get_json()


def test_body_over_64_kib_is_413(client, token_for):
    body = granted("2026-03-01")
    body["data"]["member"]["first_name"] = "x" * (65 * 1024)
    response = client.post("/v1/events", json=body, headers=token_for("events:write"))
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_events_need_a_token_with_events_write(client, token_for):
    assert client.post("/v1/events", json=granted("2026-03-01")).status_code == 401
    response = client.post(
        "/v1/events", json=granted("2026-03-01"), headers=token_for("certifications:read")
    )
    assert response.status_code == 403


def test_nothing_is_half_written_when_the_database_refuses(app, post, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(intake, "record_standings", refuse)
    response = post(granted("2026-03-01"))
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    with app.extensions["gateway"].db.sessions() as session:
        assert session.query(Event).count() == 0
        assert session.query(OutboxItem).count() == 0


def test_late_events_count_by_their_own_dates(post, reader):
    post(granted("2020-01-10"))
    post(fee(2022, "2022-01-02"))  # arrives before the year it follows
    before = reader("/v1/certifications/CERT-1?as_of=2022-06-01").get_json()
    assert before["fees"]["paid_through"] == "2021-01-31"
    post(fee(2021, "2021-01-05"))
    after = reader("/v1/certifications/CERT-1?as_of=2022-06-01").get_json()
    assert after["fees"]["paid_through"] == "2023-01-31"


def test_a_payment_refused_for_a_lapse_later_events_undo_counts(post, reader):
    """The payment for 2009 arrives first: with 2005-2008 unpaid the certification looks lapsed
    since 2008-07-01, so it is refused CERT-LAPSED; once 2005-2008 arrive it counts, as it would
    have had the payments arrived in date order."""
    paid = {year: fee(year, f"{year}-05-01", cert="LATE") for year in range(2005, 2010)}
    in_order = {year: fee(year, f"{year}-05-01", cert="ORDER") for year in range(2005, 2010)}
    assert post(granted("2004-06-03", cert="LATE")).status_code == 202
    assert post(granted("2004-06-03", cert="ORDER")).status_code == 202
    refused = post(paid[2009])
    assert refused.status_code == 422 and rules_of(refused) == ["CERT-LAPSED"]
    for year in range(2005, 2009):
        assert post(paid[year]).status_code == 202
    for year in range(2005, 2010):
        assert post(in_order[year]).status_code == 202
    for as_of in ("2010-06-30", "2012-12-31", "2014-01-01"):
        late = reader(f"/v1/certifications/LATE?as_of={as_of}").get_json()
        ordered = reader(f"/v1/certifications/ORDER?as_of={as_of}").get_json()
        assert {k: late[k] for k in ("status", "reasons", "fees")} == {
            k: ordered[k] for k in ("status", "reasons", "fees")
        }
    assert late["fees"]["paid_through"] == "2010-06-30"
    # The refusal stays what was answered: a replay repeats it, the record shows it.
    replay = post(paid[2009])
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"
    record = reader(f"/v1/events/{paid[2009]['event_id']}").get_json()
    assert record["status"] == "rejected"
    assert [r["rule"] for r in record["reasons"]] == ["CERT-LAPSED"]


def test_payments_of_a_period_a_recertification_closed_count_in_that_period(post, reader):
    """The recertification arrives before the payments of the period it closed: they are refused
    (a closed period) but kept, so every day before the recertification reads as in date order."""
    fees_then = [(2011, "2011-05-01"), (2012, "2012-05-01")]
    exam = {"exam_passed_on": "2017-02-01"}
    for cert, order in (("LATE", ("recert", "fees")), ("ORDER", ("fees", "recert"))):
        post(granted("2010-06-01", cert=cert))
        for step in order:
            if step == "recert":
                assert post(recert("exam", "2017-03-01", cert=cert, **exam)).status_code == 202
            for year, paid_on in fees_then if step == "fees" else ():
                answer = post(fee(year, paid_on, cert=cert))
                assert answer.status_code == (422 if cert == "LATE" else 202)
        for year in (2018, 2019):
            assert post(fee(year, f"{year}-02-01", cert=cert)).status_code == 202
    for as_of in (
        "2012-06-01",
        "2013-08-01",
        "2016-06-30",
        "2016-07-01",
        "2018-06-01",
        "2026-01-01",
    ):
        late = reader(f"/v1/certifications/LATE?as_of={as_of}").get_json()
        ordered = reader(f"/v1/certifications/ORDER?as_of={as_of}").get_json()
        keys = ("status", "reasons", "fees", "certified_on", "recertification")
        assert {k: late[k] for k in keys} == {k: ordered[k] for k in keys}, as_of
    assert late["certified_on"] == "2017-03-01"


def test_a_recertification_sent_before_the_failed_audit_that_lapsed_it_counts_once_it_arrives(
    post, reader
):
    post(granted("2025-03-01"))
    exam = recert("exam", "2026-09-01", exam_passed_on="2026-08-20")
    refused = post(exam)
    assert refused.status_code == 422 and rules_of(refused) == ["RECERT-NOT-LAPSED"]
    audit = {"result": "failed", "audited_on": "2026-06-01", "cycle_start": "2025-03-01"}
    answer = post(event("audit.completed", audit)).get_json()
    assert answer["standing"]["status"] == "active"  # recertified on 2026-09-01, as in date order
    assert answer["standing"]["certified_on"] == "2026-09-01"
    assert "issue_badge" in answer["actions"]
    lapsed = reader("/v1/certifications/CERT-1?as_of=2026-08-31").get_json()
    assert lapsed["status"] == "lapsed" and lapsed["certified_on"] == "2025-03-01"


def test_payments_that_undo_the_lapse_a_recertification_needed_are_recorded_at_once(
    client, post, reader
):
    """Recertified on 2026-03-01 while it looked lapsed since 2008; then the payments of 2005 to
    2022 arrive, each refused (a period the recertification closed): with the last of them it
    had not lapsed by 2026-03-01 (it lapses on 2026-07-01), the recertification does not count,
    and the recorded standing, hence the public record, says so at once."""
    post(granted("2004-06-03"))
    exam = recert("exam", "2026-03-01", exam_passed_on="2026-02-15")
    assert post(exam).status_code == 202
    assert client.get("/v1/verifications/CERT-1").get_json()["status"] == "active"
    for year in range(2005, 2023):
        assert rules_of(post(fee(year, f"{year}-02-01"))) == ["FEE-YEAR-RANGE"]
    public = client.get("/v1/verifications/CERT-1").get_json()
    assert (public["status"], public["certified_since"]) == ("lapsed", "2004-06-03")
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["certified_on"] == "2004-06-03"
    assert standing["fees"]["paid_through"] == "2023-06-30"


def test_a_kept_payment_does_not_refuse_the_timely_payment_of_its_year(post, reader):
    """The late payment of 2023 (after the lapse it would have prevented) arrives first and is
    kept; the timely one is then no duplicate of it, and the standing is that of date order."""
    post(granted("2000-06-01"))
    for year in range(2001, 2023):
        post(fee(year, f"{year}-05-01"))
    late, timely = fee(2023, "2026-11-01"), fee(2023, "2023-05-01")
    assert rules_of(post(late)) == ["CERT-LAPSED"]
    assert post(timely).status_code == 202
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert (standing["status"], standing["fees"]["paid_through"]) == ("inactive", "2024-06-30")


def test_an_activity_recorded_again_counts_once_when_its_refused_record_comes_to_count(
    post, reader
):
    """A CCP activity refused CERT-LAPSED was sent again under a new event id once the payment
    that undid the lapse arrived (as earlier releases advised): both records are in the history,
    the activity counts once."""
    post(granted("2016-01-10", credential="RPT"))
    post(ccp("A-0", "2017-06-01", points=24))
    refused = ccp("A-1", "2021-06-01", points=12)
    assert rules_of(post(refused)) == ["CERT-LAPSED"]  # no fee paid: lapsed since 2020-02-01
    for year in range(2017, 2027):
        post(fee(year, f"{year}-01-02"))
    assert post(ccp("A-1", "2021-06-01", points=12)).status_code == 202  # a kept one is no twin
    standing = reader("/v1/certifications/CERT-1?as_of=2021-12-01").get_json()
    assert standing["ccp"]["points_earned"] == 12


def test_the_upgrade_keeps_the_events_an_earlier_release_refused_for_a_lapse(
    app, post, reader, database_url, tmp_path
):
    post(granted("2004-06-03"))
    late = fee(2009, "2009-05-01")
    assert rules_of(post(late)) == ["CERT-LAPSED"]
    assert post(fee(2005, "2005-05-01", event_id="refused-twice")).status_code == 202
    assert rules_of(post(fee(2005, "2005-05-01"))) == ["FEE-DUPLICATE"]  # the same day's
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "downgrade", "0012"], env=env).exit_code == 0
    with app.extensions["gateway"].db.sessions() as session:
        statuses = session.scalars(select(Event.status).order_by(Event.id)).all()
        assert statuses == ["accepted", "rejected", "accepted", "rejected"]
        session.execute(update(Certification).values(next_change_on=date(2030, 1, 1)))
        session.commit()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0  # as from 0012
    with app.extensions["gateway"].db.sessions() as session:
        statuses = session.scalars(select(Event.status).order_by(Event.id)).all()
        assert statuses == ["accepted", "kept", "accepted", "rejected"]
        due = session.scalar(select(Certification.next_change_on))
        assert due == clock.now().date()  # the daily sweep and lookups take it up again
    for year in (2006, 2007, 2008):
        post(fee(year, f"{year}-05-01"))
    standing = reader("/v1/certifications/CERT-1?as_of=2012-12-31").get_json()
    assert standing["fees"]["paid_through"] == "2010-06-30"


def _recertified_before_the_audit_that_lapsed_it(post, reader) -> dict:
    """Fees and CCP cycles in order since 2020-01-15; a recertification of 2026-06-01 is refused
    RECERT-NOT-LAPSED and kept, and counts once a failed audit of 2026-03-01 arrives. Returns it."""
    post(granted("2020-01-15"))
    for year in range(2021, 2027):
        assert post(fee(year, f"{year}-01-02")).status_code == 202
    for n, year in enumerate((2022, 2025)):
        assert post(ccp(f"A-{n}", f"{year}-06-01", points=30)).status_code == 202
    exam = recert("exam", "2026-06-01", exam_passed_on="2026-05-20")
    assert rules_of(post(exam)) == ["RECERT-NOT-LAPSED"]
    audit = {"result": "failed", "audited_on": "2026-03-01", "cycle_start": "2023-01-15"}
    assert post(event("audit.completed", audit)).status_code == 202
    assert _status(reader) == ("active", "2026-06-01")
    return exam


def _status(reader, cert: str = "CERT-1") -> tuple[str, str]:
    standing = reader(f"/v1/certifications/{cert}").get_json()
    return standing["status"], standing["certified_on"]


def _statuses(app) -> dict[str, str]:
    with app.extensions["gateway"].db.sessions() as session:
        return dict(session.execute(select(Event.event_id, Event.status)).all())


def test_the_upgrade_keeps_the_refusals_this_release_keeps_that_earlier_ones_rejected(
    app, post, reader, database_url, tmp_path
):
    """Releases before this one rejected for good a recertification sent before the failed audit
    that lapsed the certification, and a payment of a period that a recertification closed: the
    upgrade keeps each refusal that this release keeps, judged as it arrived."""
    exam = _recertified_before_the_audit_that_lapsed_it(post, reader)
    post(granted("2010-02-01", cert="CERT-2"))  # lapsed since 2014, recertified on 2026-01-10
    recertified = recert("exam", "2026-01-10", exam_passed_on="2026-01-05", cert="CERT-2")
    assert post(recertified).status_code == 202
    closed, other = fee(2013, "2013-02-15", cert="CERT-2"), fee(2014, "2014-02-15", cert="CERT-2")
    assert rules_of(post(closed)) == rules_of(post(other)) == ["FEE-YEAR-RANGE"]
    assert post(fee(2027, "2026-02-01", cert="CERT-2")).status_code == 202
    duplicate = fee(2027, "2026-02-01", cert="CERT-2")  # paid again the same day
    assert rules_of(post(duplicate)) == ["FEE-DUPLICATE"]
    refused = [e["event_id"] for e in (exam, closed, other, duplicate)]
    with app.extensions["gateway"].db.transaction() as session:  # as an earlier release left them
        session.execute(update(Event).where(Event.status == "kept").values(status="rejected"))
        reasons = [{"rule": "FEE-YEAR-RANGE", "message": ""}, {"rule": "CCP-LAPSED", "message": ""}]
        session.execute(  # refused for other rules then: not judged again
            update(Event).where(Event.event_id == other["event_id"]).values(reasons=reasons)
        )
        session.execute(update(Certification).values(next_change_on=date(2030, 1, 1)))
    assert _status(reader) == ("lapsed", "2020-01-15")
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    for args in (["db", "downgrade", "0016"], ["db", "upgrade"]):  # as from the release before
        assert CliRunner().invoke(cli, args, env=env).exit_code == 0
    statuses = _statuses(app)
    assert [statuses[e] for e in refused] == ["kept", "kept", "rejected", "rejected"]
    with app.extensions["gateway"].db.sessions() as session:
        due = session.scalars(select(Certification.next_change_on)).all()
        assert due == [clock.now().date()] * 2  # the daily sweep and lookups take them up again
    assert _status(reader) == ("active", "2026-06-01")


def _payment_and_duplicate_of_another_day(post) -> tuple[dict, dict]:
    """A payment refused FEE-DUPLICATE of another day's payment (kept since 0020), and one of
    the same day (rejected)."""
    post(granted("2023-01-15"))
    assert post(fee(2024, "2024-01-10")).status_code == 202
    again, same_day = fee(2024, "2024-07-01"), fee(2024, "2024-01-10")
    assert rules_of(post(again)) == rules_of(post(same_day)) == ["FEE-DUPLICATE"]
    return again, same_day


def _revocations_before_and_after_the_recorded_one(post) -> tuple[dict, dict]:
    """A revocation dated before the recorded one (kept since 0022), and one dated after it."""
    post(granted("2023-01-15"))
    assert post(revoked("2026-03-10")).status_code == 202
    earlier, later = revoked("2026-02-01"), revoked("2026-04-01")
    assert rules_of(post(earlier)) == rules_of(post(later)) == ["CERT-REVOKED"]
    return earlier, later


def _payments_before_and_after_the_revocation(post) -> tuple[dict, dict]:
    """A payment dated before the recorded revocation (kept since 0025), and one dated after."""
    post(granted("2023-01-15"))
    assert post(revoked("2026-03-10")).status_code == 202
    earlier, later = fee(2025, "2025-01-10"), fee(2026, "2026-03-11")
    assert rules_of(post(earlier)) == rules_of(post(later)) == ["CERT-REVOKED"]
    return earlier, later


def _employment_of_a_closed_period_inside_and_outside_its_cycle(post) -> tuple[dict, dict]:
    """An employment activity dated in a period a recertification closed, its employment inside
    that period's cycle (kept since 0027), and one whose employment began before the cycle."""
    post(granted("2012-01-10"))
    assert post(recert("exam", "2018-06-01", exam_passed_on="2018-05-01")).status_code == 202
    inside, outside = (
        ccp(
            activity_id,
            "2014-06-01",
            points=30,
            category="employment",
            extra={"employment_start": start, "employment_end": "2014-05-31"},
        )
        for activity_id, start in (("E-1", "2012-02-01"), ("E-2", "2011-12-01"))
    )
    assert rules_of(post(inside)) == ["CCP-BEFORE-CYCLE"]
    assert "CCP-EMPLOYMENT-2021" in rules_of(post(outside))
    return inside, outside


@pytest.mark.parametrize(
    ("refuse", "release_before"),
    [
        (_payment_and_duplicate_of_another_day, "0019"),
        (_revocations_before_and_after_the_recorded_one, "0021"),
        (_payments_before_and_after_the_revocation, "0024"),
        (_employment_of_a_closed_period_inside_and_outside_its_cycle, "0026"),
    ],
)
def test_the_upgrade_keeps_what_a_release_came_to_keep(
    app, post, database_url, tmp_path, refuse, release_before
):
    kept, rejected = refuse(post)
    assert [_statuses(app)[e["event_id"]] for e in (kept, rejected)] == ["kept", "rejected"]
    with app.extensions["gateway"].db.transaction() as session:  # as an earlier release left it
        session.execute(update(Event).where(Event.status == "kept").values(status="rejected"))
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    for args in (["db", "downgrade", release_before], ["db", "upgrade"]):
        assert CliRunner().invoke(cli, args, env=env).exit_code == 0
    assert [_statuses(app)[e["event_id"]] for e in (kept, rejected)] == ["kept", "rejected"]


def test_a_downgrade_past_the_keeping_of_refusals_and_an_upgrade_keep_them_again(
    app, post, reader, database_url, tmp_path
):
    _recertified_before_the_audit_that_lapsed_it(post, reader)
    before = _statuses(app)
    assert "kept" in before.values()
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    assert CliRunner().invoke(cli, ["db", "downgrade", "0012"], env=env).exit_code == 0
    assert _status(reader) == ("lapsed", "2020-01-15")  # 0013's downgrade rejects kept events
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert _statuses(app) == before
    assert _status(reader) == ("active", "2026-06-01")


def test_the_upgrade_judges_the_refusals_under_the_policy_table_it_is_given(
    app, post, reader, database_url, tmp_path
):
    exam = _recertified_before_the_audit_that_lapsed_it(post, reader)
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY_FILE.read_text().replace('"EC-2026"', '"EC-2027"'))
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path), "POLICY_FILE": str(policy)}
    assert CliRunner().invoke(cli, ["db", "downgrade", "0012"], env=env).exit_code == 0
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert _statuses(app)[exam["event_id"]] == "rejected"  # its criteria are no longer current


def test_fees_sent_before_the_activities_give_the_standing_of_date_order(post, reader):
    """A backfill by kind (every fee, then every CCP activity) ends as the same events sent in
    date order: the fees refused CERT-LAPSED while the CCP cycles looked short come to count."""
    post(granted("2016-01-15", credential="RPT"))
    for year in range(2017, 2027):
        post(fee(year, f"{year}-01-10"))
    assert reader("/v1/certifications/CERT-1").get_json()["status"] == "lapsed"
    for n, year in enumerate((2017, 2020, 2023, 2026)):
        assert post(ccp(f"A-{n}", f"{year}-06-01", points=24)).status_code == 202
    standing = reader("/v1/certifications/CERT-1").get_json()
    assert standing["status"] == "active", standing["reasons"]
    assert standing["fees"]["paid_through"] == "2027-01-31"


def test_ccp_points_are_exact_from_request_to_storage_to_answer(post, reader):
    # 1.13 + 9.04 + 19.83 is 30.00: as floats the sum is 29.999999999999996 and the cycle short.
    history = [
        granted("2020-01-15"),
        *(fee(year, f"{year}-01-02") for year in (2021, 2022, 2023)),
        ccp("A1", "2020-06-01", points=1.13),
        ccp("A2", "2021-06-01", points=9.04),
        ccp("A3", "2022-06-01", points=19.83),
    ]
    for body in history:
        assert post(body).status_code == 202
    answer = reader("/v1/certifications/CERT-1?as_of=2023-02-01")
    assert answer.get_json()["status"] == "active", answer.get_json()["reasons"]
    assert answer.get_json()["ccp"]["points_earned"] == 0  # the new cycle's
    ended = reader("/v1/certifications/CERT-1?as_of=2023-01-31")
    assert '"points_earned":30,' in ended.get_data(as_text=True)
    refused = post(ccp("A4", "2022-07-01", points=0.125))
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == [
        {"field": "data.points", "message": "Use at most 2 decimal places."}
    ]


def test_an_event_an_earlier_release_took_is_replayed_though_now_malformed(app, post):
    """A release whose checks were laxer recorded `points` given as text: sent again, the event is
    a replay, not a 422."""
    assert post(granted("2020-01-10")).status_code == 202
    body = ccp("A1", "2020-05-01", points=12.5)
    first = post(body)
    assert first.status_code == 202
    old = {**body, "data": {**body["data"], "points": "12.5"}}
    with app.extensions["gateway"].db.transaction() as session:
        session.execute(
            update(Event)
            .where(Event.event_id == old["event_id"])
            .values(body=json.dumps(old), body_hash=intake.body_hash(old))
        )
    again = post(old)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    fresh = post(dict(old, event_id="never-seen"))
    assert fresh.status_code == 422


PATHS = ["/v1/events", "/v1/events?via=flask"]  # the plain path, and the view (a query)
JSON = "application/json"


@pytest.fixture
def post_to(client, token_for):
    headers = token_for("events:write")

    def send(path, body, raw=False):
        if raw:
            return client.post(path, data=json.dumps(body), headers=headers, content_type=JSON)
        return client.post(path, json=body, headers=headers)

    return send


@pytest.mark.parametrize("path", PATHS)
def test_an_audit_or_a_revocation_dated_before_the_grant_is_refused(post_to, reader, path):
    post_to(path, granted("2024-06-03"))
    assert rules_of(post_to(path, revoked("2020-01-01"))) == ["EVENT-BEFORE-GRANT"]
    audit = event(
        "audit.completed",
        {"result": "failed", "audited_on": "2024-06-01", "cycle_start": "2024-06-01"},
    )
    assert rules_of(post_to(path, audit)) == ["EVENT-BEFORE-GRANT"] * 2
    standing = reader("/v1/certifications/CERT-1?as_of=2024-06-03").get_json()
    assert standing["status"] == "active"


def test_a_payment_sent_again_before_a_recertification_arrives_counts_as_in_date_order(
    post, reader
):
    """The year 2025 paid in the first period and again in the one a recertification opened:
    sent in date order, or with the audit and the recertification last, the same standing."""
    audit = {"result": "failed", "audited_on": "2024-03-01", "cycle_start": "2023-01-15"}
    for cert, late in (("CERT-A", False), ("CERT-B", True)):
        grant = granted("2023-01-15", cert=cert)
        grant["data"]["member"]["email"] = f"{cert.lower()}@example.org"  # a badge each
        lapsed = event("audit.completed", audit, cert=cert)
        exam = recert("exam", "2024-06-01", exam_passed_on="2024-05-20", cert=cert)
        fees = [fee(y, day, cert=cert) for y, day in ((2024, "2024-01-10"), (2025, "2024-02-01"))]
        later = [fee(y, day, cert=cert) for y, day in ((2025, "2024-07-01"), (2026, "2026-06-01"))]
        order = (
            [grant, *fees, *later, lapsed, exam] if late else [grant, *fees, lapsed, exam, *later]
        )
        answers = [post(body).status_code for body in order]
        assert answers == ([202, 202, 202, 422, 202, 202, 202] if late else [202] * 7)
    a, b = (reader(f"/v1/certifications/{c}").get_json() for c in ("CERT-A", "CERT-B"))
    assert (a["status"], a["fees"]["paid_through"]) == ("active", "2027-06-30")
    derived = ("status", "reasons", "certified_on", "fees", "ccp", "next_change_on")
    assert [a[k] for k in derived] == [b[k] for k in derived]


@pytest.mark.parametrize("path", PATHS)
def test_unknown_fields_are_named_in_the_order_of_the_body(post_to, path):
    post_to(path, granted("2026-03-01"))
    body = event("member.updated", {"first_name": "Ada", "y": 1, "x": 2, "z": 3, "w": 4})
    body = {"zz": 1, **body, "aa": 2}
    response = post_to(path, body, raw=True)  # as written, not with its keys sorted
    assert response.status_code == 422
    fields = [e["field"] for e in response.get_json()["errors"]]
    assert fields == ["zz", "aa", "data.y", "data.x", "data.z", "data.w"]


@pytest.mark.parametrize("path", [*PATHS, "/v1/events/batch"])
@pytest.mark.parametrize("coding", ["gzip", "br", "x-custom"])
def test_a_body_with_a_content_coding_is_415(client, token_for, path, coding):
    body = granted("2026-03-01")
    payload = json.dumps({"events": [body]} if path.endswith("batch") else body)
    headers = {**token_for("events:write"), "Content-Encoding": coding}
    response = client.post(path, data=payload, content_type="application/json", headers=headers)
    assert response.status_code == 415, response.get_json()
    assert response.headers["Accept-Encoding"] == "identity"
    assert [e["field"] for e in response.get_json()["errors"]] == ["Content-Encoding"]
    headers["Content-Encoding"] = "identity"
    again = client.post(path, data=payload, content_type="application/json", headers=headers)
    assert again.status_code in (200, 202)


def test_a_revocation_needs_a_reason_that_is_not_blank(post):
    post(granted("2026-03-01"))
    blank = revoked("2026-06-01")
    blank["data"]["reason"] = "   "
    response = post(blank)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["data.reason"]


@pytest.fixture
def standing_on(reader):
    """The standing of `GET /v1/certifications/{cert}?as_of={day}`."""

    def read(day: str, cert: str = "CERT-1") -> dict:
        response = reader(f"/v1/certifications/{cert}?as_of={day}")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return read


def reason_rules(standing: dict) -> list[str]:
    return [reason["rule"] for reason in standing["reasons"]]


# The standing on the days either side of each rule's boundary, posted events read back with
# `?as_of=` on the day before, the day of and the day after.


def test_fees_overdue_then_lapsed_then_exam_only_on_their_days(post, standing_on):
    """Certified 2005-06-03 (no CCP requirement), never paid: covered to 2006-06-30, overdue from
    2006-07-01, lapsed from 2009-07-01, by exam only from 2019-07-01."""
    assert post(granted("2005-06-03")).status_code == 202
    covered = standing_on("2006-06-30")
    assert (covered["status"], covered["reasons"]) == ("active", [])
    assert covered["fees"] == {
        "paid_through": "2006-06-30",
        "next_due": "2006-06",
        "unpaid_years": 0,
    }
    assert covered["ccp"]["required"] is False
    assert covered["recertification"] == {"required": False, "methods": []}
    overdue = standing_on("2006-07-01")
    assert (overdue["status"], reason_rules(overdue), overdue["fees"]["unpaid_years"]) == (
        "inactive",
        ["FEE-OVERDUE"],
        1,
    )
    assert standing_on("2009-06-30")["status"] == "inactive"
    lapsed = standing_on("2009-07-01")
    assert (lapsed["status"], reason_rules(lapsed), lapsed["lapsed_on"]) == (
        "lapsed",
        ["FEE-LAPSED"],
        "2009-07-01",
    )
    assert lapsed["recertification"] == {"required": True, "methods": ["ccp", "exam"]}
    assert standing_on("2019-06-30")["recertification"]["methods"] == ["ccp", "exam"]
    assert standing_on("2019-07-01")["recertification"] == {"required": True, "methods": ["exam"]}


def test_ccp_cycle_short_from_the_day_after_its_end_until_an_in_cycle_activity_arrives(
    post, standing_on
):
    assert post(granted("2015-06-03")).status_code == 202
    assert post(ccp("A-1", "2017-01-01", 29.5)).status_code == 202
    assert post(ccp("A-3", "2019-01-01", 30)).status_code == 202
    for year in range(2016, 2022):
        assert post(fee(year, f"{year}-06-01")).status_code == 202
    last_day = standing_on("2018-06-30")
    assert last_day["status"] == "active"
    assert {k: last_day["ccp"][k] for k in ("cycle_start", "cycle_end", "points_earned")} == {
        "cycle_start": "2015-06-03",
        "cycle_end": "2018-06-30",
        "points_earned": 29.5,
    }
    short = standing_on("2018-07-01")
    assert (short["status"], reason_rules(short)) == ("inactive", ["CCP-SHORT"])
    assert short["ccp"] == {
        "required": True,
        "cycle_start": "2018-07-01",
        "cycle_end": "2021-06-30",
        "points_required": 30,
        "points_earned": 0,
        "points_by_category": {},
    }
    # Documented late, completed on the cycle's last day: it counts for that cycle, on every day
    # from its completed_on.
    assert post(ccp("A-2", "2018-06-30", 0.5)).status_code == 202
    assert standing_on("2018-06-29")["ccp"]["points_earned"] == 29.5
    assert standing_on("2018-06-30")["ccp"]["points_earned"] == 30
    cured = standing_on("2018-07-01")
    assert (cured["status"], cured["reasons"]) == ("active", [])


def test_recertification_on_the_day_of_the_lapse_starts_a_new_period(post, standing_on):
    """Certified 2010-05-10, never paid: lapsed on 2014-06-01, recertified that day."""
    assert post(granted("2010-05-10")).status_code == 202
    early = post(recert("exam", "2014-05-31", exam_passed_on="2014-05-20"))
    assert (early.status_code, rules_of(early)) == (422, ["RECERT-NOT-LAPSED"])
    on_lapse = post(recert("exam", "2014-06-01", exam_passed_on="2014-06-01"))
    assert on_lapse.status_code == 202, on_lapse.get_json()
    before = standing_on("2014-05-31")
    assert (before["status"], before["certified_on"]) == ("inactive", "2010-05-10")
    renewed = standing_on("2014-06-01")
    assert (renewed["status"], renewed["certified_on"], renewed["reasons"]) == (
        "active",
        "2014-06-01",
        [],
    )
    assert renewed["fees"] == {
        "paid_through": "2015-06-30",
        "next_due": "2015-06",
        "unpaid_years": 0,
    }
    assert (renewed["ccp"]["cycle_start"], renewed["ccp"]["cycle_end"]) == (
        "2014-06-01",
        "2017-06-30",
    )
    assert renewed["recertification"] == {"required": False, "methods": []}
    assert standing_on("2015-06-30")["status"] == "active"
    assert reason_rules(standing_on("2015-07-01")) == ["FEE-OVERDUE"]


def test_events_posted_in_reverse_date_order_give_the_standing_of_date_order(post, standing_on):
    def history(cert: str) -> list[dict]:
        return [
            granted("2016-09-20", cert=cert),
            fee(2017, "2017-09-01", cert=cert),
            fee(2018, "2018-09-30", cert=cert),
            ccp("A-1", "2018-03-01", 20, cert=cert),
            ccp("A-2", "2019-09-30", 10, cert=cert),
            fee(2019, "2019-10-15", cert=cert),
        ]

    for body in history("IN-ORDER"):
        assert post(body).status_code == 202, body
    grant, *later = history("REVERSED")  # a certification's first event is its grant
    for body in [grant, *reversed(later)]:
        assert post(body).status_code == 202, body
    for day in ("2018-09-30", "2018-10-01", "2019-09-30", "2019-10-01", "2019-10-15", "2020-10-01"):
        in_order, reverse = standing_on(day, "IN-ORDER"), standing_on(day, "REVERSED")
        keys = ("status", "reasons", "fees", "ccp", "recertification", "lapsed_on")
        assert {k: reverse[k] for k in keys} == {k: in_order[k] for k in keys}, day
    assert reason_rules(standing_on("2019-10-14", "REVERSED")) == ["FEE-OVERDUE"]
    assert standing_on("2019-10-15", "REVERSED")["status"] == "active"
