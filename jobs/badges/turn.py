"""A certification's badge jobs call Credly one at a time: the job whose calls are in flight holds
the certification's turn, recorded on its row (the job's outbox item and the end of its lease),
until the job ends or its lease does; another badge job of the certification meanwhile is put off
without using an attempt, and then reads what the first one recorded. Taking and giving back the
turn are single statements: no connection or row lock is held while Credly is called, and a
worker that dies mid-call holds the certification no longer than its lease."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.store.models import Certification, UTCDateTime, utcnow
from gateway.usecases.services import Services
from jobs.badges import log
from jobs.engine.claim import ClaimedItem
from jobs.engine.retry import Deferred

#: Seconds a badge job waits, without using an attempt, while another one holds the turn.
TURN_WAIT_SECONDS = 5

_until = bindparam("until", type_=UTCDateTime())
_of = Certification.certification_id == bindparam("of_certification")
# (Bind names unlike the columns': SQLAlchemy keeps those for UPDATE's SET values.)
# A turn is no change of the certification: its `updated_at` stays.
_unchanged = {"updated_at": Certification.updated_at}

#: Built once: the turn taken by the job `item` until `until`, unless another job holds it still.
TAKE_TURN = (
    update(Certification)
    .where(
        _of,
        or_(
            Certification.badge_job_until.is_(None),
            Certification.badge_job_until <= bindparam("now", type_=UTCDateTime()),
        ),
    )
    .values(badge_job=bindparam("item"), badge_job_until=_until, **_unchanged)
    .returning(Certification.certification_id)
)

#: Built once: the job holding the certification's turn, and until when at the latest.
HOLDER = select(Certification.badge_job, Certification.badge_job_until).where(_of)

#: Built once: the turn the job `item` took until `until` given back (not one taken since).
END_TURN = (
    update(Certification)
    .where(
        _of,
        Certification.badge_job == bindparam("item"),
        Certification.badge_job_until == _until,
    )
    .values(badge_job=None, badge_job_until=None, **_unchanged)
)

Handler = Callable[[Services, ClaimedItem], None]


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
    at the latest; Deferred while another job holds it. A certification with no row is left
    for the block to find missing."""
    key: dict[str, Any] = {
        "of_certification": item.certification_id,
        "item": item.id,
        "until": item.lease_end,
    }
    if not _taken(svc, key):
        yield
        return
    try:
        yield
    finally:
        try:
            svc.db.write(END_TURN, key)
        except SQLAlchemyError as exc:  # the job's end is recorded already: not undone for this
            log.warning("the certification's badge turn ends with the job's lease: %s", exc)


def _taken(svc: Services, key: dict[str, Any]) -> bool:
    """Whether the turn was taken (False: the certification has no row); Deferred while
    another job holds it."""
    while not svc.db.write(TAKE_TURN, {**key, "now": utcnow()}):
        held = svc.db.read(HOLDER, key)
        if not held:
            return False
        [(job, until)] = held
        if until is not None and until > utcnow():  # else given back, or ended, since: again
            raise Deferred(
                f"badge job {job} of the certification is calling Credly; this one runs after "
                f"it (its lease ends at {until:%Y-%m-%d %H:%M:%S} UTC at the latest)",
                retry_after=TURN_WAIT_SECONDS,
            )
    return True
