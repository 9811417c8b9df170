"""Open Badges 3.0 credentials: what a member's credential and the status lists say, and a check
of a credential someone hands us.

A credential is an `OpenBadgeCredential` secured as a VC-JWT: a compact JWS whose payload is the
credential itself plus the JWT claims Open Badges asks for (`iss`, `sub`, `jti`, `nbf`, `exp`), and
whose JOSE header is what Open Badges 3.0 asks for: `alg` RS256, `typ` `JWT` and `kid` the URL that
serves the signing key as a JWK (`key_url`). Its `credentialStatus` is a Bitstring Status List
entry; see `gateway.usecases.status_lists` for the bits. Credentials signed before the header took
that shape (`typ` `vc+jwt`, `kid` the key's bare `kid`) still verify.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, bindparam, select

from gateway import rules
from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.platform.signing import RS256, InvalidSignature, SigningKeys, Verified
from gateway.rules import BADGE_KEPT, REVOKED, Policy
from gateway.store.history import load_history
from gateway.store.models import Certification
from gateway.usecases import status_lists
from gateway.usecases.issuer import issuer
from gateway.usecases.queries import UnknownCertification
from gateway.usecases.services import Services
from gateway.usecases.status_lists import LIST_SIZE, StatusEntry

MEDIA_TYPE = "application/vc+jwt"
TYP = "JWT"  # Open Badges 3.0: `typ`, if present, MUST be "JWT"
#: The `typ` of credentials signed before the header took the shape Open Badges 3.0 asks for.
EARLIER_TYP = "vc+jwt"
VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
#: The purpose of the list a credential names; its revocation list holds the same index.
CREDENTIAL_PURPOSE = "suspension"
STATUS_LIST_SECONDS = 60  # how long a status list may be cached (its `ttl`, Cache-Control)


def issuer_id(base: str) -> str:
    """The certifying body's id: the URL its profile is served at."""
    return f"{base}/issuer"


def key_url(base: str, kid: str) -> str:
    """Where the public key `kid` is served as a JWK: the `kid` of what it signs."""
    return f"{issuer_id(base)}/keys/{quote(kid, safe='')}"


def status_list_url(base: str, list_id: int, purpose: str) -> str:
    """Where the status list credential of `list_id` for `purpose` is served."""
    return f"{base}/credentials/status/{list_id}/{purpose}"


def issuer_profile(settings: Settings, base: str) -> dict[str, Any]:
    """The issuer as an Open Badges `Profile`, from the ISSUER_* settings (its logo, when set,
    as the profile's `image`)."""
    profile: dict[str, Any] = {
        "id": issuer_id(base),
        "type": ["Profile"],
        "name": settings.issuer_name,
    }
    if settings.issuer_url:
        profile["url"] = settings.issuer_url
    contact = settings.issuer_contact  # an e-mail address or an http(s) URL
    if contact and not contact.startswith(("http://", "https://")):
        profile["email"] = contact
    logo = issuer(settings, base)["logo"]
    if logo:
        profile["image"] = {"id": logo, "type": "Image"}
    return profile


def issuer_document(settings: Settings, keys: SigningKeys, base: str) -> dict[str, Any]:
    """What the issuer's id serves: its profile, with the public keys its credentials verify
    with as verification methods, each named as its credentials' `kid` names it."""
    profile = issuer_profile(settings, base)
    return {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        **profile,
        "verificationMethod": [
            {
                "id": key_url(base, key["kid"]),
                "type": "JsonWebKey",
                "controller": profile["id"],
                "publicKeyJwk": key,
            }
            for key in keys.public_jwks()["keys"]
        ],
        "jwks_uri": f"{base}/.well-known/jwks.json",
    }


def identity_hash(email: str, salt: str) -> str:
    """The `IdentityObject` hash of an e-mail address: `sha256$` and the hex SHA-256 of the
    address (trimmed, lower case) followed by the salt."""
    digest = hashlib.sha256((email.strip().lower() + salt).encode("utf-8")).hexdigest()
    return f"sha256${digest}"


def criteria_narrative(policy: Policy, code: str) -> str:
    """How the credential is earned and kept, in the words of the certification policy."""
    known = policy.credentials[code]
    return (
        f"Granted by the certifying body to a candidate who meets the eligibility criteria "
        f"{known.eligibility_criteria} of the {known.name} ({code}) certification. It stays in "
        f"good standing while the yearly certification fee is paid and "
        f"{known.points_per_cycle:g} continuing competency (CCP) points are earned in every "
        f"{policy.cycle_years}-year cycle. It lapses when fees stay unpaid more than "
        f"{policy.fee_lapse_years} years or a cycle is still short of points "
        f"{policy.ccp_lapse_years} years after its end; a recertification lifts a lapse (by "
        f"exam only once lapsed {policy.exam_only_years} years). The certifying body may revoke it."
    )


def achievement_id(base: str, code: str) -> str:
    """Where the achievement of credential `code` is served: its id."""
    return f"{issuer_id(base)}/achievements/{code}"


def achievement(settings: Settings, policy: Policy, base: str, code: str) -> dict[str, Any]:
    """The Open Badges `Achievement` of credential `code`: what every credential of that code
    embeds, and what its id serves."""
    known = policy.credentials.get(code)
    name = known.name if known else code
    return {
        "id": achievement_id(base, code),
        "type": ["Achievement"],
        "achievementType": "Certification",
        "name": name,
        "description": f"The {name} ({code}) certification.",
        "humanCode": code,
        "criteria": {
            "narrative": criteria_narrative(policy, code)
            if known
            else f"The {name} certification of {settings.issuer_name}."
        },
    }


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    """What a credential says of one certification: from its stored standing."""

    certification_id: str
    credential: str
    standing: dict[str, Any]


def credential(
    settings: Settings,
    policy: Policy,
    base: str,
    holder: Holder,
    entry: StatusEntry,
) -> dict[str, Any]:
    """The JWT payload: the `OpenBadgeCredential` of the certification's current period. It has
    no `iat`: the moment it was handed out says nothing about the credential, and a verifier
    whose clock runs a second behind would take it for one issued in the future."""
    standing = holder.standing
    certifies = achievement(settings, policy, base, holder.credential)
    name = certifies["name"]
    issuer = issuer_profile(settings, base)
    valid_from = _midnight(date.fromisoformat(standing["certified_on"]))
    paid_through = standing["fees"]["paid_through"]
    # Like the Credly badge: an expiry only when BADGE_EXPIRES asks for one, at the end of the
    # paid-through day (the register says active all that day, UTC).
    valid_until = (
        _midnight(date.fromisoformat(paid_through) + timedelta(days=1)) - timedelta(seconds=1)
        if settings.badge_expires and paid_through
        else None
    )
    list_url = status_list_url(base, entry.list_id, CREDENTIAL_PURPOSE)
    # The subject's id, which the JWT's `sub` repeats: a URN of this credential's own, so that it
    # names the member to no one (the identity hash does, to whoever knows the address).
    subject_id = f"urn:uuid:{uuid.uuid5(uuid.UUID(entry.credential_id), 'credentialSubject')}"
    payload: dict[str, Any] = {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": f"urn:uuid:{entry.credential_id}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": name,
        "description": f"{name} ({holder.credential}), certification {holder.certification_id}.",
        "issuer": issuer,
        "validFrom": _stamp(valid_from),
        "awardedDate": _stamp(valid_from),
        "credentialSubject": {
            "id": subject_id,
            "type": ["AchievementSubject"],
            "identifier": [
                {
                    "type": "IdentityObject",
                    "hashed": True,
                    "identityHash": identity_hash(standing["member"]["email"], entry.salt),
                    "identityType": "emailAddress",
                    "salt": entry.salt,
                }
            ],
            "licenseNumber": holder.certification_id,
            "achievement": certifies,
        },
        "credentialStatus": {
            "id": f"{list_url}#{entry.status_index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": CREDENTIAL_PURPOSE,
            "statusListIndex": str(entry.status_index),
            "statusListCredential": list_url,
        },
        "iss": issuer["id"],
        "sub": subject_id,
        "jti": f"urn:uuid:{entry.credential_id}",
        "nbf": int(valid_from.timestamp()),
    }
    if valid_until is not None:
        payload["validUntil"] = _stamp(valid_until)
        payload["exp"] = int(valid_until.timestamp())
    return payload


def status_list_credential(
    base: str, list_id: int, purpose: str, encoded: str, now: datetime
) -> dict[str, Any]:
    """The JWT payload of a `BitstringStatusListCredential`: its JWT claims repeat it as Open
    Badges 3.0 asks of a credential (`iss`, `sub`, `jti`, `nbf`), so that a verifier that checks
    it as it checks a credential takes it; `iat` too, the second it was signed."""
    url = status_list_url(base, list_id, purpose)
    return {
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer_id(base),
        "validFrom": _stamp(now),
        "credentialSubject": {
            "id": f"{url}#list",  # the JWT's `sub`
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": encoded,
            "ttl": STATUS_LIST_SECONDS * 1000,
        },
        "iss": issuer_id(base),
        "sub": f"{url}#list",
        "jti": url,
        "nbf": int(now.timestamp()),
        "iat": int(now.timestamp()),
    }


@dataclass
class Outcome:
    """The checks of one credential, in order, and what it says when it is an Open Badges
    credential whose signature holds."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    credential: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        """Every check passed (none was skipped)."""
        return all(check["passed"] for check in self.checks)

    def add(self, name: str, problem: str | None, fine: str) -> None:
        """Record check `name`: passed with `fine`, or failed with `problem`."""
        self.checks.append({"check": name, "passed": problem is None, "message": problem or fine})

    def as_dict(self) -> dict[str, Any]:
        """The answer of `POST /v1/credentials/verify`."""
        return {"verified": self.verified, "checks": self.checks, "credential": self.credential}


#: (revoked, suspended) of a list's index, None when no credential holds it.
StatusLookup = Callable[[int, int], "tuple[bool, bool] | None"]

_CHECKS = ("signature", "issuer", "dates", "status")
_TYPS = (TYP, EARLIER_TYP)


def check(
    keys: SigningKeys, token: str, base: str, status_of: StatusLookup, now: datetime
) -> Outcome:
    """Whether `token` is a credential we signed, from us, valid on `now` and neither revoked
    nor suspended; every check that fails says why."""
    outcome = Outcome()
    try:
        verified = keys.verify(token, named_by=partial(key_url, base))
    except InvalidSignature as exc:
        outcome.add("signature", f"The signature does not hold: {exc}.", "")
        for name in _CHECKS[1:]:
            outcome.add(name, "Not checked: the signature does not hold.", "")
        return outcome
    claims = verified.claims
    not_badge = _kind_problem(verified)
    outcome.add("signature", not_badge, f"Signed with our key {verified.header.get('kid')}.")
    if not_badge is None:  # anything else we sign (a receipt) says nothing a credential says
        outcome.credential = _summary(claims)
    outcome.add("issuer", _issuer_problem(claims, base), f"Issued by {issuer_id(base)}.")
    outcome.add("dates", _dates_problem(claims, now), "Valid on the day checked.")
    outcome.add("status", _status_problem(claims, base, status_of), "Not revoked, not suspended.")
    return outcome


def _kind_problem(verified: Verified) -> str | None:
    """Whether what we signed is not an Open Badges credential: its `typ` not a credential's, or
    its type not `OpenBadgeCredential`."""
    typ = verified.header.get("typ")
    if typ not in _TYPS:
        return f"Signed by us, but its typ {_said(typ)} is not a credential's ({TYP})."
    kinds = verified.claims.get("type")
    if not isinstance(kinds, list) or "OpenBadgeCredential" not in kinds:
        return "Signed by us, but not an Open Badges credential."
    return None


def _summary(claims: dict[str, Any]) -> dict[str, str | None]:
    """What the credential says, for the answer (never the identity hash); text values only."""
    subject = _object(claims.get("credentialSubject"))
    achievement = _object(subject.get("achievement"))
    issuer = claims.get("issuer")
    said = {
        "id": claims.get("id"),
        "name": claims.get("name"),
        "certification_id": subject.get("licenseNumber"),
        "credential": achievement.get("humanCode"),
        "credential_name": achievement.get("name"),
        "issuer": _object(issuer).get("name") if isinstance(issuer, dict) else issuer,
        "valid_from": claims.get("validFrom"),
        "valid_until": claims.get("validUntil"),
    }
    return {name: value if isinstance(value, str) else None for name, value in said.items()}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _issuer_problem(claims: dict[str, Any], base: str) -> str | None:
    """Whether the credential is an OpenBadgeCredential of ours whose JWT claims repeat it as
    Open Badges 3.0 asks (`iss` its issuer, `jti` its id, `sub` its subject's id)."""
    expected = issuer_id(base)
    issuer = claims.get("issuer")
    said = issuer.get("id") if isinstance(issuer, dict) else issuer
    if said != expected:
        return f"The issuer is {_said(said)}, not {expected}."
    types = claims.get("type")
    if not isinstance(types, list) or "OpenBadgeCredential" not in types:
        return "Not an OpenBadgeCredential."
    subject = claims.get("credentialSubject")
    if not isinstance(subject, dict) or not (subject.get("id") or subject.get("identifier")):
        return "The credentialSubject is not identified by an id or an identifier."
    repeated = {"iss": said, "jti": claims.get("id"), "sub": subject.get("id")}
    for claim, value in repeated.items():
        if claims.get(claim) != value:
            return f"The JWT claim {claim} is {_said(claims.get(claim))}, not {_said(value)}."
    return None


def _said(value: Any) -> str:
    """A claim's value as a message quotes it: as JSON writes it, or `missing`."""
    return "missing" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _dates_problem(claims: dict[str, Any], now: datetime) -> str | None:
    """Whether the credential is valid on `now` (its `validFrom` up to clock.LEEWAY ahead), its
    JWT `nbf` and `exp` the same moments as its `validFrom` and `validUntil` (Open Badges 3.0)."""
    valid_from = _moment(claims.get("validFrom"))
    if valid_from is None:
        return "validFrom is not a date-time with its time zone."
    if claims.get("nbf") != int(valid_from.timestamp()):
        return "The JWT claim nbf is not the moment of validFrom."
    if now + clock.LEEWAY < valid_from:  # a second ahead is another machine's clock
        return f"Not valid before {_stamp(valid_from)}."
    if "validUntil" in claims or "exp" in claims:
        valid_until = _moment(claims.get("validUntil"))
        if valid_until is None:
            return "validUntil is not a date-time with its time zone."
        if claims.get("exp") != int(valid_until.timestamp()):
            return "The JWT claim exp is not the moment of validUntil."
        if now >= valid_until:
            return f"Expired at {_stamp(valid_until)}."
    return None


_LIST_PATH = re.compile(r"/credentials/status/(\d{1,9})/(revocation|suspension)")


def _status_problem(claims: dict[str, Any], base: str, status_of: StatusLookup) -> str | None:
    status = claims.get("credentialStatus")
    if not isinstance(status, dict) or status.get("type") != "BitstringStatusListEntry":
        return "No Bitstring Status List entry in credentialStatus."
    url, index = status.get("statusListCredential"), status.get("statusListIndex")
    found = _LIST_PATH.fullmatch(url[len(base) :]) if isinstance(url, str) else None
    if found is None or not url.startswith(base):
        return f"The status list {_said(url)} is not one of ours."
    if not (
        isinstance(index, str) and index.isascii() and index.isdigit() and int(index) < LIST_SIZE
    ):
        return f"The status list index {_said(index)} is not a number below {LIST_SIZE}."
    bits = status_of(int(found[1]), int(index))
    if bits is None:
        return "No credential holds that status list index."
    revoked, suspended = bits
    if revoked:
        return "Revoked: the certification was revoked."
    if suspended:
        return "Suspended: the certification has lapsed."
    return None


class NoCredential(ValueError):
    """The certification does not keep its badge (lapsed or revoked): it has no credential."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class UnknownStatusList(LookupError):
    """No credential can hold an index of this status list yet."""


_CERTIFICATION = (
    select(
        Certification.credential,
        Certification.status,
        Certification.standing,
        Certification.next_change_on,
    )
    .where(Certification.certification_id == bindparam("certification_id"))
    .with_for_update()
)


def _changed_today(
    svc: Services, connection: Connection, certification_id: str, next_change_on: date | None
) -> rules.Standing | None:
    """The certification's standing today, computed from the history, when today brings a change
    with no event that the daily sweep has not recorded yet (a lapse by date, between midnight
    and the sweep), as the lookups answer then; None when the stored standing holds."""
    today = clock.now().date()
    if next_change_on is None or next_change_on > today:
        return None
    history = load_history(svc.db, certification_id, connection)
    return rules.evaluate(history, today, svc.policy, forecast=False)


#: The signed status list of each (list, purpose), by the ETag of what it says.
_signed: dict[tuple[int, str], tuple[str, str]] = {}


def issue_credential(svc: Services, certification_id: str, base: str) -> str:
    """The signed credential (VC-JWT) of the certification's current period, its status list
    entry allocated on first use.

    Raises queries.UnknownCertification, NoCredential, or status_lists.NoFreeIndex (try again)."""
    with svc.db.engine.begin() as connection:  # the row lock orders it with the sync job
        found = connection.execute(_CERTIFICATION, {"certification_id": certification_id}).first()
        if found is None:
            raise UnknownCertification(certification_id)
        fresh = _changed_today(svc, connection, certification_id, found.next_change_on)
        status, standing = (
            (fresh.status, fresh.to_dict()) if fresh else (found.status, found.standing)
        )
        if status not in BADGE_KEPT:
            raise NoCredential(status)
        period_start = date.fromisoformat(standing["certified_on"])
        entry = status_lists.entry_for(connection, certification_id, period_start)
    holder = Holder(certification_id, found.credential, standing)
    payload = credential(svc.settings, svc.policy, base, holder, entry)
    return _signed_by_us(svc, payload, base)


def _signed_by_us(svc: Services, payload: dict[str, Any], base: str) -> str:
    """`payload` as a VC-JWT, its header's `kid` the URL of the signing key."""
    return svc.keys.sign(payload, typ=TYP, named_by=partial(key_url, base), alg=RS256)


def signed_status_list(svc: Services, list_id: int, purpose: str, base: str) -> tuple[str, str]:
    """The ETag of what a status list of `purpose` (one of status_lists.PURPOSES) says, and its
    credential (VC-JWT), re-signed only when its bits or the signing key change.

    Raises UnknownStatusList for a list past the last one."""
    with svc.db.snapshots() as session:
        connection = session.connection()
        if list_id >= status_lists.list_count(connection):
            raise UnknownStatusList(list_id)
        encoded = status_lists.encode(status_lists.bitstring(connection, list_id, purpose))
    kid = key_url(base, svc.keys.signing_kid(RS256))  # in the header: a new one is a new ETag
    said = f"{base}|{list_id}|{purpose}|{TYP}|{kid}|{encoded}"
    etag = hashlib.sha256(said.encode()).hexdigest()[:32]
    cached = _signed.get((list_id, purpose))
    if cached is None or cached[0] != etag:
        payload = status_list_credential(base, list_id, purpose, encoded, clock.now())
        cached = _signed[(list_id, purpose)] = (etag, _signed_by_us(svc, payload, base))
    return cached


def check_credential(svc: Services, token: str, base: str) -> Outcome:
    """Check a credential against our keys, issuer id, the clock and the status lists; a
    credential whose bits are clear but whose certification's standing changes today with no
    event, not yet recorded by the daily sweep, is checked against today's standing instead."""

    def status_of(list_id: int, index: int) -> tuple[bool, bool] | None:
        bits = status_lists.status_at(connection, list_id, index)
        if bits is None or bits.revoked or bits.suspended:
            return None if bits is None else (bits.revoked, bits.suspended)
        fresh = _changed_today(svc, connection, bits.certification_id, bits.next_change_on)
        if fresh is None:
            return False, False
        return fresh.status == REVOKED, fresh.status not in BADGE_KEPT

    with svc.db.engine.connect() as connection:
        return check(svc.keys, token, base, status_of, clock.now())
