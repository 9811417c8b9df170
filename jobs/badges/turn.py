"""A certification's badge jobs call Credly one at a time: the job whose calls are in flight holds
the certification's turn, a row of `badge_turns` (the job's outbox item and the end of its lease),
until the job ends or its lease does; another badge job of the certification meanwhile is put off
without using an attempt, and then reads what the first one recorded. Taking and giving back the
turn are single statements: no connection or row lock is held while Credly is called, and a
worker that dies mid-call holds the certification no longer than its lease."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gateway.platform import clock
from gateway.store.models import BadgeTurn, UTCDateTime
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.engine.claim import ClaimedItem, Handler
from jobs.engine.retry import Deferred

#: Seconds a badge job waits, without using an attempt, while another one holds the turn.
TURN_WAIT_SECONDS = 5

_until = bindparam("until", type_=UTCDateTime())
_of = BadgeTurn.certification_id == bindparam("of_certification")

#: Built once, by dialect: the turn taken by the job `item` until `until`, unless another job
#: holds it still (its row's lease not ended).
TAKE_TURN = {
    name: (
        insert := dialect.insert(BadgeTurn).values(
            certification_id=bindparam("of_certification"),
            outbox_id=bindparam("item"),
            until=_until,
        )
    )
    .on_conflict_do_update(
        index_elements=[BadgeTurn.certification_id],
        set_={"outbox_id": insert.excluded.outbox_id, "until": insert.excluded.until},
        where=BadgeTurn.until <= bindparam("now", type_=UTCDateTime()),
    )
    .returning(BadgeTurn.certification_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}

#: Built once: the job holding the certification's turn, and until when at the latest.
HOLDER = select(BadgeTurn.outbox_id, BadgeTurn.until).where(_of)

#: Built once: the turn the job `item` took until `until` given back (not one taken since).
END_TURN = delete(BadgeTurn).where(
    _of, BadgeTurn.outbox_id == bindparam("item"), BadgeTurn.until == _until
)


def one_at_a_time(handler: Handler) -> Handler:
    """The badge job `handler`, run in its certification's turn (`in_turn`)."""

    @wraps(handler)
    def run(svc: Services, item: ClaimedItem) -> None:
        with in_turn(svc, item):
            handler(svc, item)

    return run


@contextmanager
def in_turn(svc: Services, item: ClaimedItem) -> Iterator[None]:
    """Run the block in the turn of the item's certification, held until the item's lease ends
    at the latest; Deferred while another job holds it."""
    key: dict[str, Any] = {
        "of_certification": item.certification_id,
        "item": item.id,
        "until": item.lease_end,
    }
    _take(svc, key)
    try:
        yield
    finally:
        try:
            svc.db.write(END_TURN, key)
        except SQLAlchemyError as exc:  # the job's end is recorded already: not undone for this
            log.warning("the certification's badge turn ends with the job's lease: %s", exc)


def _take(svc: Services, key: dict[str, Any]) -> None:
    """Take the turn; Deferred while another job holds it."""
    take = TAKE_TURN[svc.db.engine.dialect.name]
    while not svc.db.write(take, {**key, "now": clock.now()}):
        for job, until in svc.db.read(HOLDER, key):  # none: given back since, taken again
            if until > clock.now():  # else its lease ended since: taken again
                raise Deferred(
                    f"badge job {job} of the certification is calling Credly; this one runs "
                    f"after it (its lease ends at {until:%Y-%m-%d %H:%M:%S} UTC at the latest)",
                    retry_after=TURN_WAIT_SECONDS,
                )
