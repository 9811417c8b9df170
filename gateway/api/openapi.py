"""`/openapi.json` and `/docs`: the OpenAPI 3 document, built by apispec from marshmallow schemas.

Request bodies reference the very schemas that validate them (`gateway.schemas`); answers reference
`gateway.schemas.responses`. Every route of the app must have an entry in `OPERATIONS` (a test
fails otherwise): a new endpoint is documented by adding its path and operations there.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from marshmallow import fields, validate

from gateway.api.problems import PROBLEM_TYPE
from gateway.auth import SCOPES
from gateway.schemas import responses as r
from gateway.schemas.events import DATA_SCHEMAS, MAX_EVENTS, EnvelopeSchema
from gateway.schemas.subscriptions import (
    CertificationIdsSchema,
    DeliveryQuerySchema,
    SubscriptionCreateSchema,
    SubscriptionSchema,
)
from gateway.schemas.verifications import (
    BatchLookupSchema,
    OnQuerySchema,
    ReceiptQuerySchema,
    ReceiptSchema,
    VerificationSchema,
)
from gateway.schemas.webhooks import CredlyEnvelopeSchema
from gateway.security import PATH_SEGMENT

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
HTML = "text/html"

SCOPE_DESCRIPTIONS = {
    "events:write": "Internal systems post events (and read what became of them).",
    "certifications:read": "Internal read of full standing and the policy table.",
    "verifications:read": "Employers: higher lookup rate limit and batch lookups.",
    "admin": "Operations.",
}

# Error answers shared by operations (components/responses); every one is problem+json.
ERRORS: dict[str, tuple[str, str]] = {
    "BadRequest": ("400", "The request is malformed (the `errors` name the fields)."),
    "Unauthorized": ("401", "A valid bearer token is required (`WWW-Authenticate: Bearer`)."),
    "Forbidden": ("403", "The token lacks the scope the operation needs."),
    "NotFound": ("404", "No such resource."),
    "Conflict": ("409", "The event id was already used for a different body."),
    "PayloadTooLarge": (
        "413",
        "The body is over 64 KiB (1 MiB for event batches, 2 MiB for subscriptions).",
    ),
    "UnsupportedMediaType": ("415", "The body must be `application/json`."),
    "Unprocessable": ("422", "Malformed body (`field` errors) or broken rules (`rule` errors)."),
    "TooManyRequests": ("429", "Over the rate limit; retry after `Retry-After` seconds."),
    "Unavailable": (
        "503",
        "The database could not answer (or, for readiness, the database or Redis is unreachable);"
        " try again after `Retry-After` seconds.",
    ),
}
_ERROR_HEADERS = {
    "Unauthorized": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    "TooManyRequests": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
    "Unavailable": {"Retry-After": {"schema": {"type": "integer"}}},
}


_TOKEN_ERRORS = ("Unauthorized", "Forbidden", "Unavailable")  # a token is checked in the database
_BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable")


def _errors(*names: str) -> dict[str, str]:
    """Responses referencing the shared error answers `names`."""
    return {ERRORS[name][0]: name for name in names}


def _json(schema: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _results(item: Any, description: str) -> dict[str, Any]:
    """A batch's answer: `{"results": [item, ...]}`."""
    schema = {
        "type": "object",
        "required": ["results"],
        "additionalProperties": False,
        "properties": {"results": {"type": "array", "items": item}},
    }
    return _json(schema, description)


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def _scopes(*scopes: str, optional: bool = False) -> list[dict[str, list[str]]]:
    """Security requirements: a token with any one of `scopes` (or none at all when optional)."""
    return [{"oauth2": [scope]} for scope in scopes] + ([{}] if optional else [])


def _path_param(name: str, description: str, example: str | None = None) -> dict[str, Any]:
    param = {
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "pattern": f"^{PATH_SEGMENT}+$"},
        "description": description,
    }
    return param | ({"example": example} if example else {})


EXAMPLE_EVENT = {
    "event_id": "evt-0001",
    "type": "certification.granted",
    "occurred_at": "2025-03-01T12:00:00Z",
    "certification_id": "CERT-123",
    "data": {
        "member": {
            "member_id": "M-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
        },
        "credential": "RMA",
        "certified_on": "2025-03-01",
    },
}
_CERTIFICATION_ID = _path_param(
    "certification_id", "The certification number.", EXAMPLE_EVENT["certification_id"]
)
_SUBSCRIPTION_ID = _path_param("subscription_id", "One of your subscriptions.")
_SUBSCRIPTION_SCOPE = _scopes("verifications:read")
_IDS_BODY = {"required": True, "content": {JSON: {"schema": CertificationIdsSchema}}}
# A number typed into a page: not only whitespace (str.strip() whitespace, in any regex dialect)
_PAGE_NUMBER = {"type": "string", "pattern": r"[^\s\x1c-\x1f\x85]"}
# path -> method -> OpenAPI operation; marshmallow schema classes stand where a schema goes.
OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/v1/events": {
        "post": {
            "tags": ["events"],
            "summary": "Record one event",
            "description": "Validate its shape and its meaning against the rules, record it and "
            "queue the jobs its change in standing calls for. The same `event_id` with the same "
            "body answers as the first time did, with `Idempotent-Replayed: true`.",
            "security": _scopes("events:write"),
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": "Event", "example": EXAMPLE_EVENT}},
            },
            "responses": {
                "202": _json(
                    r.EventAnswerSchema,
                    "Recorded; the standing after the event and the actions it caused.",
                    headers={
                        "Location": {"schema": {"type": "string"}, "required": True},
                        "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
                    },
                ),
                **_errors(*_TOKEN_ERRORS, *_BODY_ERRORS, "NotFound", "Conflict"),
            },
        }
    },
    "/v1/events/batch": {
        "post": {
            "tags": ["events"],
            "summary": "Record up to 100 events",
            "description": "Each event is answered as `POST /v1/events` would answer it, had they "
            "been sent one after another in this order (a later one sees the earlier ones); they "
            "are recorded together. A result's `body` is that answer's body, `replayed` its "
            "`Idempotent-Replayed`, `location` its `Location`.",
            "security": _scopes("events:write"),
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["events"],
                            "additionalProperties": False,
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": MAX_EVENTS,
                                    "items": {"$ref": "#/components/schemas/Event"},
                                }
                            },
                        },
                        "example": {"events": [EXAMPLE_EVENT]},
                    }
                },
            },
            "responses": {
                "200": _results(
                    {
                        "type": "object",
                        "required": ["status", "replayed", "location", "body"],
                        "additionalProperties": False,
                        "properties": {
                            "status": {"type": "integer", "enum": [202, 404, 409, 422]},
                            "replayed": {"type": "boolean"},
                            "location": {"type": ["string", "null"]},
                            "body": {"anyOf": [r.EventAnswerSchema, r.ProblemSchema]},
                        },
                    },
                    "One result per event, in the order sent.",
                ),
                **_errors(*_TOKEN_ERRORS, *_BODY_ERRORS),
            },
        }
    },
    "/v1/events/{event_id}": {
        "get": {
            "tags": ["events"],
            "summary": "A recorded event, its outcome and its jobs",
            "security": _scopes("events:write", "certifications:read"),
            "parameters": [
                _path_param("event_id", "The sender's event id.", EXAMPLE_EVENT["event_id"])
            ],
            "responses": {
                "200": _json(r.EventRecordSchema, "The recorded event."),
                **_errors(*_TOKEN_ERRORS, "NotFound"),
            },
        }
    },
    "/v1/certifications/{certification_id}": {
        "get": {
            "tags": ["certifications"],
            "summary": "The standing of a certification",
            "security": _scopes("certifications:read"),
            "parameters": [
                _CERTIFICATION_ID,
                {
                    "in": "query",
                    "name": "as_of",
                    "schema": {"type": "string", "format": "date"},
                    "description": "Evaluate the history on this day (default: today, UTC).",
                },
            ],
            "responses": {
                "200": _json(r.StandingSchema, "The standing on `as_of`."),
                **_errors(*_TOKEN_ERRORS, "BadRequest", "NotFound", "Unprocessable"),
            },
        }
    },
    "/v1/credentials": {
        "get": {
            "tags": ["certifications"],
            "summary": "The credential policy table",
            "security": _scopes("certifications:read"),
            "responses": {
                "200": _json(r.CredentialsSchema, "Every credential."),
                **_errors(*_TOKEN_ERRORS),
            },
        }
    },
    "/v1/verifications/{certification_id}": {
        "get": {
            "tags": ["verifications"],
            "summary": "The public record of one certification",
            "description": "No token needed; a `verifications:read` token raises the rate limit. "
            "Send the `ETag` back as `If-None-Match` to get a 304 while the record is unchanged. "
            "With `on` (and a `verifications:read` token) the record as it stood that day, "
            "computed from the history; a day before the grant is a 404 naming `on`.",
            "security": _scopes("verifications:read", optional=True),
            "parameters": [
                _CERTIFICATION_ID,
                {"in": "query", "schema": OnQuerySchema},
                {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json(
                    VerificationSchema,
                    "The public record.",
                    headers={"ETag": {"schema": {"type": "string"}}},
                ),
                "304": {"description": "Unchanged since the `If-None-Match` ETag."},
                **_errors(*_TOKEN_ERRORS, "NotFound", "Unprocessable", "TooManyRequests"),
            },
        }
    },
    "/v1/verifications/{certification_id}/receipt": {
        "get": {
            "tags": ["verifications"],
            "summary": "A signed receipt of the public record (proof of the check)",
            "description": "A compact JWS (ES256; keys at `/.well-known/jwks.json`) whose claims "
            "are the verification answer plus `iss`, `sub`, `iat` and the reference `jti` (also "
            "in `Receipt-Reference`). Every receipt is recorded. `on` needs a token, as above.",
            "security": _scopes("verifications:read", optional=True),
            "parameters": [_CERTIFICATION_ID, {"in": "query", "schema": OnQuerySchema}],
            "responses": {
                "200": {
                    "description": "The receipt.",
                    "content": {"application/jose": {"schema": {"type": "string"}}},
                    "headers": {"Receipt-Reference": {"schema": {"type": "string"}}},
                },
                **_errors(*_TOKEN_ERRORS, "NotFound", "Unprocessable", "TooManyRequests"),
            },
        }
    },
    "/v1/receipts": {
        "get": {
            "tags": ["verifications"],
            "summary": "The receipts issued to you, oldest first",
            "security": _scopes("verifications:read"),
            "parameters": [{"in": "query", "schema": ReceiptQuerySchema}],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["receipts"],
                        "properties": {"receipts": {"type": "array", "items": ReceiptSchema}},
                    },
                    "Your receipts issued at or after `since`.",
                ),
                **_errors(*_TOKEN_ERRORS, "Unprocessable", "TooManyRequests"),
            },
        }
    },
    "/v1/verifications/batch": {
        "post": {
            "tags": ["verifications"],
            "summary": "The public records of up to 100 certifications",
            "security": _scopes("verifications:read"),
            "requestBody": {"required": True, "content": {JSON: {"schema": BatchLookupSchema}}},
            "responses": {
                "200": _results(
                    {"oneOf": [VerificationSchema, r.NotFoundResultSchema]},
                    "One result per id, in the order asked.",
                ),
                **_errors(*_TOKEN_ERRORS, *_BODY_ERRORS, "TooManyRequests"),
            },
        }
    },
    "/v1/subscriptions": {
        "post": {
            "tags": ["subscriptions"],
            "summary": "Register a webhook for status changes of the certifications it watches",
            "description": "The answer shows the signing secret: the only time it is shown.",
            "security": _SUBSCRIPTION_SCOPE,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": SubscriptionCreateSchema}},
            },
            "responses": {
                "201": _json(
                    SubscriptionSchema,
                    "Registered.",
                    headers={"Location": {"schema": {"type": "string"}, "required": True}},
                ),
                **_errors(*_TOKEN_ERRORS, *_BODY_ERRORS),
            },
        },
        "get": {
            "tags": ["subscriptions"],
            "summary": "Your subscriptions, oldest first",
            "security": _SUBSCRIPTION_SCOPE,
            "responses": {
                "200": _json(r.SubscriptionsSchema, "Your live subscriptions."),
                **_errors(*_TOKEN_ERRORS),
            },
        },
    },
    "/v1/subscriptions/{subscription_id}": {
        "get": {
            "tags": ["subscriptions"],
            "summary": "One of your subscriptions, with every certification id it watches",
            "security": _SUBSCRIPTION_SCOPE,
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "200": _json(SubscriptionSchema, "The subscription."),
                **_errors(*_TOKEN_ERRORS, "NotFound"),
            },
        },
        "delete": {
            "tags": ["subscriptions"],
            "summary": "Delete a subscription: nothing more is delivered to it",
            "security": _SUBSCRIPTION_SCOPE,
            "parameters": [_SUBSCRIPTION_ID],
            "responses": {
                "204": {"description": "Deleted."},
                **_errors(*_TOKEN_ERRORS, "NotFound"),
            },
        },
    },
    "/v1/subscriptions/{subscription_id}/certifications": {
        method: {
            "tags": ["subscriptions"],
            "summary": summary,
            "security": _SUBSCRIPTION_SCOPE,
            "parameters": [_SUBSCRIPTION_ID],
            "requestBody": _IDS_BODY,
            "responses": {
                "200": _json(r.WatchedChangeSchema, "The subscription after the change."),
                **_errors(*_TOKEN_ERRORS, *_BODY_ERRORS, "NotFound"),
            },
        }
        for method, summary in (
            ("post", "Watch more certifications (at most 10,000 in all)"),
            ("delete", "Stop watching the certifications named in the body"),
        )
    },
    "/v1/subscriptions/{subscription_id}/deliveries": {
        "get": {
            "tags": ["subscriptions"],
            "summary": "The delivery log, newest first",
            "security": _SUBSCRIPTION_SCOPE,
            "parameters": [_SUBSCRIPTION_ID, {"in": "query", "schema": DeliveryQuerySchema}],
            "responses": {
                "200": _json(r.DeliveriesSchema, "A page of the log."),
                **_errors(*_TOKEN_ERRORS, "NotFound", "Unprocessable"),
            },
        }
    },
    "/oauth/token": {
        "post": {
            "tags": ["oauth"],
            "summary": "An access token (OAuth 2.0 client credentials)",
            "description": "Authenticate the client with HTTP Basic (`client_secret_basic`) or "
            "with `client_id` and `client_secret` form fields (`client_secret_post`).",
            "security": [{"clientBasic": []}, {}],
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": r.TokenRequestSchema}},
            },
            "responses": {
                "200": _json(r.TokenSchema, "The token."),
                **_errors("BadRequest", "Unauthorized", "PayloadTooLarge", "Unavailable"),
            },
        }
    },
    "/webhooks/credly": {
        "post": {
            "tags": ["credly"],
            "summary": "A Credly webhook notification",
            "description": "Recorded once per Credly event id and checked by a job that fetches "
            "the event from Credly; notifications of another organisation are answered 200 but "
            "refused. Credly's `Content-Type` is not relied on.",
            "security": [{}],
            "requestBody": {"required": True, "content": {JSON: {"schema": CredlyEnvelopeSchema}}},
            "responses": {
                "200": _json(r.WebhookReceiptSchema, "Recorded (or recorded before)."),
                **_errors("BadRequest", "PayloadTooLarge", "Unavailable"),
            },
        }
    },
    "/healthz": {
        "get": {
            "tags": ["operations"],
            "summary": "Liveness",
            "security": [{}],
            "responses": {"200": _json(r.HealthSchema, "The process is alive.")},
        }
    },
    "/readyz": {
        "get": {
            "tags": ["operations"],
            "summary": "Readiness: the database and Redis are reachable",
            "security": [{}],
            "responses": {
                "200": _json(r.ReadinessSchema, "Ready."),
                **_errors("Unavailable"),
            },
        }
    },
    "/metrics": {
        "get": {
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "security": [{}],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/.well-known/jwks.json": {
        "get": {
            "tags": ["verifications"],
            "summary": "The public keys that sign receipts and credentials",
            "security": [{}],
            "responses": {
                "200": {
                    "description": "A JWK set (RFC 7517): every key that may have signed.",
                    "content": {"application/jwk-set+json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "tags": ["operations"],
            "summary": "This OpenAPI document",
            "security": [{}],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI 3 document.")},
        }
    },
    "/docs": {
        "get": {
            "tags": ["operations"],
            "summary": "The operations of this document as a web page",
            "security": [{}],
            "responses": {"200": _html("The API documentation.")},
        }
    },
    "/verify": {
        "get": {
            "tags": ["verifications"],
            "summary": "The employers' verification web page",
            "security": [{}],
            "parameters": [
                {
                    "in": "query",
                    "name": "certification_id",
                    "schema": _PAGE_NUMBER,
                    "description": "The number to look up; without it, just the form.",
                },
            ],
            "responses": {
                "200": _html("The form, and the result card when a number was given."),
                "400": _html("An empty number."),
                "404": _html("The number is not on record."),
                "429": _html("Over the rate limit."),
                "503": _html("The register cannot be read right now (`Retry-After`)."),
            },
        }
    },
    "/verify/proof": {
        "get": {
            "tags": ["verifications"],
            "summary": "A printable proof of a check: a signed receipt and a QR code",
            "security": [{}],
            "parameters": [
                {
                    "in": "query",
                    "name": "certification_id",
                    "required": True,
                    "schema": _PAGE_NUMBER,
                    "description": "The number whose check to prove.",
                }
            ],
            "responses": {
                "200": _html("The receipt page."),
                "400": _html("An empty number."),
                "404": _html("The number is not on record."),
                "429": _html("Over the rate limit."),
                "503": _html("The register cannot be read right now (`Retry-After`)."),
            },
        }
    },
    "/verify/receipt": {
        "get": {
            "tags": ["verifications"],
            "summary": "Check a receipt: genuine or not, what it said, what is true now",
            "security": [{}],
            "parameters": [
                {
                    "in": "query",
                    "name": "receipt",
                    "schema": {"type": "string"},
                    "description": "The receipt (compact JWS); without it, just the form.",
                }
            ],
            "responses": {
                "200": _html("The form, or a genuine receipt's record then and now."),
                "422": _html("Not a genuine receipt."),
                "503": _html("The register cannot be read right now (`Retry-After`)."),
            },
        }
    },
    "/verify/logo": {
        "get": {
            "tags": ["verifications"],
            "summary": "The certifying body's logo (`ISSUER_LOGO`)",
            "security": [{}],
            "responses": {
                "200": {"description": "The image (PNG, JPEG, SVG, GIF or WebP)."},
                **_errors("NotFound"),
            },
        }
    },
}


def _event_name(event_type: str) -> str:
    """`renewal.fee_paid` -> `RenewalFeePaidEvent`."""
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type)) + "Event"


def _exclusive_range(_converter: object, field: fields.Field, **_: Any) -> dict[str, Any]:
    """apispec drops `Range(min_inclusive=False)`: say it (JSON Schema 2020-12 numeric form)."""
    out: dict[str, Any] = {}
    for v in field.validators:
        if isinstance(v, validate.Range):
            if v.min is not None and not v.min_inclusive:
                out["exclusiveMinimum"] = v.min
            if v.max is not None and not v.max_inclusive:
                out["exclusiveMaximum"] = v.max
    return out


def _add_events(spec: APISpec) -> None:
    """`Event`: the envelope with each type's `data`, one of them by `type` (a discriminator)."""
    spec.components.schema("EventEnvelope", schema=EnvelopeSchema)
    mapping = {}
    for event_type, (data_schema, _) in DATA_SCHEMAS.items():
        spec.components.schema(data_schema.__name__, schema=data_schema)
        name = _event_name(event_type)
        spec.components.schema(
            name,
            {
                "allOf": [spec.components.get_ref("schema", "EventEnvelope")],
                "properties": {
                    "type": {"type": "string", "enum": [event_type]},
                    "data": spec.components.get_ref("schema", data_schema.__name__),
                },
                "description": data_schema.__doc__,
            },
        )
        mapping[event_type] = spec.components.get_ref("schema", name)["$ref"]
    spec.components.schema(
        "Event",
        {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "type", "mapping": mapping},
        },
    )


@functools.cache
def build_spec() -> dict[str, Any]:
    """The OpenAPI document of the gateway (built once per process)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="credential-gateway",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": "Certification events in, standing out, Credly badges and employer "
            "verification in step. Every error is `application/problem+json` (RFC 9457)."
        },
    )
    plugin.converter.add_attribute_function(_exclusive_range)
    plugin.map_to_openapi_type(fields.Url, "string", "uri")  # "url" is no JSON Schema format
    spec.components.schema("Problem", schema=r.ProblemSchema)
    for name, (_, description) in ERRORS.items():
        spec.components.response(
            name,
            {
                "description": description,
                "content": {PROBLEM_TYPE: {"schema": "Problem"}},
                "headers": _ERROR_HEADERS.get(name, {}),
            },
        )
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/oauth/token",
                    "scopes": {scope: SCOPE_DESCRIPTIONS[scope] for scope in SCOPES},
                }
            },
        },
    )
    spec.components.security_scheme(
        "clientBasic",
        {"type": "http", "scheme": "basic", "description": "client_id:client_secret"},
    )
    _add_events(spec)
    for path, operations in copy.deepcopy(OPERATIONS).items():  # apispec resolves in place
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _described(spec: dict[str, Any], answer: dict[str, Any]) -> str:
    """The description of a response, following a reference to the shared ones."""
    if "$ref" in answer:
        answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["description"]


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3 document."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs_page() -> ResponseReturnValue:
    """Every operation of the document as a server-rendered page (no JavaScript, works offline)."""
    spec = build_spec()
    operations = [
        {
            "method": method.upper(),
            "path": path,
            "anchor": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
            "summary": operation.get("summary", ""),
            "description": operation.get("description", ""),
            "tag": operation.get("tags", [""])[0],
            "scopes": sorted({s for req in operation["security"] for s in req.get("oauth2", [])}),
            "public": {} in operation["security"],
            "responses": [
                (status, _described(spec, answer))
                for status, answer in operation["responses"].items()
            ],
        }
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    return render_template("docs.html", spec=spec, operations=operations)
