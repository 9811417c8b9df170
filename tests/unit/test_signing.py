"""The signing key set: created once, signs with its first key, verifies with any, rotates."""

import json
import threading

import jwt
import pytest
from joserfc.jwk import ECKey, RSAKey

from gateway.platform import signing
from gateway.platform.signing import InvalidSignature, SigningKeys


def test_a_missing_key_set_is_created_private_to_its_owner(tmp_path):
    path = tmp_path / "instance" / "signing-keys.json"
    keys = SigningKeys.load(path)
    assert path.stat().st_mode & 0o077 == 0
    stored = json.loads(path.read_text())["keys"]
    assert [key["kid"] for key in stored] == [keys.signing_kid]
    assert "d" in stored[0]  # the private part stays in the file
    assert "d" not in keys.public_jwks()["keys"][0]


def test_first_starts_at_once_keep_one_key_set(tmp_path):
    path = tmp_path / "signing-keys.json"
    kids: list[str] = []
    threads = [
        threading.Thread(target=lambda: kids.append(SigningKeys.load(path).signing_kid))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1


def test_a_signature_verifies_with_an_independent_implementation(tmp_path):
    keys = SigningKeys.load(tmp_path / "keys.json")
    token = keys.sign({"sub": "CERT-1", "status": "active"}, typ="JWT")
    public = jwt.PyJWKSet.from_dict(keys.public_jwks())[keys.signing_kid].key
    assert jwt.decode(token, public, algorithms=["ES256"]) == {"sub": "CERT-1", "status": "active"}
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": keys.signing_kid, "typ": "JWT"}
    assert keys.verify(token).claims == {"sub": "CERT-1", "status": "active"}


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
    assert jwt.get_unverified_header(token)["kid"] == url(keys.signing_kid)
    assert keys.verify(token, named_by=url).claims == {"n": 1}
    with pytest.raises(InvalidSignature):  # a name it was not told to accept
        keys.verify(token)
    # a name made at another address (another host name, before PUBLIC_BASE_URL was set): the
    # key its end names, whose signature it must then hold
    elsewhere = keys.verify(token, named_by=lambda kid: f"https://elsewhere.example/{kid}")
    assert elsewhere.claims == {"n": 1}
    stranger = SigningKeys.load(tmp_path / "other.json")
    forged = stranger.sign({"n": 3}, typ="JWT", named_by=lambda _: url(keys.signing_kid))
    with pytest.raises(InvalidSignature):
        keys.verify(forged, named_by=lambda kid: f"https://elsewhere.example/{kid}")
    bare = keys.sign({"n": 2}, typ="JWT")  # the key's own kid still names it
    assert keys.verify(bare, named_by=url).claims == {"n": 2}
    assert keys.public_jwk(keys.signing_kid) == keys.public_jwks()["keys"][0]
    assert "d" not in keys.public_jwk(keys.signing_kid)
    assert keys.public_jwk("nope") is None


def test_rotation_signs_with_the_new_key_and_old_signatures_still_verify(tmp_path):
    path = tmp_path / "keys.json"
    before = SigningKeys.load(path)
    old_token = before.sign({"n": 1}, typ="JWT")
    kid = signing.rotate(path)
    after = SigningKeys.load(path)
    assert after.signing_kid == kid != before.signing_kid
    assert after.verify(old_token).header["kid"] == before.signing_kid
    assert after.verify(after.sign({"n": 2}, typ="JWT")).header["kid"] == kid
    assert {key["kid"] for key in after.public_jwks()["keys"]} == {kid, before.signing_kid}


def test_retiring_a_key_stops_what_it_signed_but_never_the_signing_key(tmp_path):
    path = tmp_path / "keys.json"
    old = SigningKeys.load(path)
    token = old.sign({"n": 1}, typ="JWT")
    new_kid = signing.rotate(path)
    with pytest.raises(ValueError, match="signs"):
        signing.retire(path, new_kid)
    signing.retire(path, old.signing_kid)
    with pytest.raises(InvalidSignature):
        SigningKeys.load(path).verify(token)


def test_a_key_set_without_private_keys_is_refused_by_name(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(SigningKeys.load(tmp_path / "real.json").public_jwks()))
    with pytest.raises(ValueError, match=r"keys\.json"):
        SigningKeys.load(path)


def _p256(**extra: str) -> dict:
    return {**signing.new_key().as_dict(private=True), **extra}


BAD_KEY_SETS = {
    "a P-384 key": ({"keys": [ECKey.generate_key("P-384", auto_kid=True).as_dict()]}, "'P-384'"),
    "an RSA key": ({"keys": [RSAKey.generate_key(2048, auto_kid=True).as_dict()]}, "kty 'RSA'"),
    "alg ES512": ({"keys": [_p256(alg="ES512")]}, "alg 'ES512'"),
    "use enc": ({"keys": [_p256(use="enc")]}, "use 'enc'"),
    "no kid": ({"keys": [{k: v for k, v in _p256().items() if k != "kid"}]}, "no kid"),
    "two keys, one kid": ({"keys": [_p256(kid="k1"), _p256(kid="k1")]}, "key 2 (kid 'k1')"),
    "no keys": ({"keys": []}, "JWK set"),
    "a list": ([_p256()], "JWK set"),
    "garbage JSON": ("{not json", "cannot be read as JSON"),
}


@pytest.mark.parametrize("content, reason", BAD_KEY_SETS.values(), ids=BAD_KEY_SETS)
def test_a_key_set_unfit_to_sign_es256_is_refused_in_one_line_saying_why(tmp_path, content, reason):
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
