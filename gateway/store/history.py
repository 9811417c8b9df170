"""A certification's recorded history, read back from the event log as domain events.

Stored bodies were validated by the event schemas when they arrived, so they are decoded here
directly (no second validation): the sweep reads millions of them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Executable, Table, bindparam, select, text, update

from gateway import rules
from gateway.platform import clock
from gateway.store.db import Database
from gateway.store.models import EVENT_KEPT, IN_HISTORY, Event

Decoder = Callable[[Any], Any]


def _converter(hint: Any) -> Decoder | None:
    """How to turn a stored JSON value into the field's type (None: keep it as it is)."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
    target = next((a for a in args if a is not type(None)), hint)
    if target is date:
        return date.fromisoformat
    if target is Decimal:
        return rules.to_points  # exact: a stored 1.13 is the JSON text 1.13
    if target is rules.Member:
        return lambda value: rules.Member(**value)
    return None


def _field_decoders(cls: type) -> dict[str, Decoder | None]:
    hints = typing.get_type_hints(cls)
    return {
        f.name: _converter(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.name not in ("event_id", "occurred_at")
    }


_DECODERS = {name: (cls, _field_decoders(cls)) for name, cls in rules.EVENT_TYPES.items()}


def decode_event(body: dict[str, Any]) -> rules.Event:
    """The domain event of a stored (already validated) event body."""
    cls, decoders = _DECODERS[body["type"]]
    data = body["data"]
    fields: dict[str, Any] = {}
    for name, value in data.items():
        convert = decoders[name]
        fields[name] = value if value is None or convert is None else convert(value)
    # as sent, RFC 3339 (checked at intake), whose `t` and `z` may be lower case: Python reads
    # them upper case only
    occurred_at = datetime.fromisoformat(body["occurred_at"].upper())
    return cls(event_id=body["event_id"], occurred_at=occurred_at, **fields)


EVENTS: Table = Event.__table__
_HISTORIES = (
    select(EVENTS.c.certification_id, EVENTS.c.body, EVENTS.c.status)
    .where(
        EVENTS.c.certification_id.in_(bindparam("ids", expanding=True)),
        EVENTS.c.status.in_(IN_HISTORY),
    )
    .order_by(EVENTS.c.id)
)


def load_history(
    db: Database, certification_id: str, connection: Connection | None = None
) -> list[rules.Event]:
    """The recorded history of a certification (its accepted and kept events, see
    `models.IN_HISTORY`), as domain events, in arrival order."""
    return load_histories(db, [certification_id], connection).get(certification_id, [])


def load_histories(
    db: Database, certification_ids: list[str], connection: Connection | None = None
) -> dict[str, list[rules.Event]]:
    """The recorded histories of several certifications, by certification, in arrival order: read
    in the transaction of `connection`, else on their own."""
    statement, params = histories_statement(certification_ids)
    if connection is None:
        return histories_of(db.read(statement, params))
    return histories_of(db.execute(connection, statement, params))


def histories_statement(certification_ids: list[str]) -> tuple[Executable, dict[str, Any]]:
    """The statement reading the histories of certifications, and its parameters."""
    return _HISTORIES, {"ids": list(certification_ids)}


def histories_of(rows: Iterable[tuple[str, Any, str]]) -> dict[str, list[rules.Event]]:
    """The histories that the rows of `histories_statement` hold."""
    histories: dict[str, list[rules.Event]] = {}
    for certification_id, body, _ in rows:
        histories.setdefault(certification_id, []).append(decode_event(body))
    return histories


def kept_of(rows: Iterable[tuple[str, Any, str]]) -> dict[str, set[str]]:
    """The ids of the kept events (`models.EVENT_KEPT`) among the rows of `histories_statement`,
    by certification."""
    kept: dict[str, set[str]] = {}
    for certification_id, body, status in rows:
        if status == EVENT_KEPT:
            kept.setdefault(certification_id, set()).add(body["event_id"])
    return kept


#: Certifications `keep_refused` judges at a time: their events are read together.
_REJUDGED = 500

_REFUSED = (
    select(EVENTS.c.certification_id)
    .where(EVENTS.c.status == "rejected", EVENTS.c.certification_id > bindparam("after"))
    .group_by(EVENTS.c.certification_id)
    .order_by(EVENTS.c.certification_id)
    .limit(_REJUDGED)
)
_EVENTS_OF = (
    select(
        EVENTS.c.certification_id,
        EVENTS.c.id,
        EVENTS.c.body,
        EVENTS.c.status,
        EVENTS.c.reasons,
        EVENTS.c.received_at,
    )
    .where(EVENTS.c.certification_id.in_(bindparam("ids", expanding=True)))
    .order_by(EVENTS.c.id)
)
_KEEP = (
    update(EVENTS)
    .where(EVENTS.c.id.in_(bindparam("pks", expanding=True)))
    .values(status=EVENT_KEPT)
)
_DUE = text(
    "UPDATE certifications SET next_change_on = :today WHERE certification_id IN :ids"
    " AND (next_change_on IS NULL OR next_change_on > :today)"
).bindparams(bindparam("ids", expanding=True))


def keep_refused(bind: Connection, policy: rules.Policy | None) -> None:
    """Judge every rejected event again as intake would have judged it when it arrived (against
    its certification's accepted and kept events before it, in arrival order, under `policy`,
    else POLICY_FILE's) and keep those the installed rules keep: an event whose each broken rule
    is provisional and which names the rules it was refused for. Their certifications are due
    for re-evaluation today. For the migrations of the releases that keep more refusals."""
    policy = policy or rules.load_policy()
    today = clock.now().date()
    after = ""
    while ids := bind.scalars(_REFUSED, {"after": after}).all():
        events: dict[str, list[Any]] = {}
        for certification_id, *row in bind.execute(_EVENTS_OF, {"ids": ids}):
            events.setdefault(certification_id, []).append(row)
        kept = {cid: _kept(rows, policy) for cid, rows in events.items()}
        pks = [pk for pks in kept.values() for pk in pks]
        if pks:
            bind.execute(_KEEP, {"pks": pks})
            bind.execute(_DUE, {"ids": [cid for cid, pks in kept.items() if pks], "today": today})
        after = ids[-1]


def _kept(
    rows: Iterable[tuple[int, Any, str, list[Any], datetime]], policy: rules.Policy
) -> list[int]:
    """The ids of the rejected events among one certification's `rows` (in arrival order) that
    intake keeps now, each judged on the history before it as intake builds it."""
    history: list[rules.Event] = []
    kept_ids: set[str] = set()
    found = []
    for pk, body, status, reasons, received_at in rows:
        if status == "rejected":
            try:
                event = decode_event(body)
            except (KeyError, TypeError, ValueError):  # a body this release takes as malformed
                continue
            violations = rules.validate(
                history, event, policy=policy, received_at=received_at, kept_ids=kept_ids
            )
            refused_for = sorted(reason.get("rule") for reason in reasons)
            if not rules.kept(violations) or sorted(v.rule for v in violations) != refused_for:
                continue
            found.append(pk)
            status = EVENT_KEPT
        else:
            event = decode_event(body)
        history.append(event)
        if status == EVENT_KEPT:
            kept_ids.add(event.event_id)
    return found
