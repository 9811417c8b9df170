"""The employer verification lookup: public records read from the read model, never the rules."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import select

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
        content = asdict(self)
        del content["verified_at"]
        canonical = json.dumps(content, default=str, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def check_time() -> datetime:
    """The time of a check: now, UTC, to the second."""
    return utcnow().replace(microsecond=0)


def verify(db: Database, certification_ids: Sequence[str]) -> list[Verification | None]:
    """The public record of each id, in the order given; None for an id not on record."""
    verified_at = check_time()
    storable = {i for i in certification_ids if "\x00" not in i}  # others cannot be on record
    with db.sessions() as session:
        rows = session.scalars(
            select(VerificationRecord).where(VerificationRecord.certification_id.in_(storable))
        )
        found = {
            row.certification_id: Verification(
                certification_id=row.certification_id,
                name=row.name,
                credential=row.credential,
                credential_name=row.credential_name,
                status=row.status,
                certified_since=row.certified_since,
                valid_through=row.valid_through,
                verified_at=verified_at,
            )
            for row in rows
        }
    return [found.get(certification_id) for certification_id in certification_ids]
