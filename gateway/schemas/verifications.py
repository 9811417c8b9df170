"""The employer verification bodies: the public record, the batch lookup, receipts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from gateway.platform import clock
from gateway.schemas.events import DAYS, TEXT, Day, QueryInteger
from gateway.schemas.events import Moment as EventMoment
from gateway.schemas.ids import certification_ids_field
from gateway.schemas.responses import STANDING_STATUSES

MAX_BATCH = 100
MAX_RECEIPTS_PAGE = 1000


def _not_in_the_future(day: date) -> None:
    DAYS(day)
    if day > clock.now().date():
        raise ValidationError("The day must not be after today (UTC): the future is not on record.")


def on_field() -> fields.Date:
    """`on`: a past day (or today, UTC) to answer as the record stood then."""
    return Day(
        load_default=None,
        validate=_not_in_the_future,
        metadata={"description": "Answer as the record stood on this day (YYYY-MM-DD)."},
    )


class IssuerSchema(Schema):
    """Who vouches for the answer: the certifying body."""

    name = fields.String(required=True)
    url = fields.String(required=True, allow_none=True, metadata={"description": "Its web site."})
    contact = fields.String(
        required=True, allow_none=True, metadata={"description": "E-mail address or URL."}
    )
    logo = fields.String(required=True, allow_none=True, metadata={"description": "Logo URL."})


class VerificationSchema(Schema):
    """The public record of one certification: exactly what a public registry shows.

    Only dumped (never loaded): `required` and `validate` here document the answer (OpenAPI).
    `issuer` and `on` are added by the views (they are not part of the stored record).
    """

    certification_id = fields.String(required=True, metadata={"example": "CERT-123"})
    name = fields.String(required=True, metadata={"example": "Ada Lovelace"})
    credential = fields.String(required=True, metadata={"example": "RMA"})
    credential_name = fields.String(
        required=True, metadata={"example": "Registered Medical Assistant"}
    )
    status = fields.String(required=True, validate=validate.OneOf(STANDING_STATUSES))
    certified_since = fields.Date(required=True, metadata={"example": "2025-03-01"})
    valid_through = fields.Date(required=True, allow_none=True, metadata={"example": "2026-02-28"})
    verified_at = fields.DateTime(required=True, metadata={"example": "2025-06-01T09:30:00Z"})
    on = fields.Date(metadata={"description": "The day asked for, when the answer is for one."})
    issuer = fields.Nested(IssuerSchema, required=True)


#: Fields of the stored public record (not the id, the time of the check, the day or the issuer).
RECORD_FIELDS = tuple(
    name
    for name in VerificationSchema().fields
    if name not in ("certification_id", "verified_at", "on", "issuer")
)


class OnQuerySchema(Schema):
    """`?on=YYYY-MM-DD`: the day to answer for (default: now, from the read model)."""

    class Meta:
        unknown = EXCLUDE  # links carry parameters of their own (utm_source, ...)

    on = on_field()


class BatchLookupSchema(Schema):
    """`POST /v1/verifications/batch`: 1 to 100 certification ids, answered in order."""

    class Meta:
        unknown = RAISE

    certification_ids = certification_ids_field(MAX_BATCH, looked_up=True)
    on = on_field()


class DayOrMoment(EventMoment):
    """A day (`YYYY-MM-DD`, its start in UTC), or a time as an event's `occurred_at` is written
    (RFC 3339) whose offset may be left out and is then UTC (in OpenAPI: a string that is a
    `date` or a `date-time`). It is read in UTC, so a time whose offset takes it past the years
    UTC times hold (`0001-01-01T00:00:00+01:00`) is out of range."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not a day or a time: use YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS with Z or an "
        "offset (+02:00), UTC without one.",
        "range": "Must be in UTC from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(bare_is_utc=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            day = Day()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            moment = super()._deserialize(value, attr, data, **kwargs)
            try:
                return moment.astimezone(UTC)
            except OverflowError as exc:
                raise self.make_error("range") from exc
        return datetime.combine(day, time(0), UTC)


class ReceiptSchema(Schema):
    """One receipt an API client was given: the verification history an accreditation survey asks
    for."""

    reference = fields.String(required=True, attribute="jti", metadata={"description": "`jti`"})
    certification_id = fields.String(required=True)
    on = fields.Date(required=True, allow_none=True)
    status = fields.String(required=True)
    issued_at = fields.DateTime(required=True)


class ReceiptQuerySchema(Schema):
    """`?since=&limit=&after=`: receipts issued at or after `since`, oldest first, following the
    receipt `after` names."""

    class Meta:
        unknown = EXCLUDE  # links carry parameters of their own (utm_source, ...)

    since = DayOrMoment(
        load_default=None,
        metadata={
            "description": "An ISO 8601 time (UTC unless it has an offset) or a day.",
            "anyOf": [{"format": "date"}, {"format": "date-time"}],
        },
    )
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=MAX_RECEIPTS_PAGE))
    after = fields.String(
        load_default=None,
        validate=[validate.Length(min=1, max=40), TEXT],
        metadata={"description": "The last reference of a page: the next page follows it."},
    )
