"""The event use case: validate, evaluate, record event + standing + outbox in ONE transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gateway import rules
from gateway.schemas.events import Envelope, ShapeError, load_envelope
from gateway.services import Services
from gateway.standings import CERTIFICATIONS, Change, record_standings
from gateway.store.history import load_history
from gateway.store.models import Event, utcnow
from gateway.views import standing_view

ATTEMPTS = 3
EVENTS: Table = Event.__table__


@dataclass(frozen=True)
class Answer:
    """What the API answers: status, JSON body, extra headers, and the outbox items to dispatch."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    outbox_ids: tuple[int, ...] = ()


def body_hash(body: Any) -> str:
    """SHA-256 of the canonical JSON of `body`: the same event however its keys are ordered."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    """A problem+json body (RFC 9457)."""
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


def submit_event(
    svc: Services,
    body: Any,
    *,
    client_id: str | None = None,
    request_id: str | None = None,
    received_at: datetime | None = None,
) -> Answer:
    """Accept or reject one event. Retried: an IntegrityError from a concurrent twin, and a pooled
    connection the database had closed (a commit lost that way is found again as a replay)."""
    received_at = received_at or utcnow()
    try:
        envelope = load_envelope(body)
        _check_category(svc.policy, envelope)
    except ShapeError as exc:
        return Answer(422, shape_problem(exc.errors))
    digest = body_hash(body)
    for attempt in range(ATTEMPTS):
        try:
            with svc.db.transaction() as session:
                return _submit(
                    svc, session, envelope, body, digest, client_id, request_id, received_at
                )
        except DBAPIError as exc:
            retry = isinstance(exc, IntegrityError) or exc.connection_invalidated
            if not retry or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


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


def _submit(
    svc: Services,
    session: Session,
    envelope: Envelope,
    body: dict[str, Any],
    digest: str,
    client_id: str | None,
    request_id: str | None,
    received_at: datetime,
) -> Answer:
    event = envelope.event
    certification_id = envelope.certification_id
    evaluated_on = session.scalar(
        select(CERTIFICATIONS.c.evaluated_on)
        .where(CERTIFICATIONS.c.certification_id == certification_id)
        .with_for_update()
    )
    replay = _replay(session, event.event_id, digest)
    if replay is not None:
        return replay
    known = evaluated_on is not None
    if not known and not isinstance(event, rules.Granted):
        return Answer(
            404,
            problem(
                404,
                "Not Found",
                f"Certification {certification_id} is unknown.",
                [
                    {
                        "rule": "CERT-UNKNOWN",
                        "message": f"No certification {certification_id} has been "
                        "granted; only certification.granted may create one.",
                    }
                ],
            ),
        )
    # Accepted events always come with their certification: a new one has no history.
    history = load_history(session, certification_id) if known else []
    violations = rules.validate(history, event, policy=svc.policy, received_at=received_at)
    today = received_at.date()
    after = None
    if not violations:
        try:
            after = rules.evaluate([*history, event], today, svc.policy)
        except rules.NotCertified:
            violations = [
                rules.Violation(
                    "EVENT-FUTURE", f"The certification starts after today ({today.isoformat()})."
                )
            ]
    row = {
        "event_id": event.event_id,
        "type": event.type,
        "certification_id": certification_id,
        "occurred_at": event.occurred_at,
        "body": body,
        "body_hash": digest,
        "client_id": client_id,
        "request_id": request_id,
        "received_at": received_at,
    }
    if violations:
        reasons = [{"rule": v.rule, "message": v.message} for v in violations]
        response = problem(
            422, "Unprocessable Content", "The event breaks the certification rules.", reasons
        )
        _insert_event(session, row, "rejected", reasons, 422, response)
        return Answer(422, response)
    assert after is not None
    before = rules.evaluate(history, evaluated_on, svc.policy) if known else None
    event_pk = _insert_event(session, row, "accepted", [], 202, {})
    change = Change(certification_id, before, after, event_pk=event_pk, request_id=request_id)
    [recorded] = record_standings(svc, session, [change])
    response = {
        "event_id": event.event_id,
        "status": "accepted",
        "standing": standing_view(
            session, certification_id, after, new_jobs=None if known else recorded.jobs
        ),
        "actions": [a.kind for a in recorded.actions],
    }
    session.execute(update(EVENTS).where(EVENTS.c.id == event_pk).values(response_body=response))
    return Answer(202, response, outbox_ids=tuple(item.id for item in recorded.jobs))


def _insert_event(
    session: Session,
    row: dict[str, Any],
    status: str,
    reasons: list[dict[str, str]],
    response_status: int,
    response_body: dict[str, Any],
) -> int:
    values = {
        **row,
        "status": status,
        "reasons": reasons,
        "response_status": response_status,
        "response_body": response_body,
    }
    return session.scalar(insert(EVENTS).returning(EVENTS.c.id), values)


def _replay(session: Session, event_id: str, digest: str) -> Answer | None:
    previous = session.execute(
        select(EVENTS.c.body_hash, EVENTS.c.response_status, EVENTS.c.response_body).where(
            EVENTS.c.event_id == event_id
        )
    ).first()
    if previous is None:
        return None
    if previous.body_hash != digest:
        return Answer(
            409,
            problem(
                409,
                "Conflict",
                f"Event {event_id} was already received with a different body.",
                [{"field": "event_id", "message": "Already used for another event."}],
            ),
        )
    return Answer(
        previous.response_status,
        previous.response_body,
        headers={"Idempotent-Replayed": "true"},
    )
