"""The badge rows: the statements that read them and record on them the jobs' attempts, Credly's
answers and refusals, and why a job failed for good."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Connection, Insert, Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.credly.errors import NoConnection
from connectors.credly.wire import Badge as CredlyBadge
from gateway.platform import clock
from gateway.store.models import Badge, UTCDateTime
from gateway.usecases.services import Services
from jobs.badges.notes import refused_request
from jobs.badges.recipient import certification, recipient_of
from jobs.badges.states import EARNERS_CHOICE, LIVE
from jobs.engine.claim import ClaimedItem


def recorded_by_others(
    svc: Services, certification_id: str, found: Sequence[CredlyBadge]
) -> dict[str, str]:
    """Of the badges `found` in Credly, those another certification's badge row records, with
    that certification: a badge with no earner id (issued in Credly's UI) found at a shared
    e-mail address may already be another member's."""
    ids = [badge.id for badge in found if not badge.issuer_earner_id]
    if not ids:
        return {}
    rows = svc.db.read(_RECORDED_BY_OTHERS, {"ids": ids, "certification_id": certification_id})
    return dict(rows)


_RECORDED_BY_OTHERS = select(Badge.credly_badge_id, Badge.certification_id).where(
    Badge.credly_badge_id.in_(bindparam("ids", expanding=True)),
    Badge.certification_id != bindparam("certification_id"),
)

_now = bindparam("now", type_=UTCDateTime())


def _attempt(insert_of: Callable[[Table], Any]) -> Insert:
    """One more attempt at the badge of a period (created on the first), returning its id and
    attempts so far; nothing when the badge is already live in Credly, or its earner deleted or
    rejected it there (the gateway does not issue that again on its own)."""
    statement = insert_of(Badge.__table__).values(
        certification_id=bindparam("certification_id"),
        period_start=bindparam("period_start"),
        badge_template_id=bindparam("badge_template_id"),
        state="queued",
        attempts=1,
        created_at=_now,
        updated_at=_now,
    )
    badges, excluded = Badge.__table__.c, statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[badges.certification_id, badges.period_start],
        set_={
            "attempts": badges.attempts + 1,
            "badge_template_id": func.coalesce(
                excluded.badge_template_id, badges.badge_template_id
            ),
            "updated_at": excluded.updated_at,
        },
        # Spelled out rather than NOT IN, whose list SQLAlchemy expands at every execution.
        where=badges.credly_badge_id.is_(None)
        | and_(*(badges.state != state for state in (*LIVE, *EARNERS_CHOICE))),
    ).returning(badges.id, badges.attempts)


ATTEMPTS = {"postgresql": _attempt(postgresql.insert), "sqlite": _attempt(sqlite.insert)}

#: Takes back an attempt counted on a badge.
NOT_ATTEMPTED = (
    update(Badge).where(Badge.id == bindparam("badge_id")).values(attempts=Badge.attempts - 1)
)


@contextmanager
def no_call_no_attempt(svc: Services, badge_id: int) -> Iterator[None]:
    """Its block's attempt at the badge is taken back when its job is given back before any
    Credly call (`NoConnection`): the next attempt is then the first, as far as Credly knows."""
    try:
        yield
    except NoConnection:
        svc.db.write(NOT_ATTEMPTED, {"badge_id": badge_id})
        raise


#: Built once: the Credly id recorded on the badge of a certification's period.
CREDLY_ID = select(Badge.credly_badge_id).where(
    Badge.certification_id == bindparam("certification_id"),
    Badge.period_start == bindparam("period_start"),
)

#: Built once: the badges recorded live for a certification's other periods than `period_start`.
KEPT_ELSEWHERE = select(Badge.id, Badge.credly_badge_id).where(
    Badge.certification_id == bindparam("certification_id"),
    Badge.period_start != bindparam("period_start"),
    Badge.credly_badge_id.is_not(None),
    or_(*(Badge.state == state for state in LIVE)),  # not IN: its list expands at each execution
)


def period_badge(session: Session, certification_id: str, period_start: date) -> Badge | None:
    """The badge row of a certification's period, locked until `session`'s transaction ends (None
    before its first attempt)."""
    return session.scalar(
        select(Badge)
        .where(Badge.certification_id == certification_id, Badge.period_start == period_start)
        .with_for_update()
    )


def add_period_badge(
    session: Session,
    certification_id: str,
    period_start: date,
    badge_template_id: str | None,
    state: str,
) -> Badge:
    """The badge row of a certification's period, added with this template and state for a badge
    found in Credly (unless a badge job added one meanwhile), locked until `session`'s
    transaction ends."""
    insert_of = _INSERTS[session.get_bind().dialect.name]
    now = clock.now()
    added = insert_of(Badge).values(
        certification_id=certification_id,
        period_start=period_start,
        badge_template_id=badge_template_id,
        state=state,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.execute(
        added.on_conflict_do_nothing(index_elements=["certification_id", "period_start"])
    )
    row = period_badge(session, certification_id, period_start)
    assert row is not None
    return row


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def refused_again(
    svc: Services, certification_id: str, refused: str | None, connection: Connection
) -> bool:
    """Whether `refused`, a badge's `refused_request`, is the very issue the certification calls
    for now (read in `connection`'s transaction), so that issuing it again is refused again."""
    if refused is None:
        return False
    cert = certification(svc, certification_id, connection)
    return refused == refused_request(recipient_of(svc, cert))


#: Built once: Credly's refusal recorded on the badge `badge_id` (its note, and the request
#: refused), which ends a reissue owed (`RECORD`).
REFUSED = (
    update(Badge)
    .where(Badge.id == bindparam("badge_id"))
    .values(
        note=bindparam("note"),
        reissue_owed=False,
        refused_request=bindparam("refused_request"),
        updated_at=_now,
    )
)

_found_id, _found_state = bindparam("found_id"), bindparam("found_state")
_found_issued_at = bindparam("found_issued_at", type_=UTCDateTime())
_found_expires_at = bindparam("found_expires_at", type_=UTCDateTime())

#: Built once: record what Credly answered about the badge `badge_id`, its `issued_at` Credly's
#: (docs/api.md, "A standing's badge"; the time of recording if Credly's answer had none) and its
#: e-mail address (where the claim e-mail went; kept when the answer names none), with the note
#: for the standing and whether a reissue is owed; a refusal recorded before is over.
RECORD = (
    update(Badge)
    .where(Badge.id == bindparam("badge_id"))
    .values(
        credly_badge_id=_found_id,
        state=_found_state,
        last_error=None,
        state_changed_at=case(
            (
                Badge.credly_badge_id.is_distinct_from(_found_id)
                | Badge.state.is_distinct_from(_found_state),
                _now,
            ),
            else_=Badge.state_changed_at,
        ),
        issued_at=func.coalesce(_found_issued_at, Badge.issued_at, _now),
        expires_at=func.coalesce(_found_expires_at, Badge.expires_at),
        recipient_email=func.coalesce(bindparam("found_email"), Badge.recipient_email),
        note=bindparam("note"),
        reissue_owed=bindparam("reissue_owed"),
        refused_request=None,
        updated_at=_now,
    )
)


def record(
    svc: Services,
    badge_id: int,
    found: CredlyBadge,
    item: ClaimedItem | None = None,
    note: str | None = None,
    others: Sequence[tuple[int, CredlyBadge]] = (),
    *,
    reissue_owed: bool = False,
) -> None:
    """Record what Credly answered, in one statement, and in the same transaction what it says
    of the badges of `others` (rows, badges); with `item`, record the item done too;
    `reissue_owed` for a badge revoked to be issued again (`REISSUE_NOTE`). The rows are written
    in id order, the order a notification job locks them in (no deadlock)."""
    writes = sorted(
        [(badge_id, found, note, reissue_owed), *((row, b, None, False) for row, b in others)],
        key=lambda write: write[0],
    )
    values = [
        {
            "badge_id": row,
            "found_id": badge.id,
            "found_state": badge.state,
            "found_issued_at": badge.issued_at,
            "found_expires_at": badge.expires_at,
            "found_email": badge.recipient_email,
            "note": said,
            "reissue_owed": owed,
            "now": clock.now(),
        }
        for row, badge, said, owed in writes
    ]
    if item is None and not others:
        svc.db.write(RECORD, values[0])
        return
    with svc.db.engine.begin() as connection:
        for each in values:
            svc.db.execute(connection, RECORD, each)
        if item is not None:
            item.finish(svc.db, connection)


#: Why a period's badge job failed for good (None: its last job ended well).
MARK = (
    update(Badge)
    .where(  # bind names unlike the columns': SQLAlchemy keeps those for UPDATE's SET values
        Badge.certification_id == bindparam("of_certification"),
        Badge.period_start == bindparam("of_period"),
        Badge.last_error.is_distinct_from(bindparam("reason")),
    )
    .values(last_error=bindparam("reason"), updated_at=_now)
)


def _marked(item: ClaimedItem, reason: str | None) -> dict[str, Any]:
    return {
        "of_certification": item.certification_id,
        "of_period": date.fromisoformat(item.payload["period_start"]),
        "reason": reason,
        "now": clock.now(),
    }


def given_up(svc: Services, connection: Connection, item: ClaimedItem, reason: str) -> None:
    """Keep on the badge of the item's period why its job failed for good (a permanent error, or
    out of retries), in the transaction that fails the item, so the standing shows it as
    `error`; its state stays what Credly last said, so a requeued revoke or replace still finds
    it live. The job's next good end clears it (`settled`, or recording Credly's answer)."""
    svc.db.execute(connection, MARK, _marked(item, reason))


def settled(svc: Services, item: ClaimedItem) -> None:
    """The job ended well without Credly's answer to record (nothing left to do): an error a
    failed attempt left on the badge is over."""
    svc.db.write(MARK, _marked(item, None))
