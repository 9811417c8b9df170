"""Response bodies as marshmallow schemas: what the OpenAPI document promises each answer holds.

The views build their answers as plain dicts; these schemas describe them for `/openapi.json`.
The test suite checks every answer it receives against them (`tests/support/openapi_answers.py`)
and schemathesis fuzzes every operation. Closed schemas (`additionalProperties: false`) say
exactly which keys an answer has; problem details stay open (RFC 9457 extensions).
"""

from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, fields, validate

from gateway import rules
from gateway.schemas.subscriptions import DeliverySchema, SubscriptionSchema

STANDING_STATUSES = (rules.ACTIVE, rules.INACTIVE, rules.LAPSED, rules.REVOKED)
ACTIONS = tuple(
    a.kind
    for a in (rules.IssueBadge, rules.ReplaceBadge, rules.RevokeBadge, rules.SyncVerification)
)


class _Closed(Schema):
    class Meta:
        unknown = RAISE


class ProblemErrorSchema(_Closed):
    """One item of a problem's `errors`: a field path (malformed body) or a rule id (rejection)."""

    field = fields.String(
        metadata={"description": "Dotted path of the offending field.", "example": "data.points"}
    )
    rule = fields.String(metadata={"description": "Id of the certification rule the event breaks."})
    message = fields.String(required=True, metadata={"example": "Must be greater than 0."})


#: The most items a problem's `errors` lists; `detail` says how many more there were. A body of a
#: few KiB can name thousands of unknown keys or bad items, which listed each would make an
#: answer of megabytes (docs/api.md, *Errors*).
MAX_ERRORS = 100


def listed(detail: str, errors: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """A problem's `detail` and `errors` as it answers them: the first MAX_ERRORS errors, the
    detail saying how many more there were."""
    more = len(errors) - MAX_ERRORS
    if more <= 0:
        return detail, errors
    return f"{detail} {more:,} more errors are not listed.", errors[:MAX_ERRORS]


class ProblemSchema(Schema):
    """RFC 9457 problem details, the body of every error (`application/problem+json`)."""

    class Meta:
        unknown = INCLUDE  # extension members: OAuth `error`, readiness `checks`, ...

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True, metadata={"example": "Unprocessable Content"})
    status = fields.Integer(
        required=True, validate=validate.Range(min=400, max=599), metadata={"example": 422}
    )
    detail = fields.String(required=True, metadata={"example": "The event breaks a rule."})
    errors = fields.List(
        fields.Nested(ProblemErrorSchema),
        required=True,
        validate=validate.Length(max=MAX_ERRORS),
        metadata={
            "description": f"Empty unless fields or rules are named; the first {MAX_ERRORS} of "
            "them (`detail` says how many more there were)."
        },
    )


class ReasonSchema(_Closed):
    """A rule that holds for the standing, or that an event broke."""

    rule = fields.String(required=True, metadata={"example": "fees.paid"})
    message = fields.String(
        required=True, metadata={"example": "The renewal fee is paid through 2026-02-28."}
    )


class MemberViewSchema(_Closed):
    """The member a certification belongs to."""

    member_id = fields.String(required=True, metadata={"example": "M-1"})
    first_name = fields.String(required=True, metadata={"example": "Ada"})
    last_name = fields.String(required=True, metadata={"example": "Lovelace"})
    email = fields.String(required=True, metadata={"example": "ada@example.org"})


class FeesSchema(_Closed):
    """Renewal fees: paid through a day, the next one due in a month (`YYYY-MM`)."""

    paid_through = fields.Date(required=True, metadata={"example": "2026-02-28"})
    next_due = fields.String(
        required=True, validate=validate.Regexp(r"^\d{4}-\d{2}$"), metadata={"example": "2026-03"}
    )
    unpaid_years = fields.Integer(required=True, metadata={"example": 0})


def _cycle_points(example: float, what: str) -> fields.Float:
    """Points of the standing's CCP cycle: null without one (CCP not required)."""
    description = f"{what}; null when CCP is not required (no cycle, rule CCP-GRANDFATHERED)."
    return fields.Float(
        required=True, allow_none=True, metadata={"example": example, "description": description}
    )


class CcpSchema(_Closed):
    """Continuing-competency points of the current cycle."""

    required = fields.Boolean(required=True)
    cycle_start = fields.Date(required=True, allow_none=True)
    cycle_end = fields.Date(required=True, allow_none=True)
    points_required = _cycle_points(60.0, "The credential's points per cycle")
    points_earned = _cycle_points(12.5, "The points that count in the cycle")
    points_by_category = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"example": {"education": 12.5}},
    )


class RecertificationSchema(_Closed):
    """Whether the member must recertify, and by which methods."""

    required = fields.Boolean(required=True, metadata={"example": False})
    methods = fields.List(fields.String(validate=validate.OneOf(["ccp", "exam"])), required=True)


class BadgeViewSchema(_Closed):
    """The Credly badge of the current certification period."""

    state = fields.String(
        required=True,
        metadata={
            "description": "none, pending, accepted, rejected, revoked or replaced (Credly's), "
            "deleted (by its earner in Credly; not issued again by the gateway on its own), or "
            "error: its job failed for good (`error` says why; requeued, it may still succeed)"
        },
    )
    credly_badge_id = fields.String(required=True, allow_none=True)
    issued_at = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={
            "description": "The badge's issue time as Credly holds it: the start of the "
            "certification day in TIME_ZONE, as the gateway sent it (docs/api.md)."
        },
    )
    expires_at = fields.DateTime(required=True, allow_none=True)
    state_changed_at = fields.DateTime(required=True, allow_none=True)
    error = fields.String(metadata={"description": "Why the badge's job failed (state error)."})
    note = fields.String(
        metadata={"description": "What else to know, e.g. that its e-mail is the earner's own."}
    )


class VerificationSyncSchema(_Closed):
    """When the employer lookup was last written, and what it shows."""

    synced_at = fields.DateTime(required=True, allow_none=True)
    status = fields.String(required=True, allow_none=True)


class JobSchema(_Closed):
    """One side effect (outbox item) and where its job stands."""

    id = fields.String(required=True, metadata={"example": "outbox-42"})
    kind = fields.String(required=True)
    state = fields.String(
        required=True,
        metadata={
            "description": "pending, running, retrying, done, failed, or superseded (a failed "
            "badge job whose badge was brought in step since)"
        },
    )
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True, allow_none=True)
    finished_at = fields.DateTime(required=True, allow_none=True)


class StandingSchema(_Closed):
    """Where a certification stands on `as_of` (docs/rules.md), with its badge, lookup and jobs."""

    certification_id = fields.String(required=True, metadata={"example": "CERT-123"})
    credential = fields.String(required=True, metadata={"example": "RMA"})
    member = fields.Nested(MemberViewSchema, required=True)
    certified_on = fields.Date(required=True)
    as_of = fields.Date(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STANDING_STATUSES))
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    fees = fields.Nested(FeesSchema, required=True)
    ccp = fields.Nested(CcpSchema, required=True)
    recertification = fields.Nested(RecertificationSchema, required=True)
    lapsed_on = fields.Date(required=True, allow_none=True)
    next_change_on = fields.Date(required=True, allow_none=True)
    badge = fields.Nested(BadgeViewSchema, required=True)
    verification = fields.Nested(VerificationSyncSchema, required=True)
    jobs = fields.List(fields.Nested(JobSchema), required=True)


class EventAnswerSchema(_Closed):
    """`202 Accepted`: the event is recorded; the standing after it and the actions it caused."""

    event_id = fields.String(required=True, metadata={"example": "evt-0001"})
    status = fields.String(required=True, validate=validate.OneOf(["accepted"]))
    standing = fields.Nested(StandingSchema, required=True)
    actions = fields.List(fields.String(validate=validate.OneOf(ACTIONS)), required=True)


def _as_sent(example: str, longest: int) -> fields.String:
    """An envelope field of a recorded event, which a malformed attempt may lack."""
    return fields.String(
        required=True,
        allow_none=True,
        metadata={
            "example": example,
            "description": "As sent; null for a malformed event where it was not text of at "
            f"most {longest} characters.",
        },
    )


class EventRecordSchema(_Closed):
    """A recorded event, its outcome and reasons, and the state of every job it caused; or the
    latest malformed attempt at an event id under which no event is recorded."""

    event_id = fields.String(required=True, metadata={"example": "evt-0001"})
    type = _as_sent("certification.granted", 64)
    certification_id = _as_sent("CERT-123", 128)
    occurred_at = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={
            "description": "As sent; null for a malformed event where it was not a date-time "
            "the event would take."
        },
    )
    received_at = fields.DateTime(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "rejected"]))
    reasons = fields.List(
        fields.Nested(ProblemErrorSchema),
        required=True,
        metadata={
            "description": "Why it was rejected: the rules it breaks, or for a malformed event "
            "the field errors its 422 named; empty when accepted."
        },
    )
    data = fields.Dict(
        required=True,
        allow_none=True,
        metadata={
            "description": "The event's data, as sent; null for a malformed event "
            "whose `data` was not an object."
        },
    )
    jobs = fields.List(
        fields.Nested(JobSchema),
        required=True,
        metadata={
            "description": "The jobs queued with the event and, once queued, those they led to:"
            " the webhook deliveries and directory pushes of its change, its advance notices."
        },
    )


class CredentialSchema(_Closed):
    """One credential of the policy table."""

    code = fields.String(required=True, metadata={"example": "RMA"})
    name = fields.String(required=True, metadata={"example": "Registered Medical Assistant"})
    points_per_cycle = fields.Float(required=True, metadata={"example": 60.0})
    eligibility_criteria = fields.String(
        required=True,
        metadata={
            "description": "The current criteria id recertification.completed must name.",
            "example": "RMA-2025",
        },
    )


class CredentialsSchema(_Closed):
    """The credential policy table."""

    credentials = fields.List(fields.Nested(CredentialSchema), required=True)


class NotFoundResultSchema(_Closed):
    """A batch lookup's answer for a number that is not on record (`not_found`), or, for a day
    asked for (`on`), not yet certified that day (`not_certified`)."""

    certification_id = fields.String(required=True, metadata={"example": "CERT-999"})
    status = fields.String(required=True, validate=validate.OneOf(["not_found", "not_certified"]))
    on = fields.Date(metadata={"description": "The day asked for, when the batch names one."})


class TokenRequestSchema(Schema):
    """`POST /oauth/token` form (RFC 6749 §4.4); Authlib checks it, this schema documents it."""

    grant_type = fields.String(required=True, validate=validate.OneOf(["client_credentials"]))
    scope = fields.String(
        metadata={"description": "Space-separated; default: all of the client's."}
    )
    client_id = fields.String(metadata={"description": "client_secret_post only."})
    client_secret = fields.String(metadata={"description": "client_secret_post only."})


class TokenSchema(_Closed):
    """An access token (RFC 6749 §5.1)."""

    access_token = fields.String(required=True, metadata={"example": "kT3v...9sQ"})
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True, metadata={"example": 3600})
    scope = fields.String(required=True, metadata={"example": "verifications:read"})


class HealthSchema(_Closed):
    """The process is alive."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class CredlyStatusSchema(_Closed):
    """The Credly backend in use, its token's expiry (as Credly reported it, else as configured)
    and whether the Credly jobs wait for a working token."""

    mode = fields.String(required=True, validate=validate.OneOf(["live", "dry-run"]))
    token_expires_on = fields.Date(required=True, allow_none=True)
    days_left = fields.Integer(required=True, allow_none=True)
    paused = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "Why Credly jobs wait (Credly refused the token, or does not know the "
                "organisation), or null."
            )
        },
    )


class ReadinessSchema(_Closed):
    """The database and Redis are reachable."""

    status = fields.String(required=True, validate=validate.OneOf(["ready"]))
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"example": {"database": "ok", "redis": "ok"}},
    )
    credly = fields.Nested(CredlyStatusSchema, required=True)


class WebhookReceiptSchema(_Closed):
    """A Credly notification was recorded (or had been) and its check queued."""

    id = fields.String(required=True, metadata={"example": "5c1f6e0a-credly-event"})
    status = fields.String(required=True, metadata={"example": "received"})
    duplicate = fields.Boolean(required=True, metadata={"example": False})


class SubscriptionsSchema(_Closed):
    """The client's live subscriptions."""

    subscriptions = fields.List(fields.Nested(SubscriptionSchema), required=True)


class WatchedChangeSchema(SubscriptionSchema):
    """A subscription after certifications were watched (`added`) or unwatched (`removed`)."""

    added = fields.Integer(metadata={"description": "Newly watched (POST)."})
    removed = fields.Integer(metadata={"description": "No longer watched (DELETE)."})


class DeliveriesSchema(_Closed):
    """A page of a subscription's delivery log, newest first."""

    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
