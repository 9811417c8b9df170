"""`/v1/verifications`: employers look a certification up by number (docs/api.md)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway import lookup
from gateway.api.apidoc import BODY_ERRORS, empty, json_answer, operation, results
from gateway.api.context import services
from gateway.api.events import json_body
from gateway.api.problems import Problem, loaded
from gateway.auth import allow_scope, require_scope
from gateway.ratelimit import LOOKUP_SCOPE
from gateway.schemas.responses import NotFoundResultSchema
from gateway.schemas.verifications import BatchLookupSchema, VerificationSchema

bp = Blueprint("verifications", __name__)

_public = VerificationSchema()


@bp.get("/v1/verifications/<certification_id>")
@allow_scope(LOOKUP_SCOPE)
@operation(
    "The public record of one certification",
    tags=["verifications"],
    description="No token needed; a `verifications:read` token raises the rate limit. Send the "
    "`ETag` back as `If-None-Match` to get a 304 while the record is unchanged.",
    parameters=[{"in": "header", "name": "If-None-Match", "schema": {"type": "string"}}],
    responses={
        200: json_answer(
            VerificationSchema,
            "The public record.",
            headers={"ETag": {"schema": {"type": "string"}}},
        ),
        304: empty("Unchanged since the `If-None-Match` ETag."),
    },
    errors=("NotFound", "TooManyRequests"),
)
def get_verification(certification_id: str) -> ResponseReturnValue:
    """The public record of one certification; no token needed, a token raises the rate limit."""
    [found] = lookup.verify(services().db, [certification_id])
    if found is None:
        raise Problem(404, "Not Found", f"No certification {certification_id} is on record.")
    response = jsonify(_public.dump(found))
    response.set_etag(found.etag, weak=True)  # weak: verified_at differs between equal answers
    response.cache_control.public = True
    response.cache_control.no_cache = True  # caches may keep it, but revalidate every time
    return response.make_conditional(request)


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
    """The public records of up to 100 certifications, in the order asked; unknown: not_found."""
    ids = loaded(BatchLookupSchema(), json_body(), "batch lookup")["certification_ids"]
    found = lookup.verify(services().db, ids)
    return {
        "results": [
            _public.dump(record)
            if record
            else {"certification_id": certification_id, "status": "not_found"}
            for certification_id, record in zip(ids, found, strict=True)
        ]
    }
