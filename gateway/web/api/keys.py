"""The public signing keys, for anyone who checks a receipt or a credential."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from gateway.web.apidoc import json_answer, operation
from gateway.web.context import services
from gateway.web.problems import Problem
from gateway.web.security import readable_from_any_origin

bp = Blueprint("keys", __name__)
#: Every answer of these public documents, a 404 too, is readable from any origin.
bp.after_request(readable_from_any_origin)


@bp.get("/.well-known/jwks.json")
@operation(
    "The public keys that sign receipts and credentials",
    tags=["verifications"],
    responses={
        200: json_answer(
            {"type": "object"},
            "A JWK set (RFC 7517): every key that may have signed.",
            media="application/jwk-set+json",
        )
    },
)
def jwks() -> ResponseReturnValue:
    """The JWK set of every key that may have signed a receipt or a credential (public parts)."""
    return _public(jsonify(services().keys.public_jwks()), "application/jwk-set+json")


@bp.get("/issuer/keys/<path:kid>")
@operation(
    "One public key: what a credential's `kid` names",
    tags=["credentials"],
    description="The public key `kid` (as `/.well-known/jwks.json` names it) as a bare JWK "
    "(RFC 7517; never a private part). The JOSE header of every Open Badges credential and status "
    "list names its key by this URL, which the issuer profile's `verificationMethod` ids repeat.",
    responses={
        200: json_answer(
            {"type": "object"}, "The public JWK of the key.", media="application/jwk+json"
        )
    },
    errors=("NotFound",),
)
def key(kid: str) -> ResponseReturnValue:
    """The public JWK of one key that may have signed a credential."""
    jwk = services().keys.public_jwk(kid)
    if jwk is None:
        raise Problem(
            404,
            "Not Found",
            f"No published key has the kid {kid!r}.",
            errors=[{"field": "kid", "message": "No published key has this kid."}],
        )
    return _public(jsonify(jwk), "application/jwk+json")


def _public(response: Response, content_type: str) -> Response:
    """`response` as `content_type`, cacheable by anyone for five minutes."""
    response.content_type = content_type
    response.cache_control.public = True
    response.cache_control.max_age = 300  # a rotated-in key is seen within minutes
    return response
