"""Advance notice: tell subscriptions that asked for it (`notice_days`) ahead of a status change
due without any event (fees overdue -> inactive, a lapse), once per scheduled change, and tell
them again if an event calls it off.

Driven by the stored standings' `next_change_on`: the daily review (after the sweep) visits the
watched certifications whose next change falls within the longest notice, and recording a standing
(an event's or the sweep's) queues a `review_notices` job whenever a watched certification's next
change or status moves. Messages are queued as deliveries (`gateway.usecases.deliveries`) and go
through the delivery machinery (ordering, retries, signatures) with their bodies fixed when
queued: the certification id, its status, the day and the status it would become, nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, union
from sqlalchemy.orm import Session

from gateway import rules
from gateway.platform import clock
from gateway.store.history import load_histories
from gateway.store.models import (
    AdvanceNotice,
    Certification,
    OutboxItem,
    Subscription,
    WatchedCertification,
)
from gateway.usecases import deliveries, subscriptions
from gateway.usecases.services import Services

log = logging.getLogger(__name__)

SCHEDULED = "certification.status_change_scheduled"
CANCELLED = "certification.status_change_cancelled"
BATCH = 500


def review(
    svc: Services,
    session: Session,
    certification_ids: Sequence[str],
    today: date,
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
) -> list[OutboxItem]:
    """Announce the scheduled changes of `certification_ids` not yet announced, and call off the
    announced ones no longer scheduled, in `session`'s transaction (the caller locks the
    certifications); the outbox items of the messages queued (jobs of the event `event_pk`, the
    one that moved the certification, if any)."""
    watching = subscriptions.with_notice(svc.db, session.connection(), certification_ids)
    told: dict[tuple[str, str, date, str], AdvanceNotice] = {}
    announced: dict[tuple[str, str], list[AdvanceNotice]] = {}
    for notice in session.scalars(
        select(AdvanceNotice).where(AdvanceNotice.certification_id.in_(certification_ids))
    ):
        key = (notice.subscription_id, notice.certification_id)
        told[(*key, notice.change_on, notice.status)] = notice
        if notice.state == "scheduled":
            announced.setdefault(key, []).append(notice)
    ids = sorted({*watching, *(cid for _, cid in announced)})
    histories = load_histories(svc.db, ids, session.connection()) if ids else {}
    sends: list[tuple[AdvanceNotice, str, str]] = []  # each notice, the status now, its type
    for certification_id in ids:
        subscribers = watching.get(certification_id, {})
        history = histories.get(certification_id, [])
        change = _scheduled(svc, history, today, max(subscribers.values(), default=0))
        targets = {*subscribers, *(sub for sub, cid in announced if cid == certification_id)}
        for subscription_id in sorted(targets):
            days = subscribers.get(subscription_id)
            wanted = change
            if change is None or days is None or change.on > today + timedelta(days=days):
                wanted = None
            for notice in announced.get((subscription_id, certification_id), []):
                if notice.change_on <= today:
                    notice.state = "passed"  # its day came: the status change message follows
                elif wanted is not None and (notice.change_on, notice.status) == (
                    wanted.on,
                    wanted.status,
                ):
                    wanted = None  # told already
                else:
                    notice.state = "cancelled"
                    if days is not None:  # still watching with notice: say so
                        current = rules.evaluate(history, today, svc.policy, forecast=False).status
                        sends.append((notice, current, CANCELLED))
            if wanted is not None:
                notice = _record(session, told, subscription_id, certification_id, wanted)
                sends.append((notice, wanted.current, SCHEDULED))
    return _send(session, sends, request_id, event_pk)


def _scheduled(
    svc: Services, history: list[rules.Event], today: date, days: int
) -> rules.ScheduledChange | None:
    if not history or days <= 0:
        return None
    try:
        return rules.scheduled_change(history, today, today + timedelta(days=days), svc.policy)
    except rules.NotCertified:
        return None


def _record(
    session: Session,
    told: dict[tuple[str, str, date, str], AdvanceNotice],
    subscription_id: str,
    certification_id: str,
    change: rules.ScheduledChange,
) -> AdvanceNotice:
    """The notice of `change` for the subscription, scheduled (again, if it was called off:
    `told` holds the notices of the certifications reviewed, by subscription, certification,
    day and status)."""
    notice = told.get((subscription_id, certification_id, change.on, change.status))
    if notice is None:
        notice = AdvanceNotice(
            subscription_id=subscription_id,
            certification_id=certification_id,
            change_on=change.on,
            status=change.status,
        )
        session.add(notice)
    notice.state = "scheduled"
    return notice


def _send(
    session: Session,
    sends: list[tuple[AdvanceNotice, str, str]],
    request_id: str | None,
    event_pk: int | None,
) -> list[OutboxItem]:
    """Queue the message of each notice (with the status now and its type), to each subscription
    together, the subscriptions in one lock order for every review."""
    by_target: dict[str, list[deliveries.Message]] = {}
    for notice, current, event_type in sends:
        data: dict[str, Any] = {
            "certification_id": notice.certification_id,
            "status": current,
            "scheduled_status": notice.status,
            "scheduled_on": notice.change_on.isoformat(),
        }
        target = notice.subscription_id
        log.info("advance notice %s", event_type, extra={"notice": data, "target": target})
        message = deliveries.Message(notice.certification_id, event_type, data)
        by_target.setdefault(target, []).append(message)
    items: list[OutboxItem] = []
    for target in sorted(by_target):
        items += deliveries.queue_messages(
            session, target, by_target[target], request_id=request_id, event_pk=event_pk
        )
    return items


# --------------------------------------------------------------------------- the drivers


def review_certification(
    svc: Services,
    certification_id: str,
    finish: Callable[[Connection], None],
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
) -> None:
    """Review one certification's advance notices after its standing moved (because of the event
    `event_pk`, if one); `finish` records the job done, last, in the same transaction."""
    with svc.db.transaction() as session:
        session.execute(
            select(Certification.certification_id)
            .where(Certification.certification_id == certification_id)
            .with_for_update()
        )
        queued = review(
            svc,
            session,
            [certification_id],
            clock.now().date(),
            request_id=request_id,
            event_pk=event_pk,
        )
        outbox_ids = [queued_item.id for queued_item in queued]
        finish(session.connection())
    if outbox_ids and svc.dispatcher is not None:
        svc.dispatcher.dispatch(outbox_ids)


def review_due(svc: Services, today: date) -> int:
    """The daily review: watched certifications whose next change falls within the longest
    notice, and those with an announced change; how many messages it queued."""
    with svc.db.sessions() as session:
        longest = session.scalar(
            select(func.max(Subscription.notice_days)).where(*subscriptions.NOTICE_ON)
        )
        due = select(WatchedCertification.certification_id).join(
            Subscription, Subscription.id == WatchedCertification.subscription_id
        )
        due = due.join(
            Certification,
            Certification.certification_id == WatchedCertification.certification_id,
        ).where(
            *subscriptions.NOTICE_ON,
            Certification.next_change_on > today,
            Certification.next_change_on <= today + timedelta(days=longest or 0),
        )
        open_ = select(AdvanceNotice.certification_id).where(AdvanceNotice.state == "scheduled")
        ids = sorted(session.scalars(union(due, open_)))
    queued = 0
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        with svc.db.transaction() as session:
            session.execute(
                select(Certification.certification_id)
                .where(Certification.certification_id.in_(batch))
                .order_by(Certification.certification_id)
                .with_for_update()
            )
            outbox_ids = [item.id for item in review(svc, session, batch, today)]
        queued += len(outbox_ids)
        if outbox_ids and svc.dispatcher is not None:
            svc.dispatcher.dispatch(outbox_ids)
    return queued
