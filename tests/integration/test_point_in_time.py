"""`?on=`: verifications as they stood on a past day, from the history with the rules, across a
history that is active, inactive, lapsed, recertified and finally revoked."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from gateway import rules
from gateway.platform import clock
from gateway.store.models import VerificationRecord
from tests.support.events import fee, granted, recert, revoked
from tests.support.verification import ANSWER_KEYS, record

#: Granted 2018-03-10, fees paid for 2019 only, lapsed 2023-04-01, recertified by exam 2024-05-01,
#: fees paid for 2025, revoked 2026-06-01.
HISTORY = [
    granted("2018-03-10", cert="PIT-1"),
    fee(2019, "2019-03-01", cert="PIT-1"),
    recert("exam", "2024-05-01", exam_passed_on="2024-04-20", cert="PIT-1"),
    fee(2025, "2025-04-15", cert="PIT-1"),
    revoked("2026-06-01", cert="PIT-1"),
]
#: day -> (status, certified_since, valid_through)
AS_IT_STOOD = {
    "2018-03-10": ("active", "2018-03-10", "2019-03-31"),
    "2020-03-31": ("active", "2018-03-10", "2020-03-31"),
    "2020-04-01": ("inactive", "2018-03-10", None),
    "2023-03-31": ("inactive", "2018-03-10", None),
    "2023-04-01": ("lapsed", "2018-03-10", None),
    "2024-04-30": ("lapsed", "2018-03-10", None),
    "2024-05-01": ("active", "2024-05-01", "2025-05-31"),
    "2026-05-31": ("active", "2024-05-01", "2026-05-31"),
    "2026-06-01": ("revoked", "2024-05-01", None),
}


@pytest.fixture
def app(database_url, make_app):
    app = make_app(database_url=database_url, jobs_synchronous=True)
    record(app, *HISTORY)
    return app


@pytest.fixture
def employer(token_for):
    return token_for("verifications:read")


@pytest.mark.parametrize("day", list(AS_IT_STOOD))
def test_each_day_answers_the_public_record_as_it_stood(client, employer, day):
    response = client.get(f"/v1/verifications/PIT-1?on={day}", headers=employer)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    status, since, valid_through = AS_IT_STOOD[day]
    assert (body["status"], body["certified_since"], body["valid_through"]) == (
        status,
        since,
        valid_through,
    )
    assert body["on"] == day and body["certification_id"] == "PIT-1"
    assert body["name"] == "Ada Lovelace" and body["issuer"]["name"]
    assert set(body) == ANSWER_KEYS | {"on"}


def test_the_answer_comes_from_the_history_not_the_read_model(app, client, employer):
    with app.extensions["gateway"].db.transaction() as session:
        session.get(VerificationRecord, "PIT-1").name = "Stale Name"  # a read model behind
    now = client.get("/v1/verifications/PIT-1").get_json()
    assert (now["name"], now["status"]) == ("Stale Name", "revoked")
    today = clock.now().date().isoformat()
    body = client.get(f"/v1/verifications/PIT-1?on={today}", headers=employer).get_json()
    assert (body["name"], body["status"]) == ("Ada Lovelace", "revoked")


def test_a_day_before_the_grant_is_a_404_not_certified_naming_on(client, employer):
    response = client.get("/v1/verifications/PIT-1?on=2018-03-09", headers=employer)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["title"] == "Not Certified On That Day"
    assert "not certified on 2018-03-09" in problem["detail"]
    assert problem["errors"][0]["field"] == "on"


def test_an_unknown_number_is_a_plain_404(client, employer):
    response = client.get("/v1/verifications/NOPE-1?on=2020-01-01", headers=employer)
    assert response.status_code == 404
    assert "NOPE-1 is on record" in response.get_json()["detail"]


@pytest.mark.parametrize(
    "day", ["tomorrow", "2026-02-30", "yesterday-ish", "", "20200601", "2020-W23-1", "1800-01-01"]
)
def test_a_future_or_malformed_day_is_refused_naming_on(client, employer, day):
    if day == "tomorrow":
        day = (clock.now().date() + timedelta(days=1)).isoformat()
    response = client.get(f"/v1/verifications/PIT-1?on={day}", headers=employer)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["on"]


@pytest.mark.parametrize(
    ("url", "field", "status"),
    [
        ("/v1/verifications/PIT-1?on=2020-01-01&on=2021-01-01", "on", 422),
        ("/v1/verifications/PIT-1/receipt?on=2020-01-01&on=2021-01-01", "on", 422),
        ("/v1/receipts?limit=1&limit=2", "limit", 422),
        ("/v1/certifications/PIT-1?as_of=2020-01-01&as_of=2021-01-01", "as_of", 400),
    ],
)
def test_a_parameter_given_twice_is_refused_naming_it(client, token_for, url, field, status):
    """Which of the two a cache, a proxy or a log reads is anyone's guess: none is taken."""
    headers = token_for("verifications:read certifications:read")
    response = client.get(url, headers=headers)
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert [e["field"] for e in response.get_json()["errors"]] == [field]
    again = client.get(f"{url.split('&')[0]}&utm_source=a&utm_source=b", headers=headers)
    assert again.status_code == 200  # parameters the endpoint does not read: ignored


def test_parameters_other_than_on_are_ignored_with_or_without_it(client, employer):
    plain = client.get("/v1/verifications/PIT-1?utm_source=mail&x=1")
    assert plain.status_code == 200 and "on" not in plain.get_json()
    url = "/v1/verifications/PIT-1?on=2020-01-01&utm_source=mail&x=1"
    assert client.get(url, headers=employer).get_json()["on"] == "2020-01-01"
    bad = client.get("/v1/verifications/PIT-1?on=soon&x=1", headers=employer)
    assert bad.status_code == 422 and [e["field"] for e in bad.get_json()["errors"]] == ["on"]


def test_a_day_needs_a_verifications_token(client, token_for):
    assert client.get("/v1/verifications/PIT-1?on=2020-01-01").status_code == 401
    other = token_for("events:write")
    assert client.get("/v1/verifications/PIT-1?on=2020-01-01", headers=other).status_code == 403


def test_the_batch_answers_every_id_on_the_day(client, employer):
    ids = ["PIT-1", "NOPE-1"]
    response = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ids, "on": "2023-04-01"},
        headers=employer,
    )
    assert response.status_code == 200
    first, second = response.get_json()["results"]
    assert (first["status"], first["on"]) == ("lapsed", "2023-04-01")
    assert second == {"certification_id": "NOPE-1", "status": "not_found", "on": "2023-04-01"}
    early = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["PIT-1"], "on": "2017-01-01"},
        headers=employer,
    ).get_json()["results"]
    assert early == [{"certification_id": "PIT-1", "status": "not_certified", "on": "2017-01-01"}]


def test_the_batch_evaluates_each_history_once_however_often_its_id_is_given(
    client, employer, monkeypatch
):
    evaluated: list[date] = []
    evaluate = rules.evaluate

    def counted(history, as_of, policy, **options):
        evaluated.append(as_of)
        return evaluate(history, as_of, policy, **options)

    monkeypatch.setattr(rules, "evaluate", counted)
    ids = ["PIT-1"] * 60 + ["NOPE-1"] * 3 + ["PIT-1"]
    response = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ids, "on": "2023-04-01"},
        headers=employer,
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["certification_id"] for r in results] == ids
    assert [r["status"] for r in results] == ["lapsed"] * 60 + ["not_found"] * 3 + ["lapsed"]
    assert all(r == results[0] for r in results[:60]) and results[-1] == results[0]
    assert evaluated == [date(2023, 4, 1)]
    evaluated.clear()
    early = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["PIT-1"] * 5, "on": "2017-01-01"},
        headers=employer,
    ).get_json()["results"]
    assert [r["status"] for r in early] == ["not_certified"] * 5
    assert evaluated == [date(2017, 1, 1)]


def test_a_point_in_time_answer_carries_nothing_private(client, employer):
    response = client.get("/v1/verifications/PIT-1?on=2021-01-01", headers=employer)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()  # the record of that day: inactive, its fees overdue
    assert set(body) == ANSWER_KEYS | {"on"} and body["status"] == "inactive"
    text = response.get_data(as_text=True)
    for private in ("ada@example.org", "M-PIT-1", "points", "reasons", "FEE-", "fees", "member"):
        assert private not in text
