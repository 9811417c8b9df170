"""`/verify/credential`: anyone pastes an Open Badges credential and sees whether it holds."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from gateway.schemas.credentials import MAX_CREDENTIAL_LENGTH
from gateway.store.db import UNAVAILABLE
from gateway.usecases import openbadges
from gateway.usecases.issuer import issuer
from gateway.web.apidoc import FORM, html, operation
from gateway.web.context import services
from gateway.web.observability import public_base_url
from gateway.web.problems import database_unavailable
from gateway.web.ratelimit import TooManyRequests

bp = Blueprint("credential_page", __name__)


def _page(credential: str = "", **context: Any) -> str:
    settings = services().settings
    return render_template(
        "verify_credential.html",
        credential=credential,
        limit=MAX_CREDENTIAL_LENGTH,
        # who vouches, in the pages' shared layout
        issuer=issuer(settings, public_base_url(settings)),
        **context,
    )


@bp.get("/verify/credential")
@operation(
    "The credential check web page: a form to paste a credential",
    tags=["credentials"],
    responses={200: html("The form.")},
)
def form() -> ResponseReturnValue:
    """The form."""
    return _page()


@bp.post("/verify/credential")
@operation(
    "The credential check web page: the outcome of a pasted credential",
    tags=["credentials"],
    request={
        "type": "object",
        "required": ["credential"],
        "properties": {
            "credential": {
                "type": "string",
                "maxLength": MAX_CREDENTIAL_LENGTH,
                # not only whitespace (Python's str.strip() whitespace, in any regex dialect)
                "pattern": r"[^\s\x1c-\x1f\x85]",
            }
        },
    },
    request_media=FORM,
    request_example={"credential": "eyJhbGciOiJFUzI1NiIs..."},
    responses={
        200: html("The form and every check of the credential."),
        400: html("Nothing pasted, or too long."),
        429: html("Over the rate limit."),
        503: html("The status lists cannot be read right now (`Retry-After`)."),
    },
)
def check() -> ResponseReturnValue:
    """The form again, with the outcome of every check of the pasted credential."""
    pasted = request.form.get("credential", "").strip()
    if not pasted:
        return _page(error="Paste a credential."), 400
    if len(pasted) > MAX_CREDENTIAL_LENGTH:
        return _page(error=f"A credential is at most {MAX_CREDENTIAL_LENGTH} characters."), 400
    svc = services()
    return _page(
        pasted, outcome=openbadges.check_credential(svc, pasted, public_base_url(svc.settings))
    )


@bp.errorhandler(TooManyRequests)
def too_many_checks(exc: TooManyRequests) -> ResponseReturnValue:
    """Over the limit: the form again, saying so, with status 429 and Retry-After."""
    return _page(notice=exc.detail), 429, exc.headers


def unavailable(exc: Exception) -> ResponseReturnValue:
    """The status lists cannot be read: the form again, saying so, with 503 and Retry-After."""
    notice = "The register cannot be reached right now."
    return _page(notice=notice), 503, database_unavailable(exc).headers


for _error in UNAVAILABLE:
    bp.register_error_handler(_error, unavailable)
