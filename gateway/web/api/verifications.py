"""`/v1/verifications` and `/v1/receipts`: employers look certifications up by number, now (the
read model) or as they stood on a past day (the history), and keep signed receipts of it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.schemas.ids import PADDED, padded
from gateway.schemas.responses import NotFoundResultSchema
from gateway.schemas.verifications import (
    BatchLookupSchema,
    OnQuerySchema,
    ReceiptQuerySchema,
    ReceiptSchema,
    VerificationSchema,
)
from gateway.usecases import lookup, receipts
from gateway.web.apidoc import BODY_ERRORS, empty, json_answer, operation, results, text
from gateway.web.auth import allow_scope, current_client_id, require_scope
from gateway.web.conditional import answer_conditionally
from gateway.web.context import services
from gateway.web.observability import public_base_url
from gateway.web.problems import Problem, json_body, loaded, query_args, unprocessable
from gateway.web.ratelimit import COUNT_BATCH, LOOKUP_SCOPE

bp = Blueprint("verifications", __name__)

_on_query = OnQuerySchema()
_receipts = ReceiptSchema(many=True)


def answer(found: lookup.Verification, on: date | None = None) -> dict[str, Any]:
    """The JSON answer for a public record of the current request."""
    settings = services().settings
    return lookup.record_answer(found, settings, public_base_url(settings), on)


def answer_etag(body: dict[str, Any]) -> str:
    """A validator of an answer's content, who vouches included; the time of the check does not
    change it."""
    content = {key: value for key, value in body.items() if key != "verified_at"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def not_on_record(certification_id: str) -> Problem:
    """The 404 problem of a certification number not on record."""
    return Problem(404, "Not Found", f"No certification {certification_id} is on record.")


def not_certified_on(certification_id: str, on: date) -> Problem:
    """The 404 problem of a day before the certification was granted."""
    message = f"Certification {certification_id} was not certified on {on.isoformat()}."
    return Problem(
        404,
        "Not Certified On That Day",
        message,
        errors=[{"field": "on", "message": "Before the certification was granted."}],
    )


def refuse_padded(certification_id: str) -> None:
    """A number in the path with white space around it answers 400 naming `certification_id`:
    no certification's number holds any, so a 404 would tell the client it is not on record."""
    if padded(certification_id):
        raise Problem(
            400,
            "Bad Request",
            f"{PADDED} No certification number begins or ends with white space.",
            errors=[{"field": "certification_id", "message": PADDED}],
        )


def _on() -> date | None:
    """`?on=`, when given (a token with `verifications:read` is then required)."""
    return loaded(_on_query, query_args(_on_query.load_fields), "query")["on"]


@require_scope(LOOKUP_SCOPE)
def _token_for_a_past_day() -> None:
    """Refuse a record as it stood on a past day (`?on=`) without a `verifications:read` token."""


@contextmanager
def _as_problems(certification_id: str) -> Iterator[None]:
    """The lookup's exceptions as the problems the API answers."""
    try:
        yield
    except lookup.NotOnRecord as exc:
        raise not_on_record(certification_id) from exc
    except lookup.NotCertifiedOn as exc:
        raise not_certified_on(certification_id, exc.on) from exc


def look_up(certification_id: str, on: date | None) -> lookup.Verification:
    """The public record now (read model), or on `on` (history; needs the scope's token)."""
    if on is not None:
        _token_for_a_past_day()
    with _as_problems(certification_id):
        return lookup.record_of(services().db, services().policy, certification_id, on)


@bp.get("/v1/verifications/<certification_id>")
@allow_scope(LOOKUP_SCOPE)
@operation(
    "The public record of one certification",
    tags=["verifications"],
    description="No token needed; a `verifications:read` token raises the rate limit. Send the "
    "`ETag` back as `If-None-Match` to get a 304 while the record is unchanged. With `on` (and a "
    "`verifications:read` token) the record as it stood that day, computed from the history; a "
    "day before the grant is a 404 naming `on`. A number with white space around it is a 400 "
    "naming `certification_id`.",
    parameters=[
        {"in": "query", "schema": OnQuerySchema},
        {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
        {"in": "header", "name": "If-Match", "schema": {"type": "string"}},
    ],
    responses={
        200: json_answer(
            VerificationSchema,
            "The public record.",
            headers={"ETag": {"schema": {"type": "string"}}},
        ),
        304: empty("Unchanged since the `If-None-Match` ETag."),
    },
    errors=("NotFound", "PreconditionFailed", "Unprocessable", "TooManyRequests"),
)
def get_verification(certification_id: str) -> ResponseReturnValue:
    """The public record of one certification; no token needed, a token raises the rate limit.

    `?on=YYYY-MM-DD` (with a `verifications:read` token): as it stood on that day.
    """
    refuse_padded(certification_id)
    if request.query_string and "on" in request.args:  # a plain lookup parses no arguments
        on = _on()
        return answer(look_up(certification_id, on), on)
    [found] = lookup.records_today(services().db, services().policy, [certification_id])
    if found is None:
        raise not_on_record(certification_id)
    body = answer(found)
    response = jsonify(body)
    response.set_etag(answer_etag(body), weak=True)  # weak: verified_at differs between answers
    response.cache_control.public = True
    response.cache_control.no_cache = True  # caches may keep it, but revalidate every time
    if not _conditional(request.environ):
        return response  # what answer_conditionally answers too, without its work
    return answer_conditionally(response)


def _conditional(environ: dict[str, Any]) -> bool:
    """Whether the request carries an `If-...` header (If-None-Match, If-Match, ...) or a
    `Range`: the only requests that `answer_conditionally` answers otherwise."""
    return any(name.startswith("HTTP_IF_") or name == "HTTP_RANGE" for name in environ)


@bp.post("/v1/verifications/batch")
@require_scope(LOOKUP_SCOPE)
@operation(
    "The public records of up to 100 certifications",
    tags=["verifications"],
    request=BatchLookupSchema,
    responses={
        200: results(
            {"oneOf": [VerificationSchema, NotFoundResultSchema]},
            "One result per id, in the order asked.",
        )
    },
    errors=(*BODY_ERRORS, "TooManyRequests"),
)
def batch_verifications() -> ResponseReturnValue:
    """The public records of up to 100 certifications, in the order asked; unknown: not_found.

    With `on`: as they stood that day; one not yet granted then: not_certified.
    """
    body = loaded(BatchLookupSchema(), json_body(), "batch lookup")
    ids, on = body["certification_ids"], body["on"]
    current_app.extensions[COUNT_BATCH](len(ids))
    svc = services()
    found = (
        lookup.records_today(svc.db, svc.policy, ids)
        if on is None
        else lookup.records_on(svc.db, svc.policy, ids, on)
    )
    results = []
    for certification_id, record in zip(ids, found, strict=True):
        if isinstance(record, lookup.Verification):
            results.append(answer(record, on))
        else:
            missing = {"certification_id": certification_id, "status": record or "not_found"}
            results.append(missing if on is None else {**missing, "on": on.isoformat()})
    return {"results": results}


@bp.get("/v1/verifications/<certification_id>/receipt")
@allow_scope(LOOKUP_SCOPE)
@operation(
    "A signed receipt of the public record (proof of the check)",
    tags=["verifications"],
    description="A compact JWS (ES256; keys at `/.well-known/jwks.json`) whose claims are the "
    "verification answer plus `iss`, `sub`, `iat` and the reference `jti` (also in "
    "`Receipt-Reference`). Every receipt is recorded. `on` needs a token, as for the lookup.",
    parameters=[{"in": "query", "schema": OnQuerySchema}],
    responses={
        200: text("The receipt.", "application/jose")
        | {"headers": {"Receipt-Reference": {"schema": {"type": "string"}}}}
    },
    errors=("NotFound", "Unprocessable", "TooManyRequests"),
)
def get_receipt(certification_id: str) -> ResponseReturnValue:
    """A signed receipt (compact JWS) of the public record now, or on `?on=` (with a token)."""
    refuse_padded(certification_id)
    on = _on()
    if on is not None:
        _token_for_a_past_day()
    with _as_problems(certification_id):
        issued = receipt_for(certification_id, on, public_base_url(services().settings))
    response = Response(issued.token, mimetype="application/jose")
    if request.method != "HEAD":  # a HEAD's answer names no receipt: none was issued
        response.headers["Receipt-Reference"] = issued.jti
    response.cache_control.no_store = True
    return response


def receipt_for(certification_id: str, on: date | None, base: str) -> receipts.Issued:
    """The receipt that answers this request (raises lookup.NotOnRecord, lookup.NotCertifiedOn).

    For a GET, signed and recorded. A HEAD is answered with the headers a GET would be, its
    `Content-Length` too, but issues no receipt: the stand-in it measures is neither signed nor
    recorded, and Werkzeug sends no body in answer to a HEAD.
    """
    return receipts.issue_for(
        services(),
        certification_id,
        on,
        base,
        client_id=current_client_id(),
        client_address=request.remote_addr,
        sign=request.method != "HEAD",
    )


@bp.get("/v1/receipts")
@require_scope(LOOKUP_SCOPE)
@operation(
    "The receipts issued to you, oldest first",
    tags=["verifications"],
    parameters=[{"in": "query", "schema": ReceiptQuerySchema}],
    responses={
        200: json_answer(
            {
                "type": "object",
                "required": ["receipts"],
                "properties": {"receipts": {"type": "array", "items": ReceiptSchema}},
            },
            "Your receipts issued at or after `since`.",
        )
    },
    errors=("Unprocessable", "TooManyRequests"),
)
def list_receipts() -> ResponseReturnValue:
    """Your receipts issued at or after `?since=`, oldest first (`?limit=`, at most 1000); the
    next page follows the last reference (`?after=`)."""
    schema = ReceiptQuerySchema()
    query = loaded(schema, query_args(schema.load_fields), "query")
    since, limit, after = query["since"], query["limit"], query["after"]
    try:
        rows = receipts.list_owned(services(), current_client_id(), since, limit, after)
    except receipts.UnknownReceipt as exc:
        message = "Not a reference of one of your receipts."
        raise unprocessable("after", message, "after names no receipt of yours.") from exc
    return {"receipts": _receipts.dump(rows)}
