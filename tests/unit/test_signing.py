"""The signing key set: created once, signs with its first key of each algorithm, verifies with
any, rotates."""

import json
import os
import threading

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from gateway.platform import signing
from gateway.platform.signing import ES256, P256_ORDER, RS256, InvalidSignature, SigningKeys
from tests.support.jws import high_s_twin, s_of


def test_a_missing_key_set_is_created_private_to_its_owner(tmp_path):
    path = tmp_path / "instance" / "signing-keys.json"
    keys = SigningKeys.load(path)
    assert path.stat().st_mode & 0o077 == 0
    stored = json.loads(path.read_text())["keys"]
    assert [key["kid"] for key in stored] == [keys.signing_kid(ES256), keys.signing_kid(RS256)]
    assert [key["kty"] for key in stored] == ["EC", "RSA"]
    assert all("d" in key for key in stored)  # the private parts stay in the file
    assert all("d" not in key for key in keys.public_jwks()["keys"])


def test_first_starts_at_once_keep_one_key_set(tmp_path):
    path = tmp_path / "signing-keys.json"
    kids: list[str] = []
    threads = [
        threading.Thread(target=lambda: kids.append(SigningKeys.load(path).signing_kid(RS256)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1


@pytest.mark.parametrize("alg", [ES256, RS256])
def test_a_signature_verifies_with_an_independent_implementation(tmp_path, alg):
    keys = SigningKeys.load(tmp_path / "keys.json")
    token = keys.sign({"sub": "CERT-1", "status": "active"}, typ="JWT", alg=alg)
    public = jwt.PyJWKSet.from_dict(keys.public_jwks())[keys.signing_kid(alg)].key
    assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "CERT-1", "status": "active"}
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": keys.signing_kid(alg), "typ": "JWT"}
    assert keys.verify(token).claims == {"sub": "CERT-1", "status": "active"}


def test_es256_signatures_are_made_in_the_low_s_form_and_taken_in_either(tmp_path):
    """(r, s) and (r, n - s) are both valid ECDSA signatures of the same claims: the keys make
    the low-S one (about half of the signatures ECDSA makes are high-S), and take both, as tokens
    signed before they kept to it are high-S half the time."""
    keys = SigningKeys.load(tmp_path / "keys.json")
    public = jwt.PyJWKSet.from_dict(keys.public_jwks())[keys.signing_kid(ES256)].key
    for n in range(32):
        token = keys.sign({"n": n}, typ="JWT")
        assert s_of(token) <= P256_ORDER // 2
        twin = high_s_twin(token)
        assert s_of(twin) > P256_ORDER // 2
        assert jwt.decode(twin, public, algorithms=[ES256]) == {"n": n}  # ECDSA holds it good
        assert keys.verify(twin).claims == keys.verify(token).claims == {"n": n}


def test_a_header_naming_one_key_with_the_other_algorithm_is_refused(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")
    token = keys.sign({"n": 1}, typ="JWT", alg=RS256)
    _, payload, signature = token.split(".")
    confused = jwt.utils.base64url_encode(
        json.dumps({"alg": "RS256", "kid": keys.signing_kid(ES256), "typ": "JWT"}).encode()
    ).decode()
    with pytest.raises(InvalidSignature, match=r"its alg 'RS256' is not its key's"):
        keys.verify(f"{confused}.{payload}.{signature}")


def test_a_set_made_before_rsa_keys_signs_everything_with_its_p256_key(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [signing.new_key(ES256).as_dict(private=True)]}))
    keys = SigningKeys.load(path)
    token = keys.sign({"n": 1}, typ="JWT", alg=RS256)
    assert jwt.get_unverified_header(token)["alg"] == ES256
    assert keys.verify(token).claims == {"n": 1}
    signing.rotate(path)  # adds the RSA key
    assert (
        jwt.get_unverified_header(SigningKeys.load(path).sign({}, "JWT", alg=RS256))["alg"] == RS256
    )


def test_a_tampered_or_foreign_token_is_refused(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")
    header, _, signature = keys.sign({"status": "lapsed"}, typ="JWT").split(".")
    forged = jwt.utils.base64url_encode(b'{"status":"active"}').decode()
    with pytest.raises(InvalidSignature):
        keys.verify(f"{header}.{forged}.{signature}")
    other = SigningKeys.load(tmp_path / "other.json").sign({"status": "active"}, typ="JWT")
    with pytest.raises(InvalidSignature):
        keys.verify(other)
    with pytest.raises(InvalidSignature):
        keys.verify("not a token")


def test_a_header_may_name_the_key_by_a_name_made_from_its_kid(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")

    def url(kid: str) -> str:
        return f"https://verify.example.org/issuer/keys/{kid}"

    token = keys.sign({"n": 1}, typ="JWT", named_by=url)
    assert jwt.get_unverified_header(token)["kid"] == url(keys.signing_kid())
    assert keys.verify(token, named_by=url).claims == {"n": 1}
    with pytest.raises(InvalidSignature):  # a name it was not told to accept
        keys.verify(token)
    # a name made at another address (another host name, before PUBLIC_BASE_URL was set): the
    # key its end names, whose signature it must then hold
    elsewhere = keys.verify(token, named_by=lambda kid: f"https://elsewhere.example/{kid}")
    assert elsewhere.claims == {"n": 1}
    stranger = SigningKeys.load(tmp_path / "other.json")
    forged = stranger.sign({"n": 3}, typ="JWT", named_by=lambda _: url(keys.signing_kid()))
    with pytest.raises(InvalidSignature):
        keys.verify(forged, named_by=lambda kid: f"https://elsewhere.example/{kid}")
    bare = keys.sign({"n": 2}, typ="JWT")  # the key's own kid still names it
    assert keys.verify(bare, named_by=url).claims == {"n": 2}
    assert keys.public_jwk(keys.signing_kid()) == keys.public_jwks()["keys"][0]
    assert "d" not in keys.public_jwk(keys.signing_kid())
    assert keys.public_jwk("nope") is None


@pytest.mark.parametrize("alg", [ES256, RS256])
def test_rotation_signs_with_the_new_key_and_old_signatures_still_verify(tmp_path, alg):
    path = tmp_path / "keys.json"
    before = SigningKeys.load(path)
    old_token = before.sign({"n": 1}, typ="JWT", alg=alg)
    kids = signing.rotate(path)
    after = SigningKeys.load(path)
    assert after.signing_kid(alg) in kids and after.signing_kid(alg) != before.signing_kid(alg)
    assert after.verify(old_token).header["kid"] == before.signing_kid(alg)
    new_token = after.sign({"n": 2}, typ="JWT", alg=alg)
    assert after.verify(new_token).header["kid"] == after.signing_kid(alg)
    published = {key["kid"] for key in after.public_jwks()["keys"]}
    assert published == {*kids, *(key.kid for key in before.keys)}


def test_retiring_a_key_stops_what_it_signed_but_never_the_signing_key(tmp_path):
    path = tmp_path / "keys.json"
    old = SigningKeys.load(path)
    token = old.sign({"n": 1}, typ="JWT", alg=RS256)
    for new_kid in signing.rotate(path):
        with pytest.raises(ValueError, match="signs"):
            signing.retire(path, new_kid)
    signing.retire(path, old.signing_kid(RS256))
    with pytest.raises(InvalidSignature):
        SigningKeys.load(path).verify(token)
    assert SigningKeys.load(path).verify(old.sign({"n": 2}, typ="JWT")).claims == {"n": 2}


def test_a_key_set_without_private_keys_is_refused_by_name(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(SigningKeys.load(tmp_path / "real.json").public_jwks()))
    with pytest.raises(ValueError, match=r"keys\.json"):
        SigningKeys.load(path)


def _rsa(bits: int) -> dict:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.private_numbers()
    values = {
        "n": numbers.public_numbers.n,
        "e": numbers.public_numbers.e,
        "d": numbers.d,
        "p": numbers.p,
        "q": numbers.q,
        "dp": numbers.dmp1,
        "dq": numbers.dmq1,
        "qi": numbers.iqmp,
    }
    encoded = {name: jwt.utils.to_base64url_uint(value).decode() for name, value in values.items()}
    return {"kty": "RSA", "kid": f"rsa-{bits}", **encoded}


def _p256(**extra: str) -> dict:
    return {**signing.new_key().as_dict(private=True), **extra}


BAD_KEY_SETS = {
    "a P-384 key": ({"keys": [ECKey.generate_key("P-384", auto_kid=True).as_dict()]}, "'P-384'"),
    "an RSA key of 1024 bits": (
        {"keys": [_rsa(1024)]},
        "fewer than 2048 bits",
    ),
    "an RSA key of 4104 bits": (  # its signatures too long for a JWS library's default check
        {"keys": [_rsa(4104)]},
        "more than 4096 bits",
    ),
    "an RSA key for PS256": (
        {"keys": [RSAKey.generate_key(2048, {"alg": "PS256"}, auto_kid=True).as_dict()]},
        "alg 'PS256', not RS256",
    ),
    "a symmetric key": ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}, "kty 'oct'"),
    "a kty not a string": ({"keys": [{"kty": ["EC"], "kid": "k"}]}, "kty ['EC']"),
    "RSA keys only": (
        {"keys": [signing.new_key(RS256).as_dict(private=True)]},
        "no P-256 key, which signs receipts",
    ),
    "alg ES512": ({"keys": [_p256(alg="ES512")]}, "alg 'ES512'"),
    "use enc": ({"keys": [_p256(use="enc")]}, "use 'enc'"),
    "no kid": ({"keys": [{k: v for k, v in _p256().items() if k != "kid"}]}, "no kid"),
    "two keys, one kid": ({"keys": [_p256(kid="k1"), _p256(kid="k1")]}, "key 2 (kid 'k1')"),
    "no keys": ({"keys": []}, "JWK set"),
    "a list": ([_p256()], "JWK set"),
    "garbage JSON": ("{not json", "cannot be read as JSON"),
}


@pytest.mark.parametrize("content, reason", BAD_KEY_SETS.values(), ids=BAD_KEY_SETS)
def test_a_key_set_unfit_to_sign_es256_or_rs256_is_refused_in_one_line_saying_why(
    tmp_path, content, reason
):
    path = tmp_path / "keys.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError) as refused:
        SigningKeys.load(path)
    assert str(path) in str(refused.value) and reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_key_set_is_created_once_and_says_so(tmp_path):
    path = tmp_path / "keys.json"
    assert SigningKeys.load(path).created is True
    assert SigningKeys.load(path).created is False


def test_a_token_wrapped_over_lines_is_the_same_token(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")
    token = keys.sign({"n": 1}, typ="JWT", alg=RS256)
    wrapped = "\r\n".join(token[i : i + 76] for i in range(0, len(token), 76))
    assert keys.verify(f"  {wrapped}\n").claims == {"n": 1}


def test_a_key_whose_key_ops_allow_signing_signs_and_its_public_half_verifies(tmp_path):
    path = tmp_path / "keys.json"
    exported = {**_p256(), "key_ops": ["sign"]}  # as WebCrypto exports a private key
    path.write_text(json.dumps({"keys": [exported]}))
    keys = SigningKeys.load(path)
    token = keys.sign({"n": 1}, typ="JWT")
    assert keys.verify(token).claims == {"n": 1}
    [public] = keys.public_jwks()["keys"]
    assert "key_ops" not in public
    assert jwt.decode(token, jwt.PyJWK(public).key, algorithms=["ES256"]) == {"n": 1}
    retired = {**_p256(), "key_ops": ["verify"]}  # kept to verify what it signed
    path.write_text(json.dumps({"keys": [exported, retired]}))
    assert [key.kid for key in SigningKeys.load(path).keys] == [exported["kid"], retired["kid"]]


def test_a_token_of_a_retired_key_is_refused_saying_its_key_is_not_published(tmp_path):
    path = tmp_path / "keys.json"
    old = SigningKeys.load(path)
    token = old.sign({"n": 1}, typ="JWT")
    signing.rotate(path)
    signing.retire(path, old.signing_kid())
    with pytest.raises(InvalidSignature) as refused:
        SigningKeys.load(path).verify(token)
    assert str(refused.value) == (
        f"its key {old.signing_kid()!r} is not one this gateway publishes (another issuer's, or "
        "retired since it signed)"
    )


@pytest.mark.parametrize("extra", [{"jku": "https://attacker.example/keys"}, {"cty": "JWT"}])
def test_a_header_with_more_than_alg_kid_and_typ_is_refused_even_signed_by_our_key(tmp_path, extra):
    """Every token the gateway signs has that header: one that carries more (a key URL it offers,
    say) was not made by it, whatever key signed it."""
    keys = SigningKeys.load(tmp_path / "keys.json")
    key = keys.signer(ES256)
    header = {"alg": ES256, "kid": key.kid, "typ": "JWT", **extra}
    token = jws.serialize_compact(header, b'{"n":1}', key, algorithms=[ES256])
    [name] = extra
    with pytest.raises(InvalidSignature) as refused:
        keys.verify(token)
    assert str(refused.value) == (
        f"its header carries {name!r}, which no token this gateway signs does (a key is taken "
        "only from those it publishes)"
    )


def test_an_altered_token_is_refused_saying_its_signature_does_not_match(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")
    header, _, signature = keys.sign({"status": "lapsed"}, typ="JWT").split(".")
    forged = jwt.utils.base64url_encode(b'{"status":"active"}').decode()
    with pytest.raises(InvalidSignature) as refused:
        keys.verify(f"{header}.{forged}.{signature}")
    assert str(refused.value) == (
        "the signature does not match its header and payload (altered since it was signed, or "
        "signed with another key)"
    )


def test_a_rotation_keeps_the_files_owner_and_mode_and_says_in_one_line_why_it_cannot_write(
    tmp_path, monkeypatch
):
    path = tmp_path / "keys.json"
    SigningKeys.load(path)
    path.chmod(0o640)  # the web processes' group reads it
    if os.geteuid() == 0:  # the web processes' user owns it; root rotates
        os.chown(path, 65534, 65534)
    owner = (path.stat().st_uid, path.stat().st_gid)
    signing.rotate(path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert (path.stat().st_uid, path.stat().st_gid) == owner
    denied = PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(signing.tempfile, "mkstemp", lambda **_: (_ for _ in ()).throw(denied))
    with pytest.raises(ValueError, match="cannot be rewritten") as refused:
        signing.rotate(path)
    assert "\n" not in str(refused.value) and str(path) in str(refused.value)
