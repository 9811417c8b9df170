"""The public signing keys, for anyone who checks a receipt or a credential."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from gateway.web.apidoc import json_answer, operation
from gateway.web.context import services

bp = Blueprint("keys", __name__)


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
    response = jsonify(services().keys.public_jwks())
    response.content_type = "application/jwk-set+json"
    response.cache_control.public = True
    response.cache_control.max_age = 300  # a rotated-in key is seen within minutes
    return response
