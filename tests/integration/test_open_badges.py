"""Open Badges 3.0 credentials: issued signed and schema-valid, checked by an independent JOSE
implementation, their status bits following the standing, tampering refused, keys rotated."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jsonschema
import jwt
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.cli.main import cli
from gateway.platform import clock, signing
from gateway.schemas.credentials import MAX_CREDENTIAL_LENGTH
from gateway.store.db import Database
from gateway.store.models import Certification, CredentialStatusEntry, Member
from gateway.usecases import intake, status_lists
from gateway.usecases.openbadges import key_url
from gateway.usecases.sweep import Scope, sweep
from tests.support.database import truncate
from tests.support.events import granted, recert, revoked
from tests.support.status_lists import seed_entries
from tests.support.verification import days_ago, record

# From 1EdTech's openbadges-specification repository (gh-pages branch,
# docs/schema/achievementcredential.json, published as
# https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_achievementcredential-jsonschema1.json).
SCHEMA = json.loads(
    (Path(__file__).parents[1] / "support/schemas/ob_v3p0_achievementcredential.json").read_text()
)
# From the same branch, docs/schema/profile.json (commit c73e9663afcdbe009a224f7be061ac895168a5b8),
# published as https://purl.imsglobal.org/spec/ob/v3p0/schema/json/ob_v3p0_profile-jsonschema1.json.
PROFILE_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "support/schemas/ob_v3p0_profile.json").read_text()
)
#: The Open Badges `Achievement`, as the AchievementCredential schema defines it.
ACHIEVEMENT_SCHEMA = {
    "$schema": SCHEMA["$schema"],
    "$defs": SCHEMA["$defs"],
    "$ref": "#/$defs/Achievement",
}


def schema_valid(schema: dict, document: dict) -> None:
    """Raise unless `document` is valid against `schema` (JSON Schema 2019-09, formats too)."""
    jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    ).validate(document)


@pytest.fixture
def app(database_url, make_app):
    return make_app(database_url=database_url, jobs_synchronous=True)


@pytest.fixture
def reader(token_for):
    return token_for("certifications:read")


def fetch(client, reader, cert="CERT-1") -> str:
    answer = client.get(f"/v1/certifications/{cert}/credential", headers=reader)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/vc+jwt"
    assert "no-store" in answer.headers["Cache-Control"]
    return answer.get_data(as_text=True)


def dereferenced(client, kid: str) -> dict:
    """The JWK a header's `kid` URL serves (Open Badges 3.0's "dereference the kid")."""
    url = urlsplit(kid)
    assert url.scheme in ("http", "https") and url.path.startswith("/issuer/keys/"), kid
    answer = client.get(url.path, base_url=f"{url.scheme}://{url.netloc}")
    assert answer.status_code == 200 and answer.mimetype == "application/jwk+json"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    return answer.get_json()


def independently_verified(client, token: str) -> dict:
    """The claims of `token`, checked by PyJWT with the key its header's `kid` URL serves, which
    the served JWK set also holds under the `kid` at the URL's end."""
    header = jwt.get_unverified_header(token)
    assert header.keys() == {"alg", "kid", "typ"}  # Open Badges 3.0 allows no other header
    assert header["typ"] == "JWT" and header["alg"] == "RS256"  # what every verifier accepts
    jwk = dereferenced(client, header["kid"])
    assert "d" not in jwk and jwk["kty"] == "RSA"
    keys = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    assert keys[unquote(header["kid"].rsplit("/issuer/keys/", 1)[1])].key_id == jwk["kid"]
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key, algorithms=["RS256"], options={"require": ["iss", "nbf"]})


def status_bits(client, credential: dict) -> dict[str, bool]:
    """The credential's bit in each status list, decoded here from the served lists."""
    entry = credential["credentialStatus"]
    index = int(entry["statusListIndex"])
    base = entry["statusListCredential"].rsplit("/", 1)[0]
    bits = {}
    for purpose in ("revocation", "suspension"):
        answer = client.get(base.removeprefix("http://localhost") + f"/{purpose}")
        assert answer.status_code == 200 and answer.mimetype == "application/vc+jwt"
        listed = independently_verified(client, answer.get_data(as_text=True))
        subject = listed["credentialSubject"]
        assert subject["statusPurpose"] == purpose
        assert subject["encodedList"][0] == "u"  # multibase base64url
        text = subject["encodedList"][1:]
        raw = gzip.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        assert len(raw) >= 16 * 1024  # herd privacy: at least 131,072 entries
        bits[purpose] = bool(raw[index // 8] & (0x80 >> (index % 8)))
    return bits


def check(client, token: str) -> dict:
    answer = client.post("/v1/credentials/verify", json={"credential": token})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def failed(result: dict) -> dict[str, str]:
    return {c["check"]: c["message"] for c in result["checks"] if not c["passed"]}


def test_a_credential_is_signed_schema_valid_and_verifies_against_the_served_keys(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    assert len(token) < MAX_CREDENTIAL_LENGTH * 0.7  # room under what a check takes
    credential = independently_verified(client, token)
    schema_valid(SCHEMA, credential)
    assert credential["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert credential["iss"] == credential["issuer"]["id"] == "http://localhost/issuer"
    assert credential["jti"] == credential["id"]
    assert "iat" not in credential  # a verifier whose clock is behind must not see it as future
    subject = credential["credentialSubject"]
    assert credential["sub"] == subject["id"] and subject["id"].startswith("urn:uuid:")
    assert subject["licenseNumber"] == "CERT-1"
    assert subject["achievement"]["humanCode"] == "RMA"
    assert subject["achievement"]["achievementType"] == "Certification"
    assert (
        "30 continuing competency (CCP) points" in subject["achievement"]["criteria"]["narrative"]
    )
    [identity] = subject["identifier"]
    assert "ada@example.org" not in token and "Lovelace" not in json.dumps(credential)
    expected = hashlib.sha256(("ada@example.org" + identity["salt"]).encode()).hexdigest()
    assert identity["identityHash"] == f"sha256${expected}"
    assert credential["validFrom"] == f"{days_ago(30)}T00:00:00Z"
    assert credential["credentialStatus"]["type"] == "BitstringStatusListEntry"
    assert status_bits(client, credential) == {"revocation": False, "suspension": False}

    profile = client.get("/issuer").get_json()  # at the issuer's id URL, with its keys
    assert profile["id"] == credential["issuer"]["id"]
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid.startswith(f"{profile['id']}/keys/")  # under the issuer's id, as its achievements
    assert kid in [method["id"] for method in profile["verificationMethod"]]
    assert "d" not in profile["verificationMethod"][0]["publicKeyJwk"]

    again = independently_verified(client, fetch(client, reader))  # the same credential again
    assert (
        again["id"] == credential["id"]
        and again["sub"] == credential["sub"]
        and again["credentialStatus"] == credential["credentialStatus"]
    )
    result = check(client, token)
    assert result["verified"] is True and failed(result) == {}
    assert [c["check"] for c in result["checks"]] == ["signature", "issuer", "dates", "status"]
    assert result["credential"] == {
        "id": credential["id"],
        "name": "Registered Medical Assistant",
        "certification_id": "CERT-1",
        "credential": "RMA",
        "credential_name": "Registered Medical Assistant",
        "issuer": app.extensions["gateway"].settings.issuer_name,
        "valid_from": credential["validFrom"],
        "valid_until": None,
    }


def test_the_issuer_and_urls_come_from_public_base_url(database_url, make_app, token_for, tmp_path):
    (tmp_path / "instance").mkdir(exist_ok=True)
    (tmp_path / "instance" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # served: named
    app = make_app(
        database_url=database_url,
        jobs_synchronous=True,
        public_base_url="https://verify.example.org",
        issuer_name="American Medical Technologists",
        issuer_url="https://www.americanmedtech.org",
        issuer_contact="registry@example.org",
        issuer_logo="logo.png",
    )
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, {"Authorization": f"Bearer {_token(app)}"})
    credential = independently_verified(client, token)
    schema_valid(SCHEMA, credential)
    assert credential["issuer"] == {
        "id": "https://verify.example.org/issuer",
        "type": ["Profile"],
        "name": "American Medical Technologists",
        "url": "https://www.americanmedtech.org",
        "email": "registry@example.org",
        "image": {"id": "https://verify.example.org/verify/logo", "type": "Image"},
    }
    assert client.get("/issuer").get_json()["image"] == credential["issuer"]["image"]
    assert credential["credentialStatus"]["statusListCredential"] == (
        "https://verify.example.org/credentials/status/0/suspension"
    )
    assert client.get("/issuer").get_json()["jwks_uri"] == (
        "https://verify.example.org/.well-known/jwks.json"
    )
    kid = app.extensions["gateway"].keys.signing_kid(signing.RS256)
    assert (
        jwt.get_unverified_header(token)["kid"] == f"https://verify.example.org/issuer/keys/{kid}"
    )


def test_with_badge_expires_a_credential_is_valid_to_the_end_of_its_paid_through_day(
    database_url, make_app, token_for
):
    app = make_app(database_url=database_url, jobs_synchronous=True, badge_expires=True)
    record(app, granted("2026-03-01"))  # paid through 2027-03-31: the register's last active day
    credential = independently_verified(app.test_client(), fetch(app.test_client(), _headers(app)))
    assert credential["validUntil"] == "2027-03-31T23:59:59Z"
    assert credential["exp"] == int(datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def _headers(app) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(app)}"}


def _token(app) -> str:
    from tests.support.clients import fetch_token

    return fetch_token(app, "certifications:read")


def test_only_a_certification_that_keeps_its_badge_gets_a_credential(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(6 * 365)))  # fees 3+ years overdue: lapsed
    answer = client.get("/v1/certifications/CERT-1/credential", headers=reader)
    assert answer.status_code == 409 and answer.mimetype == "application/problem+json"
    assert "lapsed" in answer.get_json()["detail"]
    assert client.get("/v1/certifications/NOPE/credential", headers=reader).status_code == 404
    assert client.get("/v1/certifications/CERT-1/credential").status_code == 401


def test_a_revocation_sets_the_revocation_bit_and_the_check_says_revoked(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    credential = independently_verified(client, token)
    record(app, revoked(days_ago(1)))  # the same standing change revokes the Credly badge
    assert status_bits(client, credential) == {"revocation": True, "suspension": True}
    result = check(client, token)
    assert result["verified"] is False
    assert failed(result) == {"status": "Revoked: the certification was revoked."}


def test_a_lapse_suspends_the_credential_and_a_recertification_issues_a_new_one(app, reader):
    client = app.test_client()
    svc = app.extensions["gateway"]
    # recorded in 2019, in good standing, its credential handed out then; lapsed today (no fees
    # since), which the daily sweep has not recorded yet
    in_2019 = datetime(2019, 6, 1, 12, tzinfo=UTC)
    assert intake.submit_event(svc, granted("2019-01-10"), received_at=in_2019).status == 202
    today = clock.now()
    clock.set_now(in_2019)
    token = fetch(client, reader)
    clock.set_now(today)
    credential = independently_verified(client, token)

    # before the sweep: the list, signed from the recorded standings, still says nothing, but
    # the gateway's own answers are today's, as its lookups are
    assert status_bits(client, credential) == {"revocation": False, "suspension": False}
    assert failed(check(client, token)) == {"status": "Suspended: the certification has lapsed."}
    refused = client.get("/v1/certifications/CERT-1/credential", headers=reader)
    assert refused.status_code == 409 and "lapsed" in refused.get_json()["detail"]

    swept = sweep(svc, Scope(as_of=clock.now().date(), full=True))
    assert swept.transitions == {"active->lapsed": 1}
    assert status_bits(client, credential) == {"revocation": False, "suspension": True}
    assert failed(check(client, token)) == {"status": "Suspended: the certification has lapsed."}

    record(app, recert("exam", days_ago(1), exam_passed_on=days_ago(20)))
    # the old period ended in the lapse: its credential never vouches past it
    assert status_bits(client, credential) == {"revocation": False, "suspension": True}
    assert check(client, token)["verified"] is False
    fresh = independently_verified(client, fetch(client, reader))  # the new period's own
    assert status_bits(client, fresh) == {"revocation": False, "suspension": False}
    assert fresh["id"] != credential["id"]
    assert fresh["validFrom"] == f"{days_ago(1)}T00:00:00Z"
    assert (
        fresh["credentialStatus"]["statusListIndex"]
        != credential["credentialStatus"]["statusListIndex"]
    )


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["credentialSubject"]["licenseNumber"] = "CERT-999"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_tampered_or_foreign_credential_is_refused(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    tampered = _tampered(token)
    with pytest.raises(jwt.InvalidSignatureError):
        independently_verified(client, tampered)
    result = check(client, tampered)
    assert result["verified"] is False and result["credential"] is None
    assert set(failed(result)) == {"signature", "issuer", "dates", "status"}
    assert failed(result)["signature"].startswith("The signature does not hold")

    stranger = signing.SigningKeys(signing.new_keys())  # a well-formed credential, not ours
    claims = independently_verified(client, token)
    assert check(client, stranger.sign(claims, typ="JWT", alg=signing.RS256))["verified"] is False
    ours = jwt.get_unverified_header(token)["kid"]  # a stranger's key under our key's URL
    for alg in signing.ALGORITHMS.values():
        forged = stranger.sign(claims, typ="JWT", named_by=lambda _: ours, alg=alg)
        assert check(client, forged)["verified"] is False
    keys = app.extensions["gateway"].keys  # our key, named at another address of ours (made
    # before PUBLIC_BASE_URL was set, or under another host name): the signature is ours
    elsewhere = keys.sign(
        claims, typ="JWT", named_by=lambda kid: f"https://old.example/{kid}", alg=signing.RS256
    )
    assert "signature" not in failed(check(client, elsewhere))
    at_end = ours.rsplit("/", 1)[-1]  # a stranger's key named as ours at another address
    forged = stranger.sign(
        claims, typ="JWT", named_by=lambda _: f"https://old.example/{at_end}", alg=signing.RS256
    )
    assert failed(check(client, forged))["signature"].startswith("The signature does not hold")
    receipt = keys.sign({**claims, "type": ["Receipt"]}, typ="JWT")
    refused = check(client, receipt)
    assert failed(refused)["signature"] == "Signed by us, but not an Open Badges credential."
    assert refused["credential"] is None  # nothing of what it says is shown as a credential's
    assert check(client, "not a token")["verified"] is False

    page = client.post("/verify/credential", data={"credential": tampered})
    assert page.status_code == 200 and "Not verified" in page.get_data(as_text=True)
    assert "Signature: failed" in page.get_data(as_text=True)


def test_a_credential_from_elsewhere_or_expired_fails_those_checks(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    claims = independently_verified(client, fetch(client, reader))
    elsewhere = {**claims, "iss": "https://other.example/issuer"}
    elsewhere["issuer"] = {**claims["issuer"], "id": "https://other.example/issuer"}
    assert set(failed(check(client, signed_as_ours(app, elsewhere)))) == {"issuer"}
    expired = {**claims, "validUntil": "2020-01-01T00:00:00Z", "exp": 1577836800}
    assert failed(check(client, signed_as_ours(app, expired))) == {
        "dates": "Expired at 2020-01-01T00:00:00Z."
    }
    elsewhere_list = {**claims, "credentialStatus": {**claims["credentialStatus"]}}
    elsewhere_list["credentialStatus"]["statusListCredential"] = "https://other.example/list"
    assert set(failed(check(client, signed_as_ours(app, elsewhere_list)))) == {"status"}


def test_jwt_claims_that_disagree_with_the_credential_fail_its_checks(app, reader):
    """Open Badges 3.0: `iss`, `jti`, `sub`, `nbf` and `exp` repeat the issuer, id, subject id,
    validFrom and validUntil; a credential whose claims say otherwise is not valid."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    claims = independently_verified(client, fetch(client, reader))
    subject = claims["credentialSubject"]
    cases = {
        "issuer": [
            {**claims, "iss": "https://other.example/issuer"},
            {**claims, "jti": "urn:uuid:00000000-0000-4000-8000-000000000000"},
            {**claims, "sub": "urn:uuid:00000000-0000-4000-8000-000000000000"},
            {**claims, "credentialSubject": "x"},
            {**claims, "credentialSubject": {**subject, "id": None, "identifier": []}},
        ],
        "dates": [
            {**claims, "nbf": claims["nbf"] - 30 * 86400},
            {**claims, "nbf": 10**30},
            {**claims, "exp": claims["nbf"] + 86400},  # expired by exp, with no validUntil
        ],
    }
    for check_name, forged in cases.items():
        for said in forged:
            result = check(client, signed_as_ours(app, said))
            assert result["verified"] is False and check_name in failed(result), said
    missing_iss = {name: value for name, value in claims.items() if name != "iss"}
    message = failed(check(client, signed_as_ours(app, missing_iss)))["issuer"]
    assert message == 'The JWT claim iss is missing, not "http://localhost/issuer".'


def test_a_credential_valid_from_a_moment_ahead_of_the_checks_clock_verifies(app, reader):
    """Signed where the clock runs up to a minute ahead, a credential valid from that machine's
    now is valid here; one valid from later is not yet."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    claims = independently_verified(client, fetch(client, reader))
    now = clock.now().replace(microsecond=0)
    for ahead, problem in ((30, None), (3600, "Not valid before {}.")):
        valid_from = now + timedelta(seconds=ahead)
        stamp = valid_from.strftime("%Y-%m-%dT%H:%M:%SZ")
        said = {**claims, "validFrom": stamp, "nbf": int(valid_from.timestamp())}
        result = check(client, signed_as_ours(app, said))
        assert failed(result) == ({"dates": problem.format(stamp)} if problem else {}), ahead


@pytest.mark.parametrize("index", ["\u00b2", "\u0661\u0662", "-1", "1e3", 7])
def test_a_status_list_index_that_is_not_ascii_digits_fails_the_status_check(app, reader, index):
    """Signed with our key (the check is not left to the signature): a superscript two is a
    digit to Python's isdigit() but not to int()."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    claims = independently_verified(client, token)
    claims["credentialStatus"]["statusListIndex"] = index
    ours = jwt.get_unverified_header(token)["kid"]
    signed = app.extensions["gateway"].keys.sign(
        claims, typ="JWT", named_by=lambda _: ours, alg=signing.RS256
    )
    result = check(client, signed)
    assert "signature" not in failed(result)
    assert result["verified"] is False
    assert failed(result)["status"] == (
        f"The status list index {json.dumps(index, ensure_ascii=False)} is not a number below "
        f"{status_lists.LIST_SIZE}."
    )


def test_a_credential_wrapped_over_lines_verifies(app, reader):
    """A credential copied from an e-mail, its lines cut at 76 characters."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    wrapped = "\r\n".join(token[i : i + 76] for i in range(0, len(token), 76))
    assert check(client, wrapped)["verified"] is True
    page = client.post("/verify/credential", data={"credential": wrapped})
    assert "Signature: passed" in page.get_data(as_text=True)


def test_a_credential_signed_before_the_header_named_the_key_by_url_still_verifies(app, reader):
    """Members hold credentials whose header was `typ` vc+jwt and `kid` the bare key id."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    claims = independently_verified(client, fetch(client, reader))
    keys = app.extensions["gateway"].keys
    earlier = keys.sign(claims, typ="vc+jwt")  # as credentials were signed then (ES256)
    assert jwt.get_unverified_header(earlier) == {
        "alg": "ES256",
        "kid": keys.signing_kid(),
        "typ": "vc+jwt",
    }
    result = check(client, earlier)
    assert result["verified"] is True and result["credential"]["certification_id"] == "CERT-1"
    page = client.post("/verify/credential", data={"credential": earlier})
    assert "Signature: passed" in page.get_data(as_text=True)
    # and the JWK set still finds its key by that bare kid, as the offline recipe did
    served = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    assert jwt.decode(earlier, served[keys.signing_kid()].key, algorithms=["ES256"]) == claims


def test_the_key_url_serves_the_public_jwk_and_an_unknown_key_is_not_found(app):
    client = app.test_client()
    keys = app.extensions["gateway"].keys
    jwk = dereferenced(client, f"http://localhost/issuer/keys/{keys.signing_kid()}")
    assert jwk == client.get("/.well-known/jwks.json").get_json()["keys"][0]
    assert "d" not in jwk and jwk["kid"] == keys.signing_kid()
    unknown = client.get("/issuer/keys/nope")
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    assert unknown.get_json()["detail"] == "No published key has the kid 'nope'."
    assert unknown.get_json()["errors"] == [
        {"field": "kid", "message": "No published key has this kid."}
    ]


def test_a_key_of_any_kid_is_named_by_a_url_that_serves_it(database_url, make_app, tmp_path):
    keys_file = tmp_path / "keys.json"
    key = {**signing.new_key(signing.RS256).as_dict(private=True), "kid": "2026/main key"}
    receipts = signing.new_key(signing.ES256).as_dict(private=True)
    keys_file.write_text(json.dumps({"keys": [key, receipts]}))
    app = make_app(
        database_url=database_url, jobs_synchronous=True, signing_keys_file=str(keys_file)
    )
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, _headers(app))
    assert jwt.get_unverified_header(token)["kid"] == (
        "http://localhost/issuer/keys/2026%2Fmain%20key"
    )
    assert independently_verified(client, token)["credentialSubject"]["licenseNumber"] == "CERT-1"
    assert check(client, token)["verified"] is True


def signed_as_ours(app, claims: dict) -> str:
    """`claims` signed with the gateway's key and header, as a credential of the test host."""
    keys = app.extensions["gateway"].keys
    return keys.sign(
        claims, typ="JWT", named_by=partial(key_url, "http://localhost"), alg=signing.RS256
    )


def test_a_check_without_a_credential_is_a_problem_naming_the_field(client):
    answer = client.post("/v1/credentials/verify", json={})
    assert answer.status_code == 422 and answer.mimetype == "application/problem+json"
    assert answer.get_json()["errors"][0]["field"] == "credential"
    assert client.post("/v1/credentials/verify", json={"credential": 5}).status_code == 422
    assert client.post("/v1/credentials/verify", data="x").status_code == 415
    empty = client.post("/verify/credential", data={"credential": "  "})
    assert empty.status_code == 400 and "Paste a credential." in empty.get_data(as_text=True)
    form = client.get("/verify/credential")
    assert form.status_code == 200
    verify_page = client.get("/verify").get_data(as_text=True)
    assert "/verify/credential" in verify_page
    shared = verify_page[verify_page.index("<header") : verify_page.index("</header>")]
    footer = verify_page[verify_page.index("<footer") :]
    # the pages' shared layout: who vouches above, the links to the other pages below
    assert shared in form.get_data(as_text=True) and footer in form.get_data(as_text=True)
    assert "verify-credential.css" in form.get_data(as_text=True)


def test_a_rotation_keeps_earlier_credentials_verifiable(database_url, make_app, tmp_path):
    keys_file = tmp_path / "keys.json"
    app = make_app(
        database_url=database_url, jobs_synchronous=True, signing_keys_file=str(keys_file)
    )
    record(app, granted(days_ago(30)))
    reader = {"Authorization": f"Bearer {_token(app)}"}
    old = fetch(app.test_client(), reader)
    signing.rotate(keys_file)
    rotated = make_app(database_url=database_url, signing_keys_file=str(keys_file))
    new_kid = rotated.extensions["gateway"].keys.signing_kid(signing.RS256)
    client = rotated.test_client()
    assert independently_verified(client, old)["credentialSubject"]["licenseNumber"] == "CERT-1"
    assert check(client, old)["verified"] is True
    new = fetch(client, reader)
    assert jwt.get_unverified_header(new)["kid"] == f"http://localhost/issuer/keys/{new_kid}"
    assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
    assert check(client, new)["verified"] is True


def test_status_lists_are_cached_by_etag_and_unknown_lists_are_not_found(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    fetch(client, reader)
    first = client.get("/credentials/status/0/revocation")
    assert first.headers["Cache-Control"] == "public, max-age=60"
    assert first.headers["ETag"].startswith('W/"')  # the same list; each process signs its own
    again = client.get(
        "/credentials/status/0/revocation", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert client.get("/credentials/status/1/revocation").status_code == 404
    assert client.get("/credentials/status/0/other").status_code == 404
    for alias in ("00", "\u0660", "\uff10", "+0", "0x0"):  # a list has one URL: no alias of it
        answer = client.get(f"/credentials/status/{alias}/revocation")
        assert answer.status_code == 404, alias
        assert answer.mimetype == "application/problem+json"
    record(app, revoked(days_ago(1)))
    changed = client.get(
        "/credentials/status/0/revocation", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]


def test_a_status_list_answers_a_failed_if_match_with_a_412_problem(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    fetch(client, reader)
    etag = client.get("/credentials/status/0/revocation").headers["ETag"]
    refused = client.get("/credentials/status/0/revocation", headers={"If-Match": etag})
    assert refused.status_code == 412 and refused.mimetype == "application/problem+json"
    matched = client.get("/credentials/status/0/revocation", headers={"If-Match": "*"})
    assert matched.status_code == 200 and matched.headers["ETag"] == etag


def test_the_status_list_of_100000_credentials_is_served_in_bounded_time_and_memory(
    make_app, postgres_url
):
    truncate(postgres_url)
    try:
        seed_entries(postgres_url, 100_000, revoked_every=10, suspended_every=7)
        client = make_app(database_url=postgres_url).test_client()
        tracemalloc.start()
        started = time.perf_counter()
        answer = client.get("/credentials/status/0/revocation")
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert answer.status_code == 200
        assert took < 3.0, f"{took:.2f} s"
        assert peak < 32 * 1024 * 1024, f"{peak / 2**20:.1f} MiB"
        claims = jwt.decode(answer.get_data(as_text=True), options={"verify_signature": False})
        text = claims["credentialSubject"]["encodedList"][1:]
        raw = gzip.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        assert sum(bin(byte).count("1") for byte in raw) == 10_000
    finally:
        truncate(postgres_url)


def test_the_upgrade_suspends_the_credentials_of_earlier_periods(database_url, tmp_path):
    with Database(database_url).sessions.begin() as session:
        session.add(Member(member_id="M-1", first_name="A", last_name="B", email="a@example.org"))
        session.flush()
        session.add(
            Certification(
                certification_id="CERT-1",
                credential="RMA",
                member_id="M-1",
                status="active",
                standing={"certified_on": "2026-12-01"},  # recertified: its current period
                evaluated_on=date(2026, 12, 1),
            )
        )
        session.flush()
        for index, started in enumerate((date(2019, 1, 10), date(2026, 12, 1))):
            session.add(
                CredentialStatusEntry(
                    certification_id="CERT-1",
                    period_start=started,
                    credential_id=f"00000000-0000-0000-0000-00000000000{index}",
                    salt="s",
                    list_id=0,
                    status_index=index,
                )
            )
    env = {"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path)}
    for args in (["db", "downgrade", "0011"], ["db", "upgrade"]):  # as from the release before
        assert CliRunner().invoke(cli, args, env=env).exit_code == 0
    with Database(database_url).sessions() as session:
        rows = session.scalars(select(CredentialStatusEntry).order_by(CredentialStatusEntry.id))
        assert [(row.period_start, row.suspended) for row in rows] == [
            (date(2019, 1, 10), True),
            (date(2026, 12, 1), False),
        ]


def _granted_to_someone(cert: str) -> dict:
    """A grant of `cert` to a member of its own (an e-mail of their own: one badge each)."""
    body = granted(days_ago(30), cert=cert)
    body["data"]["member"]["email"] = f"{cert.lower()}@example.org"
    return body


def test_many_first_time_credentials_at_once_all_succeed_with_distinct_indexes(
    make_app, postgres_url
):
    truncate(postgres_url)
    try:
        app = make_app(database_url=postgres_url, jobs_synchronous=True)
        threads, each = 18, 6  # as many as `gateway serve`'s 3 workers x 6 threads
        certs = [f"CERT-{n}" for n in range(threads * each)]
        record(app, *map(_granted_to_someone, certs))
        reader = _headers(app)
        barrier = threading.Barrier(threads)
        answers: dict[str, tuple[int, str]] = {}

        def ask(mine: list[str]) -> None:
            client = app.test_client()  # each request its own transaction
            barrier.wait()
            for cert in mine:
                answer = client.get(f"/v1/certifications/{cert}/credential", headers=reader)
                answers[cert] = (answer.status_code, answer.get_data(as_text=True))

        workers = [threading.Thread(target=ask, args=(certs[n::threads],)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert {cert: status for cert, (status, _) in answers.items()} == dict.fromkeys(certs, 200)
        places = {
            (entry["statusListCredential"], entry["statusListIndex"])
            for entry in (
                jwt.decode(token, options={"verify_signature": False})["credentialStatus"]
                for _, token in answers.values()
            )
        }
        assert len(places) == len(certs)
    finally:
        truncate(postgres_url)


def _draws(monkeypatch, *indexes: int) -> None:
    """Make the status list's random draws these indexes in turn, then the last one for good."""
    left = list(indexes)

    def draw(_bound: int) -> int:
        return left.pop(0) if len(left) > 1 else left[0]

    monkeypatch.setattr(status_lists.secrets, "randbelow", draw)


def _place(client, reader, cert: str) -> tuple[str, str]:
    entry = jwt.decode(fetch(client, reader, cert), options={"verify_signature": False})[
        "credentialStatus"
    ]
    return entry["statusListCredential"].rsplit("/", 2)[1], entry["statusListIndex"]


def test_a_credential_takes_a_random_free_index_and_a_taken_one_is_drawn_again(
    app, reader, monkeypatch
):
    client = app.test_client()
    record(app, granted(days_ago(30)), granted(days_ago(30), cert="CERT-2"))
    _draws(monkeypatch, 90_001, 90_001, 17)
    assert _place(client, reader, "CERT-1") == ("0", "90001")
    assert _place(client, reader, "CERT-2") == ("0", "17")  # 90001 is taken: drawn again
    assert _place(client, reader, "CERT-1") == ("0", "90001")  # its own index, for good


def test_a_credential_without_a_free_index_is_a_503_to_try_again(app, reader, monkeypatch):
    client = app.test_client()
    record(app, granted(days_ago(30)), granted(days_ago(30), cert="CERT-2"))
    _draws(monkeypatch, 5)  # every draw: the index CERT-1 takes
    fetch(client, reader)
    answer = client.get("/v1/certifications/CERT-2/credential", headers=reader)
    assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
    assert int(answer.headers["Retry-After"]) > 0


def test_a_new_list_starts_once_the_current_one_holds_list_fill_credentials(
    app, reader, monkeypatch
):
    client = app.test_client()
    certs = [f"CERT-{n}" for n in range(5)]
    record(app, *map(_granted_to_someone, certs))
    monkeypatch.setattr(status_lists, "LIST_FILL", 2)
    lists = [_place(client, reader, cert)[0] for cert in certs]
    assert lists == ["0", "0", "1", "1", "2"]
    assert client.get("/credentials/status/2/suspension").status_code == 200


def test_the_achievement_a_credential_names_is_served_at_its_id(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    embedded = independently_verified(client, fetch(client, reader))["credentialSubject"][
        "achievement"
    ]
    assert embedded["id"] == "http://localhost/issuer/achievements/RMA"
    answer = client.get(embedded["id"].removeprefix("http://localhost"))
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    served = answer.get_json()
    assert served.pop("@context") == [
        "https://www.w3.org/ns/credentials/v2",
        "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
    ]
    assert served == embedded
    unknown = client.get("/issuer/achievements/NOPE")
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"


def test_the_issuer_profile_and_the_achievement_are_valid_against_1edtechs_schemas(app, reader):
    client = app.test_client()
    record(app, granted(days_ago(30)))
    credential = independently_verified(client, fetch(client, reader))
    profile = client.get("/issuer").get_json()
    schema_valid(PROFILE_SCHEMA, profile)
    schema_valid(PROFILE_SCHEMA, credential["issuer"])
    schema_valid(ACHIEVEMENT_SCHEMA, client.get("/issuer/achievements/RMA").get_json())


def test_a_status_list_is_a_bitstring_status_list_credential_whose_jwt_claims_repeat_it(
    app, reader
):
    """W3C Bitstring Status List v1.0, its JWT claims repeating it as Open Badges 3.0 asks of a
    VC-JWT (iss, jti, sub, nbf): a verifier that checks the list as it checks a credential takes
    it."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    entry = independently_verified(client, fetch(client, reader))["credentialStatus"]
    answer = client.get(entry["statusListCredential"].removeprefix("http://localhost"))
    listed = independently_verified(client, answer.get_data(as_text=True))
    assert listed["@context"] == ["https://www.w3.org/ns/credentials/v2"]
    assert listed["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert listed["id"] == entry["statusListCredential"]
    subject = listed["credentialSubject"]
    assert subject["type"] == "BitstringStatusList"
    assert subject["statusPurpose"] == entry["statusPurpose"]
    assert subject["ttl"] == 60_000 and answer.headers["Cache-Control"] == "public, max-age=60"
    assert listed["iss"] == listed["issuer"] == "http://localhost/issuer"
    assert listed["jti"] == listed["id"]
    assert listed["sub"] == subject["id"]
    signed_at = int(datetime.fromisoformat(listed["validFrom"]).timestamp())
    assert listed["nbf"] == listed["iat"] == signed_at


def test_what_a_credential_names_is_readable_by_a_verifier_in_a_browser_and_nothing_else_is(
    app, reader
):
    """A wallet or verifier running in a web page fetches the keys, issuer profile, achievement and
    status lists from its own origin: they answer `Access-Control-Allow-Origin: *` (never with
    credentials), a 304 too; the credential itself and the lookups answer no CORS header."""
    client = app.test_client()
    record(app, granted(days_ago(30)))
    token = fetch(client, reader)
    credential = independently_verified(client, token)
    origin = {"Origin": "https://wallet.example"}
    named = [
        jwt.get_unverified_header(token)["kid"],
        credential["issuer"]["id"],
        credential["credentialSubject"]["achievement"]["id"],
        credential["credentialStatus"]["statusListCredential"],
        "http://localhost/.well-known/jwks.json",
    ]
    for url in named:
        answer = client.get(url.removeprefix("http://localhost"), headers=origin)
        assert answer.status_code == 200, url
        assert answer.headers["Access-Control-Allow-Origin"] == "*", url
        assert "Access-Control-Allow-Credentials" not in answer.headers, url
    status_list = credential["credentialStatus"]["statusListCredential"]
    first = client.get(status_list.removeprefix("http://localhost"), headers=origin)
    unchanged = client.get(
        status_list.removeprefix("http://localhost"),
        headers={**origin, "If-None-Match": first.headers["ETag"]},
    )
    assert unchanged.status_code == 304
    assert unchanged.headers["Access-Control-Allow-Origin"] == "*"
    # Their refusals too: a verifier in a page reads that a key is not published, say.
    missing = (
        "/issuer/keys/no-such-kid",
        "/issuer/achievements/NOPE",
        "/credentials/status/9/suspension",
        "/credentials/status/0/neither",
    )
    refusals = [client.get(path, headers=origin) for path in missing] + [
        client.get(
            status_list.removeprefix("http://localhost"),
            headers={**origin, "If-Match": first.headers["ETag"]},
        )
    ]
    assert [answer.status_code for answer in refusals] == [404, 404, 404, 404, 412]
    for answer in refusals:
        assert answer.headers["Access-Control-Allow-Origin"] == "*", answer.request.path
    for private in (
        client.get("/v1/certifications/CERT-1/credential", headers={**reader, **origin}),
        client.get("/v1/verifications/CERT-1", headers=origin),
        client.post("/v1/credentials/verify", json={"credential": token}, headers=origin),
    ):
        assert not any(name.startswith("Access-Control-") for name, _ in private.headers)
