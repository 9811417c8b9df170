"""The employer verification lookup: today's public records come from the read model (fast, no
rules); a record as it stood on a past day, or one the read model does not yet show, is computed
from the history with the rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select

from gateway import rules
from gateway.platform import clock
from gateway.platform.config import Settings
from gateway.store.db import Database
from gateway.store.history import load_histories
from gateway.store.models import Certification, VerificationRecord
from gateway.usecases.issuer import issuer

#: A point-in-time answer for a certification on record but not yet granted on the day asked.
NOT_CERTIFIED = "not_certified"


@dataclass(frozen=True)
class Verification:
    """What a public registry shows about one certification, as checked at `verified_at`."""

    certification_id: str
    name: str
    credential: str
    credential_name: str
    status: str
    certified_since: date
    valid_through: date | None
    verified_at: datetime

    def public(self) -> dict[str, Any]:
        """The record as the API answers it (without the `issuer` that `record_answer` adds)."""
        return {
            "certification_id": self.certification_id,
            "name": self.name,
            "credential": self.credential,
            "credential_name": self.credential_name,
            "status": self.status,
            "certified_since": self.certified_since.isoformat(),
            "valid_through": self.valid_through.isoformat() if self.valid_through else None,
            "verified_at": self.verified_at.isoformat(),
        }

    @classmethod
    def from_public(cls, answer: dict[str, Any]) -> Verification:
        """The record an answer (or a receipt's claims) states; KeyError, TypeError or
        ValueError when it states none."""
        valid_through = answer["valid_through"]
        return cls(
            certification_id=str(answer["certification_id"]),
            name=str(answer["name"]),
            credential=str(answer["credential"]),
            credential_name=str(answer["credential_name"]),
            status=str(answer["status"]),
            certified_since=date.fromisoformat(answer["certified_since"]),
            valid_through=date.fromisoformat(valid_through) if valid_through else None,
            verified_at=datetime.fromisoformat(answer["verified_at"]),
        )


def check_time() -> datetime:
    """The time of a check: now, UTC, to the second."""
    return clock.now().replace(microsecond=0)


_RECORDS = VerificationRecord.__table__
_CERTIFICATIONS = Certification.__table__
_COLUMNS = (
    _RECORDS.c.certification_id,
    _RECORDS.c.name,
    _RECORDS.c.credential,
    _RECORDS.c.credential_name,
    _RECORDS.c.status,
    _RECORDS.c.certified_since,
    _RECORDS.c.valid_through,
)

# With each record, its certification's stored status and the first day that changes with no
# event (the sweep's day).
_RECORDS_OF = (
    select(*_COLUMNS, _CERTIFICATIONS.c.status, _CERTIFICATIONS.c.next_change_on)
    .select_from(_RECORDS)
    .outerjoin(_CERTIFICATIONS, _CERTIFICATIONS.c.certification_id == _RECORDS.c.certification_id)
    .where(_RECORDS.c.certification_id.in_(bindparam("certification_ids", expanding=True)))
)
# Of the ids with no record, those of a certification on record (its sync job not yet run).
_UNRECORDED = select(_CERTIFICATIONS.c.certification_id).where(
    _CERTIFICATIONS.c.certification_id.in_(bindparam("certification_ids", expanding=True))
)


def records_today(
    db: Database,
    policy: rules.Policy,
    certification_ids: Sequence[str],
    *,
    recorded_only: bool = False,
) -> list[Verification | None]:
    """Today's public record of each id, read from the read model, in the order given; None for
    an id not on record.

    A record not yet in step with its certification is computed from the history for today
    instead, so no answer says `active` past its day: one whose standing changes today or
    earlier with no event (a fee's grace ended at midnight, before the daily sweep), or whose
    stored status is not the record's (recorded, its sync job not yet run). So is a record not
    yet written, of a certification on record (just granted, its sync job not yet run), unless
    `recorded_only`: then an id with no record row is None without a further read.
    """
    verified_at = check_time()
    today = verified_at.date()
    storable = [i for i in certification_ids if "\x00" not in i]  # others cannot be on record
    rows = db.read(_RECORDS_OF, {"certification_ids": storable}) if storable else []
    found: dict[str, Verification | None] = {
        row[0]: Verification(*row[:-2], verified_at=verified_at) for row in rows
    }
    behind = [
        row[0]
        for row in rows
        if (row[-2] is not None and row[-2] != row[4]) or (row[-1] is not None and row[-1] <= today)
    ]
    missing = [] if recorded_only else list(dict.fromkeys(i for i in storable if i not in found))
    if missing:
        behind += [i for (i,) in db.read(_UNRECORDED, {"certification_ids": missing})]
    for certification_id, fresh in zip(behind, records_on(db, policy, behind, today), strict=True):
        if isinstance(fresh, Verification):
            found[certification_id] = fresh
    return [found.get(certification_id) for certification_id in certification_ids]


def public_record(
    policy: rules.Policy, credential: str, status: str, standing: Mapping[str, Any]
) -> dict[str, Any]:
    """What a public registry shows of a standing (`rules.Standing.to_dict()` form): no e-mail,
    member id, points, audit or reason; `valid_through` (the paid-through day) only when active."""
    member = standing["member"]
    known = policy.credentials.get(credential)
    paid_through = standing["fees"]["paid_through"]
    return {
        "name": f"{member['first_name']} {member['last_name']}",
        "credential": credential,
        "credential_name": known.name if known else credential,
        "status": status,
        "certified_since": date.fromisoformat(standing["certified_on"]),
        "valid_through": (
            date.fromisoformat(paid_through) if status == "active" and paid_through else None
        ),
    }


def records_on(
    db: Database, policy: rules.Policy, certification_ids: Sequence[str], on: date
) -> list[Verification | str | None]:
    """The public record of each id as it stood on `on`, computed from its history with the rules
    (once an id, however often it is given); NOT_CERTIFIED when it was not yet granted then, None
    when it is not on record."""
    verified_at = check_time()
    distinct = list(dict.fromkeys(certification_ids))
    storable = [i for i in distinct if "\x00" not in i]
    histories = load_histories(db, storable) if storable else {}
    found: dict[str, Verification | str | None] = {}
    for certification_id in distinct:
        history = histories.get(certification_id)
        if not history:
            found[certification_id] = None
            continue
        try:
            standing = rules.evaluate(history, on, policy, forecast=False)
        except rules.NotCertified:
            found[certification_id] = NOT_CERTIFIED
            continue
        record = public_record(policy, standing.credential, standing.status, standing.to_dict())
        found[certification_id] = Verification(certification_id, **record, verified_at=verified_at)
    return [found[certification_id] for certification_id in certification_ids]


class NotOnRecord(LookupError):
    """No certification with this number is on record."""


class NotCertifiedOn(LookupError):
    """The certification was not yet granted on the day asked for, `on`."""

    def __init__(self, certification_id: str, on: date) -> None:
        super().__init__(certification_id, on)
        self.on = on


def record_of(
    db: Database, policy: rules.Policy, certification_id: str, on: date | None = None
) -> Verification:
    """The public record of one certification now (read model), or as it stood on `on`
    (history); raises NotOnRecord, or NotCertifiedOn for a day before the grant."""
    if on is None:
        [found] = records_today(db, policy, [certification_id])
    else:
        [found] = records_on(db, policy, [certification_id], on)
        if found == NOT_CERTIFIED:
            raise NotCertifiedOn(certification_id, on)
    if found is None:
        raise NotOnRecord(certification_id)
    return found


def record_answer(
    found: Verification, settings: Settings, base: str, on: date | None = None
) -> dict[str, Any]:
    """The JSON answer for a public record: its fields, the day asked for, and who vouches
    (`base`: the gateway's public address)."""
    body = found.public()
    if on is not None:
        body["on"] = on.isoformat()
    body["issuer"] = issuer(settings, base)
    return body
