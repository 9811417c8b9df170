"""Badges members have not claimed: still pending in Credly, for the membership team to nudge.

Only badges a member should still claim are listed: of a certification whose status keeps a
badge (active or inactive), of its current period, and not in error (a job of it failed for
good). A certification revoked or lapsed has its badge revoked, done or not yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from itertools import islice
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.platform import clock
from gateway.rules import BADGE_KEPT
from gateway.store.db import Database
from gateway.store.models import Badge, Certification
from gateway.usecases import queries


@dataclass(frozen=True)
class Unclaimed:
    """One pending badge and whom to nudge about it, at the address its claim e-mail went to."""

    certification_id: str
    name: str
    email: str
    credly_badge_id: str | None
    #: The badge's issue time as Credly holds it: for a badge the gateway issued, the start of
    #: the certification's day, whenever the badge was issued.
    issued_at: datetime | None
    #: When the badge was recorded pending (issued, issued again or replaced in Credly).
    pending_since: datetime
    #: Whole days since `pending_since`.
    days_pending: int

    def to_dict(self, zone: tzinfo) -> dict[str, Any]:
        """JSON-ready form (timestamps ISO 8601), with the issue date the badge shows: the day
        of `issued_at` in `zone` (TIME_ZONE), the certification's day for a badge the gateway
        issued, however long after that day it was issued (`pending_since`)."""
        return {
            "certification_id": self.certification_id,
            "name": self.name,
            "email": self.email,
            "credly_badge_id": self.credly_badge_id,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "issue_date_on_badge": (
                self.issued_at.astimezone(zone).date().isoformat() if self.issued_at else None
            ),
            "pending_since": self.pending_since.isoformat(),
            "days_pending": self.days_pending,
        }


def list_unclaimed(db: Database, *, days: int, limit: int | None = None) -> list[Unclaimed]:
    """`unclaimed_badges` read in a session of its own (`gateway badges unclaimed`)."""
    with db.snapshots() as session:
        return unclaimed_badges(session, days=days, limit=limit)


def unclaimed_badges(
    session: Session, *, days: int, now: datetime | None = None, limit: int | None = None
) -> list[Unclaimed]:
    """Badges a member should still claim (see the module docstring), pending for at least
    `days` days (since issue or replacement), oldest first, at most `limit` of them, each with the
    member as its certification's standing names them and the e-mail address Credly holds for
    the badge (the member's current one for a badge recorded before the gateway kept it).

    Only the few fields listed are read of each standing, streamed a few rows at a time."""
    now = now or clock.now()
    pending_since = func.coalesce(Badge.state_changed_at, Badge.issued_at, Badge.created_at)
    standing = Certification.standing
    rows = session.execute(
        select(
            Badge.certification_id,
            Badge.period_start,
            Badge.credly_badge_id,
            Badge.issued_at,
            Badge.recipient_email,
            pending_since,
            standing["certified_on"].as_string(),
            standing[("member", "first_name")].as_string(),
            standing[("member", "last_name")].as_string(),
            standing[("member", "email")].as_string(),
        )
        .join(Certification, Certification.certification_id == Badge.certification_id)
        .where(
            Badge.state == "pending",
            Badge.last_error.is_(None),
            Certification.status.in_(BADGE_KEPT),
            pending_since <= now - timedelta(days=days),
        )
        .order_by(pending_since, Badge.id)
        .execution_options(yield_per=queries.STREAM_ROWS)
    )
    current = (
        Unclaimed(
            certification_id=certification_id,
            name=f"{first_name} {last_name}",
            email=recipient_email or email,
            credly_badge_id=credly_badge_id,
            issued_at=issued_at,
            pending_since=since,
            days_pending=(now - since).days,
        )
        for (
            certification_id,
            period_start,
            credly_badge_id,
            issued_at,
            recipient_email,
            since,
            certified_on,
            first_name,
            last_name,
            email,
        ) in rows
        if period_start.isoformat() == certified_on  # the current period's
    )
    return list(islice(current, limit))
