"""Choosing and queueing deliveries: who gets a delivery of a change, numbered in each target's
own sequence, written with its outbox item in the caller's transaction.

A target is the verification directory (`directory`, when configured) or a webhook subscription
(its id). When the sync changes what a public record shows (`gateway.usecases.verification_sync`),
`fan_out` picks the targets and `queue` numbers and queues their deliveries; advance notices
(`gateway.usecases.notices`) and the backfill (`gateway.usecases.backfill`) queue theirs with
`queue`. The workers are woken for their jobs after the commit; the delivery jobs
(`jobs.deliveries`) send them. Nothing here talks to a connector.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.rules import kinds
from gateway.store.db import wake_after_commit
from gateway.store.models import (
    Delivery,
    DeliveryTarget,
    OutboxItem,
    Subscription,
    WatchedCertification,
)
from gateway.usecases.services import Services

DIRECTORY = "directory"
EVENT_TYPE = "certification.status_changed"


def kind_of(target: str) -> str:
    """The outbox kind of deliveries to `target`."""
    return kinds.PUSH_DIRECTORY if target == DIRECTORY else kinds.DELIVER_WEBHOOK


#: Built once: the live subscriptions watching `certification_id`.
_WATCHING = (
    select(WatchedCertification.subscription_id)
    .join(Subscription, Subscription.id == WatchedCertification.subscription_id)
    .where(
        WatchedCertification.certification_id == bindparam("certification_id"),
        Subscription.deleted_at.is_(None),
    )
)


def fan_out(
    svc: Services,
    connection: Connection,
    certification_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
) -> list[OutboxItem]:
    """Queue the deliveries a change of a record's public content from `before` to `after`
    calls for, in the transaction of `connection`, as jobs of the event `event_pk`.

    The directory gets every change of the public content; subscriptions watching the
    certification get status changes (a first record counts as one).
    """
    if after == before:
        return []
    targets = [DIRECTORY] if svc.directory is not None else []
    if before is None or before["status"] != after["status"]:
        watching = svc.db.execute(connection, _WATCHING, {"certification_id": certification_id})
        targets += [subscription_id for (subscription_id,) in watching]
    if not targets:
        return []
    items = []
    with Session(bind=connection) as session:  # joins the transaction of `connection`
        for target in sorted(targets):  # one lock order for every fan-out: no deadlocks
            items += queue(
                session, target, [certification_id], request_id=request_id, event_pk=event_pk
            )
    return items


def lock_target(session: Session, name: str) -> DeliveryTarget:
    """The target row `name`, locked for this transaction; created when missing."""
    row = session.get(DeliveryTarget, name, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(DeliveryTarget(name=name, last_sequence=0))
        except IntegrityError:
            pass  # a concurrent transaction created it first
        row = session.get(DeliveryTarget, name, with_for_update=True, populate_existing=True)
    return row


class Message(NamedTuple):
    """A message to queue: of which certification, of what type, with which fixed body (None:
    a `certification.status_changed` message, which carries the newest public record)."""

    certification_id: str
    event_type: str = EVENT_TYPE
    data: dict[str, Any] | None = None


def queue(
    session: Session,
    target: str,
    certification_ids: Sequence[str],
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
    event_type: str = EVENT_TYPE,
    data: dict[str, Any] | None = None,
) -> list[OutboxItem]:
    """Number a delivery of each certification to `target` in its sequence; queue their jobs,
    jobs of the event `event_pk` when one event caused them (`GET /v1/events/{id}` lists them).
    `data`: the fixed body of an advance notice (`event_type`); without it, a
    `certification.status_changed` message, which carries the newest public record.
    """
    messages = [Message(i, event_type, data) for i in certification_ids]
    return queue_messages(session, target, messages, request_id=request_id, event_pk=event_pk)


def queue_messages(
    session: Session,
    target: str,
    messages: Sequence[Message],
    *,
    request_id: str | None = None,
    event_pk: int | None = None,
) -> list[OutboxItem]:
    """`queue` of messages of their own types and bodies, numbered in the order given: the
    target's row is locked once and the deliveries and their jobs are written together, not a
    message at a time."""
    row = lock_target(session, target)
    deliveries = []
    for message in messages:
        row.last_sequence += 1
        deliveries.append(
            Delivery(
                target=target,
                certification_id=message.certification_id,
                sequence=row.last_sequence,
                event_id=new_message_id(),
                event_type=message.event_type,
                data=message.data,
                state="pending",
                attempts=0,
            )
        )
    session.add_all(deliveries)
    session.flush()
    items = [
        OutboxItem(
            certification_id=delivery.certification_id,
            kind=kind_of(target),
            payload={"delivery_id": delivery.id},
            request_id=request_id,
            event_pk=event_pk,
        )
        for delivery in deliveries
    ]
    session.add_all(items)
    session.flush()
    wake_after_commit(item.id for item in items)
    return items


def new_message_id() -> str:
    """A fresh id for a message (a delivery, or an attempt carrying another record)."""
    return f"msg_{uuid.uuid4().hex}"
