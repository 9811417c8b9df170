"""The certifying body's signing keys: a JWK set whose first key signs and whose every key verifies.

Receipts and credentials are compact JWS (ES256) made with joserfc. Rotation puts a new key first
and keeps the old ones, so what they signed still verifies (`gateway keys rotate`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

ALGORITHM = "ES256"


class InvalidSignature(ValueError):
    """A token that is not a compact JWS signed by one of our keys."""


@dataclass(frozen=True)
class Verified:
    """A token whose signature holds: its protected header and its JSON payload."""

    header: dict[str, Any]
    claims: dict[str, Any]


def new_key() -> ECKey:
    """A fresh P-256 signing key with its thumbprint as `kid`."""
    return ECKey.generate_key("P-256", parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True)


class SigningKeys:
    """A JWK set of private keys: `sign` uses the first, `verify` accepts any."""

    def __init__(self, keys: list[ECKey]) -> None:
        if not keys:
            raise ValueError("a signing key set needs at least one key")
        self.keys = keys
        self._set = KeySet(list(keys))

    @classmethod
    def load(cls, path: str | Path) -> SigningKeys:
        """Read the key set at `path`, creating it with one new key when it does not exist."""
        path = Path(path)
        if not path.exists():
            _write_new(path, [new_key()])
        try:
            data = json.loads(path.read_text())
            keys = [ECKey.import_key(item) for item in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
            raise ValueError(f"{path} is not a JWK set of P-256 private keys: {exc}") from exc
        if not keys or any(not key.is_private for key in keys):
            raise ValueError(f"{path} must hold at least one key, each with its private part")
        return cls(keys)

    @property
    def signing_kid(self) -> str:
        """The `kid` of the key that signs."""
        return self.keys[0].kid

    def sign(self, claims: Mapping[str, Any], typ: str, cty: str | None = None) -> str:
        """A compact JWS over `claims` (JSON), signed by the first key."""
        header = {"alg": ALGORITHM, "kid": self.signing_kid, "typ": typ}
        if cty:
            header["cty"] = cty
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
        return jws.serialize_compact(header, payload, self.keys[0], algorithms=[ALGORITHM])

    def verify(self, token: str) -> Verified:
        """Check `token`'s signature against every key of the set; its header and claims."""
        try:
            found = jws.deserialize_compact(token.strip(), self._set, algorithms=[ALGORITHM])
            claims = json.loads(found.payload)
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidSignature(f"not a genuine signed token: {exc}") from exc
        if not isinstance(claims, dict):
            raise InvalidSignature("the signed payload is not a JSON object")
        return Verified(header=dict(found.headers()), claims=claims)

    def public_jwks(self) -> dict[str, Any]:
        """The public halves of every key, as a JWK set document."""
        return {"keys": [key.as_dict(private=False) for key in self.keys]}


def rotate(path: str | Path) -> str:
    """Put a new signing key first in the set at `path`, keeping the old ones; its `kid`."""
    old = SigningKeys.load(path)
    key = new_key()
    _write_new(Path(path), [key, *old.keys], replace=True)
    return key.kid


def retire(path: str | Path, kid: str) -> None:
    """Remove the key `kid` from the set at `path` (never the one that signs)."""
    keys = SigningKeys.load(path).keys
    if keys[0].kid == kid:
        raise ValueError(f"{kid} signs: rotate first, then retire it")
    kept = [key for key in keys if key.kid != kid]
    if len(kept) == len(keys):
        raise ValueError(f"no key {kid} in {path}")
    _write_new(Path(path), kept, replace=True)


def _write_new(path: Path, keys: list[ECKey], replace: bool = False) -> None:
    """Write a private key set readable by its owner only; concurrent first starts keep one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"keys": [key.as_dict(private=True) for key in keys]}, indent=2)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".signing-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if replace:
            os.replace(temp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process was first: keep theirs
                os.link(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
