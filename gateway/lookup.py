"""The employer verification lookup: public records read from the read model, never the rules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, select

from gateway.store.db import Database
from gateway.store.models import VerificationRecord, utcnow


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

    @property
    def etag(self) -> str:
        """A validator of the record's content; the time of the check does not change it."""
        content = (
            self.certification_id,
            self.name,
            self.credential,
            self.credential_name,
            self.status,
            self.certified_since.isoformat(),
            self.valid_through.isoformat() if self.valid_through else None,
        )
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:32]


def check_time() -> datetime:
    """The time of a check: now, UTC, to the second."""
    return utcnow().replace(microsecond=0)


_RECORDS = VerificationRecord.__table__
_COLUMNS = (
    _RECORDS.c.certification_id,
    _RECORDS.c.name,
    _RECORDS.c.credential,
    _RECORDS.c.credential_name,
    _RECORDS.c.status,
    _RECORDS.c.certified_since,
    _RECORDS.c.valid_through,
)

# A single id (the common lookup) skips the per-call rendering of the expanding IN (~30 µs).
_ONE = select(*_COLUMNS).where(_RECORDS.c.certification_id == bindparam("certification_id"))
_MANY = select(*_COLUMNS).where(
    _RECORDS.c.certification_id.in_(bindparam("certification_ids", expanding=True))
)


def verify(db: Database, certification_ids: Sequence[str]) -> list[Verification | None]:
    """The public record of each id, in the order given; None for an id not on record."""
    verified_at = check_time()
    storable = [i for i in certification_ids if "\x00" not in i]  # others cannot be on record
    if len(storable) == 1:
        rows = db.read(_ONE, {"certification_id": storable[0]})
    else:
        rows = db.read(_MANY, {"certification_ids": storable}) if storable else []
    found = {row[0]: Verification(*row, verified_at=verified_at) for row in rows}
    return [found.get(certification_id) for certification_id in certification_ids]
