"""Fields shared by request schemas: lists of certification ids."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from gateway.schemas.events import CERTIFICATION_ID, TEXT


class _LengthFirst(fields.List):
    """A list whose length is checked before its items: one over its limit is that one error, not
    also an error of each of its (thousands of) items, read one by one to say so."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list:
        if isinstance(value, list):
            self._validate(value)
        return super()._deserialize(value, attr, data, **kwargs)


#: Why a number to look up with white space around it (pasted with it, say) is refused: no
#: certification's number holds any, so it would be not found, where its owner expects a match.
PADDED = "Remove the white space around the certification number."


def padded(number: str) -> bool:
    """Whether `number` begins or ends with white space (as `str.strip` reads it)."""
    return number != number.strip()


def _unpadded(number: str) -> None:
    if padded(number):
        raise ValidationError(PADDED)


def certification_ids_field(
    most: int, *, well_formed: bool = False, looked_up: bool = False
) -> fields.List:
    """A required list of 1 to `most` certification ids: any text up to 128 characters (an id
    no certification has is looked up, and not found), or, `well_formed`, ids as a
    certification's may be (ASCII letters, digits, . _ -); `looked_up`, any text but one with
    white space around it (`PADDED`)."""
    shape = CERTIFICATION_ID if well_formed else TEXT
    checks = [validate.Length(min=1, max=128), shape, *([_unpadded] if looked_up else [])]
    return _LengthFirst(
        fields.String(validate=checks),
        required=True,
        validate=validate.Length(min=1, max=most, error=f"Give 1 to {most} certification ids."),
        metadata={"example": ["CERT-123", "CERT-456"]},
    )
