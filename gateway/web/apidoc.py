"""How a route documents itself: `@operation(...)` beside the route, read by `gateway.web.openapi`.

Every route of the app declares its OpenAPI operation where it is defined; there is no table
elsewhere. `/openapi.json` is built by walking the app's routes: each view's declaration gives the
summary, request body and answers, and the scope decorator it wears gives `security`::

    @bp.post("/v1/things/<thing_id>")
    @require_scope("things:write")  # enforces AND documents the scope (see below)
    @operation(
        "Replace a thing",  # the summary
        tags=["things"],
        request=ThingSchema,  # the marshmallow schema that loads the body
        responses={200: json_answer(ThingSchema, "The thing as stored.")},
        errors=(*BODY_ERRORS, "NotFound"),  # shared problem+json answers, by name (ERRORS)
    )
    def put_thing(thing_id: str) -> ResponseReturnValue: ...

- **Scopes** are declared once, by `gateway.web.auth.require_scope` (a token with one of the scopes)
  or `allow_scope` (no token needed; a token sent must carry one of them). Both record the scopes
  on the view; the document's `security` is made from that record (and the 401, 403 and 503
  answers a token check can give are added). A route with neither is public: `security: [{}]`.
  Never write an `oauth2` requirement into `security=`: that parameter is for other schemes only
  (the token endpoint's HTTP Basic client authentication).
- **Path parameters** come from the route's rule; each name is described once in
  `PATH_PARAMETERS`. Query and header parameters go in `parameters=`.
- **Answers**: `responses` maps a status to `json_answer(...)` (JSON), `html(...)`, `text(...)` or
  `empty(...)`; `errors` names shared error answers of `ERRORS` (all problem+json).
- **Examples**: give fields `metadata={"example": ...}`; the document then carries an example of
  every JSON body and answer, built from the fields' examples (`request_example=` overrides).

A route without `@operation` makes building the document fail, naming the route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.web.security import MAX_HEADER_LINE, MAX_URL

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"

F = TypeVar("F", bound=Callable[..., Any])

#: The header of an event's answer that repeats the first answer to its `event_id`.
REPLAYED: dict[str, Any] = {"schema": {"type": "string", "enum": ["true"]}}

# Error answers shared by operations (components/responses); every one is problem+json.
ERRORS: dict[str, tuple[int, str]] = {
    "BadRequest": (
        400,
        "The request is malformed (the `errors` name the fields); on any operation, a `Host` "
        "header naming no usable host.",
    ),
    "Unauthorized": (401, "A valid bearer token is required (`WWW-Authenticate: Bearer`)."),
    "Forbidden": (403, "The token lacks the scope the operation needs."),
    "NotFound": (404, "No such resource."),
    "Conflict": (409, "The event id was already used for a different body."),
    "NoCredential": (409, "The certification is lapsed or revoked: it has no credential."),
    "TooManySubscriptions": (
        409,
        "The client already holds as many subscriptions as a client may.",
    ),
    "PreconditionFailed": (
        412,
        "`If-Match` names no current entity tag (the `ETag` is weak: only `If-Match: *` matches).",
    ),
    "PayloadTooLarge": (
        413,
        "The body is over 64 KiB (1 MiB for event batches, 2 MiB for subscriptions).",
    ),
    "URITooLong": (414, f"The URL (path and query) is over {MAX_URL:,} characters."),
    "UnsupportedMediaType": (415, "The body must be `application/json`."),
    "Unprocessable": (422, "Malformed body (`field` errors) or broken rules (`rule` errors)."),
    "UnprocessableEvent": (
        422,
        "Malformed event (`field` errors) or broken rules (`rule` errors); the same body sent "
        "again under its `event_id` is answered the same, with `Idempotent-Replayed: true`.",
    ),
    "TooManyRequests": (429, "Over the rate limit; retry after `Retry-After` seconds."),
    "HeaderFieldsTooLarge": (431, f"A header line is over {MAX_HEADER_LINE:,} characters."),
    "Unavailable": (
        503,
        "The database could not answer (or, for readiness, the database or Redis is unreachable);"
        " try again after `Retry-After` seconds.",
    ),
}
ERROR_HEADERS: dict[str, dict[str, Any]] = {
    "Unauthorized": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    "TooManyRequests": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
    "Unavailable": {"Retry-After": {"schema": {"type": "integer"}}},
    "UnprocessableEvent": {"Idempotent-Replayed": REPLAYED},
}
#: What any request may answer, before its route does anything; added for every route (to a
#: route's own answer of the same status, as another media type: an HTML page's 400).
REQUEST_ERRORS = ("BadRequest", "URITooLong", "HeaderFieldsTooLarge")
#: What checking a token may answer (it is looked up in the database); added for scoped routes.
TOKEN_ERRORS = ("Unauthorized", "Forbidden", "Unavailable")
#: What reading a JSON body may answer.
BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable")
#: What reading an event's body may answer: its 422, like its 202, is repeated to a replay.
EVENT_BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "UnprocessableEvent")

#: Every path parameter of the routes: (description, example or None).
PATH_PARAMETERS: dict[str, tuple[str, str | None]] = {
    "certification_id": ("The certification number.", "CERT-123"),
    "event_id": ("The sender's event id.", "evt-0001"),
    "subscription_id": ("One of your subscriptions.", None),
    "list_id": ("The status list, as a credential's `statusListCredential` names it.", "0"),
    "purpose": ("Which bitstring: `revocation` (for good) or `suspension` (a lapse).", None),
    "code": ("A credential code, as an achievement's `humanCode` gives it.", "RMA"),
    "kid": ("A signing key's `kid`, as `/.well-known/jwks.json` names it.", None),
}
#: Path parameters that are not any path segment: their own JSON schema.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "list_id": {"type": "integer", "minimum": 0},
    "purpose": {"type": "string", "enum": ["revocation", "suspension"]},
}

LOCATION = {"Location": {"schema": {"type": "string"}, "required": True}}


def json_answer(
    schema: Any, description: str, *, headers: Mapping[str, Any] | None = None, media: str = JSON
) -> dict[str, Any]:
    """A JSON answer whose body is `schema` (a marshmallow schema class or a JSON schema dict)."""
    response: dict[str, Any] = {"description": description, "content": {media: {"schema": schema}}}
    return response | ({"headers": dict(headers)} if headers else {})


def results(item: Any, description: str) -> dict[str, Any]:
    """A batch's answer: `{"results": [item, ...]}`."""
    schema = {
        "type": "object",
        "required": ["results"],
        "additionalProperties": False,
        "properties": {"results": {"type": "array", "items": item}},
    }
    return json_answer(schema, description)


def html(description: str) -> dict[str, Any]:
    """An HTML page."""
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def text(description: str, media: str = "text/plain") -> dict[str, Any]:
    """A body that is not JSON."""
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def empty(description: str) -> dict[str, Any]:
    """An answer without a body (204, 304)."""
    return {"description": description}


@dataclass(frozen=True)
class Operation:
    """A route's OpenAPI operation as declared beside it (see the module docstring)."""

    summary: str
    tags: tuple[str, ...]
    responses: Mapping[int, dict[str, Any]]
    description: str = ""
    request: Any = None
    request_media: str = JSON
    request_example: Any = None
    parameters: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    security: tuple[dict[str, list[str]], ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name in self.errors if name not in ERRORS]
        if unknown:
            raise ValueError(f"unknown error answers {unknown}; choose from {sorted(ERRORS)}")
        if any("oauth2" in requirement for requirement in self.security):
            raise ValueError("scopes are declared by require_scope/allow_scope, not security=")


def operation(
    summary: str,
    *,
    tags: Sequence[str],
    responses: Mapping[int, dict[str, Any]],
    description: str = "",
    request: Any = None,
    request_media: str = JSON,
    request_example: Any = None,
    parameters: Sequence[dict[str, Any]] = (),
    errors: Sequence[str] = (),
    security: Sequence[dict[str, list[str]]] = (),
) -> Callable[[F], F]:
    """Declare the OpenAPI operation of the view it decorates (see the module docstring)."""
    declared = Operation(
        summary=summary,
        tags=tuple(tags),
        responses=dict(responses),
        description=description,
        request=request,
        request_media=request_media,
        request_example=request_example,
        parameters=tuple(parameters),
        errors=tuple(errors),
        security=tuple(security),
    )

    def decorate(view: F) -> F:
        view.openapi_operation = declared  # type: ignore[attr-defined]
        return view

    return decorate


class UndocumentedRoute(LookupError):
    """A route whose view declares no `@operation`."""


def declared_operation(view: Callable[..., Any], rule: str) -> Operation:
    """The operation `view` declares, or UndocumentedRoute naming `rule`."""
    declared = getattr(view, "openapi_operation", None)
    if not isinstance(declared, Operation):
        raise UndocumentedRoute(
            f"route {rule} ({view.__module__}.{view.__name__}) has no @operation: "
            "declare it with gateway.web.apidoc.operation"
        )
    return declared
