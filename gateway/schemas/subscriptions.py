"""The webhook subscription bodies: registering, watched certification ids, the delivery log."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from gateway.schemas.events import TEXT, QueryInteger
from gateway.schemas.ids import certification_ids_field

MAX_WATCHED = 10_000
MAX_URL = 2048
MAX_PAGE = 1000
DEFAULT_NOTICE_DAYS = 30
MAX_NOTICE_DAYS = 365
MAX_SEQUENCE = 2**31 - 1  # deliveries.sequence is a PostgreSQL integer


class _JsonBoolean(fields.Boolean):
    """`true` or `false` only (marshmallow also reads "yes", "on", 1, ...)."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class _URL(validate.URL):
    """marshmallow's URL check, taking every IPv6 literal host that is an address: its pattern
    refuses one ending in dotted IPv4 (`[::ffff:93.184.216.34]`, IPv4-mapped), checked here in its
    hex form (`[::ffff:5db8:d822]`); where the address leads is the delivery guard's to judge."""

    def __call__(self, value: str) -> str:
        super().__call__(_hex_literal(value))
        return value


#: An IPv6 literal host written with a dotted IPv4 tail.
_DOTTED_IPV6 = re.compile(r"\[([0-9A-Fa-f:]+:\d+\.\d+\.\d+\.\d+)\]")


def _hex_literal(url: str) -> str:
    """`url` with an IPv6 literal host ending in dotted IPv4 written in hex, else as it is."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # brackets around no address: marshmallow's check says so
        return url
    found = _DOTTED_IPV6.search(netloc)
    if found is None:
        return url
    try:
        address = ipaddress.IPv6Address(found[1])
    except ValueError:
        return url
    hexed = netloc[: found.start()] + f"[{address.compressed}]" + netloc[found.end() :]
    return url.replace(netloc, hexed, 1)


class _WebhookUrl(fields.Url):
    """An absolute http(s) URL, whose host may be any IPv6 address literal (`_URL`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(schemes={"http", "https"}, require_tld=False, **kwargs)
        self.validators[0] = _URL(
            schemes={"http", "https"}, require_tld=False, error=self.error_messages["invalid"]
        )


class CertificationIdsSchema(Schema):
    """`{"certification_ids": [...]}`: 1 to 10,000 certification ids (duplicates count once)."""

    class Meta:
        unknown = RAISE

    certification_ids = certification_ids_field(MAX_WATCHED)

    @post_load
    def _unique(self, data: dict, **_: object) -> dict:
        data["certification_ids"] = list(dict.fromkeys(data["certification_ids"]))
        return data


class WatchedIdsSchema(CertificationIdsSchema):
    """`{"certification_ids": [...]}` to watch: ids a certification may have, so that a number
    pasted with a space, say, is refused rather than watched for ever in vain."""

    certification_ids = certification_ids_field(MAX_WATCHED, well_formed=True)


class SubscriptionCreateSchema(WatchedIdsSchema):
    """`POST /v1/subscriptions`: where to deliver, and which certifications to watch."""

    url = _WebhookUrl(
        required=True,
        validate=[validate.Length(max=MAX_URL), TEXT],
        metadata={
            "description": "The webhook URL: https, resolving to public addresses.",
            "example": "https://hooks.example.org/certifications",
        },
    )
    advance_notice = _JsonBoolean(
        load_default=False,
        metadata={
            "description": "Also send certification.status_change_scheduled (and _cancelled) "
            "ahead of a status change due without any event."
        },
    )
    notice_days = fields.Integer(
        strict=True,
        load_default=DEFAULT_NOTICE_DAYS,
        validate=validate.Range(min=1, max=MAX_NOTICE_DAYS),
        metadata={"description": "How many days ahead; only with advance_notice: true."},
    )

    @validates_schema(pass_original=True)
    def _days_need_notice(self, data: dict, original: object, **_: object) -> None:
        """`notice_days` says how far ahead advance notices go: without them it means nothing."""
        if isinstance(original, dict) and "notice_days" in original and not data["advance_notice"]:
            raise ValidationError("Give notice_days with advance_notice: true.", "notice_days")

    @post_load
    def _notice(self, data: dict, **_: object) -> dict:
        """`notice_days` as stored: None when there is no advance notice."""
        if not data.pop("advance_notice"):
            data["notice_days"] = None
        return data


class SubscriptionSchema(Schema):
    """A subscription as its owner sees it; the secret only in the answer that created it."""

    id = fields.String(metadata={"example": "sub_2f9c7d1e"})
    url = fields.String(metadata={"example": "https://hooks.example.org/certifications"})
    certification_count = fields.Integer(metadata={"example": 2})
    certification_ids = fields.List(fields.String(), metadata={"example": ["CERT-123", "CERT-456"]})
    notice_days = fields.Integer(
        allow_none=True,
        metadata={"description": "Days of advance notice; null: none.", "example": 30},
    )
    created_at = fields.DateTime(metadata={"example": "2025-06-01T09:30:00Z"})
    secret = fields.String(
        metadata={
            "description": "whsec_...: shown once, at creation; verifies signatures.",
            "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    )


class DeliverySchema(Schema):
    """One entry of a subscription's delivery log."""

    sequence = fields.Integer(metadata={"example": 42})
    event_id = fields.String(
        metadata={"description": "The webhook-id header of the message.", "example": "msg_42"}
    )
    type = fields.String(
        attribute="event_type",
        metadata={"description": "The message's type.", "example": "certification.status_changed"},
    )
    certification_id = fields.String(metadata={"example": "CERT-123"})
    state = fields.String(
        metadata={
            "description": "pending, sending, retrying, delivered, superseded, cancelled, failed",
            "example": "delivered",
        }
    )
    attempts = fields.Integer(metadata={"example": 1})
    status_code = fields.Integer(allow_none=True, metadata={"example": 204})
    error = fields.String(allow_none=True, attribute="last_error")
    created_at = fields.DateTime()
    last_attempt_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class DeliveryQuerySchema(Schema):
    """`?limit=&before=`: newest first, `before` a sequence number to page back from."""

    class Meta:
        unknown = EXCLUDE  # links carry parameters of their own (utm_source, ...)

    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE))
    before = QueryInteger(load_default=None, validate=validate.Range(min=1, max=MAX_SEQUENCE))
