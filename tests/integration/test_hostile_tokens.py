"""Hostile tokens handed to the checks of credentials (`POST /v1/credentials/verify`, the
`/verify/credential` page) and of receipts (`/verify/receipt`): each is refused saying what is
wrong, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.platform import signing
from gateway.schemas.credentials import MAX_CREDENTIAL_LENGTH
from tests.support.clients import fetch_token
from tests.support.events import granted
from tests.support.verification import days_ago, record

STRANGER = signing.SigningKeys(signing.new_keys())
STRANGER_JWK = STRANGER.signer(signing.ES256).as_dict(private=False)
ATTACKER = "https://attacker.example"


@pytest.fixture
def app(database_url, make_app):
    app = make_app(
        database_url=database_url, jobs_synchronous=True, verify_rate_limit="1000/minute"
    )
    record(app, granted(days_ago(30)))
    return app


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict, str, str]:
    """The header (decoded), payload and signature of a compact JWS."""
    _, payload, signature = token.split(".")
    return jwt.get_unverified_header(token), payload, signature


def replaced(token: str, part: int, data: bytes) -> str:
    """`token` with its header (0) or payload (1) replaced by `data`, its signature kept."""
    segments = token.split(".")
    segments[part] = b64(data)
    return ".".join(segments)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def reheaded(token: str, **changes: object) -> str:
    """`token` with its header changed (None removes a parameter), its signature kept."""
    header, payload, signature = parts(token)
    header = {name: value for name, value in {**header, **changes}.items() if value is not None}
    return f"{b64(json.dumps(header).encode())}.{payload}.{signature}"


def signed_by_stranger(token: str, **header: object) -> str:
    """`token`'s header (with `header`'s changes) and payload, signed with a stranger's key of
    the header's algorithm."""
    changed = reheaded(token, **header)
    said, payload, _ = parts(changed)
    key = STRANGER.signer(said["alg"])
    signature = jwt.api_jws.PyJWS().encode(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)),
        key.as_pem(private=True),
        algorithm=said["alg"],
        headers={name: value for name, value in said.items() if name != "alg"},
        sort_headers=False,
    )
    return signature


def by_stranger(**header: object) -> Callable[..., str]:
    """A forger: a genuine token's header (with `header`'s changes) and payload, signed by a
    stranger."""
    return lambda app, token: signed_by_stranger(token, **header)


def hs256_with_public_key(app, token: str) -> str:
    """`token` re-signed HS256 with the PEM of the public key its header names as the secret."""
    header, payload, _ = parts(token)
    kid = header["kid"].rsplit("/", 1)[-1]
    public = jwt.PyJWK(app.extensions["gateway"].keys.public_jwk(kid)).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = f"{b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{payload}"
    return f"{signed}.{b64(hmac.new(pem, signed.encode(), hashlib.sha256).digest())}"


#: (name, how to make it from a genuine token, what the refusal names)
HOSTILE: list[tuple[str, Callable[..., str], str]] = [
    ("alg-none", lambda app, t: reheaded(t, alg="none").rsplit(".", 1)[0] + ".", "'none'"),
    ("hs256-public-key", hs256_with_public_key, "'HS256'"),
    ("kid-of-no-key", by_stranger(kid="nope"), "its key 'nope' is not one this gateway publishes"),
    ("kid-a-path", by_stranger(kid="../../etc/passwd"), "its key '../../etc/passwd' is not one"),
    ("jku", by_stranger(jku=f"{ATTACKER}/jwks.json"), "its header carries 'jku', which no token"),
    ("x5u", by_stranger(x5u=f"{ATTACKER}/cert.pem"), "its header carries 'x5u'"),
    # a P-256 key: an RSA one is over the size a header may have
    ("jwk", by_stranger(alg=signing.ES256, kid=None, jwk=STRANGER_JWK), "its header carries 'jwk'"),
    (
        "deeply-nested-header",
        lambda app, t: replaced(t, 0, b"[" * 1500 + b"]" * 1500),
        "not a compact JWS that can be checked: Header size exceeds 512 bytes",
    ),
    (
        "deeply-nested-payload",
        lambda app, t: replaced(t, 1, b"[" * 1500 + b"]" * 1500),
        "the signature does not match its header and payload",
    ),
    (
        "tampered-claim",
        lambda app, t: replaced(t, 1, json.dumps({**claims_of(t), "status": "active"}).encode()),
        "the signature does not match its header and payload",
    ),
    ("trailing-segment", lambda app, t: f"{t}.e30", "Invalid JSON Web Signature"),
    ("trailing-text", lambda app, t: f"{t}!!", "the signature does not match"),
    (
        "header-not-utf8",
        lambda app, t: replaced(t, 0, b'{"alg": "\xff"}'),
        "not a compact JWS that can be checked",
    ),
]


def credential_of(app) -> str:
    headers = {"Authorization": f"Bearer {fetch_token(app, 'certifications:read')}"}
    answer = app.test_client().get("/v1/certifications/CERT-1/credential", headers=headers)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


@pytest.mark.parametrize(("name", "forge", "named"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_credential_is_refused_naming_what_is_wrong(app, name, forge, named):
    client = app.test_client()
    token = forge(app, credential_of(app))
    answer = client.post("/v1/credentials/verify", json={"credential": token})
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    result = answer.get_json()
    assert result["verified"] is False and result["credential"] is None
    signature = result["checks"][0]
    assert signature["check"] == "signature" and not signature["passed"]
    assert signature["message"].startswith("The signature does not hold: ")
    assert named in signature["message"], signature["message"]
    page = client.post("/verify/credential", data={"credential": token})
    assert page.status_code == 200 and "Signature: failed" in page.get_data(as_text=True)


@pytest.mark.parametrize(("name", "forge", "named"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_receipt_is_not_genuine_and_the_page_says_why(app, name, forge, named):
    client = app.test_client()
    token = forge(app, client.get("/v1/verifications/CERT-1/receipt").get_data(as_text=True))
    page = client.get("/verify/receipt", query_string={"receipt": token})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "Not a genuine receipt" in html
    assert named.replace("'", "&#39;") in html, html


def test_a_token_signed_by_us_with_another_typ_is_not_taken_for_a_credential(app):
    """Only a credential's `typ` (`JWT`, or `vc+jwt` of credentials signed before) is one."""
    client = app.test_client()
    claims = jwt.decode(credential_of(app), options={"verify_signature": False})
    keys = app.extensions["gateway"].keys
    token = keys.sign(claims, typ="at+jwt", alg=signing.RS256)
    result = client.post("/v1/credentials/verify", json={"credential": token}).get_json()
    assert result["verified"] is False and result["credential"] is None
    assert result["checks"][0] == {
        "check": "signature",
        "passed": False,
        "message": 'Signed by us, but its typ "at+jwt" is not a credential\'s (JWT).',
    }


def test_a_credential_too_long_or_not_utf8_is_a_problem_naming_what_is_wrong(app):
    client = app.test_client()
    long = client.post(
        "/v1/credentials/verify", json={"credential": "a" * (MAX_CREDENTIAL_LENGTH + 1)}
    )
    assert long.status_code == 422 and long.mimetype == "application/problem+json"
    assert long.get_json()["errors"] == [
        {"field": "credential", "message": f"Length must be between 1 and {MAX_CREDENTIAL_LENGTH}."}
    ]
    latin1 = client.post(
        "/v1/credentials/verify",
        data='{"credential": "é"}'.encode("latin-1"),
        content_type="application/json",
    )
    assert latin1.status_code == 400 and latin1.mimetype == "application/problem+json"
    assert latin1.get_json()["errors"][0]["field"] == "body"
