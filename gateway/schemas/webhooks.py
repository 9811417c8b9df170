"""The envelope of a Credly webhook notification (docs/operations.md): nothing to trust yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from gateway.schemas.events import MOMENTS, TEXT, Moment, ShapeError, field_errors

_PRINTABLE = validate.Regexp(r"^[\x21-\x7e]+$", error="Use printable ASCII, no spaces.")


class CredlyEnvelopeSchema(Schema):
    """`{"id", "organization_id", "event_type", "occurred_at"}` as Credly posts it."""

    class Meta:
        unknown = EXCLUDE  # Credly may add fields; the event itself is fetched, not read here

    id = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=128),
            _PRINTABLE,
            # a path segment of its own in Credly's URL: `.` and `..` would name another resource
            validate.NoneOf([".", ".."], error="Not an event id."),
        ],
        metadata={"example": "5c1f6e0a-credly-event"},
    )
    organization_id = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=128), _PRINTABLE],
        metadata={"example": "dry-run"},
    )
    event_type = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=64), TEXT],
        metadata={"example": "badge.state.changed"},
    )
    occurred_at = Moment(
        required=True,
        lenient=True,  # what it claims is not trusted: Credly's own forms, no offset read as UTC
        validate=MOMENTS,
        metadata={"example": "2025-06-01T09:30:00Z"},
    )


@dataclass(frozen=True)
class CredlyEnvelope:
    """A well-formed notification: which event of which organisation, as the sender claims."""

    id: str
    organization_id: str
    event_type: str
    occurred_at: datetime


def load_credly_envelope(body: Any) -> CredlyEnvelope:
    """Validate a notification body; raise ShapeError naming every bad field."""
    if not isinstance(body, dict):
        raise ShapeError([{"field": "body", "message": "The body must be a JSON object."}])
    try:
        return CredlyEnvelope(**CredlyEnvelopeSchema().load(body))
    except ValidationError as exc:
        raise ShapeError(field_errors(exc.messages, given=body)) from exc
