"""Domain events of a certification, as the intake records them and the rules read them
(docs/api.md, *Event fields*)."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import ClassVar

PASSED = "passed"
FAILED = "failed"
AUDIT_RESULTS = (PASSED, FAILED)
METHOD_CCP = "ccp"
METHOD_EXAM = "exam"
RECERTIFICATION_METHODS = (METHOD_CCP, METHOD_EXAM)
EMPLOYMENT = "employment"  # the CCP category that CCP-EMPLOYMENT-2021 restricts


@dataclass(frozen=True, slots=True)
class Member:
    """The certified person, as the certifying body knows them."""

    member_id: str
    first_name: str
    last_name: str
    email: str


@dataclass(frozen=True, slots=True)
class _Envelope:
    """What every event carries: the sender's id and the moment it happened (tz-aware)."""

    event_id: str
    occurred_at: datetime

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() is None:
            raise ValueError(f"event {self.event_id}: occurred_at must carry a time zone")


@dataclass(frozen=True, slots=True)
class Granted(_Envelope):
    """A new certification."""

    type: ClassVar[str] = "certification.granted"
    member: Member
    credential: str
    certified_on: date

    @property
    def effective_on(self) -> date:
        return self.certified_on


@dataclass(frozen=True, slots=True)
class FeePaid(_Envelope):
    """The annual renewal fee of `membership_year`, paid on `paid_on`."""

    type: ClassVar[str] = "renewal.fee_paid"
    membership_year: int
    paid_on: date

    @property
    def effective_on(self) -> date:
        return self.paid_on


@dataclass(frozen=True, slots=True)
class CcpActivity(_Envelope):
    """CCP points documented for an activity completed on `completed_on`."""

    type: ClassVar[str] = "ccp.activity_recorded"
    activity_id: str
    category: str
    completed_on: date
    points: Decimal
    employment_start: date | None = None
    employment_end: date | None = None

    @property
    def effective_on(self) -> date:
        return self.completed_on


@dataclass(frozen=True, slots=True)
class AuditCompleted(_Envelope):
    """The result ('passed' or 'failed') of the CCP audit of the cycle starting `cycle_start`."""

    type: ClassVar[str] = "audit.completed"
    result: str
    audited_on: date
    cycle_start: date

    @property
    def effective_on(self) -> date:
        return self.audited_on


@dataclass(frozen=True, slots=True)
class Recertified(_Envelope):
    """A lapsed member recertified by CCP or by exam."""

    type: ClassVar[str] = "recertification.completed"
    method: str
    completed_on: date
    application_id: str
    eligibility_criteria: str
    exam_passed_on: date | None = None
    ccp_points: Decimal | None = None
    earliest_activity_on: date | None = None

    @property
    def effective_on(self) -> date:
        return self.completed_on


@dataclass(frozen=True, slots=True)
class Revoked(_Envelope):
    """The certification withdrawn by the certifying body, for good."""

    type: ClassVar[str] = "certification.revoked"
    reason: str
    revoked_on: date

    @property
    def effective_on(self) -> date:
        return self.revoked_on


@dataclass(frozen=True, slots=True)
class MemberUpdated(_Envelope):
    """New member details; a field left None is unchanged."""

    type: ClassVar[str] = "member.updated"
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None

    @property
    def effective_on(self) -> date:
        return self.occurred_at.astimezone(UTC).date()


Event = Granted | FeePaid | CcpActivity | AuditCompleted | Recertified | Revoked | MemberUpdated

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (Granted, FeePaid, CcpActivity, AuditCompleted, Recertified, Revoked, MemberUpdated)
}


def chronological(event: Event) -> tuple[date, datetime, str]:
    """Sort key: the event's own date, then a tie-break that does not depend on arrival."""
    return event.effective_on, event.occurred_at, event.event_id
