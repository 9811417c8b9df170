"""Badges members have not claimed: still pending in Credly, for the membership team to nudge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.store.models import Badge, Certification, utcnow


@dataclass(frozen=True)
class Unclaimed:
    """One pending badge and whom to nudge about it."""

    certification_id: str
    name: str
    email: str
    credly_badge_id: str | None
    issued_at: datetime | None
    pending_since: datetime
    days_pending: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps ISO 8601)."""
        return {
            "certification_id": self.certification_id,
            "name": self.name,
            "email": self.email,
            "credly_badge_id": self.credly_badge_id,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "pending_since": self.pending_since.isoformat(),
            "days_pending": self.days_pending,
        }


def unclaimed_badges(
    session: Session, *, days: int, now: datetime | None = None
) -> list[Unclaimed]:
    """Badges pending for at least `days` days (since issue or replacement), oldest first, each
    with the member as its certification's standing names them (the details its badge carries)."""
    now = now or utcnow()
    pending_since = func.coalesce(Badge.state_changed_at, Badge.issued_at, Badge.created_at)
    rows = session.execute(
        select(Badge, Certification.standing, pending_since)
        .join(Certification, Certification.certification_id == Badge.certification_id)
        .where(Badge.state == "pending", pending_since <= now - timedelta(days=days))
        .order_by(pending_since, Badge.id)
    )
    return [
        Unclaimed(
            certification_id=badge.certification_id,
            name=f"{standing['member']['first_name']} {standing['member']['last_name']}",
            email=standing["member"]["email"],
            credly_badge_id=badge.credly_badge_id,
            issued_at=badge.issued_at,
            pending_since=since,
            days_pending=(now - since).days,
        )
        for badge, standing, since in rows
    ]
