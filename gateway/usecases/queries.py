"""Read views: a standing with what the jobs did (badge, lookup, jobs), a recorded event with its
jobs, the queue's backlog and the jobs' outcomes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import Column, Connection, Executable, Table, bindparam, func, select

from gateway import rules
from gateway.store import models
from gateway.store.db import Database
from gateway.store.history import load_history
from gateway.usecases.services import Services

BADGES: Table = models.Badge.__table__
RECORDS: Table = models.VerificationRecord.__table__
OUTBOX: Table = models.OutboxItem.__table__
OUTCOMES: Table = models.JobOutcome.__table__

RECENT_JOBS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class JobRow(NamedTuple):
    """A job (outbox item) as the standing shows it."""

    id: int
    certification_id: str | None
    kind: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def job_id(self) -> str:
        return models.job_name(self.id)


class BadgeRow(NamedTuple):
    """A badge as the standing shows it."""

    certification_id: str
    period_start: date
    state: str
    credly_badge_id: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    state_changed_at: datetime | None
    last_error: str | None
    note: str | None
    updated_at: datetime | None  # when an error was last recorded on it, for one in error


class RecordRow(NamedTuple):
    """A lookup record as the standing shows it."""

    certification_id: str
    status: str
    synced_at: datetime


def job_view(item: models.OutboxItem | JobRow) -> dict[str, Any]:
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


def badge_view(badge: models.Badge | BadgeRow | None) -> dict[str, Any]:
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
        # in error since its job failed for good: the last change is that failure's record
        "state_changed_at": _iso(badge.updated_at if badge.last_error else badge.state_changed_at),
    }
    if badge.last_error:
        view["error"] = badge.last_error
    if badge.note:
        view["note"] = badge.note
    return view


@dataclass(frozen=True)
class Current:
    """What the jobs made of a certification so far: its badges, lookup record and recent jobs."""

    badges: tuple[BadgeRow, ...] = ()  # one a period, the earliest first
    record: RecordRow | None = None
    jobs: tuple[JobRow, ...] = ()  # the most recent first

    def badge_of(self, certified_on: date) -> BadgeRow | None:
        """The badge of the period that began on `certified_on`, or while it has none yet (its
        issue job is on its way) the latest earlier period's. A later period's is not shown: that
        period's recertification no longer counts."""
        begun = [badge for badge in self.badges if badge.period_start <= certified_on]
        return begun[-1] if begun else None


def _columns(table: Table, row: type[tuple]) -> list[Column]:
    return [table.c[name] for name in row._fields]  # type: ignore[attr-defined]


_IDS = bindparam("ids", expanding=True)
_BADGES = select(*_columns(BADGES, BadgeRow)).where(BADGES.c.certification_id.in_(_IDS))
_RECORDS = select(*_columns(RECORDS, RecordRow)).where(RECORDS.c.certification_id.in_(_IDS))
_RANKED = (
    select(
        *_columns(OUTBOX, JobRow),
        func.row_number()
        .over(partition_by=OUTBOX.c.certification_id, order_by=OUTBOX.c.id.desc())
        .label("rank"),
    )
    .where(OUTBOX.c.certification_id.in_(_IDS))
    .subquery()
)
_JOBS = (
    select(*_columns(_RANKED, JobRow))
    .where(_RANKED.c.rank <= RECENT_JOBS)
    .order_by(_RANKED.c.id.desc())
)


def read_current(
    db: Database, connection: Connection, certification_ids: Sequence[str]
) -> dict[str, Current]:
    """The current badge, lookup record and RECENT_JOBS latest jobs of each certification, in
    one round trip however many there are, in the transaction of `connection`; a certification
    without any is left out."""
    return current_of(*db.execute_all(connection, current_statements(certification_ids)))


def current_statements(certification_ids: Sequence[str]) -> list[tuple[Executable, dict]]:
    """The statements `read_current` runs, with their parameters."""
    params = {"ids": list(certification_ids)}
    return [(_BADGES, params), (_RECORDS, params), (_JOBS, params)]


def current_of(
    badge_rows: Iterable[tuple], record_rows: Iterable[tuple], job_rows: Iterable[tuple]
) -> dict[str, Current]:
    """What the rows of `current_statements` say of each certification."""
    badges: dict[str, list[BadgeRow]] = {}
    for badge in sorted(map(BadgeRow._make, badge_rows), key=lambda row: row.period_start):
        badges.setdefault(badge.certification_id, []).append(badge)
    records = {record.certification_id: record for record in map(RecordRow._make, record_rows)}
    jobs: dict[str, list[JobRow]] = {}
    for job in map(JobRow._make, job_rows):
        jobs.setdefault(job.certification_id, []).append(job)
    return {
        cid: Current(tuple(badges.get(cid, ())), records.get(cid), tuple(jobs.get(cid, ())))
        for cid in {*badges, *records, *jobs}
    }


def standing_view(
    certification_id: str,
    standing: rules.Standing,
    current: Current,
    new_jobs: Sequence[JobRow] = (),
) -> dict:
    """The standing of `GET /v1/certifications/{id}`: the rules' answer, badge, lookup and jobs.

    `new_jobs`: jobs queued since `current` was read, in the order they were queued.
    """
    record = current.record
    return {
        "certification_id": certification_id,
        **standing.to_dict(),
        "badge": badge_view(current.badge_of(standing.certified_on)),
        "verification": {
            "synced_at": _iso(record.synced_at) if record else None,
            "status": record.status if record else None,
        },
        "jobs": [job_view(item) for item in [*new_jobs[::-1], *current.jobs][:RECENT_JOBS]],
    }


@dataclass(frozen=True)
class Backlog:
    """What the queue holds: items by kind and state, how many are due, the longest wait."""

    counts: dict[tuple[str, str], int]
    due: int
    oldest_due_at: datetime | None


def backlog(db: Database, states: Sequence[str]) -> Backlog:
    """The queue as operators see it (RQ holds only wake-ups, never the items themselves): the
    items in `states` by kind and state, and those due now."""
    now = models.clock.now()
    with db.snapshots() as session:
        counts = {
            (kind, state): number
            for kind, state, number in session.execute(
                select(OUTBOX.c.kind, OUTBOX.c.state, func.count())
                .where(OUTBOX.c.state.in_(states))
                .group_by(OUTBOX.c.kind, OUTBOX.c.state)
            )
        }
        due, oldest = session.execute(
            select(func.count(), func.min(OUTBOX.c.due_at)).where(OUTBOX.c.due_at <= now)
        ).one()
    return Backlog(counts, due, oldest)


#: How many items of each kind have ended done, from the few rows of `job_outcomes`.
_DONE = (
    select(OUTCOMES.c.kind, func.sum(OUTCOMES.c.total))
    .where(OUTCOMES.c.outcome == "done")
    .group_by(OUTCOMES.c.kind)
)


def queue_status(db: Database) -> Backlog:
    """What `gateway jobs status` shows: every item by kind and state, and those due now.

    The outbox keeps its done items for JOB_RETENTION_DAYS, too many to count on each call:
    those are the done ends `job_outcomes` counted (an item whose lease ran out mid-attempt, run
    to its end twice, counts twice). The others are counted in the outbox on its state index,
    failed ones included: `job_outcomes` counts every failure, a requeued item's too."""
    found = backlog(db, (*models.UNFINISHED, "failed"))
    done = {(kind, "done"): int(total) for kind, total in db.read(_DONE)}
    return Backlog(found.counts | done, found.due, found.oldest_due_at)


def queue_gauges(db: Database) -> tuple[dict[str, int], int]:
    """What `/metrics` shows of the queue: the items not yet done or failed by state (every such
    state, 0 when no item is in it) and how many items are due now."""
    found = backlog(db, models.UNFINISHED)
    by_state = dict.fromkeys(models.UNFINISHED, 0)
    for (_, state), number in found.counts.items():
        by_state[state] += number
    return by_state, found.due


_OUTCOMES = select(OUTCOMES.c.kind, OUTCOMES.c.outcome, func.sum(OUTCOMES.c.total)).group_by(
    OUTCOMES.c.kind, OUTCOMES.c.outcome
)


def job_outcomes(db: Database) -> dict[tuple[str, str], int]:
    """What `/metrics` shows of every worker's jobs: how many items of each kind ended in each
    final outcome (both shown, 0 when none has), from the few rows of `job_outcomes`."""
    counted = {(kind, outcome): int(total) for kind, outcome, total in db.read(_OUTCOMES)}
    kinds = {kind for kind, _ in counted}
    shown = {(kind, outcome): 0 for kind in kinds for outcome in models.FINISHED}
    return shown | counted


#: Rows read from the database at a time when a listing streams them.
STREAM_ROWS = 1000


def failed_jobs(db: Database, *, after: int = 0, limit: int | None = None) -> Iterator[dict]:
    """What `gateway jobs failed` lists: the items that failed for good, oldest first, from the
    one after the outbox id `after`, at most `limit` of them (all without one). The rows stream
    from one read, so any number of them fits in memory."""
    statement = (
        select(
            OUTBOX.c.id,
            OUTBOX.c.kind,
            OUTBOX.c.certification_id,
            OUTBOX.c.attempts,
            OUTBOX.c.finished_at,
            OUTBOX.c.last_error,
        )
        .where(OUTBOX.c.state == "failed", OUTBOX.c.id > after)
        .order_by(OUTBOX.c.id)
        .limit(limit)
        .execution_options(yield_per=STREAM_ROWS)
    )
    with db.snapshots() as session:
        for outbox_id, kind, certification_id, attempts, finished_at, error in session.execute(
            statement
        ):
            yield {
                "job_id": models.job_name(outbox_id),
                "kind": kind,
                "certification_id": certification_id,
                "attempts": attempts,
                "finished_at": finished_at.isoformat(timespec="seconds") if finished_at else None,
                "error": error,
            }


class UnknownCertification(LookupError):
    """No certification has this id."""


def standing_on(svc: Services, certification_id: str, as_of: date) -> dict:
    """The standing of `GET /v1/certifications/{id}` on `as_of`, from the whole history.

    Raises UnknownCertification, or rules.NotCertified for a day before the grant."""
    with svc.db.snapshots() as session:
        if session.get(models.Certification, certification_id) is None:
            raise UnknownCertification(certification_id)
        history = load_history(svc.db, certification_id, session.connection())
        standing = rules.evaluate(history, as_of, svc.policy)
        current = read_current(svc.db, session.connection(), [certification_id]).get(
            certification_id, Current()
        )
        return standing_view(certification_id, standing, current)


def event_record(svc: Services, event_id: str) -> dict[str, Any] | None:
    """The recorded event `event_id`, its status and reasons, and the state of every job it
    caused; else the latest malformed attempt at that id, rejected with its field errors; None
    when neither was received."""
    with svc.db.snapshots() as session:
        row = session.scalar(select(models.Event).where(models.Event.event_id == event_id))
        if row is None:
            attempt = session.get(models.MalformedEvent, event_id)
            return None if attempt is None else _attempt_view(attempt)
        jobs = session.scalars(
            select(models.OutboxItem)
            .where(models.OutboxItem.event_pk == row.id)
            .order_by(models.OutboxItem.id)
        )
        return {
            "event_id": row.event_id,
            "type": row.type,
            "certification_id": row.certification_id,
            "occurred_at": _as_sent(row.body, row.occurred_at),
            "received_at": row.received_at.isoformat(),
            "status": "rejected" if row.status == models.EVENT_KEPT else row.status,
            "reasons": row.reasons,
            "data": row.body.get("data"),
            "jobs": [job_view(item) for item in jobs],
        }


#: The UTC offset that ends an RFC 3339 date-time (Z, written so, is UTC's).
_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)$")


def _as_sent(body: object, taken: datetime | None) -> str | None:
    """`occurred_at` at the UTC offset its sender wrote it with (which decides its day), when
    it was taken as a date-time (`taken`, in UTC); ISO 8601 as Python writes it."""
    if taken is None:
        return None
    sent = body.get("occurred_at") if isinstance(body, dict) else None
    found = _OFFSET.search(sent) if isinstance(sent, str) else None
    if found is None:
        return taken.isoformat()
    offset = timedelta(hours=int(found[2]), minutes=int(found[3]))
    return taken.astimezone(timezone(-offset if found[1] == "-" else offset)).isoformat()


def _attempt_view(attempt: models.MalformedEvent) -> dict[str, object]:
    """A malformed attempt as an event record: what of its envelope was usable, no jobs."""
    data = attempt.body.get("data")
    return {
        "event_id": attempt.event_id,
        "type": attempt.type,
        "certification_id": attempt.certification_id,
        "occurred_at": _as_sent(attempt.body, attempt.occurred_at),
        "received_at": attempt.received_at.isoformat(),
        "status": "rejected",
        "reasons": attempt.reasons,
        "data": data if isinstance(data, dict) else None,
        "jobs": [],
    }
