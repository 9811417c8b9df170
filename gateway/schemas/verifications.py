"""The employer verification bodies (SPEC §7): the public record and the batch lookup."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

MAX_BATCH = 100


class VerificationSchema(Schema):
    """The public record of one certification: exactly what a public registry shows."""

    certification_id = fields.String()
    name = fields.String()
    credential = fields.String()
    credential_name = fields.String()
    status = fields.String()
    certified_since = fields.Date()
    valid_through = fields.Date(allow_none=True)
    verified_at = fields.DateTime()


class BatchLookupSchema(Schema):
    """`POST /v1/verifications/batch`: 1 to 100 certification ids, answered in order."""

    class Meta:
        unknown = RAISE

    certification_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=128)),
        required=True,
        validate=validate.Length(
            min=1, max=MAX_BATCH, error=f"Give 1 to {MAX_BATCH} certification ids per batch."
        ),
    )
