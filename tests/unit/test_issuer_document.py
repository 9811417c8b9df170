"""The document the issuer's id serves: its profile and the keys its credentials verify with."""

from __future__ import annotations

from gateway.platform.config import Settings
from gateway.platform.signing import SigningKeys
from gateway.usecases.openbadges import issuer_document, key_url

BASE = "https://gateway.example"


def test_the_issuer_document_names_each_public_key_as_its_credentials_do(tmp_path):
    keys = SigningKeys.load(tmp_path / "signing-keys.json")
    document = issuer_document(Settings.from_env({}), keys, BASE)
    jwks = keys.public_jwks()["keys"]
    assert document["id"] == f"{BASE}/issuer"
    assert document["jwks_uri"] == f"{BASE}/.well-known/jwks.json"
    assert [method["id"] for method in document["verificationMethod"]] == [
        key_url(BASE, key["kid"]) for key in jwks
    ]
    assert [method["publicKeyJwk"] for method in document["verificationMethod"]] == jwks
    assert {method["controller"] for method in document["verificationMethod"]} == {document["id"]}
