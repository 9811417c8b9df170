"""The event use case: validate, evaluate, record event + standing + outbox in ONE transaction."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Connection,
    Insert,
    Select,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway import rules
from gateway.platform import clock, metrics
from gateway.schemas.events import Envelope, ShapeError, envelope_field, load_envelope
from gateway.schemas.responses import listed
from gateway.store.db import retry_disconnect
from gateway.store.history import EVENTS, histories_of, histories_statement, kept_of
from gateway.store.models import EVENT_KEPT, MalformedEvent
from gateway.usecases.queries import (
    Current,
    JobRow,
    current_of,
    current_statements,
    standing_view,
)
from gateway.usecases.services import Services
from gateway.usecases.standings import CERTIFICATIONS, Change, record_standings

ATTEMPTS = 3

# Locked in one order, so that two submissions naming the same certifications cannot deadlock.
_CERTIFICATIONS = (
    select(CERTIFICATIONS.c.certification_id, CERTIFICATIONS.c.evaluated_on)
    .where(CERTIFICATIONS.c.certification_id.in_(bindparam("ids", expanding=True)))
    .order_by(CERTIFICATIONS.c.certification_id)
)
_LOCK = _CERTIFICATIONS.with_for_update()
#: A group of single events does not wait for a lock that another transaction holds (a sweep's
#: batch, a batch of events, an operator's session): it would hold up every event of the process.
_LOCK_NOW = _CERTIFICATIONS.with_for_update(nowait=True)
_LOCK_NOT_AVAILABLE = "55P03"
_STORED = select(
    EVENTS.c.event_id, EVENTS.c.body_hash, EVENTS.c.response_status, EVENTS.c.response_body
).where(EVENTS.c.event_id.in_(bindparam("ids", expanding=True)))
_ANSWER = (
    update(EVENTS).where(EVENTS.c.id == bindparam("pk")).values(response_body=bindparam("answer"))
)
#: Every column but the id, bound by its name (`_event_row` gives each).
_INSERT_EVENTS = (
    insert(EVENTS)
    .values({c.name: bindparam(c.name) for c in EVENTS.c if c is not EVENTS.c.id})
    .returning(EVENTS.c.id, sort_by_parameter_order=True)
)
_RETRY = {"40P01", "40001"}  # deadlock detected, serialization failure
#: SQLSTATE classes of the database's own state, not of an event: connection exception,
#: insufficient resources, operator intervention (a statement timeout, a shutdown).
_UNAVAILABLE = {"08", "53", "57"}
_REPLAYED_HEADER = "Idempotent-Replayed"
_REPLAYED = {_REPLAYED_HEADER: "true"}


@dataclass(frozen=True)
class Answer:
    """What the API answers: status, JSON body, extra headers; the outbox items it queued (the
    workers are woken for them when the transaction commits)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    outbox_ids: tuple[int, ...] = ()


#: Floats up to this size hold every integer exactly (IEEE 754 doubles: 53 bits).
_EXACT_INTEGERS = 2**53


def body_hash(body: Any) -> str:
    """SHA-256 of the canonical JSON of `body`: the same event however its keys are ordered and
    its numbers written (10, 10.0 and 1e1 are one number, written 10, as RFC 8785 writes it)."""
    return legacy_body_hash(_integral_as_int(body))


def legacy_body_hash(body: Any) -> str:
    """`body_hash` as it was before integral numbers were written as integers (10.0 and 1e1 as
    10.0): the events recorded then keep it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _integral_as_int(value: Any) -> Any:
    """`value` with each float that is an integer of magnitude below 2**53 made that int."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT_INTEGERS else value
    if isinstance(value, dict):
        return {key: _integral_as_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_as_int(item) for item in value]
    return value


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    """A problem+json body (RFC 9457), with its first MAX_ERRORS errors (`listed`)."""
    detail, errors = listed(detail, errors)
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors,
    }


def shape_problem(errors: list[dict[str, str]]) -> dict[str, Any]:
    """The 422 body of a malformed event."""
    return problem(422, "Unprocessable Content", "The event is malformed.", errors)


@dataclass(frozen=True)
class _Item:
    """A well-formed event of a submission: where it stands in it, its body's hash, and the
    request that brought it."""

    position: int
    envelope: Envelope
    body: dict[str, Any]
    digest: str
    client_id: str | None
    request_id: str | None
    received_at: datetime


def submit_event(
    svc: Services,
    body: Any,
    *,
    client_id: str | None = None,
    request_id: str | None = None,
    received_at: datetime | None = None,
) -> Answer:
    """Accept or reject one event, answered as `submit_events` would answer it alone.

    Group commit: the well-formed events that other threads of this process submit while a
    transaction of theirs is in flight are recorded together, in the next transaction (up to
    MAX_EVENTS; a lone event goes at once), each answered as if they had been sent one after
    another. That transaction waits for no lock: if a certification of the group is locked by
    another transaction, or the transaction fails for good, each of its events is submitted
    again alone in its caller's thread, so that only the one at fault fails or waits; an error
    of the database itself (unreachable, timed out) is every one's."""
    received_at = received_at or clock.now()
    try:
        item = _item(svc.policy, 0, body, client_id, request_id, received_at)
    except ShapeError as exc:
        [answer] = _malformed(
            svc, [(0, (body, exc.errors))], _Sender(client_id, request_id, received_at)
        )
        return answer
    answer = svc.single_events.submit(item, lambda items: _decide_group(svc, items))
    if answer is _ALONE:  # out of the group, in this thread: it may wait for its locks
        [answer] = _decide(svc, [item])
    return answer


def submit_events(
    svc: Services,
    bodies: Sequence[Any],
    *,
    client_id: str | None = None,
    request_id: str | None = None,
    received_at: datetime | None = None,
) -> list[Answer]:
    """Accept or reject each event, answered as if they had been sent one after another, and
    record them in one transaction (the malformed ones' attempts, in a write of their own: see
    `_malformed`). Retried: an IntegrityError from a concurrent twin, a deadlock
    with a concurrent submission, and a pooled connection the database had closed (a commit lost
    that way is found again as a replay)."""
    received_at = received_at or clock.now()
    answers: list[Answer | None] = [None] * len(bodies)
    items = []
    malformed: dict[int, tuple[Any, list[dict[str, str]]]] = {}  # by position
    for position, body in enumerate(bodies):
        try:
            items.append(_item(svc.policy, position, body, client_id, request_id, received_at))
        except ShapeError as exc:
            malformed[position] = (body, exc.errors)
    if items:
        metrics.EVENT_GROUPS.labels("batch").observe(len(items))
        for item, answer in zip(items, _decide(svc, items), strict=True):
            answers[item.position] = answer
    if malformed:
        # the ids the batch itself recorded, by the first position that did: a malformed event
        # before it was sent while the id was free
        recorded: dict[str, int] = {}
        for item in items:
            answer = answers[item.position]
            if (
                answer is not None
                and answer.status in (202, 422)
                and _REPLAYED_HEADER not in answer.headers
            ):
                recorded.setdefault(item.envelope.event.event_id, item.position)
        sender = _Sender(client_id, request_id, received_at)
        refused = _malformed(svc, list(malformed.items()), sender, recorded)
        for position, answer in zip(malformed, refused, strict=True):
            answers[position] = answer
    return _all(answers)


class _Sender(NamedTuple):
    """Who sent a submission, and when it arrived."""

    client_id: str | None
    request_id: str | None
    received_at: datetime


def _malformed(
    svc: Services,
    refused: list[tuple[int, tuple[Any, list[dict[str, str]]]]],
    sender: _Sender,
    recorded: dict[str, int] | None = None,
) -> list[Answer]:
    """The 422 of each malformed event (its position, its body and field errors), in one read
    and at most one write for all. One under the id of an event recorded before is that event's
    replay (its very body, taken by an earlier release whose checks were laxer) or a 409, as any
    event sent again under a used id is; so is one under an id an earlier event of its batch
    recorded (`recorded`: the first position that recorded each id), but not one before that
    event. One sent again as the attempt kept under its id (or an earlier one of its batch) is
    that attempt's replay: the same 422, Idempotent-Replayed. The others are kept for audit
    under their event id, when it is usable and no event is recorded under it: the latest
    attempt at an id replaces the one before."""
    recorded = recorded or {}
    ids = [_looked_up_id(body) for _, (body, _) in refused]
    wanted = sorted({event_id for event_id in ids if event_id is not None})
    rows = svc.db.read(_STORED, {"ids": wanted}) if wanted else []
    stored = {row[0]: _Stored(*row) for row in rows}
    unrecorded = [event_id for event_id in wanted if event_id not in stored]
    kept = dict(svc.db.read(_KEPT, {"ids": unrecorded})) if unrecorded else {}
    answers: list[Answer] = []
    attempts: dict[str, dict[str, Any]] = {}  # the latest of each id
    answered: dict[str, int] = {}  # the position in `answers` of each id's latest attempt
    for (position, (body, errors)), event_id in zip(refused, ids, strict=True):
        found = stored.get(event_id) if event_id is not None else None
        if found is not None and recorded.get(found.event_id, -1) < position:
            # an id in use: this body is its replay, or another event
            same = _same_body(found, body_hash(body), body)
            answers.append(_replayed(found) if same else _conflict(found.event_id))
            continue
        usable = envelope_field(body, "event_id") if isinstance(body, dict) else None
        before = attempts[usable]["body"] if usable in attempts else kept.get(usable)
        if before is not None and before == _storable(body):
            # the attempt kept under its id, sent again as it was: answered as then
            answers.append(Answer(422, shape_problem(errors), dict(_REPLAYED)))
            continue
        answer = Answer(422, shape_problem(errors))
        answers.append(answer)
        if usable is not None and usable not in stored:
            attempts[usable] = _attempt(usable, body, answer.body["errors"], sender)
            answered[usable] = len(answers) - 1
    if attempts:  # in one order, so that two submissions keeping the same ids cannot deadlock
        kept_now = retry_disconnect(lambda: _keep(svc, [attempts[i] for i in sorted(attempts)]))
        for event_id in attempts.keys() - kept_now:  # kept by a twin sent at the same moment
            refused = answers[answered[event_id]]
            answers[answered[event_id]] = replace(refused, headers=dict(_REPLAYED))
    return answers


def _looked_up_id(body: Any) -> str | None:
    """The `event_id` a malformed body may have been recorded under by an earlier release: any
    text a column of events holds."""
    event_id = body.get("event_id") if isinstance(body, dict) else None
    if isinstance(event_id, str) and 0 < len(event_id) <= 128 and "\x00" not in event_id:
        return event_id
    return None


_MALFORMED: Table = MalformedEvent.__table__
#: The bodies of the malformed attempts kept under these ids.
_KEPT = select(_MALFORMED.c.event_id, _MALFORMED.c.body).where(
    _MALFORMED.c.event_id.in_(bindparam("ids", expanding=True))
)


def _upsert(insert_of: Callable[[Table], Any]) -> Insert:
    """Keep a malformed attempt, replacing the one before at its event id unless that one has
    the same body; its event id returned if it was written."""
    statement = insert_of(_MALFORMED).values({c.name: bindparam(c.name) for c in _MALFORMED.c})
    return statement.on_conflict_do_update(
        index_elements=[_MALFORMED.c.event_id],
        set_={c.name: statement.excluded[c.name] for c in _MALFORMED.c if not c.primary_key},
        where=_MALFORMED.c.body.is_distinct_from(statement.excluded.body),
    ).returning(_MALFORMED.c.event_id)


_KEEP_MALFORMED = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


def _keep(svc: Services, attempts: list[dict[str, Any]]) -> set[str]:
    """Write the attempts (one alone as one statement); the event ids of those written, which
    leave out an attempt a twin sent at the same moment kept first, with the same body."""
    statement = _KEEP_MALFORMED[svc.db.engine.dialect.name]
    if len(attempts) == 1:
        return {event_id for (event_id,) in svc.db.write(statement, attempts[0])}
    with svc.db.begin() as connection:
        return {event_id for (event_id,) in svc.db.execute_each(connection, statement, attempts)}


def _attempt(
    event_id: str, body: dict[str, Any], errors: list[dict[str, str]], sender: _Sender
) -> dict[str, Any]:
    """The row of a malformed attempt: its body and errors as the database can hold them, the
    envelope's `type` and `certification_id` as sent if they fit their columns, its
    `occurred_at` if the envelope takes it."""
    return {
        "event_id": event_id,
        "type": _fitting(body, _MALFORMED.c.type),
        "certification_id": _fitting(body, _MALFORMED.c.certification_id),
        "occurred_at": envelope_field(body, "occurred_at"),
        "body": _storable(body),
        "reasons": _storable(errors),
        **sender._asdict(),
    }


def _fitting(body: dict[str, Any], column: Column) -> str | None:
    """`body`'s field of `column`'s name if it is text the column holds, else None."""
    value = body.get(column.name)
    if isinstance(value, str) and 0 < len(value) <= column.type.length and "\x00" not in value:
        return value
    return None


#: How deep a kept body's arrays and objects go: far deeper than an event's, within what the
#: database driver's JSON encoder takes.
_DEEPEST = 100
_LONGEST_INTEGERS = (-(2**63), 2**64)  # what the driver's JSON encoder takes as integers


def _storable(value: Any, depth: int = 0) -> Any:
    """A request body's JSON `value` as the database holds it, which is `value` but for what it
    cannot hold: NUL characters (JSONB refuses them) become U+FFFD, integers beyond 64 bits the
    nearest double, numbers no double holds (1e400) null, and objects or arrays nested deeper
    than _DEEPEST null."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        low, high = _LONGEST_INTEGERS
        return value if low <= value < high else _double(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if depth >= _DEEPEST:
        return None
    if isinstance(value, dict):
        return {_storable(key): _storable(item, depth + 1) for key, item in value.items()}
    return [_storable(item, depth + 1) for item in value]


def _double(value: int) -> float | None:
    try:
        return float(value)
    except OverflowError:
        return None


def _item(
    policy: rules.Policy,
    position: int,
    body: Any,
    client_id: str | None,
    request_id: str | None,
    received_at: datetime,
) -> _Item:
    """A well-formed event; ShapeError when it is not."""
    envelope = load_envelope(body)
    _check_category(policy, envelope)
    return _Item(position, envelope, body, body_hash(body), client_id, request_id, received_at)


def _decide(svc: Services, items: list[_Item], *, wait: bool = True) -> list[Answer]:
    """Each item's answer, decided and recorded in one transaction (retried as `submit_events`
    says; the last attempt's error is raised). Without `wait`, a certification locked by another
    transaction fails it at once (`_LOCK_NOT_AVAILABLE`)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return _transaction(svc, items, wait)
        except DBAPIError as exc:
            if not _retryable(exc):
                raise
    return _transaction(svc, items, wait)


def _transaction(svc: Services, items: list[_Item], wait: bool) -> list[Answer]:
    with svc.db.begin() as connection:  # Core statements only: no ORM session around them
        return _Submission(svc, connection, _LOCK if wait else _LOCK_NOW).run(items)


#: A group's outcome for an item that its caller's thread submits alone.
_ALONE = Answer(0, {})


def _decide_group(svc: Services, items: list[_Item]) -> list[Answer | Exception]:
    """Each item's answer, or the exception its submission raises, all in one transaction that
    waits for no lock. When it fails (but for the database's own failures and a lone event's
    own error), each event is submitted again alone, in its caller's thread (`_ALONE`): an event
    whose certification is locked then waits without holding up the others."""
    metrics.EVENT_GROUPS.labels("single").observe(len(items))
    try:
        return list(_decide(svc, items, wait=False))
    except Exception as exc:
        if _unavailable(exc) or (len(items) == 1 and not _lock_not_available(exc)):
            return [exc] * len(items)
    return [_ALONE] * len(items)


def _lock_not_available(exc: Exception) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _unavailable(exc: Exception) -> bool:
    """Whether an error is the database's rather than an event's: no pooled connection in time,
    a connection failed or lost, a timeout or shutdown, resources exhausted."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return exc.connection_invalidated or sqlstate is None or sqlstate[:2] in _UNAVAILABLE


def _all(answers: list[Answer | None]) -> list[Answer]:
    assert all(answer is not None for answer in answers), "every event is answered"
    return [answer for answer in answers if answer is not None]


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, IntegrityError) or exc.connection_invalidated or sqlstate in _RETRY


def _check_category(policy: rules.Policy, envelope: Envelope) -> None:
    event = envelope.event
    if isinstance(event, rules.CcpActivity) and event.category not in policy.categories:
        raise ShapeError(
            [
                {
                    "field": "data.category",
                    "message": f"Must be one of: {', '.join(policy.categories)}.",
                }
            ]
        )


@dataclass
class _Cert:
    """A certification as a submission goes through its events: its recorded history, and its
    standing as last recorded (on `evaluated_on`) or as the submission's last event left it."""

    history: list[rules.Event]
    evaluated_on: date | None = None
    standing: rules.Standing | None = None
    current: Current = field(default_factory=Current)
    new_jobs: list[JobRow] = field(default_factory=list)
    #: The ids of the kept events of `history` (`rules.kept`).
    kept: set[str] = field(default_factory=set)

    def before(self, policy: rules.Policy) -> rules.Standing | None:
        """The standing before the next event (None: the certification is new)."""
        if self.standing is None and self.evaluated_on is not None:
            self.standing = rules.evaluate(self.history, self.evaluated_on, policy)
        return self.standing


@dataclass(frozen=True)
class _Accepted:
    #: Where its 202 answer goes; None for a kept event, answered 422 all the same.
    position: int | None
    row: int
    certification_id: str
    event_id: str
    change: Change


class _Submission:
    """The events of one submission decided in one transaction, in a few statements in all:
    lock the certifications, look the event ids up, read histories and what the jobs made, then
    write the events, the standings and their outbox items."""

    def __init__(self, svc: Services, connection: Connection, lock: Select = _LOCK) -> None:
        self.svc, self.connection, self.lock = svc, connection, lock
        self.answers: list[Answer | None] = []
        self.rows: list[dict[str, Any]] = []
        self.accepted: list[_Accepted] = []
        self.kept: list[_Accepted] = []  # refused, kept events that changed a standing
        self.replays: list[tuple[int, int]] = []  # (position, position of the answer it repeats)

    def run(self, items: list[_Item]) -> list[Answer]:
        """Each item's answer, in order."""
        db, connection = self.svc.db, self.connection
        ids = sorted({item.envelope.certification_id for item in items})
        event_ids = sorted({item.envelope.event.event_id for item in items})
        locked, recorded = db.execute_all(
            connection, [(self.lock, {"ids": ids}), (_STORED, {"ids": event_ids})]
        )
        evaluated_on = dict(locked)
        stored = {row[0]: _Stored(*row) for row in recorded}
        fresh = sorted(
            {i.envelope.certification_id for i in items if i.envelope.event.event_id not in stored}
            & evaluated_on.keys()
        )
        histories, current, kept = {}, {}, {}
        if fresh:  # their histories and what the jobs made of them, in one round trip
            history_rows, *current_rows = db.execute_all(
                connection, [histories_statement(fresh), *current_statements(fresh)]
            )
            histories, current = histories_of(history_rows), current_of(*current_rows)
            kept = kept_of(history_rows)
        self.certs = {
            cid: _Cert(
                histories.get(cid, []),
                evaluated_on[cid],
                current=current.get(cid, Current()),
                kept=kept.get(cid, set()),
            )
            for cid in fresh
        }
        first: dict[str, tuple[str, int]] = {}  # event id -> (digest, position) of its recording
        for position, item in enumerate(items):
            event_id = item.envelope.event.event_id
            if event_id in stored:
                found = stored[event_id]
                same = _same_body(found, item.digest, item.body)
                self.answers.append(_replayed(found) if same else _conflict(event_id))
            elif event_id in first:
                digest, recorded_at = first[event_id]
                self.answers.append(None if digest == item.digest else _conflict(event_id))
                if digest == item.digest:
                    self.replays.append((position, recorded_at))
            else:
                answer = self._decide(position, item)
                if answer is None or answer.status != 404:  # a 404 records nothing
                    first[event_id] = (item.digest, position)
                self.answers.append(answer)
        self._record()
        for position, recorded_at in self.replays:
            original = self.answers[recorded_at]
            assert original is not None
            self.answers[position] = Answer(original.status, original.body, dict(_REPLAYED))
        return _all(self.answers)

    def _decide(self, position: int, item: _Item) -> Answer | None:
        """Judge one event against its certification's history so far; None: accepted (its
        answer waits for the jobs it queues)."""
        event, cid = item.envelope.event, item.envelope.certification_id
        cert = self.certs.get(cid)
        if cert is None and not isinstance(event, rules.Granted):
            return _unknown(cid)
        history, kept = (cert.history, cert.kept) if cert else ([], set())
        policy = self.svc.policy
        violations = rules.validate(
            history, event, policy=policy, received_at=item.received_at, kept_ids=kept
        )
        today = item.received_at.date()
        after = None
        if not violations:
            try:
                after = rules.evaluate([*history, event], today, policy)
            except rules.NotCertified:
                violations = [
                    rules.Violation(
                        rules.ids.EVENT_FUTURE,
                        f"The certification starts after today ({today.isoformat()}).",
                    )
                ]
        row = {
            "event_id": event.event_id,
            "type": event.type,
            "certification_id": cid,
            "occurred_at": event.occurred_at,
            "body": item.body,
            "body_hash": item.digest,
            "client_id": item.client_id,
            "request_id": item.request_id,
            "received_at": item.received_at,
        }
        if violations:
            reasons = [{"rule": v.rule, "message": v.message} for v in violations]
            response = problem(
                422, "Unprocessable Content", "The event breaks the certification rules.", reasons
            )
            status = "rejected"
            if cert is not None and rules.kept(violations):
                status = EVENT_KEPT  # the standing sees it in date order
                self._keep(cert, cid, event, today, item.request_id)
            self.rows.append(_event_row(row, status, reasons, 422, response))
            return Answer(422, response)
        assert after is not None
        if cert is None:
            cert = self.certs[cid] = _Cert([])
        change = Change(cid, cert.before(policy), after, request_id=item.request_id)
        cert.history.append(event)
        cert.standing = after
        self.accepted.append(_Accepted(position, len(self.rows), cid, event.event_id, change))
        self.rows.append(_event_row(row, "accepted", [], 202, {}))
        return None

    def _keep(
        self, cert: _Cert, cid: str, event: rules.Event, today: date, request_id: str | None
    ) -> None:
        """Keep a refused event in the history: where it counts in date order (a payment of a
        period that a recertification recorded before it closed may undo the lapse that
        recertification needed), the standing it makes is recorded and its jobs queued."""
        policy = self.svc.policy
        before = cert.before(policy)
        cert.history.append(event)
        cert.kept.add(event.event_id)
        try:
            after = rules.evaluate(cert.history, today, policy)
        except rules.NotCertified:
            return
        if before is not None and after != before:
            cert.standing = after
            change = Change(cid, before, after, request_id=request_id)
            self.kept.append(_Accepted(None, len(self.rows), cid, event.event_id, change))

    def _record(self) -> None:
        """Write the events, then the standings and jobs of the accepted ones, then answers."""
        if not self.rows:
            return
        db, connection = self.svc.db, self.connection
        pks = [pk for (pk,) in db.execute_each(connection, _INSERT_EVENTS, self.rows)]
        changed = sorted([*self.accepted, *self.kept], key=lambda a: a.row)  # in arrival order
        changes = [replace(a.change, event_pk=pks[a.row]) for a in changed]
        answered = []
        for accepted, recorded in zip(
            changed, record_standings(self.svc, connection, changes), strict=True
        ):
            cert = self.certs[accepted.certification_id]
            cert.new_jobs.extend(recorded.jobs)
            if accepted.position is None:
                continue
            body = {
                "event_id": accepted.event_id,
                "status": "accepted",
                "standing": standing_view(
                    accepted.certification_id, accepted.change.after, cert.current, cert.new_jobs
                ),
                "actions": [a.kind for a in recorded.actions],
            }
            outbox_ids = tuple(item.id for item in recorded.jobs)
            self.answers[accepted.position] = Answer(202, body, outbox_ids=outbox_ids)
            answered.append({"pk": pks[accepted.row], "answer": body})
        if answered:
            db.execute_each(connection, _ANSWER, answered)


def _unknown(certification_id: str) -> Answer:
    return Answer(
        404,
        problem(
            404,
            "Not Found",
            f"Certification {certification_id} is unknown.",
            [
                {
                    "rule": rules.ids.CERT_UNKNOWN,
                    "message": f"No certification {certification_id} has been "
                    "granted; only certification.granted may create one.",
                }
            ],
        ),
    )


def _conflict(event_id: str) -> Answer:
    return Answer(
        409,
        problem(
            409,
            "Conflict",
            f"Event {event_id} was already received with a different body.",
            [{"field": "event_id", "message": "Already used for another event."}],
        ),
    )


class _Stored(NamedTuple):
    """An event recorded before, as `_STORED` reads it."""

    event_id: str
    body_hash: str
    response_status: int
    response_body: dict[str, Any]


def _same_body(stored: _Stored, digest: str, body: Any) -> bool:
    """Whether `body` (whose `body_hash` is `digest`) is the body of a stored event, whose hash
    may be the legacy one (computed only when the new one differs)."""
    return stored.body_hash == digest or stored.body_hash == legacy_body_hash(body)


def _replayed(stored: _Stored) -> Answer:
    return Answer(stored.response_status, stored.response_body, dict(_REPLAYED))


def _event_row(
    row: dict[str, Any],
    status: str,
    reasons: list[dict[str, str]],
    response_status: int,
    response_body: dict[str, Any],
) -> dict[str, Any]:
    return {
        **row,
        "status": status,
        "reasons": reasons,
        "response_status": response_status,
        "response_body": response_body,
    }
