"""Builders of rules events for the unit tests: plain defaults, unique event ids, one policy."""

import itertools
from datetime import UTC, date, datetime, time, timedelta

from gateway.rules import (
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    Member,
    MemberUpdated,
    Recertified,
    Revoked,
    Standing,
    evaluate,
    load_policy,
    to_points,
    validate,
)

POLICY = load_policy()
NOW = datetime(2060, 1, 1, tzinfo=UTC)  # the server clock validations run against
MEMBER = Member("M-1", "Ada", "Byron", "ada@example.org")
CRITERIA = POLICY.credentials["RMA"].eligibility_criteria

_ids = itertools.count(1)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def _envelope(prefix: str, day: date, event_id: str | None, occurred_at: datetime | None):
    return event_id or f"{prefix}-{next(_ids)}", occurred_at or noon(day)


def granted(
    certified_on: date, credential: str = "RMA", *, event_id=None, occurred_at=None
) -> Granted:
    return Granted(
        *_envelope("grant", certified_on, event_id, occurred_at), MEMBER, credential, certified_on
    )


def fee(year: int, paid_on: date, *, event_id=None, occurred_at=None) -> FeePaid:
    return FeePaid(*_envelope("fee", paid_on, event_id, occurred_at), year, paid_on)


def fees(first_year: int, last_year: int, month: int) -> list[FeePaid]:
    """Each membership year paid on the first day of its due month."""
    return [fee(year, date(year, month, 1)) for year in range(first_year, last_year + 1)]


def activity(
    completed_on: date,
    points: float | str = 10.0,
    category: str = "professional_education",
    *,
    employment: tuple[date | None, date | None] = (None, None),
    activity_id=None,
    event_id=None,
    occurred_at=None,
) -> CcpActivity:
    event_id, occurred_at = _envelope("ccp", completed_on, event_id, occurred_at)
    return CcpActivity(
        event_id,
        occurred_at,
        activity_id or f"A-{event_id}",
        category,
        completed_on,
        to_points(points),
        *employment,
    )


def audit(
    audited_on: date, result: str = "failed", cycle_start: date | None = None, *, event_id=None
) -> AuditCompleted:
    return AuditCompleted(
        *_envelope("audit", audited_on, event_id, None),
        result,
        audited_on,
        cycle_start or audited_on - timedelta(days=400),
    )


def exam_recert(
    completed_on: date,
    exam_passed_on: date | None = None,
    *,
    criteria: str = CRITERIA,
    event_id=None,
) -> Recertified:
    return Recertified(
        *_envelope("recert", completed_on, event_id, None),
        "exam",
        completed_on,
        "APP-1",
        criteria,
        exam_passed_on=exam_passed_on or completed_on,
    )


def ccp_recert(
    completed_on: date,
    ccp_points: float | str | None = 30,
    earliest_activity_on: date | None = None,
    *,
    criteria: str = CRITERIA,
) -> Recertified:
    return Recertified(
        *_envelope("recert", completed_on, None, None),
        "ccp",
        completed_on,
        "APP-2",
        criteria,
        ccp_points=None if ccp_points is None else to_points(ccp_points),
        earliest_activity_on=earliest_activity_on or completed_on - timedelta(days=365),
    )


def revoked(revoked_on: date, reason: str = "misconduct") -> Revoked:
    return Revoked(*_envelope("revoke", revoked_on, None, None), reason, revoked_on)


def updated(on: date, *, occurred_at=None, **details: str) -> MemberUpdated:
    return MemberUpdated(*_envelope("update", on, None, occurred_at), **details)


def standing(history: list[Event], as_of: date, policy=POLICY) -> Standing:
    return evaluate(history, as_of, policy)


def rules_broken(history: list[Event], event: Event, received_at: datetime = NOW) -> list[str]:
    """The rule ids of the violations `validate` reports."""
    return [v.rule for v in validate(history, event, policy=POLICY, received_at=received_at)]


def accepted(*events: Event) -> list[Event]:
    """A history built by accepting each event in turn; fails if validate rejects one."""
    history: list[Event] = []
    for event in events:
        violations = validate(history, event, policy=POLICY, received_at=NOW)
        assert violations == [], (event, violations)
        history.append(event)
    return history


def reasons(history: list[Event], as_of: date) -> list[str]:
    return [r.rule for r in standing(history, as_of).reasons]
