"""Signed verification receipts: proof of a check an employer keeps, and the log of them.

A receipt is a compact JWS (the signing key set's first key) whose claims are the verification
answer plus `iss` (the gateway's public address), `sub` (the certification), `iat` and `jti` (the
reference). Every receipt issued is recorded with who asked, and pruned after
RECEIPT_RETENTION_DAYS.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, tuple_

from gateway.platform import clock
from gateway.platform.signing import ES256, InvalidSignature, Verified
from gateway.store.models import Receipt
from gateway.usecases import lookup
from gateway.usecases.services import Services

TYPE = "JWT"


@dataclass(frozen=True)
class Issued:
    """A receipt: its reference, its claims and the compact JWS that carries them."""

    jti: str
    claims: dict[str, Any]
    token: str


def issue(
    svc: Services,
    answer: dict[str, Any],
    issuer_url: str,
    *,
    client_id: str | None,
    client_address: str | None,
) -> Issued:
    """Sign the verification `answer` (as the API dumps it) and record the receipt."""
    jti, claims = _claims(answer, issuer_url)
    verified_at = datetime.fromisoformat(answer["verified_at"])
    token = svc.keys.sign(claims, typ=TYPE)
    on = answer.get("on")
    with svc.db.transaction() as session:
        session.add(
            Receipt(
                jti=jti,
                certification_id=answer["certification_id"],
                on=date.fromisoformat(on) if on else None,
                status=answer["status"],
                issued_at=verified_at,
                client_id=client_id,
                client_address=None if client_id else client_address,
            )
        )
    return Issued(jti, claims, token)


def _claims(answer: dict[str, Any], issuer_url: str) -> tuple[str, dict[str, Any]]:
    """A new reference, and the claims of a receipt of `answer` under it."""
    jti = f"rcpt_{secrets.token_urlsafe(16)}"
    verified_at = datetime.fromisoformat(answer["verified_at"])
    claims = {
        **answer,
        "iss": issuer_url,
        "sub": answer["certification_id"],
        "iat": int(verified_at.timestamp()),
        "jti": jti,
    }
    return jti, claims


def verify(svc: Services, token: str) -> Verified:
    """`token` checked as a receipt of this gateway: signed by a key it publishes (ES256, `typ`
    JWT), with a text `iss` (PUBLIC_BASE_URL itself when that is set), the `sub` of its
    certification and an `iat` not past now by more than clock.LEEWAY (a clock a little ahead
    signed it); else InvalidSignature saying why."""
    verified = svc.keys.verify(token)
    header, claims = verified.header, verified.claims
    if header.get("alg") != ES256 or header.get("typ") != TYPE:
        raise InvalidSignature("signed, but not as receipts are (ES256, typ JWT)")
    issuer_url = svc.settings.public_base_url
    if not isinstance(claims.get("iss"), str) or (issuer_url and claims["iss"] != issuer_url):
        raise InvalidSignature("its iss is not this gateway's address")
    if claims.get("sub") != claims.get("certification_id"):
        raise InvalidSignature("its sub is not the certification it states")
    issued = claims.get("iat")
    if type(issued) is not int:  # a NumericDate in whole seconds, as receipts carry (not a bool)
        raise InvalidSignature("its iat is not a time in whole seconds")
    if issued > (clock.now() + clock.LEEWAY).timestamp():
        raise InvalidSignature("its iat is in the future: it was not issued yet")
    return verified


def issue_for(
    svc: Services,
    certification_id: str,
    on: date | None,
    issuer_url: str,
    *,
    client_id: str | None,
    client_address: str | None,
    sign: bool = True,
) -> Issued:
    """Look the certification up (now, or as it stood on `on`) and sign and record a receipt of
    the answer; raises lookup.NotOnRecord or lookup.NotCertifiedOn.

    Not to `sign`: the receipt as it would be issued, of the very same length, but neither signed
    nor recorded, its token a stand-in (`SigningKeys.stand_in`) that must not be sent: what a
    HEAD request measures its answer by.
    """
    found = lookup.record_of(svc.db, svc.policy, certification_id, on)
    answer = lookup.record_answer(found, svc.settings, issuer_url, on)
    if not sign:
        jti, claims = _claims(answer, issuer_url)
        return Issued(jti, claims, svc.keys.stand_in(claims, typ=TYPE))
    return issue(svc, answer, issuer_url, client_id=client_id, client_address=client_address)


class UnknownReceipt(LookupError):
    """`after` names no receipt of this client."""


def list_owned(
    svc: Services, client_id: str, since: datetime | None, limit: int, after: str | None = None
) -> list[Receipt]:
    """The receipts issued to `client_id` at or after `since`, oldest first (those of one second
    by reference), at most `limit`; with `after` (a reference of theirs), those that follow it."""
    query = select(Receipt).where(Receipt.client_id == client_id)
    if since is not None:
        query = query.where(Receipt.issued_at >= since)
    with svc.db.snapshots() as session:
        if after is not None:
            last = session.get(Receipt, after)
            if last is None or last.client_id != client_id:
                raise UnknownReceipt(after)
            # A row comparison, which the index (client_id, issued_at, jti) seeks to: written as
            # `issued_at > x OR (issued_at = x AND jti > y)`, PostgreSQL filters every receipt of
            # the client before it, and each page costs more than the one before.
            query = query.where(tuple_(Receipt.issued_at, Receipt.jti) > (last.issued_at, last.jti))
        return list(session.scalars(query.order_by(Receipt.issued_at, Receipt.jti).limit(limit)))
