"""Read views that join a standing with what the jobs did: the badge, the lookup, the jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

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


_SHOWN_STATE = {"queued": "none"}  # an attempt under way: no badge in Credly yet


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
        # docs/operations.md: Credly's state, `none` before Credly has it, `error` if its job failed
        "state": "error" if badge.last_error else _SHOWN_STATE.get(badge.state, badge.state),
        "credly_badge_id": badge.credly_badge_id,
        "issued_at": _iso(badge.issued_at),
        "expires_at": _iso(badge.expires_at),
        "state_changed_at": _iso(badge.state_changed_at),
    }
    if badge.last_error:
        view["error"] = badge.last_error
    if badge.note:
        view["note"] = badge.note
    return view


@dataclass(frozen=True)
class Current:
    """What the jobs made of a certification so far: its badge, lookup record and recent jobs."""

    badge: models.Badge | None = None
    record: models.VerificationRecord | None = None
    jobs: tuple[models.OutboxItem, ...] = ()  # the most recent first


def read_current(session: Session, certification_ids: Sequence[str]) -> dict[str, Current]:
    """The current badge, lookup record and RECENT_JOBS latest jobs of each certification, in
    three statements however many there are; a certification without any is left out."""
    ids = list(certification_ids)
    badges: dict[str, models.Badge] = {}
    for badge in session.scalars(
        select(models.Badge).where(models.Badge.certification_id.in_(ids))
    ):
        shown = badges.get(badge.certification_id)
        if shown is None or badge.period_start > shown.period_start:
            badges[badge.certification_id] = badge
    records = {
        record.certification_id: record
        for record in session.scalars(
            select(models.VerificationRecord).where(
                models.VerificationRecord.certification_id.in_(ids)
            )
        )
    }
    rank = (
        func.row_number()
        .over(partition_by=models.OutboxItem.certification_id, order_by=models.OutboxItem.id.desc())
        .label("rank")
    )
    ranked = (
        select(models.OutboxItem, rank)
        .where(models.OutboxItem.certification_id.in_(ids))
        .subquery()
    )
    item = aliased(models.OutboxItem, ranked)
    jobs: dict[str, list[models.OutboxItem]] = {}
    for job in session.scalars(
        select(item).where(ranked.c.rank <= RECENT_JOBS).order_by(item.id.desc())
    ):
        jobs.setdefault(job.certification_id, []).append(job)
    return {
        cid: Current(badges.get(cid), records.get(cid), tuple(jobs.get(cid, ())))
        for cid in {*badges, *records, *jobs}
    }


def standing_view(
    certification_id: str,
    standing: rules.Standing,
    current: Current,
    new_jobs: Sequence[models.OutboxItem] = (),
) -> dict:
    """The standing of `GET /v1/certifications/{id}`: the rules' answer, badge, lookup and jobs.

    `new_jobs`: jobs queued since `current` was read, in the order they were queued.
    """
    record = current.record
    return {
        "certification_id": certification_id,
        **standing.to_dict(),
        "badge": badge_view(current.badge),
        "verification": {
            "synced_at": _iso(record.synced_at) if record else None,
            "status": record.status if record else None,
        },
        "jobs": [job_view(item) for item in [*new_jobs[::-1], *current.jobs][:RECENT_JOBS]],
    }
