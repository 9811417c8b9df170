"""Fields shared by request schemas: lists of certification ids."""

from __future__ import annotations

from marshmallow import fields, validate

from gateway.schemas.events import TEXT


def certification_ids_field(most: int) -> fields.List:
    """A required list of 1 to `most` certification ids."""
    return fields.List(
        fields.String(validate=[validate.Length(min=1, max=128), TEXT]),
        required=True,
        validate=validate.Length(min=1, max=most, error=f"Give 1 to {most} certification ids."),
        metadata={"example": ["CERT-123", "CERT-456"]},
    )
