"""Altered copies of compact JWS tokens, for the checks that must refuse them."""

from __future__ import annotations

import base64

from gateway.platform.signing import P256_ORDER


def high_s_twin(token: str) -> str:
    """`token` (ES256) with its signature (r, s) turned into (r, n - s): a signature of the same
    claims that ECDSA also holds good, but another token."""
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    twin = raw[:32] + (P256_ORDER - int.from_bytes(raw[32:])).to_bytes(32)
    return f"{signed}.{base64.urlsafe_b64encode(twin).rstrip(b'=').decode()}"


def s_of(token: str) -> int:
    """The s of an ES256 token's signature."""
    signature = token.rpartition(".")[2]
    return int.from_bytes(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))[32:])
