"""The employer verification bodies (docs/api.md): the public record and the batch lookup."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from gateway.schemas.ids import certification_ids_field
from gateway.schemas.responses import STANDING_STATUSES

MAX_BATCH = 100


class VerificationSchema(Schema):
    """The public record of one certification: exactly what a public registry shows.

    Only dumped (never loaded): `required` and `validate` here document the answer (OpenAPI).
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


class BatchLookupSchema(Schema):
    """`POST /v1/verifications/batch`: 1 to 100 certification ids, answered in order."""

    class Meta:
        unknown = RAISE

    certification_ids = certification_ids_field(MAX_BATCH)
