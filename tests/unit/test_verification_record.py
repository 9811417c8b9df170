"""The public record's JSON form: what the lookups answer, as the documented schema dumps it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateway.schemas.verifications import VerificationSchema
from gateway.usecases.lookup import Verification

CHECKED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def record_through(valid_through: date | None) -> Verification:
    return Verification(
        "CERT-1", "Ada Lovelace", "RMA", "Registered Medical Assistant", "active",
        date(2020, 3, 1), valid_through, CHECKED,
    )  # fmt: skip


@pytest.mark.parametrize("valid_through", [date(2027, 2, 28), None])
def test_the_record_answers_what_its_schema_dumps(valid_through: date | None) -> None:
    record = record_through(valid_through)

    assert record.public() == VerificationSchema().dump(record)
    assert record.public()["verified_at"] == "2026-03-01T09:30:00+00:00"


@pytest.mark.parametrize("valid_through", [date(2027, 2, 28), None])
def test_a_record_is_read_back_from_the_answer_it_gives(valid_through: date | None) -> None:
    record = record_through(valid_through)
    claims = {**record.public(), "iss": "https://gateway.example", "jti": "rcpt_x"}  # a receipt's

    assert Verification.from_public(claims) == record


def test_claims_that_state_no_record_are_refused() -> None:
    with pytest.raises(KeyError):
        Verification.from_public({"certification_id": "CERT-1"})
