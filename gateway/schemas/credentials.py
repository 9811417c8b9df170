"""The Open Badges credential check: its request and its answer."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

#: One of our credential JWTs is 3,000 to 5,000 characters (the more with long issuer settings
#: and a 4,096-bit RSA key). The limit leaves room above that; a body holding one stays under the
#: 64 KiB body limit, its characters (base64url) needing no escape.
MAX_CREDENTIAL_LENGTH = 16_384


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
    """What an Open Badges credential whose signature holds says (never the holder's identity
    hash)."""

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
    credential = fields.Nested(
        CredentialSummarySchema,
        required=True,
        allow_none=True,
        metadata={
            "description": "Null when the signature does not hold or what was signed is not an "
            "Open Badges credential."
        },
    )


class CriteriaSchema(Schema):
    """How an achievement is earned."""

    narrative = fields.String(
        required=True,
        metadata={"example": "Granted by the certifying body to a candidate who meets ..."},
    )


class AchievementSchema(Schema):
    """An Open Badges `Achievement`: what every credential of one credential code certifies."""

    context = fields.List(
        fields.String(),
        required=True,
        data_key="@context",
        metadata={
            "example": [
                "https://www.w3.org/ns/credentials/v2",
                "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
            ]
        },
    )
    id = fields.String(
        required=True,
        metadata={
            "description": "The URL it is served at.",
            "example": "https://verify.example.org/issuer/achievements/RMA",
        },
    )
    type = fields.List(fields.String(), required=True, metadata={"example": ["Achievement"]})
    achievement_type = fields.String(
        required=True, data_key="achievementType", metadata={"example": "Certification"}
    )
    name = fields.String(required=True, metadata={"example": "Registered Medical Assistant"})
    description = fields.String(
        required=True, metadata={"example": "The Registered Medical Assistant (RMA) certification."}
    )
    human_code = fields.String(
        required=True,
        data_key="humanCode",
        metadata={"description": "The credential code.", "example": "RMA"},
    )
    criteria = fields.Nested(CriteriaSchema, required=True)
