"""Open Badges 3.0: a member's credential, the status lists, the issuer profile and the check.

`bp` serves what anyone may fetch (and the credential, to internal clients); `checks` holds
`POST /v1/credentials/verify`, rate-limited like the verification lookups.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.rules import ids
from gateway.schemas.credentials import (
    AchievementSchema,
    CredentialCheckResultSchema,
    CredentialCheckSchema,
)
from gateway.usecases import openbadges, queries, status_lists
from gateway.web.apidoc import BODY_ERRORS, empty, json_answer, operation, text
from gateway.web.auth import allow_scope, require_scope
from gateway.web.conditional import answer_conditionally
from gateway.web.context import services
from gateway.web.observability import public_base_url
from gateway.web.problems import (
    UNAVAILABLE_RETRY_SECONDS,
    Problem,
    json_body,
    loaded,
    unknown_certification,
)
from gateway.web.ratelimit import LOOKUP_SCOPE
from gateway.web.security import readable_from_any_origin

bp = Blueprint("open_badges", __name__)
checks = Blueprint("credential_checks", __name__)

#: The public documents of `bp` that a credential names: every answer of theirs, a 404 or 412
#: too, is readable from any origin (a verifier in a web page reads why it failed).
_PUBLIC_DOCUMENTS = frozenset(
    {"open_badges.status_list", "open_badges.issuer", "open_badges.achievement"}
)


@bp.after_request
def _public_documents_readable_anywhere(response: Response) -> Response:
    """Any answer of a public document, readable from any origin; the others as they are."""
    if request.endpoint in _PUBLIC_DOCUMENTS:
        readable_from_any_origin(response)
    return response


VC_JWT = "application/vc+jwt"


@bp.get("/v1/certifications/<certification_id>/credential")
@require_scope("certifications:read")
@operation(
    "The member's Open Badges 3.0 credential, signed (VC-JWT)",
    tags=["credentials"],
    description="An `OpenBadgeCredential` of the current certification period as a compact JWS "
    "(RS256, `typ` `JWT`, `kid` the URL `/issuer/keys/{kid}` that serves the key as a JWK; every "
    "key is also at `/.well-known/jwks.json`), for the member portal to hand to the member. "
    "The subject is a salted SHA-256 hash of the member's e-mail; `credentialStatus` names its "
    "place in a status list. Only for a certification that keeps its badge (active or inactive).",
    responses={200: text("The credential (not cached: it carries the identity hash).", VC_JWT)},
    errors=("NotFound", "NoCredential"),
)
def get_credential(certification_id: str) -> ResponseReturnValue:
    """The member's Open Badges credential of the current period, signed (VC-JWT)."""
    svc = services()
    try:
        token = openbadges.issue_credential(svc, certification_id, public_base_url(svc.settings))
    except queries.UnknownCertification as exc:
        raise unknown_certification(certification_id) from exc
    except openbadges.NoCredential as exc:
        raise Problem(
            409,
            "Conflict",
            f"Certification {certification_id} is {exc.status}: it has no credential.",
            errors=[{"rule": ids.CREDENTIAL_STANDING, "message": "Lapsed or revoked."}],
        ) from exc
    except status_lists.NoFreeIndex as exc:
        raise Problem(
            503,
            "Service Unavailable",
            "No status list index could be given to the credential. Try again shortly.",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
        ) from exc
    response = Response(token, mimetype=openbadges.MEDIA_TYPE)
    response.cache_control.no_store = True  # it carries the member's identity hash
    return response


@bp.get("/credentials/status/<int:list_id>/<purpose>")
@operation(
    "A Bitstring Status List credential (VC-JWT)",
    tags=["credentials"],
    description="A `BitstringStatusListCredential` of 131,072 entries, GZIP-compressed and "
    "base64url-encoded (multibase `u`), signed like the credentials. Weak `ETag`, cacheable "
    "for a minute.",
    parameters=[
        {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
        {"in": "header", "name": "If-Match", "schema": {"type": "string"}},
    ],
    responses={
        200: text("The status list credential.", VC_JWT)
        | {"headers": {"ETag": {"schema": {"type": "string"}, "required": True}}},
        304: empty("Unchanged since the `If-None-Match` ETag."),
    },
    errors=("NotFound", "PreconditionFailed", "Unavailable"),
)
def status_list(list_id: int, purpose: str) -> ResponseReturnValue:
    """A status list credential (VC-JWT), re-signed only when its bits or the signing key change."""
    if purpose not in status_lists.PURPOSES:
        raise Problem(404, "Not Found", f"No status list purpose {purpose!r}.")
    svc = services()
    try:
        etag, signed = openbadges.signed_status_list(
            svc, list_id, purpose, public_base_url(svc.settings)
        )
    except openbadges.UnknownStatusList as exc:
        raise Problem(404, "Not Found", f"No status list {list_id}.") from exc
    response = Response(signed, mimetype=openbadges.MEDIA_TYPE)
    # Weak: every process signs its own copy (ECDSA signatures differ), so equal ETags promise
    # the same list, not the same bytes.
    response.set_etag(etag, weak=True)
    response.cache_control.public = True
    response.cache_control.max_age = openbadges.STATUS_LIST_SECONDS
    return answer_conditionally(response)


@bp.get("/issuer")
@operation(
    "The issuer profile: the id credentials name as their issuer",
    tags=["credentials"],
    description="An Open Badges `Profile` (name, site, contact) with the public keys its "
    "credentials verify with (`verificationMethod`, each with the id its credentials' `kid` "
    "names, and `jwks_uri`).",
    responses={200: json_answer({"type": "object"}, "The issuer profile.")},
)
def issuer() -> ResponseReturnValue:
    """The issuer profile at the issuer's id, with the public keys its credentials verify with."""
    svc = services()
    document = openbadges.issuer_document(svc.settings, svc.keys, public_base_url(svc.settings))
    return _public(jsonify(document))


@bp.get("/issuer/achievements/<code>")
@operation(
    "An achievement: what every credential of one credential code certifies",
    tags=["credentials"],
    description="The Open Badges `Achievement` a credential embeds as "
    "`credentialSubject.achievement`, served at its `id`: name, credential code (`humanCode`) "
    "and criteria.",
    responses={200: json_answer(AchievementSchema, "The achievement.")},
    errors=("NotFound",),
)
def achievement(code: str) -> ResponseReturnValue:
    """The achievement of a credential code of the policy table, at its id."""
    svc = services()
    if code not in svc.policy.credentials:
        raise Problem(404, "Not Found", f"No credential {code!r}.")
    document = {
        "@context": [openbadges.VC_CONTEXT, openbadges.OB_CONTEXT],
        **openbadges.achievement(svc.settings, svc.policy, public_base_url(svc.settings), code),
    }
    return _public(jsonify(document))


def _public(response: Response) -> Response:
    """`response`, cacheable by anyone for five minutes (as the JWK set): a change, such as a
    rotated-in key, is seen in minutes."""
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


_result = CredentialCheckResultSchema()


@checks.post("/v1/credentials/verify")
@allow_scope(LOOKUP_SCOPE)
@operation(
    "Check an Open Badges credential: signature, issuer, dates and status",
    tags=["credentials"],
    description="No token needed (rate-limited per client address, as the lookups are), or a "
    "`verifications:read` token for the higher limit. `verified` is true only when every check "
    "passed; a failed check says why.",
    request=CredentialCheckSchema,
    responses={200: json_answer(CredentialCheckResultSchema, "Every check and its outcome.")},
    errors=(*BODY_ERRORS, "TooManyRequests"),
)
def verify_credential() -> ResponseReturnValue:
    """Whether a credential's signature, issuer, dates and status hold, and why not."""
    token = loaded(CredentialCheckSchema(), json_body(), "credential check")["credential"]
    svc = services()
    return _result.dump(
        openbadges.check_credential(svc, token, public_base_url(svc.settings)).as_dict()
    )
