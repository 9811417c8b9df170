"""Certification rules: a pure function from a certification's history and a day to its standing.

No Flask, no SQL, no HTTP: the intake validates and records events, the sweep re-evaluates, and both
turn the difference between two standings into badge and verification actions.
"""

from .actions import (
    BADGE_KEPT,
    Action,
    IssueBadge,
    ReplaceBadge,
    RevokeBadge,
    SyncVerification,
    actions,
)
from .events import (
    AUDIT_RESULTS,
    EVENT_TYPES,
    RECERTIFICATION_METHODS,
    AuditCompleted,
    CcpActivity,
    Event,
    FeePaid,
    Granted,
    Member,
    MemberUpdated,
    Recertified,
    Revoked,
)
from .forecast import ScheduledChange, scheduled_change
from .points import in_hundredths, json_number, to_points
from .policy import CredentialPolicy, Policy, load_policy
from .standing import (
    ACTIVE,
    INACTIVE,
    LAPSED,
    REVOKED,
    Ccp,
    Fees,
    NotCertified,
    Reason,
    Recertification,
    Standing,
    evaluate,
)
from .validation import Violation, kept, validate

__all__ = [
    "ACTIVE",
    "AUDIT_RESULTS",
    "BADGE_KEPT",
    "EVENT_TYPES",
    "INACTIVE",
    "LAPSED",
    "RECERTIFICATION_METHODS",
    "REVOKED",
    "Action",
    "AuditCompleted",
    "Ccp",
    "CcpActivity",
    "CredentialPolicy",
    "Event",
    "FeePaid",
    "Fees",
    "Granted",
    "IssueBadge",
    "Member",
    "MemberUpdated",
    "NotCertified",
    "Policy",
    "Reason",
    "Recertification",
    "Recertified",
    "ReplaceBadge",
    "RevokeBadge",
    "Revoked",
    "ScheduledChange",
    "Standing",
    "SyncVerification",
    "Violation",
    "actions",
    "evaluate",
    "in_hundredths",
    "json_number",
    "kept",
    "load_policy",
    "scheduled_change",
    "to_points",
    "validate",
]
