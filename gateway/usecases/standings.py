"""Store new standings and queue the actions their changes call for: a few statements a batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Executable,
    Insert,
    Table,
    bindparam,
    insert,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from gateway import rules
from gateway.platform import clock
from gateway.rules import kinds
from gateway.store.db import wake_after_commit
from gateway.store.models import Certification, Member
from gateway.usecases import subscriptions
from gateway.usecases.queries import OUTBOX, JobRow
from gateway.usecases.services import Services

MEMBERS: Table = Member.__table__
CERTIFICATIONS: Table = Certification.__table__


@dataclass(frozen=True)
class Change:
    """A certification's standing moving from `before` (None: the certification is new) to
    `after`, because of the event stored as `event_pk` (None: the day changed it)."""

    certification_id: str
    before: rules.Standing | None
    after: rules.Standing
    event_pk: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Recorded:
    """What recording one change queued: its actions and their jobs (outbox items)."""

    actions: list[rules.Action]
    jobs: list[JobRow]


def record_standings(
    svc: Services, connection: Connection, changes: list[Change]
) -> list[Recorded]:
    """Store every `after` as its certification's standing and write the outbox items of the
    actions each change calls for, in `connection`'s transaction; results in the order of
    `changes`.

    A new certification is inserted (a concurrent twin then fails with IntegrityError, for the
    caller to retry); existing ones must be locked by the caller.
    """
    if not changes:
        return []
    now, db = clock.now(), svc.db
    writes: list[tuple[Executable, list[dict[str, Any]]]] = []
    members = [
        c.after.member for c in changes if c.before is None or c.before.member != c.after.member
    ]
    if members:  # only a grant or a change of details writes them, never a stale copy
        latest = {member.member_id: member for member in members}  # one row each, last wins
        upserts = [{**asdict(member), "updated_at": now} for member in latest.values()]
        writes.append((_MEMBER_UPSERTS[connection.dialect.name], upserts))
    standings = [_certification_row(change, now) for change in changes]
    new = [row for row, change in zip(standings, changes, strict=True) if change.before is None]
    if new:
        writes.append((_INSERT_CERTIFICATIONS, [row | {"created_at": now} for row in new]))
    known = [
        row for row, change in zip(standings, changes, strict=True) if change.before is not None
    ]
    if known:
        writes.append((_UPDATE_CERTIFICATIONS, known))
    moved = _moved(changes)
    reads = [subscriptions.with_notice_statement(moved)] if moved else []
    if all(len(values) == 1 for _, values in writes):  # one row each: one round trip for all
        answers = db.execute_all(connection, [(w, values[0]) for w, values in writes] + reads)
    else:
        for statement, values in writes:
            db.execute_each(connection, statement, values)
        answers = [db.execute(connection, *read) for read in reads]
    noticed = set(subscriptions.with_notice_of(answers[-1])) if reads else set()
    expires = svc.settings.badge_expires
    planned = [
        (change, rules.actions(change.before, change.after, badge_expires=expires))
        for change in changes
    ]
    jobs = [
        [_outbox_row(change, act, now) for act in acts]
        + ([_review_row(change, now)] if change.certification_id in noticed else [])
        for change, acts in planned
    ]
    inserted = [
        pk for (pk,) in db.execute_each(connection, _INSERT_OUTBOX, [r for rs in jobs for r in rs])
    ]
    wake_after_commit(inserted)
    ids = iter(inserted)
    return [
        Recorded(acts, [_job(next(ids), row) for row in rows_of])
        for (_, acts), rows_of in zip(planned, jobs, strict=True)
    ]


def _moved(changes: list[Change]) -> list[str]:
    """The certifications whose next change (or status) moved: a subscription with advance
    notice watching one has its notices reviewed by a job."""
    return [
        change.certification_id
        for change in changes
        if change.before is None
        or change.before.next_change_on != change.after.next_change_on
        or change.before.status != change.after.status
    ]


def _job(outbox_id: int, row: dict[str, Any]) -> JobRow:
    """The job of an outbox item just written as `row`."""
    return JobRow(
        outbox_id, row["certification_id"], row["kind"], "pending", 0, None, row["created_at"], None
    )


def _review_row(change: Change, now: datetime) -> dict[str, Any]:
    return {
        "event_pk": change.event_pk,
        "certification_id": change.certification_id,
        "kind": kinds.REVIEW_NOTICES,
        "payload": {},
        "state": "pending",
        "attempts": 0,
        "request_id": change.request_id,
        "created_at": now,
        "due_at": now,
    }


def _outbox_row(change: Change, action: rules.Action, now: datetime) -> dict[str, Any]:
    return {
        "event_pk": change.event_pk,
        "certification_id": change.certification_id,
        "kind": action.kind,
        "payload": {**asdict(action), "period_start": change.after.certified_on.isoformat()},
        "state": "pending",
        "attempts": 0,
        "request_id": change.request_id,
        "created_at": now,
        "due_at": now,
    }


def _bound(*columns: str) -> dict[str, BindParameter]:
    """Values of the named columns, each bound by its name (statements built once)."""
    return {name: bindparam(name) for name in columns}


_INSERT_OUTBOX = (
    insert(OUTBOX)
    .values(
        _bound(
            *("event_pk", "certification_id", "kind", "payload", "state", "attempts"),
            *("request_id", "created_at", "due_at"),
        )
    )
    .returning(OUTBOX.c.id, sort_by_parameter_order=True)
)
#: A standing's columns, as `_certification_row` names them (the certification's id is `cid`).
_STANDING = _bound(
    *("credential", "member_id", "status", "standing", "evaluated_on", "next_change_on"),
    "updated_at",
)
_INSERT_CERTIFICATIONS = insert(CERTIFICATIONS).values(
    certification_id=bindparam("cid"), created_at=bindparam("created_at"), **_STANDING
)
_UPDATE_CERTIFICATIONS = (
    update(CERTIFICATIONS)
    .where(CERTIFICATIONS.c.certification_id == bindparam("cid"))
    .values(_STANDING)
)


def _member_upsert(insert_of: Callable[[Table], Any]) -> Insert:
    statement = insert_of(MEMBERS)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[MEMBERS.c.member_id],
        set_={
            "first_name": excluded.first_name,
            "last_name": excluded.last_name,
            "email": excluded.email,
            "updated_at": excluded.updated_at,
        },
    )


_MEMBER_UPSERTS = {
    "postgresql": _member_upsert(postgresql.insert),
    "sqlite": _member_upsert(sqlite.insert),
}


def _certification_row(change: Change, now: datetime) -> dict[str, Any]:
    """The bound values of `_STANDING`, and `cid`."""
    after = change.after
    return {
        "cid": change.certification_id,
        "credential": after.credential,
        "member_id": after.member.member_id,
        "status": after.status,
        "standing": after.to_dict(),
        "evaluated_on": after.as_of,
        "next_change_on": after.next_change_on,
        "updated_at": now,
    }
