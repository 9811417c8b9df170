"""Read views that join a standing with what the jobs did: the badge, the lookup, the jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import rules
from gateway.store import models

RECENT_JOBS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_view(item: models.OutboxItem) -> dict[str, Any]:
    """One side effect and where its job stands."""
    return {
        "id": item.job_id,
        "kind": item.kind,
        "state": item.state,
        "attempts": item.attempts,
        "last_error": item.last_error,
        "created_at": _iso(item.created_at),
        "finished_at": _iso(item.finished_at),
    }


def badge_view(badge: models.Badge | None) -> dict[str, Any]:
    """The badge of the current period as the standing shows it."""
    if badge is None:
        return {
            "state": "none",
            "credly_badge_id": None,
            "issued_at": None,
            "expires_at": None,
            "state_changed_at": None,
        }
    view = {
        "state": badge.state,
        "credly_badge_id": badge.credly_badge_id,
        "issued_at": _iso(badge.issued_at),
        "expires_at": _iso(badge.expires_at),
        "state_changed_at": _iso(badge.state_changed_at),
    }
    if badge.state == "error":
        view["error"] = badge.last_error
    return view


def standing_view(
    session: Session,
    certification_id: str,
    standing: rules.Standing,
    *,
    new_jobs: list[models.OutboxItem] | None = None,
) -> dict:
    """The full standing of SPEC §6: the rules' answer plus badge, verification and jobs.

    `new_jobs`: the certification was created in this transaction with these jobs, so no badge
    or verification record exists yet and nothing needs to be read.
    """
    if new_jobs is None:
        badge = session.scalar(
            select(models.Badge)
            .where(models.Badge.certification_id == certification_id)
            .order_by(models.Badge.period_start.desc())
            .limit(1)
        )
        record = session.get(models.VerificationRecord, certification_id)
        jobs = list(
            session.scalars(
                select(models.OutboxItem)
                .where(models.OutboxItem.certification_id == certification_id)
                .order_by(models.OutboxItem.id.desc())
                .limit(RECENT_JOBS)
            )
        )
    else:
        badge, record, jobs = None, None, new_jobs[::-1][:RECENT_JOBS]
    return {
        "certification_id": certification_id,
        **standing.to_dict(),
        "badge": badge_view(badge),
        "verification": {
            "synced_at": _iso(record.synced_at) if record else None,
            "status": record.status if record else None,
        },
        "jobs": [job_view(item) for item in jobs],
    }
