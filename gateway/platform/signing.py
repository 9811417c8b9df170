"""The certifying body's signing keys: a JWK set whose first key of each algorithm signs and whose
every key verifies.

Tokens are compact JWS made with joserfc: receipts ES256 (a P-256 key), Open Badges credentials
RS256 (an RSA key), the algorithm Open Badges 3.0 asks every verifier to support. Rotation puts a
new key of each algorithm first and keeps the old ones, so what they signed still verifies
(`gateway keys rotate`). A token's header is `alg`, `typ` and `kid`, which names its key by the
key's `kid` or by a name made from it (`named_by`: a URL that serves the key); a token whose
header says anything else is refused before any key is looked up.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, GuestProtocol, KeySet, RSAKey
from joserfc.util import json_b64encode, urlsafe_b64encode

ES256 = "ES256"
RS256 = "RS256"
#: The algorithm of each kind of key (`kty`).
ALGORITHMS = {"EC": ES256, "RSA": RS256}
#: The least size of an RSA key, in bits.
RSA_BITS = 2048
#: The largest RSA key taken: a signature of a larger one is longer than a JWS library checks
#: by default (joserfc: 1,024 bytes), so a verifier could refuse a genuine credential.
RSA_MOST_BITS = 4096
#: An ES256 signature is 64 bytes (r and s, 32 each): 86 characters of base64url.
ES256_SIGNATURE_CHARACTERS = 86
#: The order n of P-256's group. An ECDSA signature (r, s) and its twin (r, n - s) both hold for
#: the same claims. Only the low-S form (s at most n / 2) is made; both are taken, since tokens
#: signed before the gateway kept to it are high-S half the time (a token is known by its `jti`,
#: not by its bytes).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: The header of every token the gateway signs. A key a header offers of itself (`jwk`, `jku`,
#: `x5u`, `x5c`) is never taken, and a token that carries one, or any other parameter, is refused.
HEADER_PARAMETERS = frozenset({"alg", "kid", "typ"})
SigningKey = ECKey | RSAKey
#: How a header names a key, from the key's `kid` (a URL that serves it, say).
KeyName = Callable[[str], str]


class InvalidSignature(ValueError):
    """A token that is not a compact JWS signed by one of our keys."""


@dataclass(frozen=True)
class Verified:
    """A token whose signature holds: its protected header and its JSON payload."""

    header: dict[str, Any]
    claims: dict[str, Any]


def new_key(alg: str = ES256) -> SigningKey:
    """A fresh signing key for `alg` (a P-256 key for ES256, RSA for RS256), its thumbprint as
    `kid`."""
    parameters = {"use": "sig", "alg": alg}
    if alg == RS256:
        return RSAKey.generate_key(RSA_BITS, parameters=parameters, auto_kid=True)
    return ECKey.generate_key("P-256", parameters=parameters, auto_kid=True)


def new_keys() -> list[SigningKey]:
    """A fresh key for each algorithm."""
    return [new_key(alg) for alg in ALGORITHMS.values()]


def algorithm_of(key: SigningKey) -> str:
    """The algorithm `key` signs with."""
    return ALGORITHMS[key.key_type]


class SigningKeys:
    """A JWK set of private keys: `sign` uses the first of the algorithm asked for, `verify`
    accepts any."""

    def __init__(self, keys: list[SigningKey], created: bool = False) -> None:
        if not any(algorithm_of(key) == ES256 for key in keys):
            raise ValueError("it holds no P-256 key, which signs receipts (ES256)")
        self.keys = keys
        #: Whether `load` made the file, with new keys (of processes starting at once, one).
        self.created = created
        self._set = KeySet(list(keys))

    @classmethod
    def load(cls, path: str | Path, create: bool = True) -> SigningKeys:
        """Read the key set at `path`, creating it with a new key of each kind when it does not
        exist; without `create` (keys from it are in use), a missing file is refused.

        Raises ValueError, in one line naming the file, unless every key is a private signing
        key with a `kid` of its own: P-256 for ES256 (`kty` EC, `crv` P-256, `alg` ES256 or none)
        or RSA of 2048 bits or more for RS256 (`kty` RSA, `alg` RS256 or none); `use` sig or none.
        """
        path = Path(path)
        if not create and not path.exists():
            raise ValueError(
                f"{path} does not exist: put the key set back (new keys in its place would not "
                "verify what its keys signed; to add keys: `gateway keys rotate`)"
            )
        try:
            created = not path.exists() and _write_new(path, new_keys())
        except OSError as exc:
            raise ValueError(f"{path} cannot be created: {exc}") from exc
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} cannot be read as JSON: {exc}") from exc
        try:
            return cls(_keys_of(data), created=created)
        except ValueError as exc:
            raise ValueError(f"{path} is not a set of ES256 and RS256 signing keys: {exc}") from exc

    def signer(self, alg: str = ES256) -> SigningKey:
        """The key that signs for `alg`: the first of that algorithm; without one (an RSA key, in
        a set made before credentials were signed RS256, until `gateway keys rotate` adds one)
        the P-256 key that signs receipts."""
        of_alg = [key for key in self.keys if algorithm_of(key) == alg]
        return of_alg[0] if of_alg else self.signer(ES256)

    def holds(self, alg: str) -> bool:
        """Whether a key of the set signs `alg`."""
        return any(algorithm_of(key) == alg for key in self.keys)

    def signing_kid(self, alg: str = ES256) -> str:
        """The `kid` of the key that signs for `alg`."""
        return self.signer(alg).kid

    def sign(
        self,
        claims: Mapping[str, Any],
        typ: str,
        named_by: KeyName | None = None,
        alg: str = ES256,
    ) -> str:
        """A compact JWS over `claims` (JSON), signed by the key that signs for `alg`; its
        header's `kid` is the key's own, or `named_by` of it."""
        key = self.signer(alg)
        header = _header(key, typ, named_by)
        token = jws.serialize_compact(header, _payload(claims), key, algorithms=[header["alg"]])
        return _low_s(token) if header["alg"] == ES256 else token

    def stand_in(self, claims: Mapping[str, Any], typ: str) -> str:
        """What `sign` would make of `claims` (ES256) but for its signature: the header and
        payload as signed, then a placeholder as long as a signature. Nothing is signed; it is
        not a token, only its length is (a HEAD request's answer measures it)."""
        key = self.signer(ES256)
        header = json_b64encode(_header(key, typ, None)).decode()
        payload = urlsafe_b64encode(_payload(claims).encode()).decode()
        return f"{header}.{payload}.{'A' * ES256_SIGNATURE_CHARACTERS}"

    def verify(self, token: str, named_by: KeyName | None = None) -> Verified:
        """Check `token`'s signature against the key its header's `kid` names: a key's own
        `kid`, or (with `named_by`) the name `named_by` makes of it, or one made under another
        address (the key its last path segment names); its header and claims."""
        named = {named_by(key.kid): key for key in self.keys} if named_by else {}
        own = {key.kid: key for key in self.keys}

        def key_of(signed: GuestProtocol) -> SigningKey | KeySet:
            header = signed.headers()
            others = sorted(set(header) - HEADER_PARAMETERS)
            if others:
                raise InvalidSignature(
                    f"its header carries {', '.join(map(repr, others))}, which no token this "
                    "gateway signs does (a key is taken only from those it publishes)"
                )
            kid = header.get("kid")
            if kid in named:
                key = named[kid]
            elif named_by and isinstance(kid, str) and "/" in kid:
                key = own.get(unquote(kid.rsplit("/", 1)[-1]), self._set)
            else:
                key = own.get(kid, self._set)
            if isinstance(key, KeySet):
                raise InvalidSignature(
                    f"its key {kid!r} is not one this gateway publishes (another issuer's, or "
                    "retired since it signed)"
                )
            if header.get("alg") != algorithm_of(key):
                raise InvalidSignature(f"its alg {header.get('alg')!r} is not its key's")
            return key

        # a compact JWS holds no white space: a copy wrapped at a line length (an e-mail's) is the
        # same token
        token = "".join(token.split())
        try:
            found = jws.deserialize_compact(token, key_of, algorithms=list(ALGORITHMS.values()))
            claims = json.loads(found.payload)
        except InvalidSignature:  # its header or the key it names: what is wrong is said already
            raise
        except BadSignatureError as exc:
            raise InvalidSignature(
                "the signature does not match its header and payload (altered since it was "
                "signed, or signed with another key)"
            ) from exc
        except JoseError as exc:
            said = (exc.description or exc.error).rstrip(".")
            raise InvalidSignature(f"not a compact JWS that can be checked: {said}") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidSignature(f"not a genuine signed token: {exc}") from exc
        if not isinstance(claims, dict):
            raise InvalidSignature("the signed payload is not a JSON object")
        return Verified(header=dict(found.headers()), claims=claims)

    def public_jwks(self) -> dict[str, Any]:
        """The public halves of every key, as a JWK set document."""
        return {"keys": [key.as_dict(private=False) for key in self.keys]}

    def public_jwk(self, kid: str) -> dict[str, Any] | None:
        """The public half of the key `kid`, as a JWK; None when no key of the set has it."""
        found = next((key for key in self.keys if key.kid == kid), None)
        return found.as_dict(private=False) if found else None


def _low_s(token: str) -> str:
    """An ES256 compact JWS with its signature (r, s) in the low-S form: (r, n - s) when s is
    over half the order n of P-256's group (`P256_ORDER`), both being valid signatures."""
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = int.from_bytes(raw[32:])
    if s <= P256_ORDER // 2:
        return token
    low = raw[:32] + (P256_ORDER - s).to_bytes(32)
    return f"{signed}.{base64.urlsafe_b64encode(low).rstrip(b'=').decode()}"


def _header(key: SigningKey, typ: str, named_by: KeyName | None) -> dict[str, str]:
    """The protected header of a token `key` signs: HEADER_PARAMETERS."""
    return {"alg": algorithm_of(key), "kid": named_by(key.kid) if named_by else key.kid, "typ": typ}


def _payload(claims: Mapping[str, Any]) -> str:
    """The JSON payload of a token of `claims`."""
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False)


def _keys_of(data: Any) -> list[SigningKey]:
    """The keys of a JWK set document; ValueError saying what is wrong with the first bad one."""
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError('it must be a JWK set: an object whose "keys" list holds at least one key')
    keys, kids = [], set()
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"key {number} is not a JSON object")
        kid = item.get("kid")
        problem = _key_problem(item)
        if problem is None and kid in kids:
            problem = "has the kid of a key before it"
        if problem is not None:
            raise ValueError(f"key {number} (kid {kid!r}) {problem}")
        kind = ECKey if item["kty"] == "EC" else RSAKey
        # its operations are the set's to say (the first of each kind signs, every one verifies):
        # `key_ops` as exported (WebCrypto's ["sign"]) would stop its public half verifying
        item = {name: value for name, value in item.items() if name != "key_ops"}
        try:
            key = kind.import_key(item)
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(
                f"key {number} (kid {kid!r}) is not a valid {kind.key_type} key: {exc}"
            ) from exc
        keys.append(key)
        kids.add(kid)
    return keys


def _key_problem(item: dict[str, Any]) -> str | None:
    """What makes a JWK unfit to sign ES256 (P-256) or RS256 (RSA), or None."""
    said = {name: item.get(name) for name in ("kty", "crv", "alg", "use", "kid")}
    alg = ALGORITHMS.get(said["kty"]) if isinstance(said["kty"], str) else None
    if alg is None:
        return f"is kty {said['kty']!r}, not an EC or RSA key"
    if alg == ES256 and said["crv"] != "P-256":
        return f"is on curve {said['crv']!r}, not P-256"
    if said["alg"] not in (None, alg):
        return f"is for alg {said['alg']!r}, not {alg}"
    if alg == RS256 and _bits(item.get("n")) < RSA_BITS:
        return f"has fewer than {RSA_BITS} bits"
    if alg == RS256 and _bits(item.get("n")) > RSA_MOST_BITS:
        return f"has more than {RSA_MOST_BITS} bits"
    if said["use"] not in (None, "sig"):
        return f"is for use {said['use']!r}, not sig"
    if not isinstance(said["kid"], str) or not said["kid"]:
        return "has no kid"
    if "d" not in item:
        return 'has no private part ("d")'
    return None


def _bits(modulus: Any) -> int:
    """The size in bits of an RSA key's modulus `n` (base64url), 0 when it is not one."""
    try:
        return int.from_bytes(
            base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
        ).bit_length()
    except (TypeError, ValueError):
        return 0


def rotate(path: str | Path) -> list[str]:
    """Put a new key of each algorithm first in the set at `path`, keeping the old ones; their
    `kid`s. Raises ValueError, in one line, when the set cannot be read or written."""
    old = SigningKeys.load(path)
    keys = new_keys()
    _rewrite(Path(path), [*keys, *old.keys])
    return [key.kid for key in keys]


def retire(path: str | Path, kid: str) -> None:
    """Remove the key `kid` from the set at `path` (never one that signs)."""
    found = SigningKeys.load(path)
    keys = found.keys
    if kid in {found.signing_kid(alg) for alg in ALGORITHMS.values()}:
        raise ValueError(f"{kid} signs: rotate first, then retire it")
    kept = [key for key in keys if key.kid != kid]
    if len(kept) == len(keys):
        raise ValueError(f"no key {kid!r} in {path}")
    _rewrite(Path(path), kept)


def _rewrite(path: Path, keys: list[SigningKey]) -> None:
    """Replace the set at `path` with `keys`; ValueError in one line when it cannot be."""
    try:
        _write_new(path, keys, replace=True)
    except OSError as exc:
        raise ValueError(
            f"{path} cannot be rewritten ({exc.strerror or exc}): its folder must be writable "
            "by this user, who must own the file or be root"
        ) from exc


def _write_new(path: Path, keys: list[SigningKey], replace: bool = False) -> bool:
    """Write a private key set readable by its owner only (one that `replace`s a set keeps that
    set's owner and mode); concurrent first starts keep one. True when this set was written
    (False: another process's was there first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"keys": [key.as_dict(private=True) for key in keys]}, indent=2)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".signing-", suffix=".json")
    try:
        if replace:  # the web processes' user must still read it
            before = path.stat()
            os.fchmod(fd, before.st_mode & 0o777)
            if (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, before.st_uid, before.st_gid)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:  # another process was first: keep theirs
                return False
        return True
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
