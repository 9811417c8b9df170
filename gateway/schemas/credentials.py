"""The Open Badges credential check: its request and its answer."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

#: One of our credential JWTs is about 3,000 characters. The limit keeps any body that holds one,
#: even in JSON or form escapes of 12 bytes a character, under the 64 KiB body limit.
MAX_CREDENTIAL_LENGTH = 5000


def credential_field() -> fields.String:
    """A compact JWS: three base64url parts (the check says why one does not verify)."""
    return fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_CREDENTIAL_LENGTH),
        metadata={"description": "The credential as a VC-JWT (compact JWS)."},
    )


class CredentialCheckSchema(Schema):
    """`POST /v1/credentials/verify`: the credential to check."""

    class Meta:
        unknown = RAISE

    credential = credential_field()


class CheckSchema(Schema):
    """One check of a credential: whether it passed, and why not."""

    check = fields.String(
        required=True, validate=validate.OneOf(["signature", "issuer", "dates", "status"])
    )
    passed = fields.Boolean(required=True)
    message = fields.String(required=True)


class CredentialSummarySchema(Schema):
    """What a credential whose signature holds says (never the holder's identity hash)."""

    id = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    certification_id = fields.String(allow_none=True)
    credential = fields.String(allow_none=True)
    credential_name = fields.String(allow_none=True)
    issuer = fields.String(allow_none=True)
    valid_from = fields.String(allow_none=True)
    valid_until = fields.String(allow_none=True)


class CredentialCheckResultSchema(Schema):
    """The answer: verified only when every check passed."""

    verified = fields.Boolean(required=True)
    checks = fields.List(fields.Nested(CheckSchema), required=True)
    credential = fields.Nested(CredentialSummarySchema, required=True, allow_none=True)
