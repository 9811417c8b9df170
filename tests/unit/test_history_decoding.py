"""Stored event bodies decode to the same domain events the schemas build."""

import pytest

from gateway.schemas.events import load_envelope
from gateway.store.history import decode_event
from tests.support.events import ccp, event, fee, granted, recert, revoked

BODIES = [
    granted("2020-01-10"),
    fee(2021, "2021-01-05"),
    ccp("A1", "2020-05-01", points=2.5),
    ccp(
        "A2",
        "2020-06-01",
        category="employment",
        extra={"employment_start": "2020-02-01", "employment_end": "2020-05-31"},
    ),
    event(
        "audit.completed",
        {"result": "failed", "audited_on": "2021-01-01", "cycle_start": "2020-01-10"},
    ),
    recert("exam", "2025-01-01", exam_passed_on="2024-12-01"),
    recert("ccp", "2025-01-01", ccp_points=30, earliest_activity_on="2023-01-01"),
    revoked("2022-01-01"),
    event("member.updated", {"email": "new@example.org"}),
]


@pytest.mark.parametrize("body", BODIES, ids=[b["type"] for b in BODIES])
def test_decoded_event_equals_the_validated_one(body):
    assert decode_event(body) == load_envelope(body).event
