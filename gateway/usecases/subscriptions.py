"""Employers' webhook subscriptions: register, watch certifications, read the delivery log.

`register`, `list_of`, `read`, `delete_subscription`, `watch_more`, `stop_watching` and
`delivery_log` each own their transaction (the API calls them); the others work in the caller's
session. Each sees only the subscriptions of one API client: another client's subscription is as
unknown as one that never existed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Executable, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from connectors.employer_webhooks import check_target, new_secret
from connectors.errors import PermanentError, TransientError
from gateway.platform import clock
from gateway.rules import kinds
from gateway.schemas.subscriptions import MAX_WATCHED
from gateway.store.db import Database, wake_after_commit
from gateway.store.models import (
    Certification,
    Delivery,
    OAuthClient,
    OutboxItem,
    Subscription,
    WatchedCertification,
)
from gateway.usecases.services import Services

log = logging.getLogger(__name__)

#: The live subscriptions one API client may hold.
MAX_SUBSCRIPTIONS = 100

#: Live subscriptions that asked for advance notice.
NOTICE_ON = (Subscription.notice_days.is_not(None), Subscription.deleted_at.is_(None))


class SubscriptionNotFound(LookupError):
    """No such (live) subscription of this client."""


class TooManyWatched(ValueError):
    """The subscription would watch more than MAX_WATCHED certifications."""


class ClientRevoked(PermissionError):
    """The client was revoked while its request was under way."""


class TooManySubscriptions(ValueError):
    """The client already holds MAX_SUBSCRIPTIONS live subscriptions."""


class InvalidTarget(ValueError):
    """The URL is not one deliveries may go to (its message says why)."""


def register(
    svc: Services,
    client_id: str,
    url: str,
    certification_ids: Sequence[str],
    notice_days: int | None = None,
) -> Subscription:
    """`create` in a transaction of its own, once `url` is found a target deliveries may go to.

    InvalidTarget, before any transaction, for a URL that is not https (or http, with
    WEBHOOK_ALLOW_PLAIN_HTTP) or whose host does not resolve or resolves to a loopback, private or
    link-local address (unless WEBHOOK_ALLOW_PRIVATE_TARGETS): the lookup never runs while the
    client's row is locked.
    """
    try:
        check_target(
            url,
            allow_private=svc.settings.webhook_allow_private_targets,
            allow_http=svc.settings.webhook_allow_plain_http,
        )
    except (PermanentError, TransientError) as exc:
        raise InvalidTarget(str(exc)) from exc
    with svc.db.transaction() as session:
        return create(session, client_id, url, certification_ids, notice_days)


class WatchedChange(NamedTuple):
    """A subscription after a change of its watched ids."""

    subscription: Subscription
    #: How many certifications it watches after the change.
    count: int
    #: How many ids the change added or removed.
    changed: int


def list_of(svc: Services, client_id: str) -> list[tuple[Subscription, int]]:
    """`list_owned` in a session of its own."""
    with svc.db.snapshots() as session:
        return list_owned(session, client_id)


def read(svc: Services, client_id: str, subscription_id: str) -> tuple[Subscription, list[str]]:
    """The live subscription `subscription_id` of `client_id` and the ids it watches, sorted;
    SubscriptionNotFound if it has none."""
    with svc.db.snapshots() as session:
        subscription = owned(session, client_id, subscription_id)
        return subscription, watched_ids(session, subscription.id)


def delete_subscription(svc: Services, client_id: str, subscription_id: str) -> None:
    """`remove` the live subscription `subscription_id` of `client_id`, in a transaction of its
    own; SubscriptionNotFound if it has none."""
    with svc.db.transaction() as session:
        remove(session, owned(session, client_id, subscription_id))


def watch_more(
    svc: Services, client_id: str, subscription_id: str, certification_ids: Sequence[str]
) -> WatchedChange:
    """`watch` in a transaction of its own: `changed` is how many ids were new.
    SubscriptionNotFound, TooManyWatched (nothing changed) as `owned` and `watch` say."""
    return _change_watched(svc, client_id, subscription_id, watch, certification_ids)


def stop_watching(
    svc: Services, client_id: str, subscription_id: str, certification_ids: Sequence[str]
) -> WatchedChange:
    """`unwatch` in a transaction of its own: `changed` is how many ids were watched.
    SubscriptionNotFound if the client has no such subscription."""
    return _change_watched(svc, client_id, subscription_id, unwatch, certification_ids)


def _change_watched(
    svc: Services,
    client_id: str,
    subscription_id: str,
    change: Callable[[Session, Subscription, Sequence[str]], int],
    certification_ids: Sequence[str],
) -> WatchedChange:
    with svc.db.transaction() as session:
        subscription = owned(session, client_id, subscription_id)
        changed = change(session, subscription, certification_ids)
        return WatchedChange(subscription, count_watched(session, subscription.id), changed)


def check_held(svc: Services, client_id: str, subscription_id: str) -> None:
    """SubscriptionNotFound unless `client_id` holds the live subscription `subscription_id`."""
    with svc.db.transaction() as session:
        owned(session, client_id, subscription_id)


def delivery_log(
    svc: Services, client_id: str, subscription_id: str, *, limit: int, before: int | None
) -> list[Delivery]:
    """`deliveries` of the live subscription `subscription_id` of `client_id`, in a session of
    its own; SubscriptionNotFound if it has none."""
    with svc.db.snapshots() as session:
        subscription = owned(session, client_id, subscription_id)
        return deliveries(session, subscription.id, limit=limit, before=before)


def create(
    session: Session,
    client_id: str,
    url: str,
    certification_ids: Sequence[str],
    notice_days: int | None = None,
) -> Subscription:
    """Register a subscription with a new signing secret (the caller shows it once); with
    `notice_days`, it is told that many days ahead of a status change due without any event.
    TooManySubscriptions when the client already holds MAX_SUBSCRIPTIONS; ClientRevoked when it
    was revoked meanwhile.
    """
    # The client's row, locked, puts its registrations and its revocation one after another.
    mine = select(OAuthClient.revoked_at).where(OAuthClient.client_id == client_id)
    if session.execute(mine.with_for_update()).scalar_one_or_none() is not None:
        raise ClientRevoked(client_id)
    live = select(func.count()).where(
        Subscription.client_id == client_id, Subscription.deleted_at.is_(None)
    )
    if session.scalar(live) >= MAX_SUBSCRIPTIONS:
        raise TooManySubscriptions(
            f"You hold {MAX_SUBSCRIPTIONS} subscriptions, the most a client may: delete one, or "
            "watch more certifications with one you hold."
        )
    subscription = Subscription(
        id=f"sub_{secrets.token_urlsafe(16)}",
        client_id=client_id,
        url=url,
        secret=new_secret(),
        notice_days=notice_days,
    )
    session.add(subscription)
    session.flush()
    watch(session, subscription, certification_ids)
    return subscription


def owned(session: Session, client_id: str, subscription_id: str) -> Subscription:
    """The live subscription `subscription_id` of `client_id`, locked for this transaction."""
    subscription = session.scalar(
        select(Subscription)
        .where(
            Subscription.id == subscription_id,
            Subscription.client_id == client_id,
            Subscription.deleted_at.is_(None),
        )
        .with_for_update()
    )
    if subscription is None:
        raise SubscriptionNotFound(subscription_id)
    return subscription


def list_owned(session: Session, client_id: str) -> list[tuple[Subscription, int]]:
    """The live subscriptions of `client_id`, oldest first, each with its number of watched ids."""
    watched = (
        select(func.count())
        .where(WatchedCertification.subscription_id == Subscription.id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Subscription, watched)
        .where(Subscription.client_id == client_id, Subscription.deleted_at.is_(None))
        .order_by(Subscription.created_at, Subscription.id)
    )
    return [(subscription, count) for subscription, count in rows]


def watched_ids(session: Session, subscription_id: str) -> list[str]:
    """The certification ids a subscription watches, sorted."""
    return list(
        session.scalars(
            select(WatchedCertification.certification_id)
            .where(WatchedCertification.subscription_id == subscription_id)
            .order_by(WatchedCertification.certification_id)
        )
    )


def count_watched(session: Session, subscription_id: str) -> int:
    """How many certifications a subscription watches."""
    return session.scalar(
        select(func.count()).where(WatchedCertification.subscription_id == subscription_id)
    )


def watch(session: Session, subscription: Subscription, certification_ids: Sequence[str]) -> int:
    """Watch more certifications; how many were new. TooManyWatched beyond MAX_WATCHED in all."""
    already = set(
        session.scalars(
            select(WatchedCertification.certification_id).where(
                WatchedCertification.subscription_id == subscription.id,
                WatchedCertification.certification_id.in_(certification_ids),
            )
        )
    )
    new = [i for i in dict.fromkeys(certification_ids) if i not in already]
    if count_watched(session, subscription.id) + len(new) > MAX_WATCHED:
        raise TooManyWatched(f"A subscription watches at most {MAX_WATCHED} certifications.")
    if new:
        session.execute(
            insert(WatchedCertification),
            [{"subscription_id": subscription.id, "certification_id": i} for i in new],
        )
        if subscription.notice_days is not None:
            _review_soon(session, new, subscription.notice_days)
    return len(new)


def _review_soon(session: Session, certification_ids: Sequence[str], notice_days: int) -> None:
    """Queue a review of the advance notices of those certifications whose status changes
    within `notice_days`: a subscription made after the day's sweep is told now, not tomorrow
    (for a change due tomorrow: never)."""
    today = clock.now().date()
    due = session.scalars(
        select(Certification.certification_id).where(
            Certification.certification_id.in_(certification_ids),
            Certification.next_change_on > today,
            Certification.next_change_on <= today + timedelta(days=notice_days),
        )
    ).all()
    items = [OutboxItem(certification_id=i, kind=kinds.REVIEW_NOTICES, payload={}) for i in due]
    if items:
        session.add_all(items)
        session.flush()
        wake_after_commit(item.id for item in items)


def unwatch(session: Session, subscription: Subscription, certification_ids: Sequence[str]) -> int:
    """Stop watching certifications, cancelling their messages still waiting (a message being
    sent goes on); returns how many were watched."""
    watched = session.execute(
        delete(WatchedCertification).where(
            WatchedCertification.subscription_id == subscription.id,
            WatchedCertification.certification_id.in_(certification_ids),
        )
    ).rowcount
    waiting = session.scalars(
        select(Delivery)
        .where(
            Delivery.target == subscription.id,
            Delivery.certification_id.in_(certification_ids),
            Delivery.state.in_(("pending", "retrying")),
        )
        .order_by(Delivery.id)  # locked in id order, as a delivery's claim locks them
        .with_for_update()
    ).all()
    now = clock.now()
    for delivery in waiting:
        delivery.state, delivery.finished_at, delivery.lease_until = "cancelled", now, None
        delivery.last_error = f"{subscription.id} no longer watches {delivery.certification_id}"
    return watched


def remove(session: Session, subscription: Subscription) -> None:
    """Delete a subscription: nothing more is delivered to it and the ids it watched go with it
    (its row, delivery log and advance notices stay SUBSCRIPTION_RETENTION_DAYS: housekeeping)."""
    subscription.deleted_at = clock.now()
    session.execute(
        delete(WatchedCertification).where(WatchedCertification.subscription_id == subscription.id)
    )


def remove_all(session: Session, client_id: str) -> int:
    """Delete every subscription of a client (revoked: nothing more goes to it), the ids they
    watched with them; how many subscriptions."""
    removed = session.execute(
        update(Subscription)
        .where(Subscription.client_id == client_id, Subscription.deleted_at.is_(None))
        .values(deleted_at=clock.now())
    ).rowcount
    mine = select(Subscription.id).where(Subscription.client_id == client_id)
    session.execute(
        delete(WatchedCertification)
        .where(WatchedCertification.subscription_id.in_(mine))
        .execution_options(synchronize_session=False)
    )
    return removed


def warn_of_plain_http_targets(svc: Services) -> int:
    """Log a WARNING naming how many live subscriptions have a plain http URL (registered before
    such URLs were refused, or while WEBHOOK_ALLOW_PLAIN_HTTP was on) while the setting is off:
    every delivery to them fails. How many; 0 too while the database cannot say."""
    if svc.settings.webhook_allow_plain_http:
        return 0
    plain = select(func.count()).where(
        func.lower(Subscription.url).startswith("http:"), Subscription.deleted_at.is_(None)
    )
    try:
        with svc.db.snapshots() as session:
            found = session.scalar(plain)
    except SQLAlchemyError as exc:
        log.info("subscriptions not checked for plain http URLs: %s", exc.__class__.__name__)
        return 0
    if found:
        log.warning(
            "%d webhook subscription%s deliver%s to a plain http URL, which "
            "WEBHOOK_ALLOW_PLAIN_HTTP does not allow: every delivery to them fails (their "
            "delivery logs and `gateway jobs failed` say why) until their clients register them "
            "again with an https URL",
            found,
            "" if found == 1 else "s",
            "s" if found == 1 else "",
        )
    return found


def deliveries(
    session: Session, subscription_id: str, *, limit: int, before: int | None = None
) -> list[Delivery]:
    """The subscription's delivery log, newest first, up to `limit` entries below `before`."""
    query = select(Delivery).where(Delivery.target == subscription_id)
    if before is not None:
        query = query.where(Delivery.sequence < before)
    return list(session.scalars(query.order_by(Delivery.sequence.desc()).limit(limit)))


#: Of some certifications, those watched by live subscriptions with advance notice (built once:
#: building it costs more than running it, on every accepted event).
_WITH_NOTICE = (
    select(
        WatchedCertification.__table__.c.certification_id,
        Subscription.__table__.c.id,
        Subscription.__table__.c.notice_days,
    )
    .join(
        Subscription.__table__,
        Subscription.__table__.c.id == WatchedCertification.__table__.c.subscription_id,
    )
    .where(
        WatchedCertification.__table__.c.certification_id.in_(bindparam("ids", expanding=True)),
        Subscription.__table__.c.notice_days.is_not(None),
        Subscription.__table__.c.deleted_at.is_(None),
    )
)


def with_notice(
    db: Database, connection: Connection, certification_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Of `certification_ids`, those watched by live subscriptions with advance notice:
    certification -> {subscription id: notice days}; in the transaction of `connection`."""
    return with_notice_of(db.execute(connection, *with_notice_statement(certification_ids)))


def with_notice_statement(certification_ids: Sequence[str]) -> tuple[Executable, dict[str, Any]]:
    """The statement `with_notice` runs, with its parameters."""
    return _WITH_NOTICE, {"ids": list(certification_ids)}


def with_notice_of(rows: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """What the rows of `with_notice_statement` say (`with_notice`'s answer)."""
    found: dict[str, dict[str, int]] = {}
    for certification_id, subscription_id, days in rows:
        found.setdefault(certification_id, {})[subscription_id] = days
    return found
