"""Fields shared by request schemas: lists of certification ids."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from gateway.schemas.events import CERTIFICATION_ID, TEXT


class _LengthFirst(fields.List):
    """A list whose length is checked before its items: one over its limit is that one error, not
    also an error of each of its (thousands of) items, read one by one to say so."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if isinstance(value, list):
            self._validate(value)
        return super()._deserialize(value, attr, data, **kwargs)


def certification_ids_field(most: int, *, well_formed: bool = False) -> fields.List:
    """A required list of 1 to `most` certification ids: any text up to 128 characters (an id
    no certification has is looked up, and not found), or, `well_formed`, ids as a
    certification's may be (ASCII letters, digits, . _ -)."""
    shape = CERTIFICATION_ID if well_formed else TEXT
    return _LengthFirst(
        fields.String(validate=[validate.Length(min=1, max=128), shape]),
        required=True,
        validate=validate.Length(min=1, max=most, error=f"Give 1 to {most} certification ids."),
        metadata={"example": ["CERT-123", "CERT-456"]},
    )
